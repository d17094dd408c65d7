"""OFProto over a real datapath: upcalls, ukeys, stats push, revalidation,
timeouts, fail modes, packet-ins and buffers.

Everything is real but the edges. Datapath ports are FakePorts that record
what they send; controller channels are FakeChannels that record the bytes
the agent sends them. Messages go in as codec-encoded bytes through
handlers.handle_message, as a Channel delivers them, and what comes out is
decoded again. Frames enter through Datapath._input, the per-packet path
behind the port ring, so misses take real upcalls and hits real megaflows.
The helpers here are shared with test_handlers.py.
"""

import random
import time
from types import SimpleNamespace

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from mnovs.dp.flow import flow_extract, key_fields, md_of
from mnovs.dp.tunnel import parse_tunnel_config
from mnovs.dp.offload import GSO_TCPV4, VNET_HDR_LEN
from mnovs.openflow import codec, ofp
from mnovs.openflow.codec import (
    BarrierRequest, FlowMod, Hello, MultipartRequest, PacketIn, PacketOut, SetAsync,
    SetConfig)
from mnovs.ofagent.connection import ActiveTarget
from mnovs.ofagent.handlers import handle_message
from mnovs.ofagent.mac_learning import MacTable
from mnovs.openflow.multipart import FlowStatsRequest
from mnovs.ofagent.ofproto import ADD_BATCH_DELAY, N_BUFFERS, OFProto
from mnovs.ofagent.xlate import xlate
from test_offload import assert_checksums, partial

NO_BUFFER = ofp.OFPCML_NO_BUFFER
VNET_NONE = bytes(VNET_HDR_LEN)


# --- harness -----------------------------------------------------------------

class FakePort:
    """A datapath port without a socket: what it sends is kept in `sent`."""

    def __init__(self, port_no):
        self.port_no = port_no
        self.md = md_of(port_no)
        self.tunnel = None
        self.name = f'ut1-eth{port_no}'     # no such interface: hw_addr is 0
        self.up = True
        self.sent = []
        self.ring = None                # frames come in through Switch.receive
        self.rx_packets = self.rx_bytes = self.rx_dropped = 0

    def send(self, packet):
        self.sent.append(bytes(packet))

    def frames(self):
        """What was sent, vnet headers stripped; clears the record."""
        out = [packet[VNET_HDR_LEN:] for packet in self.sent]
        self.sent.clear()
        return out


class FakeChannel:
    """What ofproto and handlers use of a connection.Channel, recording sends."""

    def __init__(self, name='tcp:127.0.0.1:6653', on_close=None):
        self.name = name
        self.on_close = on_close
        self.version = self.role = self.async_config = None
        self.last_rx = time.monotonic()
        self.probe_sent = False
        self.closed = False
        self.out = bytearray()
        self.backlog_bytes = 0          # what Channel.backlog() would say

    def send(self, data):
        self.out += data

    def backlog(self):
        return self.backlog_bytes

    def backlogged(self):
        return False                    # messages are handed in one at a time

    def close(self):
        if not self.closed:
            self.closed = True
            if self.on_close is not None:
                self.on_close(self)

    def received(self):
        """Decode and forget everything sent so far."""
        raws, rest = codec.split_messages(self.out)
        assert not rest
        self.out.clear()
        return [codec.decode(raw) for raw in raws]


