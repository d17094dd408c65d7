"""Actions and instructions: round trips, Ryu's encoding, and every rejection."""

import pytest

from mnovs.openflow import ofp
from mnovs.openflow.ofp import OFPError
from mnovs.openflow.ofp_actions import (
    ACTIONS, INSTRUCTIONS, decode_actions, decode_instructions, encode_action, encode_actions,
    encode_instructions, is_valid_out_port)


def ryu_of13():
    """Ryu's OF1.3 (ofproto, parser); eventlet 0.33 lacks a name Ryu imports."""
    import eventlet.wsgi
    if not hasattr(eventlet.wsgi, 'ALREADY_HANDLED'):
        eventlet.wsgi.ALREADY_HANDLED = object()
    from ryu.ofproto import ofproto_v1_3, ofproto_v1_3_parser
    return ofproto_v1_3, ofproto_v1_3_parser


def ryu_bytes(*objects):
    buf = bytearray()
    for obj in objects:
        obj.serialize(buf, len(buf))
    return bytes(buf)


def actions_of(data):
    return decode_actions(data, 0, len(data))


def instructions_of(data):
    return decode_instructions(data, 0, len(data))


# (name of a Ryu action class, its arguments, our action tuple)
RYU_ACTIONS = [
    ('OFPActionOutput', (3, 128), ('output', 3, 128)),
    ('OFPActionOutput', (ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER),
     ('output', ofp.OFPP_CONTROLLER, 0xffff)),
    ('OFPActionOutput', (ofp.OFPP_IN_PORT, 0), ('output', ofp.OFPP_IN_PORT, 0)),
    ('OFPActionCopyTtlOut', (), ('copy_ttl_out',)),
    ('OFPActionCopyTtlIn', (), ('copy_ttl_in',)),
    ('OFPActionSetMplsTtl', (64,), ('set_mpls_ttl', 64)),
    ('OFPActionDecMplsTtl', (), ('dec_mpls_ttl',)),
    ('OFPActionPushVlan', (0x8100,), ('push_vlan', 0x8100)),
    ('OFPActionPushVlan', (0x88a8,), ('push_vlan', 0x88a8)),
    ('OFPActionPopVlan', (), ('pop_vlan',)),
    ('OFPActionPushMpls', (0x8847,), ('push_mpls', 0x8847)),
    ('OFPActionPopMpls', (0x0800,), ('pop_mpls', 0x0800)),
    ('OFPActionSetQueue', (7,), ('set_queue', 7)),
    ('OFPActionGroup', (12,), ('group', 12)),
    ('OFPActionSetNwTtl', (9,), ('set_nw_ttl', 9)),
    ('OFPActionDecNwTtl', (), ('dec_nw_ttl',)),
    ('OFPActionPushPbb', (0x88e7,), ('push_pbb', 0x88e7)),
    ('OFPActionPopPbb', (), ('pop_pbb',)),
]

# (Ryu set_field keyword, our set_field tuple): one per width, and the odd ones.
RYU_SET_FIELDS = [
    ({'eth_dst': '00:11:22:33:44:55'}, ('set_field', 'eth_dst', 0x001122334455)),
    ({'vlan_vid': 0x1000 | 5}, ('set_field', 'vlan_vid', 0x1005)),
    ({'vlan_pcp': 3}, ('set_field', 'vlan_pcp', 3)),
    ({'ipv4_src': '10.0.0.9'}, ('set_field', 'ipv4_src', 0x0a000009)),
    ({'ipv6_dst': '::1'}, ('set_field', 'ipv6_dst', 1)),
    ({'tcp_dst': 8080}, ('set_field', 'tcp_dst', 8080)),
    ({'tunnel_id': 1 << 40}, ('set_field', 'tunnel_id', 1 << 40)),
    ({'pbb_isid': 0xabcdef}, ('set_field', 'pbb_isid', 0xabcdef)),
    ({'mpls_label': 0x12345}, ('set_field', 'mpls_label', 0x12345)),
]


@pytest.mark.parametrize('cls,args,action', RYU_ACTIONS)
def test_actions_match_ryu(cls, args, action):
    _, parser = ryu_of13()
    data = ryu_bytes(getattr(parser, cls)(*args))
    assert actions_of(data) == (action,)
    assert encode_action(action) == data
    assert type(parser.OFPAction.parser(encode_action(action), 0)).__name__ == cls


