"""Recirculation ids and the frozen translations they stand for (OVS's ofproto-dpif-rid.c).

Some translations cannot finish in one pass over the flow key. After a
pop_mpls the packet's inner headers are not in the key, so a later table
that matches udp,tp_dst=53 has nothing to read; a balance-tcp bond must pick
its member by a hash that only the datapath computes, per packet. xlate then
*freezes*: it ends the datapath actions with ('recirc', id), and the
datapath runs the (changed) packet through its caches again with
recirc_id=id in the key and dp_hash set. The second pass misses once, and
xlate *thaws* the id into the FrozenState it stands for and goes on from
there, reading the re-parsed packet.

A FrozenState holds what the rest of the translation needs: the table to
look up next (or None), the actions still to run in the current list and
the rule's instructions after them, the action set so far, the pipeline
metadata, and the rule in whose instructions the freeze happened (for the
cookie and the table of a later packet-in). A balance-tcp bond's output
freezes as a BondRecirc, the same for all its packets. A state is a value:
equal states get the same id, so every packet that freezes the same way shares the
second-pass megaflows.

Ids are never reused while the switch runs: a stale megaflow from an old
translation can then only miss, never land in a different continuation.
They are bounded (MAX_RECIRC_IDS); when all are taken, the table is
cleared and a new generation begins (the datapath flows that hold old ids
expire or are revalidated away, since their translations change). Cost:
one dict lookup to freeze, one to thaw.
"""

from collections import namedtuple

FrozenState = namedtuple('FrozenState', 'table_id actions instructions action_set metadata rule')
FrozenState.__doc__ = """A translation cut short, to go on in the next pass.

table_id: the table to look up next, or None; actions: OpenFlow actions
still to run, then instructions: the rest of `rule`'s instructions;
action_set: ((slot, (action, rule)), ...) accumulated so far; metadata: the
pipeline's metadata register."""

BondRecirc = namedtuple('BondRecirc', 'name serial')
BondRecirc.__doc__ = """The second pass of an output to a balance-tcp bond (bond.py):
the member is the owner of the packet's dp_hash bucket. serial tells a bond
from an earlier one of the same name."""

MAX_RECIRC_IDS = 1 << 20


class RecircTable:
    """recirc_id <-> FrozenState; id 0 is the first pass and stands for nothing."""

    def __init__(self, limit=MAX_RECIRC_IDS):
        self.limit = limit
        self.ids = {}               # FrozenState -> id
        self.states = {}            # id -> FrozenState
        self.next_id = 1

    def freeze(self, state):
        """The id of `state`, allocated on first use."""
        recirc_id = self.ids.get(state)
        if recirc_id is None:
            if len(self.states) >= self.limit:
                self.ids.clear()
                self.states.clear()
            recirc_id = self.next_id
            self.next_id = self.next_id % 0xffffffff + 1
            self.ids[state] = recirc_id
            self.states[recirc_id] = state
        return recirc_id

    def thaw(self, recirc_id):
        """The FrozenState of `recirc_id`, or None if it is unknown."""
        return self.states.get(recirc_id)

    def __len__(self):
        return len(self.states)
