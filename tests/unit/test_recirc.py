"""Recirculation: the hash and recirc datapath actions, and xlate's freezing after pop_mpls."""

import time

from scapy.contrib.mpls import MPLS
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from mnovs.dp.datapath import MAX_RECIRC_DEPTH, Datapath
from mnovs.dp.flow import make_key, mask_of
from mnovs.dp.odp_util import format_actions, format_megaflow
from mnovs.dp.offload import VNET_HDR_LEN
from test_datapath import fake_port
from test_ofproto import Switch, apply

VNET = bytes(VNET_HDR_LEN)


def inner(dport=53, sport=1):
    return (Ether(src='00:00:00:00:00:01', dst='00:00:00:00:00:02')
            / IP(src='10.0.0.1', dst='10.0.0.2') / UDP(sport=sport, dport=dport))


def labelled(dport=53):
    plain = inner(dport)
    return bytes(Ether(src=plain.src, dst=plain.dst, type=0x8847)
                 / MPLS(label=100, s=1, ttl=9) / plain[IP])


def test_pop_mpls_then_a_later_table_matches_the_inner_udp_port():
    switch = Switch()
    controller = switch.connect()
    switch.flow_mod(controller, match={'eth_type': (0x8847, None)},
                    instructions=apply(('pop_mpls', 0x0800)) + (('goto_table', 1),))
    switch.flow_mod(controller, table_id=1, priority=200,
                    match={'eth_type': (0x0800, None), 'ip_proto': (17, None),
                           'udp_dst': (53, None)},
                    instructions=apply(('output', 2, 0xffff)))
    switch.flow_mod(controller, table_id=1, priority=100, match={},
                    instructions=apply(('output', 3, 0xffff)))
    switch.receive(1, labelled(53))
    switch.receive(1, labelled(54))
    assert switch.port(2).frames() == [bytes(inner(53))]
    assert switch.port(3).frames() == [bytes(inner(54))]
    texts = sorted(format_megaflow(f.key, f.mask) + ' actions:' + format_actions(f.actions)
                   for f in switch.dp.flow_dump())
    first = [t for t in texts if t.startswith('recirc_id(0),')]
    second = [t for t in texts if t.startswith('recirc_id(0x1),')]
    assert len(first) == 1, texts
    assert first[0].endswith('actions:pop_mpls(eth_type=0x800),recirc(0x1)')
    assert len(second) == 2 and any('udp(dst=53)' in t and t.endswith(':2') for t in second), texts
    misses = switch.dp.n_missed
    switch.receive(1, labelled(53))            # both passes hit now
    assert switch.dp.n_missed == misses and switch.port(2).frames() == [bytes(inner(53))]


def test_a_recirculation_loop_is_cut_at_the_depth_limit_and_counted():
    dp = Datapath('t', upcall=None)
    dp.ports[1] = fake_port(1)
    dp.flow_put(make_key(), bytes(len(make_key())), (('recirc', 7),))     # matches every pass
    port = dp.ports[1]
    dp._input(port, port.md, memoryview(VNET + bytes(inner())), dp.emc.table.get,
              time.monotonic())
    assert dp.drops == {'recirc-depth': 1}
    assert dp.n_hit == MAX_RECIRC_DEPTH + 1 and dp.recirc_depth == 0


def test_hash_spreads_flows_and_keeps_each_on_one_output():
    dp = Datapath('t', upcall=None)
    for no in (1, 2, 3):
        dp.ports[no] = fake_port(no)
    first_pass = mask_of(recirc_id=0xffffffff)
    by_hash = mask_of(recirc_id=0xffffffff, dp_hash=1)
    dp.flow_put(make_key(), first_pass, (('hash', 0), ('recirc', 1)))
    dp.flow_put(make_key(recirc_id=1, dp_hash=0), by_hash, (('output', 2),))
    dp.flow_put(make_key(recirc_id=1, dp_hash=1), by_hash, (('output', 3),))
    for rounds in range(2):
        for sport in range(100):
            packet = memoryview(VNET + bytes(inner(sport=sport)))
            dp._input(dp.ports[1], dp.ports[1].md, packet, dp.emc.table.get, time.monotonic())
    sent = {no: [UDP(bytes(p)[VNET_HDR_LEN + 34:]).sport for p in dp.ports[no].sent]
            for no in (2, 3)}
    assert 20 < len(sent[2]) < 180 and len(sent[2]) + len(sent[3]) == 200
    assert not set(sent[2]) & set(sent[3])     # a flow always takes the same output
    assert format_actions((('hash', 0), ('recirc', 1))) == 'hash(l4(0)),recirc(0x1)'
    second = next(f for f in dp.flow_dump() if f.actions == (('output', 3),))
    assert format_megaflow(second.key, second.mask).startswith('recirc_id(0x1),dp_hash(0x1/0x1),')


def test_pop_pbb_then_a_later_table_matches_the_customer_frame():
    switch = Switch()
    controller = switch.connect()
    customer = bytes(inner(53))
    backbone = bytes.fromhex('0000000000aa0000000000bb88e7') + (0x00000005).to_bytes(4, 'big')
    switch.flow_mod(controller, match={'eth_type': (0x88e7, None)},
                    instructions=apply(('pop_pbb',)) + (('goto_table', 1),))
    switch.flow_mod(controller, table_id=1, match=dict(UDP53_MATCH),
                    instructions=apply(('output', 2, 0xffff)))
    switch.receive(1, backbone + customer)
    assert switch.port(2).frames() == [customer]
    assert sorted(f.actions[-1][0] for f in switch.dp.flow_dump()) == ['output', 'recirc']


UDP53_MATCH = {'eth_type': (0x0800, None), 'ip_proto': (17, None), 'udp_dst': (53, None)}
