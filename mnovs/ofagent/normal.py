"""The NORMAL action: an L2 learning switch as the slow path (standalone mode).

OVS's NORMAL (xlate_normal in ofproto-dpif-xlate.c) forwards like a plain
learning bridge. mnovs uses it when a switch runs in `standalone` fail mode
without a controller. Every port is a trunk: frames keep their VLAN tag and
MACs are learned per VLAN (VLAN 0 = untagged).

Translation of a packet (`xlate`, side-effect free):
- a frame from a multicast source, or to an IEEE reserved group address
  (01:80:c2:00:00:0x, STP and friends), is dropped, as OVS does without
  forward-bpdu;
- a unicast destination learned on another live port goes there; one learned
  on the input port is dropped (the hosts are on the same segment);
- anything else floods to every live port but the input one.

The megaflow mask holds exactly what this reads: in_port, eth_src, eth_dst
and the VLAN id with its present bit. So a new TCP connection between two
known hosts hits the existing megaflow and takes no upcall. An extra bit in
this mask would cost speed; a missing one would be a forwarding bug.

Bonds (bond.py) are one port each: a frame from a member is from the
bond's OpenFlow port number (learned there, never flooded back into the
bond) if the bond admits it (Bond.admissibility: backup members, LACP not
in sync, and for balance-slb a source MAC learned on another port drop);
an output to the bond is the member its mode picks (for balance-tcp, hash
and recirculation; a flood uses the active member). A member of a bond
with LACP adds eth_type to the mask, so that no megaflow hides LACP's PDUs
from the slow path.

Learning (`upcall`) is the side effect a miss adds to translation. What the
MAC table knows is baked into megaflows, so every change is followed by a
revalidation of the flows it touches:
- a new or moved MAC: flows *to* it are re-translated, flows *from* it on
  another port are deleted (they encode "this MAC lives on in_port");
- an aged-out MAC, or one evicted from a full table: flows to it are
  re-translated;
- a port going down or away: its MACs are flushed and all flows re-translated.
Megaflow hits take no upcall, so, as OVS's revalidators push stats into the
learning table, `run_periodic` refreshes the MACs of flows used since the
last pass; an active host never ages out.
"""

import time

from mnovs.dp.flow import FIELD_SLICES, mask_of
from mnovs.ofagent.bond import ACCEPT, DROP_IF_MOVED
from mnovs.ofagent.mac_learning import MacTable
from mnovs.ofagent.revalidator import revalidate


def _slice(name):
    off, width = FIELD_SLICES[name]
    return slice(off, off + width)


IN_PORT = _slice('in_port')
ETH_SRC = _slice('eth_src')
ETH_DST = _slice('eth_dst')
VLAN_TCI = _slice('vlan_tci')
VLAN_PRESENT = 0x1000
VID_MASK = 0x0fff


# The megaflow mask of every NORMAL translation.
NORMAL_MASK = mask_of(recirc_id=0xffffffff, in_port=0xffffffff, eth_src=b'\xff' * 6, eth_dst=b'\xff' * 6,
                      vlan_tci=VLAN_PRESENT | VID_MASK)
NORMAL_LACP_MASK = mask_of(recirc_id=0xffffffff, in_port=0xffffffff, eth_src=b'\xff' * 6,
                           eth_dst=b'\xff' * 6, vlan_tci=VLAN_PRESENT | VID_MASK,
                           eth_type=0xffff)
DROP = ()


def key_vlan(key):
    """The VLAN a key belongs to for learning: its vid, or 0 if untagged."""
    tci = int.from_bytes(key[VLAN_TCI], 'big')
    return tci & VID_MASK if tci & VLAN_PRESENT else 0


def is_reserved_group(mac):
    return mac[:5] == b'\x01\x80\xc2\x00\x00' and mac[5] < 0x10


