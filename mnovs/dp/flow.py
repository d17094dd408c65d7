"""Flow keys: what the datapath's caches match a packet on (OVS lib/flow.c).

A flow key is a fixed-layout bytes string of KEY_LEN (140) bytes, the fields
of FLOW_FIELDS packed big-endian with no padding, much as OVS's struct flow.
A megaflow mask has the same layout, so masking a key is one integer AND:

    int.from_bytes(key, 'big') & int.from_bytes(mask, 'big')

and any bytes-keyed dict (microflow cache, subtable) can hold keys as they come.

    metadata:  recirc_id I | dp_hash I | tun_id Q | tun_src 4s | tun_dst 4s
               tun_tos B | tun_ttl B | tun_flags H | in_port I
    packet:    eth_dst 6s | eth_src 6s | eth_type H | vlan_tpid H | vlan_tci H
               mpls_lse I | pbb_itag I | nw_src 4s | nw_dst 4s | ipv6_src 16s
               ipv6_dst 16s | ipv6_label I | nw_proto B | nw_tos B | nw_ttl B | nw_frag B
               tp_src H | tp_dst H | tcp_flags H | arp_sha 6s | arp_tha 6s
               nd_target 16s

The metadata (OVS's pkt_metadata: recirculation id, datapath hash, tunnel
metadata of a packet that arrived through a tunnel, input port) is not in
the frame: the receiver knows it. It comes first and is MD_LEN bytes, so
flow_extract takes it ready-made (md_of(), cached per port by the datapath)
and copies it into the key as one field; a packet from a plain port has
only in_port set.

Invariants:
- A field the packet does not have is 0 (all-zero bytes); so is every field
  of a header that is cut short or malformed.  Each header is taken whole or
  not at all (a TCP header needs its 20 bytes and its options).
- eth_type is the Ethertype after all VLAN tags, as OVS's dl_type.  Frames
  whose type field is a length (< 0x600, 802.3) get FLOW_DL_TYPE_NONE
  (0x05ff); LLC/SNAP is not looked into.  If a VLAN tag is cut short,
  eth_type stays the tag's TPID, the last type read.
- vlan_tpid/vlan_tci describe the outer tag only; inner tags are skipped.
  vlan_tci = pcp<<13 | VLAN_CFI | vid, VLAN_CFI (0x1000) meaning "a tag is
  present" (OVS's convention; the frame's own DEI bit is not kept).
  Untagged frames have vlan_tci == 0.
- nw_frag is 0, FLOW_NW_FRAG_ANY (first fragment) or ANY|FLOW_NW_FRAG_LATER.
  L4 fields are read for non-fragments and first fragments only.
- nw_proto is the ARP opcode when it fits in 8 bits (0 otherwise, as OVS).
  tp_src/tp_dst hold the ICMP/ICMPv6 type/code; arp_sha/arp_tha hold an ND
  packet's source/target link-layer address options.

What is extracted: Ethernet II and 802.3; one 802.1Q/802.1ad tag (more are
skipped); MPLS top label stack entry (parsing stops there); the 802.1ah
I-TAG of a PBB frame (parsing stops there too: the customer frame behind it
is payload, as the MPLS payload is); Ethernet/IPv4
ARP; IPv4 (options skipped, L4 bounded by the total length); IPv6 with
hop-by-hop, routing, destination options, fragment and AH extension headers
(nw_proto is the header after them); TCP, UDP, SCTP ports; TCP flags; ICMP;
ICMPv6 and, for neighbour solicitations/advertisements with code 0, the
target and the first source/target link-layer address options (a repeated
option invalidates all three, as in OVS).

Errors: flow_extract never raises on frame contents.  A malformed frame still
gets a key (parsed as far as it goes) plus one of the ERR_* strings naming the
innermost problem found, for the caller to count.  Only a frame shorter than
an Ethernet header yields no key (ERR_RUNT).

Cost, CPython 3.11.2 on the 2-core VM (timeit, memoryview frames, call
included): 0.50 us for an untagged IPv4/TCP frame, 0.55 us with a VLAN tag,
0.51 us for IPv6/TCP, 0.45 us for IPv4/UDP, 0.41 us for ARP, 0.74 us for a
neighbour solicitation.  IPv4/TCP costs three unpack_from calls and one pack,
no call to a function of ours, no object beyond the key and the result tuple.
"""

