"""Two sites joined by VXLAN through a router (topologies/two_sites.py), per switch kind.

The same checks run on every kind of site switch, each on one network built
for the module:
- pyovs: PyOVSSwitch on both sites (standalone: NORMAL), pyovs <-> pyovs.
  Where pyovs has no type=vxlan, this kind fails at set-up with the
  switch's answer ("s1 did not open tunnel port vx1 ..."); where its
  tunnels do not carry frames, each check fails with both switches'
  `drops:` counters in its message.
- ovs-user: OVS 3.1's userspace datapath, the reference (the system's daemons,
  started with ovs-ctl if they are down and stopped again; hosts get
  `ethtool -K tx off`, as OVS userspace needs for TCP).
- linux: the Linux bridge with Linux vxlan devices, which routes the underlay
  as pyovs does (policy routing in the root namespace).

Checks: overlay ping h1 -> h3 at the default size, 1600 and 3200 bytes
(inner fragments, outer packets up to the underlay MTU); 4 MB of random bytes
over TCP arrive with the same SHA-256; tshark on the router's site-1 interface
sees VXLAN between the two VTEP addresses with VNI 42, UDP destination port
4789 (the Linux pair uses 4789 one way and 4790 the other) and DF set.
Finally, stopping a network leaves the host's policy rules and table as they
were.
"""

import hashlib
import json
import os
import select
import subprocess
import sys
import time
from functools import partial

import pytest
from mininet.node import OVSSwitch
from mininet.nodelib import LinuxBridge

from mnovs.switch import PyOVSSwitch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, 'topologies'), os.path.join(ROOT, 'experiments')]
import mnbench  # noqa: E402  (experiments/: OVS daemons, tx off, process stop)
import two_sites  # noqa: E402

pytestmark = pytest.mark.integration

KINDS = {
    'pyovs': PyOVSSwitch,
    'ovs-user': partial(OVSSwitch, datapath='user', batch=True),
    'linux': partial(LinuxBridge, stp=False),
}
VNI = 42
TRANSFER_BYTES = 4 << 20
RECEIVER = """
import hashlib, socket, sys
srv = socket.create_server(('0.0.0.0', int(sys.argv[1])))
print('listening', flush=True)
conn, _ = srv.accept()
digest, total = hashlib.sha256(), 0
while chunk := conn.recv(1 << 16):
    digest.update(chunk)
    total += len(chunk)
print(total, digest.hexdigest(), flush=True)
"""
SENDER = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30) as conn, \\
        open(sys.argv[3], 'rb') as data:
    conn.sendfile(data)
"""


def ping_ok(src, dst, size=None, count=3):
    args = ['ping', '-c', str(count), '-i', '0.2', '-W', '2', dst.IP()]
    if size:
        args[1:1] = ['-s', str(size)]
    out = src.cmd(*args)
    return ' 0% packet loss' in out, out


@pytest.fixture(scope='module', params=list(KINDS))
def sites(request):
    """A started two-site network on one kind of switch, with the sites connected."""
    kind = request.param
    before = host_routing()
    with mnbench.ovs_daemons(kind == 'ovs-user'):
        try:
            net = two_sites.build_two_sites(KINDS[kind])
        except two_sites.TunnelError as err:
            refused = str(err)      # failed outside the except block: one message, no chain
        else:
            refused = None
        if refused:
            pytest.fail(f'{kind}: the sites could not be connected: {refused}', pytrace=False)
        try:
            if kind == 'ovs-user':
                mnbench.hosts_tx_off(net.hosts)
            h1, h3 = net.get('h1', 'h3')
            # The first packets resolve ARP on both sides of the tunnel.
            deadline = time.monotonic() + 15
            while not ping_ok(h1, h3, count=1)[0] and time.monotonic() < deadline:
                pass
            yield kind, net
        finally:
            two_sites.teardown(net)
    after = host_routing()
    assert after == before, f'{kind}: stopping the sites left the host changed: {after}'


def host_routing():
    """What the sites may change on the host: policy rules, table 4789, tunnel devices."""
    def show(*args):
        return subprocess.run(args, capture_output=True, text=True, check=False).stdout
    return {'rules': show('ip', 'rule'),
            'table': show('ip', 'route', 'show', 'table', str(two_sites.ROUTE_TABLE)),
            'devices': [line for line in show('ip', '-br', 'link').splitlines()
                        if line.split('@')[0].split()[0] in ('vx1', 'vx2', 'br-vtep1',
                                                              'br-vtep2')]}


@pytest.mark.parametrize('size', [None, 1600, 3200])
def test_overlay_ping(sites, size):
    kind, net = sites
    h1, h3 = net.get('h1', 'h3')
    ok, out = ping_ok(h1, h3, size)
    assert ok, f'{kind}: ping -s {size or 56} h1 -> h3 across the tunnel:\n{out}{drops(kind, net)}'


def drops(kind, net):
    """pyovs: the `drops:` lines of both switches' dpctl/show, to say where frames died."""
    if kind != 'pyovs':
        return ''
    return ''.join(f'\n{switch.name} {line.strip()}' for switch in net.get('s1', 's2')
                   for line in switch.dpctl('dpctl/show').splitlines()
                   if line.strip().startswith('drops:'))


