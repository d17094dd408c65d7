"""OpenFlow 1.3 actions and instructions: two tables and their codecs.

Every action and instruction on the wire is a TLV with a 4-byte header and a
body padded so that `len` is a multiple of 8:

     0               1               2               3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-------------------------------+-------------------------------+
    |             type              |        len (incl. header)     |
    +-------------------------------+-------------------------------+
    |  body ... (fixed per type; set_field carries one OXM TLV)     |
    +---------------------------------------------------------------+

In Python an action is a tuple named by its first element, as in the shared
contract: ('output', port, max_len), ('push_vlan', ethertype),
('set_field', oxm_name, value), ...; an instruction likewise:
('goto_table', table_id), ('write_metadata', metadata, mask),
('write_actions', actions), ('apply_actions', actions), ('clear_actions',),
('meter', meter_id).  Each table row gives the spec type number and one
struct covering header and body; the tuple's arguments are the struct's
fields after type and len, in order.

Checks on decode (OFPET_BAD_ACTION unless said otherwise):
- BAD_TYPE: unknown action; BAD_EXPERIMENTER: any experimenter action;
- BAD_LEN: len < 8, not a multiple of 8, past the list, or not the type's size;
- BAD_OUT_PORT: output to port 0, OFPP_ANY, or above OFPP_MAX and not reserved;
- BAD_OUT_GROUP: group id above OFPG_MAX;
- BAD_ARGUMENT: push_vlan not 0x8100/0x88a8, push_mpls not 0x8847/0x8848,
  push_pbb not 0x88e7;
- set_field: BAD_SET_TYPE (unknown or read-only field), BAD_SET_LEN (OXM
  length or action length wrong), BAD_SET_ARGUMENT (a mask, a value too wide,
  a vlan_vid without OFPVID_PRESENT).
Instructions (OFPET_BAD_INSTRUCTION): UNKNOWN_INST, BAD_EXPERIMENTER, BAD_LEN,
and UNSUP_INST for a type given twice (OF1.3 has no DUP_INST code).  What
needs the switch's state (does the port, group, meter or table exist, is a
set_field consistent with the match) is the agent's to check.
"""

import struct

from mnovs.openflow.ofp import (
    OFPAT_COPY_TTL_IN, OFPAT_COPY_TTL_OUT, OFPAT_DEC_MPLS_TTL, OFPAT_DEC_NW_TTL,
    OFPAT_EXPERIMENTER, OFPAT_GROUP, OFPAT_OUTPUT, OFPAT_POP_MPLS, OFPAT_POP_PBB,
    OFPAT_POP_VLAN, OFPAT_PUSH_MPLS, OFPAT_PUSH_PBB, OFPAT_PUSH_VLAN, OFPAT_SET_FIELD,
    OFPAT_SET_MPLS_TTL, OFPAT_SET_NW_TTL, OFPAT_SET_QUEUE, OFPBAC_BAD_ARGUMENT,
    OFPBAC_BAD_EXPERIMENTER, OFPBAC_BAD_LEN, OFPBAC_BAD_OUT_GROUP, OFPBAC_BAD_OUT_PORT,
    OFPBAC_BAD_SET_ARGUMENT, OFPBAC_BAD_SET_LEN, OFPBAC_BAD_SET_TYPE, OFPBAC_BAD_TYPE,
    OFPBIC_BAD_EXPERIMENTER, OFPBIC_BAD_LEN, OFPBIC_UNKNOWN_INST, OFPBIC_UNSUP_INST,
    OFPET_BAD_ACTION, OFPET_BAD_INSTRUCTION, OFPG_MAX, OFPIT_APPLY_ACTIONS,
    OFPIT_CLEAR_ACTIONS, OFPIT_EXPERIMENTER, OFPIT_GOTO_TABLE, OFPIT_METER,
    OFPIT_WRITE_ACTIONS, OFPIT_WRITE_METADATA, OFPP_ANY, OFPP_IN_PORT, OFPP_MAX,
    OFPVID_PRESENT, OFPError)
from mnovs.openflow.oxm import (
    OXM_BY_NAME, OXM_HEADER, check_field_value, oxm_field_of, oxm_header)

TLV_HEADER = struct.Struct('!HH')               # type, len
assert TLV_HEADER.size == 4

