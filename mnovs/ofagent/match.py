"""OXM matches compiled onto the flow key: the bits a rule reads.

The agent receives a match as the dict of oxm.py (OXM name -> (value, mask)).
To classify packets, table.py needs it in the datapath's terms: which bits of
a flow key (mnovs/dp/flow.py) must hold which values.  compile_match() turns
the dict into one (value, mask) pair of ints over an *extended key*:

    bit 1183 ....... 1120 | 1119 ................................... 0
    +---------------------+------------------------------------------+
    |      metadata       |  flow key (140 bytes, as                 |
    |  (pipeline state)   |  int.from_bytes(key, 'big'))             |
    +---------------------+------------------------------------------+

so a rule matches an extended key `ext` when `ext & mask == value`, subset
and overlap tests are two ANDs (covers, overlaps), and the key part of a mask
is directly a megaflow mask.  metadata never reaches the datapath: it is
written by the pipeline itself.

Field mapping (OXM -> flow-key field, bits):
- in_port, eth_dst, eth_src, eth_type: the same-named key fields.
- tunnel_id -> tun_id; Nicira's tun_ipv4_src/tun_ipv4_dst (NXM_NX_TUN_IPV4_*,
  which ovs-ofctl sends as NXM class-1 OXMs) -> tun_src/tun_dst: the tunnel
  metadata of a packet received on a tunnel port (0 for any other packet).
- vlan_vid -> vlan_tci bits 0-12: the key's VLAN_CFI (0x1000) is OFPVID_PRESENT,
  so vlan_vid=OFPVID_NONE exact means "untagged" and (0x1000, 0x1000) "any
  tag"; vlan_pcp -> vlan_tci bits 13-15.
- ip_dscp -> nw_tos bits 2-7, ip_ecn -> nw_tos bits 0-1, ip_proto -> nw_proto.
- ipv4_src/dst and arp_spa/tpa -> nw_src/nw_dst; arp_op -> nw_proto (the key
  holds opcodes up to 255 only, so a larger arp_op is rejected: BAD_VALUE).
- tcp/udp/sctp src/dst and icmpv4/icmpv6 type/code -> tp_src/tp_dst.
- arp_sha/tha and ipv6_nd_sll/tll -> arp_sha/arp_tha; ipv6_nd_target ->
  nd_target; ipv6_src/dst; ipv6_flabel -> ipv6_label.
- mpls_label/tc/bos -> mpls_lse bits 12-31 / 9-11 / 8.
- pbb_isid -> pbb_itag bits 0-23 (the I-SID of the 802.1ah I-TAG).
- in_phy_port, ipv6_exthdr have no key field: OFPBMC_BAD_FIELD.

Validation (field known, mask allowed, value in range, value within mask,
prerequisites present) is oxm.validate_match's, run again here so that any
caller, not only the decoder, gets the spec's errors.  Prerequisites are
therefore always part of the compiled mask: tcp_dst=80 compiles to
eth_type=0x0800 or 0x86dd (whichever the match names), nw_proto=6, tp_dst=80.

The same table serves set_field (xlate.py): SET_FIELDS says where each field
we can rewrite lives in the key, and PREREQS gives the prerequisite of each
field as alternatives of (mask, value) over the key, derived from oxm.py's
chains (tcp_src needs ip_proto=6, which needs eth_type 0x0800 or 0x86dd).
"""

from mnovs.dp.flow import FIELD_SLICES, KEY_LEN
from mnovs.openflow.ofp import (
    OFPBMC_BAD_FIELD, OFPBMC_BAD_VALUE, OFPET_BAD_MATCH, OFPVID_PRESENT, OFPError)
from mnovs.openflow.oxm import OXM_BY_NAME, validate_match

KEY_BITS = KEY_LEN * 8
KEY_ONES = (1 << KEY_BITS) - 1
METADATA_SHIFT = KEY_BITS
PIPELINE_BITS = ((1 << 64) - 1) << KEY_BITS      # metadata


def field_shift(name):
    """Bit position of the lowest bit of flow-key field `name` in a key int."""
    offset, width = FIELD_SLICES[name]
    return (KEY_LEN - offset - width) * 8


def field_bits(name, ones=None):
    """The key-int mask of field `name` (or of `ones` within it)."""
    if ones is None:
        ones = (1 << FIELD_SLICES[name][1] * 8) - 1
    return ones << field_shift(name)