class Switch:
    """Datapath + NormalSwitch + OFProto, with a controller's-eye view."""

    def __init__(self, fail_mode='secure', n_ports=3, **options):
        self.admin = []                 # set_link_admin calls
        self.seen_keys = set()          # flow keys of every frame received
        self.ofproto = OFProto('s1', 0xab, fail_mode, selector=None,
                               mac_table=MacTable(idle_time=300),
                               set_link_admin=lambda name, up: self.admin.append((name, up)),
                               **options)
        self.dp = self.ofproto.dp
        self.normal = self.ofproto.normal
        for port_no in range(1, n_ports + 1):
            self.dp.ports[port_no] = FakePort(port_no)
        for port in self.dp.ports.values():
            self.ofproto.port_added(port)

    def port(self, port_no):
        return self.dp.ports[port_no]

    def connect(self, active=True, name='tcp:127.0.0.1:6653'):
        """A controller channel past HELLO: an active target's, or a listener's."""
        if active:
            target = ActiveTarget(name, None, None, None, self.ofproto._on_close)
            channel = target.channel = FakeChannel(name, target._closed)
        else:
            channel = FakeChannel(name + ' (via ptcp:6634)', self.ofproto._on_close)
            target = SimpleNamespace(target='ptcp:6634', channels={channel}, close=lambda: None)
        self.ofproto.targets.append(target)
        assert self.send(channel, Hello()) == []
        assert channel.version == ofp.OFP_VERSION
        return channel

    def send(self, channel, msg, xid=None):
        """Feed one message as raw bytes; return the decoded answers."""
        if xid is not None:
            msg.xid = xid
        handle_message(self.ofproto, channel, codec.encode(msg))
        return channel.received()

    def flow_mod(self, channel, **fields):
        """Send a FlowMod; assert no error came back; return what did."""
        answers = self.send(channel, FlowMod(**fields))
        assert not any(isinstance(msg, codec.ErrorMsg) for msg in answers), answers
        return answers

    def receive(self, in_port, frame, now=None, vnet=VNET_NONE):
        """A frame arrives on a port: through the caches, upcall on a miss."""
        self.seen_keys.add(flow_extract(bytes(frame), md_of(in_port))[0])
        packet = memoryview(vnet + bytes(frame))
        self.dp._input(self.port(in_port), md_of(in_port), packet, self.dp.emc.table.get,
                       time.monotonic() if now is None else now)
        self.dp.handle_upcalls()

    def flow_stats(self, channel):
        (reply,) = self.send(channel, MultipartRequest(ofp.OFPMP_FLOW, body=FlowStatsRequest()))
        return reply.body


def udp(src=1, dst=2, size=0, ttl=64, dport=2):
    """An Ethernet/IPv4/UDP frame from host `src` to host `dst` (numbers)."""
    return bytes(Ether(src=f'00:00:00:00:00:{src:02x}', dst=f'00:00:00:00:00:{dst:02x}')
                 / IP(src=f'10.0.0.{src}', dst=f'10.0.0.{dst}', ttl=ttl)
                 / UDP(sport=1, dport=dport) / Raw(bytes(size)))


def apply(*actions):
    return (('apply_actions', tuple(actions)),)


def output(port, max_len=NO_BUFFER):
    return ('output', port, max_len)


def table_miss_to_controller(switch, channel, max_len=NO_BUFFER, cookie=0):
    switch.flow_mod(channel, priority=0, cookie=cookie,
                    instructions=apply(output(ofp.OFPP_CONTROLLER, max_len)))


def odp_outputs(actions):
    return sorted(a[1] for a in actions if a[0] == 'output')


def assert_no_stale_megaflow(switch):
    """Every packet seen so far gets from its megaflow what a translation gives now.

    That is what revalidation must keep true: a megaflow may keep a mask
    other than a fresh translation's as long as every packet it covers
    still gets the same actions and credits the same rules.
    """
    flows = switch.dp.flow_dump()
    for key in switch.seen_keys:
        key_int = int.from_bytes(key, 'big')
        for flow in flows:
            if key_int & int.from_bytes(flow.mask, 'big') == flow.key_int:
                result = xlate(switch.ofproto.ctx, key)
                assert result.actions == flow.actions, flow
                assert result.rules == flow.ukey.result.rules, flow


@pytest.fixture
def switch():
    return Switch()


@pytest.fixture
def controller(switch):
    return switch.connect()


# --- upcalls, translation changes, revalidation --------------------------------

def test_upcall_installs_megaflow_with_a_ukey(switch, controller):
    switch.flow_mod(controller, match={'in_port': (1, None)}, instructions=apply(output(2)))
    switch.receive(1, udp())
    switch.receive(1, udp())
    (flow,) = switch.dp.flow_dump()
    assert flow.actions == (('output', 2),) and flow.packets == 2
    assert flow.ukey.result.rules[0].match == {'in_port': (1, None)}
    assert switch.dp.n_missed == 1
    assert switch.port(2).frames() == [udp(), udp()]


def test_flow_mod_revalidates_megaflows_at_run(switch, controller):
    switch.flow_mod(controller, match={'in_port': (1, None)}, instructions=apply(output(2)))
    switch.receive(1, udp())
    switch.flow_mod(controller, command=ofp.OFPFC_MODIFY, match={'in_port': (1, None)},
                    instructions=apply(output(3)))
    assert switch.ofproto.need_revalidate
    assert switch.dp.flow_dump()[0].actions == (('output', 2),)   # stale until run()
    switch.ofproto.run()
    assert switch.dp.flow_dump() == []
    switch.receive(1, udp())
    assert switch.port(3).frames() == [udp()]
    assert_no_stale_megaflow(switch)


