"""VXLAN tunnel ports against real peers: a Linux vxlan device, and OVS userspace.

The Linux peer:

    vxt-h1 (ns)                  root namespace                    vxt-peer (ns)
    192.168.250.1 ── vxt-s1 ─ pyovs bridge vxb ─ vx1 (vxlan, key 42)
                                               UDP 4789 │
                                    vxt-u0 172.31.250.1 ═══ vxt-u1 172.31.250.2
                                                          vxt-l42: vxlan id 42 192.168.250.2
                                                          vxt-l43: vxlan id 43 192.168.251.2

The underlay veth has MTU 1600, so a 1500-byte inner frame fits under DF
(inner MTU + 50). The switch is configured with the real ovs-vsctl, as a
user would, through a private mnovs database (mnovs_db.MnovsDb); it
forwards with NORMAL (standalone) unless a test gives it OpenFlow flows.

The OVS userspace peer (bottom of this file) runs its own ovsdb-server and
ovs-vswitchd inside namespace vxo-ovs, with a private run directory: OVS's
native tunneling routes by the kernel routes of its namespace, and in the
root namespace, beside pyovs, the `local` route of pyovs's underlay address
outranks any route OVS is given (ovs/route/add), so OVS's tunnel lookup
toward pyovs ends at a kernel device instead of an OVS bridge ("native
tunnel routing failed"). In its own namespace OVS is as on another host:

    vxo-h1 (ns) ─ vxo-s1 ─ pyovs vxo ─ vxot (vxlan 42) ── vxo-u0 172.31.251.1
                                                            ║
    vxo-h2 (ns) ─ vxo-s2 ─ OVS ovxo (netdev) ─ vxo-t ── ovxu 172.31.251.2 (vxo-ovs ns)
    (UDP port 4790 on both sides)

OVS userspace reads its veths without vnet headers, so it cannot take
what a veth passes on unfinished: TSO frames from its host, and pyovs's
UDP_SEGMENT batches (one GSO skb with a partial checksum, see dp/vxlan.py)
from the underlay. So, as DESIGN.md says for its hosts, `ethtool -K tx off`
on OVS's host and on the underlay veth toward OVS (the kernel then cuts
and sums the batches before the veth).

Everything runs under the shared lock (see the helper notes), and every
namespace, link and process made here is removed at the end.
"""

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from mnovs_db import MnovsDb

if os.geteuid() != 0:
    pytest.skip('needs root (namespaces, veths)', allow_module_level=True)
pytestmark = pytest.mark.integration

H1, PEER = 'vxt-h1', 'vxt-peer'
UNDERLAY_LOCAL, UNDERLAY_PEER = '172.31.250.1', '172.31.250.2'
H1_IP, PEER_IP, PEER43_IP = '192.168.250.1', '192.168.250.2', '192.168.251.2'
BRIDGE = 'vxb'


def sh(*argv, check=True, timeout=60, **kw):
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout,
                          **kw)


def in_ns(ns, *argv, **kw):
    return sh('ip', 'netns', 'exec', ns, *argv, **kw)


