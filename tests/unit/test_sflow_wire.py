"""sFlow v5 encoding (mnovs/sflow/wire.py) as tshark, tcpdump and our own decoder read it.

One datagram with three flow samples (one output, several, dropped) and a
port's and the bridge's counter samples goes into a pcap as UDP to port
6343. tshark's sflow dissector must agree on every flow sample field;
tcpdump -vv must decode every sample and record to the end without a
truncation mark. tshark 4.0 does not skip counter records it does not know
(1004, 1005, 2203, 2207: the same happens to OVS's datagrams), so its view
of counters is checked on the records before those.
"""

import shutil
import subprocess

import pytest
from sflow_decode import decode_datagram

from mnovs.sflow import wire

scapy = pytest.importorskip('scapy.all')

AGENT = bytes([10, 0, 0, 9])
FRAME = bytes(scapy.Ether(src='00:00:00:00:00:01', dst='00:00:00:00:00:02')
              / scapy.IP(src='10.0.0.1', dst='10.0.0.2') / scapy.UDP(sport=1234, dport=5678)
              / scapy.Raw(b'x' * 200))
TAGGED = bytes(scapy.Ether(src='00:00:00:00:00:01', dst='00:00:00:00:00:02')
               / scapy.Dot1Q(vlan=10, prio=3) / scapy.IP() / scapy.ICMP())
SAMPLER = wire.source_id(wire.DSCLASS_PHYSICAL_ENTITY, 1000)
# (sequence, pool, drops, input, output, frame, src tci, dst tci)
FLOWS = [(7, 448, 3, 11, 12, FRAME, 0, 0),
         (8, 512, 3, 11, wire.OUTPUT_MULTIPLE | 3, TAGGED, 0x600a, 0x600a),
         (9, 576, 4, 12, wire.OUTPUT_DROPPED, FRAME[:60], 0, 0)]
STATS = {'rx_bytes': 1000, 'rx_packets': 10, 'tx_bytes': 2 ** 40 + 5, 'tx_packets': 2 ** 32 + 7,
         'rx_dropped': 1, 'multicast': 2}


def datagram(tshark_known_only=False):
    """The test datagram; tshark_known_only leaves out the records tshark cannot skip."""
    samples = [wire.flow_sample(seq, SAMPLER, 64, pool, drops, in_if, out_if,
                                [wire.record_switch(src, dst), wire.record_raw_header(frame, 128)])
               for seq, pool, drops, in_if, out_if, frame, src, dst in FLOWS]
    port_records = [wire.counters_generic(11, 10 ** 10, 1, 3, STATS), wire.counters_ethernet({})]
    if tshark_known_only:
        samples.append(wire.counters_sample(1, wire.source_id(wire.DSCLASS_IFINDEX, 11),
                                            port_records))
        return wire.datagram(AGENT, 0, 5, 12345, samples)
    samples.append(wire.counters_sample(1, wire.source_id(wire.DSCLASS_IFINDEX, 11), [
        *port_records, wire.counters_openflow_port(0xab, 1), wire.counters_port_name('s1-eth1')]))
    samples.append(wire.counters_sample(1, SAMPLER, [
        wire.counters_ovsdp(1, 2, 3, 4, 5, 6), wire.counters_app_resources(10, 20, 3000)]))
    return wire.datagram(AGENT, 0, 5, 12345, samples)


def write_pcap(path, data):
    scapy.wrpcap(str(path), [scapy.Ether() / scapy.IP(src='127.0.0.1', dst='127.0.0.1')
                             / scapy.UDP(sport=40000, dport=6343) / scapy.Raw(data)])
    return str(path)


@pytest.fixture(scope='module')
def pcap(tmp_path_factory):
    return write_pcap(tmp_path_factory.mktemp('sflow') / 'sflow.pcap', datagram())


@pytest.fixture(scope='module')
def tshark_pcap(tmp_path_factory):
    return write_pcap(tmp_path_factory.mktemp('sflow') / 'known.pcap', datagram(True))


def test_our_decoder_reads_back_every_field():
    data = datagram()
    assert len(data) <= wire.MAX_DATAGRAM_SIZE
    d = decode_datagram(data)
    assert (d['version'], d['agent'], d['sub_id'], d['sequence'], d['uptime']) == \
        (5, AGENT, 0, 5, 12345)
    flows = [s for s in d['samples'] if s['kind'] == 'flow']
    for sample, (seq, pool, drops, in_if, out_if, frame, src, dst) in zip(flows, FLOWS):
        assert (sample['sequence'], sample['source'], sample['rate'], sample['pool'],
                sample['drops'], sample['input'], sample['output']) == \
            (seq, SAMPLER, 64, pool, drops, in_if, out_if)
        assert sample['header'] == {'protocol': 1, 'frame_length': len(frame) + 4,
                                    'stripped': 4, 'bytes': frame[:128]}
        assert sample['switch'] == (src & 0xfff, src >> 13, dst & 0xfff, dst >> 13)
    port, bridge = [s for s in d['samples'] if s['kind'] == 'counters']
    assert port['source'] == 11 and port['port_name'] == 's1-eth1'
    assert port['openflow_port'] == (0xab, 1)
    generic = port['generic']
    assert (generic['ifindex'], generic['speed'], generic['in_octets'], generic['in_ucast'],
            generic['in_mcast'], generic['in_discards']) == (11, 10 ** 10, 1000, 10, 2, 1)
    assert generic['out_octets'] == 2 ** 40 + 5 and generic['out_ucast'] == 7    # 32-bit wrap
    assert bridge['source'] == SAMPLER and bridge['ovsdp'] == (1, 2, 3, 4, 5, 6)


