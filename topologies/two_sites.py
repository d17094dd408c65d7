"""Two sites joined by VXLAN across a routed underlay, for `mn --custom` and Python.

    sudo mn --custom mnovs/switch.py,topologies/two_sites.py --topo two_sites \\
        --switch pyovs --controller none --test vxlan+pingall
    sudo mn --custom topologies/two_sites.py --topo two_sites \\
        --switch ovs,datapath=user --controller none --test vxlan+pingall
    ... --switch lxbr ...            (Linux bridge + Linux vxlan devices)
    ... --test vxlan+cli             (the same, then Mininet's CLI)

Layout (n hosts per site, default 2; topo args `two_sites,n=3,vni=42`):

    h1 h2                                                        h3 h4
      \\ |              underlay 172.31.1.0/24  172.31.2.0/24       | /
       s1 ~~vx1~~ vtep1 ------------------ r0 ------------------ vtep2 ~~vx2~~ s2
           .1.1 on vtep1-eth1    .1.254  r0-eth1 r0-eth2  .2.254    .2.1 on vtep2-eth1

The overlay hosts share 10.0.0.0/24. s1 and s2 are the `--switch` class
(standalone learning switches, topo arg fail_mode). r0 is a network namespace
with ip_forward, so every tunnelled frame crosses an IP hop. vtep1 and vtep2
are each site's VXLAN tunnel endpoint: a root-namespace node whose interface
is the site's underlay link to r0. r0 and the vteps are in Mininet's switch
list only so that pingall and iperf leave them out: they switch nothing.

Topologies cannot run commands after `net.start()`, and the tunnel ports need
the overlay bridges to exist, which pyovs and OVS create in their batchStartup
after every start(). So connecting the sites is a step of its own: the mn test
`vxlan` (this file's `tests`), or `connect_sites(net)` from Python
(`build_two_sites` does both). It logs every command it runs, in the form a
user would type (for pyovs: `OVS_RUNDIR=/var/run/mnovs ovs-vsctl ...`). Each
vtep journals what it changed (the commands that undo it, in JOURNAL_DIR)
and undoes it in stop(), so `net.stop()` (or `mn`'s exit) restores the host;
`cleanup()` replays the journals of runs whose process died, and only them.

The underlay problem. pyovs, like kernel OVS's vxlan vport and a Linux vxlan
device, sends through the host's IP stack, and all switches live in the root
namespace. Both VTEP addresses are then local to it, and the kernel delivers
172.31.1.1 -> 172.31.2.1 over loopback without ever reaching r0. Three
flavours solve it, picked by the overlay switch's class:

- kernel (pyovs, OVS kernel datapath, Linux bridge): the VTEP address sits on
  vtepN-eth1 and policy routing sends locally generated packets between the
  two VTEP addresses to r0: a rule `from A to B iif lo lookup 4789` placed
  before the `local` rule (pref 0, see `_add_rule`), and in table 4789 a
  route `B via <r0> dev vtepN-eth1 src A`. `iif lo` matches only packets the
  host sends; a packet arriving from r0 on vtep2-eth1 still meets the local
  table and is delivered. The reverse-path check of that packet's source (a
  local address) meets the mirror rule and finds a unicast route through
  vtep2-eth1, so neither accept_local nor rp_filter has to change (tried
  with rp_filter 0, 1 and 2 on the uplinks). Nothing else is touched: the rule
  and route are removed on stop. (Linux caveat: two vxlan devices in one
  namespace cannot share a VNI and UDP port, so for the Linux bridge site 2
  listens on dst_port + 1, both devices run with `nolearning`, and each
  sends to its peer's port through the default FDB entry.)
- ovs-user (OVS `datapath=user`): OVS routes tunnels itself, from its own
  table that mirrors the kernel's (`ovs-appctl ovs/route/show`), and sends
  through an OVS bridge holding the VTEP address. So each site gets an
  underlay bridge br-vtepN (netdev) with vtepN-eth1 as its port and the
  address on its LOCAL port, as in OVS's userspace-tunneling howto. OVS
  ranks the kernel's local /32 route of the peer's address above any route
  a user adds, so the tunnel carries `options:egress_pkt_mark=4789` and the
  route to the peer is added with `pkt_mark=4789`, which only marked
  packets see. OVS 3.1 checks a tunnel's local_ip against routes with the
  same mark and only kernel routes are local, so this flavour leaves
  local_ip unset (the source address comes from the route).
  `ovs-appctl tnl/arp/show` shows r0's MAC once a packet has gone.

Underlay MTU: 1600 on every underlay interface, so a 1500-byte inner frame
(1550 bytes with its VXLAN, UDP and IP headers) crosses with DF set, which
pyovs and OVS set by default and the Linux devices get with `df set`.
"""

