"""Tests for mnovs.dp.actions: odp action execution and validation.

Each set_masked case is checked two ways against the frame scapy builds with
the field already changed: on a frame with complete checksums (byte-for-byte
equal, so every checksum is right), and, for TCP/UDP, on the kernel's
CHECKSUM_PARTIAL form (equal to the partial form of the expected frame, and
equal to it once offload.segment completes the checksum). MPLS push/pop are
checked against scapy's MPLS layer, with and without offload work pending;
the meter action against a real MeterTable.
"""

import random
import socket
import struct

import pytest
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, ICMPv6NDOptMTU,
    ICMPv6NDOptSrcLLAddr, IPv6, IPv6ExtHdrDestOpt)
from scapy.layers.l2 import ARP, Dot1AD, Dot1AH, Dot1Q, Ether
from scapy.layers.sctp import SCTP, SCTPChunkData
from scapy.packet import Raw, raw

from mnovs.dp import offload
from mnovs.dp.actions import crc32c, execute, validate_actions
from mnovs.dp.meter import MeterTable
from mnovs.dp.offload import GSO_TCPV4, VNET_HDR, VNET_HDR_LEN
from test_offload import MACS, V4, V6, assert_checksums, data, finish, partial, vnet


class FakeDP:
    """Records what execute() sends, copied at the time it is sent."""

    def __init__(self):
        self.outputs = []
        self.upcalls = []
        self.sent_objects = []
        self.drops = {}
        self.meters = MeterTable()

    def output(self, port_no, packet):
        self.sent_objects.append(packet)
        self.outputs.append((port_no, bytes(packet)))

    def userspace(self, packet, userdata):
        self.upcalls.append((bytes(packet), userdata))

    def count_drop(self, reason, n=1):
        self.drops[reason] = self.drops.get(reason, 0) + n


def run_all(packet, *actions, dp=None):
    """Execute actions on a copy of packet; return the FakeDP that saw them."""
    validate_actions(actions)
    buf = bytearray(packet)
    dp = dp or FakeDP()
    execute(dp, memoryview(buf), actions)
    assert buf == packet, 'execute wrote to its input'
    return dp


def run(packet, *actions):
    """Execute actions then output 1 on a copy of packet; return what was sent."""
    return run_all(packet, *actions, ('output', 1)).outputs[-1][1]


def mac(text):
    return bytes.fromhex(text.replace(':', ''))


def ip4(text):
    return socket.inet_aton(text)


def ip6(text):
    return socket.inet_pton(socket.AF_INET6, text)


def u16(value):
    return struct.pack('!H', value)


def full(width):
    return b'\xff' * width


# --- output, userspace, copy-on-write ---------------------------------------

PING = Ether(**MACS) / IP(**V4) / ICMP() / Raw(data(20))


def test_output_only_sends_input_uncopied():
    packet = memoryview(vnet(raw(PING)))
    dp = FakeDP()
    execute(dp, packet, (('output', 3), ('output', 4)))
    assert dp.outputs == [(3, bytes(packet)), (4, bytes(packet))]
    assert all(obj is packet for obj in dp.sent_objects)


def test_empty_actions_drop():
    dp = FakeDP()
    execute(dp, vnet(raw(PING)), ())
    assert dp.outputs == [] and dp.upcalls == []


def test_userspace_gets_vnet_header_and_frame():
    packet = vnet(raw(PING))
    dp = FakeDP()
    execute(dp, packet, (('set_masked', 'nw_ttl', b'\x07', b'\xff'), ('userspace', b'cookie')))
    frame, userdata = dp.upcalls[0]
    assert userdata == b'cookie' and frame[:VNET_HDR_LEN] == packet[:VNET_HDR_LEN]
    assert frame[VNET_HDR_LEN:] == raw(Ether(**MACS) / IP(**V4, ttl=7) / ICMP() / Raw(data(20)))


def test_outputs_send_the_state_at_their_turn():
    buf = bytearray(vnet(raw(PING)))
    before = bytes(buf)
    dp = FakeDP()
    execute(dp, buf, (('output', 1),
                      ('set_masked', 'eth_dst', mac('02:00:00:00:00:09'), full(6)),
                      ('output', 2),
                      ('push_vlan', 0x8100, 42),
                      ('output', 3),
                      ('pop_vlan',),
                      ('set_masked', 'eth_dst', mac('00:00:00:00:00:02'), full(6)),
                      ('output', 4)))
    assert buf == before
    sent = dict(dp.outputs)
    assert sent[1] == before and sent[4] == before
    assert Ether(sent[2][VNET_HDR_LEN:]).dst == '02:00:00:00:00:09'
    assert Ether(sent[3][VNET_HDR_LEN:])[Dot1Q].vlan == 42


