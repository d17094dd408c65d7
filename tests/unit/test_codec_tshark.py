"""Our encoded messages as Wireshark's openflow_v4 dissector sees them.

One message of every type (and a multipart reply split in three) goes into a
pcap as a TCP stream on port 6653, built with scapy; tshark must dissect
each one with the right type and xid, find the key fields where we put them,
and report nothing malformed and no expert error.
"""

import shutil
import subprocess

import pytest

from mnovs.openflow import ofp
from mnovs.openflow.codec import (
    BarrierReply, BarrierRequest, EchoReply, EchoRequest, ErrorMsg, FeaturesReply,
    FeaturesRequest, FlowMod, FlowRemoved, GetAsyncReply, GetAsyncRequest, GetConfigReply,
    GetConfigRequest, GroupMod, Hello, MeterMod, MultipartReply, MultipartRequest, PacketIn,
    PacketOut, PacketQueue, PortMod, PortStatus, QueueGetConfigReply, QueueGetConfigRequest,
    RoleReply, RoleRequest, SetAsync, SetConfig, TableMod, encode, split_messages)
from mnovs.openflow.messages import Bucket, MeterBand, Port
from mnovs.openflow.multipart import (
    AggregateStats, Desc, FlowStats, FlowStatsRequest, GroupDesc, GroupFeatures, GroupStats,
    MeterConfig, MeterFeatures, MeterMultipartRequest, MeterStats, PortStats, QueueStats,
    TableFeatures, TableStats)

pytestmark = pytest.mark.skipif(shutil.which('tshark') is None, reason='needs tshark')

MATCH = {'in_port': (1, None), 'eth_type': (0x0800, None), 'ip_proto': (17, None),
         'ipv4_src': (0x0a000001, None), 'udp_dst': (53, None)}
ACTIONS = (('set_field', 'vlan_vid', 0x1005), ('push_vlan', 0x8100), ('output', 2, 0))
INSTRUCTIONS = (('apply_actions', ACTIONS), ('write_metadata', 1, 1), ('goto_table', 1))
PORT = Port(1, b'\x02\x00\x00\x00\x00\x01', 's1-eth1', 0, ofp.OFPPS_LIVE, ofp.OFPPF_10GB_FD)
FEATURES = TableFeatures(0, 'classifier', 0, 0, 0, 1000, (
    (ofp.OFPTFPT_INSTRUCTIONS, (1, 3, 4)), (ofp.OFPTFPT_NEXT_TABLES, (1,)),
    (ofp.OFPTFPT_APPLY_ACTIONS, (0, 25)), (ofp.OFPTFPT_MATCH, ('in_port', 'eth_dst'))))
FLOW_STATS = FlowStats(0, 1, 2, 10, 0, 0, 0, 7, 3, 300, MATCH, INSTRUCTIONS)

