"""Groups: group_mod semantics and errors, bucket choice, liveness."""

from collections import Counter
from types import SimpleNamespace

import pytest

from mnovs.dp.flow import make_key
from mnovs.ofagent.group import HASH_BITS, GroupTable, port_is_live
from mnovs.ofagent.match import field_bits
from mnovs.openflow.ofp import (
    OFP_NO_BUFFER, OFPBAC_BAD_OUT_GROUP, OFPET_BAD_ACTION, OFPET_GROUP_MOD_FAILED, OFPFC_ADD,
    OFPG_ALL, OFPG_ANY, OFPGC_ADD, OFPGC_DELETE, OFPGC_MODIFY, OFPGMFC_BAD_COMMAND,
    OFPGMFC_BAD_TYPE, OFPGMFC_BAD_WATCH, OFPGMFC_CHAINED_GROUP, OFPGMFC_GROUP_EXISTS,
    OFPGMFC_INVALID_GROUP, OFPGMFC_LOOP, OFPGMFC_UNKNOWN_GROUP, OFPGMFC_WATCH_UNSUPPORTED,
    OFPGT_ALL, OFPGT_FF, OFPGT_INDIRECT, OFPGT_SELECT, OFPP_ANY, OFPP_IN_PORT,
    OFPPC_PORT_DOWN, OFPPS_LINK_DOWN, OFPRR_GROUP_DELETE, OFPError)
from mnovs.ofagent.table import Pipeline


def bucket(*actions, weight=0, watch_port=OFPP_ANY, watch_group=OFPG_ANY):
    return SimpleNamespace(weight=weight, watch_port=watch_port, watch_group=watch_group,
                           actions=tuple(actions))


def out(port):
    return ('output', port, 0)


def group_mod(group_id, type=OFPGT_ALL, buckets=(), command=OFPGC_ADD):
    return SimpleNamespace(command=command, type=type, group_id=group_id, buckets=buckets)


def port(up=True, config=0, state=0):
    return SimpleNamespace(up=up, config=config, state=state)


@pytest.fixture
def env():
    groups = GroupTable()
    return groups, Pipeline(groups=groups)


def errors(env, gm):
    groups, pipeline = env
    with pytest.raises(OFPError) as err:
        groups.group_mod(gm, pipeline, 0.0)
    return err.value.type, err.value.code


def test_add_modify_delete(env):
    groups, pipeline = env
    assert groups.group_mod(group_mod(1, buckets=[bucket(out(1))]), pipeline, 5.0) == ([], False)
    assert 1 in groups and len(groups) == 1 and groups.get(1).created == 5.0
    groups.get(1).packet_count = 7
    modify = group_mod(1, OFPGT_INDIRECT, [bucket(out(2))], OFPGC_MODIFY)
    assert groups.group_mod(modify, pipeline, 6) == ([], True)
    group = groups.get(1)
    assert group.type == OFPGT_INDIRECT and group.packet_count == 7 and group.created == 5.0
    assert group.bucket_counts == [[0, 0]]
    assert groups.group_mod(group_mod(1, command=OFPGC_DELETE), pipeline, 0) == ([], True)
    assert 1 not in groups
    assert groups.group_mod(group_mod(1, command=OFPGC_DELETE), pipeline, 0) == ([], False)


@pytest.mark.parametrize('gm, code', [
    (group_mod(1, command=7), OFPGMFC_BAD_COMMAND),
    (group_mod(0xffffff01), OFPGMFC_INVALID_GROUP),
    (group_mod(2, command=OFPGC_MODIFY), OFPGMFC_UNKNOWN_GROUP),
    (group_mod(1), OFPGMFC_GROUP_EXISTS),
    (group_mod(2, type=9), OFPGMFC_BAD_TYPE),
    (group_mod(2, OFPGT_INDIRECT, [bucket(out(1)), bucket(out(2))]), OFPGMFC_INVALID_GROUP),
    (group_mod(2, OFPGT_INDIRECT, []), OFPGMFC_INVALID_GROUP),
    (group_mod(2, OFPGT_ALL, [bucket(out(1), weight=1)]), OFPGMFC_INVALID_GROUP),
    (group_mod(2, OFPGT_ALL, [bucket(out(1), watch_port=1)]), OFPGMFC_WATCH_UNSUPPORTED),
    (group_mod(2, OFPGT_FF, [bucket(out(1))]), OFPGMFC_INVALID_GROUP),
    (group_mod(2, OFPGT_FF, [bucket(out(1), watch_port=OFPP_IN_PORT)]), OFPGMFC_BAD_WATCH),
    (group_mod(2, OFPGT_FF, [bucket(out(1), watch_group=9)]), OFPGMFC_BAD_WATCH),
    (group_mod(2, OFPGT_ALL, [bucket(('group', 2))]), OFPGMFC_LOOP),
])
def test_group_mod_errors(env, gm, code):
    groups, pipeline = env
    groups.group_mod(group_mod(1, buckets=[bucket(out(1))]), pipeline, 0)
    assert errors(env, gm) == (OFPET_GROUP_MOD_FAILED, code)
    assert list(groups.groups) == [1]


def test_chaining_loops_and_chained_delete(env):
    groups, pipeline = env
    assert errors(env, group_mod(1, buckets=[bucket(('group', 2))])) \
        == (OFPET_BAD_ACTION, OFPBAC_BAD_OUT_GROUP)
    groups.group_mod(group_mod(2, buckets=[bucket(out(1))]), pipeline, 0)
    groups.group_mod(group_mod(1, buckets=[bucket(('group', 2))]), pipeline, 0)
    loop = group_mod(2, buckets=[bucket(('group', 1))], command=OFPGC_MODIFY)
    assert errors(env, loop) == (OFPET_GROUP_MOD_FAILED, OFPGMFC_LOOP)
    assert errors(env, group_mod(2, command=OFPGC_DELETE)) \
        == (OFPET_GROUP_MOD_FAILED, OFPGMFC_CHAINED_GROUP)
    groups.group_mod(group_mod(OFPG_ALL, command=OFPGC_DELETE), pipeline, 0)
    assert len(groups) == 0


