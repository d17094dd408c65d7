"""Shared plumbing for the benchmark scripts in experiments/.

bench_switches.py and scale_linear.py build the same kind of Mininet network
on several switch implementations in one run and compare them. What they
share lives here, so that each script reads as its measurement and nothing
else:

- which switches exist and how to build them (`switch_spec`): pyovs
  (PyOVSSwitch, standalone), OVS (kernel datapath when the openvswitch module
  exists, else the userspace datapath) and the Linux bridge;
- the OVS daemons (`ovs_daemons`): started with ovs-ctl if they are not
  running, and stopped again only if we started them;
- lifetimes: `running_net` stops every network, `background` stops every
  process it started, and `ryu_controller` stops the Ryu it started, even
  on an error, Ctrl-C or SIGTERM (`run`).
  Cleanup defers further Ctrl-C (`deferred_signals`) so that a second
  impatient Ctrl-C cannot leave veths or switches behind.
  every process is stopped by its own pid, every net by its own stop();
- small readers (`rss_mb`, `pss_mb`, `pid_alive`) and output (`print_table`,
  `write_csv`, `median`).

The scripts must run as root with a Python that sees Mininet and mnovs, such
as the project venv: `.venv/bin/python experiments/<script>.py`.
"""

import contextlib
import csv
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial

from mininet.net import Mininet
from mininet.node import OVSSwitch, RemoteController
from mininet.nodelib import LinuxBridge

OVS_CTL = '/usr/share/openvswitch/scripts/ovs-ctl'
# Ryu 4.34 through the project's launcher (see mnovs/ryu_launcher.py).
RYU = os.path.join(os.path.dirname(sys.executable), 'mnovs-ryu')
SWITCH_KINDS = ('pyovs', 'ovs', 'bridge')


def run(main):
    """Run a benchmark's main() as root; exit cleanly on Ctrl-C or SIGTERM.

    SIGTERM unwinds the stack like Ctrl-C, so every cleanup block runs.
    """
    if os.geteuid() != 0:
        sys.exit('%s: must run as root (Mininet needs it)' % sys.argv[0])
    from mnovs import ovs_ctl       # imported late, as mnovs.switch is (switch_spec)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with ovs_ctl.stopped_afterwards():     # pyovs's database, started on first use
            main()
    except KeyboardInterrupt:
        sys.exit('interrupted; networks and processes stopped')


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt('signal %d' % signum)


@contextlib.contextmanager
def deferred_signals():
    """Hold SIGINT and SIGTERM while cleaning up; deliver them afterwards."""
    caught = []
    handlers = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handlers[signum] = signal.signal(
            signum, lambda num, frame: caught.append(num))
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        if caught:
            raise KeyboardInterrupt('signal %d during cleanup' % caught[0])


# --- OVS --------------------------------------------------------------------

def ovs_kernel_available():
    """Return True if the openvswitch kernel module is loaded or loadable."""
    if os.path.isdir('/sys/module/openvswitch'):
        return True
    probe = subprocess.run(['modprobe', '-n', 'openvswitch'],
                           capture_output=True)
    return probe.returncode == 0


def ovs_running():
    """Return True if ovsdb-server answers ovs-vsctl."""
    probe = subprocess.run(['ovs-vsctl', '-t', '1', 'show'],
                           capture_output=True)
    return probe.returncode == 0


@contextlib.contextmanager
def ovs_daemons(needed=True):
    """Ensure the OVS daemons run for the duration of the block.

    Args:
        needed: when False, do nothing (no OVS switch in this run).
    Side effects: runs `ovs-ctl start` if the daemons were down, and
    `ovs-ctl stop` on exit in that case only.
    """
    started = False
    if needed and not ovs_running():
        print('starting OVS daemons: %s start --system-id=random' % OVS_CTL)
        subprocess.run([OVS_CTL, 'start', '--system-id=random'],
                       check=True, capture_output=True)
        started = True
    try:
        yield
    finally:
        if started:
            with deferred_signals():
                print('stopping the OVS daemons we started: %s stop'
                      % OVS_CTL)
                subprocess.run([OVS_CTL, 'stop'], capture_output=True)


# --- switch kinds -----------------------------------------------------------

class SwitchSpec:
    """How to build one kind of switch for a benchmark.

    Attributes:
        kind: short name used on the command line (pyovs, ovs, bridge).
        label: name printed in tables and CSVs, e.g. ovs-user.
        factory: the `switch=` argument for Mininet, or None if unavailable.
        tx_off: True if hosts must run `ethtool -K <intf> tx off` to carry
            TCP or UDP through this switch (OVS userspace datapath).
        needs_ovs: True if the OVS daemons must run.
        error: why the switch is unavailable, else ''.
    """

    __slots__ = ('kind', 'label', 'factory', 'tx_off', 'needs_ovs', 'error')

    def __init__(self, kind, label, factory, tx_off=False, needs_ovs=False,
                 error=''):
        self.kind = kind
        self.label = label
        self.factory = factory
        self.tx_off = tx_off
        self.needs_ovs = needs_ovs
        self.error = error