def test_revalidation_keeps_megaflows_a_change_does_not_touch(switch, controller):
    switch.flow_mod(controller, match={'in_port': (1, None)}, instructions=apply(output(2)))
    switch.flow_mod(controller, match={'in_port': (2, None)}, instructions=apply(output(1)))
    switch.receive(1, udp())
    switch.receive(2, udp(2, 1))
    switch.flow_mod(controller, command=ofp.OFPFC_MODIFY_STRICT, match={'in_port': (2, None)},
                    instructions=apply(output(3)))
    switch.ofproto.run()
    (flow,) = switch.dp.flow_dump()
    assert flow.actions == (('output', 2),)


def test_barrier_reply_comes_after_revalidation(switch, controller):
    switch.flow_mod(controller, match={'in_port': (1, None)}, instructions=apply(output(2)))
    switch.receive(1, udp())
    switch.flow_mod(controller, command=ofp.OFPFC_DELETE)
    assert len(switch.dp.flow_dump()) == 1
    seen = []
    controller.send = lambda data: seen.append((len(switch.dp.flow_dump()), bytes(data)))
    handle_message(switch.ofproto, controller, codec.encode(BarrierRequest(xid=9)))
    ((n_flows, raw),) = seen
    assert n_flows == 0
    assert codec.decode(raw) == codec.BarrierReply(xid=9)


def test_random_flow_mods_never_leave_a_stale_megaflow(switch, controller):
    rng = random.Random(4)
    for step in range(150):
        if rng.random() < 0.4:
            match = rng.choice(({}, {'in_port': (rng.randint(1, 3), None)},
                                {'eth_type': (0x0800, None), 'ip_proto': (17, None),
                                 'udp_dst': (rng.randint(1, 3), None)}))
            command = rng.choice((ofp.OFPFC_ADD, ofp.OFPFC_ADD, ofp.OFPFC_MODIFY,
                                  ofp.OFPFC_DELETE))
            instructions = apply(*(output(rng.randint(1, 3)) for _ in range(rng.randint(0, 2))))
            switch.flow_mod(controller, command=command, match=match,
                            priority=rng.choice((0, 10, 20)), instructions=instructions)
            switch.ofproto.sync()
        else:
            src, dst = rng.sample(range(1, 4), 2)
            switch.receive(src, udp(src, dst, dport=rng.randint(1, 3)))
        assert_no_stale_megaflow(switch)
    assert switch.dp.flow_dump()


def test_added_rule_revalidates_only_the_megaflows_it_overlaps(switch, controller):
    switch.flow_mod(controller, match={'in_port': (1, None)}, instructions=apply(output(2)))
    switch.flow_mod(controller, match={'in_port': (2, None)}, instructions=apply(output(1)))
    switch.receive(1, udp(1, 2))
    switch.receive(2, udp(2, 1))
    switch.ofproto.sync()
    judged = []
    is_stale = switch.ofproto.is_stale
    switch.ofproto.is_stale = lambda flow: judged.append(flow) or is_stale(flow)
    switch.flow_mod(controller, priority=40000, match={'in_port': (2, None)},
                    instructions=apply(output(3)))
    switch.ofproto.sync()
    assert [key_fields(flow.key)['in_port'] for flow in judged] == [2]
    switch.receive(2, udp(2, 1))
    assert switch.port(3).frames() == [udp(2, 1)]
    assert_no_stale_megaflow(switch)


def test_rule_additions_are_revalidated_together_after_a_short_delay(switch, controller):
    switch.flow_mod(controller, match={'in_port': (1, None)}, instructions=apply(output(2)))
    switch.receive(1, udp(1, 2))
    switch.ofproto.sync()
    switch.flow_mod(controller, priority=40000, match={'in_port': (1, None)},
                    instructions=apply(output(3)))
    now = time.monotonic()
    assert 0 < switch.ofproto.wait_time(now) <= ADD_BATCH_DELAY
    switch.ofproto.run(now)
    assert switch.dp.flow_dump()[0].actions == (('output', 2),)   # not yet
    switch.ofproto.run(now + ADD_BATCH_DELAY)
    assert switch.dp.flow_dump() == [] and switch.ofproto.wait_time(now) is None