import contextlib
import json
import os
import shlex
import subprocess
import time

from mininet.clean import addCleanupCallback
from mininet.log import error, info
from mininet.net import Mininet
from mininet.node import Node, OVSSwitch
from mininet.nodelib import LinuxBridge
from mininet.topo import Topo

ROUTE_TABLE = 4789      # our policy routing table; its number names our rules too
PKT_MARK = 4789         # OVS userspace: the mark that selects our ovs/route entries
UNDERLAY_MTU = 1600
OVERLAY_NET = '10.0.0.%d/24'
SITE_NET = '172.31.%d.%d'
GONE = ('cannot find device', 'no such', 'does not exist', 'not found')   # undo of a gone thing
# Each VTEP writes the commands that undo its changes here, as it makes them
# (<pid>-<vtep>.json), so that cleanup() can undo exactly what a crashed run
# made, and nothing else.
JOURNAL_DIR = os.path.join(os.environ.get('MNOVS_RUN_DIR', '/var/run/mnovs'), 'two_sites')


class TunnelError(Exception):
    """A command of the site set-up failed, or the switch refused the tunnel port."""


def run(argv, env=None, quiet=False):
    """Run argv (root namespace), logging it as a shell line; return its stdout.

    Raises:
        TunnelError: it exited non-zero (with its error output).
    """
    prefix = ''.join(f'{k}={v} ' for k, v in (env or {}).items())
    line = prefix + shlex.join(argv)
    if not quiet:
        info(f'    {line}\n')
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False,
                              env=dict(os.environ, **env) if env else None, timeout=60)
    except subprocess.TimeoutExpired:
        raise TunnelError(f'{line}: no answer in 60 s') from None
    if done.returncode:
        raise TunnelError(f'{line}: {(done.stderr or done.stdout).strip()}')
    return done.stdout


def _rule_spec(local, remote):
    return ['from', local, 'to', remote, 'iif', 'lo', 'lookup', str(ROUTE_TABLE)]


def _add_rule(spec):
    """Add `ip rule` spec ahead of the local table's rule, which keeps pref 0.

    The kernel files a new rule after every rule of the same or lower pref,
    and the local rule has pref 0. So: add a second local rule at pref 1, add
    ours at pref 0 (after the old local rule), delete the old local rule and
    re-add it at pref 0 (now after ours), drop the spare. The host never goes
    without a local rule, and `ip rule` afterwards differs only by our rule.
    """
    run(['ip', 'rule', 'add', 'pref', '1', 'lookup', 'local'])
    local_at_0 = True
    try:
        run(['ip', 'rule', 'add', 'pref', '0', *spec])
        run(['ip', 'rule', 'del', 'pref', '0', 'lookup', 'local'])
        local_at_0 = False
        run(['ip', 'rule', 'add', 'pref', '0', 'lookup', 'local'])
        local_at_0 = True
    finally:
        if local_at_0:
            run(['ip', 'rule', 'del', 'pref', '1', 'lookup', 'local'])
        else:       # keep the spare: without it, the host would have no local table
            error('*** the local rule is at pref 1 now; restore it with '
                  '`ip rule add pref 0 lookup local; ip rule del pref 1 lookup local`\n')


def flavour(switch):
    """Which underlay a site's overlay switch needs: 'kernel', 'ovs-user' or 'linux'."""
    if isinstance(switch, LinuxBridge):
        return 'linux'
    if isinstance(switch, OVSSwitch) and switch.datapath == 'user':
        return 'ovs-user'
    return 'kernel'


def vsctl_env(switch):
    """The OVS_RUNDIR a user sets to reach this switch's database ({} for OVS's own).

    pyovs keeps its own database (mnovs.paths.RUN_DIR). Its class is matched by
    name: under `mn --custom` it is defined by an exec'd file, not a module.
    """
    if type(switch).__name__ == 'PyOVSSwitch':
        from mnovs import paths
        return {'OVS_RUNDIR': paths.RUN_DIR}
    return {}


