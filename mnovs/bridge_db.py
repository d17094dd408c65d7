"""What a bridge should be, computed from its database rows; what it is, as columns.

The bridge layer (mnovs.bridge) keeps one vswitchd per Bridge row. This
module holds the pure part of that job, the mirror of bridge.c's
bridge_reconfigure helpers, so it can be tested without a database:

- `desired_state(bridge)`: the whole desired state of one bridge, the JSON
  document of the `bridge/apply` command (see notes/bridge_contract.md):
  datapath id, fail mode, protocols, controllers with their rate limits,
  the ports, LOCAL first, each with its Interface type and options (a
  tunnel's remote_ip, key, ...), and the sFlow row (`sflow_entry`). A Port
  with several Interfaces is a bond: one entry named like the Port, with a
  "bond" object that carries its member interfaces and the Port's bond
  columns as they are (the vswitchd applies OVS's defaults and checks, as
  bridge.c's port_configure_bond).
- `sflow_sub_ids(rows)`: each bridge's sFlow sub-agent number, as OVS's
  sflow_bridge_number counts the bridges with sFlow (here in name order).
- `pick_datapath_id(name, other_config)`: OVS's other_config:datapath-id when
  it is valid (16 hex digits, not all zero, as OVS's dpid_from_string). OVS
  falls back to the bridge's MAC address, which it picks among its ports;
  mnovs falls back to a MAC-like 48-bit value hashed from the bridge name
  (locally administered, unicast), which is stable across restarts and known
  before the switch runs.
- `vswitchd_argv(name, other_config)`: the argv of the bridge's vswitchd.
  Only tuning that a vswitchd takes at start is in it, from Bridge
  other_config keys (OVS's own names where OVS has the knob per bridge);
  a change of these restarts that bridge's vswitchd.
- `interface_columns(status)` / `bridge_columns(status)`: a vswitchd's
  `bridge/status` reply as the Interface and Bridge column values that
  ovs-vswitchd writes back.

Rows are anything with the IDL Row attributes (name, ports, interfaces, ...):
optional columns are lists of zero or one value, maps are dicts.
"""

import hashlib

from mnovs import paths

DEFAULT_FAIL_MODE = 'standalone'        # OVS's, when Bridge.fail_mode is empty

# Bridge other_config key -> (vswitchd option, type). mac-aging-time and
# mac-table-size are OVS's own Bridge keys; the mnovs- keys have no per-bridge
# OVS counterpart (OVS sets flow-limit and max-idle for the whole daemon).
TUNING_KEYS = {
    'mac-aging-time': ('--mac-aging', float),
    'mac-table-size': ('--mac-table-size', int),
    'mnovs-flow-limit': ('--flow-limit', int),
    'mnovs-max-idle': ('--max-idle', int),
    'mnovs-emc-size': ('--emc-size', int),
    'mnovs-ring-slots': ('--ring-slots', int),
}
VERBOSE_KEY = 'mnovs-verbose'

# The LOCAL port is OpenFlow 1.3's 0xfffffffe; OVS's database shows it as 65534.
OFPP_LOCAL = 0xfffffffe
OFPP_LOCAL_DB = 65534

STAT_KEYS = ('rx_packets', 'rx_bytes', 'rx_dropped', 'rx_errors',
             'tx_packets', 'tx_bytes', 'tx_dropped')


def optional(value):
    """The value of an optional column (IDL: a list of 0 or 1 items), or None."""
    return value[0] if value else None


def pick_datapath_id(name, other_config):
    """The datapath id of bridge `name`, as 16 lower-case hex digits."""
    text = other_config.get('datapath-id', '')
    if len(text) == 16 and all(c in '0123456789abcdefABCDEF' for c in text) \
            and int(text, 16):
        return text.lower()
    mac = bytearray(hashlib.sha1(name.encode()).digest()[:6])
    mac[0] = (mac[0] & 0xfc) | 0x02         # locally administered, unicast
    return f'{int.from_bytes(mac, "big"):016x}'


def port_entries(bridge):
    """The bridge's ports for bridge/apply: LOCAL (named like the bridge) first.

    One entry per Interface, except for a Port with several interfaces: a
    bond, one entry (bond_entry).
    """
    local = {'name': bridge.name, 'type': 'internal', 'ofport_request': None, 'options': {}}
    others = []
    for port in bridge.ports:
        if len(port.interfaces) > 1:
            others.append(bond_entry(port))
            continue
        for iface in port.interfaces:
            entry = {'name': iface.name, 'type': iface.type,
                     'ofport_request': optional(iface.ofport_request),
                     'options': dict(iface.options)}
            if iface.name == bridge.name:
                local = entry
            else:
                others.append(entry)
    others.sort(key=lambda entry: entry['name'])
    return [local] + others


