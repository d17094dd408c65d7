"""LACP: PDUs against scapy's dissector, and the state machine between two systems."""

from scapy.contrib.lacp import LACP
from scapy.layers.l2 import Ether
from scapy.contrib.lacp import SlowProtocol

from mnovs.ofagent.lacp import (
    CURRENT, DEFAULTED, EXPIRED, FAST_TX, SLOW_TX, STATE_ACT, STATE_AGG, STATE_SYNC, STATE_TIME,
    SUBTYPE_LACP, SUBTYPE_MARKER, Lacp, LacpInfo, compose_frame, decode_pdu, encode_pdu)

A_ID, B_ID = bytes.fromhex('02000000000a'), bytes.fromhex('02000000000b')


def test_our_pdu_is_what_scapy_decodes():
    actor = LacpInfo(65534, A_ID, 7, 255, 3, STATE_ACT | STATE_TIME | STATE_SYNC)
    partner = LacpInfo(100, B_ID, 9, 128, 4, STATE_AGG)
    frame = Ether(compose_frame(bytes.fromhex('020000000001'), actor, partner))
    assert frame.dst == '01:80:c2:00:00:02' and frame.type == 0x8809
    pdu = frame[LACP]
    assert (pdu.version, pdu.actor_type, pdu.actor_length) == (1, 1, 20)
    assert (pdu.actor_system_priority, pdu.actor_system, pdu.actor_key) == \
        (65534, '02:00:00:00:00:0a', 7)
    assert (pdu.actor_port_priority, pdu.actor_port_number, pdu.actor_state) == (255, 3, 0x0b)
    assert (pdu.partner_system_priority, pdu.partner_system, pdu.partner_key) == \
        (100, '02:00:00:00:00:0b', 9)
    assert (pdu.partner_port_priority, pdu.partner_port_number, pdu.partner_state) == \
        (128, 4, STATE_AGG)
    assert (pdu.collector_type, pdu.collector_length) == (3, 16)
    assert len(encode_pdu(actor, partner)) == 110


def test_a_scapy_pdu_decodes():
    raw = bytes(SlowProtocol() / LACP(
        actor_system_priority=32768, actor_system='00:11:22:33:44:55', actor_key=13,
        actor_port_priority=32768, actor_port_number=2, actor_state=0x3d,
        partner_system='02:00:00:00:00:0a', partner_key=7, partner_port_number=3,
        partner_state=0x0f))
    subtype, actor, partner = decode_pdu(raw)
    assert subtype == SUBTYPE_LACP
    assert actor == LacpInfo(32768, bytes.fromhex('001122334455'), 13, 32768, 2, 0x3d)
    assert partner.sys_id == A_ID and partner.key == 7 and partner.state == 0x0f


def test_bad_and_marker_pdus_are_told_apart():
    assert decode_pdu(b'\x02\x01')[0] == SUBTYPE_MARKER
    assert decode_pdu(b'\x01\x01')[0] == 0                          # too short
    good = bytearray(encode_pdu(LacpInfo(1, A_ID, 1, 1, 1, 0), LacpInfo(1, B_ID, 1, 1, 1, 0)))
    good[3] = 19                                                    # actor length
    assert decode_pdu(bytes(good))[0] == 0


class Wire:
    """Two Lacp objects with members 1 and 2 linked pairwise; PDUs delivered on demand."""

    def __init__(self, fast=True, b_active=True, b_id=B_ID):
        self.a = Lacp('a', A_ID, active=True, fast=fast)
        self.b = Lacp('b', b_id, active=b_active, fast=fast)
        for lacp in (self.a, self.b):
            for port in (1, 2):
                lacp.member_register(port, f'{lacp.name}{port}', port)
        self.cut = set()                # ports whose PDUs from b are lost

    def step(self, now):
        for lacp, other in ((self.a, self.b), (self.b, self.a)):
            sent = []
            lacp.run(now, lambda port, actor, partner: sent.append((port, actor, partner)))
            for port, actor, partner in sent:
                if lacp is self.b and port in self.cut:
                    continue
                other.process_packet(port, encode_pdu(actor, partner), now)

    def run(self, start, seconds):
        now = start
        while now < start + seconds:
            self.step(now)
            now += 0.1
        return now


def test_two_active_systems_negotiate_and_attach_both_members():
    wire = Wire()
    wire.run(0.0, 3)
    for lacp, partner_id in ((wire.a, B_ID), (wire.b, A_ID)):
        assert lacp.negotiated
        for port in (1, 2):
            member = lacp.members[port]
            assert member.status == CURRENT and member.attached, lacp.show()
            assert member.partner.sys_id == partner_id
            assert lacp.may_enable(port)


