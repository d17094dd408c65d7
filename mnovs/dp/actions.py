"""Datapath action execution: run a megaflow's odp actions on one packet.

The slow path (xlate) produces odp actions, a tuple of tuples run in order:

    ('output', port_no)                 dp.output(port_no, packet)
    ('push_vlan', tpid, tci)            insert a tag after the MAC addresses
    ('pop_vlan',)                       remove the outermost tag
    ('set_masked', field, value, mask)  new = old & ~mask | value & mask
    ('userspace', userdata)             dp.userspace(packet, userdata)
    ('push_mpls', ethertype, lse)       insert an MPLS label stack entry
    ('pop_mpls', ethertype)             remove the top label stack entry
    ('meter', meter_id)                 dp.meters.apply(...); a drop ends the list
    ('hash', basis)                     dp.hash_l4(packet, basis): 5-tuple hash → dp_hash
    ('recirc', recirc_id)               dp.recirculate(packet, recirc_id): through the
                                        caches again, re-parsed (always the last action)
    ('set_tunnel', TunnelSpec)          dp.set_tunnel(spec): the outer header of the
                                        next outputs to tunnel ports (dp/tunnel.py)
    ('sample', probability, actions)    run the nested actions on a
                                        probability/UINT32_MAX share of packets
    ('push_pbb', itag)                  put an 802.1ah backbone header in front
    ('pop_pbb',)                        remove the backbone header
    ('copy_ttl_in',)                    top MPLS TTL -> the next entry's or IP's
    ('copy_ttl_out',)                   the next entry's or IP's TTL -> top MPLS TTL

validate_actions() checks their shape; the slow path's translations are
checked against it in tests, and execute() trusts its input (an invalid
action may raise, which the datapath counts as a lost upcall). Dispatch is a
dict from action name to a small exec_* function; set_masked dispatches again
through a dict of fields. An exec_* function returns None to go on, or a
truthy verdict that ends the list: _METER_DROP, or _SOFTWARE_OFFLOAD (below).

A packet is the 10-byte virtio_net_hdr followed by the Ethernet frame (see
offload.py). It may alias a receive buffer that is reused after execute()
returns, so execute() never writes to it and keeps no reference to it:

- Copy-on-write. Outputs send the packet as it is; the first modifying action
  copies it into a private bytearray that later actions edit in place.
  dp.output and dp.userspace must be done with the buffer (sent or copied)
  when they return, since a later action may change it.
- The vnet header moves with the frame. push_vlan/pop_vlan shift csum_start
  (when F_NEEDS_CSUM) and hdr_len (when set; the kernel sets it with GSO) by
  +-4, so the kernel still completes the right checksum and cuts the right
  headers.
- Checksums stay valid. set_masked on L3/L4 fields updates the IPv4 header
  checksum and the TCP/UDP/ICMPv6 checksum incrementally (RFC 1624), in the
  ones'-complement arithmetic of offload.ones_sum (a delta of (new - old) mod
  0xFFFF, shifted by 8 bits when the field ends on an odd byte); likewise
  the ICMPv4 and ICMPv6 checksums after a type, code, ND target or ND
  option rewrite. When F_NEEDS_CSUM points csum_start at the transport
  header, its checksum field holds the *uncomplemented* pseudo-header sum:
  an address change is added to it rather than to its complement, and a
  port, type, code or ND change leaves it alone (they are not in the
  pseudo-header; the kernel sums them later). A UDP checksum
  of 0 means "none" and stays 0. SCTP's CRC32c covers no pseudo-header and
  does not update incrementally: a port change recomputes it (table-driven,
  ~0.1 us per byte in Python; port rewriting of SCTP is rare).
- MPLS frames leave plain. push_mpls inserts the label stack entry after
  the MAC addresses and any VLAN tags (as OVS does) and sets the Ethertype
  before it; pop_mpls removes the top entry and writes the Ethertype it is
  given; set_masked on mpls_lse rewrites the top entry (label, TC, BoS, TTL).
  The kernel cannot segment an MPLS GSO frame sent from a packet socket:
  mpls_gso_segment() needs the skb's inner protocol and inner header offset,
  which only the kernel's own MPLS encapsulations set and a virtio_net_hdr
  cannot carry. Measured on kernel 6.18 over veth: send() of an MPLS TSO
  frame fails with ENOMEM; an MPLS frame with only F_NEEDS_CSUM goes through
  and reaches the peer still partial. So push_mpls on a packet with offload
  work pending (F_NEEDS_CSUM or a GSO type) returns _SOFTWARE_OFFLOAD:
  execute() has offload.segment() finish the packet in software (segment()
  still sees the IP header) and runs the push and the rest of the list on
  each frame, under a zeroed vnet header.
  A partial checksum alone would pass, but one rule, "an MPLS frame we send
  has no offload work left", keeps every receiver and capture (a datapath
  without vnet headers, tshark) correct and keeps offsets out of label stacks.
  pop_mpls of the bottom label keeps the offloads and moves the offsets as
  pop_vlan does (a host's MPLS encapsulation can deliver GSO frames): the
  result is IP again, which the kernel handles. A pop that leaves a label
  with offload work pending goes the software way; segment() cannot see
  through a label to cut a GSO frame, so that one is dropped, counted
  'mpls-offload' in dp.drops.
- PBB (802.1ah). push_pbb puts B-DA, B-SA (copies of the frame's own
  addresses, OF1.3 5.12.1), the Ethertype 0x88e7 and the 4-byte I-TAG TCI
  it is given (I-PCP, I-DEI, UCA, I-SID) in front of the whole frame, which
  becomes the payload, tags and all. Like push_mpls it first finishes
  pending offloads in software (the kernel cannot segment through a
  backbone header). pop_pbb removes everything up to the end of the I-TAG
  (any B-TAG with it) and moves the vnet offsets, as pop_vlan does.
- MPLS TTL copies. copy_ttl_in writes the top entry's TTL into the next
  entry, or into the IP header under the bottom one (TTL or hop limit, the
  IPv4 checksum updated); copy_ttl_out copies the other way.
- Meters. ('meter', id) runs the packet through dp.meters (meter.py, token
  buckets) with its frame length; a GSO frame counts as the wire packets it
  will become. A band that drops ends the action list, counted 'meter' in
  dp.drops (OVS's datapath_drop_meter). An unknown meter passes, as in OVS.
- Sample. ('sample', probability, nested) counts the packet in
  dp.sample_pool, draws a 32-bit random number and runs the nested actions
  only if it is <= probability (OVS's OVS_ACTION_ATTR_SAMPLE; UINT32_MAX
  always runs them). The nested actions see the packet as it is and their
  changes do not reach the actions after the sample (copy-on-write sees the
  outer packet as the one to copy). The sFlow shape, a lone userspace
  action, queues the upcall directly, its userdata followed by the sample
  pool (sample.POOL), and counts in dp.sample_lost a sample the full upcall
  queue refused (sFlow's `drops`). See sample.py for the
  same without the interpreter.
- Malformed frames never raise. Every setter locates its header with
  offload.frame_layout and checks bounds before writing; on a truncated
  frame, or one without the field (tp_src on ARP), the action does nothing.

Fields: eth_src, eth_dst, vlan_tci (outer tag present), mpls_lse (top
entry), pbb_itag (the I-TAG TCI of a PBB frame), nw_src/nw_dst (IPv4, or
the ARP spa/tpa of an Ethernet/IPv4 ARP frame), nw_tos, nw_ttl (IPv4 or
IPv6 traffic class/hop limit), ipv6_src, ipv6_dst, ipv6_label, tp_src,
tp_dst (TCP, UDP, SCTP ports; ICMP and ICMPv6 type and code, the ICMP
checksum updated: ICMPv4's covers no pseudo-header, ICMPv6's does),
arp_op, arp_sha and arp_tha (ARP addresses, or in a neighbour solicitation
or advertisement the first source or target link-layer address option;
absent, nothing is written), nd_target (ND target, with the ICMPv6
checksum). An IPv6 routing header is not consulted: the pseudo-header is
taken to hold ipv6_dst.

Cost: an output-only list costs one dict lookup per action and no copy. A
modifying action costs one copy of the packet (up to 64 KB for a GSO frame,
a few us) plus a header walk and a few int operations per set_masked. The
verdict check costs about 10 ns per list. A meter costs about 0.35 us (see
meter.py). MPLS on a plain frame costs one 4-byte insert or delete (the
copy included, about 0.3 us); on a TCP GSO frame it costs
software segmentation (about 0.2 ms per 64 KB, see offload.py), which caps
labelled TCP at a few Gbit/s instead of the kernel's speed.
"""

