"""Desired state of a bridge from IDL-like rows; status back as columns; dpid; argv."""

import json
from types import SimpleNamespace as Row

from mnovs import bridge_db, paths
from mnovs.bridge_db import (desired_state, interface_columns, pick_datapath_id,
                                vswitchd_argv)


def iface(name, type_='', ofport_request=(), options=None):
    return Row(name=name, type=type_, ofport_request=list(ofport_request),
               options=dict(options or {}))


def port(name, *ifaces):
    return Row(name=name, interfaces=list(ifaces) or [iface(name)])


def controller(target, rate=(), burst=()):
    return Row(target=target, controller_rate_limit=list(rate),
               controller_burst_limit=list(burst))


def bridge(name='br0', ports=None, controllers=(), fail_mode=(), protocols=(),
           other_config=None):
    if ports is None:
        ports = [port(name, iface(name, 'internal'))]
    return Row(name=name, ports=ports, controller=list(controllers),
               fail_mode=list(fail_mode), protocols=list(protocols),
               other_config=dict(other_config or {}), sflow=[])


def test_new_bridge_is_its_local_port_standalone_no_controllers():
    state = desired_state(bridge('br0'))
    assert state['ports'] == [{'name': 'br0', 'type': 'internal', 'ofport_request': None,
                               'options': {}}]
    assert state['fail_mode'] == 'standalone'
    assert state['controllers'] == [] and state['protocols'] == []
    assert state['controller_rate_limit'] is None
    json.dumps(state)       # the document goes out as JSON


def test_local_port_first_then_ports_by_name_with_ofport_request():
    row = bridge('s1', ports=[port('s1-eth2', iface('s1-eth2', ofport_request=[2])),
                              port('s1', iface('s1', 'internal')),
                              port('s1-eth1', iface('s1-eth1', ofport_request=[1])),
                              port('p0', iface('p0', 'internal'))])
    assert [(p['name'], p['type'], p['ofport_request']) for p in desired_state(row)['ports']] \
        == [('s1', 'internal', None), ('p0', 'internal', None),
            ('s1-eth1', '', 1), ('s1-eth2', '', 2)]


def test_a_tunnel_interface_has_its_type_and_options():
    row = bridge('s1', ports=[port('vx1', iface('vx1', 'vxlan', options={
        'remote_ip': '10.0.0.2', 'key': '42'}))])
    assert desired_state(row)['ports'][1] == {
        'name': 'vx1', 'type': 'vxlan', 'ofport_request': None,
        'options': {'remote_ip': '10.0.0.2', 'key': '42'}}


def test_local_port_is_there_even_if_the_database_lacks_it():
    row = bridge('s1', ports=[port('s1-eth1')])
    assert [p['name'] for p in desired_state(row)['ports']] == ['s1', 's1-eth1']


def test_controllers_fail_mode_protocols_and_rate_limits():
    row = bridge('s1', controllers=[controller('tcp:127.0.0.1:6653', rate=[500], burst=[50]),
                                    controller('ptcp:6654')],
                 fail_mode=['secure'], protocols=['OpenFlow13'])
    state = desired_state(row)
    assert state['controllers'] == ['ptcp:6654', 'tcp:127.0.0.1:6653']
    assert state['fail_mode'] == 'secure'
    assert state['protocols'] == ['OpenFlow13']
    assert (state['controller_rate_limit'], state['controller_burst_limit']) == (500, 50)


def test_datapath_id_from_other_config_when_valid():
    assert pick_datapath_id('s1', {'datapath-id': '00000000000000AB'}) == '00000000000000ab'


def test_datapath_id_falls_back_to_a_stable_mac_like_value():
    derived = pick_datapath_id('s1', {})
    for bad in ('1', 'xyz0000000000001', '0000000000000000', '000000000000000001'):
        assert pick_datapath_id('s1', {'datapath-id': bad}) == derived
    assert derived == pick_datapath_id('s1', {})        # stable across restarts
    assert derived != pick_datapath_id('s2', {})
    value = int(derived, 16)
    assert value >> 48 == 0                             # 48 bits, like a MAC
    assert (value >> 40) & 0x03 == 0x02                 # locally administered unicast


