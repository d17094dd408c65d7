"""OpenFlow benchmarks: pyovs beside OVS (and the Linux bridge) on four tasks.

Each task builds its own Mininet network per switch kind and repeat, with
every switch in failMode=secure (nothing forwards but what OpenFlow
installed), OpenFlow 1.3 only, and a passive listener from --listen-port up
(s1 on 6654, s2 on 6655, ...) for ovs-ofctl. OVS is the kernel datapath if
the openvswitch module exists, else the userspace datapath; the output says
which. The tasks, named as in --tests:

addflows  SingleSwitchTopo(k=2), no controller. `ovs-ofctl add-flows` of a
          file of --flows distinct rules `priority=100,ip,nw_dst=10.x.y.z,
          actions=output:2`, timed from start to exit (ovs-ofctl ends with a
          barrier, so the switch has taken every flow_mod). A dump-flows
          afterwards must list them all; its time is reported beside it.
reactive  SingleSwitchTopo(k=2) under Ryu's simple_switch_13. The app installs
          a flow (in_port, eth_src, eth_dst -> output) for a packet-in whose
          destination it has learned, and only floods otherwise. So, once h2
          is learned (one ping), h1 sends frames to h2's MAC, each from a new
          source MAC, at a steady rate for --setup-time seconds, or until
          --reactive-frames frames are sent (a raw-socket sender in h1: this
          file run as `send-frames`). Each frame is one
          table miss -> packet-in -> flow_mod + packet-out. When the flow
          count (dump-aggregate, polled 4 times a second) has stopped
          growing, one dump-flows gives each new flow's age (`duration`);
          the figure is (flows - 1) / (oldest age - youngest age), the rate
          at which flows appeared, timed by the switch's own clock with no
          polling error. One run (a fresh Ryu and net) per offered rate of
          --send-rates: below capacity the figure is the offered rate; above
          it frames are lost (flows < frames sent) and the figure is the
          setup rate switch and Ryu sustain. Each run also reports flows
          installed / frames offered (issue 7's target: >= 95 % of 10,000
          offered at 20,000/s: --send-rates 20000 --reactive-frames 10000).
          The ratio compares each switch's best median over the rates
          ('best' rows).
pipeline  SingleSwitchTopo(k=2), no controller. A 4-table pipeline loaded
          with ovs-ofctl: table 0 -> goto 1 -> goto 2 -> goto 3, whose rule
          for h2's MAC outputs to h2. Each table also holds non-matching
          higher-priority rules on its own field (eth_src, nw_src/24,
          tp_dst, eth_dst), so the number of rules (--pipeline-rules, default
          10 and 1000) is the only difference. Then iperf3 UDP 64-byte frames
          h1 -> h2 at -b 0, as bench_switches.py: packets received per
          second. The ratio is rate(most rules) / rate(fewest rules).
linear    LinearTopo(k=4) under simple_switch_13 (the bridge: no controller),
          iperf3 TCP h1 -> h4 through four switches, Gbit/s.

As in bench_switches.py, the OVS userspace datapath carries TCP and UDP
only with host TX checksum offload off, so for it (only) the hosts run
`ethtool -K <intf> tx off`. The table shows medians over --repeat runs
(repeats are the outer loop), each task's ratio and the issue's target. The
CSV (default experiments/results/openflow.csv) has one row per measurement,
one 'median' row per task, config and switch, and 'ratio' rows.

    .venv/bin/python experiments/bench_openflow.py --repeat 3
    .venv/bin/python experiments/bench_openflow.py --tests reactive,addflows
"""

import argparse
import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from functools import partial

from mininet.log import setLogLevel
from mininet.topo import LinearTopo, SingleSwitchTopo

import mnbench
from bench_switches import (BenchError, pyovs_counters, tcp_gbps, udp_kpps,
                            wait_forwarding)

TESTS = ('addflows', 'reactive', 'pipeline', 'linear')
FIELDS = ('test', 'config', 'switch', 'repeat', 'value', 'unit', 'flows', 'offered',
          'offered_rate',
          'seconds', 'dump_flows_s', 'megaflow_hit_rate', 'note')
UNITS = {'addflows': 's', 'reactive': 'flows/s', 'pipeline': 'kpps',
         'linear': 'Gbit/s'}