def bond_entry(port):
    """The bridge/apply entry of a bond: its Port's name and bond columns.

    Its OpenFlow number is the first member's (by name) ofport_request.
    """
    ifaces = sorted(port.interfaces, key=lambda iface: iface.name)
    request = next((optional(i.ofport_request) for i in ifaces if i.ofport_request), None)
    return {'name': port.name, 'type': '', 'ofport_request': request, 'options': {},
            'bond': {'members': [iface.name for iface in ifaces],
                     'bond_mode': optional(port.bond_mode), 'lacp': optional(port.lacp),
                     'bond_updelay': port.bond_updelay, 'bond_downdelay': port.bond_downdelay,
                     'other_config': dict(port.other_config)}}


def sflow_sub_ids(rows):
    """{bridge name: sFlow sub_id} for the Bridge rows {name: row} that have sFlow."""
    return {name: index for index, name in
            enumerate(sorted(name for name, row in rows.items() if row.sflow))}


def sflow_entry(bridge, sub_id=0):
    """The bridge's sFlow row for bridge/apply (see sflow/config.py), or None.

    Values go as the row has them (empty: null); the switch applies OVS's
    defaults and judges them.
    """
    row = optional(bridge.sflow)
    if row is None:
        return None
    return {'agent': optional(row.agent), 'targets': sorted(row.targets),
            'sampling': optional(row.sampling), 'polling': optional(row.polling),
            'header': optional(row.header), 'sub_id': sub_id}


def desired_state(bridge, sflow_sub_id=0):
    """The bridge/apply document of one Bridge row (a dict, JSON-ready)."""
    controllers = sorted(bridge.controller, key=lambda c: c.target)
    # OVS keeps one rate limit per bridge's connection manager; with several
    # controllers the first one (by target) that sets a limit wins.
    rate = next((optional(c.controller_rate_limit) for c in controllers
                 if c.controller_rate_limit), None)
    burst = next((optional(c.controller_burst_limit) for c in controllers
                  if c.controller_burst_limit), None)
    return {
        'datapath_id': pick_datapath_id(bridge.name, bridge.other_config),
        'fail_mode': optional(bridge.fail_mode) or DEFAULT_FAIL_MODE,
        'protocols': sorted(bridge.protocols),
        'controllers': [c.target for c in controllers],
        'controller_rate_limit': rate,
        'controller_burst_limit': burst,
        'ports': port_entries(bridge),
        'sflow': sflow_entry(bridge, sflow_sub_id),
    }


def vswitchd_argv(name, other_config):
    """Return (argv for mnovs.vswitchd.main, [warnings about ignored keys])."""
    argv = ['--name', name, '--log-file', paths.log_path(name)]
    warnings = []
    for key in sorted(TUNING_KEYS):
        if key not in other_config:
            continue
        option, kind = TUNING_KEYS[key]
        try:
            value = kind(other_config[key])
        except ValueError:
            value = 0
        if value > 0:
            argv += [option, str(value)]
        else:
            warnings.append(f'{name}: ignoring other_config:{key}='
                            f'"{other_config[key]}" (expected a positive number)')
    if other_config.get(VERBOSE_KEY) == 'true':
        argv.append('--verbose')
    return argv, warnings


def interface_columns(port):
    """Interface columns from one port of a bridge/status reply.

    Returns {column: value} in IDL form: optional columns as lists of 0 or 1.
    """
    ofport = port.get('ofport', -1)
    columns = {'ofport': [OFPP_LOCAL_DB if ofport == OFPP_LOCAL else ofport],
               'error': _opt(port.get('error'))}
    for column in ('ifindex', 'mac_in_use', 'link_state', 'admin_state'):
        columns[column] = _opt(port.get(column))
    stats = port.get('statistics')
    if stats is not None:
        columns['statistics'] = {key: int(stats[key]) for key in STAT_KEYS if key in stats}
    return columns


def bridge_columns(status):
    """Bridge columns from a bridge/status reply.

    OVS has no error column for sFlow (it only logs); what the switch could
    not use of the sFlow row goes into Bridge status:sflow, so that
    `ovs-vsctl get bridge BR status` shows it.
    """
    sflow = status.get('sflow') or {}
    errors = sflow.get('errors') or []
    return {'datapath_id': _opt(status.get('datapath_id')),
            'status': {'sflow': '; '.join(errors)} if errors else {}}


def controller_columns(controller):
    """Controller columns from a bridge/status `controllers` entry.

    A target the switch could not use (a bad address, a port in use) has an
    `error`, which goes where ovs-vswitchd puts it: status:last_error.
    """
    error = controller.get('error')
    return {'is_connected': bool(controller.get('is_connected')),
            'role': _opt(controller.get('role')),
            'status': {'last_error': error} if error else {}}


def _opt(value):
    return [] if value is None else [value]
