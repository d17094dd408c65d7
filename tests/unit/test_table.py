"""Flow tables: every flow_mod command and flag, errors, timeouts, lookup."""

from types import SimpleNamespace

import pytest

from mnovs.dp.flow import make_key
from mnovs.ofagent.group import GroupTable
from mnovs.ofagent.match import compile_match, field_bits
from mnovs.openflow.ofp import (
    OFP_NO_BUFFER, OFPBAC_BAD_OUT_GROUP, OFPBAC_BAD_OUT_PORT, OFPBAC_BAD_SET_ARGUMENT,
    OFPBAC_BAD_SET_TYPE, OFPBIC_BAD_TABLE_ID, OFPBIC_UNSUP_INST,
    OFPBMC_BAD_PREREQ, OFPET_BAD_ACTION, OFPET_BAD_INSTRUCTION, OFPET_BAD_MATCH,
    OFPET_FLOW_MOD_FAILED, OFPET_METER_MOD_FAILED, OFPFC_ADD, OFPFC_DELETE,
    OFPFC_DELETE_STRICT, OFPFC_MODIFY, OFPFC_MODIFY_STRICT, OFPFF_CHECK_OVERLAP,
    OFPFF_RESET_COUNTS, OFPFF_SEND_FLOW_REM, OFPFMFC_BAD_COMMAND, OFPFMFC_BAD_FLAGS,
    OFPFMFC_BAD_TABLE_ID, OFPFMFC_OVERLAP, OFPFMFC_TABLE_FULL, OFPG_ANY,
    OFPMMFC_UNKNOWN_METER, OFPP_ANY, OFPP_CONTROLLER, OFPP_TABLE, OFPRR_DELETE,
    OFPRR_HARD_TIMEOUT, OFPRR_IDLE_TIMEOUT, OFPTT_ALL, OFPError)
from mnovs.ofagent.table import Pipeline, check_actions


def flow_mod(command=OFPFC_ADD, table_id=0, priority=100, match=None, actions=(),
             instructions=None, cookie=0, cookie_mask=0, flags=0, idle_timeout=0,
             hard_timeout=0, out_port=OFPP_ANY, out_group=OFPG_ANY):
    if instructions is None:
        instructions = (('apply_actions', tuple(actions)),) if actions else ()
    return SimpleNamespace(
        cookie=cookie, cookie_mask=cookie_mask, table_id=table_id, command=command,
        idle_timeout=idle_timeout, hard_timeout=hard_timeout, priority=priority,
        buffer_id=OFP_NO_BUFFER, out_port=out_port, out_group=out_group, flags=flags,
        match=match or {}, instructions=instructions)


def out(port):
    return ('output', port, 0xffff)


def port_match(port):
    return {'in_port': (port, None)}


def ext(**fields):
    return int.from_bytes(make_key(**fields), 'big')


def errors(pipeline, fm):
    with pytest.raises(OFPError) as err:
        pipeline.flow_mod(fm, 0.0)
    return err.value.type, err.value.code


@pytest.fixture
def pipe():
    return Pipeline(groups=GroupTable())


def test_add_and_lookup(pipe):
    removed, changed = pipe.flow_mod(flow_mod(match=port_match(1), actions=[out(2)]), 1.0)
    assert (removed, changed) == ([], True)
    rule, consulted = pipe.lookup(0, ext(in_port=1))
    assert rule.priority == 100 and rule.created == 1.0
    assert consulted == field_bits('in_port')
    assert pipe.lookup(0, ext(in_port=2))[0] is None


def test_add_identical_replaces_keeping_counters(pipe):
    pipe.flow_mod(flow_mod(match=port_match(1), actions=[out(2)], cookie=1), 0.0)
    old = pipe.lookup(0, ext(in_port=1))[0]
    old.packet_count, old.byte_count = 5, 500
    pipe.flow_mod(flow_mod(match=port_match(1), actions=[out(3)], cookie=2), 7.0)
    new = pipe.lookup(0, ext(in_port=1))[0]
    assert new is not old and len(pipe.tables[0]) == 1
    assert (new.cookie, new.packet_count, new.byte_count, new.created) == (2, 5, 500, 7.0)
    pipe.flow_mod(flow_mod(match=port_match(1), actions=[out(3)], flags=OFPFF_RESET_COUNTS), 8)
    assert pipe.lookup(0, ext(in_port=1))[0].packet_count == 0
    pipe.flow_mod(flow_mod(match=port_match(1), priority=5, actions=[out(4)]), 0.0)
    assert len(pipe.tables[0]) == 2


