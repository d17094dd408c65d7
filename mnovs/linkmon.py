"""Link state of the switch's interfaces, through rtnetlink (pyroute2).

A port is usable when its interface is administratively up and has carrier
(IFF_UP and IFF_LOWER_UP). Mininet's `link s1 s2 down` takes both ends of a
veth down; the kernel then tells every RTNLGRP_LINK listener. The monitor
turns those messages into (ifname, up) events for the vswitchd, which keeps
the state on its Port objects and lets the slow path revalidate.
"""

import socket
import struct

from pyroute2 import IPRoute
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWLINK, RTMGRP_LINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
NLMSG_HEADER = struct.Struct('=IH')     # length, type (the rest is not needed)


def flags_up(flags):
    return bool(flags & IFF_UP and flags & IFF_LOWER_UP)


class LinkMonitor:
    """Subscribe to link notifications; answer link state queries.

    Notifications are read from our own non-blocking RTNLGRP_LINK socket,
    drained to EAGAIN at every wake-up, and decoded with pyroute2's ifinfmsg.
    (pyroute2's IPRoute buffers messages internally, so a poll loop waiting
    on its fd can sit on a notification until the next one arrives.)
    Requests (bring_up) go through pyroute2's IPRoute.
    """

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.bind((0, RTMGRP_LINK))
        self.sock.setblocking(False)
        self.ipr = IPRoute()

    def fileno(self):
        return self.sock.fileno()

    def events(self):
        """Read every pending notification.

        Returns:
            A list of (ifname, up, deleted) tuples, in arrival order.
        """
        found = []
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return found
            except OSError:         # ENOBUFS: we fell behind; what we have is still news
                return found
            offset = 0
            while offset + NLMSG_HEADER.size <= len(data):
                length, kind = NLMSG_HEADER.unpack_from(data, offset)
                if length < NLMSG_HEADER.size:
                    break
                if kind in (RTM_NEWLINK, RTM_DELLINK):
                    msg = ifinfmsg(data[offset:offset + length])
                    msg.decode()
                    name = msg.get_attr('IFLA_IFNAME')
                    if name:
                        found.append((name, flags_up(msg['flags']), kind == RTM_DELLINK))
                offset += (length + 3) & ~3

    def bring_up(self, ifname):
        """Set `ifname` administratively up (as OVS does for a new port).

        Returns:
            Whether the link has carrier now.
        """
        index = self.ipr.link_lookup(ifname=ifname)
        if not index:
            raise OSError(f'no such interface: {ifname}')
        self.ipr.link('set', index=index[0], state='up')
        msgs = self.ipr.link('get', index=index[0])
        return flags_up(msgs[0]['flags'])

    def set_admin(self, ifname, up):
        """Take an interface administratively up or down (PORT_MOD PORT_DOWN)."""
        index = self.ipr.link_lookup(ifname=ifname)
        if index:
            self.ipr.link('set', index=index[0], state='up' if up else 'down')

    def close(self):
        self.sock.close()
        self.ipr.close()
