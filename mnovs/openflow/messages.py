"""OpenFlow 1.3 messages as dataclasses, and the structs they share.

Every message type has a dataclass, named after its spec struct
(ofp_flow_mod -> FlowMod), with the spec's field names and `xid` last; codec.py
codes them and re-exports them (`from mnovs.openflow.codec import FlowMod`).
Defaults are the spec's usual values (OFP_NO_BUFFER, OFPP_ANY, priority
0x8000, ...), so `FlowMod(match=..., instructions=...)` is a plain add.

Also here, because messages and multipart bodies (multipart.py) share them:

- `pack_struct` / `unpack_struct` map a struct.Struct onto a dataclass field
  by field.  The dataclass lists the struct's fields first, in wire order
  (pad bytes are not fields), then any variable part (match, actions,
  buckets...), which the caller passes to unpack_struct by keyword.  A str
  field is a NUL-padded char array on the wire (port names, descriptions).
- ofp_port (PORT_STATUS, PORT_DESC), ofp_bucket (GROUP_MOD, GROUP_DESC) and
  the meter bands (METER_MOD, METER_CONFIG), with their codecs:

    ofp_bucket                              ofp_meter_band_drop / _dscp_remark
    +--------+--------+-----------------+   +--------+--------+-----------------+
    | len    | weight | watch_port      |   | type   | len=16 | rate            |
    +--------+--------+-----------------+   +--------+--------+-----------------+
    | watch_group     | pad (4)         |   | burst_size      | prec|  pad (3)  |
    +-----------------+-----------------+   +-----------------+-----------------+
    | actions ... (len - 16 bytes)      |   (prec_level: DSCP_REMARK only)

  Bucket errors are OFPGMFC_BAD_BUCKET; a band of unknown or experimenter
  type is OFPMMFC_BAD_BAND, one with a wrong length OFPBRC_BAD_LEN.
"""

import functools
import struct
from dataclasses import dataclass, field, fields

from mnovs.openflow.ofp import (
    OFPBRC_BAD_LEN, OFPET_BAD_REQUEST, OFPET_GROUP_MOD_FAILED, OFPET_METER_MOD_FAILED,
    OFPFC_ADD, OFPGC_ADD, OFPGMFC_BAD_BUCKET, OFPGT_ALL, OFPG_ANY, OFPMBT_DROP,
    OFPMBT_DSCP_REMARK, OFPMC_ADD, OFPMF_KBPS, OFPMMFC_BAD_BAND, OFPP_ANY, OFPP_CONTROLLER,
    OFPR_NO_MATCH, OFP_DEFAULT_MISS_SEND_LEN, OFP_DEFAULT_PRIORITY, OFP_NO_BUFFER,
    OFP_VERSION, OFPError)
from mnovs.openflow.ofp_actions import decode_actions, encode_actions


# ---- flat structs <-> dataclasses ------------------------------------------

@functools.cache
def _layout_fields(cls, layout):
    """(names, str-field names) of the dataclass fields the struct covers."""
    count = len(layout.unpack(bytes(layout.size)))
    covered = fields(cls)[:count]
    return tuple(f.name for f in covered), frozenset(f.name for f in covered if f.type is str)


def pack_struct(layout, obj):
    """Pack the leading fields of dataclass `obj` with `layout`."""
    names, strings = _layout_fields(type(obj), layout)
    return layout.pack(*(getattr(obj, n).encode() if n in strings else getattr(obj, n)
                         for n in names))


def unpack_struct(layout, cls, buf, pos, **rest):
    """Build `cls` from the struct at buf[pos]; `rest` fills the variable fields."""
    names, strings = _layout_fields(cls, layout)
    values = dict(zip(names, layout.unpack_from(buf, pos)))
    for name in strings:
        values[name] = values[name].split(b'\0', 1)[0].decode('utf-8', 'replace')
    return cls(**values, **rest)


# ---- structures shared by messages and multipart bodies ---------------------

@dataclass
class Port:
    """ofp_port: a port description (PORT_STATUS, PORT_DESC)."""
    port_no: int
    hw_addr: bytes
    name: str
    config: int = 0
    state: int = 0
    curr: int = 0
    advertised: int = 0
    supported: int = 0
    peer: int = 0
    curr_speed: int = 0
    max_speed: int = 0