_GENERIC = struct.Struct('!HH4x')               # ofp_action_generic / instruction_actions
_TTL = struct.Struct('!HHB3x')                  # ofp_action_mpls_ttl / nw_ttl
_ETHERTYPE = struct.Struct('!HHH2x')            # ofp_action_push / pop_mpls
_U32 = struct.Struct('!HHI')                    # ofp_action_group / set_queue, meter
_OUTPUT = struct.Struct('!HHIH6x')              # port, max_len
_GOTO = struct.Struct('!HHB3x')                 # table_id
_METADATA = struct.Struct('!HH4xQQ')            # metadata, metadata_mask
assert (_GENERIC.size, _TTL.size, _ETHERTYPE.size, _U32.size) == (8, 8, 8, 8)
assert (_OUTPUT.size, _GOTO.size, _METADATA.size) == (16, 8, 24)

# name -> (OFPAT_*, struct of the whole action).  set_field is variable-length.
ACTIONS = {
    'output': (OFPAT_OUTPUT, _OUTPUT),
    'copy_ttl_out': (OFPAT_COPY_TTL_OUT, _GENERIC),
    'copy_ttl_in': (OFPAT_COPY_TTL_IN, _GENERIC),
    'set_mpls_ttl': (OFPAT_SET_MPLS_TTL, _TTL),
    'dec_mpls_ttl': (OFPAT_DEC_MPLS_TTL, _GENERIC),
    'push_vlan': (OFPAT_PUSH_VLAN, _ETHERTYPE),
    'pop_vlan': (OFPAT_POP_VLAN, _GENERIC),
    'push_mpls': (OFPAT_PUSH_MPLS, _ETHERTYPE),
    'pop_mpls': (OFPAT_POP_MPLS, _ETHERTYPE),
    'set_queue': (OFPAT_SET_QUEUE, _U32),
    'group': (OFPAT_GROUP, _U32),
    'set_nw_ttl': (OFPAT_SET_NW_TTL, _TTL),
    'dec_nw_ttl': (OFPAT_DEC_NW_TTL, _GENERIC),
    'set_field': (OFPAT_SET_FIELD, None),
    'push_pbb': (OFPAT_PUSH_PBB, _ETHERTYPE),
    'pop_pbb': (OFPAT_POP_PBB, _GENERIC),
}
ACTION_BY_TYPE = {number: (name, layout) for name, (number, layout) in ACTIONS.items()}

# Ethertypes each push action accepts.
PUSH_ETHERTYPES = {
    'push_vlan': (0x8100, 0x88a8),
    'push_mpls': (0x8847, 0x8848),
    'push_pbb': (0x88e7,),
}

# name -> (OFPIT_*, struct of the instruction's fixed part).
INSTRUCTIONS = {
    'goto_table': (OFPIT_GOTO_TABLE, _GOTO),
    'write_metadata': (OFPIT_WRITE_METADATA, _METADATA),
    'write_actions': (OFPIT_WRITE_ACTIONS, _GENERIC),
    'apply_actions': (OFPIT_APPLY_ACTIONS, _GENERIC),
    'clear_actions': (OFPIT_CLEAR_ACTIONS, _GENERIC),
    'meter': (OFPIT_METER, _U32),
}
INSTRUCTION_BY_TYPE = {number: (name, layout) for name, (number, layout) in INSTRUCTIONS.items()}
_WITH_ACTIONS = ('write_actions', 'apply_actions')


def is_valid_out_port(port):
    """True for a port an output action may name: 1..OFPP_MAX or reserved."""
    return 0 < port <= OFPP_MAX or OFPP_IN_PORT <= port < OFPP_ANY


def encode_action(action):
    """Encode one action tuple to its wire TLV."""
    name = action[0]
    number, layout = ACTIONS[name]
    if layout is not None:
        return layout.pack(number, layout.size, *action[1:])
    field = OXM_BY_NAME[action[1]]
    length = (TLV_HEADER.size + OXM_HEADER.size + field.width + 7) & ~7
    body = OXM_HEADER.pack(oxm_header(field)) + action[2].to_bytes(field.width, 'big')
    return TLV_HEADER.pack(number, length) + body + bytes(length - 4 - len(body))


def encode_actions(actions):
    return b''.join(map(encode_action, actions))


def _tlv_at(buf, pos, end, bad_len):
    """(type, len) of the TLV at pos, checked against end.

    bad_len: the (error type, code) pair to raise when the length is wrong.
    """
    if end - pos < 8:
        raise OFPError(*bad_len)
    tlv_type, length = TLV_HEADER.unpack_from(buf, pos)
    if length < 8 or length % 8 or pos + length > end:
        raise OFPError(*bad_len)
    return tlv_type, length


