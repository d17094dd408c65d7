"""LACP, 802.3ad link aggregation control (OVS's lib/lacp.c).

A Lacp object runs the protocol for one bond: it sends a LACPDU on each
member every second (fast) or thirty (slow), as the *partner* asks in its
own PDUs, and learns from the partner's PDUs who is at the other end of
each link. From that it decides which members are *attached*: their
partner is the same system with the same key as the lead member's, and
traffic may flow on them once the partner says it is in sync.

Member status, as OVS's:

    current    a PDU arrived within 3 x the receive interval
    expired    none for that long: the partner's info is kept, but not in
               sync, and we ask for fast PDUs (3 s more to recover)
    defaulted  none for 3 s more: the partner is forgotten (all zeros)

Selection (OVS's lacp_update_attached): among members whose partner is
known, the lead is the one with the best priority (system priority and
id of the higher-priority system, then its port priority and number);
members whose partner's system id and key equal the lead's are attached.
With lacp-fallback-ab, defaulted members stay attached, and the bond falls
back to active-backup. A member whose partner is our own system id is a
loopback and never attached.

The state a caller reads: negotiated (some member could attach: the bond
is 'negotiated', otherwise 'configured'), may_enable(port) (attached and
the partner in sync), and `changed`, set whenever the selection ran (an
answer may differ), which the bond consumes and resets.

Cost: nothing per packet. PDUs are slow-path packets (one upcall each);
run() is a timer check per member, called several times a second.
"""

import struct
import time
from collections import namedtuple

# Actor/partner state bits.
STATE_ACT = 0x01        # active
STATE_TIME = 0x02       # short timeout (fast)
STATE_AGG = 0x04        # aggregatable
STATE_SYNC = 0x08       # in sync
STATE_COL = 0x10        # collecting
STATE_DIST = 0x20       # distributing
STATE_DEF = 0x40        # defaulted
STATE_EXP = 0x80        # expired
_STATE_NAMES = ((STATE_ACT, 'activity'), (STATE_TIME, 'timeout'), (STATE_AGG, 'aggregation'),
                (STATE_SYNC, 'synchronized'), (STATE_COL, 'collecting'),
                (STATE_DIST, 'distributing'), (STATE_DEF, 'defaulted'), (STATE_EXP, 'expired'))

FAST_TX = 1.0           # seconds between PDUs at the fast rate
SLOW_TX = 30.0
RX_MULTIPLIER = 3       # a partner is expired after 3 of its intervals

ETH_TYPE_SLOW = 0x8809  # slow protocols: LACP, marker
SLOW_PROTOCOLS_MAC = b'\x01\x80\xc2\x00\x00\x02'
SUBTYPE_LACP, SUBTYPE_MARKER = 1, 2

CURRENT, EXPIRED, DEFAULTED = 'current', 'expired', 'defaulted'

LacpInfo = namedtuple('LacpInfo', 'sys_priority sys_id key port_priority port_id state')
LacpInfo.__doc__ = 'Actor or partner information of a LACPDU (sys_id: 6 bytes).'
NO_PARTNER = LacpInfo(0, bytes(6), 0, 0, 0, 0)

#   0      1       2     3    4 ........ 18    19-21  22    23   24 ..... 38   39-41
#  +-------+-------+-----+----+-----------+------+-----+----+-----------+------+
#  |subtype|version| TLV1| 20 |  actor    | zero | TLV2| 20 |  partner  | zero |
#  +-------+-------+-----+----+-----------+------+-----+----+-----------+------+
#   42    43    44-45            46 ... 109
#  +-----+----+-----------------+-----------+
#  | TLV3| 16 | collector delay |  zeros    |   (collector TLV, terminator, padding)
#  +-----+----+-----------------+-----------+
# each info: sys_priority(2) sys_id(6) key(2) port_priority(2) port_id(2) state(1)
_PDU = struct.Struct('!BBBB H6sHHHB 3x BB H6sHHHB 3x BBH 64x')
assert _PDU.size == 110
_ETH = struct.Struct('!6s6sH')


def encode_pdu(actor, partner):
    """The 110-byte LACPDU (OVS's compose_lacp_pdu)."""
    return _PDU.pack(SUBTYPE_LACP, 1, 1, 20, *actor, 2, 20, *partner, 3, 16, 0)


