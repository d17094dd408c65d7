"""Throughput and latency of pyovs beside OVS and the Linux bridge.

One switch, two hosts (Mininet's SingleSwitchTopo with k=2, default veth
links, no controller, every switch in standalone/learning mode), built once
per switch kind and repeat, in the order given by --switches:

- pyovs: PyOVSSwitch, failMode=standalone;
- ovs: Open vSwitch with the kernel datapath if the openvswitch module is
  available, else the userspace datapath (the label says which). The
  userspace datapath cannot carry TCP or UDP from veths with TX checksum
  offload, so for it (only) the script turns it off on the hosts;
- bridge: the Linux bridge (mininet.nodelib.LinuxBridge, no STP).

Each run measures, from h1 to h2:

- TCP: iperf3 goodput in Gbit/s (as received, from the client's -J report);
- UDP: iperf3 with an 18-byte payload, i.e. 64-byte Ethernet frames with
  FCS, at -b 0 (as fast as the sender can). The figure is packets per second
  *received* by the server (its -J report: packets - lost_packets over its
  seconds); the sender's rate is printed beside it;
- ping: average RTT of --pings pings at 0.2 s intervals;
- pyovs only: the megaflow cache hit rate during the TCP run,
  hits / (hits + missed) from the deltas of the `lookups:` line of
  `dpctl/show` taken just before and just after it.

The table shows the median of each figure over --repeat runs (repeats are
the outer loop, so slow drift of the machine hits all switches alike),
followed by the ratios pyovs/OVS and pyovs/bridge for TCP and UDP. The CSV
holds one row per run, one 'median' row per switch, and 'ratio' rows whose
tcp_gbps and udp_rx_kpps columns hold ratios of medians.

    .venv/bin/python experiments/bench_switches.py --switches ovs,bridge
"""

import argparse
import json
import re
import subprocess
import time

from mininet.log import setLogLevel
from mininet.topo import SingleSwitchTopo

import mnbench

IPERF_PORT = 5201
UDP_PAYLOAD = 18          # 14 Ethernet + 20 IP + 8 UDP + 18 + 4 FCS = 64 bytes
LOOKUPS_RE = re.compile(r'lookups:\s*hit:(\d+)\s+missed:(\d+)')
RTT_RE = re.compile(r'rtt min/avg/max/mdev = [\d.]+/([\d.]+)/')
FIELDS = ('repeat', 'switch', 'tcp_gbps', 'udp_rx_kpps', 'udp_tx_kpps',
          'ping_avg_ms', 'megaflow_hit_rate', 'megaflow_hits',
          'megaflow_missed', 'note')


class BenchError(Exception):
    """A measurement that could not be made; the run goes on without it."""


def parse_args():
    parser = argparse.ArgumentParser(
        description='pyovs vs OVS vs Linux bridge, one switch, two hosts')
    parser.add_argument('--switches', default=','.join(mnbench.SWITCH_KINDS),
                        type=mnbench.parse_kinds,
                        help='comma-separated kinds, in the order to run '
                             '(default: pyovs,ovs,bridge)')
    parser.add_argument('--repeat', type=int, default=1,
                        help='runs per switch (default 1)')
    parser.add_argument('--time', type=int, default=10,
                        help='TCP test seconds (default 10)')
    parser.add_argument('--udp-time', type=int, default=10,
                        help='UDP test seconds (default 10)')
    parser.add_argument('--pings', type=int, default=20,
                        help='pings for the RTT (default 20)')
    mnbench.add_output_options(parser, 'experiments/results/bench.csv', ovs_datapath=True)
    return parser.parse_args()


# --- measurements -----------------------------------------------------------