def test_added_rule_after_a_rewrite_revalidates_what_the_rewrite_made(switch, controller):
    # Table 0 matched eth_dst before rewriting it, so the megaflow holds the
    # old value; table 1 looks up the new one. The new rule does not overlap
    # the megaflow's key: only the rewrite flag tells that it matters.
    switch.flow_mod(controller, match={'in_port': (1, None), 'eth_dst': (2, None)},
                    instructions=(
        ('apply_actions', (('set_field', 'eth_dst', 0x000000000003),)), ('goto_table', 1)))
    switch.receive(1, udp(1, 2))
    switch.ofproto.sync()                                  # nothing left to revalidate
    assert switch.port(3).frames() == []                  # table 1 is empty: drop
    switch.flow_mod(controller, table_id=1, match={'eth_dst': (0x000000000003, None)},
                    instructions=apply(output(3)))
    switch.ofproto.sync()
    switch.receive(1, udp(1, 2))
    assert len(switch.port(3).frames()) == 1
    assert_no_stale_megaflow(switch)


# --- statistics ----------------------------------------------------------------

def test_megaflow_hits_count_on_the_rule(switch, controller):
    switch.flow_mod(controller, match={'in_port': (1, None)}, instructions=apply(output(2)))
    for _ in range(3):
        switch.receive(1, udp(size=10))
    (stats,) = switch.flow_stats(controller)
    size = len(udp(size=10))
    assert (stats.packet_count, stats.byte_count) == (3, 3 * size)
    switch.receive(1, udp(size=10))
    switch.receive(1, udp(size=10))
    switch.dp.flow_flush()                  # deleted megaflow: its last stats still count
    (stats,) = switch.flow_stats(controller)
    assert (stats.packet_count, stats.byte_count) == (5, 5 * size)
    switch.ofproto.push_stats()
    (stats,) = switch.flow_stats(controller)
    assert stats.packet_count == 5          # nothing counted twice


def test_replaced_rule_keeps_counts_of_its_megaflows(switch, controller):
    switch.flow_mod(controller, match={'in_port': (1, None)}, instructions=apply(output(2)))
    switch.receive(1, udp())
    switch.receive(1, udp())
    switch.flow_mod(controller, match={'in_port': (1, None)}, instructions=apply(output(3)))
    switch.ofproto.run()
    (stats,) = switch.flow_stats(controller)
    assert stats.packet_count == 2


def test_reset_counts_forgets_packets_before_the_modify(switch, controller):
    switch.flow_mod(controller, match={'in_port': (1, None)}, instructions=apply(output(2)))
    switch.receive(1, udp())
    switch.flow_mod(controller, command=ofp.OFPFC_MODIFY, flags=ofp.OFPFF_RESET_COUNTS,
                    match={'in_port': (1, None)}, instructions=apply(output(2)))
    switch.ofproto.run()
    switch.receive(1, udp())
    (stats,) = switch.flow_stats(controller)
    assert stats.packet_count == 1


def test_idle_timeout_counts_datapath_hits(switch, controller):
    t0 = time.monotonic()
    switch.flow_mod(controller, match={'in_port': (1, None)}, idle_timeout=2,
                    flags=ofp.OFPFF_SEND_FLOW_REM, cookie=0x77,
                    instructions=apply(output(2)))
    for dt in (1.0, 2.5, 3.5):              # one upcall, then megaflow hits only
        switch.receive(1, udp(), now=t0 + dt)
    assert switch.dp.n_missed == 1
    switch.ofproto.run_periodic(t0 + 4.0)
    assert controller.received() == []
    assert len(switch.ofproto.pipeline.tables[0]) == 1
    controller.last_rx = t0 + 5             # no echo probe in the way
    switch.ofproto.run_periodic(t0 + 5.6)
    (removed,) = controller.received()
    assert isinstance(removed, codec.FlowRemoved)
    assert (removed.reason, removed.cookie, removed.idle_timeout) == (
        ofp.OFPRR_IDLE_TIMEOUT, 0x77, 2)
    assert (removed.packet_count, removed.byte_count) == (3, 3 * len(udp()))
    assert removed.match == {'in_port': (1, None)}
    assert removed.duration_sec == 5
    switch.ofproto.run()
    assert switch.dp.flow_dump() == []


def test_idle_time_is_the_latest_use_of_any_megaflow(switch, controller):
    t0 = time.monotonic()
    switch.flow_mod(controller, match={'eth_type': (0x0800, None)}, idle_timeout=5,
                    instructions=apply(output(3)))
    switch.receive(1, udp(1, 3), now=t0 + 1)
    switch.receive(2, udp(2, 3), now=t0 + 1)    # a second megaflow (in_port is matched)
    switch.receive(1, udp(1, 3), now=t0 + 8)    # the first one stays busy
    controller.last_rx = t0 + 9
    switch.ofproto.run_periodic(t0 + 9)
    assert len(switch.ofproto.pipeline.tables[0]) == 1


