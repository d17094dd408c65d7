"""OpenFlow multipart replies: the switch's state as statistics bodies.

The agent decodes a MULTIPART_REQUEST (codec.py, multipart.py), asks
`multipart_reply_body(ofproto, request, now)` for the reply body and lets
codec.encode frame it (a body over 64 KB goes out as several messages
flagged OFPMPF_REPLY_MORE).  Nothing here sends or changes anything, except
that flow, aggregate, table and group requests first call
`ofproto.push_stats(now)`, so that packets handled by cached megaflows count
on the rules and groups that produced them (as OVS's revalidators do).

One small function per OFPMP_* type, dispatched through the dict _REPLIES.
What each reports, and where it departs from the obvious:

- DESC: mnovs's names; dp_desc is the bridge name, as in OVS.
- FLOW, AGGREGATE: pipeline.select with the request's table, match, out_port,
  out_group and cookie filters (non-strict, as the spec says).
- TABLE: one entry per table (254).  lookup_count and matched_count are the
  packets translations looked up in the table and found a rule for: those
  of upcalls, packet-outs and buffered packets, and those the datapath's
  caches handled (credited from megaflow stats by push_stats, so the count
  costs nothing per packet; see table.FlowTable).
- TABLE_FEATURES: what table.py, match.py and xlate accept, per table:
  the six instructions (no goto_table in the last table), the next tables
  (every later one), the actions check_actions allows, the OXM fields
  match.py compiles (every one may be wildcarded), and the fields set_field
  can rewrite.  The _MISS properties are left out: the spec (1.3.1+, 7.3.5.18)
  says an omitted miss property equals the regular one, and ours are equal.
  Under 1 KB per table: the reply is ~220 KB, 4 messages.  A request with
  a body (table reconfiguration) is refused with EPERM: tables are fixed.
- PORT_STATS: the datapath port's counters; a counter the port does not keep
  (tx_errors, rx_frame_err, ...) is all ones, the spec's "unsupported".
- QUEUE: there are no queues.  As in OVS: an unknown port is BAD_PORT, a
  specific queue_id is BAD_QUEUE (none exists), OFPQ_ALL gets an empty reply.
- GROUP: ref_count counts the rules and the groups (chaining) that forward
  to the group, as the spec defines it.  An unknown group id gets an empty
  reply (OVS does the same).
- METER, METER_CONFIG: the meters the agent installed (ofproto.meter_configs),
  counters from the datapath MeterTable, which keeps them whatever
  OFPMF_STATS says, so they are reported always.  An unknown meter id gets
  an empty reply.
- GROUP_FEATURES, METER_FEATURES: constants; see below.
"""

import functools
from collections import Counter

from mnovs.ofagent.match import OXM_BITS, SET_FIELDS
from mnovs.openflow.multipart import (
    AggregateStats, Desc, FlowStats, GroupDesc, GroupFeatures, GroupStats, MeterConfig,
    MeterFeatures, MeterStats, PortStats, TableFeatures, TableStats)
from mnovs.openflow.ofp import (
    OFPBRC_BAD_MULTIPART, OFPBRC_BAD_PORT, OFPBRC_BAD_TABLE_ID, OFPET_BAD_REQUEST,
    OFPET_QUEUE_OP_FAILED, OFPET_TABLE_FEATURES_FAILED, OFPG_ALL, OFPG_MAX,
    OFPGFC_CHAINING, OFPGFC_CHAINING_CHECKS, OFPGFC_SELECT_LIVENESS, OFPGFC_SELECT_WEIGHT,
    OFPGT_ALL, OFPGT_FF, OFPGT_INDIRECT, OFPGT_SELECT, OFPM_ALL, OFPMBT_DROP, OFPMF_BURST,
    OFPMF_KBPS, OFPMF_PKTPS, OFPMF_STATS, OFPMP_AGGREGATE, OFPMP_DESC, OFPMP_FLOW,
    OFPMP_GROUP, OFPMP_GROUP_DESC, OFPMP_GROUP_FEATURES, OFPMP_METER, OFPMP_METER_CONFIG,
    OFPMP_METER_FEATURES, OFPMP_PORT_DESC, OFPMP_PORT_STATS, OFPMP_QUEUE, OFPMP_TABLE,
    OFPMP_TABLE_FEATURES, OFPP_ANY, OFPQ_ALL, OFPQOFC_BAD_PORT, OFPQOFC_BAD_QUEUE,
    OFPTFFC_EPERM, OFPTFPT_APPLY_ACTIONS, OFPTFPT_APPLY_SETFIELD, OFPTFPT_INSTRUCTIONS,
    OFPTFPT_MATCH, OFPTFPT_NEXT_TABLES, OFPTFPT_WILDCARDS, OFPTFPT_WRITE_ACTIONS,
    OFPTFPT_WRITE_SETFIELD, OFPTT_ALL, OFPError)
