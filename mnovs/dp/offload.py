"""Software offloads: what the kernel does with a virtio_net_hdr, done in Python.

Every port socket has PACKET_VNET_HDR, so a packet in the datapath is a
10-byte virtio_net_hdr followed by the Ethernet frame (see netdev.py):

    0      1         2        4         6          8            10
    +------+---------+--------+---------+----------+------------+-------------
    |flags |gso_type | hdr_len|gso_size |csum_start|csum_offset | frame ...
    +------+---------+--------+---------+----------+------------+-------------
    native (little-endian) byte order; csum_start counts from the frame start

Invariants the datapath keeps (actions.py moves them with the frame):
- flags & F_NEEDS_CSUM: the 16-bit word at csum_start + csum_offset holds the
  folded, *uncomplemented* pseudo-header sum (CHECKSUM_PARTIAL); whoever
  transmits must fold the ones'-complement sum of frame[csum_start:] into it.
- gso_type != GSO_NONE: the frame is a super-frame up to 64 KB whose payload
  must be cut into gso_size pieces; hdr_len is only a hint and is not used here.

A port forwards such a packet unchanged and the kernel finishes the work. A
path that cannot carry the header (the `userspace` action up to the slow path
and the controller; a VXLAN tunnel) calls segment() to get plain frames, as
the kernel's GSO and skb_checksum_help would produce them:

- no GSO: one frame, its checksum completed if F_NEEDS_CSUM.
- GSO_TCPV4 / GSO_TCPV6 (TSO): segments of gso_size payload bytes; IPv4 total
  length, id (+1 per segment) and header checksum, or IPv6 payload length;
  TCP seq advanced, FIN/PSH only on the last segment, CWR only on the first;
  every TCP checksum computed in full (the partial sum is not trusted).
- GSO_UDP_L4 (USO): one UDP datagram per gso_size payload bytes.
- GSO_UDP (legacy UFO): IP fragments of the one UDP datagram, as the kernel's
  udp4/udp6_ufo_fragment do. UFO promises the receiver *one* datagram; cutting
  it into several (USO-like) would change what the application reads. IPv4
  fragments share the id and lose DF; IPv6 gets a Fragment header, which this
  module only inserts when UDP follows the fixed header directly. The fragment
  size is gso_size rounded down to a multiple of 8.

A malformed header (csum_start beyond the frame, GSO on a frame without the
announced transport, gso_size 0) never raises: segment() returns [] and the
caller counts a drop. Where a checksum computes to zero we store 0xFFFF, the
other ones'-complement zero (the kernel's CSUM_MANGLED_0); UDP requires it and
every receiver accepts it.

Cost: sums use int.from_bytes(...) % 0xFFFF, which is the ones'-complement
sum because 2**16 == 1 (mod 0xFFFF): about 85 us for 64 KB. Segmenting a
64 KB TSO frame into 45 segments takes about 0.2 ms (one pass over the
payload, a header copy and two pack_into per segment).

frame_layout() is the small header locator shared with actions.py.
"""

import itertools
import struct

VNET_HDR = struct.Struct('<BBHHHH')
VNET_HDR_LEN = 10
assert VNET_HDR.size == VNET_HDR_LEN

F_NEEDS_CSUM = 1            # VIRTIO_NET_HDR_F_NEEDS_CSUM
F_DATA_VALID = 2            # VIRTIO_NET_HDR_F_DATA_VALID (receive side only)
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP = 3                 # legacy UFO
GSO_TCPV6 = 4
GSO_UDP_L4 = 5              # USO
GSO_ECN = 0x80              # flag bit: the TCP flow uses ECN

ETH_TYPE_IP = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_IPV6 = 0x86DD
VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58
IPPROTO_SCTP = 132

_IPV6_EXT_HDRS = frozenset((0, 43, 60))     # hop-by-hop, routing, dest opts
_IPV6_FRAG, _IPV6_AH = 44, 51
_MAX_EXT_HDRS = 8

_U16 = struct.Struct('!H')
_U32 = struct.Struct('!I')
_IPV6_FRAG_HDR = struct.Struct('!BBHI')     # next header, 0, offset|M, id
_TCP_FIN, _TCP_PSH, _TCP_CWR = 0x01, 0x08, 0x80
_IPV4_MF = 0x2000
_ipv6_frag_ids = itertools.count(1)


