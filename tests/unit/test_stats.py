"""Multipart replies (stats.py): every type's body, its errors, and Ryu's parse of it.

A switch is a SimpleNamespace with a real Pipeline, GroupTable and MeterTable
and fake ports; flow_mods and group_mods go through the real code.  Each
reply body is checked field by field, then encoded with codec.encode and
parsed by Ryu (one message at a time, as a controller receives them), to
prove that what we say is well-formed OpenFlow 1.3.
"""

import importlib.metadata
from types import SimpleNamespace

import pytest

from mnovs.dp.meter import MeterTable
from mnovs.openflow import ofp
from mnovs.openflow.codec import (
    FlowMod, GroupMod, MeterMod, MultipartReply, MultipartRequest, decode, encode,
    split_messages)
from mnovs.ofagent.group import GroupTable
from mnovs.openflow.messages import Bucket, MeterBand, Port
from mnovs.openflow.multipart import (
    FlowStatsRequest, GroupStatsRequest, MeterMultipartRequest, PortStatsRequest,
    QueueStatsRequest, TableFeatures)
from mnovs.openflow.ofp import OFPError
from mnovs.openflow.ofp_actions import ACTION_BY_TYPE
from mnovs.ofagent.stats import MAX_BANDS, MAX_METERS, SW_DESC, U64_MAX, multipart_reply_body
from mnovs.ofagent.table import N_TABLES, Pipeline
from test_codec import ryu_of13, ryu_parse

NOW = 100.25
OUT_2 = ('output', 2, ofp.OFPCML_NO_BUFFER)
TCP_80 = {'eth_type': (0x0800, None), 'ip_proto': (6, None), 'tcp_dst': (80, None)}


def fake_port(port_no, created, **counters):
    """An OFPort stand-in whose datapath port keeps the datapath's counters."""
    dp_port = SimpleNamespace(**dict.fromkeys(
        ('rx_packets', 'rx_bytes', 'rx_dropped', 'rx_errors', 'tx_packets', 'tx_bytes',
         'tx_dropped'), 0))
    vars(dp_port).update(counters)
    name, mac = f's1-eth{port_no}', bytes((2, 0, 0, 0, 0, port_no))
    return SimpleNamespace(port_no=port_no, name=name, hw_addr=mac, created=created,
                           dp_port=dp_port, desc=lambda: Port(port_no, mac, name))


@pytest.fixture
def switch():
    """s1: ports 1, 2; meter 1; group 1 (ALL) chained from group 2 (INDIRECT);
    rules: table 0 in_port=1 -> output 2 and tcp_dst=80 -> meter 1, group 2,
    goto 1; table 1 table-miss -> controller."""
    groups, meters = GroupTable(), MeterTable()
    pipeline = Pipeline(groups=groups, meter_exists=meters.__contains__)
    switch = SimpleNamespace(
        name='s1', dpid=1, dp=SimpleNamespace(meters=meters), pipeline=pipeline,
        groups=groups, meter_configs={}, pushed=[],
        ports={1: fake_port(1, 40.0, rx_packets=10, rx_bytes=1000, tx_packets=20,
                            tx_bytes=2000, rx_dropped=1, tx_dropped=3, rx_errors=2),
               2: fake_port(2, 90.5)})
    switch.push_stats = switch.pushed.append
    meters.set(1, 'pktps', [('drop', 100, 10)], now=60.0)
    switch.meter_configs[1] = MeterMod(ofp.OFPMC_ADD, ofp.OFPMF_PKTPS | ofp.OFPMF_BURST, 1,
                                       (MeterBand(ofp.OFPMBT_DROP, 100, 10),))
    groups.group_mod(GroupMod(ofp.OFPGC_ADD, ofp.OFPGT_ALL, 1, (
        Bucket(actions=(OUT_2,)), Bucket(actions=(('output', 1, 0),)))), pipeline, 50.0)
    groups.group_mod(GroupMod(ofp.OFPGC_ADD, ofp.OFPGT_INDIRECT, 2, (
        Bucket(actions=(('group', 1),)),)), pipeline, 70.0)
    flow_mods = (
        FlowMod(cookie=0x10, priority=100, match={'in_port': (1, None)}, idle_timeout=30,
                instructions=(('apply_actions', (OUT_2,)),)),
        FlowMod(cookie=0x20, priority=200, match=TCP_80, flags=ofp.OFPFF_SEND_FLOW_REM,
                instructions=(('goto_table', 1), ('meter', 1),
                              ('apply_actions', (('group', 2),)))),
        FlowMod(table_id=1, priority=0, instructions=(
            ('apply_actions', (('output', ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER),)),)))
    for when, fm in zip((10.0, 20.0, 30.5), flow_mods):
        pipeline.flow_mod(fm, when)
    for rule, count in zip(pipeline, (5, 7, 9)):        # best first: tcp, in_port, miss
        rule.packet_count, rule.byte_count = count, count * 100
    group = groups.get(1)
    group.packet_count, group.byte_count, group.bucket_counts = 4, 400, [[4, 400], [4, 400]]
    return switch