def _decode_set_field(buf, pos, length):
    header, = OXM_HEADER.unpack_from(buf, pos + 4)
    field = oxm_field_of(header)
    if field is None or not field.settable:
        raise OFPError(OFPET_BAD_ACTION, OFPBAC_BAD_SET_TYPE)
    if header >> 8 & 1:
        raise OFPError(OFPET_BAD_ACTION, OFPBAC_BAD_SET_ARGUMENT)
    if header & 0xff != field.width or length != (8 + field.width + 7) & ~7:
        raise OFPError(OFPET_BAD_ACTION, OFPBAC_BAD_SET_LEN)
    value = int.from_bytes(buf[pos + 8:pos + 8 + field.width], 'big')
    try:
        check_field_value(field, value, None)
    except OFPError:
        raise OFPError(OFPET_BAD_ACTION, OFPBAC_BAD_SET_ARGUMENT) from None
    if field.name == 'vlan_vid' and not value & OFPVID_PRESENT:
        # A VID is written into a tag: "no tag" is no value (OF1.5 says so
        # outright; OVS refuses it under OF1.3 too).
        raise OFPError(OFPET_BAD_ACTION, OFPBAC_BAD_SET_ARGUMENT)
    return ('set_field', field.name, value)


def _check_action(action):
    name = action[0]
    if name == 'output' and not is_valid_out_port(action[1]):
        raise OFPError(OFPET_BAD_ACTION, OFPBAC_BAD_OUT_PORT)
    if name == 'group' and action[1] > OFPG_MAX:
        raise OFPError(OFPET_BAD_ACTION, OFPBAC_BAD_OUT_GROUP)
    if name in PUSH_ETHERTYPES and action[1] not in PUSH_ETHERTYPES[name]:
        raise OFPError(OFPET_BAD_ACTION, OFPBAC_BAD_ARGUMENT)


def decode_actions(buf, pos, end):
    """Decode the action list in buf[pos:end] into a tuple of action tuples.

    Raises:
        OFPError(OFPET_BAD_ACTION, ...) as listed in the module docstring.
    """
    actions = []
    bad_len = (OFPET_BAD_ACTION, OFPBAC_BAD_LEN)
    while pos < end:
        action_type, length = _tlv_at(buf, pos, end, bad_len)
        row = ACTION_BY_TYPE.get(action_type)
        if row is None:
            if action_type == OFPAT_EXPERIMENTER:
                raise OFPError(OFPET_BAD_ACTION, OFPBAC_BAD_EXPERIMENTER)
            raise OFPError(OFPET_BAD_ACTION, OFPBAC_BAD_TYPE)
        name, layout = row
        if layout is None:
            action = _decode_set_field(buf, pos, length)
        elif length != layout.size:
            raise OFPError(*bad_len)
        else:
            action = (name,) + layout.unpack_from(buf, pos)[2:]
            _check_action(action)
        actions.append(action)
        pos += length
    return tuple(actions)


def encode_instruction(instruction):
    """Encode one instruction tuple to its wire TLV."""
    name = instruction[0]
    number, layout = INSTRUCTIONS[name]
    if name in _WITH_ACTIONS:
        actions = encode_actions(instruction[1])
        return layout.pack(number, layout.size + len(actions)) + actions
    return layout.pack(number, layout.size, *instruction[1:])


def encode_instructions(instructions):
    return b''.join(map(encode_instruction, instructions))


def decode_instructions(buf, pos, end):
    """Decode the instruction list in buf[pos:end] into a tuple of tuples.

    Raises:
        OFPError(OFPET_BAD_INSTRUCTION, ...), or OFPET_BAD_ACTION from the
        action lists inside.
    """
    instructions = []
    seen = set()
    bad_len = (OFPET_BAD_INSTRUCTION, OFPBIC_BAD_LEN)
    while pos < end:
        inst_type, length = _tlv_at(buf, pos, end, bad_len)
        row = INSTRUCTION_BY_TYPE.get(inst_type)
        if row is None:
            if inst_type == OFPIT_EXPERIMENTER:
                raise OFPError(OFPET_BAD_INSTRUCTION, OFPBIC_BAD_EXPERIMENTER)
            raise OFPError(OFPET_BAD_INSTRUCTION, OFPBIC_UNKNOWN_INST)
        name, layout = row
        if inst_type in seen:
            raise OFPError(OFPET_BAD_INSTRUCTION, OFPBIC_UNSUP_INST)
        seen.add(inst_type)
        if name in _WITH_ACTIONS:
            instruction = (name, decode_actions(buf, pos + layout.size, pos + length))
        elif length != layout.size:
            raise OFPError(*bad_len)
        else:
            instruction = (name,) + layout.unpack_from(buf, pos)[2:]
        instructions.append(instruction)
        pos += length
    return tuple(instructions)
