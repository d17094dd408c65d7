"""The control socket of a daemon: OVS's unixctl, so the real ovs-appctl works.

Protocol (OVS lib/unixctl.c over lib/jsonrpc.c): JSON-RPC 1.0 on a unix stream
socket. Each message is one JSON object, and messages simply follow each other
(no newline, no length prefix), so the reader finds where an object ends.
ovs-appctl sends one request per command and reads its reply:

    request:  {"method":"dpctl/show","params":[],"id":0}
    reply:    {"result":"system@s1:\\n...","error":null,"id":0}
    or:       {"result":null,"error":"\\"x\\" is not a valid command (...)\\n","id":0}

It prints `result` to stdout and exits 0, or prints `error` to stderr and exits
2. A non-empty text ends with a newline (the server adds one, as OVS 3.1's does).

Commands live in a registry of (name, usage, min_args, max_args, func):
func(*args) returns the reply text, or raises CommandError whose message is the
error reply. Built in, as in OVS: `list-commands` and `version`. Unknown
commands, wrong argument counts and non-string arguments get OVS's wording.

Serving never blocks the daemon's loop. The server registers its listening
socket and every accepted connection with the daemon's selector; all are
non-blocking. Per connection, as in OVS, one request is in progress at a time:
the next one is not read until the reply is sent. So a connection holds at most
max_request bytes of input (plus one read) and one reply of output. A client
that sends nothing, sends half a request or never reads its reply costs a
descriptor and nothing else; when max_connections are open, the one idle
longest makes room for a new one. Input that is not a JSON-RPC request, or a request longer than max_request,
closes the connection, as OVS closes it (EPROTO), with one log line per kind of
trouble at most every LOG_INTERVAL seconds.
"""

import errno
import json
import logging
import os
import re
import selectors
import socket
import time

from mnovs import daemon, paths
from mnovs.vlog import RateLimitedLog

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024     # bytes of one request; ovs-appctl's are a few hundred
MAX_CONNECTIONS = 64
RECV_SIZE = 16 * 1024       # bytes read per readable event: other sockets get their turn
LOG_INTERVAL = 10.0         # seconds between two log lines of one kind


class CommandError(Exception):
    """A bad argument to a control command: its message is the error reply."""


class ProtocolError(ValueError):
    """Input that is not a JSON-RPC message of the kind expected."""


class JsonStream:
    """Cuts complete JSON objects off a byte stream, incrementally.

    Between messages only whitespace may come, then '{'. Inside a message it
    tracks brackets and strings, resuming where the previous feed stopped, so
    a message received in n pieces costs O(length) to find, not O(n * length).
    """

    _OUTSIDE = re.compile(rb'["{}\[\]]')
    _INSIDE = re.compile(rb'["\\]')

    def __init__(self):
        self.buf = bytearray()
        self.scan = 0           # where the bracket scan resumes
        self.depth = 0          # 0: between messages
        self.in_string = False

    def next_message(self):
        """Return the next complete message as a Python value, or None for now.

        Raises:
            ProtocolError: the input is not a JSON object.
        """
        buf = self.buf
        if self.depth == 0:
            del buf[:len(buf) - len(buf.lstrip())]
            if not buf:
                return None
            if buf[0] != ord('{'):
                raise ProtocolError('message is not a JSON object')
        pos = self.scan
        while True:
            match = (self._INSIDE if self.in_string else self._OUTSIDE).search(buf, pos)
            if match is None:
                self.scan = max(pos, len(buf))   # pos is past the end after a final '\'
                return None
            char = buf[match.start()]
            pos = match.end()
            if char == ord('\\'):
                pos += 1                         # skip the escaped character
            elif char == ord('"'):
                self.in_string = not self.in_string
            elif char in b'{[':
                self.depth += 1
            else:
                self.depth -= 1
                if self.depth == 0:
                    break
        message = bytes(buf[:pos])
        del buf[:pos]
        self.scan = 0
        try:
            return json.loads(message)
        except (ValueError, RecursionError) as err:
            raise ProtocolError(f'bad JSON: {err}') from None


