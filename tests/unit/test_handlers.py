"""Message handlers (handlers.py): the switch's answer to each OF1.3 message.

A controller is a FakeChannel (test_ofproto.py) past HELLO; every message
goes in encoded and every answer comes out decoded, so the codec, the
handlers and the agent are exercised together. Errors are checked for their
type, code, the request's xid and data. A few answers are also parsed by
Ryu, a real controller's parser.
"""

import pytest

from mnovs.openflow import codec, ofp

from mnovs.ofagent import handlers
from mnovs.openflow.codec import (
    EchoReply, EchoRequest, ErrorMsg, FeaturesReply, FeaturesRequest, FlowMod, GetAsyncReply,
    GetAsyncRequest, GetConfigReply, GetConfigRequest, GroupMod, Hello, MeterMod,
    MultipartRequest, PacketIn, PacketOut, PortMod, QueueGetConfigReply, QueueGetConfigRequest,
    RoleReply, RoleRequest, SetAsync, SetConfig, TableMod)
from mnovs.openflow.messages import Bucket, MeterBand
from mnovs.openflow.multipart import GroupStatsRequest, TableFeatures
from test_codec import ryu_parse
from test_ofproto import (
    FakeChannel, Switch, apply, odp_outputs, output, table_miss_to_controller, udp)

MASTER, SLAVE, EQUAL = ofp.OFPCR_ROLE_MASTER, ofp.OFPCR_ROLE_SLAVE, ofp.OFPCR_ROLE_EQUAL
FROM_1 = {'in_port': (1, None)}


@pytest.fixture
def switch():
    return Switch()


@pytest.fixture
def controller(switch):
    return switch.connect()


def error_of(answers, xid=None):
    """(type, code) of the single ErrorMsg answer; checks its xid."""
    (error,) = answers
    assert isinstance(error, ErrorMsg), answers
    if xid is not None:
        assert error.xid == xid
    return error.type, error.code


# --- session -------------------------------------------------------------------

def test_anything_before_hello_fails_and_closes(switch):
    channel = FakeChannel()
    answers = switch.send(channel, FeaturesRequest(), xid=3)
    assert error_of(answers, 3) == (ofp.OFPET_HELLO_FAILED, ofp.OFPHFC_INCOMPATIBLE)
    assert channel.closed and channel not in switch.ofproto.channels


def test_a_message_of_another_version_before_hello_fails_and_closes(switch):
    channel = FakeChannel()
    raw = bytearray(codec.encode(FeaturesRequest(xid=4)))
    raw[0] = 1                                          # OpenFlow 1.0
    handlers.handle_message(switch.ofproto, channel, bytes(raw))
    assert error_of(channel.received(), 4)[0] == ofp.OFPET_HELLO_FAILED
    assert channel.closed


@pytest.mark.parametrize('hello', [Hello(versions=(1, 2, 3)), Hello(versions=(), version=1),
                                   Hello(versions=(5, 6), version=6)])
def test_no_common_version_fails_and_closes(switch, hello):
    channel = FakeChannel()
    assert error_of(switch.send(channel, hello)) == (
        ofp.OFPET_HELLO_FAILED, ofp.OFPHFC_INCOMPATIBLE)
    assert channel.closed and channel.version is None


@pytest.mark.parametrize('hello', [Hello(versions=(1, 4, 5), version=5),
                                   Hello(versions=(), version=5), Hello()])
def test_version_negotiated(switch, hello):
    channel = FakeChannel()
    assert switch.send(channel, hello) == []
    assert channel.version == 4 and channel in switch.ofproto.channels
    assert channel.role == EQUAL
    assert switch.send(channel, Hello()) == []          # a second HELLO is harmless


def test_echo(switch, controller):
    assert switch.send(controller, EchoRequest(b'ping'), xid=77) == [EchoReply(b'ping', 77)]
    assert switch.send(controller, EchoReply(b'pong')) == []


def test_features(switch, controller):
    (reply,) = switch.send(controller, FeaturesRequest(), xid=5)
    assert reply == FeaturesReply(0xab, n_buffers=256, n_tables=254, capabilities=(
        ofp.OFPC_FLOW_STATS | ofp.OFPC_TABLE_STATS | ofp.OFPC_PORT_STATS
        | ofp.OFPC_GROUP_STATS | ofp.OFPC_QUEUE_STATS), xid=5)
    parsed = ryu_parse(codec.encode(reply))
    assert (parsed.datapath_id, parsed.n_tables, parsed.xid) == (0xab, 254, 5)