class UnderlayNode(Node):
    """A node of the underlay; Mininet lists it with the switches so pingall skips it."""

    def __init__(self, name, mtu=UNDERLAY_MTU, **params):
        super().__init__(name, **params)
        self.mtu = mtu

    def start(self, _controllers):
        "Give every underlay interface the underlay MTU."
        for intf in self.intfList():
            if intf.name != 'lo':
                self.cmd('ip', 'link', 'set', 'dev', intf, 'mtu', self.mtu, 'up')

    def connected(self):
        return True


class Router(UnderlayNode):
    """The IP hop between the sites: a namespace that forwards (ip_forward=1)."""

    def __init__(self, name, **params):
        super().__init__(name, **dict(params, inNamespace=True))

    def start(self, controllers):
        super().start(controllers)
        self.cmd('sysctl', '-qw', 'net.ipv4.ip_forward=1')


class Vtep(UnderlayNode):
    """A site's VXLAN tunnel endpoint, in the root namespace with the switches.

    Its one interface is the site's link to the router. connect(switch) gives
    it the local address, the routing that takes tunnel packets to the router,
    and the tunnel port on the site's overlay switch (the flavour depends on
    the switch, see the module docstring); stop() undoes them in reverse.
    """

    def __init__(self, name, site, local_ip, remote_ip, gateway, plen=24, vni=42,
                 dst_port=4789, port='vx1', linux_ports=(4789, 4789), **params):
        """site: name of the site's overlay switch
           local_ip, remote_ip: this VTEP's and the peer's underlay address
           gateway: the router's address on this site's link
           plen: prefix length of the site's underlay subnet
           vni: VXLAN network identifier (OVS's options:key)
           dst_port: UDP port of the tunnel (OVS's options:dst_port)
           port: name of the tunnel port / Linux vxlan device
           linux_ports: (own, peer's) receive port for Linux vxlan devices"""
        super().__init__(name, **dict(params, inNamespace=False))
        self.site = site
        self.local_ip, self.remote_ip, self.gateway = local_ip, remote_ip, gateway
        self.plen, self.vni, self.dst_port, self.port = plen, vni, dst_port, port
        self.linux_ports = linux_ports
        self.flavour = None
        self.undo = []          # (argv, env) that reverse what connect() did
        self.journal = os.path.join(JOURNAL_DIR, f'{os.getpid()}-{name}.json')

    @property
    def listen_port(self):
        "The UDP port this VTEP receives tunnel packets on."
        return self.linux_ports[0] if self.flavour == 'linux' else self.dst_port

    @property
    def uplink(self):
        return self.intfList()[0].name

    def connect(self, switch):
        """Join this site's overlay switch to the tunnel; log the commands.

        Raises:
            TunnelError: a command failed or the switch reports an error on
            the tunnel port (for example, it does not know type=vxlan).
        """
        self.flavour = flavour(switch)
        info(f'*** {self.name}: {self.flavour} underlay and tunnel port {self.port} '
             f'on {switch.name}\n')
        if self.flavour == 'ovs-user':
            self.connect_ovs_user(switch)
        else:
            self.route_kernel()
            if self.flavour == 'linux':
                self.connect_linux(switch)
            else:
                self.connect_vsctl(switch)

    def _do(self, argv, undo, env=None):
        run(argv, env)
        self._will_undo(undo, env)

    def _will_undo(self, argv, env=None):
        """Remember (in memory and in the journal) how to undo a change just made."""
        self.undo.append((argv, env))
        os.makedirs(JOURNAL_DIR, exist_ok=True)
        with open(self.journal, 'w') as f:
            json.dump(self.undo, f)

    def route_kernel(self):
        "The VTEP address on the uplink; policy routing to the peer via the router."
        addr = f'{self.local_ip}/{self.plen}'
        self._do(['ip', 'addr', 'add', addr, 'dev', self.uplink],
                 ['ip', 'addr', 'del', addr, 'dev', self.uplink])
        route = [self.remote_ip, 'via', self.gateway, 'dev', self.uplink,
                 'src', self.local_ip, 'table', str(ROUTE_TABLE)]
        self._do(['ip', 'route', 'add', *route], ['ip', 'route', 'del', *route])
        spec = _rule_spec(self.local_ip, self.remote_ip)
        _add_rule(spec)
        self._will_undo(['ip', 'rule', 'del', 'pref', '0', *spec])

    def tunnel_options(self, switch):
        options = {'remote_ip': self.remote_ip, 'key': self.vni}
        if self.flavour == 'ovs-user':
            options['egress_pkt_mark'] = PKT_MARK
        else:
            options['local_ip'] = self.local_ip
        if self.dst_port != 4789:
            options['dst_port'] = self.dst_port
        return ['add-port', switch.name, self.port, '--', 'set', 'interface', self.port,
                'type=vxlan'] + [f'options:{k}={v}' for k, v in options.items()]

    def connect_vsctl(self, switch):
        "pyovs or OVS: a type=vxlan port; fail if the switch reports an error on it."
        env = vsctl_env(switch)
        self._do(['ovs-vsctl', *self.tunnel_options(switch)],
                 ['ovs-vsctl', '--if-exists', 'del-port', switch.name, self.port], env)
        self.check_port(switch, env)

    def check_port(self, switch, env):
        "Raise TunnelError unless the switch opened the tunnel port (an ofport, no error)."
        state = run(['ovs-vsctl', 'get', 'interface', self.port, 'ofport', 'error'], env,
                    quiet=True).split()
        ofport, errors = state[0], ' '.join(state[1:])
        if errors not in ('', '[]') or not ofport.isdigit() or int(ofport) <= 0:
            raise TunnelError(f'{switch.name} did not open tunnel port {self.port} '
                              f'(ofport {ofport}, error {errors}): does it support type=vxlan?')

    def connect_linux(self, switch):
        "Linux bridge: a vxlan device (DF set, no learning) enslaved to the bridge."
        own, peer = self.linux_ports
        self._do(['ip', 'link', 'add', self.port, 'type', 'vxlan', 'id', str(self.vni),
                  'local', self.local_ip, 'dstport', str(own), 'nolearning', 'df', 'set'],
                 ['ip', 'link', 'del', self.port])
        run(['bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', self.port,
             'dst', self.remote_ip, 'port', str(peer)])
        run(['ip', 'link', 'set', self.port, 'mtu', '1500', 'master', switch.name, 'up'])

    def connect_ovs_user(self, switch):
        "OVS userspace: an underlay bridge holds the address; a marked OVS route."
        bridge = 'br-' + self.name
        self._do(['ovs-vsctl', '--may-exist', 'add-br', bridge, '--', 'set', 'bridge', bridge,
                  'datapath_type=netdev', 'fail_mode=standalone', '--', 'add-port', bridge,
                  self.uplink, '--', 'set', 'interface', bridge,
                  f'mtu_request={self.mtu}'],
                 ['ovs-vsctl', '--if-exists', 'del-br', bridge])
        self._will_undo(['ip', 'link', 'del', bridge])   # a netdev LOCAL port's tap
        run(['ip', 'addr', 'add', f'{self.local_ip}/{self.plen}', 'dev', bridge])
        run(['ip', 'link', 'set', bridge, 'up'])
        route = [f'{self.remote_ip}/32', bridge, self.gateway, f'pkt_mark={PKT_MARK}']
        # OVS learns the new address through netlink; until then the route has no source.
        for attempt in range(50):
            try:
                run(['ovs-appctl', 'ovs/route/add', *route], quiet=attempt > 0)
                break
            except TunnelError:
                if attempt == 49:
                    raise
                time.sleep(0.1)
        self._will_undo(['ovs-appctl', 'ovs/route/del', route[0], route[-1]])
        self._do(['ovs-vsctl', *self.tunnel_options(switch)],
                 ['ovs-vsctl', '--if-exists', 'del-port', switch.name, self.port])
        self.check_port(switch, {})

    def disconnect(self):
        "Undo connect(), last step first; report (not raise) what fails."
        _undo(self.name, self.undo)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.journal)

    def stop(self, deleteIntfs=False):
        self.disconnect()
        super().stop(deleteIntfs)


