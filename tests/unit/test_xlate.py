"""Translation: actions and megaflow masks of representative pipelines, and a
brute-force check of the megaflow property and of revalidation.

In the spirit of OVS's tests/ofproto-dpif.at, which checks the 'Megaflow:'
line of ofproto/trace: each test states the mask it expects, since an extra
bit costs speed and a missing one is a forwarding bug.
"""

import random
from types import SimpleNamespace

import pytest

from mnovs.dp.actions import validate_actions
from mnovs.dp.flow import KEY_LEN, make_key, make_mask
from mnovs.dp.tunnel import TunnelSpec, parse_tunnel_config
from mnovs.ofagent.group import HASH_BITS, GroupTable
from mnovs.ofagent.mac_learning import MacTable
from mnovs.ofagent.match import field_bits
from mnovs.ofagent.normal import NORMAL_MASK, NormalSwitch
from mnovs.openflow.ofp import (
    OFP_NO_BUFFER, OFPFC_ADD, OFPFC_DELETE, OFPFC_MODIFY, OFPG_ANY, OFPGC_ADD, OFPGC_MODIFY,
    OFPGT_ALL, OFPGT_FF, OFPGT_INDIRECT, OFPGT_SELECT, OFPP_ALL, OFPP_ANY,
    OFPP_CONTROLLER, OFPP_FLOOD, OFPP_IN_PORT, OFPP_LOCAL, OFPP_NORMAL, OFPP_TABLE,
    OFPPC_NO_FWD, OFPPC_NO_PACKET_IN, OFPPC_NO_RECV, OFPPS_BLOCKED, OFPR_ACTION,
    OFPR_INVALID_TTL, OFPR_NO_MATCH, OFPTT_ALL, OFPVID_NONE, OFPVID_PRESENT)
from mnovs.ofagent.table import Pipeline
from mnovs.ofagent.xlate import (
    XlateContext, credit_stats, decode_userdata, encode_userdata, format_action, xlate,
    xlate_packet_out)

MAC1, MAC2, MAC3 = 0x020000000001, 0x020000000002, 0x020000000003
IP1, IP2 = 0x0a000001, 0x0a000002
IPV4 = {'eth_type': (0x0800, None)}


def out(port, max_len=0xffff):
    return ('output', port, max_len)


def port(up=True, config=0, state=0, tunnel=None):
    return SimpleNamespace(up=up, config=config, state=state, tunnel=tunnel)


class Switch:
    """A pipeline, groups and ports, and helpers to program and translate."""

    def __init__(self, n_ports=4):
        self.groups = GroupTable()
        self.pipeline = Pipeline(groups=self.groups)
        self.ports = {no: port() for no in range(1, n_ports + 1)}
        dp = SimpleNamespace(ports=self.ports)
        self.normal = NormalSwitch(dp, MacTable())
        self.ctx = XlateContext(self.pipeline, self.groups, self.ports, self.normal.xlate)

    def add(self, match=None, actions=None, table_id=0, priority=100, instructions=None,
            cookie=0, command=OFPFC_ADD):
        if instructions is None:
            instructions = (('apply_actions', tuple(actions)),) if actions is not None else ()
        fm = SimpleNamespace(
            cookie=cookie, cookie_mask=0, table_id=table_id, command=command, idle_timeout=0,
            hard_timeout=0, priority=priority, buffer_id=OFP_NO_BUFFER, out_port=OFPP_ANY,
            out_group=OFPG_ANY, flags=0, match=match or {}, instructions=instructions)
        return self.pipeline.flow_mod(fm, 0.0)

    def group(self, group_id, type, buckets, command=OFPGC_ADD):
        buckets = [SimpleNamespace(weight=w, watch_port=wp, watch_group=OFPG_ANY,
                                   actions=tuple(a)) for w, wp, a in buckets]
        gm = SimpleNamespace(command=command, type=type, group_id=group_id, buckets=buckets)
        return self.groups.group_mod(gm, self.pipeline, 0.0)

    def xlate(self, trace=None, **fields):
        fields.setdefault('in_port', 1)
        return xlate(self.ctx, make_key(**fields), trace)


def mask(*names, **partial):
    """A megaflow mask: in_port and recirc_id plus the named fields, exact or partial."""
    value = int.from_bytes(make_mask(('in_port', 'recirc_id') + names), 'big')
    for name, ones in partial.items():
        value |= field_bits(name, ones)
    return value.to_bytes(KEY_LEN, 'big')