def test_get_and_set_config(switch, controller):
    assert switch.send(controller, GetConfigRequest()) == [GetConfigReply(0, 128)]
    assert switch.send(controller, SetConfig(0, 300)) == []
    assert switch.send(controller, GetConfigRequest()) == [GetConfigReply(0, 300)]
    assert error_of(switch.send(controller, SetConfig(ofp.OFPC_FRAG_DROP, 128), xid=6), 6) == (
        ofp.OFPET_SWITCH_CONFIG_FAILED, ofp.OFPSCFC_BAD_FLAGS)


def test_switch_to_controller_messages_are_bad_type(switch, controller):
    answers = switch.send(controller, PacketIn(data=b'x' * 20), xid=8)
    assert error_of(answers, 8) == (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TYPE)
    assert switch.send(controller, ErrorMsg(1, 2, b'oops')) == []     # never answered


def test_undecodable_messages_get_errors_with_their_xid(switch, controller):
    raw = ofp.OFP_HEADER.pack(4, 99, 8, 12)              # no such type
    handlers.handle_message(switch.ofproto, controller, raw)
    (error,) = controller.received()
    assert (error.type, error.code, error.xid, error.data) == (
        ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TYPE, 12, raw)
    raw = bytearray(codec.encode(FeaturesRequest(xid=13)))
    raw[0] = 1
    handlers.handle_message(switch.ofproto, controller, bytes(raw))
    assert error_of(controller.received(), 13) == (ofp.OFPET_BAD_REQUEST,
                                                   ofp.OFPBRC_BAD_VERSION)
    assert not controller.closed


def test_a_handler_bug_is_answered_and_the_switch_goes_on(switch, controller, monkeypatch):
    def broken(ofproto, channel, msg, now):
        raise KeyError('bug')
    monkeypatch.setitem(handlers.HANDLERS, FeaturesRequest, broken)
    (error,) = switch.send(controller, FeaturesRequest(), xid=21)
    assert (error.type, error.code, error.xid) == (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_EPERM, 21)
    assert error.data == codec.encode(FeaturesRequest(xid=21))
    assert not controller.closed
    assert switch.send(controller, EchoRequest(b'still'), xid=22) == [EchoReply(b'still', 22)]


def test_a_codec_bug_is_answered_too(switch, controller, monkeypatch):
    def broken(raw):
        raise IndexError('bug')
    with monkeypatch.context() as patch:
        patch.setattr(codec, 'decode', broken)
        handlers.handle_message(switch.ofproto, controller, codec.encode(EchoRequest(xid=23)))
    assert error_of(controller.received(), 23) == (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_EPERM)


# --- roles ---------------------------------------------------------------------

def test_roles_and_generation_ids(switch):
    c1, c2 = switch.connect(), switch.connect(name='tcp:127.0.0.1:6654')
    assert switch.send(c1, RoleRequest(MASTER, 10), xid=1) == [RoleReply(MASTER, 10, 1)]
    assert switch.send(c2, RoleRequest(MASTER, 11)) == [RoleReply(MASTER, 11)]
    assert c1.role == SLAVE                             # the new master demotes the old
    assert error_of(switch.send(c1, RoleRequest(MASTER, 9), xid=2), 2) == (
        ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE)
    assert c1.role == SLAVE and c2.role == MASTER
    assert switch.send(c1, RoleRequest(ofp.OFPCR_ROLE_NOCHANGE, 0)) == [RoleReply(SLAVE, 11)]
    assert switch.send(c1, RoleRequest(EQUAL, 0)) == [RoleReply(EQUAL, 11)]  # not checked
    assert c2.role == MASTER
    switch.ofproto.generation_id = (1 << 64) - 1        # the comparison wraps around
    assert switch.send(c1, RoleRequest(SLAVE, 0)) == [RoleReply(SLAVE, 0)]
    assert error_of(switch.send(c1, RoleRequest(4, 0))) == (
        ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_BAD_ROLE)
    reply = ryu_parse(codec.encode(RoleReply(SLAVE, 7, xid=3)))
    assert (reply.role, reply.generation_id) == (SLAVE, 7)


