"""The vswitchd's half of bridge.c: reconcile a bridge with its desired state.

The bridge layer (mnovs/bridge.py) watches the database and sends each
switch process the WHOLE desired state of its bridge as one JSON document
(`bridge/apply`, see /work/notes/bridge_contract.md):

    {"datapath_id": "0000000000000001" | null, "fail_mode": "secure",
     "protocols": ["OpenFlow13"], "controllers": ["tcp:127.0.0.1:6653"],
     "controller_rate_limit": null, "controller_burst_limit": null,
     "ports": [{"name": "s1", "type": "internal", "ofport_request": null},
               {"name": "vx1", "type": "vxlan", "ofport_request": null,
                "options": {"remote_ip": "10.0.0.2", "key": "42"}}, ...],
     "sflow": null | {"targets": [...], "sampling": 64, ...}}   (sflow/config.py)

This module turns it into changes of the running switch, live, as
bridge_reconfigure() does: parse_desired() checks the document (a bad one
is a command error and changes nothing); plan_ports() says, as a pure
function of what runs and what is wanted, which ports to delete and which
to add with which number; BridgeState.apply() carries it out through the
vswitchd's public methods (add_port, del_port, set_datapath_id,
set_fail_mode, set_controllers) and keeps what could not be done:

- A port whose interface cannot be opened is not a command error. Its
  error, in OVS's words ("could not open network device X (No such
  device)"), is reported by `bridge/status` for the Interface `error`
  column. It is tried again at every apply, and when an interface of that
  name appears (port_may_exist), as ovs-vswitchd's if-notifier does.
- ofport_request: a port on another number is deleted and added again
  with the requested one (PORT_STATUS DELETE, then ADD), as OVS does; a
  port that holds a number another port requests, without requesting it
  itself, moves to a free number. Of two requests for one number the first
  wins; the other port gets a free number.
- The port named like the bridge is the LOCAL port (OpenFlow OFPP_LOCAL,
  datapath LOCAL_PORT, the same number); its ofport_request is ignored.
  bridge/status gives its ofport as 65534, as OVS writes it in the database.
- Tunnel ports (type vxlan): their `options` are parsed with OVS's rules
  (dp/tunnel.py parse_tunnel_config). An option OVS refuses puts OVS's text
  in the Interface error ("vx1: vxlan type requires valid 'remote_ip'
  argument") and the port is not made; what OVS only warns about goes to the
  log. A UDP socket that cannot be bound (another switch has that
  local_ip/dst_port) is the error "vx1: could not bind the VXLAN socket to
  ...". A change of a tunnel's options re-creates the port (the options of
  other port types are not used).
- Bonds (an entry with a "bond" object: members and the Port's bond
  columns) are read as OVS's port_configure_bond/port_configure_lacp do
  (bond_settings): bond_mode active-backup unless set (an unknown one is
  warned about), lacp off, other_config lacp-time (slow unless "fast"),
  lacp-fallback-ab, bond-rebalance-interval (10000 ms; at least 1000 unless
  0), bond-hash-basis, bond-primary, lacp-system-priority. A change of the
  members or the number re-creates the bond; a change of settings is
  applied live. A member that cannot be opened is its Interface's error,
  and the bond is made again when it appears.

Cost: an apply is O(ports); status reads a few sysfs files per port.
"""

import json
import logging
import os
from collections import namedtuple

from mnovs.dp.datapath import LOCAL_PORT
from mnovs.dp.tap import TapPort
from mnovs.dp.tunnel import TUNNEL_TYPES, TunnelConfigError, parse_tunnel_config
from mnovs.ofagent.bond import MODES as BOND_MODES, BondSettings
from mnovs.openflow.ofp import OFPCR_ROLE_EQUAL, OFPCR_ROLE_MASTER, OFPCR_ROLE_SLAVE
from mnovs.sflow.config import parse_options as parse_sflow

log = logging.getLogger(__name__)

