"""Datapath flows and actions in OVS's text syntax (lib/odp-util.c), for dumps and traces.

dpctl/dump-flows and ofproto/trace print megaflows the way OVS prints its
datapath flows, so that output can be read, diffed and grepped beside OVS's:

    in_port(1),eth(src=00:00:00:00:00:01,dst=00:00:00:00:00:02),
    eth_type(0x0800),ipv4(src=10.0.0.1,dst=10.0.0.2,proto=6,tos=0,ttl=64,frag=no),
    tcp(src=5201,dst=40000),tcp_flags(ack)

A flow key (see flow.py) is flat; OVS's syntax groups fields into attributes
chosen by the packet's protocols: ipv4() or ipv6() or arp() or mpls() by
eth_type, then tcp()/udp()/sctp()/icmp()/icmpv6() by nw_proto (none for later
fragments), then tcp_flags() or nd(). A PBB key (eth_type 0x88e7) prints
its I-TAG as pbb(isid=..,pcp=..,dei=..,uca=..), and the actions push_pbb(...),
pop_pbb, copy_ttl_in and copy_ttl_out print in the same spirit: OVS has no
syntax for them, since it has no such datapath actions.  A tagged key prints its outer tag
OVS-style: eth_type(0x8100),vlan(vid=10,pcp=0),encap(eth_type(0x0800),...).
An untagged key prints no vlan(), as OVS does. Packet metadata comes first,
in OVS's order: recirc_id(), dp_hash(), tunnel(tun_id=..,src=..,dst=..,
flags(-df-csum+key)), in_port(); each only when masked.

Printing rules, as OVS's non-verbose format:
- Only fields with a non-zero mask are printed; an attribute with none is
  left out, except eth(), always shown.  Values are shown masked.
- A partially masked field prints value/mask: src=10.0.0.0/255.255.255.0,
  dst=80/0xff00, vid=10/0xff0; tcp_flags(+syn-ack) lists the masked bits.
- Numbers are decimal except tos, tclass, label (C's %#x: 0, 0x10) and
  eth_type (0x%04x).  frag= is no/first/later, or yes/no and later/not_later
  (OpenFlow's nw_frag words) when only one of the two frag bits is masked.
- A field masked without its prerequisite (say tp_dst without nw_proto) has
  no OVS attribute to live in; it goes into a final fields(name=value,...),
  so that no masked bit is hidden (bar the untagged vlan match above).
  xlate should never produce one.

Actions print as OVS prints them: '2,3', 'pop_vlan,1', set(ipv4(dst=...)),
and sample(sample=0.2%,actions(userspace(pid=0,sFlow(vid=0,pcp=0,output=2))))
for the sFlow sample; the sFlow cookie is defined here, as OVS's
user_action_cookie is in odp-util.h.

Formatting only; a parser for the same syntax is future work.
"""

import socket
import struct

from mnovs.dp.sample import POOL

from mnovs.dp.flow import (
    ETH_TYPE_ARP, ETH_TYPE_IP, ETH_TYPE_IPV6, ETH_TYPE_MPLS, ETH_TYPE_MPLS_MCAST,
    ETH_TYPE_PBB, ETH_TYPE_VLAN_8021Q, FIELD_SLICES, FLOW_FIELDS, FLOW_NW_FRAG_LATER,
    FLOW_TNL_F_KEY, IPPROTO_ICMP,
    IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, KEY_LEN, ND_NEIGHBOR_ADVERT,
    ND_NEIGHBOR_SOLICIT, VLAN_CFI, key_fields, make_key, mask_key)


def _c_hex(value):
    """Return value as C's printf("%#x") does: 0 has no 0x prefix."""
    return '%#x' % value if value else '0'


# Value formatters: (masked value, mask, full mask) -> text, mask non-zero.

def _dec(value, mask, full):
    return str(value) if mask == full else f'{value}/{_c_hex(mask)}'


def _hex(value, mask, full):
    text = _c_hex(value)
    return text if mask == full else f'{text}/{_c_hex(mask)}'


def _ethtype(value, mask, full):
    return '0x%04x' % value if mask == full else '0x%04x/0x%04x' % (value, mask)


def _mac_text(addr):
    return ':'.join('%02x' % b for b in addr)


def _mac(value, mask, full):
    text = _mac_text(value)
    return text if mask == full else f'{text}/{_mac_text(mask)}'


def _ip4(value, mask, full):
    text = socket.inet_ntop(socket.AF_INET, value)
    return text if mask == full else f'{text}/{socket.inet_ntop(socket.AF_INET, mask)}'


