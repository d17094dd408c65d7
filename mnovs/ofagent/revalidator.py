"""Revalidation: keep datapath megaflows true to the current slow-path state.

A megaflow caches the translation of every packet that matches it. When
something the translation read changes (a MAC moved, a port went down, a
flow_mod or group_mod), the cached actions may be wrong. As OVS's
revalidators do, the slow path translates the megaflow's own key again and
compares: the masked key is a valid input, because by the megaflow invariant
the translation never read a wildcarded bit. A megaflow whose translation
changed is deleted; the next packet takes a fresh upcall.

What "changed" means belongs to the slow path in charge: NORMAL compares
actions and mask; the OpenFlow agent also compares the rules and group
buckets a megaflow's statistics are credited to. So `revalidate` takes the
test as an argument.

Translating every megaflow again costs O(megaflows) translations, about
10 us each: too much once per flow_mod when a reactive controller adds a
rule per new flow. Most flow_mods tell us which megaflows they can affect
(`affected_by`): an added rule only those megaflows that hold a packet the
rule matches, a deleted rule only those whose translation hit it. Those
two tests are cheap: a set lookup per megaflow for each distinct rule mask.
"""

from mnovs.dp.flow import KEY_LEN

KEY_ONES = (1 << 8 * KEY_LEN) - 1           # the flow-key bits of an extended key


def revalidate(dp, is_stale, select=None):
    """Delete the megaflows that is_stale(flow) says no longer hold.

    Args:
        dp: the Datapath.
        is_stale: callable(flow) -> bool; must have no side effects.
        select: optional predicate(flow) limiting the flows examined.
    Returns:
        The number of megaflows deleted.
    """
    if select is None:
        return dp.flow_del_if(is_stale)
    return dp.flow_del_if(lambda flow: select(flow) and is_stale(flow))


def affected_by(added, removed):
    """Which megaflows an added or removed rule may translate differently.

    An added rule (value, mask), compiled over the extended key, changes
    only megaflows that contain a packet it matches: those whose masked key
    agrees with the rule on every bit both masks hold (the test of
    match.overlaps). That holds while the pipeline looks the packet's own
    key up; a megaflow whose translation rewrote the key (ukey.result.rewrote)
    is always taken. Bits beyond the flow key (metadata, tunnel) are taken to
    agree. A removed rule changes only megaflows whose translation hit it.
    Megaflows without a ukey (made by NORMAL in fail-open mode) are taken.

    Args:
        added: (value, mask) pairs of added rules.
        removed: Rules deleted or changed.
    Returns:
        select(flow) -> bool, for revalidate().
    """
    by_mask = {}                        # rule mask (key bits) -> rule values under it
    for value, mask in added:
        mask &= KEY_ONES
        by_mask.setdefault(mask, set()).add(value & mask)
    removed = set(removed)
    flow_masks = {}                     # megaflow mask bytes -> int
    projections = {}                    # (rule mask, common mask) -> values under it

    def select(flow):
        ukey = flow.ukey
        if ukey is None or ukey.result.rewrote:
            return True
        if removed and not removed.isdisjoint(ukey.result.rules):
            return True
        flow_mask = flow_masks.get(flow.mask)
        if flow_mask is None:
            flow_mask = flow_masks[flow.mask] = int.from_bytes(flow.mask, 'big')
        for rule_mask, values in by_mask.items():
            common = flow_mask & rule_mask
            if common != rule_mask:
                values = projections.get((rule_mask, common))
                if values is None:
                    values = projections[rule_mask, common] = {
                        v & common for v in by_mask[rule_mask]}
            if flow.key_int & common in values:
                return True
        return False
    return select
