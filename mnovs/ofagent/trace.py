"""ofproto/trace: one flow through the OpenFlow pipeline, and why its megaflow is what it is.

`mnovs-appctl s1 ofproto/trace FLOW` prints what OVS's ofproto/trace prints
(ofproto/ofproto-dpif-trace.c), plus the reason for every megaflow field:

    Flow: tcp,in_port=1,dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02,...

    bridge("s1")
    ------------
     0. ip,in_port=1,nw_dst=10.0.0.0/24, priority 10
        dec_ttl
         -> now nw_ttl=63 (was nw_ttl=64)
        goto_table:1
     1. tcp,tp_dst=80, priority 5
        output:2
         -> datapath: set(ipv4(ttl=63)),2

    Final flow: tcp,in_port=1,...,nw_ttl=63,tp_dst=80
    Megaflow: tcp,in_port=1,nw_dst=10.0.0.0/24,nw_ttl=64,tp_dst=80
    Datapath actions: set(ipv4(ttl=63)),2

    Why these fields are in the megaflow:
      in_port=1            always exact: every megaflow matches its input port
      dl_type=0x0800       table 0: matched rule "priority 10 ip,in_port=1,..."
      ...
      nw_ttl=64            table 0: dec_ttl reads the TTL to decrement it

The steps come from xlate itself: xlate_trace runs the real translation and
records events (tables, actions, group choices, outcomes, and each read of
key bits with its reason), and this module only tells them.  A table
lookup's reads are split by subtable (table.py's classifier) to name the
rules they were for: the rule that matched, or the higher-priority ones
the lookup had to rule out.  Only the reasons differ from OVS: the Megaflow
line is exactly the mask xlate returns, written as an ovs-ofctl match.

The first half of the module is that syntax, in both directions:
parse_flow (a packet, for the command line), parse_match and format_match
(a key and a mask: megaflows, rule matches), format_flow (a packet, zero
fields left out).  Names are ovs-ofctl's (dl_src, nw_dst, tp_dst, ...; ip,
tcp6, arp, ... for dl_type and nw_proto); one key field can carry several
names (nw_src is arp_spa in an ARP packet, tp_src is icmp_type in ICMP), and
the formatter picks the one the packet's protocol calls for.  A flow needs
in_port, has no masks, and names a field only after its protocol (tcp_dst
needs tcp or tcp6); fields not given are 0, as in OVS.  metadata is
pipeline state, not a packet field, and is refused.

Nothing here changes the switch: a trace learns no MAC and credits no rule.
"""

import re
import socket
from collections import namedtuple

from mnovs.dp.flow import FIELD_SLICES, KEY_LEN
from mnovs.dp.odp_util import format_actions
from mnovs.ofagent.match import KEY_ONES, METADATA_SHIFT, TUNNEL_SHIFT, field_bits, field_shift
from mnovs.ofagent.normal import is_reserved_group, key_vlan
from mnovs.ofagent.ofp import (
    OFPCML_NO_BUFFER, OFPGT_ALL, OFPGT_FF, OFPGT_INDIRECT, OFPGT_SELECT, OFPP_ALL,
    OFPP_CONTROLLER, OFPP_FLOOD, OFPP_IN_PORT, OFPP_LOCAL, OFPP_MAX, OFPP_NORMAL, OFPP_TABLE,
    OFPR_ACTION, OFPR_INVALID_TTL, OFPR_NO_MATCH)
from mnovs.ofagent.xlate import decode_userdata, xlate_trace

# --- ovs-ofctl flow syntax -----------------------------------------------------

# A field: where it lives in the key (field, lowest bit, bits it may cover),
# `full`: its mask when no mask is written, `syntax`: how its value is
# written, `need`: its prerequisite (see _NEEDS), or None.
Field = namedtuple('Field', 'key low bits full syntax need')


def _f(key, low, bits, syntax, need=None, full=None):
    return Field(key, low, bits, (1 << bits) - 1 if full is None else full, syntax, need)


