"""ofproto/trace: the flow syntax both ways, the story of representative
pipelines, and the Megaflow line against the mask xlate returns.

As OVS's tests/ofproto-dpif.at checks the 'Megaflow:' line of a trace, every
pipeline test here parses that line back and compares it with xlate's mask;
one test goes further and compares it with the megaflow a real OFProto
installs in its datapath for the same packet.
"""

import random
import socket
import time
from types import SimpleNamespace

import pytest
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether

from mnovs.dp.flow import KEY_LEN, flow_extract, md_of, make_key, make_mask
from mnovs.ofagent.match import KEY_ONES, METADATA_SHIFT, compile_match, field_shift
from mnovs.openflow.ofp import (
    OFPGT_ALL, OFPGT_FF, OFPGT_SELECT, OFPP_ANY, OFPP_CONTROLLER, OFPP_FLOOD, OFPP_NORMAL,
    OFPPC_NO_FWD, OFPPC_NO_RECV)
from mnovs.ofagent.table import FlowTable, Rule
from mnovs.ofagent.ofctl_syntax import (
    FIELDS, field_items, format_flow, format_match, parse_flow, parse_match)
from mnovs.ofagent.trace import _visits, format_action, trace
from mnovs.ofagent.xlate import xlate, xlate_trace
from test_ofproto import Switch as OFSwitch, apply, output, udp
from test_xlate import IPV4, Switch, out

MAC1, MAC2, MAC9 = 0x020000000001, 0x020000000002, 0x000000000009


def ip4(text):
    return int.from_bytes(socket.inet_pton(socket.AF_INET, text), 'big')


class TracedSwitch(Switch):
    """test_xlate's switch with what trace() reads of an OFProto."""

    def __init__(self):
        super().__init__()
        for port_no, port in self.ports.items():
            port.name = f's1-eth{port_no}'
        self.fail_open = False
        self.ofproto = SimpleNamespace(name='s1', ctx=self.ctx, ports=self.ports,
                                       normal=self.normal, fail_open=lambda: self.fail_open)

    def trace(self, flow):
        """The trace text, after checking its Megaflow line against xlate's mask."""
        text = trace(self.ofproto, flow)
        key = parse_flow(flow, {p.name: n for n, p in self.ports.items()})
        mask = self.normal.xlate(key)[1] if self.fail_open else xlate(self.ctx, key).mask
        megaflow = line(text, 'Megaflow: ')
        assert parse_match(megaflow) == (masked(key, mask), mask), megaflow
        assert '(no reason recorded)' not in text
        return text


def line(text, prefix):
    (found,) = [ln[len(prefix):] for ln in text.splitlines() if ln.startswith(prefix)]
    return found


def masked(key, mask):
    return bytes(k & m for k, m in zip(key, mask))


def why(text, field):
    """The reason lines of one field in 'Why these fields are in the megaflow'."""
    lines = text.split('Why these fields are in the megaflow:\n')[1].split('\n\n')[0]
    out, mine = [], False
    for ln in lines.splitlines():
        if ln[2:3] != ' ':
            mine = ln[2:].startswith(field + '=')
        if mine:
            out.append(ln.split('  ', 2)[-1].strip())
    return out


@pytest.fixture
def sw():
    return TracedSwitch()


# --- parsing flows -----------------------------------------------------------

