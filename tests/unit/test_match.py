"""OXM matches compiled onto flow keys: mapping, errors, subset and overlap."""

import pytest

from mnovs.dp.flow import FIELD_SLICES, make_key
from mnovs.ofagent import match as m
from mnovs.openflow.ofp import (
    OFPBMC_BAD_FIELD, OFPBMC_BAD_PREREQ, OFPBMC_BAD_VALUE, OFPBMC_BAD_WILDCARDS,
    OFPET_BAD_MATCH, OFPVID_NONE, OFPVID_PRESENT, OFPError)

IPV4 = {'eth_type': (0x0800, None)}
TCP = {**IPV4, 'ip_proto': (6, None)}


def ext(metadata=0, **fields):
    return int.from_bytes(make_key(**fields), 'big') | metadata << m.METADATA_SHIFT


def matches(match, metadata=0, **fields):
    value, mask = m.compile_match(match)
    return ext(metadata, **fields) & mask == value


def test_exact_fields_map_to_key_fields():
    assert matches({'in_port': (3, None)}, in_port=3)
    assert not matches({'in_port': (3, None)}, in_port=4)
    assert matches({'eth_dst': (0x0a0000000001, None)}, eth_dst=0x0a0000000001)
    assert matches({**TCP, 'tcp_dst': (80, None)}, eth_type=0x800, nw_proto=6, tp_dst=80)
    assert not matches({**TCP, 'tcp_dst': (80, None)}, eth_type=0x800, nw_proto=17, tp_dst=80)
    assert matches({**IPV4, 'ipv4_src': (0x0a000000, 0xffffff00)},
                   eth_type=0x800, nw_src=0x0a000063)
    assert matches({'eth_type': (0x0806, None), 'arp_spa': (0x0a000001, None),
                    'arp_op': (2, None)}, eth_type=0x806, nw_src=0x0a000001, nw_proto=2)


def test_prerequisites_are_in_the_mask():
    _, mask = m.compile_match({**TCP, 'tcp_dst': (80, None)})
    assert mask == int.from_bytes(make_key(eth_type=0xffff, nw_proto=0xff, tp_dst=0xffff), 'big')


def test_vlan_vid_follows_ofpvid_present():
    untagged = {'vlan_vid': (OFPVID_NONE, None)}
    any_tag = {'vlan_vid': (OFPVID_PRESENT, OFPVID_PRESENT)}
    vid10 = {'vlan_vid': (OFPVID_PRESENT | 10, None)}
    assert matches(untagged) and not matches(untagged, vlan_tci=0x1000 | 10)
    assert matches(any_tag, vlan_tci=0x1000 | 7) and not matches(any_tag)
    assert matches(vid10, vlan_tci=0x1000 | 10) and not matches(vid10, vlan_tci=0x1000 | 11)
    pcp = {**any_tag, 'vlan_pcp': (5, None)}
    assert matches(pcp, vlan_tci=5 << 13 | 0x1000 | 3) and not matches(pcp, vlan_tci=0x1003)


def test_split_fields():
    ip = {'eth_type': (0x86dd, None)}
    assert matches({**ip, 'ip_dscp': (46, None)}, eth_type=0x86dd, nw_tos=46 << 2 | 1)
    assert matches({**ip, 'ip_ecn': (1, None)}, eth_type=0x86dd, nw_tos=46 << 2 | 1)
    assert matches({**ip, 'ipv6_flabel': (0x12345, None)}, eth_type=0x86dd, ipv6_label=0x12345)
    mpls = {'eth_type': (0x8847, None), 'mpls_label': (100, None), 'mpls_tc': (3, None),
            'mpls_bos': (1, None)}
    assert matches(mpls, eth_type=0x8847, mpls_lse=100 << 12 | 3 << 9 | 1 << 8 | 64)
    assert not matches(mpls, eth_type=0x8847, mpls_lse=100 << 12 | 3 << 9 | 64)
    nd = {'eth_type': (0x86dd, None), 'ip_proto': (58, None), 'icmpv6_type': (135, None),
          'ipv6_nd_sll': (0x020000000001, None)}
    assert matches(nd, eth_type=0x86dd, nw_proto=58, tp_src=135, arp_sha=0x020000000001)