def test_priority_and_ties(pipe):
    pipe.flow_mod(flow_mod(priority=1, actions=[out(1)]), 0)
    pipe.flow_mod(flow_mod(priority=10, match=port_match(1), actions=[out(2)]), 0)
    pipe.flow_mod(flow_mod(priority=5, match={'eth_type': (0x800, None)}, actions=[out(3)]), 0)
    assert pipe.lookup(0, ext(in_port=1, eth_type=0x800))[0].priority == 10
    assert pipe.lookup(0, ext(in_port=2, eth_type=0x800))[0].priority == 5
    assert pipe.lookup(0, ext(in_port=2))[0].priority == 1


def test_check_overlap(pipe):
    pipe.flow_mod(flow_mod(match=port_match(1), actions=[out(2)]), 0)
    ip = {'eth_type': (0x800, None)}
    assert errors(pipe, flow_mod(match=ip, flags=OFPFF_CHECK_OVERLAP)) \
        == (OFPET_FLOW_MOD_FAILED, OFPFMFC_OVERLAP)
    assert errors(pipe, flow_mod(match=port_match(1), flags=OFPFF_CHECK_OVERLAP)) \
        == (OFPET_FLOW_MOD_FAILED, OFPFMFC_OVERLAP)
    pipe.flow_mod(flow_mod(match=ip, priority=99, flags=OFPFF_CHECK_OVERLAP), 0)
    pipe.flow_mod(flow_mod(match=port_match(2), flags=OFPFF_CHECK_OVERLAP), 0)
    assert len(pipe.tables[0]) == 3


def test_table_full_and_bad_table(pipe):
    pipe.tables[3].max_rules = 1
    pipe.flow_mod(flow_mod(table_id=3, match=port_match(1)), 0)
    pipe.flow_mod(flow_mod(table_id=3, match=port_match(1), actions=[out(2)]), 0)  # replace
    assert errors(pipe, flow_mod(table_id=3, match=port_match(2))) \
        == (OFPET_FLOW_MOD_FAILED, OFPFMFC_TABLE_FULL)
    assert errors(pipe, flow_mod(table_id=254)) == (OFPET_FLOW_MOD_FAILED, OFPFMFC_BAD_TABLE_ID)
    assert errors(pipe, flow_mod(table_id=OFPTT_ALL)) \
        == (OFPET_FLOW_MOD_FAILED, OFPFMFC_BAD_TABLE_ID)
    assert errors(pipe, flow_mod(command=OFPFC_DELETE, table_id=254)) \
        == (OFPET_FLOW_MOD_FAILED, OFPFMFC_BAD_TABLE_ID)


def test_bad_requests(pipe):
    assert errors(pipe, flow_mod(command=9)) == (OFPET_FLOW_MOD_FAILED, OFPFMFC_BAD_COMMAND)
    assert errors(pipe, flow_mod(flags=0x80)) == (OFPET_FLOW_MOD_FAILED, OFPFMFC_BAD_FLAGS)
    assert errors(pipe, flow_mod(match={'tcp_dst': (80, None)})) \
        == (OFPET_BAD_MATCH, OFPBMC_BAD_PREREQ)
    goto = (('goto_table', 3),)
    assert errors(pipe, flow_mod(table_id=3, instructions=goto)) \
        == (OFPET_BAD_INSTRUCTION, OFPBIC_BAD_TABLE_ID)
    assert errors(pipe, flow_mod(instructions=(('goto_table', 254),))) \
        == (OFPET_BAD_INSTRUCTION, OFPBIC_BAD_TABLE_ID)
    twice = (('clear_actions',), ('clear_actions',))
    assert errors(pipe, flow_mod(instructions=twice)) == (OFPET_BAD_INSTRUCTION, OFPBIC_UNSUP_INST)
    assert errors(pipe, flow_mod(actions=[('group', 7)])) \
        == (OFPET_BAD_ACTION, OFPBAC_BAD_OUT_GROUP)
    assert errors(pipe, flow_mod(actions=[out(OFPP_TABLE)])) \
        == (OFPET_BAD_ACTION, OFPBAC_BAD_OUT_PORT)
    for field in ('eth_type', 'ip_proto'):       # the codec accepts them; we refuse
        assert errors(pipe, flow_mod(actions=[('set_field', field, 6)])) \
            == (OFPET_BAD_ACTION, OFPBAC_BAD_SET_TYPE)
    assert errors(pipe, flow_mod(actions=[('set_field', 'arp_op', 300)])) \
        == (OFPET_BAD_ACTION, OFPBAC_BAD_SET_ARGUMENT)
    assert not any(len(table) for table in pipe.tables)