import struct
from time import monotonic

from mnovs.dp.sample import POOL, UINT32_MAX, getrandbits
from mnovs.dp.offload import (
    ETH_TYPE_ARP, ETH_TYPE_IP, ETH_TYPE_IPV6, F_NEEDS_CSUM,
    IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, VLAN_TPIDS,
    VNET_HDR, VNET_HDR_LEN, csum_finish, frame_layout, segment)
from mnovs.dp.tunnel import TunnelSpec

ETH = VNET_HDR_LEN                  # offset of the Ethernet frame in a packet
_U16 = struct.Struct('!H')
_U32 = struct.Struct('!I')
_CSUM_START = struct.Struct('<H')   # virtio_net_hdr.csum_start, at offset 6
_GSO = struct.Struct('<HH')         # virtio_net_hdr.hdr_len, gso_size, at offset 2
_VLAN_TAG = struct.Struct('!HH')    # TPID, TCI
_ARP_ETH_IPV4 = bytes((0, 1, 8, 0, 6, 4))   # htype 1, ptype IPv4, hlen 6, plen 4
_PUSH_TPIDS = (0x8100, 0x88A8)
_MPLS_TYPES = (0x8847, 0x8848)      # unicast, multicast
_ETH_TYPE_PBB = 0x88E7              # 802.1ah I-TAG
_PBB_TAG = struct.Struct('!HI')     # Ethertype, I-TAG TCI (after the B-DA and B-SA)
_PBB_HEADER_LEN = 18                # B-DA, B-SA, Ethertype, I-TAG TCI
_IPPROTO_ICMP = 1
_ND_TYPES = (135, 136)              # neighbour solicitation, advertisement
_ND_OPT_SLL, _ND_OPT_TLL = 1, 2
_PLAIN_VNET = bytes(VNET_HDR_LEN)   # no checksum or segmentation left to do