FAIL_MODES = ('secure', 'standalone')
PORT_TYPES = ('', 'internal') + TUNNEL_TYPES
MAX_OFPORT = 0xfeff                     # OpenFlow 1.0's OFPP_MAX: what ofport_request allows
LOCAL_OFPORT_DB = 65534                 # LOCAL as OVS writes Interface.ofport
DB_ROLES = {OFPCR_ROLE_EQUAL: 'other', OFPCR_ROLE_MASTER: 'master', OFPCR_ROLE_SLAVE: 'slave'}

Desired = namedtuple('Desired', 'datapath_id fail_mode protocols controllers '
                                'controller_rate_limit controller_burst_limit ports sflow')
# options: ((key, value), ...) sorted, of a tunnel port; the member names of a
# bond (type 'bond', its BondSettings in `bond`); () for the other types.
PortSpec = namedtuple('PortSpec', 'name type ofport_request options bond', defaults=((), None))


# --- the document ------------------------------------------------------------

def parse_desired(text):
    """Check a bridge/apply document and return it as a Desired.

    Raises:
        ValueError: a one-line reason; nothing is to be applied.
    """
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise ValueError(f'bridge/apply: not JSON: {err}') from None
    if not isinstance(doc, dict):
        raise ValueError('bridge/apply: expected a JSON object')
    dpid = doc.get('datapath_id')
    if dpid is not None:
        if not (isinstance(dpid, str) and len(dpid) == 16 and _is_hex(dpid)):
            raise ValueError(f'bridge/apply: datapath_id {dpid!r}: expected 16 hex digits')
        dpid = int(dpid, 16)
    fail_mode = doc.get('fail_mode') or 'standalone'    # OVS's default when unset
    if fail_mode not in FAIL_MODES:
        raise ValueError(f'bridge/apply: fail_mode {fail_mode!r}: expected secure or standalone')
    protocols = _strings(doc, 'protocols')
    controllers = _strings(doc, 'controllers')
    limits = [doc.get(key) for key in ('controller_rate_limit', 'controller_burst_limit')]
    for key, value in zip(('controller_rate_limit', 'controller_burst_limit'), limits):
        if value is not None and (type(value) is not int or value < 0):
            raise ValueError(f'bridge/apply: {key} {value!r}: expected a count or null')
    ports = doc.get('ports', [])
    if not isinstance(ports, list):
        raise ValueError('bridge/apply: ports: expected a list')
    specs = [_port_spec(port) for port in ports]
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError('bridge/apply: ports: a name appears twice')
    return Desired(dpid, fail_mode, protocols, controllers, *limits, specs,
                   parse_sflow(doc.get('sflow')))


def _is_hex(text):
    return all(c in '0123456789abcdefABCDEF' for c in text)


def _strings(doc, key):
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f'bridge/apply: {key}: expected a list of strings')
    return value


def _port_spec(port):
    if not isinstance(port, dict) or not isinstance(port.get('name'), str) or not port['name']:
        raise ValueError(f'bridge/apply: port {port!r}: expected {{"name": ..., ...}}')
    kind = port.get('type') or ''
    if kind not in PORT_TYPES:
        raise ValueError(f'bridge/apply: port {port["name"]}: unsupported type "{kind}"')
    request = port.get('ofport_request')
    if request is not None and (type(request) is not int or not 0 < request <= MAX_OFPORT):
        raise ValueError(f'bridge/apply: port {port["name"]}: ofport_request {request!r}: '
                         f'expected 1..{MAX_OFPORT}')
    options = port.get('options') or {}
    if not isinstance(options, dict) or not all(isinstance(key, str) and isinstance(value, str)
                                                for key, value in options.items()):
        raise ValueError(f'bridge/apply: port {port["name"]}: options: expected an object '
                         f'of strings')
    options = tuple(sorted(options.items())) if kind in TUNNEL_TYPES else ()
    if port.get('bond') is not None:
        members, settings = bond_settings(port['name'], port['bond'])
        return PortSpec(port['name'], 'bond', request, members, settings)
    return PortSpec(port['name'], kind, request, options)


