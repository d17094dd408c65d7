"""The datapath: receive, classify through the flow caches, execute.

This is mnovs's dpif-netdev. For every frame read from a port:

    dp_netdev_input:  recv batch → flow_extract → microflow cache (EMC, exact
                      key) → megaflow classifier (tuple-space search with a
                      mask cache) → execute the flow's actions
    upcall queue:     no megaflow matched: the packet (copied out of the ring)
                      and its key join the *upcall queue* of its input port.
                      A `userspace` action queues the packet the same way.
    handle_upcalls:   the poll loop drains the queues in batches, one upcall
                      per port in turn (OVS's handler threads, dpif_recv).
                      A miss goes to the slow path, `upcall(packet, key)`,
                      which answers (actions, mask, ukey); the datapath
                      installs that megaflow (flow_put) unless mask is None,
                      then executes the actions on the packet. `ukey` is the
                      slow path's own record of the megaflow (OVS's
                      udpif_key: which rules to credit); the datapath keeps it
                      on the Megaflow without looking inside. A `userspace`
                      upcall goes to `userspace(packet, userdata, in_port)`.

Why a queue and not a call: the rings must be drained at hit-path speed or
the kernel drops at the ring, where nothing can count which flow lost. A
burst of new flows now costs one copy per packet at the ring, and the slow
path works through the queues at its own pace. Each queue is bounded
(`upcall_queue_len`); an upcall that finds its queue full is dropped and
counted as `lost` (as OVS counts a full netlink socket) and under the drop
reason `upcall-queue-full`; so is one that would take the bytes held by all
queues past `UPCALL_QUEUE_BYTES`. Queues are per input port and served in
turn, so a flood of new flows on one port cannot starve another port's
upcalls; hits never wait for upcalls at all. Packets of a new flow queue
behind its first miss, and when their turn comes the megaflow that the
first one installed handles them; but once that megaflow is in, the flow's
next frames take the hit path at once and may overtake those still
queued, as with OVS's kernel datapath and its upcall sockets.

The datapath knows nothing of OpenFlow or MAC learning: the slow path is
three callbacks given to the constructor. Its interface to the slow path is
narrow: add_port/del_port, flow_put/flow_del/flow_dump (with stats),
execute, handle_upcalls, and the callbacks `upcall`, `userspace` and
`flow_deleted` (told of every megaflow that leaves, with its final stats).

Megaflows carry stats (packets, bytes, last used, TCP flags), expire after
`max_idle` seconds without traffic (OVS's default is 10 s), and are bounded
by `flow_limit`: at the limit the least recently used tenth is evicted.

Ring health (see netdev.py): `check_rings` runs several times a second and
counts each cure under `recoveries`: frames that no wake-up announced are
read (`rx-missed-wakeup`); a reader that got ahead of the kernel's head is
put back in step (`rx-resync`); a ring the kernel wedged (drops while no
frame arrives and every slot is empty) is freed and made again in place
(`rx-ring-reset`, or `rx-ring-lost` when no new ring can be had and the port
reads its socket instead). A slot the kernel gave up is skipped after a
grace period, counted as the drop `rx-slot-abandoned`.

Tunnel ports (vxlan.py) have no ring and no device: their frames arrive as
datagrams on a UDP socket shared by the tunnel ports of one local
address and UDP port, read by tunnel_input, which hands each inner frame
to the same caches with the tunnel metadata (tun_id, tun_src, ...) in its
key's md. An output to a tunnel port needs a set_tunnel action before it
(the outer header); a megaflow keeps that pair ready as a TunnelOutput in
its fast_outs, which the hit path sends to as to a port.

Cost per packet on a hit: no receive system call (frames arrive in a
PACKET_MMAP ring, see netdev.py), flow_extract, one dict lookup in the EMC,
a few counter updates, one send per output port. A flow whose actions
are only outputs keeps the Port objects ready (`Megaflow.fast_outs`) and skips
the generic action interpreter; an sFlow sample before them joins the tuple
as a SampleTap (sample.py). A packet is a view into its
ring slot, which goes back to the kernel as soon as the packet is handled:
nothing may keep a reference to it (copy with bytes() to keep it).
"""

import logging
import struct
import time
import zlib
from collections import deque