def reply(switch, mp_type, body=None):
    return multipart_reply_body(switch, MultipartRequest(mp_type, body=body), NOW)


def error(switch, mp_type, body=None):
    with pytest.raises(OFPError) as caught:
        reply(switch, mp_type, body)
    return caught.value.type, caught.value.code


def on_the_wire(mp_type, body):
    """Encode a reply; return Ryu's parse and ours of each message it became."""
    raw = encode(MultipartReply(mp_type, body=body, xid=7))
    messages, rest = split_messages(raw)
    assert not rest
    parsed = [ryu_parse(message) for message in messages]
    for message in parsed:
        assert message.xid == 7 and message.type == mp_type
    return parsed, [decode(message) for message in messages]


def ryu_entries(mp_type, body):
    """Ryu's entries for a reply that fits one message (or its single struct)."""
    (message,), (ours,) = on_the_wire(mp_type, body)
    assert message.flags == 0
    assert ours.body == body
    return message.body


# ---- switch and flows ---------------------------------------------------------

def test_desc(switch):
    body = reply(switch, ofp.OFPMP_DESC)
    assert (body.mfr_desc, body.hw_desc, body.sw_desc, body.serial_num, body.dp_desc) == (
        'mnovs', 'mnovs userspace datapath', 'mnovs 0.1.0', 'None', 's1')
    desc = ryu_entries(ofp.OFPMP_DESC, body)
    assert (desc.mfr_desc, desc.sw_desc, desc.dp_desc) == (b'mnovs', b'mnovs 0.1.0', b's1')


def test_sw_desc_follows_the_package_version():
    assert SW_DESC == 'mnovs ' + importlib.metadata.version('mnovs')


def test_flow_stats(switch):
    body = reply(switch, ofp.OFPMP_FLOW, FlowStatsRequest())
    assert switch.pushed == [NOW]
    assert [(s.table_id, s.priority, s.cookie, s.packet_count, s.byte_count) for s in body] == [
        (0, 200, 0x20, 5, 500), (0, 100, 0x10, 7, 700), (1, 0, 0, 9, 900)]
    tcp, in_port, miss = body
    assert (in_port.duration_sec, in_port.duration_nsec, in_port.idle_timeout) == (
        90, 250_000_000, 30)
    assert (miss.duration_sec, miss.duration_nsec) == (69, 750_000_000)
    assert tcp.flags == ofp.OFPFF_SEND_FLOW_REM and tcp.match == TCP_80
    assert ('meter', 1) in tcp.instructions
    entries = ryu_entries(ofp.OFPMP_FLOW, body)
    assert [(e.table_id, e.priority, e.packet_count, e.duration_sec) for e in entries] == [
        (0, 200, 5, 80), (0, 100, 7, 90), (1, 0, 9, 69)]
    assert entries[0].match['tcp_dst'] == 80
    assert {type(i).__name__ for i in entries[0].instructions} == {
        'OFPInstructionGotoTable', 'OFPInstructionMeter', 'OFPInstructionActions'}


