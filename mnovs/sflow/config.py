"""sFlow configuration: a bridge's sFlow row as options, its targets, its agent address.

The bridge layer sends the sFlow row of a bridge inside `bridge/apply` as

    "sflow": {"agent": "s1-eth1" | null, "targets": ["127.0.0.1:6343"],
              "sampling": 64 | null, "polling": 10 | null, "header": 128 | null,
              "sub_id": 0}

or null when the bridge has no sFlow row (bridge_db.sflow_entry). This
module turns it into SflowOptions with OVS's defaults (vswitchd/bridge.c
bridge_configure_sflow, lib/sflow.h): sampling 400, polling 30 s, header
128 bytes, collector port 6343. A document of the wrong shape is a command
error (parse_options raises); a value the database allows but sFlow cannot
use is not: it is one of the options' `errors`, which the agent logs and
shows (sflow/show, bridge/status), and the switch goes on forwarding:

- sampling 0 turns sampling off, as in OVS (nothing to sample); a negative
  one is an error and also turns it off;
- polling 0 turns counter polling off; a negative one is an error (off);
- a header outside 1..1400 is an error; the default is used.

Targets are "IP[:PORT]" with an IP literal ("[IPv6]:PORT" for IPv6), as
OVS's inet_parse_active; parse_target() says what is wrong with one in
OVS's words. The agent address follows sflow_choose_agent_address():
the IP of the `agent` device, else `agent` itself if it is an IP literal,
else the source address the kernel's routes pick towards the first usable
target (a connected UDP socket's name: nothing is sent).
"""

import fcntl
import ipaddress
import socket
import struct
from collections import namedtuple

DEFAULT_SAMPLING = 400
DEFAULT_POLLING = 30
DEFAULT_HEADER = 128
DEFAULT_PORT = 6343
MAX_HEADER = 1400 - 200             # a sample must fit a datagram with its fixed fields
SIOCGIFADDR = 0x8915

SflowOptions = namedtuple('SflowOptions', 'targets sampling polling header agent sub_id errors')
SflowOptions.__doc__ = """What the sFlow row asks, with defaults applied.

targets: the target strings as given; sampling: 1 in N packets (0: off);
polling: seconds between counter samples (0: off); header: bytes of each
sampled frame exported; agent: the agent column or None; sub_id: the
bridge's sub-agent number; errors: one-line reasons for values not used."""


def parse_options(doc):
    """Check the "sflow" entry of a bridge/apply document.

    Returns:
        SflowOptions, or None when the entry is null (no sFlow).
    Raises:
        ValueError: the entry has the wrong shape (a one-line reason).
    """
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise ValueError('bridge/apply: sflow: expected an object or null')
    targets = doc.get('targets', [])
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise ValueError('bridge/apply: sflow: targets: expected a list of strings')
    agent = doc.get('agent')
    if agent is not None and not isinstance(agent, str):
        raise ValueError('bridge/apply: sflow: agent: expected a string or null')
    values = {}
    for key in ('sampling', 'polling', 'header', 'sub_id'):
        value = doc.get(key)
        if value is not None and type(value) is not int:
            raise ValueError(f'bridge/apply: sflow: {key}: expected an integer or null')
        values[key] = value
    errors = []
    sampling = _default(values['sampling'], DEFAULT_SAMPLING)
    if sampling < 0:
        errors.append(f'sampling={sampling}: a sampling rate must be positive; '
                      'sampling is off')
        sampling = 0
    polling = _default(values['polling'], DEFAULT_POLLING)
    if polling < 0:
        errors.append(f'polling={polling}: a polling interval must be positive; '
                      'counter polling is off')
        polling = 0
    header = _default(values['header'], DEFAULT_HEADER)
    if not 0 < header <= MAX_HEADER:
        errors.append(f'header={header}: expected 1..{MAX_HEADER} bytes; '
                      f'using {DEFAULT_HEADER}')
        header = DEFAULT_HEADER
    return SflowOptions(tuple(targets), sampling, polling, header, agent or None,
                        values['sub_id'] or 0, tuple(errors))


def _default(value, default):
    return default if value is None else value


def parse_target(target):
    """"IP[:PORT]" or "[IPv6]:PORT" -> (family, (address, port)).

    Raises:
        ValueError: OVS's words for what is wrong.
    """
    host, port = target, None
    if target.startswith('['):
        host, _, rest = target[1:].partition(']')
        if rest:
            if not rest.startswith(':'):
                raise ValueError(f'{target}: bad IP address "{target}"')
            port = rest[1:]
    elif target.count(':') == 1:
        host, port = target.split(':')
    if port is not None:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f'{target}: bad port number "{port}"')
        port = int(port)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f'{target}: bad IP address "{host}"') from None
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    return family, (str(address), port or DEFAULT_PORT)


def device_address(name):
    """The packed IP address of network device `name` (IPv4 first), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            reply = fcntl.ioctl(sock.fileno(), SIOCGIFADDR,
                                struct.pack('256s', name.encode()[:15]))
            return reply[20:24]
        except OSError:
            pass
    try:
        with open('/proc/net/if_inet6') as f:
            for line in f:
                fields = line.split()
                if fields[-1] == name and not fields[0].startswith('fe80'):
                    return bytes.fromhex(fields[0])
    except OSError:
        pass
    return None


def route_source(family, sockaddr):
    """The local address the kernel would send from to sockaddr, packed; None if no route."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(sockaddr)
            local = sock.getsockname()[0]
    except OSError:
        return None
    return socket.inet_pton(family, local)


def choose_agent_address(agent, targets):
    """OVS's sflow_choose_agent_address.

    Returns:
        (packed address or None, warning or None): the warning says that
        `agent` named neither a device with an address nor an IP.
    """
    warning = None
    if agent:
        address = device_address(agent)
        if address is not None:
            return address, None
        try:
            return ipaddress.ip_address(agent).packed, None
        except ValueError:
            warning = (f'agent "{agent}" is neither a device with an IP address nor an '
                       'IP address; using the route source towards the collectors')
    for target in targets:
        try:
            family, sockaddr = parse_target(target)
        except ValueError:
            continue
        address = route_source(family, sockaddr)
        if address is not None:
            return address, warning
    return None, warning
