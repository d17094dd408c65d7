"""Bad input from outside: random and truncated frames, bad options (bad commands: test_appctl)."""

import subprocess
import sys

import pytest
from mininet.topo import LinearTopo, SingleSwitchTopo

from mnovs.switch import PyOVSSwitch

PING_OK = ' 0% packet loss'

# Sent from h1 by scapy: random bytes, headers cut at every length, fuzzed
# fields, and frames whose length fields lie. Sources are drawn from a small
# set of MACs so the MAC table does not churn.
FUZZ_SCRIPT = '''
import random
from scapy.all import (Ether, Dot1Q, IP, IPv6, TCP, UDP, ICMP, ARP, IPv6ExtHdrFragment,
                       ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, fuzz, raw, sendp)
rng = random.Random(1)
srcs = ['02:00:00:00:00:%02x' % i for i in range(1, 9)]
E = dict(src='02:00:00:00:00:01', dst='00:00:00:00:00:02')
templates = [
    Ether(**E) / IP(dst='10.0.0.2') / TCP(), Ether(**E) / IP(dst='10.0.0.2') / UDP(),
    Ether(**E) / IP(dst='10.0.0.2') / ICMP(), Ether(**E) / Dot1Q(vlan=5) / IP() / TCP(),
    Ether(**E) / ARP(pdst='10.0.0.2'), Ether(**E) / IPv6() / IPv6ExtHdrFragment() / UDP(),
    Ether(**E) / IPv6() / ICMPv6ND_NS(tgt='fe80::1') / ICMPv6NDOptSrcLLAddr(),
    Ether(type=0x8847, **E) / b'\\x00\\x01\\x01\\x40',
]
frames = []
for _ in range(300):
    frames.append(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 120))))
for t in templates:
    whole = raw(t)
    frames += [whole[:n] for n in range(1, len(whole))]
    for _ in range(40):
        frames.append(raw(fuzz(t)))
out = []
for f in frames:
    f = bytearray(f)
    if len(f) >= 12:
        f[0:6] = bytes.fromhex('000000000002')
        f[6:12] = bytes.fromhex(rng.choice(srcs).replace(':', ''))
    out.append(bytes(f))
sendp(out, iface='h1-eth0', verbose=False)
print('sent', len(out))
'''


def malformed_total(switch):
    for line in switch.dpctl('dpctl/show').splitlines():
        line = line.strip()
        if line.startswith('malformed:'):
            return sum(int(w.split(':')[1]) for w in line.split()[1:] if ':' in w)
    raise AssertionError('no malformed line')


def test_random_and_truncated_frames_then_still_forwards(make_net, tmp_path):
    net = make_net(SingleSwitchTopo(2))
    h1, h2, s1 = net.get('h1', 'h2', 's1')
    assert net.ping([h1, h2]) == 0
    script = tmp_path / 'fuzz.py'
    script.write_text(FUZZ_SCRIPT)
    out = h1.cmd(sys.executable, str(script))
    assert 'sent' in out, out
    assert s1.ready(), 'vswitchd died'
    assert malformed_total(s1) > 0
    assert PING_OK in h1.cmd(f'ping -c 3 -W 1 {h2.IP()}')


def test_linear_50_starts_pings_and_stops(make_net):
    net = make_net(LinearTopo(k=50, n=1))
    assert all(s.ready() for s in net.switches)
    h1, h50 = net.get('h1', 'h50')
    assert net.ping([h1, h50], timeout='2') == 0
    assert net.pingAll(timeout='2') == 0


def test_bad_switch_options_are_one_line_errors():
    with pytest.raises(ValueError, match='failMode must be secure or standalone'):
        PyOVSSwitch('s9', failMode='open')
    with pytest.raises(ValueError, match='OpenFlow13 only'):
        PyOVSSwitch('s9', protocols='OpenFlow10')


def run_vswitchd(*args):
    return subprocess.run([sys.executable, '-m', 'mnovs.vswitchd', *args],
                          capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize('args, message', [
    (['--name', 'x9', '--fail-mode', 'open'], "invalid choice: 'open'"),
    (['--name', 'x9', '--port', 'eth=abc'], 'bad port number'),
    (['--name', 'x9', '--flow-limit', '-3'], 'must be positive'),
    (['--name', 'x9', '--port', 'no-such-if0'], 'No such device'),
])
def test_bad_vswitchd_options_are_one_line_errors(args, message):
    done = run_vswitchd(*args)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr

