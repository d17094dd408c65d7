"""bridge_state: the bridge/apply document and the port plan (pure functions)."""

import errno
import json
import os
from types import SimpleNamespace

import pytest

from mnovs.bridge_state import BridgeState, PortSpec, parse_desired, plan_ports
from mnovs.dp.datapath import LOCAL_PORT
from mnovs.ofagent.bond import Bonds
from mnovs.ofagent.recirc import RecircTable


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
    (doc(ports=[{'name': 'p', 'type': 'gre'}]), 'unsupported type "gre"'),
    (doc(ports=[{'name': 'p', 'type': 'vxlan', 'options': {'key': 1}}]), 'options: expected'),
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
    current = {'s1': ('internal', (), LOCAL_PORT), 'a': ('', (), 1), 'b': ('', (), 2)}
    wanted = [spec('s1', 'internal'), spec('a', '', 1), spec('b')]
    assert plan_ports(current, wanted, 's1') == ([], [])


def test_new_ports_are_added_and_unwanted_ones_deleted():
    current = {'a': ('', (), 1), 'old': ('', (), 2)}
    wanted = [spec('s1', 'internal'), spec('a'), spec('new')]
    deletes, adds = plan_ports(current, wanted, 's1')
    assert deletes == ['old']
    assert adds == [(spec('s1', 'internal'), LOCAL_PORT), (spec('new'), None)]


def test_a_changed_ofport_request_renumbers_by_delete_and_add():
    current = {'a': ('', (), 1), 'b': ('', (), 2)}
    deletes, adds = plan_ports(current, [spec('a', '', 7), spec('b')], 's1')
    assert deletes == ['a']
    assert adds == [(spec('a', '', 7), 7)]


def test_the_local_port_ignores_ofport_request():
    current = {'s1': ('internal', (), LOCAL_PORT)}
    assert plan_ports(current, [spec('s1', 'internal', 5)], 's1') == ([], [])


def test_a_port_holding_a_requested_number_moves_to_a_free_one():
    current = {'a': ('', (), 1), 'b': ('', (), 2)}
    wanted = [spec('a'), spec('b', '', 1)]
    deletes, adds = plan_ports(current, wanted, 's1')
    assert sorted(deletes) == ['a', 'b']
    # The requested number first, so that the free pick cannot take it.
    assert adds == [(spec('b', '', 1), 1), (spec('a'), None)]


def test_of_two_requests_for_one_number_the_first_wins():
    _, adds = plan_ports({}, [spec('a', '', 3), spec('b', '', 3)], 's1')
    assert adds == [(spec('a', '', 3), 3), (spec('b', '', 3), None)]


def test_a_type_change_re_creates_the_port():
    current = {'p0': ('', (), 1)}
    deletes, adds = plan_ports(current, [spec('p0', 'internal')], 's1')
    assert deletes == ['p0'] and adds == [(spec('p0', 'internal'), None)]


def test_a_port_that_failed_before_is_tried_again():
    # It is wanted and not running: the plan adds it at every apply.
    current = {'a': ('', (), 1)}
    deletes, adds = plan_ports(current, [spec('a'), spec('missing', '', 4)], 's1')
    assert deletes == [] and adds == [(spec('missing', '', 4), 4)]


# --- BridgeState over a fake switch ---------------------------------------------------

class FakePort:
    tunnel = None

    def __init__(self, name, port_no):
        self.name, self.port_no = name, port_no
        self.rx_packets = self.rx_bytes = self.rx_dropped = self.rx_errors = 0
        self.tx_packets = self.tx_bytes = self.tx_dropped = 0


class FakeSwitch:
    """What BridgeState uses of a VSwitchd; interfaces exist when listed in `present`."""

    def __init__(self, present):
        self.name = 'ut1'
        self.present = set(present)
        self.calls = []
        self.dp = SimpleNamespace(ports={}, port_by_name=self.port_by_name)
        self.ofproto = SimpleNamespace(dpid=1, targets=[], channels=set(), sflow=None,
                                       bonds=Bonds(RecircTable(), send=None))
        self.mgmt_target = 'punix:/nowhere/ut1.mgmt'

    def port_by_name(self, name):
        return next((p for p in self.dp.ports.values() if p.name == name), None)

    def add_port(self, name, port_no=None, port_type='', tunnel=None):
        if name not in self.present:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        port_no = port_no or max(self.dp.ports, default=0) + 1
        port = self.dp.ports[port_no] = FakePort(name, port_no)
        port.tunnel, port.kind = tunnel, port_type
        self.calls.append(('add', name, port_no))

    def del_port(self, name):
        del self.dp.ports[self.port_by_name(name).port_no]
        self.calls.append(('del', name))

    def set_datapath_id(self, dpid):
        self.ofproto.dpid = dpid

    def set_fail_mode(self, fail_mode):
        self.calls.append(('fail_mode', fail_mode))

    def set_controllers(self, targets):
        return {t: 'Connection refused' for t in targets if 'bad' in t}

    def set_controller_limits(self, rate_limit, burst_limit):
        self.calls.append(('limits', rate_limit, burst_limit))

    def set_sflow(self, options):
        self.sflow_options = options


