"""The megaflow classifier: tuple-space search over subtables, with a mask cache.

This is the datapath's second-level cache, between the exact-match microflow
cache (emc.py) and an upcall to the slow path. It plays the part of the kernel
datapath's flow table (datapath/flow_table.c) and of dpcls in dpif-netdev.

What it holds
-------------
Megaflows. A megaflow is a flow key, a mask of the same length and a list of
odp actions. It matches a packet's key K when

    K & mask == megaflow.key & mask          (bitwise, over the whole key)

Keys and masks are fixed-length bytes strings (flow.py defines the layout;
this module only needs the length). A 1-bit in the mask means "the slow path
looked at this bit when it translated the packet"; a 0-bit is wildcarded.

Invariants
----------
- A megaflow's key is stored already masked: key == key & mask.
- At most one megaflow per (mask, masked key). Inserting a second one
  replaces the first, which is returned and marked dead.
- One subtable per distinct mask, and no empty subtable: the last remove
  from a subtable drops it.
- Megaflows do not overlap: no packet key matches two megaflows with
  different masks. The slow path guarantees this, as it does in OVS (a
  translation un-wildcards every bit it consulted, so two translations that
  could see the same packet agree on it). The classifier does not check it.
  If the slow path breaks it, lookup returns the first megaflow found, and
  which one that is depends on the mask cache and on the subtable order
  (which rebalance() changes): the result is then unspecified.
- A megaflow's `alive` is True while it is in the classifier and False once
  it has been removed or replaced. The microflow cache holds direct
  references to megaflows and relies on this flag to drop stale entries.

Data layout
-----------
    Classifier
      _subtables: [Subtable, ...]        probe order (most used first after
                                          rebalance())
      _by_mask:   {mask bytes: Subtable} for insert/find/remove
      _cache:     [Subtable|None] * mask_cache_size   the mask cache
    Subtable
      mask_int:   the mask as one big int (int.from_bytes(mask, 'big'))
      flows:      {masked key as int: Megaflow}
      hits:       lookups it answered since the last rebalance()

Python ints stand in for OVS's miniflow and its hash: one
int.from_bytes(key, 'big') per lookup, then one `&` and one dict probe per
subtable. CPython hashes an int of ~110 bytes quickly, and equal ints mean
equal masked keys, so a dict keyed by the masked int is a hash table of
masked keys with no further comparison.

What is cached, and what invalidates it
---------------------------------------
The mask cache is the kernel datapath's skb-hash -> mask-index cache. Slot
hash(key) & (mask_cache_size - 1) remembers the subtable that answered the
last lookup of a key landing in that slot; lookup probes it first. hash(key)
costs nothing extra: CPython caches a bytes object's hash, and the microflow
cache has already hashed the key.

Nothing invalidates the mask cache, because a wrong guess is harmless: the
guessed subtable is probed like any other, and if it does not match, the full
search runs (skipping it). A subtable dropped from the classifier is empty
for ever after (it is unlinked only when its last megaflow is removed, and
insert never reaches it again), so a stale slot pointing to it finds nothing
and can never yield a dead megaflow. Rebalancing reorders the subtables but
not the cached references, so it needs no invalidation either.

Cost per packet
---------------
Python 3.11 on the project VM (2 cores), 110-byte keys, one lookup() call,
measured with timeit over 1, 2, 4 and 8 subtables of 50 megaflows each:
    mask cache hit, any number of subtables          ~0.28 us
    cache cold or wrong, hit at the i-th probe       ~0.23 us + 0.075 us * i
    miss in all n subtables                          ~0.19 us + 0.075 us * n
Parts: int.from_bytes ~75 ns, cache slot ~35 ns, one `&` and dict probe
~75 ns per subtable, ~15 ns per counter. So with 1-4 masks a lookup costs
0.25-0.5 us. Every distinct mask the slow path produces adds a probe to every
miss and every cache miss, which is why xlate must not un-wildcard more bits
than it consulted: more bits mean more masks as well as more megaflows.
"""


class Megaflow:
    """One datapath flow: a masked key, its mask, odp actions and stats.

    Args:
        key: flow key bytes; stored masked (key & mask).
        mask: bytes of the same length; 1-bits are matched.
        actions: odp actions, a tuple of tuples (empty: drop).
        now: monotonic time in seconds, for `created` and `used`.

    The datapath updates packets, bytes, used and tcp_flags; the classifier
    sets alive. key_int is the masked key as an int (the subtable's dict key).
    """

    __slots__ = ('key', 'mask', 'actions', 'packets', 'bytes', 'used',
                 'created', 'tcp_flags', 'alive', 'key_int', 'fast_outs', 'ukey')

    def __init__(self, key, mask, actions, now):
        if len(key) != len(mask):
            raise ValueError('megaflow key and mask differ in length (%d, %d)'
                             % (len(key), len(mask)))
        self.mask = bytes(mask)
        self.key_int = int.from_bytes(key, 'big') & int.from_bytes(mask, 'big')
        self.key = self.key_int.to_bytes(len(key), 'big')
        self.actions = actions
        self.packets = 0
        self.bytes = 0
        self.used = now
        self.created = now
        self.tcp_flags = 0
        self.alive = True
        self.fast_outs = None       # the datapath's ready-made output ports
        self.ukey = None            # the slow path's record of it (OVS udpif_key); opaque here

    def __repr__(self):
        return 'Megaflow(key=%s, mask=%s, actions=%r, packets=%d)' % (
            self.key.hex(), self.mask.hex(), self.actions, self.packets)


