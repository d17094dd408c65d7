"""The OpenFlow 1.3 message codec: bytes <-> message dataclasses.

    split_messages(buf) -> ([raw message, ...], rest)   framing a TCP stream
    decode(raw)         -> message dataclass           one whole message
    encode(msg)         -> bytes                       one message (or several:
                                                       a long multipart reply)

Every message type of OpenFlow 1.3 has a dataclass (messages.py, named
after its spec struct: ofp_flow_mod -> FlowMod; all re-exported here).
decode() and encode() handle every one of them in both directions, so the
codec round-trips and tests can play the controller.  EXPERIMENTER alone has
no class: decode() answers it with OFPBRC_BAD_EXPERIMENTER, which is the
switch's whole reply to it.  Matches, actions and instructions use the shared
Python forms of oxm.py and ofp_actions.py; multipart bodies are multipart.py's.

    ofp.py  <-  oxm.py  <-  ofp_actions.py  <-  messages.py  <-  multipart.py  <-  codec.py

Dispatch is two dict literals: DECODERS by message type, ENCODERS by class.
Messages that are one flat struct (FeaturesReply, SetConfig, PortMod, ...)
share one generic decoder and encoder driven by FIXED_LAYOUTS.

Errors.  decode() raises nothing but OFPError; the error carries the
offending message's first 64 bytes (`data`) and its `xid`, ready for
`encode(error_reply(err))`.  Header problems are OFPET_BAD_REQUEST: BAD_VERSION
(any type but HELLO not at version 4), BAD_TYPE, BAD_EXPERIMENTER, BAD_LEN
(length field not the message's size, a body too short, too long, or with
inner lengths that overrun it).  Inner problems carry their own types:
BAD_MATCH, BAD_INSTRUCTION, BAD_ACTION, BAD_MULTIPART, and the *_MOD_FAILED
codes for a bad command, type or flags; BAD_PORT for a PACKET_OUT in_port
that no packet can come from.

Framing: split_messages raises OFPError(BAD_REQUEST, BAD_LEN) for a header
length below 8.  The stream cannot be resynchronised after that: send that
error (xid from the bad header) and close the connection.

encode() trusts its input (it is ours): a value that does not fit its field
raises struct.error or OverflowError, a message over 65535 bytes ValueError.
A PACKET_IN's data alone is cut to fit, as a 64 KB GSO frame would not.
"""

import struct

from mnovs.openflow.messages import (
    PORT, BarrierReply, BarrierRequest, EchoReply, EchoRequest, ErrorMsg, FeaturesReply,
    FeaturesRequest, FlowMod, FlowRemoved, GetAsyncReply, GetAsyncRequest, GetConfigReply,
    GetConfigRequest, GroupMod, Hello, MeterMod, MultipartReply, MultipartRequest,
    PacketIn, PacketOut, PacketQueue, Port, PortMod, PortStatus, QueueGetConfigReply,
    QueueGetConfigRequest, RoleReply, RoleRequest, SetAsync, SetConfig, TableMod,
    decode_bands, decode_buckets, encode_bands, encode_buckets, pack_struct, unpack_struct)