import struct

# Ethertypes.
ETH_TYPE_IP = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_VLAN_8021Q = 0x8100
ETH_TYPE_VLAN_8021AD = 0x88a8
ETH_TYPE_IPV6 = 0x86dd
ETH_TYPE_MPLS = 0x8847
ETH_TYPE_MPLS_MCAST = 0x8848
ETH_TYPE_PBB = 0x88e7           # 802.1ah backbone service instance tag (I-TAG)
ETH_TYPE_MIN = 0x0600           # smaller type fields are 802.3 lengths
FLOW_DL_TYPE_NONE = 0x05ff      # eth_type of an 802.3 frame

VLAN_CFI = 0x1000               # in vlan_tci: a tag is present
FLOW_NW_FRAG_ANY = 1
FLOW_NW_FRAG_LATER = 2
_FRAG_LATER = FLOW_NW_FRAG_ANY | FLOW_NW_FRAG_LATER

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_FRAGMENT = 44
IPPROTO_AH = 51
IPPROTO_ICMPV6 = 58
IPPROTO_SCTP = 132
ND_NEIGHBOR_SOLICIT = 135
ND_NEIGHBOR_ADVERT = 136
ND_OPT_SLL = 1                  # source link-layer address option
ND_OPT_TLL = 2                  # target link-layer address option

# Errors reported by flow_extract, one counter each for the caller.
ERR_RUNT = 'runt'
ERR_TRUNCATED_VLAN = 'truncated-vlan'
ERR_TRUNCATED_MPLS = 'truncated-mpls'
ERR_TRUNCATED_PBB = 'truncated-pbb'
ERR_TRUNCATED_ARP = 'truncated-arp'
ERR_TRUNCATED_IPV4 = 'truncated-ipv4'
ERR_BAD_IHL = 'bad-ihl'
ERR_BAD_IP_LEN = 'bad-ip-len'
ERR_TRUNCATED_IPV6 = 'truncated-ipv6'
ERR_BAD_IPV6_EXT = 'bad-ipv6-ext'
ERR_TRUNCATED_TCP = 'truncated-tcp'
ERR_BAD_TCP_OFFSET = 'bad-tcp-offset'
ERR_TRUNCATED_UDP = 'truncated-udp'
ERR_TRUNCATED_SCTP = 'truncated-sctp'
ERR_TRUNCATED_ICMP = 'truncated-icmp'
ERR_TRUNCATED_ICMPV6 = 'truncated-icmpv6'
ERR_TRUNCATED_ND = 'truncated-nd'
ERR_BAD_ND_OPTION = 'bad-nd-option'

# Tunnel flags (OVS's FLOW_TNL_F_*), in tun_flags and in a TunnelSpec.
FLOW_TNL_F_DONT_FRAGMENT = 1 << 0   # outer IPv4 header had / gets DF
FLOW_TNL_F_CSUM = 1 << 1            # outer UDP checksum present / to compute
FLOW_TNL_F_KEY = 1 << 2             # the tunnel header carried / carries a key (VNI)

MD_FIELDS = (
    ('recirc_id', 'I'),     # recirculation pass; 0 for a packet from a port
    ('dp_hash', 'I'),       # result of the datapath's hash action
    ('tun_id', 'Q'),        # tunnel key (VXLAN VNI) of a packet from a tunnel
    ('tun_src', '4s'),      # outer IPv4 source of a packet from a tunnel
    ('tun_dst', '4s'),      # outer IPv4 destination (our local address)
    ('tun_tos', 'B'),       # outer IPv4 tos
    ('tun_ttl', 'B'),       # outer IPv4 ttl
    ('tun_flags', 'H'),     # FLOW_TNL_F_* seen on the outer headers
    ('in_port', 'I'),       # datapath port number
)
PACKET_MD = struct.Struct('!' + ''.join(code for _, code in MD_FIELDS))
MD_LEN = PACKET_MD.size
assert MD_LEN == 32