def test_a_slave_may_not_change_state(switch, controller):
    assert switch.send(controller, RoleRequest(SLAVE, 1)) == [RoleReply(SLAVE, 1)]
    for request in (FlowMod(), GroupMod(group_id=1, buckets=(Bucket(actions=(output(2),)),)),
                    PortMod(1, bytes(6)), TableMod(0),
                    MeterMod(meter_id=1, bands=(MeterBand(ofp.OFPMBT_DROP, 10),)),
                    PacketOut(actions=(output(1),), data=udp()),
                    MultipartRequest(ofp.OFPMP_TABLE_FEATURES, body=(TableFeatures(0),))):
        assert error_of(switch.send(controller, request, xid=40), 40) == (
            ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE), request
    assert switch.port(1).frames() == []
    (reply,) = switch.send(controller, MultipartRequest(ofp.OFPMP_DESC))
    assert reply.body.dp_desc == 's1'                   # queries are allowed


def test_table_features_with_a_body_is_refused(switch, controller):
    answers = switch.send(controller, MultipartRequest(ofp.OFPMP_TABLE_FEATURES,
                                                       body=(TableFeatures(0),)))
    assert error_of(answers) == (ofp.OFPET_TABLE_FEATURES_FAILED, ofp.OFPTFFC_EPERM)


def test_async_messages_by_role(switch):
    master, slave = switch.connect(), switch.connect(name='tcp:127.0.0.1:6654')
    switch.send(master, RoleRequest(MASTER, 1))
    switch.send(slave, RoleRequest(SLAVE, 1))
    table_miss_to_controller(switch, master)
    switch.receive(1, udp())
    assert [type(m) for m in master.received()] == [PacketIn]
    assert slave.received() == []                       # slaves get no packet-ins
    switch.ofproto.port_changed(2)
    assert [type(m) for m in master.received()] == [codec.PortStatus]
    assert [type(m) for m in slave.received()] == [codec.PortStatus]


def test_get_and_set_async(switch, controller):
    assert switch.send(controller, GetAsyncRequest(), xid=3) == [
        GetAsyncReply((0b111, 0), (0b111, 0b111), (0b1111, 0), 3)]
    masks = ((0b101, 0b010), (0b011, 0), (0b1000, 0b0001))
    assert switch.send(controller, SetAsync(*masks)) == []
    assert switch.send(controller, GetAsyncRequest()) == [GetAsyncReply(*masks)]
    # packet-in: NO_MATCH yes, ACTION no.
    switch.flow_mod(controller, match=FROM_1, instructions=apply(output(ofp.OFPP_CONTROLLER)))
    table_miss_to_controller(switch, controller)
    switch.receive(1, udp())
    switch.receive(2, udp(2, 1))
    (packet_in,) = controller.received()
    assert packet_in.reason == ofp.OFPR_NO_MATCH and packet_in.match['in_port'] == (2, None)
    # port status: ADD and DELETE yes, MODIFY no.
    switch.ofproto.port_changed(2)
    assert controller.received() == []
    switch.ofproto.port_deleted(2)
    assert [m.reason for m in controller.received()] == [ofp.OFPPR_DELETE]


# --- flow, group, meter, port and table mods -----------------------------------

def test_flow_mod_errors_carry_the_request(switch, controller):
    request = FlowMod(table_id=254, instructions=apply(output(2)), xid=50)
    (error,) = switch.send(controller, request)
    assert (error.type, error.code, error.xid) == (
        ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_TABLE_ID, 50)
    assert error.data == codec.encode(request)[:64]
    assert error_of(switch.send(controller, FlowMod(instructions=apply(('group', 7))), xid=51),
                    51) == (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_GROUP)
    assert error_of(switch.send(controller, FlowMod(instructions=(('meter', 9),)))) == (
        ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_UNKNOWN_METER)
    assert not any(len(table) for table in switch.ofproto.pipeline.tables)


