"""The unixctl server and client on real unix sockets, with the real ovs-appctl.

The server runs in a selector loop on a thread of the test, as in a vswitchd;
clients are real sockets: well-behaved ones (unixctl.call, ovs-appctl) and
ones that stall, dribble, flood or send garbage.
"""

import json
import logging
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from mnovs import daemon, launchers, paths, unixctl
from mnovs.unixctl import CommandError, JsonStream, ProtocolError, UnixctlServer

VERSION = 'mnovs-test (mnovs) 0.1.0'
BIG = 'x' * (4 * 1024 * 1024 - 1)       # a reply far larger than a socket buffer
UNKNOWN = ('"nope" is not a valid command (use "list-commands" to see a list of '
           'valid commands)\n')
needs_appctl = pytest.mark.skipif(shutil.which('ovs-appctl') is None,
                                  reason='ovs-appctl comes with openvswitch-common')


class Loop:
    """A daemon's poll loop on a thread: select, then call each ready key's callback."""

    def __init__(self, selector):
        self.selector = selector
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while self.running:
            ready = self.selector.select(0.02)
            registered = self.selector.get_map()
            for key, events in ready:
                if registered.get(key.fd) is key:
                    key.data(events)

    def stop(self):
        self.running = False
        self.thread.join(5)


def fail(text):
    raise CommandError(text)


@pytest.fixture
def run_dir(monkeypatch):
    # A short path: unix socket paths are limited to 107 bytes.
    path = tempfile.mkdtemp(prefix='uxt', dir='/tmp')
    monkeypatch.setattr(paths, 'RUN_DIR', path)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def serve(run_dir):
    """serve(**server options) -> a running UnixctlServer named 'sw' in run_dir."""
    started = []

    def start(**options):
        selector = selectors.DefaultSelector()
        server = UnixctlServer(paths.ctl_path('sw', os.getpid()), selector, VERSION, **options)
        server.register('echo', 'WORD...', 0, 3, lambda *words: ' '.join(words))
        server.register('fail', 'TEXT', 1, 1, fail)
        server.register('bug', '', 0, 0, lambda: 1 / 0)
        server.register('big', '', 0, 0, lambda: BIG)
        server.register('hidden', None, 0, 0, lambda: 'hidden')
        loop = Loop(selector)
        loop.thread.start()
        started.append((server, loop, selector))
        return server

    yield start
    for server, loop, selector in started:
        loop.stop()
        server.close()
        selector.close()


def connect(server):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(server.path)
    return sock


def request(method, params=(), request_id=1):
    return json.dumps({'method': method, 'params': list(params), 'id': request_id}).encode()


def read_reply(sock, stream=None):
    """The next reply on sock; pass one `stream` to read several replies."""
    stream = JsonStream() if stream is None else stream
    while (reply := stream.next_message()) is None:
        data = sock.recv(65536)
        assert data, 'connection closed before a reply'
        stream.buf += data
    return reply


def closed_by_peer(sock):
    """True once the server has closed `sock` (EOF or reset), within the timeout."""
    try:
        while True:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'condition not reached'
        time.sleep(0.01)


# --- the protocol, as ovs-appctl sees it --------------------------------------

@needs_appctl
def test_real_ovs_appctl_finds_the_daemon_by_pid_file(serve, run_dir):
    serve()
    pidfile = daemon.Pidfile(paths.pid_path('sw'))
    try:
        def appctl(*argv):
            return subprocess.run(['ovs-appctl', '-t', 'sw', *argv], capture_output=True,
                                  text=True, env=dict(os.environ, OVS_RUNDIR=run_dir))

        done = appctl('version')
        assert (done.returncode, done.stdout) == (0, VERSION + '\n')
        done = appctl('list-commands')
        assert done.stdout == ('The available commands are:\n'
                               '  big                     \n'
                               '  bug                     \n'
                               '  echo                    WORD...\n'
                               '  fail                    TEXT\n'
                               '  list-commands           \n'
                               '  version                 \n')
        assert appctl('echo', 'a', 'b c').stdout == 'a b c\n'
        assert appctl('hidden').stdout == 'hidden\n'
        done = appctl('nope')
        assert done.returncode == 2 and done.stdout == ''
        assert done.stderr == UNKNOWN + 'ovs-appctl: sw: server returned an error\n'
        done = appctl('echo', '1', '2', '3', '4')
        assert done.returncode == 2
        assert done.stderr.startswith('"echo" command takes at most 3 arguments\n')
        done = appctl('fail')
        assert done.stderr.startswith('"fail" command requires at least 1 arguments\n')
        done = appctl('fail', 'no such port')
        assert (done.returncode, done.stderr.splitlines()[0]) == (2, 'no such port')
    finally:
        pidfile.remove()


