"""sFlow on a live pyovs switch, configured with ovs-vsctl, read by real collectors.

- sfacctd (pmacct) on a loopback port: with sampling=1, a ping across the
  switch gives rows with the in and out ifindexes of `ip -o link` and the
  byte counts of the frames; its counters file has generic counters for
  every port. tcpdump captures the same datagrams: `tcpdump -vv` decodes
  them cleanly, and tshark's dissector agrees with our decoder on every
  flow sample.
- Bad input: a target that is no IP, one where nobody listens, a
  collector that comes and goes, a row with impossible values, live changes
  and clearing: the switch keeps forwarding, and says what is wrong in its
  log, in sflow/show and in Bridge status:sflow.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from mininet.topo import SingleSwitchTopo

from mnovs import ovs_ctl, paths

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'unit'))
from sflow_decode import decode_datagram  # noqa: E402

TOOLS = ('sfacctd', 'tcpdump', 'tshark')
needs = pytest.mark.skipif(not all(shutil.which(tool) for tool in TOOLS),
                           reason='needs sfacctd (pmacct), tcpdump and tshark')


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def vsctl(*args):
    done = subprocess.run(['ovs-vsctl', '--timeout=20', *args], capture_output=True, text=True,
                          env=ovs_ctl.tool_env(), check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def appctl(*args):
    return subprocess.run(['ovs-appctl', '-t', 's1', *args], capture_output=True, text=True,
                          env=ovs_ctl.tool_env(), check=False).stdout


def ifindexes():
    """{name: ifindex} from `ip -o link`, as a user would read them."""
    out = subprocess.run(['ip', '-o', 'link'], capture_output=True, text=True, check=True).stdout
    return {m.group(2): int(m.group(1)) for m in re.finditer(r'^(\d+): ([^:@]+)', out, re.M)}


def create_sflow(target, **columns):
    """The issue's command: ovs-vsctl -- --id=@s create sflow ... -- set bridge s1 sflow=@s."""
    values = [f'{key}={value}' for key, value in columns.items()]
    return vsctl('--', '--id=@s', 'create', 'sflow', f'targets={target}', *values,
                 '--', 'set', 'bridge', 's1', 'sflow=@s')


def ping_ok(h1, h2, count=5):
    out = h1.cmd(f'ping -c {count} -i 0.2 -W 1 {h2.IP()}')
    return f'{count} received' in out


