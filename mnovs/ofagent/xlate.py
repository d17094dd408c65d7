"""Translation: a flow key through the OpenFlow pipeline to odp actions and a megaflow mask.

This is OVS's ofproto-dpif-xlate in miniature.  xlate(ctx, key) follows one
packet's flow key through the flow tables, groups and actions, and returns
the datapath actions to perform on it (mnovs/dp/actions.py) together with
the mask of every key bit the translation read.  It changes nothing: rule,
table and group counters are credited later, from datapath flow stats
(credit_stats).

THE MASK RULE.  The datapath installs (key & mask, mask) -> actions as a
megaflow and applies it to every packet that agrees with this one on the
mask's bits.  A bit missing from the mask is a forwarding bug: a packet that
differs there may deserve other actions and gets these.  An extra bit costs
speed: packets that could share one megaflow need several, and each first
packet takes an upcall.  So the mask holds exactly what was read:
- in_port and recirc_id, always;
- each table lookup's consulted bits: the stages of the subtables it probed
  (table.py), which include every matched field's prerequisites;
- each prerequisite an action checks (set_field, dec_nw_ttl, push/pop
  MPLS...): eth_type, nw_proto, the VLAN present bit, the later-fragment bit;
- each value an action reads: nw_ttl for dec_nw_ttl, the outer tag for
  push_vlan, IP TTL for push_mpls;
- the SELECT hash fields (group.py) and NORMAL's own mask;
but never a bit the pipeline itself wrote before reading it: after
set_field:eth_dst, a table matching eth_dst reads the rule's value, not the
packet's.  The state is tracked as ints over the flow key:

    flow      the working key: the packet as the pipeline has changed it;
    written   bits whose value the pipeline set (a constant, or a function of
              bits already in the mask); reads of them add nothing;
    dirty     bits changed in `flow` but not yet in the packet;
    wc        the mask being built.

Lazy commit.  set_field only changes `flow` and marks bits dirty.  Before an
output, a push/pop, or a controller action, commit() emits one
('set_masked', field, value, mask) per dirty field, with values from `flow`.
A rewrite thus needs no knowledge of the old value, and costs no mask bit.
Rewrites, pushes and pops left at the end of the list, which no output would
see, are dropped.  A packet-in's buffering is decided when it is sent (in
ofproto.py), not here, so every translation may be cached (`cacheable` is
False only when a group chain is cut short).

Semantics (OF1.3, chapter 5):
- Table 0 first.  A miss without a table-miss rule drops the packet (actions
  already applied stand).  A rule's instructions run in spec order whatever
  their order in the message: meter, apply_actions, clear_actions,
  write_actions, write_metadata, goto_table.  apply_actions act at once on
  the working key (later lookups see the rewrite; metadata likewise).
  write_actions fill the action set, one action per type (set_field: per
  field), executed when the pipeline ends, in the spec's order (copy TTL
  inwards, pops, push MPLS, push PBB, push VLAN, copy TTL outwards, TTL
  decrements, sets, queue, then group, else output).
- meter: ('meter', meter_id) is emitted where the instruction runs, before
  the rule's outputs.
- output to a tunnel port (its datapath port has a TunnelConfig, see
  dp/tunnel.py) is ('set_tunnel', TunnelSpec) then ('output', port), as
  OVS's set(tunnel(...)): the VNI is out_key or, for key=flow, the flow's
  tun_id; the destination is remote_ip or, for remote_ip=flow, the flow's
  tun_dst (none: the output is dropped); tos/ttl=inherit copy the inner IP
  header's. Flow values read count in the mask unless set_field wrote them.
- set_field on tunnel_id, tun_ipv4_src, tun_ipv4_dst changes the packet's
  tunnel metadata, never its bytes: it is used by a later output to a
  tunnel port and emits nothing itself.
- A packet received on a tunnel port matches its tunnel metadata (tun_id,
  addresses, tos, flags) in every megaflow, as OVS's tnl_wc_init: the
  datapath found the port by them, and outputs may copy them.
- output: a physical port unless it is the input port (OFPP_IN_PORT sends
  there), is down, or has NO_FWD; FLOOD and ALL: every such port but the
  input port (FLOOD also skips BLOCKED ones); NORMAL: ctx.normal(key);
  CONTROLLER: ('userspace', userdata), see encode_userdata (reason
  OFPR_NO_MATCH from the table-miss rule, else OFPR_ACTION; none if the
  input port has NO_PACKET_IN); TABLE: only in a packet-out, from table 0;
  LOCAL: the bridge's internal port, like a physical port (its datapath
  port number is OFPP_LOCAL too, see dp/datapath.py LOCAL_PORT).
- An input port with NO_RECV or PORT_DOWN drops everything it receives.
- A bond (bond.py) is one OpenFlow port. A packet from a member has the
  bond's number as in_port for the pipeline (the megaflow matches the
  member: in_port is always exact). An output to the bond is a member
  chosen by its mode; for balance-tcp it is ('hash', basis), ('recirc', id)
  and the second pass (a BondRecirc) outputs to the owner of the packet's
  dp_hash bucket, reading only dp_hash & BOND_MASK. recirc must end the
  actions, so a balance-tcp output followed by others uses the active
  member. A member of a bond running LACP puts eth_type in every megaflow,
  and sends its PDUs to the slow path: ('userspace', LACP_USERDATA).
- Groups (group.py): each bucket acts on its own copy of the packet, as if
  cloned.  The datapath has no clone action, so after a bucket xlate puts
  the packet back: it undoes the bucket's pushes and pops (a pop of each
  pushed tag, a push of each popped one) and marks the fields the bucket
  wrote dirty again with their saved values.  Restoring a value read from
  the packet puts its bits in the mask.
- set_field on a packet without the field (a TCP port on UDP, a VLAN field
  without a tag) does nothing; so do set/dec TTL and pop_mpls on packets
  without IP or MPLS.  dec_nw_ttl / dec_mpls_ttl on TTL <= 1 send the packet
  to the controller with OFPR_INVALID_TTL (the connection layer filters by
  async config) and stop its processing.
- push_vlan copies VID and PCP from the outer tag, or uses 0; push_mpls
  copies the outer label stack entry (bottom-of-stack cleared) or makes
  label 0, TC 0, BoS 1 and TTL from IP (64 if not IP), as OF1.3 5.12.1
  asks.  After push_mpls the key's L3/L4 fields are 0, as a re-parse of the
  packet would give.
- push_pbb (802.1ah) puts a backbone header in front of the frame:
  ('push_pbb', itag), the datapath copying B-DA/B-SA from the frame's own
  addresses; the I-TAG's I-SID is copied from an I-TAG already there (else
  0) and its I-PCP from the VLAN PCP (else 0), as OF1.3 5.12.1 asks.  The
  key then describes the backbone header: eth_type 0x88e7, pbb_itag set, no
  VLAN, no L3/L4.  pop_pbb removes it (nothing on a frame that is not PBB);
  set_field pbb_isid rewrites the I-SID.
- copy_ttl_in/copy_ttl_out on an MPLS packet are datapath actions of the
  same names (the other TTL lives beyond the key: a second label, or the IP
  header under the bottom one); on other packets they do nothing.
- set_queue does nothing (mnovs has no queues).

Recirculation (recirc.py).  The key holds one MPLS label and one PBB
header, so after a pop_mpls or pop_pbb it does not show the headers below.  As OVS does, the translation
then freezes at the first step that would read them (a table lookup, an
action that reads or writes L3/L4 or the next label, a group): it ends the
pass with ('recirc', id), and the datapath parses the packet again and
sends it through its caches with recirc_id=id; the miss of that second pass
thaws the frozen state and goes on.  Every megaflow matches recirc_id, so
each pass has its own.  Not frozen: steps inside group buckets and in the
action set (they see the inner headers as 0).

Known gaps: the key holds one VLAN tag, so after a pop_vlan of a
double-tagged frame the working key says "untagged".  A group bucket (where
nothing freezes) that pops a PBB header and then rewrites
the customer frame leaves that rewrite to the buckets after it (a bucket's
changes are undone from the key, which never held those values; OVS's
datapath would use a clone action).  After copy_ttl_out the key keeps the
top label's old TTL, so a dec_mpls_ttl later in the same translation
decrements that one.  A group chain deeper than MAX_DEPTH is cut short and
the result marked not cacheable.

sFlow.  When the bridge samples (ctx.sflow, an sflow.agent.SflowAgent), every
translation of a received packet starts with the sample action, as OVS's
compose_sflow_action: ('sample', probability, (('userspace', cookie),)).
The cookie is filled in after translation, when the outputs are known (OVS's
fix_sflow_action): the output VLAN, and the sFlow output field: the one
output port's ifindex, 0x80000000 | n for n outputs, 0x40000000 | 256 for
none (dropped). The output VLAN is read, so its bits enter the mask unless
the pipeline wrote them. Packet-outs are not sampled, nor the later passes
of a recirculated packet (it was sampled when it came in).

Tracing.  xlate(ctx, key, trace=[]) appends one line per step to `trace`.
xlate_trace(ctx, key) runs the same code on a _TracedXlate, which also
records TraceEvents: each table visited, action run, group choice and
outcome, and every read of key bits with its reason (a table lookup, an
action's prerequisite, a value an action uses, a bucket's rewrite undone),
so that ofproto/trace (trace.py) can say why each megaflow field is there.
The untraced path pays nothing for it: the step lines are written under
`if x.trace is not None`, and the read_* methods are aliases of read().

Cost: a few us per table visited plus a dict lookup per action; every
upcall and every revalidation pays it, never a megaflow hit.
"""