@dataclass
class Bucket:
    """ofp_bucket: one action list of a group."""
    weight: int = 0
    watch_port: int = OFPP_ANY
    watch_group: int = OFPG_ANY
    actions: tuple = ()


@dataclass
class MeterBand:
    """ofp_meter_band_drop / _dscp_remark (prec_level used by DSCP_REMARK only)."""
    type: int
    rate: int
    burst_size: int = 0
    prec_level: int = 0


PORT = struct.Struct('!I4x6s2x16sIIIIIIII')
BUCKET = struct.Struct('!HHII4x')               # len, weight, watch_port, watch_group
METER_BAND = struct.Struct('!HHIIB3x')          # type, len, rate, burst_size, prec_level
assert (PORT.size, BUCKET.size, METER_BAND.size) == (64, 16, 16)


def encode_buckets(buckets):
    out = []
    for bucket in buckets:
        actions = encode_actions(bucket.actions)
        out.append(BUCKET.pack(BUCKET.size + len(actions), bucket.weight,
                               bucket.watch_port, bucket.watch_group) + actions)
    return b''.join(out)


def decode_buckets(buf, pos, end):
    """Buckets in buf[pos:end]; a bad bucket length is OFPGMFC_BAD_BUCKET."""
    buckets = []
    while pos < end:
        if end - pos < BUCKET.size:
            raise OFPError(OFPET_GROUP_MOD_FAILED, OFPGMFC_BAD_BUCKET)
        length, weight, watch_port, watch_group = BUCKET.unpack_from(buf, pos)
        if length < BUCKET.size or length % 8 or pos + length > end:
            raise OFPError(OFPET_GROUP_MOD_FAILED, OFPGMFC_BAD_BUCKET)
        actions = decode_actions(buf, pos + BUCKET.size, pos + length)
        buckets.append(Bucket(weight, watch_port, watch_group, actions))
        pos += length
    return tuple(buckets)


def encode_bands(bands):
    return b''.join(METER_BAND.pack(b.type, METER_BAND.size, b.rate, b.burst_size,
                                    b.prec_level if b.type == OFPMBT_DSCP_REMARK else 0)
                    for b in bands)


def decode_bands(buf, pos, end):
    """Meter bands in buf[pos:end]; experimenter or unknown bands are BAD_BAND."""
    bands = []
    while pos < end:
        if end - pos < METER_BAND.size:
            raise OFPError(OFPET_BAD_REQUEST, OFPBRC_BAD_LEN)
        band_type, length, rate, burst, prec = METER_BAND.unpack_from(buf, pos)
        if band_type not in (OFPMBT_DROP, OFPMBT_DSCP_REMARK):
            raise OFPError(OFPET_METER_MOD_FAILED, OFPMMFC_BAD_BAND)
        if length != METER_BAND.size:
            raise OFPError(OFPET_BAD_REQUEST, OFPBRC_BAD_LEN)
        bands.append(MeterBand(band_type, rate, burst,
                               prec if band_type == OFPMBT_DSCP_REMARK else 0))
        pos += length
    return tuple(bands)


# ---- messages -------------------------------------------------------------

@dataclass
class Hello:
    """versions: those in the version bitmap (empty if the peer sent none);
    version: the header's version (what a peer without a bitmap offers)."""
    versions: tuple = (OFP_VERSION,)
    version: int = OFP_VERSION
    xid: int = 0


@dataclass
class ErrorMsg:
    """ofp_error_msg; for OFPET_EXPERIMENTER, code is exp_type."""
    type: int
    code: int
    data: bytes = b''
    experimenter: int = 0
    xid: int = 0


@dataclass
class EchoRequest:
    data: bytes = b''
    xid: int = 0


@dataclass
class EchoReply:
    data: bytes = b''
    xid: int = 0


@dataclass
class FeaturesRequest:
    xid: int = 0


@dataclass
class FeaturesReply:
    datapath_id: int
    n_buffers: int = 0
    n_tables: int = 1
    auxiliary_id: int = 0
    capabilities: int = 0
    reserved: int = 0
    xid: int = 0


@dataclass
class GetConfigRequest:
    xid: int = 0


