"""The exact-match microflow cache (EMC), in front of the megaflow classifier.

As OVS's EMC (lib/dpif-netdev-dfc.h), it maps a packet's full flow key to the
megaflow that last matched it, so that a packet of a known microflow costs one
dict probe instead of a tuple-space search (classifier.py).

What it holds: `table`, a plain dict {flow key bytes: Megaflow}, at most
`size` entries. The datapath probes it inline (`emc.table.get(key)`) on its
hot path, a method call per packet being worth avoiding, and treats a
megaflow whose `alive` is False as a miss.

Invalidation: none is pushed here. When the classifier removes or replaces a
megaflow it sets `alive` False; an entry that still points to it misses, and
is overwritten when the datapath inserts the megaflow the classifier finds
next, or swept by the next clear-all. So removing a megaflow costs nothing
here, and a stale entry can never forward a packet.

Eviction: when an insert of a new key finds the table full, the whole table
is cleared. A dict has no cheap "evict one": popping its first item leaves
dummies at the front that every later pop walks over, and an LRU order costs a
move on every hit. Clear-all is O(1) amortised over the `size` inserts that
refilled the table, and it drops dead entries too. The cost is a burst of
classifier lookups after each clear, while the busy microflows re-enter (each
on its next packet). OVS's emc-insert-inv-prob (insert only one miss in N) is
the other simple policy; it protects the table from one-packet flows at the
price of more classifier lookups for new long flows.

Cost per packet: a hit is one dict probe of the key bytes (its hash is
computed once per bytes object and cached by CPython) and one attribute test.
"""


class MicroflowCache:
    """Flow key bytes -> Megaflow, bounded; dead entries are left to be overwritten.

    Args:
        size: the most entries held (default 8192, OVS's EMC size).
    """

    __slots__ = ('table', 'size')

    def __init__(self, size=8192):
        if size < 1:
            raise ValueError('microflow cache size must be positive, not %r'
                             % (size,))
        self.table = {}
        self.size = size

    def __len__(self):
        return len(self.table)

    def insert(self, key, flow):
        """Cache flow for this exact key; clear the table first if it is full."""
        table = self.table
        if len(table) >= self.size and key not in table:
            table.clear()
        table[key] = flow
