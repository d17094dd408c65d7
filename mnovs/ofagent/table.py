"""OpenFlow rules and flow tables: flow_mod semantics and classification.

A *rule* is an OpenFlow flow entry (a *megaflow* is a datapath entry; one
word per concept).  The Pipeline holds 254 FlowTables (ids 0..253, the
n_tables OVS reports) and implements what the OF1.3 spec asks of them:

- flow_mod: ADD (an identical match and priority is replaced, counters kept
  unless OFPFF_RESET_COUNTS; CHECK_OVERLAP), MODIFY / MODIFY_STRICT (new
  instructions for the selected rules; cookie, timeouts and flags stay, as
  the spec says; nothing is added if none is selected), DELETE /
  DELETE_STRICT (out_port and out_group filters; OFPTT_ALL).  All but ADD
  select with the cookie/cookie_mask filter.  Non-strict selection takes
  every rule at least as specific as the request's match (match.covers);
  strict takes the one with the identical match and priority.
- expire(now): hard and idle timeouts.  Idle time counts from last_used,
  which the agent refreshes from datapath flow statistics.
- lookup(table_id, ext_key): the highest-priority matching rule, and the
  bits of the key the search consulted (for the megaflow mask).

Each of these returns what the caller must do (rules removed, with their
OFPRR_* reason, for FLOW_REMOVED; whether anything changed, for
revalidation); nothing here sends messages.

Classification, as OVS's classifier (lib/classifier.h), in miniature:
rules are grouped into *subtables* by mask; a subtable is a dict from masked
value to its rules, best first.  A lookup visits subtables in decreasing
order of their best priority and stops as soon as no remaining subtable can
beat the rule found, so lower-priority subtables are not consulted and add
nothing to the megaflow mask.  A subtable is probed in *stages*: pipeline
state and packet metadata (metadata, tunnel), then L2 (with in_port, MPLS
and PBB), L3, L4.  Each stage keeps the set of its rules' values under the
stage's part of the mask; a probe that finds no rule at some stage has read
only the stages up to that one, so only their bits are un-wildcarded.  A TCP
port rule thus adds nw_proto, not tp_dst, to the megaflow of a UDP packet.
Cost per lookup: one dict probe per stage of each visited subtable.

Ties between equal priorities: the earlier-visited subtable wins, and within
one subtable the older rule: deterministic for a given history.

Keys are extended keys (match.py): metadata | flow key, as ints.
"""

import itertools

from mnovs.ofagent.match import (
    PIPELINE_BITS, SET_FIELDS, compile_match, covers, fields_bits, overlaps)
from mnovs.openflow.ofp import (
    OFPBAC_BAD_OUT_GROUP, OFPBAC_BAD_OUT_PORT, OFPBAC_BAD_SET_ARGUMENT,
    OFPBAC_BAD_SET_TYPE, OFPBAC_BAD_TYPE, OFPBIC_BAD_TABLE_ID, OFPBIC_UNKNOWN_INST,
    OFPBIC_UNSUP_INST, OFPET_BAD_ACTION, OFPET_BAD_INSTRUCTION, OFPET_FLOW_MOD_FAILED,
    OFPET_METER_MOD_FAILED, OFPFC_ADD, OFPFC_DELETE, OFPFC_DELETE_STRICT, OFPFC_MODIFY,
    OFPFC_MODIFY_STRICT, OFPFF_ALL, OFPFF_CHECK_OVERLAP, OFPFF_RESET_COUNTS,
    OFPFMFC_BAD_COMMAND, OFPFMFC_BAD_FLAGS, OFPFMFC_BAD_TABLE_ID, OFPFMFC_OVERLAP,
    OFPFMFC_TABLE_FULL, OFPG_ANY, OFPMMFC_UNKNOWN_METER, OFPP_ANY, OFPP_TABLE,
    OFPRR_DELETE, OFPRR_GROUP_DELETE, OFPRR_HARD_TIMEOUT, OFPRR_IDLE_TIMEOUT,
    OFPTT_ALL, OFPError)

N_TABLES = 254
DEFAULT_MAX_RULES = 1_000_000

# Instructions run in this order whatever their order in the rule (OF1.3 5.9).
_INSTRUCTION_ORDER = {'meter': 0, 'apply_actions': 1, 'clear_actions': 2,
                      'write_actions': 3, 'write_metadata': 4, 'goto_table': 5}