@pytest.mark.parametrize('flow, message', [
    ('tcp,tp_dst=80', 'missing in_port'),
    ('in_port=1,foo=3', "foo=3: unknown field 'foo'"),
    ('in_port=1,bogus', 'bogus: unknown field or protocol'),
    ('in_port', 'in_port: needs a value'),
    ('in_port=1,metadata=3', 'metadata is pipeline state, not a packet field'),
    ('in_port=1,nw_src=10.0.0.1', 'nw_src=10.0.0.1: nw_src needs ip or arp'),
    ('in_port=1,udp,tcp_dst=80', 'tcp_dst needs tcp or tcp6'),
    ('in_port=1,ip,icmp_type=8', 'icmp_type needs icmp or icmp6'),
    ('in_port=1,arp,nd_target=::1', 'nd_target needs icmp6,icmp_type=135 or 136'),
    ('in_port=1,ip,nw_src=1.2.3.400', "'1.2.3.400' is not an IPv4 address"),
    ('in_port=1,ipv6,ipv6_src=1::2::3', 'is not an IPv6 address'),
    ('in_port=1,ip,nw_ttl=300', 'nw_ttl=300: 300 does not fit in 8 bits'),
    ('in_port=1,icmp,icmp_type=256', 'too big'),
    ('in_port=1,dl_src=zz', "'zz' is not a MAC address"),
    ('in_port=x', "in_port=x: no port is named 'x'"),
    ('in_port=1,ip,nw_ttl=x', "'x' is not a number"),
    ('in_port=1,ip,nw_dst=10.0.0.0/24', 'a flow is one packet, it has no masks'),
    ('in_port=1,ip,nw_frag=yes', 'no masks'),
    ('in_port=1,ip,nw_frag=maybe', 'nw_frag is no, first or later'),
    ('in_port=1,tcp,udp', 'udp: conflicts with tcp'),
    ('in_port=1,ip,dl_type=0x86dd', 'dl_type=0x86dd: conflicts with ip'),
    ('in_port=1,tcp,tcp_flags=+syn+bogus', "'bogus' is not a TCP flag"),
    ('in_port=1,vlan_vid=10', 'needs OFPVID_PRESENT'),
    ('in_port=1,vlan_tci=0x0005', 'a tag needs the present bit'),
    ('in_port=1,ip,nw_tos=3', 'the low 2 bits of nw_tos are ECN'),
])
def test_parse_errors_are_one_line(flow, message):
    with pytest.raises(ValueError) as err:
        parse_flow(flow)
    assert message in str(err.value) and '\n' not in str(err.value)


def test_parse_a_tcp_packet_with_aliases_and_names():
    key = parse_flow('in_port=s1-eth3, tcp, dl_src=02:00:00:00:00:01, eth_dst=2:0:0:0:0:2,'
                     'ip_src=10.0.0.1,nw_dst=10.0.0.2,nw_ttl=64,nw_tos=0x10,nw_ecn=1,'
                     'tcp_src=1234,tp_dst=80,tcp_flags=+syn+ack-fin', {'s1-eth3': 3})
    assert key == make_key(in_port=3, eth_type=0x800, nw_proto=6, eth_src=MAC1, eth_dst=MAC2,
                           nw_src=ip4('10.0.0.1'), nw_dst=ip4('10.0.0.2'), nw_ttl=64,
                           nw_tos=0x11, tp_src=1234, tp_dst=80, tcp_flags=0x12)
    assert parse_flow('in_port=3,eth_type=0x0800,ip_proto=6,tcp_dst=80') == \
        parse_flow('tcp,in_port=3,tp_dst=80')
    assert parse_flow('in_port=1,tcp,tcp_flags=0x012') == \
        parse_flow('in_port=1,tcp,tcp_flags=syn|ack')
    assert parse_flow('in_port=1,ip,ip_dscp=4') == parse_flow('in_port=1,ip,nw_tos=16')