# --- push_vlan / pop_vlan ----------------------------------------------------

TCP4 = Ether(**MACS) / IP(**V4) / TCP(sport=1000, dport=80, flags='PA') / Raw(data(99))
TCP4_TAGGED = Ether(**MACS) / Dot1Q(vlan=100, prio=5) / IP(**V4) / TCP(
    sport=1000, dport=80, flags='PA') / Raw(data(99))
PUSH_100 = ('push_vlan', 0x8100, 5 << 13 | 100)


def test_push_vlan_plain_frame():
    out = run(vnet(raw(TCP4)), PUSH_100)
    assert out == vnet(raw(TCP4_TAGGED))


def test_push_vlan_qinq():
    out = run(vnet(raw(TCP4_TAGGED)), ('push_vlan', 0x88A8, 7))
    frame = Ether(out[VNET_HDR_LEN:])
    assert frame[Dot1AD].vlan == 7 and frame[Dot1Q].vlan == 100
    assert run(out, ('pop_vlan',)) == vnet(raw(TCP4_TAGGED))


def test_push_vlan_shifts_partial_checksum_start():
    out = run(partial(TCP4), PUSH_100)
    assert out == partial(TCP4_TAGGED)
    assert VNET_HDR.unpack_from(out)[4] == VNET_HDR.unpack_from(partial(TCP4))[4] + 4
    assert finish(out) == raw(TCP4_TAGGED)


def test_pop_vlan_shifts_partial_checksum_start():
    out = run(partial(TCP4_TAGGED), ('pop_vlan',))
    assert out == partial(TCP4)
    assert finish(out) == raw(TCP4)


def test_push_vlan_on_gso_frame_shifts_hdr_len():
    big = Ether(**MACS) / IP(**V4) / TCP(sport=1, dport=2, flags='A') / Raw(data(20000))
    big_tagged = Ether(**MACS) / Dot1Q(vlan=100, prio=5) / big[IP]
    packet = partial(big, GSO_TCPV4, 1448)
    out = run(packet, PUSH_100)
    assert out[:VNET_HDR_LEN] == partial(big_tagged, GSO_TCPV4, 1448)[:VNET_HDR_LEN]
    assert VNET_HDR.unpack_from(out)[2] == VNET_HDR.unpack_from(packet)[2] + 4
    segs = offload.segment(out)
    assert len(segs) == 14
    for seg in segs:
        assert assert_checksums(seg)[Dot1Q].vlan == 100


def test_pop_vlan_untagged_is_noop():
    assert run(partial(TCP4), ('pop_vlan',)) == partial(TCP4)


# --- set_masked --------------------------------------------------------------

T4 = Ether(**MACS) / IP(**V4, ttl=64, tos=0x11) / TCP(sport=1000, dport=80, flags='PA') / Raw(
    data(99))
U4 = Ether(**MACS) / IP(**V4) / UDP(sport=53, dport=5353) / Raw(data(40))
U4_NOCSUM = Ether(**MACS) / IP(**V4) / UDP(sport=53, dport=5353, chksum=0) / Raw(data(40))
T4Q = TCP4_TAGGED
T6 = Ether(**MACS) / IPv6(**V6, tc=0x21, fl=0x12345, hlim=9) / TCP(sport=1, dport=2) / Raw(
    data(77))
U6Q = Ether(**MACS) / Dot1Q(vlan=5) / IPv6(**V6) / UDP(sport=7, dport=8) / Raw(data(33))
T6X = Ether(**MACS) / IPv6(**V6) / IPv6ExtHdrDestOpt() / TCP(sport=1, dport=2) / Raw(data(50))
ICMP4 = Ether(**MACS) / IP(**V4) / ICMP() / Raw(data(20))
ICMP6 = Ether(**MACS) / IPv6(**V6) / ICMPv6EchoRequest(data=data(24))
FRAG4 = Ether(**MACS) / IP(**V4, frag=100, proto=6) / Raw(data(64))
SCTP4 = Ether(**MACS) / IP(**V4) / SCTP(sport=10, dport=20) / SCTPChunkData(data=data(30))
SCTP6 = Ether(**MACS) / IPv6(**V6) / SCTP(sport=10, dport=20) / SCTPChunkData(data=data(31))
ARP4 = Ether(**MACS) / ARP(op=1, hwsrc=MACS['src'], psrc='10.0.0.1', pdst='10.0.0.2')
NS6 = (Ether(**MACS) / IPv6(**V6) / ICMPv6ND_NS(tgt='fe80::2')
       / ICMPv6NDOptSrcLLAddr(lladdr=MACS['src']))
