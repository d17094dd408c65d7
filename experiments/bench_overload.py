"""Overload benchmarks (issue 7): the wedge loop, and an idle control-socket client.

wedge  SingleSwitchTopo(k=2), failMode=secure, no controller, pyovs beside
       OVS (kernel datapath if the module exists, else userspace), one
       network per switch for all rounds, as a user would run it. Each round,
       for each count of --pipeline-rules (default 10 and 1000): del-flows,
       add-flows of bench_openflow's 4-table pipeline with that many rules,
       `ping -c 3` h1 -> h2, iperf3 UDP 64-byte frames h1 -> h2 at -b 0 for
       --udp-time seconds (received kpps), then a check that the switch
       still forwards both ways (a ping each way, retried for
       --forward-timeout seconds). The issue saw pyovs's port 1 wedge for
       good within 5 to 8 such rounds. Per switch: in how many steps it
       forwarded afterwards, the median kpps per rule count and
       kpps(most rules) / kpps(fewest rules) (target >= 0.9: 1000 rules cost
       at most 10 %).
idle   pyovs only, SingleSwitchTopo(k=2), standalone. `ping -i 0.01` h1 -> h2
       for --idle-pings pings, first with nothing else, then while a client
       holds the switch's control socket open and sends nothing. A server
       that serves one client at a time stalls forwarding while it waits for
       the silent client; the RTTs show it. Reported: mean and max RTT each
       way and the increase of the max (target < 10 ms).

As in bench_switches.py, the OVS userspace datapath carries UDP only with
host TX checksum offload off, so for it (only) the hosts run
`ethtool -K <intf> tx off`. The table shows one row per switch and rule
count, and the idle rows; the CSV (default experiments/results/overload.csv)
has one row per wedge step (round, rules), 'median' rows, 'ratio' rows and
the idle rows.

    .venv/bin/python experiments/bench_overload.py                  # 30 rounds
    .venv/bin/python experiments/bench_overload.py --rounds 2 --udp-time 2
"""

import argparse
import os
import re
import socket
import subprocess

from mininet.log import setLogLevel
from mininet.topo import SingleSwitchTopo

import mnbench
from mnovs import paths
from bench_openflow import (add_flows, int_list, net_args, ofctl, parse_list,
                            pipeline_lines, wait_ofctl)
from bench_switches import BenchError, udp_kpps, wait_forwarding

TESTS = ('wedge', 'idle')
FIELDS = ('test', 'switch', 'round', 'rules', 'kpps', 'forwards',
          'rtt_mean_ms', 'rtt_max_ms', 'value', 'note')
PING_RTTS_RE = re.compile(r'time=([\d.]+) ms')


def parse_args():
    parser = argparse.ArgumentParser(
        description='Overload: the wedge loop (pyovs vs OVS), an idle control client')
    parser.add_argument('--tests', default=','.join(TESTS),
                        type=lambda text: parse_list(text, TESTS),
                        help='comma-separated tests (default: %s)' % ','.join(TESTS))
    parser.add_argument('--switches', default='pyovs,ovs', type=mnbench.parse_kinds,
                        help='wedge: kinds to run (default pyovs,ovs)')
    parser.add_argument('--rounds', type=int, default=30,
                        help='wedge: rounds of the loop (default 30)')
    parser.add_argument('--pipeline-rules', default='10,1000', type=int_list,
                        help='wedge: rule counts per round (default 10,1000)')
    parser.add_argument('--udp-time', type=int, default=4,
                        help='wedge: seconds of each UDP flood (default 4)')
    parser.add_argument('--forward-timeout', type=float, default=5.0,
                        help='wedge: seconds a step may take to forward again (default 5)')
    parser.add_argument('--idle-pings', type=int, default=500,
                        help='idle: pings at 10 ms intervals per phase (default 500)')
    parser.add_argument('--listen-port', type=int, default=6654,
                        help='passive OpenFlow port of s1 (default 6654)')
    mnbench.add_output_options(parser, 'experiments/results/overload.csv')
    args = parser.parse_args()
    if min(args.pipeline_rules) < 10:
        parser.error('--pipeline-rules: each count must be at least 10')
    if args.rounds < 1:
        parser.error('--rounds must be positive')
    return args


# --- wedge -------------------------------------------------------------------

