"""Fixtures for integration tests: real Mininet networks on pyovs, always stopped.

Every network a test builds goes through `make_net`, which stops it at the
end of the test whatever happened, and then checks that no vswitchd process
or control socket of it is left behind.
"""

import json
import os
import socket
import subprocess
import sys
import time
from functools import partial

import pytest

pytest.importorskip('mininet.net', reason='Mininet is installed by `make install`')
from mininet.log import setLogLevel  # noqa: E402
from mininet.net import Mininet  # noqa: E402
from mininet.node import RemoteController  # noqa: E402

from mnovs import ovs_ctl, paths  # noqa: E402
from mnovs.switch import PyOVSSwitch  # noqa: E402
from mnovs_db import veth  # noqa: E402,F401  (a fixture: veth pairs by name)

if os.geteuid() != 0:
    pytest.skip('integration tests need root (network namespaces)', allow_module_level=True)

pytestmark = pytest.mark.integration

RYU = os.path.join(os.path.dirname(sys.executable), 'mnovs-ryu')


def pid_alive(pid):
    try:
        with open(f'/proc/{pid}/status') as f:
            return 'State:\tZ' not in f.read()
    except FileNotFoundError:
        return False


@pytest.fixture(scope='session', autouse=True)
def mnovs_daemons():
    """mnovs's ovsdb-server and bridge layer, which PyOVSSwitch starts on first use.

    Stopped, with any vswitchd they left, when the session ends, unless they
    were running before it began.
    """
    with ovs_ctl.stopped_afterwards():
        yield


@pytest.fixture
def make_net():
    """Factory: make_net(topo, **Mininet kwargs) -> started Mininet on pyovs."""
    setLogLevel('warning')
    nets = []

    def build(topo, fail_mode='standalone', controller=None, **kwargs):
        kwargs.setdefault('switch', partial(PyOVSSwitch, failMode=fail_mode))
        # Passive OpenFlow listeners (ptcp) from here up, one per switch, as
        # `mn` gives them from 6654; a base apart from `mn`'s avoids clashes.
        kwargs.setdefault('listenPort', 16654)
        net = Mininet(topo=topo, controller=controller, autoSetMacs=True, **kwargs)
        nets.append(net)
        net.start()
        return net

    def stop(net):
        """Stop `net` now (the test checks what stopping left behind)."""
        nets.remove(net)
        net.stop()

    build.stop = stop
    yield build
    for net in nets:
        pids = [s.pid_vswitchd for s in net.switches if getattr(s, 'pid_vswitchd', None)]
        names = [s.name for s in net.switches]
        net.stop()
        leftovers = [pid for pid in pids if pid_alive(pid)]
        assert not leftovers, f'vswitchd still running after stop: {leftovers}'
        for name in names:
            assert not paths.ctl_paths(name), f'{name}: control socket left'
            assert not os.path.exists(paths.pid_path(name)), f'{name}: pid file left'


def read_dp_counters(switch):
    """The `lookups:` counters of a switch's dpctl/show, as a dict of ints."""
    for line in switch.dpctl('dpctl/show').splitlines():
        line = line.strip()
        if line.startswith('lookups:'):
            return {k: int(v) for k, v in (w.split(':') for w in line.split()[1:])}
    raise AssertionError('no lookups line in dpctl/show')


@pytest.fixture
def dp_counters():
    """dp_counters(switch) -> {'hit': .., 'missed': .., 'lost': ..}."""
    return read_dp_counters


def run_iperf3(client, server, seconds=2, extra=''):
    """iperf3 from client to server; return the parsed JSON report."""
    server_proc = server.popen(['iperf3', '-s', '-1', '-J'])
    try:
        for _ in range(50):
            if ':5201' in server.cmd('ss -ltn'):
                break
            time.sleep(0.1)
        out = client.cmd(f'iperf3 -c {server.IP()} -t {seconds} -J {extra}')
        return json.loads(out)
    finally:
        if server_proc.poll() is None:
            server_proc.kill()
        server_proc.wait()


@pytest.fixture
def iperf3():
    """iperf3(client, server, seconds=2, extra='') -> iperf3 JSON report."""
    return run_iperf3


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture
def ryu():
    """ryu(app, ...) -> RemoteController for a stock Ryu app run by mnovs-ryu."""
    procs = []

    def start(*apps):
        port = free_port()
        log = open(f'/tmp/mnovs-test-ryu-{port}.log', 'w')
        proc = subprocess.Popen([RYU, '--ofp-tcp-listen-port', str(port), *apps],
                                stdout=log, stderr=subprocess.STDOUT)
        procs.append((proc, log))
        for _ in range(100):
            with socket.socket() as sock:
                if sock.connect_ex(('127.0.0.1', port)) == 0:
                    break
            assert proc.poll() is None, open(log.name).read()
            time.sleep(0.1)
        controller = RemoteController('c0', ip='127.0.0.1', port=port)
        controller.ryu_process = proc
        return controller

    yield start
    for proc, log in procs:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        os.unlink(log.name)