def test_apply_reports_a_missing_interface_and_retries_it_when_it_appears():
    switch = FakeSwitch(present={'ut1-eth1'})
    state = BridgeState(switch)
    state.apply(doc(datapath_id='00000000000000ab', controllers=['tcp:127.0.0.1:1', 'bad'],
                    ports=[{'name': 'ut1-eth1', 'ofport_request': 1},
                           {'name': 'ut1-nosuch', 'ofport_request': 2}]))
    status = json.loads(state.status())
    assert status['datapath_id'] == '00000000000000ab'
    assert status['ports']['ut1-eth1']['ofport'] == 1
    assert status['ports']['ut1-eth1']['error'] is None
    assert status['ports']['ut1-nosuch'] == {
        'ofport': -1, 'error': 'could not open network device ut1-nosuch (No such device)'}
    assert status['controllers']['bad']['error'] == 'Connection refused'
    state.port_may_exist('ut1-other')               # not a port it waits for
    assert switch.calls[-1] == ('limits', None, None)
    switch.present.add('ut1-nosuch')
    state.port_may_exist('ut1-nosuch')
    assert switch.calls[-1] == ('add', 'ut1-nosuch', 2)
    assert json.loads(state.status())['ports']['ut1-nosuch']['error'] is None


def test_a_vanished_interface_of_a_wanted_port_gets_the_error():
    switch = FakeSwitch(present={'ut1-eth1'})
    state = BridgeState(switch)
    state.apply(doc(ports=[{'name': 'ut1-eth1'}]))
    switch.del_port('ut1-eth1')                     # the vswitchd saw RTM_DELLINK
    state.port_vanished('ut1-eth1')
    state.port_vanished('ut1-unwanted')
    status = json.loads(state.status())['ports']
    assert status == {'ut1-eth1': {
        'ofport': -1, 'error': 'could not open network device ut1-eth1 (No such device)'}}


def test_a_bad_document_changes_nothing():
    switch = FakeSwitch(present={'ut1-eth1'})
    state = BridgeState(switch)
    with pytest.raises(ValueError):
        state.apply(doc(fail_mode='sometimes', ports=[{'name': 'ut1-eth1'}]))
    assert switch.calls == []


# --- tunnel ports ------------------------------------------------------------------

def test_a_tunnel_port_gets_its_config_and_an_options_change_re_creates_it():
    switch = FakeSwitch(present={'vx1'})
    added = []
    add = switch.add_port
    switch.add_port = lambda name, port_no=None, port_type='', tunnel=None: (
        added.append((name, port_type, tunnel)), add(name, port_no, port_type, tunnel))
    state = BridgeState(switch)
    vx = {'name': 'vx1', 'type': 'vxlan', 'options': {'remote_ip': '10.0.0.2', 'key': '42'}}
    state.apply(doc(ports=[vx]))
    assert added[-1][2].remote_ip == bytes((10, 0, 0, 2)) and added[-1][2].in_key == 42
    state.apply(doc(ports=[vx]))
    assert len(added) == 1                                  # same options: left alone
    vx['options']['key'] = '43'
    state.apply(doc(ports=[vx]))
    assert ('del', 'vx1') in switch.calls and added[-1][2].in_key == 43


def test_tunnel_option_errors_are_ovs_words_in_the_interface_error():
    switch = FakeSwitch(present={'vx1', 'vx2'})
    state = BridgeState(switch)
    state.apply(doc(ports=[{'name': 'vx1', 'type': 'vxlan', 'options': {'key': '1'}},
                           {'name': 'vx2', 'type': 'vxlan',
                            'options': {'remote_ip': '10.0.0.2', 'ttl': 'x'}}]))
    ports = json.loads(state.status())['ports']
    assert ports['vx1'] == {'ofport': -1,
                            'error': "vx1: vxlan type requires valid 'remote_ip' argument"}
    assert ports['vx2']['error'] == "vx2: bad ttl 'x': expected a number"


def test_a_tunnel_socket_that_cannot_be_bound_is_the_interface_error():
    switch = FakeSwitch(present=set())

    def add_port(name, port_no=None, port_type='', tunnel=None):
        raise OSError(errno.EADDRINUSE, 'could not bind the VXLAN socket to 0.0.0.0:4789 '
                                        '(Address already in use)')
    switch.add_port = add_port
    state = BridgeState(switch)
    state.apply(doc(ports=[{'name': 'vx1', 'type': 'vxlan',
                            'options': {'remote_ip': '10.0.0.2'}}]))
    assert json.loads(state.status())['ports']['vx1']['error'] == (
        'vx1: could not bind the VXLAN socket to 0.0.0.0:4789 (Address already in use)')


def test_the_sflow_entry_is_parsed_and_applied():
    desired = parse_desired(doc(sflow={'targets': ['127.0.0.1'], 'sampling': 64}))
    assert (desired.sflow.targets, desired.sflow.sampling, desired.sflow.polling) == \
        (('127.0.0.1',), 64, 30)
    assert parse_desired(doc()).sflow is None
    with pytest.raises(ValueError, match='sflow: targets'):
        parse_desired(doc(sflow={'targets': 'x'}))
    switch = FakeSwitch(present=())
    BridgeState(switch).apply(doc(sflow={'targets': ['127.0.0.1:1']}))
    assert switch.sflow_options.targets == ('127.0.0.1:1',)