import struct
from collections import namedtuple

from mnovs.dp.flow import FIELD_SLICES, KEY_LEN
from mnovs.dp.odp_util import encode_sflow_cookie
from mnovs.dp.tunnel import DEFAULT_TTL, FLOW, INHERIT, TunnelSpec, spec_flags
from mnovs.ofagent.group import port_is_live
from mnovs.ofagent.bond import BOND_MASK, LACP_USERDATA
from mnovs.ofagent.lacp import ETH_TYPE_SLOW
from mnovs.ofagent.recirc import BondRecirc, FrozenState, RecircTable
from mnovs.ofagent.match import (
    KEY_ONES, METADATA_SHIFT, PREREQS, SET_FIELDS, field_bits, field_shift, fields_bits,
    format_match)
from mnovs.openflow.ofp import (
    OFP_DEFAULT_MISS_SEND_LEN, OFPP_ALL, OFPP_CONTROLLER, OFPP_FLOOD, OFPP_IN_PORT,
    OFPP_LOCAL, OFPP_MAX, OFPP_NORMAL, OFPP_TABLE, OFPPC_NO_FWD, OFPPC_NO_PACKET_IN,
    OFPPC_NO_RECV, OFPPC_PORT_DOWN, OFPPS_BLOCKED, OFPR_ACTION, OFPR_INVALID_TTL,
    OFPR_NO_MATCH, OFPTT_ALL)
from mnovs.sflow.wire import OUTPUT_DROPPED, OUTPUT_MULTIPLE

MAX_DEPTH = 32                  # nested group buckets

# Userdata of a controller action: tag, reason, table_id, max_len, cookie, metadata.
_USERDATA = struct.Struct('!cBBHQQ')
_USERDATA_TAG = b'C'
NO_COOKIE = 0xffffffffffffffff  # packet-ins not caused by a rule (packet-out)

RECIRC_ID_SHIFT = field_shift('recirc_id')
RECIRC_ID_BITS = field_bits('recirc_id')   # in every megaflow: each pass has its own
IN_PORT_SHIFT = field_shift('in_port')
IN_PORT_BITS = field_bits('in_port')
DP_HASH_SHIFT = field_shift('dp_hash')
DP_HASH_BUCKET_BITS = field_bits('dp_hash', BOND_MASK)     # a balance-tcp second pass reads
VLAN_BITS = fields_bits(('vlan_tpid', 'vlan_tci'))
VLAN_TCI_BITS = field_bits('vlan_tci')
ETH_TYPE_SHIFT = field_shift('eth_type')
ETH_TYPE_BITS = field_bits('eth_type')
ETH_SRC_SHIFT = field_shift('eth_src')
ETH_SRC_BITS = field_bits('eth_src')
TPID_SHIFT, TCI_SHIFT = field_shift('vlan_tpid'), field_shift('vlan_tci')
VLAN_CFI = 0x1000
MPLS_SHIFT = field_shift('mpls_lse')
MPLS_LSE_BITS = field_bits('mpls_lse')
MPLS_TTL_BITS = field_bits('mpls_lse', 0xff)
MPLS_BOS = 0x100
ETH_TYPE_PBB = 0x88e7
PBB_SHIFT = field_shift('pbb_itag')
PBB_ITAG_BITS = field_bits('pbb_itag')
PBB_ISID_BITS = field_bits('pbb_itag', 0xffffff)
VLAN_PCP_CFI_BITS = field_bits('vlan_tci', 0xf000)
ETH_ADDR_BITS = fields_bits(('eth_dst', 'eth_src'))
NW_TTL_SHIFT = field_shift('nw_ttl')
NW_TTL_BITS = field_bits('nw_ttl')
L3_L4_BITS = fields_bits(('nw_src', 'nw_dst', 'ipv6_src', 'ipv6_dst', 'ipv6_label', 'nw_proto',
                          'nw_tos', 'nw_ttl', 'nw_frag', 'tp_src', 'tp_dst', 'tcp_flags',
                          'arp_sha', 'arp_tha', 'nd_target'))
