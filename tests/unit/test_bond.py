"""Bonds: NORMAL and xlate with each mode (outputs and megaflow masks), LACP PDUs in
the slow path, failover, rebalancing, and the bridge/apply entry of a bond."""

import json

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from mnovs.bridge_state import parse_desired
from mnovs.dp.flow import mask_of
from mnovs.dp.odp_util import format_actions, format_megaflow
from mnovs.dp.offload import VNET_HDR_LEN
from mnovs.ofagent.bond import BOND_MASK, MEMBER_PORT_BASE, BondSettings
from mnovs.ofagent.lacp import Lacp, compose_frame, encode_pdu
from test_ofproto import FakePort, Switch, apply

SYS_ID, PEER_ID = bytes.fromhex('0200000000ab'), bytes.fromhex('02000000000b')
M1, M2 = MEMBER_PORT_BASE, MEMBER_PORT_BASE + 1
HOST = 1                                # the switch's other port
BOND = 2                                # the bond's OpenFlow port


def bonded(mode='active-backup', lacp='off', fail_mode='standalone', **settings):
    switch = Switch(fail_mode, n_ports=1)
    bonds = switch.ofproto.bonds
    bond = bonds.create('bond0', BOND, BondSettings(mode=mode, lacp=lacp, **settings), SYS_ID)
    for no in (M1, M2):
        port = switch.dp.ports[no] = FakePort(no)
        bonds.add_member(bond, port, bytes.fromhex(f'0000000000{no & 0xff:02x}'))
    switch.ofproto.bond_added(bond)
    return switch, bond


def lacp_step(switch, bond, peer, now, links=(M1, M2)):
    """One turn of LACP between the switch's bond and `peer`, over `links` only."""
    switch.ofproto.run_bonds(now)
    for no in bond.members:
        port = switch.port(no)
        pdus = [p for p in port.sent if p[VNET_HDR_LEN + 12:VNET_HDR_LEN + 14] == b'\x88\x09']
        port.sent = [p for p in port.sent if p not in pdus]
        for pdu in pdus:
            if no in links:
                peer.process_packet(no, pdu[VNET_HDR_LEN + 14:], now)
    peer.run(now, lambda no, actor, partner: no in links and bond.lacp.process_packet(
        no, encode_pdu(actor, partner), now))


def negotiate(switch, bond, seconds=3.0):
    """Run LACP against a peer system on both links until it negotiates."""
    peer = Lacp('peer', PEER_ID, fast=True)
    for no in bond.members:
        peer.member_register(no, f'peer{no}', no)
    now = 0.0
    while now < seconds:
        lacp_step(switch, bond, peer, now)
        now += 0.1
    switch.ofproto.run_bonds(now)
    switch.ofproto.sync()
    assert bond.lacp_status == 'negotiated'
    return peer


def eth(src, dst, payload=b'\0' * 46):
    return bytes(Ether(src=f'00:00:00:00:01:{src:02x}', dst=dst) / payload)


def tcp(sport, src=1, dst=2):
    return bytes(Ether(src=f'00:00:00:00:01:{src:02x}', dst=f'00:00:00:00:01:{dst:02x}')
                 / IP(src=f'10.0.0.{src}', dst=f'10.0.0.{dst}') / TCP(sport=sport, dport=80))


def sent(switch, *ports):
    """Frames each port sent since the last look, LACP's PDUs aside."""
    return {no: sum(frame[12:14] != b'\x88\x09' for frame in switch.port(no).frames())
            for no in ports}


def megaflows(switch):
    return sorted(format_megaflow(f.key, f.mask) + ' actions:' + format_actions(f.actions)
                  for f in switch.dp.flow_dump())


# --- NORMAL ---------------------------------------------------------------------------

def test_active_backup_floods_on_the_active_member_only_and_learns_the_bond():
    switch, bond = bonded()
    assert bond.active.port_no == M1 and bond.up
    switch.receive(HOST, eth(1, 'ff:ff:ff:ff:ff:ff'))
    assert sent(switch, M1, M2) == {M1: 1, M2: 0}
    switch.receive(M1, eth(2, '00:00:00:00:01:01'))          # the far host answers
    assert sent(switch, HOST) == {HOST: 1}
    assert switch.normal.macs.lookup(0, bytes.fromhex('000000000102')) == BOND
    switch.receive(HOST, eth(1, '00:00:00:00:01:02'))
    assert sent(switch, M1, M2) == {M1: 1, M2: 0}


