"""The rest of OpenFlow 1.3 through a whole switch: every set_field, PBB, MPLS
TTL copies, and their errors, with the flow_mods encoded by Ryu.

Each flow_mod is Ryu's encoding, handed to the agent as a controller would
send it (test_ofproto's Switch: codec, handlers, pipeline, xlate, datapath).
Each rewritten frame that comes out is parsed by scapy, which checks the
field and recomputes every checksum it knows (IPv4, TCP, UDP, ICMP, ICMPv6,
SCTP's CRC32c): the frame's must equal scapy's. PBB frames are also decoded
by tshark.
"""

import shutil
import subprocess

import pytest
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr, IPv6)
from scapy.layers.l2 import ARP, Dot1AD, Dot1AH, Dot1Q, Ether
from scapy.layers.sctp import SCTP, SCTPChunkData
from scapy.packet import NoPayload, Raw, raw
from scapy.utils import wrpcap

from mnovs.openflow import codec, ofp
from mnovs.openflow.codec import ErrorMsg, PacketIn
from mnovs.ofagent.handlers import handle_message
from mnovs.dp.actions import validate_actions
from test_codec import ryu_of13, ryu_parse, ryu_serialize
from test_ofproto import Switch
from test_xlate import Switch as XlateSwitch
from test_xlate import mask, out

MACS = {'src': '00:00:00:00:00:01', 'dst': '00:00:00:00:00:02'}
NEW_MAC = '02:aa:bb:cc:dd:ee'
PAYLOAD = Raw(b'payload-' * 4)


def eth():
    return Ether(**MACS)


# Frames, one per header set_field rewrites.
TCP4 = eth() / IP(src='10.0.0.1', dst='10.0.0.2') / TCP(sport=1000, dport=80) / PAYLOAD
UDP4 = eth() / IP(src='10.0.0.1', dst='10.0.0.2') / UDP(sport=30000, dport=40000) / PAYLOAD
SCTP4 = (eth() / IP(src='10.0.0.1', dst='10.0.0.2') / SCTP(sport=1000, dport=2000)
         / SCTPChunkData(data=b'sctp data'))
ICMP4 = eth() / IP(src='10.0.0.1', dst='10.0.0.2') / ICMP(type=8, code=0, id=7) / PAYLOAD
TAGGED = (eth() / Dot1Q(vlan=5, prio=1) / IP(src='10.0.0.1', dst='10.0.0.2')
          / UDP(sport=30000, dport=40000) / PAYLOAD)
TCP6 = eth() / IPv6(src='fe80::1', dst='fe80::2') / TCP(sport=1000, dport=80) / PAYLOAD
SCTP6 = (eth() / IPv6(src='fe80::1', dst='fe80::2') / SCTP(sport=1000, dport=2000)
         / SCTPChunkData(data=b'sctp data'))
ECHO6 = eth() / IPv6(src='fe80::1', dst='fe80::2') / ICMPv6EchoRequest(id=7) / PAYLOAD
NS = (eth() / IPv6(src='fe80::1', dst='ff02::1:ff00:2') / ICMPv6ND_NS(tgt='fe80::2')
      / ICMPv6NDOptSrcLLAddr(lladdr=MACS['src']))
NA = (eth() / IPv6(src='fe80::2', dst='fe80::1') / ICMPv6ND_NA(tgt='fe80::2', R=0, S=1, O=1)
      / ICMPv6NDOptDstLLAddr(lladdr=MACS['dst']))
ARP4 = eth() / ARP(op=1, hwsrc=MACS['src'], psrc='10.0.0.1', pdst='10.0.0.2')
LABELLED = (eth() / MPLS(label=100, cos=1, s=1, ttl=64) / IP(src='10.0.0.1', dst='10.0.0.2', ttl=9)
            / UDP() / PAYLOAD)
TWO_LABELS = (eth() / MPLS(label=100, s=0, ttl=64) / MPLS(label=200, s=1, ttl=5)
              / IP(src='10.0.0.1', ttl=9) / UDP() / PAYLOAD)
PBB = eth() / Dot1AH(isid=0x1234) / Ether(src='00:00:00:00:00:0a', dst='00:00:00:00:00:0b') / IP()

