"""VXLAN tunnel ports: the host's IP stack is the underlay (OVS's vxlan vport).

A VxlanPort is a datapath port without a network device. Its frames leave
and arrive as VXLAN datagrams (RFC 7348) through ordinary kernel UDP
sockets, as with the kernel datapath's vxlan vport: the kernel does the
routing, ARP and MTU of the underlay, and any address the host owns can be
a tunnel endpoint. Three objects, named after OVS's:

- TunnelReceiver (lib/tnl-ports.c, ofproto/tunnel.c's tunnel port map): one
  UDP socket bound to (local_ip or the wildcard, dst_port), shared by every
  tunnel port of the datapath that listens there, and the map that finds a
  datagram's port as tnl_find() does: by (key, remote_ip, local_ip), most
  specific first, then the ports that take the key and/or the remote address
  from the flow (key=flow, remote_ip=flow), then local_ip unset, then
  local_ip=flow. classify() checks the VXLAN header (flags exactly the I bit,
  reserved bits zero), finds the port and packs the packet's metadata
  (md_of: in_port, tun_id = VNI, tun_src, tun_dst, tun_tos, tun_ttl,
  tun_flags = key). Results are cached per (outer source, outer destination,
  VNI, tos, ttl), so a datagram of a known peer costs one dict lookup. The
  outer tos and ttl come from IP_RECVTOS/IP_RECVTTL, the outer destination
  of a wildcard socket from IP_PKTINFO. DF and the outer UDP checksum are
  invisible through a UDP socket: tun_flags on receive is `key` only.
- SendPool: UDP sockets bound to SEND_SOCKETS ephemeral ports of one source
  address (OVS: a UDP source port hashed from the inner flow, for ECMP; the
  kernel's ephemeral range 32768..60999 is OVS's 32768..61000). A flow's
  hash picks the port, so one flow keeps one source port (no reordering)
  and different flows spread. The sockets set DF (IP_PMTUDISC_DO, unless
  df_default=false) and, unless csum=true, SO_NO_CHECK: UDP checksum 0, as
  OVS sends VXLAN over IPv4. Each port has a second, checksumming socket for
  UDP_SEGMENT batches (below). Outer ttl/tos other than the defaults go as
  IP_TTL/IP_TOS control messages of sendmsg.
- TunnelOutput: an output into a tunnel with one outer header (TunnelSpec),
  prepared once per megaflow: the VXLAN header bytes, the destination
  address, the control messages. Its send(packet) is what the datapath's
  output fast path calls, as it calls Port.send for a plain port.

Sending. The datapath action pair ('set_tunnel', spec), ('output', port)
reaches TunnelOutput.send with the packet (vnet header + frame). A frame
with offload work pending (a GSO super-frame from a veth, a partial
checksum) is finished in software first (offload.segment): a UDP socket
cannot carry a virtio_net_hdr. The equal-size segments of one super-frame
then go out in one sendmsg with UDP_SEGMENT (the kernel cuts them into
datagrams), which is 3x faster than a sendmsg per datagram (measured
below). The kernel refuses UDP_SEGMENT on a socket with SO_NO_CHECK
(EINVAL: it segments only with checksums), so these datagrams carry a UDP
checksum even with csum=false, through the port's checksumming socket; RFC
7348 allows it (a non-zero checksum must be right, and is) and every
receiver accepts it. Single datagrams keep checksum 0, as OVS's. A datagram larger than the path MTU is
refused by the kernel under DF (EMSGSIZE): counted as the drop
`tunnel-mtu` and a tx drop of the port; the underlay needs an MTU of the
inner MTU + 50 bytes (outer IPv4 20, UDP 8, VXLAN 8, inner Ethernet 14), as
for any VXLAN.

Errors an outsider can cause are counted drops (Datapath.count_drop):
`vxlan-truncated` (a datagram shorter than a VXLAN header plus an Ethernet
header), `vxlan-bad-header` (flags other than the I bit, reserved bits
set), `tunnel-no-port` (no tunnel port takes the datagram's key and
addresses; logged once per (key, source, destination), rate-limited).

Offloads on receive: a sender on this host hands over inner frames with
its offload work undone (a partial checksum, a TCP super-frame, over
veths); mark_offloads finds them and says so in the vnet header, so they
leave finished (see there).

Measured (2-core VM, kernel 6.18; iperf3 between a host behind pyovs and
one behind a Linux vxlan device, underlay veth MTU 1600; Linux vxlan +
Linux bridge in the same setup: 14.4 Gbit/s TCP, 135 kpps UDP 64 B):
TCP into pyovs from the tunnel 14.1 Gbit/s (the peer's super-frames pass
whole, see mark_offloads); TCP out of pyovs into the tunnel 0.70 Gbit/s
with one sendmsg per datagram and 2.07 Gbit/s with UDP_SEGMENT (2 sendmsg
per 64 KB); there the Python segmentation of the inner TCP (its
checksums) is half the time. UDP 64 B
out into the tunnel: 66-69 kpps, 65% of it inside sendmsg. Megaflow hit
rate on a steady TCP flow: 99.99%.

Cost: receive is one recvmsg_into per datagram (about 3 us), a header
unpack, a cache lookup and the partial-checksum check; the inner frame is
handed to the datapath in place (the buffer keeps 2 spare bytes in front, so a zero vnet header fits
before the inner frame). Send is one sendmsg per datagram (about 5 us), or
per up to 43 segments with UDP_SEGMENT.
"""