@needs_appctl
def test_launcher_runs_ovs_appctl_in_mnovs_run_dir(serve, run_dir):
    serve()
    pidfile = daemon.Pidfile(paths.pid_path('sw'))
    try:
        done = subprocess.run([sys.executable, '-m', 'mnovs.launchers', 'appctl', '-t', 'sw',
                               'version'], capture_output=True, text=True,
                              env=dict(os.environ, MNOVS_RUN_DIR=run_dir),
                              cwd=os.path.dirname(os.path.dirname(launchers.__file__)))
        assert (done.returncode, done.stdout) == (0, VERSION + '\n'), done.stderr
    finally:
        pidfile.remove()


def test_launcher_without_the_tool_says_so(capsys):
    assert launchers.launch('no-such-ovs-tool', []) == 127
    assert 'cannot run no-such-ovs-tool' in capsys.readouterr().err
    assert launchers.main(['nonsense']) == 2


def test_call_by_name_and_by_path(serve):
    server = serve()
    pidfile = daemon.Pidfile(paths.pid_path('sw'))
    try:
        assert unixctl.call('sw', 'echo', ['hi']) == (True, 'hi\n')
    finally:
        pidfile.remove()
    assert unixctl.call(server.path, 'echo') == (True, '')
    assert unixctl.call(server.path, 'fail', ['bad value']) == (False, 'bad value\n')
    assert unixctl.call(server.path, 'nope') == (False, UNKNOWN)
    with pytest.raises(FileNotFoundError):
        unixctl.call('sw', 'version')          # no pid file: no such daemon


def test_a_command_bug_is_an_error_reply_not_a_crash(serve):
    server = serve()
    ok, text = unixctl.call(server.path, 'bug')
    assert not ok and text.startswith('"bug" command failed: division by zero')
    assert unixctl.call(server.path, 'version') == (True, VERSION + '\n')


def test_non_string_argument_gets_ovs_message(serve):
    server = serve()
    with connect(server) as sock:
        sock.sendall(request('echo', [1], request_id='a'))
        reply = read_reply(sock)
    assert reply == {'result': None, 'error': '"echo" command has non-string argument\n',
                     'id': 'a'}


def test_pipelined_requests_answered_in_order(serve):
    server = serve()
    with connect(server) as sock:
        sock.sendall(request('echo', ['one'], 7) + b'\n ' + request('nope', [], 8))
        stream = JsonStream()           # both replies may come in one read
        assert read_reply(sock, stream) == {'result': 'one\n', 'error': None, 'id': 7}
        assert read_reply(sock, stream) == {'result': None, 'error': UNKNOWN, 'id': 8}


def test_request_in_one_byte_pieces(serve):
    server = serve()
    word = 'a"b\\c{}[] \u00e9'        # quotes, escapes and brackets inside a string
    with connect(server) as sock:
        for byte in request('echo', [word]):
            sock.send(bytes([byte]))
        assert read_reply(sock)['result'] == word + '\n'


def test_concurrent_clients(serve):
    server = serve()
    errors = []

    def client(n):
        for i in range(20):
            reply = unixctl.call(server.path, 'echo', [str(n), str(i)])
            if reply != (True, f'{n} {i}\n'):
                errors.append(reply)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# --- clients that misbehave ----------------------------------------------------

def test_idle_and_half_sent_clients_do_not_hold_up_others(serve):
    server = serve()
    idle = [connect(server) for _ in range(5)]
    half = [connect(server) for _ in range(5)]
    whole = request('echo', ['late'])
    for sock in half:
        sock.sendall(whole[:20])
    assert unixctl.call(server.path, 'version', timeout=2) == (True, VERSION + '\n')
    # A half-sent request resumes where it stopped.
    half[0].sendall(whole[20:])
    assert read_reply(half[0])['result'] == 'late\n'
    for sock in idle + half:
        sock.close()