FLOW_FIELDS = MD_FIELDS + (
    ('eth_dst', '6s'),
    ('eth_src', '6s'),
    ('eth_type', 'H'),      # after all tags; FLOW_DL_TYPE_NONE for 802.3
    ('vlan_tpid', 'H'),     # outer tag: 0x8100 or 0x88a8; 0 if untagged
    ('vlan_tci', 'H'),      # pcp<<13 | VLAN_CFI | vid; 0 if untagged
    ('mpls_lse', 'I'),      # top label stack entry as on the wire
    ('pbb_itag', 'I'),      # 802.1ah I-TAG TCI as on the wire: pcp 3|dei 1|uca 1|res 3|isid 24
    ('nw_src', '4s'),       # IPv4 source, ARP spa
    ('nw_dst', '4s'),       # IPv4 destination, ARP tpa
    ('ipv6_src', '16s'),
    ('ipv6_dst', '16s'),
    ('ipv6_label', 'I'),    # 20-bit flow label
    ('nw_proto', 'B'),      # IP protocol, IPv6 last next header, ARP opcode
    ('nw_tos', 'B'),        # DSCP and ECN (IPv4 tos, IPv6 traffic class)
    ('nw_ttl', 'B'),        # IPv4 ttl, IPv6 hop limit
    ('nw_frag', 'B'),       # FLOW_NW_FRAG_* bits
    ('tp_src', 'H'),        # TCP/UDP/SCTP source port, ICMP type
    ('tp_dst', 'H'),        # TCP/UDP/SCTP destination port, ICMP code
    ('tcp_flags', 'H'),     # low 12 bits of the TCP flags
    ('arp_sha', '6s'),      # ARP sha, ND source link-layer address
    ('arp_tha', '6s'),      # ARP tha, ND target link-layer address
    ('nd_target', '16s'),   # ND target address
)
FLOW_KEY = struct.Struct('!' + ''.join(code for _, code in FLOW_FIELDS))
KEY_LEN = FLOW_KEY.size
assert KEY_LEN == 140
# What flow_extract packs: the metadata as one ready-made field, then the packet's fields.
_EXTRACTED = struct.Struct(f'!{MD_LEN}s' + ''.join(code for _, code in FLOW_FIELDS[len(MD_FIELDS):]))
assert _EXTRACTED.size == KEY_LEN


def _field_slices():
    slices, offset = {}, 0
    for name, code in FLOW_FIELDS:
        width = struct.calcsize('!' + code)
        slices[name] = (offset, width)
        offset += width
    assert offset == KEY_LEN
    return slices


FIELD_SLICES = _field_slices()      # name -> (offset, width) in a key
_INT_FIELDS = frozenset(name for name, code in FLOW_FIELDS if 's' not in code)

# Header layouts read by flow_extract; each is checked against its length.
_ETH = struct.Struct('!6s6sH')                  # dst, src, type
_VLAN = struct.Struct('!HH')                    # tci, next type
_BE16 = struct.Struct('!H')
_BE32 = struct.Struct('!I')
_ARP = struct.Struct('!HHBBH6s4s6s4s')          # htype .. tpa
_IPV4 = struct.Struct('!BBH2xHBB2x4s4s')        # vihl, tos, len, frag, ttl, proto, src, dst
_IPV6 = struct.Struct('!IHBB16s16s')            # vtcfl, plen, next, hlim, src, dst
_IPV6_EXT = struct.Struct('!BB')                # next header, length
_IPV6_FRAG = struct.Struct('!BxH')              # next header, offset and flags
_PORTS = struct.Struct('!HH')                   # UDP, SCTP
_TCP = struct.Struct('!HH8xH')                  # src, dst, offset and flags
_ICMP = struct.Struct('!BB')                    # type, code
_ND_TARGET = struct.Struct('!16s')
_MAC = struct.Struct('!6s')
assert (_ARP.size, _IPV4.size, _IPV6.size, _TCP.size) == (28, 20, 40, 14)