NA6 = (Ether(**MACS) / IPv6(**V6) / ICMPv6ND_NA(tgt='fe80::2')
       / ICMPv6NDOptMTU() / ICMPv6NDOptDstLLAddr(lladdr=MACS['dst']))
PBB = Ether(**MACS) / Dot1AH(prio=5, isid=0x123456) / Ether(**MACS) / IP(**V4) / UDP()


def case(name, pkt, field, value, mask, layer, **changes):
    expected = pkt.copy()
    for attr, new in changes.items():
        setattr(expected[layer], attr, new)
    return pytest.param(pkt, ('set_masked', field, value, mask), expected, id=name)


SET_CASES = [
    case('eth_dst', T4, 'eth_dst', mac('0a:0b:0c:0d:0e:0f'), full(6), Ether,
         dst='0a:0b:0c:0d:0e:0f'),
    case('eth_src-masked', U6Q, 'eth_src', mac('aa:bb:00:00:00:00'),
         mac('ff:00:00:00:00:00'), Ether, src='aa:00:00:00:00:01'),
    case('vlan_tci-vid', T4Q, 'vlan_tci', u16(20), u16(0x0FFF), Dot1Q, vlan=20),
    case('vlan_tci-pcp', T4Q, 'vlan_tci', u16(6 << 13), u16(0xE000), Dot1Q, prio=6),
    case('nw_src-tcp', T4, 'nw_src', ip4('192.0.2.7'), full(4), IP, src='192.0.2.7'),
    case('nw_dst-udp', U4, 'nw_dst', ip4('203.0.113.200'), full(4), IP, dst='203.0.113.200'),
    case('nw_src-masked-vlan', T4Q, 'nw_src', ip4('172.16.9.9'), ip4('255.255.0.0'), IP,
         src='172.16.0.1'),
    case('nw_dst-udp-no-csum', U4_NOCSUM, 'nw_dst', ip4('1.2.3.4'), full(4), IP, dst='1.2.3.4'),
    case('nw_dst-icmp', ICMP4, 'nw_dst', ip4('10.9.8.7'), full(4), IP, dst='10.9.8.7'),
    case('nw_src-fragment', FRAG4, 'nw_src', ip4('10.9.8.7'), full(4), IP, src='10.9.8.7'),
    case('nw_src-arp', ARP4, 'nw_src', ip4('10.0.0.99'), full(4), ARP, psrc='10.0.0.99'),
    case('nw_dst-arp', ARP4, 'nw_dst', ip4('10.0.0.98'), full(4), ARP, pdst='10.0.0.98'),
    case('nw_tos-dscp', T4, 'nw_tos', b'\xb8', b'\xfc', IP, tos=0xB9),
    case('nw_tos-ipv6', U6Q, 'nw_tos', b'\x48', b'\xff', IPv6, tc=0x48),
    case('nw_ttl', T4, 'nw_ttl', b'\x05', b'\xff', IP, ttl=5),
    case('nw_ttl-udp', U4, 'nw_ttl', b'\x01', b'\xff', IP, ttl=1),
    case('nw_ttl-ipv6', T6, 'nw_ttl', b'\xfe', b'\xff', IPv6, hlim=254),
    case('ipv6_src-tcp', T6, 'ipv6_src', ip6('fe80::abcd'), full(16), IPv6, src='fe80::abcd'),
    case('ipv6_dst-udp', U6Q, 'ipv6_dst', ip6('2001:db8:ffff::9'), full(16), IPv6,
         dst='2001:db8:ffff::9'),
    case('ipv6_dst-masked', T6, 'ipv6_dst', ip6('2001:db8:1234::'), ip6('ffff:ffff:ffff::'),
         IPv6, dst='2001:db8:1234::2'),
    case('ipv6_src-icmpv6', ICMP6, 'ipv6_src', ip6('::7'), full(16), IPv6, src='::7'),
    case('ipv6_dst-ext-hdr', T6X, 'ipv6_dst', ip6('::8'), full(16), IPv6, dst='::8'),
    case('ipv6_label', T6, 'ipv6_label', b'\x00\x0a\xbc\xde', full(4), IPv6, fl=0xABCDE),
    case('tp_src-tcp', T4, 'tp_src', u16(4242), full(2), TCP, sport=4242),
    case('tp_dst-tcp-masked', T4Q, 'tp_dst', u16(0x1200), u16(0xFF00), TCP, dport=0x1250),
    case('tp_dst-udp', U4, 'tp_dst', u16(9999), full(2), UDP, dport=9999),
    case('tp_dst-udp-no-csum', U4_NOCSUM, 'tp_dst', u16(9999), full(2), UDP, dport=9999),
    case('tp_src-tcp6', T6, 'tp_src', u16(65535), full(2), TCP, sport=65535),
    case('tp_dst-udp6', U6Q, 'tp_dst', u16(1), full(2), UDP, dport=1),
    case('tp_src-sctp', SCTP4, 'tp_src', u16(3868), full(2), SCTP, sport=3868),
    case('tp_dst-sctp6', SCTP6, 'tp_dst', u16(2905), full(2), SCTP, dport=2905),
    case('arp_op', ARP4, 'arp_op', u16(2), full(2), ARP, op=2),
    case('arp_sha', ARP4, 'arp_sha', mac('02:11:22:33:44:55'), full(6), ARP,
         hwsrc='02:11:22:33:44:55'),
    case('arp_tha', ARP4, 'arp_tha', mac('02:11:22:33:44:66'), full(6), ARP,
         hwdst='02:11:22:33:44:66'),
    case('tp_src-icmp-type', ICMP4, 'tp_src', u16(0), u16(0xff), ICMP, type=0),
    case('tp_dst-icmp-code', ICMP4, 'tp_dst', u16(3), u16(0xff), ICMP, code=3),
    case('tp_src-icmpv6-type', ICMP6, 'tp_src', u16(129), u16(0xff), ICMPv6EchoRequest,
         type=129),
    case('tp_dst-icmpv6-code', ICMP6, 'tp_dst', u16(7), u16(0xff), ICMPv6EchoRequest, code=7),
    case('nd_target-ns', NS6, 'nd_target', ip6('fe80::77'), full(16), ICMPv6ND_NS,
         tgt='fe80::77'),
    case('nd_target-na-masked', NA6, 'nd_target', ip6('fe80::ff00'), ip6('::ff00'),
         ICMPv6ND_NA, tgt='fe80::ff02'),
    case('arp_sha-nd-sll', NS6, 'arp_sha', mac('02:11:22:33:44:55'), full(6),
         ICMPv6NDOptSrcLLAddr, lladdr='02:11:22:33:44:55'),
    case('arp_tha-nd-tll-after-mtu', NA6, 'arp_tha', mac('02:11:22:33:44:66'), full(6),
         ICMPv6NDOptDstLLAddr, lladdr='02:11:22:33:44:66'),
    case('pbb_itag-isid', PBB, 'pbb_itag', b'\x00\x00\x00\x42', b'\x00\xff\xff\xff', Dot1AH,
         isid=0x42),
]


