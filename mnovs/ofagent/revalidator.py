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
"""


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