def test_hard_timeout_and_no_flow_removed_without_the_flag(switch, controller):
    t0 = time.monotonic()
    switch.flow_mod(controller, match={'in_port': (1, None)}, hard_timeout=1,
                    flags=ofp.OFPFF_SEND_FLOW_REM, instructions=apply(output(2)))
    switch.flow_mod(controller, match={'in_port': (2, None)}, hard_timeout=1,
                    instructions=apply(output(1)))
    switch.receive(1, udp(), now=t0 + 0.5)
    switch.ofproto.run_periodic(t0 + 1.5)
    (removed,) = controller.received()
    assert (removed.reason, removed.packet_count) == (ofp.OFPRR_HARD_TIMEOUT, 1)
    assert not any(len(table) for table in switch.ofproto.pipeline.tables)


def test_delete_sends_flow_removed_with_unpushed_counts(switch, controller):
    switch.flow_mod(controller, match={'in_port': (1, None)}, flags=ofp.OFPFF_SEND_FLOW_REM,
                    instructions=apply(output(2)))
    switch.receive(1, udp())
    switch.receive(1, udp())
    (removed,) = switch.flow_mod(controller, command=ofp.OFPFC_DELETE,
                                 match={'in_port': (1, None)})
    assert (removed.reason, removed.packet_count) == (ofp.OFPRR_DELETE, 2)


def test_flow_removed_follows_the_async_mask(switch, controller):
    assert switch.send(controller, SetAsync((0b111, 0), (0b111, 0b111), (0b1011, 0))) == []
    switch.flow_mod(controller, match={'in_port': (1, None)}, flags=ofp.OFPFF_SEND_FLOW_REM,
                    instructions=apply(output(2)))
    assert switch.flow_mod(controller, command=ofp.OFPFC_DELETE) == []  # DELETE: bit 2 off


# --- packet-in and buffers -----------------------------------------------------

def test_table_miss_packet_in_buffers_a_long_frame(switch, controller):
    table_miss_to_controller(switch, controller, max_len=64, cookie=0x1234)
    frame = udp(size=200)
    switch.receive(1, frame)
    (packet_in,) = controller.received()
    assert isinstance(packet_in, PacketIn)
    assert (packet_in.reason, packet_in.table_id, packet_in.cookie) == (
        ofp.OFPR_NO_MATCH, 0, 0x1234)
    assert packet_in.match == {'in_port': (1, None)}
    assert packet_in.total_len == len(frame) and packet_in.data == frame[:64]
    assert packet_in.buffer_id != ofp.OFP_NO_BUFFER
    # The packet-out names the buffer: the whole frame goes out.
    out = PacketOut(packet_in.buffer_id, 1, (output(2),))
    assert switch.send(controller, out) == []
    assert switch.port(2).frames() == [frame]
    (error,) = switch.send(controller, out, xid=31)
    assert (error.type, error.code, error.xid) == (
        ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BUFFER_EMPTY, 31)
    (error,) = switch.send(controller, PacketOut(packet_in.buffer_id + 1, 1, (output(2),)),
                           xid=32)
    assert (error.code, error.xid) == (ofp.OFPBRC_BUFFER_UNKNOWN, 32)


def test_packet_in_rate_limit_queues_the_excess_and_releases_it_later():
    # 1 packet-in/s: the test's own run time earns no token.
    switch = Switch(controller_rate_limit=1, controller_burst_limit=25)
    controller = switch.connect()
    table_miss_to_controller(switch, controller)
    for n in range(40):
        switch.receive(1, udp(size=n))
    assert len(controller.received()) == 25          # the bucket's burst
    switch.ofproto.run(now=time.monotonic() + 20)   # 20 tokens come back
    assert [len(p.data) for p in controller.received()] == [len(udp(size=n))
                                                           for n in range(25, 40)]
    assert 'packet-in-miss: backlog=0 bypassed=25 queued=15 dropped=0' in \
        switch.ofproto.show()


