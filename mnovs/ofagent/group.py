"""OpenFlow groups: the group table, group_mod, and the choice of buckets.

A group is a list of buckets, each an action list, run by a `group` action.
Its type says which buckets run (OF1.3 5.6.1):

    ALL            every bucket, each on its own copy of the packet (flood,
                   multicast);
    SELECT         one live bucket with a non-zero weight, chosen by a hash of
                   the flow, in proportion to the weights (ECMP); if every
                   weight is 0, the live buckets weigh the same (OVS, too,
                   forwards then);
    INDIRECT       the single bucket (a shared next hop);
    FAST_FAILOVER  the first live bucket.

A bucket is live when its watch_port is (the port exists, is up, not
administratively down, link not down) and its watch_group is (it has a live
bucket); OFPP_ANY / OFPG_ANY watch nothing.  Liveness reads port state, not
the packet, so it adds nothing to a megaflow mask; a port change must be
followed by a revalidation of every megaflow (the agent's job, as for NORMAL).

The SELECT hash reads eth_src/dst, eth_type, nw_src/dst, ipv6_src/dst,
nw_proto and tp_src/dst of the (possibly rewritten) flow: choose() reports
exactly those bits as consulted, unless a single bucket is eligible, in which
case no hash is needed.  The hash is CRC32, stable across processes.

group_mod checks as OVS does: weights only in SELECT groups and watches
not in ALL/INDIRECT (INVALID_GROUP, WATCH_UNSUPPORTED), a FAST_FAILOVER
bucket must watch something (INVALID_GROUP), an INDIRECT group has exactly
one bucket.  Chaining (a bucket's `group` action) is supported; a chain that
reaches the group itself is a LOOP, and a group another group forwards to
cannot be deleted (CHAINED_GROUP).  Deleting a group deletes the rules that
use it (OF1.3 6.5): group_mod returns them with OFPRR_GROUP_DELETE.
"""

import zlib

from mnovs.dp.flow import KEY_LEN
from mnovs.ofagent.match import fields_bits
from mnovs.openflow.ofp import (
    OFPET_GROUP_MOD_FAILED, OFPG_ALL, OFPG_ANY, OFPG_MAX, OFPGC_ADD, OFPGC_DELETE,
    OFPGC_MODIFY, OFPGMFC_BAD_COMMAND, OFPGMFC_BAD_TYPE, OFPGMFC_BAD_WATCH,
    OFPGMFC_CHAINED_GROUP, OFPGMFC_GROUP_EXISTS, OFPGMFC_INVALID_GROUP, OFPGMFC_LOOP,
    OFPGMFC_UNKNOWN_GROUP, OFPGMFC_WATCH_UNSUPPORTED, OFPGT_ALL, OFPGT_FF,
    OFPGT_INDIRECT, OFPGT_SELECT, OFPP_ANY, OFPP_MAX, OFPPC_PORT_DOWN, OFPPS_LINK_DOWN,
    OFPError)
from mnovs.ofagent.table import check_actions

HASH_BITS = fields_bits(('eth_src', 'eth_dst', 'eth_type', 'nw_src', 'nw_dst', 'ipv6_src',
                         'ipv6_dst', 'nw_proto', 'tp_src', 'tp_dst'))
MAX_DEPTH = 32                  # watch_group chains deeper than this are dead


def port_is_live(port):
    """True for a port that exists, is up, and is not disabled."""
    return (port is not None and port.up and not port.config & OFPPC_PORT_DOWN
            and not port.state & OFPPS_LINK_DOWN)


class Group:
    """One group: its buckets (codec Bucket objects) and counters.

    bucket_counts[i] is [packet_count, byte_count] of bucket i.
    """

    __slots__ = ('group_id', 'type', 'buckets', 'refs', 'bucket_counts',
                 'packet_count', 'byte_count', 'created')

    def __init__(self, group_id, type, buckets, now):
        self.group_id = group_id
        self.type = type
        self.buckets = tuple(buckets)
        self.refs = frozenset(a[1] for b in self.buckets for a in b.actions if a[0] == 'group')
        self.bucket_counts = [[0, 0] for _ in self.buckets]
        self.packet_count = self.byte_count = 0
        self.created = now


