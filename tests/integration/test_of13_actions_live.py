"""OF1.3 rewrites on the wire: Ryu-encoded flow_mods on a live pyovs switch.

A controller's flow_mods (Ryu's encoding, sent over the switch's passive
OpenFlow listener) rewrite ICMP, SCTP, ND, UDP/IPv6, TCP, MPLS and PBB
frames that h1 sends with scapy; h2 captures what comes out with tcpdump.
Scapy recomputes every checksum of each captured frame (the frame's must
equal it), and tshark decodes the PBB I-TAG. The PBB frame then goes back
from h2 through pop_pbb and must reach h1 as h1 sent it, byte for byte.
ovs-ofctl dump-tables shows the lookups and matches of table 0.
"""

import re
import socket
import struct
import subprocess
import sys

from mininet.topo import SingleSwitchTopo
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import Ether
from scapy.layers.sctp import SCTP, SCTPChunkData
from scapy.packet import NoPayload, Raw, raw
from scapy.utils import rdpcap, wrpcap

from test_openflow import ofctl

OFPT_ERROR, OFPT_BARRIER_REPLY = 1, 21
OF_HEADER = struct.Struct('!BBHI')
MACS = {'src': '00:00:00:00:00:01', 'dst': '00:00:00:00:00:02'}
NEW_MAC = '02:aa:bb:cc:dd:ee'
PAYLOAD = Raw(b'mnovs-of13-' * 3)


def ryu_of13():
    """Ryu's OF1.3 (ofproto, parser, datapath stand-in); see mnovs/ryu_launcher.py."""
    import eventlet.wsgi
    if not hasattr(eventlet.wsgi, 'ALREADY_HANDLED'):
        eventlet.wsgi.ALREADY_HANDLED = object()
    from ryu.ofproto import ofproto_protocol, ofproto_v1_3, ofproto_v1_3_parser
    return ofproto_v1_3, ofproto_v1_3_parser, ofproto_protocol.ProtocolDesc(version=4)


class Controller:
    """A minimal OpenFlow 1.3 controller on the switch's passive listener."""

    def __init__(self, port):
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=10)
        self.xid = 0
        _, p, self.dp = ryu_of13()
        self.send(p.OFPHello(self.dp))
        assert self.read()[1] == 0                      # OFPT_HELLO

    def send(self, msg):
        self.xid += 1
        msg.set_xid(self.xid)
        msg.serialize()
        self.sock.sendall(bytes(msg.buf))

    def read(self):
        header = self._exactly(OF_HEADER.size)
        version, msg_type, length, xid = OF_HEADER.unpack(header)
        return version, msg_type, xid, self._exactly(length - OF_HEADER.size)

    def _exactly(self, n):
        data = b''
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, 'switch closed the connection'
            data += chunk
        return data

    def barrier(self):
        """Wait for everything sent so far; return the (type, code) of each error."""
        _, p, _ = ryu_of13()
        self.send(p.OFPBarrierRequest(self.dp))
        errors = []
        while True:
            _, msg_type, _, body = self.read()
            if msg_type == OFPT_BARRIER_REPLY:
                return errors
            if msg_type == OFPT_ERROR:
                errors.append(struct.unpack_from('!HH', body))

    def flow(self, match, actions, priority=100):
        o, p, _ = ryu_of13()
        self.send(p.OFPFlowMod(self.dp, priority=priority, match=p.OFPMatch(**match),
                               instructions=[p.OFPInstructionActions(o.OFPIT_APPLY_ACTIONS,
                                                                     actions)]))

    def close(self):
        self.sock.close()


