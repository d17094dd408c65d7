"""Mininet plugin: PyOVSSwitch runs one mnovs vswitchd process per switch.

    sudo mn --custom mnovs/switch.py --switch pyovs,failMode=standalone \\
        --controller none --topo tree,2,2 --test pingall

This file works two ways. As an `mn --custom` file it is exec'd with a fresh
globals dict: there is no `__file__` and no package, so it finds the project
root from its own code object (`co_filename`, which mn sets to this path)
and puts it on sys.path before importing the rest of mnovs. As a module it is
plain `from mnovs.switch import PyOVSSwitch`.

The vswitchd runs with the project's venv Python (.venv/bin/python at the
project root) when there is one, else with the interpreter running Mininet.
It lives in the root namespace, opens a packet socket on each of the switch's
interfaces, and logs to /tmp/<name>-pyovs.log. It keeps OVS's run-time layout
in mnovs's run directory (mnovs.paths): pid file <name>.pid and control socket
<name>.<pid>.ctl, which speaks OVS's unixctl protocol (mnovs.unixctl). So
`dpctl dpctl/show` in Mininet's CLI and `OVS_RUNDIR=/var/run/mnovs ovs-appctl
-t s1 dpctl/show` reach the same commands. A vswitchd exits by itself when the
Mininet process that started it is gone (--parent-pid). The file also
registers a Mininet cleanup hook that stops leftover vswitchds by the pids in
their pid files (each checked to be a live vswitchd first) and removes their
files.
"""

import os
import signal
import subprocess
import sys
import time

from mininet.clean import addCleanupCallback
from mininet.log import error, info
from mininet.node import Switch


def _project_root():
    code_file = _project_root.__code__.co_filename
    return os.path.dirname(os.path.dirname(os.path.abspath(code_file)))


PROJECT_ROOT = _project_root()
if PROJECT_ROOT not in sys.path:
    sys.path.insert(0, PROJECT_ROOT)

from mnovs import daemon, paths, unixctl  # noqa: E402  (needs the sys.path above)

STARTUP_TIMEOUT = 15.0     # seconds for a batch of vswitchds to come up
EXIT_TIMEOUT = 3.0         # seconds for a vswitchd to honour SIGTERM
FAIL_MODES = ('secure', 'standalone')


def vswitchd_python():
    venv_python = os.path.join(PROJECT_ROOT, '.venv', 'bin', 'python')
    return venv_python if os.path.exists(venv_python) else sys.executable