class GroupTable:
    """The groups of one switch, by group id."""

    def __init__(self):
        self.groups = {}

    def __contains__(self, group_id):
        return group_id in self.groups

    def __len__(self):
        return len(self.groups)

    def __iter__(self):
        """Groups in id order."""
        return iter(sorted(self.groups.values(), key=lambda g: g.group_id))

    def get(self, group_id):
        return self.groups.get(group_id)

    def group_mod(self, gm, pipeline, now):
        """Apply a GroupMod (codec.GroupMod or anything with its fields).

        Args:
            gm: command, type, group_id, buckets.
            pipeline: the table.Pipeline whose rules may use the group.
            now: monotonic seconds (group duration).
        Returns:
            (removed, changed): rules deleted with their group, as
            [(rule, OFPRR_GROUP_DELETE)]; whether translations may differ.
        Raises:
            OFPError(OFPET_GROUP_MOD_FAILED or OFPET_BAD_ACTION, ...).
        """
        if gm.command == OFPGC_DELETE:
            return self._delete(gm.group_id, pipeline)
        if gm.command not in (OFPGC_ADD, OFPGC_MODIFY):
            raise _failed(OFPGMFC_BAD_COMMAND)
        if gm.group_id > OFPG_MAX:
            raise _failed(OFPGMFC_INVALID_GROUP)
        old = self.groups.get(gm.group_id)
        if gm.command == OFPGC_ADD and old is not None:
            raise _failed(OFPGMFC_GROUP_EXISTS)
        if gm.command == OFPGC_MODIFY and old is None:
            raise _failed(OFPGMFC_UNKNOWN_GROUP)
        group = Group(gm.group_id, gm.type, gm.buckets, now)
        self._check(group)
        if old is not None:
            group.packet_count, group.byte_count = old.packet_count, old.byte_count
            group.created = old.created
        self.groups[group.group_id] = group
        return [], old is not None         # no rule can use a group just added

    def _check(self, group):
        if group.type not in (OFPGT_ALL, OFPGT_SELECT, OFPGT_INDIRECT, OFPGT_FF):
            raise _failed(OFPGMFC_BAD_TYPE)
        if group.type == OFPGT_INDIRECT and len(group.buckets) != 1:
            raise _failed(OFPGMFC_INVALID_GROUP)
        if self._reaches(group.refs, group.group_id):
            raise _failed(OFPGMFC_LOOP)
        for bucket in group.buckets:
            watched = bucket.watch_port != OFPP_ANY or bucket.watch_group != OFPG_ANY
            if bucket.weight and group.type != OFPGT_SELECT:
                raise _failed(OFPGMFC_INVALID_GROUP)
            if watched and group.type in (OFPGT_ALL, OFPGT_INDIRECT):
                raise _failed(OFPGMFC_WATCH_UNSUPPORTED)
            if not watched and group.type == OFPGT_FF:
                raise _failed(OFPGMFC_INVALID_GROUP)
            if bucket.watch_port != OFPP_ANY and not 0 < bucket.watch_port <= OFPP_MAX:
                raise _failed(OFPGMFC_BAD_WATCH)
            if bucket.watch_group != OFPG_ANY and (bucket.watch_group == group.group_id
                                                   or bucket.watch_group not in self.groups):
                raise _failed(OFPGMFC_BAD_WATCH)
            check_actions(bucket.actions, self)

    def _reaches(self, group_ids, target):
        """True if a chain of group actions from group_ids leads to target."""
        seen, todo = set(), list(group_ids)
        while todo:
            group_id = todo.pop()
            if group_id == target:
                return True
            if group_id not in seen and group_id in self.groups:
                seen.add(group_id)
                todo.extend(self.groups[group_id].refs)
        return False

    def _delete(self, group_id, pipeline):
        if group_id == OFPG_ALL:
            doomed = list(self.groups)
        elif group_id in self.groups:
            if any(group_id in g.refs for g in self.groups.values() if g.group_id != group_id):
                raise _failed(OFPGMFC_CHAINED_GROUP)
            doomed = [group_id]
        else:
            return [], False
        for doomed_id in doomed:
            del self.groups[doomed_id]
        return pipeline.delete_group_rules(doomed), True

    # --- translation -----------------------------------------------------------

    def choose(self, group, flow, ports):
        """Pick the buckets a packet takes through `group`.

        Args:
            group: a Group.
            flow: the (possibly rewritten) flow key as an int.
            ports: port_no -> port (with .up, .config, .state).
        Returns:
            (bucket indexes in order, flow-key bits the choice read).
        """
        if group.type == OFPGT_ALL:
            return range(len(group.buckets)), 0
        if group.type == OFPGT_INDIRECT:
            return (0,), 0
        if group.type == OFPGT_FF:
            for index, bucket in enumerate(group.buckets):
                if self.bucket_is_live(bucket, ports):
                    return (index,), 0
            return (), 0
        live = [(index, bucket.weight) for index, bucket in enumerate(group.buckets)
                if self.bucket_is_live(bucket, ports)]
        eligible = [(index, weight) for index, weight in live if weight] or \
            [(index, 1) for index, _ in live]
        if len(eligible) <= 1:
            return tuple(index for index, _ in eligible), 0
        point = zlib.crc32((flow & HASH_BITS).to_bytes(KEY_LEN, 'big'))
        point %= sum(weight for _, weight in eligible)
        for index, weight in eligible:
            if point < weight:
                return (index,), HASH_BITS
            point -= weight
        raise AssertionError('unreachable: point < total weight')

    def bucket_is_live(self, bucket, ports, depth=0):
        if bucket.watch_port != OFPP_ANY and not port_is_live(ports.get(bucket.watch_port)):
            return False
        return bucket.watch_group == OFPG_ANY or self.is_live(bucket.watch_group, ports, depth + 1)

    def is_live(self, group_id, ports, depth=0):
        """True if group_id exists and has a live bucket."""
        group = self.groups.get(group_id)
        if group is None or depth > MAX_DEPTH:
            return False
        return any(self.bucket_is_live(b, ports, depth) for b in group.buckets)


def _failed(code):
    return OFPError(OFPET_GROUP_MOD_FAILED, code)