@pytest.mark.parametrize('kwargs,action', RYU_SET_FIELDS)
def test_set_field_matches_ryu(kwargs, action):
    _, parser = ryu_of13()
    data = ryu_bytes(parser.OFPActionSetField(**kwargs))
    assert len(data) % 8 == 0
    assert actions_of(data) == (action,)
    assert encode_action(action) == data
    parsed = parser.OFPAction.parser(data, 0)
    assert parsed.key == action[1]


def test_every_action_type_is_covered():
    names = {a[0] for _, _, a in RYU_ACTIONS} | {'set_field'}
    assert names == set(ACTIONS)


def test_instructions_match_ryu():
    ofproto, parser = ryu_of13()
    ryu = [
        parser.OFPInstructionMeter(5),
        parser.OFPInstructionActions(ofproto.OFPIT_APPLY_ACTIONS, [
            parser.OFPActionSetField(eth_src='00:00:00:00:00:01'), parser.OFPActionOutput(2)]),
        parser.OFPInstructionActions(ofproto.OFPIT_CLEAR_ACTIONS, []),
        parser.OFPInstructionActions(ofproto.OFPIT_WRITE_ACTIONS, [parser.OFPActionGroup(1)]),
        parser.OFPInstructionWriteMetadata(0xabc, 0xfff),
        parser.OFPInstructionGotoTable(3),
    ]
    ours = (
        ('meter', 5),
        ('apply_actions', (('set_field', 'eth_src', 1), ('output', 2, ofp.OFPCML_MAX))),
        ('clear_actions',),
        ('write_actions', (('group', 1),)),
        ('write_metadata', 0xabc, 0xfff),
        ('goto_table', 3),
    )
    data = ryu_bytes(*ryu)
    assert instructions_of(data) == ours
    assert encode_instructions(ours) == data
    assert {i[0] for i in ours} == set(INSTRUCTIONS)
    pos, parsed = 0, []
    while pos < len(data):
        parsed.append(parser.OFPInstruction.parser(data, pos))
        pos += parsed[-1].len
    assert [type(p).__name__ for p in parsed] == [type(r).__name__ for r in ryu]


def test_out_ports():
    assert is_valid_out_port(1) and is_valid_out_port(ofp.OFPP_MAX)
    for port in (ofp.OFPP_IN_PORT, ofp.OFPP_TABLE, ofp.OFPP_NORMAL, ofp.OFPP_FLOOD,
                 ofp.OFPP_ALL, ofp.OFPP_CONTROLLER, ofp.OFPP_LOCAL):
        assert is_valid_out_port(port)
    for port in (0, ofp.OFPP_MAX + 1, 0xfffffff7, ofp.OFPP_ANY):
        assert not is_valid_out_port(port)


def raw_action(action_type, body, length=None):
    length = 4 + len(body) if length is None else length
    return action_type.to_bytes(2, 'big') + length.to_bytes(2, 'big') + body


def set_field_raw(header, value, pad):
    return raw_action(ofp.OFPAT_SET_FIELD, header.to_bytes(4, 'big') + value + bytes(pad))


