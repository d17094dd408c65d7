"""What sFlow costs pyovs: UDP 64-byte pps with sFlow off, at sampling=400, and at sampling=1.

One pyovs switch, two hosts (SingleSwitchTopo k=2, standalone/NORMAL), built
once; a collector (a UDP socket on 127.0.0.1, read by a thread of this
script) counts the datagrams and flow samples it gets. Each repeat runs the
modes in turn on the same switch, configured live with ovs-vsctl as a user
would:

- off: `ovs-vsctl clear bridge s1 sflow`;
- s400: an sFlow row with OVS's default sampling (400), polling 30;
- s1: sampling=1, every packet sampled.

Each mode is measured as bench_switches.py measures UDP: iperf3 with an
18-byte payload (64-byte frames with FCS) at -b 0, pps received by the
server. For the sFlow modes, `sflow/show` gives the sample pool (packets
that met the sample action), the flow samples encoded, and the samples the
datapath drew but could not queue (upcall queue full). Draws (samples +
lost) should be about pool / sampling (`expected_draws`); at sampling=1 the
switch cannot export every packet, and pool = samples + lost (+ the few
still queued) says that none is lost silently. The collector's count says
how many samples arrived. A short UDP run before the first mode warms the
switch and the hosts up and is not recorded.

The modes rotate from one repeat to the next (off, s400, s1; s400, s1,
off; ...), so that slow drift of a shared machine hits them alike. The
table shows medians over --repeat runs and the ratios s400/off and s1/off
(target: s400/off >= 0.95).

Live pps on a shared 2-core machine is noisy (the hosts' iperf3 and the
kernel's softirqs compete with the switch for two cores), so each run also
reports the switch's own cost: CPU time of its vswitchd (utime + stime
from /proc) per packet it looked up (`dpctl/show` hits + misses), in us.
The ratio off/s400 of that cost is the packet rate sFlow leaves the switch
when the switch is the bottleneck. The script also times
the datapath's hit path in this process (Datapath._input on a megaflow hit,
ports that send nowhere, no system calls): output only, and the sFlow
sample at 400 before it, in the fast form (a SampleTap in fast_outs) and
through the action interpreter. That cost is what sFlow adds per packet.

The CSV (experiments/results/sflow.csv) holds one row per run, the
medians, the ratios, and the hit path rows (repeat 'hit-path').

    PYTHONPATH=. .venv/bin/python experiments/bench_sflow.py --repeat 3
"""

import argparse
import os
import re
import socket
import struct
import subprocess
import threading
import time
from types import SimpleNamespace

from mininet.log import setLogLevel
from mininet.topo import SingleSwitchTopo

import mnbench
from bench_switches import LOOKUPS_RE, BenchError, udp_kpps, wait_forwarding

MODES = (('off', None), ('s400', 400), ('s1', 1))
FIELDS = ('repeat', 'mode', 'udp_rx_kpps', 'udp_tx_kpps', 'sample_pool', 'expected_draws',
          'flow_samples', 'samples_lost', 'unaccounted', 'collector_samples',
          'collector_datagrams',
          'cpu_us_per_pkt', 'hit_path_us', 'note')
HIT_PATH_PACKETS = 200_000
WARMUP_SECONDS = 3
SHOW_RE = re.compile(r'sample pool: (\d+); flow samples: (\d+); '
                     r'samples lost \(upcall queue full\): (\d+)')


def parse_args():
    parser = argparse.ArgumentParser(description='pyovs UDP pps with sFlow off and on')
    parser.add_argument('--repeat', type=int, default=3, help='runs of every mode (default 3)')
    parser.add_argument('--udp-time', type=int, default=10,
                        help='UDP test seconds (default 10)')
    parser.add_argument('--csv', default='experiments/results/sflow.csv', help='CSV output path')
    parser.add_argument('--verbose', action='store_true', help="show Mininet's info log")
    return parser.parse_args()


