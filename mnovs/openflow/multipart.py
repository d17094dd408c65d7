"""OpenFlow 1.3 multipart bodies: one table of request and reply codecs.

codec.py frames multipart messages; this module codes every request and
reply body (messages.py has Port, Bucket, MeterBand, which bodies share with
messages).  TABLE_FEATURES requests with properties are decoded in full (an
unknown property type is OFPTFFC_BAD_TYPE, an unknown OXM id BAD_ARGUMENT);
whether to accept them is the agent's call.  OFPMPF_REQ_MORE is passed up
as received: the agent joins the parts of a request.

A multipart message is the header, then

    +-------------------------------+-------------------------------+
    |      type (OFPMP_*)           |  flags (OFPMPF_REQ/REPLY_MORE)|
    +-------------------------------+-------------------------------+
    |                            pad (4)                            |
    +---------------------------------------------------------------+
    |  body: one struct, or an array of entries (see BODIES below)  |

The Python form of a body, per type (BODIES): None for an empty request body;
one dataclass (Desc, AggregateStats, GroupFeatures, MeterFeatures, and the
request selectors FlowStatsRequest, PortStatsRequest, ...); or a sequence of
entries (flow stats, port stats, port descriptions, table features, ...).

A reply longer than a message can hold (65535 bytes) is cut between entries
into several messages, all but the last flagged OFPMPF_REPLY_MORE:
`encode_body` returns the list of body chunks and codec.py frames each one.

Body dataclasses follow messages.py's rule: struct fields first, in wire
order, then the variable part.  Entries that open with their own length
(flow stats, group stats and descriptions, meter configs, table features)
have that length computed on encode and checked on decode, never stored.
"""

import struct
from collections import namedtuple
from dataclasses import dataclass, field

from mnovs.openflow.messages import (
    PORT, Port, decode_bands, decode_buckets, encode_bands, encode_buckets, pack_struct,
    unpack_struct)
from mnovs.openflow.ofp import (
    OFPBRC_BAD_EXPERIMENTER, OFPBRC_BAD_LEN, OFPBRC_BAD_MULTIPART, OFPET_BAD_REQUEST,
    OFPET_TABLE_FEATURES_FAILED, OFPG_ALL, OFPG_ANY, OFPMP_AGGREGATE, OFPMP_DESC,
    OFPMP_EXPERIMENTER, OFPMP_FLOW, OFPMP_GROUP, OFPMP_GROUP_DESC, OFPMP_GROUP_FEATURES,
    OFPMP_METER, OFPMP_METER_CONFIG, OFPMP_METER_FEATURES, OFPMP_PORT_DESC,
    OFPMP_PORT_STATS, OFPMP_QUEUE, OFPMP_TABLE, OFPMP_TABLE_FEATURES, OFPM_ALL, OFPP_ANY,
    OFPQ_ALL, OFPTFFC_BAD_ARGUMENT, OFPTFFC_BAD_LEN, OFPTFFC_BAD_TYPE,
    OFPTFPT_APPLY_ACTIONS, OFPTFPT_APPLY_ACTIONS_MISS, OFPTFPT_APPLY_SETFIELD,
    OFPTFPT_APPLY_SETFIELD_MISS, OFPTFPT_EXPERIMENTER, OFPTFPT_EXPERIMENTER_MISS,
    OFPTFPT_INSTRUCTIONS, OFPTFPT_INSTRUCTIONS_MISS, OFPTFPT_MATCH, OFPTFPT_NEXT_TABLES,
    OFPTFPT_NEXT_TABLES_MISS, OFPTFPT_WILDCARDS, OFPTFPT_WRITE_ACTIONS,
    OFPTFPT_WRITE_ACTIONS_MISS, OFPTFPT_WRITE_SETFIELD, OFPTFPT_WRITE_SETFIELD_MISS,
    OFPTT_ALL, OFP_HEADER_SIZE, OFP_MAX_MESSAGE_LEN, OFPError)
from mnovs.openflow.ofp_actions import decode_instructions, encode_instructions
from mnovs.openflow.oxm import OXM_BY_NAME, decode_match, encode_match, oxm_field_of, oxm_header

MULTIPART_HEADER = struct.Struct('!HH4x')       # type, flags
assert MULTIPART_HEADER.size == 8
MAX_BODY = OFP_MAX_MESSAGE_LEN - OFP_HEADER_SIZE - MULTIPART_HEADER.size