@pytest.fixture(scope='module')
def underlay():
    """The namespaces, the underlay veth and the Linux vxlan peers (ids 42 and 43)."""
    cleanup()
    try:
        for ns in (H1, PEER):
            sh('ip', 'netns', 'add', ns)
            sh('ip', '-n', ns, 'link', 'set', 'lo', 'up')
        sh('ip', 'link', 'add', 'vxt-u0', 'mtu', '1600', 'type', 'veth', 'peer', 'name',
           'vxt-u1', 'mtu', '1600', 'netns', PEER)
        sh('ip', 'addr', 'add', f'{UNDERLAY_LOCAL}/24', 'dev', 'vxt-u0')
        sh('ip', 'link', 'set', 'vxt-u0', 'up')
        sh('ip', '-n', PEER, 'addr', 'add', f'{UNDERLAY_PEER}/24', 'dev', 'vxt-u1')
        sh('ip', '-n', PEER, 'link', 'set', 'vxt-u1', 'up')
        for vni, ip in ((42, PEER_IP), (43, PEER43_IP)):
            dev = f'vxt-l{vni}'
            sh('ip', '-n', PEER, 'link', 'add', dev, 'type', 'vxlan', 'id', str(vni), 'remote',
               UNDERLAY_LOCAL, 'local', UNDERLAY_PEER, 'dstport', '4789', 'dev', 'vxt-u1')
            sh('ip', '-n', PEER, 'link', 'set', dev, 'mtu', '1500', 'up')
            sh('ip', '-n', PEER, 'addr', 'add', f'{ip}/24', 'dev', dev)
        sh('ip', 'link', 'add', 'vxt-s1', 'type', 'veth', 'peer', 'name', 'vxt-h', 'netns', H1)
        sh('ip', '-n', H1, 'addr', 'add', f'{H1_IP}/24', 'dev', 'vxt-h')
        sh('ip', '-n', H1, 'link', 'set', 'vxt-h', 'up')
        sh('ip', 'link', 'set', 'vxt-s1', 'up')
        yield
    finally:
        cleanup()


def cleanup():
    for ns in (H1, PEER):
        sh('ip', 'netns', 'del', ns, check=False)
    for link in ('vxt-u0', 'vxt-s1'):
        sh('ip', 'link', 'del', link, check=False)


@pytest.fixture(scope='module')
def switch(underlay, tmp_path_factory):
    """Bridge vxb: vxt-s1 and vx1 (vxlan to the Linux peer, key 42), standalone."""
    db = MnovsDb(tmp_path_factory.mktemp('vxlan'))
    try:
        db.start()
        done = db.vsctl('add-br', BRIDGE, '--', 'add-port', BRIDGE, 'vxt-s1', '--',
                        'add-port', BRIDGE, 'vx1', '--', 'set', 'interface', 'vx1',
                        'type=vxlan', f'options:remote_ip={UNDERLAY_PEER}', 'options:key=42')
        assert done.returncode == 0 and not done.stderr, done.stderr
        assert db.get('interface', 'vx1', 'error') == '[]'
        yield db
    finally:
        db.stop()


OFCTL = ('ovs-ofctl', '-O', 'OpenFlow13')


def standalone(db):
    """Fail mode standalone, no flows: NORMAL forwards (fail-open), as after add-br."""
    sh(*OFCTL, 'del-flows', BRIDGE, env=db.env)
    db.vsctl('set-fail-mode', BRIDGE, 'standalone')


def appctl(db, *args):
    done = sh('ovs-appctl', '-t', BRIDGE, *args, env=db.env)
    return done.stdout


def drops(db):
    """The datapath's drops by reason, from dpctl/show."""
    line = next(l for l in appctl(db, 'dpctl/show').splitlines() if l.strip().startswith('drops:'))
    return {k: int(v) for k, v in re.findall(r'(\S+):(\d+)', line.split(':', 1)[1])}


def ping(ns, dst, size=56, count=4):
    """Packets received of `count` (after one warm-up ping, for ARP and upcalls)."""
    in_ns(ns, 'ping', '-c', '2', '-W', '1', '-s', str(size), dst, check=False)
    done = in_ns(ns, 'ping', '-c', str(count), '-i', '0.2', '-W', '2', '-s', str(size), dst,
                 check=False)
    found = re.search(r'(\d+) received', done.stdout)
    return int(found.group(1)) if found else 0


@pytest.mark.parametrize('size', [56, 1600, 3200])
def test_overlay_ping_to_a_linux_vxlan_peer(switch, size):
    assert ping(H1, PEER_IP, size) == 4


SERVER = '''
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5001)); s.listen(1); s.settimeout(30)
print('ready', flush=True)
c, _ = s.accept(); c.settimeout(30); h = hashlib.sha256(); n = 0
while True:
    d = c.recv(1 << 16)
    if not d: break
    h.update(d); n += len(d)
print(n, h.hexdigest(), flush=True)
'''