def fields_bits(names):
    """The key-int mask of several whole fields."""
    bits = 0
    for name in names:
        bits |= field_bits(name)
    return bits


# OXM field -> (flow-key field, lowest bit within it, number of bits).
_OXM_KEY_FIELDS = {
    'in_port': ('in_port', 0, 32),
    'tunnel_id': ('tun_id', 0, 64),
    'tun_ipv4_src': ('tun_src', 0, 32),
    'tun_ipv4_dst': ('tun_dst', 0, 32),
    'eth_dst': ('eth_dst', 0, 48),
    'eth_src': ('eth_src', 0, 48),
    'eth_type': ('eth_type', 0, 16),
    'vlan_vid': ('vlan_tci', 0, 13),
    'vlan_pcp': ('vlan_tci', 13, 3),
    'ip_dscp': ('nw_tos', 2, 6),
    'ip_ecn': ('nw_tos', 0, 2),
    'ip_proto': ('nw_proto', 0, 8),
    'ipv4_src': ('nw_src', 0, 32),
    'ipv4_dst': ('nw_dst', 0, 32),
    'tcp_src': ('tp_src', 0, 16),
    'tcp_dst': ('tp_dst', 0, 16),
    'udp_src': ('tp_src', 0, 16),
    'udp_dst': ('tp_dst', 0, 16),
    'sctp_src': ('tp_src', 0, 16),
    'sctp_dst': ('tp_dst', 0, 16),
    'icmpv4_type': ('tp_src', 0, 8),
    'icmpv4_code': ('tp_dst', 0, 8),
    'arp_op': ('nw_proto', 0, 8),
    'arp_spa': ('nw_src', 0, 32),
    'arp_tpa': ('nw_dst', 0, 32),
    'arp_sha': ('arp_sha', 0, 48),
    'arp_tha': ('arp_tha', 0, 48),
    'ipv6_src': ('ipv6_src', 0, 128),
    'ipv6_dst': ('ipv6_dst', 0, 128),
    'ipv6_flabel': ('ipv6_label', 0, 20),
    'icmpv6_type': ('tp_src', 0, 8),
    'icmpv6_code': ('tp_dst', 0, 8),
    'ipv6_nd_target': ('nd_target', 0, 128),
    'ipv6_nd_sll': ('arp_sha', 0, 48),
    'ipv6_nd_tll': ('arp_tha', 0, 48),
    'mpls_label': ('mpls_lse', 12, 20),
    'mpls_tc': ('mpls_lse', 9, 3),
    'mpls_bos': ('mpls_lse', 8, 1),
    'pbb_isid': ('pbb_itag', 0, 24),
}

# OXM field -> (shift in the extended key, number of bits).
OXM_BITS = {name: (field_shift(key_field) + low, nbits)
            for name, (key_field, low, nbits) in _OXM_KEY_FIELDS.items()}
OXM_BITS['metadata'] = (METADATA_SHIFT, 64)


def _prereq_alternatives(name):
    """The prerequisite of `name` as a tuple of (mask, value) over the key."""
    prereq = OXM_BY_NAME[name].prereq
    if prereq is None:
        return ((0, 0),)
    need, values = prereq
    shift, nbits = OXM_BITS[need]
    if need == 'vlan_vid':                      # "a tag is present"
        bits, values = OFPVID_PRESENT << shift, (OFPVID_PRESENT,)
    else:
        bits = ((1 << nbits) - 1) << shift
    return tuple((bits | m, value << shift | v)
                 for value in values for m, v in _prereq_alternatives(need))


def _with_union(alternatives):
    union = 0
    for mask, _ in alternatives:
        union |= mask
    return union, alternatives


# OXM field -> (union of the masks, alternatives): what checking its
# prerequisite on a key reads, and the ways it can be met.
PREREQS = {name: _with_union(_prereq_alternatives(name)) for name in OXM_BITS}

