"""mnovs-ctl: start and stop mnovs's own ovsdb-server and bridge layer, as ovs-ctl.

    mnovs-ctl start      # ovsdb-server (creating conf.db if missing) + bridge layer
    mnovs-ctl status
    mnovs-ctl stop       # bridge layer, every vswitchd, ovsdb-server

mnovs keeps a configuration database of its own, apart from the system's Open
vSwitch, so that OVS and pyovs switches can live in one Mininet:

    /var/run/mnovs/db.sock             ovsdb-server's socket  (OVS_RUNDIR; env MNOVS_RUN_DIR)
    /var/run/mnovs/ovsdb-server.pid    its pid file; ovsdb-server.<pid>.ctl its unixctl socket
    /var/run/mnovs/mnovs-bridge.pid    the bridge layer (python -m mnovs.bridge)
    /var/lib/mnovs/conf.db             the database (env MNOVS_DB_DIR), from OVS's vswitch.ovsschema
    /tmp/mnovs-ovsdb-server.log, /tmp/mnovs-bridge.log

The real ovs-vsctl, ovs-ofctl and ovs-appctl reach all of it when OVS_RUNDIR
is the run directory: `tool_env()` gives such an environment and `vsctl()`
runs ovs-vsctl in it. Starting is idempotent: a daemon whose pid file names a
live process of ours is reused. Stopping goes by pid, after checking that the
pid is ours (mnovs.daemon), so the system's OVS is never touched.
"""

import argparse
import contextlib
import os
import subprocess
import sys
import time

import mnovs
from mnovs import daemon, paths, process

SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema'
DB_DIR = os.environ.get('MNOVS_DB_DIR', '/var/lib/mnovs')
DB_FILE = os.path.join(DB_DIR, 'conf.db')
DB_SOCK = os.path.join(paths.RUN_DIR, 'db.sock')
DB_REMOTE = f'unix:{DB_SOCK}'
OVSDB_PIDFILE = os.path.join(paths.RUN_DIR, 'ovsdb-server.pid')
OVSDB_LOG = os.path.join(paths.LOG_DIR, 'mnovs-ovsdb-server.log')
BRIDGE_PIDFILE = os.path.join(paths.RUN_DIR, 'mnovs-bridge.pid')
BRIDGE_LOG = os.path.join(paths.LOG_DIR, 'mnovs-bridge.log')
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(mnovs.__file__)))
VERSION = '0.1.0'

# What /proc/PID/cmdline of each of our daemons contains (see mnovs.daemon).
OVSDB_MARKERS = (f'punix:{DB_SOCK}'.encode(),)
BRIDGE_MARKERS = (b'mnovs.bridge',)
# A vswitchd is forked from the bridge layer (so it shows the bridge layer's
# argv) or started by hand as `python -m mnovs.vswitchd`.
VSWITCHD_MARKERS = (b'mnovs.bridge', b'mnovs.vswitchd')

START_TIMEOUT = 10.0
VSCTL_TIMEOUT = 60          # seconds ovs-vsctl waits for the database and for cur_cfg


class CtlError(Exception):
    """A daemon could not be started: the message says which and why."""


def tool_env(env=None):
    """An environment in which ovs-vsctl, ovs-ofctl and ovs-appctl reach mnovs."""
    return dict(env if env is not None else os.environ, OVS_RUNDIR=paths.RUN_DIR)


def vsctl(*args, wait=True, timeout=VSCTL_TIMEOUT):
    """Run `ovs-vsctl ARGS...` against mnovs's database.

    Args:
        args: ovs-vsctl words, e.g. ('add-br', 's1') or ('--', 'set', ...).
        wait: False adds --no-wait (do not wait for the bridge layer).
    Returns:
        subprocess.CompletedProcess with text stdout/stderr; never raises on exit status.
    """
    argv = ['ovs-vsctl', f'--timeout={timeout}']
    if not wait:
        argv.append('--no-wait')
    argv += [str(arg) for arg in args]
    return subprocess.run(argv, capture_output=True, text=True, env=tool_env(), check=False)


# --- ovsdb-server ----------------------------------------------------------

def upgrade_db():
    """Create conf.db from OVS's schema if missing; convert it if the schema is newer."""
    os.makedirs(DB_DIR, exist_ok=True)
    if not os.path.exists(DB_FILE):
        _run(['ovsdb-tool', 'create', DB_FILE, SCHEMA])
    elif _run(['ovsdb-tool', 'needs-conversion', DB_FILE, SCHEMA]).strip() == 'yes':
        _run(['ovsdb-tool', 'convert', DB_FILE, SCHEMA])


def ovsdb_pid():
    return process.pid_if_ours(OVSDB_PIDFILE, OVSDB_MARKERS)


def start_ovsdb():
    """Start mnovs's ovsdb-server unless it runs; return its pid."""
    pid = ovsdb_pid()
    if pid:
        return pid
    os.makedirs(paths.RUN_DIR, exist_ok=True)
    upgrade_db()
    # OVS_RUNDIR puts ovsdb-server's unixctl socket (ovsdb-server.<pid>.ctl)
    # in our run dir, where `ovs-appctl -t ovsdb-server` looks with the same env.
    _run(['ovsdb-server', DB_FILE, f'--remote=punix:{DB_SOCK}',
          f'--pidfile={OVSDB_PIDFILE}', f'--log-file={OVSDB_LOG}',
          '-vconsole:off', '-vsyslog:off', '-vfile:info', '--no-chdir', '--detach'],
         env=tool_env())
    done = vsctl('--', 'init', '--', 'set', 'Open_vSwitch', '.',
                 f'ovs_version={VERSION}', f'db_version={_schema_version()}', wait=False)
    if done.returncode:
        raise CtlError(f'ovs-vsctl init failed: {done.stderr.strip()}')
    return ovsdb_pid()


