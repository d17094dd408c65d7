"""Tests for mnovs.dp.odp_util: megaflows and actions printed in OVS's datapath syntax.

Several expectations are lines of OVS's tests/odp.at, prefixed with in_port(1).
"""

import socket

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from mnovs.dp.flow import flow_extract, md_of, make_key, make_mask, mask_of
from mnovs.dp.odp_util import format_actions, format_megaflow, format_tcp_flags

ETH = 'eth(src=00:01:02:03:04:05,dst=10:11:12:13:14:15)'
ETH_FIELDS = dict(eth_src=bytes.fromhex('000102030405'), eth_dst=bytes.fromhex('101112131415'))


def ip4(text):
    return socket.inet_pton(socket.AF_INET, text)


def ip6(text):
    return socket.inet_pton(socket.AF_INET6, text)


def mac(text):
    return bytes.fromhex(text.replace(':', ''))


def exact(**fields):
    """Format a megaflow matching exactly these fields (plus in_port 1 and the Ethernet header)."""
    fields = dict(in_port=1, **ETH_FIELDS, **fields)
    return format_megaflow(make_key(**fields), make_mask(fields))


IPV4 = dict(eth_type=0x0800, nw_src=ip4('35.8.2.41'), nw_dst=ip4('172.16.0.20'),
            nw_tos=0, nw_ttl=128, nw_frag=0)
IPV6 = dict(eth_type=0x86dd, ipv6_src=ip6('::1'), ipv6_dst=ip6('::2'), ipv6_label=0,
            nw_tos=0, nw_ttl=128, nw_frag=0)


@pytest.mark.parametrize('fields, ovs', [
    (dict(eth_type=0x1234), 'eth_type(0x1234)'),
    ({**IPV4, 'nw_proto': 5, 'nw_tos': 0x81},
     'eth_type(0x0800),ipv4(src=35.8.2.41,dst=172.16.0.20,proto=5,tos=0x81,ttl=128,frag=no)'),
    ({**IPV4, 'nw_proto': 5, 'nw_tos': 0x80, 'nw_frag': 1},
     'eth_type(0x0800),ipv4(src=35.8.2.41,dst=172.16.0.20,proto=5,tos=0x80,ttl=128,frag=first)'),
    ({**IPV4, 'nw_proto': 6, 'tp_src': 80, 'tp_dst': 8080},
     'eth_type(0x0800),ipv4(src=35.8.2.41,dst=172.16.0.20,proto=6,tos=0,ttl=128,frag=no),'
     'tcp(src=80,dst=8080)'),
    ({**IPV4, 'nw_proto': 17, 'tp_src': 81, 'tp_dst': 6632},
     'eth_type(0x0800),ipv4(src=35.8.2.41,dst=172.16.0.20,proto=17,tos=0,ttl=128,frag=no),'
     'udp(src=81,dst=6632)'),
    ({**IPV4, 'nw_proto': 1, 'tp_src': 1, 'tp_dst': 2},
     'eth_type(0x0800),ipv4(src=35.8.2.41,dst=172.16.0.20,proto=1,tos=0,ttl=128,frag=no),'
     'icmp(type=1,code=2)'),
    ({**IPV6, 'nw_proto': 10, 'nw_tos': 0x70, 'nw_frag': 3},
     'eth_type(0x86dd),ipv6(src=::1,dst=::2,label=0,proto=10,tclass=0x70,hlimit=128,'
     'frag=later)'),
    ({**IPV6, 'nw_proto': 17, 'tp_src': 6630, 'tp_dst': 22},
     'eth_type(0x86dd),ipv6(src=::1,dst=::2,label=0,proto=17,tclass=0,hlimit=128,frag=no),'
     'udp(src=6630,dst=22)'),
    ({**IPV6, 'nw_proto': 58, 'tp_src': 136, 'tp_dst': 0, 'nd_target': ip6('::3'),
      'arp_sha': mac('00:05:06:07:08:09'), 'arp_tha': mac('00:0a:0b:0c:0d:0e')},
     'eth_type(0x86dd),ipv6(src=::1,dst=::2,label=0,proto=58,tclass=0,hlimit=128,frag=no),'
     'icmpv6(type=136,code=0),nd(target=::3,sll=00:05:06:07:08:09,tll=00:0a:0b:0c:0d:0e)'),
    (dict(eth_type=0x0806, nw_src=ip4('1.2.3.4'), nw_dst=ip4('5.6.7.8'), nw_proto=1,
          arp_sha=mac('00:0f:10:11:12:13'), arp_tha=mac('00:14:15:16:17:18')),
     'eth_type(0x0806),arp(sip=1.2.3.4,tip=5.6.7.8,op=1,sha=00:0f:10:11:12:13,'
     'tha=00:14:15:16:17:18)'),
    (dict(eth_type=0x8848, mpls_lse=1000 << 12 | 4 << 9 | 0 << 8 | 200),
     'eth_type(0x8848),mpls(label=1000,tc=4,ttl=200,bos=0)'),
    ({**IPV4, 'nw_proto': 6, 'tp_src': 80, 'tp_dst': 8080, 'vlan_tpid': 0x8100,
      'vlan_tci': 7 << 13 | 0x1000 | 99},
     'eth_type(0x8100),vlan(vid=99,pcp=7),encap(eth_type(0x0800),ipv4(src=35.8.2.41,'
     'dst=172.16.0.20,proto=6,tos=0,ttl=128,frag=no),tcp(src=80,dst=8080))'),
])
def test_exact_matches_print_as_ovs(fields, ovs):
    assert exact(**fields) == f'in_port(1),{ETH},{ovs}'