class Collector:
    """A UDP socket on loopback, read by a thread: counts datagrams and flow samples."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.datagrams = self.samples = 0
        self.running = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while self.running:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            self.datagrams += 1
            self.samples += count_flow_samples(data)

    def counts(self):
        return self.datagrams, self.samples

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


def count_flow_samples(data):
    """Flow samples (format 1) in an sFlow v5 datagram with an IPv4 agent address."""
    n_samples = struct.unpack_from('!I', data, 24)[0]
    at, flows = 28, 0
    for _ in range(n_samples):
        kind, length = struct.unpack_from('!II', data, at)
        flows += kind == 1
        at += 8 + length
    return flows


def vsctl(*args):
    from mnovs import ovs_ctl
    done = subprocess.run(['ovs-vsctl', '--timeout=20', *args], capture_output=True, text=True,
                          env=ovs_ctl.tool_env(), check=False)
    if done.returncode:
        raise BenchError('ovs-vsctl %s: %s' % (' '.join(args), done.stderr.strip()))
    return done.stdout.strip()


def set_mode(sampling, port):
    """Configure sFlow on s1 (None: off) and wait until its megaflows say so."""
    vsctl('clear', 'bridge', 's1', 'sflow')
    if sampling is not None:
        vsctl('--', '--id=@s', 'create', 'sflow', f'targets="127.0.0.1:{port}"',
              f'sampling={sampling}', '--', 'set', 'bridge', 's1', 'sflow=@s')
    time.sleep(0.5)                     # the revalidation after the change


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def lookups(switch):
    """Packets the switch looked up so far (hits + misses of dpctl/show)."""
    hit, missed = LOOKUPS_RE.search(switch.dpctl('dpctl/show')).groups()
    return int(hit) + int(missed)


def sflow_counts(switch):
    """(pool, flow samples, samples lost) from sflow/show, or Nones if sFlow is off."""
    match = SHOW_RE.search(switch.dpctl('sflow/show'))
    return tuple(int(n) for n in match.groups()) if match else (None, None, None)


def measure(net, sampling, collector, args, row):
    h1, h2, s1 = net.get('h1', 'h2', 's1')
    set_mode(sampling, collector.port)
    if not wait_forwarding(h1, h2):
        row['note'] = 'no connectivity h1->h2'
        return
    before = collector.counts()
    cpu_before, packets_before = cpu_seconds(s1.pid_vswitchd), lookups(s1)
    try:
        row['udp_rx_kpps'], row['udp_tx_kpps'] = udp_kpps(h1, h2, args.udp_time)
    except BenchError as exc:
        row['note'] = 'udp: %s' % exc
    packets = lookups(s1) - packets_before
    if packets:
        row['cpu_us_per_pkt'] = (cpu_seconds(s1.pid_vswitchd) - cpu_before) * 1e6 / packets
    time.sleep(1.5)                     # the last datagrams (flushed every second)
    if sampling is not None:
        pool, samples, lost = sflow_counts(s1)
        row.update(sample_pool=pool, flow_samples=samples, samples_lost=lost,
                   expected_draws=None if pool is None else pool / sampling)
        if sampling == 1 and pool is not None:
            row['unaccounted'] = pool - samples - lost      # still queued; 0 when idle
        after = collector.counts()
        row['collector_datagrams'] = after[0] - before[0]
        row['collector_samples'] = after[1] - before[1]


def hit_path_us(actions):
    """Microseconds per packet of Datapath._input on a hit of a megaflow with `actions`."""
    from mnovs.dp.datapath import Datapath
    from mnovs.dp.flow import make_key, make_mask

    def port(no):
        return SimpleNamespace(port_no=no, name='p%d' % no, up=True, ring=None, rx_packets=0,
                               rx_bytes=0, rx_dropped=0, send=lambda packet: None)
    dp = Datapath('bench', upcall=None, userspace=lambda *upcall: None)
    dp.ports.update({1: port(1), 2: port(2)})
    dp.flow_put(make_key(in_port=1, eth_dst=bytes(6)), make_mask(['in_port', 'eth_dst']),
                actions)
    packet = memoryview(bytes(10 + 64))
    get, ingress = dp.emc.table.get, dp.ports[1]
    start = time.perf_counter()
    for _ in range(HIT_PATH_PACKETS):
        dp._input(ingress, 1, packet, get, 0.0)
    elapsed = time.perf_counter() - start
    return elapsed / HIT_PATH_PACKETS * 1e6


def hit_path_rows():
    from mnovs.dp.odp_util import encode_sflow_cookie
    from mnovs.dp.sample import UINT32_MAX
    sample = ('sample', UINT32_MAX // 400, (('userspace', encode_sflow_cookie(0, 2)),))
    vlan = ('push_vlan', 0x8100, 5)     # keeps a flow off the fast form
    cases = (('output', (('output', 2),)), ('sample400+output', (sample, ('output', 2))),
             ('push_vlan+output', (vlan, ('output', 2))),
             ('sample400+push_vlan+output', (sample, vlan, ('output', 2))))
    return [{'repeat': 'hit-path', 'mode': name, 'note': '',
             'hit_path_us': min(hit_path_us(actions) for _ in range(3))}
            for name, actions in cases]


def summarize(rows):
    medians = {}
    for mode, _ in MODES:
        mine = [r for r in rows if r['mode'] == mode]
        med = {'repeat': 'median', 'mode': mode, 'note': ''}
        for field in FIELDS[2:-1]:
            med[field] = mnbench.median(r[field] for r in mine)
        medians[mode] = med
    # cpu_us_per_pkt holds off/mode: the packet rate per CPU second, relative to off.
    ratios = [{'repeat': 'ratio', 'mode': f'{mode}/off', 'note': '',
               'udp_rx_kpps': mnbench.ratio(medians[mode]['udp_rx_kpps'],
                                            medians['off']['udp_rx_kpps']),
               'cpu_us_per_pkt': mnbench.ratio(medians['off']['cpu_us_per_pkt'],
                                               medians[mode]['cpu_us_per_pkt'])}
              for mode, sampling in MODES if sampling is not None]
    return list(medians.values()), ratios


def report(rows, medians, ratios, hit_rows, repeats):
    print('\nmedians over %d run(s), UDP 64 B h1 -> h2 through one pyovs switch' % repeats)
    mnbench.print_table(
        ['mode', 'UDP rx kpps', 'UDP tx kpps', 'switch CPU us/pkt', 'sample pool',
         'pool/sampling', 'flow samples', 'lost', 'unaccounted', 'at collector'],
        [[m['mode'], mnbench.fmt(m['udp_rx_kpps'], 1), mnbench.fmt(m['udp_tx_kpps'], 1),
          mnbench.fmt(m['cpu_us_per_pkt'], 2),
          mnbench.fmt(m['sample_pool']), mnbench.fmt(m['expected_draws'], 0),
          mnbench.fmt(m['flow_samples']), mnbench.fmt(m['samples_lost']),
          mnbench.fmt(m['unaccounted']), mnbench.fmt(m['collector_samples'])]
         for m in medians])
    print()
    mnbench.print_table(['ratio', 'UDP rx', 'pkts per switch CPU s'],
                        [[r['mode'], mnbench.fmt(r['udp_rx_kpps'], 3),
                          mnbench.fmt(r['cpu_us_per_pkt'], 3)] for r in ratios])
    print('\ndatapath hit path in this process (best of 3 x %d packets)' % HIT_PATH_PACKETS)
    mnbench.print_table(['megaflow actions', 'us/packet'],
                        [[r['mode'], mnbench.fmt(r['hit_path_us'], 3)] for r in hit_rows])
    for row in rows:
        if row['note']:
            print('note: %s run %s: %s' % (row['mode'], row['repeat'], row['note']))


def main():
    args = parse_args()
    setLogLevel('info' if args.verbose else 'warning')
    spec = mnbench.switch_spec('pyovs')
    if spec.factory is None:
        raise SystemExit('pyovs unavailable: %s' % spec.error)
    hit_rows = hit_path_rows()
    collector = Collector()
    rows = []
    try:
        with mnbench.running_net(SingleSwitchTopo(k=2), spec.factory) as (net, _):
            h1, h2 = net.get('h1', 'h2')
            if wait_forwarding(h1, h2):
                udp_kpps(h1, h2, WARMUP_SECONDS)
            for repeat in range(1, args.repeat + 1):
                turn = (repeat - 1) % len(MODES)
                for mode, sampling in MODES[turn:] + MODES[:turn]:
                    print('run %d: %s' % (repeat, mode))
                    row = dict.fromkeys(FIELDS)
                    row.update(repeat=repeat, mode=mode, note='')
                    try:
                        measure(net, sampling, collector, args, row)
                    except BenchError as exc:
                        row['note'] = str(exc)
                    rows.append(row)
    finally:
        collector.close()
    medians, ratios = summarize(rows)
    report(rows, medians, ratios, hit_rows, args.repeat)
    mnbench.write_csv(args.csv, FIELDS, rows + medians + ratios + hit_rows)


if __name__ == '__main__':
    mnbench.run(main)