import errno
import logging
import socket
import struct

from mnovs.dp.flow import FLOW_TNL_F_CSUM, FLOW_TNL_F_DONT_FRAGMENT, FLOW_TNL_F_KEY, md_of
from mnovs.dp.offload import (ETH_TYPE_IP, F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, IPPROTO_TCP,
                              IPPROTO_UDP, VNET_HDR, VNET_HDR_LEN, frame_layout, ones_sum,
                              segment)
from mnovs.dp.tunnel import DEFAULT_TTL, FLOW, TunnelConfigError
from mnovs.vlog import RateLimitedLog

log = logging.getLogger(__name__)

# Socket options the socket module does not name (Linux values).
IP_TOS = 1
IP_TTL = 2
IP_PKTINFO = 8
IP_MTU_DISCOVER = 10
IP_RECVTTL = 12
IP_RECVTOS = 13
IP_PMTUDISC_DONT = 0
IP_PMTUDISC_DO = 2
SO_NO_CHECK = 11
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
SOL_UDP = 17
UDP_SEGMENT = 103

VXLAN_HDR = struct.Struct('!II')        # flags word, VNI << 8
VXLAN_HDR_LEN = 8
VXLAN_FLAGS = 0x08000000                # the I bit: the VNI is valid; all else reserved, zero
INNER_MIN = 14                          # an Ethernet header
MAX_DATAGRAM = 65535
OUTER_OVERHEAD = 28                     # IPv4 + UDP headers, for the 64 KB limit of one send
UDP_MAX_SEGMENTS = 64                   # the kernel's limit per UDP_SEGMENT send
SEND_SOCKETS = 8                        # UDP source ports per source address
SOCK_BUF = 4 << 20
RX_BUF_HEADROOM = VNET_HDR_LEN - VXLAN_HDR_LEN  # room for the zero vnet header
ZERO_VNET = bytes(VNET_HDR_LEN)
ANC_SIZE = socket.CMSG_SPACE(12) + socket.CMSG_SPACE(4) + socket.CMSG_SPACE(4)
MD_CACHE_SIZE = 4096                    # receive classification results kept
NO_PORT_LOGGED = 1024                   # (key, src, dst) remembered as already logged

# Drop reasons (Datapath.count_drop).
DROP_TRUNCATED = 'vxlan-truncated'
DROP_BAD_HEADER = 'vxlan-bad-header'
DROP_NO_PORT = 'tunnel-no-port'
DROP_MTU = 'tunnel-mtu'
DROP_TX_ERROR = 'tunnel-tx-error'
DROP_NO_SPEC = 'tunnel-no-spec'         # an output to a tunnel without set_tunnel before it
DROP_NO_SOURCE = 'tunnel-no-source'     # the spec's source address is not this host's
DROP_OFFLOAD = 'tunnel-offload'

ETH_DATA_LEN = 1500                     # the standard MTU: TCP super-frames are cut to it
_ANY = bytes(4)
_U16 = struct.Struct('=H')
_U16_BE = struct.Struct('!H')


def _ip_text(addr):
    return socket.inet_ntop(socket.AF_INET, addr)


# --- receive -----------------------------------------------------------------

