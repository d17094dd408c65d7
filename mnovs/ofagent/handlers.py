"""OpenFlow message handlers: what the switch does with each message it receives.

handle_message() decodes one message, dispatches on its class through the
HANDLERS dict, and sends what the handler returns. A handler takes
(ofproto, channel, msg, now) and returns a list of reply messages; it raises
OFPError for a request the spec says to refuse, and handle_message answers
with an OFPT_ERROR carrying the type, code, the request's xid and its first
64 bytes. Nothing a controller sends can raise anything else past this
module: a bug in the codec or a handler is logged and answered with
OFPET_BAD_REQUEST/OFPBRC_EPERM, and the switch and its other connections go
on. A message only a switch sends (PACKET_IN, FEATURES_REPLY...) is
OFPBRC_BAD_TYPE; ECHO_REPLY and ERROR from the peer are taken in silently.

Session rules (OF1.3 6.3): the first message must be HELLO; until a version
is agreed, anything else is answered with HELLO_FAILED, and any error
closes the connection. A channel in the SLAVE role may not change state
(IS_SLAVE): no flow, group, meter, port or table mod, no PACKET_OUT, no
TABLE_FEATURES request with a body.

Counters: a flow_mod that changes, replaces or deletes rules, a group_mod or
a meter deletion first pushes datapath statistics (ofproto.push_stats), so
that a rule or group replaced, reset or removed gets its packets before it
changes (FLOW_REMOVED counts them).
"""

import logging
import time

from mnovs.dp.flow import flow_extract, md_of
from mnovs.openflow import codec
from mnovs.openflow.codec import (
    BarrierReply, EchoReply, FeaturesReply, GetAsyncReply, GetConfigReply, MultipartReply,
    QueueGetConfigReply, RoleReply)
from mnovs.openflow.ofp import (
    OFP_HEADER, OFP_NO_BUFFER, OFP_VERSION, OFPBRC_BAD_TYPE, OFPBRC_EPERM, OFPBRC_IS_SLAVE,
    OFPC_FLOW_STATS, OFPC_FRAG_MASK, OFPC_FRAG_NORMAL, OFPC_GROUP_STATS, OFPC_PORT_STATS,
    OFPC_QUEUE_STATS, OFPC_TABLE_STATS, OFPCR_ROLE_MASTER, OFPCR_ROLE_NOCHANGE,
    OFPCR_ROLE_SLAVE, OFPET_BAD_REQUEST, OFPET_HELLO_FAILED, OFPET_METER_MOD_FAILED,
    OFPET_PORT_MOD_FAILED, OFPET_QUEUE_OP_FAILED, OFPET_ROLE_REQUEST_FAILED,
    OFPET_SWITCH_CONFIG_FAILED, OFPET_TABLE_MOD_FAILED, OFPFC_ADD, OFPFC_DELETE,
    OFPFC_DELETE_STRICT,
    OFPHFC_INCOMPATIBLE, OFPM_ALL, OFPM_MAX, OFPMBT_DROP, OFPMC_ADD, OFPMC_DELETE,
    OFPMC_MODIFY, OFPMF_BURST, OFPMF_KBPS, OFPMF_PKTPS, OFPMF_STATS, OFPMMFC_BAD_BAND,
    OFPMMFC_BAD_COMMAND, OFPMMFC_BAD_FLAGS, OFPMMFC_BAD_RATE, OFPMMFC_INVALID_METER,
    OFPMMFC_METER_EXISTS, OFPMMFC_OUT_OF_BANDS, OFPMMFC_OUT_OF_METERS, OFPMMFC_UNKNOWN_METER,
    OFPMP_TABLE_FEATURES, OFPP_ANY, OFPP_MAX, OFPPC_NO_FWD, OFPPC_NO_PACKET_IN, OFPPC_NO_RECV,
    OFPPC_PORT_DOWN, OFPPMFC_BAD_CONFIG, OFPPMFC_BAD_HW_ADDR, OFPPMFC_BAD_PORT,
    OFPQOFC_BAD_PORT, OFPRRFC_STALE, OFPSCFC_BAD_FLAGS, OFPT_HELLO, OFPTMFC_BAD_TABLE,
    OFPTT_ALL, OFPError)
from mnovs.ofagent.match import compile_match
from mnovs.ofagent.stats import MAX_BANDS, MAX_METERS, multipart_reply_body
from mnovs.ofagent.table import check_actions
from mnovs.ofagent.xlate import credit_stats, xlate_packet_out
from mnovs.vlog import RateLimitedLog

log = logging.getLogger(__name__)
# A peer can send these as fast as it likes: log them rate-limited.
HANDLER_BUGS = RateLimitedLog(log)
PEER_ERRORS = RateLimitedLog(log)