@pytest.mark.parametrize('request_body, priorities', [
    (FlowStatsRequest(table_id=1), [0]),
    (FlowStatsRequest(out_port=2), [100]),
    (FlowStatsRequest(out_group=2), [200]),
    (FlowStatsRequest(cookie=0x20, cookie_mask=0xff), [200]),
    (FlowStatsRequest(match={'eth_type': (0x0800, None)}), [200]),
    (FlowStatsRequest(table_id=5), []),
])
def test_flow_stats_filters(switch, request_body, priorities):
    assert [s.priority for s in reply(switch, ofp.OFPMP_FLOW, request_body)] == priorities


def test_aggregate_stats(switch):
    body = reply(switch, ofp.OFPMP_AGGREGATE, FlowStatsRequest())
    assert (body.packet_count, body.byte_count, body.flow_count) == (21, 2100, 3)
    assert switch.pushed == [NOW]
    one = reply(switch, ofp.OFPMP_AGGREGATE, FlowStatsRequest(table_id=0, out_port=2))
    assert (one.packet_count, one.byte_count, one.flow_count) == (7, 700, 1)
    stats = ryu_entries(ofp.OFPMP_AGGREGATE, body)
    assert (stats.packet_count, stats.byte_count, stats.flow_count) == (21, 2100, 3)


@pytest.mark.parametrize('mp_type', [ofp.OFPMP_FLOW, ofp.OFPMP_AGGREGATE])
def test_flow_stats_bad_table(switch, mp_type):
    assert error(switch, mp_type, FlowStatsRequest(table_id=N_TABLES)) == (
        ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TABLE_ID)


def test_flow_stats_bad_match(switch):
    request_body = FlowStatsRequest(match={'tcp_dst': (80, None)})
    assert error(switch, ofp.OFPMP_FLOW, request_body) == (
        ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_PREREQ)


def test_table_stats(switch):
    body = reply(switch, ofp.OFPMP_TABLE)
    assert [s.table_id for s in body] == list(range(N_TABLES))
    assert [s.active_count for s in body[:3]] == [2, 1, 0]
    assert {(s.lookup_count, s.matched_count) for s in body} == {(0, 0)}
    entries = ryu_entries(ofp.OFPMP_TABLE, body)
    assert [(e.table_id, e.active_count) for e in entries[:3]] == [(0, 2), (1, 1), (2, 0)]


# ---- table features -----------------------------------------------------------

def properties(features):
    return dict(features.properties)


def test_table_features(switch):
    body = reply(switch, ofp.OFPMP_TABLE_FEATURES, ())
    assert [f.table_id for f in body] == list(range(N_TABLES))
    first, last = body[0], body[-1]
    assert (first.name, first.metadata_match, first.metadata_write, first.max_entries) == (
        'table0', U64_MAX, U64_MAX, switch.pipeline.tables[0].max_rules)
    assert last.name == f'table{N_TABLES - 1}'
    props = properties(first)
    assert sorted(props[ofp.OFPTFPT_INSTRUCTIONS]) == [1, 2, 3, 4, 5, 6]
    assert ofp.OFPIT_GOTO_TABLE not in properties(last)[ofp.OFPTFPT_INSTRUCTIONS]
    assert props[ofp.OFPTFPT_NEXT_TABLES] == tuple(range(1, N_TABLES))
    assert properties(body[200])[ofp.OFPTFPT_NEXT_TABLES] == tuple(range(201, N_TABLES))
    assert properties(last)[ofp.OFPTFPT_NEXT_TABLES] == ()
    actions = props[ofp.OFPTFPT_APPLY_ACTIONS]
    assert actions == props[ofp.OFPTFPT_WRITE_ACTIONS]
    assert {ofp.OFPAT_OUTPUT, ofp.OFPAT_GROUP, ofp.OFPAT_SET_FIELD, ofp.OFPAT_PUSH_MPLS} <= set(
        actions)
    # Every OF1.3 action but the experimenter's.
    assert set(actions) == {number for number, _ in ACTION_BY_TYPE.items()}
    match = props[ofp.OFPTFPT_MATCH]
    assert match == props[ofp.OFPTFPT_WILDCARDS]
    assert {'in_port', 'metadata', 'vlan_vid', 'tcp_dst', 'mpls_bos', 'tunnel_id',
            'pbb_isid'} <= set(match)
    assert not {'in_phy_port', 'ipv6_exthdr'} & set(match)
    setfield = props[ofp.OFPTFPT_APPLY_SETFIELD]
    assert setfield == props[ofp.OFPTFPT_WRITE_SETFIELD]
    assert {'eth_dst', 'vlan_vid', 'ipv4_src', 'tcp_dst', 'mpls_label', 'mpls_bos', 'pbb_isid',
            'icmpv4_type', 'icmpv6_code', 'ipv6_nd_target', 'ipv6_nd_sll'} <= set(setfield)
    assert not {'in_port', 'metadata', 'eth_type', 'ip_proto'} & set(setfield)
    assert reply(switch, ofp.OFPMP_TABLE_FEATURES) is body          # cached


