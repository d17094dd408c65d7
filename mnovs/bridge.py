"""The bridge layer: keeps one vswitchd per Bridge row in line with the database.

    python -m mnovs.bridge --log-file /tmp/mnovs-bridge.log    (mnovs-ctl starts it)

The mirror of ovs-vswitchd's vswitchd/bridge.c, with one difference: each
bridge runs in a process of its own. This process watches mnovs's
ovsdb-server through OVS's Python IDL and, on every change (bridge_run ->
bridge_reconfigure):

1. stops the vswitchd of every bridge that left the database (SIGTERM by pid);
2. forks a vswitchd for every new bridge -- all of a transaction's bridges
   first, then configures them in parallel. The children are forked from this
   warm process, which has imported mnovs.vswitchd and everything under it, so
   a switch starts in milliseconds and shares the parent's pages
   (gc.freeze() keeps the garbage collector from touching, hence copying,
   them);
3. sends each bridge whose desired state changed its whole state
   (`bridge/apply JSON`, mnovs.bridge_db.desired_state);
4. reads `bridge/status` and writes what ovs-vswitchd writes: Interface
   ofport, ifindex, mac_in_use, link_state, admin_state, error, statistics;
   Bridge datapath_id; and Open_vSwitch cur_cfg = next_cfg, so that
   `ovs-vsctl` (without --no-wait) returns once the change is live.

Status is refreshed every STATS_INTERVAL seconds as OVS refreshes statistics.

Invariants: a Vswitchd's `applied` is the last state it accepted (None: send
it again); the bridge layer owns no switch state that is not in the database,
so it can be killed and restarted at any time. At start it adopts the
vswitchds that still run (pid file in the run dir naming a live process
forked by a bridge layer) and re-applies their state; bridges whose process
is gone are forked again, and so is a vswitchd that dies (after a back-off if
it keeps dying). A vswitchd that lacks bridge/apply or does not answer is
logged and retried at the next status refresh; cur_cfg still advances, as
ovs-vswitchd's does when a port fails.
"""

import argparse
import gc
import importlib
import json
import logging
import os
import signal
import socket
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import ovs.db.idl
import ovs.poller

from mnovs import bridge_db, daemon, ovs_ctl, paths, process, unixctl
from mnovs import vswitchd as vswitchd_main   # imported here so forked children start warm

log = logging.getLogger('mnovs.bridge')

STATS_INTERVAL = 5.0        # seconds between status refreshes, as OVS's statistics
READY_TIMEOUT = 15.0        # seconds a new vswitchd gets to open its control socket
CALL_TIMEOUT = 10.0         # seconds for one control command
RESTART_BACKOFF = (0.0, 1.0, 2.0, 5.0, 10.0)  # seconds before restarting a vswitchd that died
PARALLEL_CALLS = 16         # control commands in flight at once

COLUMNS = {
    'Open_vSwitch': ['bridges', 'next_cfg', 'cur_cfg'],
    'Bridge': ['name', 'ports', 'controller', 'fail_mode', 'protocols', 'other_config',
               'datapath_id', 'sflow', 'status'],
    'sFlow': ['agent', 'targets', 'sampling', 'polling', 'header'],
    'Port': ['name', 'interfaces', 'bond_mode', 'lacp', 'bond_updelay', 'bond_downdelay',
             'other_config'],
    'Interface': ['name', 'type', 'options', 'ofport_request', 'ofport', 'ifindex',
                  'mac_in_use', 'link_state', 'admin_state', 'error', 'statistics'],
    'Controller': ['target', 'controller_rate_limit', 'controller_burst_limit',
                   'is_connected', 'role', 'status'],
}


def call_vswitchd(name, method, *params, timeout=CALL_TIMEOUT):
    """Run one control command on bridge `name`'s vswitchd: the only unixctl call here.

    Returns:
        (ok, text) as the vswitchd replied.
    Raises:
        OSError: nobody answers on its control socket (yet).
    """
    return unixctl.call(name, method, params, timeout)