RYU_APP = 'ryu.app.simple_switch_13'
SENDER_SRC_PREFIX = b'\x02\x5e'        # sender's source MACs: 02:5e:<32-bit n>
SENDER_ETHERTYPE = b'\x88\xb5'         # local experimental: no host reacts
INSTALLED_TARGET = 0.95               # reactive: flows installed / offered
POLL_INTERVAL = 0.25                   # seconds between flow-count polls
FLOW_COUNT_RE = re.compile(r'flow_count=(\d+)')
SENDER_FLOW_AGE_RE = re.compile(r'duration=([\d.]+)s,.*dl_src=02:5e:')
# The targets (issue 7 for addflows, reactive and pipeline): task -> (ratio
# label, bound, higher is better, the denominator switch the bound is about;
# None: every ratio of the task).
TARGETS = {
    'addflows': ('time pyovs/%s', 1.5, False, 'ovs'),
    'reactive': ('rate pyovs/%s', 1.0, True, 'ovs'),
    'pipeline': ('%s: most/fewest rules', 0.9, True, None),
    'linear': ('TCP pyovs/%s', 0.3, True, 'bridge'),
}


def parse_args():
    parser = argparse.ArgumentParser(
        description='OpenFlow tasks: pyovs vs OVS (vs the Linux bridge)')
    parser.add_argument('--tests', default=','.join(TESTS),
                        type=lambda text: parse_list(text, TESTS),
                        help='comma-separated tasks (default: all, %s)'
                             % ','.join(TESTS))
    parser.add_argument('--switches', default=','.join(mnbench.SWITCH_KINDS),
                        type=mnbench.parse_kinds,
                        help='kinds to run (default pyovs,ovs,bridge; the '
                             'bridge only runs the linear task)')
    parser.add_argument('--repeat', type=int, default=3,
                        help='runs per task and switch (default 3)')
    parser.add_argument('--flows', type=int, default=10000,
                        help='addflows: rules in the file (default 10000)')
    parser.add_argument('--send-rates', default='2500,5000,10000,20000',
                        type=int_list,
                        help='reactive: frames per second offered, each from '
                             'a new source MAC, one run per rate (default '
                             '2500,5000,10000,20000)')
    parser.add_argument('--setup-time', type=int, default=3,
                        help='reactive: seconds the sender runs (default 3)')
    parser.add_argument('--reactive-frames', type=int, default=None,
                        help='reactive: frames (new flows) offered per run, '
                             'instead of rate x --setup-time')
    parser.add_argument('--pipeline-rules', default='10,1000', type=int_list,
                        help='pipeline: rule counts to compare (default '
                             '10,1000)')
    parser.add_argument('--udp-time', type=int, default=10,
                        help='pipeline: UDP test seconds (default 10)')
    parser.add_argument('--time', type=int, default=10,
                        help='linear: TCP test seconds (default 10)')
    parser.add_argument('--listen-port', type=int, default=6654,
                        help='passive OpenFlow port of s1 (default 6654)')
    mnbench.add_output_options(parser, 'experiments/results/openflow.csv', ovs_datapath=True)
    args = parser.parse_args()
    if min(args.pipeline_rules) < 10:
        parser.error('--pipeline-rules: each count must be at least 10')
    if min(args.send_rates) < 1:
        parser.error('--send-rates: each rate must be positive')
    if args.reactive_frames is not None and args.reactive_frames < 2:
        parser.error('--reactive-frames must be at least 2')
    return args


def int_list(text):
    return [int(n) for n in text.split(',')]


def parse_list(text, choices):
    names = [name.strip() for name in text.split(',') if name.strip()]
    for name in names:
        if name not in choices:
            raise argparse.ArgumentTypeError(
                'unknown %r (choose from %s)' % (name, ', '.join(choices)))
    return names


# --- OpenFlow plumbing -------------------------------------------------------