FIELDS = {
    'in_port': _f('in_port', 0, 32, 'port'),
    'dl_vlan': _f('vlan_tci', 0, 12, 'dec'),         # these two also set VLAN_CFI
    'dl_vlan_pcp': _f('vlan_tci', 13, 3, 'dec'),
    'vlan_tci': _f('vlan_tci', 0, 16, 'hex4'),
    'vlan_vid': _f('vlan_tci', 0, 13, 'vid'),        # OpenFlow's: OFPVID_PRESENT | vid
    'vlan_tpid': _f('vlan_tpid', 0, 16, 'hex4', 'vlan'),
    'dl_src': _f('eth_src', 0, 48, 'mac'),
    'dl_dst': _f('eth_dst', 0, 48, 'mac'),
    'dl_type': _f('eth_type', 0, 16, 'hex4'),
    'mpls_label': _f('mpls_lse', 12, 20, 'dec', 'mpls'),
    'mpls_tc': _f('mpls_lse', 9, 3, 'dec', 'mpls'),
    'mpls_ttl': _f('mpls_lse', 0, 8, 'dec', 'mpls'),
    'mpls_bos': _f('mpls_lse', 8, 1, 'dec', 'mpls'),
    'ipv6_src': _f('ipv6_src', 0, 128, 'ip6', 'ipv6'),
    'ipv6_dst': _f('ipv6_dst', 0, 128, 'ip6', 'ipv6'),
    'ipv6_label': _f('ipv6_label', 0, 32, 'hex', 'ipv6', full=0xfffff),
    'nw_src': _f('nw_src', 0, 32, 'ip4', 'ip4_arp'),
    'nw_dst': _f('nw_dst', 0, 32, 'ip4', 'ip4_arp'),
    'arp_spa': _f('nw_src', 0, 32, 'ip4', 'arp'),
    'arp_tpa': _f('nw_dst', 0, 32, 'ip4', 'arp'),
    'nw_proto': _f('nw_proto', 0, 8, 'dec', 'ip_arp'),
    'arp_op': _f('nw_proto', 0, 8, 'dec', 'arp'),
    'nw_tos': _f('nw_tos', 2, 6, 'tos', 'ip'),
    'ip_dscp': _f('nw_tos', 2, 6, 'dec', 'ip'),
    'nw_ecn': _f('nw_tos', 0, 2, 'dec', 'ip'),
    'nw_ttl': _f('nw_ttl', 0, 8, 'dec', 'ip'),
    'nw_frag': _f('nw_frag', 0, 8, 'frag', 'ip', full=3),
    'tp_src': _f('tp_src', 0, 16, 'dec', 'l4'),
    'tp_dst': _f('tp_dst', 0, 16, 'dec', 'l4'),
    'tcp_src': _f('tp_src', 0, 16, 'dec', 'tcp'),
    'tcp_dst': _f('tp_dst', 0, 16, 'dec', 'tcp'),
    'udp_src': _f('tp_src', 0, 16, 'dec', 'udp'),
    'udp_dst': _f('tp_dst', 0, 16, 'dec', 'udp'),
    'sctp_src': _f('tp_src', 0, 16, 'dec', 'sctp'),
    'sctp_dst': _f('tp_dst', 0, 16, 'dec', 'sctp'),
    'tcp_flags': _f('tcp_flags', 0, 16, 'tcp_flags', 'tcp', full=0xfff),
    'icmp_type': _f('tp_src', 0, 16, 'dec', 'icmp', full=0xff),
    'icmp_code': _f('tp_dst', 0, 16, 'dec', 'icmp', full=0xff),
    'arp_sha': _f('arp_sha', 0, 48, 'mac', 'arp'),
    'arp_tha': _f('arp_tha', 0, 48, 'mac', 'arp'),
    'nd_target': _f('nd_target', 0, 128, 'ip6', 'nd'),
    'nd_sll': _f('arp_sha', 0, 48, 'mac', 'nd_sll'),
    'nd_tll': _f('arp_tha', 0, 48, 'mac', 'nd_tll'),
}
ALIASES = {'eth_src': 'dl_src', 'eth_dst': 'dl_dst', 'eth_type': 'dl_type',
           'ip_src': 'nw_src', 'ip_dst': 'nw_dst', 'ip_proto': 'nw_proto',
           'icmpv6_type': 'icmp_type', 'icmpv6_code': 'icmp_code'}
PROTOCOLS = {'ip': (0x0800, None), 'ipv6': (0x86dd, None), 'arp': (0x0806, None),
             'mpls': (0x8847, None), 'mplsm': (0x8848, None),
             'icmp': (0x0800, 1), 'tcp': (0x0800, 6), 'udp': (0x0800, 17), 'sctp': (0x0800, 132),
             'icmp6': (0x86dd, 58), 'tcp6': (0x86dd, 6), 'udp6': (0x86dd, 17),
             'sctp6': (0x86dd, 132)}
_PROTOCOL_NAMES = {value: name for name, value in PROTOCOLS.items()}

# Prerequisites: (what to say, alternatives); an alternative is a tuple of
# (key field, its bits that must be exact, allowed values).
_IP = ('eth_type', 0xffff, (0x0800, 0x86dd))


def _proto(*numbers):
    return ('nw_proto', 0xff, numbers)


_ICMP6 = (('eth_type', 0xffff, (0x86dd,)), _proto(58))
_NEEDS = {
    'vlan': ('a VLAN tag (dl_vlan=...)', ((('vlan_tci', 0x1000, (0x1000,)),),)),
    'mpls': ('mpls or mplsm', ((('eth_type', 0xffff, (0x8847, 0x8848)),),)),
    'ipv6': ('ipv6 (or tcp6, udp6...)', ((('eth_type', 0xffff, (0x86dd,)),),)),
    'ip4_arp': ('ip or arp', ((('eth_type', 0xffff, (0x0800, 0x0806)),),)),
    'ip_arp': ('ip, ipv6 or arp', ((('eth_type', 0xffff, (0x0800, 0x86dd, 0x0806)),),)),
    'arp': ('arp', ((('eth_type', 0xffff, (0x0806,)),),)),
    'ip': ('ip or ipv6', ((_IP,),)),
    'l4': ('tcp, udp or sctp (or tcp6, udp6, sctp6)', ((_IP, _proto(6, 17, 132)),)),
    'tcp': ('tcp or tcp6', ((_IP, _proto(6)),)),
    'udp': ('udp or udp6', ((_IP, _proto(17)),)),
    'sctp': ('sctp or sctp6', ((_IP, _proto(132)),)),
    'icmp': ('icmp or icmp6', ((('eth_type', 0xffff, (0x0800,)), _proto(1)), _ICMP6)),
    'nd': ('icmp6,icmp_type=135 or 136', (_ICMP6 + (('tp_src', 0xff, (135, 136)),),)),
    'nd_sll': ('icmp6,icmp_type=135', (_ICMP6 + (('tp_src', 0xff, (135,)),),)),
    'nd_tll': ('icmp6,icmp_type=136', (_ICMP6 + (('tp_src', 0xff, (136,)),),)),
}

_TCP_FLAGS = ('fin', 'syn', 'rst', 'psh', 'ack', 'urg', 'ece', 'cwr', 'ns')
_NAMED_FLAGS = (1 << len(_TCP_FLAGS)) - 1
_FRAG_WORDS = {'no': (0, 3), 'first': (1, 3), 'later': (3, 3), 'yes': (1, 1), 'not_later': (0, 2)}
_FRAG_TEXT = {value: word for word, value in _FRAG_WORDS.items()}
VLAN_CFI = 0x1000
_CFI_BITS = field_bits('vlan_tci', VLAN_CFI)
_TPID_SHIFT = field_shift('vlan_tpid')
_TCI_SHIFT = field_shift('vlan_tci')
IN_PORT_BITS = field_bits('in_port')


def _bits(field):
    """The key-int mask of every bit a Field may cover."""
    return field_bits(field.key, ((1 << field.bits) - 1) << field.low)


