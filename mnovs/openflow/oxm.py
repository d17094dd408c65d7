"""OXM: OpenFlow 1.3 flow match fields, as one declarative table.

A match on the wire is an ofp_match holding a list of OXM TLVs, padded to a
multiple of 8 bytes (the padding is not counted in `length`):

     0               1               2               3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-------------------------------+-------------------------------+
    |      type (OFPMT_OXM = 1)     |  length (4 + TLVs, unpadded)  |
    +-------------------------------+-------------------------------+
    |  OXM TLVs ...                 |  zero padding to 8 bytes      |
    +---------------------------------------------------------------+

and each TLV starts with a 32-bit header:

     0               1               2               3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-------------------------------+-------------+-+---------------+
    |  oxm_class (0x8000 = basic)   |  oxm_field  |M|  oxm_length   |
    +-------------------------------+-------------+-+---------------+
    |  value (width bytes)  [ mask (width bytes), if M (hasmask) ]  |
    +---------------------------------------------------------------+

oxm_length counts the value and mask bytes.  The OPENFLOW_BASIC class is
understood, and of Nicira's NXM_1 class the two tunnel address fields that
ovs-ofctl sends under OpenFlow 1.3 (NXM_NX_TUN_IPV4_SRC/DST, here
tun_ipv4_src/tun_ipv4_dst as Ryu names them); other classes and fields are
rejected as unknown fields.

The Python form of a match (the "user" form, shared by the whole agent) is a
dict: field name -> (value, mask), both ints, mask None for an exact match.
MACs and addresses are ints too; `OXM_BY_NAME[name].width` says how many
bytes to convert them to.  Decoding normalises an all-ones mask to None and
drops mask bits beyond the field's width in bits (vlan_vid is 13 bits in 2
bytes: OFPVID_PRESENT | vid).

VLAN matches, as OF1.3's table of VLAN match combinations has them: no
vlan_vid matches every frame; OFPVID_NONE exact, untagged frames only;
OFPVID_PRESENT/OFPVID_PRESENT, every tagged frame; OFPVID_PRESENT|vid
exact, that VID.  Any other mask compares bits as for any field: with
OFPVID_PRESENT in the mask it also says "tagged" or "untagged"; without it
only the VID bits count, an untagged frame's VID being 0 (as in OVS).

Checks, with the spec's errors (OFPET_BAD_MATCH):
- BAD_TYPE: ofp_match type is not OFPMT_OXM;  BAD_LEN: lengths do not add up;
- BAD_FIELD: unknown class or field;  DUP_FIELD: a field given twice;
- BAD_MASK: a mask on a field the spec makes exact-match only;
- BAD_VALUE: a value wider than the field (vlan_pcp 8), or a VLAN id
  without OFPVID_PRESENT where the mask demands "no tag" (an exact
  vlan_vid, or a mask with OFPVID_PRESENT);
- BAD_WILDCARDS: a value bit set where the mask is 0 (spec 1.3.5, 7.2.3.5;
  the ONF conformance suite and the reference switch agree);
- BAD_PREREQ: a prerequisite missing, masked or with another value (tcp_src
  needs ip_proto=6, which needs eth_type 0x0800 or 0x86dd).  The order of
  TLVs is not enforced; a dict has none.
"""

import struct
from collections import namedtuple

from mnovs.openflow.ofp import (
    OFPBMC_BAD_FIELD, OFPBMC_BAD_LEN, OFPBMC_BAD_MASK, OFPBMC_BAD_PREREQ, OFPBMC_BAD_TYPE,
    OFPBMC_BAD_VALUE, OFPBMC_BAD_WILDCARDS, OFPBMC_DUP_FIELD, OFPET_BAD_MATCH, OFPMT_OXM,
    OFPVID_PRESENT, OFPXMC_NXM_1, OFPXMC_OPENFLOW_BASIC, OFPError)

MATCH_HEADER = struct.Struct('!HH')             # type, length
assert MATCH_HEADER.size == 4
OXM_HEADER = struct.Struct('!I')                # class:16 field:7 hasmask:1 length:8
assert OXM_HEADER.size == 4

# One row per field.  width: bytes on the wire; bits: meaningful low bits;
# prereq: None, or (field, allowed values) that must be matched exactly.
OxmField = namedtuple('OxmField', 'name number width bits maskable settable prereq oxm_class',
                      defaults=(OFPXMC_OPENFLOW_BASIC,))

_IP_ANY = ('eth_type', (0x0800, 0x86dd))
_IPV4 = ('eth_type', (0x0800,))
_IPV6 = ('eth_type', (0x86dd,))
_ARP = ('eth_type', (0x0806,))
_MPLS = ('eth_type', (0x8847, 0x8848))
_VLAN = ('vlan_vid', (OFPVID_PRESENT,))         # special: "vlan_vid != NONE"