@dataclass
class GetConfigReply:
    flags: int = 0
    miss_send_len: int = OFP_DEFAULT_MISS_SEND_LEN
    xid: int = 0


@dataclass
class SetConfig:
    flags: int = 0
    miss_send_len: int = OFP_DEFAULT_MISS_SEND_LEN
    xid: int = 0


@dataclass
class PacketIn:
    buffer_id: int = OFP_NO_BUFFER
    total_len: int = 0
    reason: int = OFPR_NO_MATCH
    table_id: int = 0
    cookie: int = 0
    match: dict = field(default_factory=dict)
    data: bytes = b''
    xid: int = 0


@dataclass
class FlowRemoved:
    cookie: int
    priority: int
    reason: int
    table_id: int
    duration_sec: int
    duration_nsec: int
    idle_timeout: int
    hard_timeout: int
    packet_count: int
    byte_count: int
    match: dict = field(default_factory=dict)
    xid: int = 0


@dataclass
class PortStatus:
    reason: int
    desc: Port
    xid: int = 0


@dataclass
class PacketOut:
    buffer_id: int = OFP_NO_BUFFER
    in_port: int = OFPP_CONTROLLER
    actions: tuple = ()
    data: bytes = b''
    xid: int = 0


@dataclass
class FlowMod:
    cookie: int = 0
    cookie_mask: int = 0
    table_id: int = 0
    command: int = OFPFC_ADD
    idle_timeout: int = 0
    hard_timeout: int = 0
    priority: int = OFP_DEFAULT_PRIORITY
    buffer_id: int = OFP_NO_BUFFER
    out_port: int = OFPP_ANY
    out_group: int = OFPG_ANY
    flags: int = 0
    match: dict = field(default_factory=dict)
    instructions: tuple = ()
    xid: int = 0


@dataclass
class GroupMod:
    command: int = OFPGC_ADD
    type: int = OFPGT_ALL
    group_id: int = 0
    buckets: tuple = ()
    xid: int = 0


@dataclass
class PortMod:
    port_no: int
    hw_addr: bytes
    config: int = 0
    mask: int = 0
    advertise: int = 0
    xid: int = 0


@dataclass
class TableMod:
    table_id: int
    config: int = 0
    xid: int = 0


@dataclass
class MultipartRequest:
    """body: see multipart.BODIES (None, one dataclass, or a tuple of entries)."""
    type: int
    flags: int = 0
    body: object = None
    xid: int = 0


@dataclass
class MultipartReply:
    """body: see multipart.BODIES.  encode() splits a long one (REPLY_MORE);
    decode() returns each message's part as it came."""
    type: int
    flags: int = 0
    body: object = None
    xid: int = 0


@dataclass
class BarrierRequest:
    xid: int = 0


@dataclass
class BarrierReply:
    xid: int = 0


@dataclass
class QueueGetConfigRequest:
    port: int = OFPP_ANY
    xid: int = 0


@dataclass
class PacketQueue:
    """ofp_packet_queue; properties: tuple of (OFPQT_MIN_RATE|MAX_RATE, rate)."""
    queue_id: int
    port: int
    properties: tuple = ()


@dataclass
class QueueGetConfigReply:
    port: int
    queues: tuple = ()
    xid: int = 0


@dataclass
class RoleRequest:
    role: int
    generation_id: int = 0
    xid: int = 0


@dataclass
class RoleReply:
    role: int
    generation_id: int = 0
    xid: int = 0


@dataclass
class GetAsyncRequest:
    xid: int = 0


@dataclass
class GetAsyncReply:
    """Each mask is a pair (master/equal, slave) of reason bitmaps."""
    packet_in_mask: tuple = (0, 0)
    port_status_mask: tuple = (0, 0)
    flow_removed_mask: tuple = (0, 0)
    xid: int = 0


@dataclass
class SetAsync:
    packet_in_mask: tuple = (0, 0)
    port_status_mask: tuple = (0, 0)
    flow_removed_mask: tuple = (0, 0)
    xid: int = 0


@dataclass
class MeterMod:
    command: int = OFPMC_ADD
    flags: int = OFPMF_KBPS
    meter_id: int = 0
    bands: tuple = ()
    xid: int = 0