def _shift(field):
    return field_shift(field.key) + field.low


def parse_match(text, port_names=None):
    """Parse an ovs-ofctl match ("tcp,in_port=1,nw_dst=10.0.0.0/24") into a key and a mask.

    Prerequisites are not checked: a megaflow mask may hold fields the packet
    lacks (a SELECT group hashes IPv6 addresses of an IPv4 packet too).

    Args:
        text: the match.
        port_names: optional {port name: number}, for in_port=s1-eth1.
    Returns:
        (key, mask), KEY_LEN bytes each; key has no bit outside mask.
    Raises:
        ValueError: one line naming the bad item.
    """
    value, mask, _ = _parse(text, port_names, flow=False)
    return value.to_bytes(KEY_LEN, 'big'), mask.to_bytes(KEY_LEN, 'big')


def parse_flow(text, port_names=None):
    """Parse a packet in ovs-ofctl syntax ("in_port=1,tcp,nw_dst=10.0.0.2,tp_dst=80").

    Args:
        text: comma-separated fields and protocol names, in any order; in_port
            is required, masks are not allowed, unnamed fields are 0.
        port_names: optional {port name: number}, for in_port=s1-eth1.
    Returns:
        the flow key, KEY_LEN bytes.
    Raises:
        ValueError: one line: an unknown field, a bad value, a missing
        in_port or prerequisite, a conflict.
    """
    value, mask, tokens = _parse(text, port_names, flow=True)
    if not mask & IN_PORT_BITS:
        raise ValueError('missing in_port: say where the packet enters, e.g. in_port=1')
    for token, name in tokens:
        need = FIELDS[name].need
        if need is not None and not _meets(value, mask, _NEEDS[need][1]):
            raise ValueError(f'{token}: {name} needs {_NEEDS[need][0]} in the flow')
    tci = value >> _TCI_SHIFT & 0xffff
    if tci and not tci & VLAN_CFI:
        raise ValueError(f'vlan_tci=0x{tci:04x}: a tag needs the present bit 0x1000 '
                         '(or say dl_vlan=N)')
    if tci and not mask & field_bits('vlan_tpid'):
        value |= 0x8100 << _TPID_SHIFT
    return value.to_bytes(KEY_LEN, 'big')


def _meets(value, mask, alternatives):
    for alternative in alternatives:
        for name, ones, allowed in alternative:
            shift = field_shift(name)
            if mask >> shift & ones != ones or value >> shift & ones not in allowed:
                break
        else:
            return True
    return False


def _parse(text, port_names, flow):
    """Return (value, mask, [(token, field name)]) over the key as ints."""
    value = mask = 0
    owners = []                         # (bits, token), to name a conflict
    tokens = []
    for token in text.split(','):
        token = token.strip()
        if not token:
            continue
        for bits, bits_value in _assignments(token, port_names, flow, tokens):
            for owner_bits, owner in owners:
                if (value ^ bits_value) & bits & owner_bits:
                    raise ValueError(f'{token}: conflicts with {owner}')
            owners.append((bits, token))
            value |= bits_value
            mask |= bits
    return value, mask, tokens


def _assignments(token, port_names, flow, tokens):
    """The (bits, value) pairs one token sets; appends (token, field) to tokens."""
    name, equals, text = token.partition('=')
    name = name.strip()
    if not equals:
        if name in PROTOCOLS:
            eth_type, proto = PROTOCOLS[name]
            out = [(field_bits('eth_type'), eth_type << field_shift('eth_type'))]
            if proto is not None:
                out.append((field_bits('nw_proto'), proto << field_shift('nw_proto')))
            return out
        if ALIASES.get(name, name) in FIELDS:
            raise ValueError(f'{token}: needs a value ({name}=...)')
        raise ValueError(f'{token}: unknown field or protocol')
    name = ALIASES.get(name, name)
    if name == 'metadata':
        raise ValueError(f'{token}: metadata is pipeline state, not a packet field '
                         '(tables set it with write_metadata)')
    field = FIELDS.get(name)
    if field is None:
        raise ValueError(f'{token}: unknown field {name!r}')
    text = text.strip()
    if flow and ('/' in text or field.syntax == 'frag' and text in ('yes', 'not_later')):
        raise ValueError(f'{token}: a flow is one packet, it has no masks')
    try:
        v, m = _parse_value(field, text, port_names)
    except ValueError as err:
        raise ValueError(f'{token}: {err}') from None
    tokens.append((token, name))
    shift = _shift(field)
    out = [(m << shift, (v & m) << shift)]
    if name in ('dl_vlan', 'dl_vlan_pcp'):
        out.append((_CFI_BITS, _CFI_BITS))
    return out


def _parse_value(field, text, port_names):
    """Return (value, mask) in the field's units; mask is field.full if none is written."""
    syntax = field.syntax
    if syntax == 'frag':
        if text in _FRAG_WORDS:
            return _FRAG_WORDS[text]
        if not text[:1].isdigit():
            raise ValueError('nw_frag is no, first or later (or, in a match, yes or not_later)')
    if syntax == 'tcp_flags' and text[:1] in ('+', '-'):
        return _parse_flag_signs(text)
    if syntax == 'port' and not text[:1].isdigit():
        if text not in (port_names or {}):
            raise ValueError(f'no port is named {text!r}')
        return port_names[text], field.full
    text, slash, mask_text = text.partition('/')
    parse = _VALUE_PARSERS.get(syntax, _parse_int)
    value = parse(text, field.bits)
    if not slash:
        if syntax == 'vid' and value and not value & VLAN_CFI:
            raise ValueError('an OpenFlow VLAN id needs OFPVID_PRESENT (0x1000|vid); '
                             'for a VLAN number say dl_vlan=N')
        if value & ~field.full:
            raise ValueError(f'{text} is too big (the field holds {field.full:#x} at most)')
        return value, field.full
    if syntax in ('ip4', 'ip6') and mask_text.isdigit():
        width = 32 if syntax == 'ip4' else 128
        prefix = int(mask_text)
        if prefix > width:
            raise ValueError(f'/{prefix}: a prefix is at most {width} bits')
        return value, ((1 << prefix) - 1) << (width - prefix)
    return value, parse(mask_text, field.bits)


