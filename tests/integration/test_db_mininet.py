"""Mininet on pyovs configured through mnovs's database, and the bridge layer's restarts.

Mininet's start and stop go through ovs-vsctl, and the tests drive the
switches only as an OVS user would, with s1.vsctl(...) and ovs-ofctl
(s1.dpctl, on the s1.mgmt socket).
"""

import os
import signal
import time

from mininet.node import OVSController
from mininet.topo import SingleSwitchTopo

from mnovs import ovs_ctl, paths, process
from mnovs.switch import vswitchd_python

def loss(net, hosts):
    return net.ping(hosts, timeout='1')


def wait_for(predicate, what, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.1)


def test_driven_only_through_vsctl_and_ofctl(make_net):
    net = make_net(SingleSwitchTopo(2), fail_mode='secure')
    h1, h2, s1 = net.get('h1', 'h2', 's1')
    assert s1.vsctl('list-ports s1').split() == ['s1-eth1', 's1-eth2']
    assert s1.vsctl('get interface s1-eth2 ofport').strip() == '2'
    assert loss(net, [h1, h2]) == 100, 'secure, no flows: nothing crosses'
    s1.dpctl('add-flow', 'actions=NORMAL')
    assert 'actions=NORMAL' in s1.dpctl('dump-flows')
    assert loss(net, [h1, h2]) == 0
    s1.dpctl('del-flows')
    s1.vsctl('set-fail-mode s1 standalone')
    assert loss(net, [h1, h2]) == 0, 'standalone with no controller: NORMAL'
    s1.vsctl('set bridge s1 other_config:datapath-id=00000000000000aa')
    assert 'dpid:00000000000000aa' in s1.dpctl('show')
    s1.vsctl('set-fail-mode s1 secure -- set interface s1-eth2 ofport_request=5')
    assert s1.vsctl('get interface s1-eth2 ofport').strip() == '5'
    s1.dpctl('add-flow', 'in_port=1,actions=output:5')
    s1.dpctl('add-flow', 'in_port=5,actions=output:1')
    assert loss(net, [h1, h2]) == 0
    s1.vsctl('del-port s1 s1-eth2')
    assert loss(net, [h1, h2]) == 100
    s1.vsctl('add-port s1 s1-eth2 -- set interface s1-eth2 ofport_request=5')
    assert loss(net, [h1, h2]) == 0


def test_bridge_layer_killed_with_traffic_running(make_net):
    net = make_net(SingleSwitchTopo(2), fail_mode='standalone')
    h1, h2, s1 = net.get('h1', 'h2', 's1')
    pid = s1.pid_vswitchd
    ping = h1.popen(['ping', '-c', '60', '-i', '0.05', h2.IP()])
    time.sleep(0.5)
    os.kill(ovs_ctl.bridge_pid(), signal.SIGKILL)
    time.sleep(0.5)
    ovs_ctl.start_bridge_layer(python=vswitchd_python())
    out, _ = ping.communicate(timeout=30)
    received = int(out.decode().split(' received')[0].rsplit(None, 1)[-1])
    assert received >= 55, f'forwarding stopped while the bridge layer was down: {out}'
    assert s1.pid_vswitchd == pid, 'the restarted bridge layer adopts the switch'
    s1.vsctl('del-port s1 s1-eth2')
    assert loss(net, [h1, h2]) == 100, 'a later change takes effect'
    s1.vsctl('add-port s1 s1-eth2 -- set interface s1-eth2 ofport_request=2')
    assert loss(net, [h1, h2]) == 0


def test_killed_vswitchd_comes_back_from_the_database(make_net):
    net = make_net(SingleSwitchTopo(2), fail_mode='secure', controller=OVSController)
    h1, h2, s1 = net.get('h1', 'h2', 's1')
    net.waitConnected(timeout=10)
    assert loss(net, [h1, h2]) == 0
    pid = s1.pid_vswitchd
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: s1.pid_vswitchd not in (None, pid) and s1.connected(),
             'a new vswitchd connected to its controller')
    assert os.path.exists(paths.pid_path('s1'))
    assert s1.vsctl('get interface s1-eth2 ofport').strip() == '2'
    assert loss(net, [h1, h2]) == 0, 'ports and controller came back'
    assert process.is_alive(s1.pid_vswitchd)