def compose_frame(eth_src, actor, partner):
    """A LACPDU in its Ethernet frame, to the slow-protocols group address."""
    return _ETH.pack(SLOW_PROTOCOLS_MAC, eth_src, ETH_TYPE_SLOW) + encode_pdu(actor, partner)


def decode_pdu(payload):
    """Parse the bytes after the Ethernet header (OVS's parse_lacp_packet).

    Returns:
        (subtype, actor, partner): actor and partner are LacpInfo for a
        LACPDU, None for a marker PDU; subtype is 0 for anything else
        (too short, or TLVs that are not actor 1/20 and partner 2/20).
    """
    if len(payload) >= 1 and payload[0] == SUBTYPE_MARKER:
        return SUBTYPE_MARKER, None, None
    if len(payload) < _PDU.size:
        return 0, None, None
    f = _PDU.unpack_from(payload)
    if f[0] != SUBTYPE_LACP or f[2:4] != (1, 20) or f[10:12] != (2, 20):
        return 0, None, None
    return SUBTYPE_LACP, LacpInfo(*f[4:10]), LacpInfo(*f[12:18])


def format_state(state):
    return ''.join(' ' + name for bit, name in _STATE_NAMES if state & bit)


class LacpMember:
    """One link's LACP state (OVS's struct member in lacp.c)."""

    __slots__ = ('name', 'port_id', 'port_priority', 'key', 'status', 'attached',
                 'carrier_up', 'partner', 'ntt_actor', 'tx_due', 'rx_due', 'rx_pdus',
                 'rx_bad', 'rx_marker', 'tx_pdus', 'n_expired', 'n_defaulted', 'n_carrier')

    def __init__(self, name, port_id, port_priority, key):
        self.name = name
        self.port_id, self.port_priority, self.key = port_id, port_priority, key
        self.attached = False
        self.carrier_up = True
        self.ntt_actor = None           # what we last sent (a change means "send now")
        self.tx_due = 0.0
        self.rx_due = float('inf')
        self.rx_pdus = self.rx_bad = self.rx_marker = self.tx_pdus = 0
        self.n_expired = self.n_defaulted = self.n_carrier = 0
        self.set_defaulted()

    def set_defaulted(self):
        self.partner = NO_PARTNER
        self.status = DEFAULTED
        self.rx_due = float('inf')

    def set_expired(self, now):
        self.status = EXPIRED
        self.partner = self.partner._replace(
            state=(self.partner.state | STATE_TIME) & ~STATE_SYNC)
        self.rx_due = now + RX_MULTIPLIER * FAST_TX


