"""dpctl/* control commands: the datapath as `ovs-appctl dpctl/...` shows it.

    dpctl/show          ports, lookups hit/missed/lost, masks, caches, upcall
                        queues, drops by reason, recoveries (ring resets)
    dpctl/dump-flows    every megaflow: key/mask, stats, actions (odp syntax)
    dpctl/del-flows     delete every megaflow (they come back by upcall)

The formats follow OVS's so that a reader who knows `ovs-dpctl show` and
`ovs-dpctl dump-flows` can read ours; what OVS lacks (microflow cache hits,
drops by reason, malformed frames by reason) is added in the same style.
"""

import time

import socket

from mnovs.dp.datapath import LOCAL_PORT, ring_fill
from mnovs.dp.tap import TapPort
from mnovs.dp.tunnel import FLOW
from mnovs.dp.odp_util import format_actions, format_megaflow, format_tcp_flags


def show(dp):
    """Text of dpctl/show for datapath `dp`."""
    s = dp.stats()
    lookups = s['hit'] + s['missed']
    per_pkt = s['masks_hit'] / lookups if lookups else 0.0
    lines = [
        f'system@{dp.name}:',
        f"  lookups: hit:{s['hit']} missed:{s['missed']} lost:{s['lost']}",
        f"  flows: {s['flows']} (limit {dp.flow_limit}, evicted {s['evicted']})",
        f"  masks: hit:{s['masks_hit']} total:{s['masks_total']} hit/pkt:{per_pkt:.2f}",
        f"  cache: hit:{s['hit']} hit-rate:{100.0 * s['hit_rate']:.2f}%",
        '  caches:',
        f"    emc: hit:{s['emc_hits']} entries:{s['emc_entries']} size:{dp.emc.size}",
        f"    masks-cache: hit:{s['mask_cache_hits']} size:{dp.classifier.mask_cache_size}",
        f"  upcalls: queued:{s['queued']} queue-size:{dp.upcall_queue_len}/port",
        f"  drops: {_reasons(s['drops'])}",
        f"  malformed: {_reasons(s['malformed'])}",
        f"  recoveries: {_reasons(s['recoveries'])}",
    ]
    for port_no, port in sorted(dp.ports.items()):
        number = 'LOCAL' if port_no == LOCAL_PORT else port_no
        state = 'up' if port.up else 'down'
        lines.append(f'  port {number}: {port.name} ({_port_type(port)}{state})')
        lines.append(f'    RX packets:{port.rx_packets} errors:{port.rx_errors} '
                     f'dropped:{port.rx_dropped}  TX packets:{port.tx_packets} '
                     f'dropped:{port.tx_dropped}')
        lines.append(f'    RX bytes:{port.rx_bytes}  TX bytes:{port.tx_bytes}')
        if port.ring is not None:
            lines.append(f'    ring: slots:{port.ring_slots} reader at:{port.rx_slot} '
                         f'full:{ring_fill(port)}')
    return '\n'.join(lines)


def _port_type(port):
    """'internal, ' or 'vxlan: remote_ip=..., key=..., ' as OVS names a port's type; '' if plain."""
    if isinstance(port, TapPort):
        return 'internal, '
    config = port.tunnel
    if config is None:
        return ''
    options = [f'remote_ip={_address(config.remote_ip)}']
    if config.local_ip is not None:
        options.append(f'local_ip={_address(config.local_ip)}')
    if config.in_key == config.out_key:
        options.append(f'key={config.in_key}')
    else:
        options += [f'in_key={config.in_key}', f'out_key={config.out_key}']
    options.append(f'dst_port={config.dst_port}')
    return f'vxlan: {", ".join(options)}; '


def _address(value):
    return value if value == FLOW else socket.inet_ntoa(value)


def _reasons(counts):
    if not counts:
        return 'none'
    return ' '.join(f'{reason}:{n}' for reason, n in sorted(counts.items()))


def dump_flows(dp, now=None):
    """Text of dpctl/dump-flows: one megaflow per line, as ovs-dpctl prints."""
    now = time.monotonic() if now is None else now
    lines = []
    for flow in dp.flow_dump():
        used = f'{now - flow.used:.3f}s' if flow.packets else 'never'
        flags = f', flags:{format_tcp_flags(flow.tcp_flags)}' if flow.tcp_flags else ''
        lines.append(f'{format_megaflow(flow.key, flow.mask)}, packets:{flow.packets}, '
                     f'bytes:{flow.bytes}, used:{used}{flags}, '
                     f'actions:{format_actions(flow.actions, flow.key)}')
    return '\n'.join(lines)


def register(server, dp):
    """Add the dpctl/* commands for `dp` to a UnixctlServer."""
    server.register('dpctl/show', '', 0, 0, lambda: show(dp))
    server.register('dpctl/dump-flows', '', 0, 0, lambda: dump_flows(dp))
    server.register('dpctl/del-flows', '', 0, 0,
                    lambda: f'deleted {dp.flow_flush()} flows')
