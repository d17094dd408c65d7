"""bridge/apply and bridge/status on a live vswitchd, with the real OVS tools.

A vswitchd is started directly (python -m mnovs.vswitchd), as the bridge
layer will start one, with a run directory of the test's own, so that
`ovs-ofctl ... <bridge>` finds <run dir>/<bridge>.mgmt through OVS_RUNDIR.
Hosts are network namespaces on veths; the bridge's LOCAL port is a TAP
device in the root namespace, as OVS's is. Each step changes the desired
state, then checks the change (ovs-ofctl, bridge/status, PORT_STATUS on a
raw OpenFlow connection) and that the switch still forwards.

Run under the shared lock:
    flock /tmp/mnovs-mininet.lock .venv/bin/python -m pytest tests/integration/test_bridge_apply.py
"""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from mnovs import paths, unixctl
from mnovs.openflow import codec, ofp

BR = 'hbabr'
NET = '10.213.77'
LOCAL_IP = f'{NET}.254'
HOSTS = {1: 'hba-h1', 2: 'hba-h2', 3: 'hba-h3'}     # n -> namespace; its veth is hba<n>
MISSING = 'hbamiss'                                 # an interface made late
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --- plumbing -----------------------------------------------------------------------

def sh(*argv, check=True, env=None):
    return subprocess.run(argv, check=check, capture_output=True, text=True, env=env)


def make_host(n):
    ns, intf = HOSTS[n], f'hba{n}'
    sh('ip', 'netns', 'add', ns)
    sh('ip', 'link', 'add', intf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns)
    sh('ip', '-n', ns, 'addr', 'add', f'{NET}.{n}/24', 'dev', 'eth0')
    sh('ip', '-n', ns, 'link', 'set', 'eth0', 'up')
    sh('ip', '-n', ns, 'link', 'set', 'lo', 'up')


def remove_plumbing():
    for ns in HOSTS.values():
        sh('ip', 'netns', 'del', ns, check=False)
    for intf in ('hba1', 'hba2', 'hba3', MISSING):
        sh('ip', 'link', 'del', intf, check=False)


def pings(n, ip, deadline=10.0):
    """Does host n reach ip? Retried until the deadline (ARP, learning, reconnects)."""
    end = time.monotonic() + deadline
    while True:
        done = sh('ip', 'netns', 'exec', HOSTS[n], 'ping', '-c1', '-W1', ip, check=False)
        if done.returncode == 0:
            return True
        if time.monotonic() > end:
            return False