# (Ryu set_field keyword, value, frame, (scapy layer, attribute, value it must have after)).
SET_FIELDS = [
    ('eth_dst', NEW_MAC, TCP4, (Ether, 'dst', NEW_MAC)),
    ('eth_src', NEW_MAC, ARP4, (Ether, 'src', NEW_MAC)),
    ('vlan_vid', 0x1000 | 7, TAGGED, (Dot1Q, 'vlan', 7)),
    ('vlan_pcp', 6, TAGGED, (Dot1Q, 'prio', 6)),
    ('ip_dscp', 46, TCP4, (IP, 'tos', 46 << 2)),
    ('ip_dscp', 10, TCP6, (IPv6, 'tc', 10 << 2)),
    ('ip_ecn', 3, UDP4, (IP, 'tos', 3)),
    ('ipv4_src', '192.168.7.1', TCP4, (IP, 'src', '192.168.7.1')),
    ('ipv4_dst', '192.168.7.2', UDP4, (IP, 'dst', '192.168.7.2')),
    ('ipv4_dst', '192.168.7.3', ICMP4, (IP, 'dst', '192.168.7.3')),
    ('ipv4_src', '192.168.7.4', SCTP4, (IP, 'src', '192.168.7.4')),
    ('tcp_src', 4321, TCP4, (TCP, 'sport', 4321)),
    ('tcp_dst', 8080, TCP6, (TCP, 'dport', 8080)),
    ('udp_src', 5353, UDP4, (UDP, 'sport', 5353)),
    ('udp_dst', 5354, UDP4, (UDP, 'dport', 5354)),
    ('sctp_src', 3868, SCTP4, (SCTP, 'sport', 3868)),
    ('sctp_dst', 2905, SCTP6, (SCTP, 'dport', 2905)),
    ('icmpv4_type', 0, ICMP4, (ICMP, 'type', 0)),
    ('icmpv4_code', 3, ICMP4, (ICMP, 'code', 3)),
    ('arp_op', 2, ARP4, (ARP, 'op', 2)),
    ('arp_spa', '10.9.9.1', ARP4, (ARP, 'psrc', '10.9.9.1')),
    ('arp_tpa', '10.9.9.2', ARP4, (ARP, 'pdst', '10.9.9.2')),
    ('arp_sha', NEW_MAC, ARP4, (ARP, 'hwsrc', NEW_MAC)),
    ('arp_tha', NEW_MAC, ARP4, (ARP, 'hwdst', NEW_MAC)),
    ('ipv6_src', '2001:db8::1', TCP6, (IPv6, 'src', '2001:db8::1')),
    ('ipv6_dst', '2001:db8::2', ECHO6, (IPv6, 'dst', '2001:db8::2')),
    ('ipv6_src', '2001:db8::3', SCTP6, (IPv6, 'src', '2001:db8::3')),
    ('ipv6_flabel', 0x12345, TCP6, (IPv6, 'fl', 0x12345)),
    ('icmpv6_type', 129, ECHO6, (ICMPv6EchoReply, 'type', 129)),
    ('icmpv6_code', 4, ECHO6, (ICMPv6EchoRequest, 'code', 4)),
    ('ipv6_nd_target', 'fe80::99', NS, (ICMPv6ND_NS, 'tgt', 'fe80::99')),
    ('ipv6_nd_target', 'fe80::98', NA, (ICMPv6ND_NA, 'tgt', 'fe80::98')),
    ('ipv6_nd_sll', NEW_MAC, NS, (ICMPv6NDOptSrcLLAddr, 'lladdr', NEW_MAC)),
    ('ipv6_nd_tll', NEW_MAC, NA, (ICMPv6NDOptDstLLAddr, 'lladdr', NEW_MAC)),
    ('mpls_label', 0xabcde, LABELLED, (MPLS, 'label', 0xabcde)),
    ('mpls_tc', 5, LABELLED, (MPLS, 'cos', 5)),
    ('mpls_bos', 0, LABELLED, (MPLS, 's', 0)),
    ('pbb_isid', 0xfedcba, PBB, (Dot1AH, 'isid', 0xfedcba)),
]

# The prerequisites a set_field needs in the rule's match (Ryu keywords), by frame.
_PREREQS = [
    (TCP4, {'eth_type': 0x0800, 'ip_proto': 6}), (UDP4, {'eth_type': 0x0800, 'ip_proto': 17}),
    (SCTP4, {'eth_type': 0x0800, 'ip_proto': 132}), (ICMP4, {'eth_type': 0x0800, 'ip_proto': 1}),
    (TAGGED, {'vlan_vid': (0x1000, 0x1000)}), (TCP6, {'eth_type': 0x86dd, 'ip_proto': 6}),
    (SCTP6, {'eth_type': 0x86dd, 'ip_proto': 132}),
    (ECHO6, {'eth_type': 0x86dd, 'ip_proto': 58}),
    (NS, {'eth_type': 0x86dd, 'ip_proto': 58, 'icmpv6_type': 135}),
    (NA, {'eth_type': 0x86dd, 'ip_proto': 58, 'icmpv6_type': 136}),
    (ARP4, {'eth_type': 0x0806}), (LABELLED, {'eth_type': 0x8847}), (PBB, {'eth_type': 0x88e7}),
]
PREREQS = {raw(frame): match for frame, match in _PREREQS}


