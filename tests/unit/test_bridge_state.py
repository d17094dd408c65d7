"""bridge_state: the bridge/apply document and the port plan (pure functions)."""

import json

import pytest

from mnovs.bridge_state import PortSpec, parse_desired, plan_ports
from mnovs.dp.datapath import LOCAL_PORT


def doc(**fields):
    base = {'datapath_id': None, 'fail_mode': 'secure', 'protocols': [], 'controllers': [],
            'controller_rate_limit': None, 'controller_burst_limit': None, 'ports': []}
    base.update(fields)
    return json.dumps(base)


def spec(name, kind='', request=None):
    return PortSpec(name, kind, request)


# --- parse_desired --------------------------------------------------------------

def test_a_full_document_parses():
    desired = parse_desired(doc(
        datapath_id='00000000000000ab', fail_mode='standalone', protocols=['OpenFlow13'],
        controllers=['tcp:127.0.0.1:6653', 'ptcp:6654'],
        ports=[{'name': 's1', 'type': 'internal', 'ofport_request': None},
               {'name': 's1-eth1', 'type': '', 'ofport_request': 1}]))
    assert desired.datapath_id == 0xab
    assert desired.fail_mode == 'standalone'
    assert desired.controllers == ['tcp:127.0.0.1:6653', 'ptcp:6654']
    assert desired.ports == [spec('s1', 'internal'), spec('s1-eth1', '', 1)]


def test_null_datapath_id_and_missing_fail_mode_keep_ovs_defaults():
    desired = parse_desired('{"ports": []}')
    assert desired.datapath_id is None
    assert desired.fail_mode == 'standalone'


@pytest.mark.parametrize('text, words', [
    ('{bad', 'not JSON'),
    ('[]', 'JSON object'),
    (doc(datapath_id='12'), 'datapath_id'),
    (doc(datapath_id='zz00000000000000'), 'datapath_id'),
    (doc(fail_mode='open'), 'fail_mode'),
    (doc(controllers='tcp:1.2.3.4'), 'controllers'),
    (doc(controller_rate_limit=-1), 'controller_rate_limit'),
    (doc(ports={}), 'ports'),
    (doc(ports=[{'type': ''}]), 'port'),
    (doc(ports=[{'name': 'p', 'type': 'vxlan'}]), 'unsupported type "vxlan"'),
    (doc(ports=[{'name': 'p', 'ofport_request': 0}]), 'ofport_request'),
    (doc(ports=[{'name': 'p', 'ofport_request': 65280}]), 'ofport_request'),
    (doc(ports=[{'name': 'p'}, {'name': 'p'}]), 'twice'),
])
def test_a_bad_document_is_refused_in_one_line(text, words):
    with pytest.raises(ValueError) as info:
        parse_desired(text)
    assert words in str(info.value) and '\n' not in str(info.value)


# --- plan_ports ---------------------------------------------------------------------

def test_nothing_to_do_when_current_is_desired():
    current = {'s1': ('internal', LOCAL_PORT), 'a': ('', 1), 'b': ('', 2)}
    wanted = [spec('s1', 'internal'), spec('a', '', 1), spec('b')]
    assert plan_ports(current, wanted, 's1') == ([], [])


def test_new_ports_are_added_and_unwanted_ones_deleted():
    current = {'a': ('', 1), 'old': ('', 2)}
    wanted = [spec('s1', 'internal'), spec('a'), spec('new')]
    deletes, adds = plan_ports(current, wanted, 's1')
    assert deletes == ['old']
    assert adds == [(spec('s1', 'internal'), LOCAL_PORT), (spec('new'), None)]


def test_a_changed_ofport_request_renumbers_by_delete_and_add():
    current = {'a': ('', 1), 'b': ('', 2)}
    deletes, adds = plan_ports(current, [spec('a', '', 7), spec('b')], 's1')
    assert deletes == ['a']
    assert adds == [(spec('a', '', 7), 7)]


def test_the_local_port_ignores_ofport_request():
    current = {'s1': ('internal', LOCAL_PORT)}
    assert plan_ports(current, [spec('s1', 'internal', 5)], 's1') == ([], [])


def test_a_port_holding_a_requested_number_moves_to_a_free_one():
    current = {'a': ('', 1), 'b': ('', 2)}
    wanted = [spec('a'), spec('b', '', 1)]
    deletes, adds = plan_ports(current, wanted, 's1')
    assert sorted(deletes) == ['a', 'b']
    # The requested number first, so that the free pick cannot take it.
    assert adds == [(spec('b', '', 1), 1), (spec('a'), None)]


def test_of_two_requests_for_one_number_the_first_wins():
    deletes, adds = plan_ports({}, [spec('a', '', 3), spec('b', '', 3)], 's1')
    assert adds == [(spec('a', '', 3), 3), (spec('b', '', 3), None)]


def test_a_type_change_re_creates_the_port():
    current = {'p0': ('', 1)}
    deletes, adds = plan_ports(current, [spec('p0', 'internal')], 's1')
    assert deletes == ['p0'] and adds == [(spec('p0', 'internal'), None)]


def test_a_port_that_failed_before_is_tried_again():
    # It is wanted and not running: the plan adds it at every apply.
    current = {'a': ('', 1)}
    deletes, adds = plan_ports(current, [spec('a'), spec('missing', '', 4)], 's1')
    assert deletes == [] and adds == [(spec('missing', '', 4), 4)]