def test_delete_removes_rules_that_use_the_group(env):
    groups, pipeline = env
    groups.group_mod(group_mod(1, buckets=[bucket(out(1))]), pipeline, 0)
    groups.group_mod(group_mod(2, buckets=[bucket(out(2))]), pipeline, 0)
    for in_port, group_id in ((1, 1), (2, 2), (3, 1)):
        fm = SimpleNamespace(
            cookie=in_port, cookie_mask=0, table_id=0, command=OFPFC_ADD, idle_timeout=0,
            hard_timeout=0, priority=1, buffer_id=OFP_NO_BUFFER, out_port=OFPP_ANY,
            out_group=OFPG_ANY, flags=0, match={'in_port': (in_port, None)},
            instructions=(('write_actions', (('group', group_id),)),))
        pipeline.flow_mod(fm, 0)
    removed, changed = groups.group_mod(group_mod(1, command=OFPGC_DELETE), pipeline, 0)
    assert changed and [(r.cookie, why) for r, why in removed] == \
        [(1, OFPRR_GROUP_DELETE), (3, OFPRR_GROUP_DELETE)]
    removed, _ = groups.group_mod(group_mod(OFPG_ALL, command=OFPGC_DELETE), pipeline, 0)
    assert [r.cookie for r, _ in removed] == [2] and not list(pipeline)


def test_port_liveness():
    assert port_is_live(port())
    assert not port_is_live(None)
    assert not port_is_live(port(up=False))
    assert not port_is_live(port(config=OFPPC_PORT_DOWN))
    assert not port_is_live(port(state=OFPPS_LINK_DOWN))


def test_fast_failover_takes_first_live_bucket(env):
    groups, pipeline = env
    groups.group_mod(group_mod(5, OFPGT_FF, [bucket(out(3), watch_port=3)]), pipeline, 0)
    buckets = [bucket(out(1), watch_port=1), bucket(out(2), watch_port=2),
               bucket(('group', 5), watch_group=5)]
    groups.group_mod(group_mod(1, OFPGT_FF, buckets), pipeline, 0)
    ports = {1: port(), 2: port(), 3: port()}
    group = groups.get(1)
    assert groups.choose(group, 0, ports) == ((0,), 0)
    ports[1].up = False
    assert groups.choose(group, 0, ports) == ((1,), 0)
    ports[2].state = OFPPS_LINK_DOWN
    assert groups.choose(group, 0, ports) == ((2,), 0)
    ports[3].config = OFPPC_PORT_DOWN
    assert groups.choose(group, 0, ports) == ((), 0)


def test_all_and_indirect(env):
    groups, pipeline = env
    groups.group_mod(group_mod(1, OFPGT_ALL, [bucket(out(1)), bucket(out(2))]), pipeline, 0)
    groups.group_mod(group_mod(2, OFPGT_INDIRECT, [bucket(out(1))]), pipeline, 0)
    assert list(groups.choose(groups.get(1), 0, {})[0]) == [0, 1]
    assert groups.choose(groups.get(2), 0, {}) == ((0,), 0)


def flows(n):
    for i in range(n):
        key = make_key(eth_type=0x800, nw_src=0x0a000000 + i, nw_dst=0x0a0000ff, nw_proto=6,
                       tp_src=1000 + i, tp_dst=80, in_port=1)
        yield int.from_bytes(key, 'big')


def test_select_hashes_the_flow_with_weights(env):
    groups, pipeline = env
    buckets = [bucket(out(1), weight=1), bucket(out(2), weight=3), bucket(out(3), weight=0)]
    groups.group_mod(group_mod(1, OFPGT_SELECT, buckets), pipeline, 0)
    group = groups.get(1)
    ports = {}
    counts = Counter()
    for flow in flows(2000):
        (index,), consulted = groups.choose(group, flow, ports)
        assert consulted == HASH_BITS
        assert groups.choose(group, flow, ports)[0] == (index,)    # deterministic
        counts[index] += 1
    assert set(counts) == {0, 1} and 0.6 < counts[1] / 2000 < 0.9
    assert not HASH_BITS & (field_bits('in_port') | field_bits('nw_ttl'))
    flow = next(flows(1))
    assert groups.choose(group, flow, ports) == \
        groups.choose(group, flow ^ field_bits('nw_ttl') ^ field_bits('in_port'), ports)


def test_select_liveness_and_zero_weights(env):
    groups, pipeline = env
    buckets = [bucket(out(1), weight=1, watch_port=1), bucket(out(2), weight=1, watch_port=2)]
    groups.group_mod(group_mod(1, OFPGT_SELECT, buckets), pipeline, 0)
    ports = {1: port(), 2: port(up=False)}
    assert {groups.choose(groups.get(1), f, ports) for f in flows(50)} == {((0,), 0)}
    ports[1].up = False
    assert groups.choose(groups.get(1), 0, ports) == ((), 0)
    groups.group_mod(group_mod(2, OFPGT_SELECT, [bucket(out(1)), bucket(out(2))]), pipeline, 0)
    assert {groups.choose(groups.get(2), f, ports)[0] for f in flows(200)} == {(0,), (1,)}