def test_parse_vlan_mpls_arp_nd_and_fragments():
    tagged = make_key(in_port=1, vlan_tpid=0x8100, vlan_tci=0x300a)
    assert parse_flow('in_port=1,dl_vlan=10,dl_vlan_pcp=1') == tagged
    assert parse_flow('in_port=1,vlan_tci=0x300a') == tagged
    assert parse_flow('in_port=1,vlan_vid=0x100a,dl_vlan_pcp=1') == tagged
    assert parse_flow('in_port=1,dl_vlan=10,vlan_tpid=0x88a8') == \
        make_key(in_port=1, vlan_tpid=0x88a8, vlan_tci=0x100a)
    assert parse_flow('in_port=1,mpls,mpls_label=5,mpls_tc=2,mpls_bos=1,mpls_ttl=9') == \
        make_key(in_port=1, eth_type=0x8847, mpls_lse=5 << 12 | 2 << 9 | 1 << 8 | 9)
    assert parse_flow('in_port=1,arp,arp_op=2,arp_spa=10.0.0.1,arp_tha=02:00:00:00:00:02') == \
        make_key(in_port=1, eth_type=0x806, nw_proto=2, nw_src=ip4('10.0.0.1'), arp_tha=MAC2)
    nd = parse_flow('in_port=1,icmp6,icmp_type=135,nd_target=fe80::1,nd_sll=02:00:00:00:00:01')
    assert nd == make_key(in_port=1, eth_type=0x86dd, nw_proto=58, tp_src=135, arp_sha=MAC1,
                          nd_target=socket.inet_pton(socket.AF_INET6, 'fe80::1'))
    assert parse_flow('in_port=1,udp6,nw_frag=later') == \
        make_key(in_port=1, eth_type=0x86dd, nw_proto=17, nw_frag=3)


# --- formatting, both ways -----------------------------------------------------

def frames():
    """Real packets of every kind flow_extract parses."""
    eth = Ether(src='02:00:00:00:00:01', dst='02:00:00:00:00:02')
    ip = IP(src='10.0.0.1', dst='10.0.0.2', tos=0x2d, ttl=17)
    ip6 = IPv6(src='2001:db8::1', dst='2001:db8::2', fl=0x12345, hlim=3)
    return [eth / ip / TCP(sport=1, dport=80, flags='SA'), eth / ip / UDP(dport=53),
            eth / ip / ICMP(type=8), eth / Dot1Q(vlan=10, prio=5) / ip / TCP(),
            eth / IP(frag=10) / UDP(), eth / ip6 / UDP(sport=7, dport=9),
            eth / ARP(op=2, psrc='10.0.0.1', pdst='10.0.0.2', hwsrc='02:00:00:00:00:01'),
            eth / ip6 / ICMPv6ND_NS(tgt='fe80::1') / ICMPv6NDOptSrcLLAddr(
                lladdr='02:00:00:00:00:01'),
            eth / MPLS(label=100, cos=3, ttl=5) / ip, eth / Dot1Q(vlan=0) / ip6 / TCP(),
            Ether(type=0x0800) / bytes(4)]


@pytest.mark.parametrize('frame', frames(), ids=lambda f: f.summary())
def test_format_flow_parses_back_to_the_same_key(frame):
    key, _ = flow_extract(bytes(frame), md_of(7))
    text = format_flow(key)
    assert parse_flow(text) == key, text
    assert '=0,' not in text.replace('dl_vlan=0,', '') + ','    # zeros are left out


def test_format_flow_examples():
    assert format_flow(parse_flow('in_port=1,tcp,nw_src=10.0.0.1,tp_dst=80')) == \
        'tcp,in_port=1,nw_src=10.0.0.1,tp_dst=80'
    assert format_flow(parse_flow('in_port=1,dl_vlan=10,arp,arp_op=1')) == \
        'arp,in_port=1,dl_vlan=10,arp_op=1'
    assert format_flow(parse_flow('in_port=1,icmp6,icmp_type=136,nd_tll=2:0:0:0:0:1')) == \
        'icmp6,in_port=1,icmp_type=136,nd_tll=02:00:00:00:00:01'


