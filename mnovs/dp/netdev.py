"""Datapath ports: one raw AF_PACKET socket per network interface.

This is mnovs's netdev-linux. A `Port` owns a non-blocking packet socket bound
to one interface, with the options that let a userspace switch keep up with
the kernel:

- PACKET_VNET_HDR: every frame read carries a 10-byte virtio_net_hdr in front
  of it, and every frame written must carry one. A TCP sender on a veth with
  TSO hands us 64 KB GSO "super-frames" with a partial checksum; the header
  says how to finish them (csum_start/csum_offset) and how to cut them
  (gso_type/gso_size). Writing the same header back on another port makes the
  kernel do that work after us, so the switch never touches payload bytes.
- PACKET_IGNORE_OUTGOING: a port does not read back what it transmits.
- PACKET_RX_RING (TPACKET_V2, "PACKET_MMAP"): the kernel writes received
  frames into a ring of slots shared with us, so receiving costs no system
  call: the datapath walks the slots whose status says TP_STATUS_USER and
  hands each back (TP_STATUS_KERNEL) when done. A slot holds a whole 64 KB
  GSO frame; pages of a slot are only touched (and resident) as far as the
  frames written into it reach.
- VLAN tags: the kernel strips the outer 802.1Q tag into metadata before any
  packet tap sees the frame. The slot header carries it (tp_vlan_tci) and
  `restore_vlan_tag` puts it back into the frame, in place, using headroom
  reserved in front of the slot's data (PACKET_RESERVE), so that everything
  above sees frames exactly as they were on the wire.

Wedged rings (the kernel's, not ours). For TPACKET_V1/V2 rings the kernel
keeps a bitmap of the slots it is filling (rx_owner_map, since Linux 5.7).
tpacket_rcv sets the head slot's bit, then builds the vnet header; when
that fails (virtio_net_hdr_from_skb refuses an skb whose GSO type is none of
TCPV4, TCPV6 and UDP_L4, e.g. a UFO skb that a tap device or a tc redirect
delivered unsegmented) it drops the skb without clearing the bit or moving
the head. Every later frame then finds the head slot free but "owned" and
is dropped too: the ring stays empty, the kernel's drop counter rises, and
the port receives nothing, for good. Nothing done to the slots clears the
bit; freeing the ring and making it again does (reset_ring, which keeps the
socket, its fd and its binding). The datapath looks for the symptom several
times a second (Datapath.check_rings: drops counted, no frame received,
every slot free) and resets the ring, counting the recovery.

A Port keeps the counters that `dpctl/show` prints. It is a long-lived object;
the per-packet work is in datapath.py.
"""

import mmap
import socket
import struct

from mnovs.dp.offload import VNET_HDR, VNET_HDR_LEN

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_RESERVE = 12
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
TPACKET_V2 = 1
ETH_P_ALL = 0x0003
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 0x1
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
SO_SNDBUFFORCE = 32

# struct tpacket2_hdr: status, len, snaplen, mac, net, sec, nsec,
# vlan_tci, vlan_tpid, padding.
TPACKET2_HDR = struct.Struct('=IIIHHIIHH4x')
assert TPACKET2_HDR.size == 32
STATUS = struct.Struct('=I')
TPACKET_REQ = struct.Struct('=IIII')     # block_size, block_nr, frame_size, frame_nr
TPACKET_STATS = struct.Struct('=II')     # packets, drops

# A ring slot holds the slot header, headroom, the vnet header and a 64 KB
# GSO frame; a frame that still does not fit arrives truncated and is counted.
RING_FRAME_SIZE = 65536 + 4096          # 17 pages
RING_FRAMES = 64          # default slots: 4.4 MB per port, all of it resident
RESERVE = 16                             # headroom to re-insert a VLAN tag

VLAN_TAG = struct.Struct('!HH')


