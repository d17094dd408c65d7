"""The sFlow agent of one bridge: OVS's dpif_sflow (ofproto/ofproto-dpif-sflow.c).

How a sample travels, as in OVS:

    xlate (ofagent/xlate.py)   puts ('sample', probability, (('userspace',
                               cookie),)) first in every megaflow; the cookie
                               (dp/odp_util.py) holds the output VLAN and the
                               output interface field, known after translation
    datapath (dp/actions.py,   counts the packet in dp.sample_pool, draws, and
    dp/sample.py)              on a hit queues a userspace upcall
    OFProto.userspace          hands an upcall with an sFlow cookie (and the
                               pool at the draw) here
    SflowAgent.received        encodes a flow sample (records 1001 and 1)
    Receiver                   packs samples into datagrams of < 1400 bytes,
                               sent when the next sample would not fit and
                               at every tick (run, once a second)
    Collector                  one connected, non-blocking UDP socket per target

What it holds: one sampler for the bridge (source class 2, index 1000 +
sub_id, as OVS's dpif_sflow_set_options), with its flow sample sequence
number; a counter poller per port (source: the port's ifindex) and one for
the bridge (records 2207 datapath stats, 2203 resources), each with its own
sequence number; the datagram sequence number; the collectors.

Invariants: the sample pool is exact, not OVS's estimate (OVS adds the
sampling rate per sample): it is the count of packets that met the sample
action since this agent began, up to the sampled one (dp.sample_pool at
the draw, less its value when the agent began), so it grows by exactly the
packets the bridge received. `drops` is the count of
samples the datapath drew but could not queue (dp.sample_lost, same base):
at a high sampling rate the upcall queue fills, and those samples are
counted, not silently lost. A datagram no collector took is counted in its
collector's `failed`.

Never raising into the switch: sockets are non-blocking and every send
error is counted and logged at a limited rate; a collector that could not
be opened (bad target, no route) is retried at each tick, so one that
comes later is used. A configuration that cannot work (no target usable,
no agent address, sampling 0) leaves the agent disabled, with its reasons
in errors(), and the bridge forwarding as before.

The VXLAN hook: received() takes `tunnel_records`, encoded records of the
tunnel the packet came from or goes to (wire.record_ipv4_tunnel,
record_vni: 1024/1030 ingress, 1023/1029 egress); the caller that knows
the tunnel (the VXLAN work's xlate/ofproto) supplies them.

Cost: a flow sample is encoded in a few us in the slow path; a tick is
O(ports) only when counters are due (reads ~12 sysfs files per port).
"""

import logging
import os
import random
import resource
import socket
import time

from mnovs.dp.offload import VNET_HDR_LEN
from mnovs.dp.sample import UINT32_MAX
from mnovs.sflow import wire
from mnovs.sflow.config import choose_agent_address, parse_target
from mnovs.vlog import RateLimitedLog

log = logging.getLogger(__name__)

_SYSFS_STATS = ('rx_packets', 'rx_bytes', 'rx_dropped', 'rx_errors', 'multicast',
                'tx_packets', 'tx_bytes', 'tx_dropped', 'tx_errors', 'rx_crc_errors',
                'rx_frame_errors', 'rx_length_errors')
_VLAN_TPIDS = (0x8100, 0x88a8)


class Collector:
    """One target: a connected UDP socket, or the reason there is none."""

    __slots__ = ('target', 'sock', 'error', 'sent', 'failed', 'send_log')

    def __init__(self, target):
        self.target = target
        self.sock = None
        self.error = None
        self.sent = self.failed = 0
        self.send_log = RateLimitedLog(log)

    def open(self):
        """Try to open the socket; on failure keep OVS's message in `error`."""
        try:
            family, sockaddr = parse_target(self.target)
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except (ValueError, OSError) as err:
            self.error = f"couldn't open connection to collector {self.target} ({_reason(err)})"
            return False
        try:
            sock.setblocking(False)
            sock.connect(sockaddr)
        except OSError as err:
            sock.close()
            self.error = f"couldn't open connection to collector {self.target} ({_reason(err)})"
            return False
        self.sock, self.error = sock, None
        return True

    def send(self, data):
        try:
            self.sock.send(data)
            self.sent += 1
        except OSError as err:
            # ECONNREFUSED: a port unreachable came back for an earlier
            # datagram (no collector there now); EAGAIN/ENOBUFS: the socket
            # is full. Either way this datagram is lost, and counted.
            self.failed += 1
            self.send_log.warning('%s: sending to collector failed (%s)', self.target,
                                  _reason(err))

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _reason(err):
    if isinstance(err, OSError) and err.errno:
        return os.strerror(err.errno)
    return str(err).partition(': ')[2] or str(err)


class Receiver:
    """The datagram being filled (OVS's SFLReceiver): samples until ~1400 bytes."""

    __slots__ = ('samples', 'size', 'sequence', 'sent')

    def __init__(self):
        self.samples = []
        self.size = 0
        self.sequence = 0
        self.sent = 0                       # datagrams made