@pytest.mark.parametrize('pkt, action, expected', SET_CASES)
def test_set_masked_complete_checksums(pkt, action, expected):
    out = run(vnet(raw(pkt)), action)
    assert out[VNET_HDR_LEN:] == raw(expected)
    assert out != vnet(raw(pkt))


@pytest.mark.parametrize('pkt, action, expected', [
    c for c in SET_CASES if (TCP in c.values[0] or UDP in c.values[0])
    and c.values[0] is not U4_NOCSUM])
def test_set_masked_partial_checksums(pkt, action, expected):
    out = run(partial(pkt), action)
    assert out == partial(expected)
    assert finish(out) == raw(expected)


@pytest.mark.parametrize('field, value, layer, changes', [
    ('tp_src', u16(129), ICMPv6EchoRequest, {'type': 129}),
    ('nd_target', ip6('fe80::77'), ICMPv6ND_NS, {'tgt': 'fe80::77'}),
    ('arp_sha', mac('02:11:22:33:44:55'), ICMPv6NDOptSrcLLAddr, {'lladdr': '02:11:22:33:44:55'}),
])
def test_icmpv6_rewrites_leave_a_partial_checksum_alone(field, value, layer, changes):
    pkt = ICMP6 if layer is ICMPv6EchoRequest else NS6
    expected = pkt.copy()
    for attr, new in changes.items():
        setattr(expected[layer], attr, new)
    out = run(icmpv6_partial(pkt), ('set_masked', field, value, b'\xff' * len(value)))
    assert out == icmpv6_partial(expected)
    assert finish(out) == raw(expected)


def icmpv6_partial(pkt):
    """vnet header + frame with the ICMPv6 checksum left partial (pseudo-header sum)."""
    frame = bytearray(raw(pkt))
    l4 = 14 + 40
    body = len(frame) - l4
    pseudo = frame[14 + 8:14 + 40] + struct.pack('!II', body, 58)
    total = offload.ones_sum(bytes(pseudo))
    struct.pack_into('!H', frame, l4 + 2, total or 0xFFFF)
    return vnet(frame, offload.F_NEEDS_CSUM, 0, 0, 0, l4, 2)