# ---- request bodies ---------------------------------------------------------

@dataclass
class FlowStatsRequest:
    """ofp_flow_stats_request, also the body of an AGGREGATE request."""
    table_id: int = OFPTT_ALL
    out_port: int = OFPP_ANY
    out_group: int = OFPG_ANY
    cookie: int = 0
    cookie_mask: int = 0
    match: dict = field(default_factory=dict)


@dataclass
class PortStatsRequest:
    port_no: int = OFPP_ANY


@dataclass
class QueueStatsRequest:
    port_no: int = OFPP_ANY
    queue_id: int = OFPQ_ALL


@dataclass
class GroupStatsRequest:
    group_id: int = OFPG_ALL


@dataclass
class MeterMultipartRequest:
    """ofp_meter_multipart_request: the body of METER and METER_CONFIG requests."""
    meter_id: int = OFPM_ALL


FLOW_STATS_REQUEST = struct.Struct('!B3xII4xQQ')
PORT_STATS_REQUEST = struct.Struct('!I4x')
QUEUE_STATS_REQUEST = struct.Struct('!II')
GROUP_STATS_REQUEST = struct.Struct('!I4x')
METER_REQUEST = struct.Struct('!I4x')
assert FLOW_STATS_REQUEST.size == 32
assert PORT_STATS_REQUEST.size == QUEUE_STATS_REQUEST.size == GROUP_STATS_REQUEST.size == 8
assert METER_REQUEST.size == 8

# ---- reply bodies -----------------------------------------------------------


@dataclass
class Desc:
    mfr_desc: str = ''
    hw_desc: str = ''
    sw_desc: str = ''
    serial_num: str = ''
    dp_desc: str = ''


@dataclass
class FlowStats:
    table_id: int
    duration_sec: int
    duration_nsec: int
    priority: int
    idle_timeout: int
    hard_timeout: int
    flags: int
    cookie: int
    packet_count: int
    byte_count: int
    match: dict = field(default_factory=dict)
    instructions: tuple = ()


@dataclass
class AggregateStats:
    packet_count: int = 0
    byte_count: int = 0
    flow_count: int = 0


@dataclass
class TableStats:
    table_id: int
    active_count: int = 0
    lookup_count: int = 0
    matched_count: int = 0


@dataclass
class PortStats:
    port_no: int
    rx_packets: int = 0
    tx_packets: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_dropped: int = 0
    tx_dropped: int = 0
    rx_errors: int = 0
    tx_errors: int = 0
    rx_frame_err: int = 0
    rx_over_err: int = 0
    rx_crc_err: int = 0
    collisions: int = 0
    duration_sec: int = 0
    duration_nsec: int = 0


@dataclass
class QueueStats:
    port_no: int
    queue_id: int
    tx_bytes: int = 0
    tx_packets: int = 0
    tx_errors: int = 0
    duration_sec: int = 0
    duration_nsec: int = 0


@dataclass
class GroupStats:
    """ofp_group_stats; bucket_stats is a tuple of (packet_count, byte_count)."""
    group_id: int
    ref_count: int = 0
    packet_count: int = 0
    byte_count: int = 0
    duration_sec: int = 0
    duration_nsec: int = 0
    bucket_stats: tuple = ()


@dataclass
class GroupDesc:
    type: int
    group_id: int
    buckets: tuple = ()


@dataclass
class GroupFeatures:
    """ofp_group_features; max_groups and actions have one entry per OFPGT_*."""
    types: int = 0
    capabilities: int = 0
    max_groups: tuple = (0, 0, 0, 0)
    actions: tuple = (0, 0, 0, 0)


@dataclass
class MeterStats:
    """ofp_meter_stats; band_stats is a tuple of (packet_count, byte_count)."""
    meter_id: int
    flow_count: int = 0
    packet_in_count: int = 0
    byte_in_count: int = 0
    duration_sec: int = 0
    duration_nsec: int = 0
    band_stats: tuple = ()


@dataclass
class MeterConfig:
    flags: int
    meter_id: int
    bands: tuple = ()


@dataclass
class MeterFeatures:
    max_meter: int = 0
    band_types: int = 0
    capabilities: int = 0
    max_bands: int = 0
    max_color: int = 0