# --- helpers -------------------------------------------------------------------

@pytest.fixture
def switch():
    return Switch()


@pytest.fixture
def controller(switch):
    return switch.connect()


def ryu_flow_mod(actions, match=None, priority=100, table_id=0, write=False):
    """Ryu's encoding of a flow_mod applying (or writing) Ryu actions."""
    o, p, dp = ryu_of13()
    kind = o.OFPIT_WRITE_ACTIONS if write else o.OFPIT_APPLY_ACTIONS
    msg = p.OFPFlowMod(dp, table_id=table_id, priority=priority,
                       match=p.OFPMatch(**(match or {})),
                       instructions=[p.OFPInstructionActions(kind, actions)])
    return ryu_serialize(msg, 0x77)


def send_raw(switch, channel, data):
    handle_message(switch.ofproto, channel, data)
    return channel.received()


def install(switch, channel, actions, **kw):
    answers = send_raw(switch, channel, ryu_flow_mod(actions, **kw))
    assert not answers, answers


def error_of(answers):
    (error,) = answers
    assert isinstance(error, ErrorMsg), answers
    assert error.xid == 0x77
    return error.type, error.code


def through(switch, frame, in_port=1, out_port=2):
    """Send a frame in; return the one frame that comes out of out_port."""
    switch.receive(in_port, raw(frame))
    (out,) = switch.port(out_port).frames()
    return out


def layers(pkt):
    layer = pkt
    while not isinstance(layer, NoPayload):
        yield layer
        layer = layer.payload


def assert_checksums_right(frame):
    """Every checksum scapy knows in frame equals scapy's own computation."""
    checked = []
    for depth, layer in enumerate(layers(Ether(frame))):
        for name in ('chksum', 'cksum'):
            if name not in layer.fields or isinstance(layer, UDP) and layer.chksum == 0:
                continue
            fresh = Ether(frame)
            delattr(list(layers(fresh))[depth], name)
            recomputed = getattr(list(layers(Ether(raw(fresh))))[depth], name)
            assert layer.fields[name] == recomputed, (layer.name, name)
            checked.append(layer.name)
    return checked


# --- set_field -----------------------------------------------------------------

@pytest.mark.parametrize('name, value, frame, expect', SET_FIELDS,
                         ids=[f'{case[0]}-{i}' for i, case in enumerate(SET_FIELDS)])
def test_set_field_rewrites_with_right_checksums(switch, controller, name, value, frame, expect):
    _, p, _ = ryu_of13()
    install(switch, controller, [p.OFPActionSetField(**{name: value}), p.OFPActionOutput(2)],
            match={'in_port': 1, **PREREQS[raw(frame)]})
    before = Ether(raw(frame))
    out = Ether(through(switch, frame))
    layer, attr, want = expect
    assert out.haslayer(layer), out.summary()
    assert getattr(out[layer], attr) == want
    checked = assert_checksums_right(raw(out))
    if (layer, attr) != (MPLS, 's'):        # with BoS clear, scapy reads no IP behind
        assert len(checked) == len(assert_checksums_right(raw(frame)))     # none lost
    # Nothing else changed: put the field back by hand and compare the bytes.
    if layer in before:
        setattr(out[layer], attr, getattr(before[layer], attr))
        for header in layers(out):
            for csum in ('chksum', 'cksum'):
                if csum in header.fields:
                    delattr(header, csum)
        assert raw(Ether(raw(out))) == raw(before)


def test_every_settable_field_has_a_case():
    from mnovs.ofagent.match import SET_FIELDS as SETTABLE
    metadata = {'tunnel_id', 'tun_ipv4_src', 'tun_ipv4_dst'}      # not in the packet
    assert {case[0] for case in SET_FIELDS} == set(SETTABLE) - metadata


def test_set_field_in_the_action_set(switch, controller):
    _, p, _ = ryu_of13()
    install(switch, controller, [p.OFPActionSetField(icmpv4_type=0), p.OFPActionOutput(2)],
            match={'in_port': 1, 'eth_type': 0x0800, 'ip_proto': 1}, write=True)
    out = Ether(through(switch, ICMP4))
    assert out[ICMP].type == 0 and 'ICMP' in assert_checksums_right(raw(out))