def wait_forwarding(src, dst, timeout=15.0):
    """Ping dst from src once a second until one answers or timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ' 0% packet loss' in src.cmd('ping', '-c1', '-W1', dst.IP()):
            return True
    return False


def ping_avg_ms(src, dst, count):
    """Return the average RTT in ms of count pings from src to dst."""
    out = src.cmd('ping', '-q', '-c', count, '-i', '0.2', '-W', '1',
                  dst.IP())
    match = RTT_RE.search(out)
    if not match:
        raise BenchError('ping: no RTT in output: %s' % out.strip()[-80:])
    return float(match.group(1))


def run_iperf3(client, server, duration, extra_args):
    """Run one iperf3 test from client to server.

    Args:
        duration: seconds of the test.
        extra_args: further client arguments (e.g. ['-u', '-b', '0']).
    Returns:
        (client report, server report), both decoded from -J.
    Raises:
        BenchError: the server did not listen, a side hung or reported an
        error.
    """
    server_args = ['iperf3', '-s', '-1', '-J', '-p', str(IPERF_PORT)]
    client_args = ['iperf3', '-c', server.IP(), '-p', str(IPERF_PORT), '-J',
                   '--connect-timeout', '3000', '-t', str(duration)]
    with mnbench.background(server, server_args) as srv:
        if not mnbench.wait_listening(server, IPERF_PORT):
            raise BenchError('iperf3 server did not listen')
        with mnbench.background(client, client_args + extra_args) as cli:
            try:
                client_out, _ = cli.communicate(timeout=duration + 30)
                server_out, _ = srv.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                raise BenchError('iperf3 hung') from None
    reports = []
    for out in (client_out, server_out):
        try:
            report = json.loads(out)
        except ValueError:
            raise BenchError('iperf3: no JSON report') from None
        if 'error' in report:
            raise BenchError('iperf3: %s' % report['error'])
        reports.append(report)
    return reports


def tcp_gbps(client, server, duration):
    """Return the TCP goodput from client to server in Gbit/s."""
    report, _ = run_iperf3(client, server, duration, [])
    return report['end']['sum_received']['bits_per_second'] / 1e9


def udp_kpps(client, server, duration):
    """Return (received, sent) thousands of 64-byte frames per second."""
    sent, received = run_iperf3(client, server, duration,
                                ['-u', '-b', '0', '-l', str(UDP_PAYLOAD)])
    rx = received['end']['sum_received']
    tx = sent['end']['sum_sent']
    rx_pps = (rx['packets'] - rx['lost_packets']) / rx['seconds']
    return rx_pps / 1e3, tx['packets'] / tx['seconds'] / 1e3


def pyovs_counters(switch, spec, notes):
    """Return the (hit, missed) megaflow lookup counters of a pyovs switch.

    Returns None for other switches, or if dpctl/show has no `lookups:`
    line (then a note says so).
    """
    if spec.kind != 'pyovs':
        return None
    found = LOOKUPS_RE.findall(switch.dpctl('dpctl/show'))
    if not found:
        notes.append('dpctl/show has no lookups: line')
        return None
    return (sum(int(hit) for hit, _ in found),
            sum(int(missed) for _, missed in found))


def measure(net, spec, args, row):
    """Fill row with every measurement of one switch; note what failed."""
    h1, h2 = net.get('h1', 'h2')
    switch = net.get('s1')
    notes = []
    if spec.tx_off:
        print('  ethtool -K <intf> tx off on h1, h2 (OVS userspace datapath)')
        mnbench.hosts_tx_off((h1, h2))
    if not wait_forwarding(h1, h2):
        row['note'] = 'no connectivity h1->h2'
        return
    try:
        row['ping_avg_ms'] = ping_avg_ms(h1, h2, args.pings)
    except BenchError as exc:
        notes.append(str(exc))
    before = pyovs_counters(switch, spec, notes)
    try:
        row['tcp_gbps'] = tcp_gbps(h1, h2, args.time)
    except BenchError as exc:
        notes.append('tcp: %s' % exc)
    after = pyovs_counters(switch, spec, notes) if before else None
    if after:
        hits, missed = after[0] - before[0], after[1] - before[1]
        row.update(megaflow_hits=hits, megaflow_missed=missed,
                   megaflow_hit_rate=mnbench.ratio(hits, hits + missed))
    try:
        row['udp_rx_kpps'], row['udp_tx_kpps'] = udp_kpps(h1, h2,
                                                          args.udp_time)
    except BenchError as exc:
        notes.append('udp: %s' % exc)
    row['note'] = '; '.join(notes)


def run_one(spec, args, repeat):
    """Build the network on one switch kind, measure it, stop it."""
    row = dict.fromkeys(FIELDS)
    row.update(repeat=repeat, switch=spec.label, note='')
    if spec.factory is None:
        row['note'] = 'unavailable: %s' % spec.error
        return row
    print('%s (run %d): measuring' % (spec.label, repeat))
    with mnbench.running_net(SingleSwitchTopo(k=2), spec.factory) as (net, _):
        measure(net, spec, args, row)
    return row


# --- report -----------------------------------------------------------------

def summarize(rows, labels):
    """Return (median rows, ratio rows) over the per-run rows."""
    medians = mnbench.medians_by_switch(rows, labels, FIELDS[2:-1])
    ratios = []
    if 'pyovs' in medians:
        for other in labels:
            if other == 'pyovs':
                continue
            ratios.append({
                'repeat': 'ratio', 'switch': 'pyovs/' + other, 'note': '',
                'tcp_gbps': mnbench.ratio(medians['pyovs']['tcp_gbps'],
                                          medians[other]['tcp_gbps']),
                'udp_rx_kpps': mnbench.ratio(
                    medians['pyovs']['udp_rx_kpps'],
                    medians[other]['udp_rx_kpps'])})
    return list(medians.values()), ratios


def report(rows, medians, ratios, repeats):
    """Print the median table, the ratios and any notes."""
    print('\nmedians over %d run(s), h1 -> h2 through one switch' % repeats)
    mnbench.print_table(
        ['switch', 'TCP Gbit/s', 'UDP rx kpps', 'UDP tx kpps',
         'ping avg ms', 'megaflow hit'],
        [[m['switch'], mnbench.fmt(m['tcp_gbps']),
          mnbench.fmt(m['udp_rx_kpps'], 1), mnbench.fmt(m['udp_tx_kpps'], 1),
          mnbench.fmt(m['ping_avg_ms'], 3),
          mnbench.fmt(m['megaflow_hit_rate'], 4)] for m in medians])
    if ratios:
        print()
        mnbench.print_table(
            ['ratio', 'TCP', 'UDP rx'],
            [[r['switch'], mnbench.fmt(r['tcp_gbps']),
              mnbench.fmt(r['udp_rx_kpps'])] for r in ratios])
    for row in rows:
        if row['note']:
            print('note: %s run %s: %s'
                  % (row['switch'], row['repeat'], row['note']))


def main():
    args = parse_args()
    setLogLevel('info' if args.verbose else 'warning')
    datapath = None if args.ovs_datapath == 'auto' else args.ovs_datapath
    specs = [mnbench.switch_spec(kind, datapath) for kind in args.switches]
    for spec in specs:
        if spec.kind == 'ovs':
            print('OVS: %s datapath' % spec.label.split('-')[1])
        if spec.error:
            print('pyovs unavailable, skipped: %s' % spec.error)
    rows = mnbench.repeated_runs(specs, args, run_one)
    medians, ratios = summarize(rows, [spec.label for spec in specs])
    report(rows, medians, ratios, args.repeat)
    mnbench.write_csv(args.csv, FIELDS, rows + medians + ratios)


if __name__ == '__main__':
    mnbench.run(main)