def test_set_masked_on_gso_frame():
    big = Ether(**MACS) / IP(**V4) / TCP(sport=1, dport=2, flags='A') / Raw(data(9000))
    moved = Ether(**MACS) / IP(src='198.51.100.1', dst=V4['dst']) / TCP(
        sport=1, dport=8080, flags='A') / Raw(data(9000))
    out = run(partial(big, GSO_TCPV4, 1448),
              ('set_masked', 'nw_src', ip4('198.51.100.1'), full(4)),
              ('set_masked', 'tp_dst', u16(8080), full(2)))
    assert out == partial(moved, GSO_TCPV4, 1448)
    assert offload.segment(out) == offload.segment(partial(moved, GSO_TCPV4, 1448))


def test_udp_zero_checksum_stays_zero():
    out = run(vnet(raw(U4_NOCSUM)), ('set_masked', 'nw_src', ip4('1.1.1.1'), full(4)))
    assert Ether(out[VNET_HDR_LEN:])[UDP].chksum == 0


@pytest.mark.parametrize('pkt, field, width', [
    (ARP4, 'tp_src', 2), (ICMP4, 'nd_target', 16), (FRAG4, 'tp_src', 2),
    (T4, 'pbb_itag', 4), (T6, 'arp_sha', 6), (T6, 'nd_target', 16),
    (T6, 'nw_src', 4), (T4, 'ipv6_src', 16), (T4, 'ipv6_label', 4),
    (T4, 'vlan_tci', 2), (T4Q, 'mpls_lse', 4), (ARP4, 'nw_ttl', 1), (ARP4, 'nw_tos', 1),
    (T4, 'arp_sha', 6),
    (Ether(**MACS) / ARP(ptype=0x86DD, plen=16), 'nw_src', 4),
])
def test_set_masked_missing_field_is_noop(pkt, field, width):
    packet = vnet(raw(pkt))
    assert run(packet, ('set_masked', field, b'\x5a' * width, full(width))) == packet


def test_crc32c_known_value():
    assert crc32c(b'123456789') == 0xE3069283


# --- push_pbb / pop_pbb / copy_ttl_in / copy_ttl_out -----------------------------

UDP4_FRAME = Ether(**MACS) / IP(**V4) / UDP(sport=7, dport=9) / Raw(data(30))


def backbone(customer, itag):
    """The frame push_pbb makes of scapy `customer` with this I-TAG TCI."""
    return (Ether(src=customer.src, dst=customer.dst)
            / Dot1AH(prio=itag >> 29, dei=itag >> 28 & 1, nca=itag >> 27 & 1, isid=itag & 0xFFFFFF)
            / customer)


@pytest.mark.parametrize('customer', [UDP4_FRAME, TCP4_TAGGED, ARP4], ids=['udp', 'tagged', 'arp'])
def test_push_pbb_then_pop_pbb(customer):
    itag = 5 << 29 | 1 << 27 | 0xABCDEF
    pushed = run(vnet(raw(customer)), ('push_pbb', itag))
    assert pushed == vnet(raw(backbone(customer, itag)))
    assert run(pushed, ('pop_pbb',)) == vnet(raw(customer))


def test_push_pbb_finishes_offloads_first():
    dp = run_all(partial(TCP4), ('push_pbb', 7), ('output', 1))
    (port, out), = dp.outputs
    assert out == bytes(VNET_HDR_LEN) + raw(backbone(TCP4, 7))


def test_pop_pbb_moves_a_partial_checksum():
    inner = partial(TCP4)
    flags, gso_type, hdr_len, gso_size, start, offset = VNET_HDR.unpack_from(inner)
    outer = vnet(raw(backbone(TCP4, 7))[:18] + inner[VNET_HDR_LEN:], flags, gso_type, hdr_len,
                 gso_size, start + 18, offset)
    out = run(outer, ('pop_pbb',))
    assert out == inner and finish(out) == raw(TCP4)


def test_pop_pbb_takes_a_backbone_tag_with_it():
    tagged = Ether(**MACS) / Dot1AD(vlan=9) / Dot1AH(isid=1) / UDP4_FRAME
    assert run(vnet(raw(tagged)), ('pop_pbb',)) == vnet(raw(UDP4_FRAME))


@pytest.mark.parametrize('frame', [raw(UDP4_FRAME), raw(backbone(UDP4_FRAME, 1))[:30]],
                         ids=['not-pbb', 'truncated'])
def test_pop_pbb_leaves_other_frames(frame):
    assert run(vnet(frame), ('pop_pbb',)) == vnet(frame)