@pytest.mark.parametrize('match, text', [
    ({'in_port': (1, None)}, 'in_port=1'),
    ({**IPV4, 'ipv4_dst': (0x0a000000, 0xffffff00)}, 'ip,nw_dst=10.0.0.0/24'),
    ({**IPV4, 'ipv4_src': (0x0a000000, 0xff00ff00)}, 'ip,nw_src=10.0.0.0/255.0.255.0'),
    ({**IPV4, 'ip_proto': (6, None), 'tcp_dst': (80, None)}, 'tcp,tp_dst=80'),
    ({'eth_type': (0x86dd, None), 'ip_proto': (58, None), 'icmpv6_type': (135, None),
      'ipv6_nd_target': (1, None)}, 'icmp6,icmp_type=135,nd_target=::1'),
    ({'eth_type': (0x806, None), 'arp_op': (1, None), 'arp_spa': (ip4('10.0.0.1'), None)},
     'arp,arp_spa=10.0.0.1,arp_op=1'),
    ({'vlan_vid': (0x1000, 0x1000)}, 'vlan_tci=0x1000/0x1000'),
    ({'vlan_vid': (0, None)}, 'vlan_tci=0x0000/0x1fff'),
    ({'vlan_vid': (0x100a, None)}, 'dl_vlan=10'),
    ({'vlan_vid': (0x100a, None), 'vlan_pcp': (3, None)}, 'dl_vlan=10,dl_vlan_pcp=3'),
    ({'eth_dst': (1 << 40, 1 << 40)}, 'dl_dst=01:00:00:00:00:00/01:00:00:00:00:00'),
    ({**IPV4, 'ip_dscp': (4, None), 'ip_ecn': (1, None)}, 'ip,nw_tos=16,nw_ecn=1'),
    ({'eth_type': (0x8847, None), 'mpls_label': (5, None), 'mpls_bos': (1, None)},
     'mpls,mpls_label=5,mpls_bos=1'),
    ({'eth_type': (0x86dd, None), 'ipv6_flabel': (0x12345, None)}, 'ipv6,ipv6_label=0x12345'),
])
def test_format_match_of_rule_matches(match, text):
    value, mask = compile_match(match)
    assert format_match(value & KEY_ONES, mask & KEY_ONES) == text
    assert parse_match(text) == (value.to_bytes(KEY_LEN, 'big'), mask.to_bytes(KEY_LEN, 'big'))


def test_format_match_parses_back_for_any_mask():
    """Random keys under random masks, field by field and bit by bit."""
    rng = random.Random(4)
    keys = [flow_extract(bytes(frame), md_of(3))[0] for frame in frames()]
    fields = [field for field in FIELDS.values()]
    for _ in range(2000):
        key = int.from_bytes(rng.choice(keys), 'big') ^ rng.getrandbits(KEY_LEN * 8) \
            & rng.choice((0, KEY_ONES))
        mask = 0
        for field in rng.sample(fields, rng.randint(0, 6)):
            ones = rng.choice((field.full, (1 << field.bits) - 1, rng.getrandbits(field.bits)))
            mask |= ones << (field_shift_of(field))
        text = format_match(key, mask)
        assert parse_match(text) == ((key & mask).to_bytes(KEY_LEN, 'big'),
                                     mask.to_bytes(KEY_LEN, 'big')), text


def field_shift_of(field):
    return field_shift(field.key) + field.low


def test_format_action():
    assert format_action(out(2)) == 'output:2'
    assert format_action(out(OFPP_CONTROLLER, 128)) == 'CONTROLLER:128'
    assert format_action(out(OFPP_NORMAL)) == 'NORMAL'
    assert format_action(('set_field', 'eth_dst', MAC2)) == 'set_field:02:00:00:00:00:02->eth_dst'
    assert format_action(('set_field', 'ipv4_src', ip4('10.0.0.1'))) == \
        'set_field:10.0.0.1->ipv4_src'
    assert format_action(('set_field', 'vlan_vid', 0x1005)) == 'set_field:4101->vlan_vid'
    assert format_action(('dec_nw_ttl',)) == 'dec_ttl'
    assert format_action(('push_vlan', 0x8100)) == 'push_vlan:0x8100'
    assert format_action(('group', 7)) == 'group:7'


# --- traces of representative pipelines ----------------------------------------

