"""Tests for mnovs.dp.flow: key layout, helpers and flow_extract on scapy-built frames."""

import random
import socket

import pytest
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import (ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS,
                                ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr,
                                IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                                IPv6ExtHdrHopByHop, IPv6ExtHdrRouting)
from scapy.layers.l2 import ARP, LLC, Dot1AD, Dot1AH, Dot1Q, Dot3, Ether
from scapy.layers.sctp import SCTP
from scapy.packet import Raw

from mnovs.dp import flow
from mnovs.dp.flow import (FIELD_SLICES, FLOW_FIELDS, KEY_LEN, flow_extract, md_of,
                           key_fields, make_key, make_mask, mask_key, mask_of)

MAC1, MAC2 = '00:00:00:00:00:01', '00:00:00:00:00:02'
ERRORS = {value for name, value in vars(flow).items() if name.startswith('ERR_')}


def mac(text):
    return bytes.fromhex(text.replace(':', ''))


def ip4(text):
    return socket.inet_pton(socket.AF_INET, text)


def ip6(text):
    return socket.inet_pton(socket.AF_INET6, text)


def extract(pkt, in_port=1):
    """Return (fields, error) for a scapy packet or bytes."""
    key, err = flow_extract(memoryview(bytes(pkt)), md_of(in_port))
    assert len(key) == KEY_LEN
    return key_fields(key), err


def nonzero(fields):
    """Return the fields that are not zero: what a frame set, for exact comparisons."""
    return {name: value for name, value in fields.items()
            if value and value != bytes(len(value) if isinstance(value, bytes) else 0)}


def eth(**kw):
    return Ether(src=MAC1, dst=MAC2, **kw)


# --- layout and helpers ---------------------------------------------------

def test_layout_order_and_offsets():
    names = [name for name, _ in FLOW_FIELDS]
    assert names == ['recirc_id', 'dp_hash', 'tun_id', 'tun_src', 'tun_dst', 'tun_tos',
                     'tun_ttl', 'tun_flags', 'in_port', 'eth_dst', 'eth_src', 'eth_type',
                     'vlan_tpid', 'vlan_tci',
                     'mpls_lse', 'pbb_itag', 'nw_src', 'nw_dst', 'ipv6_src', 'ipv6_dst', 'ipv6_label',
                     'nw_proto', 'nw_tos', 'nw_ttl', 'nw_frag', 'tp_src', 'tp_dst',
                     'tcp_flags', 'arp_sha', 'arp_tha', 'nd_target']
    assert KEY_LEN == flow.FLOW_KEY.size == 140
    assert flow.MD_LEN == FIELD_SLICES['eth_dst'][0] == 32
    offset = 0
    for name in names:
        assert FIELD_SLICES[name][0] == offset
        offset += FIELD_SLICES[name][1]
    assert offset == KEY_LEN
    assert FIELD_SLICES['eth_src'] == (38, 6)
    assert FIELD_SLICES['nd_target'] == (124, 16)


def test_make_key_and_key_fields_round_trip():
    key = make_key(in_port=7, eth_src=mac(MAC1), nw_src=ip4('10.0.0.1'), tp_dst=80)
    assert len(key) == KEY_LEN
    assert key[28:32] == b'\0\0\0\7'
    assert key[38:44] == mac(MAC1)
    fields = key_fields(key)
    assert nonzero(fields) == {'in_port': 7, 'eth_src': mac(MAC1),
                               'nw_src': ip4('10.0.0.1'), 'tp_dst': 80}
    assert fields['nw_dst'] == bytes(4) and fields['nw_proto'] == 0
    assert make_key(**fields) == key


def test_make_key_rejects_bad_values():
    with pytest.raises(ValueError, match='unknown'):
        make_key(dl_src=b'\0' * 6)
    with pytest.raises(ValueError, match='6 bytes'):
        make_key(eth_src=b'\0' * 4)
    with pytest.raises(ValueError, match='does not fit'):
        make_key(nw_proto=256)


def test_masks():
    mask = make_mask(['in_port', 'nw_dst'])
    assert nonzero(key_fields(mask)) == {'in_port': 0xffffffff, 'nw_dst': b'\xff' * 4}
    partial = mask_of(nw_src=0xffffff00, tp_dst=b'\xff\x00')
    assert nonzero(key_fields(partial)) == {'nw_src': b'\xff\xff\xff\0', 'tp_dst': 0xff00}
    key = make_key(in_port=3, nw_src=ip4('10.1.2.3'), nw_dst=ip4('10.9.9.9'), tp_dst=0x1234)
    assert nonzero(key_fields(mask_key(key, partial))) == {'nw_src': ip4('10.1.2.0'),
                                                           'tp_dst': 0x1200}
    assert int.from_bytes(mask_key(key, partial), 'big') == \
        int.from_bytes(key, 'big') & int.from_bytes(partial, 'big')


