"""A pyovs bond against real LACP peers: OVS's own bond, and Linux's 802.3ad bond.

    h1 ── [OVS userspace bridge ob, bond obond] ══ 2 veths ══ [pyovs pb, bond pbond] ── h2

The OVS side is the system's OVS 3.1 (ovsdb-server and ovs-vswitchd with
datapath_type=netdev) run in private directories (OvsPrivate); the pyovs
side is a private mnovs database and bridge layer (mnovs_db.MnovsDb), both
configured with ovs-vsctl. Hosts are network namespaces. bench_bond.py
builds the same rig (BondRig).
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

from mnovs_db import MnovsDb

SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema'
H1, H2 = '10.0.77.1', '10.0.77.2'
LACP_FAST = 'other_config:lacp-time=fast'


def sh(*argv, check=True, env=None):
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if check and done.returncode:
        raise RuntimeError(f'{" ".join(argv)}: {done.stderr.strip()}')
    return done.stdout


class OvsPrivate:
    """OVS's ovsdb-server and ovs-vswitchd in directory `base` (OVS_RUNDIR there)."""

    def __init__(self, base):
        self.dir = os.path.join(base, 'ovs')
        os.makedirs(self.dir, exist_ok=True)
        self.env = dict(os.environ, OVS_RUNDIR=self.dir, OVS_DBDIR=self.dir,
                        OVS_LOGDIR=self.dir, OVS_SYSCONFDIR=self.dir)
        self.db = f'unix:{self.dir}/db.sock'

    def start(self):
        conf = os.path.join(self.dir, 'conf.db')
        sh('ovsdb-tool', 'create', conf, SCHEMA)
        sh('ovsdb-server', conf, f'--remote=punix:{self.dir}/db.sock',
           f'--pidfile={self.dir}/ovsdb-server.pid', f'--log-file={self.dir}/ovsdb-server.log',
           f'--unixctl={self.dir}/ovsdb-server.ctl', '--detach', '--no-chdir', env=self.env)
        self.vsctl('--no-wait', 'init')
        sh('ovs-vswitchd', self.db, f'--pidfile={self.dir}/ovs-vswitchd.pid',
           f'--log-file={self.dir}/ovs-vswitchd.log', '--detach', '--no-chdir', env=self.env)

    def vsctl(self, *args):
        return sh('ovs-vsctl', f'--db={self.db}', '--timeout=20', *args, env=self.env)

    def appctl(self, *args):
        return sh('ovs-appctl', '--timeout=10', *args, env=self.env)

    def stop(self):
        for name in ('ovs-vswitchd', 'ovsdb-server'):
            try:
                with open(os.path.join(self.dir, f'{name}.pid')) as f:
                    pid = int(f.read())
            except (OSError, ValueError):
                continue
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                continue
            for _ in range(100):
                if not os.path.exists(f'/proc/{pid}'):
                    break
                time.sleep(0.05)