def _ip6(value, mask, full):
    text = socket.inet_ntop(socket.AF_INET6, value)
    return text if mask == full else f'{text}/{socket.inet_ntop(socket.AF_INET6, mask)}'


def _frag(value, mask, full):
    bits = mask & 3
    if bits == 3:
        return ('no', 'first', 'later', 'later')[value & 3]
    if bits == 1:
        return 'yes' if value & 1 else 'no'
    if bits == 2:
        return 'later' if value & 2 else 'not_later'
    return _dec(value, mask, full)


def _vlan(value, mask, full):
    """Format a vlan_tci as OVS's vid=..,pcp=.. (VLAN_CFI, the tag-present bit, not shown)."""
    parts = []
    if value & 0xfff or mask & 0xfff:
        vid_mask = mask & 0xfff
        parts.append(f'vid={value & 0xfff}' + ('' if vid_mask == 0xfff else f'/0x{vid_mask:x}'))
    if value >> 13 or mask >> 13:
        pcp_mask = mask >> 13
        parts.append(f'pcp={value >> 13}' + ('' if pcp_mask == 7 else f'/0x{pcp_mask:x}'))
    return ','.join(parts)


def _mpls(value, mask, full):
    label, tc, bos, ttl = value >> 12, (value >> 9) & 7, (value >> 8) & 1, value & 0xff
    if mask == full:
        return f'label={label},tc={tc},ttl={ttl},bos={bos}'
    return (f'label={label}/0x{mask >> 12:x},tc={tc}/{(mask >> 9) & 7:x},'
            f'ttl={ttl}/0x{mask & 0xff:x},bos={bos}/{(mask >> 8) & 1:x}')


def _pbb(value, mask, full):
    """Format an I-TAG TCI as isid=..,pcp=..,dei=..,uca=.. (the masked parts only)."""
    parts = []
    for label, shift, ones in (('isid', 0, 0xffffff), ('pcp', 29, 7), ('dei', 28, 1),
                               ('uca', 27, 1)):
        part_mask = mask >> shift & ones
        if part_mask:
            text = _c_hex(value >> shift & ones) if label == 'isid' else str(value >> shift & ones)
            parts.append(f'{label}={text}' + ('' if part_mask == ones else f'/{_c_hex(part_mask)}'))
    return ','.join(parts)


_TNL_FLAG_NAMES = ('df', 'csum', 'key')      # FLOW_TNL_F_* bits 0, 1, 2


def _tun_flags(value, mask, full):
    """Format masked tunnel flags as OVS: flags(-df-csum+key)."""
    return 'flags(' + ''.join(('+' if value >> bit & 1 else '-') + name
                              for bit, name in enumerate(_TNL_FLAG_NAMES)
                              if mask >> bit & 1) + ')'


_TCP_FLAG_NAMES = ('fin', 'syn', 'rst', 'psh', 'ack', 'urg', 'ece', 'cwr', 'ns',
                   '[200]', '[400]', '[800]')


def _tcp_flags(value, mask, full):
    """Format TCP flags as OVS: syn|ack when exact, +syn-ack for the masked bits otherwise."""
    if mask & full == full:
        return '|'.join(name for bit, name in enumerate(_TCP_FLAG_NAMES)
                        if value >> bit & 1) or '0'
    return ''.join(('+' if value >> bit & 1 else '-') + name
                   for bit, name in enumerate(_TCP_FLAG_NAMES) if mask >> bit & 1)


# Each field's full mask, and its formatter when it appears outside OVS's attributes.
_FULL = key_fields(b'\xff' * KEY_LEN)
_FULL['ipv6_label'] = 0xfffff
_FULL['tcp_flags'] = 0xfff
_FULL['tun_flags'] = 0x7
_PLAIN = {name: {'6s': _mac, '4s': _ip4, '16s': _ip6}.get(code, _dec)
          for name, code in FLOW_FIELDS}

# OVS attributes: (name, ((label, field, formatter), ...)); an empty label
# prints the value bare, as in in_port(1).
_RECIRC_ID = ('recirc_id', (('', 'recirc_id', _hex),))
_DP_HASH = ('dp_hash', (('', 'dp_hash', _hex),))
_TUNNEL = ('tunnel', (('tun_id', 'tun_id', _hex), ('src', 'tun_src', _ip4),
                      ('dst', 'tun_dst', _ip4), ('tos', 'tun_tos', _hex),
                      ('ttl', 'tun_ttl', _dec), ('', 'tun_flags', _tun_flags)))