# --- protocols --------------------------------------------------------------

def test_ipv4_tcp():
    pkt = (eth() / IP(src='10.0.0.1', dst='10.0.0.2', tos=0x2e, ttl=63)
           / TCP(sport=5201, dport=40000, flags='SA') / Raw(b'x' * 100))
    fields, err = extract(pkt, in_port=4)
    assert err is None
    assert nonzero(fields) == {
        'in_port': 4, 'eth_dst': mac(MAC2), 'eth_src': mac(MAC1), 'eth_type': 0x0800,
        'nw_src': ip4('10.0.0.1'), 'nw_dst': ip4('10.0.0.2'), 'nw_proto': 6,
        'nw_tos': 0x2e, 'nw_ttl': 63, 'tp_src': 5201, 'tp_dst': 40000, 'tcp_flags': 0x012}


def test_tcp_flags_keep_12_bits():
    frame = bytearray(bytes(eth() / IP() / TCP()))
    frame[46:48] = b'\x5f\xff'                        # data offset 5, all 12 flag bits
    fields, err = extract(frame)
    assert err is None and fields['tcp_flags'] == 0xfff


def test_bytes_frame_accepted():
    key, err = flow_extract(bytes(eth() / IP() / UDP(sport=1, dport=2)), md_of(1))
    assert err is None and key_fields(key)['tp_dst'] == 2


def test_ipv4_options_skipped():
    pkt = eth() / IP(options=[IPOption_RR(routers=['1.2.3.4'] * 3)]) / UDP(sport=53, dport=99)
    assert Ether(bytes(pkt))[IP].ihl == 9
    fields, err = extract(pkt)
    assert err is None
    assert (fields['nw_proto'], fields['tp_src'], fields['tp_dst']) == (17, 53, 99)


@pytest.mark.parametrize('flags, frag, nw_frag, ports', [
    ('MF', 0, 1, (1000, 2000)),       # first fragment: L4 read
    ('MF', 185, 3, (0, 0)),           # middle fragment
    (0, 185, 3, (0, 0)),              # last fragment
    ('DF', 0, 0, (1000, 2000)),       # DF alone is no fragment
])
def test_ipv4_fragments(flags, frag, nw_frag, ports):
    fields, err = extract(eth() / IP(flags=flags, frag=frag, proto=17)
                          / UDP(sport=1000, dport=2000) / Raw(b'y' * 16))
    assert err is None
    assert fields['nw_frag'] == nw_frag
    assert fields['nw_proto'] == 17
    assert (fields['tp_src'], fields['tp_dst']) == ports


def test_ipv4_udp_sctp_icmp():
    fields, _ = extract(eth() / IP() / UDP(sport=67, dport=68))
    assert (fields['nw_proto'], fields['tp_src'], fields['tp_dst']) == (17, 67, 68)
    fields, _ = extract(eth() / IP() / SCTP(sport=3868, dport=2905))
    assert (fields['nw_proto'], fields['tp_src'], fields['tp_dst']) == (132, 3868, 2905)
    fields, err = extract(eth() / IP() / ICMP(type=3, code=4))
    assert err is None
    assert (fields['nw_proto'], fields['tp_src'], fields['tp_dst']) == (1, 3, 4)


def test_ipv4_payload_bounded_by_total_length():
    # Total length says 24 bytes (a 4-byte L4 stub), then Ethernet padding.
    frame = bytes(eth() / IP(len=24, proto=6) / Raw(b'\x00\x50\x00\x51')) + bytes(32)
    fields, err = extract(frame)
    assert err == flow.ERR_TRUNCATED_TCP
    assert fields['nw_proto'] == 6 and fields['tp_src'] == 0


def test_vlan_8021q():
    pkt = eth() / Dot1Q(vlan=10, prio=5) / IP(src='1.1.1.1') / TCP(sport=1, dport=2)
    fields, err = extract(pkt)
    assert err is None
    assert fields['eth_type'] == 0x0800
    assert fields['vlan_tpid'] == 0x8100
    assert fields['vlan_tci'] == 5 << 13 | 0x1000 | 10
    assert (fields['nw_src'], fields['tp_dst']) == (ip4('1.1.1.1'), 2)


