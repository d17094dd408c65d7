"""mnovs's daemons as processes: is a pid ours, stop it by pid (as OVS's lib/process.c).

mnovs runs several long-lived processes (its ovsdb-server, the bridge layer,
one vswitchd per bridge), each with `<name>.pid` in the run directory. Any
other process that acts on such a pid -- to adopt it, to stop it, to clean up
after a crash -- first checks that the pid still belongs to an mnovs process
(its /proc/PID/cmdline names the program), because pids are reused and the
system's own OVS keeps pid files of the same names in another directory.

Pid files themselves are OVS's locked ones (mnovs.daemon): a pid is read
only from a file its live process holds.

Nothing here is on a hot path; every call is a few syscalls.
"""

import os
import signal
import time

from mnovs import daemon

STOP_TIMEOUT = 3.0      # seconds a daemon gets to honour SIGTERM before SIGKILL


def remove_file(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def cmdline(pid):
    """The argv of process `pid` as bytes joined by NUL; b'' if it is gone."""
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            return f.read()
    except OSError:
        return b''


def is_alive(pid):
    """Does `pid` run (not a zombie)?"""
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            # Field 3 is the state; the name before it is in parentheses and
            # may itself contain spaces, so split after the last ')'.
            return f.read().rpartition(b')')[2].split()[0] != b'Z'
    except (OSError, IndexError):
        return False


def is_ours(pid, markers):
    """Is `pid` alive and running a program whose argv contains one of `markers` (bytes)?"""
    if pid is None or pid <= 0 or not is_alive(pid):
        return False
    argv = cmdline(pid)
    return any(marker in argv for marker in markers)


def pid_if_ours(path, markers):
    """The pid in pid file `path` if it is a live process of ours, else None."""
    pid = daemon.live_pid(path)
    return pid if is_ours(pid, markers) else None


def signal_pid(pid, signum=signal.SIGTERM):
    try:
        os.kill(pid, signum)
        return True
    except ProcessLookupError:
        return False


def wait_gone(pids, timeout=STOP_TIMEOUT):
    """Wait until none of `pids` is alive (reaping our own children); return the survivors."""
    deadline = time.monotonic() + timeout
    pending = set(pids)
    while pending:
        for pid in list(pending):
            try:
                os.waitpid(pid, os.WNOHANG)   # a child of ours: reap it
            except ChildProcessError:
                pass
            if not is_alive(pid):
                pending.discard(pid)
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    return pending


def stop_pids(pids, timeout=STOP_TIMEOUT):
    """SIGTERM all `pids` at once, wait, SIGKILL whoever is left; return the killed ones."""
    pids = [pid for pid in pids if signal_pid(pid)]
    survivors = wait_gone(pids, timeout)
    for pid in survivors:
        signal_pid(pid, signal.SIGKILL)
    wait_gone(survivors, 1.0)
    return survivors