def as_mask(bits):
    return (bits | field_bits('in_port') | field_bits('recirc_id')).to_bytes(KEY_LEN, 'big')


@pytest.fixture
def sw():
    return Switch()


# --- masks of representative pipelines -------------------------------------

def test_in_port_forwarding(sw):
    sw.add({'in_port': (1, None)}, [out(2)])
    sw.add({'in_port': (2, None)}, [out(1)])
    result = sw.xlate(eth_type=0x800)
    assert result.actions == (('output', 2),) and result.mask == mask()
    assert result.cacheable and [r.priority for r in result.rules] == [100]


def test_miss_without_table_miss_rule_drops(sw):
    result = sw.xlate()
    assert result.actions == () and result.mask == mask() and result.rules == []


def test_port_rule_on_udp_does_not_read_the_port(sw):
    sw.add({**IPV4, 'ip_proto': (6, None), 'tcp_dst': (80, None)}, [out(2)], priority=10)
    sw.add({}, [out(3)], priority=0)
    udp = sw.xlate(eth_type=0x800, nw_proto=17, tp_dst=80)
    assert udp.actions == (('output', 3),) and udp.mask == mask('eth_type', 'nw_proto')
    arp = sw.xlate(eth_type=0x806)
    assert arp.mask == mask('eth_type')
    tcp = sw.xlate(eth_type=0x800, nw_proto=6, tp_dst=22)
    assert tcp.actions == (('output', 3),) and tcp.mask == mask('eth_type', 'nw_proto', 'tp_dst')


def test_rewritten_field_is_not_read_from_packet(sw):
    sw.add({}, instructions=(('apply_actions', (('set_field', 'eth_dst', MAC2),)),
                             ('goto_table', 1)))
    sw.add({'eth_dst': (MAC2, None)}, [out(2)], table_id=1)
    sw.add({'eth_dst': (MAC3, None)}, [out(3)], table_id=1, priority=200)
    result = sw.xlate(eth_dst=MAC1)
    assert result.actions == (('set_masked', 'eth_dst', MAC2.to_bytes(6, 'big'), b'\xff' * 6),
                              ('output', 2))
    assert result.mask == mask()


def test_set_field_without_the_field_is_ignored(sw):
    sw.add({}, [('set_field', 'tcp_dst', 8080), ('set_field', 'vlan_vid', OFPVID_PRESENT | 5),
                out(2)])
    udp = sw.xlate(eth_type=0x800, nw_proto=17, tp_dst=53)
    assert udp.actions == (('output', 2),)
    assert udp.mask == mask('eth_type', 'nw_proto', nw_frag=2, vlan_tci=0x1000)
    tcp = sw.xlate(eth_type=0x800, nw_proto=6, tp_dst=80, vlan_tpid=0x8100, vlan_tci=0x1007)
    assert tcp.actions == (('set_masked', 'vlan_tci', b'\x00\x05', b'\x0f\xff'),
                           ('set_masked', 'tp_dst', (8080).to_bytes(2, 'big'), b'\xff\xff'),
                           ('output', 2))


def test_field_widths_of_set_field(sw):
    sw.add({}, [('set_field', 'ip_dscp', 46), ('set_field', 'vlan_pcp', 5),
                ('set_field', 'arp_op', 2), out(2)])
    ip = sw.xlate(eth_type=0x800, vlan_tci=0x1001, vlan_tpid=0x8100)
    assert ip.actions == (('set_masked', 'vlan_tci', b'\xa0\x00', b'\xe0\x00'),
                          ('set_masked', 'nw_tos', bytes([46 << 2]), b'\xfc'),
                          ('output', 2))
    arp = sw.xlate(eth_type=0x806, nw_proto=1)
    assert arp.actions == (('set_masked', 'arp_op', b'\x00\x02', b'\xff\xff'), ('output', 2))


