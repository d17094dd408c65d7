"""The README's demo: pyovs on a small tree, pingall, then iperf3 end to end.

    sudo make demo          # or: sudo .venv/bin/python experiments/demo.py

Builds `tree,depth=2,fanout=2` (3 switches, 4 hosts) with PyOVSSwitch in
standalone mode and no controller, runs pingall, runs a 5-second iperf3 TCP
transfer between the two farthest hosts (h1 and h4, three switches apart) with
the hosts' default offloads, and prints the results with the root switch's
datapath statistics.
"""

import argparse
import sys
from functools import partial

from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.topolib import TreeTopo

sys.path.insert(0, __file__.rsplit('/experiments/', 1)[0])
from bench_switches import run_iperf3  # noqa: E402  (experiments/ is on sys.path)
from mnovs import ovs_ctl  # noqa: E402
from mnovs.switch import PyOVSSwitch  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seconds', type=int, default=5, help='iperf3 duration')
    args = parser.parse_args()
    setLogLevel('warning')
    net = Mininet(topo=TreeTopo(depth=2, fanout=2),
                  switch=partial(PyOVSSwitch, failMode='standalone'),
                  controller=None, autoSetMacs=True)
    try:
        net.start()           # starts mnovs's database and bridge layer on first use
        print('*** pyovs demo: tree,2,2 (3 switches, 4 hosts), standalone, no controller')
        loss = net.pingAll()
        print(f'*** pingall: {loss:.0f}% dropped')
        h1, h4 = net.get('h1', 'h4')
        client_report, _ = run_iperf3(h1, h4, args.seconds, [])
        gbps = client_report['end']['sum_received']['bits_per_second'] / 1e9
        print(f'*** iperf3 TCP h1 -> h4 (3 switches): {gbps:.2f} Gbit/s')
        print('*** s1 datapath (mnovs-appctl -t s1 dpctl/show):')
        print(net.get('s1').dpctl('dpctl/show'))
        return 0 if loss == 0 and gbps > 0 else 1
    finally:
        net.stop()


if __name__ == '__main__':
    with ovs_ctl.stopped_afterwards():
        sys.exit(main())
