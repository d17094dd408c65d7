"""vswitchd: one switch process, a single poll loop over everything it serves.

    python -m mnovs.vswitchd --name s1 --port s1-eth1=1 --port s1-eth2=2 \\
        --fail-mode standalone

The process owns a Datapath (mnovs.dp) and the slow path above it, and polls:
- the packet socket of every port, handled by Datapath.port_input;
- the UDP socket of every tunnel endpoint, once however many tunnel ports
  share it, handled by Datapath.tunnel_input (dp/vxlan.py);
- a rtnetlink socket (LinkMonitor) for link up/down and removed interfaces;
- the control socket (unixctl), for ovs-appctl and Mininet's dpctl;
and runs housekeeping once a second (megaflow expiry, MAC aging).

Above the datapath runs the OpenFlow agent (mnovs.ofagent.ofproto): active
connections to every --controller, a passive listener on --listen, the
bridge's management socket <run dir>/<name>.mgmt (punix, always there: it is
where `ovs-ofctl dump-flows <name>` connects when OVS_RUNDIR is the run dir),
and the fail mode: with no controller connected, `standalone` forwards with
NORMAL learning and `secure` keeps its flow tables (empty at start, so it
drops).

The command line gives the first configuration. The bridge layer replaces
it, live, with `bridge/apply JSON` and reads `bridge/status`
(mnovs.bridge_state); the methods that command uses are the public ones
below: add_port, del_port, set_controllers, set_fail_mode, set_datapath_id.

Port numbers are the same in the datapath and in OpenFlow. The port named
like the bridge, an internal (TAP) port, is LOCAL: OFPP_LOCAL, 0xfffffffe,
in both (dp/datapath.py LOCAL_PORT). A bond (add_bond) is an OpenFlow port
with no datapath port of that number: its members are datapath ports
numbered from MEMBER_PORT_BASE up, which OpenFlow does not see (bond.py).

It stops on SIGTERM (from the bridge layer, mnovs/bridge.py, which forked
it), SIGINT or the `exit` command, and then removes its control socket,
management socket and pid file.
"""

import argparse
import logging
import os
import selectors
import signal
import socket
import sys
import time

from mnovs import dpctl, paths
from mnovs.bridge_state import BridgeState
from mnovs.daemon import Pidfile
from mnovs.dp.datapath import LOCAL_PORT, UPCALL_QUEUE_LEN
from mnovs.linkmon import LinkMonitor
from mnovs.ofagent.bond import MEMBER_PORT_BASE
from mnovs.ofagent.mac_learning import MacTable
from mnovs.ofagent.connection import parse_target
from mnovs.ofagent.ofproto import OFProto, dpid_from_text, read_hw_addr
from mnovs.ofagent.trace import trace
from mnovs.unixctl import CommandError, UnixctlServer

log = logging.getLogger('mnovs.vswitchd')

HOUSEKEEPING_INTERVAL = 1.0
RING_CHECK_INTERVAL = 0.1      # how long a wedged receive ring may go unseen (see netdev.py)
VERSION = 'mnovs-vswitchd 0.1.0'


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line, not usage plus error."""

    def error(self, message):
        self.exit(2, f'{self.prog}: {message}\n')


def parse_port(text):
    """NAME or NAME=NUMBER → (name, number or None)."""
    name, sep, number = text.partition('=')
    if not name:
        raise argparse.ArgumentTypeError(f'bad port "{text}": expected NAME or NAME=NUMBER')
    if not sep:
        return name, None
    if not number.isdigit() or not 0 < int(number) < 0xff00:
        raise argparse.ArgumentTypeError(f'bad port number in "{text}": expected 1..65279')
    return name, int(number)


def controller_target(text):
    try:
        parse_target(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if not text.startswith('tcp:'):
        raise argparse.ArgumentTypeError(f'bad controller "{text}": expected tcp:IP:PORT')
    return text


def positive(kind):
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'"{text}" is not a number') from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f'"{text}" must be positive')
        return value
    return convert


def at_least(minimum):
    """An int option with OVS's schema minimum (controller_rate_limit: 100...)."""
    def convert(text):
        value = positive(int)(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f'"{text}" is below the minimum, {minimum}')
        return value
    return convert