# Fields set_field can rewrite in a packet -> (key bits, shift, prerequisite).
# vlan_vid writes the 12-bit VID of a tag the packet has (OFPVID_PRESENT in
# the value is ignored; an untagged packet is left alone, as OVS does for
# OF1.2+); transport ports and ICMP type/code also need their header, so
# not a later fragment; metadata is pipeline state, handled by xlate itself.
# The ND fields rewrite the target and the link-layer address options of a
# neighbour solicitation (sll) or advertisement (tll, target of both).
#
# Refused, although OF1.3's OXM list allows them in a set_field (the codec
# decodes them; table.check_actions answers OFPBAC_BAD_SET_TYPE, the spec's
# error for a set_field type the switch does not support), as OVS refuses
# them: eth_type and ip_proto name the header that follows, and writing
# them would relabel those bytes as another protocol without converting
# them (push/pop actions change eth_type, with the header); ipv6_exthdr is
# a summary of the extension headers present, not a field of any one.
_SETTABLE = ('tunnel_id', 'tun_ipv4_src', 'tun_ipv4_dst', 'eth_dst', 'eth_src', 'vlan_vid',
             'vlan_pcp', 'ip_dscp', 'ip_ecn', 'ipv4_src', 'ipv4_dst', 'tcp_src', 'tcp_dst',
             'udp_src', 'udp_dst', 'sctp_src', 'sctp_dst', 'icmpv4_type', 'icmpv4_code',
             'arp_op', 'arp_spa', 'arp_tpa', 'arp_sha', 'arp_tha', 'ipv6_src', 'ipv6_dst',
             'ipv6_flabel', 'icmpv6_type', 'icmpv6_code', 'ipv6_nd_target', 'ipv6_nd_sll',
             'ipv6_nd_tll', 'mpls_label', 'mpls_tc', 'mpls_bos', 'pbb_isid')
_L4_HEADER = ('tcp_src', 'tcp_dst', 'udp_src', 'udp_dst', 'sctp_src', 'sctp_dst',
              'icmpv4_type', 'icmpv4_code', 'icmpv6_type', 'icmpv6_code')
_LATER_FRAGMENT = field_bits('nw_frag', 2)      # FLOW_NW_FRAG_LATER


def _set_field_row(name):
    shift, nbits = OXM_BITS[name]
    alternatives = _prereq_alternatives(name)
    if name == 'vlan_vid':                      # the VID of an existing tag
        nbits, alternatives = 12, _prereq_alternatives('vlan_pcp')
    if name in _L4_HEADER:
        alternatives = tuple((m | _LATER_FRAGMENT, v) for m, v in alternatives)
    return ((1 << nbits) - 1) << shift, shift, _with_union(alternatives)


SET_FIELDS = {name: _set_field_row(name) for name in _SETTABLE}


def compile_match(match):
    """Compile an OXM match dict to (value, mask) ints over the extended key.

    Args:
        match: OXM name -> (value, mask or None).
    Returns:
        (value, mask); value has no bit outside mask.
    Raises:
        OFPError(OFPET_BAD_MATCH, ...): see oxm.validate_match; BAD_FIELD for
        in_phy_port and ipv6_exthdr, BAD_VALUE for arp_op > 255.
    """
    validate_match(match)
    value = mask = 0
    for name, (v, m) in match.items():
        location = OXM_BITS.get(name)
        if location is None:
            raise OFPError(OFPET_BAD_MATCH, OFPBMC_BAD_FIELD)
        shift, nbits = location
        if name == 'arp_op' and v > 0xff:
            raise OFPError(OFPET_BAD_MATCH, OFPBMC_BAD_VALUE)
        if m is None:
            m = (1 << nbits) - 1
        value |= (v & m) << shift
        mask |= m << shift
    return value, mask


def covers(general, specific):
    """True if every packet matching `specific` matches `general` too.

    Both are compiled (value, mask) pairs.  This is OpenFlow's non-strict
    selection: a flow_mod or stats filter `general` selects the rules whose
    match is at least as specific.
    """
    g_value, g_mask = general
    s_value, s_mask = specific
    return not g_mask & ~s_mask and s_value & g_mask == g_value


def overlaps(a, b):
    """True if some packet can match both compiled matches (CHECK_OVERLAP)."""
    return not (a[0] ^ b[0]) & a[1] & b[1]


def format_match(match):
    """'name=value[/mask],...' for traces, in the OXM table's order."""
    items = []
    for name in sorted(match, key=lambda n: OXM_BY_NAME[n].number):
        value, mask = match[name]
        items.append(f'{name}={value:#x}' if mask is None else f'{name}={value:#x}/{mask:#x}')
    return ','.join(items) or '*'
