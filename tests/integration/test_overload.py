"""pyovs under overload (issue 7): no port wedges, floods and rule swaps leave every port working.

The wedge. A port receives through a TPACKET_V2 ring with PACKET_VNET_HDR. The
kernel's tpacket_rcv marks the head slot as being filled (rx_owner_map) before
it writes the frame's virtio_net_hdr; when it cannot describe the skb's GSO
type (anything but TCPV4, TCPV6 and UDP_L4, e.g. legacy UFO, SKB_GSO_UDP) it
drops the frame and leaves the mark set. Every later frame then finds the head
slot marked and is dropped: the ring stays empty and the port is dead until
the ring is freed and set up again.

The trigger here delivers one such skb to a switch port's receive path: a tap
device takes a write with a UFO virtio_net_hdr as an SKB_GSO_UDP skb, and a tc
mirred ingress redirect hands it to the port (a veth would segment it on
transmit: it has no UFO feature).

The soak tests run floods, bursts of new flows and rule swaps at once, with a
client holding the control socket open without sending anything, then check
that every port forwards, the vswitchd is the same process, the control socket
still answers and every drop has a named reason. Nothing here asserts a time.
"""

import fcntl
import os
import re
import socket
import struct
import subprocess
import sys
import time

import pytest
from mininet.topo import SingleSwitchTopo

from mnovs import paths, process

PING_OK = ' 0% packet loss'
LISTEN_PORT = 16654               # make_net's passive OpenFlow port of s1
FLOOD_SECONDS = 15

# --- the wedge trigger ------------------------------------------------------

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000
VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_GSO_UDP = 3       # legacy UFO: the kernel's packet socket cannot report it


def ufo_frame():
    """vnet header + a 3 KB IPv4/UDP datagram to cut into 1000-byte pieces (UFO).

    Addressed to MACs and IPs no host has, so nothing answers it.
    """
    udp_payload = bytes(2992)
    udp = struct.pack('!HHHH', 40000, 9, 8 + len(udp_payload), 0) + udp_payload
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     socket.inet_aton('10.255.0.1'), socket.inet_aton('10.255.0.2'))
    eth = bytes.fromhex('020000007702' '020000007701' '0800')
    vnet = struct.pack('<BBHHHH', VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP,
                       len(eth) + 28, 1000, len(eth) + 20, 6)
    return vnet + eth + ip + udp


