"""The datapath's sample action without the interpreter: a tap in a megaflow's fast outputs.

A megaflow whose actions are outputs only skips the action interpreter
(datapath.py, Megaflow.fast_outs: a tuple of Ports whose send() is called in
turn). sFlow makes the common megaflow

    sample(sample=0.2%,actions(userspace(sFlow(...)))),2

which would lose that fast form. A SampleTap stands in for the sample action
in the tuple: it has a send(packet) like a Port, so the hit path stays one
loop over `fast_outs` and pays nothing for flows without a sample.

SampleTap.send does what actions.exec_sample does for the sFlow shape (a
sample whose nested actions are one userspace action): count the packet in
dp.sample_pool, draw, and on a hit queue the upcall on the flow's input port
(read from the megaflow key, which always matches in_port exactly) or count
the refused sample in dp.sample_lost.

The upcall's userdata is the action's userdata followed by the sample pool
at the draw (POOL, 8 bytes), as a kernel datapath adds attributes to an
upcall: the agent encodes the sample later, after more packets went by, and
still gives each flow sample the pool of its own moment.

The draw: `getrandbits(32)` is the bound method of a private Mersenne
Twister, about 40 ns, the cost OVS's random_uint32() has in its datapath.
A sample is taken when the draw is <= probability, so probability
UINT32_MAX / N samples 1 packet in N on average (OVS's rule).

Cost per packet of a sampled flow: one Python call, one draw, one counter
(about 0.15 us); a hit adds the copy into the upcall queue.
"""

import random
import struct

UINT32_MAX = 0xffffffff
POOL = struct.Struct('!Q')          # appended to a sample's userspace userdata

# A private generator: nobody else's seeding or draws change the sampling.
getrandbits = random.Random().getrandbits


class SampleTap:
    """The sFlow-shaped sample action of one megaflow, callable like a Port.

    Args:
        dp: the Datapath (sample_pool, sample_lost, exec_in_port, userspace).
        probability: the sample action's probability (of UINT32_MAX).
        userdata: the nested userspace action's userdata.
        in_port: the megaflow's input port.
    """

    __slots__ = ('dp', 'probability', 'userdata', 'in_port')

    def __init__(self, dp, probability, userdata, in_port):
        self.dp = dp
        self.probability = probability
        self.userdata = userdata
        self.in_port = in_port

    @classmethod
    def of(cls, dp, action, in_port):
        """A tap for ('sample', probability, nested), or None if nested is not one userspace."""
        nested = action[2]
        if len(nested) != 1 or nested[0][0] != 'userspace':
            return None
        return cls(dp, action[1], nested[0][1], in_port)

    def send(self, packet):
        dp = self.dp
        dp.sample_pool += 1
        if self.probability != UINT32_MAX and getrandbits(32) > self.probability:
            return
        dp.exec_in_port = self.in_port
        if not dp.userspace(packet, self.userdata + POOL.pack(dp.sample_pool)):
            dp.sample_lost += 1