# Verdicts an exec_* function returns to end the action list.
_METER_DROP = 1
_SOFTWARE_OFFLOAD = 2

# --- the actions -----------------------------------------------------------


def execute(dp, packet, actions):
    """Run odp actions on one packet.

    Args:
        dp: has output(port_no, packet) and userspace(packet, userdata); both
            get vnet header + frame and must not keep the buffer.
        packet: bytes, bytearray or memoryview: vnet header + frame. Never
            modified and not referenced after return.
        actions: a tuple of valid actions (see validate_actions); () drops.

    Side effects:
        dp.count_drop(reason) counts the 'meter' and 'mpls-offload' drops; dp.meters
        is used by the meter action only.
    """
    pkt = packet
    todo = iter(actions)
    for action in todo:
        run, modifies, _ = _ACTIONS[action[0]]
        if modifies and pkt is packet:
            pkt = bytearray(packet)
        verdict = run(dp, pkt, action)
        if verdict:
            if verdict == _SOFTWARE_OFFLOAD:
                _execute_segments(dp, pkt, (action,) + tuple(todo))
            else:
                dp.count_drop('meter')
            return


def _execute_segments(dp, pkt, actions):
    """Finish pkt's offloads in software, then run actions on each frame."""
    frames = segment(pkt)
    if not frames:
        dp.count_drop('mpls-offload')
    for frame in frames:
        execute(dp, _PLAIN_VNET + frame, actions)


def exec_output(dp, pkt, action):
    dp.output(action[1], pkt)


def exec_set_tunnel(dp, pkt, action):
    dp.set_tunnel(action[1])


def exec_userspace(dp, pkt, action):
    dp.userspace(pkt, action[1])


def exec_push_vlan(dp, pkt, action):
    if len(pkt) < ETH + 14:
        return
    pkt[ETH + 12:ETH + 12] = _VLAN_TAG.pack(action[1], action[2])
    _shift_vnet(pkt, 4)


def exec_pop_vlan(dp, pkt, action):
    if len(pkt) < ETH + 18 or (pkt[ETH + 12] << 8 | pkt[ETH + 13]) not in VLAN_TPIDS:
        return
    del pkt[ETH + 12:ETH + 16]
    _shift_vnet(pkt, -4)