@dataclass
class TableFeatures:
    """ofp_table_features (request and reply).

    properties: a tuple of (OFPTFPT_* type, value).  The value is a tuple of
    OFPIT_* numbers (INSTRUCTIONS*), of table ids (NEXT_TABLES*), of OFPAT_*
    numbers (*_ACTIONS*), of OXM field names (MATCH, WILDCARDS, *_SETFIELD*),
    or the raw bytes after the property header (EXPERIMENTER*).
    """
    table_id: int
    name: str = ''
    metadata_match: int = 0
    metadata_write: int = 0
    config: int = 0
    max_entries: int = 0
    properties: tuple = ()


# Entries that start with their own 16-bit length: the structs below cover
# what follows that length (so they line up with the dataclass fields).
ENTRY_LENGTH = struct.Struct('!H')
DESC = struct.Struct('!256s256s256s32s256s')
FLOW_STATS = struct.Struct('!BxIIHHHH4xQQQ')    # after length
AGGREGATE_STATS = struct.Struct('!QQI4x')
TABLE_STATS = struct.Struct('!B3xIQQ')
PORT_STATS = struct.Struct('!I4x12QII')
QUEUE_STATS = struct.Struct('!IIQQQII')
GROUP_STATS = struct.Struct('!2xII4xQQII')      # after length
GROUP_DESC = struct.Struct('!BxI')              # after length
GROUP_FEATURES = struct.Struct('!II4I4I')
METER_STATS = struct.Struct('!IH6xIQQII')       # meter_id, len, ...: custom
METER_CONFIG = struct.Struct('!HI')             # after length
METER_FEATURES = struct.Struct('!IIIBB2x')
TABLE_FEATURES = struct.Struct('!B5x32sQQII')   # after length
COUNTER_PAIR = struct.Struct('!QQ')             # bucket counter, band stats
TF_PROP = struct.Struct('!HH')                  # table feature property: type, length
ID_HEADER = struct.Struct('!HH')                # instruction / action id: type, len
assert (DESC.size, FLOW_STATS.size + 2, AGGREGATE_STATS.size) == (1056, 48, 24)
assert TABLE_STATS.size == 24
assert (PORT_STATS.size, QUEUE_STATS.size, GROUP_STATS.size + 2) == (112, 40, 40)
assert (GROUP_DESC.size + 2, GROUP_FEATURES.size, METER_STATS.size) == (8, 40, 40)
assert (METER_CONFIG.size + 2, METER_FEATURES.size, TABLE_FEATURES.size + 2) == (8, 16, 64)
assert COUNTER_PAIR.size == 16


def _bad_len():
    return OFPError(OFPET_BAD_REQUEST, OFPBRC_BAD_LEN)


def _entry_length(buf, pos, end, minimum, bad=(OFPET_BAD_REQUEST, OFPBRC_BAD_LEN)):
    """The length field of the entry at pos, checked against minimum and end.

    bad: the (error type, code) to raise if it does not fit.
    """
    if end - pos < minimum:
        raise OFPError(*bad)
    length, = ENTRY_LENGTH.unpack_from(buf, pos)
    if length < minimum or length % 8 or pos + length > end:
        raise OFPError(*bad)
    return length


# ---- entry codecs: encode(obj) -> bytes, decode(buf, pos, end) -> (obj, pos) --

def _fixed(layout, cls):
    """The codec pair of an entry that is one flat struct."""
    def encode(obj):
        return pack_struct(layout, obj)

    def decode(buf, pos, end):
        if end - pos < layout.size:
            raise _bad_len()
        return unpack_struct(layout, cls, buf, pos), pos + layout.size
    return encode, decode


def _encode_flow_stats_request(req):
    return pack_struct(FLOW_STATS_REQUEST, req) + encode_match(req.match)


def _decode_flow_stats_request(buf, pos, end):
    if end - pos < FLOW_STATS_REQUEST.size:
        raise _bad_len()
    match, after = decode_match(buf, pos + FLOW_STATS_REQUEST.size, end)
    return unpack_struct(FLOW_STATS_REQUEST, FlowStatsRequest, buf, pos, match=match), after


def _encode_flow_stats(stats):
    tail = encode_match(stats.match) + encode_instructions(stats.instructions)
    return (ENTRY_LENGTH.pack(2 + FLOW_STATS.size + len(tail)) + pack_struct(FLOW_STATS, stats)
            + tail)


