"""The MAC learning table behind the NORMAL action (OVS lib/mac-learning.c).

An entry says "MAC m on VLAN v was last seen on port p". Entries are keyed
per VLAN, as a port may see the same MAC on two VLANs, and each ages on its
own: an entry not refreshed for `idle_time` seconds is forgotten. The table is
bounded; when full, the least recently refreshed entry makes room (dicts keep
insertion order and a refresh re-inserts, so the first entry is the oldest).

Every change that can alter a translation is reported to the caller, which
must revalidate the datapath flows that depend on it: `learn` returns whether
the port of a MAC changed and which entry a full table evicted, and
`expire`/`flush_port` return the keys they dropped.
"""


class MacTable:
    """MAC address → port, per VLAN, with aging and a size bound."""

    def __init__(self, idle_time=300.0, max_entries=8192):
        self.idle_time = idle_time
        self.max_entries = max_entries
        self.entries = {}           # (vlan, mac bytes) -> [port_no, last_seen]

    def __len__(self):
        return len(self.entries)

    def lookup(self, vlan, mac):
        """Return the port `mac` was learned on in `vlan`, or None."""
        entry = self.entries.get((vlan, mac))
        return entry[0] if entry is not None else None

    def learn(self, vlan, mac, port_no, now):
        """Record that `mac` was seen on `port_no`.

        Returns:
            (news, evicted): news is True for a new MAC or a MAC move, which
            invalidates translations of packets sent to or from `mac`;
            evicted is the (vlan, mac) pushed out of a full table, or None
            (translations towards it change too).
        """
        key = (vlan, mac)
        entry = self.entries.pop(key, None)
        evicted = None
        if entry is None and len(self.entries) >= self.max_entries:
            evicted = next(iter(self.entries))
            del self.entries[evicted]
        self.entries[key] = [port_no, now]
        return entry is None or entry[0] != port_no, evicted

    def expire(self, now):
        """Forget entries idle for longer than the aging time.

        Returns:
            The (vlan, mac) keys removed.
        """
        limit = now - self.idle_time
        stale = [key for key, (_, seen) in self.entries.items() if seen < limit]
        for key in stale:
            del self.entries[key]
        return stale

    def flush_port(self, port_no):
        """Forget every MAC learned on `port_no` (port down or removed)."""
        gone = [key for key, (port, _) in self.entries.items() if port == port_no]
        for key in gone:
            del self.entries[key]
        return gone

    def flush(self):
        self.entries.clear()

    def dump(self, now):
        """Yield (port_no, vlan, mac, age seconds) as `fdb/show` prints them."""
        for (vlan, mac), (port, seen) in self.entries.items():
            yield port, vlan, mac, int(now - seen)