def parse_request(message):
    """(method, params, id) of a JSON-RPC request, as OVS's jsonrpc accepts it.

    Raises:
        ProtocolError: not a request (or not JSON-RPC at all).
    """
    if not isinstance(message, dict):
        raise ProtocolError('message is not a JSON object')
    unexpected = sorted(set(message) - {'method', 'params', 'result', 'error', 'id'})
    if unexpected:
        raise ProtocolError(f'message has unexpected member "{unexpected[0]}"')
    method, params, request_id = message.get('method'), message.get('params'), message.get('id')
    if not isinstance(method, str) or not isinstance(params, list) or request_id is None \
            or message.get('result') is not None or message.get('error') is not None:
        raise ProtocolError('not a JSON-RPC request (needs "method" string, '
                            '"params" array and "id")')
    return method, params, request_id


def encode_reply(ok, text, request_id):
    """The bytes of a JSON-RPC reply (ok) or error reply carrying `text`."""
    if text and not text.endswith('\n'):
        text += '\n'
    body = {'result': text, 'error': None} if ok else {'result': None, 'error': text}
    body['id'] = request_id
    return json.dumps(body).encode()


class LogLimiter:
    """One RateLimitedLog per kind of trouble: at most one line per LOG_INTERVAL each."""

    def __init__(self):
        self.kinds = {}

    def warning(self, kind, message, *args, exc_info=False):
        limit = self.kinds.get(kind)
        if limit is None:
            limit = self.kinds[kind] = RateLimitedLog(log, burst=1, interval=LOG_INTERVAL)
        (limit.exception if exc_info else limit.warning)(message, *args)


class UnixctlServer:
    """A registry of control commands served on a unix socket from `selector`.

    Args:
        path: the socket file to listen on (a stale one is replaced).
        selector: the daemon's selectors.BaseSelector; the server registers
            its listening socket and its connections there, each with a
            callback taking the selector events.
        version: the reply to `version`, e.g. 'mnovs-vswitchd (mnovs) 0.1.0'.
        max_connections, max_request: the bounds described in the module doc.
    """

    def __init__(self, path, selector, version, max_connections=MAX_CONNECTIONS,
                 max_request=MAX_REQUEST):
        self.path = path
        self.selector = selector
        self.max_connections = max_connections
        self.max_request = max_request
        self.commands = {}
        self.connections = {}   # socket -> _Connection, oldest first
        self.limiter = LogLimiter()
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.sock.setblocking(False)
        selector.register(self.sock, selectors.EVENT_READ, self._accept)
        self.register('list-commands', '', 0, 0, self._list_commands)
        self.register('version', '', 0, 0, lambda: version)

    def register(self, name, usage, min_args, max_args, func):
        """Add command `name`; func(*args) returns the reply text.

        `usage` is shown by list-commands (None hides the command, as in OVS).
        """
        self.commands[name] = (usage, min_args, max_args, func)

    def _list_commands(self):
        lines = ['The available commands are:']
        for name in sorted(self.commands):
            usage = self.commands[name][0]
            if usage is not None:
                lines.append(f'  {name:<23} {usage}')
        return '\n'.join(lines) + '\n'

    def execute(self, method, params):
        """Run one command; return (ok, text) as the reply will carry it."""
        entry = self.commands.get(method)
        if entry is None:
            return False, (f'"{method}" is not a valid command (use "list-commands" '
                           'to see a list of valid commands)')
        _, min_args, max_args, func = entry
        if len(params) < min_args:
            return False, f'"{method}" command requires at least {min_args} arguments'
        if len(params) > max_args:
            return False, f'"{method}" command takes at most {max_args} arguments'
        if not all(isinstance(p, str) for p in params):
            return False, f'"{method}" command has non-string argument'
        try:
            return True, func(*params) or ''
        except CommandError as err:
            return False, str(err)
        except Exception as err:      # a command bug must not stop the daemon
            self.limiter.warning('command-bug', 'control command %s %s failed', method,
                                 params, exc_info=True)
            return False, f'"{method}" command failed: {err}'

    def _accept(self, events=None):
        for _ in range(10):
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:    # EMFILE and friends: try again at the next event
                self.limiter.warning('accept', 'control socket: accept failed: %s', err)
                return
            if len(self.connections) >= self.max_connections:
                idlest = min(self.connections.values(), key=lambda c: c.last_active)
                self.limiter.warning('evict', 'control socket: %d connections open: '
                                     'closing the one idle longest', len(self.connections))
                idlest.close()
            sock.setblocking(False)
            self.connections[sock] = _Connection(self, sock)

    def close(self):
        """Close every connection and the listening socket; remove the socket file."""
        for conn in list(self.connections.values()):
            conn.close()
        self.selector.unregister(self.sock)
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class _Connection:
    """One client of a UnixctlServer: its input stream and the reply being sent."""

    __slots__ = ('server', 'sock', 'stream', 'out', 'events', 'last_active')

    def __init__(self, server, sock):
        self.server = server
        self.sock = sock
        self.stream = JsonStream()
        self.out = b''          # the unsent rest of the current reply
        self.events = selectors.EVENT_READ
        self.last_active = time.monotonic()
        server.selector.register(sock, self.events, self._ready)

    def _ready(self, events):
        self.last_active = time.monotonic()
        try:
            if self.out:
                self._send()
            elif not self._receive():
                self.close()
                return
            while not self.out:
                message = self.stream.next_message()
                if message is None:
                    break
                method, params, request_id = parse_request(message)
                ok, text = self.server.execute(method, params)
                self.out = encode_reply(ok, text, request_id)
                self._send()
            if len(self.stream.buf) > self.server.max_request:
                raise ProtocolError(f'request longer than {self.server.max_request} bytes')
        except ProtocolError as err:
            self.server.limiter.warning('protocol', 'control socket: closing a client: %s', err)
            self.close()
            return
        except OSError as err:        # the client went away (EPIPE, ECONNRESET)
            log.debug('control connection: %s', err)
            self.close()
            return
        self._watch(selectors.EVENT_WRITE if self.out else selectors.EVENT_READ)

    def _receive(self):
        """Read what is there; False at end of stream."""
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return True
        self.stream.buf += data
        return bool(data)

    def _send(self):
        try:
            sent = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        self.out = self.out[sent:]

    def _watch(self, events):
        if events != self.events:
            self.events = events
            self.server.selector.modify(self.sock, events, self._ready)

    def close(self):
        del self.server.connections[self.sock]
        self.server.selector.unregister(self.sock)
        self.sock.close()