_ACTION_LISTS = ('apply_actions', 'write_actions')
# Actions xlate can perform: every OF1.3 action.
SUPPORTED_ACTIONS = frozenset((
    'output', 'copy_ttl_out', 'copy_ttl_in', 'set_mpls_ttl', 'dec_mpls_ttl', 'push_vlan',
    'pop_vlan', 'push_mpls', 'pop_mpls', 'set_queue', 'group', 'set_nw_ttl', 'dec_nw_ttl',
    'set_field', 'push_pbb', 'pop_pbb'))

# Lookup stages: cumulative masks over the extended key (see module doc).
_L2 = ('in_port', 'eth_dst', 'eth_src', 'eth_type', 'vlan_tpid', 'vlan_tci', 'mpls_lse',
       'pbb_itag')
_L3 = ('nw_src', 'nw_dst', 'ipv6_src', 'ipv6_dst', 'ipv6_label', 'nw_proto', 'nw_tos',
       'nw_ttl', 'nw_frag', 'arp_sha', 'arp_tha')
_METADATA = ('recirc_id', 'dp_hash', 'tun_id', 'tun_src', 'tun_dst', 'tun_tos', 'tun_ttl',
             'tun_flags')
_STAGES = (PIPELINE_BITS | fields_bits(_METADATA),
           PIPELINE_BITS | fields_bits(_METADATA + _L2),
           PIPELINE_BITS | fields_bits(_METADATA + _L2 + _L3))
_SEQUENCE = itertools.count()


class Rule:
    """One OpenFlow flow entry.

    `value`/`mask` are its compiled match (match.py); `program` its
    instructions in execution order; `groups` and `out_ports` the group ids
    and output ports its actions name (for ref counts and out_* filters).
    Counters and last_used are updated by whoever pushes datapath stats.
    """

    __slots__ = ('table_id', 'priority', 'match', 'value', 'mask', 'instructions',
                 'program', 'groups', 'out_ports', 'cookie', 'flags', 'idle_timeout',
                 'hard_timeout', 'created', 'last_used', 'packet_count', 'byte_count',
                 'seq')

    def __init__(self, table_id, priority, match, compiled, instructions, cookie=0,
                 flags=0, idle_timeout=0, hard_timeout=0, now=0.0):
        self.table_id = table_id
        self.priority = priority
        self.match = match
        self.value, self.mask = compiled
        self.set_instructions(instructions)
        self.cookie = cookie
        self.flags = flags
        self.idle_timeout = idle_timeout
        self.hard_timeout = hard_timeout
        self.created = self.last_used = now
        self.packet_count = self.byte_count = 0
        self.seq = next(_SEQUENCE)

    def set_instructions(self, instructions):
        self.instructions = instructions
        self.program = tuple(sorted(instructions, key=lambda i: _INSTRUCTION_ORDER[i[0]]))
        actions = [a for i in instructions if i[0] in _ACTION_LISTS for a in i[1]]
        self.groups = frozenset(a[1] for a in actions if a[0] == 'group')
        self.out_ports = frozenset(a[1] for a in actions if a[0] == 'output')

    @property
    def is_table_miss(self):
        """Priority 0 and an empty match: OF1.3's table-miss flow entry."""
        return self.priority == 0 and not self.mask

    def __repr__(self):
        return f'<Rule table={self.table_id} priority={self.priority} match={self.match}>'


def _rank(rule):
    return -rule.priority, rule.seq


class _Subtable:
    """The rules of one table that share a mask."""

    __slots__ = ('mask', 'stages', 'rules', 'max_priority')

    def __init__(self, mask):
        self.mask = mask
        self.stages = []                # (stage mask, {masked value: rule count})
        previous = 0
        for cumulative in _STAGES:
            stage = mask & cumulative
            if stage and stage != previous and stage != mask:
                self.stages.append((stage, {}))
                previous = stage
        self.rules = {}                 # masked value -> rules, best first
        self.max_priority = -1

    def insert(self, rule):
        """Add rule; return True if max_priority changed."""
        for stage, counts in self.stages:
            value = rule.value & stage
            counts[value] = counts.get(value, 0) + 1
        same = self.rules.setdefault(rule.value, [])
        same.append(rule)
        same.sort(key=_rank)
        if rule.priority > self.max_priority:
            self.max_priority = rule.priority
            return True
        return False

    def remove(self, rule):
        """Remove rule; return True if max_priority changed."""
        for stage, counts in self.stages:
            value = rule.value & stage
            counts[value] -= 1
            if not counts[value]:
                del counts[value]
        same = self.rules[rule.value]
        same.remove(rule)
        if not same:
            del self.rules[rule.value]
        if rule.priority != self.max_priority:
            return False
        self.max_priority = max((best[0].priority for best in self.rules.values()), default=-1)
        return rule.priority != self.max_priority