def test_set_field_on_a_frame_without_the_field_does_nothing(switch, controller):
    _, p, _ = ryu_of13()
    install(switch, controller, [p.OFPActionSetField(ipv6_nd_sll=NEW_MAC),
                                 p.OFPActionSetField(icmpv4_code=9), p.OFPActionOutput(2)])
    assert through(switch, NA) == raw(NA)          # an advertisement has no sll
    assert through(switch, UDP4) == raw(UDP4)


def test_sctp_crc_after_address_and_port_rewrites(switch, controller):
    _, p, _ = ryu_of13()
    install(switch, controller, [p.OFPActionSetField(ipv4_dst='10.1.1.1'),
                                 p.OFPActionSetField(sctp_dst=9), p.OFPActionOutput(2)],
            match={'in_port': 1, **PREREQS[raw(SCTP4)]})
    out = Ether(through(switch, SCTP4))
    assert (out[IP].dst, out[SCTP].dport) == ('10.1.1.1', 9)
    assert assert_checksums_right(raw(out)) == ['IP', 'SCTP']


# --- set_field errors (Ryu's encoding of each) ---------------------------------

@pytest.mark.parametrize('kw, code', [
    ({'eth_type': 0x86dd}, ofp.OFPBAC_BAD_SET_TYPE),   # would relabel the payload
    ({'ip_proto': 17}, ofp.OFPBAC_BAD_SET_TYPE),       # likewise
    ({'ipv6_exthdr': 1}, ofp.OFPBAC_BAD_SET_TYPE),     # not a header field
    ({'in_port': 3}, ofp.OFPBAC_BAD_SET_TYPE),         # pipeline fields (spec 7.2.5)
    ({'in_phy_port': 3}, ofp.OFPBAC_BAD_SET_TYPE),
    ({'metadata': 3}, ofp.OFPBAC_BAD_SET_TYPE),
    ({'vlan_pcp': 8}, ofp.OFPBAC_BAD_SET_ARGUMENT),    # wider than the field
    ({'mpls_bos': 2}, ofp.OFPBAC_BAD_SET_ARGUMENT),
    ({'ipv6_flabel': 1 << 20}, ofp.OFPBAC_BAD_SET_ARGUMENT),
    ({'arp_op': 300}, ofp.OFPBAC_BAD_SET_ARGUMENT),    # the key holds opcodes < 256
])
def test_set_field_errors(switch, controller, kw, code):
    _, p, _ = ryu_of13()
    data = ryu_flow_mod([p.OFPActionSetField(**kw), p.OFPActionOutput(2)])
    assert error_of(send_raw(switch, controller, data)) == (ofp.OFPET_BAD_ACTION, code)
    assert not any(len(table) for table in switch.ofproto.pipeline.tables)


def test_masked_set_field_is_bad_argument(switch, controller):
    # OF1.3 set_field carries no mask; Ryu will not encode one, so its
    # encoding of ipv4_src=10.0.0.1 gets the hasmask bit and a mask by hand.
    _, p, _ = ryu_of13()
    data = ryu_flow_mod([p.OFPActionSetField(ipv4_src='10.0.0.1'), p.OFPActionOutput(2)])
    plain = bytes.fromhex('80001604' '0a000001' '00000000')
    masked = bytes.fromhex('80001708' '0a000001' 'ff000000')
    assert data.count(plain) == 1
    data = data.replace(plain, masked)
    assert error_of(send_raw(switch, controller, data)) == (
        ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_SET_ARGUMENT)


def test_push_pbb_with_another_ethertype_is_bad_argument(switch, controller):
    _, p, _ = ryu_of13()
    data = ryu_flow_mod([p.OFPActionPushPbb(0x8100), p.OFPActionOutput(2)])
    assert error_of(send_raw(switch, controller, data)) == (
        ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_ARGUMENT)


# --- PBB -----------------------------------------------------------------------

def tshark_fields(tmp_path, frames, fields):
    path = tmp_path / 'frames.pcap'
    wrpcap(str(path), [Ether(frame) for frame in frames])
    args = ['tshark', '-r', str(path), '-T', 'fields', '-E', 'separator=\t']
    for name in fields:
        args += ['-e', name]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=120).stdout
    return [dict(zip(fields, line.split('\t'))) for line in out.splitlines()]


