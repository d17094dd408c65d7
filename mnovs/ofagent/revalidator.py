"""Revalidation: keep datapath megaflows true to the current slow-path state.

A megaflow caches the translation of every packet that matches it. When
something the translation read changes (a MAC moved, a port went down; later
a flow_mod or group_mod), the cached actions may be wrong. As OVS's
revalidators do, we translate the megaflow's own key again and compare: the
masked key is a valid input, because by the megaflow invariant the
translation never read a wildcarded bit. A flow whose translation changed
(actions or mask) is deleted; the next packet takes a fresh upcall.
"""


def revalidate(dp, xlate, select=None):
    """Delete the megaflows whose translation is no longer what they cache.

    Args:
        dp: the Datapath.
        xlate: callable(key) -> (actions, mask); must have no side effects.
        select: optional predicate(flow) limiting the flows re-translated.
    Returns:
        The number of megaflows deleted.
    """
    def is_stale(flow):
        if select is not None and not select(flow):
            return False
        actions, mask = xlate(flow.key)
        return mask != flow.mask or actions != flow.actions
    return dp.flow_del_if(is_stale)