def _decode_flow_stats(buf, pos, end):
    length = _entry_length(buf, pos, end, 2 + FLOW_STATS.size + 8)
    match, after = decode_match(buf, pos + 2 + FLOW_STATS.size, pos + length)
    instructions = decode_instructions(buf, after, pos + length)
    return unpack_struct(FLOW_STATS, FlowStats, buf, pos + 2, match=match,
                         instructions=instructions), pos + length


def _encode_group_stats(stats):
    counters = b''.join(COUNTER_PAIR.pack(*pair) for pair in stats.bucket_stats)
    return (ENTRY_LENGTH.pack(2 + GROUP_STATS.size + len(counters))
            + pack_struct(GROUP_STATS, stats) + counters)


def _counter_pairs(buf, pos, end):
    """The (packets, bytes) pairs filling buf[pos:end] exactly."""
    if (end - pos) % COUNTER_PAIR.size:
        raise _bad_len()
    return tuple(COUNTER_PAIR.unpack_from(buf, at) for at in range(pos, end, COUNTER_PAIR.size))


def _decode_group_stats(buf, pos, end):
    length = _entry_length(buf, pos, end, 2 + GROUP_STATS.size)
    pairs = _counter_pairs(buf, pos + 2 + GROUP_STATS.size, pos + length)
    return unpack_struct(GROUP_STATS, GroupStats, buf, pos + 2, bucket_stats=pairs), pos + length


def _encode_group_desc(desc):
    buckets = encode_buckets(desc.buckets)
    return (ENTRY_LENGTH.pack(2 + GROUP_DESC.size + len(buckets)) + pack_struct(GROUP_DESC, desc)
            + buckets)


def _decode_group_desc(buf, pos, end):
    length = _entry_length(buf, pos, end, 2 + GROUP_DESC.size)
    buckets = decode_buckets(buf, pos + 2 + GROUP_DESC.size, pos + length)
    return unpack_struct(GROUP_DESC, GroupDesc, buf, pos + 2, buckets=buckets), pos + length


def _encode_group_features(features):
    return GROUP_FEATURES.pack(features.types, features.capabilities,
                               *features.max_groups, *features.actions)


def _decode_group_features(buf, pos, end):
    if end - pos < GROUP_FEATURES.size:
        raise _bad_len()
    values = GROUP_FEATURES.unpack_from(buf, pos)
    features = GroupFeatures(values[0], values[1], values[2:6], values[6:10])
    return features, pos + GROUP_FEATURES.size


def _encode_meter_stats(stats):
    bands = b''.join(COUNTER_PAIR.pack(*pair) for pair in stats.band_stats)
    return METER_STATS.pack(stats.meter_id, METER_STATS.size + len(bands), stats.flow_count,
                            stats.packet_in_count, stats.byte_in_count, stats.duration_sec,
                            stats.duration_nsec) + bands


def _decode_meter_stats(buf, pos, end):
    if end - pos < METER_STATS.size:
        raise _bad_len()
    meter_id, length, *counters = METER_STATS.unpack_from(buf, pos)
    if length < METER_STATS.size or length % 8 or pos + length > end:
        raise _bad_len()
    pairs = _counter_pairs(buf, pos + METER_STATS.size, pos + length)
    return MeterStats(meter_id, *counters, band_stats=pairs), pos + length


def _encode_meter_config(config):
    bands = encode_bands(config.bands)
    return (ENTRY_LENGTH.pack(2 + METER_CONFIG.size + len(bands))
            + pack_struct(METER_CONFIG, config) + bands)


def _decode_meter_config(buf, pos, end):
    length = _entry_length(buf, pos, end, 2 + METER_CONFIG.size)
    bands = decode_bands(buf, pos + 2 + METER_CONFIG.size, pos + length)
    return unpack_struct(METER_CONFIG, MeterConfig, buf, pos + 2, bands=bands), pos + length


# ---- table features ---------------------------------------------------------

_ID_PROPS = frozenset((OFPTFPT_INSTRUCTIONS, OFPTFPT_INSTRUCTIONS_MISS,
                       OFPTFPT_WRITE_ACTIONS, OFPTFPT_WRITE_ACTIONS_MISS,
                       OFPTFPT_APPLY_ACTIONS, OFPTFPT_APPLY_ACTIONS_MISS))