def test_vlan_dei_bit_not_kept():
    fields, _ = extract(eth() / Dot1Q(vlan=0, prio=0, dei=1) / IP())
    assert fields['vlan_tci'] == 0x1000


def test_qinq_outer_tag_only():
    pkt = eth() / Dot1AD(vlan=100, prio=1) / Dot1Q(vlan=200, prio=7) / IPv6() / UDP(dport=7)
    fields, err = extract(pkt)
    assert err is None
    assert (fields['vlan_tpid'], fields['vlan_tci']) == (0x88a8, 1 << 13 | 0x1000 | 100)
    assert fields['eth_type'] == 0x86dd
    assert (fields['nw_proto'], fields['tp_dst']) == (17, 7)


def test_untagged_has_no_vlan():
    fields, _ = extract(eth() / IP())
    assert (fields['vlan_tpid'], fields['vlan_tci']) == (0, 0)


def test_8023_frame():
    fields, err = extract(Dot3(src=MAC1, dst=MAC2) / LLC() / Raw(b'z' * 40))
    assert err is None
    assert nonzero(fields) == {'in_port': 1, 'eth_dst': mac(MAC2), 'eth_src': mac(MAC1),
                               'eth_type': 0x05ff}


def test_unknown_ethertype_kept():
    fields, err = extract(eth(type=0x1234) / Raw(b'q' * 50))
    assert err is None
    assert fields['eth_type'] == 0x1234


def test_mpls_top_label_only():
    pkt = eth() / MPLS(label=100, cos=3, s=0, ttl=64) / MPLS(label=200, s=1, ttl=9) / IP()
    fields, err = extract(pkt)
    assert err is None
    assert fields['eth_type'] == 0x8847
    assert fields['mpls_lse'] == 100 << 12 | 3 << 9 | 0 << 8 | 64
    assert fields['nw_src'] == bytes(4) and fields['nw_proto'] == 0


def test_pbb_itag_and_nothing_behind_it():
    pkt = eth() / Dot1AH(prio=5, dei=1, nca=1, isid=0xabcdef) / Ether(dst=MAC1) / IP()
    fields, err = extract(pkt)
    assert err is None
    assert fields['eth_type'] == 0x88e7
    assert fields['pbb_itag'] == 5 << 29 | 1 << 28 | 1 << 27 | 0xabcdef
    assert fields['eth_dst'] == mac(MAC2)                  # the backbone header's B-DA
    assert fields['nw_src'] == bytes(4) and fields['nw_proto'] == 0


def test_pbb_behind_a_backbone_tag():
    pkt = eth() / Dot1AD(vlan=9) / Dot1AH(isid=0x123) / Ether() / IP()
    fields, err = extract(pkt)
    assert err is None
    assert (fields['vlan_tpid'], fields['eth_type'], fields['pbb_itag']) == (0x88a8, 0x88e7, 0x123)


def test_arp_request():
    pkt = eth() / ARP(op=1, hwsrc=MAC1, psrc='10.0.0.1', hwdst='00:00:00:00:00:00',
                      pdst='10.0.0.2')
    fields, err = extract(pkt)
    assert err is None
    assert nonzero(fields) == {
        'in_port': 1, 'eth_dst': mac(MAC2), 'eth_src': mac(MAC1), 'eth_type': 0x0806,
        'nw_src': ip4('10.0.0.1'), 'nw_dst': ip4('10.0.0.2'), 'nw_proto': 1,
        'arp_sha': mac(MAC1)}


def test_arp_reply_and_odd_arps():
    fields, _ = extract(eth() / ARP(op=2, hwdst=MAC2, pdst='10.0.0.9'))
    assert (fields['nw_proto'], fields['arp_tha']) == (2, mac(MAC2))
    fields, err = extract(eth() / ARP(op=0x101, psrc='10.0.0.1'))  # opcode beyond 8 bits
    assert err is None and fields['nw_proto'] == 0 and fields['nw_src'] != bytes(4)
    fields, err = extract(eth() / ARP(ptype=0x86dd, plen=4))  # not Ethernet/IPv4
    assert err is None
    assert (fields['nw_proto'], fields['nw_src'], fields['arp_sha']) == (0, bytes(4), bytes(6))


