"""The exact-match microflow cache (EMC), in front of the megaflow classifier.

As OVS's EMC (lib/dpif-netdev-dfc.h), it maps a packet's full flow key to the
megaflow that last matched it, so that a packet of a known microflow costs one
dict probe instead of a tuple-space search (classifier.py).

What it holds: `table`, a plain dict {flow key bytes: Megaflow}, at most
`size` entries. The datapath may probe it inline (`emc.table.get(key)`) on its
hot path, provided it then treats a megaflow whose `alive` is False as a miss,
as lookup() does.

Invalidation: none is pushed here. When the classifier removes or replaces a
megaflow it sets `alive` False; the entries that still point to it are found
dead on their next lookup and deleted then, or are swept by the next
clear-all. So removing a megaflow costs nothing here, and a stale entry can
never forward a packet.

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
    """Flow key bytes -> Megaflow, bounded, with lazy removal of dead entries.

    Args:
        size: the most entries held (default 8192, OVS's EMC size).

    Counters: n_hits (lookups that returned a live megaflow).
    """

    __slots__ = ('table', 'size', 'n_hits')

    def __init__(self, size=8192):
        if size < 1:
            raise ValueError('microflow cache size must be positive, not %r'
                             % (size,))
        self.table = {}
        self.size = size
        self.n_hits = 0

    def __len__(self):
        return len(self.table)

    def lookup(self, key):
        """Return the live megaflow cached for this exact key, or None.

        A dead megaflow's entry is deleted and counts as a miss.
        """
        flow = self.table.get(key)
        if flow is None:
            return None
        if flow.alive:
            self.n_hits += 1
            return flow
        del self.table[key]
        return None

    def insert(self, key, flow):
        """Cache flow for this exact key; clear the table first if it is full."""
        table = self.table
        if len(table) >= self.size and key not in table:
            table.clear()
        table[key] = flow