CLIENT = '''
import os, socket, sys
data = open(sys.argv[2], 'rb').read()
c = socket.create_connection((sys.argv[1], 5001), timeout=30); c.sendall(data); c.close()
'''


def tcp_transfer(server_ns, server_ip, client_ns, tmp_path, size=8 << 20):
    """Send `size` random bytes over TCP; return (sent sha256, received (n, sha256))."""
    data = os.urandom(size)
    blob = tmp_path / 'blob'
    blob.write_bytes(data)
    server = subprocess.Popen(['ip', 'netns', 'exec', server_ns, sys.executable, '-c', SERVER,
                               server_ip], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == 'ready'
        in_ns(client_ns, sys.executable, '-c', CLIENT, server_ip, str(blob))
        out, _ = server.communicate(timeout=40)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    n, digest = out.split()
    return hashlib.sha256(data).hexdigest(), (int(n), digest), size


def test_tcp_through_the_tunnel_arrives_intact(switch, tmp_path):
    ping(H1, PEER_IP)
    sent, (n, got), size = tcp_transfer(PEER, PEER_IP, H1, tmp_path)
    assert (n, got) == (size, sent)
    # And the other way: the peer's segments come in through the tunnel.
    sent, (n, got), size = tcp_transfer(H1, H1_IP, PEER, tmp_path)
    assert (n, got) == (size, sent)


def test_tshark_sees_vxlan_vni_42_to_port_4789_with_df(switch):
    capture = subprocess.Popen(
        ['tshark', '-i', 'vxt-u0', '-a', 'duration:6', '-c', '3', '-f',
         f'udp and src host {UNDERLAY_LOCAL}', '-T', 'fields', '-e', 'vxlan.vni', '-e',
         'udp.dstport', '-e', 'ip.flags.df', '-e', 'udp.srcport'],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        time.sleep(2.5)                     # tshark needs a moment to start capturing
        ping(H1, PEER_IP, count=3)
        out, _ = capture.communicate(timeout=15)
    finally:
        if capture.poll() is None:
            capture.kill()
            capture.wait()
    rows = [line.split('\t') for line in out.splitlines() if line.strip()]
    assert rows, 'tshark saw nothing'
    for vni, dport, df, sport in rows:
        outer_df = df.split(',')[0]           # the outer IPv4 header comes first
        assert (vni, dport, outer_df in ('1', 'True', 'Set')) == ('42', '4789', True), rows
        assert 32768 <= int(sport) <= 61000


def test_a_peer_with_another_vni_is_dropped_and_counted(switch):
    before = drops(switch).get('tunnel-no-port', 0)
    in_ns(PEER, 'ping', '-c', '3', '-i', '0.2', '-W', '1', '192.168.251.1', check=False)
    after = drops(switch).get('tunnel-no-port', 0)
    assert after > before               # the ARP requests for 192.168.251.1, VNI 43
    assert ping(H1, PEER_IP) == 4       # key 42 still works


JUNK = '''
import os, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
frame = bytes(64)
junk = [b'', b'\\x08', os.urandom(7), struct.pack('!II', 0x08000000, 42 << 8) + bytes(10),
        struct.pack('!II', 0x0c000000, 42 << 8) + frame,
        struct.pack('!II', 0x08000000, 42 << 8 | 1) + frame]
for i in range(int(sys.argv[2])):
    for d in junk:
        s.sendto(d, (sys.argv[1], 4789))
    s.sendto(os.urandom(100), (sys.argv[1], 4789))
'''


def test_random_and_truncated_datagrams_are_counted_drops(switch):
    before = drops(switch)
    rounds = 50
    in_ns(PEER, sys.executable, '-c', JUNK, UNDERLAY_LOCAL, str(rounds))
    time.sleep(0.5)
    after = drops(switch)
    def grew(reason):
        return after.get(reason, 0) - before.get(reason, 0)
    assert grew('vxlan-truncated') == 4 * rounds        # empty, 1 byte, 7 bytes, short inner
    # Random 100 bytes almost always have bad flags; a lucky one is a no-port drop.
    assert grew('vxlan-bad-header') + grew('tunnel-no-port') >= 3 * rounds - 1
    assert ping(H1, PEER_IP) == 4
    assert sh('ovs-appctl', '-t', BRIDGE, 'version', env=switch.env).returncode == 0


def test_bad_options_and_a_taken_socket_are_interface_errors(switch):
    done = switch.vsctl('add-port', BRIDGE, 'vx2', '--', 'set', 'interface', 'vx2',
                        'type=vxlan', 'options:key=7')
    assert "vx2: vxlan type requires valid 'remote_ip' argument" in done.stderr
    assert switch.get('interface', 'vx2', 'error') == \
        "\"vx2: vxlan type requires valid 'remote_ip' argument\""
    # A second switch (its own vswitchd) cannot have this one's UDP port...
    done = switch.vsctl('add-br', 'vxc', '--', 'add-port', 'vxc', 'vx3', '--', 'set',
                        'interface', 'vx3', 'type=vxlan', 'options:remote_ip=172.31.250.9')
    assert 'could not bind the VXLAN socket to 0.0.0.0:4789 (Address already in use)' \
        in switch.get('interface', 'vx3', 'error')
    # ...but another dst_port is fine, and a fix of the options re-creates the port.
    switch.vsctl('set', 'interface', 'vx3', 'options:dst_port=4790')
    assert switch.get('interface', 'vx3', 'error') == '[]'
    assert switch.get('interface', 'vx3', 'ofport') != '-1'
    switch.vsctl('del-port', 'vx2', '--', 'del-br', 'vxc')
    assert ping(H1, PEER_IP) == 4


def test_openflow_flows_send_and_receive_through_the_tunnel(switch):
    ports = {name: switch.get('interface', name, 'ofport') for name in ('vxt-s1', 'vx1')}
    try:
        switch.vsctl('set-fail-mode', BRIDGE, 'secure')
        sh(*OFCTL, 'add-flow', BRIDGE,
           f'in_port={ports["vxt-s1"]},actions=output:{ports["vx1"]}', env=switch.env)
        sh(*OFCTL, 'add-flow', BRIDGE,
           f'in_port={ports["vx1"]},tun_id=42,actions=output:{ports["vxt-s1"]}', env=switch.env)
        assert ping(H1, PEER_IP, size=1600) == 4
        flows = appctl(switch, 'dpctl/dump-flows')
        assert 'set(tunnel(tun_id=0x2a,dst=172.31.250.2' in flows, flows
        assert 'tunnel(tun_id=0x2a,src=172.31.250.2,dst=172.31.250.1' in flows, flows
    finally:
        standalone(switch)


def test_set_field_tun_id_sends_that_vni(switch):
    """key=flow on our side: set_field:43->tun_id reaches the peer's id 43 device."""
    ports = {'vxt-s1': switch.get('interface', 'vxt-s1', 'ofport')}
    try:
        switch.vsctl('add-port', BRIDGE, 'vxf', '--', 'set', 'interface', 'vxf', 'type=vxlan',
                     f'options:remote_ip={UNDERLAY_PEER}', 'options:key=flow')
        ports['vxf'] = switch.get('interface', 'vxf', 'ofport')
        sh('ip', '-n', H1, 'addr', 'add', '192.168.251.1/24', 'dev', 'vxt-h')
        switch.vsctl('set-fail-mode', BRIDGE, 'secure')
        sh(*OFCTL, 'add-flow', BRIDGE, 'priority=0,actions=NORMAL', env=switch.env)
        sh(*OFCTL, 'add-flow', BRIDGE, 'priority=10,ip,nw_dst=192.168.251.2,actions='
           f'set_field:43->tun_id,output:{ports["vxf"]}', env=switch.env)
        sh(*OFCTL, 'add-flow', BRIDGE, 'priority=10,arp,arp_tpa=192.168.251.2,actions='
           f'set_field:43->tun_id,output:{ports["vxf"]}', env=switch.env)
        sh(*OFCTL, 'add-flow', BRIDGE, f'priority=10,in_port={ports["vxf"]},tun_id=43,'
           f'actions=output:{ports["vxt-s1"]}', env=switch.env)
        assert ping(H1, PEER43_IP) == 4
    finally:
        sh('ip', '-n', H1, 'addr', 'del', '192.168.251.1/24', 'dev', 'vxt-h', check=False)
        switch.vsctl('--if-exists', 'del-port', 'vxf')
        standalone(switch)


def test_normal_by_an_openflow_flow_reaches_the_peer(switch):
    """Fail mode secure with one flow actions=NORMAL: NORMAL through the tables."""
    try:
        switch.vsctl('set-fail-mode', BRIDGE, 'secure')
        sh(*OFCTL, 'add-flow', BRIDGE, 'priority=0,actions=NORMAL', env=switch.env)
        assert ping(H1, PEER_IP, size=1600) == 4
        assert 'set(tunnel(tun_id=0x2a' in appctl(switch, 'dpctl/dump-flows')
    finally:
        standalone(switch)


# --- OVS userspace as the peer ------------------------------------------------------

OVS_NS = 'vxo-ovs'
OVS_HOSTS = ('vxo-h1', 'vxo-h2')
OVS_SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema'


class PrivateOvs:
    """ovsdb-server and ovs-vswitchd (userspace datapath) in namespace OVS_NS, files in `run_dir`."""

    def __init__(self, run_dir):
        self.dir = str(run_dir)
        self.env = dict(os.environ, OVS_RUNDIR=self.dir, OVS_DBDIR=self.dir,
                        OVS_LOGDIR=self.dir)

    def run(self, *argv, check=True):
        return sh('ip', 'netns', 'exec', OVS_NS, *argv, env=self.env, check=check)

    def vsctl(self, *args):
        return self.run('ovs-vsctl', '--timeout=20', f'--db=unix:{self.dir}/db.sock', *args)

    def start(self):
        sh('ovsdb-tool', 'create', f'{self.dir}/conf.db', OVS_SCHEMA)
        self.run('ovsdb-server', f'{self.dir}/conf.db', f'--remote=punix:{self.dir}/db.sock',
                 f'--pidfile={self.dir}/ovsdb-server.pid', '--detach',
                 f'--log-file={self.dir}/ovsdb-server.log')
        self.vsctl('--no-wait', 'init')
        self.run('ovs-vswitchd', f'unix:{self.dir}/db.sock',
                 f'--pidfile={self.dir}/ovs-vswitchd.pid', '--detach',
                 f'--log-file={self.dir}/ovs-vswitchd.log')

    def stop(self):
        for name in ('ovs-vswitchd', 'ovsdb-server'):
            try:
                with open(f'{self.dir}/{name}.pid') as f:
                    os.kill(int(f.read()), signal.SIGTERM)
            except (OSError, ValueError):
                pass


def ovs_cleanup():
    for ns in (*OVS_HOSTS, OVS_NS):
        sh('ip', 'netns', 'del', ns, check=False)
    for link in ('vxo-u0', 'vxo-s1'):
        sh('ip', 'link', 'del', link, check=False)


@pytest.fixture(scope='module')
def ovs_peer(tmp_path_factory):
    """pyovs bridge vxo and an OVS userspace bridge ovxo, joined by VXLAN key 42.

    On UDP port 4790: the Linux peer's switch (module-scoped too) may still
    hold 0.0.0.0:4789, and a second switch cannot take it.
    """
    if shutil.which('ovs-vswitchd') is None:
        pytest.skip('no ovs-vswitchd')
    ovs_cleanup()
    ovs = PrivateOvs(tmp_path_factory.mktemp('ovs'))
    db = MnovsDb(tmp_path_factory.mktemp('vxo'))
    try:
        for ns in (*OVS_HOSTS, OVS_NS):
            sh('ip', 'netns', 'add', ns)
            sh('ip', '-n', ns, 'link', 'set', 'lo', 'up')
        sh('ip', 'link', 'add', 'vxo-s1', 'type', 'veth', 'peer', 'name', 'vxo-h', 'netns',
           'vxo-h1')
        sh('ip', 'link', 'set', 'vxo-s1', 'up')
        sh('ip', '-n', 'vxo-h2', 'link', 'add', 'vxo-h', 'type', 'veth', 'peer', 'name',
           'vxo-s2', 'netns', OVS_NS)
        sh('ip', '-n', OVS_NS, 'link', 'set', 'vxo-s2', 'up')
        for i, ns in enumerate(OVS_HOSTS, 1):
            sh('ip', '-n', ns, 'addr', 'add', f'192.168.252.{i}/24', 'dev', 'vxo-h')
            sh('ip', '-n', ns, 'link', 'set', 'vxo-h', 'up')
        in_ns('vxo-h2', 'ethtool', '-K', 'vxo-h', 'tx', 'off')
        sh('ip', 'link', 'add', 'vxo-u0', 'mtu', '1600', 'type', 'veth', 'peer', 'name',
           'vxo-u1', 'mtu', '1600', 'netns', OVS_NS)
        sh('ip', 'addr', 'add', '172.31.251.1/24', 'dev', 'vxo-u0')
        sh('ethtool', '-K', 'vxo-u0', 'tx', 'off')
        sh('ip', 'link', 'set', 'vxo-u0', 'up')
        sh('ip', '-n', OVS_NS, 'link', 'set', 'vxo-u1', 'up')
        ovs.start()
        ovs.vsctl('add-br', 'ovxu', '--', 'set', 'bridge', 'ovxu', 'datapath_type=netdev',
                  '--', 'add-port', 'ovxu', 'vxo-u1')
        ovs.vsctl('add-br', 'ovxo', '--', 'set', 'bridge', 'ovxo', 'datapath_type=netdev',
                  '--', 'add-port', 'ovxo', 'vxo-s2', '--', 'add-port', 'ovxo', 'vxo-t',
                  '--', 'set', 'interface', 'vxo-t', 'type=vxlan',
                  'options:remote_ip=172.31.251.1', 'options:key=42', 'options:dst_port=4790')
        sh('ip', '-n', OVS_NS, 'link', 'set', 'ovxu', 'mtu', '1600', 'up')
        sh('ip', '-n', OVS_NS, 'addr', 'add', '172.31.251.2/24', 'dev', 'ovxu')
        db.start()
        done = db.vsctl('add-br', 'vxo', '--', 'add-port', 'vxo', 'vxo-s1', '--',
                        'add-port', 'vxo', 'vxot', '--', 'set', 'interface', 'vxot',
                        'type=vxlan', 'options:remote_ip=172.31.251.2', 'options:key=42',
                        'options:dst_port=4790')
        assert done.returncode == 0 and not done.stderr, done.stderr
        yield db
    finally:
        db.stop()
        ovs.stop()
        ovs_cleanup()


@pytest.mark.parametrize('size', [56, 1600, 3200])
def test_overlay_ping_to_an_ovs_userspace_peer(ovs_peer, size):
    assert ping('vxo-h1', '192.168.252.2', size) == 4


def test_tcp_to_and_from_an_ovs_userspace_peer_arrives_intact(ovs_peer, tmp_path):
    for server, ip, client in (('vxo-h2', '192.168.252.2', 'vxo-h1'),
                               ('vxo-h1', '192.168.252.1', 'vxo-h2')):
        sent, (n, got), size = tcp_transfer(server, ip, client, tmp_path, size=4 << 20)
        assert (n, got) == (size, sent), f'{client} -> {server}'