def exec_push_mpls(dp, pkt, action):
    if pkt[0] & F_NEEDS_CSUM or pkt[1]:
        return _SOFTWARE_OFFLOAD
    at = _eth_type_at(pkt)
    if at:
        pkt[at + 2:at + 2] = _U32.pack(action[2])
        _U16.pack_into(pkt, at, action[1])
    return None


def exec_pop_mpls(dp, pkt, action):
    at = _eth_type_at(pkt)
    if not at or len(pkt) < at + 6 or (pkt[at] << 8 | pkt[at + 1]) not in _MPLS_TYPES:
        return None
    offloads = pkt[0] & F_NEEDS_CSUM or pkt[1]
    bottom = pkt[at + 4] & 1        # the BoS bit, bit 8 of the entry
    if offloads and (action[1] in _MPLS_TYPES or not bottom):
        return _SOFTWARE_OFFLOAD
    del pkt[at + 2:at + 6]
    _U16.pack_into(pkt, at, action[1])
    if offloads:
        _shift_vnet(pkt, -4)
    return None


def exec_push_pbb(dp, pkt, action):
    # The backbone header goes in front of the whole frame; its B-DA and B-SA
    # are the frame's own addresses (OF1.3 5.12.1). Offloads are finished
    # first, for the reason given for push_mpls.
    if pkt[0] & F_NEEDS_CSUM or pkt[1]:
        return _SOFTWARE_OFFLOAD
    if len(pkt) >= ETH + 14:
        pkt[ETH:ETH] = pkt[ETH:ETH + 12] + _PBB_TAG.pack(_ETH_TYPE_PBB, action[1])
    return None


def exec_pop_pbb(dp, pkt, action):
    at = _eth_type_at(pkt)
    if not at or len(pkt) < at + 6 + 14 or (pkt[at] << 8 | pkt[at + 1]) != _ETH_TYPE_PBB:
        return
    end = at + 6                    # the customer frame starts after the I-TAG
    del pkt[ETH:end]
    if pkt[0] & F_NEEDS_CSUM or pkt[1]:
        _shift_vnet(pkt, ETH - end)


def exec_copy_ttl_in(dp, pkt, action):
    ttl_at = _mpls_ttl_at(pkt)
    if ttl_at:
        _put_ttl(pkt, ttl_at, pkt[ttl_at])


def exec_copy_ttl_out(dp, pkt, action):
    ttl_at = _mpls_ttl_at(pkt)
    if ttl_at:
        inner = _inner_ttl_at(pkt, ttl_at)
        if inner:
            pkt[ttl_at] = pkt[inner]


def _mpls_ttl_at(pkt):
    """Return the offset of the top MPLS entry's TTL byte; 0 if not MPLS."""
    at = _eth_type_at(pkt)
    if at and len(pkt) >= at + 6 and (pkt[at] << 8 | pkt[at + 1]) in _MPLS_TYPES:
        return at + 5
    return 0


def _inner_ttl_at(pkt, ttl_at):
    """The TTL under the top label: the next entry's, or the IP header's at the bottom."""
    n = len(pkt)
    if not pkt[ttl_at - 1] & 1:                         # not bottom of stack
        return ttl_at + 4 if n > ttl_at + 4 else 0
    version = pkt[ttl_at + 1] >> 4 if n > ttl_at + 1 else 0
    if version == 4 and n >= ttl_at + 21:
        return ttl_at + 9
    if version == 6 and n >= ttl_at + 41:
        return ttl_at + 8
    return 0


def _put_ttl(pkt, ttl_at, ttl):
    """Write ttl under the label whose TTL byte is at ttl_at (an IPv4 one with its checksum)."""
    inner = _inner_ttl_at(pkt, ttl_at)
    if not inner:
        return
    old = pkt[inner]
    pkt[inner] = ttl
    if inner == ttl_at + 9:                             # IPv4: TTL is a high byte
        _csum_adjust(pkt, ttl_at + 11, (ttl - old) << 8)


