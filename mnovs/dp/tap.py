"""Internal ports: a TAP device the switch creates, as OVS's netdev-linux "internal".

An internal port is a network interface of the host that the switch itself
owns. The bridge's LOCAL port (named like the bridge) is one: the host
stack sends through it into the switch, so `ip addr add 10.0.0.1/24 dev br0`
makes the host a station on the bridge. mnovs makes it a TAP device in the
vswitchd's namespace (the root one, as OVS's), opened from /dev/net/tun:

- IFF_TAP | IFF_NO_PI: Ethernet frames, no packet-information prefix.
- IFF_VNET_HDR with TUNSETVNETHDRSZ 10: every frame read or written carries
  the same 10-byte virtio_net_hdr as the AF_PACKET ports (netdev.py), and
  TUNSETOFFLOAD (checksum, TSO4/6, ECN, UFO) lets the host stack hand us
  GSO super-frames with partial checksums. They are forwarded with their
  vnet header unchanged, so nobody in the switch segments or sums them;
  frames written into the TAP may likewise be GSO frames from a veth.
- The file descriptor is non-blocking; the device lives as long as it is
  open (not persistent), so close() removes the interface.

A TapPort offers what the datapath and the vswitchd use of a netdev Port:
port_no, name, up, fd/fileno(), send(packet), clear_error(), kernel_drops(),
close(), the rx_/tx_ counters, and `ring = None`: it has no PACKET_MMAP ring,
so the datapath reads it with recv_batch(max_n), one read() per frame.
"""

import fcntl
import os
import struct

from mnovs.dp.offload import VNET_HDR_LEN

TUN_DEVICE = '/dev/net/tun'
TUNSETIFF = 0x400454ca
TUNSETOFFLOAD = 0x400454d0
TUNSETVNETHDRSZ = 0x400454d8
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
TUN_F_UFO = 0x10
OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_UFO

IFREQ = struct.Struct('16sH22x')        # ifr_name, ifr_flags, rest of the union
assert IFREQ.size == 40
INT = struct.Struct('i')
IFNAMSIZ = 16
READ_SIZE = VNET_HDR_LEN + 65536 + 18   # vnet header + a 64 KB GSO frame + its L2 header


class TapPort:
    """One internal port: a TAP device, its file descriptor and its counters.

    Raises (from the constructor):
        OSError: no /dev/net/tun, a bad name, or the device exists and is not ours.
    """

    __slots__ = ('port_no', 'md', 'name', 'fd', 'up', 'ring',
                 'rx_packets', 'rx_bytes', 'rx_dropped', 'rx_errors',
                 'tx_packets', 'tx_bytes', 'tx_dropped')
    tunnel = None           # not a tunnel port (see netdev.Port.tunnel)

    def __init__(self, port_no, name):
        encoded = name.encode()
        if not encoded or len(encoded) >= IFNAMSIZ or b'/' in encoded:
            raise OSError(22, 'Invalid argument')      # as the kernel says for a bad name
        self.port_no = port_no
        self.name = name
        self.fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
            fcntl.ioctl(self.fd, TUNSETIFF, IFREQ.pack(encoded, flags))
            fcntl.ioctl(self.fd, TUNSETVNETHDRSZ, INT.pack(VNET_HDR_LEN))
            fcntl.ioctl(self.fd, TUNSETOFFLOAD, OFFLOADS)
        except OSError:
            os.close(self.fd)
            raise
        self.ring = None
        self.up = True
        self.rx_packets = self.rx_bytes = self.rx_dropped = self.rx_errors = 0
        self.tx_packets = self.tx_bytes = self.tx_dropped = 0

    def fileno(self):
        return self.fd

    def recv_batch(self, max_n):
        """Read up to max_n frames (vnet header + frame each), until EAGAIN."""
        packets = []
        read = os.read
        fd = self.fd
        try:
            while len(packets) < max_n:
                packets.append(read(fd, READ_SIZE))
        except BlockingIOError:
            pass
        except OSError:             # EIO and the like: the device is going away
            self.rx_errors += 1
        return packets

    def send(self, packet):
        """Write vnet header + frame to the host; count it as sent or dropped."""
        try:
            os.write(self.fd, packet)
        except OSError:             # EAGAIN (host not reading), EIO (device down)
            self.tx_dropped += 1
            return
        self.tx_packets += 1
        self.tx_bytes += len(packet) - VNET_HDR_LEN

    def clear_error(self):
        """A TAP file descriptor keeps no pending socket error."""

    def kernel_drops(self):
        return 0

    def close(self):
        os.close(self.fd)