MPLS_IP = Ether(**MACS) / MPLS(label=5, s=1, ttl=40) / IP(**V4, ttl=9) / UDP() / Raw(data(10))
MPLS_IP6 = Ether(**MACS) / MPLS(label=5, s=1, ttl=40) / IPv6(**V6, hlim=9) / UDP()
MPLS_TWO = Ether(**MACS) / MPLS(label=5, s=0, ttl=40) / MPLS(label=6, s=1, ttl=3) / IP(**V4)


@pytest.mark.parametrize('pkt, action, layer, attr, value', [
    (MPLS_IP, 'copy_ttl_in', IP, 'ttl', 40),
    (MPLS_IP6, 'copy_ttl_in', IPv6, 'hlim', 40),
    (MPLS_IP, 'copy_ttl_out', MPLS, 'ttl', 9),
    (MPLS_IP6, 'copy_ttl_out', MPLS, 'ttl', 9),
])
def test_copy_ttl_with_ip_under_the_label(pkt, action, layer, attr, value):
    expected = pkt.copy()
    setattr(expected[layer], attr, value)
    assert run(vnet(raw(pkt)), (action,)) == vnet(raw(expected))    # IPv4 checksum too


def test_copy_ttl_between_labels():
    inward = Ether(run(vnet(raw(MPLS_TWO)), ('copy_ttl_in',))[VNET_HDR_LEN:])
    outward = Ether(run(vnet(raw(MPLS_TWO)), ('copy_ttl_out',))[VNET_HDR_LEN:])
    assert (inward[MPLS].ttl, inward[MPLS].payload.ttl) == (40, 40)
    assert (outward[MPLS].ttl, outward[MPLS].payload.ttl) == (3, 3)


@pytest.mark.parametrize('frame', [raw(UDP4_FRAME), raw(MPLS_IP)[:20], raw(MPLS_TWO)[:19]],
                         ids=['not-mpls', 'ip-cut', 'label-cut'])
def test_copy_ttl_leaves_other_frames(frame):
    for action in ('copy_ttl_in', 'copy_ttl_out'):
        assert run(vnet(frame), (action,)) == vnet(frame)


# --- push_mpls / pop_mpls --------------------------------------------------------

def lse(label, tc=0, bos=1, ttl=64):
    """A label stack entry as on the wire, as an int."""
    return label << 12 | tc << 9 | bos << 8 | ttl


PUSH_1000 = ('push_mpls', 0x8847, lse(1000, 5, 1, 63))
T4_MPLS = Ether(**MACS) / MPLS(label=1000, cos=5, s=1, ttl=63) / T4[IP]
T4_MPLS2 = Ether(**MACS) / MPLS(label=2000, s=0, ttl=9) / MPLS(label=1000, cos=5, ttl=63) / T4[IP]
T4Q_MPLS = Ether(**MACS) / Dot1Q(vlan=100, prio=5, type=0x8847) / MPLS(
    label=1000, cos=5, ttl=63) / T4Q[IP]
BIG = Ether(**MACS) / IP(**V4) / TCP(sport=1, dport=2, flags='A') / Raw(data(9000))
BIG_MPLS = Ether(**MACS) / MPLS(label=1000, cos=5, ttl=63) / BIG[IP]
BIG_MPLS2 = Ether(**MACS) / MPLS(label=2000, s=0) / BIG_MPLS[MPLS]


def test_push_mpls_plain_frame():
    out = run(vnet(raw(T4)), PUSH_1000)
    assert out == vnet(raw(T4_MPLS))
    assert Ether(out[VNET_HDR_LEN:])[MPLS].label == 1000


def test_push_mpls_goes_after_vlan_tags():
    assert run(vnet(raw(T4Q)), PUSH_1000) == vnet(raw(T4Q_MPLS))
    qinq = Ether(**MACS) / Dot1AD(vlan=7) / Dot1Q(vlan=100) / IP(**V4) / UDP() / Raw(data(9))
    frame = Ether(run(vnet(raw(qinq)), PUSH_1000)[VNET_HDR_LEN:])
    assert frame[Dot1AD].vlan == 7 and frame[Dot1Q].type == 0x8847
    assert frame[MPLS].label == 1000 and frame[IP].dst == V4['dst']


def test_push_mpls_onto_a_label_stack():
    out = run(vnet(raw(T4_MPLS)), ('push_mpls', 0x8847, lse(2000, 0, 0, 9)))
    assert out == vnet(raw(T4_MPLS2))