@pytest.mark.parametrize('data,code', [
    (raw_action(1, bytes(4)), ofp.OFPBAC_BAD_TYPE),                    # OF1.0 set_vlan_vid
    (raw_action(ofp.OFPAT_EXPERIMENTER, bytes(4)), ofp.OFPBAC_BAD_EXPERIMENTER),
    (raw_action(ofp.OFPAT_POP_VLAN, bytes(4))[:6], ofp.OFPBAC_BAD_LEN),  # cut short
    (raw_action(ofp.OFPAT_POP_VLAN, bytes(4), 4), ofp.OFPBAC_BAD_LEN),   # len < 8
    (raw_action(ofp.OFPAT_POP_VLAN, bytes(4), 12), ofp.OFPBAC_BAD_LEN),  # len % 8
    (raw_action(ofp.OFPAT_POP_VLAN, bytes(12), 16), ofp.OFPBAC_BAD_LEN),  # wrong size
    (raw_action(ofp.OFPAT_OUTPUT, bytes(12), 24), ofp.OFPBAC_BAD_LEN),   # past the list
    (encode_action(('output', 0, 0)), ofp.OFPBAC_BAD_OUT_PORT),
    (encode_action(('output', ofp.OFPP_ANY, 0)), ofp.OFPBAC_BAD_OUT_PORT),
    (encode_action(('output', 0xffffff01, 0)), ofp.OFPBAC_BAD_OUT_PORT),
    (encode_action(('group', ofp.OFPG_ALL)), ofp.OFPBAC_BAD_OUT_GROUP),
    (encode_action(('push_vlan', 0x0800)), ofp.OFPBAC_BAD_ARGUMENT),
    (encode_action(('push_mpls', 0x8100)), ofp.OFPBAC_BAD_ARGUMENT),
    (encode_action(('push_pbb', 0x8100)), ofp.OFPBAC_BAD_ARGUMENT),
    (set_field_raw(0x80005004, bytes(4), 4), ofp.OFPBAC_BAD_SET_TYPE),   # unknown field
    (set_field_raw(0x00010606, bytes(6), 2), ofp.OFPBAC_BAD_SET_TYPE),   # NXM class
    (set_field_raw(0x80000004, bytes(4), 4), ofp.OFPBAC_BAD_SET_TYPE),   # in_port read-only
    (set_field_raw(0x8000070c, bytes(12), 4), ofp.OFPBAC_BAD_SET_ARGUMENT),  # masked
    (set_field_raw(0x80000605, bytes(5), 3), ofp.OFPBAC_BAD_SET_LEN),    # eth_dst of 5 bytes
    (set_field_raw(0x80000606, bytes(6), 10), ofp.OFPBAC_BAD_SET_LEN),   # over-padded
    (set_field_raw(0x80000e01, b'\x08', 7), ofp.OFPBAC_BAD_SET_ARGUMENT),  # vlan_pcp 8
])
def test_bad_actions(data, code):
    with pytest.raises(OFPError) as info:
        actions_of(data)
    assert (info.value.type, info.value.code) == (ofp.OFPET_BAD_ACTION, code)


def raw_instruction(inst_type, body, length=None):
    length = 4 + len(body) if length is None else length
    return inst_type.to_bytes(2, 'big') + length.to_bytes(2, 'big') + body


@pytest.mark.parametrize('data,err', [
    (raw_instruction(7, bytes(4)), (ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_UNKNOWN_INST)),
    (raw_instruction(0, bytes(4)), (ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_UNKNOWN_INST)),
    (raw_instruction(ofp.OFPIT_EXPERIMENTER, bytes(4)),
     (ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_BAD_EXPERIMENTER)),
    (raw_instruction(ofp.OFPIT_GOTO_TABLE, bytes(12)),
     (ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_BAD_LEN)),
    (raw_instruction(ofp.OFPIT_WRITE_METADATA, bytes(4)),
     (ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_BAD_LEN)),
    (raw_instruction(ofp.OFPIT_METER, bytes(4), 6),
     (ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_BAD_LEN)),
    (raw_instruction(ofp.OFPIT_METER, bytes(4), 16),
     (ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_BAD_LEN)),
    (encode_instructions((('goto_table', 1), ('goto_table', 2))),
     (ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_UNSUP_INST)),
    (raw_instruction(ofp.OFPIT_APPLY_ACTIONS, bytes(4) + encode_action(('output', 0, 0))),
     (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT)),
    (raw_instruction(ofp.OFPIT_APPLY_ACTIONS, bytes(4) + raw_action(0, bytes(12), 24), 24),
     (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_LEN)),
])
def test_bad_instructions(data, err):
    with pytest.raises(OFPError) as info:
        instructions_of(data)
    assert (info.value.type, info.value.code) == err


def test_round_trips():
    actions = tuple(a for _, _, a in RYU_ACTIONS) + tuple(a for _, a in RYU_SET_FIELDS)
    assert actions_of(encode_actions(actions)) == actions
    instructions = (('apply_actions', actions), ('write_actions', ()), ('meter', 1))
    assert instructions_of(encode_instructions(instructions)) == instructions
    assert actions_of(b'') == () and instructions_of(b'') == ()