def test_brief_example_from_a_real_frame():
    pkt = (Ether(src='00:00:00:00:00:01', dst='00:00:00:00:00:02')
           / IP(src='10.0.0.1', dst='10.0.0.2', ttl=64) / TCP(sport=5201, dport=40000, flags='A'))
    key, _ = flow_extract(memoryview(bytes(pkt)), md_of(1))
    mask = make_mask(['in_port', 'eth_src', 'eth_dst', 'eth_type', 'vlan_tci', 'nw_src',
                      'nw_dst', 'nw_proto', 'nw_tos', 'nw_ttl', 'nw_frag', 'tp_src', 'tp_dst',
                      'tcp_flags'])
    assert format_megaflow(key, mask) == (
        'in_port(1),eth(src=00:00:00:00:00:01,dst=00:00:00:00:00:02),eth_type(0x0800),'
        'ipv4(src=10.0.0.1,dst=10.0.0.2,proto=6,tos=0,ttl=64,frag=no),'
        'tcp(src=5201,dst=40000),tcp_flags(ack)')


def test_wildcarded_fields_are_left_out():
    key = make_key(in_port=2, **ETH_FIELDS, **IPV4, nw_proto=6, tp_src=1, tp_dst=22)
    mask = make_mask(['in_port', 'eth_type', 'nw_frag', 'nw_dst', 'nw_proto', 'tp_dst'])
    assert format_megaflow(key, mask) == (
        'in_port(2),eth(),eth_type(0x0800),ipv4(dst=172.16.0.20,proto=6,frag=no),tcp(dst=22)')


def test_partial_masks_print_value_slash_mask():
    key = make_key(in_port=3, **ETH_FIELDS, **IPV4, nw_proto=6, tp_src=0x1234, tp_dst=80)
    mask = mask_of(in_port=0xff, eth_src=mac('ff:ff:ff:00:00:00'), eth_type=0xffff,
                   nw_src=0xffffff00, nw_proto=0xff, nw_tos=0xfc, nw_frag=0xff,
                   tp_src=0xff00, tp_dst=0xffff)
    assert format_megaflow(key, mask) == (
        'in_port(3/0xff),eth(src=00:01:02:00:00:00/ff:ff:ff:00:00:00),eth_type(0x0800),'
        'ipv4(src=35.8.2.0/255.255.255.0,proto=6,tos=0/0xfc,frag=no),'
        'tcp(src=4608/0xff00,dst=80)')