TUN_ID_SHIFT, TUN_SRC_SHIFT, TUN_DST_SHIFT = (field_shift(name)
                                             for name in ('tun_id', 'tun_src', 'tun_dst'))
# What a packet from a tunnel port always matches (OVS's tnl_wc_init).
TUNNEL_RECEIVE_BITS = (fields_bits(('tun_id', 'tun_src', 'tun_dst', 'tun_tos'))
                       | field_bits('tun_flags', 0x7))      # df, csum, key
TUNNEL_METADATA_BITS = fields_bits(('tun_id', 'tun_src', 'tun_dst'))    # set_field writes these
NW_TOS_SHIFT = field_shift('nw_tos')
IP_ANY = PREREQS['ip_dscp']
MPLS = PREREQS['mpls_label']
PBB = PREREQS['pbb_isid']
# What push_pbb hides behind the new header and pop_pbb cannot see: the key
# describes only the outermost Ethernet header and what follows it.
PBB_INNER_BITS = ETH_TYPE_BITS | VLAN_BITS | MPLS_LSE_BITS | PBB_ITAG_BITS | L3_L4_BITS

# Fields set_field can dirty, as (name, shift, all-ones, width in bytes).
_COMMIT_FIELDS = tuple(
    (name, field_shift(name), (1 << FIELD_SLICES[name][1] * 8) - 1, FIELD_SLICES[name][1])
    for name in ('eth_dst', 'eth_src', 'vlan_tci', 'mpls_lse', 'nw_src', 'nw_dst',
                 'ipv6_src', 'ipv6_dst', 'ipv6_label', 'nw_proto', 'nw_tos', 'nw_ttl',
                 'tp_src', 'tp_dst', 'arp_sha', 'arp_tha', 'nd_target', 'pbb_itag'))

# Action-set execution order (OF1.3 5.10); equal ranks keep insertion order.
_ACTION_SET_ORDER = {'copy_ttl_in': 0, 'pop_vlan': 1, 'pop_mpls': 1, 'pop_pbb': 1,
                     'push_mpls': 2, 'push_pbb': 3, 'push_vlan': 4, 'copy_ttl_out': 5,
                     'dec_mpls_ttl': 6, 'dec_nw_ttl': 6, 'set_field': 7, 'set_mpls_ttl': 7,
                     'set_nw_ttl': 7, 'set_queue': 8, 'group': 9, 'output': 10}


def encode_userdata(reason, table_id, cookie, max_len, metadata):
    """Userdata of the ('userspace', ...) action that stands for a packet-in."""
    return _USERDATA.pack(_USERDATA_TAG, reason, table_id, max_len, cookie, metadata)


def decode_userdata(userdata):
    """(reason, table_id, cookie, max_len, metadata), or None if not a packet-in's."""
    if len(userdata) != _USERDATA.size or userdata[:1] != _USERDATA_TAG:
        return None
    _, reason, table_id, max_len, cookie, metadata = _USERDATA.unpack(userdata)
    return reason, table_id, cookie, max_len, metadata


class XlateContext:
    """What a translation reads besides the packet; long-lived, owned by the agent.

    Args:
        pipeline: table.Pipeline.
        groups: group.GroupTable.
        ports: port_no -> port with .up, .config (OFPPC_*), .state (OFPPS_*).
        normal: callable(key) -> (odp actions, mask) for OFPP_NORMAL, or None
            (NORMAL then drops).
        miss_send_len: bytes of an OFPR_INVALID_TTL packet-in.
        sflow: the bridge's sFlow agent while it samples (probability,
            ifindex(port_no)), else None.
        bonds: bond.Bonds, or None; its RecircTable is then the context's.
    """

    __slots__ = ('pipeline', 'groups', 'ports', 'normal', 'miss_send_len', 'sflow', 'recirc',
                 'bonds')

    def __init__(self, pipeline, groups, ports, normal=None,
                 miss_send_len=OFP_DEFAULT_MISS_SEND_LEN, sflow=None, bonds=None):
        self.pipeline = pipeline
        self.groups = groups
        self.ports = ports
        self.normal = normal
        self.miss_send_len = miss_send_len
        self.sflow = sflow
        self.bonds = bonds
        # frozen translations by recirc_id
        self.recirc = RecircTable() if bonds is None else bonds.recirc


class XlateResult:
    """A translation.

    actions: odp actions (tuple); mask: KEY_LEN bytes; rules: the Rules hit,
    in order; groups: (Group, bucket indexes) per group executed; bonds:
    (Bond, hash bucket) per output whose load a bond balances; meters:
    meter ids; lookups: (FlowTable, matched) per table lookup, in order;
    cacheable: False if the megaflow must not be installed;
    rewrote: True if the pipeline changed a key field (set_field, push,
    pop), so that later lookups saw other values than the packet's;
    trace: the list of trace lines, or None.
    """

    __slots__ = ('actions', 'mask', 'rules', 'groups', 'meters', 'cacheable', 'rewrote',
                 'trace', 'lookups', 'bonds')


TraceEvent = namedtuple('TraceEvent', 'kind depth odp_len flow data')
TraceEvent.__doc__ = """One step of a traced translation (see xlate_trace).

depth: group-bucket nesting; odp_len: datapath actions emitted before the
event; flow: the working key (int) at the event; data: the kind's tuple."""


