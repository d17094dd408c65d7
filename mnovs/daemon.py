"""Pid files kept as OVS's lib/daemon-unix.c keeps them, so ovs-appctl finds us.

A running daemon holds an fcntl (POSIX) write lock on its whole pid file for
its whole life, and the file holds its pid. A reader (ovs-appctl,
mnovs.unixctl.call, Mininet's cleanup hook) trusts the pid only when the file
is locked by that very pid. The file of a killed daemon is unlocked, hence
stale (ESRCH): a reader never acts on a pid the kernel may have reused.

Creating one (make_pidfile, after OVS): lock <path>.tmp, check that no live
daemon holds <path>, write the pid into the tmp file and rename it over
<path>. A reader never sees an empty file, and two daemons started with one
name at once cannot both win: the loser fails on the tmp lock or on the check.

POSIX locks belong to a process and die with *any* close of the file in that
process. So a daemon never opens its own pid file again: read_pidfile
recognises a file this process holds and answers its pid without opening it,
as OVS does.
"""

import errno
import fcntl
import os
import struct

# struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid (+ padding).
FLOCK = struct.Struct('hhqqi4x')
assert FLOCK.size == 32

_held = set()       # (st_dev, st_ino) of the pid files this process holds


class Pidfile:
    """This process's pid file at `path`, locked until remove().

    Raises:
        FileExistsError: a live process holds the pid file (the message says which).
        OSError: the run directory cannot be written.
    """

    def __init__(self, path):
        self.path = path
        tmp = f'{path}.tmp'
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise FileExistsError(errno.EEXIST, 'another daemon is starting with this '
                                      'pid file', path) from None
            try:
                pid = read_pidfile(path)
            except (FileNotFoundError, ProcessLookupError):
                pass
            else:
                os.unlink(tmp)          # ours to remove: we hold its lock
                raise FileExistsError(errno.EEXIST, f'already running as pid {pid}', path)
            os.ftruncate(fd, 0)
            os.write(fd, b'%d\n' % os.getpid())
            os.rename(tmp, path)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        stat = os.fstat(fd)
        self.key = (stat.st_dev, stat.st_ino)
        _held.add(self.key)

    def remove(self):
        """Delete the pid file and release its lock."""
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        _held.discard(self.key)
        os.close(self.fd)
        self.fd = None


def live_pid(path):
    """The pid of the live daemon that holds the pid file at `path`, or None."""
    try:
        return read_pidfile(path)
    except OSError:                 # missing, stale or unreadable: no live daemon there
        return None


def read_pidfile(path):
    """Return the pid of the live process that holds the pid file at `path`.

    Raises:
        FileNotFoundError: no such pid file.
        ProcessLookupError: the file is stale (no live process holds it).
    """
    stat = os.stat(path)
    if (stat.st_dev, stat.st_ino) in _held:
        return os.getpid()
    with open(path, 'rb') as f:
        lock = fcntl.fcntl(f, fcntl.F_GETLK, FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
        l_type, _, _, _, l_pid = FLOCK.unpack(lock)
        text = f.read(128).split(b'\n')[0].strip()
    if l_type == fcntl.F_UNLCK or not text.isdigit() or int(text) != l_pid:
        raise ProcessLookupError(errno.ESRCH, 'No such process', path)
    return l_pid