def exec_meter(dp, pkt, action):
    length = len(pkt) - ETH
    packets = 1
    if pkt[1]:                      # GSO: count the segments it will become
        hdr_len, gso_size = _GSO.unpack_from(pkt, 2)
        if gso_size:
            payload = length - hdr_len if 0 < hdr_len < length else length
            packets = -(-payload // gso_size)
    if dp.meters.apply(action[1], length, monotonic(), packets):
        return None
    return _METER_DROP


def exec_hash(dp, pkt, action):
    dp.hash_l4(pkt, action[1])


def exec_recirc(dp, pkt, action):
    dp.recirculate(pkt, action[1])


def exec_sample(dp, pkt, action):
    dp.sample_pool += 1
    if action[1] != UINT32_MAX and getrandbits(32) > action[1]:
        return
    nested = action[2]
    if len(nested) == 1 and nested[0][0] == 'userspace':
        if not dp.userspace(pkt, nested[0][1] + POOL.pack(dp.sample_pool)):
            dp.sample_lost += 1
    else:
        execute(dp, pkt, nested)


def exec_set_masked(dp, pkt, action):
    _, field, value, mask = action
    _, setter, arg = _FIELDS[field]
    setter(pkt, arg, int.from_bytes(value, 'big'), int.from_bytes(mask, 'big'))


def _shift_vnet(pkt, delta):
    """Move the vnet header's frame offsets past the MACs by delta bytes."""
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack_from(pkt)
    if flags & F_NEEDS_CSUM and csum_start >= 12:
        csum_start = max(csum_start + delta, 12)
    if hdr_len >= 12:
        hdr_len = max(hdr_len + delta, 12)
    VNET_HDR.pack_into(pkt, 0, flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def _eth_type_at(pkt):
    """Return the offset of the Ethertype after any VLAN tags; 0 if truncated."""
    at = ETH + 12
    end = len(pkt) - 2
    while at <= end:
        if (pkt[at] << 8 | pkt[at + 1]) not in VLAN_TPIDS:
            return at
        at += 4
    return 0


# --- set_masked, one setter per kind of field ------------------------------
# A setter gets (pkt, arg, value, mask) with value and mask as ints; arg is
# the constant of its row in _FIELDS (an offset, or a pair of offsets).

def _put(pkt, at, width, value, mask):
    """Write value under mask into pkt[at:at + width]; return (old, new)."""
    old = int.from_bytes(pkt[at:at + width], 'big')
    new = old & ~mask | value & mask
    pkt[at:at + width] = new.to_bytes(width, 'big')
    return old, new


def set_eth(pkt, at, value, mask):
    if len(pkt) >= ETH + 14:
        _put(pkt, ETH + at, 6, value, mask)


def set_vlan_tci(pkt, _, value, mask):
    if len(pkt) >= ETH + 18 and (pkt[ETH + 12] << 8 | pkt[ETH + 13]) in VLAN_TPIDS:
        _put(pkt, ETH + 14, 2, value, mask)


def set_mpls_lse(pkt, _, value, mask):
    at = _eth_type_at(pkt)
    if at and len(pkt) >= at + 6 and (pkt[at] << 8 | pkt[at + 1]) in _MPLS_TYPES:
        _put(pkt, at + 2, 4, value, mask)


def set_arp(pkt, at_width, value, mask):
    layout = frame_layout(pkt)
    if layout is not None and layout[0] == ETH_TYPE_ARP and _is_ipv4_arp(pkt, layout[1]):
        at, width = at_width
        _put(pkt, layout[1] + at, width, value, mask)


def set_nw_addr(pkt, ip_arp_at, value, mask):
    layout = frame_layout(pkt)
    if layout is None:
        return
    eth_type, l3, proto, l4 = layout
    if eth_type == ETH_TYPE_IP:
        old, new = _put(pkt, l3 + ip_arp_at[0], 4, value, mask)
        _csum_adjust(pkt, l3 + 10, new - old)
        _pseudo_adjust(pkt, proto, l4, new - old)
    elif eth_type == ETH_TYPE_ARP and _is_ipv4_arp(pkt, l3):
        _put(pkt, l3 + ip_arp_at[1], 4, value, mask)


def set_nw_tos(pkt, _, value, mask):
    layout = frame_layout(pkt)
    if layout is None:
        return
    eth_type, l3 = layout[:2]
    if eth_type == ETH_TYPE_IP:
        old, new = _put(pkt, l3 + 1, 1, value, mask)      # low byte of a word
        _csum_adjust(pkt, l3 + 10, new - old)
    elif eth_type == ETH_TYPE_IPV6:                       # traffic class
        _put(pkt, l3, 2, value << 4, mask << 4)


def set_nw_ttl(pkt, _, value, mask):
    layout = frame_layout(pkt)
    if layout is None:
        return
    eth_type, l3 = layout[:2]
    if eth_type == ETH_TYPE_IP:
        old, new = _put(pkt, l3 + 8, 1, value, mask)      # high byte of a word
        _csum_adjust(pkt, l3 + 10, (new - old) << 8)
    elif eth_type == ETH_TYPE_IPV6:                       # hop limit
        _put(pkt, l3 + 7, 1, value, mask)


def set_ipv6_addr(pkt, at, value, mask):
    layout = frame_layout(pkt)
    if layout is not None and layout[0] == ETH_TYPE_IPV6:
        _, l3, proto, l4 = layout
        old, new = _put(pkt, l3 + at, 16, value, mask)
        _pseudo_adjust(pkt, proto, l4, new - old)


def set_ipv6_label(pkt, _, value, mask):
    layout = frame_layout(pkt)
    if layout is not None and layout[0] == ETH_TYPE_IPV6:
        _put(pkt, layout[1], 4, value & 0xFFFFF, mask & 0xFFFFF)


def set_tp_port(pkt, at, value, mask):
    layout = frame_layout(pkt)
    if layout is None:
        return
    eth_type, l3, proto, l4 = layout
    n = len(pkt)
    if proto == IPPROTO_TCP and n >= l4 + 20:
        csum_at = l4 + 16
    elif proto == IPPROTO_UDP and n >= l4 + 8:
        csum_at = l4 + 6
    elif proto == IPPROTO_SCTP and n >= l4 + 12:
        _put(pkt, l4 + at, 2, value, mask)
        _sctp_recompute(pkt, eth_type, l3, l4)
        return
    elif (proto == _IPPROTO_ICMP and eth_type == ETH_TYPE_IP or proto == IPPROTO_ICMPV6) \
            and n >= l4 + 4:
        _set_icmp(pkt, l4, at >> 1, value, mask)
        return
    else:
        return
    old, new = _put(pkt, l4 + at, 2, value, mask)
    if _is_partial(pkt, l4) or proto == IPPROTO_UDP and not pkt[csum_at] | pkt[csum_at + 1]:
        return
    _csum_adjust(pkt, csum_at, new - old)


def _set_icmp(pkt, l4, byte, value, mask):
    """Write an ICMP type (byte 0) or code (byte 1), the key's tp_src/tp_dst.

    Neither is in a pseudo-header: a partial ICMPv6 sum stays as it is.
    """
    old, new = _put(pkt, l4 + byte, 1, value & 0xFF, mask & 0xFF)
    if not _is_partial(pkt, l4):
        _csum_adjust(pkt, l4 + 2, new - old << 8 * (1 - byte))


def set_lla(pkt, arp_at_opt, value, mask):
    """Write arp_sha/arp_tha: an ARP address, or an ND link-layer address option."""
    layout = frame_layout(pkt)
    if layout is None:
        return
    eth_type, l3, proto, l4 = layout
    arp_at, opt_type = arp_at_opt
    if eth_type == ETH_TYPE_ARP and _is_ipv4_arp(pkt, l3):
        _put(pkt, l3 + arp_at, 6, value, mask)
    elif proto == IPPROTO_ICMPV6:
        at = _nd_option(pkt, l3, l4, opt_type)
        if at:
            old, new = _put(pkt, at, 6, value, mask)
            if not _is_partial(pkt, l4):
                _csum_adjust(pkt, l4 + 2, new - old)


def set_nd_target(pkt, _, value, mask):
    layout = frame_layout(pkt)
    if layout is None or layout[2] != IPPROTO_ICMPV6:
        return
    l4 = layout[3]
    if len(pkt) >= l4 + 24 and pkt[l4] in _ND_TYPES:
        old, new = _put(pkt, l4 + 8, 16, value, mask)
        if not _is_partial(pkt, l4):
            _csum_adjust(pkt, l4 + 2, new - old)


def _nd_option(pkt, l3, l4, opt_type):
    """Offset of the address in the first opt_type option of an ND packet; 0 if none."""
    if len(pkt) < l4 + 24 or pkt[l4] not in _ND_TYPES:
        return 0
    end = min(len(pkt), l3 + 40 + (pkt[l3 + 4] << 8 | pkt[l3 + 5]))
    at = l4 + 24
    while at + 8 <= end:
        length = pkt[at + 1] << 3
        if not length:
            return 0
        if pkt[at] == opt_type and length == 8:
            return at + 2
        at += length
    return 0


def set_pbb_itag(pkt, _, value, mask):
    at = _eth_type_at(pkt)
    if at and len(pkt) >= at + 6 and (pkt[at] << 8 | pkt[at + 1]) == _ETH_TYPE_PBB:
        _put(pkt, at + 2, 4, value, mask)


def _is_ipv4_arp(pkt, l3):
    return len(pkt) >= l3 + 28 and pkt[l3:l3 + 6] == _ARP_ETH_IPV4


def _is_partial(pkt, l4):
    """True if the transport checksum at l4 holds a partial (pseudo) sum."""
    return bool(pkt[0] & F_NEEDS_CSUM) and _CSUM_START.unpack_from(pkt, 6)[0] + ETH == l4


# --- checksums ---------------------------------------------------------------

def _csum_adjust(pkt, at, delta):
    """Add delta to the sum a complemented checksum field covers (RFC 1624)."""
    old = pkt[at] << 8 | pkt[at + 1]
    _U16.pack_into(pkt, at, csum_finish(0xFFFF - old + delta))


def _pseudo_adjust(pkt, proto, l4, delta):
    """Carry a pseudo-header change into the transport checksum, if any."""
    if proto == IPPROTO_TCP:
        at = l4 + 16
    elif proto == IPPROTO_UDP:
        at = l4 + 6
    elif proto == IPPROTO_ICMPV6:
        at = l4 + 2
    else:
        return
    if len(pkt) < at + 2:
        return
    old = pkt[at] << 8 | pkt[at + 1]
    if _is_partial(pkt, l4):
        _U16.pack_into(pkt, at, (old + delta) % 0xFFFF or 0xFFFF)
    elif old or proto != IPPROTO_UDP:
        _csum_adjust(pkt, at, delta)


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = crc >> 1 ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    """Return the CRC32c (Castagnoli) of data, as SCTP uses it."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ crc >> 8
    return crc ^ 0xFFFFFFFF


def _sctp_recompute(pkt, eth_type, l3, l4):
    """Recompute the CRC32c of the SCTP packet at l4 (up to the IP length)."""
    if eth_type == ETH_TYPE_IP:
        end = l3 + (pkt[l3 + 2] << 8 | pkt[l3 + 3])
    else:
        end = l3 + 40 + (pkt[l3 + 4] << 8 | pkt[l3 + 5])
    end = min(end, len(pkt))
    if end < l4 + 12:
        return
    pkt[l4 + 8:l4 + 12] = bytes(4)
    pkt[l4 + 8:l4 + 12] = crc32c(pkt[l4:end]).to_bytes(4, 'little')


# --- tables and validation -----------------------------------------------

# name: (exec function, modifies the packet, number of tuple items)
_ACTIONS = {
    'output': (exec_output, False, 2),
    'push_vlan': (exec_push_vlan, True, 3),
    'pop_vlan': (exec_pop_vlan, True, 1),
    'set_masked': (exec_set_masked, True, 4),
    'userspace': (exec_userspace, False, 2),
    'push_mpls': (exec_push_mpls, True, 3),
    'pop_mpls': (exec_pop_mpls, True, 2),
    'meter': (exec_meter, False, 2),
    'hash': (exec_hash, False, 2),
    'recirc': (exec_recirc, False, 2),
    'set_tunnel': (exec_set_tunnel, False, 2),
    'sample': (exec_sample, False, 3),
    'push_pbb': (exec_push_pbb, True, 2),
    'pop_pbb': (exec_pop_pbb, True, 1),
    'copy_ttl_in': (exec_copy_ttl_in, True, 1),
    'copy_ttl_out': (exec_copy_ttl_out, True, 1),
}

# field: (width in bytes, setter, setter's constant)
_FIELDS = {
    'eth_dst': (6, set_eth, 0),
    'eth_src': (6, set_eth, 6),
    'vlan_tci': (2, set_vlan_tci, None),
    'mpls_lse': (4, set_mpls_lse, None),
    'nw_src': (4, set_nw_addr, (12, 14)),      # IPv4 offset, ARP spa offset
    'nw_dst': (4, set_nw_addr, (16, 24)),      # IPv4 offset, ARP tpa offset
    'nw_tos': (1, set_nw_tos, None),
    'nw_ttl': (1, set_nw_ttl, None),
    'ipv6_src': (16, set_ipv6_addr, 8),
    'ipv6_dst': (16, set_ipv6_addr, 24),
    'ipv6_label': (4, set_ipv6_label, None),
    'tp_src': (2, set_tp_port, 0),
    'tp_dst': (2, set_tp_port, 2),
    'arp_op': (2, set_arp, (6, 2)),
    'arp_sha': (6, set_lla, (8, _ND_OPT_SLL)),     # ARP sha offset, ND option type
    'arp_tha': (6, set_lla, (18, _ND_OPT_TLL)),
    'nd_target': (16, set_nd_target, None),
    'pbb_itag': (4, set_pbb_itag, None),
}


def validate_actions(actions):
    """Check that odp actions are well formed before a flow is installed.

    Raises:
        ValueError: with a one-line reason (unknown action or field, wrong
            number of items, wrong type or width of a value).
    """
    if not isinstance(actions, tuple):
        raise ValueError(f'actions must be a tuple, not {type(actions).__name__}')
    for action in actions:
        if not isinstance(action, tuple) or not action:
            raise ValueError(f'action must be a non-empty tuple: {action!r}')
        name = action[0]
        if name not in _ACTIONS:
            raise ValueError(f'unknown action {name!r}')
        if len(action) != _ACTIONS[name][2]:
            raise ValueError(f'{name} takes {_ACTIONS[name][2] - 1} arguments: {action!r}')
        if name == 'output':
            _check_uint(action[1], 32, 'output port')
        elif name == 'push_vlan':
            if action[1] not in _PUSH_TPIDS:
                raise ValueError(f'push_vlan tpid must be 0x8100 or 0x88a8: {action[1]!r}')
            _check_uint(action[2], 16, 'push_vlan tci')
        elif name == 'set_masked':
            _check_set_masked(*action[1:])
        elif name == 'push_mpls':
            if action[1] not in _MPLS_TYPES:
                raise ValueError(f'push_mpls ethertype must be 0x8847 or 0x8848: {action[1]!r}')
            _check_uint(action[2], 32, 'push_mpls lse')
        elif name == 'pop_mpls':
            _check_uint(action[1], 16, 'pop_mpls ethertype')
        elif name in ('meter', 'hash'):
            _check_uint(action[1], 32, f'{name} argument')
        elif name == 'recirc':
            if action is not actions[-1]:
                raise ValueError('recirc must be the last action')
            _check_uint(action[1], 32, 'recirc id')
        elif name == 'set_tunnel':
            _check_tunnel_spec(action[1])
        elif name == 'push_pbb':
            _check_uint(action[1], 32, 'push_pbb I-TAG')
        elif name == 'userspace' and not isinstance(action[1], bytes):
            raise ValueError(f'userspace userdata must be bytes: {action[1]!r}')
        elif name == 'sample':
            _check_uint(action[1], 32, 'sample probability')
            validate_actions(action[2])


def _check_tunnel_spec(spec):
    if not isinstance(spec, TunnelSpec):
        raise ValueError(f'set_tunnel takes a TunnelSpec: {spec!r}')
    _check_uint(spec.tun_id, 64, 'set_tunnel tun_id')
    for what in ('ip_src', 'ip_dst'):
        value = getattr(spec, what)
        if not isinstance(value, bytes) or len(value) != 4:
            raise ValueError(f'set_tunnel {what} must be 4 bytes: {value!r}')
    if not any(spec.ip_dst):
        raise ValueError('set_tunnel: no destination address')
    _check_uint(spec.tos, 8, 'set_tunnel tos')
    _check_uint(spec.ttl, 8, 'set_tunnel ttl')
    _check_uint(spec.tp_dst, 16, 'set_tunnel tp_dst')
    _check_uint(spec.flags, 16, 'set_tunnel flags')


def _check_uint(value, bits, what):
    if type(value) is not int or not 0 <= value < 1 << bits:
        raise ValueError(f'{what} must be a {bits}-bit unsigned int: {value!r}')


def _check_set_masked(field, value, mask):
    if field not in _FIELDS:
        raise ValueError(f'set_masked: unknown field {field!r}')
    width = _FIELDS[field][0]
    for what, blob in (('value', value), ('mask', mask)):
        if not isinstance(blob, bytes) or len(blob) != width:
            raise ValueError(f'set_masked {field}: {what} must be {width} bytes: {blob!r}')