class FlowTable:
    """One OpenFlow table: its rules, indexed for lookup and strict selection.

    lookup_count and matched_count (OFPMP_TABLE) count packets, not calls of
    lookup(): they are credited with the packets of each translation that
    looked into the table (xlate.credit_stats), when datapath stats are
    pushed, so that the packets cached megaflows handle count too.
    """

    __slots__ = ('table_id', 'max_rules', 'rules', 'subtables', 'order', 'lookup_count',
                 'matched_count')

    def __init__(self, table_id, max_rules=DEFAULT_MAX_RULES):
        self.table_id = table_id
        self.max_rules = max_rules
        self.rules = {}                 # (value, mask, priority) -> Rule
        self.subtables = {}             # mask -> _Subtable
        self.order = []                 # subtables, best max_priority first
        self.lookup_count = self.matched_count = 0

    def __len__(self):
        return len(self.rules)

    def insert(self, rule):
        self.rules[rule.value, rule.mask, rule.priority] = rule
        subtable = self.subtables.get(rule.mask)
        if subtable is None:
            subtable = self.subtables[rule.mask] = _Subtable(rule.mask)
        if subtable.insert(rule):
            self._sort()

    def remove(self, rule):
        del self.rules[rule.value, rule.mask, rule.priority]
        subtable = self.subtables[rule.mask]
        if not subtable.remove(rule) and subtable.rules:
            return
        if not subtable.rules:
            del self.subtables[rule.mask]
        self._sort()

    def _sort(self):
        self.order = sorted(self.subtables.values(), key=lambda s: -s.max_priority)

    def lookup(self, ext):
        """Return (best rule or None, extended-key bits the search consulted)."""
        best = None
        consulted = 0
        for subtable in self.order:
            if best is not None and subtable.max_priority <= best.priority:
                break
            for stage, counts in subtable.stages:
                if ext & stage not in counts:
                    consulted |= stage
                    break
            else:
                consulted |= subtable.mask
                same = subtable.rules.get(ext & subtable.mask)
                if same is not None and (best is None or same[0].priority > best.priority):
                    best = same[0]
        return best, consulted