def build_parser():
    p = OneLineParser(prog='mnovs-vswitchd', description='An mnovs switch process.')
    p.add_argument('--name', required=True, help='switch name, e.g. s1')
    p.add_argument('--dpid', default=None, help='datapath id, 16 hex digits')
    p.add_argument('--port', action='append', type=parse_port, default=[],
                   metavar='NAME[=NUM]', help='interface to add as a port (repeatable)')
    p.add_argument('--fail-mode', choices=('secure', 'standalone'), default='secure',
                   help='behaviour with no controller connected')
    p.add_argument('--controller', action='append', default=[], metavar='tcp:IP:PORT',
                   type=controller_target, help='OpenFlow controller (repeatable)')
    p.add_argument('--listen', type=positive(int), default=None, metavar='PORT',
                   help='passive OpenFlow port (ptcp:PORT)')
    p.add_argument('--ctl', default=None, help='control socket path')
    p.add_argument('--pidfile', default=None, help='pid file path')
    p.add_argument('--log-file', default=None, help='log file (default: stderr)')
    p.add_argument('-v', '--verbose', action='store_true', help='debug logging')
    p.add_argument('--flow-limit', type=positive(int), default=10000,
                   help='most datapath megaflows kept (default 10000)')
    p.add_argument('--max-idle', type=positive(int), default=10000, metavar='MS',
                   help='megaflow idle expiry in ms (default 10000, as OVS)')
    p.add_argument('--emc-size', type=positive(int), default=8192,
                   help='microflow cache entries (default 8192)')
    p.add_argument('--ring-slots', type=positive(int), default=64,
                   help='receive ring slots per port, 68 KB each (default 64)')
    p.add_argument('--mac-aging', type=positive(float), default=300.0, metavar='SECONDS',
                   help='MAC learning aging time (default 300, as OVS)')
    p.add_argument('--mac-table-size', type=positive(int), default=8192,
                   help='most learned MACs (default 8192)')
    p.add_argument('--controller-rate-limit', type=at_least(100), default=None,
                   metavar='PPS', help="packet-ins per second per controller (OVS's "
                                       'controller_rate_limit; default: no limit)')
    p.add_argument('--controller-burst-limit', type=at_least(25), default=None,
                   metavar='N', help='packet-ins sent or queued in a burst (default: rate/4)')
    p.add_argument('--upcall-queue-len', type=positive(int), default=UPCALL_QUEUE_LEN,
                   help=f'upcalls waiting per port before they are lost '
                        f'(default {UPCALL_QUEUE_LEN})')
    return p


class StopSignals:
    """SIGTERM and SIGINT end the poll loop at its next turn, never mid-packet.

    The handler only records the signal; Python's wakeup fd (a socketpair
    the selector watches) makes a sleeping select() return at once. Raising
    from the handler instead could land inside any `except Exception` of a
    packet or message handler and be swallowed.
    """

    def __init__(self):
        self.received = None
        self.reader, self.writer = socket.socketpair()
        self.reader.setblocking(False)
        self.writer.setblocking(False)
        signal.set_wakeup_fd(self.writer.fileno())
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._record)

    def _record(self, signum, frame):
        self.received = signal.Signals(signum).name

    def drain(self, events=None):
        try:
            while self.reader.recv(64):
                pass
        except BlockingIOError:
            pass