def test_action_set_order_and_group_overrides_output(sw):
    sw.group(1, OFPGT_INDIRECT, [(0, OFPP_ANY, [out(4)])])
    writes = (('write_actions', (out(3), ('set_field', 'eth_src', MAC3), ('dec_nw_ttl',))),
              ('goto_table', 1))
    sw.add({}, instructions=writes)
    sw.add({}, table_id=1, instructions=(('write_actions', (out(2),)),))
    result = sw.xlate(eth_type=0x800, nw_ttl=64)
    assert result.actions == (('set_masked', 'eth_src', MAC3.to_bytes(6, 'big'), b'\xff' * 6),
                              ('set_masked', 'nw_ttl', b'\x3f', b'\xff'),
                              ('output', 2))
    assert result.mask == mask('eth_type', 'nw_ttl')
    sw.add({}, table_id=1, instructions=(('write_actions', (out(2), ('group', 1))),))
    assert sw.xlate(eth_type=0x806).actions == (
        ('set_masked', 'eth_src', MAC3.to_bytes(6, 'big'), b'\xff' * 6), ('output', 4))
    sw.add({}, table_id=1, instructions=(('clear_actions',),))
    assert sw.xlate(eth_type=0x800, nw_ttl=64).actions == ()


def test_metadata_is_pipeline_state(sw):
    sw.add({'in_port': (1, None)}, instructions=(('write_metadata', 0x50, 0xf0),
                                                 ('goto_table', 2)))
    sw.add({'in_port': (2, None)}, instructions=(('goto_table', 2),))
    sw.add({'metadata': (0x50, 0xf0)}, [out(3)], table_id=2)
    sw.add({}, [out(4)], table_id=2, priority=1)
    one, two = sw.xlate(in_port=1), sw.xlate(in_port=2)
    assert one.actions == (('output', 3),) and two.actions == (('output', 4),)
    assert one.mask == two.mask == mask()


def test_dec_nw_ttl(sw):
    sw.add({}, [('dec_nw_ttl',), out(2)])
    ok = sw.xlate(eth_type=0x86dd, nw_ttl=2)
    assert ok.actions == (('set_masked', 'nw_ttl', b'\x01', b'\xff'), ('output', 2))
    assert ok.mask == mask('eth_type', 'nw_ttl')
    expired = sw.xlate(eth_type=0x800, nw_ttl=1)
    (name, userdata), = expired.actions
    assert name == 'userspace' and decode_userdata(userdata)[0] == OFPR_INVALID_TTL
    arp = sw.xlate(eth_type=0x806, nw_ttl=0)
    assert arp.actions == (('output', 2),) and arp.mask == mask('eth_type')


def test_controller_reasons_and_userdata(sw):
    sw.add({}, [out(OFPP_CONTROLLER, 128)], priority=0, cookie=7)
    sw.add({'in_port': (2, None)}, [out(OFPP_CONTROLLER)], cookie=9)
    (_, miss), = sw.xlate(in_port=1).actions
    assert decode_userdata(miss) == (OFPR_NO_MATCH, 0, 7, 128, 0)
    (_, action), = sw.xlate(in_port=2).actions
    assert decode_userdata(action) == (OFPR_ACTION, 0, 9, 0xffff, 0)
    assert decode_userdata(b'other') is None
    assert decode_userdata(encode_userdata(2, 3, 4, 5, 6)) == (2, 3, 4, 5, 6)
    sw.ports[2].config = OFPPC_NO_PACKET_IN
    assert sw.xlate(in_port=2).actions == ()


def test_outputs_flood_all_in_port(sw):
    sw.ports[3].config = OFPPC_NO_FWD
    sw.ports[4].state = OFPPS_BLOCKED
    sw.add({'eth_type': (0x800, None)}, [out(OFPP_FLOOD)])
    sw.add({'eth_type': (0x806, None)}, [out(OFPP_ALL)])
    sw.add({'eth_type': (0x86dd, None)}, [out(1), out(OFPP_IN_PORT), out(OFPP_LOCAL), out(9)])
    assert sw.xlate(in_port=1, eth_type=0x800).actions == (('output', 2),)
    assert sw.xlate(in_port=1, eth_type=0x806).actions == (('output', 2), ('output', 4))
    assert sw.xlate(in_port=1, eth_type=0x86dd).actions == (('output', 1),)
    sw.ports[2].up = False
    assert sw.xlate(in_port=1, eth_type=0x806).actions == (('output', 4),)


def test_no_recv_port_drops(sw):
    sw.add({}, [out(2)])
    sw.ports[1].config = OFPPC_NO_RECV
    result = sw.xlate(in_port=1)
    assert result.actions == () and result.mask == mask() and not result.rules