class BondRig:
    """Two hosts, an OVS bond and a pyovs bond with `n_links` veths between.

    Args:
        base: a directory for both switches' databases, sockets and logs.
        mode: the bond_mode of both bonds; lacp: the lacp of both.
        tag: a short prefix that makes the link and namespace names unique.
    """

    def __init__(self, base, mode='balance-tcp', lacp='active', n_links=2, tag='bd'):
        self.tag = tag
        self.mode, self.lacp, self.n_links = mode, lacp, n_links
        self.ovs = OvsPrivate(base)
        self.mnovs = MnovsDb(base)
        self.links = [f'{tag}o{i}' for i in range(1, n_links + 1)]     # OVS ends; pyovs: ...p
        self.hosts = (f'{tag}h1', f'{tag}h2')

    def start(self):
        tag = self.tag
        for host, ip, (near, far) in zip(self.hosts, (H1, H2),
                                         ((f'{tag}h1o', f'{tag}h1i'), (f'{tag}h2o', f'{tag}h2i'))):
            sh('ip', 'netns', 'add', host)
            sh('ip', 'link', 'add', near, 'type', 'veth', 'peer', 'name', far)
            sh('ip', 'link', 'set', far, 'netns', host)
            sh('ip', '-n', host, 'addr', 'add', f'{ip}/24', 'dev', far)
            sh('ip', '-n', host, 'link', 'set', far, 'up')
            sh('ip', '-n', host, 'link', 'set', 'lo', 'up')
            # OVS userspace needs finished checksums from the hosts (DESIGN.md).
            sh('ip', 'netns', 'exec', host, 'ethtool', '-K', far, 'tx', 'off')
            sh('ip', 'link', 'set', near, 'up')
        for link in self.links:
            sh('ip', 'link', 'add', link, 'type', 'veth', 'peer', 'name', link + 'p')
            sh('ip', 'link', 'set', link, 'up')
            sh('ip', 'link', 'set', link + 'p', 'up')
        self.ovs.start()
        ovs = self.ovs
        ovs.vsctl('add-br', 'ob', '--', 'set', 'bridge', 'ob', 'datapath_type=netdev')
        ovs.vsctl('add-port', 'ob', f'{tag}h1o')
        ovs.vsctl('add-bond', 'ob', 'obond', *self.links, f'bond_mode={self.mode}',
                  f'lacp={self.lacp}', LACP_FAST)
        self.mnovs.start()
        self.pyovs_vsctl('add-br', 'pb')
        self.pyovs_vsctl('add-port', 'pb', f'{tag}h2o')
        self.pyovs_vsctl('add-bond', 'pb', 'pbond', *(link + 'p' for link in self.links),
                         f'bond_mode={self.mode}', f'lacp={self.lacp}', LACP_FAST)

    def pyovs_vsctl(self, *args):
        done = self.mnovs.vsctl(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def pyovs_appctl(self, *args):
        return sh('ovs-appctl', '--timeout=10', '-t', 'pb', *args, env=self.mnovs.env)

    def stop(self):
        self.mnovs.stop()
        self.ovs.stop()
        for host in self.hosts:
            sh('ip', 'netns', 'del', host, check=False)
        for name in self.links + [f'{self.tag}h1o', f'{self.tag}h2o']:
            sh('ip', 'link', 'del', name, check=False)

    def ns(self, host, *argv, check=True):
        return sh('ip', 'netns', 'exec', host, *argv, check=check)

    def wait(self, predicate, what, timeout=30.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f'timed out waiting for {what}')
            time.sleep(0.25)

    def lacp_members(self):
        """{member: (status line, partner sys_id)} from OVS's lacp/show."""
        text = self.ovs.appctl('lacp/show', 'obond')
        members = {}
        for block in text.split('\nmember: ')[1:]:
            name, status = block.split('\n', 1)[0].split(': ', 1)
            partner = re.search(r'partner sys_id: (\S+)', block).group(1)
            members[name] = (status, partner)
        return members

    def negotiated(self):
        """Both sides say every member is current and attached."""
        members = self.lacp_members()
        ours = self.pyovs_appctl('lacp/show', 'pbond')
        return len(members) == self.n_links and all(
            status == 'current attached' for status, _ in members.values()) \
            and ours.count('current attached') == self.n_links and ' negotiated' in ours

    def tx_packets(self):
        """Packets pyovs sent on each member (its bond's links to OVS)."""
        counts = {}
        for link in self.links:
            with open(f'/sys/class/net/{link}p/statistics/tx_packets') as f:
                counts[link + 'p'] = int(f.read())
        return counts

    def iperf3(self, seconds=5, parallel=8):
        """iperf3 -P `parallel` from h1 through both bonds to h2: the JSON report."""
        server = subprocess.Popen(['ip', 'netns', 'exec', self.hosts[1], 'iperf3', '-s', '-1'],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.wait(lambda: ':5201' in self.ns(self.hosts[1], 'ss', '-ltn'), 'iperf3 server', 10)
            out = self.ns(self.hosts[0], 'iperf3', '-c', H2, '-t', str(seconds), '-P',
                          str(parallel), '-J', check=False)
            return json.loads(out)
        finally:
            if server.poll() is None:
                server.kill()
            server.wait()


def pyovs_sys_id(rig):
    """pyovs's LACP system id: the low 48 bits of its datapath id."""
    dpid = rig.pyovs_vsctl('get', 'Bridge', 'pb', 'datapath_id').strip().strip('"')
    return ':'.join(dpid[i:i + 2] for i in range(4, 16, 2))


@pytest.fixture
def rig():
    base = tempfile.mkdtemp(prefix='mnovs-bond-')
    made = BondRig(base)
    try:
        made.start()
        yield made
    finally:
        made.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_ovs_lacp_sees_both_members_current_attached_with_pyovs_as_partner(rig):
    rig.wait(rig.negotiated, 'LACP negotiation with OVS')
    sys_id = pyovs_sys_id(rig)
    for member, (status, partner) in rig.lacp_members().items():
        assert status == 'current attached', member
        assert partner == sys_id, member
    show = rig.pyovs_appctl('lacp/show', 'pbond')
    assert 'status: active negotiated' in show
    assert show.count('current attached') == 2
    bond = rig.pyovs_appctl('bond/show', 'pbond')
    assert 'bond_mode: balance-tcp' in bond and 'lacp_status: negotiated' in bond
    assert bond.count('may_enable: true') == 2
    # The same shape as OVS's: the same lines, in the same order, with the same keys.
    assert shape(show) == shape(rig.ovs.appctl('lacp/show', 'obond'))
    assert shape(bond) == shape(rig.ovs.appctl('bond/show', 'obond'))


def shape(text):
    """Each line of an appctl text reduced to its key (what precedes ': '), names
    replaced; hash bucket loads and which member is active are left out."""
    keys = []
    for line in text.splitlines():
        if line.startswith(('  hash ', 'active member mac', '  active member')):
            continue
        member = re.match(r'(member:? )(\S+?)(:.*)', line)
        if member:
            keys.append(member.group(1) + 'NAME' + member.group(3))
        elif line.startswith('----'):
            keys.append('---- NAME ----')
        else:
            keys.append(line.split(': ')[0])
    return keys


def test_iperf3_parallel_streams_use_both_links(rig):
    rig.wait(rig.negotiated, 'LACP negotiation with OVS')
    rig.ns(rig.hosts[1], 'ping', '-c', '2', '-W', '2', H1, check=False)
    before = rig.tx_packets()
    report = rig.iperf3(seconds=4)
    after = rig.tx_packets()
    assert report['end']['sum_received']['bytes'] > 0
    sent = {link: after[link] - before[link] for link in after}
    # h2's ACKs leave pyovs on both links: 8 streams hash onto both members.
    total = sum(sent.values())
    assert all(n > total * 0.05 for n in sent.values()), sent


def test_link_down_on_one_member_keeps_the_transfer_going(rig):
    rig.wait(rig.negotiated, 'LACP negotiation with OVS')
    rig.ns(rig.hosts[1], 'ping', '-c', '2', '-W', '2', H1, check=False)
    result = {}
    transfer = threading.Thread(target=lambda: result.update(rig.iperf3(seconds=8)))
    transfer.start()
    time.sleep(2)
    sh('ip', 'link', 'set', rig.links[0], 'down')
    transfer.join(30)
    intervals = result['intervals']
    assert len(intervals) >= 7
    # Every second after the failover (give LACP and OVS 2 s) still moves data.
    late = [i['sum']['bytes'] for i in intervals[5:]]
    assert all(b > 0 for b in late), late
    bond = rig.pyovs_appctl('bond/show', 'pbond')
    assert f'member {rig.links[0]}p: disabled' in bond


@pytest.fixture
def linux_peer():
    """h1 with a Linux 802.3ad bond of two veths whose peers are a pyovs bond's members."""
    if subprocess.run(['modprobe', 'bonding'], capture_output=True).returncode:
        pytest.skip('this kernel has no bonding driver (modprobe bonding failed)')
    base = tempfile.mkdtemp(prefix='mnovs-lxbond-')
    db = MnovsDb(base)
    links = ['lxb1', 'lxb2']
    try:
        sh('ip', 'netns', 'add', 'lxh1')
        sh('ip', 'netns', 'add', 'lxh2')
        sh('ip', '-n', 'lxh1', 'link', 'add', 'bond0', 'type', 'bond', 'mode', '802.3ad',
           'lacp_rate', 'fast', 'miimon', '100')
        for link in links:
            sh('ip', 'link', 'add', link, 'type', 'veth', 'peer', 'name', link + 'h',
               'netns', 'lxh1')
            sh('ip', '-n', 'lxh1', 'link', 'set', link + 'h', 'master', 'bond0')
            sh('ip', 'link', 'set', link, 'up')
        sh('ip', 'link', 'add', 'lxh2o', 'type', 'veth', 'peer', 'name', 'eth0',
           'netns', 'lxh2')
        sh('ip', 'link', 'set', 'lxh2o', 'up')
        for host, dev, ip in (('lxh1', 'bond0', H1), ('lxh2', 'eth0', H2)):
            sh('ip', '-n', host, 'addr', 'add', f'{ip}/24', 'dev', dev)
            sh('ip', '-n', host, 'link', 'set', dev, 'up')
        db.start()
        for args in (('add-br', 'lx'), ('add-port', 'lx', 'lxh2o'),
                     ('add-bond', 'lx', 'lxbond', *links, 'bond_mode=balance-tcp',
                      'lacp=active', LACP_FAST)):
            done = db.vsctl(*args)
            assert done.returncode == 0, done.stderr
        yield db
    finally:
        db.stop()
        for ns in ('lxh1', 'lxh2'):
            sh('ip', 'netns', 'del', ns, check=False)
        for link in links + ['lxh2o']:
            sh('ip', 'link', 'del', link, check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_linux_8023ad_bond_as_peer(linux_peer):
    def linux_state():
        return sh('ip', 'netns', 'exec', 'lxh1', 'cat', '/proc/net/bonding/bond0')

    def settled():
        ours = sh('ovs-appctl', '-t', 'lx', 'lacp/show', 'lxbond', env=linux_peer.env)
        return ours.count('current attached') == 2 and ' negotiated' in ours
    deadline = time.monotonic() + 30
    while not settled():
        assert time.monotonic() < deadline, linux_state()
        time.sleep(0.5)
    dpid = linux_peer.get('Bridge', 'lx', 'datapath_id').strip('"')
    sys_id = ':'.join(dpid[i:i + 2] for i in range(4, 16, 2))
    state = linux_state()
    assert f'Partner Mac Address: {sys_id}' in state, state
    aggregators = re.findall(r'Aggregator ID: (\d+)', state)
    assert len(set(aggregators[1:])) == 1, state       # both slaves in the active aggregator
    assert subprocess.run(['ip', 'netns', 'exec', 'lxh1', 'ping', '-c', '3', '-W', '2', H2],
                          capture_output=True).returncode == 0