def test_tcp_transfer_arrives_intact(sites, tmp_path):
    kind, net = sites
    h1, h3 = net.get('h1', 'h3')
    data = os.urandom(TRANSFER_BYTES)
    path = tmp_path / 'payload'
    path.write_bytes(data)
    receiver = h3.popen([sys.executable, '-c', RECEIVER, '5001'], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout.readline().strip() == 'listening'
        sender = h1.popen([sys.executable, '-c', SENDER, h3.IP(), '5001', str(path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _, sent_err = sender.communicate(timeout=60)
            received, _ = receiver.communicate(timeout=30)
        finally:
            mnbench.stop_process(sender)
    finally:
        mnbench.stop_process(receiver)
    assert sender.returncode == 0, f'{kind}: sender failed: {sent_err}{drops(kind, net)}'
    assert received.split() == [str(TRANSFER_BYTES), hashlib.sha256(data).hexdigest()], \
        f'{kind}: h3 received {received!r}'


def wait_for_text(stream, text, timeout):
    """Read stream (binary) until text appears or timeout passes; return what was read."""
    seen = b''
    deadline = time.monotonic() + timeout
    while text.encode() not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(stream.fileno(), 4096) if ready else b''
        if ready and not chunk:
            break
        seen += chunk
    return seen.decode(errors='replace')


def capture_underlay(router, intf, action, packets=6):
    """tshark on router's intf while action() runs: one dict of VXLAN fields per packet."""
    fields = ['ip.src', 'ip.dst', 'udp.dstport', 'vxlan.vni', 'ip.flags.df']
    args = ['tshark', '-i', intf, '-l', '-n', '-f', 'ip and udp', '-c', str(packets),
            '-a', 'duration:20', '-d', 'udp.port==4790,vxlan', '-T', 'fields',
            '-E', 'occurrence=f']             # the outer header's fields
    for field in fields:
        args += ['-e', field]
    tshark = router.popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        started = wait_for_text(tshark.stderr, 'Capturing on', timeout=15)
        assert 'Capturing on' in started, f'tshark did not start: {started}'
        action()
        out, err = tshark.communicate(timeout=30)
    finally:
        mnbench.stop_process(tshark)
    rows = [dict(zip(fields, line.split('\t'))) for line in out.decode().splitlines() if line]
    return rows, started + err.decode(errors='replace')


def test_underlay_carries_vxlan(sites):
    kind, net = sites
    h1, h3, r0 = net.get('h1', 'h3', 'r0')
    ports = {vtep.local_ip: str(vtep.listen_port) for vtep in two_sites.vteps(net)}
    rows, log = capture_underlay(
        r0, 'r0-eth1', lambda: h1.cmd('ping', '-c', '3', '-i', '0.2', '-s', '1400', h3.IP()))
    assert rows, f'{kind}: tshark saw no UDP on r0-eth1: {log}{drops(kind, net)}'
    for row in rows:
        assert {row['ip.src'], row['ip.dst']} == set(ports), f'{kind}: {row}'
        assert row['udp.dstport'] == ports[row['ip.dst']], f'{kind}: {row}'
        assert row['vxlan.vni'] == str(VNI), f'{kind}: {row}'
        assert row['ip.flags.df'] in ('1', 'True'), f'{kind}: DF not set: {row}'


def test_cleanup_undoes_only_what_dead_runs_journaled():
    """cleanup() replays the journal of a run whose process is gone, never a live one's."""
    dead = subprocess.Popen(['true'])
    dead.wait()
    links = {'tsjdead0': dead.pid, 'tsjlive0': 1}         # pid 1 is always alive
    os.makedirs(two_sites.JOURNAL_DIR, exist_ok=True)
    journals = []
    try:
        for link, pid in links.items():
            subprocess.run(['ip', 'link', 'add', link, 'type', 'veth', 'peer', 'name', link + 'p'],
                           check=True)
            path = os.path.join(two_sites.JOURNAL_DIR, f'{pid}-vtep-{link}.json')
            with open(path, 'w') as f:
                json.dump([[['ip', 'link', 'del', link], None]], f)
            journals.append(path)
        two_sites.cleanup()
        assert not os.path.exists('/sys/class/net/tsjdead0')
        assert not os.path.exists(journals[0])
        assert os.path.exists('/sys/class/net/tsjlive0') and os.path.exists(journals[1])
    finally:
        for link in links:
            subprocess.run(['ip', 'link', 'del', link], capture_output=True, check=False)
        for path in journals:
            if os.path.exists(path):
                os.unlink(path)