def test_ipv6_tcp():
    pkt = (eth() / IPv6(src='2001:db8::1', dst='2001:db8::2', tc=0xb8, fl=0x12345, hlim=5)
           / TCP(sport=22, dport=5555, flags='PA'))
    fields, err = extract(pkt)
    assert err is None
    assert nonzero(fields) == {
        'in_port': 1, 'eth_dst': mac(MAC2), 'eth_src': mac(MAC1), 'eth_type': 0x86dd,
        'ipv6_src': ip6('2001:db8::1'), 'ipv6_dst': ip6('2001:db8::2'),
        'ipv6_label': 0x12345, 'nw_proto': 6, 'nw_tos': 0xb8, 'nw_ttl': 5,
        'tp_src': 22, 'tp_dst': 5555, 'tcp_flags': 0x018}


def test_ipv6_extension_headers():
    pkt = (eth() / IPv6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting(addresses=['2001:db8::9'])
           / IPv6ExtHdrDestOpt() / UDP(sport=9, dport=10))
    fields, err = extract(pkt)
    assert err is None
    assert (fields['nw_proto'], fields['tp_src'], fields['tp_dst']) == (17, 9, 10)
    assert fields['nw_frag'] == 0


def test_ipv6_ah():
    # AH: next header, length (4-octet units minus 2), reserved, SPI, sequence, 12-byte ICV.
    ah = bytes([6, 4, 0, 0]) + bytes(range(1, 9)) + bytes(12)
    fields, err = extract(eth() / IPv6(nh=51) / Raw(ah) / TCP(sport=443, dport=1))
    assert err is None
    assert (fields['nw_proto'], fields['tp_src']) == (6, 443)


@pytest.mark.parametrize('offset, m, nw_frag, port', [(0, 1, 1, 53), (5, 1, 3, 0), (5, 0, 3, 0)])
def test_ipv6_fragments(offset, m, nw_frag, port):
    pkt = eth() / IPv6() / IPv6ExtHdrFragment(offset=offset, m=m, nh=17) / UDP(sport=53)
    fields, err = extract(pkt)
    assert err is None
    assert (fields['nw_frag'], fields['nw_proto'], fields['tp_src']) == (nw_frag, 17, port)


def test_icmpv6_echo():
    fields, err = extract(eth() / IPv6() / ICMPv6EchoRequest())
    assert err is None
    assert (fields['nw_proto'], fields['tp_src'], fields['tp_dst']) == (58, 128, 0)
    assert fields['nd_target'] == bytes(16)


def test_nd_solicit_with_sll():
    pkt = (eth() / IPv6(dst='ff02::1:ff00:2') / ICMPv6ND_NS(tgt='2001:db8::2')
           / ICMPv6NDOptSrcLLAddr(lladdr=MAC1))
    fields, err = extract(pkt)
    assert err is None
    assert (fields['tp_src'], fields['tp_dst']) == (135, 0)
    assert fields['nd_target'] == ip6('2001:db8::2')
    assert (fields['arp_sha'], fields['arp_tha']) == (mac(MAC1), bytes(6))


def test_nd_advert_with_tll():
    pkt = (eth() / IPv6() / ICMPv6ND_NA(tgt='fe80::5', R=0, S=1, O=1)
           / ICMPv6NDOptDstLLAddr(lladdr=MAC2))
    fields, err = extract(pkt)
    assert err is None
    assert (fields['tp_src'], fields['nd_target']) == (136, ip6('fe80::5'))
    assert (fields['arp_sha'], fields['arp_tha']) == (bytes(6), mac(MAC2))


def test_nd_unknown_option_skipped_both_options_kept():
    other = bytes([14, 1]) + bytes(6)          # nonce option, 8 bytes
    pkt = (eth() / IPv6() / ICMPv6ND_NS(tgt='fe80::5') / Raw(other)
           / ICMPv6NDOptSrcLLAddr(lladdr=MAC1) / ICMPv6NDOptDstLLAddr(lladdr=MAC2))
    fields, err = extract(pkt)
    assert err is None
    assert (fields['arp_sha'], fields['arp_tha']) == (mac(MAC1), mac(MAC2))


def test_nd_repeated_option_invalidates():
    pkt = (eth() / IPv6() / ICMPv6ND_NS(tgt='fe80::5')
           / ICMPv6NDOptSrcLLAddr(lladdr=MAC1) / ICMPv6NDOptSrcLLAddr(lladdr=MAC2))
    fields, err = extract(pkt)
    assert err == flow.ERR_BAD_ND_OPTION
    assert (fields['nd_target'], fields['arp_sha']) == (bytes(16), bytes(6))
    assert fields['tp_src'] == 135