def test_group_mod(switch, controller):
    flood = GroupMod(ofp.OFPGC_ADD, ofp.OFPGT_ALL, 1, (Bucket(actions=(output(2),)),
                                                       Bucket(actions=(output(3),))))
    assert switch.send(controller, flood) == []
    assert error_of(switch.send(controller, flood, xid=60), 60) == (
        ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_GROUP_EXISTS)
    two = GroupMod(ofp.OFPGC_ADD, ofp.OFPGT_INDIRECT, 2, flood.buckets)
    assert error_of(switch.send(controller, two)) == (
        ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_INVALID_GROUP)
    switch.flow_mod(controller, match=FROM_1, flags=ofp.OFPFF_SEND_FLOW_REM,
                    instructions=apply(('group', 1)))
    switch.receive(1, udp())
    assert switch.port(2).frames() == [udp()] and switch.port(3).frames() == [udp()]
    (reply,) = switch.send(controller, MultipartRequest(ofp.OFPMP_GROUP,
                                                        body=GroupStatsRequest(1)))
    assert (reply.body[0].packet_count, reply.body[0].ref_count) == (1, 1)
    # MODIFY: the megaflow is revalidated.
    assert switch.send(controller, GroupMod(ofp.OFPGC_MODIFY, ofp.OFPGT_ALL, 1,
                                            (Bucket(actions=(output(3),)),))) == []
    switch.ofproto.run()
    switch.receive(1, udp())
    assert switch.port(2).frames() == [] and switch.port(3).frames() == [udp()]
    # DELETE takes the rule with it.
    (removed,) = switch.send(controller, GroupMod(ofp.OFPGC_DELETE, group_id=1))
    assert (removed.reason, removed.packet_count) == (ofp.OFPRR_GROUP_DELETE, 2)
    switch.ofproto.run()
    assert switch.dp.flow_dump() == []


def test_meter_mod(switch, controller):
    meter = MeterMod(ofp.OFPMC_ADD, ofp.OFPMF_PKTPS, 1, (MeterBand(ofp.OFPMBT_DROP, 1000),))
    assert switch.send(controller, meter) == []
    assert error_of(switch.send(controller, meter, xid=70), 70) == (
        ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_METER_EXISTS)
    for bad, code in (
            (MeterMod(ofp.OFPMC_MODIFY, ofp.OFPMF_PKTPS, 5, meter.bands),
             ofp.OFPMMFC_UNKNOWN_METER),
            (MeterMod(ofp.OFPMC_ADD, ofp.OFPMF_PKTPS, 0, meter.bands), ofp.OFPMMFC_INVALID_METER),
            (MeterMod(ofp.OFPMC_ADD, 0, 2, meter.bands), ofp.OFPMMFC_BAD_FLAGS),
            (MeterMod(ofp.OFPMC_ADD, ofp.OFPMF_KBPS, 2, ()), ofp.OFPMMFC_BAD_BAND),
            (MeterMod(ofp.OFPMC_ADD, ofp.OFPMF_KBPS, 2, (MeterBand(ofp.OFPMBT_DSCP_REMARK, 5),)),
             ofp.OFPMMFC_BAD_BAND),
            (MeterMod(ofp.OFPMC_ADD, ofp.OFPMF_KBPS, 2, (MeterBand(ofp.OFPMBT_DROP, 0),)),
             ofp.OFPMMFC_BAD_RATE)):
        assert error_of(switch.send(controller, bad)) == (ofp.OFPET_METER_MOD_FAILED, code), bad
    switch.flow_mod(controller, match=FROM_1, flags=ofp.OFPFF_SEND_FLOW_REM,
                    instructions=(('meter', 1), ('apply_actions', (output(2),))))
    switch.receive(1, udp())
    assert switch.dp.flow_dump()[0].actions == (('meter', 1), ('output', 2))
    (removed,) = switch.send(controller, MeterMod(ofp.OFPMC_DELETE, meter_id=ofp.OFPM_ALL))
    assert (removed.reason, removed.packet_count) == (ofp.OFPRR_DELETE, 1)
    assert switch.ofproto.meter_configs == {}
    assert switch.dp.meters.stats(1, 0.0) is None
    switch.ofproto.run()
    assert switch.dp.flow_dump() == []