from mnovs.openflow.ofp_actions import ACTIONS, INSTRUCTIONS
from mnovs.openflow.oxm import OXM_FIELDS
# table.py keeps the one list of actions xlate performs; read it, don't restate it.
from mnovs.ofagent.table import SUPPORTED_ACTIONS

MFR_DESC = 'mnovs'
HW_DESC = 'mnovs userspace datapath'
SW_DESC = 'mnovs 0.1.0'                 # the version in pyproject.toml (a test checks)
SERIAL_NUM = 'None'                     # what OVS reports

U64_MAX = (1 << 64) - 1
# ofp_port_stats counters in wire order; each is read from the datapath Port
# under the same name, or is U64_MAX if it keeps none ("unsupported", 7.3.5.6).
_PORT_COUNTERS = ('rx_packets', 'tx_packets', 'rx_bytes', 'tx_bytes', 'rx_dropped',
                  'tx_dropped', 'rx_errors', 'tx_errors', 'rx_frame_err', 'rx_over_err',
                  'rx_crc_err', 'collisions')

# What the pipeline accepts, as OFPAT_* numbers and OXM field names (in OXM order).
_ACTION_TYPES = tuple(sorted(ACTIONS[name][0] for name in SUPPORTED_ACTIONS))
_ACTION_BITMAP = sum(1 << number for number in _ACTION_TYPES)
_MATCH_FIELDS = tuple(f.name for f in OXM_FIELDS if f.name in OXM_BITS)
_SET_FIELDS = tuple(f.name for f in OXM_FIELDS if f.name in SET_FIELDS)

# Groups: every type, no limit of our own but the id space, any supported
# action in any bucket.
_GROUP_TYPES = (OFPGT_ALL, OFPGT_SELECT, OFPGT_INDIRECT, OFPGT_FF)
_GROUP_CAPABILITIES = (OFPGFC_SELECT_WEIGHT | OFPGFC_SELECT_LIVENESS | OFPGFC_CHAINING
                       | OFPGFC_CHAINING_CHECKS)

# Meters: drop bands only (the datapath's dscp_remark band counts but does
# not remark, so it is not advertised); any number of bands per meter (the
# MeterTable has no limit; 255 is the most the field can say); no color
# support.  MAX_METERS is ours to enforce (OFPMMFC_OUT_OF_METERS): it bounds
# the memory a controller can make the switch spend, like OVS's 65536.
MAX_METERS = 65536
MAX_BANDS = 255
_METER_CAPABILITIES = OFPMF_KBPS | OFPMF_PKTPS | OFPMF_BURST | OFPMF_STATS


def multipart_reply_body(ofproto, request, now):
    """The reply body for a MULTIPART_REQUEST, as multipart.BODIES expects it.

    Args:
        ofproto: the switch (ofproto.OFProto, or anything with its attributes).
        request: a codec MultipartRequest (type, flags, body); a request sent
            in several parts (OFPMPF_REQ_MORE) must be joined by the caller.
        now: time.monotonic() time, for durations and push_stats.
    Returns:
        One body dataclass (DESC, AGGREGATE, GROUP_FEATURES, METER_FEATURES)
        or a tuple of entries; wrap it in MultipartReply(request.type, ...).
    Raises:
        OFPError: BAD_REQUEST/BAD_MULTIPART for an unsupported type,
        BAD_TABLE_ID, BAD_PORT, QUEUE_OP_FAILED/BAD_PORT or BAD_QUEUE,
        TABLE_FEATURES_FAILED/EPERM, or BAD_MATCH for a flow stats match.
    """
    reply = _REPLIES.get(request.type)
    if reply is None:
        raise OFPError(OFPET_BAD_REQUEST, OFPBRC_BAD_MULTIPART)
    return reply(ofproto, request.body, now)