def test_goto_set_field_and_dec_ttl(sw):
    sw.add({'in_port': (1, None), **IPV4, 'ipv4_dst': (0x0a000000, 0xffffff00)},
           instructions=(('apply_actions', (('set_field', 'eth_dst', MAC9), ('dec_nw_ttl',))),
                         ('goto_table', 1)), priority=10, cookie=5)
    sw.add({**IPV4, 'ip_proto': (6, None), 'tcp_dst': (80, None)}, [out(3)], priority=20)
    sw.add({'eth_dst': (MAC9, None)}, [out(2)], table_id=1)
    text = sw.trace('in_port=1,udp,nw_dst=10.0.0.2,nw_ttl=64')
    assert text.startswith('Flow: udp,in_port=1,nw_dst=10.0.0.2,nw_ttl=64\n\n'
                           'bridge("s1")\n------------\n')
    steps = text.split('------------\n')[1].split('\n\n')[0]
    assert steps == '\n'.join([
        ' 0. ip,in_port=1,nw_dst=10.0.0.0/24, priority 10, cookie 0x5',
        '    set_field:00:00:00:00:00:09->eth_dst',
        '     -> now dl_dst=00:00:00:00:00:09 (was dl_dst=0)',
        '    dec_ttl',
        '     -> now nw_ttl=63 (was nw_ttl=64)',
        '    goto_table:1',
        ' 1. dl_dst=00:00:00:00:00:09, priority 100',
        '    output:2',
        '     -> datapath: set(eth(dst=00:00:00:00:00:09)),set(ipv4(ttl=63)),2  [2=s1-eth2]'])
    assert line(text, 'Final flow: ') == \
        'udp,in_port=1,dl_dst=00:00:00:00:00:09,nw_dst=10.0.0.2,nw_ttl=63'
    assert line(text, 'Megaflow: ') == 'recirc_id=0,udp,in_port=1,nw_dst=10.0.0.0/24,nw_ttl=64'
    assert line(text, 'Datapath actions: ') == \
        'set(eth(dst=00:00:00:00:00:09)),set(ipv4(ttl=63)),2'
    assert why(text, 'in_port') == [
        'always exact: every megaflow matches its input port',
        'also table 0: matched rule "priority 10 ip,in_port=1,nw_dst=10.0.0.0/24"']
    assert why(text, 'nw_proto') == ['table 0: ruled out rule "priority 20 tcp,tp_dst=80"']
    assert why(text, 'nw_ttl') == ['table 0: dec_ttl reads the TTL to decrement it']
    assert why(text, 'nw_dst') == [
        'table 0: matched rule "priority 10 ip,in_port=1,nw_dst=10.0.0.0/24"']
    assert text.endswith('Read, but not in the megaflow (the pipeline had set them first):\n'
                         '  dl_dst  table 1: matched rule '
                         '"priority 100 dl_dst=00:00:00:00:00:09"')


def test_table_miss_without_a_miss_rule(sw):
    sw.add({'in_port': (2, None)}, [out(1)])
    text = sw.trace('in_port=1,ip')
    assert ' 0. No match. (drop: no rule matches and the table has no table-miss rule)' in text
    assert line(text, 'Final flow: ') == 'unchanged'
    assert line(text, 'Datapath actions: ') == 'drop'
    assert line(text, 'Megaflow: ') == 'recirc_id=0,in_port=1'


def test_table_miss_rule_to_controller(sw):
    sw.add({}, [out(OFPP_CONTROLLER, 0xffff)], priority=0, cookie=0x77)
    text = sw.trace('in_port=2,arp,arp_op=1')
    assert ' 0. priority 0, cookie 0x77 (the table-miss rule)\n    CONTROLLER:65535\n' \
           '     -> packet-in to the controller: reason=no_match, table 0, cookie 0x77, ' \
           'the whole packet\n' in text
    assert line(text, 'Megaflow: ') == 'recirc_id=0,in_port=2'


def test_ttl_expiry_stops_processing(sw):
    sw.add({**IPV4}, instructions=(('apply_actions', (('dec_nw_ttl',), out(2))),
                                   ('goto_table', 3)))
    text = sw.trace('in_port=1,ip,nw_ttl=1')
    assert ('    dec_ttl\n     -> TTL expired: to the controller, processing stops\n'
            '     -> packet-in to the controller: reason=invalid_ttl, table 0, cookie 0x0, '
            '128 bytes\n     -> processing stopped: the instructions after apply_actions '
            'did not run\n') in text
    assert 'goto_table' not in text and line(text, 'Megaflow: ') == 'recirc_id=0,ip,in_port=1,nw_ttl=1'