class Pipeline:
    """The flow tables of one switch and the flow_mod operations on them.

    Args:
        groups: the group table (group.GroupTable), for BAD_OUT_GROUP checks;
            None accepts no group action.
        meter_exists: callable(meter_id) -> bool; None accepts every meter.
        n_tables: number of tables.
        max_rules: default per-table limit (FlowTable.max_rules to change one).
    """

    def __init__(self, groups=None, meter_exists=None, n_tables=N_TABLES,
                 max_rules=DEFAULT_MAX_RULES):
        self.tables = [FlowTable(table_id, max_rules) for table_id in range(n_tables)]
        self.groups = groups
        self.meter_exists = meter_exists
        self.by_group = {}              # group id -> set of rules that use it
        self.timed = set()              # rules with a timeout

    def __iter__(self):
        """Every rule, table by table, best first."""
        for table in self.tables:
            yield from sorted(table.rules.values(), key=_rank)

    def lookup(self, table_id, ext):
        return self.tables[table_id].lookup(ext)

    # --- flow_mod ----------------------------------------------------------

    def flow_mod(self, fm, now):
        """Apply a FlowMod (codec.FlowMod or anything with its fields).

        Returns:
            (removed, changed): removed is a list of (rule, OFPRR_*) for
            FLOW_REMOVED; changed says whether translations may differ now.
        Raises:
            OFPError: the spec's error for a bad request; nothing changed.
        """
        if fm.flags & ~OFPFF_ALL:
            raise OFPError(OFPET_FLOW_MOD_FAILED, OFPFMFC_BAD_FLAGS)
        command = fm.command
        if command == OFPFC_ADD:
            return self._add(fm, now)
        if command in (OFPFC_MODIFY, OFPFC_MODIFY_STRICT):
            return self._modify(fm, command == OFPFC_MODIFY_STRICT)
        if command in (OFPFC_DELETE, OFPFC_DELETE_STRICT):
            removed = self.select(fm.table_id, fm.match, fm.out_port, fm.out_group,
                                  fm.cookie, fm.cookie_mask,
                                  fm.priority if command == OFPFC_DELETE_STRICT else None)
            for rule in removed:
                self._remove(rule)
            return [(rule, OFPRR_DELETE) for rule in removed], bool(removed)
        raise OFPError(OFPET_FLOW_MOD_FAILED, OFPFMFC_BAD_COMMAND)

    def replaces(self, fm):
        """True if FlowMod `fm`, an ADD, would replace a rule (same table, match, priority).

        Raises:
            OFPError: the match is invalid (as flow_mod would).
        """
        if fm.table_id >= len(self.tables):
            return False                # flow_mod answers BAD_TABLE_ID
        key = compile_match(fm.match) + (fm.priority,)
        return key in self.tables[fm.table_id].rules

    def _add(self, fm, now):
        if fm.table_id >= len(self.tables):
            raise OFPError(OFPET_FLOW_MOD_FAILED, OFPFMFC_BAD_TABLE_ID)
        table = self.tables[fm.table_id]
        compiled = compile_match(fm.match)
        self.check_instructions(fm.instructions, fm.table_id)
        old = table.rules.get(compiled + (fm.priority,))
        if fm.flags & OFPFF_CHECK_OVERLAP:
            for rule in table.rules.values():
                if rule.priority == fm.priority and overlaps(compiled, (rule.value, rule.mask)):
                    raise OFPError(OFPET_FLOW_MOD_FAILED, OFPFMFC_OVERLAP)
        if old is None and len(table) >= table.max_rules:
            raise OFPError(OFPET_FLOW_MOD_FAILED, OFPFMFC_TABLE_FULL)
        rule = Rule(fm.table_id, fm.priority, fm.match, compiled, fm.instructions,
                    fm.cookie, fm.flags, fm.idle_timeout, fm.hard_timeout, now)
        if old is not None:
            if not fm.flags & OFPFF_RESET_COUNTS:
                rule.packet_count, rule.byte_count = old.packet_count, old.byte_count
            self._remove(old)
        self._insert(rule)
        return [], True

    def _modify(self, fm, strict):
        rules = self.select(fm.table_id, fm.match, OFPP_ANY, OFPG_ANY, fm.cookie,
                            fm.cookie_mask, fm.priority if strict else None)
        table_ids = {rule.table_id for rule in rules}
        if fm.table_id != OFPTT_ALL:
            table_ids.add(fm.table_id)
        for table_id in sorted(table_ids):
            self.check_instructions(fm.instructions, table_id)
        for rule in rules:
            self._unlink_groups(rule)
            rule.set_instructions(fm.instructions)
            self._link_groups(rule)
            if fm.flags & OFPFF_RESET_COUNTS:
                rule.packet_count = rule.byte_count = 0
        return [], bool(rules)

    def select(self, table_id, match, out_port=OFPP_ANY, out_group=OFPG_ANY,
               cookie=0, cookie_mask=0, priority=None):
        """The rules a modify, delete or stats request names, best first.

        Args:
            table_id: a table, or OFPTT_ALL.
            match: OXM match dict; non-strict unless priority is given.
            out_port, out_group: keep rules that output there (ANY: all).
            cookie, cookie_mask: keep rules whose cookie agrees under the mask.
            priority: None for non-strict; else strict (identical match and
                priority).
        Raises:
            OFPError: FLOW_MOD_FAILED/BAD_TABLE_ID, or BAD_MATCH.
        """
        if table_id == OFPTT_ALL:
            tables = self.tables
        elif table_id < len(self.tables):
            tables = (self.tables[table_id],)
        else:
            raise OFPError(OFPET_FLOW_MOD_FAILED, OFPFMFC_BAD_TABLE_ID)
        compiled = compile_match(match)
        cookie &= cookie_mask
        # The usual request (dump-flows, dump-aggregate, del-flows) names
        # no match, cookie, port or group: every rule, with no test each.
        everything = not compiled[1] and not cookie_mask and out_port == OFPP_ANY \
            and out_group == OFPG_ANY
        selected = []
        for table in tables:
            if priority is not None:
                rule = table.rules.get(compiled + (priority,))
                candidates = () if rule is None else (rule,)
            elif everything:
                selected.extend(table.rules.values())
                continue
            else:
                candidates = (rule for rule in table.rules.values()
                              if covers(compiled, (rule.value, rule.mask)))
            selected.extend(
                rule for rule in candidates
                if rule.cookie & cookie_mask == cookie
                and (out_port == OFPP_ANY or out_port in rule.out_ports)
                and (out_group == OFPG_ANY or out_group in rule.groups))
        selected.sort(key=lambda rule: (rule.table_id, -rule.priority, rule.seq))
        return selected

    # --- validation --------------------------------------------------------

    def check_instructions(self, instructions, table_id):
        """Raise OFPError unless a rule in table_id may carry `instructions`."""
        seen = set()
        for instruction in instructions:
            name = instruction[0]
            if name not in _INSTRUCTION_ORDER:
                raise OFPError(OFPET_BAD_INSTRUCTION, OFPBIC_UNKNOWN_INST)
            if name in seen:
                raise OFPError(OFPET_BAD_INSTRUCTION, OFPBIC_UNSUP_INST)
            seen.add(name)
            if name == 'goto_table' and not table_id < instruction[1] < len(self.tables):
                raise OFPError(OFPET_BAD_INSTRUCTION, OFPBIC_BAD_TABLE_ID)
            if name == 'meter' and self.meter_exists is not None \
                    and not self.meter_exists(instruction[1]):
                raise OFPError(OFPET_METER_MOD_FAILED, OFPMMFC_UNKNOWN_METER)
            if name in _ACTION_LISTS:
                check_actions(instruction[1], self.groups)

    # --- removal -----------------------------------------------------------

    def expire(self, now):
        """Remove the rules whose hard or idle timeout has passed.

        Returns:
            [(rule, OFPRR_HARD_TIMEOUT or OFPRR_IDLE_TIMEOUT)].
        """
        removed = []
        for rule in self.timed:
            if rule.hard_timeout and now - rule.created >= rule.hard_timeout:
                removed.append((rule, OFPRR_HARD_TIMEOUT))
            elif rule.idle_timeout and now - rule.last_used >= rule.idle_timeout:
                removed.append((rule, OFPRR_IDLE_TIMEOUT))
        removed.sort(key=lambda item: item[0].seq)
        for rule, _ in removed:
            self._remove(rule)
        return removed

    def delete_group_rules(self, group_ids):
        """Remove the rules that use any of group_ids (their group is gone).

        Returns:
            [(rule, OFPRR_GROUP_DELETE)].
        """
        rules = set()
        for group_id in group_ids:
            rules.update(self.by_group.get(group_id, ()))
        removed = sorted(rules, key=lambda rule: rule.seq)
        for rule in removed:
            self._remove(rule)
        return [(rule, OFPRR_GROUP_DELETE) for rule in removed]

    def delete_meter_rules(self, meter_id):
        """Remove the rules whose meter instruction names meter_id (it is gone).

        Returns:
            [(rule, OFPRR_DELETE)]: OF1.3 has no removal reason of its own
            for this (OF1.4 adds OFPRR_METER_DELETE).
        """
        removed = [rule for rule in self if ('meter', meter_id) in rule.instructions]
        for rule in removed:
            self._remove(rule)
        return [(rule, OFPRR_DELETE) for rule in removed]

    def _insert(self, rule):
        self.tables[rule.table_id].insert(rule)
        self._link_groups(rule)
        if rule.idle_timeout or rule.hard_timeout:
            self.timed.add(rule)

    def _remove(self, rule):
        self.tables[rule.table_id].remove(rule)
        self._unlink_groups(rule)
        self.timed.discard(rule)

    def _link_groups(self, rule):
        for group_id in rule.groups:
            self.by_group.setdefault(group_id, set()).add(rule)

    def _unlink_groups(self, rule):
        for group_id in rule.groups:
            users = self.by_group[group_id]
            users.discard(rule)
            if not users:
                del self.by_group[group_id]


