"""Start, pingall and stop times of a long chain: pyovs beside OVS userspace.

Mininet's LinearTopo with N switches (default 50), one host per switch,
default veth links, no controller, every switch standalone. For each switch
kind, in the order of --switches (pyovs, then OVS with the userspace
datapath), in one run:

- build: Mininet creates hosts, switches and links (net.build);
- start: net.start, which starts every switch and then calls the class's
  batchStartup (OVS gets batch=True, as with `mn --switch ovs`: one
  ovs-vsctl call for all bridges);
- ready: net.waitConnected, until every switch says connected();
- pingall: net.pingAll with a 1 s ping timeout, its wall time and its loss.
  It runs N*(N-1) pings one after another, so it mostly measures first
  packets: MAC learning and megaflow set-up along the chain;
- stop: net.stop;
- pyovs only: the resident memory (VmRSS from /proc/<pid>/status) of each
  switch's vswitchd after --settle seconds of idleness following the
  start, as max and mean over the switches;
- leftovers after stop: for pyovs, how many of the vswitchd pids still live
  (anything but 0 is a bug); for OVS, how many of the bridges ovs-vsctl
  still lists.

    .venv/bin/python experiments/scale_linear.py --n 50
"""

import argparse
import statistics
import subprocess
import time

from mininet.log import setLogLevel
from mininet.topo import LinearTopo

import mnbench

FIELDS = ('switch', 'n', 'build_s', 'start_s', 'ready_s', 'pingall_s',
          'ping_loss_pct', 'stop_s', 'rss_max_mb', 'rss_mean_mb',
          'left_behind', 'note')
KINDS = ('pyovs', 'ovs')


def parse_args():
    parser = argparse.ArgumentParser(
        description='linear,N start/pingall/stop: pyovs vs OVS userspace')
    parser.add_argument('--n', type=int, default=50,
                        help='switches in the chain (default 50)')
    parser.add_argument('--switches', default=','.join(KINDS),
                        type=mnbench.parse_kinds,
                        help='comma-separated kinds among pyovs,ovs '
                             '(default: pyovs,ovs)')
    parser.add_argument('--settle', type=float, default=2.0,
                        help='idle seconds before reading RSS (default 2)')
    mnbench.add_output_options(parser, 'experiments/results/scale.csv', ovs_datapath=False)
    return parser.parse_args()


def vswitchd_rss(switches):
    """Return (pids, RSS in MiB per live pid) of pyovs switches."""
    pids = [switch.pid_vswitchd for switch in switches]
    sizes = [mnbench.rss_mb(pid) for pid in pids]
    return pids, [size for size in sizes if size is not None]


def ovs_bridges_left(names):
    """Return how many of the bridge names ovs-vsctl still lists."""
    listed = subprocess.run(['ovs-vsctl', 'list-br'], capture_output=True,
                            text=True).stdout.split()
    return len(set(listed) & set(names))


def run_one(spec, args):
    """Start, settle, pingall and stop linear,N on one switch kind."""
    row = dict.fromkeys(FIELDS)
    row.update(switch=spec.label, n=args.n, note='')
    if spec.factory is None:
        row['note'] = 'unavailable: %s' % spec.error
        return row
    print('%s: linear,%d' % (spec.label, args.n))
    pids = []
    names = []
    with mnbench.running_net(LinearTopo(k=args.n, n=1), spec.factory,
                             wait_connected=True) as (net, timings):
        names = [switch.name for switch in net.switches]
        if not timings['connected']:
            row['note'] = 'not all switches connected after 60 s'
        time.sleep(args.settle)
        if spec.kind == 'pyovs':
            pids, sizes = vswitchd_rss(net.switches)
            if sizes:
                row.update(rss_max_mb=max(sizes),
                           rss_mean_mb=statistics.mean(sizes))
        t0 = time.monotonic()
        row['ping_loss_pct'] = net.pingAll(timeout='1')
        row['pingall_s'] = time.monotonic() - t0
    row.update(build_s=timings['build'], start_s=timings['start'],
               ready_s=timings['ready'], stop_s=timings['stop'])
    if spec.kind == 'pyovs':
        alive = sum(1 for pid in pids if mnbench.pid_alive(pid))
        row['left_behind'] = '%d/%d vswitchd alive' % (alive, len(pids))
    else:
        row['left_behind'] = '%d/%d bridges listed' % (
            ovs_bridges_left(names), len(names))
    return row


def report(rows):
    """Print one line per switch kind."""
    print()
    mnbench.print_table(
        ['switch', 'N', 'build s', 'start s', 'ready s', 'pingall s',
         'loss %', 'stop s', 'RSS max MB', 'RSS mean MB', 'after stop'],
        [[r['switch'], str(r['n']), mnbench.fmt(r['build_s']),
          mnbench.fmt(r['start_s']), mnbench.fmt(r['ready_s']),
          mnbench.fmt(r['pingall_s'], 1), mnbench.fmt(r['ping_loss_pct'], 1),
          mnbench.fmt(r['stop_s']), mnbench.fmt(r['rss_max_mb'], 1),
          mnbench.fmt(r['rss_mean_mb'], 1), mnbench.fmt(r['left_behind'])]
         for r in rows])
    for row in rows:
        if row['note']:
            print('note: %s: %s' % (row['switch'], row['note']))


def main():
    args = parse_args()
    setLogLevel('info' if args.verbose else 'warning')
    if 'bridge' in args.switches:
        raise SystemExit('scale_linear compares pyovs and OVS only')
    specs = [mnbench.switch_spec(kind, ovs_datapath='user')
             for kind in args.switches]
    for spec in specs:
        if spec.error:
            print('pyovs unavailable, skipped: %s' % spec.error)
    with mnbench.ovs_daemons(any(spec.needs_ovs for spec in specs)):
        rows = [run_one(spec, args) for spec in specs]
    report(rows)
    mnbench.write_csv(args.csv, FIELDS, rows)


if __name__ == '__main__':
    mnbench.run(main)