def bond_settings(name, doc):
    """(member names, BondSettings) of a bond entry, with OVS's defaults.

    Raises:
        ValueError: the entry is not shaped as bridge_db.bond_entry makes it.
    """
    members = doc.get('members') if isinstance(doc, dict) else None
    config = doc.get('other_config') or {} if isinstance(doc, dict) else None
    if not (isinstance(members, list) and len(members) > 1
            and all(isinstance(m, str) and m for m in members) and isinstance(config, dict)):
        raise ValueError(f'bridge/apply: port {name}: bond: expected at least two members '
                         f'and an other_config object')
    mode = doc.get('bond_mode') or 'active-backup'
    if mode not in BOND_MODES:
        log.warning('port %s: unknown bond_mode %s, defaulting to active-backup', name, mode)
        mode = 'active-backup'
    lacp = doc.get('lacp') or 'off'
    if lacp not in ('active', 'passive', 'off'):
        log.warning('port %s: unknown LACP mode %s', name, lacp)
        lacp = 'off'
    priority = _int(config.get('lacp-system-priority'), 0)
    return tuple(members), BondSettings(
        mode=mode, lacp=lacp, lacp_fast=str(config.get('lacp-time', '')).lower() == 'fast',
        lacp_fallback_ab=config.get('lacp-fallback-ab') == 'true',
        updelay=max(0, _int(doc.get('bond_updelay'), 0)),
        downdelay=max(0, _int(doc.get('bond_downdelay'), 0)),
        rebalance_interval=max(0, _int(config.get('bond-rebalance-interval'), 10000)),
        basis=_int(config.get('bond-hash-basis'), 0) & 0xffffffff,
        primary=config.get('bond-primary'),
        # OVS prefers bondable links: 65534 for a bond of several members.
        sys_priority=priority if 0 < priority <= 0xffff else 65534)


