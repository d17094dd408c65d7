"""The OpenFlow switch above the datapath: ofproto, ofproto-dpif and connmgr in one.

An OFProto owns one switch's OpenFlow state: the flow tables (table.py),
groups (group.py), meters (configured into the datapath's MeterTable), the
OpenFlow view of the ports, the controller connections, and buffered
packets. It meets the datapath at three points, as OVS's ofproto-dpif does:

- upcall(packet, key): a datapath miss. The packet's key goes through the
  pipeline (xlate.py); the answer is the datapath actions, the megaflow mask,
  and a ukey: our record of the megaflow, which remembers the translation so
  that its statistics can be credited to the rules and buckets it used.
- userspace(packet, userdata, in_port): a ('userspace', ...) action ran; the
  userdata says it is a packet-in, which goes to the channels whose role and
  async config want it. A GSO frame is cut into wire frames first. A frame
  longer than the action's max_len is kept in PacketBuffers (256 slots, 5 s)
  and only its head is sent, with a buffer_id for PACKET_OUT or FLOW_MOD;
  when no channel wants the packet-in, nothing is buffered.
- flow_deleted(flow): a megaflow left the datapath (idle, evicted, deleted);
  its last statistics are credited.

Statistics flow up (push_stats, OVS's revalidator "push"): every second, and
before any reply that reports counters, each megaflow's packet and byte
deltas are added to the rules, tables (lookup and matched counts) and group
buckets of its translation, and the rules' last-used time moves with the
megaflow's. Idle timeouts therefore count packets that never left the
datapath.

Changes flow down (revalidate): a megaflow is translated again from its own
key and deleted if its actions, mask, or the rules it credits changed. A
group_mod, meter_mod, flow MODIFY, port change or controller change sets
`need_revalidate`, and every megaflow is revalidated after the current turn
of the loop. An added rule revalidates only the megaflows it overlaps, a
deleted or expired one only those that hit it (revalidator.affected_by);
additions wait up to ADD_BATCH_DELAY to be done together. BARRIER waits for
all of it (sync). MAC learning changes revalidate through NormalSwitch,
which calls back `is_stale` here.

Fail modes, as OVS: while no controller connection is up, `standalone`
forwards with NORMAL (mnovs.ofagent.normal) and `secure` keeps its flows and
drops what would go to a controller. Passive connections (ovs-ofctl on the
listen port) are not controllers for this purpose. The change between the two
regimes flushes the datapath.

Liveness: run_periodic probes every open connection (_probe, OVS's
inactivity probe; see connection.py) and lets active targets reconnect.

sFlow (set_sflow): the bridge's SflowAgent (mnovs.sflow.agent) is the
translation context's `sflow` while it samples, so that every megaflow
starts with the sample action (xlate.compose_sflow_action; in fail-open
mode xlate_fail_open translates, and it gets it the same way); a userspace upcall with
an sFlow cookie goes to the agent, and the agent ticks with run_periodic.
A change of sFlow revalidates every megaflow.

Message handling is in handlers.py; multipart replies in stats.py.
"""

import logging
import os
import time

from mnovs.dp.datapath import Datapath
from mnovs.dp.flow import flow_extract, md_of
from mnovs.dp.odp_util import decode_sflow_upcall
from mnovs.dp.offload import VNET_HDR_LEN, segment
from mnovs.openflow import codec
from mnovs.ofagent.bond import LACP_USERDATA, Bonds
from mnovs.ofagent.connection import ActiveTarget, PassiveListener, is_passive
from mnovs.ofagent.group import GroupTable
from mnovs.ofagent.handlers import handle_message
from mnovs.openflow.messages import Port as PortDesc
from mnovs.ofagent.normal import NormalSwitch
from mnovs.ofagent.pinsched import PinSched
from mnovs.ofagent.recirc import RecircTable
from mnovs.openflow.ofp import (
    OFP_NO_BUFFER, OFPBRC_BUFFER_EMPTY, OFPBRC_BUFFER_UNKNOWN, OFPCML_NO_BUFFER,
    OFPCR_ROLE_EQUAL, OFPCR_ROLE_MASTER, OFPCR_ROLE_SLAVE, OFPET_BAD_REQUEST, OFPFC_DELETE,
    OFPFF_SEND_FLOW_REM, OFPG_ALL, OFPGC_DELETE, OFPPC_PORT_DOWN, OFPP_LOCAL, OFPPF_10GB_FD,
    OFPPF_COPPER, OFPPR_ADD, OFPPR_DELETE, OFPPR_MODIFY, OFPR_NO_MATCH, OFPPS_LINK_DOWN,
    OFPPS_LIVE, OFPTT_ALL, OFPError)