def ofctl(port, command, *args, timeout=300):
    """Run `ovs-ofctl -O OpenFlow13 command tcp:127.0.0.1:port args`.

    Returns:
        Its stdout.
    Raises:
        BenchError: it failed or took longer than timeout seconds.
    """
    argv = ['ovs-ofctl', '-O', 'OpenFlow13', command,
            'tcp:127.0.0.1:%d' % port, *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError('ovs-ofctl %s: no answer in %d s'
                         % (command, timeout)) from None
    if done.returncode:
        raise BenchError('ovs-ofctl %s: %s'
                         % (command, done.stderr.strip()[-200:]))
    return done.stdout


def wait_ofctl(port, timeout=15.0):
    """Wait until the switch's passive listener answers ovs-ofctl."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            ofctl(port, 'show', timeout=5)
            return
        except BenchError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def flow_count(port):
    """Return the number of rules in every table, from dump-aggregate."""
    match = FLOW_COUNT_RE.search(ofctl(port, 'dump-aggregate'))
    if not match:
        raise BenchError('dump-aggregate: no flow_count')
    return int(match.group(1))


def add_flows(port, lines):
    """Load rule lines into the switch with one `ovs-ofctl add-flows`.

    Returns:
        Seconds from starting ovs-ofctl to its exit.
    """
    with tempfile.NamedTemporaryFile('w', suffix='.flows') as flows:
        flows.write('\n'.join(lines) + '\n')
        flows.flush()
        start = time.monotonic()
        ofctl(port, 'add-flows', flows.name)
        return time.monotonic() - start


def net_args(args):
    """Mininet arguments shared by every task's network."""
    return {'listenPort': args.listen_port, 'autoSetMacs': True}


# --- addflows ----------------------------------------------------------------

def addflow_lines(count):
    """count distinct rules, one per address of 10.128.0.0/9 in order."""
    return ['priority=100,ip,nw_dst=10.%d.%d.%d,actions=output:2'
            % (128 + (n >> 16), (n >> 8) & 255, n & 255)
            for n in range(count)]


def run_addflows(spec, args, row):
    """Time add-flows of --flows rules, then dump-flows."""
    with mnbench.running_net(SingleSwitchTopo(k=2), spec.factory,
                             **net_args(args)):
        wait_ofctl(args.listen_port)
        row['value'] = add_flows(args.listen_port, addflow_lines(args.flows))
        start = time.monotonic()
        dump = ofctl(args.listen_port, 'dump-flows')
        row['dump_flows_s'] = time.monotonic() - start
        row['flows'] = dump.count('priority=100,ip,nw_dst=10.')
        if row['flows'] != args.flows:
            row['note'] = 'dump-flows lists %d of %d' % (row['flows'],
                                                         args.flows)


# --- reactive ----------------------------------------------------------------

def send_frames(argv):
    """Entry point of the `send-frames` mode, run inside a Mininet host.

    Sends count Ethernet frames to dst_mac on intf, each from a new source
    MAC 02:5e:<n as 32 bits>, paced at rate frames/s. Prints `start` before
    the first frame and `end SECONDS` after the last (SECONDS: from the first
    frame to the last, so the caller sees the rate really offered).
    """
    parser = argparse.ArgumentParser(prog='bench_openflow.py send-frames')
    parser.add_argument('intf')
    parser.add_argument('dst_mac')
    parser.add_argument('count', type=int)
    parser.add_argument('rate', type=int)
    opts = parser.parse_args(argv)
    frame = bytearray(60)
    frame[0:6] = bytes.fromhex(opts.dst_mac.replace(':', ''))
    frame[6:8] = SENDER_SRC_PREFIX
    frame[12:14] = SENDER_ETHERTYPE
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((opts.intf, 0))
        print('start', flush=True)
        start = time.monotonic()
        for n in range(opts.count):
            delay = start + n / opts.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            frame[8:12] = n.to_bytes(4, 'big')
            sock.send(frame)
        print('end %.6f' % (time.monotonic() - start), flush=True)


def wait_flow_setup(port, sender, target, stall=2.0):
    """Poll the flow count until target new rules exist or growth stalls.

    Args:
        port: the switch's passive OpenFlow port.
        sender: the running send-frames Popen.
        target: new rules expected.
        stall: seconds without growth, after the sender ended, to give up.
    """
    base = flow_count(port)
    if sender.stdout.readline().strip() != 'start':
        raise BenchError('sender did not start: %s' % sender.stderr.read())
    grown, grown_at = 0, time.monotonic()
    while grown < target:
        time.sleep(POLL_INTERVAL)
        count = flow_count(port) - base
        if count > grown:
            grown, grown_at = count, time.monotonic()
        elif (sender.poll() is not None
              and time.monotonic() - grown_at > stall):
            break


def setup_span(dump):
    """Return (flows, seconds from the first to the last one's creation).

    Reads the sender's flows (eth_src 02:5e:...) in dump-flows output; each
    one's age is its `duration`, so no clock but the switch's is involved.
    """
    ages = [float(age) for age in SENDER_FLOW_AGE_RE.findall(dump)]
    if len(ages) < 2:
        return len(ages), None
    return len(ages), max(ages) - min(ages)


def run_reactive(spec, args, row, rate):
    """Measure new flows per second through Ryu simple_switch_13.

    Args:
        rate: frames per second the sender offers, for --setup-time seconds
            or --reactive-frames frames.
    """
    frames = reactive_frames(args, rate)
    with mnbench.ryu_controller(RYU_APP) as controller, \
            mnbench.running_net(SingleSwitchTopo(k=2), spec.factory,
                                wait_connected=True, controller=controller,
                                **net_args(args)) as (net, _):
        h1, h2 = net.get('h1', 'h2')
        port = args.listen_port
        wait_ofctl(port)
        if not wait_forwarding(h2, h1):     # Ryu learns both MACs
            raise BenchError('no connectivity h2->h1')
        time.sleep(0.5)                     # let the ping's flows settle
        sender_argv = [sys.executable, os.path.abspath(__file__),
                       'send-frames', h1.defaultIntf().name, h2.MAC(),
                       str(frames), str(rate)]
        with mnbench.background(h1, sender_argv) as sender:
            wait_flow_setup(port, sender, frames)
            end = sender.stdout.readline().split()   # the sender has ended by now
        flows, seconds = setup_span(ofctl(port, 'dump-flows'))
        if end[:1] == ['end']:
            row['offered_rate'] = mnbench.ratio(frames - 1, float(end[1]))
        row.update(flows=flows, offered=frames, seconds=seconds,
                   value=mnbench.ratio(flows - 1, seconds))
        if flows < frames:
            row['note'] = 'flows for %d of %d frames' % (flows, frames)


# --- pipeline ----------------------------------------------------------------

def pipeline_lines(total, h1_mac, h2_mac):
    """Rules of the 4-table pipeline, total of them.

    Six rules carry the traffic: a priority-1 goto in tables 0, 1, 2 and,
    in table 3, eth_dst of h2 -> output:2, of h1 -> output:1 and a
    priority-0 FLOOD (ARP). The others never match h1 <-> h2 traffic but
    are consulted first: priority 100 in_port=1,eth_src (table 0), nw_src
    /24 (table 1), udp tp_dst (table 2) and eth_dst (table 3), spread
    round-robin over the four tables.
    """
    decoys = (
        lambda n: 'table=0,priority=100,in_port=1,dl_src=02:0f:00:%02x:%02x:'
                  '%02x,actions=drop' % (n >> 16, (n >> 8) & 255, n & 255),
        lambda n: 'table=1,priority=100,ip,nw_src=10.%d.%d.0/24,actions=drop'
                  % (1 + (n >> 8), n & 255),
        lambda n: 'table=2,priority=100,udp,tp_dst=%d,actions=drop'
                  % (30000 + n),
        lambda n: 'table=3,priority=100,dl_dst=02:0f:01:%02x:%02x:%02x,'
                  'actions=output:2' % (n >> 16, (n >> 8) & 255, n & 255),
    )
    lines = ['table=0,priority=1,actions=goto_table:1',
             'table=1,priority=1,actions=goto_table:2',
             'table=2,priority=1,actions=goto_table:3',
             'table=3,priority=10,dl_dst=%s,actions=output:2' % h2_mac,
             'table=3,priority=10,dl_dst=%s,actions=output:1' % h1_mac,
             'table=3,priority=0,actions=FLOOD']
    for n in range(total - len(lines)):
        lines.append(decoys[n % 4](n // 4))
    return lines


def run_pipeline(spec, args, row, rules):
    """UDP 64-byte received pps through the pipeline with rules rules."""
    with mnbench.running_net(SingleSwitchTopo(k=2), spec.factory,
                             **net_args(args)) as (net, _):
        h1, h2 = net.get('h1', 'h2')
        switch = net.get('s1')
        wait_ofctl(args.listen_port)
        add_flows(args.listen_port, pipeline_lines(rules, h1.MAC(), h2.MAC()))
        row['flows'] = flow_count(args.listen_port)
        if spec.tx_off:
            mnbench.hosts_tx_off((h1, h2))
        if not wait_forwarding(h1, h2):
            raise BenchError('no connectivity h1->h2')
        notes = []
        before = pyovs_counters(switch, spec, notes)
        row['value'], _ = udp_kpps(h1, h2, args.udp_time)
        after = pyovs_counters(switch, spec, notes) if before else None
        if after:
            hits, missed = after[0] - before[0], after[1] - before[1]
            row['megaflow_hit_rate'] = mnbench.ratio(hits, hits + missed)
        row['note'] = '; '.join(notes)


# --- linear ------------------------------------------------------------------

def run_linear(spec, args, row):
    """TCP h1 -> h4 through linear,4 under simple_switch_13 (bridge: none)."""
    with (mnbench.ryu_controller(RYU_APP) if spec.kind != 'bridge'
          else contextlib.nullcontext()) as controller, \
            mnbench.running_net(LinearTopo(k=4), spec.factory,
                                wait_connected=True, controller=controller,
                                **net_args(args)) as (net, _):
        h1, h4 = net.get('h1', 'h4')
        if spec.tx_off:
            mnbench.hosts_tx_off(net.hosts)
        if not wait_forwarding(h1, h4, timeout=30):
            raise BenchError('no connectivity h1->h4')
        row['value'] = tcp_gbps(h1, h4, args.time)


# --- runs and report ---------------------------------------------------------

def task_runs(task, args):
    """Return (config, measure(spec, args, row)) for each run of a task."""
    if task == 'addflows':
        return [('%d flows' % args.flows, run_addflows)]
    if task == 'reactive':
        return [('%d at %d/s' % (reactive_frames(args, rate), rate),
                 partial(run_reactive, rate=rate))
                for rate in args.send_rates]
    if task == 'pipeline':
        return [('%d rules' % rules, partial(run_pipeline, rules=rules))
                for rules in args.pipeline_rules]
    return [('linear,4 TCP', run_linear)]


def reactive_frames(args, rate):
    """Frames the reactive sender offers at rate."""
    return args.reactive_frames or rate * args.setup_time


def run_task(task, spec, args, repeat):
    """Run each config of a task on one switch; return a row for each.

    A run that fails leaves its value empty and says why in its note.
    """
    rows = []
    for config, measure in task_runs(task, args):
        print('%s %s on %s (run %d)' % (task, config, spec.label, repeat),
              flush=True)
        row = dict.fromkeys(FIELDS)
        row.update(test=task, config=config, switch=spec.label,
                   repeat=repeat, unit=UNITS[task], note='')
        try:
            measure(spec, args, row)
        except (BenchError, RuntimeError, subprocess.SubprocessError) as exc:
            row['note'] = 'failed: %s' % exc
            print('  %s' % row['note'], flush=True)
        rows.append(row)
    return rows


def summarize(rows):
    """Return (median rows, ratio rows) over the per-run rows."""
    groups = {}
    for row in rows:
        if row['value'] is not None:
            key = (row['test'], row['config'], row['switch'])
            groups.setdefault(key, []).append(row)
    medians = {}
    for key, runs in groups.items():
        med = dict(runs[0], repeat='median', note='')
        for field in ('value', 'flows', 'offered', 'offered_rate', 'seconds', 'dump_flows_s',
                      'megaflow_hit_rate'):
            med[field] = mnbench.median(run[field] for run in runs)
        medians[key] = med
    reactive = [m for m in medians.values() if m['test'] == 'reactive']
    for switch in dict.fromkeys(m['switch'] for m in reactive):
        top = max((m for m in reactive if m['switch'] == switch),
                  key=lambda m: m['value'])
        medians[('reactive', 'best', switch)] = dict(
            top, config='best: ' + top['config'])
    ratios = [ratio_row(task, num, den, name)
              for task in TARGETS
              for num, den, name in ratio_pairs(task, medians)]
    return list(medians.values()), ratios


def ratio_row(task, num, den, name):
    """The CSV row of num/den, with the task's target and whether it is met."""
    label, bound, higher, about = TARGETS[task]
    value = mnbench.ratio(num['value'], den['value'])
    if about and not den['switch'].startswith(about):
        verdict = 'no target'
    else:
        met = None if value is None else (value >= bound if higher
                                          else value <= bound)
        verdict = 'target %s %g: %s' % ('>=' if higher else '<=', bound,
                                        {True: 'met', False: 'MISSED',
                                         None: '-'}[met])
    row = dict.fromkeys(FIELDS)
    row.update(test=task, config='%s / %s' % (num['config'], den['config']),
               switch=label % name, repeat='ratio', value=value, unit='x',
               note=verdict)
    return row


def ratio_pairs(task, medians):
    """(numerator row, denominator row, name) of each ratio of a task."""
    mine = [m for (test, _, _), m in medians.items() if test == task]
    if task == 'pipeline':
        for switch in dict.fromkeys(m['switch'] for m in mine):
            by_rules = sorted((m for m in mine if m['switch'] == switch),
                              key=lambda m: int(m['config'].split()[0]))
            if len(by_rules) > 1:
                yield by_rules[-1], by_rules[0], switch
        return
    if task == 'reactive':
        mine = [m for m in mine if m['config'].startswith('best')]
    pyovs = [m for m in mine if m['switch'] == 'pyovs']
    for other in mine:
        if pyovs and other['switch'] != 'pyovs':
            yield pyovs[0], other, other['switch']


def installed(row):
    """'flows/offered at rate (percent, target)' for a reactive row, else '-'."""
    share = mnbench.ratio(row['flows'], row['offered'])
    if share is None:
        return '-'
    return '%d/%d at %s/s (%.1f%%, target >= %d%%: %s)' % (
        row['flows'], row['offered'], mnbench.fmt(row['offered_rate'], 0),
        100 * share, 100 * INSTALLED_TARGET,
        'met' if share >= INSTALLED_TARGET else 'MISSED')


def report(rows, medians, ratios, repeats):
    print('\nmedians over %d run(s)' % repeats)
    mnbench.print_table(
        ['task', 'config', 'switch', 'value', 'unit', 'flows', 'installed',
         'dump-flows s', 'megaflow hit'],
        [[m['test'], m['config'], m['switch'], mnbench.fmt(m['value'], 3),
          m['unit'], mnbench.fmt(m['flows'], 0), installed(m),
          mnbench.fmt(m['dump_flows_s'], 3),
          mnbench.fmt(m['megaflow_hit_rate'], 4)] for m in medians])
    if ratios:
        print()
        mnbench.print_table(
            ['task', 'ratio', 'value', 'target'],
            [[r['test'], r['switch'], mnbench.fmt(r['value']), r['note']]
             for r in ratios])
    for row in rows:
        if row['note']:
            print('note: %s %s on %s run %s: %s' % (
                row['test'], row['config'], row['switch'], row['repeat'],
                row['note']))


def main():
    args = parse_args()
    setLogLevel('info' if args.verbose else 'warning')
    datapath = None if args.ovs_datapath == 'auto' else args.ovs_datapath
    specs = [mnbench.switch_spec(kind, datapath, fail_mode='secure',
                                 protocols='OpenFlow13')
             if kind != 'bridge' else mnbench.switch_spec(kind)
             for kind in args.switches]
    for spec in specs:
        if spec.kind == 'ovs':
            print('OVS: %s datapath%s' % (
                spec.label.split('-')[1],
                ' (hosts get tx off for pipeline and linear)'
                if spec.tx_off else ''))
        if spec.error:
            print('pyovs unavailable, skipped: %s' % spec.error)
    specs = [spec for spec in specs if spec.factory is not None]
    rows = []
    with mnbench.ovs_daemons(any(spec.needs_ovs for spec in specs)):
        for repeat in range(1, args.repeat + 1):
            for task in args.tests:
                for spec in specs:
                    if spec.kind != 'bridge' or task == 'linear':
                        rows.extend(run_task(task, spec, args, repeat))
    medians, ratios = summarize(rows)
    report(rows, medians, ratios, args.repeat)
    mnbench.write_csv(args.csv, FIELDS, rows + medians + ratios)


if __name__ == '__main__':
    if sys.argv[1:2] == ['send-frames']:
        send_frames(sys.argv[2:])
    else:
        mnbench.run(main)