OXM_FIELDS = (
    #        name             nr  width bits mask  set   prerequisite
    OxmField('in_port',         0, 4, 32, False, False, None),
    OxmField('in_phy_port',     1, 4, 32, False, False, ('in_port', None)),
    OxmField('metadata',        2, 8, 64, True,  False, None),
    OxmField('eth_dst',         3, 6, 48, True,  True,  None),
    OxmField('eth_src',         4, 6, 48, True,  True,  None),
    OxmField('eth_type',        5, 2, 16, False, True,  None),
    OxmField('vlan_vid',        6, 2, 13, True,  True,  None),
    OxmField('vlan_pcp',        7, 1, 3,  False, True,  _VLAN),
    OxmField('ip_dscp',         8, 1, 6,  False, True,  _IP_ANY),
    OxmField('ip_ecn',          9, 1, 2,  False, True,  _IP_ANY),
    OxmField('ip_proto',       10, 1, 8,  False, True,  _IP_ANY),
    OxmField('ipv4_src',       11, 4, 32, True,  True,  _IPV4),
    OxmField('ipv4_dst',       12, 4, 32, True,  True,  _IPV4),
    OxmField('tcp_src',        13, 2, 16, False, True,  ('ip_proto', (6,))),
    OxmField('tcp_dst',        14, 2, 16, False, True,  ('ip_proto', (6,))),
    OxmField('udp_src',        15, 2, 16, False, True,  ('ip_proto', (17,))),
    OxmField('udp_dst',        16, 2, 16, False, True,  ('ip_proto', (17,))),
    OxmField('sctp_src',       17, 2, 16, False, True,  ('ip_proto', (132,))),
    OxmField('sctp_dst',       18, 2, 16, False, True,  ('ip_proto', (132,))),
    OxmField('icmpv4_type',    19, 1, 8,  False, True,  ('ip_proto', (1,))),
    OxmField('icmpv4_code',    20, 1, 8,  False, True,  ('ip_proto', (1,))),
    OxmField('arp_op',         21, 2, 16, False, True,  _ARP),
    OxmField('arp_spa',        22, 4, 32, True,  True,  _ARP),
    OxmField('arp_tpa',        23, 4, 32, True,  True,  _ARP),
    OxmField('arp_sha',        24, 6, 48, True,  True,  _ARP),
    OxmField('arp_tha',        25, 6, 48, True,  True,  _ARP),
    OxmField('ipv6_src',       26, 16, 128, True, True, _IPV6),
    OxmField('ipv6_dst',       27, 16, 128, True, True, _IPV6),
    OxmField('ipv6_flabel',    28, 4, 20, True,  True,  _IPV6),
    OxmField('icmpv6_type',    29, 1, 8,  False, True,  ('ip_proto', (58,))),
    OxmField('icmpv6_code',    30, 1, 8,  False, True,  ('ip_proto', (58,))),
    OxmField('ipv6_nd_target', 31, 16, 128, False, True, ('icmpv6_type', (135, 136))),
    OxmField('ipv6_nd_sll',    32, 6, 48, False, True,  ('icmpv6_type', (135,))),
    OxmField('ipv6_nd_tll',    33, 6, 48, False, True,  ('icmpv6_type', (136,))),
    OxmField('mpls_label',     34, 4, 20, False, True,  _MPLS),
    OxmField('mpls_tc',        35, 1, 3,  False, True,  _MPLS),
    OxmField('mpls_bos',       36, 1, 1,  False, True,  _MPLS),
    OxmField('pbb_isid',       37, 3, 24, True,  True,  ('eth_type', (0x88e7,))),
    OxmField('tunnel_id',      38, 8, 64, True,  True,  None),
    OxmField('ipv6_exthdr',    39, 2, 9,  True,  False, _IPV6),
    OxmField('tun_ipv4_src',   31, 4, 32, True,  True,  None, OFPXMC_NXM_1),
    OxmField('tun_ipv4_dst',   32, 4, 32, True,  True,  None, OFPXMC_NXM_1),
)

OXM_BY_NAME = {f.name: f for f in OXM_FIELDS}
_BY_CLASS_AND_NUMBER = {(f.oxm_class, f.number): f for f in OXM_FIELDS}
assert len(OXM_BY_NAME) == len(_BY_CLASS_AND_NUMBER) == len(OXM_FIELDS)


def oxm_header(field, hasmask=False):
    """The 32-bit OXM header of a field (an OxmField row)."""
    length = field.width * 2 if hasmask else field.width
    return field.oxm_class << 16 | field.number << 9 | hasmask << 8 | length


def oxm_field_of(header):
    """The OxmField row an OXM header names, or None (other class or unknown)."""
    return _BY_CLASS_AND_NUMBER.get((header >> 16, header >> 9 & 0x7f))


def _wire_order(field):
    return field.oxm_class != OFPXMC_OPENFLOW_BASIC, field.number


