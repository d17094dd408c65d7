"""Pid files as OVS keeps them: locked by their owner, stale once it is gone."""

import os
import signal
import subprocess
import sys

import pytest

from mnovs import daemon

# A child that holds a pid file until it is killed.
HOLDER = '''
import sys, time
from mnovs.daemon import Pidfile
Pidfile(sys.argv[1])
print('held', flush=True)
time.sleep(60)
'''


@pytest.fixture
def holder(tmp_path):
    """holder() -> (child process holding tmp_path/'d.pid', the pid file's path)."""
    children = []

    def start():
        path = str(tmp_path / 'd.pid')
        child = subprocess.Popen([sys.executable, '-c', HOLDER, path], stdout=subprocess.PIPE,
                                 text=True, cwd=os.path.dirname(os.path.dirname(daemon.__file__)))
        children.append(child)
        assert child.stdout.readline() == 'held\n'
        return child, path

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()


def test_pid_file_of_a_live_process(holder):
    child, path = holder()
    assert open(path).read() == f'{child.pid}\n'
    assert daemon.read_pidfile(path) == child.pid
    with pytest.raises(FileExistsError, match=f'already running as pid {child.pid}'):
        daemon.Pidfile(path)
    assert daemon.read_pidfile(path) == child.pid      # the failed attempt changed nothing
    assert not os.path.exists(path + '.tmp')


def test_pid_file_left_by_a_killed_process_is_stale_and_replaced(holder):
    child, path = holder()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert os.path.exists(path)
    with pytest.raises(ProcessLookupError):
        daemon.read_pidfile(path)
    mine = daemon.Pidfile(path)
    # Our own file is answered without opening it (a close would drop the lock).
    assert daemon.read_pidfile(path) == os.getpid()
    assert daemon.read_pidfile(path) == os.getpid()
    mine.remove()
    assert not os.path.exists(path)
    with pytest.raises(FileNotFoundError):
        daemon.read_pidfile(path)


def test_unlocked_or_foreign_pid_file_is_stale(tmp_path):
    path = tmp_path / 'x.pid'
    path.write_text(f'{os.getppid()}\n')     # a live pid, but nobody holds the lock
    with pytest.raises(ProcessLookupError):
        daemon.read_pidfile(str(path))