from mnovs.dp import actions as odp_actions
from mnovs.dp.classifier import Classifier, Megaflow
from mnovs.dp.emc import MicroflowCache
from mnovs.dp.meter import MeterTable
from mnovs.dp.flow import FIELD_SLICES, KEY_LEN, MD_LEN, flow_extract, md_of
from mnovs.dp.netdev import (RING_FRAME_SIZE, RING_FRAMES, STATUS, TP_STATUS_KERNEL,
                             TP_STATUS_USER, TP_STATUS_VLAN_TPID_VALID, TP_STATUS_VLAN_VALID,
                             TPACKET2_HDR, Port, restore_vlan_tag)
from mnovs.dp.offload import VNET_HDR_LEN
from mnovs.dp.sample import SampleTap
from mnovs.dp.tap import TapPort
from mnovs.dp.tunnel import TUNNEL_TYPES
from mnovs.dp.vxlan import (ANC_SIZE, DROP_NO_SOURCE, DROP_NO_SPEC, RX_BUF_HEADROOM,
                            TunnelSockets, VxlanPort, mark_offloads)
from mnovs.vlog import RateLimitedLog

log = logging.getLogger(__name__)

RX_BATCH = 64            # frames read from one port before looking at others
RING_STALL_GRACE = 0.5   # seconds before skipping a slot the kernel left empty (see _skip_abandoned_slot)
UPCALL_BATCH = 64        # upcalls handled per turn of the poll loop (OVS: UPCALL_MAX_BATCH)
UPCALL_QUEUE_LEN = 4096  # upcalls waiting per input port before they are lost
UPCALL_QUEUE_BYTES = 64 << 20       # bytes all upcall queues hold at most (GSO frames are big)
POLL_EVERY = 8           # upcalls handled between two looks at the rings (poll_rings)
MISS, ACTION = 'miss', 'action'     # upcall kinds (OVS's DPIF_UC_MISS, DPIF_UC_ACTION)
TCP_FLAGS_AT = FIELD_SLICES['tcp_flags'][0]
IN_PORT_AT, IN_PORT_LEN = FIELD_SLICES['in_port']
_monotonic = time.monotonic
MAX_RECIRC_DEPTH = 6     # passes of one packet through the caches (as dpif-netdev)
# The 5-tuple OVS's hash(l4) covers: addresses (IPv4 or IPv6), protocol, ports.
_ADDRS = slice(FIELD_SLICES['nw_src'][0], sum(FIELD_SLICES['ipv6_dst']))
_PROTO = FIELD_SLICES['nw_proto'][0]
_PORTS = slice(FIELD_SLICES['tp_src'][0], sum(FIELD_SLICES['tp_dst']))
_RECIRC_ID = struct.Struct('!I')            # recirc_id, the key's first field
_DP_HASH_AT = FIELD_SLICES['dp_hash'][0]
assert FIELD_SLICES['recirc_id'] == (0, 4) and _DP_HASH_AT == 4
# The bridge's own port (an internal port named like the bridge). Its number
# is OpenFlow's OFPP_LOCAL, so that datapath and OpenFlow port numbers are the
# same everywhere (flow keys, megaflows, actions) and nobody translates them.
LOCAL_PORT = 0xfffffffe