class _Xlate:
    """The working state of one translation (see the module docstring)."""

    __slots__ = ('ctx', 'in_port', 'flow', 'metadata', 'written', 'dirty', 'changed',
                 'differs', 'touched', 'wc', 'odp', 'undo', 'rules', 'groups', 'meters', 'stopped',
                 'packet_out', 'depth', 'cacheable', 'trace', 'hidden', 'freezing',
                 'lookups', 'member', 'bonds', 'bond_recircs')

    def __init__(self, ctx, key, trace):
        self.ctx = ctx
        self.flow = int.from_bytes(key, 'big')
        self.in_port = self.flow >> IN_PORT_SHIFT & 0xffffffff
        self.member = None              # the bond member the packet came in on
        self.bonds, self.bond_recircs = [], []
        bond = ctx.bonds.of_member(self.in_port) if ctx.bonds is not None else None
        if bond is not None:
            # A bond is one OpenFlow port: the pipeline sees its number. The
            # megaflow still matches the member (in_port is always exact).
            self.member = self.in_port
            self.in_port = bond.port_no
            self.flow = self.flow & ~IN_PORT_BITS | bond.port_no << IN_PORT_SHIFT
        self.metadata = self.written = self.dirty = 0
        self.changed = self.differs = self.touched = 0    # for group buckets
        self.wc = IN_PORT_BITS | RECIRC_ID_BITS
        self.hidden = None              # 'mpls'/'pbb': a pop left headers the key lacks
        self.freezing = None            # actions left when an action froze the translation
        in_port = ctx.ports.get(self.in_port)
        if in_port is not None and in_port.tunnel is not None:
            self.wc |= TUNNEL_RECEIVE_BITS
        self.odp = []
        self.undo = None                # inside a bucket: actions that undo its pushes/pops
        self.rules, self.groups, self.meters = [], [], []
        self.lookups = []
        self.stopped = self.packet_out = False
        self.depth = 0
        self.cacheable = True
        self.trace = trace

    def note(self, fmt, *args):
        """Record a trace line (formatted only when tracing)."""
        if self.trace is not None:
            self.trace.append('    ' * self.depth + (fmt % args if args else fmt))

    def step(self, kind, *data):
        """Record a step (callers check self.trace first): its line, if it has one."""
        line = _step_line(kind, data)
        if line is not None:
            self.trace.append('    ' * self.depth + line)

    def read(self, bits):
        """Put bits in the mask: the translation depends on them."""
        self.wc |= bits & ~self.written

    # Reads named by their reason (see xlate_trace); untraced, they are read().
    read_lookup = read_prereq = read_value = read_restore = read_sflow = read

    def result(self):
        odp = self.odp
        while odp and odp[-1][0] in ('set_masked', 'push_vlan', 'pop_vlan', 'push_mpls',
                                     'pop_mpls', 'push_pbb', 'pop_pbb', 'copy_ttl_in',
                                     'copy_ttl_out'):
            odp.pop()                   # rewrites no output will see
        for at, bond, member in reversed(self.bond_recircs):
            if at + 2 < len(odp):
                # recirc ends a datapath action list: a balance-tcp bond that
                # is not the last output sends on its active member instead.
                odp[at:at + 2] = [('output', member.port_no)] if member is not None else []
        out = XlateResult()
        out.actions = tuple(odp)
        if self.ctx.sflow is not None and not self.packet_out \
                and not self.flow >> RECIRC_ID_SHIFT & 0xffffffff:
            # Sampled on reception only, not again after a recirculation (as OVS).
            self.read_sflow(VLAN_TCI_BITS)
            out.actions = compose_sflow_action(self.ctx.sflow, out.actions,
                                               self.flow >> TCI_SHIFT & 0xffff)
        out.mask = (self.wc & KEY_ONES).to_bytes(KEY_LEN, 'big')
        out.rules, out.groups, out.meters = self.rules, self.groups, self.meters
        out.bonds = self.bonds
        out.cacheable = self.cacheable
        out.rewrote = self.written != 0
        out.trace = self.trace
        out.lookups = tuple(self.lookups)
        return out


def _step_line(kind, data):
    """The trace line of a step; None for steps only events describe."""
    if kind == 'table':
        table_id, rule, _ = data
        if rule is None:
            return 'table %d: no match: drop' % table_id
        return 'table %d: priority %d cookie %#x %s' % (table_id, rule.priority, rule.cookie,
                                                        format_match(rule.match))
    if kind == 'action':
        return format_action(data[0])
    if kind == 'action_set':
        return 'action set: ' + ','.join(format_action(action) for action in data[0])
    if kind == 'bucket':
        return 'group %d bucket %d' % (data[0].group_id, data[1])
    if kind == 'stop':
        return data[0]
    if kind == 'freeze':
        recirc_id, state = data
        where = 'table %d' % state.table_id if state.table_id is not None else 'the next action'
        return 'freeze: recirc(%#x), to go on at %s after the datapath re-parses the packet' % (
            recirc_id, where)
    if kind == 'thaw':
        return 'thaw recirc_id %#x: resume' % data[0]
    return None


class _TracedXlate(_Xlate):
    """A translation that also records TraceEvents (see xlate_trace)."""

    __slots__ = ('events',)

    def __init__(self, ctx, key):
        super().__init__(ctx, key, [])
        self.events = []

    def _event(self, kind, data):
        self.events.append(TraceEvent(kind, self.depth, len(self.odp), self.flow, data))

    def step(self, kind, *data):
        super().step(kind, *data)
        self._event(kind, data)

    def note(self, fmt, *args):
        super().note(fmt, *args)
        self._event('note', (fmt % args if args else fmt,))

    def _reader(why):
        def read(self, bits):
            fresh = bits & ~self.written
            self._event('read', (why, fresh & ~self.wc & KEY_ONES, fresh & self.wc & KEY_ONES,
                                 bits & self.written & KEY_ONES))
            self.wc |= fresh
        return read

    read_lookup = _reader('lookup')
    read_prereq = _reader('prereq')
    read_value = _reader('value')
    read_restore = _reader('restore')
    read_sflow = _reader('sflow')
    del _reader

    def result(self):
        self._event('end', (tuple(self.odp),))
        return super().result()


def xlate(ctx, key, trace=None):
    """Translate a flow key through the pipeline.

    Args:
        ctx: XlateContext.
        key: flow key (KEY_LEN bytes) of the packet.
        trace: a list to append human-readable steps to, or None.
    Returns:
        XlateResult.
    """
    x = _Xlate(ctx, key, trace)
    _translate(x)
    return x.result()


def xlate_trace(ctx, key):
    """Translate a flow key, recording every step, for ofproto/trace.

    Returns:
        (XlateResult, events): the result equals xlate's (its .trace holds
        the lines); events is a list of TraceEvent, whose kind and data are:

          table       (table_id, rule or None, extended key): a lookup
          action      (action, rule that holds it): about to run
          action_set  (actions,): the pipeline ended; the set runs next
          group       (group, bucket indexes): the buckets a group chose
          bucket      (group, index): about to run, at depth + 1
          bucket_end  (): a bucket is done; its undo actions follow
          stop        (text,): processing stops (TTL expired)
          note        (text,): an outcome (skipped, ignored, dropped)
          read        (why, new, again, shadowed): key bits read, why being
                      'lookup' (by the table step before it), 'prereq' or
                      'value' (by the action or group before it),
                      'restore' (a bucket's rewrite put back), or 'sflow'
                      (the sample action's output VLAN, after 'end'); `new` bits
                      entered the mask, `again` were in it already,
                      `shadowed` had been written by the pipeline (not in it)
          end         (odp,): the datapath actions before trailing rewrites
                      were dropped
    """
    x = _TracedXlate(ctx, key)
    _translate(x)
    return x.result(), x.events


def _translate(x):
    if _xlate_special(x):
        return
    port = x.ctx.ports.get(x.in_port)
    if port is not None and port.config & (OFPPC_NO_RECV | OFPPC_PORT_DOWN):
        x.note('in_port %d has NO_RECV or PORT_DOWN: drop', x.in_port)
    else:
        _run_pipeline(x, 0, {})