def _parse_int(text, bits):
    try:
        value = int(text, 0)
    except ValueError:
        raise ValueError(f'{text!r} is not a number') from None
    if not 0 <= value < 1 << bits:
        raise ValueError(f'{text} does not fit in {bits} bits')
    return value


def _parse_tos(text, bits):
    value = _parse_int(text, 8)
    if value & 3:
        raise ValueError('the low 2 bits of nw_tos are ECN: say nw_ecn=N for them')
    return value >> 2


def _parse_mac(text, bits):
    parts = text.split(':')
    if len(parts) != 6 or not all(len(p) in (1, 2) for p in parts):
        raise ValueError(f'{text!r} is not a MAC address (xx:xx:xx:xx:xx:xx)')
    try:
        return int(''.join(p.rjust(2, '0') for p in parts), 16)
    except ValueError:
        raise ValueError(f'{text!r} is not a MAC address (xx:xx:xx:xx:xx:xx)') from None


def _parse_ip(family, what):
    def parse(text, bits):
        try:
            return int.from_bytes(socket.inet_pton(family, text), 'big')
        except OSError:
            raise ValueError(f'{text!r} is not an {what} address') from None
    return parse


def _parse_flags(text, bits):
    if text[:1].isdigit():
        return _parse_int(text, bits)
    value = 0
    for name in text.split('|'):
        value |= _flag_bit(name)
    return value


def _flag_bit(name):
    if name not in _TCP_FLAGS:
        raise ValueError(f'{name!r} is not a TCP flag ({", ".join(_TCP_FLAGS)})')
    return 1 << _TCP_FLAGS.index(name)


def _parse_flag_signs(text):
    """'+syn-ack': syn set, ack clear, the others wildcarded."""
    value = mask = 0
    for sign, name in re.findall(r'([+-])([^+-]*)', text):
        bit = _flag_bit(name)
        mask |= bit
        if sign == '+':
            value |= bit
    return value, mask


_VALUE_PARSERS = {'mac': _parse_mac, 'ip4': _parse_ip(socket.AF_INET, 'IPv4'),
                  'ip6': _parse_ip(socket.AF_INET6, 'IPv6'), 'tos': _parse_tos,
                  'tcp_flags': _parse_flags}


# Formatting: the fields in ovs-ofctl's order, by the name each protocol gives them.
_ORDER = ('in_port', 'vlan', 'vlan_tpid', 'dl_src', 'dl_dst', 'dl_type', 'mpls_label',
          'mpls_tc', 'mpls_ttl', 'mpls_bos', 'ipv6_src', 'ipv6_dst', 'ipv6_label', 'nw_src',
          'nw_dst', 'nw_proto', 'nw_tos', 'nw_ecn', 'nw_ttl', 'nw_frag', 'tp_src', 'tp_dst',
          'tcp_flags', 'arp_sha', 'arp_tha', 'nd_target')
_ARP_NAMES = {'nw_src': 'arp_spa', 'nw_dst': 'arp_tpa', 'nw_proto': 'arp_op'}
_ICMP_NAMES = {'tp_src': 'icmp_type', 'tp_dst': 'icmp_code'}
_ND_NAMES = {'arp_sha': 'nd_sll', 'arp_tha': 'nd_tll'}
_VLAN_BITS = field_bits('vlan_tci')
_VLAN_NAMES = ('dl_vlan', 'dl_vlan_pcp', 'vlan_tci')
ETH_SRC, ETH_DST = FIELD_SLICES['eth_src'][0], FIELD_SLICES['eth_dst'][0]


def _names(value, mask):
    """Field names for this key's protocol: {generic name: the name to print}."""
    eth_type = value >> field_shift('eth_type') & 0xffff \
        if mask & field_bits('eth_type') == field_bits('eth_type') else None
    proto = value >> field_shift('nw_proto') & 0xff \
        if mask & field_bits('nw_proto') == field_bits('nw_proto') else None
    if eth_type == 0x0806:
        return _ARP_NAMES
    if (eth_type, proto) in ((0x0800, 1), (0x86dd, 58)):
        return {**_ICMP_NAMES, **_ND_NAMES} if proto == 58 else _ICMP_NAMES
    return {}


def field_items(key, mask, flow=False):
    """The fields of a masked key as ovs-ofctl writes them, in order.

    Args:
        key, mask: ints over the flow key.
        flow: a packet: every field is exact, zero fields are left out.
    Returns:
        [(name, text, bits)]: 'nw_dst', 'nw_dst=10.0.0.0/24', the key bits
        the name covers.
    """
    value = key & mask
    names = _names(value, mask)
    items = []
    for generic in _ORDER:
        if generic == 'vlan':
            items.extend(_vlan_items(value, mask, flow))
            continue
        name = names.get(generic, generic)
        field = FIELDS[name]
        shift, ones = _shift(field), (1 << field.bits) - 1
        v, m = value >> shift & ones, mask >> shift & ones
        if flow:
            m = field.full if v or name == 'in_port' else 0
            if name == 'vlan_tpid' and v == 0x8100:
                m = 0
        if m:
            items.append((name, f'{name}={_format_value(field, v & m, m)}', _bits(field)))
    return items


def _vlan_items(value, mask, flow):
    """OVS's VLAN forms: dl_vlan=10[,dl_vlan_pcp=3] for a tag, else vlan_tci=V[/M]."""
    tci, m = value >> _TCI_SHIFT & 0xffff, mask >> _TCI_SHIFT & 0xffff
    if flow:
        m = (0xffff if tci >> 13 else 0x1fff) if tci else 0
    if not m:
        return []
    vid_mask, pcp_mask = m & 0xfff, m & 0xe000
    if m & tci & VLAN_CFI and vid_mask in (0, 0xfff) and pcp_mask in (0, 0xe000) \
            and (vid_mask or pcp_mask):
        items = []
        if vid_mask:
            items.append(('dl_vlan', f'dl_vlan={tci & 0xfff}', _VLAN_BITS))
        if pcp_mask:
            items.append(('dl_vlan_pcp', f'dl_vlan_pcp={tci >> 13}', _VLAN_BITS))
        return items
    text = f'vlan_tci=0x{tci:04x}' + ('' if m == 0xffff else f'/0x{m:04x}')
    return [('vlan_tci', text, _VLAN_BITS)]