def check_actions(actions, groups, packet_out=False):
    """Raise OFPError unless xlate can perform `actions` on this switch.

    What the codec already checked (port ranges, push ethertypes, set_field
    widths) is not checked again; this adds what needs the switch's state
    or abilities.

    Args:
        actions: an action tuple.
        groups: container of existing group ids (or None: none exist).
        packet_out: True for a PACKET_OUT's list, where output:TABLE is valid.
    Raises:
        OFPError(OFPET_BAD_ACTION, BAD_TYPE | BAD_OUT_PORT | BAD_OUT_GROUP |
        BAD_SET_TYPE | BAD_SET_ARGUMENT).
    """
    for action in actions:
        name = action[0]
        if name not in SUPPORTED_ACTIONS:
            raise OFPError(OFPET_BAD_ACTION, OFPBAC_BAD_TYPE)
        if name == 'output' and action[1] == OFPP_TABLE and not packet_out:
            raise OFPError(OFPET_BAD_ACTION, OFPBAC_BAD_OUT_PORT)
        if name == 'group' and (groups is None or action[1] not in groups):
            raise OFPError(OFPET_BAD_ACTION, OFPBAC_BAD_OUT_GROUP)
        if name == 'set_field':
            if action[1] not in SET_FIELDS:
                # eth_type, ip_proto, ipv6_exthdr: match._SETTABLE says why.
                raise OFPError(OFPET_BAD_ACTION, OFPBAC_BAD_SET_TYPE)
            if action[1] == 'arp_op' and action[2] > 0xff:
                raise OFPError(OFPET_BAD_ACTION, OFPBAC_BAD_SET_ARGUMENT)