def run_wedge(spec, args):
    """The wedge loop on one switch; return a row per (round, rules) step."""
    rows = []
    with mnbench.running_net(SingleSwitchTopo(k=2), spec.factory,
                             **net_args(args)) as (net, _):
        h1, h2 = net.get('h1', 'h2')
        wait_ofctl(args.listen_port)
        if spec.tx_off:
            mnbench.hosts_tx_off((h1, h2))
        for round_no in range(1, args.rounds + 1):
            for rules in args.pipeline_rules:
                row = dict.fromkeys(FIELDS)
                row.update(test='wedge', switch=spec.label, round=round_no, rules=rules,
                           note='')
                rows.append(row)
                try:
                    ofctl(args.listen_port, 'del-flows')
                    add_flows(args.listen_port, pipeline_lines(rules, h1.MAC(), h2.MAC()))
                    h1.cmd('ping', '-c', '3', '-i', '0.2', '-W', '1', h2.IP())
                    row['kpps'], _ = udp_kpps(h1, h2, args.udp_time)
                except BenchError as exc:
                    row['note'] = 'failed: %s' % exc
                row['forwards'] = (wait_forwarding(h1, h2, args.forward_timeout)
                                   and wait_forwarding(h2, h1, args.forward_timeout))
                print('  round %d, %d rules: %s kpps, forwards after: %s %s' % (
                    round_no, rules, mnbench.fmt(row['kpps'], 1),
                    'yes' if row['forwards'] else 'NO', row['note']), flush=True)
    return rows


def wedge_summary(rows):
    """'median' rows per (switch, rules) and a 'ratio' row per switch."""
    summary = []
    for switch in dict.fromkeys(row['switch'] for row in rows):
        mine = [row for row in rows if row['switch'] == switch]
        medians = {}
        for rules in dict.fromkeys(row['rules'] for row in mine):
            steps = [row for row in mine if row['rules'] == rules]
            forwarded = sum(1 for row in steps if row['forwards'])
            medians[rules] = mnbench.median(row['kpps'] for row in steps)
            summary.append(dict(dict.fromkeys(FIELDS), test='wedge', switch=switch,
                                round='median', rules=rules, kpps=medians[rules],
                                forwards='%d/%d' % (forwarded, len(steps)), note=''))
        fewest, most = min(medians), max(medians)
        if fewest != most:
            value = mnbench.ratio(medians[most], medians[fewest])
            met = '-' if value is None else ('met' if value >= 0.9 else 'MISSED')
            summary.append(dict(dict.fromkeys(FIELDS), test='wedge', switch=switch,
                                round='ratio', rules='%d/%d' % (most, fewest), value=value,
                                note='target >= 0.9: %s' % met))
    return summary


# --- idle control client -------------------------------------------------------

def ctl_socket_path(switch):
    """The switch's control socket: <run dir>/NAME.ctl or OVS's NAME.PID.ctl.

    Another switch of the same name elsewhere on the machine may have a socket
    in the same directory: the one with this switch's pid wins.
    """
    pattern = re.compile(r'%s(\.\d+)?\.ctl' % re.escape(switch.name))
    found = [entry for entry in os.listdir(paths.RUN_DIR) if pattern.fullmatch(entry)]
    mine = [entry for entry in found
            if entry == '%s.%s.ctl' % (switch.name, switch.pid_vswitchd)]
    if len(mine or found) != 1:
        raise BenchError('control socket of %s: found %s' % (switch.name, found or 'none'))
    return os.path.join(paths.RUN_DIR, (mine or found)[0])


def ping_rtts(src, dst, count):
    """RTTs in ms of count pings src -> dst at 10 ms intervals (lost ones left out)."""
    out = src.cmd('ping', '-c', str(count), '-i', '0.01', '-W', '1', dst.IP())
    rtts = [float(rtt) for rtt in PING_RTTS_RE.findall(out)]
    if not rtts:
        raise BenchError('ping: no replies: %s' % out.strip()[-80:])
    return rtts