def frame_layout(buf, start=VNET_HDR_LEN):
    """Locate the L3 and L4 headers of the Ethernet frame at buf[start:].

    Skips 802.1Q/802.1ad tags, the IPv4 header (IHL) and IPv6 extension
    headers. A non-first fragment has no transport header.

    Returns:
        (eth_type, l3_off, l4_proto, l4_off) with offsets into buf, l4_proto
        -1 when there is no transport header to find; or None when the frame
        is truncated or its IP header is malformed. L4 header bytes are not
        checked to be present.
    """
    n = len(buf)
    off = start + 12
    if n < off + 2:
        return None
    eth_type = buf[off] << 8 | buf[off + 1]
    off += 2
    while eth_type in VLAN_TPIDS:
        if n < off + 4:
            return None
        eth_type = buf[off + 2] << 8 | buf[off + 3]
        off += 4
    if eth_type == ETH_TYPE_IP:
        if n < off + 20 or buf[off] >> 4 != 4:
            return None
        ihl = (buf[off] & 0x0F) * 4
        if ihl < 20 or n < off + ihl:
            return None
        if (buf[off + 6] << 8 | buf[off + 7]) & 0x1FFF:
            return eth_type, off, -1, -1
        return eth_type, off, buf[off + 9], off + ihl
    if eth_type == ETH_TYPE_IPV6:
        if n < off + 40 or buf[off] >> 4 != 6:
            return None
        return _ipv6_layout(buf, off)
    return eth_type, off, -1, -1


def _ipv6_layout(buf, l3):
    n = len(buf)
    proto = buf[l3 + 6]
    off = l3 + 40
    for _ in range(_MAX_EXT_HDRS):
        if proto in _IPV6_EXT_HDRS:
            length = (buf[off + 1] + 1) * 8 if n >= off + 2 else 0
        elif proto == _IPV6_AH:
            length = (buf[off + 1] + 2) * 4 if n >= off + 2 else 0
        elif proto == _IPV6_FRAG:
            length = 8
            if n >= off + 4 and (buf[off + 2] << 8 | buf[off + 3]) & 0xFFF8:
                return ETH_TYPE_IPV6, l3, -1, -1
        else:
            return ETH_TYPE_IPV6, l3, proto, off
        if length == 0 or n < off + length:
            return None
        proto = buf[off]
        off += length
    return ETH_TYPE_IPV6, l3, -1, -1


def ones_sum(data):
    """Return the ones'-complement sum of data's 16-bit words, mod 0xFFFF.

    data starts on a word boundary; an odd last byte is padded with zero.
    0 stands for both zeros (0x0000 and 0xFFFF).
    """
    value = int.from_bytes(data, 'big')
    if len(data) & 1:
        value <<= 8
    return value % 0xFFFF


def csum_finish(total):
    """Return the checksum field for a ones'-complement sum: its complement.

    Never 0: a zero checksum is written 0xFFFF, as the kernel does.
    """
    return 0xFFFF - total % 0xFFFF


def complete_csum(frame, csum_start, csum_offset):
    """Finish a CHECKSUM_PARTIAL frame in place, as skb_checksum_help does.

    Args:
        frame: bytearray, the Ethernet frame (no vnet header).
        csum_start: where the checksummed region starts, from frame[0].
        csum_offset: where the checksum field is, from csum_start; it holds
            the uncomplemented pseudo-header sum.
    """
    at = csum_start + csum_offset
    _U16.pack_into(frame, at, csum_finish(ones_sum(memoryview(frame)[csum_start:])))


def _pseudo_sum(buf, eth_type, l3, proto):
    """Ones'-complement sum of the addresses and protocol of a pseudo-header."""
    if eth_type == ETH_TYPE_IP:
        return ones_sum(buf[l3 + 12:l3 + 20]) + proto
    return ones_sum(buf[l3 + 8:l3 + 40]) + proto


def segment(packet):
    """Turn a vnet header + frame into the plain frames the kernel would send.

    Args:
        packet: bytes-like, the 10-byte virtio_net_hdr then the frame.

    Returns:
        list of bytes, Ethernet frames without vnet header; [] when the vnet
        header does not fit the frame (the caller counts a drop).
    """
    mv = memoryview(packet)
    if len(mv) < VNET_HDR_LEN + 14:
        return []
    flags, gso_type, _, gso_size, csum_start, csum_offset = VNET_HDR.unpack_from(mv)
    frame = mv[VNET_HDR_LEN:]
    gso_type &= ~GSO_ECN
    if gso_type == GSO_NONE:
        if not flags & F_NEEDS_CSUM:
            return [bytes(frame)]
        if csum_start + csum_offset + 2 > len(frame):
            return []
        out = bytearray(frame)
        complete_csum(out, csum_start, csum_offset)
        return [bytes(out)]
    layout = frame_layout(frame, 0)
    if layout is None or gso_size == 0:
        return []
    eth_type, l3, proto, l4 = layout
    if gso_type in (GSO_TCPV4, GSO_TCPV6):
        wanted = ETH_TYPE_IP if gso_type == GSO_TCPV4 else ETH_TYPE_IPV6
        if proto != IPPROTO_TCP or eth_type != wanted:
            return []
        return _segment_l4(frame, eth_type, l3, l4, gso_size, tcp=True)
    if gso_type in (GSO_UDP_L4, GSO_UDP) and proto == IPPROTO_UDP:
        if gso_type == GSO_UDP_L4:
            return _segment_l4(frame, eth_type, l3, l4, gso_size, tcp=False)
        return _fragment_udp(frame, eth_type, l3, l4, gso_size)
    return []