def test_a_broadcast_from_the_bond_is_not_flooded_back_into_it():
    switch, bond = bonded()
    switch.receive(M1, eth(2, 'ff:ff:ff:ff:ff:ff'))
    assert sent(switch, HOST, M1, M2) == {HOST: 1, M1: 0, M2: 0}


def test_active_backup_drops_what_the_backup_member_receives():
    switch, bond = bonded()
    switch.receive(M2, eth(2, '00:00:00:00:01:01'))
    assert sent(switch, HOST) == {HOST: 0}
    assert switch.normal.macs.lookup(0, bytes.fromhex('000000000102')) is None


def test_failover_moves_the_flows_to_the_other_member():
    switch, bond = bonded()
    switch.receive(M1, eth(2, '00:00:00:00:01:01'))
    switch.receive(HOST, eth(1, '00:00:00:00:01:02'))
    assert sent(switch, M1, M2) == {M1: 1, M2: 0}
    switch.port(M1).up = False
    switch.ofproto.port_changed(M1)
    switch.ofproto.sync()
    assert bond.active.port_no == M2
    switch.receive(HOST, eth(1, '00:00:00:00:01:02'))       # the megaflow was revalidated
    assert sent(switch, M1, M2) == {M1: 0, M2: 1}
    assert all(f':{M1}' not in text.split('actions:')[1] for text in megaflows(switch))


def test_balance_slb_spreads_source_macs_over_the_members_by_bucket():
    switch, bond = bonded('balance-slb')
    switch.receive(M1, eth(200, 'ff:ff:ff:ff:ff:ff'))        # learn the far host on the bond
    switch.port(HOST).frames()
    used = set()
    for src in range(1, 40):
        switch.receive(HOST, eth(src, '00:00:00:00:01:c8'))
        for no, count in sent(switch, M1, M2).items():
            if count:
                used.add(no)
                assert bond.buckets[bond.slb_bucket(
                    bytes.fromhex(f'0000000001{src:02x}'), 0)].port_no == no
    assert used == {M1, M2}


def test_balance_tcp_first_pass_hashes_and_recirculates_without_reading_l4():
    switch, bond = bonded('balance-tcp', 'active')
    negotiate(switch, bond)
    switch.receive(M1, eth(2, 'ff:ff:ff:ff:ff:ff'))           # learn host 2 on the bond
    switch.port(HOST).frames()
    for sport in range(1000, 1032):
        switch.receive(HOST, tcp(sport))
    counts = sent(switch, M1, M2)
    assert counts[M1] and counts[M2] and counts[M1] + counts[M2] == 32
    texts = megaflows(switch)
    first = [t for t in texts if t.startswith('recirc_id(0),in_port(1)')]
    assert len(first) == 1 and first[0].endswith('actions:hash(l4(0)),recirc(0x1)'), texts
    assert 'tcp' not in first[0] and 'ipv4' not in first[0]
    second = [t for t in texts if t.startswith('recirc_id(0x1)')]
    assert second and all('dp_hash(' in t and '/0xff)' in t for t in second), second
    for flow in switch.dp.flow_dump():
        if flow.key[:4] == b'\0\0\0\1':
            assert flow.mask == mask_of(recirc_id=0xffffffff, in_port=0xffffffff,
                                        dp_hash=BOND_MASK)


def test_a_member_whose_partner_stops_speaking_lacp_leaves_and_its_flows_move():
    switch, bond = bonded('balance-tcp', 'active', lacp_fast=True)     # 3 s to expire
    peer = negotiate(switch, bond)
    switch.receive(M1, eth(2, 'ff:ff:ff:ff:ff:ff'))
    for sport in range(1000, 1016):
        switch.receive(HOST, tcp(sport))
    assert sent(switch, M1, M2)[M1]
    now = 3.0
    while now < 7.5:                    # the peer speaks only on M2 now
        lacp_step(switch, bond, peer, now, links=(M2,))
        now += 0.1
    switch.ofproto.sync()
    assert not bond.members[M1].enabled and bond.members[M2].enabled
    for sport in range(1000, 1016):
        switch.receive(HOST, tcp(sport))
    assert sent(switch, M1, M2) == {M1: 0, M2: 16}


def test_balance_tcp_without_lacp_negotiated_sends_nothing():
    switch, bond = bonded('balance-tcp', 'active')
    switch.ofproto.run_bonds(0.0)
    assert bond.lacp_status == 'configured'
    switch.receive(HOST, eth(1, 'ff:ff:ff:ff:ff:ff'))
    assert sent(switch, M1, M2) == {M1: 0, M2: 0}