from mnovs.openflow.multipart import MULTIPART_HEADER, decode_body, encode_body
from mnovs.openflow.ofp import (
    OFPBRC_BAD_EXPERIMENTER, OFPBRC_BAD_LEN, OFPBRC_BAD_PORT, OFPBRC_BAD_TYPE,
    OFPBRC_BAD_VERSION, OFPCR_ROLE_SLAVE, OFPC_FRAG_MASK, OFPET_BAD_REQUEST,
    OFPET_EXPERIMENTER, OFPET_FLOW_MOD_FAILED, OFPET_GROUP_MOD_FAILED,
    OFPET_METER_MOD_FAILED, OFPET_ROLE_REQUEST_FAILED, OFPET_SWITCH_CONFIG_FAILED,
    OFPFC_DELETE_STRICT, OFPFF_ALL, OFPFMFC_BAD_COMMAND, OFPFMFC_BAD_FLAGS, OFPGC_DELETE,
    OFPGMFC_BAD_COMMAND, OFPGMFC_BAD_TYPE, OFPGT_FF, OFPHET_VERSIONBITMAP, OFPMC_DELETE,
    OFPMMFC_BAD_COMMAND, OFPMMFC_BAD_FLAGS, OFPMPF_REPLY_MORE, OFPP_ANY, OFPP_CONTROLLER,
    OFPP_LOCAL, OFPP_MAX, OFPQT_MAX_RATE, OFPQT_MIN_RATE, OFPRRFC_BAD_ROLE,
    OFPSCFC_BAD_FLAGS, OFPT_BARRIER_REPLY, OFPT_BARRIER_REQUEST, OFPT_ECHO_REPLY,
    OFPT_ECHO_REQUEST, OFPT_ERROR, OFPT_EXPERIMENTER, OFPT_FEATURES_REPLY,
    OFPT_FEATURES_REQUEST, OFPT_FLOW_MOD, OFPT_FLOW_REMOVED, OFPT_GET_ASYNC_REPLY,
    OFPT_GET_ASYNC_REQUEST, OFPT_GET_CONFIG_REPLY, OFPT_GET_CONFIG_REQUEST, OFPT_GROUP_MOD,
    OFPT_HELLO, OFPT_METER_MOD, OFPT_MULTIPART_REPLY, OFPT_MULTIPART_REQUEST,
    OFPT_PACKET_IN, OFPT_PACKET_OUT, OFPT_PORT_MOD, OFPT_PORT_STATUS,
    OFPT_QUEUE_GET_CONFIG_REPLY, OFPT_QUEUE_GET_CONFIG_REQUEST, OFPT_ROLE_REPLY,
    OFPT_ROLE_REQUEST, OFPT_SET_ASYNC, OFPT_SET_CONFIG, OFPT_TABLE_MOD, OFP_ERROR_DATA_MAX,
    OFP_HEADER, OFP_HEADER_SIZE, OFP_MAX_MESSAGE_LEN, OFP_VERSION, OFPError)
from mnovs.openflow.ofp_actions import (
    decode_actions, decode_instructions, encode_actions, encode_instructions)
from mnovs.openflow.oxm import decode_match, encode_match

# Bodies after the 8-byte header (spec sizes include the header).
EMPTY = struct.Struct('')
HELLO_ELEM = struct.Struct('!HH')               # type, length
ERROR = struct.Struct('!HH')                    # type, code
ERROR_EXPERIMENTER = struct.Struct('!HHI')      # type, exp_type, experimenter
SWITCH_FEATURES = struct.Struct('!QIBB2xII')
SWITCH_CONFIG = struct.Struct('!HH')
PACKET_IN = struct.Struct('!IHBBQ')             # then match, 2 pad, data
FLOW_REMOVED = struct.Struct('!QHBBIIHHQQ')     # then match
PORT_STATUS = struct.Struct('!B7x')             # then ofp_port
PACKET_OUT = struct.Struct('!IIH6x')            # then actions, data
FLOW_MOD = struct.Struct('!QQBBHHHIIIH2x')      # then match, instructions
GROUP_MOD = struct.Struct('!HBxI')              # then buckets
PORT_MOD = struct.Struct('!I4x6s2xIII4x')
TABLE_MOD = struct.Struct('!B3xI')
QUEUE_GET_CONFIG_REQUEST = struct.Struct('!I4x')
QUEUE_GET_CONFIG_REPLY = struct.Struct('!I4x')  # then queues
PACKET_QUEUE = struct.Struct('!IIH6x')          # queue_id, port, len; then properties
QUEUE_PROP = struct.Struct('!HH4x')             # property, len
QUEUE_RATE = struct.Struct('!H6x')              # min/max rate, in 1/10 of a percent
ROLE = struct.Struct('!I4xQ')
ASYNC_CONFIG = struct.Struct('!6I')
METER_MOD = struct.Struct('!HHI')               # then bands
PACKET_IN_PAD = 2
# Spec sizes count the header; those with a match count its first 8 bytes.
for _layout, _spec_size in (
        (SWITCH_FEATURES, 32), (SWITCH_CONFIG, 12), (PACKET_IN, 32 - 8), (FLOW_REMOVED, 56 - 8),
        (PORT_STATUS, 80 - 64), (PACKET_OUT, 24), (FLOW_MOD, 56 - 8), (GROUP_MOD, 16),
        (PORT_MOD, 40), (TABLE_MOD, 16), (QUEUE_GET_CONFIG_REQUEST, 16), (ROLE, 24),
        (ASYNC_CONFIG, 32), (METER_MOD, 16)):
    assert OFP_HEADER_SIZE + _layout.size == _spec_size, _layout.format