def test_nd_zero_length_option():
    pkt = eth() / IPv6() / ICMPv6ND_NS(tgt='fe80::5') / Raw(bytes([1, 0]) + bytes(6))
    fields, err = extract(pkt)
    assert err == flow.ERR_BAD_ND_OPTION
    assert fields['nd_target'] == ip6('fe80::5') and fields['arp_sha'] == bytes(6)


def test_nd_fields_only_for_code_0():
    pkt = eth() / IPv6() / ICMPv6ND_NS(code=1, tgt='fe80::5') / ICMPv6NDOptSrcLLAddr(lladdr=MAC1)
    fields, err = extract(pkt)
    assert err is None
    assert (fields['tp_src'], fields['tp_dst']) == (135, 1)
    assert (fields['nd_target'], fields['arp_sha']) == (bytes(16), bytes(6))


# --- malformed frames -------------------------------------------------------

def test_runt():
    assert flow_extract(memoryview(bytes(13)), md_of(1)) == (None, flow.ERR_RUNT)
    assert flow_extract(b'', md_of(1)) == (None, flow.ERR_RUNT)


def test_bad_ihl_and_length():
    frame = bytearray(bytes(eth() / IP() / TCP()))
    frame[14] = 0x44                                  # IHL 4
    fields, err = extract(frame)
    assert err == flow.ERR_BAD_IHL
    assert fields['nw_src'] == bytes(4) and fields['eth_type'] == 0x0800
    fields, err = extract(eth() / IP(len=10) / TCP())
    assert err == flow.ERR_BAD_IP_LEN
    assert fields['nw_proto'] == 6 and fields['tp_src'] == 0


def test_bad_tcp_offset():
    fields, err = extract(eth() / IP() / TCP(dataofs=4, sport=7))
    assert err == flow.ERR_BAD_TCP_OFFSET
    assert fields['tp_src'] == 0 and fields['tcp_flags'] == 0


def test_ipv6_extension_past_payload():
    pkt = eth() / IPv6(plen=8 + 4) / IPv6ExtHdrHopByHop(len=1, options=[]) / Raw(bytes(20))
    fields, err = extract(pkt)
    assert err == flow.ERR_BAD_IPV6_EXT
    assert fields['nw_proto'] == 0 and fields['tp_src'] == 0    # stuck at hop-by-hop (0)


def truncation_expectations():
    """Sample frames with, for each, the error expected at every cut length."""
    tcp = (eth() / IP(src='10.0.0.1', options=[IPOption_RR(routers=['1.2.3.4'])])
           / TCP(sport=80, dport=81, options=[('MSS', 1460)]) / Raw(b'p' * 10))
    # eth 14 | ipv4 20+8 -> 42 | tcp 20+4 -> 66 | payload -> 76
    yield 'ipv4-tcp', tcp, [(14, 42, flow.ERR_TRUNCATED_IPV4), (42, 66, flow.ERR_TRUNCATED_TCP),
                            (66, 76, flow.ERR_TRUNCATED_IPV4)]
    v6 = (eth() / Dot1Q(vlan=3) / IPv6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment(m=1)
          / UDP(dport=9) / Raw(b'u' * 4))
    # eth 14 | tag 18 | ipv6 58 | hop-by-hop 66 | fragment 74 | udp 82 | payload 86
    yield 'vlan-ipv6-udp', v6, [(14, 18, flow.ERR_TRUNCATED_VLAN),
                                (18, 58, flow.ERR_TRUNCATED_IPV6),
                                (58, 74, flow.ERR_BAD_IPV6_EXT), (74, 82, flow.ERR_TRUNCATED_UDP),
                                (82, 86, flow.ERR_TRUNCATED_IPV6)]
    nd = (eth() / IPv6() / ICMPv6ND_NS(tgt='fe80::1') / ICMPv6NDOptSrcLLAddr(lladdr=MAC1))
    # eth 14 | ipv6 54 | icmpv6 62 | target 78 | option 86
    yield 'nd', nd, [(14, 54, flow.ERR_TRUNCATED_IPV6), (54, 62, flow.ERR_TRUNCATED_ICMPV6),
                     (62, 78, flow.ERR_TRUNCATED_ND), (78, 86, flow.ERR_TRUNCATED_IPV6)]
    arp = eth() / ARP()
    yield 'arp', arp, [(14, 42, flow.ERR_TRUNCATED_ARP)]
    mpls = eth() / MPLS(label=5) / IP()
    yield 'mpls', mpls, [(14, 18, flow.ERR_TRUNCATED_MPLS), (18, 38, None)]
    pbb = eth() / Dot1AH(isid=7) / Ether() / IP()
    yield 'pbb', pbb, [(14, 18, flow.ERR_TRUNCATED_PBB), (18, 52, None)]
    icmp = eth() / IP() / ICMP()
    yield 'icmp', icmp, [(14, 34, flow.ERR_TRUNCATED_IPV4), (34, 42, flow.ERR_TRUNCATED_ICMP)]
    sctp = eth() / IP() / SCTP()
    yield 'sctp', sctp, [(14, 34, flow.ERR_TRUNCATED_IPV4), (34, 46, flow.ERR_TRUNCATED_SCTP)]