def test_rate_limited_flood_on_one_port_does_not_starve_another():
    switch = Switch(controller_rate_limit=1, controller_burst_limit=25)
    controller = switch.connect()
    table_miss_to_controller(switch, controller)
    for n in range(100):                              # port 1 floods
        switch.receive(1, udp(src=1, size=n))
    switch.receive(2, udp(src=2))                     # port 2 sends one
    controller.received()
    switch.ofproto.run(now=time.monotonic() + 4)     # a few tokens only
    released = controller.received()
    assert len(released) >= 2
    assert any(p.match['in_port'] == (2, None) for p in released[:2])


def test_packet_ins_are_dropped_and_counted_when_the_connection_is_behind(switch, controller):
    table_miss_to_controller(switch, controller)
    controller.backlog_bytes = 1 << 20
    switch.receive(1, udp())
    assert controller.received() == []
    assert switch.ofproto.n_packet_in_overflow == 1
    assert 'dropped (connection behind): 1' in switch.ofproto.show()
    controller.backlog_bytes = 0
    switch.receive(1, udp())
    assert len(controller.received()) == 1


def test_a_megaflow_hit_sends_a_packet_in_too(switch, controller):
    table_miss_to_controller(switch, controller)
    switch.receive(1, udp())
    switch.receive(1, udp())
    assert switch.dp.n_missed == 1
    assert [p.data for p in controller.received()] == [udp(), udp()]


def test_no_buffer_sends_the_whole_frame(switch, controller):
    table_miss_to_controller(switch, controller, max_len=NO_BUFFER)
    frame = udp(size=1400)
    switch.receive(2, frame)
    (packet_in,) = controller.received()
    assert packet_in.buffer_id == ofp.OFP_NO_BUFFER
    assert packet_in.data == frame and packet_in.match == {'in_port': (2, None)}


def test_short_frame_is_not_buffered(switch, controller):
    table_miss_to_controller(switch, controller, max_len=128)
    switch.receive(1, udp())
    (packet_in,) = controller.received()
    assert packet_in.buffer_id == ofp.OFP_NO_BUFFER and packet_in.data == udp()


def test_buffers_are_reused_and_old_ids_go_stale(switch, controller):
    table_miss_to_controller(switch, controller, max_len=16)
    ids = []
    for _ in range(N_BUFFERS + 1):
        switch.receive(1, udp())
        ids.append(controller.received()[0].buffer_id)
    assert len(set(ids)) == len(ids)
    (error,) = switch.send(controller, PacketOut(ids[0], 1, (output(2),)))
    assert error.code == ofp.OFPBRC_BUFFER_UNKNOWN      # its slot holds the last one
    assert switch.send(controller, PacketOut(ids[-1], 1, (output(2),))) == []


def test_packet_in_carries_metadata(switch, controller):
    switch.flow_mod(controller, priority=0, instructions=(
        ('write_metadata', 0x5, 0xff), ('goto_table', 1)))
    switch.flow_mod(controller, table_id=1, priority=0,
                    instructions=apply(output(ofp.OFPP_CONTROLLER)))
    switch.receive(3, udp())
    (packet_in,) = controller.received()
    assert packet_in.match == {'in_port': (3, None), 'metadata': (5, None)}
    assert packet_in.table_id == 1 and packet_in.reason == ofp.OFPR_NO_MATCH


def test_action_packet_in_and_invalid_ttl_with_miss_send_len(switch, controller):
    switch.flow_mod(controller, match={'in_port': (1, None)}, instructions=apply(
        ('dec_nw_ttl',), output(2), output(ofp.OFPP_CONTROLLER)))
    switch.ofproto.run()
    frame = udp(size=300)
    switch.receive(1, frame)
    (packet_in,) = controller.received()
    assert packet_in.reason == ofp.OFPR_ACTION
    switch.receive(1, udp(size=300, ttl=1))
    (packet_in,) = controller.received()
    assert packet_in.reason == ofp.OFPR_INVALID_TTL
    assert len(packet_in.data) == ofp.OFP_DEFAULT_MISS_SEND_LEN
    assert switch.port(2).frames() == [udp(size=300, ttl=63)]  # not the expired one
    # A new miss_send_len applies to packets of cached megaflows too.
    assert switch.send(controller, SetConfig(0, 64)) == []
    switch.ofproto.run()
    switch.receive(1, udp(size=300, ttl=1))
    (packet_in,) = controller.received()
    assert len(packet_in.data) == 64