SWITCH_CAPABILITIES = (OFPC_FLOW_STATS | OFPC_TABLE_STATS | OFPC_PORT_STATS | OFPC_GROUP_STATS
                       | OFPC_QUEUE_STATS)
SUPPORTED_PORT_CONFIG = OFPPC_PORT_DOWN | OFPPC_NO_RECV | OFPPC_NO_FWD | OFPPC_NO_PACKET_IN


def handle_message(ofproto, channel, raw):
    """Decode one raw message from `channel`, act on it, send the replies.

    Args:
        raw: one whole message, as the channel cut it (8 bytes or more).
    """
    now = time.monotonic()
    xid = OFP_HEADER.unpack_from(raw)[3]
    try:
        if channel.version is None and raw[1] != OFPT_HELLO:
            raise OFPError(OFPET_HELLO_FAILED, OFPHFC_INCOMPATIBLE, b'expected HELLO first')
        msg = codec.decode(raw)
        replies = _dispatch(ofproto, channel, msg, now)
        for reply in replies:
            reply.xid = xid
        out = b''.join(codec.encode(reply) for reply in replies)
    except OFPError as err:
        _send_error(channel, err, xid, raw)
    except Exception:               # a bug must not take the switch down
        HANDLER_BUGS.exception('%s: handling message type %d from %s failed', ofproto.name,
                               raw[1], channel.name)
        _send_error(channel, OFPError(OFPET_BAD_REQUEST, OFPBRC_EPERM), xid, raw)
    else:
        if out:
            channel.send(out)
        return
    if channel.version is None:     # no session without an agreed version
        channel.close()


def _send_error(channel, err, xid, raw):
    channel.send(codec.encode(codec.ErrorMsg(err.type, err.code, err.data or raw[:64], xid=xid)))


def _dispatch(ofproto, channel, msg, now):
    if channel.role == OFPCR_ROLE_SLAVE and changes_state(msg):
        raise OFPError(OFPET_BAD_REQUEST, OFPBRC_IS_SLAVE)
    handler = HANDLERS.get(type(msg))
    if handler is None:
        raise OFPError(OFPET_BAD_REQUEST, OFPBRC_BAD_TYPE)
    return handler(ofproto, channel, msg, now)


def changes_state(msg):
    """True for a request a SLAVE may not make (OF1.3 6.3.5)."""
    if type(msg) is codec.MultipartRequest:
        return msg.type == OFPMP_TABLE_FEATURES and bool(msg.body)
    return type(msg) in STATE_CHANGING


# --- session -------------------------------------------------------------------

def on_hello(ofproto, channel, msg, now):
    if channel.version is not None:
        return []
    if codec.negotiate_version(msg) is None:
        raise OFPError(OFPET_HELLO_FAILED, OFPHFC_INCOMPATIBLE, b'mnovs speaks OpenFlow 1.3 only')
    channel.version = OFP_VERSION
    ofproto.connection_up(channel)
    return []


def on_echo_request(ofproto, channel, msg, now):
    return [EchoReply(msg.data)]


def on_echo_reply(ofproto, channel, msg, now):
    return []                       # the channel noted that the peer is alive


def on_error(ofproto, channel, msg, now):
    PEER_ERRORS.info('%s: %s reports error type %d code %d (xid %d)', ofproto.name,
                     channel.name, msg.type, msg.code, msg.xid)
    return []


def on_features_request(ofproto, channel, msg, now):
    return [FeaturesReply(ofproto.dpid, n_buffers=ofproto.buffers.size,
                          n_tables=len(ofproto.pipeline.tables),
                          capabilities=SWITCH_CAPABILITIES)]


def on_get_config_request(ofproto, channel, msg, now):
    return [GetConfigReply(ofproto.config_flags, ofproto.ctx.miss_send_len)]


def on_set_config(ofproto, channel, msg, now):
    # Fragments are always treated normally; OFPC_FRAG_DROP and REASM would
    # need IP reassembly or a translation that mnovs does not have.
    if msg.flags & OFPC_FRAG_MASK != OFPC_FRAG_NORMAL:
        raise OFPError(OFPET_SWITCH_CONFIG_FAILED, OFPSCFC_BAD_FLAGS)
    ofproto.config_flags = msg.flags
    if msg.miss_send_len != ofproto.ctx.miss_send_len:
        ofproto.ctx.miss_send_len = msg.miss_send_len
        ofproto.need_revalidate = True  # an INVALID_TTL packet-in's length is in its megaflow
    return []


def on_barrier_request(ofproto, channel, msg, now):
    ofproto.sync()                  # pending revalidation happens before the reply
    return [BarrierReply()]