def test_normal(sw):
    sw.normal.macs.learn(0, MAC2.to_bytes(6, 'big'), 2, 0.0)
    sw.add({}, [out(OFPP_NORMAL)])
    known = sw.xlate(eth_src=MAC1, eth_dst=MAC2, eth_type=0x800)
    assert known.actions == (('output', 2),) and known.mask == NORMAL_MASK
    flood = sw.xlate(eth_src=MAC1, eth_dst=MAC3)
    assert flood.actions == (('output', 2), ('output', 3), ('output', 4))
    sw.ctx.normal = None
    assert sw.xlate(eth_src=MAC1, eth_dst=MAC2).actions == ()


def test_meter_comes_before_outputs(sw):
    sw.add({}, instructions=(('apply_actions', (out(2),)), ('meter', 5)))
    result = sw.xlate()
    assert result.actions == (('meter', 5), ('output', 2)) and result.meters == [5]


def test_all_group_buckets_act_on_copies(sw):
    sw.group(1, OFPGT_ALL, [(0, OFPP_ANY, [('set_field', 'eth_dst', MAC3), out(2)]),
                            (0, OFPP_ANY, [out(3)])])
    sw.add({}, [('group', 1), out(4)])
    result = sw.xlate(eth_dst=MAC1)
    orig = MAC1.to_bytes(6, 'big')
    assert result.actions == (
        ('set_masked', 'eth_dst', MAC3.to_bytes(6, 'big'), b'\xff' * 6), ('output', 2),
        ('set_masked', 'eth_dst', orig, b'\xff' * 6), ('output', 3), ('output', 4))
    assert result.mask == mask('eth_dst')       # restoring reads the packet's value
    group = sw.groups.get(1)
    assert result.groups == [(group, (0, 1))]


def test_bucket_pushes_and_pops_are_undone(sw):
    sw.group(1, OFPGT_ALL, [(0, OFPP_ANY, [('push_vlan', 0x8100),
                                           ('set_field', 'vlan_vid', OFPVID_PRESENT | 10),
                                           out(2)]),
                            (0, OFPP_ANY, [('pop_vlan',), out(3)])])
    sw.add({}, [('group', 1), out(4)])
    tagged = sw.xlate(vlan_tpid=0x8100, vlan_tci=0x1000 | 7)
    assert tagged.actions == (
        ('push_vlan', 0x8100, 7), ('set_masked', 'vlan_tci', b'\x00\x0a', b'\x0f\xff'),
        ('output', 2), ('pop_vlan',),
        ('pop_vlan',), ('output', 3), ('push_vlan', 0x8100, 7), ('output', 4))
    sw.add({}, [('group', 1)])
    untagged = sw.xlate()
    assert untagged.actions == (
        ('push_vlan', 0x8100, 0), ('set_masked', 'vlan_tci', b'\x00\x0a', b'\x0f\xff'),
        ('output', 2), ('pop_vlan',), ('pop_vlan',), ('output', 3))
    assert untagged.mask == mask('vlan_tci', 'vlan_tpid')


def test_select_group_reads_hash_fields(sw):
    sw.group(1, OFPGT_SELECT, [(1, OFPP_ANY, [out(2)]), (1, OFPP_ANY, [out(3)])])
    sw.add({}, [('group', 1)])
    result = sw.xlate(eth_type=0x800, nw_src=IP1, nw_dst=IP2, nw_proto=6)
    assert result.mask == as_mask(HASH_BITS)
    sw.ports[3].up = False                       # liveness is not in the mask
    sw.group(1, OFPGT_SELECT, [(1, 2, [out(2)]), (1, 3, [out(3)])], OFPGC_MODIFY)
    result = sw.xlate(eth_type=0x800, nw_src=IP1)
    assert result.actions == (('output', 2),) and result.mask == mask()


def test_fast_failover(sw):
    sw.group(1, OFPGT_FF, [(0, 2, [out(2)]), (0, 3, [out(3)])])
    sw.add({}, [('group', 1)])
    assert sw.xlate().actions == (('output', 2),)
    sw.ports[2].up = False
    assert sw.xlate().actions == (('output', 3),)