def test_select_group_and_bucket_rewrites(sw):
    sw.group(1, OFPGT_SELECT, [(1, OFPP_ANY, [out(2)]),
                               (1, OFPP_ANY, [('push_vlan', 0x8100), out(3)])])
    sw.add({}, [('group', 1), out(4)])
    for n in range(8):                       # both buckets, whichever the hash picks
        text = sw.trace(f'in_port=1,udp,tp_src={n}')
        assert 'select group 1: bucket ' in text and ' of 2, chosen by a hash' in text
        assert why(text, 'tp_src') == ['table 0: select group 1 hashes it to choose a bucket']
        if 'push_vlan' in text:
            assert '        bucket 1\n            push_vlan:0x8100\n' in text
            assert '-> bucket done: its pushes and pops are undone for what follows' in text
            assert line(text, 'Datapath actions: ') == 'push_vlan(vid=0,pcp=0),3,pop_vlan,4'
            assert why(text, 'vlan_tci') == [
                "table 0, group 1 bucket 1: push_vlan:0x8100 copies the outer tag's VID and "
                'PCP into the new tag']


def test_all_group_restores_what_a_bucket_changed(sw):
    sw.group(1, OFPGT_ALL, [(0, OFPP_ANY, [('set_field', 'ipv4_dst', 0x0a000063), out(2)]),
                            (0, OFPP_ANY, [out(3)])])
    sw.add({**IPV4}, instructions=(('write_actions', (out(4), ('group', 1))),))
    text = sw.trace('in_port=1,ip,nw_dst=10.0.0.7')
    assert (' End of the pipeline: the action set runs, in OpenFlow order: output:4, group:1\n'
            '     -> its output is ignored: the set has a group\n    group:1\n'
            '     -> all group 1: all 2 buckets run, each on its own copy of the packet\n'
            '        bucket 0\n            set_field:10.0.0.99->ipv4_dst\n') in text
    assert why(text, 'nw_dst') == [
        'action set, group 1 bucket 1: output:3 first restores the value a group bucket '
        'changed (each bucket works on a copy of the packet)']


def test_fast_failover_without_a_live_bucket(sw):
    sw.ports[2].up = False
    sw.group(1, OFPGT_FF, [(0, 2, [out(2)])])
    sw.add({}, [('group', 1)])
    text = sw.trace('in_port=1')
    assert 'fast failover group 1: no live bucket: the packet goes no further here' in text


def test_normal_forwards_to_a_learned_port(sw):
    sw.normal.macs.learn(0, MAC2.to_bytes(6, 'big'), 3, time.monotonic())
    sw.add({}, [out(OFPP_NORMAL)])
    text = sw.trace('in_port=1,dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02')
    assert ('    NORMAL\n     -> NORMAL: dl_dst 02:00:00:00:00:02 was learned on port 3: '
            'forwarding there\n     -> NORMAL: a real packet would teach it that '
            '02:00:00:00:00:01 is on port 1 (a trace learns nothing)\n'
            '     -> datapath: 3  [3=s1-eth3]\n') in text
    assert line(text, 'Megaflow: ') == ('recirc_id=0,in_port=1,vlan_tci=0x0000/0x1fff,'
                                        'dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02')
    assert why(text, 'dl_src') == [
        'table 0: NORMAL (MAC learning) forwards by in_port, dl_src, dl_dst and VLAN']
    assert sw.normal.macs.lookup(0, MAC1.to_bytes(6, 'big')) is None     # nothing learned