def on_role_request(ofproto, channel, msg, now):
    role = msg.role
    if role != OFPCR_ROLE_NOCHANGE:
        if role in (OFPCR_ROLE_MASTER, OFPCR_ROLE_SLAVE):
            last = ofproto.generation_id
            if last is not None and (msg.generation_id - last) & (1 << 63):
                raise OFPError(OFPET_ROLE_REQUEST_FAILED, OFPRRFC_STALE)
            ofproto.generation_id = msg.generation_id
        if role == OFPCR_ROLE_MASTER:
            for other in ofproto.channels:
                if other is not channel and other.role == OFPCR_ROLE_MASTER:
                    other.role = OFPCR_ROLE_SLAVE
        channel.role = role
    return [RoleReply(channel.role, ofproto.generation_id or 0)]


def on_get_async_request(ofproto, channel, msg, now):
    config = channel.async_config
    return [GetAsyncReply(config['packet_in'], config['port_status'], config['flow_removed'])]


def on_set_async(ofproto, channel, msg, now):
    channel.async_config = {'packet_in': tuple(msg.packet_in_mask),
                            'port_status': tuple(msg.port_status_mask),
                            'flow_removed': tuple(msg.flow_removed_mask)}
    return []


# --- state changes -------------------------------------------------------------

def on_flow_mod(ofproto, channel, msg, now):
    if msg.command != OFPFC_ADD or ofproto.pipeline.replaces(msg):
        # A rule is about to change or go: it must hold its packets first.
        # Adding a new rule moves no counts, and a reactive controller adds
        # one per new flow: walking every megaflow for it would not scale.
        ofproto.push_stats(now)
    removed, changed = ofproto.pipeline.flow_mod(msg, now)
    if removed:
        ofproto.rules_removed(removed, now)
    if changed:
        if msg.command == OFPFC_ADD:
            ofproto.rule_added(compile_match(msg.match))
        elif msg.command in (OFPFC_DELETE, OFPFC_DELETE_STRICT):
            ofproto.rules_deleted(rule for rule, _ in removed)
        else:
            ofproto.need_revalidate = True
    if msg.buffer_id != OFP_NO_BUFFER and msg.command not in (OFPFC_DELETE, OFPFC_DELETE_STRICT):
        ofproto.sync()
        ofproto.run_buffered(msg.buffer_id, now)
    return []


def on_group_mod(ofproto, channel, msg, now):
    ofproto.push_stats(now)
    removed, changed = ofproto.groups.group_mod(msg, ofproto.pipeline, now)
    if removed:
        ofproto.rules_removed(removed, now)
    if changed or removed:
        ofproto.need_revalidate = True
    return []


def on_port_mod(ofproto, channel, msg, now):
    port = ofproto.ports.get(msg.port_no)
    if port is None:
        raise OFPError(OFPET_PORT_MOD_FAILED, OFPPMFC_BAD_PORT)
    if msg.hw_addr != port.hw_addr:
        raise OFPError(OFPET_PORT_MOD_FAILED, OFPPMFC_BAD_HW_ADDR)
    if msg.mask & ~SUPPORTED_PORT_CONFIG:
        raise OFPError(OFPET_PORT_MOD_FAILED, OFPPMFC_BAD_CONFIG)
    config = port.config & ~msg.mask | msg.config & msg.mask
    if (config ^ port.config) & OFPPC_PORT_DOWN and ofproto.set_link_admin is not None:
        ofproto.set_link_admin(port.name, not config & OFPPC_PORT_DOWN)
    if config != port.config:
        port.config = config
        ofproto.port_changed(port.port_no)
    return []


def on_table_mod(ofproto, channel, msg, now):
    # OF1.3 deprecates the table config bits; only the table id is checked.
    if msg.table_id != OFPTT_ALL and msg.table_id >= len(ofproto.pipeline.tables):
        raise OFPError(OFPET_TABLE_MOD_FAILED, OFPTMFC_BAD_TABLE)
    return []


def on_meter_mod(ofproto, channel, msg, now):
    command, meter_id = msg.command, msg.meter_id
    if command == OFPMC_DELETE:
        ofproto.push_stats(now)
        ids = list(ofproto.meter_configs) if meter_id == OFPM_ALL else [meter_id]
        for one in ids:
            if ofproto.meter_configs.pop(one, None) is not None:
                ofproto.dp.meters.delete(one)
                ofproto.rules_removed(ofproto.pipeline.delete_meter_rules(one), now)
                ofproto.need_revalidate = True
        return []
    if command not in (OFPMC_ADD, OFPMC_MODIFY):
        raise OFPError(OFPET_METER_MOD_FAILED, OFPMMFC_BAD_COMMAND)
    if not 0 < meter_id <= OFPM_MAX:
        raise OFPError(OFPET_METER_MOD_FAILED, OFPMMFC_INVALID_METER)
    exists = meter_id in ofproto.meter_configs
    if command == OFPMC_ADD and exists:
        raise OFPError(OFPET_METER_MOD_FAILED, OFPMMFC_METER_EXISTS)
    if command == OFPMC_MODIFY and not exists:
        raise OFPError(OFPET_METER_MOD_FAILED, OFPMMFC_UNKNOWN_METER)
    if not exists and len(ofproto.meter_configs) >= MAX_METERS:
        raise OFPError(OFPET_METER_MOD_FAILED, OFPMMFC_OUT_OF_METERS)
    unit, bands = meter_bands(msg)
    ofproto.dp.meters.set(meter_id, unit, bands, now)
    ofproto.meter_configs[meter_id] = msg
    ofproto.need_revalidate = True
    return []


