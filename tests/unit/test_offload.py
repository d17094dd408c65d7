"""Tests for mnovs.dp.offload: checksum completion, TSO, USO and UFO in software.

Frames are built with scapy, given a partial checksum the way the kernel
leaves it (CHECKSUM_PARTIAL), and the results are checked by letting scapy
recompute every checksum. The helpers here are shared with test_actions.py.
"""

import random
import socket
import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt,
                                IPv6ExtHdrFragment)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.sctp import SCTP
from scapy.packet import Raw, raw

from mnovs.dp import offload
from mnovs.dp.offload import (F_NEEDS_CSUM, GSO_NONE, GSO_TCPV4, GSO_TCPV6,
                              GSO_UDP, GSO_UDP_L4, VNET_HDR, VNET_HDR_LEN)

MACS = dict(src='00:00:00:00:00:01', dst='00:00:00:00:00:02')
V4 = dict(src='10.0.0.1', dst='10.0.0.2')
V6 = dict(src='2001:db8::1', dst='2001:db8::2')
CHECKED = ((IP, 'chksum'), (TCP, 'chksum'), (UDP, 'chksum'), (SCTP, 'chksum'),
           (ICMP, 'chksum'), (ICMPv6EchoRequest, 'cksum'))


def data(n, seed=1):
    return random.Random(seed).randbytes(n)


# --- helpers shared with test_actions.py -----------------------------------

def _sum16(blob):
    """Ones'-complement sum with end-around carry, independent of offload.py."""
    if len(blob) & 1:
        blob += b'\0'
    total = sum(struct.unpack(f'!{len(blob) // 2}H', blob))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def vnet(frame, flags=0, gso_type=GSO_NONE, hdr_len=0, gso_size=0, csum_start=0,
         csum_offset=0):
    return VNET_HDR.pack(flags, gso_type, hdr_len, gso_size, csum_start,
                         csum_offset) + bytes(frame)


def partial(pkt, gso_type=GSO_NONE, gso_size=0):
    """vnet header + frame of scapy pkt, its TCP/UDP checksum left partial.

    As the kernel sends it: F_NEEDS_CSUM, csum_start at the transport header,
    and the folded uncomplemented pseudo-header sum in the checksum field.
    """
    frame = bytearray(raw(pkt))
    pkt = Ether(bytes(frame))
    l4_layer = TCP if TCP in pkt else UDP
    l4_raw = raw(pkt[l4_layer])
    l4 = len(frame) - len(l4_raw)
    csum_offset = 16 if l4_layer is TCP else 6
    proto = 6 if l4_layer is TCP else 17
    if IP in pkt:
        ip = pkt[IP]
        pseudo = (socket.inet_aton(ip.src) + socket.inet_aton(ip.dst)
                  + struct.pack('!HH', proto, len(l4_raw)))
    else:
        ip = pkt[IPv6]
        pseudo = (socket.inet_pton(socket.AF_INET6, ip.src)
                  + socket.inet_pton(socket.AF_INET6, ip.dst)
                  + struct.pack('!II', len(l4_raw), proto))
    struct.pack_into('!H', frame, l4 + csum_offset, _sum16(pseudo))
    hdr_len = l4 + (pkt[TCP].dataofs * 4 if l4_layer is TCP else 8) if gso_type else 0
    return vnet(frame, F_NEEDS_CSUM, gso_type, hdr_len, gso_size, l4, csum_offset)


def assert_checksums(frame, skip=()):
    """Assert every IP/TCP/UDP/SCTP/ICMP checksum in frame is what scapy computes."""
    pkt = Ether(bytes(frame))
    seen = []
    for layer, name in CHECKED:
        if layer in pkt and layer not in skip:
            seen.append((layer, name, getattr(pkt[layer], name)))
            delattr(pkt[layer], name)
    again = Ether(raw(pkt))
    for layer, name, value in seen:
        assert getattr(again[layer], name) == value, f'{layer.__name__} {name}'
    return pkt


def finish(packet):
    """The single frame offload.segment makes of a non-GSO packet."""
    segs = offload.segment(packet)
    assert len(segs) == 1
    return segs[0]


# --- complete_csum and non-GSO packets ---------------------------------------

@pytest.mark.parametrize('pkt', [
    Ether(**MACS) / IP(**V4) / TCP(sport=1, dport=2, flags='PA') / Raw(data(333)),
    Ether(**MACS) / Dot1Q(vlan=7) / IP(**V4) / UDP(sport=1, dport=2) / Raw(data(100)),
    Ether(**MACS) / IPv6(**V6) / TCP(sport=1, dport=2) / Raw(data(1001)),
    Ether(**MACS) / Dot1Q(vlan=7) / IPv6(**V6) / UDP(sport=1, dport=2) / Raw(data(7)),
])
def test_no_gso_completes_partial_checksum(pkt):
    packet = partial(pkt)
    assert finish(packet) == raw(pkt)


