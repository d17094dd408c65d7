"""A balance-tcp bond of 2 links against one link, through pyovs (issue 11's target).

    h1 ── [s1] ══ links ══ [s2] ── h2

Two pyovs bridges in a private mnovs database (one vswitchd each), and, for
comparison, two OVS 3.1 userspace bridges (datapath_type=netdev, in one
ovs-vswitchd run in private directories; its hosts have TX checksum offload
off, which OVS userspace needs, see DESIGN.md). Hosts are network
namespaces. Each configuration is built afresh and measured with
`iperf3 -P 8` from h1 to h2 (TCP):

    one link     s1 and s2 joined by one veth, plain ports
    bond x2      two veths, `add-bond ... bond_mode=balance-tcp lacp=active
                 other_config:lacp-time=fast` on both sides (OVS's other
                 defaults: rebalancing every 10 s)

A veth has no line rate, so a bond can only add capacity where the links
are the bottleneck: with --rate R (Mbit/s, default 300) every link is
shaped to R in both directions (tc tbf, set once the switches have the
links: OVS removes a qdisc it did not configure), as a physical link
would be. With --rate 0 the links are not shaped and the switches' CPU is the limit; that
run shows what bonding costs rather than what it gives. The target is
bond x2 >= 1.5 x one link, for pyovs; --switches pyovs leaves OVS out.

Output: a table (median Gbit/s per configuration over --repeat runs, the
ratio to one link, and the share of s1's data sent on each member) and a
CSV (default experiments/results/bond.csv) with every run.

    .venv/bin/python experiments/bench_bond.py
    .venv/bin/python experiments/bench_bond.py --rate 0 --repeat 1
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import mnbench

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests',
                                'integration'))
from mnovs_db import MnovsDb  # noqa: E402
from test_bond_live import OvsPrivate, sh  # noqa: E402

H1, H2 = '10.0.78.1', '10.0.78.2'
CONFIGS = ('one link', 'bond x2')
SWITCHES = ('pyovs', 'ovs')
FIELDS = ('switch', 'config', 'rate_mbit', 'run', 'gbps', 'ratio', 'member_share', 'note')


class Pair:
    """h1 - s1 = links = s2 - h2 for one configuration; stop() removes it all.

    Args:
        db: the MnovsDb (pyovs) or OvsPrivate (ovs) whose ovs-vsctl builds it.
    """

    def __init__(self, db, config, rate):
        self.db, self.config, self.rate = db, config, rate
        self.ovs = isinstance(db, OvsPrivate)
        self.n_links = 2 if config == 'bond x2' else 1
        self.links = [(f'bbl{i}a', f'bbl{i}b') for i in range(1, self.n_links + 1)]
        self.made = []

    def start(self):
        for host, ip, near in (('bbh1', H1, 'bbh1o'), ('bbh2', H2, 'bbh2o')):
            sh('ip', 'netns', 'add', host)
            self.made.append(('netns', host))
            sh('ip', 'link', 'add', near, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host)
            self.made.append(('link', near))
            sh('ip', '-n', host, 'addr', 'add', f'{ip}/24', 'dev', 'eth0')
            sh('ip', '-n', host, 'link', 'set', 'eth0', 'up')
            sh('ip', 'link', 'set', near, 'up')
            if self.ovs:
                sh('ip', 'netns', 'exec', host, 'ethtool', '-K', 'eth0', 'tx', 'off')
        for a, b in self.links:
            sh('ip', 'link', 'add', a, 'type', 'veth', 'peer', 'name', b)
            self.made.append(('link', a))
            for end in (a, b):
                sh('ip', 'link', 'set', end, 'up')
        for switch, host_end, ends in (('bbs1', 'bbh1o', [a for a, _ in self.links]),
                                       ('bbs2', 'bbh2o', [b for _, b in self.links])):
            self.vsctl('add-br', switch, *(('--', 'set', 'bridge', switch, 'datapath_type=netdev')
                                           if self.ovs else ()))
            self.made.append(('bridge', switch))
            self.vsctl('add-port', switch, host_end)
            if self.n_links == 1:
                self.vsctl('add-port', switch, ends[0])
            else:
                self.vsctl('add-bond', switch, f'{switch}b', *ends, 'bond_mode=balance-tcp',
                           'lacp=active', 'other_config:lacp-time=fast')
        if self.rate:
            # After the switches took the links: OVS drops a qdisc on a port
            # whose QoS is not configured.
            for end in (end for link in self.links for end in link):
                sh('tc', 'qdisc', 'replace', 'dev', end, 'root', 'tbf', 'rate',
                   f'{self.rate}mbit', 'burst', '256kb', 'latency', '20ms')
        if self.n_links > 1:
            self.wait(lambda: all(self.negotiated(s) for s in ('bbs1', 'bbs2')),
                      'LACP negotiation')
        self.wait(lambda: subprocess.run(['ip', 'netns', 'exec', 'bbh1', 'ping', '-c', '1',
                                          '-W', '1', H2], capture_output=True).returncode == 0,
                  'h1 to reach h2')

    def negotiated(self, switch):
        text = self.appctl(switch, 'bond/show', f'{switch}b')
        return 'lacp_status: negotiated' in text and text.count(': enabled') == 2

    def vsctl(self, *args):
        if self.ovs:
            self.db.vsctl(*args)
            return
        done = self.db.vsctl(*args)
        if done.returncode:
            raise RuntimeError(f'ovs-vsctl {" ".join(args)}: {done.stderr.strip()}')

    def appctl(self, switch, *args):
        if self.ovs:                    # one ovs-vswitchd serves both bridges
            return self.db.appctl(*args)
        return sh('ovs-appctl', '--timeout=10', '-t', switch, *args, env=self.db.env)

    @staticmethod
    def wait(predicate, what, timeout=30.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise RuntimeError(f'timed out waiting for {what}')
            time.sleep(0.25)

    def tx_bytes(self):
        """Bytes s1 sent on each of its links."""
        out = {}
        for a, _ in self.links:
            with open(f'/sys/class/net/{a}/statistics/tx_bytes') as f:
                out[a] = int(f.read())
        return out

    def iperf3(self, seconds, parallel):
        """(Gbit/s received, share of s1's bytes per link)."""
        server = subprocess.Popen(['ip', 'netns', 'exec', 'bbh2', 'iperf3', '-s', '-1'],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.wait(lambda: ':5201' in sh('ip', 'netns', 'exec', 'bbh2', 'ss', '-ltn'),
                      'the iperf3 server', 10)
            before = self.tx_bytes()
            out = sh('ip', 'netns', 'exec', 'bbh1', 'iperf3', '-c', H2, '-t', str(seconds),
                     '-P', str(parallel), '-J', check=False)
            after = self.tx_bytes()
        finally:
            if server.poll() is None:
                server.kill()
            server.wait()
        report = json.loads(out)
        if 'error' in report:
            raise RuntimeError(f'iperf3: {report["error"]}')
        sent = {link: after[link] - before[link] for link in after}
        total = sum(sent.values()) or 1
        share = '/'.join(f'{sent[a] / total:.2f}' for a, _ in self.links)
        return report['end']['sum_received']['bits_per_second'] / 1e9, share

    def stop(self):
        for kind, name in reversed(self.made):
            if kind == 'bridge':
                try:
                    self.db.vsctl('--if-exists', 'del-br', name)
                except RuntimeError:
                    pass
            elif kind == 'netns':
                sh('ip', 'netns', 'del', name, check=False)
            else:
                sh('ip', 'link', 'del', name, check=False)


def parse_args():
    parser = argparse.ArgumentParser(description='balance-tcp bond of 2 links vs one link')
    parser.add_argument('--rate', type=int, default=300,
                        help='Mbit/s per link, tc tbf both ways; 0: unshaped (default 300)')
    parser.add_argument('--time', type=int, default=10, help='iperf3 seconds (default 10)')
    parser.add_argument('--parallel', type=int, default=8, help='iperf3 -P (default 8)')
    parser.add_argument('--repeat', type=int, default=3, help='runs per configuration')
    parser.add_argument('--switches', default=','.join(SWITCHES),
                        help='comma-separated, of pyovs,ovs (default both)')
    mnbench.add_output_options(parser, os.path.join(os.path.dirname(__file__), 'results',
                                                    'bond.csv'), ovs_datapath=False)
    return parser.parse_args()


def measure(db, switch, args, rows):
    for run in range(1, args.repeat + 1):
        for config in CONFIGS:
            row = {'switch': switch, 'config': config, 'rate_mbit': args.rate, 'run': run}
            pair = Pair(db, config, args.rate)
            try:
                pair.start()
                row['gbps'], row['member_share'] = pair.iperf3(args.time, args.parallel)
            except RuntimeError as err:
                row['note'] = str(err)
                print(f'{switch} {config}, run {run}: {err}')
            finally:
                with mnbench.deferred_signals():
                    pair.stop()
            rows.append(row)


def main():
    args = parse_args()
    switches = [s for s in args.switches.split(',') if s in SWITCHES]
    base = tempfile.mkdtemp(prefix='mnovs-bench-bond-')
    rows = []
    try:
        for switch in switches:
            db = MnovsDb(base) if switch == 'pyovs' else OvsPrivate(base)
            try:
                db.start()
                measure(db, switch, args, rows)
            finally:
                with mnbench.deferred_signals():
                    db.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    table = []
    verdict = None
    for switch in switches:
        medians = {config: mnbench.median(r.get('gbps') for r in rows
                                          if (r['switch'], r['config']) == (switch, config))
                   for config in CONFIGS}
        for config in CONFIGS:
            ratio = mnbench.ratio(medians[config], medians['one link'])
            shares = ' '.join(r['member_share'] for r in rows
                              if (r['switch'], r['config']) == (switch, config)
                              and r.get('member_share'))
            rows.append({'switch': switch, 'config': config, 'rate_mbit': args.rate,
                         'run': 'median', 'gbps': medians[config], 'ratio': ratio})
            table.append([switch, config, mnbench.fmt(medians[config]), mnbench.fmt(ratio),
                          shares])
        if switch == 'pyovs':
            verdict = mnbench.ratio(medians['bond x2'], medians['one link'])
    print(f'\niperf3 -P {args.parallel}, {args.time} s, links '
          + (f'shaped to {args.rate} Mbit/s each' if args.rate else 'unshaped'))
    mnbench.print_table(['switch', 'config', 'Gbit/s', 'x one link',
                         "s1's bytes per link, each run"], table)
    if 'pyovs' in switches:
        print('pyovs: target bond x2 >= 1.5 x one link: '
              + ('no data' if verdict is None else
                 f'{"met" if verdict >= 1.5 else "NOT met"} ({verdict:.2f})'))
    mnbench.write_csv(args.csv, FIELDS, rows)


if __name__ == '__main__':
    if os.geteuid() != 0:
        sys.exit(f'{sys.argv[0]}: must run as root')
    try:
        main()
    except KeyboardInterrupt:
        sys.exit('interrupted; namespaces, links and switches removed')