@pytest.mark.parametrize('before, action, after', [
    (T4_MPLS, ('pop_mpls', 0x0800), T4),
    (T4Q_MPLS, ('pop_mpls', 0x0800), T4Q),
    (T4_MPLS2, ('pop_mpls', 0x8847), T4_MPLS),
])
def test_pop_mpls(before, action, after):
    assert run(vnet(raw(before)), action) == vnet(raw(after))


def test_push_then_pop_is_identity_and_pop_without_label_is_noop():
    assert run(vnet(raw(T4)), PUSH_1000, ('pop_mpls', 0x0800)) == vnet(raw(T4))
    assert run(vnet(raw(T4Q)), ('pop_mpls', 0x0800)) == vnet(raw(T4Q))


@pytest.mark.parametrize('frame, actions', [
    (b'', (PUSH_1000,)),
    (bytes(12), (PUSH_1000,)),
    (raw(Ether(**MACS) / Dot1Q(vlan=5))[:16], (PUSH_1000,)),        # tag cut short
    (raw(T4_MPLS)[:17], (('pop_mpls', 0x0800),)),                     # label cut short
    (raw(T4_MPLS)[:17], (('set_masked', 'mpls_lse', bytes(4), full(4)),)),
])
def test_mpls_on_truncated_frames_is_noop(frame, actions):
    packet = vnet(frame)
    assert run(packet, *actions) == packet


@pytest.mark.parametrize('value, mask, changes', [
    (lse(77, 0, 0, 0), 0xFFFFF000, dict(label=77)),                 # set_field mpls_label
    (lse(0, 2, 0, 0), 0x00000E00, dict(cos=2)),                     # set_field mpls_tc
    (lse(0, 0, 0, 62), 0x000000FF, dict(ttl=62)),                   # dec_mpls_ttl
    (lse(0, 0, 0, 0), 0x00000100, dict(s=0)),                       # set_field mpls_bos
])
def test_set_masked_mpls_lse(value, mask, changes):
    expected = T4_MPLS.copy()
    for attr, new in changes.items():
        setattr(expected[MPLS], attr, new)
    out = run(vnet(raw(T4_MPLS)), ('set_masked', 'mpls_lse', value.to_bytes(4, 'big'),
                                   mask.to_bytes(4, 'big')))
    assert out == vnet(raw(expected))


# MPLS with offload work pending: frames leave with a zeroed vnet header.

def test_push_mpls_completes_a_partial_checksum():
    out = run(partial(T4), PUSH_1000)
    assert out == vnet(raw(T4_MPLS))
    assert_checksums(out[VNET_HDR_LEN:])


def test_push_mpls_segments_a_gso_frame_in_software():
    packet = partial(BIG, GSO_TCPV4, 1448)
    dp = run_all(packet, ('output', 1), PUSH_1000, ('output', 2), ('output', 3))
    assert dp.outputs[0] == (1, packet)                     # before the push: as it came
    segs = offload.segment(packet)
    assert len(segs) == 7
    expected = [vnet(raw(Ether(**MACS) / MPLS(label=1000, cos=5, ttl=63) / Ether(seg)[IP]))
                for seg in segs]
    assert [out for port, out in dp.outputs if port == 2] == expected
    assert [out for port, out in dp.outputs if port == 3] == expected
    for out in expected:
        assert assert_checksums(out[VNET_HDR_LEN:])[TCP].sport == 1


def test_pop_bottom_mpls_keeps_offloads():
    assert run(partial(T4_MPLS), ('pop_mpls', 0x0800)) == partial(T4)
    out = run(partial(BIG_MPLS, GSO_TCPV4, 1448), ('pop_mpls', 0x0800))
    assert out == partial(BIG, GSO_TCPV4, 1448)
    assert offload.segment(out) == offload.segment(partial(BIG, GSO_TCPV4, 1448))


def test_pop_leaving_a_label_finishes_checksum_in_software():
    assert run(partial(T4_MPLS2), ('pop_mpls', 0x8847)) == vnet(raw(T4_MPLS))


def test_pop_leaving_a_label_drops_gso_frame():
    dp = run_all(partial(BIG_MPLS2, GSO_TCPV4, 1448), ('pop_mpls', 0x8847), ('output', 1))
    assert dp.outputs == [] and dp.drops == {'mpls-offload': 1}


# --- meter -----------------------------------------------------------------------

def test_meter_drop_ends_the_action_list():
    dp = FakeDP()
    dp.meters.set(1, 'pktps', [('drop', 1, 1)])
    packet = vnet(raw(T4))
    actions = (('output', 1), ('meter', 1), ('output', 2))
    run_all(packet, *actions, dp=dp)
    run_all(packet, *actions, dp=dp)
    assert [port for port, _ in dp.outputs] == [1, 2, 1]
    assert dp.drops == {'meter': 1}
    stats = dp.meters.stats(1)
    assert stats['packet_in_count'] == 2 and stats['byte_in_count'] == 2 * len(raw(T4))
    assert stats['bands'][0]['packet_count'] == 1


