"""OpenFlow channels: TCP connections to controllers, active and passive.

This is mnovs's rconn/connmgr transport. A `Channel` is one TCP connection:
a non-blocking socket, a receive buffer cut into whole OpenFlow messages by
the header's length field, and a send buffer flushed when the socket is
writable. It knows nothing of message contents beyond the 8-byte header; the
agent (ofproto.py) decodes, answers and keeps per-channel OpenFlow state
(negotiated version, role, async config) on the channel object.

Two kinds of endpoints create channels:
- `ActiveTarget` (OVS `tcp:IP:PORT`): connects to a controller and, when the
  connection fails or drops, retries with exponential backoff (1 s doubling
  to 8 s, as OVS's default max-backoff).
- `PassiveListener` (OVS `ptcp:PORT` or `punix:PATH`): accepts any number
  of connections, for ovs-ofctl and Mininet's `dpctl`. Every bridge has one
  on the unix socket <run dir>/<bridge>.mgmt, where ovs-ofctl looks for a
  bridge named on its command line; the socket file goes when it closes.

Liveness (OVS's inactivity probe, run by the agent: ofproto._probe): after
PROBE_INTERVAL seconds without receiving anything, the agent sends an
ECHO_REQUEST; after as long again with still nothing, the channel is closed
(and an active one reconnects). A channel whose TCP connect or HELLO never
completes gets the same time limit.

Backpressure: `Channel.backlog()` is the number of bytes waiting for the
socket. The agent drops packet-ins while it is too long (OVS's packet-in
queue limit); a channel whose backlog would pass MAX_SEND_BUFFER is closed.

Every event is driven by the vswitchd's selector: each socket is registered
with a callback as its data, and write interest is held exactly while a send
buffer is non-empty (the selector is told only when that changes). No error
on a socket escapes: a failed connect, accept, send or receive is logged and
ends that connection (an active target then retries).
"""

import errno
import logging
import os
import selectors
import socket
import struct
import time

log = logging.getLogger(__name__)

OFP_HEADER = struct.Struct('!BBHI')      # version, type, length, xid
assert OFP_HEADER.size == 8
MAX_BACKOFF = 8.0
RECV_CHUNK = 1 << 16
MAX_SEND_BUFFER = 16 << 20              # a controller this far behind is dropped
MESSAGES_PER_TURN = 50                  # messages handled per connection per loop turn
MAX_RECV_BACKLOG = 1 << 20              # bytes received and not yet handled, at most