_TABLE_PROPS = frozenset((OFPTFPT_NEXT_TABLES, OFPTFPT_NEXT_TABLES_MISS))
_OXM_PROPS = frozenset((OFPTFPT_MATCH, OFPTFPT_WILDCARDS,
                        OFPTFPT_WRITE_SETFIELD, OFPTFPT_WRITE_SETFIELD_MISS,
                        OFPTFPT_APPLY_SETFIELD, OFPTFPT_APPLY_SETFIELD_MISS))
_RAW_PROPS = frozenset((OFPTFPT_EXPERIMENTER, OFPTFPT_EXPERIMENTER_MISS))


def _tf_error(code):
    return OFPError(OFPET_TABLE_FEATURES_FAILED, code)


def _encode_tf_prop(prop_type, value):
    if prop_type in _ID_PROPS:
        payload = b''.join(ID_HEADER.pack(number, ID_HEADER.size) for number in value)
    elif prop_type in _TABLE_PROPS:
        payload = bytes(value)
    elif prop_type in _OXM_PROPS:
        # A MATCH property says, per field, whether the table takes a mask.
        fields = [OXM_BY_NAME[name] for name in value]
        payload = b''.join(
            oxm_header(f, prop_type == OFPTFPT_MATCH and f.maskable).to_bytes(4, 'big')
            for f in fields)
    else:
        payload = bytes(value)
    length = TF_PROP.size + len(payload)
    return TF_PROP.pack(prop_type, length) + payload + bytes(-length % 8)


def _decode_tf_prop_value(prop_type, buf, pos, end):
    if prop_type in _ID_PROPS:
        numbers = []
        while pos < end:
            if end - pos < ID_HEADER.size:
                raise _tf_error(OFPTFFC_BAD_LEN)
            number, length = ID_HEADER.unpack_from(buf, pos)
            if length < ID_HEADER.size or pos + length > end:
                raise _tf_error(OFPTFFC_BAD_LEN)
            numbers.append(number)
            pos += length
        return tuple(numbers)
    if prop_type in _TABLE_PROPS:
        return tuple(buf[pos:end])
    if prop_type in _OXM_PROPS:
        if (end - pos) % 4:
            raise _tf_error(OFPTFFC_BAD_LEN)
        names = []
        for at in range(pos, end, 4):
            oxm = oxm_field_of(int.from_bytes(buf[at:at + 4], 'big'))
            if oxm is None:
                raise _tf_error(OFPTFFC_BAD_ARGUMENT)
            names.append(oxm.name)
        return tuple(names)
    if prop_type in _RAW_PROPS:
        return bytes(buf[pos:end])
    raise _tf_error(OFPTFFC_BAD_TYPE)


def _encode_table_features(features):
    props = b''.join(_encode_tf_prop(t, v) for t, v in features.properties)
    return (ENTRY_LENGTH.pack(2 + TABLE_FEATURES.size + len(props))
            + pack_struct(TABLE_FEATURES, features) + props)


def _decode_table_features(buf, pos, end):
    length = _entry_length(buf, pos, end, 2 + TABLE_FEATURES.size,
                           (OFPET_TABLE_FEATURES_FAILED, OFPTFFC_BAD_LEN))
    props = []
    at, stop = pos + 2 + TABLE_FEATURES.size, pos + length
    while at < stop:
        if stop - at < TF_PROP.size:
            raise _tf_error(OFPTFFC_BAD_LEN)
        prop_type, prop_len = TF_PROP.unpack_from(buf, at)
        if prop_len < TF_PROP.size or at + ((prop_len + 7) & ~7) > stop:
            raise _tf_error(OFPTFFC_BAD_LEN)
        props.append((prop_type, _decode_tf_prop_value(prop_type, buf, at + TF_PROP.size,
                                                       at + prop_len)))
        at += (prop_len + 7) & ~7
    return unpack_struct(TABLE_FEATURES, TableFeatures, buf, pos + 2,
                         properties=tuple(props)), pos + length


# ---- the body table ---------------------------------------------------------

BodyCodec = namedtuple('BodyCodec', 'many encode decode')


def _one(encode, decode):
    return BodyCodec(False, encode, decode)