def _format_value(field, value, mask):
    syntax = field.syntax
    if syntax == 'tos':
        value, mask, field = value << 2, mask << 2, field._replace(full=0xfc)
    if syntax == 'frag' and (value, mask) in _FRAG_TEXT:
        return _FRAG_TEXT[value, mask]
    if syntax == 'tcp_flags' and mask == 0xfff and not value & ~_NAMED_FLAGS:
        return '|'.join(n for i, n in enumerate(_TCP_FLAGS) if value >> i & 1) or '0'
    if syntax == 'tcp_flags' and not mask & ~_NAMED_FLAGS:
        return ''.join(('+' if value >> i & 1 else '-') + n
                       for i, n in enumerate(_TCP_FLAGS) if mask >> i & 1)
    if syntax in ('mac', 'ip4', 'ip6'):
        text = _ADDRESS_TEXT[syntax](value)
        if mask == field.full:
            return text
        if syntax != 'mac':
            width = 32 if syntax == 'ip4' else 128
            prefix = bin(mask).count('1')
            if mask == ((1 << prefix) - 1) << (width - prefix):
                return f'{text}/{prefix}'
        return f'{text}/{_ADDRESS_TEXT[syntax](mask)}'
    if mask == field.full:
        if syntax == 'hex4':
            return f'0x{value:04x}'
        return hex(value) if syntax in ('hex', 'tcp_flags') else str(value)
    return f'{value:#x}/{mask:#x}'


_ADDRESS_TEXT = {
    'mac': lambda v: ':'.join('%02x' % b for b in (v if isinstance(v, bytes)
                                                   else v.to_bytes(6, 'big'))),
    'ip4': lambda v: socket.inet_ntop(socket.AF_INET, v.to_bytes(4, 'big')),
    'ip6': lambda v: socket.inet_ntop(socket.AF_INET6, v.to_bytes(16, 'big')),
}


def _join(items, value, mask):
    """Items joined, dl_type and nw_proto written as a protocol name where one exists."""
    eth_bits, proto_bits = field_bits('eth_type'), field_bits('nw_proto')
    eth_type = value >> field_shift('eth_type') & 0xffff
    proto = value >> field_shift('nw_proto') & 0xff
    head, hidden = [], set()
    if mask & eth_bits == eth_bits:
        if mask & proto_bits == proto_bits and (eth_type, proto) in _PROTOCOL_NAMES:
            head, hidden = [_PROTOCOL_NAMES[eth_type, proto]], {'dl_type', 'nw_proto'}
        elif (eth_type, None) in _PROTOCOL_NAMES:
            head, hidden = [_PROTOCOL_NAMES[eth_type, None]], {'dl_type'}
    return ','.join(head + [text for name, text, _ in items if name not in hidden])


def format_match(key, mask):
    """Write a masked key as an ovs-ofctl match: 'tcp,in_port=1,nw_dst=10.0.0.0/24'.

    Args:
        key, mask: KEY_LEN bytes or ints.
    Returns:
        the text ('' for an empty mask); parse_match reads it back.
    """
    key, mask = _as_int(key), _as_int(mask)
    return _join(field_items(key, mask), key & mask, mask)


def format_flow(key):
    """Write a packet's key in ovs-ofctl syntax, zero fields left out; parse_flow reads it."""
    key = _as_int(key)
    return _join(field_items(key, KEY_ONES, flow=True), key, KEY_ONES)


def _as_int(data):
    return data if isinstance(data, int) else int.from_bytes(data, 'big')


# --- the trace -----------------------------------------------------------------

_RESERVED_PORTS = {OFPP_IN_PORT: 'IN_PORT', OFPP_TABLE: 'TABLE', OFPP_NORMAL: 'NORMAL',
                   OFPP_FLOOD: 'FLOOD', OFPP_ALL: 'ALL', OFPP_LOCAL: 'LOCAL'}
_REASONS = {OFPR_NO_MATCH: 'no_match', OFPR_ACTION: 'action', OFPR_INVALID_TTL: 'invalid_ttl'}
_GROUP_TYPES = {OFPGT_ALL: 'all', OFPGT_SELECT: 'select', OFPGT_INDIRECT: 'indirect',
                OFPGT_FF: 'fast failover'}
_ADDRESS_OXM = {'eth_dst': 'mac', 'eth_src': 'mac', 'arp_sha': 'mac', 'arp_tha': 'mac',
                'ipv6_nd_sll': 'mac', 'ipv6_nd_tll': 'mac', 'ipv4_src': 'ip4', 'ipv4_dst': 'ip4',
                'arp_spa': 'ip4', 'arp_tpa': 'ip4', 'ipv6_src': 'ip6', 'ipv6_dst': 'ip6'}
IN_PORT_REASON = 'always exact: every megaflow matches its input port'
# What an action's prerequisite check asks (set_field: its field), and why it reads values.
_PREREQS = {'dec_nw_ttl': 'an IP header', 'set_nw_ttl': 'an IP header',
            'push_mpls': 'an MPLS or IP header'}
_VALUE_READS = {'dec_nw_ttl': 'reads the TTL to decrement it',
                'dec_mpls_ttl': 'reads the MPLS TTL to decrement it',
                'push_vlan': "copies the outer tag's VID and PCP into the new tag",
                'pop_vlan': 'reads the tag, to put it back after the bucket',
                'push_mpls': 'copies the outer label (or the IP TTL) into the new label',
                'pop_mpls': 'reads the label, to put it back after the bucket'}