def test_table_features_follow_the_table_limit(switch):
    switch.pipeline.tables[3].max_rules = 10
    body = reply(switch, ofp.OFPMP_TABLE_FEATURES)
    assert body[3].max_entries == 10 and body[2].max_entries != 10


def test_table_features_split_over_messages(switch):
    body = reply(switch, ofp.OFPMP_TABLE_FEATURES)
    parsed, ours = on_the_wire(ofp.OFPMP_TABLE_FEATURES, body)
    assert len(parsed) > 1
    assert [m.flags for m in parsed] == [ofp.OFPMPF_REPLY_MORE] * (len(parsed) - 1) + [0]
    assert tuple(f for message in ours for f in message.body) == body
    features = [f for message in parsed for f in message.body]
    assert [f.table_id for f in features] == list(range(N_TABLES))
    first = {p.type: p for p in features[0].properties}
    o, _, _ = ryu_of13()
    assert features[0].name == b'table0' and features[0].metadata_match == U64_MAX
    assert [i.type for i in first[o.OFPTFPT_INSTRUCTIONS].instruction_ids] == list(
        properties(body[0])[ofp.OFPTFPT_INSTRUCTIONS])
    assert first[o.OFPTFPT_NEXT_TABLES].table_ids == list(range(1, N_TABLES))
    assert [a.type for a in first[o.OFPTFPT_APPLY_ACTIONS].action_ids] == list(
        properties(body[0])[ofp.OFPTFPT_APPLY_ACTIONS])
    oxm = {i.type: i.hasmask for i in first[o.OFPTFPT_MATCH].oxm_ids}
    assert (oxm['in_port'], oxm['ipv4_src']) == (0, 1)
    assert len(oxm) == len(properties(body[0])[ofp.OFPTFPT_MATCH])
    setfield = [i.type for i in first[o.OFPTFPT_WRITE_SETFIELD].oxm_ids]
    assert setfield == list(properties(body[0])[ofp.OFPTFPT_WRITE_SETFIELD])


def test_table_features_reconfiguration_is_refused(switch):
    request_body = (TableFeatures(0, 'mine', properties=((ofp.OFPTFPT_NEXT_TABLES, ()),)),)
    assert error(switch, ofp.OFPMP_TABLE_FEATURES, request_body) == (
        ofp.OFPET_TABLE_FEATURES_FAILED, ofp.OFPTFFC_EPERM)


# ---- ports and queues ---------------------------------------------------------