class Subtable:
    """All megaflows that share one mask."""

    __slots__ = ('mask', 'mask_int', 'flows', 'hits')

    def __init__(self, mask):
        self.mask = mask
        self.mask_int = int.from_bytes(mask, 'big')
        self.flows = {}
        self.hits = 0


class Classifier:
    """Megaflows by (mask, masked key), looked up by tuple-space search.

    Args:
        key_len: length in bytes of every key and mask.
        mask_cache_size: slots in the mask cache, a power of two (default 256).

    Counters (ints, never reset): n_lookups; n_hits (lookups that found a
    megaflow); n_mask_hits (subtables probed, over all lookups: OVS's "masks
    hit", so n_mask_hits / n_lookups is the mean probes per lookup);
    n_cache_hits (lookups answered by the subtable the mask cache guessed).
    """

    def __init__(self, key_len, mask_cache_size=256):
        if mask_cache_size < 1 or mask_cache_size & (mask_cache_size - 1):
            raise ValueError('mask_cache_size must be a power of two, not %r'
                             % (mask_cache_size,))
        self.key_len = key_len
        self._subtables = []
        self._by_mask = {}
        self.mask_cache_size = mask_cache_size
        self._cache = [None] * mask_cache_size
        self._cache_index_mask = mask_cache_size - 1
        self.n_lookups = 0
        self.n_hits = 0
        self.n_mask_hits = 0
        self.n_cache_hits = 0

    def __len__(self):
        return sum(len(subtable.flows) for subtable in self._subtables)

    def __iter__(self):
        """Iterate over a snapshot of all megaflows, in probe order.

        A snapshot, so that the caller may remove flows while iterating
        (a flow dump that deletes idle flows, for instance).
        """
        return iter([flow for subtable in self._subtables
                     for flow in subtable.flows.values()])

    @property
    def n_masks(self):
        """The number of distinct masks (subtables)."""
        return len(self._subtables)

    def lookup(self, key):
        """Find the megaflow that matches a packet's flow key.

        Args:
            key: flow key bytes of length key_len.

        Returns:
            The matching Megaflow, or None. Updates the counters and, on a
            hit, the mask cache; the megaflow's stats are the caller's.
        """
        self.n_lookups += 1
        key_int = int.from_bytes(key, 'big')
        slot = hash(key) & self._cache_index_mask
        guess = self._cache[slot]
        probes = 0
        if guess is not None:
            flow = guess.flows.get(key_int & guess.mask_int)
            if flow is not None:
                self.n_mask_hits += 1
                self.n_cache_hits += 1
                self.n_hits += 1
                guess.hits += 1
                return flow
            probes = 1
        for subtable in self._subtables:
            if subtable is guess:
                continue
            probes += 1
            flow = subtable.flows.get(key_int & subtable.mask_int)
            if flow is not None:
                self.n_mask_hits += probes
                self.n_hits += 1
                subtable.hits += 1
                self._cache[slot] = subtable
                return flow
        self.n_mask_hits += probes
        return None

    def find(self, key, mask):
        """Return the megaflow with exactly this mask and masked key, or None.

        This is flow_put/flow_del's lookup, not a packet lookup: counters and
        the mask cache are untouched. key need not be masked.
        """
        subtable = self._by_mask.get(bytes(mask))
        if subtable is None:
            return None
        return subtable.flows.get(int.from_bytes(key, 'big') & subtable.mask_int)

    def insert(self, flow):
        """Add a megaflow, replacing any with the same mask and masked key.

        Args:
            flow: a Megaflow whose key and mask are key_len bytes long.

        Returns:
            The replaced Megaflow (now marked dead), or None. Inserting a
            flow that is already in the classifier changes nothing.
        """
        if len(flow.key) != self.key_len:
            raise ValueError('megaflow key is %d bytes, expected %d'
                             % (len(flow.key), self.key_len))
        subtable = self._by_mask.get(flow.mask)
        if subtable is None:
            subtable = Subtable(flow.mask)
            self._by_mask[flow.mask] = subtable
            self._subtables.append(subtable)
        old = subtable.flows.get(flow.key_int)
        if old is flow:
            return None
        subtable.flows[flow.key_int] = flow
        flow.alive = True
        if old is not None:
            old.alive = False
        return old

    def remove(self, flow):
        """Remove a megaflow and mark it dead; drop its subtable if now empty.

        Raises:
            KeyError: the flow is not in the classifier (never inserted,
                already removed, or replaced).
        """
        subtable = self._by_mask.get(flow.mask)
        if subtable is None or subtable.flows.get(flow.key_int) is not flow:
            raise KeyError('megaflow not in classifier: %r' % (flow,))
        del subtable.flows[flow.key_int]
        flow.alive = False
        if not subtable.flows:
            del self._by_mask[subtable.mask]
            self._subtables.remove(subtable)

    def rebalance(self):
        """Re-sort subtables by lookups answered since the last call, most first.

        As the kernel datapath re-sorts its masks by usage, so that a cache
        miss probes the busy subtables first. Results do not change (given
        non-overlapping megaflows); only the probe cost does.
        """
        self._subtables.sort(key=lambda subtable: subtable.hits, reverse=True)
        for subtable in self._subtables:
            subtable.hits = 0