class TunnelReceiver:
    """One UDP socket of the underlay and the tunnel ports that listen on it.

    Args:
        local_ip: 4 bytes, or None for the wildcard address.
        dst_port: the UDP port.
    Raises:
        OSError: the socket cannot be bound; strerror says which address
            and why (EADDRINUSE: another switch or program has it).
    """

    def __init__(self, local_ip, dst_port):
        self.local_ip = local_ip
        self.dst_port = dst_port
        self.ports = {}             # (in_key or FLOW, remote_ip or FLOW, local_ip/None/FLOW) -> port
        self.cache = {}             # (src text, dst, vni word, tos, ttl) -> (port, md) or (None, reason)
        self.logged = set()         # (vni, src, dst) already logged as without port
        self.no_port_log = RateLimitedLog(log)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            _force_buf(self.sock, SO_RCVBUFFORCE, socket.SO_RCVBUF)
            self.sock.setsockopt(socket.IPPROTO_IP, IP_RECVTOS, 1)
            self.sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
            if local_ip is None:
                self.sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            address = _ip_text(local_ip) if local_ip is not None else '0.0.0.0'
            self.sock.bind((address, dst_port))
        except OSError as err:
            self.sock.close()
            raise OSError(err.errno, f'could not bind the VXLAN socket to {address}:{dst_port} '
                                     f'({err.strerror})') from None
        self.fd = self.sock.fileno()
        self.buf = bytearray(RX_BUF_HEADROOM + MAX_DATAGRAM)
        self.view = memoryview(self.buf)
        self.into = [self.view[RX_BUF_HEADROOM:]]
        self.rx_errors = 0

    def fileno(self):
        return self.fd

    def add(self, port):
        """Put a tunnel port in the map.

        Raises:
            TunnelConfigError: another port already takes the same datagrams
                (OVS: "attempting to add tunnel port with same config").
        """
        config = port.tunnel
        match = (config.in_key, config.remote_ip, config.local_ip)
        other = self.ports.get(match)
        if other is not None:
            raise TunnelConfigError(
                f"{port.name}: attempting to add tunnel port with same config as port "
                f"'{other.name}' ({_match_text(match)}, dst_port={self.dst_port})")
        self.ports[match] = port
        self.cache.clear()

    def remove(self, port):
        config = port.tunnel
        match = (config.in_key, config.remote_ip, config.local_ip)
        if self.ports.get(match) is port:
            del self.ports[match]
        self.cache.clear()

    def find(self, vni, src, dst):
        """The tunnel port for a datagram with key vni from src to dst (tnl_find)."""
        get = self.ports.get
        for key in (vni, FLOW):
            for remote in (src, FLOW):
                for local in (dst, None, FLOW):
                    port = get((key, remote, local))
                    if port is not None:
                        return port
        return None

    def classify(self, n, anc, addr):
        """Check the datagram of n bytes now in the buffer; find its port.

        Returns:
            (port, md) for a datagram to deliver, its inner frame now
            behind a zero vnet header at buf[0:10]; or (None, drop reason).
        """
        if n < VXLAN_HDR_LEN + INNER_MIN:
            return None, DROP_TRUNCATED
        buf = self.buf
        flags, vni = VXLAN_HDR.unpack_from(buf, RX_BUF_HEADROOM)
        if flags != VXLAN_FLAGS or vni & 0xff:
            return None, DROP_BAD_HEADER
        tos = ttl = 0
        dst = self.local_ip
        for _, kind, data in anc:
            if kind == IP_TOS:
                tos = data[0]
            elif kind == IP_TTL:
                ttl = data[0]           # an int in host order; a TTL fits its first byte
            elif kind == IP_PKTINFO:
                dst = bytes(data[8:12])     # ipi_addr: the header's destination
        cache_key = (addr[0], dst, vni, tos, ttl)
        found = self.cache.get(cache_key)
        if found is None:
            found = self._classify_new(addr[0], dst, vni >> 8, tos, ttl)
            if len(self.cache) >= MD_CACHE_SIZE:
                self.cache.clear()
            self.cache[cache_key] = found
        if found[0] is not None:
            # The VXLAN header's bytes, and the 2 in front that a previous
            # frame's mark_offloads may have written, become a zero vnet header.
            buf[:VNET_HDR_LEN] = ZERO_VNET
        return found

    def _classify_new(self, src_text, dst, vni, tos, ttl):
        src = socket.inet_aton(src_text)
        dst = dst or _ANY
        port = self.find(vni, src, dst)
        if port is None:
            seen = (vni, src, dst)
            if seen not in self.logged:
                if len(self.logged) >= NO_PORT_LOGGED:
                    self.logged.clear()
                self.logged.add(seen)
                self.no_port_log.warning('VXLAN datagram with key %d from %s to %s:%d: no tunnel '
                                         'port takes it, dropped', vni, src_text,
                                         _ip_text(dst), self.dst_port)
            return None, DROP_NO_PORT
        return port, md_of(port.port_no, tun_id=vni, tun_src=src, tun_dst=dst, tun_tos=tos,
                           tun_ttl=ttl, tun_flags=FLOW_TNL_F_KEY)

    def close(self):
        self.sock.close()