class Lacp:
    """The LACP state of one bond.

    Args:
        name: the bond's name (lacp/show).
        sys_id: our system id, 6 bytes (the bridge's MAC).
        sys_priority, active, fast, fallback_ab: as OVS's lacp_settings.
    """

    def __init__(self, name, sys_id, sys_priority=65534, active=True, fast=False,
                 fallback_ab=False):
        self.name = name
        self.members = {}               # port number -> LacpMember
        self.key_member = None          # the member whose port id is the aggregation key
        self.negotiated = False
        self.update = True              # attachment must be recomputed
        self.changed = True             # may_enable or negotiated may have changed
        self.sys_id, self.sys_priority = sys_id, sys_priority
        self.active, self.fast, self.fallback_ab = active, fast, fallback_ab

    def configure(self, sys_id, sys_priority, active, fast, fallback_ab):
        """Change the settings, live (OVS's lacp_configure)."""
        if (sys_id, sys_priority, fallback_ab) != (self.sys_id, self.sys_priority,
                                                   self.fallback_ab):
            self.update = True
        self.sys_id, self.sys_priority = sys_id, sys_priority
        self.active, self.fast, self.fallback_ab = active, fast, fallback_ab

    def member_register(self, port_no, name, port_id, port_priority=65535, key=0, now=None):
        member = self.members.get(port_no)
        if member is None:
            member = self.members[port_no] = LacpMember(name, port_id, port_priority, key)
            if self.key_member is None:
                self.key_member = member
            self.update = True
        elif (member.port_id, member.port_priority, member.key) != (port_id, port_priority, key):
            member.port_id, member.port_priority, member.key = port_id, port_priority, key
            self.update = True
            if self.active or self.negotiated:
                member.set_expired(time.monotonic() if now is None else now)

    def member_unregister(self, port_no):
        member = self.members.pop(port_no, None)
        if member is not None:
            self.update = True
            if self.key_member is member:
                self.key_member = next(iter(self.members.values()), None)

    def carrier_changed(self, port_no, up, now):
        member = self.members.get(port_no)
        if member is None:
            return
        if member.status == CURRENT or self.active:
            member.set_expired(now)
        if member.carrier_up != up:
            member.carrier_up = up
            member.n_carrier += 1
        self.update = True

    def process_packet(self, port_no, payload, now):
        """A slow-protocols frame's payload arrived on member `port_no`."""
        member = self.members.get(port_no)
        if member is None:
            return
        member.rx_pdus += 1
        subtype, actor, partner = decode_pdu(payload)
        if subtype == SUBTYPE_MARKER:
            member.rx_marker += 1
            return
        if subtype != SUBTYPE_LACP:
            member.rx_bad += 1
            return
        if not member.carrier_up:
            return
        was_current = member.status == CURRENT
        member.status = CURRENT
        member.rx_due = now + RX_MULTIPLIER * (FAST_TX if self.fast else SLOW_TX)
        member.ntt_actor = partner      # what the partner believes of us
        if member.partner != actor or not was_current:
            member.partner = actor
            self.update = True

    def may_enable(self, port_no):
        """May traffic flow on this member (attached, partner in sync)?"""
        member = self.members.get(port_no)
        return member is not None and self._may_enable(member)

    def _may_enable(self, member):
        return member.attached and bool(
            member.partner.state & STATE_SYNC
            or self.fallback_ab and member.status == DEFAULTED)

    def is_current(self, port_no):
        member = self.members.get(port_no)
        return member is not None and member.status != DEFAULTED

    def status(self):
        return 'negotiated' if self.negotiated else 'configured'

    def next_event(self):
        """When run() next has something to do (a timer), in monotonic seconds."""
        due = [m.rx_due for m in self.members.values()]
        due += [m.tx_due for m in self.members.values() if self._may_tx(m)]
        return min(due, default=float('inf'))

    def run(self, now, send_pdu):
        """Expire partners, re-select, and send the PDUs that are due.

        Args:
            send_pdu: callable(port_no, actor, partner) that sends a LACPDU.
        """
        for member in self.members.values():
            if now >= member.rx_due:
                if member.status == CURRENT:
                    member.set_expired(now)
                    member.n_expired += 1
                elif member.status == EXPIRED:
                    member.set_defaulted()
                    member.n_defaulted += 1
                self.update = True
        if self.update:
            self._update_attached()
        for port_no, member in self.members.items():
            if not self._may_tx(member):
                continue
            actor = self.actor(member)
            if now >= member.tx_due or not _tx_equal(actor, member.ntt_actor):
                member.ntt_actor = actor
                send_pdu(port_no, actor, member.partner)
                member.tx_pdus += 1
                member.tx_due = now + (FAST_TX if member.partner.state & STATE_TIME
                                       else SLOW_TX)

    def _may_tx(self, member):
        return member.carrier_up and (self.active or member.status != DEFAULTED)

    def actor(self, member):
        """Our LacpInfo as sent on `member` (OVS's member_get_actor)."""
        state = 0
        if self.active:
            state |= STATE_ACT
        if self.fast:
            state |= STATE_TIME
        if member.attached:
            state |= STATE_SYNC
        if member.status == DEFAULTED:
            state |= STATE_DEF
        if member.status == EXPIRED:
            state |= STATE_EXP
        if len(self.members) > 1:
            state |= STATE_AGG
        if member.attached or not self.negotiated:
            state |= STATE_COL | STATE_DIST
        key = self.key_member.key or self.key_member.port_id
        return LacpInfo(self.sys_priority, self.sys_id, key, member.port_priority,
                        member.port_id, state)

    def _priority(self, member):
        """The link priority of `member`: lower sorts first (member_get_priority)."""
        partner = member.partner
        if (self.sys_priority, self.sys_id) < (partner.sys_priority, partner.sys_id):
            info = self.actor(member)
        else:
            info = partner
        return info.sys_priority, info.sys_id, info.port_priority, info.port_id

    def _update_attached(self):
        """Select the attached members (OVS's lacp_update_attached)."""
        self.update = False
        self.changed = True
        lead = lead_current = None
        lead_enable, lead_pri = False, None
        for member in self.members.values():
            if member.status == CURRENT and member.attached:
                pri = self._priority(member)
                if lead_current is None or pri < lead_pri:
                    lead = lead_current = member
                    lead_pri, lead_enable = pri, True
        for member in self.members.values():
            member.attached = False
            if member.partner.sys_id == self.sys_id:
                continue                # loopback: connected to its own bond
            if member.status == DEFAULTED:
                member.attached = self.fallback_ab
                continue
            pri = self._priority(member)
            enable = bool(member.partner.state & STATE_SYNC)
            if lead_current is None or member.partner.sys_id == lead_current.partner.sys_id:
                member.attached = True
            if member.attached and (lead is None or enable > lead_enable
                                    or enable == lead_enable and pri < lead_pri):
                lead, lead_enable, lead_pri = member, enable, pri
        self.negotiated = lead is not None
        if lead is not None:
            for member in self.members.values():
                if (self.fallback_ab and member.status == DEFAULTED
                        or member.partner.key != lead.partner.key
                        or member.partner.sys_id != lead.partner.sys_id):
                    member.attached = False

    def show(self):
        """lacp/show's text for this bond (OVS's lacp_print_details)."""
        key = self.key_member and (self.key_member.key or self.key_member.port_id)
        lines = [f'---- {self.name} ----',
                 f'  status: {"active" if self.active else "passive"}'
                 + (' negotiated' if self.negotiated else ''),
                 f'  sys_id: {self.sys_id.hex(":")}',
                 f'  sys_priority: {self.sys_priority}',
                 f'  aggregation key: {key if key is not None else "none"}',
                 f'  lacp_time: {"fast" if self.fast else "slow"}']
        for member in sorted(self.members.values(), key=lambda m: m.name):
            actor, partner = self.actor(member), member.partner
            lines += ['', f'member: {member.name}: {member.status} '
                          f'{"attached" if member.attached else "detached"}',
                      f'  port_id: {member.port_id}',
                      f'  port_priority: {member.port_priority}',
                      f'  may_enable: {"true" if self._may_enable(member) else "false"}', '']
            for who, info in (('actor', actor), ('partner', partner)):
                lines += [f'  {who} sys_id: {info.sys_id.hex(":")}',
                          f'  {who} sys_priority: {info.sys_priority}',
                          f'  {who} port_id: {info.port_id}',
                          f'  {who} port_priority: {info.port_priority}',
                          f'  {who} key: {info.key}',
                          f'  {who} state:{format_state(info.state)}']
                if who == 'actor':
                    lines.append('')
        return '\n'.join(lines) + '\n'

    def show_stats(self):
        """lacp/show-stats' text (OVS's lacp_print_stats)."""
        lines = [f'---- {self.name} statistics ----']
        for member in sorted(self.members.values(), key=lambda m: m.name):
            lines += ['', f'member: {member.name}:', f'  TX PDUs: {member.tx_pdus}',
                      f'  RX PDUs: {member.rx_pdus}', f'  RX Bad PDUs: {member.rx_bad}',
                      f'  RX Marker Request PDUs: {member.rx_marker}',
                      f'  Link Expired: {member.n_expired}',
                      f'  Link Defaulted: {member.n_defaulted}',
                      f'  Carrier Status Changed: {member.n_carrier}']
        return '\n'.join(lines) + '\n'


def _tx_equal(a, b):
    """Do two actor infos agree on everything whose change requires a PDU?"""
    if b is None:
        return False
    mask = STATE_ACT | STATE_TIME | STATE_SYNC | STATE_AGG
    return (not (a.state ^ b.state) & mask and a.port_id == b.port_id
            and a.port_priority == b.port_priority and a.key == b.key
            and a.sys_priority == b.sys_priority and a.sys_id == b.sys_id)
