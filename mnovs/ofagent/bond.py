"""Bonds: one OpenFlow port over several links (OVS's ofproto/bond.c).

A bond is a Port row with several Interfaces (`ovs-vsctl add-bond`). Each
member is a datapath port of its own, numbered from MEMBER_PORT_BASE up,
outside the OpenFlow port range: OpenFlow does not list it. The bond has
one OpenFlow port number. A packet from any member is, for the pipeline
and NORMAL, from the bond (xlate replaces the key's in_port; the megaflow
still matches the member, since every megaflow matches in_port exactly);
an output to the bond picks a member by the bond mode:

    active-backup   the active member (the first enabled one, kept until
                    it fails; other_config:bond-primary preferred)
    balance-slb     the member owning the hash bucket of (eth_src, VLAN):
                    the megaflow reads only what NORMAL already reads
    balance-tcp     ('hash', basis), ('recirc', id): the datapath hashes the
                    5-tuple into dp_hash and sends the packet through its
                    caches again; the second pass (recirc_id=id) outputs to
                    the member owning bucket dp_hash & BOND_MASK, and its
                    megaflow matches only those bits of dp_hash. The first
                    pass reads no L4 field. LACP must have negotiated (with
                    lacp-fallback-ab, a bond that did not falls back to
                    active-backup; without, it drops).

The 256 buckets (BOND_BUCKETS) are owned by enabled members. Bucket b's
home is member b mod n (in the order they were added): a bucket without
an enabled owner goes home, or to another enabled member while its home
is disabled, and a member that becomes enabled takes its home buckets
back, so a bond whose members come up one at a time, or a member that
recovers, carries its share at once. (OVS gives such buckets to the active
member and leaves the rest to rebalancing.) Every
rebalance interval (other_config:bond-rebalance-interval, 10 s) the load
of each bucket, credited from megaflow statistics (account()), is used to
move buckets from the most to the least loaded member, as OVS's
bond_rebalance; a move revalidates the megaflows.

A member is *enabled* when its link is up and LACP (if on) lets it, after
bond_updelay/bond_downdelay. Any change of an enabled member, the active
member, the LACP status or a bucket's owner sets `revalidate`: the agent
re-translates every megaflow, so no stale megaflow keeps sending to a
member that left (see DESIGN.md).

LACP PDUs (slow protocols, 0x8809) received on a member of a bond with
LACP go to the slow path: xlate answers them with a userspace action whose
userdata is LACP_USERDATA, cached like OVS's slow_path(lacp) megaflows,
and every other megaflow of such a member matches eth_type, so none hides
a PDU. The agent hands them to Bonds.lacp_rx with the member's number.

Admissibility of received packets (NORMAL only, as OVS's
bond_check_admissibility): with LACP negotiated, packets from disabled
members are dropped; with LACP configured but not negotiated, everything
is dropped (unless lacp-fallback-ab); active-backup and balance-tcp
(fallen back) drop packets from backup members; balance-slb drops
multicast from non-active members and packets whose source MAC was
learned elsewhere (a reflection of our own flood).

Cost per packet: none beyond the megaflow. Per translation: a dict lookup
for the input port, a bucket lookup for an output.
"""

import logging
import time
import zlib
from collections import namedtuple

from mnovs.dp.datapath import mix32
from mnovs.dp.flow import FIELD_SLICES
from mnovs.ofagent.lacp import ETH_TYPE_SLOW, Lacp, compose_frame
from mnovs.ofagent.recirc import BondRecirc

log = logging.getLogger(__name__)

BOND_BUCKETS = 256
BOND_MASK = BOND_BUCKETS - 1
MEMBER_PORT_BASE = 0xff00       # datapath numbers of members: above any ofport_request
MODES = ('active-backup', 'balance-slb', 'balance-tcp')
LACP_USERDATA = b'LACP'         # userdata of the slow-path action for PDUs
ACCEPT, DROP, DROP_IF_MOVED = 'accept', 'drop', 'drop-if-moved'
MIN_REBALANCE = 1000            # ms, as OVS
_RECIRC_ID, _IN_PORT, _ETH_TYPE = (slice(FIELD_SLICES[f][0], sum(FIELD_SLICES[f]))
                                   for f in ('recirc_id', 'in_port', 'eth_type'))