def test_ipv6_partial_and_label_hex():
    key = make_key(**{**IPV6, 'ipv6_label': 0x12345, 'nw_proto': 6})
    mask = mask_of(eth_type=0xffff, ipv6_src=ip6('ffff:ffff::'), ipv6_label=0xfffff,
                   nw_tos=0xff)
    assert format_megaflow(key, mask) == (
        'eth(),eth_type(0x86dd),ipv6(src=::/ffff:ffff::,label=0x12345,tclass=0)')


def test_vlan_partial_and_8021ad():
    key = make_key(eth_type=0x0800, vlan_tpid=0x88a8, vlan_tci=3 << 13 | 0x1000 | 0x123)
    mask = mask_of(eth_type=0xffff, vlan_tpid=0xffff, vlan_tci=0x1ff0)
    assert format_megaflow(key, mask) == (
        'eth(),eth_type(0x88a8),vlan(vid=288/0xff0),encap(eth_type(0x0800))')
    mask = mask_of(vlan_tpid=0xffff, vlan_tci=0xffff)
    assert format_megaflow(key, mask) == 'eth(),eth_type(0x88a8),vlan(vid=291,pcp=3),encap()'


def test_untagged_match_prints_no_vlan():
    key = make_key(eth_type=0x0800)
    assert format_megaflow(key, make_mask(['eth_type', 'vlan_tpid', 'vlan_tci'])) == \
        'eth(),eth_type(0x0800)'


def test_mpls_partial():
    key = make_key(eth_type=0x8847, mpls_lse=100 << 12 | 7 << 9 | 1 << 8 | 64)
    mask = mask_of(eth_type=0xffff, mpls_lse=0xfffff000)
    assert format_megaflow(key, mask) == (
        'eth(),eth_type(0x8847),mpls(label=100/0xfffff,tc=0/0,ttl=0/0x0,bos=0/0)')


@pytest.mark.parametrize('flags, mask, text', [
    (0x012, 0xfff, 'syn|ack'),
    (0x000, 0xfff, '0'),
    (0x011, 0xffff, 'fin|ack'),
    (0x010, 0x012, '-syn+ack'),
    (0x004, 0x004, '+rst'),
])
def test_tcp_flags_attribute(flags, mask, text):
    key = make_key(eth_type=0x0800, nw_proto=6, tcp_flags=flags)
    m = mask_of(eth_type=0xffff, nw_proto=0xff, tcp_flags=mask)
    assert format_megaflow(key, m) == f'eth(),eth_type(0x0800),ipv4(proto=6),tcp_flags({text})'


@pytest.mark.parametrize('frag, mask, text', [
    (0, 0xff, 'no'), (1, 0xff, 'first'), (3, 0xff, 'later'),
    (0, 1, 'no'), (1, 1, 'yes'), (0, 2, 'not_later'), (3, 2, 'later'),
])
def test_frag_words(frag, mask, text):
    key = make_key(eth_type=0x0800, nw_frag=frag)
    assert format_megaflow(key, mask_of(eth_type=0xffff, nw_frag=mask)) == \
        f'eth(),eth_type(0x0800),ipv4(frag={text})'


def test_later_fragments_have_no_l4():
    key = make_key(eth_type=0x0800, nw_proto=17, nw_frag=3)
    mask = make_mask(['eth_type', 'nw_proto', 'nw_frag'])
    assert format_megaflow(key, mask) == 'eth(),eth_type(0x0800),ipv4(proto=17,frag=later)'


def test_fields_masked_without_prerequisite_still_show():
    key = make_key(in_port=1, tp_dst=80, ipv6_src=ip6('::1'))
    mask = make_mask(['in_port', 'tp_dst', 'ipv6_src'])
    assert format_megaflow(key, mask) == 'in_port(1),eth(),fields(ipv6_src=::1,tp_dst=80)'