def test_active_and_passive_negotiate_but_two_passives_do_not():
    wire = Wire(b_active=False)
    wire.run(0.0, 3)
    assert wire.a.negotiated and wire.b.negotiated and wire.b.may_enable(1)
    silent = Wire(b_active=False)
    silent.a.active = False
    silent.run(0.0, 3)
    assert not silent.a.negotiated and not silent.a.may_enable(1)
    assert silent.a.members[1].tx_pdus == 0


def test_a_silent_partner_expires_after_three_intervals_then_defaults():
    wire = Wire()
    now = wire.run(0.0, 3)
    wire.cut.add(1)             # the last PDU came at most FAST_TX ago
    now = wire.run(now, 3 * FAST_TX - FAST_TX - 0.2)
    assert wire.a.members[1].status == CURRENT
    now = wire.run(now, FAST_TX + 0.4)
    member = wire.a.members[1]
    assert member.status == EXPIRED and not wire.a.may_enable(1)
    assert member.partner.state & STATE_TIME and not member.partner.state & STATE_SYNC
    wire.run(now, 3 * FAST_TX + 0.2)
    assert member.status == DEFAULTED and not member.attached
    assert wire.a.members[2].status == CURRENT and wire.a.may_enable(2)
    assert wire.a.members[1].n_expired == 1 and wire.a.members[1].n_defaulted == 1


def test_slow_rate_times_out_after_ninety_seconds():
    wire = Wire(fast=False)
    now = wire.run(0.0, 3)
    wire.cut.add(1)
    now = wire.run(now, 3 * SLOW_TX - 5)      # the last PDU came at 0 s or after
    assert wire.a.members[1].status == CURRENT
    wire.run(now, 5)
    assert wire.a.members[1].status == EXPIRED


def test_a_member_facing_another_system_is_not_attached():
    wire = Wire()
    stranger = Lacp('c', bytes.fromhex('02000000000c'), fast=True)
    stranger.member_register(2, 'c2', 2)
    now = 0.0
    for _ in range(30):
        sent = []
        wire.b.run(now, lambda port, actor, partner: sent.append((port, actor, partner)))
        stranger.run(now, lambda port, actor, partner: sent.append((port, actor, partner)))
        wire.a.run(now, lambda *pdu: None)
        for port, actor, partner in sent:
            if (port == 1) == (actor.sys_id == B_ID):
                wire.a.process_packet(port, encode_pdu(actor, partner), now)
        now += 0.1
    attached = [port for port in (1, 2) if wire.a.members[port].attached]
    assert len(attached) == 1


def test_a_bond_looped_to_itself_never_attaches():
    lacp = Lacp('a', A_ID, fast=True)
    for port in (1, 2):
        lacp.member_register(port, f'a{port}', port)
    for step in range(30):
        sent = []
        lacp.run(step * 0.1, lambda port, actor, partner: sent.append((port, actor, partner)))
        for port, actor, partner in sent:
            lacp.process_packet(3 - port, encode_pdu(actor, partner), step * 0.1)
    assert not any(m.attached for m in lacp.members.values())


def test_fallback_ab_keeps_defaulted_members_attached():
    lacp = Lacp('a', A_ID, fallback_ab=True)
    lacp.member_register(1, 'a1', 1)
    lacp.run(0.0, lambda *pdu: None)
    assert lacp.may_enable(1) and lacp.negotiated is False


def test_lacp_show_has_ovs_shape():
    wire = Wire()
    wire.run(0.0, 3)
    text = wire.a.show()
    assert text.startswith('---- a ----\n  status: active negotiated\n  sys_id: 02:00:00:00:00:0a\n'
                           '  sys_priority: 65534\n  aggregation key: 1\n  lacp_time: fast\n')
    assert '\nmember: a1: current attached\n  port_id: 1\n  port_priority: 65535\n' \
           '  may_enable: true\n\n  actor sys_id: 02:00:00:00:00:0a\n' in text
    assert '  partner sys_id: 02:00:00:00:00:0b\n' in text
    assert '  actor state: activity timeout aggregation synchronized collecting distributing\n' \
        in text
    stats = wire.a.show_stats()
    assert stats.startswith('---- a statistics ----\n\nmember: a1:\n  TX PDUs: ')