class PyOVSSwitch(Switch):
    """An Open vSwitch-shaped switch in Python, one process per node."""

    def __init__(self, name, failMode='secure', protocols=None, flowLimit=10000,
                 maxIdle=10000, emcSize=8192, macAging=300, ringSlots=64,
                 controllerRateLimit=None, controllerBurstLimit=None, verbose=False,
                 **params):
        """Init.
           name: name for the switch
           failMode: controller loss behaviour (secure|standalone)
           protocols: OpenFlow versions; pyovs speaks OpenFlow13 only
           flowLimit: most datapath megaflows (default 10000)
           maxIdle: megaflow idle expiry, ms (default 10000, as OVS)
           emcSize: microflow cache entries (default 8192)
           macAging: MAC learning aging time, seconds (default 300)
           ringSlots: receive ring slots per port, 68 KB each (default 64)
           controllerRateLimit: packet-ins/s per controller (default: no limit)
           controllerBurstLimit: packet-ins in a burst (default: rate/4)
           verbose: debug logging in /tmp/<name>-pyovs.log
           dpid, listenPort: as for any Mininet switch"""
        if failMode not in FAIL_MODES:
            raise ValueError(f'{name}: failMode must be secure or standalone, not {failMode!r}')
        if protocols and 'OpenFlow13' not in protocols.split(','):
            raise ValueError(f'{name}: pyovs speaks OpenFlow13 only, not {protocols!r}')
        params.pop('batch', None)       # Mininet's hint for batchStartup users
        Switch.__init__(self, name, **params)
        self.failMode = failMode
        self.protocols = protocols
        self.tuning = {'--flow-limit': flowLimit, '--max-idle': maxIdle,
                       '--emc-size': emcSize, '--mac-aging': macAging,
                       '--ring-slots': ringSlots,
                       '--controller-rate-limit': controllerRateLimit,
                       '--controller-burst-limit': controllerBurstLimit}
        self.verbose = verbose
        self.proc = None

    @classmethod
    def setup(cls):
        "Check that the vswitchd can run; say how to fix it if not."
        check = subprocess.run([vswitchd_python(), '-c', 'import pyroute2'],
                               capture_output=True, check=False)
        if check.returncode:
            error('*** pyovs needs pyroute2 for %s: run "make install" in %s\n'
                  % (vswitchd_python(), PROJECT_ROOT))
            sys.exit(1)

    @property
    def pid_vswitchd(self):
        return self.proc.pid if self.proc else None

    def vswitchd_argv(self, controllers):
        argv = [vswitchd_python(), '-m', 'mnovs.vswitchd', '--name', self.name,
                '--dpid', self.dpid, '--fail-mode', self.failMode,
                '--log-file', paths.log_path(self.name), '--parent-pid', str(os.getpid())]
        for intf in self.intfList():
            if intf.name != 'lo':
                argv += ['--port', f'{intf.name}={self.ports[intf]}']
        for controller in controllers:
            argv += ['--controller', f'tcp:{controller.IP()}:{controller.port}']
        if self.listenPort:
            argv += ['--listen', str(self.listenPort)]
        for option, value in self.tuning.items():
            if value is not None:
                argv += [option, str(value)]
        if self.verbose:
            argv.append('--verbose')
        return argv

    def start(self, controllers):
        "Start the vswitchd; batchStartup (or connected) waits for it."
        os.makedirs(paths.RUN_DIR, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=PROJECT_ROOT)
        with open(paths.log_path(self.name), 'ab') as log:
            self.proc = subprocess.Popen(
                self.vswitchd_argv(controllers), env=env, cwd=PROJECT_ROOT,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)   # Ctrl-C in the CLI must not kill switches

    @classmethod
    def batchStartup(cls, switches, run=None):
        "Wait for the vswitchds started by start() to answer; return those that do."
        deadline = time.monotonic() + STARTUP_TIMEOUT + 0.1 * len(switches)
        pending = [s for s in switches if s.proc is not None]
        started = []
        while pending and time.monotonic() < deadline:
            for switch in list(pending):
                if switch.ready() or switch.proc.poll() is not None:
                    pending.remove(switch)
                    if switch.ready():
                        started.append(switch)
                    else:
                        switch.report_failure()
            time.sleep(0.02)
        for switch in pending:
            error(f'*** {switch.name}: vswitchd did not come up in time\n')
            switch.report_failure()
        return started

    def ready(self):
        "Is the vswitchd running and answering on its control socket?"
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            ok, _ = unixctl.call(self.name, 'version', timeout=1.0)
        except OSError:
            return False
        return ok

    def connected(self):
        "Is the vswitchd up and, in secure mode, connected to a controller? (as OVSSwitch)"
        if not self.ready():
            return False
        if self.failMode == 'standalone':
            return True
        return 'is_connected: true' in self.appctl('ofproto/show')

    def report_failure(self):
        try:
            with open(paths.log_path(self.name), errors='replace') as log:
                tail = log.readlines()[-3:]
        except OSError:
            tail = []
        error(f'*** {self.name}: vswitchd failed; see {paths.log_path(self.name)}\n')
        for line in tail:
            error('    ' + line)

    def appctl(self, *args):
        "Run a control command on this switch's vswitchd, as ovs-appctl; return its text."
        try:
            _, out = unixctl.call(self.name, args[0], args[1:])
        except OSError as err:
            return f'{self.name}: vswitchd not reachable: {err.strerror or err}\n'
        return out

    def dpctl(self, *args):
        """Run a switch command, as OVSSwitch.dpctl.
           dpctl/..., ofproto/..., fdb/... go to the vswitchd's control socket;
           anything else (dump-flows, ...) is the OpenFlow view, via ovs-ofctl."""
        if not args:
            return 'usage: dpctl COMMAND [ARG...] (try dpctl list-commands)\n'
        if '/' in args[0] or args[0] == 'list-commands':
            return self.appctl(*args)
        if not self.listenPort:
            return "can't run an OpenFlow command without a passive listening port\n"
        argv = ['ovs-ofctl', '-O', 'OpenFlow13', args[0],
                f'tcp:127.0.0.1:{self.listenPort}', *args[1:]]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        return done.stdout + done.stderr

    def attach(self, intf):
        "Add a data port at run time (after net.addLink)."
        intf = self.intf(intf) if isinstance(intf, str) else intf
        info(self.appctl('dpctl/add-if', f'{intf.name}={self.ports[intf]}'))

    def detach(self, intf):
        "Remove a data port at run time."
        name = intf if isinstance(intf, str) else intf.name
        info(self.appctl('dpctl/del-if', name))

    def stop(self, deleteIntfs=True):
        "Stop the vswitchd (SIGTERM, then SIGKILL after EXIT_TIMEOUT) and clean up."
        self.request_exit()
        self.reap()
        super().stop(deleteIntfs)

    @classmethod
    def batchShutdown(cls, switches, run=None):
        "Stop many vswitchds in parallel."
        for switch in switches:
            switch.request_exit()
        for switch in switches:
            switch.reap()
        return switches

    def request_exit(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def reap(self):
        "Wait for the vswitchd to end (SIGKILL if it won't); remove its files."
        if self.proc is not None:
            try:
                self.proc.wait(EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        remove_runtime_files(self.name)


def remove_runtime_files(name):
    for path in (paths.pid_path(name), *paths.ctl_paths(name)):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def cleanup():
    "Mininet's cleanup hook: stop leftover vswitchds by their pid files, remove their files."
    if not os.path.isdir(paths.RUN_DIR):
        return
    for entry in os.listdir(paths.RUN_DIR):
        if not entry.endswith('.pid'):
            continue
        name = entry[:-len('.pid')]
        try:
            pid = daemon.read_pidfile(paths.pid_path(name))
        except OSError:         # stale: nobody holds it any more
            remove_runtime_files(name)
            continue
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                is_ours = b'mnovs.vswitchd' in f.read()
        except OSError:
            is_ours = False
        if not is_ours:
            continue            # another live daemon of this run directory: not ours to stop
        info(f'*** Stopping stale pyovs vswitchd {name} (pid {pid})\n')
        os.kill(pid, signal.SIGTERM)
        remove_runtime_files(name)


addCleanupCallback(cleanup)

switches = {'pyovs': PyOVSSwitch}
