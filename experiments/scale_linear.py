"""Start and stop times, memory and add-port latency of long chains: pyovs beside OVS.

Mininet's LinearTopo with N switches (default: N = 50 and N = 200 in one run),
one host per switch, default veth links, no controller, every switch
standalone. For each N and each switch kind (pyovs, then OVS with the
userspace datapath):

- build: Mininet creates hosts, switches and links (net.build);
- start: net.start, which starts every switch and then calls the class's
  batchStartup (one ovs-vsctl transaction for all bridges, for OVS as
  `mn --switch ovs` does it, and for pyovs through mnovs's database);
- ready: net.waitConnected, until every switch says connected();
- pingall (N <= --pingall-max only): net.pingAll with a 1 s timeout, wall
  time and loss. It runs N*(N-1) pings one after another, so it mostly
  measures first packets: MAC learning and megaflow set-up along the chain;
- add-port: s1's host port is deleted (detach), then added back (attach:
  `ovs-vsctl add-port`) while
  h1 pings h2 every 10 ms with static ARP entries; the time from the add to
  the first echo reply, median of --add-port-trials;
- stop: net.stop;
- memory, pyovs only, after --settle seconds idle: RSS and PSS (proportional
  set size, /proc/PID/smaps_rollup: pages shared with the parent the
  switches are forked from count by share) of each vswitchd, max and mean,
  and the PSS of the bridge layer they are forked from;
- leftovers after stop: for pyovs, how many of the vswitchd pids still live
  (anything but 0 is a bug); for OVS, how many of the bridges ovs-vsctl
  still lists.

A last table gives pyovs/OVS ratios of start, stop and add-port per N.

    .venv/bin/python experiments/scale_linear.py              # N = 50 and 200
    .venv/bin/python experiments/scale_linear.py --sizes 50
"""

import argparse
import re
import statistics
import subprocess
import time

from mininet.log import setLogLevel
from mininet.topo import LinearTopo

import mnbench

FIELDS = ('switch', 'n', 'build_s', 'start_s', 'ready_s', 'pingall_s',
          'ping_loss_pct', 'add_port_s', 'stop_s', 'rss_max_mb', 'rss_mean_mb',
          'pss_max_mb', 'pss_mean_mb', 'pss_parent_mb', 'left_behind', 'note')
KINDS = ('pyovs', 'ovs')
PING_INTERVAL = '0.01'


def parse_args():
    parser = argparse.ArgumentParser(
        description='linear,N start/stop/memory/add-port: pyovs vs OVS userspace')
    parser.add_argument('--sizes', default='50,200',
                        type=lambda text: [int(n) for n in text.split(',')],
                        help='comma-separated chain lengths (default 50,200)')
    parser.add_argument('--switches', default=','.join(KINDS),
                        type=mnbench.parse_kinds,
                        help='comma-separated kinds among pyovs,ovs (default: pyovs,ovs)')
    parser.add_argument('--settle', type=float, default=2.0,
                        help='idle seconds before reading memory (default 2)')
    parser.add_argument('--pingall-max', type=int, default=50,
                        help='run pingall only up to this N (default 50)')
    parser.add_argument('--add-port-trials', type=int, default=3,
                        help='add-port measurements per run (default 3)')
    mnbench.add_output_options(parser, 'experiments/results/scale.csv', ovs_datapath=False)
    return parser.parse_args()


def pyovs_memory(switches, row):
    """Fill the RSS and PSS columns from the vswitchds of these switches."""
    from mnovs import ovs_ctl
    pids = [pid for pid in (switch.pid_vswitchd for switch in switches) if pid]
    for column, reader in (('rss', mnbench.rss_mb), ('pss', mnbench.pss_mb)):
        sizes = [size for size in map(reader, pids) if size is not None]
        if sizes:
            row[column + '_max_mb'] = max(sizes)
            row[column + '_mean_mb'] = statistics.mean(sizes)
    parent = ovs_ctl.bridge_pid()
    if parent:
        row['pss_parent_mb'] = mnbench.pss_mb(parent)
    return pids


def ovs_bridges_left(names):
    """Return how many of the bridge names ovs-vsctl still lists."""
    listed = subprocess.run(['ovs-vsctl', 'list-br'], capture_output=True,
                            text=True).stdout.split()
    return len(set(listed) & set(names))