@pytest.mark.skipif(shutil.which('tshark') is None, reason='needs tshark')
@pytest.mark.parametrize('frame', [UDP4, TAGGED, ARP4], ids=['udp', 'tagged', 'arp'])
def test_push_pbb_then_pop_pbb_gives_the_frame_back(switch, controller, tmp_path, frame):
    _, p, _ = ryu_of13()
    install(switch, controller, [p.OFPActionPushPbb(0x88e7),
                                 p.OFPActionSetField(pbb_isid=0xabcdef),
                                 p.OFPActionSetField(eth_dst='02:00:00:00:0b:0b'),
                                 p.OFPActionOutput(2)], match={'in_port': 1})
    install(switch, controller, [p.OFPActionPopPbb(), p.OFPActionOutput(3)],
            match={'in_port': 2, 'eth_type': 0x88e7, 'pbb_isid': 0xabcdef})
    original = raw(frame)
    backbone = through(switch, frame)
    assert len(backbone) == len(original) + 18
    (decoded,) = tshark_fields(tmp_path, [backbone], [
        'eth.dst', 'eth.src', 'eth.type', 'ieee8021ah.isid', 'ieee8021ah.priority',
        'ieee8021ah.cdst', 'ieee8021ah.csrc', '_ws.expert'])
    assert decoded == {
        'eth.dst': '02:00:00:00:0b:0b', 'eth.src': MACS['src'], 'eth.type': '0x88e7',
        'ieee8021ah.isid': str(0xabcdef),
        'ieee8021ah.priority': '1' if frame is TAGGED else '0',    # I-PCP from the VLAN PCP
        'ieee8021ah.cdst': MACS['dst'], 'ieee8021ah.csrc': MACS['src'], '_ws.expert': ''}
    assert backbone[18:] == original
    assert through(switch, backbone, in_port=2, out_port=3) == original
    megaflows = switch.ofproto.dp.flow_dump()
    assert {('push_pbb', 1 << 29 if frame is TAGGED else 0) in flow.actions or
            ('pop_pbb',) in flow.actions for flow in megaflows} == {True}


def test_push_pbb_on_a_pbb_frame_keeps_the_isid(switch, controller):
    _, p, _ = ryu_of13()
    install(switch, controller, [p.OFPActionPushPbb(0x88e7), p.OFPActionOutput(2)])
    out = Ether(through(switch, PBB))
    assert out[Dot1AH].isid == 0x1234 and out[Dot1AH].payload[Dot1AH].isid == 0x1234


def test_pop_pbb_on_another_frame_does_nothing(switch, controller):
    _, p, _ = ryu_of13()
    install(switch, controller, [p.OFPActionPopPbb(), p.OFPActionOutput(2)])
    assert through(switch, UDP4) == raw(UDP4)


# --- MPLS TTL ------------------------------------------------------------------

def test_copy_ttl_in_to_the_ip_header(switch, controller):
    _, p, _ = ryu_of13()
    install(switch, controller, [p.OFPActionCopyTtlIn(), p.OFPActionPopMpls(0x0800),
                                 p.OFPActionOutput(2)], match={'eth_type': 0x8847})
    out = Ether(through(switch, LABELLED))
    assert out[IP].ttl == 64
    assert assert_checksums_right(raw(out)) == ['IP', 'UDP']


def label_ttls(frame):
    return [layer.ttl for layer in layers(Ether(frame)) if isinstance(layer, MPLS)]


@pytest.mark.parametrize('action, ttls', [('OFPActionCopyTtlIn', [64, 64]),
                                          ('OFPActionCopyTtlOut', [5, 5])])
def test_copy_ttl_between_labels(switch, controller, action, ttls):
    _, p, _ = ryu_of13()
    install(switch, controller, [getattr(p, action)(), p.OFPActionOutput(2)],
            match={'eth_type': 0x8847})
    assert label_ttls(raw(TWO_LABELS)) == [64, 5]
    assert label_ttls(through(switch, TWO_LABELS)) == ttls


def test_copy_ttl_out_after_set_mpls_ttl_commits_first(switch, controller):
    _, p, _ = ryu_of13()
    install(switch, controller, [p.OFPActionSetMplsTtl(33), p.OFPActionOutput(2),
                                 p.OFPActionCopyTtlOut(), p.OFPActionOutput(3)],
            match={'eth_type': 0x8847})
    switch.receive(1, raw(TWO_LABELS))
    (first,), (second,) = switch.port(2).frames(), switch.port(3).frames()
    assert (label_ttls(first), label_ttls(second)) == ([33, 5], [5, 5])