def test_gso_frame_to_the_controller_is_segmented(switch, controller):
    table_miss_to_controller(switch, controller)
    pkt = (Ether(src='00:00:00:00:00:01', dst='00:00:00:00:00:02')
           / IP(src='10.0.0.1', dst='10.0.0.2') / TCP(sport=5000, dport=80, flags='PA')
           / Raw(bytes(range(256)) * 12))
    packet = partial(pkt, GSO_TCPV4, gso_size=1000)
    switch.receive(1, packet[VNET_HDR_LEN:], vnet=packet[:VNET_HDR_LEN])
    packet_ins = controller.received()
    assert [len(p.data) - 54 for p in packet_ins] == [1000, 1000, 1000, 72]
    payload = b''
    for p in packet_ins:
        assert_checksums(p.data)
        payload += bytes(Ether(p.data)[TCP].payload)
        assert p.total_len == len(p.data)
    assert payload == bytes(range(256)) * 12


def test_packet_out_with_data_from_the_controller(switch, controller):
    frame = udp(size=20)
    out = PacketOut(in_port=ofp.OFPP_CONTROLLER, actions=(output(1), output(3)), data=frame)
    assert switch.send(controller, out) == []
    assert switch.port(1).frames() == [frame] and switch.port(3).frames() == [frame]
    out = PacketOut(in_port=1, actions=(output(ofp.OFPP_FLOOD),), data=frame)
    assert switch.send(controller, out) == []
    assert switch.port(1).frames() == [] and switch.port(2).frames() == [frame]


def test_packet_out_to_table_runs_the_pipeline(switch, controller):
    switch.flow_mod(controller, match={'in_port': (2, None)}, instructions=apply(
        ('set_field', 'eth_dst', 0x0000000000ff), output(3)))
    frame = udp(2, 1)
    out = PacketOut(in_port=2, actions=(output(ofp.OFPP_TABLE),), data=frame)
    assert switch.send(controller, out) == []
    (sent,) = switch.port(3).frames()
    assert Ether(sent).dst == '00:00:00:00:00:ff'
    (stats,) = switch.flow_stats(controller)
    assert stats.packet_count == 1
    assert switch.dp.flow_dump() == []      # a packet-out installs no megaflow


def test_flow_mod_with_buffer_id_sends_the_packet_through_the_new_rule(switch, controller):
    table_miss_to_controller(switch, controller, max_len=32)
    frame = udp(size=100)
    switch.receive(1, frame)
    (packet_in,) = controller.received()
    switch.flow_mod(controller, priority=10, match={'in_port': (1, None)},
                    buffer_id=packet_in.buffer_id, instructions=apply(output(2)))
    assert switch.port(2).frames() == [frame]
    (error,) = switch.send(controller, FlowMod(priority=10, match={'in_port': (1, None)},
                                               buffer_id=packet_in.buffer_id,
                                               instructions=apply(output(2))))
    assert error.code == ofp.OFPBRC_BUFFER_EMPTY
    assert len(switch.ofproto.pipeline.tables[0]) == 2          # the flow_mod still applied


def test_nobody_listening_buffers_nothing(switch):
    chan = switch.connect()
    table_miss_to_controller(switch, chan, max_len=16)
    assert switch.send(chan, SetAsync((0, 0), (0b111, 0b111), (0b1111, 0))) == []
    switch.receive(1, udp(size=100))
    assert chan.received() == []
    assert switch.ofproto.buffers.next == 0 and switch.ofproto.n_packet_in == 0


# --- fail modes ----------------------------------------------------------------

def test_standalone_without_controller_forwards_normal():
    switch = Switch('standalone')
    switch.receive(1, udp(1, 2))
    assert odp_outputs(switch.dp.flow_dump()[0].actions) == [2, 3]
    switch.receive(2, udp(2, 1))
    assert switch.port(1).frames() == [udp(2, 1)]
    assert switch.ofproto.fail_open()


def test_standalone_floods_into_a_tunnel_port_with_its_header():
    switch = Switch('standalone')
    vx = FakePort(4)
    vx.tunnel, _ = parse_tunnel_config('vx1', 'vxlan', {'remote_ip': '10.0.2.1', 'key': '42'})
    switch.dp.ports[4] = vx
    switch.ofproto.port_added(vx)
    switch.receive(1, udp(1, 2))
    (flow,) = switch.dp.flow_dump()
    assert [a[0] for a in flow.actions] == ['output', 'output', 'set_tunnel', 'output']
    assert flow.actions[2][1].tun_id == 42 and flow.actions[3] == ('output', 4)
    assert not switch.ofproto.is_stale(flow)