@pytest.fixture
def capture(tmp_path):
    """capture(port) runs tcpdump on lo for UDP to port; .stop() returns the pcap path."""
    procs = []

    def start(port):
        path = str(tmp_path / 'sflow.pcap')
        proc = subprocess.Popen(['tcpdump', '-i', 'lo', '-U', '-w', path, 'udp', 'dst', 'port',
                                 str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(proc)
        proc.stderr.readline()          # "listening on lo ...": capture is on
        proc.path = path
        return proc
    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(5)


def stop_capture(proc):
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    proc.wait(5)
    return proc.path


@pytest.fixture
def sfacctd(tmp_path):
    """sfacctd(port) runs sfacctd on 127.0.0.1:port; .rows() and .counters() read its files."""
    procs = []

    def start(port):
        out, counters = tmp_path / 'flows.csv', tmp_path / 'counters.json'
        conf = tmp_path / 'sfacctd.conf'
        conf.write_text(
            'daemonize: false\n'
            f'sfacctd_ip: 127.0.0.1\nsfacctd_port: {port}\n'
            'plugins: print\n'
            'aggregate: in_iface, out_iface, src_host, dst_host, proto\n'
            f'print_output: csv\nprint_output_file: {out}\nprint_output_file_append: true\n'
            'print_refresh_time: 1\n'
            f'sfacctd_counter_file: {counters}\nsfacctd_counter_output: json\n'
            'sfacctd_renormalize: false\n')
        proc = subprocess.Popen(['sfacctd', '-f', str(conf)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(proc)
        proc.rows = lambda: read_rows(out)
        proc.counters = lambda: read_counters(counters)
        return proc
    yield start
    for proc in procs:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(5)


def read_rows(path):
    if not path.exists():
        return []
    lines = [line.split(',') for line in path.read_text().splitlines() if line]
    header = lines[0] if lines else []
    return [dict(zip(header, line)) for line in lines if line != header]


def read_counters(path):
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pass                        # a line being written
    return records


def wait_for(predicate, what, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.2)


def tshark_flow_samples(pcap, port):
    fields = ['sflow.flow_sample.sequence_number', 'sflow.flow_sample.sample_pool',
              'sflow.flow_sample.input_interface', 'sflow.flow_sample.output_interface',
              'sflow_245.header.frame_length']
    done = subprocess.run(['tshark', '-r', pcap, '-d', f'udp.port=={port},sflow', '-T', 'fields',
                           '-E', 'occurrence=a', '-E', 'aggregator=;',
                           *[arg for f in fields for arg in ('-e', f)]],
                          capture_output=True, text=True, check=True)
    samples = []
    for line in done.stdout.splitlines():
        columns = [column.split(';') if column else [] for column in line.split('\t')]
        samples += list(zip(*columns))
    return samples


def our_flow_samples(pcap):
    from scapy.all import UDP, rdpcap
    samples = []
    for packet in rdpcap(pcap):
        for sample in decode_datagram(bytes(packet[UDP].payload))['samples']:
            if sample['kind'] == 'flow':
                samples.append(sample)
    return samples


@needs
def test_sfacctd_tcpdump_and_tshark_read_a_ping(make_net, sfacctd, capture):
    net = make_net(SingleSwitchTopo(2), fail_mode='standalone')
    h1, h2 = net.get('h1', 'h2')
    port = 6343                 # OVS's default collector port: where tcpdump decodes sFlow
    collector = sfacctd(port)
    cap = capture(port)
    time.sleep(0.5)                     # sfacctd binds its port
    # Flow samples only first (polling=0): tshark cannot skip counter records it
    # does not know, and a datagram with them would hide the flow samples after.
    create_sflow(f'"127.0.0.1:{port}"', agent='s1-eth1', sampling=1, polling=0, header=128)
    index = ifindexes()
    eth1, eth2 = index['s1-eth1'], index['s1-eth2']
    assert 'sample(sample=100.0%' in appctl('dpctl/dump-flows') or ping_ok(h1, h2, 1)
    assert ping_ok(h1, h2)
    flows = appctl('dpctl/dump-flows')
    assert f'sample(sample=100.0%,actions(userspace(pid=0,sFlow(vid=0,pcp=0,output={eth2})' \
        in flows, flows

    def icmp(src, dst):
        return [r for r in collector.rows() if r['SRC_IP'] == src and r['DST_IP'] == dst
                and r['PROTOCOL'] == 'icmp']
    wait_for(lambda: sum(int(r['PACKETS']) for r in icmp(h2.IP(), h1.IP())) >= 5,
             'sfacctd rows for the ping replies')
    there, back = icmp(h1.IP(), h2.IP()), icmp(h2.IP(), h1.IP())
    assert {(int(r['IN_IFACE']), int(r['OUT_IFACE'])) for r in there} == {(eth1, eth2)}
    assert {(int(r['IN_IFACE']), int(r['OUT_IFACE'])) for r in back} == {(eth2, eth1)}
    for rows in (there, back):
        packets = sum(int(r['PACKETS']) for r in rows)
        assert packets >= 5     # the single ping above may add one
        assert sum(int(r['BYTES']) for r in rows) == packets * (98 + 4)  # frame + FCS
    pcap = stop_capture(cap)

    dump = subprocess.run(['tcpdump', '-vv', '-n', '-r', pcap], capture_output=True,
                          text=True, check=True).stdout
    assert f'input {eth1} output {eth2} records 2' in dump
    assert f'input {eth2} output {eth1} records 2' in dump
    assert 'sFlowv5, IPv4 agent 127.0.0.1' in dump     # s1-eth1 has no IP: route source
    assert '[|' not in dump and 'truncated' not in dump.lower()

    ours = our_flow_samples(pcap)
    theirs = tshark_flow_samples(pcap, port)
    assert len(ours) == len(theirs) >= 12
    for sample, (seq, pool, in_if, out_if, frame_length) in zip(ours, theirs):
        assert (str(sample['sequence']), str(sample['pool']), str(sample['input']),
                f'0x{sample["output"]:08x}', str(sample['header']['frame_length'])) == \
            (seq, pool, in_if, out_if, frame_length)
    assert [s['sequence'] for s in ours] == list(range(1, len(ours) + 1))
    assert [s['pool'] for s in ours] == list(range(1, len(ours) + 1))    # sampling=1

    # Now counters, every second, changed live on the same row.
    vsctl('set', 'sflow', vsctl('get', 'bridge', 's1', 'sflow'), 'polling=1')

    def generic_for(ifindex):
        return [c for c in collector.counters()
                if c.get('sf_cnt_type') == 'sflow_cnt_generic' and c.get('ifIndex') == ifindex]
    wait_for(lambda: generic_for(eth1) and generic_for(eth2), 'generic counters of both ports')
    with open('/sys/class/net/s1-eth1/statistics/rx_packets') as f:
        assert 10 <= generic_for(eth1)[-1]['ifInUcastPkts'] <= int(f.read())
    assert generic_for(eth2)[-1]['ifStatus'] == 3           # admin and oper up


def test_bad_collectors_and_rows_never_stop_forwarding(make_net):
    net = make_net(SingleSwitchTopo(2), fail_mode='standalone')
    h1, h2 = net.get('h1', 'h2')
    good = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    good.bind(('127.0.0.1', 0))
    good.settimeout(3)
    good_port, closed_port = good.getsockname()[1], free_udp_port()
    try:
        create_sflow(f'["nonsense","127.0.0.1:{closed_port}","127.0.0.1:{good_port}"]',
                     agent='192.0.2.1', sampling=1, polling=0)
        assert ping_ok(h1, h2)
        datagram = decode_datagram(good.recv(65536))
        assert datagram['agent'] == bytes([192, 0, 2, 1])        # agent as an IP literal
        show = appctl('sflow/show')
        assert 'enabled' in show and 'bad IP address "nonsense"' in show, show

        def closed_port_refused():
            # The refusal (ICMP port unreachable) shows at the send after the
            # first: ping again so that more datagrams go out.
            ping_ok(h1, h2)
            return re.search(rf'target 127.0.0.1:{closed_port}: sent \d+, failed [1-9]',
                             appctl('sflow/show'))
        wait_for(closed_port_refused, 'a failed send to the collector port nobody listens on')
        wait_for(lambda: 'nonsense' in vsctl('get', 'bridge', 's1', 'status'),
                 'Bridge status:sflow')
        with open(paths.log_path('s1')) as log:
            assert "couldn't open connection to collector nonsense" in log.read()

        good.close()                    # the collector goes away...
        assert ping_ok(h1, h2)
        good = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        good.bind(('127.0.0.1', good_port))         # ...and comes back
        good.settimeout(3)
        assert ping_ok(h1, h2)
        assert decode_datagram(good.recv(65536))['samples']

        row = vsctl('get', 'bridge', 's1', 'sflow')
        vsctl('set', 'sflow', row, 'sampling=64')
        assert 'sample(sample=1.6%' in appctl('dpctl/dump-flows') or ping_ok(h1, h2, 2)
        assert 'sample(sample=1.6%' in appctl('dpctl/dump-flows')
        vsctl('set', 'sflow', row, 'sampling=-1', 'header=99999')   # the schema allows them
        assert ping_ok(h1, h2)
        assert 'sample(' not in appctl('dpctl/dump-flows')
        wait_for(lambda: 'sampling=-1' in vsctl('get', 'bridge', 's1', 'status'),
                 'the bad sampling rate in Bridge status:sflow')
        assert 'header=99999' in appctl('sflow/show')

        vsctl('clear', 'bridge', 's1', 'sflow')
        assert ping_ok(h1, h2)
        assert 'sample(' not in appctl('dpctl/dump-flows')
        assert 'sFlow is not configured' in appctl('sflow/show')
        assert vsctl('get', 'bridge', 's1', 'status') == '{}'
    finally:
        good.close()