def target_path(target):
    """The control socket of `target`, found as ovs-appctl finds it.

    A target starting with '/' is the socket's path. Otherwise it is a daemon
    name: its pid file <run dir>/<name>.pid gives the pid of the socket
    <run dir>/<name>.<pid>.ctl.

    Raises:
        FileNotFoundError, ProcessLookupError: no such daemon is running.
    """
    if target.startswith('/'):
        return target
    return paths.ctl_path(target, daemon.read_pidfile(paths.pid_path(target)))


def call(target, method, params=(), timeout=5.0):
    """Run `method` with string `params` on a daemon, as ovs-appctl does.

    Args:
        target: a daemon name or a socket path (see target_path).
        timeout: seconds for the whole exchange.
    Returns:
        (ok, text): the reply's result (True) or error (False), as sent.
    Raises:
        OSError: no such daemon, no answer within `timeout` (TimeoutError),
            or an answer that is not a JSON-RPC reply (EPROTO).
    """
    deadline = time.monotonic() + timeout
    request = json.dumps({'method': method, 'params': list(params), 'id': 0}).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(target_path(target))
        sock.sendall(request)
        stream = JsonStream()
        try:
            while (reply := stream.next_message()) is None:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                data = sock.recv(65536)
                if not data:
                    raise OSError(errno.EPROTO, 'connection closed before a reply')
                stream.buf += data
        except ProtocolError as err:
            raise OSError(errno.EPROTO, f'bad reply: {err}') from None
    if not isinstance(reply, dict) or reply.get('id') != 0:
        raise OSError(errno.EPROTO, 'bad reply: not a JSON-RPC reply to this request')
    if reply.get('error') is not None:
        return False, str(reply['error'])
    return True, str(reply.get('result') or '')