def test_lacp_fallback_ab_sends_on_the_active_member_when_lacp_fails():
    switch, bond = bonded('balance-tcp', 'active', lacp_fallback_ab=True)
    switch.ofproto.run_bonds(0.0)
    switch.ofproto.sync()
    switch.receive(HOST, eth(1, 'ff:ff:ff:ff:ff:ff'))
    assert sent(switch, M1, M2) == {M1: 1, M2: 0}


def test_lacp_pdus_reach_lacp_and_other_megaflows_of_a_member_match_eth_type():
    switch, bond = bonded('balance-tcp', 'active')
    negotiate(switch, bond)
    rx = bond.lacp.members[M1].rx_pdus
    peer = Lacp('peer', PEER_ID, fast=True)
    peer.member_register(M1, 'p', 1)
    actor = peer.actor(peer.members[M1])
    for _ in range(3):                  # the second and third hit the slow-path megaflow
        switch.receive(M1, compose_frame(bytes(6), actor, bond.lacp.actor(bond.lacp.members[M1])))
    assert bond.lacp.members[M1].rx_pdus == rx + 3
    switch.receive(M1, eth(2, 'ff:ff:ff:ff:ff:ff'))
    texts = [t for t in megaflows(switch) if f'in_port({M1})' in t]
    assert any(t.endswith('actions:userspace(userdata(4c414350))') and 'eth_type(0x8809)' in t
               for t in texts), texts
    assert all('eth_type(' in t for t in texts), texts


def test_rebalance_moves_buckets_from_the_loaded_member():
    switch, bond = bonded('balance-tcp', 'active')
    negotiate(switch, bond)
    for bucket, owner in enumerate(bond.buckets):
        if owner.port_no == M1:
            bond.account(bucket, 1_000_000 + bucket)
    assert bond.rebalance(bond.next_rebalance)
    loads = {M1: 0, M2: 0}
    for bucket, owner in enumerate(bond.buckets):
        loads[owner.port_no] += bond.bucket_bytes[bucket] * 2      # halved after the run
    assert abs(loads[M1] - loads[M2]) < 0.2 * (loads[M1] + loads[M2]), loads
    assert not bond.rebalance(bond.next_rebalance - 1)               # not before the interval


# --- OpenFlow ------------------------------------------------------------------------------

def test_openflow_sees_one_port_and_in_port_matches_every_member():
    switch, bond = bonded('active-backup', fail_mode='secure')
    controller = switch.connect()
    assert sorted(switch.ofproto.ports) == [HOST, BOND]
    switch.flow_mod(controller, match={'in_port': (BOND, None)},
                    instructions=apply(('output', HOST, 0xffff)))
    switch.flow_mod(controller, match={'in_port': (HOST, None)},
                    instructions=apply(('output', BOND, 0xffff)))
    switch.receive(M1, eth(2, '00:00:00:00:01:01'))
    switch.receive(M2, eth(3, '00:00:00:00:01:01'))
    assert sent(switch, HOST) == {HOST: 2}
    switch.receive(HOST, eth(1, '00:00:00:00:01:02'))
    assert sent(switch, M1, M2) == {M1: 1, M2: 0}


def test_a_packet_in_from_a_member_says_the_bond_port():
    switch, bond = bonded('active-backup', fail_mode='secure')
    controller = switch.connect()
    switch.flow_mod(controller, match={}, instructions=apply(('output', 0xfffffffd, 0xffff)))
    switch.receive(M2, eth(2, '00:00:00:00:01:01'))
    (packet_in,) = [m for m in controller.received() if type(m).__name__ == 'PacketIn']
    assert packet_in.match['in_port'][0] == BOND


def test_output_to_a_balance_tcp_bond_before_another_output_uses_the_active_member():
    switch, bond = bonded('balance-tcp', 'active', fail_mode='secure')
    negotiate(switch, bond)
    controller = switch.connect()
    switch.flow_mod(controller, match={'in_port': (HOST, None)},
                    instructions=apply(('output', BOND, 0xffff), ('output', 0xfffffffd, 0xffff)))
    switch.receive(HOST, tcp(1))
    (flow,) = switch.dp.flow_dump()
    assert flow.actions[0] == ('output', bond.active.port_no)
    assert not any(action[0] == 'recirc' for action in flow.actions)


# --- configuration -------------------------------------------------------------------------

def test_a_bond_entry_gets_ovs_defaults():
    desired = parse_desired(json.dumps({'ports': [
        {'name': 'bond0', 'type': '', 'ofport_request': None,
         'bond': {'members': ['p1', 'p2'], 'bond_mode': None, 'lacp': None, 'bond_updelay': 0,
                  'bond_downdelay': 0, 'other_config': {}}}]}))
    (spec,) = desired.ports
    assert spec.type == 'bond' and spec.options == ('p1', 'p2')
    assert spec.bond == BondSettings()
    assert spec.bond.mode == 'active-backup' and spec.bond.lacp == 'off'
    assert not spec.bond.lacp_fast and spec.bond.rebalance_interval == 10000