assert (PACKET_QUEUE.size, QUEUE_PROP.size, QUEUE_RATE.size) == (16, 8, 8)


# ---- the API ------------------------------------------------------------------

_LENGTH = struct.Struct('!H')


def split_messages(buf):
    """Cut a received byte stream into whole messages.

    Args:
        buf: bytes, bytearray or memoryview of what was received so far.
    Returns:
        (list of raw messages as bytes, the incomplete rest as bytes).
    Raises:
        OFPError(BAD_REQUEST, BAD_LEN) for a header whose length is below 8;
        the caller should send it as an error and close the connection.
    """
    view = memoryview(buf)
    messages, pos = [], 0
    while len(view) - pos >= OFP_HEADER_SIZE:
        length, = _LENGTH.unpack_from(view, pos + 2)
        if length < OFP_HEADER_SIZE:
            err = OFPError(OFPET_BAD_REQUEST, OFPBRC_BAD_LEN, view[pos:pos + OFP_ERROR_DATA_MAX])
            err.xid = OFP_HEADER.unpack_from(view, pos)[3]
            raise err
        if len(view) - pos < length:
            break
        messages.append(bytes(view[pos:pos + length]))
        pos += length
    return messages, bytes(view[pos:])


def decode(raw):
    """Decode one whole message (as cut by split_messages).

    Returns:
        The message dataclass, with .xid.
    Raises:
        OFPError only, with .data (first 64 bytes of raw) and .xid set.
    """
    buf = memoryview(raw)
    if len(buf) < OFP_HEADER_SIZE:
        raise OFPError(OFPET_BAD_REQUEST, OFPBRC_BAD_LEN, raw)
    version, msg_type, length, xid = OFP_HEADER.unpack_from(buf)
    try:
        if version != OFP_VERSION and msg_type != OFPT_HELLO:
            raise OFPError(OFPET_BAD_REQUEST, OFPBRC_BAD_VERSION)
        if length != len(buf):
            raise _bad_len()
        decoder = DECODERS.get(msg_type)
        if decoder is None:
            if msg_type == OFPT_EXPERIMENTER:
                raise OFPError(OFPET_BAD_REQUEST, OFPBRC_BAD_EXPERIMENTER)
            raise OFPError(OFPET_BAD_REQUEST, OFPBRC_BAD_TYPE)
        return decoder(buf, xid)
    except struct.error:
        # Only a read past the end can fail this way; the checks above
        # should catch every such case first.
        err = _bad_len()
    except OFPError as caught:
        err = caught
    if err.data is None:
        err.data = bytes(buf[:OFP_ERROR_DATA_MAX])
    err.xid = xid
    raise err


def encode(msg):
    """Encode a message dataclass to bytes, ready to send.

    A MultipartReply whose body does not fit 64 KB comes out as several
    messages back to back (OFPMPF_REPLY_MORE on all but the last).
    """
    return ENCODERS[type(msg)](msg)


def error_reply(err, xid=None):
    """The ErrorMsg answering OFPError `err` (xid: err.xid unless given)."""
    return ErrorMsg(err.type, err.code, err.data or b'',
                    xid=(err.xid or 0) if xid is None else xid)


def negotiate_version(hello):
    """The version to speak with the peer that sent `hello`: 4, or None if
    there is none in common (then send HELLO_FAILED/INCOMPATIBLE and close)."""
    if hello.versions:
        return OFP_VERSION if OFP_VERSION in hello.versions else None
    return OFP_VERSION if hello.version >= OFP_VERSION else None