def meter_bands(msg):
    """Check a MeterMod's flags and bands; return (unit, [(kind, rate, burst)])."""
    units = msg.flags & (OFPMF_KBPS | OFPMF_PKTPS)
    if units not in (OFPMF_KBPS, OFPMF_PKTPS) or msg.flags & ~(
            OFPMF_KBPS | OFPMF_PKTPS | OFPMF_BURST | OFPMF_STATS):
        raise OFPError(OFPET_METER_MOD_FAILED, OFPMMFC_BAD_FLAGS)
    if not msg.bands:
        raise OFPError(OFPET_METER_MOD_FAILED, OFPMMFC_BAD_BAND)
    if len(msg.bands) > MAX_BANDS:
        raise OFPError(OFPET_METER_MOD_FAILED, OFPMMFC_OUT_OF_BANDS)
    bands = []
    for band in msg.bands:
        # DSCP remarking would need a datapath action that rewrites only the
        # packets over the rate; mnovs has none, so it refuses such bands.
        if band.type != OFPMBT_DROP:
            raise OFPError(OFPET_METER_MOD_FAILED, OFPMMFC_BAD_BAND)
        if band.rate == 0:
            raise OFPError(OFPET_METER_MOD_FAILED, OFPMMFC_BAD_RATE)
        burst = band.burst_size if msg.flags & OFPMF_BURST else None
        bands.append(('drop', band.rate, burst or None))
    return ('kbps' if units == OFPMF_KBPS else 'pktps'), bands


# --- packets -------------------------------------------------------------------

def on_packet_out(ofproto, channel, msg, now):
    check_actions(msg.actions, ofproto.groups, packet_out=True)
    if msg.buffer_id != OFP_NO_BUFFER:
        frame, _ = ofproto.buffers.take(msg.buffer_id, now)
    else:
        frame = msg.data
    in_port = msg.in_port           # as OVS: the packet-out's, even for a buffered packet
    key, _ = flow_extract(memoryview(frame), md_of(in_port))
    if key is None:
        return []                   # shorter than an Ethernet header: nothing to send
    result = xlate_packet_out(ofproto.ctx, key, msg.actions)
    credit_stats(result, 1, len(frame), now)
    ofproto.execute_frame(frame, in_port, result.actions)
    return []


# --- queries -------------------------------------------------------------------

def on_multipart_request(ofproto, channel, msg, now):
    body = multipart_reply_body(ofproto, msg, now)
    return [MultipartReply(msg.type, body=body)]


def on_queue_get_config_request(ofproto, channel, msg, now):
    if msg.port != OFPP_ANY and (msg.port > OFPP_MAX or msg.port not in ofproto.ports):
        raise OFPError(OFPET_QUEUE_OP_FAILED, OFPQOFC_BAD_PORT)
    return [QueueGetConfigReply(msg.port, ())]     # mnovs has no queues


HANDLERS = {
    codec.Hello: on_hello,
    codec.EchoRequest: on_echo_request,
    codec.EchoReply: on_echo_reply,
    codec.ErrorMsg: on_error,
    codec.FeaturesRequest: on_features_request,
    codec.GetConfigRequest: on_get_config_request,
    codec.SetConfig: on_set_config,
    codec.BarrierRequest: on_barrier_request,
    codec.RoleRequest: on_role_request,
    codec.GetAsyncRequest: on_get_async_request,
    codec.SetAsync: on_set_async,
    codec.FlowMod: on_flow_mod,
    codec.GroupMod: on_group_mod,
    codec.PortMod: on_port_mod,
    codec.TableMod: on_table_mod,
    codec.MeterMod: on_meter_mod,
    codec.PacketOut: on_packet_out,
    codec.MultipartRequest: on_multipart_request,
    codec.QueueGetConfigRequest: on_queue_get_config_request,
}

STATE_CHANGING = frozenset((codec.FlowMod, codec.GroupMod, codec.PortMod, codec.TableMod,
                            codec.MeterMod, codec.PacketOut))