@pytest.fixture
def inject_ufo():
    """inject_ufo(ifname): hand one SKB_GSO_UDP skb to ifname's receive path."""
    taps = []

    def inject(ifname):
        name = f'wdg{os.getpid() % 100000}t{len(taps)}'
        fd = os.open('/dev/net/tun', os.O_RDWR)
        taps.append((name, fd))
        fcntl.ioctl(fd, TUNSETIFF, struct.pack('16sH', name.encode(),
                                               IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
        for cmd in (['ip', 'link', 'set', name, 'up'],
                    ['tc', 'qdisc', 'add', 'dev', name, 'ingress'],
                    ['tc', 'filter', 'add', 'dev', name, 'ingress', 'protocol', 'all', 'u32',
                     'match', 'u32', '0', '0', 'action', 'mirred', 'ingress', 'redirect',
                     'dev', ifname]):
            subprocess.run(cmd, check=True, capture_output=True)
        os.write(fd, ufo_frame())

    yield inject
    for name, fd in taps:
        os.close(fd)                # a tap that is not persistent goes with its last fd
        subprocess.run(['ip', 'link', 'del', name], check=False, capture_output=True)


# --- helpers ----------------------------------------------------------------

def ofctl(*args, stdin=None):
    """ovs-ofctl -O OpenFlow13 CMD tcp:127.0.0.1:LISTEN_PORT ARGS; return stdout."""
    done = subprocess.run(['ovs-ofctl', '-O', 'OpenFlow13', args[0],
                           f'tcp:127.0.0.1:{LISTEN_PORT}', *args[1:]],
                          input=stdin, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def add_flows(lines):
    ofctl('add-flows', '-', stdin='\n'.join(lines) + '\n')


def forwards(src, dst, attempts=10):
    """True once a ping src -> dst gets through (one ping a try, up to `attempts`)."""
    for _ in range(attempts):
        if PING_OK in src.cmd(f'ping -c 1 -W 1 {dst.IP()}'):
            return True
    return False


def counters_line(show, label):
    """The name:count pairs of one `label:` line of dpctl/show, as a dict."""
    match = re.search(rf'^\s*{label}:(.*)$', show, re.M)
    assert match, f'no {label} line in dpctl/show:\n{show}'
    return {name: int(n) for name, n in re.findall(r'([\w-]+):(\d+)', match.group(1))}


def ctl_socket_path(switch):
    """The switch's control socket: <run>/NAME.ctl, or OVS's <run>/NAME.PID.ctl.

    Another switch of the same name elsewhere on the machine may have a socket
    in the same directory: the one with this switch's pid wins.
    """
    pattern = re.compile(rf'{re.escape(switch.name)}(\.\d+)?\.ctl')
    found = [entry for entry in os.listdir(paths.RUN_DIR) if pattern.fullmatch(entry)]
    mine = [entry for entry in found if entry == f'{switch.name}.{switch.pid_vswitchd}.ctl']
    assert len(mine or found) == 1, f'control socket of {switch.name}: {found}'
    return os.path.join(paths.RUN_DIR, (mine or found)[0])


@pytest.fixture
def idle_ctl_client():
    """idle_ctl_client(switch) -> a unix socket connected to its control socket, silent."""
    clients = []

    def connect(switch):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        clients.append(sock)
        sock.connect(ctl_socket_path(switch))
        return sock

    yield connect
    for sock in clients:
        sock.close()


def still_connected(sock):
    """True if the server has not closed (or reset) the connection."""
    try:
        return sock.recv(1, socket.MSG_DONTWAIT) != b''
    except BlockingIOError:
        return True
    except OSError:
        return False


def start_udp_floods(pairs, seconds=FLOOD_SECONDS):
    """iperf3 -u -b 0 -l 64 for each (client, server) at once; return the processes."""
    procs = []
    for client, server in pairs:
        procs.append(server.popen(['iperf3', '-s', '-1']))
    for client, server in pairs:
        for _ in range(50):
            if ':5201' in server.cmd('ss -ltn'):
                break
            time.sleep(0.1)
    for client, server in pairs:
        procs.append(client.popen(['iperf3', '-c', server.IP(), '-u', '-b', '0', '-l', '64',
                                   '-t', str(seconds)]))
    return procs


def stop_all(procs, timeout=FLOOD_SECONDS + 30):
    """Wait for each process to end (kill it past the timeout)."""
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# A sender of new flows, run in a host: COUNT IPv4/UDP frames to DST_MAC/DST_IP, each
# from a new source MAC and UDP port, in bursts of 500 with a short pause.
NEW_FLOWS_SENDER = '''
import socket, struct, sys, time
intf, dst_mac, src_ip, dst_ip, count = sys.argv[1:6]
eth_dst = bytes.fromhex(dst_mac.replace(":", ""))
src, dst = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
    sock.bind((intf, 0))
    for n in range(int(count)):
        udp = struct.pack("!HHHH", 1024 + n % 60000, 9, 26, 0) + bytes(18)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n & 0xFFFF, 0, 64, 17, 0,
                         src, dst)
        frame = eth_dst + b"\\x02\\x5e" + n.to_bytes(4, "big") + b"\\x08\\x00" + ip + udp
        try:
            sock.send(frame)
        except OSError:
            pass
        if n % 500 == 499:
            time.sleep(0.5)
'''


def start_new_flows(src, dst, count=4000):
    return src.popen([sys.executable, '-c', NEW_FLOWS_SENDER, src.defaultIntf().name,
                      dst.MAC(), src.IP(), dst.IP(), str(count)])


def assert_survived(net, switch, pid, idle_client):
    """After the soak: same vswitchd, every port forwards, control answers, drops named."""
    assert process.is_alive(pid) and switch.pid_vswitchd == pid, 'vswitchd restarted or died'
    show = switch.dpctl('dpctl/show')     # answered while the idle client holds its connection
    print(f'{switch.name} after the soak:\n{show}')     # the counters, for `pytest -s`
    assert 'lookups:' in show, show
    assert still_connected(idle_client), 'the control socket dropped the idle client'
    # A second try only forgives ARP entries that went stale during the floods.
    assert any(net.pingAll() == 0 for _ in range(2)), 'a port no longer forwards'
    named = counters_line(show, 'drops')
    assert all(re.fullmatch(r'[a-z][a-z0-9-]*', name) for name in named), named
    port_drops = sum(int(n) for line in show.splitlines() if 'RX packets:' in line
                     for n in re.findall(r'dropped:(\d+)', line))
    assert port_drops <= sum(named.values()), f'drops without a reason:\n{show}'


# --- tests ------------------------------------------------------------------

def test_port_recovers_from_a_frame_its_ring_cannot_take(make_net, inject_ufo):
    net = make_net(SingleSwitchTopo(2))
    s1, h1, h2 = net.get('s1', 'h1', 'h2')
    assert forwards(h1, h2)
    inject_ufo('s1-eth1')
    # Without recovery every later frame on port 1 is dropped by the kernel, for good.
    assert forwards(h1, h2), f"port 1 wedged:\n{s1.dpctl('dpctl/show')}"
    assert forwards(h2, h1)
    recoveries = counters_line(s1.dpctl('dpctl/show'), 'recoveries')
    assert recoveries.get('rx-ring-reset', 0) >= 1, recoveries


def issue_pipeline(n_rules):
    """The 4-table pipeline of issue 7, plus rules that never match, n_rules in all.

    The 8 rules that forward: in_port -> table 1; ip, and arp at a lower
    priority -> table 2; nw_dst=10.0.0.0/24, and a catch-all below it ->
    table 3; in_port=1 -> output:2 and in_port=2 -> output:1. The others match
    nw_src in 172.16-19.0.0/16 with 8 prefix lengths per table, above them.
    """
    rules = ['table=0,priority=100,in_port=1,actions=goto_table:1',
             'table=0,priority=100,in_port=2,actions=goto_table:1',
             'table=1,priority=100,ip,actions=goto_table:2',
             'table=1,priority=50,arp,actions=goto_table:2',
             'table=2,priority=100,ip,nw_dst=10.0.0.0/24,actions=goto_table:3',
             'table=2,priority=1,actions=goto_table:3',
             'table=3,priority=100,in_port=1,actions=output:2',
             'table=3,priority=100,in_port=2,actions=output:1']
    for n in range(n_rules - len(rules)):
        table, k = n % 4, n // 4
        rules.append(f'table={table},priority=200,ip,nw_src=172.{16 + table}.{k % 256}.'
                     f'{k // 256 * 128}/{25 + k % 8},actions=drop')
    return rules


@pytest.mark.parametrize('harsh', [False, True], ids=['as-reported', 'with-unreportable-frames'])
def test_wedge_loop_every_port_forwards_after_every_round(make_net, iperf3, inject_ufo, harsh):
    # The issue's loop: replace the rules, ping, flood port 1 with small UDP. The
    # harsher one also hands one frame the ring cannot take to port 1 or 2 each step.
    net = make_net(SingleSwitchTopo(2), fail_mode='secure')
    s1, h1, h2 = net.get('s1', 'h1', 'h2')
    for round_no in range(1, 4):
        for port_no, n_rules in ((1, 10), (2, 1000)):
            ofctl('del-flows')
            add_flows(issue_pipeline(n_rules))
            h1.cmd(f'ping -c 3 -i 0.2 {h2.IP()}')
            iperf3(h1, h2, seconds=2, extra='-u -b 0 -l 64')
            if harsh:
                inject_ufo(f's1-eth{port_no}')
            where = f'round {round_no}, {n_rules} rules'
            assert forwards(h1, h2), f"{where}: h1 -> h2 lost\n{s1.dpctl('dpctl/show')}"
            assert forwards(h2, h1), f"{where}: h2 -> h1 lost\n{s1.dpctl('dpctl/show')}"


def test_soak_reactive_controller(make_net, ryu, idle_ctl_client, dp_counters):
    # Floods on two ports, bursts of new flows through Ryu, a silent control client.
    net = make_net(SingleSwitchTopo(4), fail_mode='secure',
                   controller=ryu('ryu.app.simple_switch_13'))
    s1 = net.get('s1')
    h1, h2, h3, h4 = net.get('h1', 'h2', 'h3', 'h4')
    assert forwards(h1, h2) and forwards(h3, h4)     # Ryu learns the hosts
    pid = s1.pid_vswitchd
    missed = dp_counters(s1)['missed']
    idle = idle_ctl_client(s1)
    procs = start_udp_floods([(h1, h2), (h3, h4)])
    procs.append(start_new_flows(h1, h2))
    procs.append(start_new_flows(h3, h4))
    stop_all(procs)
    assert dp_counters(s1)['missed'] > missed + 100, 'the new flows never reached the switch'
    assert_survived(net, s1, pid, idle)


def swap_rules(step):
    """Rule set number `step`: explicit port pairs or NORMAL, each with decoys."""
    if step % 2:
        rules = [f'priority=100,in_port={a},actions=output:{b}'
                 for a, b in ((1, 2), (2, 1), (3, 4), (4, 3))]
        rules += [f'priority=200,ip,nw_src=172.16.{n % 256}.{n // 256}/32,actions=drop'
                  for n in range(300)]
    else:
        rules = [f'priority=200,udp,tp_dst={30000 + n},actions=drop' for n in range(300)]
    return rules + ['priority=0,actions=NORMAL']


def test_soak_rule_swaps_under_floods(make_net, idle_ctl_client):
    # Floods on two ports and new flows (MAC learning) while ovs-ofctl swaps the rules.
    net = make_net(SingleSwitchTopo(4), fail_mode='standalone')
    s1 = net.get('s1')
    h1, h2, h3, h4 = net.get('h1', 'h2', 'h3', 'h4')
    assert forwards(h1, h2) and forwards(h3, h4)
    pid = s1.pid_vswitchd
    idle = idle_ctl_client(s1)
    procs = start_udp_floods([(h1, h2), (h3, h4)])
    procs.append(start_new_flows(h1, h2))
    step = 0
    while any(proc.poll() is None for proc in procs):
        step += 1
        ofctl('del-flows')
        add_flows(swap_rules(step))
    stop_all(procs)
    assert step >= 2, 'the rules were never swapped while traffic ran'
    add_flows(swap_rules(step + 1))
    assert_survived(net, s1, pid, idle)
