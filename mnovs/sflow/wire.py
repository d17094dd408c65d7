"""sFlow version 5 on the wire: datagrams, flow samples, counter samples, records.

Pure encoding, no state and no sockets: the agent (agent.py) keeps the
sequence numbers and pools and calls these. The layout is sflow.org's
sflow_version_5.txt in XDR (every field big-endian, padded to 4 bytes), in
the compact sample formats OVS emits (lib/sflow_receiver.c):

    datagram   version=5 | agent address (type 1: 4 bytes, type 2: 16) |
               sub_agent_id | sequence | uptime ms | n samples | samples...
    sample     data format (enterprise << 12 | format) | length | body

    flow sample (format 1):
        sequence | source_id | sampling_rate | sample_pool | drops |
        input | output | n records | records...
    counter sample (format 2):
        sequence | source_id | n records | records...
    record     data format | length | body

Flow records: 1 raw packet header (protocol 1 = Ethernet, frame_length
including the 4-byte FCS that was stripped, stripped = 4, the header
bytes), 1001 extended switch (source and destination VLAN and priority).
Counter records: 1 generic interface (88 bytes), 2 ethernet (52), 1004
OpenFlow port (datapath id, port), 1005 port name, 2203 application
resources (40), 2207 OVS datapath (24: hit, missed, lost, mask hit, flows,
masks). The tunnel records (1023/1029 egress, 1024/1030 ingress) are for
the VXLAN work: `record_ipv4_tunnel` and `record_vni` are their encoders.

source_id is class << 24 | index: class 0 (ifIndex) for a port's counters,
class 2 (physical entity) for the bridge's sampler and its global counters,
index 1000 + sub_id, as OVS. An interface field (input/output) is an
ifIndex, 0 for unknown, 0x40000000 | reason for a dropped packet (256:
unknown reason) and 0x80000000 | n for a packet sent to n interfaces.

Counters are unsigned and wrap: 32-bit fields take the value mod 2**32, as
the MIB counters they stand for do. An undefined counter is all ones.

Cost: a flow sample is two struct packs and a join, a few us.
"""

import struct

VERSION = 5
MAX_DATAGRAM_SIZE = 1400            # OVS's SFL_DEFAULT_DATAGRAM_SIZE
ADDRESS_IPV4, ADDRESS_IPV6 = 1, 2
DSCLASS_IFINDEX, DSCLASS_PHYSICAL_ENTITY = 0, 2
HEADER_ETHERNET = 1                 # header_protocol of a raw packet header
FCS_LEN = 4

# Sample formats (enterprise 0).
FLOW_SAMPLE, COUNTERS_SAMPLE = 1, 2
# Flow records.
FLOW_HEADER, FLOW_EX_SWITCH = 1, 1001
FLOW_EX_IPV4_TUNNEL_EGRESS, FLOW_EX_IPV4_TUNNEL_INGRESS = 1023, 1024
FLOW_EX_VNI_EGRESS, FLOW_EX_VNI_INGRESS = 1029, 1030
# Counter records.
COUNTERS_GENERIC, COUNTERS_ETHERNET = 1, 2
COUNTERS_OPENFLOWPORT, COUNTERS_PORTNAME = 1004, 1005
COUNTERS_APP_RESOURCES, COUNTERS_OVSDP = 2203, 2207

# Interface field encodings.
OUTPUT_DROPPED = 0x40000000 | 256   # "packet dropped, reason unknown"
OUTPUT_MULTIPLE = 0x80000000        # | number of output interfaces
UNDEF32 = 0xffffffff

_U32 = 0xffffffff
_U64 = 0xffffffffffffffff

_DATAGRAM_HEAD = struct.Struct('!II')           # version, address type
_DATAGRAM_TAIL = struct.Struct('!IIII')         # sub_id, sequence, uptime, n samples
_TAG_LEN = struct.Struct('!II')                 # data format, length
_FLOW_SAMPLE = struct.Struct('!IIIIIIIIII')     # format, length, 8 fields
_COUNTERS_SAMPLE = struct.Struct('!IIIII')      # format, length, sequence, source, n
_HEADER_RECORD = struct.Struct('!IIIIII')       # format, length, proto, frame, stripped, len
_SWITCH_RECORD = struct.Struct('!IIIIII')       # format, length, 4 VLAN fields
_GENERIC = struct.Struct('!IIIIQIIQIIIIIIQIIIIII')
_ETHERNET = struct.Struct('!II13I')
_OPENFLOWPORT = struct.Struct('!IIQI')
_APP_RESOURCES = struct.Struct('!IIIIQQIIII')
_OVSDP = struct.Struct('!II6I')
_IPV4_TUNNEL = struct.Struct('!IIII4s4sIIII')   # format, length, sampled_ipv4 (32 bytes)
_VNI = struct.Struct('!III')

assert _GENERIC.size == 8 + 88
assert _ETHERNET.size == 8 + 52
assert _OPENFLOWPORT.size == 8 + 12
assert _APP_RESOURCES.size == 8 + 40
assert _OVSDP.size == 8 + 24
assert _IPV4_TUNNEL.size == 8 + 32


def _pad(data):
    return data + bytes(-len(data) % 4)


def source_id(ds_class, index):
    return ds_class << 24 | index


# --- datagrams ---------------------------------------------------------------