def test_active_controller_switches_to_the_tables_and_back():
    switch = Switch('standalone')
    switch.receive(1, udp(1, 2))
    assert switch.dp.flow_dump()
    listener_channel = switch.connect(active=False)
    assert switch.ofproto.fail_open() and switch.dp.flow_dump()   # ovs-ofctl is no controller
    controller = switch.connect()
    assert not switch.ofproto.fail_open()
    assert switch.dp.flow_dump() == []                            # flushed
    switch.port(2).frames()
    switch.receive(1, udp(1, 2))
    assert switch.port(2).frames() == []                          # empty tables drop
    assert switch.dp.flow_dump()[0].actions == ()
    controller.close()
    assert switch.ofproto.fail_open() and switch.dp.flow_dump() == []
    switch.receive(1, udp(1, 2))
    assert switch.port(2).frames() == [udp(1, 2)]
    listener_channel.close()
    assert switch.ofproto.fail_open()


def test_secure_mode_never_uses_normal_unless_a_rule_says_so(switch):
    switch.receive(1, udp(1, 2))
    assert switch.dp.flow_dump()[0].actions == ()
    assert not switch.ofproto.fail_open()
    controller = switch.connect()
    assert switch.dp.flow_dump()                    # no regime change, no flush
    switch.flow_mod(controller, priority=0, instructions=apply(output(ofp.OFPP_NORMAL)))
    switch.ofproto.run()
    switch.receive(1, udp(1, 2))
    assert switch.port(2).frames() == [udp(1, 2)] and switch.port(3).frames() == [udp(1, 2)]
    switch.receive(2, udp(2, 1))
    assert switch.port(1).frames() == [udp(2, 1)] and switch.port(3).frames() == []
    controller.close()
    switch.receive(1, udp(1, 2))
    assert switch.port(2).frames() == [udp(1, 2)]   # the rule keeps forwarding
    assert_no_stale_megaflow(switch)


# --- ports ---------------------------------------------------------------------

def test_port_events_send_port_status_and_revalidate(switch, controller):
    switch.port(3).up = False
    switch.ofproto.port_changed(3)
    (status,) = controller.received()
    assert (status.reason, status.desc.port_no, status.desc.name) == (
        ofp.OFPPR_MODIFY, 3, 'ut1-eth3')
    assert status.desc.state & ofp.OFPPS_LINK_DOWN
    assert switch.ofproto.need_revalidate
    switch.ofproto.port_deleted(3)
    switch.ofproto.port_deleted(3)                  # twice: one message
    (status,) = controller.received()
    assert status.reason == ofp.OFPPR_DELETE
    switch.dp.ports[4] = FakePort(4)
    switch.ofproto.port_added(switch.dp.ports[4])
    (status,) = controller.received()
    assert (status.reason, status.desc.port_no) == (ofp.OFPPR_ADD, 4)


def test_show(switch, controller):
    text = switch.ofproto.show()
    assert 'Bridge s1 (dpid 00000000000000ab)' in text
    assert 'Controller "tcp:127.0.0.1:6653"' in text and 'role: equal' in text
    assert 'Port ut1-eth2 (OpenFlow port 2, up' in text


# --- live configuration (bridge/apply) ----------------------------------------------

def test_fail_mode_change_without_controllers_flushes_the_tables():
    switch = Switch('secure')
    service = switch.connect(active=False)          # ovs-ofctl: not a controller
    switch.flow_mod(service, match={'in_port': (1, None)}, instructions=apply(output(2)))
    switch.receive(1, udp(1, 3))
    assert switch.port(2).frames()
    switch.ofproto.set_fail_mode('standalone')      # as OVS's connmgr_set_fail_mode
    assert not any(len(table) for table in switch.ofproto.pipeline.tables)
    switch.ofproto.run()
    assert switch.dp.flow_dump() == []
    switch.receive(1, udp(1, 3))                    # NORMAL: 3 is unknown, so flood
    assert switch.port(2).frames() and switch.port(3).frames()


def test_fail_mode_change_with_a_controller_keeps_the_tables():
    switch = Switch('standalone')
    controller = switch.connect()
    switch.flow_mod(controller, match={'in_port': (1, None)}, instructions=apply(output(2)))
    switch.ofproto.set_fail_mode('secure')
    assert len(switch.ofproto.pipeline.tables[0]) == 1
    controller.close()                  # secure: the tables go on forwarding, no NORMAL
    switch.ofproto.run()
    switch.receive(1, udp(1, 3))
    assert switch.port(2).frames() and not switch.port(3).frames()