def xlate_fail_open(ctx, key):
    """Translate a flow key by NORMAL alone: fail mode standalone with no controller.

    The OpenFlow tables are not consulted, but the rest is a translation like
    any other: outputs to tunnel ports get their set_tunnel, port config is
    obeyed, sFlow samples, and the mask has in_port, recirc_id and a tunnel
    packet's metadata besides NORMAL's own fields.
    """
    x = _Xlate(ctx, key, None)
    if not _xlate_special(x):
        _normal(x)
    return x.result()


def _xlate_special(x):
    """What comes before the tables or NORMAL, in any fail mode: a later pass
    of a recirculated packet (a thaw), or a LACP PDU from a bond member (OVS's
    xlate_special). Returns True if it translated the packet."""
    recirc_id = x.flow >> RECIRC_ID_SHIFT & 0xffffffff
    if recirc_id:
        state = x.ctx.recirc.thaw(recirc_id)
        if state is None:
            x.note('recirc_id %#x: no such frozen translation (stale): drop', recirc_id)
        elif isinstance(state, BondRecirc):
            _bond_second_pass(x, state)
        else:
            _thaw(x, recirc_id, state)
        return True
    if x.member is not None and x.ctx.bonds.of_member(x.member).lacp is not None:
        # LACP's PDUs go to the slow path, as OVS's slow_path(lacp); every
        # megaflow of the member tells them apart by eth_type.
        x.read_prereq(ETH_TYPE_BITS)
        if x.flow >> ETH_TYPE_SHIFT & 0xffff == ETH_TYPE_SLOW:
            x.note("LACP PDU: to the bond's LACP")
            x.odp.append(('userspace', LACP_USERDATA))
            return True
    return False


def xlate_packet_out(ctx, key, actions, trace=None):
    """Translate a PACKET_OUT's action list (output:TABLE allowed).

    key's in_port is the packet-out's in_port (OFPP_CONTROLLER if none).
    Returns an XlateResult; only its actions (and rules, for stats) matter.
    """
    x = _Xlate(ctx, key, trace)
    x.packet_out = True
    _do_actions(x, actions, None)
    return x.result()


def compose_sflow_action(sflow, actions, vlan_tci):
    """Put the sFlow sample action before `actions` (compose_ and fix_sflow_action).

    Args:
        sflow: has probability and ifindex(port_no).
        actions: the translation's odp actions.
        vlan_tci: the packet's VLAN TCI on output (0: untagged).
    """
    outputs = [action[1] for action in actions if action[0] == 'output']
    if not outputs:
        output = OUTPUT_DROPPED
    elif len(outputs) == 1:
        output = sflow.ifindex(outputs[0]) or OUTPUT_MULTIPLE | 1
    else:
        output = OUTPUT_MULTIPLE | len(outputs)
    cookie = encode_sflow_cookie(vlan_tci, output)
    return (('sample', sflow.probability, (('userspace', cookie),)),) + actions


def credit_stats(result, packets, nbytes, now):
    """Credit datapath flow stats to the rules, tables, group buckets and bond
    hash buckets of a translation."""
    for table, matched in result.lookups:
        table.lookup_count += packets
        if matched:
            table.matched_count += packets
    for bond, bucket in result.bonds:
        bond.account(bucket, nbytes)
    for rule in result.rules:
        rule.packet_count += packets
        rule.byte_count += nbytes
        if now > rule.last_used:    # megaflows push in any order; time only moves on
            rule.last_used = now
    for group, indexes in result.groups:
        group.packet_count += packets
        group.byte_count += nbytes
        for index in indexes:
            counts = group.bucket_counts[index]
            counts[0] += packets
            counts[1] += nbytes


# --- the pipeline ------------------------------------------------------------

def _run_pipeline(x, table_id, action_set):
    """Look up from table_id (None: no table) on, then run the action set."""
    pipeline = x.ctx.pipeline
    while table_id is not None:
        if x.hidden and not x.depth:
            _freeze(x, FrozenState(table_id, (), (), tuple(action_set.items()), x.metadata,
                                   None))
            return
        ext = x.flow | x.metadata << METADATA_SHIFT
        rule, consulted = pipeline.lookup(table_id, ext)
        if x.trace is not None:
            x.step('table', table_id, rule, ext)
        x.read_lookup(consulted)
        x.lookups.append((pipeline.tables[table_id], rule is not None))
        if rule is None:
            return
        x.rules.append(rule)
        table_id = _run_rule(x, rule, action_set, rule.program)
        if x.stopped:
            x.stopped = False
            return
    if action_set:
        if x.trace is not None:
            x.step('action_set', tuple(action for action, _ in action_set.values()))
        _run_action_set(x, action_set)
        x.stopped = False


def _run_rule(x, rule, action_set, program):
    """Run (the rest of) a rule's instructions; return the table to go to, or None."""
    for at, instruction in enumerate(program):
        name = instruction[0]
        if name == 'meter':
            x.odp.append(('meter', instruction[1]))
            x.meters.append(instruction[1])
        elif name == 'apply_actions':
            _do_actions(x, instruction[1], rule)
            if x.freezing is not None:
                _freeze(x, FrozenState(None, x.freezing, program[at + 1:],
                                       tuple(action_set.items()), x.metadata, rule))
            if x.stopped:
                return None
        elif name == 'clear_actions':
            action_set.clear()
        elif name == 'write_actions':
            for action in instruction[1]:
                slot = ('set_field', action[1]) if action[0] == 'set_field' else action[0]
                action_set[slot] = (action, rule)
        elif name == 'write_metadata':
            _, value, mask = instruction
            x.metadata = x.metadata & ~mask | value & mask
        else:
            return instruction[1]       # goto_table
    return None


def _run_action_set(x, action_set):
    has_group = 'group' in action_set
    for action, rule in sorted(action_set.values(), key=lambda e: _ACTION_SET_ORDER[e[0][0]]):
        if action[0] == 'output' and has_group:
            continue
        _do_action(x, action, rule)
        if x.stopped:
            return


def _do_actions(x, actions, rule):
    for at, action in enumerate(actions):
        if x.hidden and not x.depth and _needs_hidden_headers(x.hidden, action):
            x.freezing = actions[at:]   # _run_rule freezes with the rest of the rule
            x.stopped = True
            return
        _do_action(x, action, rule)
        if x.stopped:
            return


# After a pop_mpls these actions need the headers the key lacks: they freeze.
_NEEDS_HEADERS = frozenset(('set_field', 'dec_nw_ttl', 'set_nw_ttl', 'push_mpls', 'pop_mpls',
                            'set_mpls_ttl', 'dec_mpls_ttl', 'group', 'copy_ttl_in',
                            'copy_ttl_out', 'push_pbb', 'pop_pbb'))
_L2_SET_FIELDS = frozenset(('eth_src', 'eth_dst', 'vlan_vid', 'vlan_pcp', 'tunnel_id',
                            'tun_ipv4_src', 'tun_ipv4_dst'))


