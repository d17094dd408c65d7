"""OXM matches: the field table, encode/decode, validation, and Ryu's view of both."""

import pytest

from mnovs.openflow import ofp
from mnovs.openflow.ofp import OFPError
from mnovs.openflow.oxm import (
    OXM_BY_NAME, OXM_FIELDS, decode_match, encode_match, oxm_field_of, oxm_header,
    prerequisites_met, validate_match)


def ryu_of13():
    """Ryu's OF1.3 (ofproto, parser); eventlet 0.33 lacks a name Ryu imports."""
    import eventlet.wsgi
    if not hasattr(eventlet.wsgi, 'ALREADY_HANDLED'):
        eventlet.wsgi.ALREADY_HANDLED = object()
    from ryu.ofproto import ofproto_v1_3, ofproto_v1_3_parser
    return ofproto_v1_3, ofproto_v1_3_parser


def decode(data):
    match, end = decode_match(data, 0, len(data))
    assert end == len(data)
    return match


def tlv(number, value, mask=None):
    """A raw OXM TLV: value/mask as bytes."""
    hasmask = mask is not None
    length = len(value) + (len(mask) if hasmask else 0)
    header = ofp.OFPXMC_OPENFLOW_BASIC << 16 | number << 9 | hasmask << 8 | length
    return header.to_bytes(4, 'big') + value + (mask or b'')


def raw_match(*tlvs, match_type=ofp.OFPMT_OXM):
    body = b''.join(tlvs)
    length = 4 + len(body)
    return match_type.to_bytes(2, 'big') + length.to_bytes(2, 'big') + body + bytes(-length % 8)


def bad_match_code(data):
    with pytest.raises(OFPError) as info:
        decode(data)
    assert info.value.type == ofp.OFPET_BAD_MATCH
    return info.value.code


IP_TCP = {'eth_type': (0x0800, None), 'ip_proto': (6, None)}