class Port:
    """One datapath port: an interface, its packet socket and its counters."""

    __slots__ = ('port_no', 'md', 'name', 'sock', 'fd', 'up', 'ring', 'ring_view', 'ring_slots',
                 'rx_slot', 'stalled_since', 'rx_checked', 'waiting_at',
                 'rx_packets', 'rx_bytes', 'rx_dropped', 'rx_errors',
                 'tx_packets', 'tx_bytes', 'tx_dropped')
    tunnel = None           # a tunnel port's TunnelConfig (dp/tunnel.py); None: not a tunnel

    def __init__(self, port_no, name, ring_slots=RING_FRAMES, sock_buf=4 << 20):
        self.port_no = port_no
        self.name = name
        self.ring_slots = ring_slots
        self.sock = open_packet_socket(name, ring_slots, sock_buf)
        try:
            self._map_ring()
        except OSError:
            self.sock.close()
            raise
        self.fd = self.sock.fileno()
        self.up = True
        self.rx_packets = self.rx_bytes = self.rx_dropped = self.rx_errors = 0
        self.tx_packets = self.tx_bytes = self.tx_dropped = 0
        self.rx_checked = 0              # rx_packets at the last ring health check
        self.waiting_at = None           # reader slot seen full then, with nothing read

    def fileno(self):
        return self.fd

    def _map_ring(self):
        self.ring = mmap.mmap(self.sock.fileno(), RING_FRAME_SIZE * self.ring_slots,
                              mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.ring_view = memoryview(self.ring)
        self.rx_slot = 0                 # next ring slot to look at
        self.stalled_since = None        # when rx_slot was first seen empty with later slots full

    def reset_ring(self):
        """Free the receive ring and make a new one, on the same socket.

        This is the cure for a wedged ring (see "Wedged rings" above). The
        kernel keeps, beside the slots, a bitmap of slots it is filling
        (rx_owner_map); only freeing the ring clears it. The socket, its
        options, its binding and its place in the poll set stay as they are.
        Frames in the old ring that were not read are lost (the caller has
        just seen that there are none).

        If the kernel cannot make the new ring (memory), the port goes on
        without one: `ring` is None and frames are read from the socket
        itself (recv_batch), one system call each, from then on.

        Raises:
            OSError: the new ring could not be made.
        """
        self.ring_view.release()
        self.ring.close()
        self.ring = self.ring_view = None
        self.sock.setsockopt(SOL_PACKET, PACKET_RX_RING, TPACKET_REQ.pack(0, 0, 0, 0))
        self.sock.setsockopt(SOL_PACKET, PACKET_RX_RING, TPACKET_REQ.pack(
            RING_FRAME_SIZE, self.ring_slots, RING_FRAME_SIZE, self.ring_slots))
        try:
            self._map_ring()
        except OSError:
            self.sock.setsockopt(SOL_PACKET, PACKET_RX_RING, TPACKET_REQ.pack(0, 0, 0, 0))
            raise

    def recv_batch(self, max_n):
        """Read up to max_n frames (vnet header + frame) from a port without a ring.

        Only a port whose ring could not be remade reads this way. The
        kernel strips a VLAN tag into ancillary data that this path does not
        read, so tagged frames arrive untagged: a degraded mode, counted in
        dpctl/show as the recovery `rx-ring-lost`.
        """
        frames = []
        for _ in range(max_n):
            try:
                frames.append(self.sock.recv(RING_FRAME_SIZE))
            except BlockingIOError:
                break
            except OSError:
                self.rx_errors += 1
                break
        return frames

    def clear_error(self):
        """Read (and so clear) a pending socket error; count it."""
        if self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self.rx_errors += 1

    def kernel_drops(self):
        """Frames the kernel dropped because the ring was full, since last asked."""
        stats = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, TPACKET_STATS.size)
        return TPACKET_STATS.unpack(stats)[1]

    def close(self):
        if self.ring is not None:
            self.ring_view.release()
            self.ring.close()
        self.sock.close()

    def send(self, packet):
        """Transmit vnet header + frame; count it as sent or dropped."""
        try:
            self.sock.send(packet)
        except OSError:
            self.tx_dropped += 1
            return
        self.tx_packets += 1
        self.tx_bytes += len(packet) - VNET_HDR_LEN


def open_packet_socket(ifname, ring_slots, sock_buf):
    """Open a non-blocking AF_PACKET socket on `ifname` set up for a switch.

    Raises:
        OSError: the interface does not exist or the socket cannot be set up.
    """
    # Protocol 0 until bound, so no frame of another interface sneaks in
    # between socket() and bind().
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        # The vnet header option must come before the ring is set up.
        sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        sock.setsockopt(SOL_PACKET, PACKET_RESERVE, RESERVE)
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, TPACKET_REQ.pack(
            RING_FRAME_SIZE, ring_slots, RING_FRAME_SIZE, ring_slots))
        sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, sock_buf)
        sock.bind((ifname, ETH_P_ALL))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def restore_vlan_tag(ring, start, tci, tpid):
    """Re-insert the outer VLAN tag the kernel moved into the slot header.

    The vnet header and the MAC addresses move 4 bytes towards the slot's
    headroom, and the tag goes where they were; the payload stays put.

    Args:
        ring: the ring's memoryview.
        start: offset of the packet (vnet header) in the ring.
        tci, tpid: the tag from the slot header (tpid 0: 0x8100).
    Returns:
        The new offset of the packet, start - 4.
    """
    head = start - 4
    ring[head:head + VNET_HDR_LEN + 12] = bytes(ring[start:start + VNET_HDR_LEN + 12])
    VLAN_TAG.pack_into(ring, head + VNET_HDR_LEN + 12, tpid or 0x8100, tci)
    flags, gso_type, hdr_len, gso_size, csum_start, csum_off = VNET_HDR.unpack_from(ring, head)
    if flags or gso_type:
        # Offsets in the vnet header count from the frame start; they move
        # with the bytes after the tag.
        VNET_HDR.pack_into(ring, head, flags, gso_type, hdr_len + 4 if hdr_len else 0,
                           gso_size, csum_start + 4 if flags else csum_start, csum_off)
    return head