def datagram_header(agent_address, sub_id, sequence, uptime_ms, n_samples):
    """The datagram's header; agent_address is 4 (IPv4) or 16 (IPv6) bytes."""
    kind = ADDRESS_IPV4 if len(agent_address) == 4 else ADDRESS_IPV6
    return (_DATAGRAM_HEAD.pack(VERSION, kind) + agent_address
            + _DATAGRAM_TAIL.pack(sub_id, sequence & _U32, uptime_ms & _U32, n_samples))


def header_size(agent_address):
    return _DATAGRAM_HEAD.size + len(agent_address) + _DATAGRAM_TAIL.size


def datagram(agent_address, sub_id, sequence, uptime_ms, samples):
    """A whole datagram from encoded samples."""
    return b''.join([datagram_header(agent_address, sub_id, sequence, uptime_ms, len(samples)),
                     *samples])


# --- flow samples ------------------------------------------------------------

def flow_sample(sequence, source, sampling_rate, sample_pool, drops, input_if, output_if,
                records):
    """A flow sample (compact format) from encoded records."""
    body = b''.join(records)
    return _FLOW_SAMPLE.pack(FLOW_SAMPLE, 32 + len(body), sequence & _U32, source,
                             sampling_rate, sample_pool & _U32, drops & _U32, input_if,
                             output_if, len(records)) + body


def record_raw_header(frame, max_header):
    """Record 1: the frame's first max_header bytes (FCS already stripped)."""
    header = bytes(frame[:max_header])
    padded = _pad(header)
    return _HEADER_RECORD.pack(FLOW_HEADER, 16 + len(padded), HEADER_ETHERNET,
                               len(frame) + FCS_LEN, FCS_LEN, len(header)) + padded


def record_switch(src_tci, dst_tci):
    """Record 1001: VLAN id and priority on the way in and out (0 untagged)."""
    return _SWITCH_RECORD.pack(FLOW_EX_SWITCH, 16, src_tci & 0xfff, src_tci >> 13,
                               dst_tci & 0xfff, dst_tci >> 13)


def record_ipv4_tunnel(tag, length, protocol, src, dst, src_port, dst_port, tcp_flags, tos):
    """Records 1023 (egress) / 1024 (ingress): the outer IPv4 header (sampled_ipv4)."""
    return _IPV4_TUNNEL.pack(tag, 32, length, protocol, src, dst, src_port, dst_port,
                             tcp_flags, tos)


def record_vni(tag, vni):
    """Records 1029 (egress) / 1030 (ingress): the VXLAN network identifier."""
    return _VNI.pack(tag, 4, vni)


# --- counter samples -----------------------------------------------------------

def counters_sample(sequence, source, records):
    body = b''.join(records)
    return _COUNTERS_SAMPLE.pack(COUNTERS_SAMPLE, 12 + len(body), sequence & _U32, source,
                                 len(records)) + body


def counters_generic(ifindex, speed, direction, status, stats):
    """Record 1 from a port's statistics dict (netdev names; missing means 0).

    direction: 0 unknown, 1 full duplex, 2 half; status: bit 0 admin up,
    bit 1 oper up; speed in bit/s.
    """
    get = stats.get
    return _GENERIC.pack(
        COUNTERS_GENERIC, 88, ifindex, 6, speed & _U64, direction, status,
        get('rx_bytes', 0) & _U64, get('rx_packets', 0) & _U32, get('multicast', 0) & _U32,
        UNDEF32, get('rx_dropped', 0) & _U32, get('rx_errors', 0) & _U32, UNDEF32,
        get('tx_bytes', 0) & _U64, get('tx_packets', 0) & _U32, UNDEF32, UNDEF32,
        get('tx_dropped', 0) & _U32, get('tx_errors', 0) & _U32, 0)


def counters_ethernet(stats):
    """Record 2: the dot3 counters Linux keeps; the others are undefined.

    Alignment is rx_frame_errors, FCS rx_crc_errors, too long rx_length_errors.
    """
    get = stats.get
    return _ETHERNET.pack(COUNTERS_ETHERNET, 52, get('rx_frame_errors', 0) & _U32,
                          get('rx_crc_errors', 0) & _U32, *[UNDEF32] * 8,
                          get('rx_length_errors', 0) & _U32, UNDEF32, UNDEF32)


def counters_openflow_port(datapath_id, port_no):
    return _OPENFLOWPORT.pack(COUNTERS_OPENFLOWPORT, 12, datapath_id, port_no)


def counters_port_name(name):
    data = name.encode()[:255]
    padded = _pad(data)
    return _TAG_LEN.pack(COUNTERS_PORTNAME, 4 + len(padded)) + struct.pack('!I', len(data)) \
        + padded


def counters_app_resources(user_ms, system_ms, mem_used):
    return _APP_RESOURCES.pack(COUNTERS_APP_RESOURCES, 40, user_ms & _U32, system_ms & _U32,
                               mem_used & _U64, _U64, UNDEF32, UNDEF32, UNDEF32, UNDEF32)


def counters_ovsdp(n_hit, n_missed, n_lost, n_mask_hit, n_flows, n_masks):
    return _OVSDP.pack(COUNTERS_OVSDP, 24, n_hit & _U32, n_missed & _U32, n_lost & _U32,
                       n_mask_hit & _U32, n_flows & _U32, n_masks & _U32)