def _match_text(match):
    key, remote, local = match
    def ip(value):
        return value if value == FLOW else _ip_text(value)
    return (f'{"::" if local is None else ip(local)}->{ip(remote)}, key={key}')


def mark_offloads(packet):
    """Say in a received inner frame's vnet header what work its sender left undone.

    A datagram from a sender on this host (a Linux vxlan device, a kernel
    tunnel) that crossed veths carries the inner frame as the sender's stack
    left it, which no wire would ever carry, and the UDP socket cannot tell:

    - a partial TCP/UDP checksum (checksum offload): the field holds only
      the pseudo-header sum. Forwarded as it is, the segment is dropped by
      its receiver (ping works, TCP does not). Found by comparing the field
      with the pseudo-header sum, then checking that the full checksum does
      not verify; the vnet header gets F_NEEDS_CSUM with its offsets.
    - a TCP super-frame (TSO): a vxlan device's GSO packet reaches a plain
      UDP socket unsegmented (the kernel segments UDP tunnel GSO only for
      tunnel sockets), so one datagram holds up to 64 KB of TCP. An inner
      TCP frame whose IP packet exceeds ETH_DATA_LEN gets GSO_TCPV4/6 with
      segments of a standard MTU, as a TSO frame from a veth would.

    The kernel then finishes the frame on a port's transmit, or
    offload.segment() does toward another tunnel, as for a frame from a veth.

    Cost: a header walk and a pseudo-header sum per TCP/UDP frame; a sum
    over the segment only for frames that look partial.
    """
    layout = frame_layout(packet)
    if layout is None:
        return
    eth_type, l3, proto, l4 = layout
    if proto == IPPROTO_TCP:
        at = l4 + 16
    elif proto == IPPROTO_UDP:
        at = l4 + 6
    else:
        return
    if eth_type == ETH_TYPE_IP:
        end = l3 + (packet[l3 + 2] << 8 | packet[l3 + 3])
        pseudo = ones_sum(packet[l3 + 12:l3 + 20])
        gso_type = GSO_TCPV4
    else:
        end = l3 + 40 + (packet[l3 + 4] << 8 | packet[l3 + 5])
        pseudo = ones_sum(packet[l3 + 8:l3 + 40])
        gso_type = GSO_TCPV6
    if end > len(packet) or at + 2 > end:
        return
    pseudo = (pseudo + proto + end - l4) % 0xFFFF
    if proto == IPPROTO_TCP and end - l3 > ETH_DATA_LEN:
        tcp_len = (packet[l4 + 12] >> 4) * 4
        _U16_BE.pack_into(packet, at, pseudo)
        VNET_HDR.pack_into(packet, 0, F_NEEDS_CSUM, gso_type, l4 + tcp_len - VNET_HDR_LEN,
                           ETH_DATA_LEN - (l4 - l3) - tcp_len, l4 - VNET_HDR_LEN, 16)
        return
    field = packet[at] << 8 | packet[at + 1]
    if field % 0xFFFF != pseudo or not field and proto == IPPROTO_UDP:
        return
    if (pseudo + ones_sum(packet[l4:end])) % 0xFFFF == 0:
        return                      # a full checksum that happens to equal the pseudo sum
    VNET_HDR.pack_into(packet, 0, F_NEEDS_CSUM, 0, 0, 0, l4 - VNET_HDR_LEN, at - l4)


# --- send --------------------------------------------------------------------