def test_port_stats(switch):
    body = reply(switch, ofp.OFPMP_PORT_STATS, PortStatsRequest())
    assert [s.port_no for s in body] == [1, 2]
    one = body[0]
    assert (one.rx_packets, one.tx_packets, one.rx_bytes, one.tx_bytes, one.rx_dropped,
            one.tx_dropped, one.rx_errors) == (10, 20, 1000, 2000, 1, 3, 2)
    assert {one.tx_errors, one.rx_frame_err, one.rx_over_err, one.rx_crc_err,
            one.collisions} == {U64_MAX}
    assert (one.duration_sec, one.duration_nsec) == (60, 250_000_000)
    assert reply(switch, ofp.OFPMP_PORT_STATS, PortStatsRequest(2)) == body[1:]
    entries = ryu_entries(ofp.OFPMP_PORT_STATS, body)
    assert [(e.port_no, e.rx_packets, e.tx_bytes, e.collisions) for e in entries] == [
        (1, 10, 2000, U64_MAX), (2, 0, 0, U64_MAX)]


def test_port_stats_bad_port(switch):
    assert error(switch, ofp.OFPMP_PORT_STATS, PortStatsRequest(3)) == (
        ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_PORT)


def test_port_desc(switch):
    body = reply(switch, ofp.OFPMP_PORT_DESC)
    assert [(p.port_no, p.name) for p in body] == [(1, 's1-eth1'), (2, 's1-eth2')]
    entries = ryu_entries(ofp.OFPMP_PORT_DESC, body)
    assert [(e.port_no, e.name, e.hw_addr) for e in entries] == [
        (1, b's1-eth1', '02:00:00:00:00:01'), (2, b's1-eth2', '02:00:00:00:00:02')]


def test_queue_stats(switch):
    assert reply(switch, ofp.OFPMP_QUEUE, QueueStatsRequest()) == ()
    assert reply(switch, ofp.OFPMP_QUEUE, QueueStatsRequest(1)) == ()
    assert ryu_entries(ofp.OFPMP_QUEUE, ()) == []
    assert error(switch, ofp.OFPMP_QUEUE, QueueStatsRequest(3)) == (
        ofp.OFPET_QUEUE_OP_FAILED, ofp.OFPQOFC_BAD_PORT)
    assert error(switch, ofp.OFPMP_QUEUE, QueueStatsRequest(1, 0)) == (
        ofp.OFPET_QUEUE_OP_FAILED, ofp.OFPQOFC_BAD_QUEUE)


# ---- groups -------------------------------------------------------------------

def test_group_stats(switch):
    body = reply(switch, ofp.OFPMP_GROUP, GroupStatsRequest())
    assert switch.pushed == [NOW]
    # group 1: forwarded to by group 2 only; group 2: by the tcp_dst=80 rule.
    assert [(s.group_id, s.ref_count, s.packet_count, s.byte_count) for s in body] == [
        (1, 1, 4, 400), (2, 1, 0, 0)]
    assert body[0].bucket_stats == ((4, 400), (4, 400)) and body[1].bucket_stats == ((0, 0),)
    assert (body[0].duration_sec, body[0].duration_nsec) == (50, 250_000_000)
    assert reply(switch, ofp.OFPMP_GROUP, GroupStatsRequest(2)) == body[1:]
    assert reply(switch, ofp.OFPMP_GROUP, GroupStatsRequest(9)) == ()
    entries = ryu_entries(ofp.OFPMP_GROUP, body)
    assert [(e.group_id, e.ref_count, e.packet_count) for e in entries] == [(1, 1, 4), (2, 1, 0)]
    assert [(b.packet_count, b.byte_count) for b in entries[0].bucket_stats] == [(4, 400)] * 2


def test_group_desc(switch):
    body = reply(switch, ofp.OFPMP_GROUP_DESC)
    assert [(d.group_id, d.type, len(d.buckets)) for d in body] == [
        (1, ofp.OFPGT_ALL, 2), (2, ofp.OFPGT_INDIRECT, 1)]
    assert body[1].buckets[0].actions == (('group', 1),)
    entries = ryu_entries(ofp.OFPMP_GROUP_DESC, body)
    assert [(e.group_id, e.type, len(e.buckets)) for e in entries] == [(1, 0, 2), (2, 2, 1)]
    assert entries[0].buckets[0].actions[0].port == 2