# ---- internals ----------------------------------------------------------------

def _frame(msg_type, xid, body, version=OFP_VERSION):
    length = OFP_HEADER_SIZE + len(body)
    if length > OFP_MAX_MESSAGE_LEN:
        raise ValueError(f'OpenFlow message type {msg_type} of {length} bytes')
    return OFP_HEADER.pack(version, msg_type, length, xid) + body


def _bad_len():
    return OFPError(OFPET_BAD_REQUEST, OFPBRC_BAD_LEN)


def _need(buf, size):
    """Raise BAD_LEN unless the body (after the header) holds `size` bytes."""
    if len(buf) < OFP_HEADER_SIZE + size:
        raise _bad_len()


# ---- flat messages --------------------------------------------------------------

# class -> (OFPT_*, layout of the whole body)
FIXED_LAYOUTS = {
    FeaturesRequest: (OFPT_FEATURES_REQUEST, EMPTY),
    FeaturesReply: (OFPT_FEATURES_REPLY, SWITCH_FEATURES),
    GetConfigRequest: (OFPT_GET_CONFIG_REQUEST, EMPTY),
    GetConfigReply: (OFPT_GET_CONFIG_REPLY, SWITCH_CONFIG),
    SetConfig: (OFPT_SET_CONFIG, SWITCH_CONFIG),
    PortMod: (OFPT_PORT_MOD, PORT_MOD),
    TableMod: (OFPT_TABLE_MOD, TABLE_MOD),
    BarrierRequest: (OFPT_BARRIER_REQUEST, EMPTY),
    BarrierReply: (OFPT_BARRIER_REPLY, EMPTY),
    QueueGetConfigRequest: (OFPT_QUEUE_GET_CONFIG_REQUEST, QUEUE_GET_CONFIG_REQUEST),
    RoleRequest: (OFPT_ROLE_REQUEST, ROLE),
    RoleReply: (OFPT_ROLE_REPLY, ROLE),
    GetAsyncRequest: (OFPT_GET_ASYNC_REQUEST, EMPTY),
}


def _encode_fixed(msg):
    msg_type, layout = FIXED_LAYOUTS[type(msg)]
    return _frame(msg_type, msg.xid, pack_struct(layout, msg))


def _fixed_decoder(cls, check=None):
    """A decoder for flat message `cls`; `check(msg)` may raise OFPError."""
    layout = FIXED_LAYOUTS[cls][1]

    def decode_fixed(buf, xid):
        if len(buf) != OFP_HEADER_SIZE + layout.size:
            raise _bad_len()
        msg = unpack_struct(layout, cls, buf, OFP_HEADER_SIZE, xid=xid)
        if check is not None:
            check(msg)
        return msg
    return decode_fixed


def _check_set_config(msg):
    if msg.flags & ~OFPC_FRAG_MASK:
        raise OFPError(OFPET_SWITCH_CONFIG_FAILED, OFPSCFC_BAD_FLAGS)


def _check_role(msg):
    if msg.role > OFPCR_ROLE_SLAVE:
        raise OFPError(OFPET_ROLE_REQUEST_FAILED, OFPRRFC_BAD_ROLE)


# ---- HELLO, ERROR, ECHO, ASYNC ------------------------------------------------