def _needs_hidden_headers(hidden, action):
    """Does `action` read headers a pop left out of the key (x.hidden)?"""
    name = action[0]
    if hidden == 'pbb':                 # nothing of the customer frame is in the key
        return name not in ('output', 'set_queue') or action[1] == OFPP_NORMAL
    return name in _NEEDS_HEADERS and (name != 'set_field' or action[1] not in _L2_SET_FIELDS)


def _freeze(x, state):
    """End this pass with ('recirc', id): the datapath re-parses the packet and
    the next pass (a miss with recirc_id=id) thaws `state` (see recirc.py)."""
    _commit(x)
    recirc_id = x.ctx.recirc.freeze(state)
    x.odp.append(('recirc', recirc_id))
    if x.trace is not None:
        x.step('freeze', recirc_id, state)
    x.freezing = None
    x.stopped = True


def _thaw(x, recirc_id, state):
    """Go on with a frozen translation: the key is the re-parsed packet."""
    if x.trace is not None:
        x.step('thaw', recirc_id, state)
    x.metadata = state.metadata
    action_set = dict(state.action_set)
    table_id = state.table_id
    if table_id is None:
        _do_actions(x, state.actions, state.rule)
        if not x.stopped:
            table_id = _run_rule(x, state.rule, action_set, state.instructions)
        if x.stopped:
            return
    _run_pipeline(x, table_id, action_set)


def _do_action(x, action, rule):
    if x.trace is not None:
        x.step('action', action, rule)
    _ACTIONS[action[0]](x, action, rule)


_PORT_NAMES = {OFPP_IN_PORT: 'IN_PORT', OFPP_TABLE: 'TABLE', OFPP_NORMAL: 'NORMAL',
               OFPP_FLOOD: 'FLOOD', OFPP_ALL: 'ALL', OFPP_CONTROLLER: 'CONTROLLER',
               OFPP_LOCAL: 'LOCAL'}


def format_action(action):
    """An OpenFlow action in ovs-ofctl's spirit: 'output:2', 'set_field:0x5->vlan_vid'."""
    name = action[0]
    if name == 'set_field':
        return 'set_field:%#x->%s' % (action[2], action[1])
    if name == 'output':
        return 'output:%s' % _PORT_NAMES.get(action[1], action[1])
    return name + ''.join(':%#x' % arg for arg in action[1:])


# --- packet state ------------------------------------------------------------

def _prereq_ok(x, prereq):
    """Check a prerequisite (match.PREREQS form) on the working key."""
    union, alternatives = prereq
    x.read_prereq(union)
    flow = x.flow
    for mask, value in alternatives:
        if flow & mask == value:
            return True
    return False


def _write(x, bits, value):
    """Rewrite a field of the packet: lazily, see commit."""
    x.flow = x.flow & ~bits | value
    x.written |= bits
    x.changed |= bits
    x.dirty |= bits


def _reshape(x, bits, value):
    """Change the key after a push or pop emitted as an action of its own."""
    x.flow = x.flow & ~bits | value
    x.written |= bits
    x.changed |= bits
    x.dirty &= ~bits


def _record_undo(x, action, bits):
    """Inside a bucket: remember how to undo a push or pop, and what the
    packet's `bits` (the tag or label it adds or removes) looked like."""
    if x.undo is not None:
        x.undo.append((action, bits, x.differs & bits))


def _commit(x):
    """Emit set_masked actions for the dirty bits of the working key."""
    dirty = x.dirty
    if not dirty:
        return
    x.read_restore(dirty)               # only a bucket's rewrites put back are unwritten
    flow = x.flow
    for name, shift, ones, width in _COMMIT_FIELDS:
        mask = dirty >> shift & ones
        if mask:
            value = flow >> shift & mask
            if name == 'nw_proto':      # only arp_op rewrites it
                x.odp.append(('set_masked', 'arp_op', value.to_bytes(2, 'big'), b'\xff\xff'))
            else:
                x.odp.append(('set_masked', name, value.to_bytes(width, 'big'),
                              mask.to_bytes(width, 'big')))
    x.differs = x.differs & ~dirty | dirty & x.changed
    x.touched |= dirty
    x.dirty = 0


# --- actions -----------------------------------------------------------------

def _output(x, action, rule):
    port = action[1]
    if port <= OFPP_MAX or port == OFPP_LOCAL:
        if port == x.in_port:
            x.note('output:%d is the input port: skipped', port)
        else:
            _output_port(x, port)
    elif port == OFPP_IN_PORT:
        _output_port(x, x.in_port)
    elif port == OFPP_CONTROLLER:
        reason = OFPR_NO_MATCH if rule is not None and rule.is_table_miss else OFPR_ACTION
        _controller(x, reason, action[2], rule)
    elif port == OFPP_FLOOD or port == OFPP_ALL:
        for port_no in sorted(x.ctx.ports):
            if port_no != x.in_port:
                _output_port(x, port_no, port == OFPP_FLOOD)
    elif port == OFPP_NORMAL:
        _normal(x)
    elif port == OFPP_TABLE and x.packet_out:
        x.packet_out = False            # no second TABLE from within the pipeline
        _run_pipeline(x, 0, {})
        x.packet_out = True
    else:
        x.note('output:%#x: no such port here: dropped', port)


def _output_port(x, port_no, flood=False):
    port = x.ctx.ports.get(port_no)
    if not port_is_live(port) or port.config & OFPPC_NO_FWD \
            or flood and port.state & OFPPS_BLOCKED:
        x.note('output:%d: port missing, down or not forwarding: skipped', port_no)
        return
    _commit(x)
    if port.tunnel is not None and not _set_tunnel(x, port_no, port.tunnel):
        return
    bond = x.ctx.bonds.by_port.get(port_no) if x.ctx.bonds is not None else None
    if bond is not None:
        _output_bond(x, bond)
        return
    x.odp.append(('output', port_no))


def _output_bond(x, bond):
    """Output to a bond: a member by its mode, or hash and recirc (balance-tcp)."""
    flow = x.flow
    eth_src = (flow >> ETH_SRC_SHIFT & 0xffffffffffff).to_bytes(6, 'big')
    tci = flow >> TCI_SHIFT & 0xffff
    vid = tci & 0xfff if tci & VLAN_CFI else 0
    actions, bucket = x.ctx.bonds.output_actions(bond, eth_src, vid)
    if bond.balanced_mode() == 'balance-slb':
        x.read_value(ETH_SRC_BITS | VLAN_TCI_BITS)
    if not actions:
        x.note('output to bond %s: no member may send: dropped', bond.name)
        return
    if actions[-1][0] == 'recirc':
        x.bond_recircs.append((len(x.odp), bond, bond.choose_member(eth_src, vid)))
    elif bucket is not None:
        x.bonds.append((bond, bucket))
    x.odp.extend(actions)