_IN_PORT = ('in_port', (('', 'in_port', _dec),))
_METADATA = (_RECIRC_ID, _DP_HASH, _TUNNEL, _IN_PORT)
_ETH = ('eth', (('src', 'eth_src', _mac), ('dst', 'eth_dst', _mac)))
_ETH_TYPE = ('eth_type', (('', 'eth_type', _ethtype),))
_VLAN_TPID = ('eth_type', (('', 'vlan_tpid', _ethtype),))
_VLAN = ('vlan', (('', 'vlan_tci', _vlan),))
_MPLS = ('mpls', (('', 'mpls_lse', _mpls),))
_PBB = ('pbb', (('', 'pbb_itag', _pbb),))
_IPV4 = ('ipv4', (('src', 'nw_src', _ip4), ('dst', 'nw_dst', _ip4),
                  ('proto', 'nw_proto', _dec), ('tos', 'nw_tos', _hex),
                  ('ttl', 'nw_ttl', _dec), ('frag', 'nw_frag', _frag)))
_IPV6 = ('ipv6', (('src', 'ipv6_src', _ip6), ('dst', 'ipv6_dst', _ip6),
                  ('label', 'ipv6_label', _hex), ('proto', 'nw_proto', _dec),
                  ('tclass', 'nw_tos', _hex), ('hlimit', 'nw_ttl', _dec),
                  ('frag', 'nw_frag', _frag)))
_ARP = ('arp', (('sip', 'nw_src', _ip4), ('tip', 'nw_dst', _ip4),
                ('op', 'nw_proto', _dec), ('sha', 'arp_sha', _mac),
                ('tha', 'arp_tha', _mac)))
_PORTS = (('src', 'tp_src', _dec), ('dst', 'tp_dst', _dec))
_TCP = ('tcp', _PORTS)
_UDP = ('udp', _PORTS)
_SCTP = ('sctp', _PORTS)
_TYPE_CODE = (('type', 'tp_src', _dec), ('code', 'tp_dst', _dec))
_ICMP = ('icmp', _TYPE_CODE)
_ICMPV6 = ('icmpv6', _TYPE_CODE)
_TCP_FLAGS = ('tcp_flags', (('', 'tcp_flags', _tcp_flags),))
_ND = ('nd', (('target', 'nd_target', _ip6), ('sll', 'arp_sha', _mac),
              ('tll', 'arp_tha', _mac)))

_L3 = {ETH_TYPE_IP: _IPV4, ETH_TYPE_IPV6: _IPV6, ETH_TYPE_ARP: _ARP,
       ETH_TYPE_MPLS: _MPLS, ETH_TYPE_MPLS_MCAST: _MPLS, ETH_TYPE_PBB: _PBB}
_L4 = {IPPROTO_TCP: (_TCP, _TCP_FLAGS), IPPROTO_UDP: (_UDP,), IPPROTO_SCTP: (_SCTP,)}

# Where set_masked looks for a field when the key does not say (IPv4, TCP).
_DEFAULT_ATTRS = (_IN_PORT, _ETH, _ETH_TYPE, _VLAN, _MPLS, _PBB, _IPV4, _TCP, _TCP_FLAGS,
                  _IPV6, _ARP, _ND)


def _payload_attrs(k):
    """Return the attributes after the tags for masked key fields k: eth_type, L3, L4."""
    eth_type, proto = k['eth_type'], k['nw_proto']
    attrs = [_ETH_TYPE]
    if eth_type in _L3:
        attrs.append(_L3[eth_type])
    if eth_type in (ETH_TYPE_IP, ETH_TYPE_IPV6) and not k['nw_frag'] & FLOW_NW_FRAG_LATER:
        attrs.extend(_L4.get(proto, ()))
        if proto == IPPROTO_ICMP and eth_type == ETH_TYPE_IP:
            attrs.append(_ICMP)
        elif proto == IPPROTO_ICMPV6 and eth_type == ETH_TYPE_IPV6:
            attrs.append(_ICMPV6)
            if k['tp_src'] in (ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT) and not k['tp_dst']:
                attrs.append(_ND)
    return attrs


def _masked_fields(mask):
    """Return the names of the fields that mask does not wholly ignore."""
    return {name for name, (offset, width) in FIELD_SLICES.items()
            if any(mask[offset:offset + width])}


def _format_attr(attr, k, m, masked, always=False):
    """Return 'name(label=value,...)' for the masked fields of attr, or '' if none."""
    name, fields = attr
    parts = []
    for label, field, fmt in fields:
        mask, full = m[field], _FULL[field]
        if field in masked:
            if isinstance(mask, int):
                mask &= full            # bits outside a field's meaning (label, tcp_flags)
            text = fmt(k[field], mask, full)
            parts.append(f'{label}={text}' if label else text)
    if parts or always:
        return f'{name}({",".join(parts)})'
    return ''


