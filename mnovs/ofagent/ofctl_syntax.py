"""ovs-ofctl's flow and match syntax, in both directions, over mnovs flow keys.

parse_flow reads a packet as `ofproto/trace` takes it on the command line;
parse_match and format_match read and write a key with a mask (megaflows,
rule matches); format_flow writes a packet, zero fields left out. Names are
ovs-ofctl's (dl_src, nw_dst, tp_dst, ...; ip, tcp6, arp, ... for dl_type and
nw_proto); one key field can carry several names (nw_src is arp_spa in an ARP
packet, tp_src is icmp_type in ICMP), and the formatter picks the one the
packet's protocol calls for. A flow needs in_port, has no masks, and names a
field only after its protocol (tcp_dst needs tcp or tcp6); fields not given
are 0, as in OVS. metadata is pipeline state, not a packet field, and is
refused. Every error is a ValueError with a one-line message.
"""

import re
import socket
from collections import namedtuple

from mnovs.dp.flow import FIELD_SLICES, KEY_LEN
from mnovs.ofagent.match import KEY_ONES, field_bits, field_shift

# A field: where it lives in the key (field, lowest bit, bits it may cover),
# `full`: its mask when no mask is written, `syntax`: how its value is
# written, `need`: its prerequisite (see _NEEDS), or None.
Field = namedtuple('Field', 'key low bits full syntax need')


def _f(key, low, bits, syntax, need=None, full=None):
    return Field(key, low, bits, (1 << bits) - 1 if full is None else full, syntax, need)


FIELDS = {
    'recirc_id': _f('recirc_id', 0, 32, 'chex'),    # datapath recirculation (recirc.py)
    'dp_hash': _f('dp_hash', 0, 32, 'chex'),
    'tun_id': _f('tun_id', 0, 64, 'hex'),           # tunnel metadata (see dp/tunnel.py)
    'tun_src': _f('tun_src', 0, 32, 'ip4'),
    'tun_dst': _f('tun_dst', 0, 32, 'ip4'),
    'tun_tos': _f('tun_tos', 0, 8, 'dec'),
    'tun_ttl': _f('tun_ttl', 0, 8, 'dec'),
    'tun_flags': _f('tun_flags', 0, 16, 'tun_flags', full=0xf),
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
# Flag fields: the names of their bits, lowest first (tun_flags: OVS's FLOW_TNL_F_*).
_FLAG_NAMES = {'tcp_flags': _TCP_FLAGS, 'tun_flags': ('df', 'csum', 'key', 'oam')}
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
    if syntax in _FLAG_NAMES and text[:1] in ('+', '-'):
        return _parse_flag_signs(text, syntax)
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


def _flags_parser(syntax):
    def parse(text, bits):
        if text[:1].isdigit():
            return _parse_int(text, bits)
        value = 0
        for name in text.split('|'):
            value |= _flag_bit(name, syntax)
        return value
    return parse


def _flag_bit(name, syntax):
    names = _FLAG_NAMES[syntax]
    if name not in names:
        kind = 'TCP' if syntax == 'tcp_flags' else 'tunnel'
        raise ValueError(f'{name!r} is not a {kind} flag ({", ".join(names)})')
    return 1 << names.index(name)


def _parse_flag_signs(text, syntax):
    """'+syn-ack': syn set, ack clear, the others wildcarded."""
    value = mask = 0
    for sign, name in re.findall(r'([+-])([^+-]*)', text):
        bit = _flag_bit(name, syntax)
        mask |= bit
        if sign == '+':
            value |= bit
    return value, mask


_VALUE_PARSERS = {'mac': _parse_mac, 'ip4': _parse_ip(socket.AF_INET, 'IPv4'),
                  'ip6': _parse_ip(socket.AF_INET6, 'IPv6'), 'tos': _parse_tos,
                  'tcp_flags': _flags_parser('tcp_flags'),
                  'tun_flags': _flags_parser('tun_flags')}


# Formatting: the fields in ovs-ofctl's order, by the name each protocol gives them.
_ORDER = ('recirc_id', 'dp_hash', 'tun_id', 'tun_src', 'tun_dst', 'tun_tos', 'tun_ttl', 'tun_flags', 'in_port', 'vlan',
          'vlan_tpid', 'dl_src', 'dl_dst', 'dl_type', 'mpls_label',
          'mpls_tc', 'mpls_ttl', 'mpls_bos', 'ipv6_src', 'ipv6_dst', 'ipv6_label', 'nw_src',
          'nw_dst', 'nw_proto', 'nw_tos', 'nw_ecn', 'nw_ttl', 'nw_frag', 'tp_src', 'tp_dst',
          'tcp_flags', 'arp_sha', 'arp_tha', 'nd_target')
_ARP_NAMES = {'nw_src': 'arp_spa', 'nw_dst': 'arp_tpa', 'nw_proto': 'arp_op'}
_ICMP_NAMES = {'tp_src': 'icmp_type', 'tp_dst': 'icmp_code'}
_ND_NAMES = {'arp_sha': 'nd_sll', 'arp_tha': 'nd_tll'}
_VLAN_BITS = field_bits('vlan_tci')
VLAN_NAMES = ('dl_vlan', 'dl_vlan_pcp', 'vlan_tci')
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
    if syntax in _FLAG_NAMES:
        names = _FLAG_NAMES[syntax]
        named = (1 << len(names)) - 1
        if mask == field.full and not value & ~named:
            return '|'.join(n for i, n in enumerate(names) if value >> i & 1) or '0'
        if not mask & ~named:
            return ''.join(('+' if value >> i & 1 else '-') + n
                           for i, n in enumerate(names) if mask >> i & 1)
    if syntax in ('mac', 'ip4', 'ip6'):
        text = ADDRESS_TEXT[syntax](value)
        if mask == field.full:
            return text
        if syntax != 'mac':
            width = 32 if syntax == 'ip4' else 128
            prefix = bin(mask).count('1')
            if mask == ((1 << prefix) - 1) << (width - prefix):
                return f'{text}/{prefix}'
        return f'{text}/{ADDRESS_TEXT[syntax](mask)}'
    if syntax == 'chex' and not value and mask == field.full:
        return '0'                      # C's %#x, as OVS prints recirc_id=0
    if mask == field.full:
        if syntax == 'hex4':
            return f'0x{value:04x}'
        return hex(value) if syntax in ('hex', 'chex', 'tcp_flags', 'tun_flags') else str(value)
    return f'{value:#x}/{mask:#x}'


ADDRESS_TEXT = {
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
    # As OVS: recirc_id and dp_hash come before the protocol word (recirc_id=0,tcp,...).
    first = [text for name, text, _ in items if name in ('recirc_id', 'dp_hash')]
    rest = [text for name, text, _ in items
            if name not in hidden and name not in ('recirc_id', 'dp_hash')]
    return ','.join(first + head + rest)


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