def _bond_second_pass(x, state):
    """A balance-tcp bond's second pass: the member owning the dp_hash bucket."""
    bond = x.ctx.bonds.by_frozen(state) if x.ctx.bonds is not None else None
    if bond is None:
        x.note('recirc for bond %s: no such bond now: drop', state.name)
        return
    x.read_value(DP_HASH_BUCKET_BITS)
    bucket = x.flow >> DP_HASH_SHIFT & BOND_MASK
    member = bond.bucket_member(bucket)
    if member is None:
        x.note('bond %s bucket %d: no member may send: drop', bond.name, bucket)
        return
    x.note('bond %s: hash bucket %d is on member %s', bond.name, bucket, member.name)
    x.bonds.append((bond, bucket))
    x.odp.append(('output', member.port_no))


def _set_tunnel(x, port_no, config):
    """Emit the set_tunnel of an output to a tunnel port; False: no destination."""
    flow = x.flow
    if config.remote_ip == FLOW:
        x.read_value(field_bits('tun_dst'))
        ip_dst = (flow >> TUN_DST_SHIFT & 0xffffffff).to_bytes(4, 'big')
        if not any(ip_dst):
            x.note('output:%d: remote_ip=flow but no tun_dst set: dropped', port_no)
            return False
    else:
        ip_dst = config.remote_ip
    if config.local_ip == FLOW:
        x.read_value(field_bits('tun_src'))
        ip_src = (flow >> TUN_SRC_SHIFT & 0xffffffff).to_bytes(4, 'big')
    else:
        ip_src = config.local_ip or bytes(4)
    if config.out_key == FLOW:
        x.read_value(field_bits('tun_id'))
        tun_id = flow >> TUN_ID_SHIFT & 0xffffffffffffffff
    else:
        tun_id = config.out_key
    tos, ttl = config.tos, config.ttl
    if tos == INHERIT or ttl == INHERIT:
        is_ip = _prereq_ok(x, IP_ANY)
        if tos == INHERIT:
            x.read_value(field_bits('nw_tos', 0xfc))
            tos = flow >> NW_TOS_SHIFT & 0xfc if is_ip else 0
        if ttl == INHERIT:
            x.read_value(NW_TTL_BITS)
            ttl = flow >> NW_TTL_SHIFT & 0xff if is_ip else DEFAULT_TTL
    x.odp.append(('set_tunnel', TunnelSpec(tun_id, ip_src, ip_dst, tos, ttl, config.dst_port,
                                           spec_flags(config))))
    return True


def _controller(x, reason, max_len, rule):
    port = x.ctx.ports.get(x.in_port)
    if port is not None and port.config & OFPPC_NO_PACKET_IN:
        x.note('controller: input port has NO_PACKET_IN: skipped')
        return
    _commit(x)
    table_id, cookie = (OFPTT_ALL, NO_COOKIE) if rule is None else (rule.table_id, rule.cookie)
    x.odp.append(('userspace', encode_userdata(reason, table_id, cookie, max_len, x.metadata)))


def _normal(x):
    if x.ctx.normal is None:
        x.note('NORMAL: not available: dropped')
        return
    _commit(x)
    flow = x.flow
    if x.member is not None:        # NORMAL judges a bond's input by its member
        flow = flow & ~IN_PORT_BITS | x.member << IN_PORT_SHIFT
    actions, mask = x.ctx.normal(flow.to_bytes(KEY_LEN, 'big'))
    x.read_value(int.from_bytes(mask, 'big'))
    bonds = x.ctx.bonds
    for action in actions:
        # NORMAL's outputs obey OpenFlow port config like any other output
        # (a bond member's: its bond's).
        port_no = action[1] if action[0] == 'output' else None
        if port_no is not None and bonds is not None:
            port_no = bonds.ofport_of(port_no)
        port = x.ctx.ports.get(port_no) if port_no is not None else None
        if action[0] == 'output' and (not port_is_live(port) or port.config & OFPPC_NO_FWD):
            x.note('NORMAL: output:%d: port down or NO_FWD: skipped', action[1])
            continue
        if port is not None and port.tunnel is not None \
                and not _set_tunnel(x, action[1], port.tunnel):
            continue
        x.odp.append(action)


def _set_field(x, action, rule):
    _, name, value = action
    bits, shift, prereq = SET_FIELDS[name]
    if not _prereq_ok(x, prereq):
        x.note('set_field %s: packet has no such field: ignored', name)
        return
    if name == 'vlan_vid':
        value &= 0xfff
    if bits & TUNNEL_METADATA_BITS:
        # Packet metadata, not bytes: nothing to commit (see _set_tunnel).
        x.flow = x.flow & ~bits | value << shift
        x.written |= bits
        x.changed |= bits
        return
    _write(x, bits, value << shift)


def _push_vlan(x, action, rule):
    _commit(x)
    x.read_value(VLAN_TCI_BITS)
    tci = x.flow >> TCI_SHIFT & 0xffff
    tci = tci & ~VLAN_CFI if tci & VLAN_CFI else 0
    x.odp.append(('push_vlan', action[1], tci))
    _record_undo(x, ('pop_vlan',), VLAN_TCI_BITS)
    _reshape(x, VLAN_BITS, action[1] << TPID_SHIFT | (tci | VLAN_CFI) << TCI_SHIFT)


def _pop_vlan(x, action, rule):
    _commit(x)
    if x.undo is not None:
        x.read_value(VLAN_BITS)
        tci = x.flow >> TCI_SHIFT & 0xffff
        if tci & VLAN_CFI:
            _record_undo(x, ('push_vlan', x.flow >> TPID_SHIFT & 0xffff, tci & ~VLAN_CFI),
                         VLAN_TCI_BITS)
    x.odp.append(('pop_vlan',))
    _reshape(x, VLAN_BITS, 0)


def _push_mpls(x, action, rule):
    _commit(x)
    if _prereq_ok(x, MPLS):
        x.read_value(MPLS_LSE_BITS)
        lse = (x.flow >> MPLS_SHIFT & 0xffffffff) & ~MPLS_BOS
    elif _prereq_ok(x, IP_ANY):
        x.read_value(NW_TTL_BITS)
        lse = MPLS_BOS | x.flow >> NW_TTL_SHIFT & 0xff
    else:
        lse = MPLS_BOS | 64
    _record_undo(x, ('pop_mpls', x.flow >> ETH_TYPE_SHIFT & 0xffff), MPLS_LSE_BITS)
    x.odp.append(('push_mpls', action[1], lse))
    _reshape(x, ETH_TYPE_BITS | MPLS_LSE_BITS | L3_L4_BITS,
             action[1] << ETH_TYPE_SHIFT | lse << MPLS_SHIFT)