def test_unknown_meter_passes():
    dp = run_all(vnet(raw(T4)), ('meter', 9), ('output', 1))
    assert len(dp.outputs) == 1 and dp.drops == {}


def test_meter_counts_gso_segments():
    dp = FakeDP()
    dp.meters.set(1, 'pktps', [('drop', 1000, None)])
    packet = partial(BIG, GSO_TCPV4, 1448)
    run_all(packet, ('meter', 1), ('output', 1), dp=dp)
    stats = dp.meters.stats(1)
    assert stats['packet_in_count'] == 7
    assert stats['byte_in_count'] == len(packet) - VNET_HDR_LEN


# --- malformed frames ----------------------------------------------------------

ALL_ACTIONS = [PUSH_100, ('pop_vlan',), PUSH_1000, ('pop_mpls', 0x0800),
               ('pop_mpls', 0x8847), ('set_masked', 'mpls_lse', bytes(4), full(4)),
               ('meter', 1)] + [c.values[1] for c in SET_CASES]


def test_malformed_frames_never_raise():
    rng = random.Random(3)
    frames = [raw(p) for p in (T4, U6Q, T6X, SCTP4, ARP4, ICMP6, FRAG4, T4Q, T4_MPLS2,
                               T4Q_MPLS)]
    dp = FakeDP()
    dp.meters.set(1, 'pktps', [('drop', 1000, 10)])
    for _ in range(4000):
        frame = bytearray(rng.choice(frames)[:rng.randrange(0, 200)])
        for _ in range(rng.randrange(4)):
            if frame:
                frame[rng.randrange(len(frame))] = rng.randrange(256)
        header = VNET_HDR.pack(rng.choice((0, 1)), rng.choice((0, 1, 4)), rng.randrange(100),
                               1448, rng.randrange(120), rng.choice((6, 16)))
        run_all(header + frame, *rng.sample(ALL_ACTIONS, 3), ('output', 1), dp=dp)


# --- validate_actions ----------------------------------------------------------

def test_validate_accepts_good_actions():
    validate_actions(())
    validate_actions((('output', 1), PUSH_100, ('pop_vlan',), ('userspace', b''),
                      ('set_masked', 'ipv6_dst', bytes(16), full(16)),
                      PUSH_1000, ('push_mpls', 0x8848, 0), ('pop_mpls', 0x0800),
                      ('meter', 0xFFFFFFFF), ('set_masked', 'mpls_lse', bytes(4), full(4)),
                      ('push_pbb', 0xFFFFFFFF), ('pop_pbb',), ('copy_ttl_in',),
                      ('copy_ttl_out',), ('set_masked', 'pbb_itag', bytes(4), full(4)),
                      ('set_masked', 'nd_target', bytes(16), full(16))))


@pytest.mark.parametrize('actions', [
    [('output', 1)],                                  # not a tuple
    (('output',),),                                   # arity
    (('output', 1, 2),),
    ('output',),                                      # action not a tuple
    ((),),
    (('flood',),),                                    # unknown action
    (('output', -1),),
    (('output', '1'),),
    (('output', True),),
    (('push_vlan', 0x0800, 1),),                      # bad tpid
    (('push_vlan', 0x8100, 0x10000),),
    (('pop_vlan', 1),),
    (('set_masked', 'nw_bogus', b'\0', b'\0'),),      # unknown field
    (('set_masked', 'nw_src', b'\0' * 3, full(4)),),  # value width
    (('set_masked', 'eth_src', bytes(6), full(4)),),  # mask width
    (('set_masked', 'tp_src', 80, 0xFFFF),),          # not bytes
    (('userspace', 'text'),),
    (('push_mpls', 0x0800, 0),),                      # not an MPLS ethertype
    (('push_mpls', 0x8847, 1 << 32),),
    (('push_mpls', 0x8847),),
    (('pop_mpls',),),
    (('pop_mpls', 0x10000),),
    (('meter', '1'),),
    (('meter', -1),),
    (('set_masked', 'mpls_lse', bytes(3), full(3)),),
    (('push_pbb',),),
    (('push_pbb', 1 << 32),),
    (('push_pbb', b'\0\0\0\0'),),
    (('pop_pbb', 0x88E7),),
    (('copy_ttl_in', 1),),
])
def test_validate_rejects_bad_actions(actions):
    with pytest.raises(ValueError) as err:
        validate_actions(actions)
    assert '\n' not in str(err.value)