class SendPool:
    """UDP sockets of one outer source address, one per UDP source port.

    Each source port has a socket for single datagrams (checksum 0 unless
    csum) and one for UDP_SEGMENT batches (always checksummed: the kernel
    will not segment with SO_NO_CHECK), bound to the same port with
    SO_REUSEPORT, so that a flow keeps its source port whichever it uses.

    Args:
        ip_src: 4 bytes; all zero lets the kernel pick by route.
        csum: compute outer UDP checksums of single datagrams too.
        df: set DF on the outer IPv4 header.
    Raises:
        OSError: the address cannot be bound (not one of this host's).
    """

    def __init__(self, ip_src, csum, df):
        self.socks = []
        self.batch_socks = []
        try:
            for _ in range(SEND_SOCKETS):
                sock = self._socket(df, no_check=not csum)
                self.socks.append(sock)
                sock.bind((_ip_text(ip_src), 0))
                if csum:
                    self.batch_socks.append(sock)
                    continue
                batch = self._socket(df, no_check=False)
                self.batch_socks.append(batch)
                batch.bind(sock.getsockname())
        except OSError:
            self.close()
            raise
        self.ports = tuple(sock.getsockname()[1] for sock in self.socks)

    @staticmethod
    def _socket(df, no_check):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            _force_buf(sock, SO_SNDBUFFORCE, socket.SO_SNDBUF)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)    # never read
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER,
                            IP_PMTUDISC_DO if df else IP_PMTUDISC_DONT)
            sock.setsockopt(socket.IPPROTO_IP, IP_TTL, DEFAULT_TTL)
            if no_check:
                sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
        except OSError:
            sock.close()
            raise
        return sock

    def close(self):
        for sock in {*self.socks, *self.batch_socks}:
            sock.close()
        self.socks = []
        self.batch_socks = []