_IPV6_EXT_HEADERS = frozenset((0, 43, 60, 51, 44))  # hop-by-hop, routing, dstopts, AH, fragment
_Z4, _Z6, _Z16 = bytes(4), bytes(6), bytes(16)

_unpack_eth = _ETH.unpack_from
_unpack_vlan = _VLAN.unpack_from
_unpack_ipv4 = _IPV4.unpack_from
_unpack_tcp = _TCP.unpack_from
_pack_key = _EXTRACTED.pack


def md_of(in_port, recirc_id=0, dp_hash=0, tun_id=0, tun_src=_Z4, tun_dst=_Z4, tun_tos=0,
          tun_ttl=0, tun_flags=0):
    """Return the packed metadata of a packet, for flow_extract."""
    return PACKET_MD.pack(recirc_id, dp_hash, tun_id, tun_src, tun_dst, tun_tos, tun_ttl,
                          tun_flags, in_port)


def flow_extract(frame, md):
    """Extract the flow key of an Ethernet frame.

    Args:
        frame: the frame as on the wire (memoryview or bytes), no vnet header.
        md: the packet's metadata, MD_LEN bytes from md_of() (at least the
            datapath port number it arrived on).

    Returns:
        (key, error): key is KEY_LEN bytes, or None for a frame shorter than
        14 bytes; error is None or one of the ERR_* strings.
    """
    size = len(frame)
    if size < 14:
        return None, ERR_RUNT
    eth_dst, eth_src, eth_type = _unpack_eth(frame)
    off = 14
    err = None
    vlan_tpid = vlan_tci = mpls_lse = pbb_itag = ipv6_label = 0
    nw_proto = nw_tos = nw_ttl = nw_frag = tp_src = tp_dst = tcp_flags = 0
    nw_src = nw_dst = _Z4
    arp_sha = arp_tha = _Z6
    ipv6_src = ipv6_dst = nd_target = _Z16
    l4 = 0                  # offset of an L4 header to parse, else 0
    end = size              # end of the L3 payload

    if eth_type == ETH_TYPE_VLAN_8021Q or eth_type == ETH_TYPE_VLAN_8021AD:
        if size >= 18:
            vlan_tpid = eth_type
            vlan_tci, eth_type = _unpack_vlan(frame, 14)
            vlan_tci |= VLAN_CFI
            off = 18
            while eth_type == ETH_TYPE_VLAN_8021Q or eth_type == ETH_TYPE_VLAN_8021AD:
                if size - off < 4:
                    err = ERR_TRUNCATED_VLAN
                    break
                eth_type, = _BE16.unpack_from(frame, off + 2)
                off += 4
        else:
            err = ERR_TRUNCATED_VLAN

    if eth_type == ETH_TYPE_IP:
        if size - off >= 20:
            vihl, tos, tot_len, frag_off, ttl, proto, src, dst = _unpack_ipv4(frame, off)
            ihl = (vihl & 15) << 2
            if ihl < 20:
                err = ERR_BAD_IHL
            elif size - off < ihl:
                err = ERR_TRUNCATED_IPV4
            else:
                nw_src, nw_dst, nw_proto, nw_tos, nw_ttl = src, dst, proto, tos, ttl
                if frag_off & 0x3fff:                   # MF or an offset
                    nw_frag = _FRAG_LATER if frag_off & 0x1fff else FLOW_NW_FRAG_ANY
                if tot_len < ihl:
                    err = ERR_BAD_IP_LEN
                else:
                    end = off + tot_len
                    if end > size:
                        err = ERR_TRUNCATED_IPV4
                        end = size
                    if nw_frag != _FRAG_LATER:
                        l4 = off + ihl
        else:
            err = ERR_TRUNCATED_IPV4
    elif eth_type == ETH_TYPE_IPV6:
        if size - off >= 40:
            vtcfl, plen, nh, nw_ttl, ipv6_src, ipv6_dst = _IPV6.unpack_from(frame, off)
            nw_tos = (vtcfl >> 20) & 0xff
            ipv6_label = vtcfl & 0xfffff
            off += 40
            end = off + plen
            if end > size:
                err = ERR_TRUNCATED_IPV6
                end = size
            while nh in _IPV6_EXT_HEADERS:
                if end - off < 8:
                    err = ERR_BAD_IPV6_EXT
                    break
                if nh == IPPROTO_FRAGMENT:
                    nh, frag_off = _IPV6_FRAG.unpack_from(frame, off)
                    off += 8
                    if frag_off & 0xfff8:
                        nw_frag = _FRAG_LATER
                        break                           # no L4 in later fragments
                    nw_frag = FLOW_NW_FRAG_ANY
                else:
                    nxt, hlen = _IPV6_EXT.unpack_from(frame, off)
                    hlen = (hlen + 2) << 2 if nh == IPPROTO_AH else (hlen + 1) << 3
                    if end - off < hlen:
                        err = ERR_BAD_IPV6_EXT
                        break
                    nh = nxt
                    off += hlen
            else:
                l4 = off
            nw_proto = nh
        else:
            err = ERR_TRUNCATED_IPV6
    elif eth_type == ETH_TYPE_ARP:
        if size - off >= 28:
            htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(frame, off)
            if htype == 1 and ptype == ETH_TYPE_IP and hlen == 6 and plen == 4:
                nw_proto = op if op <= 0xff else 0
                nw_src, nw_dst, arp_sha, arp_tha = spa, tpa, sha, tha
        else:
            err = ERR_TRUNCATED_ARP
    elif eth_type == ETH_TYPE_MPLS or eth_type == ETH_TYPE_MPLS_MCAST:
        if size - off >= 4:
            mpls_lse, = _BE32.unpack_from(frame, off)
        else:
            err = ERR_TRUNCATED_MPLS
    elif eth_type == ETH_TYPE_PBB:
        if size - off >= 4:
            pbb_itag, = _BE32.unpack_from(frame, off)
        else:
            err = ERR_TRUNCATED_PBB
    elif eth_type < ETH_TYPE_MIN:
        eth_type = FLOW_DL_TYPE_NONE

    if l4:
        avail = end - l4
        if nw_proto == IPPROTO_TCP:
            if avail >= 20:
                sport, dport, ctl = _unpack_tcp(frame, l4)
                doff = (ctl >> 12) << 2
                if doff < 20:
                    err = ERR_BAD_TCP_OFFSET
                elif avail < doff:
                    err = ERR_TRUNCATED_TCP
                else:
                    tp_src, tp_dst, tcp_flags = sport, dport, ctl & 0x0fff
            else:
                err = ERR_TRUNCATED_TCP
        elif nw_proto == IPPROTO_UDP:
            if avail >= 8:
                tp_src, tp_dst = _PORTS.unpack_from(frame, l4)
            else:
                err = ERR_TRUNCATED_UDP
        elif nw_proto == IPPROTO_SCTP:
            if avail >= 12:
                tp_src, tp_dst = _PORTS.unpack_from(frame, l4)
            else:
                err = ERR_TRUNCATED_SCTP
        elif nw_proto == IPPROTO_ICMP and eth_type == ETH_TYPE_IP:
            if avail >= 8:
                tp_src, tp_dst = _ICMP.unpack_from(frame, l4)
            else:
                err = ERR_TRUNCATED_ICMP
        elif nw_proto == IPPROTO_ICMPV6 and eth_type == ETH_TYPE_IPV6:
            if avail < 8:
                err = ERR_TRUNCATED_ICMPV6
            else:
                tp_src, tp_dst = _ICMP.unpack_from(frame, l4)
                if (tp_src == ND_NEIGHBOR_SOLICIT or tp_src == ND_NEIGHBOR_ADVERT) and not tp_dst:
                    nd_target, arp_sha, arp_tha, nd_err = _extract_nd(frame, l4 + 8, end)
                    if nd_err:
                        err = nd_err

    return _pack_key(md, eth_dst, eth_src, eth_type, vlan_tpid, vlan_tci,
                     mpls_lse, pbb_itag, nw_src, nw_dst, ipv6_src, ipv6_dst, ipv6_label,
                     nw_proto, nw_tos, nw_ttl, nw_frag, tp_src, tp_dst,
                     tcp_flags, arp_sha, arp_tha, nd_target), err