_ZERO4 = bytes(4)

BondSettings = namedtuple(
    'BondSettings', 'mode lacp lacp_fast lacp_fallback_ab updelay downdelay '
                    'rebalance_interval basis primary sys_priority',
    defaults=('active-backup', 'off', False, False, 0, 0, 10000, 0, None, 65534))
BondSettings.__doc__ = """A bond's configuration, OVS's defaults.

mode: one of MODES; lacp: 'off', 'active' or 'passive'; lacp_fast:
other_config:lacp-time=fast; updelay/downdelay and rebalance_interval in
ms (0: never rebalance); basis: bond-hash-basis; primary: bond-primary."""


class BondMember:
    """One link of a bond (OVS's struct bond_member)."""

    __slots__ = ('port', 'mac', 'enabled', 'may_enable', 'delay_expires', 'tx_bytes')

    def __init__(self, port, mac):
        self.port = port                # the datapath port
        self.mac = mac                  # its interface's MAC (PDUs' source)
        self.enabled = False
        self.may_enable = False
        self.delay_expires = None       # when enabled may flip (updelay/downdelay)
        self.tx_bytes = 0               # rebalancing: sum of its buckets' load

    @property
    def name(self):
        return self.port.name

    @property
    def port_no(self):
        return self.port.port_no