def test_port_mod_no_fwd_no_packet_in_and_port_down(switch, controller):
    mac = bytes(6)                                      # the fake ports have none
    request = PortMod(2, mac, ofp.OFPPC_NO_FWD, ofp.OFPPC_NO_FWD)
    (status,) = switch.send(controller, request)
    assert (status.reason, status.desc.port_no, status.desc.config) == (
        ofp.OFPPR_MODIFY, 2, ofp.OFPPC_NO_FWD)
    assert switch.send(controller, request) == []        # no change, no PORT_STATUS
    switch.flow_mod(controller, match=FROM_1, instructions=apply(output(ofp.OFPP_FLOOD)))
    switch.ofproto.run()
    switch.receive(1, udp())
    assert odp_outputs(switch.dp.flow_dump()[0].actions) == [3]
    # NO_PACKET_IN on port 3: its table misses stay quiet.
    table_miss_to_controller(switch, controller)
    switch.send(controller, PortMod(3, mac, ofp.OFPPC_NO_PACKET_IN, ofp.OFPPC_NO_PACKET_IN))
    switch.ofproto.run()
    switch.receive(3, udp(3, 1))
    switch.receive(2, udp(2, 1))
    assert [p.match['in_port'] for p in controller.received()] == [(2, None)]
    # PORT_DOWN takes the link down, and up again.
    (status,) = switch.send(controller, PortMod(3, mac, ofp.OFPPC_PORT_DOWN,
                                                ofp.OFPPC_PORT_DOWN))
    assert status.desc.config == ofp.OFPPC_PORT_DOWN | ofp.OFPPC_NO_PACKET_IN
    assert switch.send(controller, PortMod(3, mac, 0, ofp.OFPPC_PORT_DOWN))
    assert switch.admin == [('ut1-eth3', False), ('ut1-eth3', True)]


@pytest.mark.parametrize('request_, code', [
    (PortMod(9, bytes(6), ofp.OFPPC_NO_FWD, ofp.OFPPC_NO_FWD), ofp.OFPPMFC_BAD_PORT),
    (PortMod(1, b'\x02' * 6, ofp.OFPPC_NO_FWD, ofp.OFPPC_NO_FWD), ofp.OFPPMFC_BAD_HW_ADDR),
    (PortMod(1, bytes(6), 1 << 10, 1 << 10), ofp.OFPPMFC_BAD_CONFIG)])
def test_port_mod_errors(switch, controller, request_, code):
    assert error_of(switch.send(controller, request_, xid=80), 80) == (
        ofp.OFPET_PORT_MOD_FAILED, code)
    assert switch.admin == []


def test_table_mod_and_queue_config(switch, controller):
    assert switch.send(controller, TableMod(ofp.OFPTT_ALL)) == []
    assert error_of(switch.send(controller, TableMod(254))) == (
        ofp.OFPET_TABLE_MOD_FAILED, ofp.OFPTMFC_BAD_TABLE)
    assert switch.send(controller, QueueGetConfigRequest(1), xid=4) == [
        QueueGetConfigReply(1, (), 4)]
    assert error_of(switch.send(controller, QueueGetConfigRequest(9))) == (
        ofp.OFPET_QUEUE_OP_FAILED, ofp.OFPQOFC_BAD_PORT)


def test_packet_out_errors(switch, controller):
    out = PacketOut(in_port=1, actions=(('group', 3),), data=udp())
    assert error_of(switch.send(controller, out, xid=90), 90) == (
        ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_GROUP)
    assert switch.send(controller, PacketOut(in_port=1, actions=(output(2),), data=b'xx')) == []
    assert switch.port(2).frames() == []                 # too short to be a frame


def test_async_messages_parse_in_ryu(switch, controller):
    table_miss_to_controller(switch, controller, max_len=20, cookie=5)
    switch.flow_mod(controller, match=FROM_1, flags=ofp.OFPFF_SEND_FLOW_REM, cookie=6,
                    instructions=apply(output(2)))
    raws = []
    controller.send = raws.append
    switch.receive(2, udp(2, 1, size=50))
    switch.ofproto.port_changed(3)
    handlers.handle_message(switch.ofproto, controller, codec.encode(
        FlowMod(command=ofp.OFPFC_DELETE_STRICT, match=FROM_1)))
    packet_in, port_status, flow_removed = (ryu_parse(raw) for raw in raws)
    assert (packet_in.cookie, packet_in.match['in_port'], len(packet_in.data)) == (5, 2, 20)
    assert packet_in.buffer_id != ofp.OFP_NO_BUFFER and packet_in.total_len == 92
    assert port_status.desc.port_no == 3 and port_status.desc.name == b'ut1-eth3'
    assert (flow_removed.cookie, flow_removed.match['in_port']) == (6, 1)
