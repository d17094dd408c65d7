"""NORMAL learning and cache invalidation: no stale megaflow survives a change.

The datapath here is real (classifier, microflow cache, actions) but its
ports are fakes that record what they send, so no sockets are needed.
"""

import random
from types import SimpleNamespace

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether

from mnovs.dp.datapath import Datapath
from mnovs.dp.flow import FIELD_SLICES, flow_extract, key_fields, md_of
from mnovs.dp.offload import VNET_HDR_LEN
from mnovs.ofagent.mac_learning import MacTable
from mnovs.ofagent.normal import NORMAL_MASK, NormalSwitch, key_vlan

ETH_SRC_AT = FIELD_SLICES['eth_src'][0]
BROADCAST = 'ff:ff:ff:ff:ff:ff'


def mac(n):
    return f'00:00:00:00:00:{n:02x}'


def make_switch(n_ports=4):
    dp = Datapath('t', upcall=None)
    for no in range(1, n_ports + 1):
        sent = []
        dp.ports[no] = SimpleNamespace(port_no=no, name=f't-eth{no}', up=True,
                                       sent=sent, send=lambda pkt, sent=sent: sent.append(bytes(pkt)))
    normal = NormalSwitch(dp, MacTable(idle_time=300))
    dp.upcall = normal.upcall
    return dp, normal


def receive(dp, in_port, src, dst, vlan=None, now=0.0):
    """Feed one frame to the datapath as port_input would, after the recv."""
    frame = Ether(src=src, dst=dst)
    if vlan is not None:
        frame = frame / Dot1Q(vlan=vlan)
    frame = bytes(frame / IP(src='10.0.0.1', dst='10.0.0.2') / UDP(sport=1, dport=2))
    packet = bytes(VNET_HDR_LEN) + frame
    key, _ = flow_extract(memoryview(frame), md_of(in_port))
    flow = dp.classifier.lookup(key)
    if flow is None:
        dp.handle_miss(memoryview(packet), key, now)
    else:
        flow.packets += 1
        flow.used = now
        dp.execute(packet, flow.actions)
    return key


def outputs(actions):
    return sorted(a[1] for a in actions if a[0] == 'output')


def assert_no_stale_flow(dp, normal):
    for flow in dp.flow_dump():
        assert normal.xlate(flow.key) == (flow.actions, flow.mask), flow
        src = flow.key[ETH_SRC_AT:ETH_SRC_AT + 6]
        learned = normal.macs.lookup(key_vlan(flow.key), src)
        in_port = key_fields(flow.key)['in_port']
        assert learned in (None, in_port), f'flow from {src.hex()} at {in_port}, learned at {learned}'


def test_unknown_destination_floods_then_learned_unicast():
    dp, normal = make_switch()
    receive(dp, 1, mac(1), mac(2))
    (flow,) = dp.flow_dump()
    assert outputs(flow.actions) == [2, 3, 4]
    assert flow.mask == NORMAL_MASK
    receive(dp, 2, mac(2), mac(1))
    # h2 is now known: the flood flow towards it was revalidated away.
    flows = {f.key[ETH_SRC_AT:ETH_SRC_AT + 6]: f for f in dp.flow_dump()}
    assert outputs(flows[bytes.fromhex('000000000002')].actions) == [1]
    assert bytes.fromhex('000000000001') not in flows
    receive(dp, 1, mac(1), mac(2))
    assert_no_stale_flow(dp, normal)
    assert all(len(outputs(f.actions)) == 1 for f in dp.flow_dump())


def test_mac_move_leaves_no_stale_flow():
    dp, normal = make_switch()
    receive(dp, 1, mac(1), mac(2))
    receive(dp, 2, mac(2), mac(1))
    receive(dp, 1, mac(1), mac(2))
    # h2 moves from port 2 to port 3.
    receive(dp, 3, mac(2), mac(1))
    assert normal.macs.lookup(0, bytes.fromhex('000000000002')) == 3
    assert_no_stale_flow(dp, normal)
    receive(dp, 1, mac(1), mac(2))
    dp.ports[2].sent.clear()
    dp.ports[3].sent.clear()
    receive(dp, 1, mac(1), mac(2))
    assert len(dp.ports[3].sent) == 1
    assert dp.ports[2].sent == []


def test_port_down_flushes_its_macs_and_flows():
    dp, normal = make_switch()
    receive(dp, 1, mac(1), mac(2))
    receive(dp, 2, mac(2), mac(1))
    receive(dp, 1, mac(1), mac(2))
    dp.ports[2].up = False
    normal.port_changed(2)
    assert normal.macs.lookup(0, bytes.fromhex('000000000002')) is None
    assert_no_stale_flow(dp, normal)
    for flow in dp.flow_dump():
        assert 2 not in outputs(flow.actions)


def test_learning_is_per_vlan_and_multicast_source_dropped():
    dp, normal = make_switch()
    receive(dp, 1, mac(1), mac(2), vlan=10)
    receive(dp, 2, mac(2), mac(1), vlan=20)
    assert normal.macs.lookup(10, bytes.fromhex('000000000001')) == 1
    assert normal.macs.lookup(20, bytes.fromhex('000000000001')) is None
    receive(dp, 1, '01:00:5e:00:00:01', mac(2))
    assert normal.xlate(dp.flow_dump()[-1].key)[0] == ()


def test_reserved_group_address_is_dropped():
    dp, normal = make_switch()
    receive(dp, 1, mac(1), '01:80:c2:00:00:00')
    (flow,) = dp.flow_dump()
    assert flow.actions == ()


def test_random_changes_never_leave_a_stale_megaflow():
    rng = random.Random(7)
    dp, normal = make_switch(n_ports=5)
    now = 0.0
    for step in range(600):
        now += rng.random() * 5
        event = rng.random()
        if event < 0.8:
            src, dst = rng.sample(range(1, 9), 2)
            dst_mac = BROADCAST if rng.random() < 0.1 else mac(dst)
            live = [no for no, port in dp.ports.items() if port.up]
            if not live:
                continue
            receive(dp, rng.choice(live), mac(src), dst_mac,
                    vlan=rng.choice((None, 10)), now=now)
        elif event < 0.9:
            port = dp.ports[rng.randint(1, 5)]
            port.up = not port.up
            normal.port_changed(port.port_no)
        else:
            normal.macs.idle_time = 20
            normal.run_periodic(now)
        assert_no_stale_flow(dp, normal)


def test_mac_evicted_from_a_full_table_leaves_no_stale_flow():
    dp, normal = make_switch()
    normal.macs.max_entries = 2
    receive(dp, 1, mac(1), mac(2))
    receive(dp, 2, mac(2), mac(1))      # flow h2 -> h1 outputs to port 1
    receive(dp, 3, mac(3), mac(1))      # h3 learned: h1, the oldest, is evicted
    assert normal.macs.lookup(0, bytes.fromhex('000000000001')) is None
    assert_no_stale_flow(dp, normal)