def _segment_l4(frame, eth_type, l3, l4, mss, tcp):
    """TSO (tcp=True) or USO: one packet per mss bytes of transport payload."""
    total = len(frame)
    if tcp:
        hdr_end = l4 + (frame[l4 + 12] >> 4) * 4 if total >= l4 + 20 else 0
        if hdr_end < l4 + 20 or hdr_end > total:
            return []
        csum_at, proto = l4 + 16, IPPROTO_TCP
    else:
        hdr_end, csum_at, proto = l4 + 8, l4 + 6, IPPROTO_UDP
        if hdr_end > total:
            return []
    template = bytearray(frame[:hdr_end])
    _U16.pack_into(template, csum_at, 0)
    ipv4 = eth_type == ETH_TYPE_IP
    if ipv4:
        ip_id = _U16.unpack_from(template, l3 + 4)[0]
        ip_end = l3 + (template[l3] & 0x0F) * 4
        _U16.pack_into(template, l3 + 10, 0)
    if tcp:
        seq = _U32.unpack_from(template, l4 + 4)[0]
        tcp_flags = template[l4 + 13]
    pseudo = _pseudo_sum(template, eth_type, l3, proto)
    segs = []
    for i, pos in enumerate(range(hdr_end, max(total, hdr_end + 1), mss)):
        chunk = frame[pos:pos + mss]
        hdr = bytearray(template)
        l4_len = hdr_end - l4 + len(chunk)
        if ipv4:
            _U16.pack_into(hdr, l3 + 2, hdr_end - l3 + len(chunk))
            _U16.pack_into(hdr, l3 + 4, (ip_id + i) & 0xFFFF)
            _U16.pack_into(hdr, l3 + 10, csum_finish(ones_sum(hdr[l3:ip_end])))
        else:
            _U16.pack_into(hdr, l3 + 4, hdr_end - l3 - 40 + len(chunk))
        if tcp:
            _U32.pack_into(hdr, l4 + 4, (seq + pos - hdr_end) & 0xFFFFFFFF)
            flags = tcp_flags
            if pos + mss < total:
                flags &= ~(_TCP_FIN | _TCP_PSH)
            if i:
                flags &= ~_TCP_CWR
            hdr[l4 + 13] = flags
        else:
            _U16.pack_into(hdr, l4 + 4, l4_len)
        csum = pseudo + l4_len + ones_sum(hdr[l4:]) + ones_sum(chunk)
        _U16.pack_into(hdr, csum_at, csum_finish(csum))
        segs.append(b''.join((hdr, chunk)))
    return segs


def _fragment_udp(frame, eth_type, l3, l4, mss):
    """Legacy UFO: checksum the UDP datagram, then cut it into IP fragments."""
    dgram = bytearray(frame[l4:])
    if len(dgram) < 8 or eth_type == ETH_TYPE_IPV6 and l4 != l3 + 40:
        return []
    _U16.pack_into(dgram, 4, len(dgram))
    _U16.pack_into(dgram, 6, 0)
    csum = _pseudo_sum(frame, eth_type, l3, IPPROTO_UDP) + len(dgram) + ones_sum(dgram)
    _U16.pack_into(dgram, 6, csum_finish(csum))
    if len(dgram) <= mss:
        return [b''.join((frame[:l4], dgram))]
    step = mss & ~7
    if step == 0:
        return []
    segs = []
    ipv4 = eth_type == ETH_TYPE_IP
    ident = 0 if ipv4 else next(_ipv6_frag_ids) & 0xFFFFFFFF
    for pos in range(0, len(dgram), step):
        chunk = dgram[pos:pos + step]
        more = _IPV4_MF if pos + step < len(dgram) else 0
        hdr = bytearray(frame[:l4])
        if ipv4:
            _U16.pack_into(hdr, l3 + 2, l4 - l3 + len(chunk))
            _U16.pack_into(hdr, l3 + 6, pos >> 3 | more)
            _U16.pack_into(hdr, l3 + 10, 0)
            _U16.pack_into(hdr, l3 + 10, csum_finish(ones_sum(hdr[l3:l4])))
        else:
            hdr[l3 + 6] = _IPV6_FRAG
            _U16.pack_into(hdr, l3 + 4, _IPV6_FRAG_HDR.size + len(chunk))
            hdr += _IPV6_FRAG_HDR.pack(IPPROTO_UDP, 0, pos | bool(more), ident)
        segs.append(b''.join((hdr, chunk)))
    return segs