def _extract_nd(frame, off, end):
    """Return (nd_target, sll, tll, error) from the body of an ND packet at frame[off:end].

    The body is the 16-byte target then options: type, length in units of 8
    bytes, data.  The first source and target link-layer address options are
    kept; a repeated one invalidates all three fields, as in OVS.
    """
    if end - off < 16:
        return _Z16, _Z6, _Z6, ERR_TRUNCATED_ND
    target, = _ND_TARGET.unpack_from(frame, off)
    sll = tll = _Z6
    off += 16
    while end - off >= 8:
        opt_type, opt_len = frame[off], frame[off + 1] << 3
        if not opt_len or end - off < opt_len:
            return target, sll, tll, ERR_BAD_ND_OPTION
        if opt_len == 8 and opt_type == ND_OPT_SLL:
            if sll != _Z6:
                return _Z16, _Z6, _Z6, ERR_BAD_ND_OPTION
            sll, = _MAC.unpack_from(frame, off + 2)
        elif opt_len == 8 and opt_type == ND_OPT_TLL:
            if tll != _Z6:
                return _Z16, _Z6, _Z6, ERR_BAD_ND_OPTION
            tll, = _MAC.unpack_from(frame, off + 2)
        off += opt_len
    return target, sll, tll, None


def make_key(**fields):
    """Build a key, or a mask (same layout), from field values.

    Args:
        **fields: flow-field name -> int (big-endian in the field's width) or
            bytes of exactly the field's width.  Other fields are 0.

    Returns:
        KEY_LEN bytes.

    Raises:
        ValueError: unknown field, or a value that does not fit.
    """
    key = bytearray(KEY_LEN)
    for name, value in fields.items():
        if name not in FIELD_SLICES:
            raise ValueError(f'unknown flow field {name!r}')
        offset, width = FIELD_SLICES[name]
        if isinstance(value, int):
            try:
                value = value.to_bytes(width, 'big')
            except OverflowError:
                raise ValueError(f'{name}: {value} does not fit in {width} bytes') from None
        elif len(value) != width:
            raise ValueError(f'{name}: needs {width} bytes, got {len(value)}')
        key[offset:offset + width] = value
    return bytes(key)


mask_of = make_key      # a mask is built the same way: mask_of(nw_src=0xffffff00)


def make_mask(names):
    """Return a mask that matches the named fields exactly and ignores the rest."""
    return make_key(**{name: b'\xff' * FIELD_SLICES[name][1] for name in names})


def mask_key(key, mask):
    """Return key with every bit outside mask cleared."""
    return (int.from_bytes(key, 'big') & int.from_bytes(mask, 'big')).to_bytes(KEY_LEN, 'big')


def key_fields(key):
    """Return {name: value} for a key or mask: ints for numbers, bytes for addresses."""
    return {name: int.from_bytes(key[offset:offset + width], 'big')
            if name in _INT_FIELDS else bytes(key[offset:offset + width])
            for name, (offset, width) in FIELD_SLICES.items()}