def test_vlan_push_pop(sw):
    sw.add({'vlan_vid': (OFPVID_NONE, None)},
           [('push_vlan', 0x88a8), ('set_field', 'vlan_vid', 100), out(2)])
    sw.add({'vlan_vid': (OFPVID_PRESENT, OFPVID_PRESENT)}, [('pop_vlan',), out(3)],
           priority=200)
    untagged = sw.xlate()
    assert untagged.actions == (('push_vlan', 0x88a8, 0),
                                ('set_masked', 'vlan_tci', b'\x00\x64', b'\x0f\xff'),
                                ('output', 2))
    assert untagged.mask == mask('vlan_tci')
    tagged = sw.xlate(vlan_tpid=0x8100, vlan_tci=0x1000 | 5 << 13 | 9)
    assert tagged.actions == (('pop_vlan',), ('output', 3))
    assert tagged.mask == mask(vlan_tci=0x1000)


def test_push_mpls_then_match_mpls(sw):
    sw.add(IPV4, instructions=(('apply_actions', (('push_mpls', 0x8847),)), ('goto_table', 1)))
    sw.add({'eth_type': (0x8847, None), 'mpls_bos': (1, None)},
           [('set_field', 'mpls_label', 17), ('dec_mpls_ttl',), out(2)], table_id=1)
    result = sw.xlate(eth_type=0x800, nw_ttl=64, nw_proto=6)
    assert result.actions == (
        ('push_mpls', 0x8847, 1 << 8 | 64),
        ('set_masked', 'mpls_lse', (17 << 12 | 63).to_bytes(4, 'big'),
         (0xfffff000 | 0xff).to_bytes(4, 'big')),
        ('output', 2))
    assert result.mask == mask('eth_type', 'nw_ttl')
    sw.add({'eth_type': (0x8847, None)}, [('pop_mpls', 0x0800), out(3)])
    popped = sw.xlate(eth_type=0x8847, mpls_lse=5 << 12 | 1 << 8 | 9)
    assert popped.actions == (('pop_mpls', 0x0800), ('output', 3))


def test_packet_out(sw):
    sw.add({'in_port': (OFPP_CONTROLLER, None)}, [out(3)], cookie=5)
    key = make_key(in_port=OFPP_CONTROLLER, eth_dst=MAC1)
    result = xlate_packet_out(sw.ctx, key, (('set_field', 'eth_dst', MAC2), out(2),
                                            out(OFPP_TABLE), out(OFPP_CONTROLLER, 64)))
    assert result.actions == (
        ('set_masked', 'eth_dst', MAC2.to_bytes(6, 'big'), b'\xff' * 6), ('output', 2),
        ('output', 3), result.actions[-1])
    assert decode_userdata(result.actions[-1][1]) == (OFPR_ACTION, OFPTT_ALL, 2 ** 64 - 1, 64, 0)
    assert [r.cookie for r in result.rules] == [5]


def test_trailing_rewrites_are_dropped(sw):
    sw.add({}, [out(2), ('set_field', 'eth_dst', MAC2), ('push_vlan', 0x8100)])
    assert sw.xlate().actions == (('output', 2),)


def test_credit_stats_and_trace(sw):
    sw.group(1, OFPGT_ALL, [(0, OFPP_ANY, [out(2)]), (0, OFPP_ANY, [out(3)])])
    sw.add({}, instructions=(('goto_table', 1),))
    sw.add({}, [('group', 1)], table_id=1)
    trace = []
    result = sw.xlate(trace=trace)
    credit_stats(result, 3, 300, 9.0)
    assert [(r.packet_count, r.byte_count, r.last_used) for r in result.rules] == \
        [(3, 300, 9.0)] * 2
    group = sw.groups.get(1)
    assert (group.packet_count, group.byte_count, group.bucket_counts) == \
        (3, 300, [[3, 300], [3, 300]])
    assert trace == ['table 0: priority 100 cookie 0x0 *', 'table 1: priority 100 cookie 0x0 *',
                     'group:0x1', 'group 1 bucket 0', '    output:2', 'group 1 bucket 1',
                     '    output:3']


def test_format_action():
    assert format_action(out(OFPP_CONTROLLER, 128)) == 'output:CONTROLLER'
    assert format_action(out(7)) == 'output:7'
    assert format_action(('set_field', 'vlan_vid', 0x1005)) == 'set_field:0x1005->vlan_vid'
    assert format_action(('push_vlan', 0x8100)) == 'push_vlan:0x8100'
    assert format_action(('pop_vlan',)) == 'pop_vlan'