class TunnelOutput:
    """Output into one tunnel with one outer header: what a megaflow keeps.

    Args:
        dp: the datapath (count_drop, exec_key: the key of the packet whose
            actions run, hashed to pick the UDP source port).
        port: the VxlanPort (its tx counters).
        spec: the TunnelSpec.
        pool: the SendPool of spec's source address, csum and df.
    """

    __slots__ = ('dp', 'port', 'spec', 'socks', 'batch_socks', 'n_socks', 'header', 'dst',
                 'anc')

    def __init__(self, dp, port, spec, pool):
        self.dp = dp
        self.port = port
        self.spec = spec
        self.socks = tuple(pool.socks)
        self.batch_socks = tuple(pool.batch_socks)
        self.n_socks = len(self.socks)
        self.header = VXLAN_HDR.pack(VXLAN_FLAGS, (spec.tun_id & 0xffffff) << 8)
        self.dst = (_ip_text(spec.ip_dst), spec.tp_dst)
        anc = []
        if spec.ttl != DEFAULT_TTL:
            anc.append((socket.IPPROTO_IP, IP_TTL, struct.pack('=i', spec.ttl)))
        if spec.tos:
            anc.append((socket.IPPROTO_IP, IP_TOS, struct.pack('=i', spec.tos)))
        self.anc = anc

    def send(self, packet):
        """Encapsulate one packet (vnet header + frame) and send it."""
        at = hash(self.dp.exec_key) % self.n_socks
        sock = self.socks[at]
        if packet[0] & F_NEEDS_CSUM or packet[1]:
            frames = segment(packet)
            if not frames:
                self.port.tx_dropped += 1
                self.dp.count_drop(DROP_OFFLOAD)
                return
            if len(frames) > 1:
                self._send_segments(self.batch_socks[at], frames)
                return
        else:
            frames = (memoryview(packet)[VNET_HDR_LEN:],)
        header, anc, dst = self.header, self.anc, self.dst
        port = self.port
        for frame in frames:
            try:
                sock.sendmsg((header, frame), anc, 0, dst)
            except OSError as err:
                self._failed(err, 1)
                continue
            port.tx_packets += 1
            port.tx_bytes += len(frame)

    def _send_segments(self, sock, frames):
        """Equal-size datagrams in as few sendmsg calls as UDP_SEGMENT allows."""
        size = VXLAN_HDR_LEN + len(frames[0])
        per_send = min(UDP_MAX_SEGMENTS, (MAX_DATAGRAM - OUTER_OVERHEAD) // size)
        anc = self.anc + [(SOL_UDP, UDP_SEGMENT, _U16.pack(size))]
        header = self.header
        port = self.port
        for start in range(0, len(frames), per_send):
            chunk = frames[start:start + per_send]
            parts = []
            for frame in chunk:
                parts.append(header)
                parts.append(frame)
            try:
                sock.sendmsg((b''.join(parts),), anc, 0, self.dst)
            except OSError as err:
                self._failed(err, len(chunk))
                continue
            port.tx_packets += len(chunk)
            port.tx_bytes += sum(map(len, chunk))

    def _failed(self, err, n):
        # EMSGSIZE: a datagram above the path MTU under DF; EINVAL: a
        # UDP_SEGMENT size above it. EAGAIN: the socket buffer is full.
        self.port.tx_dropped += n
        too_big = err.errno in (errno.EMSGSIZE, errno.EINVAL)
        self.dp.count_drop(DROP_MTU if too_big else DROP_TX_ERROR, n)


# --- the port ------------------------------------------------------------------

class VxlanPort:
    """One VXLAN tunnel port: its configuration, its receiver, its outputs.

    Args:
        port_no, name: as any port.
        tunnel: its TunnelConfig (dp/tunnel.py).
        sockets: the datapath's TunnelSockets.
    Raises:
        OSError: the receive socket cannot be bound (strerror says why).
        TunnelConfigError: another port of the datapath takes the same
            datagrams.
    """

    __slots__ = ('port_no', 'md', 'name', 'tunnel', 'sockets', 'receiver', 'outputs', 'up',
                 'ring', 'rx_packets', 'rx_bytes', 'rx_dropped', 'rx_errors',
                 'tx_packets', 'tx_bytes', 'tx_dropped')
    kind = 'vxlan'
    OUTPUTS_KEPT = 256              # TunnelOutputs of the generic output path kept per port

    def __init__(self, port_no, name, tunnel, sockets):
        self.port_no = port_no
        self.name = name
        self.tunnel = tunnel
        self.sockets = sockets
        self.receiver = sockets.attach(self)
        self.outputs = {}           # TunnelSpec -> TunnelOutput, for dp.output
        self.up = True
        self.ring = None
        self.rx_packets = self.rx_bytes = self.rx_dropped = self.rx_errors = 0
        self.tx_packets = self.tx_bytes = self.tx_dropped = 0

    def fileno(self):
        return self.receiver.fd

    def output_for(self, dp, spec):
        """The TunnelOutput of `spec` through this port (made on first use).

        Raises:
            OSError: spec's source address cannot be bound.
        """
        out = self.outputs.get(spec)
        if out is None:
            if len(self.outputs) >= self.OUTPUTS_KEPT:
                self.outputs.clear()
            out = self.outputs[spec] = TunnelOutput(dp, self, spec, self.sockets.pool(spec))
        return out

    def send(self, packet):
        """An output without a tunnel header (no set_tunnel before it): a drop."""
        self.tx_dropped += 1

    def clear_error(self):
        """The shared socket keeps no error that concerns this port."""

    def kernel_drops(self):
        return 0

    def close(self):
        self.sockets.detach(self)


# --- the datapath's sockets -------------------------------------------------------

class TunnelSockets:
    """The receivers and send pools of one datapath, shared by its tunnel ports."""

    def __init__(self):
        self.receivers = {}         # (local_ip or None, dst_port) -> TunnelReceiver
        self.users = {}             # the same key -> number of ports on it
        self.pools = {}             # (ip_src, csum, df) -> SendPool

    def attach(self, port):
        """Join (or open) the receiver port listens on; return it."""
        config = port.tunnel
        where = (config.local_ip if isinstance(config.local_ip, bytes) else None,
                 config.dst_port)
        receiver = self.receivers.get(where)
        new = receiver is None
        if new:
            receiver = TunnelReceiver(*where)
        try:
            receiver.add(port)
        except TunnelConfigError:
            if new:
                receiver.close()
            raise
        self.receivers[where] = receiver
        self.users[where] = self.users.get(where, 0) + 1
        return receiver

    def detach(self, port):
        receiver = port.receiver
        where = (receiver.local_ip, receiver.dst_port)
        receiver.remove(port)
        self.users[where] -= 1
        if not self.users[where]:
            del self.users[where]
            del self.receivers[where]
            receiver.close()

    def last_user(self, port):
        """True if port is the only one on its receiver (it closes with it)."""
        receiver = port.receiver
        return self.users.get((receiver.local_ip, receiver.dst_port)) == 1

    def pool(self, spec):
        where = (spec.ip_src, bool(spec.flags & FLOW_TNL_F_CSUM),
                 bool(spec.flags & FLOW_TNL_F_DONT_FRAGMENT))
        pool = self.pools.get(where)
        if pool is None:
            pool = self.pools[where] = SendPool(*where)
        return pool

    def close(self):
        for receiver in self.receivers.values():
            receiver.close()
        for pool in self.pools.values():
            pool.close()
        self.receivers.clear()
        self.users.clear()
        self.pools.clear()


def _force_buf(sock, force, plain):
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, SOCK_BUF)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, plain, SOCK_BUF)