def test_group_features(switch):
    body = reply(switch, ofp.OFPMP_GROUP_FEATURES)
    assert body.types == 0b1111
    assert body.capabilities == (ofp.OFPGFC_SELECT_WEIGHT | ofp.OFPGFC_SELECT_LIVENESS
                                 | ofp.OFPGFC_CHAINING | ofp.OFPGFC_CHAINING_CHECKS)
    assert body.max_groups == (ofp.OFPG_MAX,) * 4
    actions = body.actions[0]
    assert set(body.actions) == {actions}
    assert actions & 1 << ofp.OFPAT_GROUP and actions & 1 << ofp.OFPAT_PUSH_PBB
    assert not actions & 1 << 1                 # OF1.3 has no action type 1
    features = ryu_entries(ofp.OFPMP_GROUP_FEATURES, body)
    assert (features.types, features.max_groups, features.actions) == (
        0b1111, [ofp.OFPG_MAX] * 4, [actions] * 4)


# ---- meters -------------------------------------------------------------------

def test_meter_stats(switch):
    switch.dp.meters.apply(1, 100, 61.0)
    body = reply(switch, ofp.OFPMP_METER, MeterMultipartRequest())
    (stats,) = body
    assert (stats.meter_id, stats.flow_count, stats.packet_in_count, stats.byte_in_count) == (
        1, 1, 1, 100)
    assert (stats.duration_sec, stats.duration_nsec) == (40, 250_000_000)
    assert stats.band_stats == ((0, 0),)
    assert reply(switch, ofp.OFPMP_METER, MeterMultipartRequest(1)) == body
    assert reply(switch, ofp.OFPMP_METER, MeterMultipartRequest(2)) == ()
    (entry,) = ryu_entries(ofp.OFPMP_METER, body)
    assert (entry.meter_id, entry.flow_count, entry.packet_in_count, entry.duration_sec) == (
        1, 1, 1, 40)
    assert [(b.packet_band_count, b.byte_band_count) for b in entry.band_stats] == [(0, 0)]


def test_meter_config(switch):
    body = reply(switch, ofp.OFPMP_METER_CONFIG, MeterMultipartRequest())
    (config,) = body
    assert (config.meter_id, config.flags) == (1, ofp.OFPMF_PKTPS | ofp.OFPMF_BURST)
    assert config.bands == (MeterBand(ofp.OFPMBT_DROP, 100, 10),)
    assert reply(switch, ofp.OFPMP_METER_CONFIG, MeterMultipartRequest(7)) == ()
    (entry,) = ryu_entries(ofp.OFPMP_METER_CONFIG, body)
    assert (entry.meter_id, entry.flags) == (1, ofp.OFPMF_PKTPS | ofp.OFPMF_BURST)
    assert [(b.type, b.rate, b.burst_size) for b in entry.bands] == [(ofp.OFPMBT_DROP, 100, 10)]


def test_meter_features(switch):
    body = reply(switch, ofp.OFPMP_METER_FEATURES)
    assert (body.max_meter, body.band_types, body.max_bands, body.max_color) == (
        MAX_METERS, 1 << ofp.OFPMBT_DROP, MAX_BANDS, 0)
    assert body.capabilities == (ofp.OFPMF_KBPS | ofp.OFPMF_PKTPS | ofp.OFPMF_BURST
                                 | ofp.OFPMF_STATS)
    (features,) = ryu_entries(ofp.OFPMP_METER_FEATURES, body)     # Ryu: a list of one
    assert (features.max_meter, features.band_types, features.max_bands) == (
        MAX_METERS, 1 << ofp.OFPMBT_DROP, MAX_BANDS)


# ---- errors -------------------------------------------------------------------

@pytest.mark.parametrize('mp_type', [ofp.OFPMP_EXPERIMENTER, 14, 0x1234])
def test_unsupported_type(switch, mp_type):
    assert error(switch, mp_type) == (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_MULTIPART)