def test_group_removal_deletes_rules_and_deleted_rules_stop_matching(sw):
    sw.group(1, OFPGT_INDIRECT, [(0, OFPP_ANY, [out(2)])])
    sw.add({}, [('group', 1)])
    removed, _ = sw.groups.group_mod(SimpleNamespace(command=2, type=0, group_id=1, buckets=[]),
                                     sw.pipeline, 0)
    assert len(removed) == 1 and sw.xlate().actions == ()


# --- brute force: the megaflow property and revalidation --------------------

PORTS = (1, 2, 3, 4)
MACS = (MAC1, MAC2, MAC3, 0xffffffffffff)
IPS = (IP1, IP2, 0x0a000101)
TCIS = (0, 0x1000 | 10, 0x1000 | 3 << 13 | 20)


def random_key(rng):
    eth_type = rng.choice((0x800, 0x800, 0x806, 0x86dd, 0x8847))
    tci = rng.choice(TCIS)
    fields = dict(in_port=rng.choice(PORTS), eth_src=rng.choice(MACS[:3] + (0x010000000005,)),
                  eth_dst=rng.choice(MACS), eth_type=eth_type, vlan_tci=tci,
                  vlan_tpid=0x8100 if tci else 0)
    if eth_type == 0x806:
        fields.update(nw_proto=rng.choice((1, 2)), nw_src=rng.choice(IPS), nw_dst=rng.choice(IPS))
    elif eth_type == 0x8847:
        fields.update(mpls_lse=rng.choice((16, 17)) << 12 | rng.choice((0, 1)) << 8
                      | rng.choice((1, 64)))
    else:
        fields.update(nw_proto=rng.choice((6, 17, 1)), nw_ttl=rng.choice((1, 2, 64)),
                      nw_tos=rng.choice((0, 46 << 2)), nw_frag=rng.choice((0, 0, 3)),
                      tp_src=rng.choice((80, 443, 1000)), tp_dst=rng.choice((80, 443, 1000)))
        if eth_type == 0x800:
            fields.update(nw_src=rng.choice(IPS), nw_dst=rng.choice(IPS))
        else:
            fields.update(ipv6_src=rng.choice(IPS), ipv6_dst=rng.choice(IPS))
    return make_key(**fields)


def random_match(rng, table_id):
    match = {}
    if rng.random() < 0.4:
        match['in_port'] = (rng.choice(PORTS), None)
    if rng.random() < 0.3:
        match['eth_dst'] = rng.choice(((rng.choice(MACS), None), (0x010000000000, 0x010000000000)))
    if rng.random() < 0.2:
        match['vlan_vid'] = rng.choice(((OFPVID_NONE, None), (OFPVID_PRESENT | 10, None),
                                        (OFPVID_PRESENT, OFPVID_PRESENT)))
    if table_id and rng.random() < 0.3:
        match['metadata'] = (rng.choice((0, 1, 2)), 3)
    if rng.random() < 0.6:
        eth_type = rng.choice((0x800, 0x806, 0x86dd, 0x8847))
        match['eth_type'] = (eth_type, None)
        if eth_type == 0x8847 and rng.random() < 0.5:
            match['mpls_label'] = (rng.choice((16, 17)), None)
        if eth_type == 0x800 and rng.random() < 0.5:
            match['ipv4_dst'] = rng.choice(((IP1, None), (0x0a000000, 0xffffff00)))
        if eth_type in (0x800, 0x86dd) and rng.random() < 0.5:
            proto = rng.choice((6, 17))
            match['ip_proto'] = (proto, None)
            if rng.random() < 0.6:
                match['tcp_dst' if proto == 6 else 'udp_src'] = (rng.choice((80, 443)), None)
    return match


def random_actions(rng, groups):
    choices = [
        lambda: out(rng.choice(PORTS)), lambda: out(rng.choice(PORTS)),
        lambda: out(rng.choice((OFPP_IN_PORT, OFPP_FLOOD, OFPP_NORMAL, OFPP_CONTROLLER))),
        lambda: ('set_field', 'eth_dst', rng.choice(MACS)),
        lambda: ('set_field', 'ipv4_dst', rng.choice(IPS)),
        lambda: ('set_field', 'tcp_dst', rng.choice((80, 8080))),
        lambda: ('set_field', 'vlan_vid', OFPVID_PRESENT | rng.choice((10, 30))),
        lambda: ('push_vlan', 0x8100), lambda: ('pop_vlan',), lambda: ('dec_nw_ttl',),
        lambda: ('push_mpls', 0x8847), lambda: ('pop_mpls', 0x0800),
        lambda: ('set_field', 'mpls_label', 18), lambda: ('dec_mpls_ttl',),
    ]
    if groups:
        choices.append(lambda: ('group', rng.choice(groups)))
    return tuple(rng.choice(choices)() for _ in range(rng.randrange(4)))