class Channel:
    """One OpenFlow TCP connection (either direction).

    Args:
        sock: a connected (or connecting) non-blocking socket.
        name: for logs, e.g. 'tcp:127.0.0.1:6653'.
        selector: the vswitchd's selector.
        on_message: callable(channel, raw message bytes).
        on_close: callable(channel) when the connection ends.
    """

    def __init__(self, sock, name, selector, on_message, on_close, connecting=False):
        self.sock = sock
        self.name = name
        self.selector = selector
        self.on_message = on_message
        self.on_close = on_close
        self.rx = bytearray()
        self.tx = bytearray()
        self.connecting = connecting
        self.closed = False
        self.last_rx = time.monotonic()
        self.probe_sent = False
        # OpenFlow session state, kept here and managed by the agent.
        self.version = None              # negotiated version, None until HELLO
        self.role = None
        self.async_config = None
        self.events = selectors.EVENT_READ | (selectors.EVENT_WRITE if connecting else 0)
        selector.register(sock, self.events, self._on_event)

    def __repr__(self):
        return f'<Channel {self.name}>'

    def send(self, data):
        """Queue bytes (one or more whole messages) for the controller."""
        if self.closed:
            return
        if len(self.tx) + len(data) > MAX_SEND_BUFFER:
            log.warning('%s: send buffer overflow; disconnecting', self.name)
            self.close()
            return
        was_empty = not self.tx
        self.tx += data
        if was_empty and not self.connecting:
            self._flush()

    def backlog(self):
        """Bytes queued for the peer that the kernel has not taken yet.

        Zero while the peer keeps up: send() hands data to the socket at
        once, and bytes wait here only once the socket's own buffer is full.
        The agent reads this to drop (and count) packet-ins when the
        connection is behind, as OVS's rconn_send_with_limit does, so that
        replies do not queue behind a flood; at MAX_SEND_BUFFER the channel
        is closed instead.
        """
        return len(self.tx)

    def _on_event(self, mask=selectors.EVENT_READ | selectors.EVENT_WRITE):
        if self.connecting:
            self._finish_connect()
            return
        if mask & selectors.EVENT_WRITE and self.tx:
            self._flush()
        if mask & selectors.EVENT_READ and not self.closed:
            self._receive()

    def _finish_connect(self):
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == 0 and not self._peer_ready():
            return
        if err:
            log.info('%s: connection failed: %s', self.name, errno.errorcode.get(err, err))
            self.close()
            return
        self.connecting = False
        log.info('%s: connected', self.name)
        self._update_interest()
        if self.tx:
            self._flush()

    def _peer_ready(self):
        try:
            self.sock.getpeername()
        except OSError:
            return False
        return True

    def _receive(self):
        if len(self.rx) >= MAX_RECV_BACKLOG:
            # Messages enough wait already: leave the rest in the socket, so
            # that TCP slows the peer down, and work through what is here.
            self.process_messages()
            return
        try:
            data = self.sock.recv(RECV_CHUNK)
        except BlockingIOError:
            return
        except OSError as err:
            log.info('%s: receive failed: %s', self.name, err)
            self.close()
            return
        if not data:
            log.info('%s: connection closed by peer', self.name)
            self.close()
            return
        self.last_rx = time.monotonic()
        self.probe_sent = False
        self.rx += data
        self.process_messages()

    def process_messages(self, limit=MESSAGES_PER_TURN):
        """Hand up to `limit` whole received messages to on_message.

        As OVS's connmgr does (50 per connection per main-loop run), a
        controller that sends thousands of flow_mods at once does not hold
        the loop: between two batches the ports' rings are drained. The
        agent calls this again each turn while `backlogged()`.
        """
        for _ in range(limit):
            if len(self.rx) < OFP_HEADER.size or self.closed:
                return
            length = OFP_HEADER.unpack_from(self.rx)[2]
            if length < OFP_HEADER.size:
                # The stream cannot be re-synchronised after a length that
                # small: answer nothing more and drop the connection.
                log.warning('%s: message length %d < 8; disconnecting', self.name, length)
                self.close()
                return
            if len(self.rx) < length:
                return
            message = bytes(self.rx[:length])
            del self.rx[:length]
            self.on_message(self, message)

    def backlogged(self):
        """True if a whole received message waits to be handled."""
        return (not self.closed and len(self.rx) >= OFP_HEADER.size
                and len(self.rx) >= OFP_HEADER.unpack_from(self.rx)[2])

    def _flush(self):
        try:
            sent = self.sock.send(self.tx)
        except BlockingIOError:
            sent = 0
        except OSError as err:
            log.info('%s: send failed: %s', self.name, err)
            self.close()
            return
        del self.tx[:sent]
        self._update_interest()

    def _update_interest(self):
        """Want EVENT_WRITE exactly while bytes wait to be sent."""
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.tx else 0)
        if events != self.events and not self.closed:
            self.events = events
            self.selector.modify(self.sock, events, self._on_event)

    def close(self):
        if self.closed:
            return
        self.closed = True
        try:
            self.selector.unregister(self.sock)
        except (KeyError, ValueError):
            pass
        self.sock.close()
        self.on_close(self)


DEFAULT_OFP_PORT = 6653                 # OVS's default for tcp: and ptcp: without a port
TARGET_SYNTAX = 'expected tcp:IP[:PORT], ptcp:[PORT][:IP] or punix:PATH'


def parse_target(target):
    """An OVS connection target → (address family, address to connect or bind).

    'tcp:IP[:PORT]' and 'ptcp:[PORT][:IP]' give (AF_INET, (ip, port)), the
    port 6653 if none is given; 'punix:PATH' gives (AF_UNIX, PATH).

    Raises:
        ValueError: a one-line reason.
    """
    kind, _, rest = target.partition(':')
    if kind == 'punix' and rest:
        return socket.AF_UNIX, rest
    if kind == 'tcp':
        host, _, port = rest.partition(':')
    elif kind == 'ptcp':
        port, _, host = rest.partition(':')
        host = host or '0.0.0.0'
    else:
        raise ValueError(f'bad OpenFlow target "{target}": {TARGET_SYNTAX}')
    port = port or str(DEFAULT_OFP_PORT)
    if not _is_ipv4(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'bad OpenFlow target "{target}": {TARGET_SYNTAX}')
    return socket.AF_INET, (host, int(port))