def _pop_mpls(x, action, rule):
    if not _prereq_ok(x, MPLS):
        x.note('pop_mpls: not an MPLS packet: ignored')
        return
    _commit(x)
    if x.undo is not None:
        x.read_value(MPLS_LSE_BITS)
        _record_undo(x, ('push_mpls', x.flow >> ETH_TYPE_SHIFT & 0xffff,
                         x.flow >> MPLS_SHIFT & 0xffffffff), MPLS_LSE_BITS)
    x.odp.append(('pop_mpls', action[1]))
    _reshape(x, ETH_TYPE_BITS | MPLS_LSE_BITS, action[1] << ETH_TYPE_SHIFT)
    x.hidden = 'mpls'


def _push_pbb(x, action, rule):
    _commit(x)
    itag = 0
    if _prereq_ok(x, PBB):              # the I-SID of an I-TAG below (OF1.3 5.12.1)
        x.read_value(PBB_ISID_BITS)
        itag = x.flow >> PBB_SHIFT & 0xffffff
    x.read_value(VLAN_PCP_CFI_BITS)     # I-PCP: the VLAN PCP, 0 if untagged
    tci = x.flow >> TCI_SHIFT & 0xffff
    if tci & VLAN_CFI:
        itag |= tci >> 13 << 29
    # The datapath copies B-DA and B-SA from the frame's own addresses, so
    # the key's eth_dst/eth_src stay as they are and are not read.
    x.odp.append(('push_pbb', itag))
    _record_undo(x, ('pop_pbb',), ETH_ADDR_BITS | PBB_INNER_BITS)
    _reshape(x, PBB_INNER_BITS, ETH_TYPE_PBB << ETH_TYPE_SHIFT | itag << PBB_SHIFT)


def _pop_pbb(x, action, rule):
    if not _prereq_ok(x, PBB):
        x.note('pop_pbb: not a PBB frame: ignored')
        return
    _commit(x)
    if x.undo is not None:
        # Put the backbone header back: the I-TAG, then any B-TAG (undo runs
        # backwards); push_pbb copies the customer's addresses, so B-DA and
        # B-SA differ from the packet's until restored.
        x.read_value(PBB_ITAG_BITS | VLAN_BITS)
        tci = x.flow >> TCI_SHIFT & 0xffff
        if tci & VLAN_CFI:
            x.undo.append((('push_vlan', x.flow >> TPID_SHIFT & 0xffff, tci & ~VLAN_CFI),
                           VLAN_TCI_BITS, 0))
        x.undo.append((('push_pbb', x.flow >> PBB_SHIFT & 0xffffffff), ETH_ADDR_BITS,
                       ETH_ADDR_BITS))
    x.odp.append(('pop_pbb',))
    _reshape(x, ETH_ADDR_BITS | PBB_INNER_BITS, 0)
    x.hidden = 'pbb'


def _copy_ttl(x, action, rule):
    # The TTLs copied live beyond the key (a second label, or the IP header
    # under a label), so the datapath copies them in the packet.
    if not _prereq_ok(x, MPLS):
        x.note('%s: not an MPLS packet: ignored', action[0])
        return
    _commit(x)
    x.odp.append((action[0],))


def _set_ttl(prereq, bits, shift):
    def set_ttl(x, action, rule):
        if _prereq_ok(x, prereq):
            _write(x, bits, action[1] << shift)
    return set_ttl


def _dec_ttl(prereq, bits, shift):
    def dec_ttl(x, action, rule):
        if not _prereq_ok(x, prereq):
            return
        x.read_value(bits)
        ttl = x.flow >> shift & 0xff
        if ttl > 1:
            _write(x, bits, ttl - 1 << shift)
            return
        if x.trace is not None:
            x.step('stop', 'TTL expired: to the controller, processing stops')
        _controller(x, OFPR_INVALID_TTL, x.ctx.miss_send_len, rule)
        x.stopped = True
    return dec_ttl


def _set_queue(x, action, rule):
    x.note('no queues: ignored')


def _group(x, action, rule):
    groups = x.ctx.groups
    group = None if groups is None else groups.get(action[1])
    if group is None:
        x.note('group %d: no such group: dropped', action[1])
        return
    if x.depth >= MAX_DEPTH:
        x.note('group %d: chain too deep: dropped', action[1])
        x.cacheable = False
        return
    indexes, consulted = groups.choose(group, x.flow, x.ctx.ports)
    if x.trace is not None:
        x.step('group', group, tuple(indexes))
    x.read_value(consulted)
    x.groups.append((group, tuple(indexes)))
    for index in indexes:
        if x.trace is not None:
            x.step('bucket', group, index)
        _run_bucket(x, group.buckets[index].actions, rule)


def _run_bucket(x, actions, rule):
    """Run a bucket on a copy of the packet: restore the packet afterwards.

    Within the bucket, `changed` holds the key bits changed since it began,
    and `differs` the bits where the packet may differ from the key as it was
    then (at first, the pending dirty bits).  A commit makes the packet equal
    the key on the bits it writes, so they differ afterwards only if changed.
    """
    saved = x.flow, x.written, x.changed, x.differs, x.touched, x.undo
    x.changed, x.differs, x.touched, x.undo = 0, x.dirty, 0, []
    x.depth += 1
    _do_actions(x, actions, rule)
    x.depth -= 1
    x.stopped = False
    if x.trace is not None:
        x.step('bucket_end')
    for action, bits, before in reversed(x.undo):
        x.odp.append(action)
        x.differs = x.differs & ~bits | before
    differs, touched = x.differs, x.touched
    x.flow, x.written, x.changed, x.differs, x.touched, x.undo = saved
    x.dirty = differs                   # put back what the bucket rewrote
    x.differs |= touched                # an enclosing bucket's view, conservatively
    x.touched |= touched


_ACTIONS = {
    'output': _output,
    'set_field': _set_field,
    'push_vlan': _push_vlan,
    'pop_vlan': _pop_vlan,
    'push_mpls': _push_mpls,
    'pop_mpls': _pop_mpls,
    'set_nw_ttl': _set_ttl(IP_ANY, NW_TTL_BITS, NW_TTL_SHIFT),
    'dec_nw_ttl': _dec_ttl(IP_ANY, NW_TTL_BITS, NW_TTL_SHIFT),
    'set_mpls_ttl': _set_ttl(MPLS, MPLS_TTL_BITS, MPLS_SHIFT),
    'dec_mpls_ttl': _dec_ttl(MPLS, MPLS_TTL_BITS, MPLS_SHIFT),
    'set_queue': _set_queue,
    'group': _group,
    'push_pbb': _push_pbb,
    'pop_pbb': _pop_pbb,
    'copy_ttl_in': _copy_ttl,
    'copy_ttl_out': _copy_ttl,
}