NORMAL_REASON = 'NORMAL (MAC learning) forwards by in_port, dl_src, dl_dst and VLAN'
_UNCACHED = ('Not cacheable (a group chain was cut short): no megaflow is installed and '
             'every packet of this flow takes an upcall.')


def format_action(action):
    """An OpenFlow action as ovs-ofctl writes it: 'output:2', 'set_field:10.0.0.1->ipv4_dst'."""
    name = action[0]
    if name == 'output':
        port = action[1]
        if port == OFPP_CONTROLLER:
            return f'CONTROLLER:{action[2]}'
        return f'output:{port}' if port <= OFPP_MAX else _RESERVED_PORTS.get(port, hex(port))
    if name == 'set_field':
        kind = _ADDRESS_OXM.get(action[1])
        text = _ADDRESS_TEXT[kind](action[2]) if kind else str(action[2])
        return f'set_field:{text}->{action[1]}'
    if name in ('push_vlan', 'push_mpls', 'pop_mpls'):
        return f'{name}:0x{action[1]:04x}'
    if name == 'dec_nw_ttl':
        return 'dec_ttl'
    if name == 'set_nw_ttl':
        return f'mod_nw_ttl:{action[1]}'
    return ':'.join([name] + [str(arg) for arg in action[1:]])


def format_rule(rule):
    """A rule as the trace heads it: 'ip,nw_dst=10.0.0.0/24, priority 10, cookie 0x5'."""
    parts = [_rule_match(rule), f'priority {rule.priority}']
    if rule.cookie:
        parts.append(f'cookie {rule.cookie:#x}')
    return ', '.join(filter(None, parts))


def _rule_match(rule):
    """A rule's match: pipeline fields (metadata, tun_id) first, then the key's."""
    parts = []
    metadata = rule.mask >> METADATA_SHIFT
    if metadata:
        value = rule.value >> METADATA_SHIFT
        parts.append(f'metadata={value:#x}' + ('' if metadata == (1 << 64) - 1
                                               else f'/{metadata:#x}'))
    tunnel = rule.mask >> TUNNEL_SHIFT & (1 << 64) - 1
    if tunnel:
        parts.append(f'tun_id={rule.value >> TUNNEL_SHIFT & tunnel:#x}')
    parts.append(format_match(rule.value & KEY_ONES, rule.mask & KEY_ONES))
    return ','.join(filter(None, parts))


def _rule_text(rule):
    """A rule as the reasons name it: 'priority 10 ip,nw_dst=10.0.0.0/24'."""
    return f'priority {rule.priority} {_rule_match(rule)}'.rstrip()


def trace(ofproto, flow_text):
    """The text of `ofproto/trace FLOW` on one switch.

    Args:
        ofproto: the switch's OFProto (name, ctx, ports, normal, fail_open()).
        flow_text: the packet in ovs-ofctl syntax (see parse_flow); in_port
            may be a port name.
    Returns:
        the trace, lines joined by newlines.
    Raises:
        ValueError: one line, for a flow that does not parse.
    """
    names = {port.name: port_no for port_no, port in ofproto.ports.items()}
    key = parse_flow(flow_text, names)
    story = _Story(ofproto, key)
    fail_open = getattr(ofproto, 'fail_open', None)
    if fail_open is not None and fail_open():
        story.tell_fail_open()
    else:
        story.tell()
    return '\n'.join(story.lines)