def _is_ipv4(text):
    try:
        socket.inet_pton(socket.AF_INET, text)
    except OSError:
        return False
    return True


def is_passive(target):
    """ptcp: and punix: targets listen; tcp: targets connect."""
    return target.startswith('p')


class ActiveTarget:
    """A controller we connect to, reconnecting with backoff (OVS rconn)."""

    def __init__(self, target, selector, on_channel, on_message, on_close):
        self.target = target
        family, self.address = parse_target(target)
        if family != socket.AF_INET or is_passive(target):
            raise ValueError(f'bad controller "{target}": expected tcp:IP[:PORT]')
        self.selector = selector
        self.on_channel = on_channel
        self.on_message = on_message
        self.on_close = on_close
        self.channel = None
        self.backoff = 1.0
        self.next_attempt = 0.0

    def run(self, now):
        """Connect if it is time to; call from the loop's housekeeping."""
        if self.channel is not None or now < self.next_attempt:
            return
        sock = None
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.connect(self.address)
        except BlockingIOError:
            pass
        except OSError as err:
            log.info('%s: connect failed: %s', self.target, err)
            if sock is not None:
                sock.close()
            self._schedule(now)
            return
        self.channel = Channel(sock, self.target, self.selector, self.on_message,
                               self._closed, connecting=True)
        self.on_channel(self.channel)

    def _closed(self, channel):
        self.channel = None
        was_up = channel.version is not None
        self.on_close(channel)
        now = time.monotonic()
        if was_up:
            self.backoff = 1.0
        self._schedule(now)

    def _schedule(self, now):
        self.next_attempt = now + self.backoff
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)

    def disconnect(self):
        """Drop the connection; it is made again after the usual backoff."""
        if self.channel is not None:
            self.channel.close()

    # A target holds nothing but its connection: removing it is disconnecting
    # (once out of the agent's list, nobody runs it to reconnect).
    close = disconnect


class PassiveListener:
    """A listening socket (OVS ptcp:PORT, punix:PATH) whose connections become channels.

    Raises (from the constructor):
        ValueError: not a passive target.
        OSError: the address cannot be bound (in use, no such directory).
    """

    def __init__(self, target, selector, on_channel, on_message, on_close):
        self.target = target
        self.family, self.address = parse_target(target)
        if not is_passive(target):
            raise ValueError(f'bad listener "{target}": expected ptcp:[PORT][:IP] or punix:PATH')
        self.selector = selector
        self.on_channel = on_channel
        self.on_message = on_message
        self.on_close = on_close
        self.sock = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            if self.family == socket.AF_UNIX:
                # A socket file left by a process that died is in the way (OVS
                # unlinks it too); a live owner's is replaced, as ovs-vswitchd does.
                _unlink(self.address)
            else:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(self.address)
            self.sock.listen(16)
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        selector.register(self.sock, selectors.EVENT_READ, self._accept)
        self.channels = set()
        self.n_accepted = 0

    def _accept(self, mask=None):
        try:
            sock, peer = self.sock.accept()
        except BlockingIOError:
            return
        except OSError as err:          # ECONNABORTED, EMFILE...
            log.warning('%s: accept failed: %s', self.target, err)
            return
        self.n_accepted += 1
        sock.setblocking(False)
        if self.family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            name = f'tcp:{peer[0]}:{peer[1]} (via {self.target})'
        else:
            name = f'unix#{self.n_accepted} (via {self.target})'
        channel = Channel(sock, name, self.selector, self.on_message, self._closed)
        self.channels.add(channel)
        self.on_channel(channel)

    def _closed(self, channel):
        self.channels.discard(channel)
        self.on_close(channel)

    def disconnect(self):
        """Close every accepted connection; keep listening."""
        for channel in list(self.channels):
            channel.close()

    def close(self):
        self.disconnect()
        self.selector.unregister(self.sock)
        self.sock.close()
        if self.family == socket.AF_UNIX:
            _unlink(self.address)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