def switch_spec(kind, ovs_datapath=None, fail_mode='standalone',
                protocols=None):
    """Return the SwitchSpec for kind.

    Args:
        kind: 'pyovs', 'ovs' or 'bridge'.
        ovs_datapath: for 'ovs', force 'user' or 'kernel'; None picks kernel
            when the openvswitch module is available, else user.
        fail_mode: failMode of pyovs and OVS, 'standalone' (a learning
            switch when no controller programs it) or 'secure' (only the
            controller's or ovs-ofctl's rules forward anything).
        protocols: OVS only, its OpenFlow versions, e.g. 'OpenFlow13';
            None keeps OVS's default.
    Returns:
        A SwitchSpec. For pyovs, factory is None and error says why if
        `mnovs.switch` does not import.
    """
    if kind == 'pyovs':
        try:
            from mnovs.switch import PyOVSSwitch
        except Exception as exc:  # any import-time failure of work in progress
            return SwitchSpec('pyovs', 'pyovs', None,
                              error='%s: %s' % (type(exc).__name__, exc))
        return SwitchSpec('pyovs', 'pyovs',
                          partial(PyOVSSwitch, failMode=fail_mode))
    if kind == 'ovs':
        if ovs_datapath is None:
            ovs_datapath = 'kernel' if ovs_kernel_available() else 'user'
        # batch=True is what `mn --switch ovs` gets from Mininet: one
        # ovs-vsctl call for all switches in batchStartup.
        factory = partial(OVSSwitch, failMode=fail_mode,
                          datapath=ovs_datapath, batch=True,
                          protocols=protocols)
        return SwitchSpec('ovs', 'ovs-' + ovs_datapath, factory,
                          tx_off=ovs_datapath == 'user', needs_ovs=True)
    if kind == 'bridge':
        return SwitchSpec('bridge', 'bridge', partial(LinuxBridge, stp=False))
    raise ValueError('unknown switch kind %r (choose from %s)'
                     % (kind, ', '.join(SWITCH_KINDS)))


def parse_kinds(text):
    """Parse a comma-separated list of switch kinds, keeping its order."""
    kinds = [k.strip() for k in text.split(',') if k.strip()]
    for kind in kinds:
        if kind not in SWITCH_KINDS:
            raise ValueError('unknown switch kind %r (choose from %s)'
                             % (kind, ', '.join(SWITCH_KINDS)))
    return kinds


def hosts_tx_off(hosts):
    """Turn off TX checksum offload on every interface of hosts."""
    for host in hosts:
        for intf in host.intfList():
            host.cmd('ethtool', '-K', intf, 'tx', 'off')


# --- lifetimes --------------------------------------------------------------

def _settle_shells(net):
    """Interrupt any node shell left mid-command by an exception."""
    for node in net.hosts + net.switches + net.controllers:
        if not (node.shell and node.waiting):
            continue
        node.sendInt()
        deadline = time.monotonic() + 3
        while node.waiting and time.monotonic() < deadline:
            node.monitor(timeoutms=200)
        node.waiting = False


@contextlib.contextmanager
def running_net(topo, switch, wait_connected=False, controller=None,
                **mininet_args):
    """Build and start a Mininet network; stop it however the block ends.

    Args:
        topo: a mininet Topo.
        switch: the switch factory (SwitchSpec.factory).
        wait_connected: wait for every switch's connected() after start.
        controller: Mininet's controller argument; None for no controller.
        mininet_args: further Mininet arguments (listenPort, autoSetMacs).
    Yields:
        (net, timings) where timings is a dict of seconds for 'build',
        'start' (net.start, which runs batchStartup) and 'ready'
        (waitConnected; 0 if not asked) and 'connected' (False if
        waitConnected gave up). running_net fills in 'stop' after stopping,
        so the caller reads it after the block.
    """
    net = Mininet(topo=topo, switch=switch, controller=controller,
                  build=False, **mininet_args)
    timings = {'build': 0.0, 'start': 0.0, 'ready': 0.0, 'stop': 0.0}
    try:
        t0 = time.monotonic()
        net.build()
        t1 = time.monotonic()
        net.start()
        t2 = time.monotonic()
        connected = net.waitConnected(timeout=60) if wait_connected else True
        t3 = time.monotonic()
        timings.update(build=t1 - t0, start=t2 - t1, ready=t3 - t2,
                       connected=connected)
        yield net, timings
    finally:
        with deferred_signals():
            _settle_shells(net)
            t0 = time.monotonic()
            net.stop()
            timings['stop'] = time.monotonic() - t0


@contextlib.contextmanager
def background(host, args):
    """Run args in host's namespace for the duration of the block.

    Yields the Popen (stdout and stderr are pipes, text mode). On exit the
    process is terminated, then killed if it lingers, and reaped.
    """
    proc = host.popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                      text=True)
    try:
        yield proc
    finally:
        with deferred_signals():
            stop_process(proc)


