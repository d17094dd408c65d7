"""VXLAN tunnel ports over loopback: two Datapaths in this process, real UDP sockets.

127.0.0.0/8 is all local, so 127.0.0.1 and 127.0.0.2 are two tunnel
endpoints on one host; each test uses its own UDP port so tests do not
collide with each other or with a switch running on the machine.
"""

import socket
import struct
import time

import pytest

from mnovs.dp import actions as odp_actions
from mnovs.dp.datapath import Datapath
from mnovs.dp.flow import (FIELD_SLICES, FLOW_TNL_F_CSUM, FLOW_TNL_F_DONT_FRAGMENT,
                           FLOW_TNL_F_KEY, flow_extract, key_fields, md_of)
from mnovs.dp.offload import GSO_TCPV4, VNET_HDR
from mnovs.dp.tunnel import TunnelConfigError, TunnelSpec, parse_tunnel_config, spec_flags
from mnovs.dp.vxlan import VXLAN_FLAGS, VXLAN_HDR

A, B = socket.inet_aton('127.0.0.1'), socket.inet_aton('127.0.0.2')
_next_port = [47000 + (time.monotonic_ns() // 1000) % 2000]


def free_udp_port():
    _next_port[0] += 1
    return _next_port[0]


def config(**options):
    return parse_tunnel_config('vx', 'vxlan', {k: str(v) for k, v in options.items()})[0]


def frame(dst=b'\x00\x00\x00\x00\x00\x02', src=b'\x00\x00\x00\x00\x00\x01', size=60):
    eth = dst + src + b'\x08\x00'
    ip = bytearray(struct.pack('!BBHHHBBH4s4s', 0x45, 0, size - 14, 1, 0, 64, 17, 0,
                               socket.inet_aton('10.0.0.1'), socket.inet_aton('10.0.0.2')))
    udp = struct.pack('!HHHH', 1000, 2000, size - 34, 0)
    return eth + bytes(ip) + udp + bytes(size - 42)


class Sink:
    """The slow path of a receiving datapath: records upcalls, installs nothing."""

    def __init__(self):
        self.upcalls = []

    def __call__(self, packet, key):
        self.upcalls.append((bytes(packet), key))
        return (), None, None


@pytest.fixture
def pair():
    """Datapaths a (tunnel 127.0.0.1 -> .2) and b (127.0.0.2 -> .1), key 42."""
    udp_port = free_udp_port()
    sink = Sink()
    a = Datapath('a', upcall=Sink())
    b = Datapath('b', upcall=sink)
    a.add_port('vx', 5, 'vxlan', config(remote_ip='127.0.0.2', local_ip='127.0.0.1', key=42,
                                         dst_port=udp_port))
    b.add_port('vx', 7, 'vxlan', config(remote_ip='127.0.0.1', local_ip='127.0.0.2', key=42,
                                         dst_port=udp_port))
    yield a, b, sink, udp_port
    a.close()
    b.close()


def spec_to(dst, udp_port, tun_id=42, **kw):
    flags = kw.pop('flags', FLOW_TNL_F_KEY | FLOW_TNL_F_DONT_FRAGMENT)
    return TunnelSpec(tun_id, kw.pop('ip_src', A), dst, kw.pop('tos', 0), kw.pop('ttl', 64),
                      udp_port, flags)


def drain(dp, port_no, quiet=0.05, limit=2.0):
    """Receive on port_no's socket and handle upcalls until nothing came for `quiet` s."""
    receiver = dp.ports[port_no].receiver
    start = last = time.monotonic()
    seen = -1
    while time.monotonic() - start < limit:
        dp.tunnel_input(receiver)
        dp.handle_upcalls()
        now = time.monotonic()
        count = dp.n_missed + dp.n_hit + sum(dp.drops.values())
        if count != seen:
            seen, last = count, now
        elif count and now - last > quiet:
            return
        time.sleep(0.005)


def test_a_frame_crosses_the_tunnel_with_its_metadata(pair):
    a, b, sink, udp_port = pair
    sent = frame()
    a.execute(bytes(10) + sent, (('set_tunnel', spec_to(B, udp_port, tos=0x20, ttl=9)),
                                 ('output', 5)))
    drain(b, 7)
    assert len(sink.upcalls) == 1
    packet, key = sink.upcalls[0]
    assert packet == bytes(10) + sent           # zero vnet header, inner frame intact
    fields = key_fields(key)
    assert fields['in_port'] == 7 and fields['tun_id'] == 42
    assert (fields['tun_src'], fields['tun_dst']) == (A, B)
    assert (fields['tun_tos'], fields['tun_ttl']) == (0x20, 9)
    assert fields['tun_flags'] == FLOW_TNL_F_KEY
    assert a.ports[5].tx_packets == 1 and b.ports[7].rx_packets == 1


def test_the_outer_header_is_vxlan_with_the_vni_and_a_pooled_source_port():
    udp_port = free_udp_port()
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(('127.0.0.2', udp_port))
    listener.settimeout(2)
    dp = Datapath('a', upcall=Sink())
    try:
        port = dp.add_port('vx', 3, 'vxlan', config(remote_ip='127.0.0.2', key=0x123456,
                                                   dst_port=free_udp_port()))
        out = port.output_for(dp, spec_to(B, udp_port, tun_id=0x123456))
        sources = set()
        for n in range(32):
            dp.exec_key = bytes([n]) * 8           # 32 different flows
            out.send(bytes(10) + frame())
            data, (src_ip, src_port) = listener.recvfrom(65536)
            assert VXLAN_HDR.unpack_from(data) == (VXLAN_FLAGS, 0x123456 << 8)
            assert data[8:] == frame()
            sources.add(src_port)
        assert len(sources) > 1                   # flows spread over source ports (ECMP)
        assert all(32768 <= p <= 61000 for p in sources)
        dp.exec_key = b'same flow'
        again = set()
        for _ in range(4):
            out.send(bytes(10) + frame())
            again.add(listener.recvfrom(65536)[1][1])
        assert len(again) == 1                    # one flow, one source port
    finally:
        listener.close()
        dp.close()


def test_a_gso_super_frame_is_segmented_before_encapsulation(pair):
    a, b, sink, udp_port = pair
    payload = bytes(range(256)) * 16              # 4096 bytes, MSS 1000: 5 segments
    eth = b'\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x01\x08\x00'
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 40 + len(payload), 7, 0x4000, 64, 6, 0,
                     socket.inet_aton('10.0.0.1'), socket.inet_aton('10.0.0.2'))
    tcp = struct.pack('!HHIIBBHHH', 1, 2, 1000, 0, 0x50, 0x18, 65535, 0, 0)
    vnet = VNET_HDR.pack(1, GSO_TCPV4, 54, 1000, 34, 16)
    for csum in (False, True):
        flags = FLOW_TNL_F_KEY | (FLOW_TNL_F_CSUM if csum else 0)
        a.execute(vnet + eth + ip + tcp + payload,
                  (('set_tunnel', spec_to(B, udp_port, flags=flags)), ('output', 5)))
    drain(b, 7)
    frames = [packet[10:] for packet, _ in sink.upcalls]
    assert len(frames) == 10 and a.ports[5].tx_packets == 10
    got = b''.join(f[54:] for f in frames[:5])
    assert got == payload and b''.join(f[54:] for f in frames[5:]) == payload


def test_keys_decide_which_port_takes_a_datagram(pair):
    a, b, sink, udp_port = pair
    b.add_port('vx-flow', 8, 'vxlan', config(remote_ip='127.0.0.1', local_ip='127.0.0.2',
                                              key='flow', dst_port=udp_port))
    for vni in (42, 43):
        a.execute(bytes(10) + frame(), (('set_tunnel', spec_to(B, udp_port, tun_id=vni)),
                                        ('output', 5)))
    drain(b, 7)
    ports = [key_fields(key)['in_port'] for _, key in sink.upcalls]
    vnis = [key_fields(key)['tun_id'] for _, key in sink.upcalls]
    assert list(zip(ports, vnis)) == [(7, 42), (8, 43)]   # exact key first, then key=flow
    b.del_port(8)
    a.execute(bytes(10) + frame(), (('set_tunnel', spec_to(B, udp_port, tun_id=43)),
                                    ('output', 5)))
    drain(b, 7)
    assert len(sink.upcalls) == 2 and b.drops == {'tunnel-no-port': 1}


def test_malformed_datagrams_are_counted_drops_and_good_ones_still_pass(pair):
    a, b, sink, udp_port = pair
    junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    junk.bind(('127.0.0.1', 0))
    good = VXLAN_HDR.pack(VXLAN_FLAGS, 42 << 8) + frame()
    try:
        for data in (b'', b'\x08', VXLAN_HDR.pack(VXLAN_FLAGS, 42 << 8) + bytes(13),
                     VXLAN_HDR.pack(0x0c000000, 42 << 8) + frame(),
                     VXLAN_HDR.pack(VXLAN_FLAGS, 42 << 8 | 1) + frame(),
                     bytes(range(200)), good):
            junk.sendto(data, ('127.0.0.2', udp_port))
        drain(b, 7)
    finally:
        junk.close()
    assert b.drops == {'vxlan-truncated': 3, 'vxlan-bad-header': 3}
    assert len(sink.upcalls) == 1                 # from 127.0.0.1: port vx takes it


def test_an_installed_megaflow_sends_through_the_fast_path(pair):
    a, b, sink, udp_port = pair
    tx = a.add_port('tap-less', 9, 'vxlan', config(remote_ip='127.0.0.2', key=1,
                                                    dst_port=free_udp_port()))
    spec = spec_to(B, udp_port)
    key, _ = flow_extract(frame(), md_of(9))
    flow = a.flow_put(key, b'\xff' * len(key), (('set_tunnel', spec), ('output', 5)))
    assert flow.fast_outs is not None and flow.fast_outs[0].spec == spec
    a._input(tx, md_of(9), memoryview(bytes(10) + frame()), a.emc.table.get, 0.0)
    drain(b, 7)
    assert a.n_hit == 1 and len(sink.upcalls) == 1


def test_output_to_a_tunnel_without_set_tunnel_is_a_counted_drop(pair):
    a, _, _, _ = pair
    a.execute(bytes(10) + frame(), (('output', 5),))
    assert a.drops == {'tunnel-no-spec': 1} and a.ports[5].tx_dropped == 1


def test_a_taken_udp_port_is_a_clear_error_and_a_twin_port_is_refused(pair):
    a, _, _, udp_port = pair
    other = Datapath('c', upcall=Sink())
    try:
        with pytest.raises(OSError) as info:
            other.add_port('vx', 1, 'vxlan', config(remote_ip='127.0.0.2',
                                                     local_ip='127.0.0.1', dst_port=udp_port))
        assert info.value.strerror == (f'could not bind the VXLAN socket to '
                                       f'127.0.0.1:{udp_port} (Address already in use)')
        assert other.ports == {}
    finally:
        other.close()
    with pytest.raises(TunnelConfigError, match="same config as port 'vx'"):
        a.add_port('vx-twin', 6, 'vxlan', config(remote_ip='127.0.0.2', local_ip='127.0.0.1',
                                                  key=42, dst_port=udp_port))
    assert 6 not in a.ports


def test_the_receive_socket_closes_with_its_last_port(pair):
    a, _, _, udp_port = pair
    a.add_port('vx2', 6, 'vxlan', config(remote_ip='127.0.0.3', local_ip='127.0.0.1',
                                          key=42, dst_port=udp_port))
    receiver = a.ports[5].receiver
    assert a.ports[6].receiver is receiver
    a.del_port(5)
    assert receiver.sock.fileno() != -1
    a.del_port(6)
    assert receiver.sock.fileno() == -1 and a.tunnels.receivers == {}


@pytest.mark.parametrize('spec, words', [
    ('nope', 'TunnelSpec'),
    (TunnelSpec(1, A, bytes(4), 0, 64, 4789, 0), 'no destination'),
    (TunnelSpec(1, A, B, 0, 300, 4789, 0), 'ttl'),
    (TunnelSpec(1, b'x', B, 0, 64, 4789, 0), 'ip_src'),
])
def test_validate_actions_checks_set_tunnel(spec, words):
    with pytest.raises(ValueError, match=words):
        odp_actions.validate_actions((('set_tunnel', spec), ('output', 1)))


def test_validate_actions_takes_what_xlate_makes():
    conf = config(remote_ip='10.0.0.2', key=42)
    odp_actions.validate_actions((('set_tunnel', TunnelSpec(42, bytes(4), conf.remote_ip, 0, 64,
                                                            4789, spec_flags(conf))),
                                  ('output', 3)))


def test_tun_fields_sit_in_the_key_where_megaflows_mask_them():
    assert FIELD_SLICES['tun_id'][1] == 8 and FIELD_SLICES['tun_src'][1] == 4


def tcp_packet(payload=b'hello tunnel', partial=True):
    """vnet header + an IPv4/TCP frame whose checksum is partial or complete."""
    from mnovs.dp.offload import complete_csum, ones_sum
    src, dst = socket.inet_aton('10.0.0.1'), socket.inet_aton('10.0.0.2')
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 40 + len(payload), 1, 0, 64, 6, 0, src, dst)
    pseudo = (ones_sum(src + dst) + 6 + 20 + len(payload)) % 0xFFFF
    tcp = struct.pack('!HHIIBBHHH', 1, 2, 0, 0, 0x50, 0x18, 100, pseudo, 0)
    frame = bytearray(b'\x00' * 12 + b'\x08\x00' + ip + tcp + payload)
    if not partial:
        complete_csum(frame, 34, 16)
    return bytearray(10) + frame