from mnovs.ofagent.revalidator import affected_by, revalidate
from mnovs.ofagent.table import Pipeline
from mnovs.ofagent.xlate import (XlateContext, credit_stats, decode_userdata, xlate,
                                 xlate_fail_open)
from mnovs.sflow.agent import SflowAgent

log = logging.getLogger(__name__)

PROBE_INTERVAL = 5.0          # seconds of silence before an echo request (OVS's default)
N_BUFFERS = 256
ADD_BATCH_DELAY = 0.01        # seconds rule additions may wait to be revalidated together
PACKET_IN_QUEUE_SIZE = 100    # packet-ins a connection may have waiting (OVS's controller_queue_size)
BUFFER_LIFETIME = 5.0         # seconds a buffered packet waits for its packet-out
PORT_SPEED_KBPS = 10_000_000  # veths have no speed; report 10 Gbit/s like OVS does

# Async config per role: (master/equal mask, slave mask), OF1.3 7.3.10 defaults.
DEFAULT_ASYNC = {
    'packet_in': (0b111, 0b000),         # NO_MATCH, ACTION, INVALID_TTL
    'port_status': (0b111, 0b111),       # ADD, DELETE, MODIFY
    'flow_removed': (0b1111, 0b0000),    # IDLE, HARD, DELETE, GROUP_DELETE
}
SERVICE_ASYNC = {kind: (0, 0) for kind in DEFAULT_ASYNC}
VNET_NONE = bytes(VNET_HDR_LEN)          # a vnet header that asks nothing of the kernel
ROLE_NAMES = {OFPCR_ROLE_EQUAL: 'equal', OFPCR_ROLE_MASTER: 'master', OFPCR_ROLE_SLAVE: 'slave'}


class OFPort:
    """The OpenFlow view of a datapath port: config bits and description."""

    __slots__ = ('port_no', 'name', 'hw_addr', 'config', 'dp_port', 'created')

    def __init__(self, dp_port, now):
        self.port_no = dp_port.port_no
        self.name = dp_port.name
        self.hw_addr = read_hw_addr(dp_port.name)
        self.config = 0
        self.dp_port = dp_port
        self.created = now

    @property
    def up(self):
        return self.dp_port.up and not self.config & OFPPC_PORT_DOWN

    @property
    def tunnel(self):
        """The port's TunnelConfig (dp/tunnel.py) if it is a tunnel port, else None."""
        return self.dp_port.tunnel

    @property
    def state(self):
        return OFPPS_LIVE if self.dp_port.up else OFPPS_LINK_DOWN

    def desc(self):
        """The ofp_port description (PORT_DESC, PORT_STATUS)."""
        return PortDesc(self.port_no, self.hw_addr, self.name, self.config, self.state,
                        curr=OFPPF_10GB_FD | OFPPF_COPPER, curr_speed=PORT_SPEED_KBPS,
                        max_speed=PORT_SPEED_KBPS)


def went_through_normal(flow):
    """Did NORMAL translate this megaflow? Fail-open flows carry no ukey: all NORMAL."""
    return flow.ukey is None or flow.ukey.normal


def read_hw_addr(ifname):
    try:
        with open(f'/sys/class/net/{ifname}/address') as f:
            return bytes.fromhex(f.read().strip().replace(':', ''))
    except (OSError, ValueError):
        return bytes(6)


class Ukey:
    """Our record of one megaflow (OVS udpif_key): its translation, stats pushed,
    and whether NORMAL forwarded it (so MAC learning may refresh from it)."""

    __slots__ = ('result', 'packets', 'bytes', 'normal')

    def __init__(self, result, normal):
        self.result = result
        self.normal = normal
        self.packets = self.bytes = 0


