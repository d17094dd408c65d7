"""ovs-vsctl against mnovs and against the system's OVS: the user sees the same.

Each scenario runs the same ovs-vsctl commands on both sides and compares, per
command, the exit status, the output and the error text:
- mnovs: a private database, bridge layer and switches (mnovs_db.MnovsDb).
- OVS: the system's daemons, started by the fixture with ovs-ctl if they are
  down (and stopped again), bridges with datapath_type=netdev (this kernel has
  no openvswitch module), deleted at the end.

Differences that are no one's business are normalized away: the database
UUID and ovs_version of `show`, `datapath_type: netdev` (the system side
needs it), the order of `show`'s lines within a bridge (ovs-vsctl orders
ports by UUID) and log timestamps.
"""

import json
import os
import re
import subprocess

import pytest
from mnovs_db import MnovsDb

OVS_CTL = '/usr/share/openvswitch/scripts/ovs-ctl'
SYSTEM_RUNDIR = '/var/run/openvswitch'

if os.geteuid() != 0:
    pytest.skip('needs root (ovsdb-server, veths)', allow_module_level=True)
pytestmark = pytest.mark.integration


class SystemOvs:
    """The system's OVS through its own ovs-vsctl; bridges made here are netdev ones.

    Both sides make a LOCAL port, a TAP device named like the bridge, in the
    same namespace: so OVS's bridges get other names (RENAME), which its
    output translates back.
    """

    RENAME = {'vb1': 'ob1', 'vb2': 'ob2'}

    def __init__(self):
        self.env = dict(os.environ, OVS_RUNDIR=SYSTEM_RUNDIR)
        self.bridges = set()

    def vsctl(self, *args):
        done = self._vsctl([self.RENAME.get(word, word) for word in args])
        for ours, theirs in self.RENAME.items():
            done.stdout = done.stdout.replace(theirs, ours)
            done.stderr = done.stderr.replace(theirs, ours)
        return done

    def _vsctl(self, args):
        for i, word in enumerate(args):
            if word == 'add-br' and i + 1 < len(args):
                self.bridges.add(args[i + 1])
                args[i + 2:i + 2] = ['--', 'set', 'bridge', args[i + 1], 'datapath_type=netdev']
        return subprocess.run(['ovs-vsctl', '--timeout=20', *args], env=self.env,
                              capture_output=True, text=True, check=False)

    def cleanup(self):
        for bridge in self.bridges:
            self._vsctl(['--if-exists', 'del-br', bridge])


@pytest.fixture(scope='module')
def system_ovs():
    running = subprocess.run([OVS_CTL, 'status'], capture_output=True).returncode == 0
    if not running:
        subprocess.run([OVS_CTL, 'start', '--system-id=random'], check=True,
                       capture_output=True)
    ovs = SystemOvs()
    try:
        yield ovs
    finally:
        ovs.cleanup()
        if not running:
            subprocess.run([OVS_CTL, 'stop'], capture_output=True, check=False)


@pytest.fixture
def both(system_ovs, tmp_path):
    mnovs = MnovsDb(tmp_path)
    try:
        mnovs.start()
        yield mnovs, system_ovs
    finally:
        mnovs.stop()
        system_ovs.cleanup()


def normalize(command, text):
    text = re.sub(r'^\S+\|\d+\|', '', text, flags=re.M)               # log prefixes
    text = re.sub(r'^\d{4}-\d\d-\d\dT\S+\|', '', text, flags=re.M)
    if command[:1] == ['show']:
        lines = [line for line in text.splitlines()[1:]
                 if 'ovs_version' not in line and 'datapath_type: netdev' not in line]
        return sorted(lines)
    return text


def compare(both, *commands):
    """Run each command on both sides; assert same exit, stdout and stderr."""
    mnovs, ovs = both
    for command in commands:
        command = list(command)
        ours, theirs = mnovs.vsctl(*command), ovs.vsctl(*command)
        seen = [(done.returncode, normalize(command, done.stdout),
                 normalize(command, done.stderr)) for done in (ours, theirs)]
        assert seen[0] == seen[1], f'ovs-vsctl {" ".join(command)}: mnovs vs OVS'