class Capture:
    """tcpdump on a host's interface, started and stopped by pid.

    Only frames from h1's MAC are kept: every frame the tests send has it,
    and the switch's own veth ends talk too (IPv6 MLD, ND) on each link.
    """

    def __init__(self, host, path, count):
        self.path = path
        self.proc = host.popen(['tcpdump', '-n', '-U', '-Z', 'root', '-Q', 'in', '-c', str(count),
                                '-i', host.defaultIntf().name, '-w', str(path),
                                f'ether src {MACS["src"]}'],
                               stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        assert 'listening on' in line, line

    def frames(self, timeout=15):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(5)
        return [raw(pkt) for pkt in rdpcap(str(self.path))]


def send_frames(host, path, frames):
    wrpcap(str(path), [Ether(frame) for frame in frames])
    out = host.cmd(f'{sys.executable} -c "from scapy.all import rdpcap, sendp; '
                   f'sendp(rdpcap({str(path)!r}), iface={host.defaultIntf().name!r}, '
                   f'verbose=0)"')
    assert 'Error' not in out, out


def layers(pkt):
    layer = pkt
    while not isinstance(layer, NoPayload):
        yield layer
        layer = layer.payload


def checksums_checked(frame):
    """Check every checksum scapy knows in frame against scapy's; return their layers."""
    checked = []
    for depth, layer in enumerate(layers(Ether(frame))):
        for name in ('chksum', 'cksum'):
            if name in layer.fields:
                fresh = Ether(frame)
                delattr(list(layers(fresh))[depth], name)
                recomputed = getattr(list(layers(Ether(raw(fresh))))[depth], name)
                assert layer.fields[name] == recomputed, (layer.name, Ether(frame).summary())
                checked.append(layer.name)
    return checked


def eth():
    return Ether(**MACS)


# What h1 sends: frame, Ryu match, Ryu actions (before output:2), check of what h2 gets.
def cases(p):
    ip4 = {'src': '10.0.0.1', 'dst': '10.0.0.2'}
    return [
        (eth() / IP(**ip4) / UDP(sport=30000, dport=40001) / PAYLOAD,
         {'eth_type': 0x0800, 'ip_proto': 17, 'udp_dst': 40001},
         [p.OFPActionSetField(ipv4_dst='10.0.0.99'), p.OFPActionSetField(udp_dst=40002)],
         lambda f: (f[IP].dst, f[UDP].dport) == ('10.0.0.99', 40002)),
        (eth() / IP(**ip4) / ICMP(type=8, id=4242) / PAYLOAD,
         {'eth_type': 0x0800, 'ip_proto': 1, 'icmpv4_type': 8},
         [p.OFPActionSetField(icmpv4_type=13), p.OFPActionSetField(icmpv4_code=5),
          p.OFPActionSetField(ip_dscp=46)],
         lambda f: (f[ICMP].type, f[ICMP].code, f[IP].tos) == (13, 5, 46 << 2)),
        (eth() / IP(**ip4) / SCTP(sport=1000, dport=2000) / SCTPChunkData(data=b'sctp'),
         {'eth_type': 0x0800, 'ip_proto': 132},
         [p.OFPActionSetField(sctp_src=3868), p.OFPActionSetField(ipv4_src='10.0.0.77')],
         lambda f: (f[SCTP].sport, f[IP].src) == (3868, '10.0.0.77')),
        (eth() / IPv6(src='fe80::1', dst='ff02::1:ff00:2') / ICMPv6ND_NS(tgt='fe80::2')
         / ICMPv6NDOptSrcLLAddr(lladdr=MACS['src']),
         {'eth_type': 0x86dd, 'ipv6_src': 'fe80::1', 'ip_proto': 58, 'icmpv6_type': 135},
         [p.OFPActionSetField(ipv6_nd_target='fe80::99'),
          p.OFPActionSetField(ipv6_nd_sll=NEW_MAC)],
         lambda f: (f[ICMPv6ND_NS].tgt, f[ICMPv6NDOptSrcLLAddr].lladdr) == ('fe80::99',
                                                                             NEW_MAC)),
        (eth() / IPv6(src='fe80::1', dst='fe80::2') / UDP(sport=30000, dport=40003) / PAYLOAD,
         {'eth_type': 0x86dd, 'ip_proto': 17, 'udp_dst': 40003},
         [p.OFPActionSetField(ipv6_dst='2001:db8::2'), p.OFPActionSetField(udp_src=30001),
          p.OFPActionSetField(ipv6_flabel=0x12345)],
         lambda f: (f[IPv6].dst, f[UDP].sport, f[IPv6].fl) == ('2001:db8::2', 30001, 0x12345)),
        (eth() / IP(**ip4) / TCP(sport=30000, dport=40004, flags='S') / PAYLOAD,
         {'eth_type': 0x0800, 'ip_proto': 6, 'tcp_dst': 40004},
         [p.OFPActionSetField(tcp_dst=40005), p.OFPActionSetField(ipv4_src='10.0.0.66')],
         lambda f: (f[TCP].dport, f[IP].src) == (40005, '10.0.0.66')),
        (eth() / MPLS(label=100, s=1, ttl=64) / IP(**ip4, ttl=9) / UDP(sport=1, dport=2),
         {'eth_type': 0x8847, 'mpls_label': 100},
         [p.OFPActionSetField(mpls_label=200), p.OFPActionDecMplsTtl(),
          p.OFPActionCopyTtlIn()],
         lambda f: (f[MPLS].label, f[MPLS].ttl, f[IP].ttl) == (200, 63, 63)),
    ]


def test_rewritten_frames_arrive_with_right_checksums(make_net, tmp_path):
    net = make_net(SingleSwitchTopo(2), fail_mode='secure')
    s1, h1, h2 = net.get('s1', 'h1', 'h2')
    o, p, _ = ryu_of13()
    controller = Controller(s1.listenPort)
    try:
        sent = cases(p)
        for frame, match, actions, _ in sent:
            controller.flow({'in_port': 1, **match}, actions + [p.OFPActionOutput(2)])
        # A field OF1.3 lists but no switch should write gets the spec's error.
        controller.flow({'in_port': 1}, [p.OFPActionSetField(eth_type=0x86dd)])
        assert controller.barrier() == [(o.OFPET_BAD_ACTION, o.OFPBAC_BAD_SET_TYPE)]
    finally:
        controller.close()
    capture = Capture(h2, tmp_path / 'h2.pcap', len(sent))
    send_frames(h1, tmp_path / 'h1.pcap', [raw(frame) for frame, _, _, _ in sent])
    received = capture.frames()
    assert len(received) == len(sent), [Ether(f).summary() for f in received]
    for (frame, _, _, check), got in zip(sent, received):
        assert check(Ether(got)), Ether(got).summary()
        assert len(checksums_checked(got)) == len(checksums_checked(raw(frame)))
    tables = ofctl(s1, 'dump-tables')
    table0 = re.search(r'table 0:\s+active=(\d+), lookup=(\d+), matched=(\d+)', tables)
    assert table0, tables
    active, lookup, matched = map(int, table0.groups())
    # Every frame sent matched; the hosts' own chatter (IPv6 ND) is looked up and missed.
    assert (active, matched) == (len(sent), len(sent)) and lookup >= matched, tables


def tshark_fields(path, fields):
    args = ['tshark', '-r', str(path), '-T', 'fields', '-E', 'separator=\t']
    for name in fields:
        args += ['-e', name]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
    return [dict(zip(fields, line.split('\t'))) for line in out.splitlines()]


def test_push_pbb_then_pop_pbb_on_the_wire(make_net, tmp_path):
    net = make_net(SingleSwitchTopo(2), fail_mode='secure')
    s1, h1, h2 = net.get('s1', 'h1', 'h2')
    _, p, _ = ryu_of13()
    controller = Controller(s1.listenPort)
    try:
        controller.flow({'in_port': 1, 'eth_type': 0x0800, 'ip_proto': 17, 'udp_dst': 40010},
                        [p.OFPActionPushPbb(0x88e7), p.OFPActionSetField(pbb_isid=0xabcdef),
                         p.OFPActionSetField(eth_dst='02:00:00:00:0b:0b'),
                         p.OFPActionOutput(2)])
        controller.flow({'in_port': 2, 'eth_type': 0x88e7, 'pbb_isid': 0xabcdef},
                        [p.OFPActionPopPbb(), p.OFPActionOutput(1)])
        assert controller.barrier() == []
    finally:
        controller.close()
    original = raw(eth() / IP(src='10.0.0.1', dst='10.0.0.2')
                   / UDP(sport=30000, dport=40010) / PAYLOAD)
    capture = Capture(h2, tmp_path / 'backbone.pcap', 1)
    send_frames(h1, tmp_path / 'customer.pcap', [original])
    (backbone,) = capture.frames()
    (decoded,) = tshark_fields(tmp_path / 'backbone.pcap', [
        'eth.dst', 'eth.type', 'ieee8021ah.isid', 'ieee8021ah.cdst', 'ip.dst', 'udp.dstport',
        '_ws.expert'])
    assert decoded == {'eth.dst': '02:00:00:00:0b:0b', 'eth.type': '0x88e7',
                       'ieee8021ah.isid': str(0xabcdef), 'ieee8021ah.cdst': MACS['dst'],
                       'ip.dst': '10.0.0.2', 'udp.dstport': '40010', '_ws.expert': ''}
    assert backbone[18:] == original
    capture = Capture(h1, tmp_path / 'back.pcap', 1)
    send_frames(h2, tmp_path / 'backbone-out.pcap', [backbone])
    assert capture.frames() == [original]
    flows = s1.dpctl('dpctl/dump-flows')
    assert 'push_pbb(isid=0,pcp=0,dei=0,uca=0)' in flows and 'pop_pbb' in flows, flows