def test_meter_must_exist():
    pipe = Pipeline(meter_exists=lambda meter_id: meter_id == 1)
    pipe.flow_mod(flow_mod(instructions=(('meter', 1),)), 0)
    assert errors(pipe, flow_mod(instructions=(('meter', 2),), priority=1)) \
        == (OFPET_METER_MOD_FAILED, OFPMMFC_UNKNOWN_METER)


def test_check_actions_packet_out():
    check_actions((out(OFPP_TABLE),), None, packet_out=True)
    with pytest.raises(OFPError):
        check_actions((out(OFPP_TABLE),), None)


def test_program_runs_in_spec_order(pipe):
    instructions = (('goto_table', 1), ('write_metadata', 1, 1),
                    ('apply_actions', (out(1),)), ('meter', 3))
    pipe.flow_mod(flow_mod(instructions=instructions), 0)
    rule = next(iter(pipe))
    assert [i[0] for i in rule.program] == ['meter', 'apply_actions', 'write_metadata',
                                            'goto_table']
    assert rule.instructions == instructions


def add_three(pipe):
    pipe.flow_mod(flow_mod(priority=10, match=port_match(1), actions=[out(2)], cookie=0x11), 0)
    pipe.flow_mod(flow_mod(priority=20, match={**port_match(1), 'eth_type': (0x800, None)},
                           actions=[out(3)], cookie=0x21), 0)
    pipe.flow_mod(flow_mod(table_id=1, priority=10, match=port_match(2),
                           actions=[out(OFPP_CONTROLLER)], cookie=0x12), 0)


def test_modify_non_strict_and_strict(pipe):
    add_three(pipe)
    new = (('apply_actions', (out(4),)),)
    removed, changed = pipe.flow_mod(flow_mod(command=OFPFC_MODIFY, match=port_match(1),
                                              instructions=new, cookie=0x99), 0)
    assert (removed, changed) == ([], True)
    rules = [r for r in pipe if r.table_id == 0]
    assert all(r.instructions == new for r in rules)
    assert {r.cookie for r in rules} == {0x11, 0x21}     # OF1.3: cookie unchanged
    strict = flow_mod(command=OFPFC_MODIFY_STRICT, match=port_match(1), priority=10,
                      instructions=(('apply_actions', (out(5),)),))
    pipe.flow_mod(strict, 0)
    assert {r.priority: r.out_ports for r in rules} == {10: {5}, 20: {4}}
    nothing = flow_mod(command=OFPFC_MODIFY, match=port_match(9), actions=[out(1)])
    assert pipe.flow_mod(nothing, 0) == ([], False)          # no add in OF1.3
    assert len(pipe.tables[0]) == 2


def test_modify_cookie_filter_and_reset_counts(pipe):
    add_three(pipe)
    for rule in pipe:
        rule.packet_count = 3
    fm = flow_mod(command=OFPFC_MODIFY, table_id=OFPTT_ALL, cookie=0x01, cookie_mask=0x0f,
                  actions=[out(6)], flags=OFPFF_RESET_COUNTS)
    pipe.flow_mod(fm, 0)
    assert {r.cookie: (r.out_ports, r.packet_count) for r in pipe} == {
        0x11: ({6}, 0), 0x21: ({6}, 0), 0x12: ({OFPP_CONTROLLER}, 3)}


def test_delete_filters(pipe):
    add_three(pipe)
    removed, changed = pipe.flow_mod(flow_mod(command=OFPFC_DELETE, table_id=OFPTT_ALL,
                                              out_port=3), 0)
    assert [(r.cookie, reason) for r, reason in removed] == [(0x21, OFPRR_DELETE)] and changed
    removed, _ = pipe.flow_mod(flow_mod(command=OFPFC_DELETE, table_id=OFPTT_ALL,
                                        cookie=0x02, cookie_mask=0x0f), 0)
    assert [r.cookie for r, _ in removed] == [0x12]
    assert pipe.flow_mod(flow_mod(command=OFPFC_DELETE, table_id=0, priority=11,
                                  match=port_match(1)), 0)[0][0][0].cookie == 0x11


def test_delete_strict(pipe):
    add_three(pipe)
    fm = flow_mod(command=OFPFC_DELETE_STRICT, match=port_match(1), priority=20)
    assert pipe.flow_mod(fm, 0) == ([], False)              # match differs
    fm = flow_mod(command=OFPFC_DELETE_STRICT, match=port_match(1), priority=10)
    removed, _ = pipe.flow_mod(fm, 0)
    assert [r.cookie for r, _ in removed] == [0x11]
    assert pipe.lookup(0, ext(in_port=1))[0] is None
    assert pipe.lookup(0, ext(in_port=1, eth_type=0x800))[0].cookie == 0x21


