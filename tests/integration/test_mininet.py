"""pyovs in real Mininet networks: forwarding, TCP, run-time links, link state, stop."""

import os
import shlex
import signal
import sys
import time
from subprocess import PIPE

from mininet.node import RemoteController
from mininet.topo import LinearTopo, SingleSwitchTopo
from mininet.topolib import TreeTopo

from mnovs import paths

PING_OK = ' 0% packet loss'


def test_pingall_tree_standalone_no_controller(make_net):
    net = make_net(TreeTopo(depth=2, fanout=2))
    assert net.pingAll() == 0


def test_pingall_linear_standalone_no_controller(make_net):
    net = make_net(LinearTopo(k=4, n=1))
    assert net.pingAll() == 0


def test_pingall_with_unreachable_controller(make_net):
    # Nothing listens on this port: standalone mode must still forward.
    ctl = RemoteController('c0', ip='127.0.0.1', port=6999)
    net = make_net(TreeTopo(depth=2, fanout=2), controller=ctl)
    assert net.pingAll() == 0


def test_secure_mode_without_controller_drops(make_net, dp_counters):
    net = make_net(SingleSwitchTopo(2), fail_mode='secure')
    h1, h2 = net.get('h1', 'h2')
    assert '100% packet loss' in h1.cmd(f'ping -c 2 -W 1 {h2.IP()}')
    assert dp_counters(net.get('s1'))['missed'] > 0


def test_iperf3_tcp_with_default_offloads(make_net, iperf3, dp_counters):
    net = make_net(LinearTopo(k=2, n=1))
    h1, h2 = net.get('h1', 'h2')
    # Mininet's default links keep TSO and checksum offload on: the switch
    # sees GSO super-frames and partial checksums.
    assert 'tx-checksumming: on' in h1.cmd('ethtool -k h1-eth0')
    net.pingAll()
    report = iperf3(h1, h2, seconds=2)
    received = report['end']['sum_received']['bytes']
    assert received > 10 * 1024 * 1024, report['end']
    # A second connection between known hosts needs no upcall: the NORMAL
    # megaflows match on L2 only.
    s1 = net.get('s1')
    before = dp_counters(s1)
    report = iperf3(h1, h2, seconds=1)
    after = dp_counters(s1)
    assert report['end']['sum_received']['bytes'] > 0
    assert after['missed'] == before['missed']
    assert after['hit'] > before['hit']


def test_vlan_tagged_traffic_crosses(make_net):
    # This kernel has no 8021q module, so the hosts send tagged frames with
    # scapy. The switch's receive side gets the tag in its ring slot's header and must
    # put it back; tcpdump on h2 must see the frames still tagged.
    net = make_net(SingleSwitchTopo(2))
    h1, h2 = net.get('h1', 'h2')
    dump = h2.popen(['tcpdump', '-i', 'h2-eth0', '-e', '-nn', '-c', '3', '-l',
                     'vlan 10 and udp port 9999'], stdout=PIPE, stderr=PIPE, text=True)
    time.sleep(1.0)
    h1.cmd(sys.executable, '-c', shlex.quote(
        'from scapy.all import Ether, Dot1Q, IP, UDP, sendp; '
        'sendp(Ether(src="00:00:00:00:00:01", dst="00:00:00:00:00:02") / Dot1Q(vlan=10)'
        ' / IP(src="10.10.0.1", dst="10.10.0.2") / UDP(dport=9999) / (b"x" * 64),'
        ' iface="h1-eth0", count=5, verbose=False)'))
    try:
        out, _ = dump.communicate(timeout=10)
    finally:
        if dump.poll() is None:
            dump.kill()
    assert out.count('vlan 10') >= 3, out
    flows = net.get('s1').dpctl('dpctl/dump-flows')
    assert 'vid=10' in flows, flows


def test_link_added_at_run_time(make_net):
    net = make_net(SingleSwitchTopo(2))
    s1, h1 = net.get('s1', 'h1')
    h3 = net.addHost('h3', ip='10.0.0.3/8', mac='00:00:00:00:00:03')
    link = net.addLink(h3, s1)
    s1.attach(link.intf2)
    h3.configDefault(ip='10.0.0.3/8', mac='00:00:00:00:00:03')
    assert PING_OK in h3.cmd('ping -c 2 -W 1', h1.IP())
    assert link.intf2.name in s1.dpctl('dpctl/show')


def test_link_down_and_up(make_net):
    net = make_net(LinearTopo(k=2, n=1))
    h1, h2 = net.get('h1', 'h2')
    assert net.ping([h1, h2]) == 0
    net.configLinkStatus('s1', 's2', 'down')
    time.sleep(0.3)
    assert 'down' in net.get('s1').dpctl('dpctl/show')
    assert net.ping([h1, h2], timeout='1') == 100
    net.configLinkStatus('s1', 's2', 'up')
    time.sleep(0.5)
    assert net.ping([h1, h2]) == 0


def test_stop_after_vswitchd_crash_leaves_nothing(make_net):
    net = make_net(SingleSwitchTopo(2))
    s1 = net.get('s1')
    pid = s1.pid_vswitchd
    os.kill(pid, signal.SIGKILL)    # its files stay; the bridge layer cleans up and restarts it
    intfs = [intf.name for intf in s1.intfList() if intf.name != 'lo']
    make_net.stop(net)
    assert not os.path.exists(paths.ctl_path('s1', pid))
    assert not os.path.exists(paths.pid_path('s1'))
    assert not os.path.exists(os.path.join(paths.RUN_DIR, 's1.mgmt'))
    for name in intfs:
        assert not os.path.exists(f'/sys/class/net/{name}')