def test_copy_ttl_out_from_the_ip_header(switch, controller):
    _, p, _ = ryu_of13()
    install(switch, controller, [p.OFPActionCopyTtlOut(), p.OFPActionOutput(2)],
            match={'eth_type': 0x8847})
    out = Ether(through(switch, LABELLED))
    assert out[MPLS].ttl == 9 and out[IP].ttl == 9


def test_dec_mpls_ttl_to_zero_is_a_packet_in_with_invalid_ttl(switch, controller):
    _, p, _ = ryu_of13()
    install(switch, controller, [p.OFPActionDecMplsTtl(), p.OFPActionOutput(2)],
            match={'eth_type': 0x8847})
    o, _, _ = ryu_of13()
    expired = eth() / MPLS(label=100, s=1, ttl=1) / IP() / UDP()
    switch.receive(1, raw(expired))
    assert switch.port(2).frames() == []
    (packet_in,) = controller.received()
    assert isinstance(packet_in, PacketIn) and packet_in.reason == o.OFPR_INVALID_TTL
    out = Ether(through(switch, LABELLED))
    assert out[MPLS].ttl == 63


def test_set_mpls_ttl(switch, controller):
    _, p, _ = ryu_of13()
    install(switch, controller, [p.OFPActionSetMplsTtl(7), p.OFPActionOutput(2)],
            match={'eth_type': 0x8847})
    assert Ether(through(switch, LABELLED))[MPLS].ttl == 7


# --- PBB in group buckets: each bucket sees the packet as it came --------------

def ryu_group_all(buckets):
    o, p, dp = ryu_of13()
    msg = p.OFPGroupMod(dp, o.OFPGC_ADD, o.OFPGT_ALL, 1,
                        [p.OFPBucket(actions=actions) for actions in buckets])
    return ryu_serialize(msg, 0x78)


@pytest.mark.parametrize('frame, first', [
    (UDP4, lambda p: [p.OFPActionPushPbb(0x88e7), p.OFPActionSetField(pbb_isid=5)]),
    (PBB, lambda p: [p.OFPActionPopPbb()]),
    (PBB, lambda p: [p.OFPActionSetField(eth_src=NEW_MAC), p.OFPActionPopPbb()]),
    (eth() / Dot1Q(vlan=9, prio=2) / Dot1AH(isid=0x77) / Ether() / IP(),
     lambda p: [p.OFPActionPopPbb()]),
], ids=['push', 'pop', 'rewrite-then-pop', 'pop-behind-a-b-tag'])
def test_the_next_bucket_gets_the_frame_back(switch, controller, frame, first):
    _, p, _ = ryu_of13()
    assert not send_raw(switch, controller, ryu_group_all(
        [first(p) + [p.OFPActionOutput(2)], [p.OFPActionOutput(3)]]))
    install(switch, controller, [p.OFPActionGroup(1)], match={'in_port': 1})
    switch.receive(1, raw(frame))
    (changed,), (same,) = switch.port(2).frames(), switch.port(3).frames()
    assert changed != raw(frame) and same == raw(frame)


# --- what translations read (the megaflow masks) -------------------------------

def test_push_pbb_reads_only_the_ethertype_and_the_pcp():
    sw = XlateSwitch()
    sw.add({'in_port': (1, None)}, [('push_pbb', 0x88e7), out(2)])
    result = sw.xlate(eth_type=0x0800, vlan_tci=0x1000 | 3 << 13 | 5, vlan_tpid=0x8100)
    assert result.actions == (('push_pbb', 3 << 29), ('output', 2))
    assert result.mask == mask('eth_type', vlan_tci=0xf000)
    validate_actions(result.actions)


def test_pbb_isid_matches_masked_and_set_field_reads_nothing_more():
    sw = XlateSwitch()
    sw.add({'eth_type': (0x88e7, None), 'pbb_isid': (0x1200, 0xff00)},
           [('set_field', 'pbb_isid', 0x99), out(2)])
    result = sw.xlate(eth_type=0x88e7, pbb_itag=0x7 << 29 | 0x1234)
    assert result.actions == (('set_masked', 'pbb_itag', (0x99).to_bytes(4, 'big'),
                                b'\x00\xff\xff\xff'), ('output', 2))
    assert result.mask == mask('eth_type', pbb_itag=0xff00)
    assert sw.xlate(eth_type=0x88e7, pbb_itag=0x1334).actions == ()


# --- masked VLAN matches (Ryu's encoding), every kind of frame -----------------

