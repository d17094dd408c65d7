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
- PACKET_AUXDATA: the kernel strips the outer 802.1Q tag into metadata before
  any packet tap sees the frame. The tag comes back to us as ancillary data
  and `Port.recv` puts it back into the frame, so that everything above sees
  frames exactly as they were on the wire.

A Port keeps the counters that `dpctl/show` prints. It is a long-lived object;
the per-packet work is in datapath.py.
"""

import errno
import socket
import struct

from mnovs.dp.offload import VNET_HDR, VNET_HDR_LEN

SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
ETH_P_ALL = 0x0003
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32

# struct tpacket_auxdata: status, len, snaplen, mac, net, vlan_tci, vlan_tpid.
AUXDATA = struct.Struct('=IIIHHHH')
assert AUXDATA.size == 20
ANC_BUFSIZE = socket.CMSG_SPACE(AUXDATA.size)

# Largest frame read: a 64 KB GSO frame plus headers, plus room for a tag we
# re-insert. A read that still does not fit is truncated and counted.
RX_BUF_SIZE = VNET_HDR_LEN + 65536 + 256

VLAN_TAG = struct.Struct('!HH')

# Errors that mean "this port cannot take/give a frame right now": counted,
# never fatal.
TRANSIENT_ERRNOS = frozenset((errno.ENETDOWN, errno.ENXIO, errno.ENOBUFS,
                              errno.EAGAIN, errno.EMSGSIZE, errno.EINVAL,
                              errno.ENODEV))


class Port:
    """One datapath port: an interface, its packet socket and its counters."""

    __slots__ = ('port_no', 'name', 'sock', 'fd', 'up',
                 'rx_packets', 'rx_bytes', 'rx_dropped', 'rx_errors',
                 'tx_packets', 'tx_bytes', 'tx_dropped')

    def __init__(self, port_no, name, sock_buf=4 << 20):
        self.port_no = port_no
        self.name = name
        self.sock = open_packet_socket(name, sock_buf)
        self.fd = self.sock.fileno()
        self.up = True
        self.rx_packets = self.rx_bytes = self.rx_dropped = self.rx_errors = 0
        self.tx_packets = self.tx_bytes = self.tx_dropped = 0

    def close(self):
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


def open_packet_socket(ifname, sock_buf):
    """Open a non-blocking AF_PACKET socket on `ifname` set up for a switch.

    Raises:
        OSError: the interface does not exist or the socket cannot be set up.
    """
    # Protocol 0 until bound, so no frame of another interface sneaks in
    # between socket() and bind().
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, sock_buf)
        sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, sock_buf)
        sock.bind((ifname, ETH_P_ALL))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def restore_vlan_tag(buf, n, ancdata):
    """Re-insert the outer VLAN tag the kernel moved into PACKET_AUXDATA.

    Args:
        buf: the receive bytearray holding vnet header + frame.
        n: bytes used in buf.
        ancdata: the ancillary data list from recvmsg_into.
    Returns:
        The new length of the packet in buf (n, or n + 4 with a tag put back).
    """
    for level, kind, data in ancdata:
        if level != SOL_PACKET or kind != PACKET_AUXDATA or len(data) < AUXDATA.size:
            continue
        status, _, _, _, _, tci, tpid = AUXDATA.unpack_from(data)
        if not status & TP_STATUS_VLAN_VALID or n + 4 > len(buf):
            return n
        if not status & TP_STATUS_VLAN_TPID_VALID or not tpid:
            tpid = 0x8100
        tag_at = VNET_HDR_LEN + 12
        buf[tag_at + 4:n + 4] = buf[tag_at:n]
        VLAN_TAG.pack_into(buf, tag_at, tpid, tci)
        flags, gso_type, hdr_len, gso_size, csum_start, csum_off = \
            VNET_HDR.unpack_from(buf)
        if flags or gso_type:
            # Offsets in the vnet header count from the frame start; they
            # move with the bytes after the tag.
            VNET_HDR.pack_into(buf, 0, flags, gso_type,
                               hdr_len + 4 if hdr_len else 0, gso_size,
                               csum_start + 4 if flags else csum_start,
                               csum_off)
        return n + 4
    return n