# (Ryu OFPMatch keyword arguments, our match dict)
RYU_MATCHES = [
    ({}, {}),
    ({'in_port': 1}, {'in_port': (1, None)}),
    ({'in_port': 7, 'eth_dst': '00:11:22:33:44:55',
      'eth_src': ('0a:00:00:00:00:00', 'ff:00:00:00:00:00')},
     {'in_port': (7, None), 'eth_dst': (0x001122334455, None),
      'eth_src': (0x0a0000000000, 0xff0000000000)}),
    ({'metadata': (0x1200, 0xff00), 'tunnel_id': 42},
     {'metadata': (0x1200, 0xff00), 'tunnel_id': (42, None)}),
    ({'vlan_vid': 0x1000 | 10, 'vlan_pcp': 5},
     {'vlan_vid': (0x100a, None), 'vlan_pcp': (5, None)}),
    ({'vlan_vid': (0x1000, 0x1000)}, {'vlan_vid': (0x1000, 0x1000)}),
    ({'vlan_vid': 0}, {'vlan_vid': (0, None)}),
    ({'eth_type': 0x0800, 'ip_dscp': 46, 'ip_ecn': 1, 'ip_proto': 6,
      'ipv4_src': '10.0.0.1', 'ipv4_dst': ('10.1.0.0', '255.255.0.0'),
      'tcp_src': 80, 'tcp_dst': 443},
     {**IP_TCP, 'ip_dscp': (46, None), 'ip_ecn': (1, None), 'ipv4_src': (0x0a000001, None),
      'ipv4_dst': (0x0a010000, 0xffff0000), 'tcp_src': (80, None), 'tcp_dst': (443, None)}),
    ({'eth_type': 0x0800, 'ip_proto': 17, 'udp_src': 53, 'udp_dst': 5353},
     {'eth_type': (0x0800, None), 'ip_proto': (17, None), 'udp_src': (53, None),
      'udp_dst': (5353, None)}),
    ({'eth_type': 0x86dd, 'ip_proto': 132, 'sctp_src': 1, 'sctp_dst': 2,
      'ipv6_flabel': (0x12000, 0xff000)},
     {'eth_type': (0x86dd, None), 'ip_proto': (132, None), 'sctp_src': (1, None),
      'sctp_dst': (2, None), 'ipv6_flabel': (0x12000, 0xff000)}),
    ({'eth_type': 0x0800, 'ip_proto': 1, 'icmpv4_type': 8, 'icmpv4_code': 0},
     {'eth_type': (0x0800, None), 'ip_proto': (1, None), 'icmpv4_type': (8, None),
      'icmpv4_code': (0, None)}),
    ({'eth_type': 0x0806, 'arp_op': 1, 'arp_spa': '10.0.0.1', 'arp_tpa': ('10.0.0.0', '255.0.0.0'),
      'arp_sha': '00:00:00:00:00:01', 'arp_tha': '00:00:00:00:00:02'},
     {'eth_type': (0x0806, None), 'arp_op': (1, None), 'arp_spa': (0x0a000001, None),
      'arp_tpa': (0x0a000000, 0xff000000), 'arp_sha': (1, None), 'arp_tha': (2, None)}),
    ({'eth_type': 0x86dd, 'ipv6_src': 'fe80::1', 'ipv6_dst': ('2001:db8::', 'ffff:ffff::'),
      'ip_proto': 58, 'icmpv6_type': 135, 'icmpv6_code': 0, 'ipv6_nd_target': 'fe80::2',
      'ipv6_nd_sll': '00:00:00:00:00:03', 'ipv6_exthdr': (0x1, 0x1)},
     {'eth_type': (0x86dd, None), 'ipv6_src': (0xfe80 << 112 | 1, None),
      'ipv6_dst': (0x20010db8 << 96, 0xffffffff << 96), 'ip_proto': (58, None),
      'icmpv6_type': (135, None), 'icmpv6_code': (0, None),
      'ipv6_nd_target': (0xfe80 << 112 | 2, None), 'ipv6_nd_sll': (3, None),
      'ipv6_exthdr': (1, 1)}),
    ({'eth_type': 0x86dd, 'ip_proto': 58, 'icmpv6_type': 136, 'ipv6_nd_tll': '00:00:00:00:00:04'},
     {'eth_type': (0x86dd, None), 'ip_proto': (58, None), 'icmpv6_type': (136, None),
      'ipv6_nd_tll': (4, None)}),
    ({'eth_type': 0x8847, 'mpls_label': 0xfffff, 'mpls_tc': 7, 'mpls_bos': 1},
     {'eth_type': (0x8847, None), 'mpls_label': (0xfffff, None), 'mpls_tc': (7, None),
      'mpls_bos': (1, None)}),
    ({'eth_type': 0x88e7, 'pbb_isid': (0x123456, 0xff0000)},
     {'eth_type': (0x88e7, None), 'pbb_isid': (0x123456 & 0xff0000, 0xff0000)}),
    ({'in_port': 1, 'in_phy_port': 2}, {'in_port': (1, None), 'in_phy_port': (2, None)}),
]


def test_table_agrees_with_ryu():
    ofproto, _ = ryu_of13()
    ryu = {t.name: t for t in ofproto.oxm_types}
    basic = {name for name, t in ryu.items() if type(t).__name__ == 'OpenFlowBasic'}
    assert basic == {f.name for f in OXM_FIELDS if f.oxm_class == 0x8000}
    for field in OXM_FIELDS:
        assert ryu[field.name].num == field.oxm_class << 7 | field.number
        assert ryu[field.name].type.size == field.width
        assert field.bits <= field.width * 8


def test_header_layout():
    eth_dst = OXM_BY_NAME['eth_dst']
    assert oxm_header(eth_dst) == 0x80000606
    assert oxm_header(eth_dst, True) == 0x8000070c
    assert oxm_field_of(0x80000606) is eth_dst
    assert oxm_field_of(0x00010606) is None                 # NXM_1 field 3: not known
    assert oxm_field_of(0x00013e04).name == "tun_ipv4_src"  # NXM_NX_TUN_IPV4_SRC
    assert oxm_field_of(0x80005004) is None                 # field 40: unknown