def encode_match(match):
    """Encode a match dict as an ofp_match (OXM), padded to 8 bytes.

    TLVs go out in field-number order, which puts every prerequisite first.
    """
    tlvs = []
    for field in sorted((OXM_BY_NAME[name] for name in match), key=_wire_order):
        value, mask = match[field.name]
        tlvs.append(OXM_HEADER.pack(oxm_header(field, mask is not None)))
        tlvs.append(value.to_bytes(field.width, 'big'))
        if mask is not None:
            tlvs.append(mask.to_bytes(field.width, 'big'))
    body = b''.join(tlvs)
    length = MATCH_HEADER.size + len(body)
    return MATCH_HEADER.pack(OFPMT_OXM, length) + body + bytes(-length % 8)


def decode_match(buf, offset, end):
    """Decode the ofp_match at buf[offset:end]; check it with validate_match.

    Args:
        buf: bytes or memoryview of a whole message.
        offset: where the ofp_match starts.
        end: where the enclosing structure ends (the match may not pass it).
    Returns:
        (match dict, offset just past the match and its padding).
    Raises:
        OFPError(OFPET_BAD_MATCH, ...) as listed in the module docstring.
    """
    if end - offset < MATCH_HEADER.size:
        raise OFPError(OFPET_BAD_MATCH, OFPBMC_BAD_LEN)
    match_type, length = MATCH_HEADER.unpack_from(buf, offset)
    if match_type != OFPMT_OXM:
        raise OFPError(OFPET_BAD_MATCH, OFPBMC_BAD_TYPE)
    padded = (length + 7) & ~7
    if length < MATCH_HEADER.size or offset + padded > end:
        raise OFPError(OFPET_BAD_MATCH, OFPBMC_BAD_LEN)
    match = {}
    pos, tlv_end = offset + MATCH_HEADER.size, offset + length
    while pos < tlv_end:
        if tlv_end - pos < OXM_HEADER.size:
            raise OFPError(OFPET_BAD_MATCH, OFPBMC_BAD_LEN)
        header, = OXM_HEADER.unpack_from(buf, pos)
        oxm_len = header & 0xff
        hasmask = header >> 8 & 1
        pos += OXM_HEADER.size
        if pos + oxm_len > tlv_end:
            raise OFPError(OFPET_BAD_MATCH, OFPBMC_BAD_LEN)
        field = oxm_field_of(header)
        if field is None:
            raise OFPError(OFPET_BAD_MATCH, OFPBMC_BAD_FIELD)
        if oxm_len != field.width << hasmask:
            raise OFPError(OFPET_BAD_MATCH, OFPBMC_BAD_LEN)
        if field.name in match:
            raise OFPError(OFPET_BAD_MATCH, OFPBMC_DUP_FIELD)
        value = int.from_bytes(buf[pos:pos + field.width], 'big')
        mask = None
        if hasmask:
            mask = int.from_bytes(buf[pos + field.width:pos + oxm_len], 'big')
            mask &= (1 << field.bits) - 1
            if mask == (1 << field.bits) - 1 and field.maskable:
                mask = None
        match[field.name] = (value, mask)
        pos += oxm_len
    validate_match(match)
    return match, offset + padded


def check_field_value(field, value, mask):
    """Raise OFPError(BAD_MATCH, ...) unless value/mask suit the field (no prereqs)."""
    if mask is not None and not field.maskable:
        raise OFPError(OFPET_BAD_MATCH, OFPBMC_BAD_MASK)
    if value >> field.bits:
        raise OFPError(OFPET_BAD_MATCH, OFPBMC_BAD_VALUE)
    if mask is not None and (value & ~mask or mask >> field.bits):
        raise OFPError(OFPET_BAD_MATCH, OFPBMC_BAD_WILDCARDS)
    if field.name == 'vlan_vid' and value & 0x0fff and not value & OFPVID_PRESENT \
            and (mask is None or mask & OFPVID_PRESENT):
        raise OFPError(OFPET_BAD_MATCH, OFPBMC_BAD_VALUE)          # a VLAN id, but "no tag"


def prerequisites_met(match, name):
    """True if `match` satisfies the prerequisite of field `name`.

    Also what a set_field action needs of the rule's match (or the agent
    answers OFPBAC_MATCH_INCONSISTENT).
    """
    prereq = OXM_BY_NAME[name].prereq
    if prereq is None:
        return True
    need, values = prereq
    entry = match.get(need)
    if entry is None:
        return False
    value, mask = entry
    if need == 'vlan_vid':                          # any tagged frame will do
        return bool(value & OFPVID_PRESENT and (mask is None or mask & OFPVID_PRESENT))
    return mask is None and (values is None or value in values)


def validate_match(match):
    """Check a match dict against the OXM table; raise OFPError if it is bad.

    Raises:
        OFPError(OFPET_BAD_MATCH, BAD_FIELD | BAD_MASK | BAD_VALUE |
        BAD_WILDCARDS | BAD_PREREQ).
    """
    for name, (value, mask) in match.items():
        field = OXM_BY_NAME.get(name)
        if field is None:
            raise OFPError(OFPET_BAD_MATCH, OFPBMC_BAD_FIELD)
        check_field_value(field, value, mask)
    for name in match:
        if not prerequisites_met(match, name):
            raise OFPError(OFPET_BAD_MATCH, OFPBMC_BAD_PREREQ)
