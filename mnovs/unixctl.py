"""The control socket of a vswitchd, as OVS's unixctl (ovs-appctl's server).

Each vswitchd listens on a unix socket. A client (mnovs-appctl, or
PyOVSSwitch.dpctl for Mininet's CLI) connects, sends one request and reads one
reply:

    request:  a JSON list of strings, ["dpctl/show"] or ["fdb/flush"], then "\\n"
    reply:    a JSON object {"ok": true|false, "out": "text"}, then close

Commands live in a registry of (name, usage, argument count, function), so
`list-commands` prints what exists and a bad command or argument count gets
one line saying what is wrong. A command function takes the argument strings
and returns the text to print; it raises CommandError for a bad argument.
"""

import json
import logging
import os
import socket

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024


class CommandError(Exception):
    """A bad argument to a control command: its message is the reply."""


class UnixctlServer:
    """A registry of control commands behind a listening unix socket.

    Args:
        path: the socket file to create (replaced if stale).
    """

    def __init__(self, path):
        self.path = path
        self.commands = {}
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.register('list-commands', '', 0, 0, self._list_commands)

    def register(self, name, usage, min_args, max_args, func):
        """Add command `name`; func(*args) returns the reply text."""
        self.commands[name] = (usage, min_args, max_args, func)

    def _list_commands(self):
        lines = ['The available commands are:']
        for name in sorted(self.commands):
            usage = self.commands[name][0]
            lines.append(f'  {name:<28}{usage}')
        return '\n'.join(lines)

    def run(self, argv):
        """Run one request; return (ok, text)."""
        if not argv or not all(isinstance(a, str) for a in argv):
            return False, 'request must be a non-empty list of strings'
        name, args = argv[0], argv[1:]
        entry = self.commands.get(name)
        if entry is None:
            return False, f'"{name}" is not a valid command (try list-commands)'
        usage, min_args, max_args, func = entry
        if not min_args <= len(args) <= max_args:
            return False, f'"{name}" takes {_count(min_args, max_args)}; usage: {name} {usage}'.rstrip()
        try:
            return True, func(*args)
        except CommandError as err:
            return False, str(err)
        except Exception as err:      # a command bug must not stop the switch
            log.exception('control command %s failed', argv)
            return False, f'{name} failed: {err}'

    def handle_accept(self, events=None):
        """Serve one client: read its request, reply, close."""
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        with conn:
            conn.settimeout(2.0)
            try:
                request = _read_line(conn, MAX_REQUEST)
                try:
                    argv = json.loads(request)
                except ValueError:
                    ok, out = False, 'request is not valid JSON'
                else:
                    ok, out = self.run(argv if isinstance(argv, list) else None)
                conn.sendall(json.dumps({'ok': ok, 'out': out}).encode() + b'\n')
            except OSError as err:
                log.info('control connection dropped: %s', err)

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _count(lo, hi):
    if lo == hi:
        return f'{lo} argument' + ('' if lo == 1 else 's')
    return f'{lo} to {hi} arguments'


def _read_line(conn, limit=None):
    data = b''
    while not data.endswith(b'\n'):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if limit is not None and len(data) > limit:
            raise OSError('request too long')
    return data.decode(errors='replace')


def call(path, argv, timeout=5.0):
    """Send one request to the control socket at `path`.

    Returns:
        (ok, text) as the server replied.
    Raises:
        OSError: nobody listens there.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(json.dumps(list(argv)).encode() + b'\n')
        reply = json.loads(_read_line(sock))
    return reply['ok'], reply['out']