class Vswitchd:
    """One bridge's switch process, as the bridge layer knows it."""

    __slots__ = ('name', 'pid', 'argv', 'applied', 'started', 'deaths', 'restart_at',
                 'unsupported')

    def __init__(self, name, pid, argv):
        self.name = name
        self.pid = pid
        self.argv = argv
        self.applied = None         # last desired state the vswitchd accepted
        self.started = time.monotonic()
        self.deaths = 0             # quick deaths in a row, for the back-off
        self.restart_at = 0.0
        self.unsupported = False    # the vswitchd has no bridge/apply (logged once)


class BridgeLayer:
    """The IDL, the vswitchds, and the loop that keeps them in line."""

    def __init__(self, remote=ovs_ctl.DB_REMOTE, schema=ovs_ctl.SCHEMA,
                 switch_main=vswitchd_main.main):
        self.switch_main = switch_main      # what a forked child runs: main(argv) -> status
        helper = ovs.db.idl.SchemaHelper(location=schema)
        for table, columns in COLUMNS.items():
            helper.register_columns(table, columns)
        self.idl = ovs.db.idl.Idl(remote, helper)
        self.switches = {}          # bridge name -> Vswitchd
        self.seen_seqno = None
        self.dirty = True           # something outside the IDL changed (a death)
        self.adopted = False
        self.next_stats = 0.0
        self.stop_reason = None
        self.wakeup_reader, self.wakeup_writer = socket.socketpair()
        for sock in (self.wakeup_reader, self.wakeup_writer):
            sock.setblocking(False)

    # --- loop ----------------------------------------------------------------

    def install_signals(self):
        """SIGTERM/SIGINT end the loop; SIGCHLD wakes it to reap and restart."""
        signal.set_wakeup_fd(self.wakeup_writer.fileno())
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)

    def _on_stop(self, signum, frame):
        self.stop_reason = signal.Signals(signum).name

    def run(self):
        while self.stop_reason is None:
            self.idl.run()
            self.reap_children()
            now = time.monotonic()
            if self.idl.has_ever_connected() and self.idl.change_seqno != self.seen_seqno:
                self.seen_seqno = self.idl.change_seqno
                self.dirty = True
            if any(s.pid is None and s.restart_at <= now for s in self.switches.values()):
                self.dirty = True       # a restart's back-off is over
            if self.dirty and self.seen_seqno is not None:
                self.dirty = False
                self.reconfigure()
            elif now >= self.next_stats and self.seen_seqno is not None:
                self.refresh_status(list(self.switches.values()), retry=True)
                self.check_adopted()
                self.next_stats = time.monotonic() + STATS_INTERVAL
            poller = ovs.poller.Poller()
            self.idl.wait(poller)
            poller.fd_wait(self.wakeup_reader, ovs.poller.POLLIN)
            poller.timer_wait(int(1000 * max(0.0, min(self._next_timer(), 1.0))))
            poller.block()
            self._drain_wakeup()

    def _next_timer(self):
        now = time.monotonic()
        pending = [s.restart_at for s in self.switches.values() if s.pid is None]
        return min([self.next_stats] + pending) - now

    def _drain_wakeup(self):
        try:
            while self.wakeup_reader.recv(64):
                pass
        except BlockingIOError:
            pass

    # --- reconfiguration -------------------------------------------------------

    def bridge_rows(self):
        return {row.name: row for row in self.idl.tables['Bridge'].rows.values()}

    def reconfigure(self):
        """Make the vswitchds match the database, then write status and cur_cfg."""
        ovs_row = self._ovs_row()
        next_cfg = ovs_row.next_cfg if ovs_row else None
        rows = self.bridge_rows()
        if not self.adopted:
            self.adopt(rows)
        gone = [self.switches.pop(name) for name in list(self.switches) if name not in rows]
        self.stop(gone)
        wanted = {}     # name -> (argv, desired state, warnings about the argv)
        sub_ids = bridge_db.sflow_sub_ids(rows)
        for name, row in rows.items():
            argv, warnings = bridge_db.vswitchd_argv(name, row.other_config)
            wanted[name] = (argv, bridge_db.desired_state(row, sub_ids.get(name, 0)), warnings)
        restart = [s for name, s in self.switches.items()
                   if s.pid is not None and s.argv != wanted[name][0]]
        self.stop(restart)
        for switch in restart:
            log.info('%s: tuning changed, restarting its vswitchd', switch.name)
            switch.pid = None
        t0 = time.monotonic()
        self.start([name for name in wanted if self._needs_start(name)], wanted)
        todo = [(s, wanted[name][1]) for name, s in self.switches.items()
                if s.pid is not None and s.applied != wanted[name][1]]
        t1 = time.monotonic()
        with ThreadPoolExecutor(PARALLEL_CALLS) as pool:
            statuses = list(pool.map(lambda job: self.configure(*job), todo))
        t2 = time.monotonic()
        self.write_status(dict(statuses), next_cfg)
        if todo or gone:
            log.info('reconfigured: %d applied, %d stopped; fork %.2f s, apply %.2f s, '
                     'status %.2f s', len(todo), len(gone), t1 - t0, t2 - t1,
                     time.monotonic() - t2)
        self.next_stats = time.monotonic() + STATS_INTERVAL

    def _ovs_row(self):
        return next(iter(self.idl.tables['Open_vSwitch'].rows.values()), None)

    def _needs_start(self, name):
        switch = self.switches.get(name)
        return switch is None or (switch.pid is None and time.monotonic() >= switch.restart_at)

    def adopt(self, rows):
        """At the first reconfiguration: take over the vswitchds a previous bridge layer forked."""
        self.adopted = True
        for name in rows:
            pid = process.pid_if_ours(paths.pid_path(name), ovs_ctl.BRIDGE_MARKERS)
            if pid and pid != os.getpid():
                argv, _ = bridge_db.vswitchd_argv(name, rows[name].other_config)
                self.switches[name] = Vswitchd(name, pid, argv)
                log.info('%s: adopted running vswitchd (pid %d)', name, pid)
        leftovers = [pid for name, pid in ovs_ctl.vswitchd_pids().items()
                     if name not in rows and process.is_ours(pid, ovs_ctl.BRIDGE_MARKERS)]
        if leftovers:
            log.info('stopping %d vswitchds of bridges no longer configured', len(leftovers))
            process.stop_pids(leftovers)

    def start(self, names, wanted):
        """Fork a vswitchd for each bridge in `names` (all before configuring any)."""
        if not names:
            return
        gc.collect()
        gc.freeze()     # children share these pages; keep GC from writing to them
        for name in names:
            argv, _, warnings = wanted[name]
            for warning in warnings:        # once per start, not per reconfiguration
                log.warning('%s', warning)
            pid = self.fork_vswitchd(argv)
            old = self.switches.get(name)
            switch = Vswitchd(name, pid, argv)
            if old is not None:
                switch.deaths = old.deaths
            self.switches[name] = switch
        log.info('forked %d vswitchds: %s', len(names), ' '.join(names[:10]) +
                 (' ...' if len(names) > 10 else ''))

    def fork_vswitchd(self, argv):
        """Fork; the child becomes a vswitchd (mnovs.vswitchd.main(argv)) and never returns."""
        pid = os.fork()
        if pid:
            return pid
        status = 1
        try:
            os.setsid()     # signals to the bridge layer's group are not for switches
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            self.idl.close()
            self.wakeup_reader.close()
            self.wakeup_writer.close()
            for handler in logging.root.handlers[:]:
                logging.root.removeHandler(handler)
                handler.close()
            status = self.switch_main(argv)
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:       # whatever happens, never return into the parent's loop
            traceback.print_exc()
        finally:
            os._exit(status or 0)

    def stop(self, switches):
        """Stop these vswitchds (SIGTERM all, then wait); remove their pid files."""
        pids = [s.pid for s in switches if s.pid is not None]
        if pids:
            process.stop_pids(pids)
        for switch in switches:
            if switch.pid is not None:
                log.info('%s: stopped vswitchd (pid %d)', switch.name, switch.pid)
                # One that had died first (SIGKILL) could not remove its own files.
                paths.remove_switch_files(switch.name)
            switch.pid = None

    def configure(self, switch, state):
        """Wait for a vswitchd's control socket, apply `state`, read its status (in a thread).

        Returns:
            (name, status dict or None)
        """
        deadline = switch.started + READY_TIMEOUT
        document = json.dumps(state, separators=(',', ':'))
        while True:
            try:
                ok, text = call_vswitchd(switch.name, 'bridge/apply', document)
                break
            except OSError as err:
                if time.monotonic() >= deadline or switch.pid is None:
                    log.warning('%s: vswitchd does not answer (%s); will retry', switch.name,
                                err.strerror or err)
                    return switch.name, None
                time.sleep(0.01)
        if ok:
            switch.applied = state
            switch.unsupported = False
        elif 'not a valid command' in text:
            if not switch.unsupported:
                log.warning('%s: vswitchd has no bridge/apply; will retry', switch.name)
            switch.unsupported = True
        else:
            # Our document was refused: resending it would fail again.
            log.error('%s: bridge/apply refused: %s', switch.name, text)
            switch.applied = state
        return switch.name, self.read_status(switch)

    def read_status(self, switch):
        try:
            ok, text = call_vswitchd(switch.name, 'bridge/status')
            if ok:
                return json.loads(text)
            if not switch.unsupported:
                log.warning('%s: bridge/status failed: %s', switch.name, text)
        except OSError as err:
            log.info('%s: bridge/status: %s', switch.name, err.strerror or err)
        except ValueError:
            log.warning('%s: bridge/status reply is not JSON', switch.name)
        return None

    def refresh_status(self, switches, retry=False):
        """Read every switch's status (re-applying where that failed) and write it."""
        rows = self.bridge_rows()
        live = [s for s in switches if s.pid is not None and s.name in rows]
        retry_jobs = [s for s in live if retry and s.applied is None]
        sub_ids = bridge_db.sflow_sub_ids(rows)
        with ThreadPoolExecutor(PARALLEL_CALLS) as pool:
            results = list(pool.map(lambda s: (s.name, self.read_status(s)),
                                    [s for s in live if s not in retry_jobs]))
            results += list(pool.map(
                lambda s: self.configure(s, bridge_db.desired_state(rows[s.name],
                                                                    sub_ids.get(s.name, 0))),
                retry_jobs))
        self.write_status(dict(results), None)

    # --- status write-back -------------------------------------------------------

    def write_status(self, statuses, next_cfg):
        """One transaction: status columns of these bridges, and cur_cfg = next_cfg."""
        txn = ovs.db.idl.Transaction(self.idl)
        changed = False
        rows = self.bridge_rows()
        for name, status in statuses.items():
            if status is None or name not in rows:
                continue
            bridge = rows[name]
            changed |= _set_columns(bridge, bridge_db.bridge_columns(status))
            ports = status.get('ports', {})
            for port in bridge.ports:
                for iface in port.interfaces:
                    if iface.name in ports:
                        changed |= _set_columns(
                            iface, bridge_db.interface_columns(ports[iface.name]))
            controllers = status.get('controllers', {})
            for controller in bridge.controller:
                if controller.target in controllers:
                    changed |= _set_columns(controller, bridge_db.controller_columns(
                        controllers[controller.target]))
        ovs_row = self._ovs_row()
        if next_cfg is not None and ovs_row is not None and ovs_row.cur_cfg != next_cfg:
            ovs_row.cur_cfg = next_cfg
            changed = True
        if not changed:
            txn.abort()
            return
        result = txn.commit_block()
        if result not in (ovs.db.idl.Transaction.SUCCESS, ovs.db.idl.Transaction.UNCHANGED):
            # A concurrent change (TRY_AGAIN) brings a new reconfiguration anyway.
            log.info('status write: %s %s', ovs.db.idl.Transaction.status_to_string(result),
                     txn.get_error() or '')
            self.dirty = True

    # --- process supervision -------------------------------------------------------

    def reap_children(self):
        """Reap dead children; schedule their restart."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._lost(pid)

    def check_adopted(self):
        """Adopted vswitchds are not our children: notice their death by polling."""
        for switch in list(self.switches.values()):
            if switch.pid is not None and not process.is_alive(switch.pid):
                self._lost(switch.pid)

    def _lost(self, pid):
        for switch in self.switches.values():
            if switch.pid == pid:
                quick = time.monotonic() - switch.started < RESTART_BACKOFF[-1]
                switch.deaths = switch.deaths + 1 if quick else 0
                delay = RESTART_BACKOFF[min(switch.deaths, len(RESTART_BACKOFF) - 1)]
                log.warning('%s: vswitchd (pid %d) died; restarting in %.0f s',
                            switch.name, pid, delay)
                # A killed process leaves its files; the next one must not meet them.
                paths.remove_switch_files(switch.name)
                switch.pid = None
                switch.applied = None
                switch.restart_at = time.monotonic() + delay
                self.dirty = True
                return

    def close(self):
        self.idl.close()
        self.wakeup_reader.close()
        self.wakeup_writer.close()


def _set_columns(row, columns):
    """Write the columns of `row` whose value differs; return whether any did."""
    changed = False
    for column, value in columns.items():
        if getattr(row, column) != value:
            setattr(row, column, value)
            changed = True
    return changed


def main(argv=None):
    parser = argparse.ArgumentParser(prog='mnovs-bridge',
                                     description="mnovs's bridge layer (see mnovs-ctl)")
    parser.add_argument('--db', default=ovs_ctl.DB_REMOTE, help='OVSDB remote')
    parser.add_argument('--pidfile', default=ovs_ctl.BRIDGE_PIDFILE)
    parser.add_argument('--log-file', default=None, help='log file (default: stderr)')
    parser.add_argument('--vswitchd', default=None, metavar='MODULE:FUNCTION',
                        help='what a forked switch runs (default mnovs.vswitchd:main; tests)')
    parser.add_argument('-v', '--verbose', action='store_true')
    args = parser.parse_args(argv)
    switch_main = vswitchd_main.main
    if args.vswitchd:
        module, _, function = args.vswitchd.partition(':')
        switch_main = getattr(importlib.import_module(module), function)
    logging.basicConfig(filename=args.log_file,
                        level=logging.DEBUG if args.verbose else logging.INFO,
                        format='%(asctime)s %(name)s %(levelname)s %(message)s')
    os.makedirs(paths.RUN_DIR, exist_ok=True)
    # Two bridge layers would both fork switches for every bridge: the pid
    # file's lock lets only one run.
    try:
        pidfile = daemon.Pidfile(args.pidfile)
    except FileExistsError as err:
        log.info('a bridge layer runs already: %s', err.strerror)
        return 0
    layer = BridgeLayer(args.db, switch_main=switch_main)
    layer.install_signals()
    log.info('bridge layer started (pid %d), database %s', os.getpid(), args.db)
    try:
        layer.run()
        log.info('bridge layer stopping on %s; vswitchds keep running', layer.stop_reason)
    finally:
        layer.close()
        pidfile.remove()
    return 0


if __name__ == '__main__':
    sys.exit(main())