UNTAGGED = eth() / IP() / UDP(sport=30000, dport=40000)
VLAN_FRAMES = {
    'untagged': UNTAGGED,
    'vid0': eth() / Dot1Q(vlan=0, prio=3) / IP() / UDP(sport=30000, dport=40000),
    'vid4': eth() / Dot1Q(vlan=4) / IP() / UDP(sport=30000, dport=40000),
    'vid5': eth() / Dot1Q(vlan=5) / IP() / UDP(sport=30000, dport=40000),
    'vid6': eth() / Dot1Q(vlan=6) / IP() / UDP(sport=30000, dport=40000),
    's-vid5': eth() / Dot1AD(vlan=5) / Dot1Q(vlan=9) / IP() / UDP(sport=30000, dport=40000),
}


@pytest.mark.parametrize('vlan_vid, matched', [
    (0x0000, {'untagged'}),                                     # OFPVID_NONE
    ((0x1000, 0x1000), {'vid0', 'vid4', 'vid5', 'vid6', 's-vid5'}),    # any tag
    (0x1005, {'vid5', 's-vid5'}),                              # that VID (outer tag)
    (0x1000, {'vid0'}),                                         # priority-tagged
    ((0x0000, 0x1000), {'untagged'}),                           # "no tag", masked
    ((0x1005, 0x1fff), {'vid5', 's-vid5'}),                     # all-ones mask: exact
    ((0x1004, 0x1ffe), {'vid4', 'vid5', 's-vid5'}),             # VID bits, tagged
    ((0x0004, 0x0ffe), {'vid4', 'vid5', 's-vid5'}),             # VID bits, tag or not
    ((0x0000, 0x0fff), {'untagged', 'vid0'}),                   # VID 0: no tag reads 0
    ((0x1000, 0x1001), {'vid0', 'vid4', 'vid6'}),               # even VIDs, tagged
    ((0x0001, 0x0001), {'vid5', 's-vid5'}),                     # odd VIDs
])
def test_masked_vlan_matches(switch, controller, vlan_vid, matched):
    _, p, _ = ryu_of13()
    install(switch, controller, [p.OFPActionOutput(2)], match={'vlan_vid': vlan_vid})
    seen = set()
    for name, frame in VLAN_FRAMES.items():
        switch.receive(1, raw(frame))
        if switch.port(2).frames():
            seen.add(name)
    assert seen == matched
    # Each megaflow covers only frames that get its actions (checked by
    # translating every frame again).
    assert_no_stale_megaflow_for(switch, VLAN_FRAMES.values())


def assert_no_stale_megaflow_for(switch, frames):
    from mnovs.dp.flow import flow_extract, md_of
    from mnovs.ofagent.xlate import xlate
    for frame in frames:
        key, _ = flow_extract(raw(frame), md_of(1))
        key_int = int.from_bytes(key, 'big')
        for flow in switch.dp.flow_dump():
            if key_int & int.from_bytes(flow.mask, 'big') == flow.key_int:
                assert xlate(switch.ofproto.ctx, key).actions == flow.actions


@pytest.mark.parametrize('match, code', [
    ({'vlan_vid': 0x0005}, ofp.OFPBMC_BAD_VALUE),               # a VID, exactly "no tag"
    ({'vlan_vid': (0x0005, 0x1fff)}, ofp.OFPBMC_BAD_VALUE),     # the same, masked all-ones
    ({'vlan_vid': (0x1000, 0x1000), 'vlan_pcp': 8}, ofp.OFPBMC_BAD_VALUE),
    ({'vlan_vid': 0x2005}, ofp.OFPBMC_BAD_VALUE),               # beyond 13 bits
    ({'vlan_vid': (0x0004, 0x0ffe), 'vlan_pcp': 1}, ofp.OFPBMC_BAD_PREREQ),  # tag not required
    ({'vlan_vid': 0x0000, 'vlan_pcp': 1}, ofp.OFPBMC_BAD_PREREQ),
])
def test_bad_vlan_matches(switch, controller, match, code):
    _, p, _ = ryu_of13()
    assert error_of(send_raw(switch, controller, ryu_flow_mod([p.OFPActionOutput(2)],
                                                              match=match))) == (
        ofp.OFPET_BAD_MATCH, code)


def test_set_field_vlan_vid_needs_ofpvid_present(switch, controller):
    _, p, _ = ryu_of13()
    data = ryu_flow_mod([p.OFPActionSetField(vlan_vid=5), p.OFPActionOutput(2)])
    assert error_of(send_raw(switch, controller, data)) == (
        ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_SET_ARGUMENT)