def _encode_hello(msg):
    body = b''
    if msg.versions:
        words = [0] * (max(msg.versions) // 32 + 1)
        for version in msg.versions:
            words[version // 32] |= 1 << version % 32
        length = HELLO_ELEM.size + 4 * len(words)
        body = (HELLO_ELEM.pack(OFPHET_VERSIONBITMAP, length)
                + struct.pack(f'!{len(words)}I', *words) + bytes(-length % 8))
    return _frame(OFPT_HELLO, msg.xid, body, msg.version)


def _decode_hello(buf, xid):
    """Elements of unknown type are skipped, as the spec asks."""
    versions = []
    pos = OFP_HEADER_SIZE
    while len(buf) - pos >= HELLO_ELEM.size:
        elem_type, length = HELLO_ELEM.unpack_from(buf, pos)
        if length < HELLO_ELEM.size or pos + length > len(buf):
            raise _bad_len()
        if elem_type == OFPHET_VERSIONBITMAP:
            for i, at in enumerate(range(pos + 4, pos + length - 3, 4)):
                word = int.from_bytes(buf[at:at + 4], 'big')
                versions.extend(32 * i + bit for bit in range(32) if word >> bit & 1)
        pos += (length + 7) & ~7
    return Hello(tuple(versions), buf[0], xid)


def _encode_error(msg):
    if msg.type == OFPET_EXPERIMENTER:
        head = ERROR_EXPERIMENTER.pack(msg.type, msg.code, msg.experimenter)
    else:
        head = ERROR.pack(msg.type, msg.code)
    return _frame(OFPT_ERROR, msg.xid, head + msg.data)


def _decode_error(buf, xid):
    _need(buf, ERROR.size)
    err_type, code = ERROR.unpack_from(buf, OFP_HEADER_SIZE)
    if err_type != OFPET_EXPERIMENTER:
        return ErrorMsg(err_type, code, bytes(buf[OFP_HEADER_SIZE + ERROR.size:]), xid=xid)
    _need(buf, ERROR_EXPERIMENTER.size)
    experimenter = ERROR_EXPERIMENTER.unpack_from(buf, OFP_HEADER_SIZE)[2]
    return ErrorMsg(err_type, code, bytes(buf[OFP_HEADER_SIZE + ERROR_EXPERIMENTER.size:]),
                    experimenter, xid)


def _echo_codec(cls, msg_type):
    def encode_echo(msg):
        return _frame(msg_type, msg.xid, msg.data)

    def decode_echo(buf, xid):
        return cls(bytes(buf[OFP_HEADER_SIZE:]), xid)
    return encode_echo, decode_echo


_encode_echo_request, _decode_echo_request = _echo_codec(EchoRequest, OFPT_ECHO_REQUEST)
_encode_echo_reply, _decode_echo_reply = _echo_codec(EchoReply, OFPT_ECHO_REPLY)


def _async_codec(cls, msg_type):
    def encode_async(msg):
        return _frame(msg_type, msg.xid, ASYNC_CONFIG.pack(
            *msg.packet_in_mask, *msg.port_status_mask, *msg.flow_removed_mask))

    def decode_async(buf, xid):
        if len(buf) != OFP_HEADER_SIZE + ASYNC_CONFIG.size:
            raise _bad_len()
        masks = ASYNC_CONFIG.unpack_from(buf, OFP_HEADER_SIZE)
        return cls(masks[0:2], masks[2:4], masks[4:6], xid)
    return encode_async, decode_async


_encode_get_async_reply, _decode_get_async_reply = _async_codec(
    GetAsyncReply, OFPT_GET_ASYNC_REPLY)
_encode_set_async, _decode_set_async = _async_codec(SetAsync, OFPT_SET_ASYNC)


# ---- messages with a match, actions, buckets or bands -------------------------

_PACKET_IN_ROOM = OFP_MAX_MESSAGE_LEN - OFP_HEADER_SIZE - PACKET_IN.size - PACKET_IN_PAD


def _encode_packet_in(msg):
    match = encode_match(msg.match)
    data = msg.data[:_PACKET_IN_ROOM - len(match)]
    return _frame(OFPT_PACKET_IN, msg.xid, pack_struct(PACKET_IN, msg) + match
                  + bytes(PACKET_IN_PAD) + data)


def _decode_packet_in(buf, xid):
    _need(buf, PACKET_IN.size)
    match, pos = decode_match(buf, OFP_HEADER_SIZE + PACKET_IN.size, len(buf))
    if len(buf) < pos + PACKET_IN_PAD:
        raise _bad_len()
    return unpack_struct(PACKET_IN, PacketIn, buf, OFP_HEADER_SIZE, match=match,
                         data=bytes(buf[pos + PACKET_IN_PAD:]), xid=xid)


def _encode_flow_removed(msg):
    return _frame(OFPT_FLOW_REMOVED, msg.xid,
                  pack_struct(FLOW_REMOVED, msg) + encode_match(msg.match))


def _decode_flow_removed(buf, xid):
    _need(buf, FLOW_REMOVED.size)
    match, pos = decode_match(buf, OFP_HEADER_SIZE + FLOW_REMOVED.size, len(buf))
    if pos != len(buf):
        raise _bad_len()
    return unpack_struct(FLOW_REMOVED, FlowRemoved, buf, OFP_HEADER_SIZE, match=match, xid=xid)


def _encode_port_status(msg):
    return _frame(OFPT_PORT_STATUS, msg.xid,
                  PORT_STATUS.pack(msg.reason) + pack_struct(PORT, msg.desc))


def _decode_port_status(buf, xid):
    if len(buf) != OFP_HEADER_SIZE + PORT_STATUS.size + PORT.size:
        raise _bad_len()
    reason, = PORT_STATUS.unpack_from(buf, OFP_HEADER_SIZE)
    return PortStatus(reason, unpack_struct(PORT, Port, buf, OFP_HEADER_SIZE + PORT_STATUS.size),
                      xid)


def _encode_packet_out(msg):
    actions = encode_actions(msg.actions)
    return _frame(OFPT_PACKET_OUT, msg.xid,
                  PACKET_OUT.pack(msg.buffer_id, msg.in_port, len(actions)) + actions + msg.data)


def _decode_packet_out(buf, xid):
    """in_port must be a port number, LOCAL, CONTROLLER or ANY (OFPBRC_BAD_PORT)."""
    _need(buf, PACKET_OUT.size)
    buffer_id, in_port, actions_len = PACKET_OUT.unpack_from(buf, OFP_HEADER_SIZE)
    start = OFP_HEADER_SIZE + PACKET_OUT.size
    if start + actions_len > len(buf):
        raise _bad_len()
    if not (0 < in_port <= OFPP_MAX or in_port in (OFPP_LOCAL, OFPP_CONTROLLER, OFPP_ANY)):
        raise OFPError(OFPET_BAD_REQUEST, OFPBRC_BAD_PORT)
    actions = decode_actions(buf, start, start + actions_len)
    return PacketOut(buffer_id, in_port, actions, bytes(buf[start + actions_len:]), xid)


def _encode_flow_mod(msg):
    return _frame(OFPT_FLOW_MOD, msg.xid, pack_struct(FLOW_MOD, msg) + encode_match(msg.match)
                  + encode_instructions(msg.instructions))


def _decode_flow_mod(buf, xid):
    _need(buf, FLOW_MOD.size)
    msg = unpack_struct(FLOW_MOD, FlowMod, buf, OFP_HEADER_SIZE, xid=xid)
    if msg.command > OFPFC_DELETE_STRICT:
        raise OFPError(OFPET_FLOW_MOD_FAILED, OFPFMFC_BAD_COMMAND)
    if msg.flags & ~OFPFF_ALL:
        raise OFPError(OFPET_FLOW_MOD_FAILED, OFPFMFC_BAD_FLAGS)
    msg.match, pos = decode_match(buf, OFP_HEADER_SIZE + FLOW_MOD.size, len(buf))
    msg.instructions = decode_instructions(buf, pos, len(buf))
    return msg


def _encode_group_mod(msg):
    return _frame(OFPT_GROUP_MOD, msg.xid,
                  pack_struct(GROUP_MOD, msg) + encode_buckets(msg.buckets))


def _decode_group_mod(buf, xid):
    _need(buf, GROUP_MOD.size)
    msg = unpack_struct(GROUP_MOD, GroupMod, buf, OFP_HEADER_SIZE, xid=xid)
    if msg.command > OFPGC_DELETE:
        raise OFPError(OFPET_GROUP_MOD_FAILED, OFPGMFC_BAD_COMMAND)
    if msg.type > OFPGT_FF:
        raise OFPError(OFPET_GROUP_MOD_FAILED, OFPGMFC_BAD_TYPE)
    msg.buckets = decode_buckets(buf, OFP_HEADER_SIZE + GROUP_MOD.size, len(buf))
    return msg


_METER_FLAGS = 0xf                              # KBPS | PKTPS | BURST | STATS


def _encode_meter_mod(msg):
    return _frame(OFPT_METER_MOD, msg.xid, pack_struct(METER_MOD, msg) + encode_bands(msg.bands))


def _decode_meter_mod(buf, xid):
    _need(buf, METER_MOD.size)
    msg = unpack_struct(METER_MOD, MeterMod, buf, OFP_HEADER_SIZE, xid=xid)
    if msg.command > OFPMC_DELETE:
        raise OFPError(OFPET_METER_MOD_FAILED, OFPMMFC_BAD_COMMAND)
    if msg.flags & ~_METER_FLAGS:
        raise OFPError(OFPET_METER_MOD_FAILED, OFPMMFC_BAD_FLAGS)
    msg.bands = decode_bands(buf, OFP_HEADER_SIZE + METER_MOD.size, len(buf))
    return msg


def _encode_queue_get_config_reply(msg):
    queues = []
    for queue in msg.queues:
        props = b''.join(QUEUE_PROP.pack(prop, QUEUE_PROP.size + QUEUE_RATE.size)
                         + QUEUE_RATE.pack(rate) for prop, rate in queue.properties)
        queues.append(PACKET_QUEUE.pack(queue.queue_id, queue.port, PACKET_QUEUE.size + len(props))
                      + props)
    return _frame(OFPT_QUEUE_GET_CONFIG_REPLY, msg.xid,
                  QUEUE_GET_CONFIG_REPLY.pack(msg.port) + b''.join(queues))


def _decode_queue_properties(buf, pos, end):
    """(OFPQT_*, rate) pairs; other property types are skipped."""
    props = []
    while pos < end:
        if end - pos < QUEUE_PROP.size:
            raise _bad_len()
        prop, length = QUEUE_PROP.unpack_from(buf, pos)
        if length < QUEUE_PROP.size or pos + length > end:
            raise _bad_len()
        if prop in (OFPQT_MIN_RATE, OFPQT_MAX_RATE):
            if length != QUEUE_PROP.size + QUEUE_RATE.size:
                raise _bad_len()
            props.append((prop, QUEUE_RATE.unpack_from(buf, pos + QUEUE_PROP.size)[0]))
        pos += length
    return tuple(props)


def _decode_queue_get_config_reply(buf, xid):
    _need(buf, QUEUE_GET_CONFIG_REPLY.size)
    port, = QUEUE_GET_CONFIG_REPLY.unpack_from(buf, OFP_HEADER_SIZE)
    queues, pos = [], OFP_HEADER_SIZE + QUEUE_GET_CONFIG_REPLY.size
    while pos < len(buf):
        if len(buf) - pos < PACKET_QUEUE.size:
            raise _bad_len()
        queue_id, queue_port, length = PACKET_QUEUE.unpack_from(buf, pos)
        if length < PACKET_QUEUE.size or pos + length > len(buf):
            raise _bad_len()
        props = _decode_queue_properties(buf, pos + PACKET_QUEUE.size, pos + length)
        queues.append(PacketQueue(queue_id, queue_port, props))
        pos += length
    return QueueGetConfigReply(port, tuple(queues), xid)


# ---- multipart ----------------------------------------------------------------

def _multipart_codec(cls, msg_type, is_reply):
    def encode_multipart(msg):
        chunks = encode_body(msg.type, is_reply, msg.body)
        last = len(chunks) - 1
        return b''.join(
            _frame(msg_type, msg.xid, MULTIPART_HEADER.pack(
                msg.type, msg.flags | (OFPMPF_REPLY_MORE if i < last else 0)) + chunk)
            for i, chunk in enumerate(chunks))

    def decode_multipart(buf, xid):
        _need(buf, MULTIPART_HEADER.size)
        mp_type, flags = MULTIPART_HEADER.unpack_from(buf, OFP_HEADER_SIZE)
        body = decode_body(mp_type, is_reply, buf,
                           OFP_HEADER_SIZE + MULTIPART_HEADER.size, len(buf))
        return cls(mp_type, flags, body, xid)
    return encode_multipart, decode_multipart


# OFPMPF_REQ_MORE and OFPMPF_REPLY_MORE are the same bit.
_encode_multipart_request, _decode_multipart_request = _multipart_codec(
    MultipartRequest, OFPT_MULTIPART_REQUEST, False)
_encode_multipart_reply, _decode_multipart_reply = _multipart_codec(
    MultipartReply, OFPT_MULTIPART_REPLY, True)


# ---- dispatch -----------------------------------------------------------------

DECODERS = {
    OFPT_HELLO: _decode_hello,
    OFPT_ERROR: _decode_error,
    OFPT_ECHO_REQUEST: _decode_echo_request,
    OFPT_ECHO_REPLY: _decode_echo_reply,
    OFPT_FEATURES_REQUEST: _fixed_decoder(FeaturesRequest),
    OFPT_FEATURES_REPLY: _fixed_decoder(FeaturesReply),
    OFPT_GET_CONFIG_REQUEST: _fixed_decoder(GetConfigRequest),
    OFPT_GET_CONFIG_REPLY: _fixed_decoder(GetConfigReply),
    OFPT_SET_CONFIG: _fixed_decoder(SetConfig, _check_set_config),
    OFPT_PACKET_IN: _decode_packet_in,
    OFPT_FLOW_REMOVED: _decode_flow_removed,
    OFPT_PORT_STATUS: _decode_port_status,
    OFPT_PACKET_OUT: _decode_packet_out,
    OFPT_FLOW_MOD: _decode_flow_mod,
    OFPT_GROUP_MOD: _decode_group_mod,
    OFPT_PORT_MOD: _fixed_decoder(PortMod),
    OFPT_TABLE_MOD: _fixed_decoder(TableMod),
    OFPT_MULTIPART_REQUEST: _decode_multipart_request,
    OFPT_MULTIPART_REPLY: _decode_multipart_reply,
    OFPT_BARRIER_REQUEST: _fixed_decoder(BarrierRequest),
    OFPT_BARRIER_REPLY: _fixed_decoder(BarrierReply),
    OFPT_QUEUE_GET_CONFIG_REQUEST: _fixed_decoder(QueueGetConfigRequest),
    OFPT_QUEUE_GET_CONFIG_REPLY: _decode_queue_get_config_reply,
    OFPT_ROLE_REQUEST: _fixed_decoder(RoleRequest, _check_role),
    OFPT_ROLE_REPLY: _fixed_decoder(RoleReply),
    OFPT_GET_ASYNC_REQUEST: _fixed_decoder(GetAsyncRequest),
    OFPT_GET_ASYNC_REPLY: _decode_get_async_reply,
    OFPT_SET_ASYNC: _decode_set_async,
    OFPT_METER_MOD: _decode_meter_mod,
}

ENCODERS = {
    Hello: _encode_hello,
    ErrorMsg: _encode_error,
    EchoRequest: _encode_echo_request,
    EchoReply: _encode_echo_reply,
    FeaturesRequest: _encode_fixed,
    FeaturesReply: _encode_fixed,
    GetConfigRequest: _encode_fixed,
    GetConfigReply: _encode_fixed,
    SetConfig: _encode_fixed,
    PacketIn: _encode_packet_in,
    FlowRemoved: _encode_flow_removed,
    PortStatus: _encode_port_status,
    PacketOut: _encode_packet_out,
    FlowMod: _encode_flow_mod,
    GroupMod: _encode_group_mod,
    PortMod: _encode_fixed,
    TableMod: _encode_fixed,
    MultipartRequest: _encode_multipart_request,
    MultipartReply: _encode_multipart_reply,
    BarrierRequest: _encode_fixed,
    BarrierReply: _encode_fixed,
    QueueGetConfigRequest: _encode_fixed,
    QueueGetConfigReply: _encode_queue_get_config_reply,
    RoleRequest: _encode_fixed,
    RoleReply: _encode_fixed,
    GetAsyncRequest: _encode_fixed,
    GetAsyncReply: _encode_get_async_reply,
    SetAsync: _encode_set_async,
    MeterMod: _encode_meter_mod,
}
