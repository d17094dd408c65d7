"""pyovs under real OpenFlow clients: ovs-testcontroller, Ryu apps, ovs-ofctl."""

import random
import re
import socket
import subprocess
import time

from mininet.node import DefaultController
from mininet.topo import SingleSwitchTopo
from mininet.topolib import TreeTopo

PING_OK = ' 0% packet loss'


def ofctl(switch, *args):
    """Run ovs-ofctl -O OpenFlow13 against the switch's listener; return stdout."""
    done = subprocess.run(['ovs-ofctl', '-O', 'OpenFlow13', args[0],
                           f'tcp:127.0.0.1:{switch.listenPort}', *args[1:]],
                          capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def wait_connected(net, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all('is_connected: true' in s.dpctl('ofproto/show') for s in net.switches):
            return
        time.sleep(0.1)
    raise AssertionError('switches did not connect to the controller')


def test_default_controller_pingall(make_net):
    # What `mn --switch pyovs --topo tree,2,2 --test pingall` does.
    net = make_net(TreeTopo(depth=2, fanout=2), fail_mode='secure',
                   controller=DefaultController)
    wait_connected(net)
    assert net.pingAll() == 0


def test_ryu_simple_switch_13_pingall_and_iperf3(make_net, ryu, iperf3):
    controller = ryu('ryu.app.simple_switch_13')
    net = make_net(TreeTopo(depth=2, fanout=3), fail_mode='secure', controller=controller)
    wait_connected(net)
    assert net.pingAll() == 0
    h1, h9 = net.get('h1', 'h9')
    report = iperf3(h1, h9, seconds=2)
    assert report['end']['sum_received']['bytes'] > 10 * 1024 * 1024, report['end']
    flows = net.get('s1').dpctl('dump-flows')
    assert 'actions=CONTROLLER:65535' in flows, flows


def test_standalone_falls_back_to_normal_when_controller_goes(make_net, ryu):
    controller = ryu('ryu.app.simple_switch_13')
    net = make_net(SingleSwitchTopo(2), fail_mode='standalone', controller=controller)
    wait_connected(net)
    assert net.pingAll() == 0
    controller.ryu_process.terminate()
    controller.ryu_process.wait(5)
    s1 = net.get('s1')
    deadline = time.monotonic() + 15
    while 'is_connected: true' in s1.dpctl('ofproto/show'):
        assert time.monotonic() < deadline, 'switch did not notice the controller left'
        time.sleep(0.2)
    assert net.pingAll() == 0


def test_ofctl_flows_stats_and_del(make_net):
    net = make_net(SingleSwitchTopo(2), fail_mode='secure')
    s1, h1, h2 = net.get('s1', 'h1', 'h2')
    # ICMP gets rules of its own, so their counters see exactly the pings;
    # ARP and the hosts' IPv6 chatter go by NORMAL.
    ofctl(s1, 'add-flow', 'priority=100,icmp,in_port=1,actions=output:2')
    ofctl(s1, 'add-flow', 'priority=100,icmp,in_port=2,actions=output:1')
    ofctl(s1, 'add-flow', 'priority=10,actions=NORMAL')
    assert PING_OK in h1.cmd(f'ping -c 5 -i 0.2 {h2.IP()}')
    flows = ofctl(s1, 'dump-flows', 'icmp')
    counts = re.findall(r'n_packets=(\d+), n_bytes=(\d+)', flows)
    # 5 echo requests one way, 5 replies the other: 98-byte frames each.
    assert counts == [('5', '490'), ('5', '490')], flows
    ports = ofctl(s1, 'dump-ports')
    rx = {int(p): int(n) for p, n in re.findall(r'port +(\d+): rx pkts=(\d+)', ports)}
    assert rx.keys() == {1, 2} and all(n >= 5 for n in rx.values()), ports
    ofctl(s1, 'del-flows')
    assert 'n_packets' not in ofctl(s1, 'dump-flows')
    assert '100% packet loss' in h1.cmd(f'ping -c 2 -W 1 {h2.IP()}')


def test_ofctl_mod_port_no_fwd(make_net):
    net = make_net(SingleSwitchTopo(2), fail_mode='secure')
    s1, h1, h2 = net.get('s1', 'h1', 'h2')
    ofctl(s1, 'add-flow', 'actions=NORMAL')
    assert PING_OK in h1.cmd(f'ping -c 2 {h2.IP()}')
    ofctl(s1, 'mod-port', 's1-eth2', 'no-forward')
    assert 'NO_FWD' in ofctl(s1, 'dump-ports-desc')
    assert '100% packet loss' in h1.cmd(f'ping -c 2 -W 1 {h2.IP()}')
    ofctl(s1, 'mod-port', 's1-eth2', 'forward')
    assert PING_OK in h1.cmd(f'ping -c 2 {h2.IP()}')


def test_select_group_spreads_and_meter_caps_udp(make_net, iperf3):
    net = make_net(SingleSwitchTopo(4), fail_mode='secure')
    s1, h1, h2 = net.get('s1', 'h1', 'h2')
    ofctl(s1, 'add-flow', 'priority=1,actions=NORMAL')
    net.pingAll()
    # SELECT: ten flows to h2's MAC are spread over ports 2..4 by a flow hash.
    ofctl(s1, 'add-group', 'group_id=1,type=select,bucket=output:2,bucket=output:3,'
          'bucket=output:4')
    ofctl(s1, 'add-flow', 'priority=10,udp,in_port=1,actions=group:1')
    for sport in range(10):
        h1.cmd(f'python3 -c "import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);'
               f's.bind((\'\',{40000 + sport})); s.sendto(b\'x\', (\'{h2.IP()}\', 9))"')
    time.sleep(1.5)
    groups = ofctl(s1, 'dump-group-stats')
    buckets = [int(n) for n in re.findall(r'bucket\d+:packet_count=(\d+)', groups)]
    assert sum(buckets) == 10 and sum(1 for n in buckets if n) >= 2, groups
    assert 'type=select' in ofctl(s1, 'dump-groups')
    # Meter: a 20 Mbit/s UDP flood through a 5000 kbit/s meter arrives near 5 Mbit/s.
    ofctl(s1, 'add-meter', 'meter=1,kbps,burst,band=type=drop,rate=5000,burst_size=500')
    ofctl(s1, 'add-flow', 'priority=20,udp,in_port=1,actions=meter:1,NORMAL')
    ofctl(s1, 'add-flow', 'priority=20,tcp,actions=NORMAL')
    report = iperf3(h1, h2, seconds=3, extra='-u -b 20M')
    rate = report['end']['sum']['bits_per_second'] * (
        1 - report['end']['sum']['lost_percent'] / 100) / 1e6
    assert 3.0 < rate < 7.5, report['end']['sum']
    assert 'meter=1' in ofctl(s1, 'dump-meters')
    stats = ofctl(s1, 'meter-stats')
    assert re.search(r'packet_in_count:[1-9]', stats), stats


def test_malformed_messages_get_errors_and_switch_survives(make_net):
    net = make_net(SingleSwitchTopo(2), fail_mode='secure')
    s1 = net.get('s1')
    port = s1.listenPort
    rng = random.Random(3)
    for _ in range(30):
        with socket.create_connection(('127.0.0.1', port), timeout=2) as sock:
            sock.sendall(bytes.fromhex('0400000800000001'))
            garbage = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))
            kind = rng.random()
            if kind < 0.3:          # a valid header with a bad type
                garbage = bytes((4, 200)) + (8).to_bytes(2, 'big') + b'\0\0\0\x07'
            elif kind < 0.6:        # a FLOW_MOD whose length lies
                garbage = bytes((4, 14)) + (56).to_bytes(2, 'big') + b'\0\0\0\x08' + garbage[:40]
            sock.sendall(garbage)
            sock.settimeout(1)
            try:
                sock.recv(4096)
            except (socket.timeout, ConnectionResetError):
                pass
    assert s1.ready()
    # Another connection still works, and so does forwarding.
    ofctl(s1, 'add-flow', 'actions=NORMAL')
    assert net.pingAll() == 0