def test_bridges_and_ports(both, veth):
    p1, p2 = veth('vsa1'), veth('vsa2')
    compare(both,
            ['add-br', 'vb1'],
            ['--may-exist', 'add-br', 'vb1'],
            ['add-port', 'vb1', p1],
            ['add-port', 'vb1', p2, '--', 'set', 'interface', p2, 'ofport_request=7'],
            ['list-br'],
            ['list-ports', 'vb1'],
            ['get', 'interface', p1, 'ofport'],
            ['get', 'interface', p2, 'ofport'],
            ['get', 'interface', 'vb1', 'ofport'],
            ['set', 'interface', p2, 'ofport_request=9'],
            ['get', 'interface', p2, 'ofport'],
            ['--may-exist', 'add-port', 'vb1', p1],
            ['del-port', 'vb1', p2],
            ['--if-exists', 'del-port', 'vb1', p2],
            ['list-ports', 'vb1'],
            ['show'],
            ['del-br', 'vb1'],
            ['--if-exists', 'del-br', 'vb1'],
            ['list-br'])


def test_controllers_fail_mode_protocols_datapath_id(both):
    compare(both,
            ['add-br', 'vb1'],
            ['set-controller', 'vb1', 'tcp:127.0.0.1:6653', 'ptcp:16999'],
            ['get-controller', 'vb1'],
            ['set-fail-mode', 'vb1', 'secure'],
            ['get-fail-mode', 'vb1'],
            ['set', 'bridge', 'vb1', 'protocols=OpenFlow13',
             'other_config:datapath-id=00000000000000ab'],
            ['get', 'bridge', 'vb1', 'protocols', 'other_config:datapath-id'],
            ['get', 'bridge', 'vb1', 'datapath_id'],
            ['--columns=name,fail_mode,protocols', 'list', 'bridge', 'vb1'],
            ['del-controller', 'vb1'],
            ['get-controller', 'vb1'],
            ['del-fail-mode', 'vb1'],
            ['get-fail-mode', 'vb1'],
            ['show'],
            ['del-br', 'vb1'])


def test_bad_input_gets_the_same_answer(both, veth):
    port = veth('vsa3')
    compare(both,
            ['add-br', 'vb1'],
            ['add-br', 'vb2'],
            ['add-port', 'vb1', port],
            ['add-br', 'vb1'],                          # exists
            ['del-br', 'nobr'],                         # no such bridge
            ['list-ports', 'nobr'],
            ['add-port', 'nobr', 'x0'],
            ['del-port', 'vb1', 'noport'],              # no such port
            ['add-port', 'vb2', port],                  # already on another bridge
            ['del-port', 'vb1', 'vb1'],                 # the local port
            ['add-port', 'vb1', 'nosuch0'],             # missing interface: Interface error
            ['get', 'interface', 'nosuch0', 'ofport'],
            ['get', 'interface', 'nosuch0', 'error'],
            ['get', 'interface', port, 'nocolumn'],     # malformed column
            ['set', 'bridge', 'vb1', 'fail_mode=bogus'],
            ['set', 'interface', port, 'ofport_request=abc'],
            ['set-fail-mode', 'vb1', 'bogus'],
            ['show'],
            ['del-br', 'vb1'],
            ['del-br', 'vb2'])


def test_status_columns_are_written(both, veth):
    """The columns ovs-vswitchd writes have the same values on mnovs.

    Except the states: OVS leaves a veth it adds down; mnovs brings its ports
    up (Mininet expects it). Both must say up or down.
    """
    port = veth('vsa4')
    seen = []
    for side in both:
        assert side.vsctl('add-br', 'vb1', '--', 'add-port', 'vb1', port).returncode == 0
        side.vsctl('set', 'interface', port, 'ofport_request=3')
        got = side.vsctl('--columns=ofport,ifindex,mac_in_use,error,link_state,admin_state',
                         '--format=json', 'list', 'interface', port)
        assert got.returncode == 0, got.stderr
        row = json.loads(got.stdout)['data'][0]
        assert row[4] in ('up', 'down') and row[5] in ('up', 'down'), row
        seen.append(row[:4])
        side.vsctl('del-br', 'vb1')
    assert seen[0] == seen[1]