def random_rule(rng, sw, n_tables=3):
    table_id = rng.randrange(n_tables)
    groups = list(sw.groups.groups)
    instructions = []
    if rng.random() < 0.8:
        instructions.append(('apply_actions', random_actions(rng, groups)))
    if rng.random() < 0.3:
        instructions.append(('write_actions', random_actions(rng, groups)[:2]))
    if rng.random() < 0.1:
        instructions.append(('clear_actions',))
    if rng.random() < 0.3:
        instructions.append(('write_metadata', rng.choice((0, 1, 2)), 3))
    if table_id + 1 < n_tables and rng.random() < 0.5:
        instructions.append(('goto_table', rng.randrange(table_id + 1, n_tables)))
    match = random_match(rng, table_id)
    return dict(match=match, table_id=table_id, priority=3 * len(match) + rng.randrange(4),
                instructions=tuple(instructions))


def random_switch(rng):
    sw = Switch()
    sw.ports[4].config = OFPPC_NO_FWD
    for vlan, mac, port_no in ((0, MAC1, 1), (0, MAC2, 2), (10, MAC3, 3), (20, MAC2, 1)):
        sw.normal.macs.learn(vlan, mac.to_bytes(6, 'big'), port_no, 0.0)
    sw.group(1, OFPGT_ALL, [(0, OFPP_ANY, [('set_field', 'eth_src', MAC3), out(2)]),
                            (0, OFPP_ANY, [('push_vlan', 0x8100), out(3)]),
                            (0, OFPP_ANY, [('pop_vlan',), ('pop_mpls', 0x800), out(1)]),
                            (0, OFPP_ANY, [('push_mpls', 0x8847), out(4)])])
    sw.group(2, OFPGT_SELECT, [(1, OFPP_ANY, [out(1)]), (2, OFPP_ANY, [out(2)]),
                               (1, OFPP_ANY, [('dec_nw_ttl',), out(3)])])
    sw.group(3, OFPGT_FF, [(0, 4, [out(4)]), (0, 3, [('group', 1)])])
    for _ in range(40):
        sw.add(**random_rule(rng, sw))
    return sw


def mix(key, mask, other):
    """A key that agrees with `key` on `mask` and with `other` elsewhere."""
    m = int.from_bytes(mask, 'big')
    k = int.from_bytes(key, 'big') & m | int.from_bytes(other, 'big') & ~m
    return k.to_bytes(KEY_LEN, 'big')


@pytest.mark.parametrize('seed', range(12))
def test_megaflow_property(seed):
    rng = random.Random(seed)
    sw = random_switch(rng)
    for i in range(200):
        key = random_key(rng)
        result = xlate(sw.ctx, key, [] if i % 10 == 0 else None)
        assert result.cacheable
        validate_actions(result.actions)            # the datapath accepts them
        for _ in range(10):
            other = xlate(sw.ctx, mix(key, result.mask, random_key(rng)))
            assert other.actions == result.actions
            assert other.rules == result.rules and other.mask == result.mask


def random_edit(rng, sw):
    kind = rng.random()
    if kind < 0.4:
        sw.add(**random_rule(rng, sw))
    elif kind < 0.6:
        rules = list(sw.pipeline)
        if rules:
            rule = rng.choice(rules)
            sw.add(rule.match, table_id=rule.table_id, command=OFPFC_DELETE)
    elif kind < 0.75:
        rule = random_rule(rng, sw)
        rule['command'] = OFPFC_MODIFY
        sw.add(**rule)
    elif kind < 0.85:
        sw.group(1, OFPGT_ALL, [(0, OFPP_ANY, [out(rng.choice(PORTS))])], OFPGC_MODIFY)
    else:
        no = rng.choice(PORTS)
        sw.ports[no].up = not sw.ports[no].up