# --- table statistics: real lookups, cached ones included -------------------------

def ryu_table_stats(switch, channel):
    """Table stats as Ryu parses our reply: {table_id: (active, lookup, matched)}."""
    _, p, dp = ryu_of13()
    handle_message(switch.ofproto, channel, ryu_serialize(p.OFPTableStatsRequest(dp, 0), 9))
    raws, _ = codec.split_messages(channel.out)
    channel.out.clear()
    stats = {}
    for data in raws:
        for entry in ryu_parse(bytes(data)).body:
            stats[entry.table_id] = (entry.active_count, entry.lookup_count,
                                     entry.matched_count)
    return stats


def udp_to(dport):
    return raw(eth() / IP(src='10.0.0.1', dst='10.0.0.2') / UDP(sport=30000, dport=dport))


def test_table_stats_count_cached_packets_and_misses(switch, controller):
    o, p, dp = ryu_of13()
    assert not send_raw(switch, controller, ryu_serialize(p.OFPFlowMod(
        dp, table_id=0, priority=1, match=p.OFPMatch(in_port=1),
        instructions=[p.OFPInstructionGotoTable(1)]), 1))
    install(switch, controller, [p.OFPActionOutput(2)], table_id=1,
            match={'eth_type': 0x0800, 'ip_proto': 17, 'udp_dst': 9})
    for dport in (9, 9, 9, 8, 8):          # 3 hits in table 1, 2 misses there
        switch.receive(1, udp_to(dport))
    switch.receive(2, udp_to(9))            # a miss in table 0
    assert len(switch.dp.flow_dump()) == 3  # an upcall each, the rest cached
    stats = ryu_table_stats(switch, controller)
    assert len(stats) == 254
    assert stats[0] == (1, 6, 5) and stats[1] == (1, 5, 3)
    assert all(entry == (0, 0, 0) for table_id, entry in stats.items() if table_id > 1)
    switch.dp.flow_flush()                  # gone megaflows keep what they counted
    switch.receive(1, udp_to(9))
    assert ryu_table_stats(switch, controller)[1] == (1, 6, 4)
    assert ryu_table_stats(switch, controller)[1] == (1, 6, 4)     # nothing twice


def test_table_stats_count_packet_outs_through_the_tables(switch, controller):
    o, p, dp = ryu_of13()
    install(switch, controller, [p.OFPActionOutput(2)], match={'in_port': 1})
    msg = p.OFPPacketOut(dp, buffer_id=o.OFP_NO_BUFFER, in_port=1,
                         actions=[p.OFPActionOutput(o.OFPP_TABLE)], data=udp_to(9))
    assert not send_raw(switch, controller, ryu_serialize(msg, 3))
    assert switch.port(2).frames() == [udp_to(9)]
    assert ryu_table_stats(switch, controller)[0] == (1, 1, 1)


def test_a_rule_sending_elsewhere_makes_its_megaflows_stale(switch, controller):
    # Same rules hit, same actions (drop), other table: the table counts differ.
    o, p, dp = ryu_of13()
    goto = [p.OFPInstructionGotoTable(1)]
    assert not send_raw(switch, controller, ryu_serialize(p.OFPFlowMod(
        dp, priority=1, match=p.OFPMatch(in_port=1), instructions=goto), 1))
    switch.receive(1, udp_to(9))
    assert not send_raw(switch, controller, ryu_serialize(p.OFPFlowMod(
        dp, command=o.OFPFC_MODIFY, match=p.OFPMatch(in_port=1),
        instructions=[p.OFPInstructionGotoTable(2)]), 2))
    switch.ofproto.run()
    switch.receive(1, udp_to(9))
    stats = ryu_table_stats(switch, controller)
    assert (stats[1][1], stats[2][1]) == (1, 1)


def test_action_set_pushes_pbb_before_vlan(switch, controller):
    # OF1.3 5.10: push-PBB runs before push-VLAN whatever the order written,
    # so the tag lands in the backbone header (a B-TAG), not the customer's.
    _, p, _ = ryu_of13()
    install(switch, controller, [p.OFPActionPushVlan(0x88a8), p.OFPActionOutput(2),
                                 p.OFPActionPushPbb(0x88e7)], write=True)
    out = Ether(through(switch, UDP4))
    assert out.type == 0x88a8 and out[Dot1AD].type == 0x88e7
    assert raw(out[Dot1AH].payload) == raw(UDP4)