def _join(texts):
    return ','.join(text for text in texts if text)


def format_megaflow(key, mask):
    """Format a megaflow as OVS's datapath flow syntax.

    Args:
        key: flow key (KEY_LEN bytes); bits outside mask are ignored.
        mask: megaflow mask, same layout.

    Returns:
        e.g. 'in_port(1),eth(),eth_type(0x0800),ipv4(dst=10.0.0.2,frag=no)'.
    """
    k = key_fields(mask_key(key, mask))
    m = key_fields(mask)
    masked = _masked_fields(mask)
    payload = _payload_attrs(k)
    inner = _join(_format_attr(attr, k, m, masked) for attr in payload)
    head = [_format_attr(attr, k, m, masked) for attr in _METADATA]
    head.append(_format_attr(_ETH, k, m, masked, always=True))
    if k['vlan_tpid'] or k['vlan_tci']:
        head += [_format_attr(_VLAN_TPID, k, m, masked),
                 _format_attr(_VLAN, k, m, masked, always=True), f'encap({inner})']
    else:
        head.append(inner)
    shown = {field for _, fields in [*_METADATA, _ETH, _VLAN_TPID, _VLAN] + payload
             for _, field, _ in fields}
    leftover = [f'{name}={_PLAIN[name](k[name], m[name], _FULL[name])}'
                for name in FIELD_SLICES if name in masked and name not in shown]
    if leftover:
        head.append(f'fields({",".join(leftover)})')
    return _join(head)


def _format_set_masked(field, value, mask, context):
    """Format ('set_masked', field, value, mask) as OVS's set(attr(label=value[/mask]))."""
    k = key_fields(make_key(**{field: bytes(v & m for v, m in zip(value, mask))}))
    m = key_fields(make_key(**{field: mask}))
    for attr in context + list(_DEFAULT_ATTRS):
        if any(f == field for _, f, _ in attr[1]):
            return f'set({_format_attr(attr, k, m, {field}, always=True)})'
    return f'set(fields({field}={_PLAIN[field](k[field], m[field], _FULL[field])}))'


def _format_push_vlan(tpid, tci):
    tpid_text = '' if tpid == ETH_TYPE_VLAN_8021Q else f'tpid=0x{tpid:04x},'
    cfi_text = ',cfi=1' if tci & VLAN_CFI else ''   # the DEI bit as given (OVS: cfi=0 if clear)
    return f'push_vlan({tpid_text}vid={tci & 0xfff},pcp={tci >> 13}{cfi_text})'


def format_tunnel_spec(spec):
    """Format a TunnelSpec as OVS's set(tunnel(...)) prints it."""
    parts = [f'tun_id={_c_hex(spec.tun_id)}'] if spec.flags & FLOW_TNL_F_KEY else []
    if any(spec.ip_src):
        parts.append(f'src={socket.inet_ntop(socket.AF_INET, spec.ip_src)}')
    parts.append(f'dst={socket.inet_ntop(socket.AF_INET, spec.ip_dst)}')
    if spec.tos:
        parts.append(f'tos={_c_hex(spec.tos)}')
    parts += [f'ttl={spec.ttl}', f'tp_dst={spec.tp_dst}']
    flags = '|'.join(name for bit, name in enumerate(_TNL_FLAG_NAMES) if spec.flags >> bit & 1)
    parts.append(f'flags({flags})')
    return f'set(tunnel({",".join(parts)}))'


# The userdata of an sFlow sample's userspace action (OVS's user_action_cookie
# of type USER_ACTION_COOKIE_SFLOW): a tag, the output VLAN TCI, and the
# flow sample's `output` field (an ifindex, or sFlow's dropped/multiple forms).
SFLOW_COOKIE = struct.Struct('!cxHI')
_SFLOW_TAG = b'S'


def encode_sflow_cookie(vlan_tci, output):
    return SFLOW_COOKIE.pack(_SFLOW_TAG, vlan_tci, output)


def decode_sflow_cookie(userdata):
    """(vlan_tci, output), or None if userdata is not an sFlow cookie."""
    if len(userdata) != SFLOW_COOKIE.size or userdata[:1] != _SFLOW_TAG:
        return None
    return SFLOW_COOKIE.unpack(userdata)[1:]