class Datapath:
    """Ports, flow caches and the per-packet loop of one switch.

    Args:
        name: the switch name, for logs.
        upcall: callable(packet, key) -> (actions, mask, ukey); mask None
            means "execute but do not cache". packet is bytes (vnet header
            + frame).
        userspace: callable(packet, userdata, in_port) for the `userspace`
            action; packet is bytes (vnet header + frame).
        flow_deleted: callable(flow), told of every megaflow that leaves the
            classifier, with its final stats, so the slow path can credit
            them (OVS's ukey reaping); or None.
        flow_limit: the most megaflows kept.
        max_idle: seconds a megaflow lives without traffic.
        emc_size: microflow cache entries.
        ring_slots: receive ring slots per port (68 KB each, resident).
        upcall_queue_len: upcalls that may wait per input port.
    """

    def __init__(self, name, upcall, userspace=None, flow_deleted=None, flow_limit=10000,
                 max_idle=10.0, emc_size=8192, ring_slots=RING_FRAMES,
                 upcall_queue_len=UPCALL_QUEUE_LEN):
        self.name = name
        self.upcall = upcall
        self.userspace_cb = userspace
        self.flow_deleted = flow_deleted
        self.flow_limit = flow_limit
        self.ring_slots = ring_slots
        self.max_idle = max_idle
        self.ports = {}                     # port_no -> Port
        self.classifier = Classifier(KEY_LEN)
        self.emc = MicroflowCache(emc_size)
        self.meters = MeterTable()          # rate limiters for the 'meter' action
        self.upcall_queue_len = upcall_queue_len
        self.upcall_queues = {}             # in_port -> deque of (kind, packet, key/userdata)
        self.n_queued = 0                   # upcalls in all queues
        self.queued_bytes = 0               # their packets' bytes
        self.n_handled = 0                  # upcalls handled
        self.n_hit = self.n_missed = self.n_lost = 0
        self.exec_in_port = 0               # input port of the packet being executed
        self.exec_key = None                # its flow key, when known (hash, recirc, tunnel
                                            # outputs read it)
        self.recirc_depth = 0               # passes the executing packet has made
        self.out_tunnel = None              # the TunnelSpec a set_tunnel action gave it
        self.tunnels = TunnelSockets()      # UDP sockets of the tunnel ports (vxlan.py)
        self.n_megaflow_hit = 0             # hits that missed the EMC
        self.n_evicted = 0                  # megaflows dropped at flow_limit
        self.drops = {}                     # reason -> count (datapath_drop_*)
        self.malformed = {}                 # flow_extract error -> count
        self.recoveries = {}                # reason -> count (rx-ring-reset, ...)
        self.upcall_errors = RateLimitedLog(log)
        self.sample_pool = 0                # packets that met a sample action
        self.sample_lost = 0                # samples the upcall queue refused

    # --- ports -------------------------------------------------------------

    def add_port(self, name, port_no=None, port_type='', tunnel=None):
        """Open `name` as a datapath port and return the Port.

        Args:
            port_type: '' for an existing interface (netdev.Port), 'internal'
                for a TAP device this switch creates (tap.TapPort), 'vxlan'
                for a tunnel port (vxlan.VxlanPort, no network device).
            port_no: the port number; None picks the lowest unused above the
                others (LOCAL_PORT aside).
            tunnel: a tunnel port's TunnelConfig (dp/tunnel.py).
        Raises:
            ValueError: the port number or name is already in use, or the
                type is unknown. TunnelConfigError (a ValueError): another
                tunnel port takes the same datagrams.
            OSError: the interface cannot be opened, or a tunnel's UDP
                socket cannot be bound (strerror says which and why).
        """
        if port_no is None:
            port_no = max((n for n in self.ports if n != LOCAL_PORT), default=0) + 1
        if port_no in self.ports:
            raise ValueError(f'port number {port_no} is already in use')
        if any(p.name == name for p in self.ports.values()):
            raise ValueError(f'interface {name} is already a port')
        if port_type == 'internal':
            port = TapPort(port_no, name)
        elif port_type == '':
            port = Port(port_no, name, self.ring_slots)
        elif port_type in TUNNEL_TYPES:
            if tunnel is None:
                raise ValueError(f'a {port_type} port needs its tunnel configuration')
            port = VxlanPort(port_no, name, tunnel, self.tunnels)
        else:
            raise ValueError(f'unknown port type "{port_type}"')
        port.md = md_of(port_no)        # flow_extract's metadata for its packets
        self.ports[port_no] = port
        return port

    def del_port(self, port_no):
        """Close a port and delete every megaflow that refers to it.

        Upcalls still queued from the port are dropped and counted.
        """
        port = self.ports.pop(port_no)
        port.close()
        queue = self.upcall_queues.pop(port_no, ())
        if queue:
            self.n_queued -= len(queue)
            self.queued_bytes -= sum(len(entry[1]) for entry in queue)
            self.count_drop('port-deleted', len(queue))
        self.flow_del_if(lambda flow: flow_uses_port(flow, port_no))
        return port

    def port_by_name(self, name):
        for port in self.ports.values():
            if port.name == name:
                return port
        return None

    # --- megaflows ---------------------------------------------------------

    def flow_put(self, key, mask, actions, now=None, ukey=None):
        """Install (or replace the actions of) the megaflow key/mask.

        Returns:
            The installed Megaflow.
        """
        now = time.monotonic() if now is None else now
        if len(self.classifier) >= self.flow_limit:
            self._evict(now)
        flow = Megaflow(key, mask, actions, now)
        flow.fast_outs = self._fast_outs(actions, exact_in_port(key, mask))
        flow.ukey = ukey
        replaced = self.classifier.insert(flow)
        if replaced is not None and self.flow_deleted is not None:
            self.flow_deleted(replaced)
        return flow

    def flow_del(self, flow):
        self.classifier.remove(flow)
        if self.flow_deleted is not None:
            self.flow_deleted(flow)

    def flow_del_if(self, predicate):
        """Delete the megaflows for which predicate(flow) is true; count them."""
        doomed = [flow for flow in self.classifier if predicate(flow)]
        for flow in doomed:
            self.flow_del(flow)
        return len(doomed)

    def flow_flush(self):
        return self.flow_del_if(lambda flow: True)

    def flow_dump(self):
        """Return a list of the megaflows (stable while the caller edits)."""
        return list(self.classifier)

    def _fast_outs(self, actions, in_port=None):
        """What to send to directly if the actions are only outputs (and sFlow samples).

        An output to a tunnel port after a set_tunnel becomes that port's
        TunnelOutput for the spec (it has the same send(packet)); an output
        to a tunnel without one is left to the generic path, which counts it.
        A sample becomes a SampleTap (sample.py) when the flow has one in_port.
        """
        outs = []
        spec = None
        for action in actions:
            if action[0] == 'sample' and in_port is not None:
                tap = SampleTap.of(self, action, in_port)
                if tap is None:
                    return None
                outs.append(tap)
                continue
            if action[0] == 'set_tunnel':
                spec = action[1]
                continue
            port = self.ports.get(action[1]) if action[0] == 'output' else None
            if port is None:
                return None
            if isinstance(port, VxlanPort):
                if spec is None:
                    return None
                try:
                    port = port.output_for(self, spec)
                except OSError:
                    return None
            outs.append(port)
        return tuple(outs)

    def _evict(self, now):
        """Make room: expire idle flows, then drop the least recently used tenth."""
        self.expire(now)
        excess = len(self.classifier) - self.flow_limit + 1
        if excess <= 0:
            return
        victims = sorted(self.classifier, key=lambda f: f.used)
        victims = victims[:max(excess, self.flow_limit // 10)]
        for flow in victims:
            self.flow_del(flow)
        self.n_evicted += len(victims)

    def expire(self, now):
        """Delete megaflows idle for longer than max_idle (revalidator sweep)."""
        limit = now - self.max_idle
        return self.flow_del_if(lambda flow: flow.used < limit)

    def run_periodic(self, now):
        """Housekeeping, about once a second: idle expiry, mask order.

        The rings have their own, faster check (check_rings), which the
        poll loop runs several times a second.
        """
        self.expire(now)
        self.classifier.rebalance()

    def check_rings(self, now):
        """Count the frames the kernel dropped at each ring; unstick stuck readers.

        A port that received nothing since the last look may be stuck, in
        one of three ways, each cured here and counted in `recoveries`:
        - a frame waits at the reader's slot but no wake-up came (the
          socket is readable only while the slot before the kernel's head is
          full, which a reader out of step with the head does not see):
          read it (rx-missed-wakeup);
        - the kernel wedged the ring (every slot free, frames dropped):
          _reset_ring (rx-ring-reset);
        - the reader waits at a slot the kernel gave up while later slots
          are full: _rescue_ring skips it (rx-slot-abandoned, a drop).
        Cheap (a status word, one getsockopt and, only when there were
        drops, a look at the slots), so the poll loop runs it several times
        a second: a stuck port is out of service until it runs.
        """
        for port in list(self.ports.values()):
            drops = port.kernel_drops()
            if drops:
                port.rx_dropped += drops
                self.count_drop('rx-ring', drops)    # ring full, or wedged (below)
            if port.ring is None:
                continue
            waiting = STATUS.unpack_from(port.ring_view,
                                         port.rx_slot * RING_FRAME_SIZE)[0] & TP_STATUS_USER
            if port.rx_packets != port.rx_checked:
                port.waiting_at = None
            elif waiting:
                # A frame that came after this turn's wait has its wake-up
                # still to come: only one seen at the last check as well
                # was missed.
                if port.waiting_at == port.rx_slot:
                    self._count_recovery('rx-missed-wakeup')
                    self.port_input(port)
                    port.waiting_at = None
                else:
                    port.waiting_at = port.rx_slot
            elif drops and ring_empty(port):
                self._reset_ring(port)
            else:
                self._rescue_ring(port, now)
            port.rx_checked = port.rx_packets

    def _reset_ring(self, port):
        """Free and remake a wedged ring (netdev.Port.reset_ring); count it."""
        log.warning('%s: port %d (%s): receive ring wedged (kernel drops with every slot '
                    'free); resetting it', self.name, port.port_no, port.name)
        try:
            port.reset_ring()
        except OSError as err:
            log.error('%s: port %d: no new ring (%s): reading the socket frame by frame',
                      self.name, port.port_no, err)
            self._count_recovery('rx-ring-lost')
            return
        self._count_recovery('rx-ring-reset')

    def _count_recovery(self, reason):
        self.recoveries[reason] = self.recoveries.get(reason, 0) + 1

    # --- packets -----------------------------------------------------------

    def port_input(self, port):
        """Handle up to RX_BATCH frames waiting at `port` (dp_netdev_input)."""
        if port.ring is None:
            # A TAP port (tap.py) has no ring: its frames are read one by one.
            now = time.monotonic()
            emc_get = self.emc.table.get
            md = port.md
            for packet in port.recv_batch(RX_BATCH):
                self._input(port, md, memoryview(packet), emc_get, now)
            return
        ring = port.ring_view
        n_slots = port.ring_slots
        slot = port.rx_slot
        emc_get = self.emc.table.get
        md = port.md
        now = time.monotonic()
        for done in range(RX_BATCH):
            base = slot * RING_FRAME_SIZE
            status, length, snaplen, mac, _, _, _, tci, tpid = TPACKET2_HDR.unpack_from(ring, base)
            if not status & TP_STATUS_USER:
                if done or not (self._step_back(port, slot)
                                or self._skip_abandoned_slot(port, slot, now)):
                    break
                slot = port.rx_slot
                continue
            start = base + mac - VNET_HDR_LEN
            end = base + mac + snaplen
            if snaplen < length:
                port.rx_dropped += 1
                self.count_drop('rx-truncated', 1)
            else:
                if status & TP_STATUS_VLAN_VALID:
                    start = restore_vlan_tag(ring, start, tci, tpid
                                             if status & TP_STATUS_VLAN_TPID_VALID else 0)
                self._input(port, md, ring[start:end], emc_get, now)
            STATUS.pack_into(ring, base, TP_STATUS_KERNEL)     # hand the slot back
            slot += 1
            if slot == n_slots:
                slot = 0
        if slot != port.rx_slot:
            port.rx_slot = slot
            port.stalled_since = None

    def poll_rings(self):
        """Drain every ring that has frames waiting, without a system call.

        The slow path calls this between pieces of its own work (upcalls,
        OpenFlow messages): a ring holds only `ring_slots` frames, and at
        20,000 new flows per second 64 slots fill in 3 ms, less than one
        batch of slow-path work takes. Hits are forwarded on the spot and
        misses join the upcall queues, which are much longer. Cost when no
        frame waits: one status word per port.
        """
        for port in self.ports.values():
            if port.ring is not None and STATUS.unpack_from(
                    port.ring_view, port.rx_slot * RING_FRAME_SIZE)[0] & TP_STATUS_USER:
                self.port_input(port)

    def _step_back(self, port, slot):
        """Move a reader that is one slot ahead of the kernel back in step.

        The reader consumes slots in order and hands each back at once, so
        a full slot just behind an empty one it waits at can only mean that
        it got ahead of the kernel's head (after a skip): the kernel writes
        there, and the socket stays readable for that slot, so the loop
        would spin until the grace period ran out. Nothing is lost; counted
        under the recovery `rx-resync`.

        Returns:
            True if port.rx_slot now points at a full slot to read.
        """
        behind = (slot - 1) % port.ring_slots
        if not STATUS.unpack_from(port.ring_view, behind * RING_FRAME_SIZE)[0] & TP_STATUS_USER:
            return False
        port.rx_slot = behind
        port.stalled_since = None
        self._count_recovery('rx-resync')
        return True

    def _skip_abandoned_slot(self, port, slot, now):
        """Decide whether the empty slot the reader waits at was given up.

        The kernel fills slots in order, but two CPUs may fill neighbouring
        slots at once: a slot can still be empty while the next is full.
        Kernels before 5.7 could also give up a slot they had claimed (an
        skb its vnet header cannot describe was dropped after the head moved
        on), and a reader that only waited there would stall for good. So
        when the expected slot is empty but a later one full, we wait
        RING_STALL_GRACE, then move on to the full slot.

        The grace is long on purpose. A concurrent fill lands within
        microseconds, or milliseconds when a vCPU is preempted mid-copy;
        skipping a slot still being filled puts the reader out of step with
        the kernel's head: the frame then lands behind the reader, where
        only check_rings finds it (rx-missed-wakeup). Since 5.7 the kernel
        never gives up a claimed slot, so on the kernels mnovs runs on the
        skip is a last resort that should never be needed.

        Returns:
            True if port.rx_slot now points at a full slot to read.
        """
        ahead = next_user_slot(port.ring_view, port.ring_slots, slot)
        if ahead is None:
            port.stalled_since = None
            return False
        if port.stalled_since is None:
            port.stalled_since = now
            return False
        if now - port.stalled_since < RING_STALL_GRACE:
            return False
        port.stalled_since = None
        port.rx_slot = ahead
        self.count_drop('rx-slot-abandoned', 1)
        return True

    def _rescue_ring(self, port, now):
        """Move a reader stuck at a given-up slot of a full ring, then read on.

        If the kernel gives up the slot just before its own head and every
        other slot is full, poll never reports the socket readable again
        (readiness is "the slot before the head is full"), so no wake-up
        comes for _skip_abandoned_slot to act on. check_rings asks it
        instead, several times a second, when the reader's slot is empty:
        the first look starts the grace period, a later one skips.
        """
        if self._skip_abandoned_slot(port, port.rx_slot, now):
            self.port_input(port)

    def tunnel_input(self, receiver):
        """Handle up to RX_BATCH datagrams waiting at a tunnel socket (vxlan.py).

        Each good datagram's inner frame goes through the caches in place,
        from the tunnel port that takes it, with the tunnel metadata in its
        md; the others are counted drops.
        """
        recv = receiver.sock.recvmsg_into
        into = receiver.into
        view = receiver.view
        classify = receiver.classify
        emc_get = self.emc.table.get
        now = time.monotonic()
        for _ in range(RX_BATCH):
            try:
                n, anc, _, addr = recv(into, ANC_SIZE)
            except BlockingIOError:
                break
            except OSError:
                receiver.rx_errors += 1
                break
            port, md = classify(n, anc, addr)
            if port is None:
                self.count_drop(md, 1)
                continue
            packet = view[:RX_BUF_HEADROOM + n]
            mark_offloads(packet)
            self._input(port, md, packet, emc_get, now)

    def _input(self, port, md, packet, emc_get, now):
        """One packet (vnet header + frame, a view into the ring) through the caches.

        md is its metadata: the port's own (port.md), or a tunnel packet's.
        """
        size = len(packet) - VNET_HDR_LEN
        port.rx_packets += 1
        port.rx_bytes += size
        key, error = flow_extract(packet[VNET_HDR_LEN:], md)
        if error is not None:
            self.malformed[error] = self.malformed.get(error, 0) + 1
            if key is None:
                port.rx_dropped += 1
                self.count_drop(error, 1)
                return
        flow = emc_get(key)
        if flow is None or not flow.alive:
            flow = self._classify(key, port.port_no, packet)
            if flow is None:
                return
        self.n_hit += 1
        flow.packets += 1
        flow.bytes += size
        flow.used = now
        flow.tcp_flags |= key[TCP_FLAGS_AT] << 8 | key[TCP_FLAGS_AT + 1]
        outs = flow.fast_outs
        self.exec_key = key
        if outs is not None:
            for out in outs:
                out.send(packet)
        else:
            self.exec_in_port = port.port_no
            self.exec_key = key
            self.out_tunnel = None
            odp_actions.execute(self, packet, flow.actions)

    def _classify(self, key, in_port, packet):
        """A key the microflow cache missed: its megaflow, now cached; or None
        (a miss, queued as an upcall)."""
        flow = self.classifier.lookup(key)
        if flow is None:
            self.n_missed += 1
            self._queue_upcall(in_port, MISS, packet, key)
            return None
        self.n_megaflow_hit += 1
        self.emc.insert(key, flow)
        return flow

    # --- upcalls ------------------------------------------------------------

    def _queue_upcall(self, in_port, kind, packet, arg):
        """Queue a packet (copied: it may be a ring view) for the slow path.

        A queue exists only while it holds upcalls (a packet-out may name
        any in_port: empty queues must not pile up).

        Returns:
            True if queued, False if lost (counted).
        """
        queue = self.upcall_queues.get(in_port)
        if queue is None:
            queue = self.upcall_queues[in_port] = deque()
        if (len(queue) >= self.upcall_queue_len
                or self.queued_bytes + len(packet) > UPCALL_QUEUE_BYTES):
            self.n_lost += 1
            self.count_drop('upcall-queue-full', 1)
            if not queue:
                del self.upcall_queues[in_port]
            return False
        queue.append((kind, bytes(packet), arg))
        self.n_queued += 1
        self.queued_bytes += len(packet)
        return True

    def handle_upcalls(self, budget=UPCALL_BATCH):
        """Handle up to `budget` queued upcalls, one per input port in turn.

        Returns:
            The number handled.
        """
        handled = 0
        now = time.monotonic()
        while self.n_queued and handled < budget:
            for in_port, queue in list(self.upcall_queues.items()):
                if not queue:               # emptied since the list was made (del_port)
                    continue
                kind, packet, arg = queue.popleft()
                if not queue:
                    # Served last; a new upcall puts the port at the end of the turn.
                    del self.upcall_queues[in_port]
                self.n_queued -= 1
                self.queued_bytes -= len(packet)
                self.n_handled += 1
                handled += 1
                try:
                    if not handled % POLL_EVERY:
                        self.poll_rings()
                    if kind is MISS:
                        self.handle_miss(packet, arg, now)
                    else:
                        self.userspace_cb(packet, arg, in_port)
                except Exception as err:     # a slow-path bug must not stop the switch
                    self.n_lost += 1
                    self.count_drop('upcall-error', 1)
                    self.upcall_errors.exception('%s: %s upcall failed, packet dropped: %s',
                                                 self.name, kind, err)
                if handled >= budget:
                    break
        return handled

    def handle_miss(self, packet, key, now):
        """Upcall to the slow path, install its megaflow, execute its actions.

        An earlier upcall may have installed a megaflow for this packet
        while it waited in the queue; then that megaflow handles it.
        """
        flow = self.classifier.lookup(key)
        if flow is not None:
            actions = flow.actions
            flow.used = now
        else:
            actions, mask, ukey = self.upcall(packet, key)
            if mask is None:
                self._execute(packet, actions, key)
                return
            flow = self.flow_put(key, mask, actions, now, ukey)
        flow.packets += 1
        flow.bytes += len(packet) - VNET_HDR_LEN
        flow.tcp_flags |= key[TCP_FLAGS_AT] << 8 | key[TCP_FLAGS_AT + 1]
        self._execute(packet, actions, key)

    def _execute(self, packet, actions, key):
        self.exec_in_port = int.from_bytes(key[IN_PORT_AT:IN_PORT_AT + IN_PORT_LEN], 'big')
        self.exec_key = key
        self.out_tunnel = None
        odp_actions.execute(self, packet, actions)

    def execute(self, packet, actions, in_port=0):
        """Run datapath actions on one packet (vnet header + frame) from in_port."""
        self.exec_in_port = in_port
        self.exec_key = None
        self.out_tunnel = None
        odp_actions.execute(self, packet, actions)

    # Recirculation (OVS_ACTION_ATTR_HASH, OVS_ACTION_ATTR_RECIRC):

    def _executing_key(self, packet):
        """The key of the packet being executed (a packet-out's is made on demand)."""
        if self.exec_key is None:
            self.exec_key = flow_extract(packet[VNET_HDR_LEN:], md_of(self.exec_in_port))[0]
        return self.exec_key

    def hash_l4(self, packet, basis):
        """The hash action: put the packet's 5-tuple hash in its dp_hash (never 0, as OVS)."""
        key = self._executing_key(packet)
        if key is None:
            return
        value = mix32(zlib.crc32(key[_PORTS], zlib.crc32(key[_PROTO:_PROTO + 1],
                                                        zlib.crc32(key[_ADDRS], basis)))) or 1
        self.exec_key = key[:_DP_HASH_AT] + value.to_bytes(4, 'big') + key[_DP_HASH_AT + 4:]

    def recirculate(self, packet, recirc_id):
        """The recirc action: the packet, as the actions left it, through the caches again.

        It is parsed anew, with the metadata it had (in_port, tunnel, dp_hash)
        and recirc_id; a hit runs that megaflow's actions, a miss is an upcall.
        A packet past MAX_RECIRC_DEPTH passes is dropped, counted 'recirc-depth'.
        """
        key = self.exec_key or self._executing_key(packet)
        if key is None:
            self.count_drop('runt')
            return
        if self.recirc_depth >= MAX_RECIRC_DEPTH:
            self.count_drop('recirc-depth')
            return
        md = _RECIRC_ID.pack(recirc_id) + key[4:MD_LEN]
        key, error = flow_extract(packet[VNET_HDR_LEN:], md)
        if error is not None:
            self.malformed[error] = self.malformed.get(error, 0) + 1
            if key is None:
                self.count_drop(error)
                return
        flow = self.emc.table.get(key)
        if flow is None or not flow.alive:
            flow = self._classify(key, self.exec_in_port, packet)
            if flow is None:
                return
        self.n_hit += 1
        flow.packets += 1
        flow.bytes += len(packet) - VNET_HDR_LEN
        flow.used = _monotonic()
        flow.tcp_flags |= key[TCP_FLAGS_AT] << 8 | key[TCP_FLAGS_AT + 1]
        outs = flow.fast_outs
        if outs is not None:                # only outputs: as the first pass's hit path
            for out in outs:
                out.send(packet)
            return
        self.exec_key = key
        self.recirc_depth += 1
        try:
            odp_actions.execute(self, packet, flow.actions)
        finally:
            self.recirc_depth -= 1

    # Callbacks of actions.execute:

    def output(self, port_no, packet):
        port = self.ports.get(port_no)
        if port is None:
            self.count_drop('no-such-port', 1)
            return
        if isinstance(port, VxlanPort):
            spec = self.out_tunnel
            if spec is None:
                port.tx_dropped += 1
                self.count_drop(DROP_NO_SPEC, 1)
                return
            try:
                port = port.output_for(self, spec)
            except OSError:
                port.tx_dropped += 1
                self.count_drop(DROP_NO_SOURCE, 1)
                return
        port.send(packet)

    def set_tunnel(self, spec):
        """The set_tunnel action: the next outputs to tunnels use this outer header."""
        self.out_tunnel = spec

    def userspace(self, packet, userdata):
        """Queue a `userspace` upcall; return whether it was queued."""
        if self.userspace_cb is None:
            self.count_drop('no-userspace-handler', 1)
            return False
        return self._queue_upcall(self.exec_in_port, ACTION, packet, userdata)

    def activity(self):
        """A number that changes whenever a megaflow's stats may have changed."""
        return self.n_hit + self.n_handled

    def count_drop(self, reason, n=1):
        """Count n packets dropped for `reason` (OVS's datapath_drop_* counters)."""
        self.drops[reason] = self.drops.get(reason, 0) + n

    # --- introspection -----------------------------------------------------

    def stats(self):
        """Counters for dpctl/show, as a dict."""
        cls = self.classifier
        lookups = self.n_hit + self.n_missed
        return {
            'hit': self.n_hit, 'missed': self.n_missed, 'lost': self.n_lost,
            'flows': len(cls), 'evicted': self.n_evicted, 'masks_hit': cls.n_mask_hits,
            'masks_total': cls.n_masks, 'mask_cache_hits': cls.n_cache_hits,
            'emc_hits': self.n_hit - self.n_megaflow_hit, 'emc_entries': len(self.emc),
            'hit_rate': self.n_hit / lookups if lookups else 0.0,
            'drops': dict(self.drops), 'malformed': dict(self.malformed),
            'recoveries': dict(self.recoveries), 'queued': self.n_queued,
        }

    def close(self):
        for port in self.ports.values():
            port.close()
        self.ports.clear()
        self.tunnels.close()


def mix32(value):
    """Murmur3's finalizer: every bit of a 32-bit value moves every bit of the result.

    CRC32 is linear: flows whose ports step by 2 (as Linux's connect() picks
    them) share the low bits of their CRC, and a bond picks its bucket from
    the low bits of dp_hash.
    """
    value = (value ^ value >> 16) * 0x85ebca6b & 0xffffffff
    value = (value ^ value >> 13) * 0xc2b2ae35 & 0xffffffff
    return value ^ value >> 16


def ring_fill(port):
    """How many slots of port's ring hold a frame."""
    ring = port.ring_view
    return sum(STATUS.unpack_from(ring, slot * RING_FRAME_SIZE)[0] & TP_STATUS_USER
               for slot in range(port.ring_slots))


def ring_empty(port):
    """True if no slot of port's ring holds a frame."""
    return not ring_fill(port)


def next_user_slot(ring, n_slots, slot):
    """Find the next ring slot after `slot` that holds a frame.

    Returns:
        The slot number, or None if no slot holds a frame.
    """
    for step in range(1, n_slots):
        candidate = (slot + step) % n_slots
        if STATUS.unpack_from(ring, candidate * RING_FRAME_SIZE)[0] & TP_STATUS_USER:
            return candidate
    return None


def exact_in_port(key, mask):
    """The in_port a megaflow matches exactly, or None if its mask is partial there."""
    if mask[IN_PORT_AT:IN_PORT_AT + IN_PORT_LEN] != b'\xff' * IN_PORT_LEN:
        return None
    return int.from_bytes(key[IN_PORT_AT:IN_PORT_AT + IN_PORT_LEN], 'big')


def flow_uses_port(flow, port_no):
    """True if a megaflow matches on or outputs to `port_no`."""
    in_port = int.from_bytes(flow.key[IN_PORT_AT:IN_PORT_AT + IN_PORT_LEN], 'big')
    if in_port == port_no:
        return True
    return any(a[0] == 'output' and a[1] == port_no for a in flow.actions)