def test_metadata_and_tunnel_id_are_pipeline_bits():
    value, mask = m.compile_match({'metadata': (0x10, 0xf0)})
    assert not mask & m.KEY_ONES
    assert matches({'metadata': (0x10, 0xf0)}, metadata=0x1f)
    assert not matches({'metadata': (0x10, 0xf0)}, metadata=0x2f)
    assert matches({'tunnel_id': (0, None)})        # no tunnels: every packet has 0
    assert not matches({'tunnel_id': (5, None)})


@pytest.mark.parametrize('match, code', [
    ({'in_phy_port': (1, None), 'in_port': (1, None)}, OFPBMC_BAD_FIELD),
    ({'eth_type': (0x86dd, None), 'ipv6_exthdr': (1, None)}, OFPBMC_BAD_FIELD),
    ({'nonsense': (1, None)}, OFPBMC_BAD_FIELD),
    ({'tcp_dst': (80, None)}, OFPBMC_BAD_PREREQ),
    ({'eth_type': (0x0806, None), 'arp_op': (256, None)}, OFPBMC_BAD_VALUE),
    ({'eth_dst': (0xff, 0x0f)}, OFPBMC_BAD_WILDCARDS),
])
def test_bad_matches(match, code):
    with pytest.raises(OFPError) as err:
        m.compile_match(match)
    assert (err.value.type, err.value.code) == (OFPET_BAD_MATCH, code)


def test_covers_is_non_strict_selection():
    wide = m.compile_match(IPV4)
    narrow = m.compile_match({**IPV4, 'ipv4_dst': (0x0a000001, None)})
    subnet = m.compile_match({**IPV4, 'ipv4_dst': (0x0a000000, 0xffffff00)})
    other = m.compile_match({**IPV4, 'ipv4_dst': (0x0b000000, 0xffffff00)})
    everything = m.compile_match({})
    assert m.covers(everything, narrow) and m.covers(wide, narrow) and m.covers(subnet, narrow)
    assert m.covers(narrow, narrow)
    assert not m.covers(narrow, wide) and not m.covers(narrow, subnet)
    assert not m.covers(other, narrow)


def test_overlaps():
    a = m.compile_match({'in_port': (1, None)})
    b = m.compile_match({'eth_type': (0x800, None)})
    c = m.compile_match({'in_port': (2, None), 'eth_type': (0x800, None)})
    assert m.overlaps(a, b) and m.overlaps(b, c) and not m.overlaps(a, c)


def test_set_fields_and_prerequisites():
    bits, shift, (union, alternatives) = m.SET_FIELDS['tcp_dst']
    assert bits == m.field_bits('tp_dst') and shift == m.field_shift('tp_dst')
    tcp4 = ext(eth_type=0x800, nw_proto=6)
    later = ext(eth_type=0x800, nw_proto=6, nw_frag=3)
    udp = ext(eth_type=0x800, nw_proto=17)
    assert any(tcp4 & mask == value for mask, value in alternatives)
    assert not any(later & mask == value for mask, value in alternatives)
    assert not any(udp & mask == value for mask, value in alternatives)
    assert union & m.field_bits('nw_frag')
    vid_bits, _, _ = m.SET_FIELDS['vlan_vid']
    assert vid_bits == m.field_bits('vlan_tci', 0x0fff)
    assert 'eth_type' not in m.SET_FIELDS and 'ip_proto' not in m.SET_FIELDS
    icmp_bits, _, (icmp_union, _) = m.SET_FIELDS['icmpv4_type']
    assert icmp_bits == m.field_bits('tp_src', 0xff) and icmp_union & m.field_bits('nw_frag')


def test_field_bits_agree_with_flow_layout():
    for name, (offset, width) in FIELD_SLICES.items():
        key = make_key(**{name: b'\xff' * width})
        assert int.from_bytes(key, 'big') == m.field_bits(name)


def test_format_match():
    assert m.format_match({}) == '*'
    assert m.format_match({'ip_proto': (6, None), 'eth_type': (0x800, None)}) \
        == 'eth_type=0x800,ip_proto=0x6'