@pytest.mark.parametrize('kwargs,match', RYU_MATCHES)
def test_ryu_encodes_what_we_decode(kwargs, match):
    _, parser = ryu_of13()
    buf = bytearray()
    parser.OFPMatch(**kwargs).serialize(buf, 0)
    assert decode(bytes(buf)) == match
    assert encode_match(match) == bytes(buf)


@pytest.mark.parametrize('kwargs,match', RYU_MATCHES)
def test_ryu_parses_what_we_encode(kwargs, match):
    _, parser = ryu_of13()
    data = encode_match(match)
    parsed = parser.OFPMatch.parser(data, 0)
    assert parsed.length == int.from_bytes(data[2:4], 'big')
    assert {name for name, _ in parsed._fields2} == set(match)
    again = bytearray()
    parsed.serialize(again, 0)
    assert bytes(again) == data


def test_match_padding_and_order():
    data = encode_match({'tcp_dst': (80, None), **IP_TCP})
    assert data[:4] == b'\x00\x01\x00\x15'                  # 4 + 6 + 5 + 6 bytes
    assert len(data) == 24 and data[21:] == bytes(3)
    fields = [data[4 + 2] >> 1, data[10 + 2] >> 1, data[15 + 2] >> 1]
    assert fields == [5, 10, 14]                            # prerequisites first
    assert encode_match({}) == b'\x00\x01\x00\x04' + bytes(4)


def test_full_mask_is_exact_and_mask_clipped():
    full = raw_match(tlv(3, b'\x01' * 6, b'\xff' * 6))
    assert decode(full) == {'eth_dst': (0x010101010101, None)}
    flabel = raw_match(tlv(5, b'\x86\xdd'), tlv(28, b'\x00\x01\x23\x45', b'\x00\x0f\xff\xff'))
    assert decode(flabel)['ipv6_flabel'] == (0x12345, None)
    vid = raw_match(tlv(6, b'\x10\x05', b'\xff\xff'))       # 16 mask bits for 13 field bits
    assert decode(vid) == {'vlan_vid': (0x1005, None)}
    vid_bits = raw_match(tlv(6, b'\x00\x05', b'\x0f\xff'))  # VID bits, tagged or not
    assert decode(vid_bits) == {'vlan_vid': (0x0005, 0x0fff)}


