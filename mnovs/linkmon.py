"""Link state of the switch's interfaces, through rtnetlink (pyroute2's messages).

A port is usable when its interface is administratively up and has carrier
(IFF_UP and IFF_LOWER_UP). Mininet's `link s1 s2 down` takes both ends of a
veth down; the kernel then tells every RTNLGRP_LINK listener. The monitor
turns those messages into (ifname, up, deleted) events for the vswitchd,
which keeps the state on its Port objects and lets the slow path revalidate.
It also sets links up or down (a new port; PORT_MOD's OFPPC_PORT_DOWN).

pyroute2 encodes and decodes the rtnetlink requests and replies (ifinfmsg,
nlmsgerr); the two netlink sockets are our own, non-blocking and drained at
every wake-up. Notifications are read without pyroute2: every vswitchd hears
every link event of the namespace, so when Mininet starts 200 switches each
one hears thousands, and a full decode (every nested attribute, ~0.3 ms)
made starting N switches cost O(N^2) decodes. `link_event` reads just the
flags and the name.
pyroute2's package __init__ imports its whole API (IPRoute, NDB, asyncio,
multiprocessing): some 20 MB in every switch process, for two message
classes. `_rtnl_messages` loads its netlink subpackage without running that
__init__; the message classes have been stable across pyroute2 releases.
"""

import importlib
import importlib.util
import itertools
import socket
import struct
import sys
import types

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
NLMSG_HEADER = struct.Struct('=IH')     # length, type (the rest is not needed)
NLMSG_HDR_LEN = 16
IFINFOMSG = struct.Struct('=BxHiII')    # family, type, index, flags, change
RTATTR = struct.Struct('=HH')           # length, type
IFLA_IFNAME = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 0x2
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTMGRP_LINK = 0x1
SO_RCVBUFFORCE = 33


def _rtnl_messages():
    """Import pyroute2's ifinfmsg and nlmsgerr without pyroute2/__init__.py."""
    if 'pyroute2' not in sys.modules:
        spec = importlib.util.find_spec('pyroute2')
        if spec is None:
            raise ImportError('pyroute2 is not installed: run "make install"')
        package = types.ModuleType('pyroute2')
        package.__path__ = spec.submodule_search_locations
        sys.modules['pyroute2'] = package
    ifinfmsg = importlib.import_module('pyroute2.netlink.rtnl.ifinfmsg').ifinfmsg
    nlmsgerr = importlib.import_module('pyroute2.netlink').nlmsgerr
    return ifinfmsg, nlmsgerr


ifinfmsg, nlmsgerr = _rtnl_messages()


def flags_up(flags):
    return bool(flags & IFF_UP and flags & IFF_LOWER_UP)


def _messages(data):
    """Split a netlink datagram into (type, bytes) messages."""
    offset = 0
    while offset + NLMSG_HEADER.size <= len(data):
        length, kind = NLMSG_HEADER.unpack_from(data, offset)
        if length < NLMSG_HEADER.size:
            return
        yield kind, data[offset:offset + length]
        offset += (length + 3) & ~3


def link_event(raw):
    """(ifname or None, flags) of a RTM_NEWLINK/RTM_DELLINK message.

    Layout: nlmsghdr (16 bytes), ifinfomsg (16: family, type, index, flags,
    change), then rtattrs (length, type, value padded to 4) among which
    IFLA_IFNAME holds the NUL-terminated name.
    """
    if len(raw) < NLMSG_HDR_LEN + IFINFOMSG.size:
        return None, 0
    flags = IFINFOMSG.unpack_from(raw, NLMSG_HDR_LEN)[3]
    offset = NLMSG_HDR_LEN + IFINFOMSG.size
    while offset + RTATTR.size <= len(raw):
        length, kind = RTATTR.unpack_from(raw, offset)
        if length < RTATTR.size:
            break
        if kind == IFLA_IFNAME:
            name = bytes(raw[offset + RTATTR.size:offset + length]).split(b'\0', 1)[0]
            return name.decode(errors='replace') or None, flags
        offset += (length + 3) & ~3
    return None, flags


class LinkMonitor:
    """Link notifications (a RTNLGRP_LINK socket) and link requests (another)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        # Every vswitchd hears every link event of the namespace: a large
        # topology starting or stopping is a burst.
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)
        self.sock.bind((0, RTMGRP_LINK))
        self.sock.setblocking(False)
        self.overflowed = False          # notifications were lost (ENOBUFS)
        self.requests = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.requests.bind((0, 0))
        self.requests.settimeout(2.0)
        self.seq = itertools.count(1)

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
            except OSError:         # ENOBUFS: we fell behind; the caller resyncs
                self.overflowed = True
                return found
            for kind, raw in _messages(data):
                if kind in (RTM_NEWLINK, RTM_DELLINK):
                    name, flags = link_event(raw)
                    if name:
                        found.append((name, flags_up(flags), kind == RTM_DELLINK))

    def _request(self, ifname, kind, flags=0, change=0):
        """Send one rtnetlink link request; return the reply's messages."""
        try:
            index = socket.if_nametoindex(ifname)
        except OSError:
            raise OSError(f'no such interface: {ifname}') from None
        msg = ifinfmsg()
        msg['index'] = index
        msg['flags'] = flags
        msg['change'] = change
        msg['header']['type'] = kind
        msg['header']['flags'] = NLM_F_REQUEST | (NLM_F_ACK if kind == RTM_NEWLINK else 0)
        msg['header']['sequence_number'] = next(self.seq)
        msg.encode()
        self.requests.send(msg.data)
        return list(_messages(self.requests.recv(1 << 16)))

    def set_admin(self, ifname, up):
        """Take an interface administratively up or down.

        Raises:
            OSError: no such interface, or the kernel refused.
        """
        for kind, raw in self._request(ifname, RTM_NEWLINK, IFF_UP if up else 0, IFF_UP):
            if kind == NLMSG_ERROR:
                err = nlmsgerr(raw)
                err.decode()
                if err['error']:
                    raise OSError(-err['error'], f'cannot set {ifname} {"up" if up else "down"}')

    def is_up(self, ifname):
        """Is the link administratively up with carrier now?"""
        for kind, raw in self._request(ifname, RTM_GETLINK):
            if kind == RTM_NEWLINK:
                msg = ifinfmsg(raw)
                msg.decode()
                return flags_up(msg['flags'])
        return False

    def bring_up(self, ifname):
        """Set `ifname` administratively up (as OVS does for a new port).

        Returns:
            Whether the link has carrier now.
        """
        self.set_admin(ifname, True)
        return self.is_up(ifname)

    def close(self):
        self.sock.close()
        self.requests.close()
