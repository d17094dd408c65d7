"""Mininet plugin: PyOVSSwitch, one mnovs vswitchd process per switch.

    sudo mn --custom mnovs/switch.py --switch pyovs,failMode=standalone \\
        --controller none --topo tree,2,2 --test pingall

This file works two ways. As an `mn --custom` file it is exec'd with a fresh
globals dict: there is no `__file__` and no package, so it finds the project
root from its own code object (`co_filename`, which mn sets to this path)
and puts it on sys.path before importing the rest of mnovs. As a module it is
plain `from mnovs.switch import PyOVSSwitch`.

A switch is configured through mnovs's database, as Mininet's OVSSwitch
configures OVS. The class makes sure mnovs's ovsdb-server and bridge layer
run (mnovs.ovs_ctl, started on demand), then writes bridges, ports
(ofport_request = Mininet's port number), controllers (and ptcp:listenPort),
fail_mode, protocols and other_config:datapath-id with the real ovs-vsctl
(`vsctl()`); batchStartup and batchShutdown do all switches in one
ovs-vsctl transaction each, which returns once the bridge layer has forked
and configured every vswitchd. Tuning options become Bridge other_config
keys (mnovs.bridge_db.TUNING_KEYS).

The vswitchd runs with the project's venv Python (.venv/bin/python at the
project root) when there is one, else with the interpreter running Mininet.
It lives in the root namespace, opens a packet socket on each of the switch's
interfaces, and logs to /tmp/<name>-pyovs.log. It keeps OVS's run-time layout
in mnovs's run directory (mnovs.paths): pid file <name>.pid and control socket
<name>.<pid>.ctl, which speaks OVS's unixctl protocol (mnovs.unixctl). So
`dpctl dpctl/show` in Mininet's CLI and `OVS_RUNDIR=/var/run/mnovs ovs-appctl
-t s1 dpctl/show` reach the same commands. The file registers a Mininet
cleanup hook (`mn -c`) that deletes our bridges from our database and stops
our processes by their pid files, each checked to be ours first; the system's
OVS is never touched.
"""

import os
import shlex
import subprocess
import sys

from mininet.clean import addCleanupCallback
from mininet.log import error, info
from mininet.node import Switch


def _project_root():
    code_file = _project_root.__code__.co_filename
    return os.path.dirname(os.path.dirname(os.path.abspath(code_file)))


PROJECT_ROOT = _project_root()
if PROJECT_ROOT not in sys.path:
    sys.path.insert(0, PROJECT_ROOT)

from mnovs import ovs_ctl, paths, process, unixctl  # noqa: E402  (needs the sys.path above)

FAIL_MODES = ('secure', 'standalone')
ARG_MAX = 128000           # longest ovs-vsctl command line of a batch (as OVSSwitch.argmax)


def vswitchd_python():
    venv_python = os.path.join(PROJECT_ROOT, '.venv', 'bin', 'python')
    return venv_python if os.path.exists(venv_python) else sys.executable