def decode_sflow_upcall(userdata):
    """(vlan_tci, output, sample pool) of an sFlow sample's upcall, or None.

    The sample action appends the pool at the draw to the cookie (sample.POOL).
    """
    if len(userdata) != SFLOW_COOKIE.size + POOL.size:
        return None
    cookie = decode_sflow_cookie(userdata[:SFLOW_COOKIE.size])
    if cookie is None:
        return None
    return (*cookie, POOL.unpack_from(userdata, SFLOW_COOKIE.size)[0])


def _format_userspace(userdata):
    sflow = decode_sflow_cookie(userdata)
    if sflow is not None:
        tci, output = sflow
        return f'userspace(pid=0,sFlow(vid={tci & 0xfff},pcp={tci >> 13},output={output}))'
    return f'userspace(userdata({userdata.hex()}))' if userdata else 'userspace()'


def _format_sample(probability, nested, key):
    """OVS's sample(sample=P%,actions(...)), P with one decimal (1.6% for 1 in 64)."""
    percent = 100.0 * probability / 0xffffffff
    return f'sample(sample={percent:.1f}%,actions({format_actions(nested, key)}))'


def _format_generic(action):
    args = ','.join(arg.hex() if isinstance(arg, (bytes, bytearray)) else str(arg)
                    for arg in action[1:])
    return f'{action[0]}({args})'


# Actions without arguments, printed by name alone. OVS's datapath has no
# PBB or TTL-copy actions; these names are mnovs's own.
_BARE_ACTIONS = ('pop_pbb', 'copy_ttl_in', 'copy_ttl_out')


def format_actions(actions, key=None):
    """Format datapath actions as OVS does: '2,3', 'pop_vlan,1', 'drop'...

    Args:
        actions: tuple of action tuples (see dp/actions.py); empty means drop.
        key: optional flow key of the packets, to name the header a
            set_masked changes (udp vs tcp, ipv6 tclass vs ipv4 tos, nd vs
            arp); without it IPv4 and TCP are assumed.

    Returns:
        the text; an action this module does not know prints as name(args).
    """
    if not actions:
        return 'drop'
    context = _payload_attrs(key_fields(key)) if key is not None else []
    texts = []
    for action in actions:
        name = action[0]
        if name == 'output' and len(action) == 2:
            texts.append(str(action[1]))
        elif name == 'pop_vlan' and len(action) == 1:
            texts.append('pop_vlan')
        elif name == 'push_vlan' and len(action) == 3:
            texts.append(_format_push_vlan(action[1], action[2]))
        elif name == 'pop_mpls' and len(action) == 2:
            texts.append(f'pop_mpls(eth_type={_c_hex(action[1])})')
        elif name == 'push_mpls' and len(action) == 3:
            texts.append(f'push_mpls({_mpls(action[2], 0xffffffff, 0xffffffff)},'
                         f'eth_type={_c_hex(action[1])})')
        elif name == 'recirc' and len(action) == 2:
            texts.append(f'recirc({_c_hex(action[1])})')
        elif name == 'hash' and len(action) == 2:
            texts.append(f'hash(l4({action[1]}))')
        elif name == 'push_pbb' and len(action) == 2:
            texts.append(f'push_pbb({_pbb(action[1], 0xffffffff, 0xffffffff)})')
        elif name in _BARE_ACTIONS and len(action) == 1:
            texts.append(name)
        elif name == 'set_tunnel' and len(action) == 2:
            texts.append(format_tunnel_spec(action[1]))
        elif name == 'userspace' and len(action) == 2:
            texts.append(_format_userspace(action[1]))
        elif name == 'sample' and len(action) == 3:
            texts.append(_format_sample(action[1], action[2], key))
        elif (name == 'set_masked' and len(action) == 4 and action[1] in FIELD_SLICES
              and len(action[2]) == len(action[3]) == FIELD_SLICES[action[1]][1]):
            texts.append(_format_set_masked(*action[1:], context))
        else:
            texts.append(_format_generic(action))
    return ','.join(texts)


_DUMP_FLAGS = ((0x002, 'S'), (0x001, 'F'), (0x008, 'P'), (0x004, 'R'), (0x020, 'U'),
               (0x010, '.'), (0x040, 'E'), (0x080, 'C'), (0x100, 'N'),
               (0x200, '[200]'), (0x400, '[400]'), (0x800, '[800]'))


def format_tcp_flags(flags):
    """Format the TCP flags seen on a flow as dump-flows' "flags:" does: 'SP.', or 'none'."""
    return ''.join(letter for bit, letter in _DUMP_FLAGS if flags & bit) or 'none'