def test_delete_all_and_select_stats(pipe):
    add_three(pipe)
    assert [r.cookie for r in pipe.select(OFPTT_ALL, {})] == [0x21, 0x11, 0x12]
    assert [r.cookie for r in pipe.select(0, {'eth_type': (0x800, None)})] == [0x21]
    removed, _ = pipe.flow_mod(flow_mod(command=OFPFC_DELETE, table_id=OFPTT_ALL), 0)
    assert len(removed) == 3 and not list(pipe)
    assert pipe.flow_mod(flow_mod(command=OFPFC_DELETE, table_id=OFPTT_ALL), 0) == ([], False)


def test_timeouts(pipe):
    pipe.flow_mod(flow_mod(match=port_match(1), idle_timeout=10, flags=OFPFF_SEND_FLOW_REM), 0)
    pipe.flow_mod(flow_mod(match=port_match(2), hard_timeout=15, idle_timeout=5), 0)
    pipe.flow_mod(flow_mod(match=port_match(3)), 0)
    assert pipe.expire(4.9) == []
    idle = pipe.lookup(0, ext(in_port=1))[0]
    idle.last_used = 8.0
    removed = pipe.expire(12.0)
    assert [(r.match, reason) for r, reason in removed] == [(port_match(2), OFPRR_IDLE_TIMEOUT)]
    assert pipe.expire(17.9) == []
    removed = pipe.expire(18.0)
    assert [(r.match, reason) for r, reason in removed] == [(port_match(1), OFPRR_IDLE_TIMEOUT)]
    pipe.flow_mod(flow_mod(match=port_match(4), hard_timeout=2, idle_timeout=10), 20.0)
    rule = pipe.lookup(0, ext(in_port=4))[0]
    rule.last_used = 21.9
    assert [reason for _, reason in pipe.expire(22.0)] == [OFPRR_HARD_TIMEOUT]
    assert len(pipe.tables[0]) == 1 and not pipe.timed


def test_lookup_consults_only_needed_stages(pipe):
    tcp80 = {'eth_type': (0x800, None), 'ip_proto': (6, None), 'tcp_dst': (80, None)}
    pipe.flow_mod(flow_mod(priority=10, match=tcp80, actions=[out(1)]), 0)
    pipe.flow_mod(flow_mod(priority=0, actions=[out(2)]), 0)
    rule, consulted = pipe.lookup(0, ext(eth_type=0x800, nw_proto=17, tp_dst=80))
    assert rule.priority == 0
    assert consulted & field_bits('nw_proto') and not consulted & field_bits('tp_dst')
    rule, consulted = pipe.lookup(0, ext(eth_type=0x806))
    assert consulted & field_bits('eth_type')
    assert not consulted & (field_bits('nw_proto') | field_bits('tp_dst'))
    rule, consulted = pipe.lookup(0, ext(eth_type=0x800, nw_proto=6, tp_dst=80))
    assert rule.priority == 10 and consulted & field_bits('tp_dst')


def test_lookup_skips_subtables_that_cannot_win(pipe):
    pipe.flow_mod(flow_mod(priority=100, match=port_match(1), actions=[out(2)]), 0)
    pipe.flow_mod(flow_mod(priority=50, match={'eth_dst': (0x0a, None)}, actions=[out(3)]), 0)
    rule, consulted = pipe.lookup(0, ext(in_port=1, eth_dst=0x0a))
    assert rule.priority == 100 and consulted == field_bits('in_port')
    rule, consulted = pipe.lookup(0, ext(in_port=2, eth_dst=0x0a))
    assert rule.priority == 50 and consulted == field_bits('in_port') | field_bits('eth_dst')


def test_lookup_metadata(pipe):
    pipe.flow_mod(flow_mod(table_id=1, match={'metadata': (5, None)}, actions=[out(1)]), 0)
    value, _ = compile_match({'metadata': (5, None)})
    assert pipe.lookup(1, value)[0] is not None
    assert pipe.lookup(1, 0)[0] is None


def test_group_references(pipe):
    groups = pipe.groups
    groups.groups[1] = SimpleNamespace(group_id=1)
    pipe.flow_mod(flow_mod(match=port_match(1), actions=[('group', 1)]), 0)
    pipe.flow_mod(flow_mod(match=port_match(2), actions=[out(1)]), 0)
    assert [len(v) for v in pipe.by_group.values()] == [1]
    assert [r.match for r in pipe.select(OFPTT_ALL, {}, out_group=1)] == [port_match(1)]
    removed = pipe.delete_group_rules([1])
    assert [r.match for r, _ in removed] == [port_match(1)] and not pipe.by_group
