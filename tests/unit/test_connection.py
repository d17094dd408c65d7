"""OpenFlow channels (connection.py) on real sockets and a real selector.

socketpair() and loopback TCP stand in for the controller; a test drives
the selector as the vswitchd's loop does (`pump`). Covered: framing of the
byte stream, send buffering and write interest, the active target's
reconnect backoff, the passive listener, and the agent's inactivity probe.
"""

import selectors
import os
import socket
import time

import pytest

from mnovs.openflow import codec

from mnovs.ofagent import connection
from mnovs.openflow.codec import EchoReply, EchoRequest, Hello
from mnovs.ofagent.connection import ActiveTarget, Channel, PassiveListener
from mnovs.openflow.ofp import OFP_HEADER
from mnovs.ofagent.ofproto import PROBE_INTERVAL, OFProto

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class CountingSelector(selectors.DefaultSelector):
    """A real selector that counts modify() calls (epoll_ctl system calls)."""

    n_modify = 0

    def modify(self, fileobj, events, data=None):
        self.n_modify += 1
        return super().modify(fileobj, events, data)


@pytest.fixture
def selector():
    sel = CountingSelector()
    yield sel
    sel.close()


def pump(selector, until=None, timeout=2.0):
    """Run the selector's callbacks as the vswitchd loop does: one round, or
    rounds until `until()` is true (at most `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        registered = selector.get_map()
        for key, events in selector.select(0.02):
            if registered.get(key.fd) is key:
                key.data(events)
        if until is None or until() or time.monotonic() > deadline:
            return


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def listening_socket():
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    sock.listen(4)
    return sock, sock.getsockname()[1]


def recv_messages(sock, n, timeout=2.0):
    """Read until n whole OpenFlow messages arrived; return them decoded."""
    sock.settimeout(timeout)
    buf = b''
    while True:
        raws, _ = codec.split_messages(buf)
        if len(raws) >= n:
            return [codec.decode(raw) for raw in raws]
        data = sock.recv(65536)
        assert data, 'peer closed'
        buf += data


@pytest.fixture
def pair(selector):
    """A Channel on one end of a socketpair; the test holds the other end."""
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    got, closed = [], []
    channel = Channel(ours, 'pair', selector, lambda ch, raw: got.append(raw), closed.append)
    yield channel, peer, got, closed
    channel.close()
    peer.close()


# --- framing ---------------------------------------------------------------------

def test_messages_split_across_reads_and_several_in_one(selector, pair):
    channel, peer, got, _ = pair
    m1, m2, m3 = (codec.encode(EchoRequest(bytes([n]) * 100, xid=n)) for n in (1, 2, 3))
    peer.sendall(m1[:5])
    pump(selector)
    assert got == []
    peer.sendall(m1[5:50])
    pump(selector)
    assert got == []
    peer.sendall(m1[50:] + m2 + m3[:10])
    pump(selector, until=lambda: len(got) == 2)
    assert got == [m1, m2]
    peer.sendall(m3[10:])
    pump(selector, until=lambda: len(got) == 3)
    assert got == [m1, m2, m3]


def test_a_burst_of_messages_is_handled_in_batches(selector, pair):
    # 120 messages in one read: 50 now, the rest when the agent asks again.
    channel, peer, got, _ = pair
    peer.sendall(b''.join(codec.encode(EchoRequest(xid=n)) for n in range(120)))
    pump(selector, until=lambda: got)
    assert len(got) == connection.MESSAGES_PER_TURN and channel.backlogged()
    channel.process_messages()
    channel.process_messages()
    assert len(got) == 120 and not channel.backlogged()
    assert [codec.decode(raw).xid for raw in got] == list(range(120))


def test_a_length_below_8_closes_the_connection(selector, pair):
    channel, peer, got, closed = pair
    good = codec.encode(EchoRequest(xid=1))
    peer.sendall(good + OFP_HEADER.pack(4, 2, 4, 9) + good)
    pump(selector, until=lambda: closed)
    assert got == [good] and closed == [channel] and channel.closed
    assert channel.sock.fileno() == -1 and not selector.get_map()
    peer.settimeout(1)
    assert peer.recv(100) == b''


def test_a_message_that_closes_the_channel_stops_delivery(selector, pair):
    channel, peer, got, closed = pair
    channel.on_message = lambda ch, raw: (got.append(raw), ch.close())
    peer.sendall(codec.encode(EchoRequest(xid=1)) * 3)
    pump(selector, until=lambda: closed)
    assert len(got) == 1


def test_peer_close_closes_the_channel(selector, pair):
    channel, peer, _, closed = pair
    peer.close()
    pump(selector, until=lambda: closed)
    assert closed == [channel]
    channel.send(b'late')                           # ignored, no error
    channel.close()                                 # twice: on_close runs once
    assert closed == [channel]


def test_receiving_updates_liveness(selector, pair):
    channel, peer, _, _ = pair
    channel.last_rx, channel.probe_sent = 0.0, True
    peer.sendall(codec.encode(EchoReply()))
    pump(selector, until=lambda: channel.last_rx)
    assert channel.last_rx > 0 and not channel.probe_sent


# --- sending ---------------------------------------------------------------------

def test_small_sends_go_out_at_once_without_selector_calls(selector, pair):
    channel, peer, _, _ = pair
    for xid in range(50):
        channel.send(codec.encode(EchoReply(xid=xid)))
    assert not channel.tx and selector.n_modify == 0
    assert [m.xid for m in recv_messages(peer, 50)] == list(range(50))


def test_send_buffer_and_write_interest(selector, pair):
    channel, peer, _, _ = pair
    channel.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    message = codec.encode(EchoReply(bytes(60000)))
    for _ in range(40):
        channel.send(message)
    assert channel.tx                                # the kernel took only part
    assert selector.get_key(channel.sock).events == READ | WRITE
    received = bytearray()
    peer.settimeout(2)
    while len(received) < 40 * len(message):
        received += peer.recv(1 << 20)
        pump(selector)
    assert received == message * 40
    assert not channel.tx and selector.get_key(channel.sock).events == READ


def test_a_controller_too_far_behind_is_dropped(selector, pair, monkeypatch):
    channel, peer, _, closed = pair
    monkeypatch.setattr(connection, 'MAX_SEND_BUFFER', 1 << 20)
    channel.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    message = codec.encode(EchoReply(bytes(60000)))
    for _ in range(40):
        channel.send(message)
    assert closed == [channel]


def test_backlog_counts_the_bytes_the_kernel_has_not_taken(selector, pair):
    channel, peer, _, _ = pair
    small = codec.encode(EchoReply())
    assert channel.backlog() == 0
    channel.send(small)
    assert channel.backlog() == 0                    # a keeping-up peer: nothing waits
    channel.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    message = codec.encode(EchoReply(bytes(60000)))
    for _ in range(10):
        channel.send(message)
    waiting = channel.backlog()
    assert 0 < waiting < 10 * len(message)
    channel.send(message)
    assert channel.backlog() == waiting + len(message)
    peer.settimeout(2)
    received = 0
    while received < len(small) + 11 * len(message):
        received += len(peer.recv(1 << 20))
        pump(selector)
    assert channel.backlog() == 0


# --- active targets ----------------------------------------------------------------

def test_parse_target():
    inet = socket.AF_INET
    assert connection.parse_target('tcp:10.0.0.1:6653') == (inet, ('10.0.0.1', 6653))
    assert connection.parse_target('tcp:10.0.0.1') == (inet, ('10.0.0.1', 6653))
    assert connection.parse_target('ptcp:6634') == (inet, ('0.0.0.0', 6634))
    assert connection.parse_target('ptcp:') == (inet, ('0.0.0.0', 6653))
    assert connection.parse_target('ptcp:6634:127.0.0.1') == (inet, ('127.0.0.1', 6634))
    assert connection.parse_target('punix:/run/x/s1.mgmt') == (socket.AF_UNIX, '/run/x/s1.mgmt')
    for bad in ('tcp:6653', 'udp:1.2.3.4:5', 'tcp:1.2.3.4:0', 'ptcp:x', 'tcp:1.2.3.4:70000',
                'punix:', 'unix:/x', 'tcp:host.example:6653'):
        with pytest.raises(ValueError):
            connection.parse_target(bad)


def test_targets_of_the_wrong_direction_are_refused(selector):
    with pytest.raises(ValueError):
        ActiveTarget('ptcp:6653', selector, None, None, None)
    with pytest.raises(ValueError):
        PassiveListener('tcp:127.0.0.1:6653', selector, None, None, None)


def active_target(selector, port, on_message=lambda ch, raw: None, closed=None):
    closed = [] if closed is None else closed
    return ActiveTarget(f'tcp:127.0.0.1:{port}', selector,
                        lambda ch: ch.send(codec.encode(Hello())), on_message, closed.append)


def test_reconnect_backoff_doubles_to_8_seconds(selector):
    closed = []
    target = active_target(selector, free_port(), closed=closed)
    delays = []
    for attempt in range(5):
        target.next_attempt = 0.0                   # time has come
        target.run(time.monotonic())
        pump(selector, until=lambda: target.channel is None)
        assert target.channel is None
        delays.append(target.next_attempt - time.monotonic())
    assert [round(d) for d in delays] == [1, 2, 4, 8, 8]
    assert len(closed) == 5 and all(ch.version is None for ch in closed)
    target.run(time.monotonic())                    # too early: nothing happens
    assert target.channel is None


def test_active_channel_says_hello_and_backoff_resets_after_a_session(selector):
    server, port = listening_socket()
    target = active_target(selector, port,
                           on_message=lambda ch, raw: setattr(ch, 'version', 4))
    target.backoff = 8.0                            # as after failed attempts
    target.run(time.monotonic())
    channel = target.channel
    assert channel.connecting
    pump(selector, until=lambda: not channel.connecting)
    peer, _ = server.accept()
    assert recv_messages(peer, 1) == [Hello()]
    peer.sendall(codec.encode(Hello()))
    pump(selector, until=lambda: channel.version)
    assert selector.get_key(channel.sock).events == READ
    peer.close()
    pump(selector, until=lambda: target.channel is None)
    assert target.next_attempt - time.monotonic() == pytest.approx(1, abs=0.3)
    assert target.backoff == 2.0
    server.close()


def test_passive_listener_accepts_connections(selector):
    port = free_port()
    opened, closed = [], []
    listener = PassiveListener(f'ptcp:{port}:127.0.0.1', selector,
                               lambda ch: (opened.append(ch), ch.send(codec.encode(Hello()))),
                               lambda ch, raw: None, closed.append)
    clients = [socket.create_connection(('127.0.0.1', port)) for _ in range(2)]
    pump(selector, until=lambda: len(opened) == 2)
    assert listener.channels == set(opened)
    assert all('via ptcp:' in ch.name for ch in opened)
    assert recv_messages(clients[0], 1) == [Hello()]
    clients[0].close()
    pump(selector, until=lambda: closed)
    assert len(listener.channels) == 1
    listener.close()
    assert len(closed) == 2 and not selector.get_map()
    clients[1].close()


def test_punix_listener_serves_and_removes_its_socket(selector, tmp_path):
    path = str(tmp_path / 's1.mgmt')
    open(path, 'w').close()             # a stale file from a dead process is replaced
    opened, closed = [], []
    listener = PassiveListener(f'punix:{path}', selector,
                               lambda ch: (opened.append(ch), ch.send(codec.encode(Hello()))),
                               lambda ch, raw: None, closed.append)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(path)
    pump(selector, until=lambda: opened)
    assert 'via punix:' in opened[0].name
    assert recv_messages(client, 1) == [Hello()]
    listener.close()
    assert closed == opened and not os.path.exists(path)
    client.close()


# --- the inactivity probe (ofproto._probe) ---------------------------------------------

@pytest.fixture
def agent(selector):
    ofproto = OFProto('s1', 1, 'secure', selector)
    yield ofproto
    ofproto.close()


def connect_agent(agent, selector, hello=True):
    """The agent connects to a listening socket; returns (channel, peer)."""
    server, port = listening_socket()
    agent.add_controller(f'tcp:127.0.0.1:{port}')
    target = agent.targets[-1]
    pump(selector, until=lambda: target.channel and not target.channel.connecting)
    peer, _ = server.accept()
    server.close()
    assert recv_messages(peer, 1) == [Hello()]
    if hello:
        peer.sendall(codec.encode(Hello()))
        pump(selector, until=lambda: target.channel in agent.channels)
    return target.channel, peer


def test_probe_echoes_then_disconnects_a_silent_controller(agent, selector):
    channel, peer = connect_agent(agent, selector)
    start = channel.last_rx
    agent.run_periodic(start + PROBE_INTERVAL - 1)
    agent.run_periodic(start + PROBE_INTERVAL + 1)
    agent.run_periodic(start + PROBE_INTERVAL + 2)      # one echo only
    (echo,) = recv_messages(peer, 1)
    assert isinstance(echo, EchoRequest) and channel.probe_sent
    peer.sendall(codec.encode(EchoReply(xid=echo.xid)))
    pump(selector, until=lambda: not channel.probe_sent)
    assert channel.last_rx > start
    agent.run_periodic(channel.last_rx + 2 * PROBE_INTERVAL + 1)
    assert channel.closed and channel not in agent.channels
    peer.settimeout(1)
    assert peer.recv(100) == b''
    peer.close()


def test_probe_gives_up_on_a_peer_that_never_says_hello(agent, selector):
    channel, peer = connect_agent(agent, selector, hello=False)
    assert channel.version is None
    agent.run_periodic(channel.last_rx + PROBE_INTERVAL + 1)
    assert not channel.probe_sent                        # no echo before HELLO
    agent.run_periodic(channel.last_rx + 2 * PROBE_INTERVAL + 1)
    assert channel.closed
    peer.settimeout(1)
    assert peer.recv(100) == b''
    peer.close()


# --- live configuration (bridge/apply) ----------------------------------------------

def test_set_controllers_changes_only_what_differs(agent, selector, tmp_path):
    channel, peer = connect_agent(agent, selector)
    kept = agent.targets[0].target
    mgmt_path = str(tmp_path / 's1.mgmt')
    errors = agent.set_controllers([kept, f'punix:{mgmt_path}', 'tcp:nonsense'])
    assert list(errors) == ['tcp:nonsense']
    assert not channel.closed
    assert [t.target for t in agent.targets] == [kept, f'punix:{mgmt_path}']
    assert os.path.exists(mgmt_path)
    agent.set_controllers([f'punix:{mgmt_path}'])
    assert channel.closed and channel not in agent.channels
    peer.settimeout(1)
    assert peer.recv(1) == b''
    agent.set_controllers([])
    assert agent.targets == [] and not os.path.exists(mgmt_path)


def test_a_new_datapath_id_drops_every_connection(agent, selector):
    channel, peer = connect_agent(agent, selector)
    agent.set_datapath_id(1)                        # unchanged: nothing happens
    assert not channel.closed
    agent.set_datapath_id(2)
    assert agent.dpid == 2 and channel.closed
    peer.settimeout(1)
    assert peer.recv(1) == b''
    target = agent.targets[0]
    assert target.channel is None and target.next_attempt > 0     # it reconnects