def test_key_bits_outside_mask_are_ignored():
    key = make_key(in_port=9, nw_src=ip4('10.1.2.3'), eth_type=0x0800)
    mask = mask_of(eth_type=0xffff, nw_src=0xff000000)
    assert format_megaflow(key, mask) == 'eth(),eth_type(0x0800),ipv4(src=10.0.0.0/255.0.0.0)'


# --- actions ----------------------------------------------------------------

@pytest.mark.parametrize('actions, text', [
    ((), 'drop'),
    ((('output', 2), ('output', 3)), '2,3'),
    ((('push_vlan', 0x8100, 10), ('output', 2)), 'push_vlan(vid=10,pcp=0),2'),
    ((('push_vlan', 0x88a8, 5 << 13 | 100),), 'push_vlan(tpid=0x88a8,vid=100,pcp=5)'),
    ((('push_vlan', 0x8100, 0x1000 | 7),), 'push_vlan(vid=7,pcp=0,cfi=1)'),
    ((('pop_vlan',), ('output', 1)), 'pop_vlan,1'),
    ((('userspace', b'\x0a\x0b'),), 'userspace(userdata(0a0b))'),
    ((('userspace', b''),), 'userspace()'),
    ((('set_masked', 'eth_src', mac('00:00:00:00:00:01'), b'\xff' * 6), ('output', 4)),
     'set(eth(src=00:00:00:00:00:01)),4'),
    ((('set_masked', 'eth_dst', mac('0a:0b:0c:0d:0e:0f'), mac('ff:ff:ff:00:00:00')),),
     'set(eth(dst=0a:0b:0c:00:00:00/ff:ff:ff:00:00:00))'),
    ((('set_masked', 'nw_src', ip4('10.0.0.7'), b'\xff\xff\xff\x00'),),
     'set(ipv4(src=10.0.0.0/255.255.255.0))'),
    ((('set_masked', 'nw_tos', b'\x80', b'\xfc'),), 'set(ipv4(tos=0x80/0xfc))'),
    ((('set_masked', 'tp_dst', b'\x1f\x90', b'\xff\xff'),), 'set(tcp(dst=8080))'),
    ((('set_masked', 'ipv6_dst', ip6('2001:db8::1'), b'\xff' * 16),),
     'set(ipv6(dst=2001:db8::1))'),
    ((('set_masked', 'vlan_tci', b'\x20\x05', b'\xef\xff'),), 'set(vlan(vid=5,pcp=1))'),
    ((('trunc', 0.5, b'\x01'),), 'trunc(0.5,01)'),
])
def test_format_actions(actions, text):
    assert format_actions(actions) == text


def test_set_masked_names_the_key_header():
    udp6 = make_key(eth_type=0x86dd, nw_proto=17)
    actions = (('set_masked', 'tp_src', b'\x00\x35', b'\xff\xff'),
               ('set_masked', 'nw_tos', b'\x10', b'\xff'),
               ('set_masked', 'nw_ttl', b'\x3f', b'\xff'), ('output', 1))
    assert format_actions(actions, key=udp6) == \
        'set(udp(src=53)),set(ipv6(tclass=0x10)),set(ipv6(hlimit=63)),1'
    arp = make_key(eth_type=0x0806)
    assert format_actions((('set_masked', 'nw_dst', ip4('1.2.3.4'), b'\xff' * 4),), key=arp) == \
        'set(arp(tip=1.2.3.4))'
    nd = make_key(eth_type=0x86dd, nw_proto=58, tp_src=136)
    assert format_actions((('set_masked', 'arp_tha', mac('00:00:00:00:00:09'), b'\xff' * 6),),
                          key=nd) == 'set(nd(tll=00:00:00:00:00:09))'


@pytest.mark.parametrize('flags, text', [
    (0, 'none'), (0x002, 'S'), (0x012, 'S.'), (0x018, 'P.'), (0x011, 'F.'),
    (0x004, 'R'), (0x03f, 'SFPRU.'), (0x1c0, 'ECN'),
])
def test_format_tcp_flags(flags, text):
    assert format_tcp_flags(flags) == text