@pytest.mark.parametrize('data,code', [
    (raw_match(tlv(0, bytes(4)), match_type=ofp.OFPMT_STANDARD), ofp.OFPBMC_BAD_TYPE),
    (b'\x00\x01\x00', ofp.OFPBMC_BAD_LEN),
    (b'\x00\x01\x00\x02' + bytes(4), ofp.OFPBMC_BAD_LEN),              # length < 4
    (b'\x00\x01\x00\x0c' + tlv(0, bytes(4)), ofp.OFPBMC_BAD_LEN),      # padding missing
    (raw_match(tlv(0, bytes(3))), ofp.OFPBMC_BAD_LEN),                 # in_port of 3 bytes
    (raw_match(tlv(0, bytes(4))[:6]), ofp.OFPBMC_BAD_LEN),             # TLV cut short
    (raw_match(b'\x80\x00'), ofp.OFPBMC_BAD_LEN),                      # header cut short
    (raw_match(tlv(40, bytes(4))), ofp.OFPBMC_BAD_FIELD),
    (raw_match(b'\x00\x01\x06\x06' + bytes(6)), ofp.OFPBMC_BAD_FIELD),  # NXM_1
    (raw_match(b'\xff\xff\x00\x08' + bytes(8)), ofp.OFPBMC_BAD_FIELD),  # experimenter
    (raw_match(tlv(0, b'\0\0\0\1'), tlv(0, b'\0\0\0\2')), ofp.OFPBMC_DUP_FIELD),
    (raw_match(tlv(0, bytes(4), b'\xff\xff\xff\x00')), ofp.OFPBMC_BAD_MASK),
    (raw_match(tlv(5, b'\x08\x00', b'\xff\xff')), ofp.OFPBMC_BAD_MASK),  # even all-ones
    (raw_match(tlv(6, b'\x10\x01'), tlv(7, b'\x08')), ofp.OFPBMC_BAD_VALUE),  # pcp 8
    (raw_match(tlv(6, b'\x00\x05')), ofp.OFPBMC_BAD_VALUE),            # vid without PRESENT
    (raw_match(tlv(6, b'\x00\x05', b'\x1f\xff')), ofp.OFPBMC_BAD_VALUE),  # the same, masked
    (raw_match(tlv(6, b'\x10\x05', b'\x0f\xff')), ofp.OFPBMC_BAD_WILDCARDS),
    (raw_match(tlv(6, b'\x20\x00')), ofp.OFPBMC_BAD_VALUE),            # beyond 13 bits
    (raw_match(tlv(5, b'\x08\x00'), tlv(11, b'\x0a\x00\x00\x01', b'\xff\x00\x00\x00')),
     ofp.OFPBMC_BAD_WILDCARDS),                                        # value bits outside mask
    (raw_match(tlv(13, b'\x00\x50')), ofp.OFPBMC_BAD_PREREQ),          # tcp_src alone
    (raw_match(tlv(10, b'\x06'), tlv(13, b'\x00\x50')), ofp.OFPBMC_BAD_PREREQ),  # no eth_type
    (raw_match(tlv(5, b'\x08\x00'), tlv(10, b'\x11'), tlv(13, b'\x00\x50')),
     ofp.OFPBMC_BAD_PREREQ),
    (raw_match(tlv(5, b'\x08\x06'), tlv(11, bytes(4))), ofp.OFPBMC_BAD_PREREQ),
    (raw_match(tlv(7, b'\x01')), ofp.OFPBMC_BAD_PREREQ),               # pcp without vid
    (raw_match(tlv(6, b'\x00\x00'), tlv(7, b'\x01')), ofp.OFPBMC_BAD_PREREQ),  # vid NONE
    (raw_match(tlv(1, bytes(4))), ofp.OFPBMC_BAD_PREREQ),              # in_phy_port alone
])
def test_bad_matches(data, code):
    assert bad_match_code(data) == code


def test_prerequisites():
    assert prerequisites_met({**IP_TCP}, 'tcp_src')
    assert not prerequisites_met({'eth_type': (0x0800, None)}, 'tcp_src')
    assert not prerequisites_met({'eth_type': (0x0800, None), 'ip_proto': (6, 0x0f)}, 'tcp_src')
    assert prerequisites_met({'vlan_vid': (0x1000, 0x1000)}, 'vlan_pcp')
    assert not prerequisites_met({'vlan_vid': (0x1000, 0x0fff)}, 'vlan_pcp')
    assert prerequisites_met({}, 'eth_src')
    nd = {'eth_type': (0x86dd, None), 'ip_proto': (58, None), 'icmpv6_type': (136, None)}
    assert prerequisites_met(nd, 'ipv6_nd_target') and prerequisites_met(nd, 'ipv6_nd_tll')
    assert not prerequisites_met(nd, 'ipv6_nd_sll')


def test_validate_match_on_dicts():
    validate_match({**IP_TCP, 'tcp_src': (1, None)})
    for bad, code in [({'no_such': (1, None)}, ofp.OFPBMC_BAD_FIELD),
                      ({'in_port': (1, 1)}, ofp.OFPBMC_BAD_MASK),
                      ({'eth_dst': (1 << 48, None)}, ofp.OFPBMC_BAD_VALUE),
                      ({'eth_dst': (3, 1)}, ofp.OFPBMC_BAD_WILDCARDS),
                      ({'tcp_src': (1, None)}, ofp.OFPBMC_BAD_PREREQ)]:
        with pytest.raises(OFPError) as info:
            validate_match(bad)
        assert (info.value.type, info.value.code) == (ofp.OFPET_BAD_MATCH, code)


def test_round_trip_every_field():
    for _, match in RYU_MATCHES:
        assert decode(encode_match(match)) == match
