"""A small sFlow v5 decoder for tests: datagram -> dicts (compact sample formats only).

Written from sflow_version_5.txt, apart from mnovs/sflow/wire.py, so that a
test compares the encoder with an independent reading (tshark, tcpdump and
sfacctd are the others).
"""

import struct


def _u32(data, at):
    return struct.unpack_from('!I', data, at)[0]


def decode_datagram(data):
    """Return {'version', 'agent', 'sub_id', 'sequence', 'uptime', 'samples': [...]}."""
    version, kind = struct.unpack_from('!II', data, 0)
    at = 8
    size = 4 if kind == 1 else 16
    agent = bytes(data[at:at + size])
    at += size
    sub_id, sequence, uptime, n = struct.unpack_from('!IIII', data, at)
    at += 16
    samples = []
    for _ in range(n):
        fmt, length = struct.unpack_from('!II', data, at)
        body = data[at + 8:at + 8 + length]
        assert len(body) == length, 'sample runs past the datagram'
        samples.append(_SAMPLES[fmt](body))
        at += 8 + length
    assert at == len(data), 'bytes after the last sample'
    return {'version': version, 'agent': agent, 'sub_id': sub_id, 'sequence': sequence,
            'uptime': uptime, 'samples': samples}


def _records(body, at, n):
    records = {}
    for _ in range(n):
        fmt, length = struct.unpack_from('!II', body, at)
        records[fmt] = bytes(body[at + 8:at + 8 + length])
        at += 8 + length
    assert at == len(body), 'bytes after the last record'
    return records


def _flow_sample(body):
    (sequence, source, rate, pool, drops, input_if, output_if,
     n) = struct.unpack_from('!8I', body, 0)
    records = _records(body, 32, n)
    out = {'kind': 'flow', 'sequence': sequence, 'source': source, 'rate': rate,
           'pool': pool, 'drops': drops, 'input': input_if, 'output': output_if,
           'records': records}
    if 1 in records:
        proto, frame_length, stripped, header_length = struct.unpack_from('!4I', records[1])
        out['header'] = {'protocol': proto, 'frame_length': frame_length,
                         'stripped': stripped, 'bytes': records[1][16:16 + header_length]}
    if 1001 in records:
        out['switch'] = struct.unpack('!4I', records[1001])
    return out


def _counters_sample(body):
    sequence, source, n = struct.unpack_from('!3I', body, 0)
    records = _records(body, 12, n)
    out = {'kind': 'counters', 'sequence': sequence, 'source': source, 'records': records}
    if 1 in records:
        names = ('ifindex', 'type', 'speed', 'direction', 'status', 'in_octets', 'in_ucast',
                 'in_mcast', 'in_bcast', 'in_discards', 'in_errors', 'in_unknown',
                 'out_octets', 'out_ucast', 'out_mcast', 'out_bcast', 'out_discards',
                 'out_errors', 'promisc')
        out['generic'] = dict(zip(names, struct.unpack('!IIQIIQIIIIIIQIIIIII', records[1])))
    if 1005 in records:
        length = _u32(records[1005], 0)
        out['port_name'] = records[1005][4:4 + length].decode()
    if 1004 in records:
        out['openflow_port'] = struct.unpack('!QI', records[1004])
    if 2207 in records:
        out['ovsdp'] = struct.unpack('!6I', records[2207])
    return out


_SAMPLES = {1: _flow_sample, 2: _counters_sample}