class PyOVSSwitch(Switch):
    """An Open vSwitch-shaped switch in Python, one process per node."""

    def __init__(self, name, failMode='secure', protocols=None, flowLimit=10000,
                 maxIdle=10000, emcSize=8192, macAging=300, ringSlots=64,
                 controllerRateLimit=None, controllerBurstLimit=None, verbose=False,
                 batch=True, **params):
        """Init.
           name: name for the switch
           failMode: controller loss behaviour (secure|standalone)
           protocols: OpenFlow versions; pyovs speaks OpenFlow13 only
           flowLimit: most datapath megaflows (default 10000)
           maxIdle: megaflow idle expiry, ms (default 10000, as OVS)
           emcSize: microflow cache entries (default 8192)
           macAging: MAC learning aging time, seconds (default 300)
           ringSlots: receive ring slots per port, 68 KB each (default 64)
           controllerRateLimit: packet-ins per second to each controller (OVS's
                                controller_rate_limit; default none)
           controllerBurstLimit: packet-ins allowed in a burst (default rate/4)
           verbose: debug logging in /tmp/<name>-pyovs.log
           batch: start() queues for batchStartup, which net.start calls
                  (default True; False starts a switch on its own)
           dpid, listenPort: as for any Mininet switch"""
        if failMode not in FAIL_MODES:
            raise ValueError(f'{name}: failMode must be secure or standalone, not {failMode!r}')
        if protocols and 'OpenFlow13' not in protocols.split(','):
            raise ValueError(f'{name}: pyovs speaks OpenFlow13 only, not {protocols!r}')
        Switch.__init__(self, name, **params)
        self.failMode = failMode
        self.protocols = protocols
        self.tuning = {'flow_limit': flowLimit, 'max_idle': maxIdle, 'emc_size': emcSize,
                       'mac_aging': macAging, 'ring_slots': ringSlots}
        self.rate_limits = {'controller_rate_limit': controllerRateLimit,
                            'controller_burst_limit': controllerBurstLimit}
        self.verbose = verbose
        self.batch = batch
        self.commands = []      # ovs-vsctl words queued for batchStartup

    @classmethod
    def setup(cls):
        "Check that the vswitchd can run; say how to fix it if not."
        check = subprocess.run([vswitchd_python(), '-c', 'import pyroute2'],
                               capture_output=True, check=False)
        if check.returncode:
            error('*** pyovs needs pyroute2 for %s: run "make install" in %s\n'
                  % (vswitchd_python(), PROJECT_ROOT))
            sys.exit(1)

    # --- configuration through mnovs's database (as OVSSwitch) -------------

    def vsctl(self, *args):
        """Run ovs-vsctl on mnovs's database, as OVSSwitch.vsctl (queued while batching).

        Arguments are split as a shell would (OVSSwitch runs them through one),
        so `s1.vsctl('set bridge s1 fail_mode=secure')` works too.
        Returns:
            ovs-vsctl's output and errors as text (None when queued).
        """
        return self.run_vsctl([word for arg in args for word in shlex.split(str(arg))])

    def run_vsctl(self, words):
        "Run (or queue, while batching) ovs-vsctl with these exact words; return its output."
        if self.batch:
            self.commands.append(words)
            return None
        ensure_database()
        done = ovs_ctl.vsctl(*words)
        return done.stdout + done.stderr

    def bridge_command(self, controllers):
        """The ovs-vsctl words that (re)create this bridge, as OVSSwitch.start builds them."""
        targets = [(f'{self.name}{c.name}', f'{getattr(c, "protocol", "tcp")}:{c.IP()}:{c.port}')
                   for c in controllers]
        if self.listenPort:
            targets.append((f'{self.name}-listen', f'ptcp:{self.listenPort}'))
        limits = [f'{column}={value}' for column, value in self.rate_limits.items()
                  if value is not None]
        words = []
        for ident, target in targets:
            words += ['--', f'--id=@{ident}', 'create', 'Controller', f'target="{target}"',
                      *limits]
        words += ['--', '--if-exists', 'del-br', self.name, '--', 'add-br', self.name,
                  '--', 'set', 'bridge', self.name,
                  'controller=[%s]' % ','.join(f'@{ident}' for ident, _ in targets),
                  f'fail_mode={self.failMode}', f'other_config:datapath-id={self.dpid}']
        if self.protocols:
            words.append(f'protocols={self.protocols}')
        words += [f'other_config:{key}={value}' for key, value in self.other_config().items()]
        for intf in self.intfList():
            if intf.name != 'lo':
                words += ['--', 'add-port', self.name, intf.name, '--', 'set', 'interface',
                          intf.name, f'ofport_request={self.ports[intf]}']
        return words

    def other_config(self):
        "Bridge other_config keys for this switch's tuning options."
        keys = {'mnovs-flow-limit': self.tuning['flow_limit'],
                'mnovs-max-idle': self.tuning['max_idle'],
                'mnovs-emc-size': self.tuning['emc_size'],
                'mac-aging-time': self.tuning['mac_aging'],
                'mnovs-ring-slots': self.tuning['ring_slots']}
        if self.verbose:
            keys['mnovs-verbose'] = 'true'
        return keys

    def start(self, controllers):
        "Create this bridge in the database (or queue it for batchStartup)."
        int(self.dpid, 16)      # as OVSSwitch: a DPID must be hex
        out = self.run_vsctl(self.bridge_command(controllers))
        if out:
            error(f'*** {self.name}: {out}')
        return None

    @classmethod
    def batchStartup(cls, switches, run=None):
        "Create all queued bridges in one ovs-vsctl transaction; return those that run."
        ensure_database()
        words = []
        for switch in switches:
            for command in switch.commands:
                if words and sum(map(len, words)) + sum(map(len, command)) > ARG_MAX:
                    report_vsctl(ovs_ctl.vsctl(*words))
                    words = []
                words += command
            switch.commands = []
            switch.batch = False
        if words:
            report_vsctl(ovs_ctl.vsctl(*words))
        started = [s for s in switches if s.pid_vswitchd]
        for switch in switches:
            if switch not in started:
                switch.report_failure()
        return started

    def stop(self, deleteIntfs=True):
        "Delete this bridge from the database; the bridge layer stops its vswitchd."
        if ovs_ctl.ovsdb_pid():
            report_vsctl(ovs_ctl.vsctl('--if-exists', 'del-br', self.name))
        super().stop(deleteIntfs)

    @classmethod
    def batchShutdown(cls, switches, run=None):
        "Delete all these bridges in one ovs-vsctl transaction."
        words = []
        for switch in switches:
            words += ['--', '--if-exists', 'del-br', switch.name]
        if words and ovs_ctl.ovsdb_pid():
            report_vsctl(ovs_ctl.vsctl(*words))
        return switches

    def attach(self, intf):
        "Add a data port at run time (after net.addLink), as OVSSwitch.attach."
        intf = self.intf(intf) if isinstance(intf, str) else intf
        return info(self.run_vsctl(['add-port', self.name, intf.name, '--', 'set', 'interface',
                                    intf.name, f'ofport_request={self.ports[intf]}']))

    def detach(self, intf):
        "Remove a data port at run time."
        name = intf if isinstance(intf, str) else intf.name
        return info(self.run_vsctl(['del-port', self.name, name]))

    # --- the running vswitchd ------------------------------------------------

    @property
    def pid_vswitchd(self):
        return process.pid_if_ours(paths.pid_path(self.name), ovs_ctl.VSWITCHD_MARKERS)

    def ready(self):
        "Is the vswitchd running and answering on its control socket?"
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
           anything else (dump-flows, ...) is the OpenFlow view, via ovs-ofctl
           on the bridge's <name>.mgmt socket."""
        if not args:
            return 'usage: dpctl COMMAND [ARG...] (try dpctl list-commands)\n'
        if '/' in args[0] or args[0] == 'list-commands':
            return self.appctl(*args)
        argv = ['ovs-ofctl', '-O', 'OpenFlow13', args[0], self.name, *args[1:]]
        done = subprocess.run(argv, capture_output=True, text=True, check=False,
                              env=ovs_ctl.tool_env())
        return done.stdout + done.stderr