@pytest.mark.parametrize('seed', range(8))
def test_revalidation_keeps_cache_exact(seed):
    rng = random.Random(100 + seed)
    sw = random_switch(rng)
    cache = {}                          # (masked key, mask) -> actions
    for _ in range(8):
        for _ in range(60):
            key = random_key(rng)
            result = xlate(sw.ctx, key)
            masked = mix(key, result.mask, bytes(KEY_LEN))
            cache[masked, result.mask] = result.actions
        for _ in range(rng.randrange(1, 4)):
            random_edit(rng, sw)
        for (masked, mask_), actions in list(cache.items()):
            fresh = xlate(sw.ctx, masked)
            if fresh.mask != mask_ or fresh.actions != actions:
                del cache[masked, mask_]
        for _ in range(60):
            key = random_key(rng)
            expected = xlate(sw.ctx, key).actions
            for (masked, mask_), actions in cache.items():
                if mix(key, mask_, bytes(KEY_LEN)) == masked:
                    assert actions == expected


# --- tunnel ports --------------------------------------------------------------

def tunnel_port(**options):
    config, _ = parse_tunnel_config('vx1', 'vxlan', {'remote_ip': '10.0.2.1', **options})
    return port(tunnel=config)


def ip4(text):
    return bytes(int(part) for part in text.split('.'))


def test_output_to_tunnel_port_sets_the_tunnel_first(sw):
    sw.ports[5] = tunnel_port(key='42', local_ip='10.0.1.1')
    sw.add({'in_port': (1, None)}, [out(5)])
    result = sw.xlate(eth_type=0x800)
    assert result.actions == (
        ('set_tunnel', TunnelSpec(42, ip4('10.0.1.1'), ip4('10.0.2.1'), 0, 64, 4789, 0b101)),
        ('output', 5))
    assert result.mask == mask()                 # fixed key and addresses read nothing


def test_key_flow_takes_set_field_tunnel_id_and_reads_nothing(sw):
    sw.ports[5] = tunnel_port(key='flow')
    sw.add({'in_port': (1, None)}, [('set_field', 'tunnel_id', 43), out(5)])
    result = sw.xlate()
    assert result.actions[0][1].tun_id == 43 and result.actions[1] == ('output', 5)
    assert result.mask == mask()


def test_remote_ip_flow_needs_tun_dst(sw):
    sw.ports[5] = tunnel_port(remote_ip='flow')
    sw.add({'in_port': (1, None)}, [out(5)])
    assert sw.xlate().actions == ()
    sw.add({'in_port': (1, None)}, [('set_field', 'tun_ipv4_dst', 0x0a000203), out(5)])
    assert sw.xlate().actions[0][1].ip_dst == ip4('10.0.2.3')


def test_tos_and_ttl_inherit_read_the_inner_header(sw):
    sw.ports[5] = tunnel_port(tos='inherit', ttl='inherit')
    sw.add({'in_port': (1, None)}, [out(5)])
    spec = sw.xlate(eth_type=0x800, nw_tos=0xb9, nw_ttl=7).actions[0][1]
    assert (spec.tos, spec.ttl) == (0xb8, 7)
    assert sw.xlate(eth_type=0x800).mask == mask('eth_type', 'nw_ttl', nw_tos=0xfc)


def test_packet_from_a_tunnel_matches_its_tunnel_metadata(sw):
    sw.ports[5] = tunnel_port(key='flow')
    sw.add({'tunnel_id': (43, None)}, [out(2)], priority=200)
    sw.add({}, [out(3)])
    hit = sw.xlate(in_port=5, tun_id=43, tun_src=ip4('10.0.2.1'), tun_flags=4)
    miss = sw.xlate(in_port=5, tun_id=42, tun_src=ip4('10.0.2.1'), tun_flags=4)
    assert hit.actions == (('output', 2),) and miss.actions == (('output', 3),)
    assert hit.mask == mask('tun_id', 'tun_src', 'tun_dst', 'tun_tos', tun_flags=7)


def test_normal_floods_into_tunnels_with_their_headers(sw):
    sw.ports[5] = tunnel_port(key='7')
    sw.add({}, [out(OFPP_NORMAL)])
    actions = sw.xlate(eth_src=MAC1, eth_dst=MAC3).actions
    assert actions[:3] == (('output', 2), ('output', 3), ('output', 4))
    assert actions[3][0] == 'set_tunnel' and actions[3][1].tun_id == 7
    assert actions[4] == ('output', 5)