class _Story:
    """One trace being written: the step lines, then the reasons for the mask."""

    def __init__(self, ofproto, key):
        self.ofproto = ofproto
        self.key = key
        self.flow = int.from_bytes(key, 'big')
        self.in_port = self.flow >> field_shift('in_port') & 0xffffffff
        self.lines = [f'Flow: {format_flow(self.flow)}', '']
        if self.in_port not in ofproto.ports:
            self.lines[1:1] = [f'(in_port {self.in_port} is not a port of {ofproto.name})']
        title = f'bridge("{ofproto.name}")'
        self.lines += [title, '-' * len(title)]
        self.reasons = [(IN_PORT_BITS, 0, 0, IN_PORT_REASON)]  # (new, again, shadowed, why)
        self.rule = None            # the rule whose instructions are being told
        self.stopped = False
        self.in_action_set = False
        self.buckets = []           # (group id, bucket index) per depth
        self.action = None          # the last action event
        self.final = self.flow      # the working key at the end

    # --- the steps ------------------------------------------------------------

    def tell(self):
        result, events = xlate_trace(self.ofproto.ctx, self.key)
        odp = events[-1].data[0]
        steps = [event for event in events if event.kind != 'read']
        following = dict(zip(map(id, steps), steps[1:]))
        current = None
        for event in events:
            if event.kind == 'read':
                self._read(current, *event.data)
                continue
            after = following.get(id(event), event)
            current = event
            getattr(self, '_' + event.kind)(event, after, odp[event.odp_len:after.odp_len])
        self._ending(result.actions, result.mask, odp, result.cacheable)

    def _say(self, depth, text, extra=0):
        self.lines.append(' ' * (4 + 8 * depth + extra) + text)

    def _outcome(self, depth, text):
        self._say(depth, '-> ' + text, 1)

    def _table(self, event, after, odp):
        self._close_rule()
        table_id, rule, _ = event.data
        if rule is None:
            self.lines.append(f' {table_id}. No match. (drop: no rule matches and the table '
                              'has no table-miss rule)')
            return
        miss = ' (the table-miss rule)' if rule.is_table_miss else ''
        self.lines.append(f' {table_id}. {format_rule(rule)}{miss}')
        self.rule, self.stopped = rule, False
        for instruction in rule.program:
            if instruction[0] == 'meter':
                self._say(0, f'meter:{instruction[1]}')
                self._odp(0, odp)

    def _close_rule(self):
        """Tell the instructions after apply_actions of the rule just run."""
        rule, self.rule = self.rule, None
        if rule is None:
            return
        rest = [i for i in rule.program if i[0] not in ('meter', 'apply_actions')]
        if rest and self.stopped:
            self._outcome(0, 'processing stopped: the instructions after apply_actions '
                             'did not run')
            return
        for instruction in rest:
            name = instruction[0]
            if name == 'write_actions':
                self._say(0, 'write_actions(%s)' % ','.join(map(format_action, instruction[1])))
            elif name == 'write_metadata':
                self._say(0, f'write_metadata:{instruction[1]:#x}/{instruction[2]:#x}')
            elif name == 'goto_table':
                self._say(0, f'goto_table:{instruction[1]}')
            else:
                self._say(0, name)

    def _action_set(self, event, after, odp):
        self._close_rule()
        self.in_action_set = True
        actions = event.data[0]
        self.lines.append(' End of the pipeline: the action set runs, in OpenFlow order: '
                          + ', '.join(map(format_action, actions)))
        if any(a[0] == 'group' for a in actions) and any(a[0] == 'output' for a in actions):
            self._outcome(0, 'its output is ignored: the set has a group')

    def _action(self, event, after, odp):
        action, rule = event.data
        self.action = event
        depth = event.depth
        self._say(depth, format_action(action))
        if after.flow != event.flow:
            now, was = ({name: text for name, text, _ in field_items(flow, KEY_ONES, flow=True)}
                        for flow in (after.flow, event.flow))
            names = [name for name in {**now, **was} if now.get(name) != was.get(name)]
            self._outcome(depth, f'now {_texts(now, names)} (was {_texts(was, names)})')
        if action[0] == 'output' and action[1] == OFPP_NORMAL:
            for line in self._normal(event.flow, odp):
                self._outcome(depth, line)
        self._odp(depth, odp)

    def _note(self, event, after, odp):
        self._outcome(event.depth, event.data[0])
        self._odp(event.depth, odp)

    def _stop(self, event, after, odp):
        self.stopped = True
        self._note(event, after, odp)

    def _group(self, event, after, odp):
        group, indexes = event.data
        kind = _GROUP_TYPES.get(group.type, str(group.type))
        n = len(group.buckets)
        if not indexes:
            how = 'no live bucket: the packet goes no further here'
        elif group.type == OFPGT_ALL:
            how = f'all {n} buckets run, each on its own copy of the packet'
        elif group.type == OFPGT_SELECT:
            how = (f'bucket {indexes[0]} of {n}, chosen by a hash of the addresses and ports '
                   '(among the live buckets, by weight)')
        elif group.type == OFPGT_FF:
            how = f'bucket {indexes[0]}: the first live one of {n}'
        else:
            how = 'its one bucket runs'
        self._outcome(event.depth, f'{kind} group {group.group_id}: {how}')

    def _bucket(self, event, after, odp):
        group, index = event.data
        del self.buckets[event.depth:]
        self.buckets.append((group.group_id, index))
        self._say(event.depth, f'bucket {index}', 4)

    def _bucket_end(self, event, after, odp):
        if odp:
            self._outcome(event.depth + 1, 'bucket done: its pushes and pops are undone for '
                                           'what follows')
            self._odp(event.depth + 1, odp)

    def _end(self, event, after, odp):
        self._close_rule()
        self.final = event.flow
        self._odp(0, odp)

    def _odp(self, depth, odp):
        """Tell the datapath actions a step emitted."""
        plain = tuple(a for a in odp if a[0] != 'userspace')
        if plain:
            outputs = [a[1] for a in plain if a[0] == 'output']
            names = ' '.join(f'{no}={self.ofproto.ports[no].name}' for no in outputs
                             if no in self.ofproto.ports)
            self._outcome(depth, 'datapath: ' + format_actions(plain, self.key)
                          + (f'  [{names}]' if names else ''))
        for action in odp:
            decoded = action[0] == 'userspace' and decode_userdata(action[1])
            if decoded:
                reason, table_id, cookie, max_len, _ = decoded
                size = 'the whole packet' if max_len == OFPCML_NO_BUFFER else f'{max_len} bytes'
                self._outcome(depth, f'packet-in to the controller: reason='
                                     f'{_REASONS.get(reason, reason)}, table {table_id}, '
                                     f'cookie {cookie:#x}, {size}')

    def _normal(self, flow, odp):
        """Why NORMAL forwarded as it did (mnovs.ofagent.normal), and what it would learn."""
        key = flow.to_bytes(KEY_LEN, 'big')
        src, dst = (key[offset:offset + 6] for offset in (ETH_SRC, ETH_DST))
        src_text, dst_text = _ADDRESS_TEXT['mac'](src), _ADDRESS_TEXT['mac'](dst)
        if src[0] & 1:
            return [f'NORMAL: dl_src {src_text} is multicast: dropped']
        if is_reserved_group(dst):
            return [f'NORMAL: dl_dst {dst_text} is a reserved group address (STP, LLDP): '
                    'dropped']
        macs = getattr(getattr(self.ofproto, 'normal', None), 'macs', None)
        vlan = key_vlan(key)
        learned = None if macs is None else macs.lookup(vlan, dst)
        if dst[0] & 1:
            line = f'dl_dst {dst_text} is multicast: flooding'
        elif learned is None:
            line = f'no learned port for dl_dst {dst_text} in VLAN {vlan}: flooding'
        elif learned == self.in_port:
            line = f'dl_dst {dst_text} was learned on the input port: dropped'
        elif [a[1] for a in odp if a[0] == 'output'] == [learned]:
            line = f'dl_dst {dst_text} was learned on port {learned}: forwarding there'
        else:
            line = f'dl_dst {dst_text} was learned on port {learned}, which cannot forward'
        lines = ['NORMAL: ' + line]
        if macs is not None and macs.lookup(vlan, src) != self.in_port:
            lines.append(f'NORMAL: a real packet would teach it that {src_text} is on port '
                         f'{self.in_port} (a trace learns nothing)')
        return lines

    def tell_fail_open(self):
        """No controller and fail mode standalone: NORMAL forwards, no table is consulted."""
        actions, mask = self.ofproto.normal.xlate(self.key)
        self.lines.append(' Fail mode standalone and no controller: NORMAL forwards; the '
                          'OpenFlow tables are not consulted.')
        self._say(0, 'NORMAL')
        for line in self._normal(self.flow, actions):
            self._outcome(0, line)
        self._odp(0, actions)
        new = int.from_bytes(mask, 'big') & ~IN_PORT_BITS
        self.reasons.append((new, 0, 0, NORMAL_REASON))
        self._ending(actions, mask, actions, True)

    # --- the reasons ----------------------------------------------------------

    def _read(self, step, why, new, again, shadowed):
        if why == 'lookup':
            for bits, text in self._lookup_reasons(step, new | again | shadowed):
                self.reasons.append((new & bits, again & bits, shadowed & bits, text))
        elif why == 'restore':          # a commit: only bits put back were not written here
            self.reasons.append((new, again, 0, self._action_reason(step, why)))
        else:
            self.reasons.append((new, again, shadowed, self._action_reason(step, why)))

    def _where(self):
        """Where the last action ran: 'table 0', 'table 1, group 2 bucket 0', 'action set'."""
        event = self.action
        place = 'action set' if self.in_action_set else f'table {event.data[1].table_id}'
        buckets = ', '.join(f'group {g} bucket {b}' for g, b in self.buckets[:event.depth])
        return f'{place}, {buckets}' if buckets else place

    def _action_reason(self, step, why):
        if step.kind == 'group':
            return (f'{self._where()}: select group {step.data[0].group_id} hashes it to '
                    'choose a bucket')
        action = self.action.data[0]
        name, text = action[0], format_action(action)
        if why == 'restore':
            what = ('first restores the value a group bucket changed (each bucket works on a '
                    'copy of the packet)')
        elif why == 'prereq':
            has = action[1] if name == 'set_field' else _PREREQS.get(name, 'an MPLS header')
            what = f'checks that the packet has {has}'
        elif name == 'output' and action[1] == OFPP_NORMAL:
            return f'{self._where()}: {NORMAL_REASON}'
        else:
            what = _VALUE_READS.get(name, 'reads it')
        return f'{self._where()}: {text} {what}'

    def _lookup_reasons(self, step, read):
        """Split a lookup's read bits by the subtables it visited: [(bits, why)]."""
        table_id, chosen, ext = step.data
        table = self.ofproto.ctx.pipeline.tables[table_id]
        reasons, union = [], 0
        for bits, subtable, found in _visits(table, ext):
            bits &= KEY_ONES
            union |= bits
            if found is chosen and found is not None:
                text = f'table {table_id}: matched rule "{_rule_text(found)}"'
            elif found is not None:
                text = (f'table {table_id}: rule "{_rule_text(found)}" matched too, but a '
                        'higher-priority rule won')
            else:
                rules = [r for same in subtable.rules.values() for r in same]
                best = max(rules, key=lambda r: r.priority)
                more = f' and {len(rules) - 1} more of its shape' if len(rules) > 1 else ''
                text = f'table {table_id}: ruled out rule "{_rule_text(best)}"{more}'
            reasons.append((bits, text))
        if union != read:               # the classifier changed shape: say less, not wrong
            return [(read, f'table {table_id}: lookup')]
        return reasons

    def _ending(self, actions, mask, odp, cacheable):
        lines = self.lines
        final = self.final
        lines.append('')
        lines.append('Final flow: ' + ('unchanged' if final == self.flow else format_flow(final)))
        mask_int = int.from_bytes(mask, 'big')
        lines.append(f'Megaflow: {format_match(self.flow, mask_int)}')
        lines.append(f'Datapath actions: {format_actions(actions, self.key)}')
        if len(odp) > len(actions):
            lines.append('(rewrites after the last output were dropped: no packet sees them)')
        if not cacheable:
            lines.append(_UNCACHED)
        lines += ['', 'Why these fields are in the megaflow:']
        lines += self._why(field_items(self.flow, mask_int), 0, 1)
        shadowed = 0
        for reason in self.reasons:
            shadowed |= reason[2]
        shadowed &= ~mask_int
        if shadowed:
            lines += ['', 'Read, but not in the megaflow (the pipeline had set them first):']
            items = [(name, name, bits) for name, _, bits in field_items(self.flow, shadowed)]
            lines += self._why(items, 2, 2)

    def _why(self, items, first, second):
        """Lines 'field  reason' for items, by reasons[first] (then [second]: 'also')."""
        out = []
        width = min(max((len(text) for _, text, _ in items), default=0), 28)
        for _, text, bits in items:
            main = list(dict.fromkeys(r[3] for r in self.reasons if r[first] & bits))
            also = [t for t in dict.fromkeys(r[3] for r in self.reasons if r[second] & bits)
                    if t not in main]
            whys = main + ['also ' + t for t in also] or ['(no reason recorded)']
            out.append(f'  {text:<{width}}  {whys[0]}')
            out += [f'  {"":<{width}}  {why}' for why in whys[1:]]
        return out


def _texts(items, names):
    """The texts of the named fields; a field left out of a flow is 0 (a VLAN: untagged)."""
    return ','.join(dict.fromkeys(
        items.get(name, 'untagged' if name in _VLAN_NAMES else f'{name}=0') for name in names))


def _visits(table, ext):
    """The subtables FlowTable.lookup visits for ext: [(bits consulted, subtable, rule found)].

    The same walk as table.py's lookup, kept to explain it: a test checks
    that the bits agree, and _lookup_reasons falls back if they do not.
    """
    visits, best = [], None
    for subtable in table.order:
        if best is not None and subtable.max_priority <= best.priority:
            break
        for stage, counts in subtable.stages:
            if ext & stage not in counts:
                visits.append((stage, subtable, None))
                break
        else:
            same = subtable.rules.get(ext & subtable.mask)
            found = same[0] if same else None
            if found is not None and (best is None or found.priority > best.priority):
                best = found
            visits.append((subtable.mask, subtable, found))
    return visits