def _many(encode, decode):
    return BodyCodec(True, encode, decode)


# OFPMP_* -> (request body codec, reply body codec); None = empty body.
BODIES = {
    OFPMP_DESC: (None, _one(*_fixed(DESC, Desc))),
    OFPMP_FLOW: (_one(_encode_flow_stats_request, _decode_flow_stats_request),
                 _many(_encode_flow_stats, _decode_flow_stats)),
    OFPMP_AGGREGATE: (_one(_encode_flow_stats_request, _decode_flow_stats_request),
                      _one(*_fixed(AGGREGATE_STATS, AggregateStats))),
    OFPMP_TABLE: (None, _many(*_fixed(TABLE_STATS, TableStats))),
    OFPMP_PORT_STATS: (_one(*_fixed(PORT_STATS_REQUEST, PortStatsRequest)),
                       _many(*_fixed(PORT_STATS, PortStats))),
    OFPMP_QUEUE: (_one(*_fixed(QUEUE_STATS_REQUEST, QueueStatsRequest)),
                  _many(*_fixed(QUEUE_STATS, QueueStats))),
    OFPMP_GROUP: (_one(*_fixed(GROUP_STATS_REQUEST, GroupStatsRequest)),
                  _many(_encode_group_stats, _decode_group_stats)),
    OFPMP_GROUP_DESC: (None, _many(_encode_group_desc, _decode_group_desc)),
    OFPMP_GROUP_FEATURES: (None, _one(_encode_group_features, _decode_group_features)),
    OFPMP_METER: (_one(*_fixed(METER_REQUEST, MeterMultipartRequest)),
                  _many(_encode_meter_stats, _decode_meter_stats)),
    OFPMP_METER_CONFIG: (_one(*_fixed(METER_REQUEST, MeterMultipartRequest)),
                         _many(_encode_meter_config, _decode_meter_config)),
    OFPMP_METER_FEATURES: (None, _one(*_fixed(METER_FEATURES, MeterFeatures))),
    OFPMP_TABLE_FEATURES: (_many(_encode_table_features, _decode_table_features),
                           _many(_encode_table_features, _decode_table_features)),
    OFPMP_PORT_DESC: (None, _many(*_fixed(PORT, Port))),
}


def _body_codec(mp_type, is_reply):
    codecs = BODIES.get(mp_type)
    if codecs is None:
        if mp_type == OFPMP_EXPERIMENTER:
            raise OFPError(OFPET_BAD_REQUEST, OFPBRC_BAD_EXPERIMENTER)
        raise OFPError(OFPET_BAD_REQUEST, OFPBRC_BAD_MULTIPART)
    return codecs[is_reply]


def decode_body(mp_type, is_reply, buf, pos, end):
    """Decode the body of a multipart request or reply in buf[pos:end].

    Returns:
        None, one body dataclass, or a tuple of entries (see BODIES).
    Raises:
        OFPError: BAD_MULTIPART for an unknown type, BAD_EXPERIMENTER for
        OFPMP_EXPERIMENTER, BAD_LEN, or the errors of matches, actions and
        table features inside.
    """
    codec = _body_codec(mp_type, is_reply)
    if codec is None:
        if pos != end:
            raise _bad_len()
        return None
    if codec.many:
        entries = []
        while pos < end:
            entry, pos = codec.decode(buf, pos, end)
            entries.append(entry)
        return tuple(entries)
    body, pos = codec.decode(buf, pos, end)
    if pos != end:
        raise _bad_len()
    return body


def encode_body(mp_type, is_reply, body):
    """Encode a multipart body into chunks that each fit in one message.

    Returns:
        A list of bytes (at least one); each chunk is at most MAX_BODY long
        and holds whole entries.  Raises ValueError if one entry alone is
        too big for a message.
    """
    codec = _body_codec(mp_type, is_reply)
    if codec is None:
        return [b'']
    if not codec.many:
        return [codec.encode(body)]
    chunks, current, size = [], [], 0
    for entry in body:
        data = codec.encode(entry)
        if len(data) > MAX_BODY:
            raise ValueError(f'multipart entry of {len(data)} bytes does not fit a message')
        if size + len(data) > MAX_BODY:
            chunks.append(b''.join(current))
            current, size = [], 0
        current.append(data)
        size += len(data)
    chunks.append(b''.join(current))
    return chunks