# (message, sent by the switch?, {tshark field: expected first value})
MESSAGES = [
    (Hello(), True, {'openflow_v4.hello_element.version.bitmap': '00000010'}),
    (Hello(), False, {}),
    (EchoRequest(b'abc'), True, {'openflow_v4.echo.data': '616263'}),
    (EchoReply(b'abc'), False, {}),
    (ErrorMsg(ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_PREREQ, encode(FlowMod())[:64]), True,
     {'openflow_v4.error.type': '4', 'openflow_v4.error.code': '9'}),
    (FeaturesRequest(), False, {}),
    (FeaturesReply(0xabc, 0, 254, 0, 0x4f), True,
     {'openflow_v4.switch_features.datapath_id': '0x0000000000000abc',
      'openflow_v4.switch_features.n_tables': '254'}),
    (GetConfigRequest(), False, {}),
    (GetConfigReply(0, 128), True, {}),
    (SetConfig(0, 0xffff), False, {}),
    (PacketIn(ofp.OFP_NO_BUFFER, 42, ofp.OFPR_ACTION, 1, 9, {'in_port': (3, None)}, bytes(42)),
     True, {'openflow_v4.packet_in.total_len': '42', 'openflow_v4.packet_in.reason': '1',
            'openflow_v4.oxm.field': '0'}),
    (FlowRemoved(7, 10, ofp.OFPRR_DELETE, 0, 1, 2, 0, 0, 3, 300, MATCH), True,
     {'openflow_v4.flow_removed.reason': '2', 'openflow_v4.flow_removed.priority': '10'}),
    (PortStatus(ofp.OFPPR_MODIFY, PORT), True,
     {'openflow_v4.port_status.reason': '2', 'openflow_v4.port.name': 's1-eth1'}),
    (PacketOut(actions=ACTIONS, data=bytes(60)), False,
     {'openflow_v4.packet_out.in_port': str(ofp.OFPP_CONTROLLER),
      'openflow_v4.action.type': '25'}),
    (FlowMod(5, 0, 0, ofp.OFPFC_ADD, 0, 0, 100, match=MATCH, instructions=INSTRUCTIONS), False,
     {'openflow_v4.flowmod.priority': '100', 'openflow_v4.oxm.field': '0',
      'openflow_v4.instruction.type': '4', 'openflow_v4.action.set_field.pad': '00' * 6}),
    (GroupMod(ofp.OFPGC_ADD, ofp.OFPGT_SELECT, 1, (Bucket(1, actions=ACTIONS),)), False, {}),
    (PortMod(1, PORT.hw_addr, ofp.OFPPC_PORT_DOWN, ofp.OFPPC_PORT_DOWN), False, {}),
    (TableMod(0, 0), False, {}),
    (MultipartRequest(ofp.OFPMP_DESC), False, {'openflow_v4.multipart_request.type': '0'}),
    (MultipartRequest(ofp.OFPMP_FLOW, body=FlowStatsRequest(match=MATCH)), False, {}),
    (MultipartRequest(ofp.OFPMP_TABLE_FEATURES, body=(FEATURES,)), False,
     {'openflow_v4.table_features.name': 'classifier'}),
    (MultipartRequest(ofp.OFPMP_METER_CONFIG, body=MeterMultipartRequest()), False, {}),
    (MultipartReply(ofp.OFPMP_DESC, body=Desc('mnovs', 'hw', 'sw', '1', 's1')), True, {}),
    (MultipartReply(ofp.OFPMP_FLOW, body=(FLOW_STATS,)), True,
     {'openflow_v4.multipart_reply.type': '1', 'openflow_v4.flow_stats.priority': '10'}),
    (MultipartReply(ofp.OFPMP_AGGREGATE, body=AggregateStats(1, 2, 3)), True, {}),
    (MultipartReply(ofp.OFPMP_TABLE, body=(TableStats(0, 1, 2, 3),)), True, {}),
    (MultipartReply(ofp.OFPMP_PORT_STATS, body=(PortStats(1, 5, 6),)), True, {}),
    (MultipartReply(ofp.OFPMP_QUEUE, body=(QueueStats(1, 0),)), True, {}),
    (MultipartReply(ofp.OFPMP_GROUP, body=(GroupStats(1, 0, 1, 2, 3, 4, ((1, 2),)),)), True, {}),
    (MultipartReply(ofp.OFPMP_GROUP_DESC, body=(GroupDesc(ofp.OFPGT_ALL, 1, (
        Bucket(actions=ACTIONS),)),)), True, {}),
    (MultipartReply(ofp.OFPMP_GROUP_FEATURES, body=GroupFeatures(15, 1)), True, {}),
    (MultipartReply(ofp.OFPMP_METER, body=(MeterStats(1, 0, 1, 2, 3, 4, ((1, 2),)),)), True, {}),
    (MultipartReply(ofp.OFPMP_METER_CONFIG, body=(MeterConfig(ofp.OFPMF_KBPS, 1, (
        MeterBand(ofp.OFPMBT_DROP, 100),)),)), True, {'openflow_v4.meter_band.rate': '100'}),
    (MultipartReply(ofp.OFPMP_METER_FEATURES, body=MeterFeatures(10, 2, 1, 1, 0)), True, {}),
    (MultipartReply(ofp.OFPMP_TABLE_FEATURES, body=(FEATURES,)), True,
     {'openflow_v4.table_features.name': 'classifier'}),
    (MultipartReply(ofp.OFPMP_PORT_DESC, body=(PORT,)), True,
     {'openflow_v4.port.name': 's1-eth1'}),
    (BarrierRequest(), False, {}),
    (BarrierReply(), True, {}),
    (QueueGetConfigRequest(1), False, {'openflow_v4.queue_get_config_request.port': '1'}),
    (QueueGetConfigReply(1, (PacketQueue(1, 1, ((ofp.OFPQT_MIN_RATE, 10),)),)), True, {}),
    (RoleRequest(ofp.OFPCR_ROLE_MASTER, 3), False,
     {'openflow_v4.role_request.role': '0x00000002'}),
    (RoleReply(ofp.OFPCR_ROLE_MASTER, 3), True,
     {'openflow_v4.role_reply.generation_id': '0x0000000000000003'}),
    (GetAsyncRequest(), False, {}),
    (GetAsyncReply((3, 0), (7, 7), (15, 0)), True,
     {'openflow_v4.async_config.port_status_mask.master': '0x00000007'}),
    (SetAsync((3, 0), (7, 7), (15, 0)), False, {}),
    (MeterMod(ofp.OFPMC_ADD, ofp.OFPMF_KBPS, 1, (MeterBand(ofp.OFPMBT_DSCP_REMARK, 10, 0, 1),)),
     False, {'openflow_v4.meter_band.dscp_remark.prec_level': '1'}),
]

