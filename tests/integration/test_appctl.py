"""OVS's own ovs-appctl, and the mnovs-appctl launcher, against pyovs in Mininet.

With OVS_RUNDIR set to mnovs's run directory, the unmodified ovs-appctl finds a
switch by its pid file (s1.pid, locked by the vswitchd) and talks JSON-RPC to
its control socket s1.<pid>.ctl, exactly as it talks to ovs-vswitchd.
"""

import os
import socket
import subprocess
import sys

from mininet.topo import SingleSwitchTopo

from mnovs import paths
from mnovs.vswitchd import VERSION

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OVS_APPCTL = ['ovs-appctl']
# The launcher as `mnovs-appctl` runs it, from this checkout.
MNOVS_APPCTL = [sys.executable, '-m', 'mnovs.launchers', 'appctl']
SERVER_ERROR = 'ovs-appctl: s1: server returned an error'


def run(tool, *argv):
    return subprocess.run([*tool, *argv], capture_output=True, text=True, timeout=30,
                          cwd=PROJECT_ROOT, env=dict(os.environ, OVS_RUNDIR=paths.RUN_DIR),
                          check=False)


def test_real_ovs_appctl_against_a_switch(make_net):
    net = make_net(SingleSwitchTopo(2))
    s1 = net.get('s1')
    assert os.path.exists(paths.pid_path('s1'))
    assert os.path.exists(paths.ctl_path('s1', s1.pid_vswitchd))

    done = run(OVS_APPCTL, '-t', 's1', 'dpctl/show')
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('system@s1:\n')
    assert 'port 1: s1-eth1 (up)' in done.stdout and 'port 2: s1-eth2 (up)' in done.stdout

    done = run(OVS_APPCTL, '-t', 's1', 'list-commands')
    lines = done.stdout.splitlines()
    assert lines[0] == 'The available commands are:'
    assert {'dpctl/show', 'dpctl/dump-flows', 'ofproto/trace', 'list-commands',
            'version', 'exit'} <= {line.split()[0] for line in lines[1:]}

    assert run(OVS_APPCTL, '-t', 's1', 'version').stdout == VERSION + '\n'

    done = run(OVS_APPCTL, '-t', 's1', 'ofproto/trace', 'in_port=1,ip,nw_dst=10.0.0.2')
    assert done.returncode == 0 and 'Megaflow:' in done.stdout, done.stderr

    done = run(OVS_APPCTL, '-t', 's1', 'dpctl/nonsense')
    assert done.returncode == 2 and done.stdout == ''
    assert done.stderr == ('"dpctl/nonsense" is not a valid command (use "list-commands" '
                           f'to see a list of valid commands)\n{SERVER_ERROR}\n')
    assert net.pingAll() == 0


BAD_COMMANDS = [
    (['-t', 's1', 'dpctl/nonsense'], 2, '"dpctl/nonsense" is not a valid command'),
    (['-t', 's1', 'dpctl/show', 'extra'], 2, '"dpctl/show" command takes at most 0 arguments'),
    (['-t', 's1', 'ofproto/trace'], 2, '"ofproto/trace" command requires at least 1 arguments'),
    (['-t', 's1', 'dpctl/add-if', 'no-such-if0'], 2, 'cannot add no-such-if0'),
    (['-t', 's1', 'dpctl/del-if', 'no-such-if0'], 2, 'no port named no-such-if0'),
    (['-t', 'nosuchswitch', 'dpctl/show'], 1, 'ovs-appctl: cannot read pidfile'),
]


def test_mnovs_appctl_bad_commands_get_ovs_answers(make_net):
    net = make_net(SingleSwitchTopo(1))
    s1 = net.get('s1')
    for argv, status, message in BAD_COMMANDS:
        done = run(MNOVS_APPCTL, *argv)
        assert done.returncode == status, (argv, done.stderr)
        lines = done.stderr.splitlines()
        if status == 2:      # the server's one-line answer, then ovs-appctl's own line
            assert len(lines) == 2 and lines[0].startswith(message), (argv, done.stderr)
            assert lines[1] == SERVER_ERROR
        else:
            assert lines[-1].startswith(message), (argv, done.stderr)
    assert s1.ready()
    assert 'dpctl/show' in s1.dpctl('list-commands')


def test_idle_control_clients_do_not_stop_the_switch(make_net):
    net = make_net(SingleSwitchTopo(2))
    s1 = net.get('s1')
    path = paths.ctl_path('s1', s1.pid_vswitchd)
    idle = []
    try:
        for n in range(4):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            if n % 2:
                sock.sendall(b'{"method": "dpctl/sh')      # half a request, never finished
            idle.append(sock)
        assert net.pingAll() == 0
        done = run(MNOVS_APPCTL, '-t', 's1', 'dpctl/show')
        assert done.returncode == 0 and 'lookups:' in done.stdout
    finally:
        for sock in idle:
            sock.close()


def test_second_vswitchd_with_a_running_name_stops_at_the_pid_file(make_net):
    net = make_net(SingleSwitchTopo(1))
    s1 = net.get('s1')
    done = subprocess.run([sys.executable, '-m', 'mnovs.vswitchd', '--name', 's1',
                           '--port', 's1-eth1'], capture_output=True, text=True,
                          timeout=30, cwd=PROJECT_ROOT, check=False)
    assert done.returncode == 1
    assert done.stderr == f'mnovs-vswitchd: s1: already running as pid {s1.pid_vswitchd}\n'
    assert run(OVS_APPCTL, '-t', 's1', 'version').stdout == VERSION + '\n'