class TwoSitesTopo(Topo):
    """Two sites of n hosts, each on its overlay switch, and the routed underlay."""

    def build(self, n=2, vni=42, dst_port=4789, fail_mode='standalone'):
        """n: hosts per site
           vni: VXLAN network identifier of the overlay
           dst_port: UDP port of the tunnels
           fail_mode: of the overlay switches (standalone: learning switches)"""
        n, vni, dst_port = int(n), int(vni), int(dst_port)
        self.addSwitch('r0', cls=Router)
        for site, peer in ((1, 2), (2, 1)):
            switch = self.addSwitch(f's{site}', failMode=fail_mode)
            for i in range(1, n + 1):
                number = (site - 1) * n + i
                host = self.addHost(f'h{number}', ip=OVERLAY_NET % number)
                self.addLink(host, switch)
            vtep = self.addSwitch(
                f'vtep{site}', cls=Vtep, site=switch, vni=vni, dst_port=dst_port,
                port=f'vx{site}', local_ip=SITE_NET % (site, 1),
                remote_ip=SITE_NET % (peer, 1), gateway=SITE_NET % (site, 254),
                linux_ports=(dst_port + site - 1, dst_port + peer - 1))
            self.addLink(vtep, 'r0', params2={'ip': SITE_NET % (site, 254) + '/24'})


