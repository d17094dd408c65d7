"""ofproto/trace: one flow through the OpenFlow pipeline, and why its megaflow is what it is.

`mnovs-appctl -t s1 ofproto/trace FLOW` prints what OVS's ofproto/trace prints
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

The ovs-ofctl syntax it reads and writes (flows, matches) is in
ofctl_syntax.py.

Nothing here changes the switch: a trace learns no MAC and credits no rule.
"""

from mnovs.dp.flow import KEY_LEN
from mnovs.dp.odp_util import format_actions
from mnovs.ofagent.match import KEY_ONES, METADATA_SHIFT, field_shift
from mnovs.ofagent.normal import is_reserved_group, key_vlan
from mnovs.ofagent.ofctl_syntax import (
    ADDRESS_TEXT, ETH_DST, ETH_SRC, IN_PORT_BITS, VLAN_NAMES, field_items, format_flow,
    format_match,
    parse_flow)
from mnovs.openflow.ofp import (
    OFPCML_NO_BUFFER, OFPGT_ALL, OFPGT_FF, OFPGT_INDIRECT, OFPGT_SELECT, OFPP_ALL,
    OFPP_CONTROLLER, OFPP_FLOOD, OFPP_IN_PORT, OFPP_LOCAL, OFPP_MAX, OFPP_NORMAL, OFPP_TABLE,
    OFPR_ACTION, OFPR_INVALID_TTL, OFPR_NO_MATCH)
from mnovs.ofagent.xlate import (
    RECIRC_ID_BITS, RECIRC_ID_SHIFT, TUNNEL_RECEIVE_BITS, decode_userdata, xlate_fail_open,
    xlate_trace)


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
RECIRC_REASON = 'always exact: each pass of a recirculated packet has its own megaflows'
MAX_RECIRC_PASSES = 6           # as the datapath's MAX_RECIRC_DEPTH
TUNNEL_REASON = ('received on tunnel port %s: the datapath chose the port by the tunnel '
                 'header, and outputs may copy it')
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
        text = ADDRESS_TEXT[kind](action[2]) if kind else str(action[2])
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
    """A rule's match: pipeline metadata first, then the key's fields."""
    parts = []
    metadata = rule.mask >> METADATA_SHIFT
    if metadata:
        value = rule.value >> METADATA_SHIFT
        parts.append(f'metadata={value:#x}' + ('' if metadata == (1 << 64) - 1
                                               else f'/{metadata:#x}'))
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
        return '\n'.join(story.lines)
    story.tell()
    lines = story.lines
    for _ in range(MAX_RECIRC_PASSES):
        if not story.actions or story.actions[-1][0] != 'recirc':
            break
        recirc_id = story.actions[-1][1]
        # The datapath re-parses the packet as the first pass left it; a flow
        # trace knows the headers the pipeline knew (after a pop_mpls the
        # inner ones are not given, and are 0).
        flow = story.final & ~RECIRC_ID_BITS | recirc_id << RECIRC_ID_SHIFT
        story = _Story(ofproto, flow.to_bytes(KEY_LEN, 'big'))
        story.tell()
        title = f'Recirculation {recirc_id:#x}'
        lines += ['', '', title, '=' * len(title)] + story.lines
    return '\n'.join(lines)


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
        self.reasons = [(IN_PORT_BITS, 0, 0, IN_PORT_REASON),    # (new, again, shadowed, why)
                        (RECIRC_ID_BITS, 0, 0, RECIRC_REASON)]
        self.actions = ()           # the datapath actions, when told
        port = ofproto.ports.get(self.in_port)
        if port is not None and port.tunnel is not None:
            self.reasons.append((TUNNEL_RECEIVE_BITS, 0, 0, TUNNEL_REASON % port.name))
        self.rule = None            # the rule whose instructions are being told
        self.stopped = False
        self.in_action_set = False
        self.buckets = []           # (group id, bucket index) per depth
        self.action = None          # the last action event
        self.final = self.flow      # the working key at the end

    # --- the steps ------------------------------------------------------------

    def tell(self):
        result, events = xlate_trace(self.ofproto.ctx, self.key)
        odp = next(event for event in reversed(events) if event.kind == 'end').data[0]
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
        self.actions = result.actions
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

    def _freeze(self, event, after, odp):
        recirc_id, state = event.data
        where = (f'table {state.table_id}' if state.table_id is not None else
                 'the rest of its actions: ' + ','.join(map(format_action, state.actions)))
        self._outcome(event.depth, f'freeze: the key does not show what the next step reads '
                                   f'(after pop_mpls); recirculate as {recirc_id:#x}, to resume '
                                   f'at {where}')
        self._odp(event.depth, odp)

    def _thaw(self, event, after, odp):
        self.lines.append(f' Resuming recirc_id {event.data[0]:#x}: the re-parsed packet '
                          'goes on where the last pass froze')

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
        src_text, dst_text = ADDRESS_TEXT['mac'](src), ADDRESS_TEXT['mac'](dst)
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
        result = xlate_fail_open(self.ofproto.ctx, self.key)
        actions, mask = result.actions, result.mask
        self.lines.append(' Fail mode standalone and no controller: NORMAL forwards; the '
                          'OpenFlow tables are not consulted.')
        self._say(0, 'NORMAL')
        for line in self._normal(self.flow, actions):
            self._outcome(0, line)
        self._odp(0, actions)
        new = int.from_bytes(mask, 'big') & ~(IN_PORT_BITS | RECIRC_ID_BITS | TUNNEL_RECEIVE_BITS)
        self.reasons.append((new, 0, 0, NORMAL_REASON))
        self._ending(actions, mask, actions, True)

    # --- the reasons ----------------------------------------------------------

    def _read(self, step, why, new, again, shadowed):
        if why == 'lookup':
            for bits, text in self._lookup_reasons(step, new | again | shadowed):
                self.reasons.append((new & bits, again & bits, shadowed & bits, text))
        elif why == 'sflow':
            self.reasons.append((new, again, shadowed,
                                 "sFlow: the sample action's cookie holds the output VLAN"))
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
        items.get(name, 'untagged' if name in VLAN_NAMES else f'{name}=0') for name in names))


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