def stop_process(proc, grace=3.0):
    """Terminate proc (SIGTERM, then SIGKILL after grace seconds) and reap."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe:
            pipe.close()


def free_tcp_port():
    """Return a TCP port that nothing listens on now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def ryu_controller(app, timeout=20.0):
    """Run one Ryu app (mnovs-ryu) on a free port for the block.

    Args:
        app: the app module, e.g. 'ryu.app.simple_switch_13'.
        timeout: seconds for Ryu to start listening.
    Yields:
        A mininet RemoteController for Mininet's `controller` argument.
    Raises:
        RuntimeError: Ryu exited or did not listen in time (with the end
        of its log).
    Side effects: Ryu logs to a temporary file, removed at the end; the
    process is terminated (then killed) and reaped however the block ends.
    """
    port = free_tcp_port()
    with tempfile.TemporaryFile('w+') as log:
        proc = subprocess.Popen([RYU, '--ofp-tcp-listen-port', str(port), app],
                                stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout
            while not _tcp_listening(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = log.read()[-400:].strip()
                    raise RuntimeError('ryu %s did not listen on %d: %s'
                                       % (app, port, tail))
                time.sleep(0.1)
            yield RemoteController('c0', ip='127.0.0.1', port=port)
        finally:
            with deferred_signals():
                stop_process(proc)


def _tcp_listening(port):
    with socket.socket() as sock:
        return sock.connect_ex(('127.0.0.1', port)) == 0


def wait_listening(host, port, timeout=5.0):
    """Wait until a TCP socket listens on port in host's namespace.

    Returns:
        True if it listens before timeout seconds pass.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if host.cmd('ss', '-Hltn', 'sport = :%d' % port).strip():
            return True
        time.sleep(0.05)
    return False


# --- process readers --------------------------------------------------------

def pid_alive(pid):
    """Return True if pid names a process that is not a zombie."""
    try:
        with open('/proc/%d/status' % pid) as status:
            for line in status:
                if line.startswith('State:'):
                    return 'Z' not in line.split()[1]
    except FileNotFoundError:
        return False
    return True


def rss_mb(pid):
    """Return the resident set size of pid in MiB (VmRSS), or None."""
    return _proc_kb_field(pid, 'status', 'VmRSS')


def pss_mb(pid):
    """Return the proportional set size of pid in MiB (smaps_rollup), or None."""
    return _proc_kb_field(pid, 'smaps_rollup', 'Pss')


def _proc_kb_field(pid, name, field):
    """A kB field of /proc/PID/<name>, in MiB, or None if pid is gone."""
    try:
        with open('/proc/%d/%s' % (pid, name)) as lines:
            for line in lines:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


# --- output -----------------------------------------------------------------

def repeated_runs(specs, args, run_one):
    """run_one(spec, args, repeat) for --repeat rounds of every spec, OVS running if needed."""
    with ovs_daemons(any(spec.needs_ovs for spec in specs)):
        return [run_one(spec, args, repeat)
                for repeat in range(1, args.repeat + 1) for spec in specs]


def medians_by_switch(rows, labels, fields):
    """{label: its 'median' row}: the median of each field over a switch's runs."""
    medians = {}
    for label in labels:
        mine = [r for r in rows if r['switch'] == label]
        med = {'repeat': 'median', 'switch': label, 'note': ''}
        for field in fields:
            med[field] = median(r[field] for r in mine)
        medians[label] = med
    return medians


def median(values):
    """Median of the values that are not None; None if there are none."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(numerator, denominator):
    """numerator / denominator, or None if either is missing or zero."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def fmt(value, digits=2):
    """Format a number for a table; '-' for a missing value."""
    if value is None:
        return '-'
    if isinstance(value, float):
        return '%.*f' % (digits, value)
    return str(value)


def add_output_options(parser, csv_path, ovs_datapath=True):
    """The options every benchmark shares: --csv, --verbose, and --ovs-datapath."""
    if ovs_datapath:
        parser.add_argument('--ovs-datapath', choices=('auto', 'user', 'kernel'),
                            default='auto',
                            help='OVS datapath (default: kernel if available)')
    parser.add_argument('--csv', default=csv_path, help='CSV output path')
    parser.add_argument('--verbose', action='store_true', help="show Mininet's info log")


def print_table(headers, rows):
    """Print rows (lists of strings) under headers, columns aligned."""
    widths = [max(len(str(cell)) for cell in column)
              for column in zip(headers, *rows)]
    line = '  '.join('%-*s' if i == 0 else '%*s'
                     for i in range(len(headers)))
    print(line % tuple(x for pair in zip(widths, headers) for x in pair))
    print('  '.join('-' * w for w in widths))
    for row in rows:
        print(line % tuple(x for pair in zip(widths, row) for x in pair))


def _csv_cell(value):
    if value is None:
        return ''
    if isinstance(value, float):
        return round(value, 4)
    return value


def write_csv(path, fieldnames, rows):
    """Write rows (dicts) to path as CSV, creating its directory."""
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, 'w', newline='') as out:
        writer = csv.DictWriter(out, fieldnames=fieldnames,
                                extrasaction='ignore')
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    print('wrote %s' % path)