def test_normal_floods_an_unknown_destination_in_fail_open_mode(sw):
    sw.fail_open = True
    sw.add({}, [out(2)])                     # not consulted
    text = sw.trace('in_port=1,dl_vlan=7,dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02')
    assert 'NORMAL forwards; the OpenFlow tables are not consulted' in text
    assert 'no learned port for dl_dst 02:00:00:00:00:02 in VLAN 7: flooding' in text
    assert line(text, 'Datapath actions: ') == '2,3,4'
    assert why(text, 'dl_vlan') == [
        'NORMAL (MAC learning) forwards by in_port, dl_src, dl_dst and VLAN']


def test_outcomes_flood_no_fwd_ignored_set_field_and_no_recv(sw):
    sw.ports[4].config = OFPPC_NO_FWD
    sw.add({}, [('set_field', 'tcp_dst', 8), out(OFPP_FLOOD), out(1)])
    text = sw.trace('in_port=1,udp')
    assert '     -> set_field tcp_dst: packet has no such field: ignored\n' in text
    assert ('    FLOOD\n     -> datapath: 2,3  [2=s1-eth2 3=s1-eth3]\n'
            '     -> output:4: port missing, down or not forwarding: skipped\n'
            '    output:1\n     -> output:1 is the input port: skipped\n') in text
    assert why(text, 'nw_frag') == [
        'table 0: set_field:8->tcp_dst checks that the packet has tcp_dst']
    assert line(text, 'Megaflow: ') == 'recirc_id=0,udp,in_port=1,nw_frag=not_later'
    sw.ports[1].config = OFPPC_NO_RECV
    assert '-> in_port 1 has NO_RECV or PORT_DOWN: drop' in sw.trace('in_port=1,udp')


def test_metadata_and_meter_instructions(sw):
    sw.add({}, instructions=(('meter', 1), ('write_metadata', 5, 0xff), ('goto_table', 1)))
    sw.add({'metadata': (5, 0xff)}, [out(2)], table_id=1)
    text = sw.trace('in_port=1')
    assert (' 0. priority 100\n    meter:1\n     -> datapath: meter(1)\n'
            '    write_metadata:0x5/0xff\n    goto_table:1\n'
            ' 1. metadata=0x5/0xff, priority 100\n') in text


def test_unknown_port_and_rewrites_without_output(sw):
    sw.add({}, [('push_vlan', 0x8100)])
    text = sw.trace('in_port=9')
    assert text.startswith('Flow: in_port=9\n(in_port 9 is not a port of s1)\n')
    assert '(rewrites after the last output were dropped: no packet sees them)' in text


def test_trace_changes_nothing(sw):
    sw.add({}, [out(2)])
    before = xlate(sw.ctx, parse_flow('in_port=1'))
    sw.trace('in_port=1')
    (rule,) = sw.pipeline
    assert rule.packet_count == 0 and before.mask == xlate(sw.ctx, parse_flow('in_port=1')).mask


# --- the lookup explanation agrees with the classifier ---------------------------

def test_visits_consult_what_lookup_consults():
    rng = random.Random(7)
    fields = [('in_port', 1, 4), ('eth_type', 0x800, 0x806), ('nw_proto', 6, 17),
              ('tp_dst', 80, 53), ('nw_src', 1, 2)]
    for _ in range(30):
        table = FlowTable(0)
        for _ in range(rng.randint(1, 12)):
            chosen = rng.sample(fields, rng.randint(0, 3))
            value = mask = 0
            for name, *choices in chosen:
                bits = int.from_bytes(make_mask((name,)), 'big')
                value |= int.from_bytes(make_key(**{name: rng.choice(choices)}), 'big')
                mask |= bits
            mask |= rng.choice((0, 0xff << METADATA_SHIFT))
            table.insert(Rule(0, rng.randint(0, 50), {}, (value, mask), ()))
        for _ in range(20):
            ext = int.from_bytes(make_key(**{name: rng.choice(choices)
                                             for name, *choices in fields}), 'big')
            rule, consulted = table.lookup(ext)
            union = 0
            for bits, _, _ in _visits(table, ext):
                union |= bits
            assert union == consulted


# --- against a real OFProto and its datapath --------------------------------------

