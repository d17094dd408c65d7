"""Tunnel ports: their configuration, and the tunnel an output goes into.

Two records, named after OVS's:

- TunnelConfig is a tunnel port's configuration (OVS's
  netdev_tunnel_config), parsed from the Interface `options` column by
  parse_tunnel_config() with OVS's defaults and OVS's error wording
  (lib/netdev-vport.c set_tunnel_config), so that `ovs-vsctl` users see in
  the Interface `error` column what they would see with OVS.
- TunnelSpec is the outer header an output to a tunnel port gets (OVS's
  struct flow_tnl as carried by the datapath action set(tunnel(...))). The
  slow path composes it from the port's TunnelConfig and the flow's
  tun_* fields; the datapath action ('set_tunnel', TunnelSpec) hands it to
  the tunnel port the next output goes to.

Only IPv4 underlays are supported. "flow" stands for "taken from the flow":
remote_ip=flow takes tun_dst, key=flow takes tun_id (set_field in OpenFlow),
and a port with in_key=flow or remote_ip=flow receives packets of any key or
any peer that no more specific port claims.
"""

import socket
from collections import namedtuple

from mnovs.dp.flow import FLOW_TNL_F_CSUM, FLOW_TNL_F_DONT_FRAGMENT, FLOW_TNL_F_KEY

FLOW = 'flow'
INHERIT = 'inherit'
VXLAN_DST_PORT = 4789               # IANA's VXLAN port (OVS's VXLAN_DST_PORT)
DEFAULT_TTL = 64                    # OVS's DEFAULT_TTL
TUNNEL_TYPES = ('vxlan',)
IP_DSCP_MASK = 0xfc                 # tos may set the DSCP bits only, as in OVS

TunnelConfig = namedtuple('TunnelConfig', [
    'remote_ip',    # 4 bytes, or FLOW
    'local_ip',     # 4 bytes, FLOW, or None (the kernel picks the source)
    'in_key',       # int (0 when absent: VNI 0), or FLOW
    'out_key',      # int, or FLOW
    'dst_port',     # UDP destination port
    'tos',          # int (DSCP bits), or INHERIT (the inner packet's tos)
    'ttl',          # int, or INHERIT (the inner packet's ttl)
    'csum',         # compute outer UDP checksums
    'df',           # set DF on the outer IPv4 header (df_default)
])

TunnelSpec = namedtuple('TunnelSpec', [
    'tun_id',       # VNI (int)
    'ip_src',       # 4 bytes; all zero: the kernel picks the source
    'ip_dst',       # 4 bytes
    'tos',          # outer tos (int)
    'ttl',          # outer ttl (int)
    'tp_dst',       # UDP destination port
    'flags',        # FLOW_TNL_F_* (df, csum, key)
])

_KNOWN_OPTIONS = frozenset(('remote_ip', 'local_ip', 'key', 'in_key', 'out_key', 'dst_port',
                            'tos', 'ttl', 'csum', 'df_default'))


class TunnelConfigError(ValueError):
    """A tunnel port that cannot be configured; str() is OVS's error text."""


def parse_tunnel_config(name, kind, options):
    """Parse a tunnel Interface's options as OVS's set_tunnel_config() does.

    Args:
        name: the interface name (it starts every message, as in OVS).
        kind: the Interface type ('vxlan').
        options: {option: string value} of the Interface `options` column.

    Returns:
        (TunnelConfig, warnings): warnings is a list of messages OVS logs
        without refusing the port (an unknown option, a bad address that
        leaves the option unset).

    Raises:
        TunnelConfigError: the port cannot work (no valid remote_ip, an IPv6
            address, local_ip=flow without remote_ip=flow, a bad number).
    """
    warnings = []
    remote_ip = local_ip = None
    tos, ttl, csum, df = 0, DEFAULT_TTL, False, True
    dst_port = VXLAN_DST_PORT
    for key, value in options.items():
        if key == 'remote_ip':
            remote_ip = _tunnel_ip(name, kind, key, value, warnings)
        elif key == 'local_ip':
            local_ip = _tunnel_ip(name, kind, key, value, warnings)
        elif key == 'tos':
            tos = _tos(name, value, warnings)
        elif key == 'ttl':
            ttl = INHERIT if value == INHERIT else (_number(name, key, value) or DEFAULT_TTL)
            if ttl != INHERIT and not 0 < ttl < 256:
                raise TunnelConfigError(f'{name}: invalid TTL {value}')
        elif key == 'dst_port':
            dst_port = _number(name, key, value)
            if not 0 < dst_port < 65536:
                raise TunnelConfigError(f'{name}: invalid dst_port {value}')
        elif key == 'csum':
            csum = value == 'true'
        elif key == 'df_default':
            df = value != 'false'
        elif key not in _KNOWN_OPTIONS:
            warnings.append(f"{name}: unknown {kind} argument '{key}'")
    if remote_ip is None:
        raise TunnelConfigError(f"{name}: {kind} type requires valid 'remote_ip' argument")
    if local_ip == FLOW and remote_ip != FLOW:
        raise TunnelConfigError(f"{name}: {kind} type requires 'remote_ip=flow' "
                                f"with 'local_ip=flow'")
    in_key = _key(name, options, 'in_key')
    out_key = _key(name, options, 'out_key')
    return TunnelConfig(remote_ip, local_ip, in_key, out_key, dst_port, tos, ttl, csum,
                        df), warnings


def _tunnel_ip(name, kind, option, value, warnings):
    if value == FLOW:
        return FLOW
    try:
        return socket.inet_pton(socket.AF_INET, value)
    except OSError:
        pass
    try:
        socket.inet_pton(socket.AF_INET6, value)
    except OSError:
        warnings.append(f"{name}: bad {kind} '{option}'")
        return None
    raise TunnelConfigError(f'{name}: {option}={value}: IPv6 tunnels are not supported by mnovs')


def _tos(name, value, warnings):
    if value == INHERIT:
        return INHERIT
    try:
        tos = int(value, 0)
    except ValueError:
        tos = -1
    if tos != tos & IP_DSCP_MASK:
        warnings.append(f'{name}: invalid TOS {value}')
        return 0
    return tos


def _number(name, option, value):
    try:
        return int(value, 0)
    except ValueError:
        raise TunnelConfigError(f'{name}: bad {option} {value!r}: expected a number') from None


def _key(name, options, option):
    """in_key/out_key as OVS's parse_key(): that option, else 'key', else 0."""
    value = options.get(option, options.get('key'))
    if value is None:
        return 0
    if value == FLOW:
        return FLOW
    key = _number(name, option if option in options else 'key', value)
    if not 0 <= key < 1 << 24:
        # A VXLAN header has 24 bits of VNI; OVS would silently cut the rest.
        raise TunnelConfigError(f'{name}: key {value} does not fit in a 24-bit VNI')
    return key


def spec_flags(config, has_key=True):
    """The FLOW_TNL_F_* flags an output through a port with `config` carries."""
    return ((FLOW_TNL_F_DONT_FRAGMENT if config.df else 0)
            | (FLOW_TNL_F_CSUM if config.csum else 0)
            | (FLOW_TNL_F_KEY if has_key else 0))