def stop_ovsdb():
    pid = ovsdb_pid()
    if pid:
        process.stop_pids([pid])


def _schema_version():
    return _run(['ovsdb-tool', 'schema-version', SCHEMA]).strip()


# --- bridge layer and vswitchds --------------------------------------------

def bridge_pid():
    return process.pid_if_ours(BRIDGE_PIDFILE, BRIDGE_MARKERS)


def start_bridge_layer(python=None, verbose=False):
    """Start the bridge layer (python -m mnovs.bridge) unless it runs; return its pid.

    Args:
        python: interpreter to run it (default: this one); it must import pyroute2.
    """
    pid = bridge_pid()
    if pid:
        return pid
    argv = [python or sys.executable, '-m', 'mnovs.bridge', '--log-file', BRIDGE_LOG]
    if verbose:
        argv.append('--verbose')
    # Our own package first: the bridge layer forks vswitchds from the code
    # that started it, whatever the caller's working directory.
    env = dict(os.environ, PYTHONPATH=PROJECT_ROOT)
    with open(BRIDGE_LOG, 'ab') as log:
        proc = subprocess.Popen(argv, env=env, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if proc.returncode == 0 and bridge_pid():
                return bridge_pid()       # another one started meanwhile: use it
            raise CtlError(f'the bridge layer exited with status {proc.returncode}; '
                           f'see {BRIDGE_LOG}')
        if daemon.live_pid(BRIDGE_PIDFILE) == proc.pid:
            return proc.pid
        time.sleep(0.02)
    raise CtlError(f'the bridge layer did not start in {START_TIMEOUT:.0f} s; see {BRIDGE_LOG}')


def stop_bridge_layer():
    """Stop the bridge layer; its vswitchds keep running (a restart adopts them)."""
    pid = bridge_pid()
    if pid:
        process.stop_pids([pid])
        process.remove_file(BRIDGE_PIDFILE)


def vswitchd_pids():
    """{bridge name: pid} of the live vswitchds of ours that have a pid file."""
    own = {os.path.basename(BRIDGE_PIDFILE), os.path.basename(OVSDB_PIDFILE)}
    found = {}
    try:
        entries = os.listdir(paths.RUN_DIR)
    except FileNotFoundError:
        return found
    for entry in entries:
        if entry.endswith('.pid') and entry not in own:
            name = entry[:-len('.pid')]
            pid = process.pid_if_ours(paths.pid_path(name), VSWITCHD_MARKERS)
            if pid and pid != bridge_pid():
                found[name] = pid
    return found


def stop_vswitchds():
    """Stop every vswitchd of ours (by pid file), all at once; return their names."""
    found = vswitchd_pids()
    process.stop_pids(found.values())
    return sorted(found)


def ensure_running(python=None):
    """Start whatever of ovsdb-server and the bridge layer is not running."""
    start_ovsdb()
    start_bridge_layer(python)


@contextlib.contextmanager
def stopped_afterwards():
    """Stop mnovs's daemons (and the vswitchds they left) when the block ends,
    unless they were running when it began: for tests, demos and benchmarks,
    which must leave the machine as they found it."""
    had_ovsdb, had_bridge_layer = ovsdb_pid(), bridge_pid()
    switches_before = set(vswitchd_pids().values())
    try:
        yield
    finally:
        if not had_bridge_layer:
            stop_bridge_layer()
            # The bridge layer leaves its switches running: stop those the
            # block's bridge layer started, by pid, and no other.
            process.stop_pids([pid for pid in vswitchd_pids().values()
                               if pid not in switches_before])
        if not had_ovsdb:
            stop_ovsdb()


def status_lines():
    lines = []
    for name, pid in (('ovsdb-server', ovsdb_pid()), ('mnovs-bridge', bridge_pid())):
        lines.append(f'{name} is running with pid {pid}' if pid else f'{name} is not running')
    for name, pid in sorted(vswitchd_pids().items()):
        lines.append(f'vswitchd {name} is running with pid {pid}')
    return lines


def _run(argv, env=None):
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise CtlError(f'{argv[0]} {argv[1]} failed: {done.stderr.strip() or done.returncode}')
    return done.stdout


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='mnovs-ctl', description="Start or stop mnovs's ovsdb-server and bridge layer.")
    parser.add_argument('command', choices=('start', 'stop', 'restart', 'status'))
    parser.add_argument('-v', '--verbose', action='store_true',
                        help='debug logging in the bridge layer')
    args = parser.parse_args(argv)
    try:
        if args.command in ('stop', 'restart'):
            stop_bridge_layer()
            for name in stop_vswitchds():
                print(f'stopped vswitchd {name}')
            stop_ovsdb()
        if args.command in ('start', 'restart'):
            start_ovsdb()
            start_bridge_layer(verbose=args.verbose)
    except (CtlError, OSError) as err:
        print(f'mnovs-ctl: {err}', file=sys.stderr)
        return 1
    if args.command == 'status':
        print('\n'.join(status_lines()))
        return 0 if ovsdb_pid() and bridge_pid() else 3
    return 0


if __name__ == '__main__':
    sys.exit(main())