def test_complete_csum_in_place():
    pkt = Ether(**MACS) / IP(**V4) / UDP(sport=5, dport=6) / Raw(data(51))
    packet = bytearray(partial(pkt))
    frame = packet[VNET_HDR_LEN:]
    _, _, _, _, start, offset = VNET_HDR.unpack_from(packet)
    offload.complete_csum(frame, start, offset)
    assert bytes(frame) == raw(pkt)


def test_no_gso_without_csum_flag_is_unchanged():
    frame = raw(Ether(**MACS) / ARP())
    assert offload.segment(vnet(frame)) == [frame]


def test_zero_checksum_is_written_ffff():
    # Choose the payload word that makes the UDP sum 0xFFFF: its checksum is 0.
    pseudo = (socket.inet_aton(V4['src']) + socket.inet_aton(V4['dst'])
              + struct.pack('!HH', 17, 10))
    rest = _sum16(pseudo + struct.pack('!HHH', 1, 2, 10))
    word = 0xFFFF - rest
    pkt = Ether(**MACS) / IP(**V4) / UDP(sport=1, dport=2) / Raw(struct.pack('!H', word))
    frame = finish(partial(pkt))
    assert Ether(frame)[UDP].chksum == 0xFFFF
    assert frame == raw(pkt)


# --- TSO ---------------------------------------------------------------------

TS_OPTS = [('NOP', None), ('NOP', None), ('Timestamp', (1, 2))]


