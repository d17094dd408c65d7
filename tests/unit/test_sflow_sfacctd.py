"""sfacctd (pmacct) decodes the agent's datagrams offline, from a pcap (pcap_savefile).

The agent sends flow samples and counter samples to a loopback collector
socket; the datagrams it receives go into a pcap as UDP to port 6343, and
sfacctd reads that file as it would the wire: its print plugin must count
the sampled packets and bytes (frame + FCS) per in/out ifindex and its
counters file must hold the generic counters of the port. No root, no
namespaces: this runs in CI wherever pmacct is installed.
"""

import json
import shutil
import socket
import subprocess
from types import SimpleNamespace

import pytest

from mnovs.sflow.agent import SflowAgent
from mnovs.sflow.config import SflowOptions

scapy = pytest.importorskip('scapy.all')
pytestmark = pytest.mark.skipif(shutil.which('sfacctd') is None, reason='needs pmacct')

FRAME = bytes(scapy.Ether(src='00:00:00:00:00:01', dst='00:00:00:00:00:02')
              / scapy.IP(src='10.0.0.1', dst='10.0.0.2') / scapy.ICMP() / scapy.Raw(bytes(56)))


def agent_datagrams():
    """Datagrams of an agent: 7 samples of FRAME from lo to ifindex 99, then counters."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(('127.0.0.1', 0))
    sock.settimeout(1)
    dp = SimpleNamespace(sample_pool=0, sample_lost=0,
                         ports={1: SimpleNamespace(port_no=1, name='lo')},
                         stats=lambda: {'hit': 1, 'missed': 1, 'lost': 0, 'masks_hit': 1,
                                        'flows': 1, 'masks_total': 1})
    options = SflowOptions((f'127.0.0.1:{sock.getsockname()[1]}',), 1, 1, 128, 'lo', 0, ())
    agent = SflowAgent('s1', options, dp, lambda: 0xab)
    for pool in range(1, 8):
        agent.received(bytes(10) + FRAME, 1, 0, 99, pool)
    agent.flush()
    agent.poll_counters()
    agent.close()
    datagrams = [sock.recv(65536), sock.recv(65536)]
    sock.close()
    return datagrams


def test_sfacctd_reads_a_pcap_of_our_datagrams(tmp_path):
    pcap = tmp_path / 'sflow.pcap'
    scapy.wrpcap(str(pcap), [scapy.Ether() / scapy.IP(src='127.0.0.1', dst='127.0.0.1')
                             / scapy.UDP(sport=40000, dport=6343) / scapy.Raw(data)
                             for data in agent_datagrams()])
    out, counters = tmp_path / 'flows.csv', tmp_path / 'counters.json'
    conf = tmp_path / 'sfacctd.conf'
    conf.write_text(f'daemonize: false\npcap_savefile: {pcap}\nplugins: print\n'
                    'aggregate: in_iface, out_iface, src_host, dst_host, proto, peer_src_ip\n'
                    f'print_output: csv\nprint_output_file: {out}\nprint_refresh_time: 1\n'
                    f'sfacctd_counter_file: {counters}\nsfacctd_counter_output: json\n'
                    'sfacctd_renormalize: false\n')
    subprocess.run(['sfacctd', '-f', str(conf)], capture_output=True, timeout=30, check=True)
    header, *rows = [line.split(',') for line in out.read_text().splitlines()]
    (row,) = [dict(zip(header, r)) for r in rows]
    assert (row['PEER_SRC_IP'], row['IN_IFACE'], row['OUT_IFACE'], row['SRC_IP'],
            row['DST_IP'], row['PROTOCOL']) == ('127.0.0.1', '1', '99', '10.0.0.1',
                                                '10.0.0.2', 'icmp')
    assert (row['PACKETS'], row['BYTES']) == ('7', str(7 * (len(FRAME) + 4)))
    records = [json.loads(line) for line in counters.read_text().splitlines()]
    (generic,) = [r for r in records if r.get('sf_cnt_type') == 'sflow_cnt_generic']
    assert generic['ifIndex'] == 1 and generic['ifType'] == 6 and generic['ifStatus'] & 1
    assert any(r.get('sf_cnt_type') == 'sflow_cnt_ethernet' for r in records)