def _duration(since, now):
    """(seconds, nanoseconds) from monotonic time `since` to `now`."""
    elapsed = max(now - since, 0.0)
    sec = int(elapsed)
    return sec, min(int((elapsed - sec) * 1e9), 999_999_999)


# ---- switch and flows ---------------------------------------------------------

def _desc(ofproto, body, now):
    return Desc(MFR_DESC, HW_DESC, SW_DESC, SERIAL_NUM, ofproto.name)


def _selected_rules(ofproto, request, now):
    """The rules a flow or aggregate stats request names, counters up to date."""
    if request.table_id != OFPTT_ALL and request.table_id >= len(ofproto.pipeline.tables):
        raise OFPError(OFPET_BAD_REQUEST, OFPBRC_BAD_TABLE_ID)
    ofproto.push_stats(now)
    return ofproto.pipeline.select(request.table_id, request.match, request.out_port,
                                   request.out_group, request.cookie, request.cookie_mask)


def _flow_stats(ofproto, body, now):
    return tuple(
        FlowStats(rule.table_id, *_duration(rule.created, now), rule.priority,
                  rule.idle_timeout, rule.hard_timeout, rule.flags, rule.cookie,
                  rule.packet_count, rule.byte_count, rule.match, rule.instructions)
        for rule in _selected_rules(ofproto, body, now))


def _aggregate_stats(ofproto, body, now):
    rules = _selected_rules(ofproto, body, now)
    return AggregateStats(sum(rule.packet_count for rule in rules),
                          sum(rule.byte_count for rule in rules), len(rules))


def _table_stats(ofproto, body, now):
    ofproto.push_stats(now)
    return tuple(TableStats(table.table_id, len(table), table.lookup_count, table.matched_count)
                 for table in ofproto.pipeline.tables)


def _table_features(ofproto, body, now):
    if body:
        raise OFPError(OFPET_TABLE_FEATURES_FAILED, OFPTFFC_EPERM)
    return _features_of(tuple(table.max_rules for table in ofproto.pipeline.tables))


@functools.lru_cache(maxsize=4)
def _features_of(max_rules):
    """TABLE_FEATURES entries for tables with these limits (computed once).

    Every table is named 'table<N>'.  OVS once called table 0 'classifier';
    in mnovs no table is special, so one scheme names them all.
    """
    n_tables = len(max_rules)
    return tuple(TableFeatures(table_id, f'table{table_id}', U64_MAX, U64_MAX, 0,
                               limit, _table_properties(table_id, n_tables))
                 for table_id, limit in enumerate(max_rules))


def _table_properties(table_id, n_tables):
    last = table_id == n_tables - 1
    instructions = tuple(number for name, (number, _) in INSTRUCTIONS.items()
                         if not (last and name == 'goto_table'))
    return ((OFPTFPT_INSTRUCTIONS, instructions),
            (OFPTFPT_NEXT_TABLES, tuple(range(table_id + 1, n_tables))),
            (OFPTFPT_WRITE_ACTIONS, _ACTION_TYPES),
            (OFPTFPT_APPLY_ACTIONS, _ACTION_TYPES),
            (OFPTFPT_MATCH, _MATCH_FIELDS),
            (OFPTFPT_WILDCARDS, _MATCH_FIELDS),
            (OFPTFPT_WRITE_SETFIELD, _SET_FIELDS),
            (OFPTFPT_APPLY_SETFIELD, _SET_FIELDS))


# ---- ports and queues ---------------------------------------------------------

def _port_stats(ofproto, body, now):
    if body.port_no == OFPP_ANY:
        ports = [ofproto.ports[port_no] for port_no in sorted(ofproto.ports)]
    elif body.port_no in ofproto.ports:
        ports = [ofproto.ports[body.port_no]]
    else:
        raise OFPError(OFPET_BAD_REQUEST, OFPBRC_BAD_PORT)
    return tuple(PortStats(port.port_no,
                           *(getattr(port.dp_port, name, U64_MAX) for name in _PORT_COUNTERS),
                           *_duration(port.created, now))
                 for port in ports)