def test_a_partial_inner_checksum_is_marked_for_the_kernel_to_finish():
    from mnovs.dp.vxlan import mark_offloads
    packet = tcp_packet()
    mark_offloads(memoryview(packet))
    assert VNET_HDR.unpack_from(packet) == (1, 0, 0, 0, 34, 16)
    full = tcp_packet(partial=False)
    mark_offloads(memoryview(full))
    assert full[:10] == bytes(10)
    assert segment_ok(packet)


def segment_ok(packet):
    """offload.segment finishes a marked packet into a frame whose checksum verifies."""
    from mnovs.dp.offload import ones_sum, segment
    (frame,) = segment(bytes(packet))
    pseudo = ones_sum(frame[26:34]) + 6 + len(frame) - 34
    return (pseudo + ones_sum(frame[34:])) % 0xFFFF == 0


def test_an_inner_tcp_super_frame_is_marked_for_segmentation():
    from mnovs.dp.offload import segment
    from mnovs.dp.vxlan import mark_offloads
    payload = bytes(range(256)) * 20            # 5120 bytes: beyond a standard MTU
    packet = tcp_packet(payload)
    mark_offloads(memoryview(packet))
    flags, gso_type, hdr_len, gso_size, start, offset = VNET_HDR.unpack_from(packet)
    assert (flags, gso_type, hdr_len, gso_size, start, offset) == (1, GSO_TCPV4, 54, 1460, 34, 16)
    frames = segment(bytes(packet))
    assert len(frames) == 4 and b''.join(f[54:] for f in frames) == payload