def test_argv_has_name_log_and_tuning_from_other_config():
    argv, warnings = vswitchd_argv('s1', {'mnovs-flow-limit': '500', 'mac-aging-time': '30',
                                          'mnovs-verbose': 'true', 'datapath-id': 'x'})
    assert argv[:4] == ['--name', 's1', '--log-file', paths.log_path('s1')]
    assert argv[4:] == ['--mac-aging', '30.0', '--flow-limit', '500', '--verbose']
    assert warnings == []


def test_argv_ignores_bad_tuning_values_with_a_warning():
    argv, warnings = vswitchd_argv('s1', {'mnovs-emc-size': 'lots', 'mac-table-size': '-1'})
    assert argv == ['--name', 's1', '--log-file', paths.log_path('s1')]
    assert len(warnings) == 2 and 'mnovs-emc-size' in ' '.join(warnings)


def test_status_of_an_open_port_becomes_interface_columns():
    columns = interface_columns({
        'ofport': 1, 'ifindex': 12, 'mac_in_use': 'aa:bb:cc:dd:ee:ff', 'link_state': 'up',
        'admin_state': 'up', 'error': None,
        'statistics': {'rx_packets': 3, 'tx_bytes': 100, 'bogus': 1}})
    assert columns == {'ofport': [1], 'ifindex': [12], 'mac_in_use': ['aa:bb:cc:dd:ee:ff'],
                       'link_state': ['up'], 'admin_state': ['up'], 'error': [],
                       'statistics': {'rx_packets': 3, 'tx_bytes': 100}}


def test_status_of_a_missing_port_carries_ovs_error_and_ofport_minus_one():
    message = 'could not open network device nosuch0 (No such device)'
    columns = interface_columns({'ofport': -1, 'error': message})
    assert columns['ofport'] == [-1] and columns['error'] == [message]
    assert columns['link_state'] == [] and 'statistics' not in columns


def test_local_port_number_is_written_as_ovs_writes_it():
    assert interface_columns({'ofport': bridge_db.OFPP_LOCAL})['ofport'] == [65534]


def test_bridge_and_controller_columns():
    assert bridge_db.bridge_columns({'datapath_id': '0000000000000001'}) == \
        {'datapath_id': ['0000000000000001'], 'status': {}}
    assert bridge_db.bridge_columns({'sflow': {'enabled': False, 'errors': ['a', 'b']}}) == \
        {'datapath_id': [], 'status': {'sflow': 'a; b'}}
    assert bridge_db.controller_columns({'is_connected': True, 'role': 'other'}) == \
        {'is_connected': True, 'role': ['other'], 'status': {}}
    assert bridge_db.controller_columns(
        {'is_connected': False, 'role': None, 'error': 'ptcp:6653: Address in use'}) == \
        {'is_connected': False, 'role': [], 'status': {'last_error': 'ptcp:6653: Address in use'}}


def test_sflow_row_goes_as_it_is_with_its_sub_id():
    row = Row(agent=['s1-eth1'], targets=['10.0.0.9:6343', '127.0.0.1:6343'], sampling=[64],
              polling=[], header=[128])
    rows = {'br1': bridge('br1'), 'br0': bridge('br0'), 'br2': bridge('br2')}
    rows['br2'].sflow = [row]
    rows['br0'].sflow = [row]
    assert bridge_db.sflow_sub_ids(rows) == {'br0': 0, 'br2': 1}
    assert desired_state(rows['br2'], 1)['sflow'] == {
        'agent': 's1-eth1', 'targets': ['10.0.0.9:6343', '127.0.0.1:6343'], 'sampling': 64,
        'polling': None, 'header': 128, 'sub_id': 1}
    assert desired_state(rows['br1'])['sflow'] is None