def add_port_latency(net):
    """Seconds from s1.attach(h1's port) to h1's first echo reply from h2."""
    h1, h2, s1 = net.get('h1', 'h2', 's1')
    link = h1.defaultIntf().link
    intf = link.intf1 if link.intf1.node is s1 else link.intf2
    # Static ARP: the kernel retries an unanswered ARP only once a second,
    # which would hide the latency being measured.
    h1.setARP(h2.IP(), h2.MAC())
    h2.setARP(h1.IP(), h1.MAC())
    s1.detach(intf)
    time.sleep(0.5)
    # -c with -w: exit after a few replies (ping's pipe output is block-buffered;
    # the -D timestamps, not the reading, give the time).
    ping = h1.popen(['ping', '-D', '-n', '-i', PING_INTERVAL, '-c', '3', '-w', '10', h2.IP()])
    time.sleep(0.2)                 # the pinger runs, unanswered
    t0 = time.time()
    s1.attach(intf)
    first = None
    for line in ping.stdout:
        match = re.match(rb'\[(\d+\.\d+)\] \d+ bytes from', line)
        if match:
            first = float(match.group(1))
            break
    ping.terminate()
    ping.wait()
    return None if first is None else first - t0


def run_one(spec, n, args):
    """Start, settle, (pingall), add-port and stop linear,N on one switch kind."""
    row = dict.fromkeys(FIELDS)
    row.update(switch=spec.label, n=n, note='')
    if spec.factory is None:
        row['note'] = 'unavailable: %s' % spec.error
        return row
    print('%s: linear,%d' % (spec.label, n))
    pids = []
    with mnbench.running_net(LinearTopo(k=n, n=1), spec.factory,
                             wait_connected=True) as (net, timings):
        names = [switch.name for switch in net.switches]
        if not timings['connected']:
            row['note'] = 'not all switches connected after 60 s'
        time.sleep(args.settle)
        if spec.kind == 'pyovs':
            pids = pyovs_memory(net.switches, row)
        if n <= args.pingall_max:
            t0 = time.monotonic()
            row['ping_loss_pct'] = net.pingAll(timeout='1')
            row['pingall_s'] = time.monotonic() - t0
        trials = [add_port_latency(net) for _ in range(args.add_port_trials)]
        row['add_port_s'] = mnbench.median(trials)
    row.update(build_s=timings['build'], start_s=timings['start'],
               ready_s=timings['ready'], stop_s=timings['stop'])
    if spec.kind == 'pyovs':
        alive = sum(1 for pid in pids if mnbench.pid_alive(pid))
        row['left_behind'] = '%d/%d vswitchd alive' % (alive, len(pids))
    else:
        row['left_behind'] = '%d/%d bridges listed' % (ovs_bridges_left(names), len(names))
    return row


def report(rows):
    """Print one line per run, then the pyovs/OVS ratios per N."""
    print()
    mnbench.print_table(
        ['switch', 'N', 'build s', 'start s', 'ready s', 'pingall s', 'loss %',
         'add-port s', 'stop s', 'RSS max MB', 'PSS max MB', 'PSS mean MB',
         'parent PSS MB', 'after stop'],
        [[r['switch'], str(r['n']), mnbench.fmt(r['build_s']),
          mnbench.fmt(r['start_s']), mnbench.fmt(r['ready_s']),
          mnbench.fmt(r['pingall_s'], 1), mnbench.fmt(r['ping_loss_pct'], 1),
          mnbench.fmt(r['add_port_s'], 3), mnbench.fmt(r['stop_s']),
          mnbench.fmt(r['rss_max_mb'], 1), mnbench.fmt(r['pss_max_mb'], 1),
          mnbench.fmt(r['pss_mean_mb'], 1), mnbench.fmt(r['pss_parent_mb'], 1),
          mnbench.fmt(r['left_behind'])]
         for r in rows])
    ratios = []
    for n in sorted({r['n'] for r in rows}):
        by_kind = {r['switch'].split('-')[0]: r for r in rows if r['n'] == n}
        if 'pyovs' in by_kind and 'ovs' in by_kind:
            ours, theirs = by_kind['pyovs'], by_kind['ovs']
            ratios.append([str(n)] + [
                mnbench.fmt(mnbench.ratio(ours[key], theirs[key]))
                for key in ('start_s', 'stop_s', 'add_port_s')])
    if ratios:
        print()
        mnbench.print_table(['N', 'start pyovs/OVS', 'stop pyovs/OVS',
                             'add-port pyovs/OVS'], ratios)
    for row in rows:
        if row['note']:
            print('note: %s: %s' % (row['switch'], row['note']))


def main():
    args = parse_args()
    setLogLevel('info' if args.verbose else 'warning')
    if 'bridge' in args.switches:
        raise SystemExit('scale_linear compares pyovs and OVS only')
    specs = [mnbench.switch_spec(kind, ovs_datapath='user') for kind in args.switches]
    for spec in specs:
        if spec.error:
            print('pyovs unavailable, skipped: %s' % spec.error)
    with mnbench.ovs_daemons(any(spec.needs_ovs for spec in specs)):
        rows = [run_one(spec, n, args) for n in args.sizes for spec in specs]
    report(rows)
    mnbench.write_csv(args.csv, FIELDS, rows)


if __name__ == '__main__':
    mnbench.run(main)