@pytest.mark.skipif(shutil.which('tshark') is None, reason='needs tshark')
def test_tshark_agrees_on_the_flow_samples(tshark_pcap):
    fields = ['sflow.flow_sample.sequence_number', 'sflow.flow_sample.index',
              'sflow.flow_sample.sampling_rate', 'sflow.flow_sample.sample_pool',
              'sflow.flow_sample.dropped_packets', 'sflow.flow_sample.input_interface',
              'sflow.flow_sample.output_interface',
              'sflow_245.header.frame_length', 'sflow_245.header.payload_stripped',
              'sflow_245.header.sampled_header_length', 'sflow_245.vlan.in',
              'sflow_245.pri.in', 'sflow_245.vlan.out', 'sflow_245.pri.out',
              'sflow_245.version', 'sflow_245.agent', 'sflow_245.numsamples',
              'sflow_245.ifindex', 'sflow_245.ifinoct', 'sflow_245.ifoutpkt', '_ws.expert']
    done = subprocess.run(['tshark', '-r', tshark_pcap, '-d', 'udp.port==6343,sflow',
                           '-T', 'fields',
                           '-E', 'occurrence=a', '-E', 'aggregator=;',
                           *[arg for f in fields for arg in ('-e', f)]],
                          capture_output=True, text=True, check=True)
    got = dict(zip(fields, done.stdout.rstrip('\n').split('\t')))
    column = lambda i: ';'.join(str(flow[i]) for flow in FLOWS)  # noqa: E731
    assert got['sflow.flow_sample.sequence_number'] == column(0)
    assert got['sflow.flow_sample.sample_pool'] == column(1)
    assert got['sflow.flow_sample.dropped_packets'] == column(2)
    assert got['sflow.flow_sample.input_interface'] == column(3)
    assert got['sflow.flow_sample.output_interface'] == ';'.join(
        f'0x{flow[4]:08x}' for flow in FLOWS)
    assert got['sflow.flow_sample.index'] == '1000;1000;1000'
    assert got['sflow.flow_sample.sampling_rate'] == '64;64;64'
    assert got['sflow_245.header.frame_length'] == ';'.join(
        str(len(flow[5]) + 4) for flow in FLOWS)
    assert got['sflow_245.header.payload_stripped'] == '4;4;4'
    assert got['sflow_245.header.sampled_header_length'] == ';'.join(
        str(min(len(flow[5]), 128)) for flow in FLOWS)
    assert got['sflow_245.vlan.in'] == '0;10;0' and got['sflow_245.pri.in'] == '0;3;0'
    assert got['sflow_245.vlan.out'] == '0;10;0' and got['sflow_245.pri.out'] == '0;3;0'
    assert (got['sflow_245.version'], got['sflow_245.agent'], got['sflow_245.numsamples']) == \
        ('5', '10.0.0.9', '4')
    assert got['sflow_245.ifindex'].split(';')[0] == '11'
    assert got['sflow_245.ifinoct'].split(';')[0] == '1000'
    assert got['sflow_245.ifoutpkt'].split(';')[0] == '7'
    assert got['_ws.expert'] == ''           # nothing malformed


@pytest.mark.skipif(shutil.which('tcpdump') is None, reason='needs tcpdump')
def test_tcpdump_decodes_every_sample_cleanly(pcap):
    done = subprocess.run(['tcpdump', '-vv', '-n', '-r', pcap], capture_output=True,
                          text=True, check=True)
    text = done.stdout
    assert 'sFlowv5, IPv4 agent 10.0.0.9, agent-id 0, seqnum 5, uptime 12345, samples 5' in text
    assert ('flow sample (1), length 208, seqnum 7, type 2, idx 1000, rate 64, pool 448, '
            'drops 3, input 11 output 12 records 2') in text
    assert f'input 11 output {wire.OUTPUT_MULTIPLE | 3} records 2' in text
    assert f'input 12 output {wire.OUTPUT_DROPPED} records 2' in text
    assert 'src vlan 10, src pri 3, dst vlan 10, dst pri 3' in text
    assert (f'protocol Ethernet (1), length {len(FRAME) + 4}, stripped bytes 4, '
            'header_size 128') in text
    assert 'Generic counter (1) length 88' in text and 'ifindex 11, iftype 6' in text
    assert 'Ethernet counter (2) length 52' in text
    for record in ('(1004) length 12', '(1005) length 12', '(2207) length 24',
                   '(2203) length 40'):
        assert record in text
    assert '[|' not in text and 'truncated' not in text.lower()
