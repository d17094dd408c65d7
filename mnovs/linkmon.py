"""Link state of the switch's interfaces, through rtnetlink (pyroute2).

A port is usable when its interface is administratively up and has carrier
(IFF_UP and IFF_LOWER_UP). Mininet's `link s1 s2 down` takes both ends of a
veth down; the kernel then tells every RTNLGRP_LINK listener. The monitor
turns those messages into (ifname, up) events for the vswitchd, which keeps
the state on its Port objects and lets the slow path revalidate.
"""

from pyroute2 import IPRoute

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000


def flags_up(flags):
    return bool(flags & IFF_UP and flags & IFF_LOWER_UP)


class LinkMonitor:
    """Subscribe to link notifications; answer link state queries."""

    def __init__(self):
        self.ipr = IPRoute()
        self.ipr.bind()

    def fileno(self):
        return self.ipr.fileno()

    def events(self):
        """Read pending notifications.

        Returns:
            A list of (ifname, up, deleted) tuples, in arrival order.
        """
        found = []
        for msg in self.ipr.get():
            event = msg.get('event')
            if event not in ('RTM_NEWLINK', 'RTM_DELLINK'):
                continue
            name = msg.get_attr('IFLA_IFNAME')
            if name:
                found.append((name, flags_up(msg['flags']), event == 'RTM_DELLINK'))
        return found

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

    def close(self):
        self.ipr.close()