def ensure_database():
    "Start mnovs's ovsdb-server and bridge layer unless they run (cheap when they do)."
    try:
        ovs_ctl.ensure_running(python=vswitchd_python())
    except (ovs_ctl.CtlError, OSError) as err:
        error(f'*** pyovs: cannot start its database: {err}\n')
        raise


def report_vsctl(done):
    "Show what a failed (or complaining) ovs-vsctl said, as Mininet shows errRun's output."
    if done.returncode or done.stderr:
        error(f'*** ovs-vsctl (exit {done.returncode}): {done.stderr.strip()}\n')


def cleanup():
    """Mininet's cleanup hook (mn -c): delete the bridges of mnovs's own database, stop
    mnovs's processes (bridge layer, vswitchds, ovsdb-server) by the pids in their locked
    pid files, each checked to be ours by its command line, and remove their files.
    Nothing is looked up or killed by name, and the system's OVS is not touched."""
    if ovs_ctl.ovsdb_pid():
        bridges = ovs_ctl.vsctl('list-br', wait=False).stdout.split()
        if bridges:
            info(f'*** Deleting pyovs bridges {" ".join(bridges)}\n')
            report_vsctl(ovs_ctl.vsctl(*[word for bridge in bridges for word in
                                         ('--', '--if-exists', 'del-br', bridge)], wait=False))
    ovs_ctl.stop_bridge_layer()
    for name in ovs_ctl.stop_vswitchds():
        info(f'*** Stopped stale pyovs vswitchd {name}\n')
    ovs_ctl.stop_ovsdb()
    if os.path.isdir(paths.RUN_DIR):
        for entry in os.listdir(paths.RUN_DIR):
            name, ext = os.path.splitext(entry)
            if ext == '.pid' and name not in ('ovsdb-server', 'mnovs-bridge'):
                paths.remove_switch_files(name)


addCleanupCallback(cleanup)

switches = {'pyovs': PyOVSSwitch}