def wait_for(predicate, deadline=10.0):
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.1)
    return True


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def iperf3_to_local(tcp_port, reverse=False):
    """iperf3 from host 1 to a server on the LOCAL port's address; the JSON report."""
    server = subprocess.Popen(['iperf3', '-s', '-1', '-B', LOCAL_IP, '-p', str(tcp_port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: f'{LOCAL_IP}:{tcp_port}' in sh('ss', '-ltn').stdout)
        out = sh('ip', 'netns', 'exec', HOSTS[1], 'iperf3', '-c', LOCAL_IP, '-p', str(tcp_port),
                 '-t', '2', '-J', *(['-R'] if reverse else []), check=False).stdout
        return json.loads(out)
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


class Bridge:
    """The vswitchd under test and its control socket."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.mgmt = os.path.join(run_dir, f'{BR}.mgmt')
        self.log = os.path.join(run_dir, 'vswitchd.log')
        env = dict(os.environ, MNOVS_RUN_DIR=run_dir, PYTHONPATH=ROOT)
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'mnovs.vswitchd', '--name', BR, '--fail-mode', 'standalone',
             '--log-file', self.log], env=env, cwd=ROOT)
        assert wait_for(self.ctl_paths), 'vswitchd did not start'
        (self.ctl,) = self.ctl_paths()
        self.ofctl_env = dict(os.environ, OVS_RUNDIR=run_dir)

    def ctl_paths(self):
        """The control socket(s): <br>.ctl, or OVS's <br>.<pid>.ctl."""
        return glob.glob(os.path.join(self.run_dir, f'{BR}*.ctl'))

    def appctl(self, method, *params):
        """One control command (the one place that knows the protocol)."""
        return unixctl.call(self.ctl, method, params)

    def apply(self, **state):
        doc = {'datapath_id': None, 'fail_mode': 'standalone', 'protocols': ['OpenFlow13'],
               'controllers': [], 'controller_rate_limit': None,
               'controller_burst_limit': None, 'ports': []}
        doc.update(state)
        ok, out = self.appctl('bridge/apply', json.dumps(doc))
        assert ok and out == '', out

    def status(self):
        ok, out = self.appctl('bridge/status')
        assert ok, out
        return json.loads(out)

    def ofctl(self, *args):
        """ovs-ofctl naming the bridge: it connects to <OVS_RUNDIR>/<bridge>.mgmt."""
        result = sh('ovs-ofctl', '-O', 'OpenFlow13', *args, env=self.ofctl_env, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def port(name, kind='', request=None):
    return {'name': name, 'type': kind, 'ofport_request': request}


LOCAL = port(BR, 'internal')


class OFMonitor:
    """A raw OpenFlow 1.3 connection on the mgmt socket that asks for PORT_STATUS."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(path)
        self.buf = b''
        self.sock.sendall(codec.encode(codec.Hello()))
        self.sock.sendall(codec.encode(codec.SetAsync(port_status_mask=(0b111, 0b111))))
        # The reply to a barrier says the switch has taken in what came before.
        self.sock.sendall(codec.encode(codec.BarrierRequest()))
        self.next(codec.BarrierReply)

    def next(self, kind):
        """Read messages until one of `kind` comes; return it."""
        while True:
            raws, self.buf = codec.split_messages(self.buf)
            for index, raw in enumerate(raws):
                msg = codec.decode(raw)
                if isinstance(msg, kind):
                    self.buf = b''.join(raws[index + 1:]) + self.buf
                    return msg
            data = self.sock.recv(65536)
            assert data, 'mgmt connection closed'
            self.buf += data

    def port_status(self, n):
        """The next n PORT_STATUS messages as (reason, port_no, name)."""
        return [(msg.reason, msg.desc.port_no, msg.desc.name)
                for msg in (self.next(codec.PortStatus) for _ in range(n))]

    def close(self):
        self.sock.close()


@pytest.fixture
def bridge(tmp_path):
    remove_plumbing()
    for n in HOSTS:
        make_host(n)
    run_dir = str(tmp_path / 'run')
    os.makedirs(run_dir)
    br = Bridge(run_dir)
    try:
        yield br
    finally:
        br.stop()
        remove_plumbing()
    with open(br.log) as log:
        assert br.proc.returncode == 0, log.read()
    assert not os.path.exists(br.mgmt) and not br.ctl_paths(), 'sockets left behind'
    assert not os.path.exists(f'/sys/class/net/{BR}'), 'the LOCAL TAP device outlived its switch'


@pytest.fixture
def testcontroller(tmp_path):
    """ovs-testcontroller (a learning switch) on a free port; yields its tcp: target."""
    tcp_port = free_port()
    with open(tmp_path / 'testcontroller.log', 'w') as log:
        proc = subprocess.Popen(['ovs-testcontroller', f'ptcp:{tcp_port}:127.0.0.1'],
                                stdout=log, stderr=log)
        yield f'tcp:127.0.0.1:{tcp_port}'
        proc.terminate()
        proc.wait(10)


# --- tests --------------------------------------------------------------------------

def test_ports_local_port_and_secure_flows_through_the_mgmt_socket(bridge):
    bridge.apply(ports=[LOCAL, port('hba1', request=1), port('hba2', request=2)])
    status = bridge.status()['ports']
    assert status[BR]['ofport'] == 65534 and status['hba1']['ofport'] == 1
    assert status['hba2']['link_state'] == 'up' and status['hba2']['error'] is None
    assert pings(1, f'{NET}.2')

    # The LOCAL port is a host interface: give it an address, reach it through NORMAL.
    assert status[BR]['admin_state'] == 'down'          # as OVS leaves internal ports
    sh('ip', 'addr', 'add', f'{LOCAL_IP}/24', 'dev', BR)
    sh('ip', 'link', 'set', BR, 'up')
    assert pings(1, LOCAL_IP)
    assert bridge.status()['ports'][BR]['statistics']['rx_packets'] > 0

    # TCP with the offloads on: GSO super-frames cross the TAP in both
    # directions with their vnet header (a dropped or mangled one stalls TCP).
    for reverse in (False, True):
        report = iperf3_to_local(free_port(), reverse)
        assert 'error' not in report, report.get('error')
        assert report['end']['sum_received']['bytes'] > 0

    # Secure, no controller: the tables are flushed and forward only what they say.
    bridge.apply(fail_mode='secure', ports=[LOCAL, port('hba1', request=1),
                                            port('hba2', request=2)])
    assert not pings(1, f'{NET}.2', deadline=2)
    bridge.ofctl('add-flow', BR, 'in_port=1,actions=output:2,LOCAL')
    bridge.ofctl('add-flow', BR, 'in_port=2,actions=output:1')
    bridge.ofctl('add-flow', BR, 'in_port=LOCAL,actions=output:1')
    assert pings(1, f'{NET}.2') and pings(1, LOCAL_IP)
    flows = bridge.ofctl('dump-flows', BR)
    assert 'actions=output:2,LOCAL' in flows and 'in_port=LOCAL' in flows
    assert 'LOCAL(hbabr)' in bridge.ofctl('dump-ports-desc', BR)

    # A port added live forwards at once (the flows name it).
    bridge.apply(fail_mode='secure', ports=[LOCAL, port('hba1', request=1),
                                            port('hba2', request=2), port('hba3', request=3)])
    bridge.ofctl('add-flow', BR, 'in_port=3,actions=output:1')
    bridge.ofctl('mod-flows', BR, 'in_port=1,actions=output:2,output:3,LOCAL')
    assert pings(1, f'{NET}.3')
    assert 'fail_mode: secure' in bridge.appctl('ofproto/show')[1]

    # Ports no longer wanted go away; the LOCAL device with its switch (fixture).
    bridge.apply(fail_mode='standalone', ports=[LOCAL, port('hba1', request=1),
                                                port('hba3', request=3)])
    assert set(bridge.status()['ports']) == {BR, 'hba1', 'hba3'}
    assert pings(1, f'{NET}.3')


def test_controller_dpid_renumber_and_missing_interface(bridge, testcontroller):
    ports = [LOCAL, port('hba1', request=1), port('hba2', request=2)]
    bridge.apply(datapath_id='00000000000000b1', ports=ports)
    assert 'dpid:00000000000000b1' in bridge.ofctl('show', BR)
    assert pings(1, f'{NET}.2')

    # A controller: ovs-testcontroller connects and forwards (a learning switch).
    bridge.apply(datapath_id='00000000000000b1', ports=ports, controllers=[testcontroller])
    connected = lambda: bridge.status()['controllers'][testcontroller]['is_connected']
    assert wait_for(connected)
    assert 'forwarding by OpenFlow tables' in bridge.appctl('ofproto/show')[1]
    assert pings(1, f'{NET}.2')

    # A new datapath id: every connection is dropped and the controller comes back.
    bridge.apply(datapath_id='00000000000000c2', ports=ports, controllers=[testcontroller])
    assert bridge.status()['datapath_id'] == '00000000000000c2'
    assert 'dpid:00000000000000c2' in bridge.ofctl('show', BR)
    assert wait_for(connected)
    assert pings(1, f'{NET}.2')

    # The controller removed: its connection goes, and standalone means NORMAL again.
    bridge.apply(datapath_id='00000000000000c2', ports=ports)
    assert bridge.status()['controllers'] == {}
    assert 'fail_mode: standalone; forwarding by NORMAL' in bridge.appctl('ofproto/show')[1]
    assert pings(1, f'{NET}.2')

    # Renumbering: PORT_STATUS DELETE of the old number, then ADD of the new one.
    # (Without a controller: ovs-testcontroller's flows would still name port 2.)
    monitor = OFMonitor(bridge.mgmt)
    try:
        ports = [LOCAL, port('hba1', request=1), port('hba2', request=5)]
        bridge.apply(datapath_id='00000000000000c2', ports=ports)
        assert monitor.port_status(2) == [(ofp.OFPPR_DELETE, 2, 'hba2'), (ofp.OFPPR_ADD, 5, 'hba2')]
    finally:
        monitor.close()
    assert bridge.status()['ports']['hba2']['ofport'] == 5
    assert ' 5(hba2)' in bridge.ofctl('dump-ports-desc', BR)
    assert pings(1, f'{NET}.2')

    # A missing interface: an error in OVS's words, the rest forwards; when it
    # appears it becomes a port without another apply.
    ports.append(port(MISSING, request=9))
    bridge.apply(datapath_id='00000000000000c2', ports=ports)
    missing = bridge.status()['ports'][MISSING]
    assert missing == {'ofport': -1,
                       'error': f'could not open network device {MISSING} (No such device)'}
    assert pings(1, f'{NET}.2')
    sh('ip', 'link', 'add', MISSING, 'type', 'veth', 'peer', 'name', f'{MISSING}p')
    assert wait_for(lambda: bridge.status()['ports'][MISSING].get('ofport') == 9)
    assert bridge.status()['ports'][MISSING]['error'] is None

    # A bad document changes nothing and is a command error.
    ok, out = bridge.appctl('bridge/apply', '{"fail_mode": "open"}')
    assert not ok and 'fail_mode' in out
    assert bridge.status()['ports'][MISSING]['ofport'] == 9


def test_ovs_ofctl_reaches_a_mininet_switch_by_name(make_net):
    """Mininet's switches (command-line configuration) have their <br>.mgmt too."""
    from mininet.topo import SingleSwitchTopo
    net = make_net(SingleSwitchTopo(2))
    env = dict(os.environ, OVS_RUNDIR=paths.RUN_DIR)
    ofctl = ('ovs-ofctl', '-O', 'OpenFlow13')
    sh(*ofctl, 'add-flow', 's1', 'priority=5,actions=NORMAL', env=env)
    assert 'priority=5 actions=NORMAL' in sh(*ofctl, 'dump-flows', 's1', env=env).stdout
    mgmt = os.path.join(paths.RUN_DIR, 's1.mgmt')
    assert os.path.exists(mgmt)
    make_net.stop(net)
    assert not os.path.exists(mgmt), 'the mgmt socket outlived its switch'