SEGMENT = 1400
FIELDS = ['frame.number', 'openflow_v4.type', 'openflow_v4.xid', '_ws.malformed',
          '_ws.expert.severity']


def write_pcap(path, messages):
    """Each (raw, from_switch) as its own TCP segments in its direction."""
    from scapy.all import IP, TCP, Ether, Raw, wrpcap
    seq = {True: 1000, False: 50000}
    ends = {True: ('10.0.0.2', 6653), False: ('10.0.0.1', 40000)}
    frames = []
    for raw, from_switch in messages:
        (src, sport), (dst, dport) = ends[from_switch], ends[not from_switch]
        for at in range(0, len(raw), SEGMENT):
            frames.append(Ether() / IP(src=src, dst=dst) / TCP(
                sport=sport, dport=dport, flags='PA', seq=seq[from_switch],
                ack=seq[not from_switch]) / Raw(raw[at:at + SEGMENT]))
            seq[from_switch] += len(raw[at:at + SEGMENT])
    wrpcap(str(path), frames)


def tshark(path, fields):
    args = ['tshark', '-r', str(path), '-o', 'tcp.desegment_tcp_streams:TRUE',
            '-d', 'tcp.port==6653,openflow', '-Y', 'openflow_v4', '-T', 'fields',
            '-E', 'occurrence=f', '-E', 'separator=\t']
    for name in fields:
        args += ['-e', name]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=120).stdout
    return [dict(zip(fields, line.split('\t'))) for line in out.splitlines()]


@pytest.fixture(scope='module')
def capture(tmp_path_factory):
    """(pcap path, [(raw, from_switch, expected fields)]) for MESSAGES plus a split reply."""
    entries = []
    for xid, (msg, from_switch, expected) in enumerate(MESSAGES, 1):
        msg.xid = xid
        entries.append((encode(msg), from_switch, expected))
    big = encode(MultipartReply(ofp.OFPMP_FLOW, body=(FLOW_STATS,) * 1000, xid=999))
    parts, _ = split_messages(big)
    assert len(parts) == 3
    for i, raw in enumerate(parts):
        flags = '0x0001' if i < 2 else '0x0000'
        entries.append((raw, True, {'openflow_v4.multipart_reply.flags': flags}))
    path = tmp_path_factory.mktemp('of13') / 'of13.pcap'
    write_pcap(path, [(raw, from_switch) for raw, from_switch, _ in entries])
    return path, entries


def test_every_message_dissects_cleanly(capture):
    path, entries = capture
    rows = tshark(path, FIELDS)
    assert len(rows) == len(entries)
    for row, (raw, _, _) in zip(rows, entries):
        assert row['openflow_v4.type'] == str(raw[1]), row
        assert row['openflow_v4.xid'] == str(int.from_bytes(raw[4:8], 'big')), row
        assert row['_ws.malformed'] == '', row
        assert row['_ws.expert.severity'] in ('', str(0x00400000)), row   # none, or a warning


def test_key_fields(capture):
    path, entries = capture
    names = sorted({name for _, _, expected in entries for name in expected})
    rows = tshark(path, names)
    for row, (_, _, expected) in zip(rows, entries):
        for name, value in expected.items():
            assert row[name] == value, (name, row)


def test_no_expert_errors_at_all(capture):
    path, _ = capture
    out = subprocess.run(['tshark', '-r', str(path), '-d', 'tcp.port==6653,openflow', '-V'],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    assert 'Malformed' not in out
    assert 'Expert Info (Error' not in out