def _port_desc(ofproto, body, now):
    return tuple(ofproto.ports[port_no].desc() for port_no in sorted(ofproto.ports))


def _queue_stats(ofproto, body, now):
    if body.port_no != OFPP_ANY and body.port_no not in ofproto.ports:
        raise OFPError(OFPET_QUEUE_OP_FAILED, OFPQOFC_BAD_PORT)
    if body.queue_id != OFPQ_ALL:
        raise OFPError(OFPET_QUEUE_OP_FAILED, OFPQOFC_BAD_QUEUE)
    return ()


# ---- groups -------------------------------------------------------------------

def _selected_groups(groups, group_id):
    if group_id == OFPG_ALL:
        return list(groups)
    group = groups.get(group_id)
    return [] if group is None else [group]


def _group_stats(ofproto, body, now):
    ofproto.push_stats(now)
    chained = Counter(ref for group in ofproto.groups for ref in group.refs)
    by_group = ofproto.pipeline.by_group
    return tuple(
        GroupStats(group.group_id,
                   len(by_group.get(group.group_id, ())) + chained[group.group_id],
                   group.packet_count, group.byte_count, *_duration(group.created, now),
                   tuple(map(tuple, group.bucket_counts)))
        for group in _selected_groups(ofproto.groups, body.group_id))


def _group_desc(ofproto, body, now):
    return tuple(GroupDesc(group.type, group.group_id, group.buckets)
                 for group in ofproto.groups)


def _group_features(ofproto, body, now):
    return GroupFeatures(sum(1 << t for t in _GROUP_TYPES), _GROUP_CAPABILITIES,
                         (OFPG_MAX,) * len(_GROUP_TYPES), (_ACTION_BITMAP,) * len(_GROUP_TYPES))


# ---- meters -------------------------------------------------------------------

def _selected_meters(ofproto, meter_id):
    if meter_id == OFPM_ALL:
        return sorted(ofproto.meter_configs)
    return [meter_id] if meter_id in ofproto.meter_configs else []


def _meter_stats(ofproto, body, now):
    flow_counts = Counter(instruction[1]
                          for table in ofproto.pipeline.tables for rule in table.rules.values()
                          for instruction in rule.instructions if instruction[0] == 'meter')
    entries = []
    for meter_id in _selected_meters(ofproto, body.meter_id):
        stats = ofproto.dp.meters.stats(meter_id, now)
        if stats is None:           # configured but not (yet) in the datapath
            continue
        entries.append(MeterStats(
            meter_id, flow_counts[meter_id], stats['packet_in_count'], stats['byte_in_count'],
            *_duration(0.0, stats['duration']),
            tuple((band['packet_count'], band['byte_count']) for band in stats['bands'])))
    return tuple(entries)


def _meter_config(ofproto, body, now):
    configs = ofproto.meter_configs
    return tuple(MeterConfig(configs[meter_id].flags, meter_id, tuple(configs[meter_id].bands))
                 for meter_id in _selected_meters(ofproto, body.meter_id))


def _meter_features(ofproto, body, now):
    return MeterFeatures(MAX_METERS, 1 << OFPMBT_DROP, _METER_CAPABILITIES, MAX_BANDS, 0)


_REPLIES = {
    OFPMP_DESC: _desc,
    OFPMP_FLOW: _flow_stats,
    OFPMP_AGGREGATE: _aggregate_stats,
    OFPMP_TABLE: _table_stats,
    OFPMP_TABLE_FEATURES: _table_features,
    OFPMP_PORT_STATS: _port_stats,
    OFPMP_PORT_DESC: _port_desc,
    OFPMP_QUEUE: _queue_stats,
    OFPMP_GROUP: _group_stats,
    OFPMP_GROUP_DESC: _group_desc,
    OFPMP_GROUP_FEATURES: _group_features,
    OFPMP_METER: _meter_stats,
    OFPMP_METER_CONFIG: _meter_config,
    OFPMP_METER_FEATURES: _meter_features,
}