class NormalSwitch:
    """NORMAL forwarding over a datapath: the standalone-mode slow path.

    Args:
        dp: the Datapath whose misses this handles.
        mac_table: a MacTable (aging time and size are the caller's choice).
        is_stale: callable(flow) -> bool, how revalidation judges a
            megaflow; default: by NORMAL's own translation.
        went_through_normal: callable(flow) -> bool, whether NORMAL made a
            megaflow (only those refresh MAC entries); default: all did.
            The OpenFlow agent passes its own two: its pipeline reaches
            NORMAL only by rule, and credits rules.
        bonds: the switch's bond.Bonds, or None (no bonds).
    """

    def __init__(self, dp, mac_table=None, is_stale=None, went_through_normal=None,
                 bonds=None):
        self.dp = dp
        self.bonds = bonds
        self.macs = mac_table if mac_table is not None else MacTable()
        self.last_pass = time.monotonic()
        self.is_stale = is_stale or self.stale_by_normal
        self.went_through_normal = went_through_normal or (lambda flow: True)

    def stale_by_normal(self, flow):
        """Would NORMAL now translate this megaflow's key differently?"""
        return self.xlate(flow.key) != (flow.actions, flow.mask)

    def xlate(self, key):
        """Translate a flow key through NORMAL: (actions, mask), no side effects."""
        src, dst = key[ETH_SRC], key[ETH_DST]
        if src[0] & 1 or is_reserved_group(dst):
            return DROP, NORMAL_MASK
        in_port = int.from_bytes(key[IN_PORT], 'big')
        vlan = key_vlan(key)
        mask = NORMAL_MASK
        bond = self.bonds.of_member(in_port) if self.bonds is not None else None
        if bond is not None:
            if bond.lacp is not None:
                mask = NORMAL_LACP_MASK
            if not self._admitted(bond, in_port, key, vlan):
                return DROP, mask
            in_port = bond.port_no
        if not dst[0] & 1:
            out = self.macs.lookup(vlan, dst)
            if out == in_port:
                return DROP, mask
            actions = self._output(out, src, vlan)
            if actions is not None:
                return actions, mask
        return self._flood(in_port, src, vlan), mask

    def _admitted(self, bond, member, key, vlan):
        verdict = bond.admissibility(member, key[ETH_DST])
        if verdict == DROP_IF_MOVED:
            learned = self.macs.lookup(vlan, key[ETH_SRC])
            return learned is None or learned == bond.port_no
        return verdict == ACCEPT

    def _output(self, port_no, src, vlan, flood=False):
        """The actions of an output to a port or bond; None if it cannot send."""
        port = self.dp.ports.get(port_no)
        if port is not None:
            if self.bonds is not None and self.bonds.of_member(port_no) is not None:
                return None             # a member is not a port of its own
            return (('output', port_no),) if port.up else None
        bond = self.bonds.by_port.get(port_no) if self.bonds is not None else None
        if bond is None:
            return None
        return self.bonds.output_actions(bond, src, vlan, flood)[0] or None

    def _flood(self, in_port, src=b'', vlan=0):
        numbers = sorted(set(self.dp.ports) | set(self.bonds.by_port if self.bonds else ()))
        return tuple(action for no in numbers if no != in_port
                     for action in self._output(no, src, vlan, flood=True) or ())

    def upcall(self, packet, key):
        """Handle a datapath miss: learn the source, then translate.

        Returns:
            (actions, mask, None): NORMAL keeps no per-megaflow record.
        """
        self.learn(key, time.monotonic())
        return self.xlate(key) + (None,)

    def learn(self, key, now):
        src = key[ETH_SRC]
        if src[0] & 1:
            return
        in_port = int.from_bytes(key[IN_PORT], 'big')
        port = self.dp.ports.get(in_port)
        if port is None or not port.up:
            return
        vlan = key_vlan(key)
        bond = self.bonds.of_member(in_port) if self.bonds is not None else None
        if bond is not None:
            if not self._admitted(bond, in_port, key, vlan):
                return
            in_port = bond.port_no
        news, evicted = self.macs.learn(vlan, src, in_port, now)
        if news:
            self._mac_changed(vlan, src, in_port)
        if evicted is not None:
            self._revalidate_to(*evicted)

    def _mac_changed(self, vlan, mac, port_no):
        """Drop or re-translate the megaflows that depend on where `mac` is."""
        bundle = self.bonds.ofport_of if self.bonds is not None else int
        self.dp.flow_del_if(
            lambda flow: flow.key[ETH_SRC] == mac and key_vlan(flow.key) == vlan
            and bundle(int.from_bytes(flow.key[IN_PORT], 'big')) != port_no)
        self._revalidate_to(vlan, mac)

    def _revalidate_to(self, vlan, mac):
        revalidate(self.dp, self.is_stale,
                   lambda flow: flow.key[ETH_DST] == mac and key_vlan(flow.key) == vlan)

    def port_changed(self, port_no):
        """A port went up, down, or away: forget its MACs and re-translate all."""
        self.macs.flush_port(port_no)
        revalidate(self.dp, self.is_stale)

    def flush(self):
        """fdb/flush: forget every MAC and every megaflow built on them."""
        self.macs.flush()
        revalidate(self.dp, self.is_stale)

    def run_periodic(self, now):
        """Refresh MACs of active flows, then age out the rest."""
        for flow in self.dp.flow_dump():
            # Only megaflows NORMAL made are learning evidence: they match
            # in_port, eth_src and the VLAN exactly (an OpenFlow megaflow may
            # have wildcarded them, and did not ask to learn).
            if flow.used > self.last_pass and self.went_through_normal(flow):
                self.learn(flow.key, now)
        self.last_pass = now
        for vlan, mac in self.macs.expire(now):
            self._revalidate_to(vlan, mac)