def test_bad_flow_mod_gets_the_spec_error(make_net):
    net = make_net(SingleSwitchTopo(2), fail_mode='secure')
    s1 = net.get('s1')
    done = subprocess.run(['ovs-ofctl', '-O', 'OpenFlow13', 'add-flow',
                           f'tcp:127.0.0.1:{s1.listenPort}', 'table=254,actions=drop'],
                          capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert 'OFPFMFC_BAD_TABLE_ID' in done.stderr, done.stderr
    done = subprocess.run(['ovs-ofctl', '-O', 'OpenFlow13', 'add-flow',
                           f'tcp:127.0.0.1:{s1.listenPort}', 'actions=group:99'],
                          capture_output=True, text=True, check=False)
    assert 'OFPBAC_BAD_OUT_GROUP' in done.stderr, done.stderr
    assert s1.ready()


def test_ofproto_trace_through_dpctl(make_net):
    net = make_net(SingleSwitchTopo(2), fail_mode='secure')
    s1 = net.get('s1')
    ofctl(s1, 'add-flow', 'priority=10,ip,nw_dst=10.0.0.2,actions=output:2')
    out = s1.dpctl('ofproto/trace', 'in_port=1,ip,nw_src=10.0.0.1,nw_dst=10.0.0.2')
    assert 'Megaflow:' in out and 'Datapath actions: 2' in out, out