def _int(value, default):
    """An integer column or other_config value, as OVS's smap_get_int."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


# --- what to do ----------------------------------------------------------------

def plan_ports(current, wanted, bridge):
    """Which ports to delete, and which to add on which number.

    Args:
        current: {name: (type, options, port_no)} of the ports that run.
        wanted: [PortSpec] in the document's order.
        bridge: the bridge name (its port is LOCAL).
    Returns:
        (deletes, adds): names to delete, then [(PortSpec, port_no or None)]
        to add in that order (None: the datapath picks a free number).
        Ports with a requested number come before the others, so that no
        free pick takes a number that is asked for.
    """
    numbers = {}                                        # name -> number it should have
    owners = {}                                         # requested number -> name
    for spec in wanted:
        if spec.name == bridge:
            numbers[spec.name] = LOCAL_PORT
        elif spec.ofport_request is not None and spec.ofport_request not in owners:
            owners[spec.ofport_request] = spec.name
            numbers[spec.name] = spec.ofport_request
    deletes = []
    for name, (kind, options, port_no) in current.items():
        spec = next((s for s in wanted if s.name == name), None)
        if (spec is None or spec.type != kind or spec.options != options
                or name in numbers and numbers[name] != port_no
                or owners.get(port_no, name) != name):
            deletes.append(name)
    staying = {name: current[name][2] for name in current if name not in deletes}
    adds = [(spec, numbers.get(spec.name)) for spec in wanted if spec.name not in staying]
    adds.sort(key=lambda add: add[1] is None)
    return deletes, adds


# --- the running bridge ---------------------------------------------------------

class BridgeState:
    """What a vswitchd was asked to be, and what it could not do.

    Args:
        switch: the VSwitchd (name, dp, ofproto, mgmt_target, add_port,
            del_port, set_datapath_id, set_fail_mode, set_controllers,
            set_controller_limits).
    """

    def __init__(self, switch):
        self.switch = switch
        self.wanted = None                  # [PortSpec] of the last apply; None: CLI config
        self.port_errors = {}               # name -> OVS's error text
        self.options = {}                   # name -> PortSpec.options of a running tunnel port
        self.controller_errors = {}         # target -> reason

    def apply(self, text):
        """bridge/apply: make the switch what the document says.

        Raises:
            ValueError: a bad document (nothing changed).
        """
        desired = parse_desired(text)
        switch = self.switch
        self.wanted = desired.ports
        self._reconcile_ports()
        if desired.datapath_id is not None:
            switch.set_datapath_id(desired.datapath_id)
        switch.set_fail_mode(desired.fail_mode)
        self.controller_errors = switch.set_controllers(desired.controllers)
        switch.set_controller_limits(desired.controller_rate_limit,
                                     desired.controller_burst_limit)
        switch.set_sflow(desired.sflow)
        return ''

    def _reconcile_ports(self):
        switch = self.switch
        bonds = switch.ofproto.bonds
        current = {port.name: (port_type(port), self.options.get(port.name, ()), port.port_no)
                   for port in switch.dp.ports.values() if bonds.of_member(port.port_no) is None}
        for bond in bonds.by_port.values():
            current[bond.name] = ('bond', self.options.get(bond.name, ()), bond.port_no)
        deletes, adds = plan_ports(current, self.wanted, switch.name)
        for name in deletes:
            switch.del_port(name)
            self.options.pop(name, None)
        self.port_errors = {}
        for spec, port_no in adds:
            self._add(spec, port_no)
        for spec in self.wanted:
            if spec.type == 'bond' and spec.name in bonds.by_name:
                switch.configure_bond(spec.name, spec.bond)

    def _add(self, spec, port_no):
        if spec.type == 'bond':
            self._add_bond(spec, port_no)
            return
        tunnel = None
        try:
            if spec.type in TUNNEL_TYPES:
                tunnel, warnings = parse_tunnel_config(spec.name, spec.type, dict(spec.options))
                for warning in warnings:
                    log.warning('%s: %s', self.switch.name, warning)
            self.switch.add_port(spec.name, port_no, spec.type, tunnel)
            if tunnel is not None:
                self.options[spec.name] = spec.options
        except TunnelConfigError as err:
            self.port_errors[spec.name] = str(err)
        except OSError as err:
            if tunnel is not None:
                self.port_errors[spec.name] = f'{spec.name}: {err.strerror or err}'
            else:
                reason = os.strerror(err.errno) if err.errno else str(err)
                self.port_errors[spec.name] = (f'could not open network device {spec.name} '
                                               f'({reason})')
        except ValueError:
            # The number is taken after all (a port added by dpctl/add-if):
            # as OVS's ofproto_port_add, take a free one instead.
            try:
                self.switch.add_port(spec.name, None, spec.type, tunnel)
                if tunnel is not None:
                    self.options[spec.name] = spec.options
            except (OSError, ValueError) as err:
                self.port_errors[spec.name] = (f'could not add network device {spec.name} '
                                               f'to ofproto ({err})')
        if spec.name in self.port_errors:
            log.warning('%s: %s', self.switch.name, self.port_errors[spec.name])

    def _add_bond(self, spec, port_no):
        try:
            errors = self.switch.add_bond(spec.name, port_no, spec.options, spec.bond)
        except ValueError:              # the number is taken after all: a free one
            errors = self.switch.add_bond(spec.name, None, spec.options, spec.bond)
        for member, err in errors.items():
            reason = os.strerror(err.errno) if getattr(err, 'errno', None) else str(err)
            self.port_errors[member] = f'could not open network device {member} ({reason})'
            log.warning('%s: %s', self.switch.name, self.port_errors[member])
        if not errors:                  # else made again when a member appears
            self.options[spec.name] = spec.options

    def port_vanished(self, name):
        """The interface of a wanted port went away: say so in its error."""
        if self.wanted is not None and any(s.name == name or s.type == 'bond' and name in s.options
                                           for s in self.wanted):
            self.port_errors[name] = f'could not open network device {name} (No such device)'

    def port_may_exist(self, name):
        """An interface appeared: a wanted port that failed for want of it is retried."""
        for spec in self.wanted or ():
            if spec.type == 'bond' and name in spec.options:
                self.options.pop(spec.name, None)   # the bond is made again, with it
        if name in self.port_errors and self.switch.dp.port_by_name(name) is None:
            self._reconcile_ports()

    def status(self):
        """bridge/status: the JSON text the bridge layer writes into the database."""
        switch = self.switch
        ports = {}
        for port in switch.dp.ports.values():
            ports[port.name] = port_status(port)
            bond = switch.ofproto.bonds.of_member(port.port_no)
            if bond is not None:        # a member's OpenFlow port is its bond's
                ports[port.name]['ofport'] = bond.port_no
        for name, error in self.port_errors.items():
            if name not in ports:
                ports[name] = {'ofport': -1, 'error': error}
        ofproto = switch.ofproto
        sflow = ofproto.sflow.status() if ofproto.sflow is not None else None
        return json.dumps({'datapath_id': f'{ofproto.dpid:016x}', 'ports': ports, 'sflow': sflow,
                           'controllers': controller_status(ofproto, self.controller_errors,
                                                            switch.mgmt_target)},
                          sort_keys=True)


def port_type(port):
    if isinstance(port, TapPort):
        return 'internal'
    return port.kind if port.tunnel is not None else ''


def port_status(port):
    """The Interface columns of one running port, as ovs-vswitchd fills them.

    A tunnel port has no device: it is up while it exists, as OVS shows it.
    """
    if port.tunnel is not None:
        return {'ofport': port.port_no, 'admin_state': 'up', 'link_state': 'up',
                'error': None, 'statistics': port_statistics(port)}
    name = port.name
    flags = _sysfs_int(name, 'flags', 16)
    admin_up = bool(flags & 1) if flags is not None else False
    carrier = _sysfs_int(name, 'carrier', 10) if admin_up else 0
    return {
        'ofport': LOCAL_OFPORT_DB if port.port_no == LOCAL_PORT else port.port_no,
        'ifindex': _sysfs_int(name, 'ifindex', 10) or 0,
        'mac_in_use': _sysfs(name, 'address') or '00:00:00:00:00:00',
        'admin_state': 'up' if admin_up else 'down',
        'link_state': 'up' if admin_up and carrier else 'down',
        'error': None,
        'statistics': port_statistics(port),
    }


def port_statistics(port):
    return {'rx_packets': port.rx_packets, 'rx_bytes': port.rx_bytes,
            'rx_dropped': port.rx_dropped, 'rx_errors': port.rx_errors,
            'tx_packets': port.tx_packets, 'tx_bytes': port.tx_bytes,
            'tx_dropped': port.tx_dropped}


def controller_status(ofproto, errors, mgmt_target):
    """The Controller columns: is_connected and role per target (not the mgmt socket)."""
    out = {}
    for target in ofproto.targets:
        if target.target == mgmt_target:
            continue
        channels = ([target.channel] if hasattr(target, 'channel') else
                    list(target.channels))
        live = [c for c in channels if c is not None and c in ofproto.channels]
        out[target.target] = {'is_connected': bool(live),
                              'role': DB_ROLES.get(live[0].role) if live else None}
    for target, error in errors.items():
        out[target] = {'is_connected': False, 'role': None, 'error': error}
    return out


def _sysfs(name, attr):
    try:
        with open(f'/sys/class/net/{name}/{attr}') as f:
            return f.read().strip()
    except OSError:             # gone, or carrier of a down link (EINVAL)
        return None


def _sysfs_int(name, attr, base):
    text = _sysfs(name, attr)
    try:
        return int(text, base) if text is not None else None
    except ValueError:
        return None