class Bond:
    """A bond: stands as the datapath port of its OpenFlow port (ofproto.OFPort).

    Args:
        name: the Port name (bond/show, lacp/show).
        port_no: its OpenFlow port number.
        settings: BondSettings.
        sys_id: the bridge's MAC, 6 bytes (the LACP system id).
        serial: a number no other bond of this switch had; it makes the
            bond's recirculation id new (recirc.py never reuses ids).
    """

    tunnel = None                       # what OFPort asks of a datapath port

    def __init__(self, name, port_no, settings, sys_id, serial):
        self.name = name
        self.port_no = port_no
        self.members = {}               # datapath port number -> BondMember
        self.frozen = BondRecirc(name, serial)
        self.sys_id = sys_id
        self.settings = None
        self.lacp = None
        self.lacp_status = 'off'
        self.active = None              # the active member (active-backup, floods)
        self.buckets = [None] * BOND_BUCKETS        # BondMember owning each hash bucket
        self.bucket_bytes = [0] * BOND_BUCKETS      # load since the last rebalance, halved
        self.next_rebalance = 0.0
        self.revalidate = True
        self.rehome = set()             # members enabled since: their buckets go home
        self.configure(settings)

    # --- configuration ---------------------------------------------------------

    def configure(self, settings, now=None):
        """Apply BondSettings, live."""
        if settings == self.settings:
            return
        now = time.monotonic() if now is None else now
        self.settings = settings
        if settings.lacp == 'off':
            self.lacp = None
        else:
            config = (self.sys_id, settings.sys_priority, settings.lacp == 'active',
                      settings.lacp_fast, settings.lacp_fallback_ab)
            if self.lacp is None:
                self.lacp = Lacp(self.name, *config)
                for member in self.members.values():
                    self._lacp_register(member)
            else:
                self.lacp.configure(*config)
        self.next_rebalance = now + self.rebalance_interval / 1000
        self.revalidate = True

    @property
    def rebalance_interval(self):
        interval = self.settings.rebalance_interval
        return max(interval, MIN_REBALANCE) if interval else 0

    def add_member(self, port, mac):
        member = self.members[port.port_no] = BondMember(port, mac)
        if self.lacp is not None:
            self._lacp_register(member)
        self.revalidate = True
        return member

    def _lacp_register(self, member):
        # OVS's port id is the member's ofport; ours is its datapath number.
        self.lacp.member_register(member.port_no, member.name, member.port_no & 0xffff)

    def remove_member(self, port_no):
        member = self.members.pop(port_no)
        if self.lacp is not None:
            self.lacp.member_unregister(port_no)
        self.buckets = [None if owner is member else owner for owner in self.buckets]
        if self.active is member:
            self.active = None
        self.revalidate = True

    def carrier_changed(self, port_no, now):
        member = self.members.get(port_no)
        if member is not None and self.lacp is not None:
            self.lacp.carrier_changed(port_no, member.port.up, now)

    # --- OpenFlow port view -----------------------------------------------------

    @property
    def up(self):
        return any(member.enabled for member in self.members.values())

    def _sum(name):     # a counter of the OpenFlow port: its members' sum
        return property(lambda self: sum(getattr(m.port, name) for m in self.members.values()))

    rx_packets, rx_bytes = _sum('rx_packets'), _sum('rx_bytes')
    rx_dropped, rx_errors = _sum('rx_dropped'), _sum('rx_errors')
    tx_packets, tx_bytes, tx_dropped = _sum('tx_packets'), _sum('tx_bytes'), _sum('tx_dropped')
    del _sum

    # --- periodic work (OVS's bond_run, lacp_run) ------------------------------

    def run(self, now, send_pdu):
        """Run LACP, enable and disable members, choose the active one, fill buckets.

        Returns:
            True if translations may have changed (revalidate every megaflow).
        """
        if self.lacp is not None:
            self.lacp.run(now, send_pdu)
            if self.lacp.changed:
                self.lacp.changed = False
                self.revalidate = True
            status = self.lacp.status()
        else:
            status = 'off'
        if status != self.lacp_status:
            log.info('bond %s: lacp status %s', self.name, status)
            self.lacp_status = status
            self.revalidate = True
        for member in self.members.values():
            member.may_enable = self.lacp is None or self.lacp.may_enable(member.port_no)
            self._link_status_update(member, now)
        primary = self._primary()
        if self.active is None or not self.active.enabled \
                or primary is not None and self.active is not primary:
            self._choose_active(now)
        if self.balanced_mode() is not None:
            self._fill_buckets()
        revalidate, self.revalidate = self.revalidate, False
        return revalidate

    def _link_status_update(self, member, now):
        up = member.port.up and member.may_enable
        if (up == member.enabled) != (member.delay_expires is None):
            if up == member.enabled:
                member.delay_expires = None
            else:
                delay = self.settings.updelay if up else self.settings.downdelay
                member.delay_expires = now + delay / 1000
        if member.delay_expires is not None and now >= member.delay_expires:
            self._enable(member, up)

    def _enable(self, member, enable):
        member.delay_expires = None
        if enable != member.enabled:
            member.enabled = enable
            self.revalidate = True
            if enable:
                self.rehome.add(member)
            log.info('member %s: %s', member.name, 'enabled' if enable else 'disabled')

    def _primary(self):
        name = self.settings.primary
        if name is None or self.settings.mode != 'active-backup' \
                and not self.settings.lacp_fallback_ab:
            return None
        return next((m for m in self.members.values() if m.name == name and m.enabled), None)

    def _choose_active(self, now):
        """OVS's bond_choose_active_member: primary, else the first enabled,
        else the one whose updelay ends first (enabled at once)."""
        old = self.active
        best = self._primary() or next((m for m in self.members.values() if m.enabled), None)
        if best is None:
            waiting = [m for m in self.members.values()
                       if m.delay_expires is not None and m.may_enable]
            best = min(waiting, key=lambda m: m.delay_expires, default=None)
            if best is not None:
                self._enable(best, True)
        self.active = best
        if best is not old:
            self.revalidate = True
            log.info('bond %s: %s', self.name, f'active member is now {best.name}'
                     if best is not None else 'all members disabled')

    def _fill_buckets(self):
        """Send buckets home (see the module docstring), or, while their home is
        disabled, to the enabled members in turn."""
        members = list(self.members.values())
        enabled = [m for m in members if m.enabled]
        if not enabled:
            return
        rehome, self.rehome = self.rehome, set()
        turn = 0
        for bucket, owner in enumerate(self.buckets):
            home = members[bucket % len(members)]
            if owner is None or not owner.enabled or home in rehome and owner is not home:
                new = home if home.enabled else enabled[turn % len(enabled)]
                turn += not home.enabled
                if new is not owner:
                    self.buckets[bucket] = new
                    self.revalidate = True

    # --- output and input decisions (pure: xlate and NORMAL call these) -------

    def falling_back_to_ab(self):
        return (self.settings.lacp_fallback_ab and self.settings.mode != 'active-backup'
                and self.lacp_status == 'configured')

    def balanced_mode(self):
        """'balance-slb' or 'balance-tcp' when buckets are in use, else None."""
        mode = self.settings.mode
        if mode == 'active-backup' or self.falling_back_to_ab():
            return None
        return mode

    def may_recirc(self):
        """Does an output take the hash and recirc path (balance-tcp, LACP up)?"""
        return self.settings.mode == 'balance-tcp' and self.lacp_status == 'negotiated'

    def choose_member(self, eth_src, vid):
        """The member a packet from eth_src in VLAN vid leaves on, without
        recirculation (OVS's choose_output_member); None: drop.

        balance-tcp, which needs the datapath's hash, floods on its active
        member.
        """
        if self.lacp_status == 'configured' and not self.settings.lacp_fallback_ab:
            return None
        mode = self.balanced_mode()
        if mode == 'balance-slb':
            owner = self.buckets[self.slb_bucket(eth_src, vid)]
            return owner if owner is not None and owner.enabled else None
        active = self.active
        return active if active is not None and active.enabled else None

    def slb_bucket(self, eth_src, vid):
        return mix32(zlib.crc32(eth_src + vid.to_bytes(2, 'big'), self.settings.basis)) \
            & BOND_MASK

    def bucket_member(self, dp_hash):
        """The member of the second pass of a balance-tcp output; None: drop."""
        owner = self.buckets[dp_hash & BOND_MASK]
        if owner is None or not owner.enabled:
            owner = self.active
        return owner if owner is not None and owner.enabled else None

    def admissibility(self, port_no, eth_dst):
        """May a packet to eth_dst received on member port_no be forwarded?

        Returns ACCEPT, DROP or DROP_IF_MOVED (OVS's bond_check_admissibility).
        """
        member = self.members.get(port_no)
        if member is None:
            return DROP
        mode = self.settings.mode
        if self.lacp_status == 'negotiated':
            return ACCEPT if member.enabled or member.may_enable else DROP
        if self.lacp_status == 'configured' and not self.settings.lacp_fallback_ab:
            return DROP
        if self.lacp_status == 'off' and mode == 'balance-tcp':
            return DROP
        if eth_dst[0] & 1 and member is not self.active:
            return DROP
        if mode == 'balance-slb':
            return DROP_IF_MOVED
        return ACCEPT if member is self.active else DROP

    # --- load balancing ------------------------------------------------------------

    def account(self, bucket, nbytes):
        """Credit nbytes sent through hash bucket `bucket` (from megaflow stats)."""
        self.bucket_bytes[bucket] += nbytes

    def rebalance(self, now):
        """Move buckets from loaded to idle members, every rebalance interval.

        OVS's bond_rebalance: members sorted by load; while the most loaded
        carries more than the least (by over ~3% and over 100 kB), move to
        the least the buckets that bring the two nearest their mid point,
        by at least 10% of the gap; then halve every bucket's load (an
        exponentially weighted history).

        Returns:
            True if a bucket moved (revalidate).
        """
        if not self.rebalance_interval or self.balanced_mode() is None \
                or now < self.next_rebalance:
            return False
        self.next_rebalance = now + self.rebalance_interval / 1000
        entries = {member: [] for member in self.members.values()}
        for bucket in sorted(range(BOND_BUCKETS), key=lambda b: -self.bucket_bytes[b]):
            owner = self.buckets[bucket]
            if owner is not None and self.bucket_bytes[bucket]:
                entries[owner].append(bucket)
        for member, buckets in entries.items():
            member.tx_bytes = sum(self.bucket_bytes[b] for b in buckets)
        bals = sorted((m for m in self.members.values() if m.enabled),
                      key=lambda m: -m.tx_bytes)
        moved = False
        while len(bals) > 1:
            src, dst = bals[0], bals[-1]
            overload = src.tx_bytes - dst.tx_bytes
            if overload < dst.tx_bytes >> 5 or overload < 100000:
                break
            chosen = self._entries_to_migrate(entries[src], src.tx_bytes, dst.tx_bytes)
            if not chosen:
                bals.pop(0)
                continue
            for bucket in chosen:
                load = self.bucket_bytes[bucket]
                src.tx_bytes -= load
                dst.tx_bytes += load
                self.buckets[bucket] = dst
                entries[src].remove(bucket)
            moved = True
            bals.sort(key=lambda m: -m.tx_bytes)
        self.bucket_bytes = [load // 2 for load in self.bucket_bytes]
        if moved:
            self.revalidate = True
            log.info('bond %s: rebalanced (now carrying: %s)', self.name, ' and '.join(
                f'{m.name}:{m.tx_bytes // 1024}kB' for m in self.members.values()))
        return moved

    def _entries_to_migrate(self, buckets, from_bytes, to_bytes):
        """OVS's choose_entries_to_migrate over `buckets` (sorted by load, descending)."""
        if len(buckets) <= 1:
            return []           # one hash: moving it only moves the imbalance
        ideal_delta = (from_bytes + to_bytes) // 2 - to_bytes
        threshold = ideal_delta // 10
        chosen, delta = [], 0
        for bucket in buckets:
            load = self.bucket_bytes[bucket]
            if delta + load <= ideal_delta:
                chosen.append(bucket)
                delta += load
            if ideal_delta - delta < threshold:
                break
        if not chosen:
            chosen, delta = [buckets[-1]], self.bucket_bytes[buckets[-1]]
        new_low = min(from_bytes - delta, to_bytes + delta)
        if new_low > to_bytes and new_low - to_bytes >= threshold:
            return chosen
        return []

    # --- bond/show -------------------------------------------------------------------

    def show(self, recirc_id, now):
        """bond/show's text (OVS's bond_print_details)."""
        s = self.settings
        may_recirc = s.mode == 'balance-tcp' and not self.falling_back_to_ab()
        lines = [f'---- {self.name} ----', f'bond_mode: {s.mode}',
                 f'bond may use recirculation: {"yes" if may_recirc else "no"}, '
                 f'Recirc-ID : {recirc_id if may_recirc else -1}',
                 f'bond-hash-basis: {s.basis}',
                 'lb_output action: disabled, bond-id: -1']
        if s.mode == 'balance-slb':
            lines.append('all members active: false')
        lines += [f'updelay: {s.updelay} ms', f'downdelay: {s.downdelay} ms']
        balanced = self.rebalance_interval and self.balanced_mode() is not None
        if balanced:
            lines.append(f'next rebalance: {int((self.next_rebalance - now) * 1000)} ms')
        lines += [f'lacp_status: {self.lacp_status}',
                  f'lacp_fallback_ab: {"true" if s.lacp_fallback_ab else "false"}']
        names = {m.name for m in self.members.values()}
        missing = ' (no such member)' if s.primary and s.primary not in names else ''
        lines.append(f'active-backup primary: {s.primary or "<none>"}{missing}')
        active = self.active
        lines.append(f'active member mac: {(active.mac if active else bytes(6)).hex(":")}'
                     f'({active.name if active else "none"})')
        for member in sorted(self.members.values(), key=lambda m: m.name):
            lines += ['', f'member {member.name}: {"enabled" if member.enabled else "disabled"}']
            if member is active:
                lines.append('  active member')
            if member.delay_expires is not None:
                lines.append(f'  {"downdelay" if member.enabled else "updelay"} expires in '
                             f'{int((member.delay_expires - now) * 1000)} ms')
            lines.append(f'  may_enable: {"true" if member.may_enable else "false"}')
            if balanced:
                for bucket, owner in enumerate(self.buckets):
                    kb = self.bucket_bytes[bucket] // 1024
                    if owner is member and kb:
                        lines.append(f'  hash {bucket}: {kb} kB load')
        return '\n'.join(lines) + '\n\n'


class Bonds:
    """The bonds of one switch, by OpenFlow port and by member.

    Args:
        recirc: the agent's RecircTable (recirc.py), which gives each bond
            its recirculation id (a BondRecirc frozen state).
        send: callable(port_no, frame) that sends a frame (no vnet header)
            out of a datapath port; LACP uses it.
    """

    def __init__(self, recirc, send):
        self.recirc = recirc
        self.send = send
        self.by_port = {}               # OpenFlow port number -> Bond
        self.by_member = {}             # member datapath port number -> Bond
        self.by_name = {}
        self.serial = 0

    def __len__(self):
        return len(self.by_port)

    def create(self, name, port_no, settings, sys_id):
        self.serial += 1
        bond = Bond(name, port_no, settings, sys_id, self.serial)
        self.by_port[port_no] = self.by_name[name] = bond
        return bond

    def add_member(self, bond, port, mac):
        bond.add_member(port, mac)
        self.by_member[port.port_no] = bond

    def remove_member(self, bond, port_no):
        bond.remove_member(port_no)
        del self.by_member[port_no]

    def destroy(self, bond):
        for port_no in list(bond.members):
            self.remove_member(bond, port_no)
        del self.by_port[bond.port_no]
        del self.by_name[bond.name]

    def of_member(self, port_no):
        """The Bond whose member datapath port is port_no, or None."""
        return self.by_member.get(port_no)

    def ofport_of(self, port_no):
        """The OpenFlow port a datapath port belongs to: its bond's, or itself."""
        bond = self.by_member.get(port_no)
        return port_no if bond is None else bond.port_no

    def recirc_id(self, bond):
        """The recirculation id of bond's second pass (allocated on first use)."""
        return self.recirc.freeze(bond.frozen)

    def by_frozen(self, state):
        """The Bond a thawed BondRecirc stands for, or None (it was deleted)."""
        bond = self.by_name.get(state.name)
        return bond if bond is not None and bond.frozen == state else None

    def is_special(self, key):
        """Must this miss be translated by xlate even in fail-open mode
        (a recirculation's later pass, or a PDU for LACP)?"""
        if key[_RECIRC_ID] != _ZERO4:
            return True
        bond = self.by_member.get(int.from_bytes(key[_IN_PORT], 'big'))
        return (bond is not None and bond.lacp is not None
                and int.from_bytes(key[_ETH_TYPE], 'big') == ETH_TYPE_SLOW)

    def output_actions(self, bond, eth_src, vid, flood=False):
        """Datapath actions of an output to `bond` (NORMAL's and xlate's).

        Returns:
            (actions, bucket): bucket is the SLB hash bucket to credit, or
            None; actions are () when no member may send.
        """
        if not flood and bond.may_recirc():
            return (('hash', bond.settings.basis), ('recirc', self.recirc_id(bond))), None
        member = bond.choose_member(eth_src, vid)
        if member is None:
            return (), None
        bucket = bond.slb_bucket(eth_src, vid) if bond.balanced_mode() == 'balance-slb' \
            else None
        return (('output', member.port_no),), bucket

    def lacp_rx(self, port_no, frame, now):
        """A slow-protocols frame (no vnet header) arrived on member port_no."""
        bond = self.by_member.get(port_no)
        if bond is not None and bond.lacp is not None:
            bond.lacp.process_packet(port_no, frame[14:], now)

    def run(self, now):
        """LACP, link and rebalancing work of every bond; True: revalidate."""
        revalidate = False
        for bond in self.by_port.values():
            revalidate |= bond.run(now, lambda port_no, actor, partner, bond=bond:
                                   self._send_pdu(bond, port_no, actor, partner))
            revalidate |= bond.rebalance(now)
        return revalidate

    def _send_pdu(self, bond, port_no, actor, partner):
        member = bond.members[port_no]
        self.send(port_no, compose_frame(member.mac, actor, partner))

    def next_event(self):
        return min((b.lacp.next_event() for b in self.by_port.values() if b.lacp is not None),
                   default=float('inf'))

    def find(self, name):
        """The bond named `name`.

        Raises:
            KeyError: no such bond.
        """
        return self.by_name[name]