def test_megaflow_line_is_what_the_datapath_installs():
    switch = OFSwitch()
    controller = switch.connect()
    switch.flow_mod(controller, priority=10, match={**IPV4, 'ipv4_dst': (ip4('10.0.0.2'), None)},
                    instructions=apply(('dec_nw_ttl',), output(2)))
    switch.flow_mod(controller, priority=0, instructions=apply(output(OFPP_CONTROLLER)))
    text = trace(switch.ofproto, 'in_port=ut1-eth1,udp,dl_src=00:00:00:00:00:01,'
                 'dl_dst=00:00:00:00:00:02,nw_src=10.0.0.1,nw_dst=10.0.0.2,nw_ttl=64,'
                 'tp_src=1,tp_dst=2')
    switch.receive(1, udp())
    (flow,) = switch.dp.flow_dump()
    assert parse_match(line(text, 'Megaflow: ')) == (masked(flow.key, flow.mask), flow.mask)
    assert line(text, 'Datapath actions: ') == 'set(ipv4(ttl=63)),2'
    assert flow.actions == xlate_trace(switch.ofproto.ctx, flow.key)[0].actions


def test_standalone_switch_without_controller_traces_normal():
    switch = OFSwitch(fail_mode='standalone')
    text = trace(switch.ofproto, 'in_port=1,dl_src=00:00:00:00:00:01,dl_dst=00:00:00:00:00:02,'
                 'udp,nw_src=10.0.0.1,nw_dst=10.0.0.2,nw_ttl=64,tp_src=1,tp_dst=2')
    assert 'NORMAL forwards; the OpenFlow tables are not consulted' in text
    switch.receive(1, udp())
    (flow,) = switch.dp.flow_dump()
    assert parse_match(line(text, 'Megaflow: ')) == (masked(flow.key, flow.mask), flow.mask)
    assert line(text, 'Datapath actions: ') == '2,3'


def test_field_items_names_by_protocol():
    icmp = parse_flow('in_port=1,icmp,icmp_type=8,icmp_code=1')
    assert [name for name, _, _ in field_items(int.from_bytes(icmp, 'big'), KEY_ONES,
                                               flow=True)] == \
        ['in_port', 'dl_type', 'nw_proto', 'icmp_type', 'icmp_code']


def test_trace_of_a_tunnel_packet_explains_its_tunnel_fields(sw):
    from test_xlate import tunnel_port
    sw.ports[5] = tunnel_port(key='flow')
    sw.ports[5].name = 'vx1'
    sw.add({'tunnel_id': (0x2a, None)}, [out(2)])
    text = sw.trace('in_port=5,tun_id=0x2a,tun_src=10.0.2.1,tun_dst=10.0.1.1,tun_flags=key,ip')
    assert line(text, 'Megaflow: ') == ('recirc_id=0,tun_id=0x2a,tun_src=10.0.2.1,'
                                        'tun_dst=10.0.1.1,tun_tos=0,tun_flags=-df-csum+key,'
                                        'in_port=5')
    assert why(text, 'tun_id')[0].startswith('received on tunnel port vx1')
    assert line(text, 'Datapath actions: ') == '2'


def test_trace_follows_the_packet_through_recirculation(sw):
    sw.add({'eth_type': (0x8847, None)},
           instructions=(('apply_actions', (('pop_mpls', 0x0800),)), ('goto_table', 1)))
    sw.add({**IPV4}, [out(2)], table_id=1)
    text = trace(sw.ofproto, 'in_port=1,mpls,mpls_label=100,mpls_bos=1')
    first, second = text.split('\n\n\nRecirculation 0x1\n')
    assert 'freeze: ' in first and 'to resume at table 1' in first
    assert line(first, 'Datapath actions: ') == 'pop_mpls(eth_type=0x800),recirc(0x1)'
    assert line(second, 'Megaflow: ').startswith('recirc_id=0x1,ip,in_port=1')
    assert line(second, 'Datapath actions: ') == '2'
    assert 'Resuming recirc_id 0x1' in second