class PacketBuffers:
    """Packets held for the controller (buffer_id in PACKET_IN), OVS pktbuf style.

    A buffer id is a slot number in the low 8 bits and a generation above it,
    so a stale id is told from a reused slot.
    """

    def __init__(self, size=N_BUFFERS):
        assert size <= 256, 'the slot number must fit the low 8 bits of a buffer id'
        self.size = size
        self.slots = [None] * size      # (buffer_id, frame, in_port, stored at)
        self.next = 0

    def store(self, frame, in_port, now):
        slot = self.next % self.size
        buffer_id = ((self.next // self.size) << 8 | slot) & 0x7fffffff
        self.slots[slot] = (buffer_id, bytes(frame), in_port, now)
        self.next += 1
        return buffer_id

    def take(self, buffer_id, now):
        """Return (frame, in_port) of a buffered packet; it can be taken once.

        Raises:
            OFPError: BUFFER_UNKNOWN for an id never given or too old,
                BUFFER_EMPTY for one already used.
        """
        slot = buffer_id & 0xff
        entry = self.slots[slot] if slot < self.size else None
        if entry is None or entry[0] != buffer_id:
            raise OFPError(OFPET_BAD_REQUEST, OFPBRC_BUFFER_UNKNOWN)
        if entry[1] is None:
            raise OFPError(OFPET_BAD_REQUEST, OFPBRC_BUFFER_EMPTY)
        if now - entry[3] > BUFFER_LIFETIME:
            raise OFPError(OFPET_BAD_REQUEST, OFPBRC_BUFFER_UNKNOWN)
        self.slots[slot] = (buffer_id, None, entry[2], entry[3])
        return entry[1], entry[2]


class OFProto:
    """One switch's OpenFlow agent, and the datapath under it.

    As ofproto-dpif opens its dpif, the agent builds its Datapath and hands
    it the three slow-path callbacks (upcall, userspace, flow_deleted), and
    builds the NormalSwitch with the agent's staleness test: the wiring is
    all here, in the constructor.

    Args:
        name: switch name (DESC's dp_desc, logs).
        dpid: datapath id, an int.
        fail_mode: 'secure' or 'standalone'.
        selector: the vswitchd's selector, for controller connections.
        dp_options: keyword arguments for Datapath (flow_limit, max_idle,
            emc_size, ring_slots, upcall_queue_len).
        mac_table: the MacTable for NORMAL (default: MacTable()).
        set_link_admin: callable(ifname, up) to take an interface up or down
            (PORT_MOD's OFPPC_PORT_DOWN), or None.
        controller_rate_limit, controller_burst_limit: packet-in rate limit
            for each controller connection, as OVS's Controller columns
            (pinsched.py); None: no limit.
    """

    def __init__(self, name, dpid, fail_mode, selector, dp_options=None, mac_table=None,
                 set_link_admin=None, controller_rate_limit=None, controller_burst_limit=None):
        now = time.monotonic()
        self.dp = Datapath(name, upcall=self.upcall, userspace=self.userspace,
                           flow_deleted=self.flow_deleted, **(dp_options or {}))
        self.bonds = Bonds(RecircTable(), self._send_frame)
        self.normal = NormalSwitch(self.dp, mac_table, is_stale=self.is_stale,
                                   went_through_normal=went_through_normal, bonds=self.bonds)
        self.name = name
        self.dpid = dpid
        self.fail_mode = fail_mode
        self.selector = selector
        self.set_link_admin = set_link_admin
        self.started = now
        self.groups = GroupTable()
        self.meter_configs = {}             # meter_id -> MeterMod as installed
        self.pipeline = Pipeline(groups=self.groups,
                                 meter_exists=lambda meter_id: meter_id in self.meter_configs)
        self.ports = {}                     # port_no -> OFPort
        self.ctx = XlateContext(self.pipeline, self.groups, self.ports, normal=self._normal,
                                bonds=self.bonds)
        self.config_flags = 0
        self.buffers = PacketBuffers()
        self.targets = []                   # ActiveTarget / PassiveListener
        self.channels = set()               # connections past HELLO
        self.need_revalidate = False        # revalidate every megaflow
        self.rules_added = []               # compiled matches: revalidate what they overlap
        self.rules_added_at = 0.0           # when the first of them came
        self.rules_gone = []                # Rules: revalidate the megaflows that hit them
        self.generation_id = None           # last master/slave generation (ROLE_REQUEST)
        self.was_fail_open = self.fail_open()
        self.normal_used = False
        self.pin_limits = (controller_rate_limit, controller_burst_limit)
        self.pushed_activity = None         # dp.activity() at the last push_stats
        self.n_packet_in = 0                # packet-ins handed to connections
        self.n_packet_in_overflow = 0       # dropped: the connection was behind
        self.sflow = None                   # SflowAgent while the bridge has sFlow

    # --- controllers ---------------------------------------------------------

    def add_controller(self, target):
        """Connect to tcp:IP[:PORT], and keep reconnecting.

        Raises:
            ValueError: not an active target.
        """
        active = ActiveTarget(target, self.selector, self._on_channel,
                              self._on_message, self._on_close)
        self.targets.append(active)
        active.run(time.monotonic())

    def add_listener(self, target):
        """Accept OpenFlow connections on ptcp:[PORT][:IP] or punix:PATH (ovs-ofctl).

        Raises:
            ValueError: not a passive target.
            OSError: the address cannot be bound.
        """
        self.targets.append(PassiveListener(target, self.selector, self._on_channel,
                                            self._on_message, self._on_close))

    def set_controllers(self, targets):
        """Make the connection targets exactly `targets` (OVS syntax), live.

        Targets no longer wanted close with their connections; new ones
        connect (tcp:) or listen (ptcp:, punix:); kept ones keep their
        sessions. A target that cannot be made (bad syntax, address in use)
        is skipped with a warning, as OVS does, and retried at the next call.

        Returns:
            {target: one-line reason} for the targets that could not be made.
        """
        wanted = list(dict.fromkeys(targets))
        kept = [t for t in self.targets if t.target in wanted]
        for target in self.targets:
            if target not in kept:
                log.info('%s: removing %s', self.name, target.target)
                target.close()
        self.targets = kept
        have = {t.target for t in kept}
        errors = {}
        for target in wanted:
            if target in have:
                continue
            try:
                if is_passive(target):
                    self.add_listener(target)
                else:
                    self.add_controller(target)
            except (ValueError, OSError) as err:
                errors[target] = getattr(err, 'strerror', None) or str(err)
                log.warning('%s: %s: %s', self.name, target, errors[target])
        self.check_fail_mode()
        return errors

    def set_datapath_id(self, dpid):
        """Change the datapath id; every connection is dropped (active ones
        reconnect), since OpenFlow cannot tell a controller that it changed
        (OVS's ofproto_set_datapath_id does the same)."""
        if dpid == self.dpid:
            return
        log.info('%s: datapath id %016x -> %016x: reconnecting', self.name, self.dpid, dpid)
        self.dpid = dpid
        for target in self.targets:
            target.disconnect()

    def set_fail_mode(self, fail_mode):
        """Change the fail mode ('secure' or 'standalone'), live.

        As OVS's connmgr_set_fail_mode: with no controller configured the
        flow tables, groups and meters are flushed; then forwarding may
        switch between NORMAL and the tables, and every megaflow is checked.
        """
        if fail_mode == self.fail_mode:
            return
        log.info('%s: fail mode %s -> %s', self.name, self.fail_mode, fail_mode)
        self.fail_mode = fail_mode
        if not any(isinstance(t, ActiveTarget) for t in self.targets):
            self.flush_flows(time.monotonic())
        self.check_fail_mode()
        self.need_revalidate = True

    def flush_flows(self, now):
        """Delete every rule (FLOW_REMOVED as asked), group and meter."""
        self.push_stats(now)
        removed, _ = self.pipeline.flow_mod(
            codec.FlowMod(command=OFPFC_DELETE, table_id=OFPTT_ALL), now)
        self.groups.group_mod(codec.GroupMod(command=OFPGC_DELETE, group_id=OFPG_ALL),
                              self.pipeline, now)
        for meter_id in list(self.meter_configs):
            del self.meter_configs[meter_id]
            self.dp.meters.delete(meter_id)
        self.rules_removed(removed, now)
        self.need_revalidate = True

    def _on_channel(self, channel):
        channel.send(codec.encode(codec.Hello()))

    def _on_message(self, channel, raw):
        handle_message(self, channel, raw)
        # A burst of flow_mods takes long enough to overflow a receive ring.
        self.dp.poll_rings()

    def _on_close(self, channel):
        self.channels.discard(channel)
        self.check_fail_mode()

    def connection_up(self, channel):
        """HELLO done: the channel takes part in the session.

        A controller gets the spec's default async config. A service
        connection (ovs-ofctl on the listener) gets none until it asks with
        SET_ASYNC, as OVS does: a dump-flows must not receive packet-ins or
        use up packet buffers.
        """
        channel.role = OFPCR_ROLE_EQUAL
        controller = self.is_controller(channel)
        channel.async_config = dict(DEFAULT_ASYNC if controller else SERVICE_ASYNC)
        # Two schedulers, as connmgr's: table misses and action packet-ins.
        limits = self.pin_limits if controller else (None, None)
        channel.pinsched = (PinSched(*limits), PinSched(*limits))
        self.channels.add(channel)
        self.check_fail_mode()

    def is_controller(self, channel):
        return any(getattr(t, 'channel', None) is channel for t in self.targets)

    def fail_open(self):
        """True while NORMAL forwards: standalone with no controller connected."""
        return self.fail_mode == 'standalone' and not any(
            self.is_controller(c) for c in self.channels)

    def check_fail_mode(self):
        """Flush the datapath when forwarding switches between NORMAL and the tables."""
        fail_open = self.fail_open()
        if fail_open != self.was_fail_open:
            self.was_fail_open = fail_open
            log.info('%s: %s', self.name, 'no controller: NORMAL forwarding (standalone)'
                     if fail_open else 'controller connected: OpenFlow tables forward')
            self.dp.flow_flush()

    def async_receivers(self, kind, reason):
        """The channels whose async config wants messages of `kind` for `reason`."""
        receivers = []
        for channel in self.channels:
            masks = channel.async_config[kind]
            mask = masks[1] if channel.role == OFPCR_ROLE_SLAVE else masks[0]
            if mask >> reason & 1:
                receivers.append(channel)
        return receivers

    def send_async(self, kind, reason, msg, receivers=None):
        """Send an asynchronous message to `receivers` (default: async_receivers)."""
        if receivers is None:
            receivers = self.async_receivers(kind, reason)
        if receivers:
            data = codec.encode(msg)
            for channel in receivers:
                channel.send(data)

    # --- sFlow ----------------------------------------------------------------

    def set_sflow(self, options):
        """Configure sFlow from config.SflowOptions, or turn it off (None).

        Same options: only collectors that failed are tried again (the
        agent's tick does that). Other options make a new agent, as OVS's
        dpif_sflow_set_options, and every megaflow is revalidated if the
        sample action changes.
        """
        if self.sflow is not None and options == self.sflow.options:
            return
        if self.sflow is not None:
            self.sflow.close()
            self.sflow = None
        if options is not None:
            self.sflow = SflowAgent(self.name, options, self.dp, lambda: self.dpid)
        self._sflow_sampling()

    def _sflow_sampling(self):
        """Sample while the agent can export (a collector may open later, or fail)."""
        sampling = self.sflow if self.sflow is not None and self.sflow.enabled else None
        if sampling is not self.ctx.sflow:
            self.ctx.sflow = sampling
            self.need_revalidate = True

    # --- the datapath's callbacks ------------------------------------------

    def _normal(self, key):
        self.normal_used = True
        return self.normal.xlate(key)

    def upcall(self, packet, key):
        """A datapath miss: translate, learn if NORMAL was used, answer with a ukey.

        A bond's LACP PDUs and recirculated passes are xlate's in every
        mode, as OVS's xlate_special runs before NORMAL or the tables.
        """
        if self.fail_open():
            special = self.bonds.is_special(key)
            if not special:
                self.normal.learn(key, time.monotonic())
            result = xlate_fail_open(self.ctx, key)
            # A special pass keeps a ukey: a bond's second pass credits its buckets.
            return result.actions, result.mask, Ukey(result, False) if special else None
        self.normal_used = False
        result = xlate(self.ctx, key)
        if self.normal_used:
            # NORMAL learns as a side effect of the upcall (never of a
            # revalidation); what it learns can change the answer.
            self.normal.learn(key, time.monotonic())
            result = xlate(self.ctx, key)
        if not result.cacheable:
            credit_stats(result, 1, len(packet) - VNET_HDR_LEN, time.monotonic())
            return result.actions, None, None
        return result.actions, result.mask, Ukey(result, self.normal_used)

    def userspace(self, packet, userdata, in_port):
        """A ('userspace', userdata) action ran: a PDU from a bond member (to its
        LACP), an sFlow sample, or a packet-in."""
        if userdata == LACP_USERDATA:
            self.bonds.lacp_rx(in_port, packet[VNET_HDR_LEN:], time.monotonic())
            return
        sflow = decode_sflow_upcall(userdata)
        if sflow is not None:
            if self.sflow is not None:
                self.sflow.received(packet, in_port, *sflow)
            return
        decoded = decode_userdata(userdata)
        if decoded is None:
            return
        in_port = self.bonds.ofport_of(in_port)     # a bond is one OpenFlow port
        reason, table_id, cookie, max_len, metadata = decoded
        # The controller gets frames as they are on the wire: a GSO frame is
        # cut and its checksums finished here, as the kernel would have.
        frames = segment(packet)
        if not frames:
            self.dp.count_drop('packet-in-malformed')
        now = time.monotonic()
        for frame in frames:
            self.packet_in(frame, in_port, reason, table_id, cookie, max_len, metadata, now)

    def packet_in(self, frame, in_port, reason, table_id, cookie, max_len, metadata, now):
        """Send a PACKET_IN; buffer the frame if it is longer than max_len.

        Nothing is buffered or counted when no channel wants the packet-in
        (no controller, or only slaves).
        """
        receivers = self.async_receivers('packet_in', reason)
        if not receivers:
            return
        buffer_id = OFP_NO_BUFFER
        data = frame
        if max_len != OFPCML_NO_BUFFER and len(frame) > max_len:
            buffer_id = self.buffers.store(frame, in_port, now)
            data = frame[:max_len]
        match = {'in_port': (in_port, None)}
        if metadata:
            match['metadata'] = (metadata, None)
        data = codec.encode(codec.PacketIn(
            buffer_id, len(frame), reason, table_id, cookie, match, bytes(data)))
        kind = 0 if reason == OFPR_NO_MATCH else 1
        for channel in receivers:
            for msg in channel.pinsched[kind].send(in_port, data, now):
                self._send_packet_in(channel, msg)

    def _send_packet_in(self, channel, msg):
        """Send a packet-in unless the connection is behind (OVS's rconn_send_with_limit).

        A controller that does not keep up loses packet-ins, counted, rather
        than having replies queue behind a flood or being disconnected.
        """
        if channel.closed:
            return
        if channel.backlog() >= PACKET_IN_QUEUE_SIZE * len(msg):
            self.n_packet_in_overflow += 1
            return
        self.n_packet_in += 1
        channel.send(msg)

    def run_packet_ins(self, now):
        """Send the packet-ins the rate limiters release now."""
        for channel in list(self.channels):
            for sched in channel.pinsched:
                if sched.n_queued:
                    for msg in sched.run(now):
                        self._send_packet_in(channel, msg)

    def wait_time(self, now):
        """Seconds until run() has work: messages, packet-ins, additions to revalidate."""
        if any(channel.backlogged() for channel in self.open_channels()):
            return 0.0
        waits = [sched.wait_time(now) for channel in self.channels
                 for sched in channel.pinsched if sched.n_queued]
        if self.rules_added:
            waits.append(max(0.0, self.rules_added_at + ADD_BATCH_DELAY - now))
        return min(waits, default=None)

    def set_controller_limits(self, rate_limit, burst_limit=None):
        """Change the packet-in rate limit of every controller connection, live."""
        if (rate_limit, burst_limit) == self.pin_limits:
            return
        self.pin_limits = (rate_limit, burst_limit)
        for channel in list(self.channels):
            if self.is_controller(channel):
                for sched in channel.pinsched:
                    for msg in sched.set_limits(rate_limit, burst_limit):
                        self._send_packet_in(channel, msg)
        self.run_packet_ins(time.monotonic())

    def flow_deleted(self, flow):
        self._push(flow, flow.ukey)

    # --- statistics and revalidation ----------------------------------------

    @staticmethod
    def _push(flow, ukey):
        if ukey is None or flow.packets == ukey.packets:
            return
        credit_stats(ukey.result, flow.packets - ukey.packets, flow.bytes - ukey.bytes,
                     flow.used)
        ukey.packets, ukey.bytes = flow.packets, flow.bytes

    def push_stats(self, now=None):
        """Credit every megaflow's new packets and bytes to its rules and buckets.

        The walk costs O(megaflows), and handlers ask for it before every
        flow_mod, so it is skipped when no packet reached a megaflow since
        the last walk: a burst of flow_mods pays for it once.
        """
        activity = self.dp.activity()
        if activity == self.pushed_activity:
            return
        self.pushed_activity = activity
        for flow in self.dp.flow_dump():
            self._push(flow, flow.ukey)

    def is_stale(self, flow):
        """Does a fresh translation differ from what the megaflow caches?

        In fail-open mode NORMAL judges; otherwise the pipeline does, and a
        megaflow is also stale when its statistics would now be credited to
        other rules, tables or group buckets (or it has no ukey: NORMAL made it).
        """
        if self.fail_open():
            result = xlate_fail_open(self.ctx, flow.key)
            return result.actions != flow.actions or result.mask != flow.mask
        ukey = flow.ukey
        if ukey is None:
            return True
        result = xlate(self.ctx, flow.key)
        old = ukey.result
        return (result.actions != flow.actions or result.mask != flow.mask
                or result.rules != old.rules or result.groups != old.groups
                or result.lookups != old.lookups)

    def revalidate(self):
        """Delete every megaflow whose translation is no longer what it caches."""
        self.need_revalidate = False
        self.rules_added.clear()
        self.rules_gone.clear()
        revalidate(self.dp, self.is_stale)

    def rule_added(self, compiled):
        """A rule with this compiled match was added: revalidate what it overlaps."""
        if not self.rules_added:
            self.rules_added_at = time.monotonic()
        self.rules_added.append(compiled)

    def rules_deleted(self, rules):
        """These rules are gone: revalidate the megaflows that hit them."""
        self.rules_gone.extend(rules)

    def sync(self):
        """Revalidate all that is pending, now (BARRIER, a buffered packet's flow_mod)."""
        if self.need_revalidate:
            self.revalidate()
        elif self.rules_added or self.rules_gone:
            added, gone = self.rules_added, self.rules_gone
            self.rules_added, self.rules_gone = [], []
            if len(self.dp.classifier):     # ovs-ofctl sends a BARRIER per flow_mod
                revalidate(self.dp, self.is_stale, affected_by(added, gone))

    def run(self, now=None):
        """After each turn of the poll loop: revalidate what changed, release packet-ins.

        A batch of flow_mods that only added or deleted rules revalidates just
        the megaflows those rules may affect (revalidator.affected_by);
        anything else revalidates every megaflow. Rule additions wait up to
        ADD_BATCH_DELAY to be revalidated together: a reactive controller
        adds a rule per new flow, and one pass over the megaflows per turn
        of the loop would cost more than the flows it sets up. Until then
        the megaflows they overlap act as before the rule, as in OVS, whose
        revalidators run apart from the flow_mods; BARRIER waits (sync).
        """
        now = time.monotonic() if now is None else now
        for channel in self.open_channels():
            if channel.backlogged():
                channel.process_messages()
        if (self.need_revalidate or self.rules_gone
                or self.rules_added and now - self.rules_added_at >= ADD_BATCH_DELAY):
            self.sync()
        if self.channels:
            self.run_packet_ins(now)

    def run_periodic(self, now):
        """Once a second: stats, timeouts, connections, buffers."""
        self.push_stats(now)
        removed = self.pipeline.expire(now)
        if removed:
            self.rules_removed(removed, now)
            self.rules_deleted(rule for rule, _ in removed)
        for target in self.targets:
            if isinstance(target, ActiveTarget):
                target.run(now)
        for channel in self.open_channels():
            self._probe(channel, now)
        if self.sflow is not None:
            self.sflow.run(now)
            self._sflow_sampling()

    def open_channels(self):
        """Every open connection, in session or not (connecting, before HELLO)."""
        channels = []
        for target in self.targets:
            if isinstance(target, ActiveTarget):
                if target.channel is not None:
                    channels.append(target.channel)
            else:
                channels.extend(target.channels)
        return channels

    def _probe(self, channel, now):
        """OVS's inactivity probe: an echo request after PROBE_INTERVAL of
        silence, disconnection after twice that. A channel not in session
        (TCP connect or HELLO pending) gets no echo, only the time limit."""
        silence = now - channel.last_rx
        if silence > 2 * PROBE_INTERVAL:
            log.info('%s: %s silent for %.0f s; disconnecting', self.name, channel.name, silence)
            channel.close()
        elif silence > PROBE_INTERVAL and not channel.probe_sent and channel.version is not None:
            channel.probe_sent = True
            channel.send(codec.encode(codec.EchoRequest()))

    def rules_removed(self, removed, now):
        """Send FLOW_REMOVED for removed rules that asked for it."""
        for rule, reason in removed:
            if not rule.flags & OFPFF_SEND_FLOW_REM:
                continue
            duration = now - rule.created
            self.send_async('flow_removed', reason, codec.FlowRemoved(
                rule.cookie, rule.priority, reason, rule.table_id, int(duration),
                int(duration % 1 * 1e9), rule.idle_timeout, rule.hard_timeout,
                rule.packet_count, rule.byte_count, rule.match))

    # --- ports -----------------------------------------------------------------

    def port_added(self, dp_port):
        port = OFPort(dp_port, time.monotonic())
        self.ports[port.port_no] = port
        self._port_status(OFPPR_ADD, port)

    def port_deleted(self, port_no):
        port = self.ports.pop(port_no, None)
        if port is not None:
            self._port_status(OFPPR_DELETE, port)

    def port_changed(self, port_no):
        bond = self.bonds.of_member(port_no)
        if bond is not None:
            # A member's link: LACP and the bond decide (run_bonds), and the
            # bond's OpenFlow port may change with it.
            bond.carrier_changed(port_no, time.monotonic())
            self.run_bonds(time.monotonic())
            port_no = bond.port_no
        port = self.ports.get(port_no)
        if port is not None:
            self._port_status(OFPPR_MODIFY, port)

    # --- bonds -------------------------------------------------------------------

    def bond_added(self, bond):
        """A bond (bond.Bond, its members added) becomes an OpenFlow port."""
        self.run_bonds(time.monotonic())
        self.port_added(bond)

    def run_bonds(self, now):
        """LACP, member state and rebalancing; what changed is revalidated."""
        if self.bonds.run(now):
            self.need_revalidate = True

    def _send_frame(self, port_no, frame):
        """Send a frame the switch makes (a LACPDU) out of a datapath port."""
        self.dp.execute(VNET_NONE + frame, (('output', port_no),))

    def _port_status(self, reason, port):
        self.need_revalidate = True
        if self.sflow is not None:
            self.sflow.ports_changed()
        self.send_async('port_status', reason, codec.PortStatus(reason, port.desc()))

    # --- packets from the controller ------------------------------------------

    def execute_frame(self, frame, in_port, actions):
        """Send a frame (no vnet header) through datapath actions."""
        self.dp.execute(VNET_NONE + frame, actions, in_port)

    def run_buffered(self, buffer_id, now):
        """A flow_mod named a buffered packet: send it through the tables."""
        frame, in_port = self.buffers.take(buffer_id, now)
        key, _ = flow_extract(memoryview(frame), md_of(in_port))
        if key is None:
            return
        result = xlate(self.ctx, key)
        credit_stats(result, 1, len(frame), now)
        self.execute_frame(frame, in_port, result.actions)

    def show(self):
        """Text of ofproto/show: like `ovs-vsctl show` for this bridge."""
        regime = 'NORMAL (no controller)' if self.fail_open() else 'OpenFlow tables'
        lines = [f'Bridge {self.name} (dpid {self.dpid:016x})',
                 f'    fail_mode: {self.fail_mode}; forwarding by {regime}']
        for target in self.targets:
            if isinstance(target, ActiveTarget):
                channel = target.channel
                connected = channel is not None and channel in self.channels
                lines.append(f'    Controller "{target.target}"')
                lines.append(f'        is_connected: {"true" if connected else "false"}')
                if connected:
                    lines.append(f'        role: {ROLE_NAMES.get(channel.role, channel.role)}')
                    lines.extend(_pinsched_lines(channel))
            else:
                lines.append(f'    Listener "{target.target}" '
                             f'({len(target.channels)} connections)')
        for port_no, port in sorted(self.ports.items()):
            state = 'up' if port.up else 'down'
            number = 'LOCAL' if port_no == OFPP_LOCAL else port_no
            lines.append(f'    Port {port.name} (OpenFlow port {number}, {state}, '
                         f'config 0x{port.config:x})')
        lines.append(f'    flow tables: {sum(len(t) for t in self.pipeline.tables)} rules; '
                     f'groups: {len(self.groups)}; meters: {len(self.meter_configs)}; '
                     f'packet-ins sent: {self.n_packet_in}, '
                     f'dropped (connection behind): {self.n_packet_in_overflow}')
        return '\n'.join(lines)

    def close(self):
        for target in self.targets:
            target.close()
        if self.sflow is not None:
            self.sflow.close()


def _pinsched_lines(channel):
    """Packet-in rate limiter counters, as OVS's Controller status keys."""
    lines = []
    for kind, sched in zip(('miss', 'action'), channel.pinsched):
        if sched.limited:
            st = sched.stats()
            lines.append(f'        packet-in-{kind}: backlog={st["n_queued"]} '
                         f'bypassed={st["n_normal"]} queued={st["n_limited"]} '
                         f'dropped={st["n_queue_dropped"]}')
    return lines


def dpid_from_text(text):
    """Parse a datapath id given as hex digits (Mininet's form)."""
    return int(text, 16) if text else int.from_bytes(os.urandom(6), 'big')