def test_client_that_never_reads_does_not_hold_up_others(serve):
    server = serve()
    with connect(server) as slow:
        slow.sendall(request('big'))
        # The reply does not fit the socket buffer: the server keeps the rest.
        wait_for(lambda: any(c.out for c in list(server.connections.values())))
        for _ in range(3):
            assert unixctl.call(server.path, 'echo', ['x'], timeout=2) == (True, 'x\n')
        assert read_reply(slow)['result'] == BIG + '\n'


@pytest.mark.parametrize('garbage', [
    b'hello',
    b'[1, 2]',
    b'{"method": "version", "params": [], "id": 1, "extra": 2}',
    b'{"method": "version", "params": "x", "id": 1}',
    b'{"method": "version", "params": []}',                  # a notification
    b'{"result": "x", "error": null, "id": 1}',              # a reply
    b'{"method": "version", ]',
    b'{"method": "\xff\xfe", "params": [], "id": 1}',
])
def test_garbage_closes_the_connection(serve, garbage):
    server = serve()
    with connect(server) as sock:
        sock.sendall(garbage)
        assert closed_by_peer(sock)
    assert unixctl.call(server.path, 'version') == (True, VERSION + '\n')


def test_oversize_request_closes_the_connection(serve):
    server = serve(max_request=4096)
    with connect(server) as sock:
        try:
            sock.sendall(b'{"method": "' + b'a' * 20000)
        except (BrokenPipeError, ConnectionResetError):
            pass                     # closed while we were still sending
        assert closed_by_peer(sock)
    assert unixctl.call(server.path, 'version') == (True, VERSION + '\n')


def test_trouble_is_logged_once_per_kind(serve, caplog):
    server = serve()
    caplog.set_level(logging.WARNING, logger='mnovs.unixctl')
    for _ in range(5):
        with connect(server) as sock:
            sock.sendall(b'garbage')
            assert closed_by_peer(sock)
    lines = [r for r in caplog.records if 'closing a client' in r.getMessage()]
    assert len(lines) == 1


def test_full_server_drops_the_longest_idle_client(serve):
    server = serve(max_connections=3)
    idle = [connect(server) for _ in range(3)]
    wait_for(lambda: len(server.connections) == 3)
    assert unixctl.call(server.path, 'version') == (True, VERSION + '\n')
    assert closed_by_peer(idle[0])
    for sock in idle:
        sock.close()


def test_close_ends_connections_and_removes_the_socket(run_dir):
    selector = selectors.DefaultSelector()
    server = UnixctlServer(os.path.join(run_dir, 'x.ctl'), selector, VERSION)
    client = connect(server)
    for key, events in selector.select(1):
        key.data(events)
    assert len(server.connections) == 1
    server.close()
    assert not os.path.exists(server.path)
    assert closed_by_peer(client)
    assert selector.get_map() == {}
    client.close()
    selector.close()


# --- framing -------------------------------------------------------------------

def test_json_stream_cuts_objects_at_any_split():
    messages = [{'method': 'a', 'params': ['}"\\', '{[', '\\"'], 'id': 1},
                {'result': '', 'error': None, 'id': [1, {'x': 2}]}]
    wire = b' '.join(json.dumps(m).encode() for m in messages) + b'\n'
    for cut in range(1, len(wire)):
        stream = JsonStream()
        got = []
        for piece in (wire[:cut], wire[cut:]):
            stream.buf += piece
            while (message := stream.next_message()) is not None:
                got.append(message)
        assert got == messages, cut


def test_json_stream_rejects_what_is_not_an_object():
    for garbage in (b'1', b'"x"', b'null', b']'):
        stream = JsonStream()
        stream.buf += garbage
        with pytest.raises(ProtocolError):
            stream.next_message()
    stream = JsonStream()
    stream.buf += b'{"a": ' + b'[' * 100000 + b']' * 100000 + b'}'    # too deep to parse
    with pytest.raises(ProtocolError):
        stream.next_message()