class VSwitchd:
    """The process: datapath, slow path, control socket and poll loop."""

    def __init__(self, args, stop):
        self.args = args
        self.stop = stop
        self.running = True
        self.selector = selectors.DefaultSelector()
        self.selector.register(stop.reader, selectors.EVENT_READ, stop.drain)
        self.links = LinkMonitor()
        dp_options = {'flow_limit': args.flow_limit, 'max_idle': args.max_idle / 1000.0,
                      'emc_size': args.emc_size, 'ring_slots': args.ring_slots,
                      'upcall_queue_len': args.upcall_queue_len}
        self.ofproto = OFProto(args.name, dpid_from_text(args.dpid), args.fail_mode,
                               self.selector, dp_options,
                               MacTable(args.mac_aging, args.mac_table_size),
                               self.links.set_admin, args.controller_rate_limit,
                               args.controller_burst_limit)
        self.dp = self.ofproto.dp
        self.normal = self.ofproto.normal
        self.selector.register(self.links, selectors.EVENT_READ, self._link_events)
        self.name = args.name
        self.bridge = BridgeState(self)
        for name, port_no in args.port:
            self.add_port(name, port_no)
        self.mgmt_target = f'punix:{os.path.join(paths.RUN_DIR, args.name)}.mgmt'
        listen = [f'ptcp:{args.listen}:127.0.0.1'] if args.listen else []
        errors = self.set_controllers(args.controller + listen)
        if errors:
            self.ofproto.close()            # removes the management socket
            raise OSError(f'{", ".join(errors)}: {", ".join(errors.values())}')
        self.ctl = UnixctlServer(args.ctl or paths.ctl_path(args.name, os.getpid()),
                                 self.selector, VERSION)
        self._register_commands()

    # --- ports -------------------------------------------------------------

    def add_port(self, name, port_no=None, port_type='', tunnel=None):
        """Add a port, announce it (PORT_STATUS ADD) and return it.

        Args:
            port_type: '' opens an existing interface and takes it up;
                'internal' creates a TAP device, left down as OVS leaves
                its internal interfaces; 'vxlan' makes a tunnel port with
                the TunnelConfig `tunnel` (no network device: always up).
                The port named like the bridge is LOCAL whatever port_no says.
        Raises:
            OSError: the interface cannot be opened (or taken up), or a
                tunnel's UDP socket cannot be bound.
            ValueError: the name or number is in use, or a bad type;
                TunnelConfigError: another tunnel port takes the same datagrams.
        """
        if name == self.name:
            port_no = LOCAL_PORT
        elif port_no is None:
            port_no = self._free_port_no()
        elif port_no in self.ofproto.bonds.by_port:
            raise ValueError(f'port number {port_no} is already in use')
        port = self._open_port(name, port_no, port_type, tunnel)
        self.ofproto.port_added(port)
        self.normal.port_changed(port.port_no)
        log.info('added port %d: %s (%s)', port.port_no, name, 'up' if port.up else 'down')
        return port

    def _open_port(self, name, port_no, port_type='', tunnel=None):
        """Open a datapath port and poll it (add_port's first half; a bond member's)."""
        port = self.dp.add_port(name, port_no, port_type, tunnel)
        if port.tunnel is not None:
            self._watch_tunnel(port)
        else:
            try:
                port.up = (self.links.is_up(name) if port_type == 'internal'
                           else self.links.bring_up(name))
            except OSError:
                self.dp.del_port(port.port_no)
                raise
            self.selector.register(port.fd, selectors.EVENT_READ,
                                   lambda events: self._port_ready(port, events))
        return port

    def _free_port_no(self):
        """The OpenFlow number a new port gets: above every port's and bond's."""
        used = [n for n in self.dp.ports if n < MEMBER_PORT_BASE]
        return max(used + list(self.ofproto.bonds.by_port), default=0) + 1

    def add_bond(self, name, port_no, members, settings):
        """Add a bond: one OpenFlow port over the interfaces `members`.

        Args:
            port_no: its OpenFlow port number, or None for a free one.
            members: interface names; each becomes a datapath port.
            settings: bond.BondSettings.
        Returns:
            {member name: OSError} for the members that could not be opened
            (the bond runs with the others).
        Raises:
            ValueError: the number or a name is in use.
        """
        bonds = self.ofproto.bonds
        if port_no is None:
            port_no = self._free_port_no()
        if port_no in self.dp.ports or port_no in bonds.by_port or name in bonds.by_name:
            raise ValueError(f'port number {port_no} or name {name} is already in use')
        # The LACP system id is the bridge's MAC, which the datapath id holds.
        bond = bonds.create(name, port_no, settings, self.ofproto.dpid.to_bytes(8, 'big')[2:])
        errors = {}
        for member in members:
            number = next(n for n in range(MEMBER_PORT_BASE, LOCAL_PORT) if n not in self.dp.ports)
            try:
                port = self._open_port(member, number)
            except (OSError, ValueError) as err:
                errors[member] = err
                continue
            bonds.add_member(bond, port, read_hw_addr(member))
        self.ofproto.bond_added(bond)
        log.info('added bond %d: %s (%s), members %s', port_no, name, settings.mode,
                 ', '.join(m.name for m in bond.members.values()))
        return errors

    def configure_bond(self, name, settings):
        """Change a bond's BondSettings, live."""
        self.ofproto.bonds.find(name).configure(settings)
        self.ofproto.run_bonds(time.monotonic())

    def _del_bond(self, bond):
        for port_no in list(bond.members):
            self._close_port(self.dp.ports[port_no])
        self.ofproto.bonds.destroy(bond)
        self.ofproto.port_deleted(bond.port_no)
        self.normal.port_changed(bond.port_no)
        log.info('deleted bond %d: %s', bond.port_no, bond.name)

    def del_port(self, name):
        """Delete a port or bond (PORT_STATUS DELETE); an internal port's device
        goes with it. A bond member leaves its bond, which stays."""
        bonds = self.ofproto.bonds
        if name in bonds.by_name:
            self._del_bond(bonds.by_name[name])
            return
        port = self.dp.port_by_name(name)
        if port is None:
            raise CommandError(f'no port named {name}')
        bond = bonds.of_member(port.port_no)
        if bond is not None:
            bonds.remove_member(bond, port.port_no)
            self._close_port(port)
            self.ofproto.run_bonds(time.monotonic())
            log.info('bond %s: member %s deleted', bond.name, name)
            return
        self._close_port(port)
        self.ofproto.port_deleted(port.port_no)
        self.normal.port_changed(port.port_no)
        log.info('deleted port %d: %s', port.port_no, name)

    def _close_port(self, port):
        if port.tunnel is None:
            self.selector.unregister(port.fd)
        elif self.dp.tunnels.last_user(port):
            self.selector.unregister(port.receiver.fd)      # it closes with its last port
        self.dp.del_port(port.port_no)

    def _watch_tunnel(self, port):
        """Poll the UDP socket a tunnel port receives on, once for all its ports."""
        receiver = port.receiver
        if receiver.fd not in self.selector.get_map():
            dp = self.dp
            self.selector.register(receiver.fd, selectors.EVENT_READ,
                                   lambda events: dp.tunnel_input(receiver))

    # --- bridge configuration (bridge_state.BridgeState uses these) --------

    def set_controllers(self, targets):
        """Connect to / listen on exactly `targets`, plus the management socket.

        Returns:
            {target: reason} for targets that could not be made.
        """
        return self.ofproto.set_controllers([*targets, self.mgmt_target])

    def set_fail_mode(self, fail_mode):
        self.ofproto.set_fail_mode(fail_mode)

    def set_datapath_id(self, dpid):
        self.ofproto.set_datapath_id(dpid)

    def set_controller_limits(self, rate_limit, burst_limit):
        self.ofproto.set_controller_limits(rate_limit, burst_limit)

    def set_sflow(self, options):
        self.ofproto.set_sflow(options)

    def _port_ready(self, port, events):
        # A port registered for reading that is reported writable has an
        # error pending (the link went down under it: ENETDOWN). Reading the
        # error clears it; left set, epoll would report it forever.
        if events & selectors.EVENT_WRITE:
            port.clear_error()
        self.dp.port_input(port)

    def _link_events(self, events=None):
        events = self.links.events()
        if self.links.overflowed:
            # Notifications were lost: ask the kernel for every port's state.
            self.links.overflowed = False
            events = [(port.name, *self._link_state(port.name)) for port in
                      list(self.dp.ports.values()) if port.tunnel is None]
        for name, up, deleted in events:
            port = self.dp.port_by_name(name)
            if port is not None and port.tunnel is not None:
                continue        # a tunnel port has no device: a namesake's news is not its
            if deleted and port is not None:
                # A renumbered internal port is a new device of the same
                # name: the old one's deletion must not take it away.
                up, deleted = self._link_state(name)
            if port is None:
                if not deleted:
                    self.bridge.port_may_exist(name)
                continue
            if deleted:
                self.del_port(name)
                self.bridge.port_vanished(name)
            elif up != port.up:
                if up:
                    # The socket may still hold the ENETDOWN of the link's
                    # fall; left there, it would fail the first send.
                    port.clear_error()
                port.up = up
                log.info('port %d: %s is %s', port.port_no, name, 'up' if up else 'down')
                self.ofproto.port_changed(port.port_no)
                self.normal.port_changed(port.port_no)

    def _link_state(self, name):
        """(up, deleted) of an interface, asked of the kernel."""
        try:
            return self.links.is_up(name), False
        except OSError:
            return False, True

    # --- control commands --------------------------------------------------

    def _register_commands(self):
        ctl = self.ctl
        dpctl.register(ctl, self.dp)
        ctl.register('dpctl/add-if', 'IFACE[=PORT_NO]', 1, 1, self._cmd_add_if)
        ctl.register('dpctl/del-if', 'IFACE', 1, 1, self._cmd_del_if)
        ctl.register('ofproto/show', '', 0, 0, self.ofproto.show)
        ctl.register('ofproto/trace', '[SWITCH] FLOW', 1, 2, self._cmd_trace)
        ctl.register('bridge/apply', 'JSON', 1, 1, self._cmd_bridge_apply)
        ctl.register('bridge/status', '', 0, 0, self.bridge.status)
        ctl.register('bond/show', '[port]', 0, 1, self._cmd_bond_show)
        ctl.register('lacp/show', '[port]', 0, 1, self._cmd_lacp_show)
        ctl.register('lacp/show-stats', '[port]', 0, 1, self._cmd_lacp_show_stats)
        ctl.register('fdb/show', '', 0, 0, self._cmd_fdb_show)
        ctl.register('fdb/flush', '', 0, 0, self._cmd_fdb_flush)
        ctl.register('sflow/show', '', 0, 0, self._cmd_sflow_show)
        ctl.register('exit', '', 0, 0, self._cmd_exit)

    def _cmd_add_if(self, spec):
        try:
            name, port_no = parse_port(spec)
            port = self.add_port(name, port_no)
        except (argparse.ArgumentTypeError, ValueError) as err:
            raise CommandError(str(err)) from None
        except OSError as err:
            raise CommandError(f'cannot add {spec}: {err.strerror or err}') from None
        return f'added port {port.port_no}: {port.name}'

    def _cmd_bridge_apply(self, text):
        try:
            return self.bridge.apply(text)
        except ValueError as err:
            raise CommandError(str(err)) from None

    def _cmd_del_if(self, name):
        self.del_port(name)
        return f'deleted port {name}'

    def _bonds_named(self, name, error, lacp=False):
        bonds = self.ofproto.bonds.by_name
        if name is not None:
            bond = bonds.get(name)
            if bond is None or lacp and bond.lacp is None:
                raise CommandError(error)
            return [bond]
        return [bonds[n] for n in sorted(bonds) if not lacp or bonds[n].lacp is not None]

    def _cmd_bond_show(self, name=None):
        now = time.monotonic()
        return ''.join(bond.show(self.ofproto.bonds.recirc_id(bond), now)
                       for bond in self._bonds_named(name, 'no such bond'))

    def _cmd_lacp_show(self, name=None):
        return ''.join(bond.lacp.show()
                       for bond in self._bonds_named(name, 'no such lacp object', lacp=True))

    def _cmd_lacp_show_stats(self, name=None):
        return ''.join(bond.lacp.show_stats()
                       for bond in self._bonds_named(name, 'no such lacp object', lacp=True))

    def _cmd_fdb_show(self):
        normal = self.normal
        lines = [' port  VLAN  MAC                Age']
        for port, vlan, mac, age in normal.macs.dump(time.monotonic()):
            lines.append(f'{port:5}  {vlan:4}  {mac.hex(":")}  {age:4}')
        return '\n'.join(lines)

    def _cmd_fdb_flush(self):
        self.normal.flush()
        return 'table successfully flushed'

    def _cmd_sflow_show(self):
        sflow = self.ofproto.sflow
        return sflow.show() if sflow is not None else f'{self.name}: sFlow is not configured'

    def _cmd_trace(self, *args):
        if len(args) == 2 and args[0] != self.args.name:
            raise CommandError(f'no switch named {args[0]} here (this is {self.args.name})')
        try:
            return trace(self.ofproto, args[-1])
        except ValueError as err:
            raise CommandError(f'bad flow: {err}') from None

    def _cmd_exit(self):
        self.running = False
        return ''

    # --- loop --------------------------------------------------------------

    def run(self):
        """The poll loop: events, then the agent, then a batch of upcalls, then timers.

        Every turn drains the ready rings (hits are handled there and then),
        lets the agent revalidate what the turn's OpenFlow messages changed
        (before upcalls use the megaflows), handles at most one batch of
        queued upcalls, and never sleeps while upcalls or messages wait.
        Revalidation walks the megaflows once per turn at most (OFProto.run);
        statistics are pushed on the housekeeping tick and before a reply or
        a change that needs them, and only if packets arrived since.
        """
        now = time.monotonic()
        next_tick = now + HOUSEKEEPING_INTERVAL
        next_ring_check = now + RING_CHECK_INTERVAL
        dp = self.dp
        while self.running and self.stop.received is None:
            now = time.monotonic()
            if dp.n_queued:
                timeout = 0.0
            else:
                timeout = max(0.0, min(next_tick, next_ring_check) - now)
                pin_wait = self.ofproto.wait_time(now)
                if pin_wait is not None:
                    timeout = min(timeout, pin_wait)
            ready = self.selector.select(timeout)
            registered = self.selector.get_map()
            for key, events in ready:
                # An earlier callback of this batch may have closed this one's
                # socket (a port deleted by a netlink event): skip it.
                if registered.get(key.fd) is key:
                    key.data(events)
            now = time.monotonic()
            self.ofproto.run(now)
            if dp.n_queued:
                dp.handle_upcalls()
            if now >= next_ring_check:
                self.ofproto.run_bonds(now)     # LACP's 1 s timers need a finer step than the tick
                dp.check_rings(now)
                next_ring_check = now + RING_CHECK_INTERVAL
            if now >= next_tick:
                self.ofproto.run_periodic(now)
                self.dp.run_periodic(now)
                self.normal.run_periodic(now)
                self.ofproto.run(now)       # what expiry and aging changed, this turn
                next_tick = now + HOUSEKEEPING_INTERVAL

    def close(self):
        self.ofproto.close()
        self.ctl.close()
        self.dp.close()
        self.links.close()
        self.selector.close()


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        filename=args.log_file, level=logging.DEBUG if args.verbose else logging.INFO,
        format='%(asctime)s %(name)s %(levelname)s %(message)s')
    os.makedirs(paths.RUN_DIR, exist_ok=True)
    stop = StopSignals()
    pidfile = None
    try:
        # First the pid file, as OVS's daemonize_start: a second vswitchd
        # with this name stops here, before it touches any interface.
        pidfile = Pidfile(args.pidfile or paths.pid_path(args.name))
        switch = VSwitchd(args, stop)
    except (OSError, ValueError) as err:
        message = f'mnovs-vswitchd: {args.name}: {getattr(err, "strerror", None) or err}'
        if args.log_file:
            log.error(message)
        print(message, file=sys.stderr)
        if pidfile:
            pidfile.remove()
        return 1
    log.info('%s started: %d ports, fail mode %s', args.name, len(switch.dp.ports),
             args.fail_mode)
    try:
        switch.run()
        log.info('%s stopping on %s', args.name, stop.received or 'the exit command')
    finally:
        switch.close()
        pidfile.remove()
    return 0


if __name__ == '__main__':
    sys.exit(main())