PARTIAL_VALUES = {(flow.ERR_TRUNCATED_VLAN, 'eth_type'): {0x8100},
                  (flow.ERR_BAD_IPV6_EXT, 'nw_proto'): {44}}     # a cut fragment header


@pytest.mark.parametrize('name, pkt, ranges', list(truncation_expectations()),
                         ids=[name for name, _, _ in truncation_expectations()])
def test_every_truncation(name, pkt, ranges):
    frame = bytes(pkt)
    assert len(frame) == ranges[-1][1], 'expectation table out of date'
    full, err = flow_extract(memoryview(frame), md_of(1))
    assert err is None
    full = key_fields(full)
    expected = {}
    for start, stop, error in ranges:
        expected.update(dict.fromkeys(range(start, stop), error))
    for n in range(len(frame)):
        key, err = flow_extract(memoryview(frame)[:n], md_of(1))
        if n < 14:
            assert (key, err) == (None, flow.ERR_RUNT)
            continue
        assert len(key) == KEY_LEN
        assert err == expected[n], f'{name} cut at {n}'
        # Parsed as far as it goes: every field set is the full frame's value,
        # except the last type read before a cut tag or extension header.
        for field, value in nonzero(key_fields(key)).items():
            if (err, field) in PARTIAL_VALUES:
                assert value in PARTIAL_VALUES[err, field], (name, n, field)
            else:
                assert value == full[field], (name, n, field)


def test_truncation_keeps_outer_headers():
    frame = bytes(eth() / IP(src='10.0.0.1', dst='10.0.0.2') / TCP(sport=80))
    fields, err = extract(frame[:40])
    assert err == flow.ERR_TRUNCATED_TCP
    assert (fields['nw_src'], fields['nw_proto'], fields['tp_src']) == (ip4('10.0.0.1'), 6, 0)
    fields, err = extract(frame[:16])
    assert err == flow.ERR_TRUNCATED_IPV4
    assert fields['eth_src'] == mac(MAC1) and fields['nw_proto'] == 0


def test_truncated_tag_leaves_tpid_as_eth_type():
    fields, err = extract(bytes(eth() / Dot1Q(vlan=5) / IP())[:16])
    assert err == flow.ERR_TRUNCATED_VLAN
    assert (fields['eth_type'], fields['vlan_tpid'], fields['vlan_tci']) == (0x8100, 0, 0)


def check_never_raises(frame):
    key, err = flow_extract(memoryview(frame), md_of(1))
    if len(frame) < 14:
        assert (key, err) == (None, flow.ERR_RUNT)
    else:
        assert len(key) == KEY_LEN
        assert err is None or err in ERRORS


def test_fuzz_random_bytes():
    rng = random.Random(1234)
    ethertypes = [b'\x08\x00', b'\x86\xdd', b'\x08\x06', b'\x81\x00', b'\x88\xa8', b'\x88\x47']
    for _ in range(3000):
        frame = bytearray(rng.randbytes(rng.randrange(0, 160)))
        if len(frame) >= 14 and rng.random() < 0.8:
            frame[12:14] = rng.choice(ethertypes)
            if len(frame) > 14 and frame[12:14] == b'\x08\x00':
                frame[14] = 0x40 | rng.randrange(16)
        check_never_raises(bytes(frame))


def test_fuzz_mutated_frames():
    rng = random.Random(99)
    samples = [bytes(pkt) for _, pkt, _ in truncation_expectations()]
    for _ in range(3000):
        frame = bytearray(rng.choice(samples))
        for _ in range(rng.randrange(1, 4)):
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        check_never_raises(bytes(frame[:rng.randrange(len(frame) + 1)]))