def vteps(net):
    return [node for node in net.switches if isinstance(node, Vtep)]


def connect_sites(net):
    """Connect each site's overlay switch to its peer.

    Raises:
        TunnelError: a command failed, or a switch refused its tunnel port.
    """
    for vtep in vteps(net):
        vtep.connect(net.get(vtep.site))


def vxlan_test(net):
    """The mn test `vxlan`: connect_sites, reporting a failure instead of raising.

    mn answers any exception with its full `mn -c` cleanup of the host, so a
    refused tunnel port is printed here and mn goes on (pingall then shows
    the loss) and stops its network as usual.
    """
    try:
        connect_sites(net)
    except TunnelError as err:
        error(f'*** vxlan: the sites are not connected: {err}\n')


def run_cli(net):
    "The mn test `cli`: Mininet's CLI, e.g. after `vxlan` (`--test vxlan+cli`)."
    from mininet.cli import CLI
    CLI(net)


def build_two_sites(switch, n=2, vni=42, dst_port=4789, fail_mode='standalone',
                    **mininet_args):
    """Build, start and connect the two sites on `switch` (a Mininet switch class).

    n, vni, dst_port and fail_mode are TwoSitesTopo's; mininet_args go to Mininet.

    Returns:
        The started Mininet; stop it with teardown(net). If the start or the
        connection fails, everything made so far is stopped before the error
        propagates.
    """
    topo = TwoSitesTopo(n=n, vni=vni, dst_port=dst_port, fail_mode=fail_mode)
    net = Mininet(topo=topo, switch=switch,
                  controller=None, build=False, **mininet_args)
    try:
        net.build()
        net.start()
        connect_sites(net)
    except BaseException:
        teardown(net)
        raise
    return net


def teardown(net):
    """Stop net and undo every host change the sites made (rules, routes, bridges)."""
    try:
        net.stop()
    finally:
        cleanup()


@contextlib.contextmanager
def two_sites(switch, **args):
    """`with two_sites(PyOVSSwitch) as net:` build_two_sites, then teardown however it ends."""
    net = build_two_sites(switch, **args)
    try:
        yield net
    finally:
        teardown(net)


def _undo(name, undo):
    """Run undo commands, last first; report (not raise) what fails."""
    while undo:
        argv, env = undo.pop()
        try:
            run(argv, env, quiet=True)
        except TunnelError as err:
            # Routes and addresses of the uplink go with the veth when links stop first.
            if not any(text in str(err).lower() for text in GONE):
                error(f'*** {name}: undo failed: {err}\n')


def cleanup():
    """Undo what a run that did not stop its sites left: the changes its VTEPs
    journaled (JOURNAL_DIR), for runs whose process is gone. Nothing that no
    journal names is touched; a live run's journals are left to it. Also
    Mininet's cleanup hook, for a crashed `mn --custom ...two_sites.py`.
    """
    try:
        journals = sorted(os.listdir(JOURNAL_DIR))
    except FileNotFoundError:
        return
    for entry in journals:
        pid, _, name = entry.partition('-')
        if not pid.isdigit() or _alive(int(pid)) and int(pid) != os.getpid():
            continue
        path = os.path.join(JOURNAL_DIR, entry)
        try:
            with open(path) as f:
                undo = [(argv, env) for argv, env in json.load(f)]
        except (OSError, ValueError):
            continue
        _undo(name.removesuffix('.json'), undo)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


addCleanupCallback(cleanup)

topos = {'two_sites': TwoSitesTopo}
tests = {'vxlan': vxlan_test, 'cli': run_cli}