def test_a_frame_after_a_marked_super_frame_gets_a_clean_vnet_header(pair):
    a, b, sink, udp_port = pair
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(('127.0.0.1', 0))
    header = VXLAN_HDR.pack(VXLAN_FLAGS, 42 << 8)
    try:
        sender.sendto(header + bytes(tcp_packet(bytes(3000))[10:]), ('127.0.0.2', udp_port))
        sender.sendto(header + frame(), ('127.0.0.2', udp_port))
        drain(b, 7)
    finally:
        sender.close()
    assert [packet[:2] for packet, _ in sink.upcalls] == [b'\x01\x01', b'\x00\x00']


def test_a_flow_keeps_its_source_port_in_batches_and_single_datagrams():
    """UDP_SEGMENT batches (checksummed) leave from the port single datagrams use."""
    udp_port = free_udp_port()
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(('127.0.0.2', udp_port))
    listener.settimeout(2)
    dp = Datapath('a', upcall=Sink())
    try:
        port = dp.add_port('vx', 3, 'vxlan', config(remote_ip='127.0.0.2',
                                                   dst_port=free_udp_port()))
        out = port.output_for(dp, spec_to(B, udp_port))
        dp.exec_key = b'one flow'
        big = tcp_packet(bytes(3000))
        big[:10] = VNET_HDR.pack(1, GSO_TCPV4, 54, 1000, 34, 16)
        out.send(big)                               # 3 segments in one sendmsg
        out.send(bytes(10) + frame())               # one plain datagram
        sources = {listener.recvfrom(65536)[1][1] for _ in range(4)}
        assert len(sources) == 1 and port.tx_packets == 4
    finally:
        listener.close()
        dp.close()