def check_tso(segs, pkt, mss):
    payload = bytes(pkt[Raw].load)
    seq, ip_id = pkt[TCP].seq, pkt[IP].id if IP in pkt else None
    assert len(segs) == -(-len(payload) // mss)
    parts = []
    for i, seg in enumerate(segs):
        p = assert_checksums(seg)
        chunk = p[Raw].load
        assert len(chunk) == min(mss, len(payload) - i * mss)
        assert p[TCP].seq == (seq + i * mss) & 0xFFFFFFFF
        last = i == len(segs) - 1
        assert ('F' in p[TCP].flags) == (last and 'F' in pkt[TCP].flags)
        assert ('P' in p[TCP].flags) == (last and 'P' in pkt[TCP].flags)
        assert ('C' in p[TCP].flags) == (i == 0 and 'C' in pkt[TCP].flags)
        assert 'A' in p[TCP].flags and p[TCP].options == pkt[TCP].options
        if IP in p:
            assert p[IP].len == len(p[IP]) and p[IP].id == (ip_id + i) & 0xFFFF
        else:
            assert p[IPv6].plen == len(p[IPv6].payload)
        assert Dot1Q in p or Dot1Q not in pkt
        parts.append(chunk)
    assert b''.join(parts) == payload


@pytest.mark.parametrize('l3, gso', [(IP(**V4, id=0xFFFE), GSO_TCPV4),
                                     (IPv6(**V6), GSO_TCPV6),
                                     (IPv6(**V6) / IPv6ExtHdrDestOpt(), GSO_TCPV6)])
@pytest.mark.parametrize('tagged', [False, True])
@pytest.mark.parametrize('size, mss', [(65000, 1448), (3000, 1000), (10, 1448)])
def test_tso(l3, gso, tagged, size, mss):
    l2 = Ether(**MACS) / Dot1Q(vlan=10, prio=3) if tagged else Ether(**MACS)
    tcp = TCP(sport=4000, dport=5201, seq=0xFFFFF000, flags='FPAC', options=TS_OPTS)
    pkt = l2 / l3 / tcp / Raw(data(size))
    segs = offload.segment(partial(pkt, gso | offload.GSO_ECN, mss))
    check_tso(segs, Ether(raw(pkt)), mss)


# --- USO and UFO -------------------------------------------------------------

@pytest.mark.parametrize('l3', [IP(**V4), IPv6(**V6)])
@pytest.mark.parametrize('tagged', [False, True])
def test_uso(l3, tagged):
    l2 = Ether(**MACS) / Dot1Q(vlan=10) if tagged else Ether(**MACS)
    payload = data(5000)
    pkt = l2 / l3 / UDP(sport=9, dport=10) / Raw(payload)
    segs = offload.segment(partial(pkt, GSO_UDP_L4, 1200))
    assert len(segs) == 5
    for i, seg in enumerate(segs):
        p = assert_checksums(seg)
        assert p[UDP].len == 8 + len(p[Raw].load)
        assert p[Raw].load == payload[i * 1200:(i + 1) * 1200]
        assert (p[IP].len == len(p[IP])) if IP in p else (p[IPv6].plen == len(p[UDP]))


def test_ufo_ipv4_fragments():
    payload = data(4000)
    pkt = (Ether(**MACS) / Dot1Q(vlan=3) / IP(**V4, id=77, flags='DF')
           / UDP(sport=9, dport=10) / Raw(payload))
    segs = offload.segment(partial(pkt, GSO_UDP, 1501))
    offsets, parts = [], []
    for i, seg in enumerate(segs):
        p = Ether(seg)
        assert_checksums(seg, skip=(UDP,))
        assert p[IP].id == 77 and p[IP].len == len(p[IP])
        assert p[IP].flags == ('MF' if i < len(segs) - 1 else 0)
        offsets.append(p[IP].frag * 8)
        parts.append(raw(p[IP].payload))
    assert offsets == [0, 1496, 2992] and all(len(x) == 1496 for x in parts[:-1])
    whole = Ether(raw(pkt))
    assert b''.join(parts) == raw(whole[UDP])


def test_ufo_ipv6_fragments():
    payload = data(3000)
    pkt = Ether(**MACS) / IPv6(**V6) / UDP(sport=9, dport=10) / Raw(payload)
    segs = offload.segment(partial(pkt, GSO_UDP, 1400))
    parts = []
    for i, seg in enumerate(segs):
        p = Ether(seg)
        frag = p[IPv6ExtHdrFragment]
        assert p[IPv6].nh == 44 and frag.nh == 17 and frag.offset * 8 == i * 1400
        assert frag.m == (i < len(segs) - 1) and p[IPv6].plen == len(p[IPv6].payload)
        assert frag.id == Ether(segs[0])[IPv6ExtHdrFragment].id
        parts.append(raw(frag.payload))
    assert b''.join(parts) == raw(Ether(raw(pkt))[UDP])


def test_ufo_small_datagram_is_one_frame():
    pkt = Ether(**MACS) / IP(**V4) / UDP(sport=9, dport=10) / Raw(data(100))
    assert offload.segment(partial(pkt, GSO_UDP, 1400)) == [raw(pkt)]


# --- malformed vnet headers ------------------------------------------------

TCP4 = Ether(**MACS) / IP(**V4) / TCP(sport=1, dport=2) / Raw(data(3000))
UDP4 = Ether(**MACS) / IP(**V4) / UDP(sport=1, dport=2) / Raw(data(3000))


@pytest.mark.parametrize('packet', [
    vnet(raw(TCP4), F_NEEDS_CSUM, csum_start=len(raw(TCP4)), csum_offset=0),
    vnet(raw(TCP4), F_NEEDS_CSUM, csum_start=40, csum_offset=len(raw(TCP4))),
    partial(UDP4, GSO_TCPV4, 1000),                  # TSO on UDP
    partial(TCP4, GSO_TCPV6, 1000),                  # TCPV6 on IPv4
    partial(TCP4, GSO_UDP_L4, 1000),                 # USO on TCP
    partial(TCP4, GSO_TCPV4, 0),                     # no gso_size
    partial(UDP4, GSO_UDP, 7),                       # fragment < 8 bytes
    vnet(raw(Ether() / ARP()), 0, GSO_TCPV4, 0, 1000),
    vnet(raw(TCP4)[:30], 0, GSO_TCPV4, 0, 1000),     # truncated IP header
    vnet(raw(TCP4)[:40], 0, GSO_TCPV4, 0, 1000),     # truncated TCP header
    vnet(raw(TCP4), 0, 0x7F, 0, 1000),               # unknown gso type
    b'\x01\x00\x00',                                 # shorter than a vnet header
])
def test_malformed_returns_empty(packet):
    assert offload.segment(packet) == []


def test_fuzzed_headers_never_raise():
    rng = random.Random(7)
    frames = [raw(TCP4), raw(UDP4), raw(Ether() / IPv6(**V6) / IPv6ExtHdrDestOpt()
                                        / TCP() / Raw(data(2000)))]
    for _ in range(3000):
        frame = bytearray(rng.choice(frames)[:rng.randrange(0, 2100)])
        for _ in range(rng.randrange(4)):
            if frame:
                frame[rng.randrange(len(frame))] = rng.randrange(256)
        header = VNET_HDR.pack(rng.choice((0, 1)), rng.choice((0, 1, 3, 4, 5, 0x81)),
                               rng.randrange(200), rng.randrange(2000),
                               rng.randrange(2200), rng.randrange(40))
        offload.segment(header + frame)


# --- frame_layout ------------------------------------------------------------

@pytest.mark.parametrize('pkt, expected', [
    (Ether() / Dot1Q() / Dot1Q() / IP() / UDP(), (0x0800, 22, 17, 42)),
    (Ether() / IP(frag=10) / UDP(), (0x0800, 14, -1, -1)),
    (Ether() / IPv6() / IPv6ExtHdrDestOpt() / IPv6ExtHdrFragment() / TCP(),
     (0x86DD, 14, 6, 70)),
    (Ether() / IPv6() / IPv6ExtHdrFragment(offset=3) / TCP(), (0x86DD, 14, -1, -1)),
    (Ether() / ARP(), (0x0806, 14, -1, -1)),
])
def test_frame_layout(pkt, expected):
    assert offload.frame_layout(raw(pkt), 0) == expected


def test_frame_layout_truncated():
    assert offload.frame_layout(raw(Ether() / IP())[:30], 0) is None
    assert offload.frame_layout(raw(Ether() / Dot1Q() / IP())[:16], 0) is None