def run_idle(args):
    """RTTs without and with a silent control-socket client (pyovs)."""
    spec = mnbench.switch_spec('pyovs')
    if spec.factory is None:
        raise BenchError('pyovs unavailable: %s' % spec.error)
    rows = []
    with mnbench.running_net(SingleSwitchTopo(k=2), spec.factory,
                             **net_args(args)) as (net, _):
        h1, h2 = net.get('h1', 'h2')
        if not wait_forwarding(h1, h2):
            raise BenchError('no connectivity h1->h2')
        for phase in ('no client', 'idle client'):
            row = dict.fromkeys(FIELDS)
            row.update(test='idle', switch='pyovs', note=phase)
            if phase == 'idle client':
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                    client.connect(ctl_socket_path(net.get('s1')))
                    rtts = ping_rtts(h1, h2, args.idle_pings)
            else:
                rtts = ping_rtts(h1, h2, args.idle_pings)
            row.update(rtt_mean_ms=sum(rtts) / len(rtts), rtt_max_ms=max(rtts),
                       value=len(rtts))
            rows.append(row)
    stall = rows[1]['rtt_max_ms'] - rows[0]['rtt_max_ms']
    rows.append(dict(dict.fromkeys(FIELDS), test='idle', switch='pyovs', round='ratio',
                     value=stall, note='max RTT increase, ms; target < 10: %s'
                     % ('met' if stall < 10 else 'MISSED')))
    return rows


# --- report --------------------------------------------------------------------

def report(wedge_rows, summary, idle_rows):
    if summary:
        print('\nwedge loop: forwarding after every step, UDP 64 B received kpps')
        mnbench.print_table(
            ['switch', 'rules', 'median kpps', 'forwarded after'],
            [[m['switch'], str(m['rules']), mnbench.fmt(m['kpps'], 1), m['forwards']]
             for m in summary if m['round'] == 'median'])
        print()
        mnbench.print_table(
            ['switch', 'kpps ratio', 'value', 'target'],
            [[r['switch'], r['rules'], mnbench.fmt(r['value']), r['note']]
             for r in summary if r['round'] == 'ratio'])
    if idle_rows:
        print('\nidle control-socket client (pyovs): ping -i 0.01 h1 -> h2')
        mnbench.print_table(
            ['phase', 'replies', 'mean RTT ms', 'max RTT ms'],
            [[r['note'], str(r['value']), mnbench.fmt(r['rtt_mean_ms'], 3),
              mnbench.fmt(r['rtt_max_ms'], 3)] for r in idle_rows if r['round'] is None])
        print('max RTT increase: %s ms (%s)' % (mnbench.fmt(idle_rows[-1]['value'], 3),
                                               idle_rows[-1]['note']))
    for row in wedge_rows:
        if not row['forwards'] or row['note']:
            print('note: %s round %s, %s rules: forwards after: %s %s' % (
                row['switch'], row['round'], row['rules'], row['forwards'], row['note']))


def main():
    args = parse_args()
    setLogLevel('info' if args.verbose else 'warning')
    datapath = None if args.ovs_datapath == 'auto' else args.ovs_datapath
    wedge_rows, idle_rows = [], []
    if 'wedge' in args.tests:
        specs = [mnbench.switch_spec(kind, datapath, fail_mode='secure',
                                     protocols='OpenFlow13')
                 for kind in args.switches if kind != 'bridge']
        for spec in specs:
            if spec.error:
                print('%s unavailable, skipped: %s' % (spec.kind, spec.error))
        specs = [spec for spec in specs if spec.factory is not None]
        with mnbench.ovs_daemons(any(spec.needs_ovs for spec in specs)):
            for spec in specs:
                print('wedge loop on %s%s' % (spec.label, ' (hosts tx off)'
                                              if spec.tx_off else ''), flush=True)
                try:
                    wedge_rows.extend(run_wedge(spec, args))
                except (BenchError, RuntimeError, subprocess.SubprocessError) as exc:
                    print('  failed: %s' % exc)
    if 'idle' in args.tests:
        print('idle control-socket client on pyovs', flush=True)
        try:
            idle_rows = run_idle(args)
        except (BenchError, RuntimeError, subprocess.SubprocessError) as exc:
            print('  failed: %s' % exc)
    summary = wedge_summary(wedge_rows)
    report(wedge_rows, summary, idle_rows)
    mnbench.write_csv(args.csv, FIELDS, wedge_rows + summary + idle_rows)


if __name__ == '__main__':
    mnbench.run(main)