class SflowAgent:
    """sFlow for one bridge, from its options (config.SflowOptions).

    Args:
        name: the bridge name, for logs.
        options: config.SflowOptions.
        dp: the Datapath (sample_pool, sample_lost, ports, stats()).
        get_dpid: callable() -> the bridge's datapath id (record 1004).
        now: monotonic time.
    """

    def __init__(self, name, options, dp, get_dpid, now=None):
        now = time.monotonic() if now is None else now
        self.name = name
        self.options = options
        self.dp = dp
        self.get_dpid = get_dpid
        self.started = now
        self.pool_base = dp.sample_pool
        self.lost_base = dp.sample_lost
        self.sequence = 0                   # flow samples
        self.counter_sequences = {}         # source_id -> counter sample sequence
        self.next_poll = now + 1.0 + random.random() * max(options.polling - 1, 0)
        self.receiver = Receiver()
        self.ifindexes = {}                 # port name -> ifindex (0: none)
        self.config_errors = list(options.errors)     # what the row asks that cannot be
        self.collectors = [Collector(target) for target in options.targets]
        for collector in self.collectors:
            collector.open()
        self.address, warning = choose_agent_address(options.agent, options.targets)
        if warning:
            self.config_errors.append(warning)
        if self.address is None:
            self.config_errors.append('could not determine IP address for sFlow agent')
        if not options.targets:
            self.config_errors.append('no targets: sFlow is off')
        for error in self.errors():
            log.warning('%s: sFlow: %s', name, error)
        self.sub_id = options.sub_id
        self.sampler_source = wire.source_id(wire.DSCLASS_PHYSICAL_ENTITY, 1000 + self.sub_id)
        if self.enabled:
            log.info('%s: creating sFlow agent %d: sampling 1 in %d, polling %d s, header %d '
                     'bytes, agent %s, collectors %s', name, self.sub_id, options.sampling,
                     options.polling, options.header, self.address_text(),
                     ', '.join(c.target for c in self.collectors if c.sock))

    @property
    def enabled(self):
        """True if samples are taken: an address, a sampling rate, an open collector."""
        return (self.address is not None and self.options.sampling > 0
                and any(c.sock for c in self.collectors))

    @property
    def probability(self):
        """The sample action's probability (OVS: MAX(1, UINT32_MAX / sampling))."""
        return max(1, UINT32_MAX // self.options.sampling)

    def address_text(self):
        if self.address is None:
            return 'none'
        family = socket.AF_INET if len(self.address) == 4 else socket.AF_INET6
        return socket.inet_ntop(family, self.address)

    # --- ports ---------------------------------------------------------------------

    def ifindex(self, port_no):
        """The Linux ifindex of a datapath port (0 if unknown), cached by name."""
        port = self.dp.ports.get(port_no)
        if port is None:
            return 0
        index = self.ifindexes.get(port.name)
        if index is None:
            index = self.ifindexes[port.name] = _sysfs_int(port.name, 'ifindex') or 0
        return index

    def ports_changed(self):
        """A port came or went: ifindexes are read again (a new device, a new index)."""
        self.ifindexes.clear()

    # --- flow samples ----------------------------------------------------------------

    def received(self, packet, in_port, vlan_tci, output, pool, tunnel_records=()):
        """Encode one sampled packet (OVS's dpif_sflow_received).

        Args:
            packet: vnet header + frame, as the datapath queued it.
            in_port: datapath input port.
            vlan_tci, output: from the sFlow cookie (output VLAN, interface field).
            pool: dp.sample_pool when the packet was drawn (odp_util.decode_sflow_upcall).
            tunnel_records: encoded tunnel records (see the module docstring).
        """
        if pool <= self.pool_base:
            return                  # drawn for the agent this one replaced
        frame = memoryview(packet)[VNET_HDR_LEN:]
        self.sequence += 1
        records = [*tunnel_records, wire.record_switch(frame_vlan_tci(frame), vlan_tci),
                   wire.record_raw_header(frame, self.options.header)]
        sample = wire.flow_sample(
            self.sequence, self.sampler_source, self.options.sampling,
            pool - self.pool_base, self.dp.sample_lost - self.lost_base,
            self.ifindex(in_port), output, records)
        self.add_sample(sample)

    def add_sample(self, sample):
        """Put an encoded sample in the datagram, sending the datagram first if full."""
        receiver = self.receiver
        if (receiver.samples and wire.header_size(self.address or b'\0' * 4) + receiver.size
                + len(sample) > wire.MAX_DATAGRAM_SIZE):
            self.flush()
        receiver.samples.append(sample)
        receiver.size += len(sample)

    def flush(self, now=None):
        """Send the pending samples as one datagram to every open collector."""
        receiver = self.receiver
        if not receiver.samples or self.address is None:
            return
        now = time.monotonic() if now is None else now
        receiver.sequence += 1
        data = wire.datagram(self.address, self.sub_id, receiver.sequence,
                             int((now - self.started) * 1000), receiver.samples)
        receiver.samples, receiver.size = [], 0
        receiver.sent += 1
        for collector in self.collectors:
            if collector.sock is not None:
                collector.send(data)

    # --- the tick ----------------------------------------------------------------------

    def run(self, now):
        """Once a second: reopen failed collectors, poll counters when due, flush."""
        for collector in self.collectors:
            if collector.sock is None and collector.open():
                log.info('%s: sFlow: collector %s is open now', self.name, collector.target)
        if not self.enabled:
            return
        if self.options.polling and now >= self.next_poll:
            self.next_poll = now + self.options.polling
            self.poll_counters()
        self.flush(now)

    def poll_counters(self):
        """One counter sample per port (records 1, 2, 1004, 1005), one for the bridge."""
        dpid = self.get_dpid()
        for port_no, port in sorted(self.dp.ports.items()):
            ifindex = self.ifindex(port_no)
            if ifindex:
                self.add_sample(self._counter_sample(
                    wire.source_id(wire.DSCLASS_IFINDEX, ifindex),
                    port_records(port, ifindex, dpid)))
        stats = self.dp.stats()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.add_sample(self._counter_sample(self.sampler_source, [
            wire.counters_ovsdp(stats['hit'], stats['missed'], stats['lost'],
                                stats['masks_hit'], stats['flows'], stats['masks_total']),
            wire.counters_app_resources(int(usage.ru_utime * 1000), int(usage.ru_stime * 1000),
                                        usage.ru_maxrss * 1024)]))

    def _counter_sample(self, source, records):
        sequence = self.counter_sequences.get(source, 0) + 1
        self.counter_sequences[source] = sequence
        return wire.counters_sample(sequence, source, records)

    # --- introspection -----------------------------------------------------------------

    def show(self):
        """Text of sflow/show."""
        opts = self.options
        lines = [f'sFlow agent {self.sub_id} on bridge {self.name}: '
                 f'{"enabled" if self.enabled else "disabled"}',
                 f'    agent address: {self.address_text()}'
                 + (f' (agent "{opts.agent}")' if opts.agent else ''),
                 f'    sampling: 1 in {opts.sampling} (probability {self.probability} of '
                 f'{UINT32_MAX})' if opts.sampling else '    sampling: off',
                 f'    polling: every {opts.polling} s' if opts.polling else '    polling: off',
                 f'    header: {opts.header} bytes',
                 f'    sample pool: {self.dp.sample_pool - self.pool_base}; '
                 f'flow samples: {self.sequence}; '
                 f'samples lost (upcall queue full): {self.dp.sample_lost - self.lost_base}',
                 f'    datagrams: {self.receiver.sent}']
        for collector in self.collectors:
            state = (f'sent {collector.sent}, failed {collector.failed}' if collector.sock
                     else collector.error)
            lines.append(f'    target {collector.target}: {state}')
        lines.extend(f'    error: {error}' for error in self.errors())
        return '\n'.join(lines)

    def errors(self):
        """One line per thing that does not work now: the row's values, collectors."""
        errors = self.config_errors + [c.error for c in self.collectors if c.error]
        if self.collectors and not any(c.sock for c in self.collectors):
            errors.append('no collectors could be initialized, sFlow disabled')
        return errors

    def status(self):
        """For bridge/status: whether it runs, and what went wrong."""
        return {'enabled': self.enabled, 'errors': self.errors()}

    def close(self):
        self.flush()
        for collector in self.collectors:
            collector.close()


def frame_vlan_tci(frame):
    """The TCI of the frame's outer VLAN tag, 0 if untagged."""
    if len(frame) >= 18 and (frame[12] << 8 | frame[13]) in _VLAN_TPIDS:
        return frame[14] << 8 | frame[15]
    return 0


def port_records(port, ifindex, dpid):
    """The counter records of one port, from the kernel's view of its interface."""
    name = port.name
    stats = {key: _sysfs_int(name, f'statistics/{key}') or 0 for key in _SYSFS_STATS}
    flags = _sysfs_int(name, 'flags', 16) or 0
    status = 0
    if flags & 1:
        status = 1 | (2 if _sysfs_int(name, 'carrier') else 0)
    speed = _sysfs_int(name, 'speed')
    duplex = _sysfs(name, 'duplex')
    return [wire.counters_generic(ifindex, speed * 1000000 if speed and speed > 0 else 100000000,
                                  {'full': 1, 'half': 2}.get(duplex, 0), status, stats),
            wire.counters_ethernet(stats),
            wire.counters_openflow_port(dpid, port.port_no),
            wire.counters_port_name(name)]


def _sysfs(name, attr):
    try:
        with open(f'/sys/class/net/{name}/{attr}') as f:
            return f.read().strip()
    except OSError:
        return None


def _sysfs_int(name, attr, base=10):
    text = _sysfs(name, attr)
    try:
        return int(text, base) if text else None
    except ValueError:
        return None