def test_a_bond_entry_reads_the_port_columns_and_other_config():
    desired = parse_desired(json.dumps({'ports': [
        {'name': 'bond0', 'type': '', 'ofport_request': 5,
         'bond': {'members': ['p1', 'p2'], 'bond_mode': 'balance-tcp', 'lacp': 'active',
                  'bond_updelay': 200, 'bond_downdelay': 100,
                  'other_config': {'lacp-time': 'fast', 'lacp-fallback-ab': 'true',
                                   'bond-rebalance-interval': '500'}}}]}))
    settings = desired.ports[0].bond
    assert (settings.mode, settings.lacp, settings.lacp_fast, settings.lacp_fallback_ab) == \
        ('balance-tcp', 'active', True, True)
    assert (settings.updelay, settings.downdelay) == (200, 100)
    switch, bond = bonded()
    bond.configure(settings)
    assert bond.rebalance_interval == 1000          # OVS's minimum


def test_bond_show_has_ovs_shape():
    switch, bond = bonded('balance-tcp', 'active')
    negotiate(switch, bond)
    text = bond.show(switch.ofproto.bonds.recirc_id(bond), 0.0)
    assert text.startswith('---- bond0 ----\nbond_mode: balance-tcp\n'
                           'bond may use recirculation: yes, Recirc-ID : 1\n'
                           'bond-hash-basis: 0\n')
    assert '\nlacp_status: negotiated\nlacp_fallback_ab: false\n' in text
    assert f'\nmember ut1-eth{M1}: enabled\n  active member\n  may_enable: true\n' in text


def test_a_port_with_two_interfaces_is_one_bond_entry_for_bridge_apply():
    from types import SimpleNamespace as Row
    from mnovs.bridge_db import desired_state

    def iface(name, request=()):
        return Row(name=name, type='', ofport_request=list(request), options={})
    bond = Row(name='bond0', interfaces=[iface('p2'), iface('p1', [7])],
               bond_mode=['balance-tcp'],
               lacp=['active'], bond_updelay=0, bond_downdelay=0,
               other_config={'lacp-time': 'fast'})
    local = Row(name='br0', interfaces=[Row(name='br0', type='internal', ofport_request=[],
                                            options={})])
    state = desired_state(Row(name='br0', ports=[local, bond], controller=[], fail_mode=[],
                              protocols=[], other_config={}, sflow=[]))
    entry = state['ports'][1]
    assert entry['name'] == 'bond0' and entry['ofport_request'] == 7
    assert entry['bond'] == {'members': ['p1', 'p2'], 'bond_mode': 'balance-tcp',
                             'lacp': 'active', 'bond_updelay': 0, 'bond_downdelay': 0,
                             'other_config': {'lacp-time': 'fast'}}
    (spec,) = [p for p in parse_desired(json.dumps(state)).ports if p.type == 'bond']
    assert spec.bond.lacp_fast and spec.options == ('p1', 'p2')


def test_a_member_that_comes_up_later_takes_its_home_buckets():
    switch = Switch('standalone', n_ports=1)
    bonds = switch.ofproto.bonds
    bond = bonds.create('bond0', BOND, BondSettings(mode='balance-slb'), SYS_ID)
    for no in (M1, M2):
        port = switch.dp.ports[no] = FakePort(no)
        port.up = no == M1
        bonds.add_member(bond, port, bytes(6))
    switch.ofproto.bond_added(bond)
    assert {owner.port_no for owner in bond.buckets} == {M1}
    switch.port(M2).up = True
    switch.ofproto.port_changed(M2)
    owners = [owner.port_no for owner in bond.buckets]
    assert owners.count(M1) == owners.count(M2) == 128
    assert switch.ofproto.need_revalidate


def test_the_hash_action_spreads_flows_whose_ports_step_by_two():
    # Linux's connect() takes even ephemeral ports: a linear hash (CRC) would
    # give all of them buckets of one parity, so one member of two.
    from mnovs.dp.datapath import Datapath
    from mnovs.dp.flow import flow_extract, md_of
    dp = Datapath('t', upcall=None)
    parities = set()
    for sport in range(40000, 40016, 2):
        dp.exec_key = flow_extract(tcp(sport), md_of(1))[0]
        dp.hash_l4(None, 0)
        parities.add(dp.exec_key[7] & 1)
    assert parities == {0, 1}
