"""Packet-in scheduling: a rate limit with fair per-port queues (OVS pinsched).

OVS's Controller table has `controller_rate_limit` (packets per second; the
schema's minimum is 100; unset means no limit) and `controller_burst_limit`
(packets; minimum 25; unset means rate/4, i.e. at most 250 ms of queueing).
connmgr gives every controller connection two schedulers, one for table
misses and one for output-to-controller actions, and reports each one's
counters in the Controller's status column. A `PinSched` is one of them.

What it holds:
- A token bucket of `burst_limit` tokens that refills at `rate_limit` tokens
  per second and starts full; a packet-in costs one token.
- One FIFO queue per input port (`queues`, port -> deque of messages) and
  the round-robin order of the ports that have queued messages (`order`).

The rules, as OVS's:
- While nothing is queued and a token is there, a packet-in goes out at once
  (counted in n_normal, OVS's "bypassed").
- Otherwise it joins its port's queue (n_limited, OVS's "queued"). Once
  something is queued, every new packet-in queues, even if a token has come
  back, so that it cannot overtake packets already waiting.
- The queues together hold at most `burst_limit` messages. A packet-in that
  arrives when they are full first drops the oldest message of the longest
  queue (n_queue_dropped, OVS's "dropped"; ties broken at random). A port
  that floods therefore loses its own packet-ins, not a quiet port's.
- run() releases queued messages as tokens come back, one per port in turn
  (round-robin), so that a flooding port's long queue cannot starve another
  port's. It releases at most RUN_BATCH per call so that the loop can do
  other work, as OVS does.

Invariants: `order` holds exactly the ports of `queues`; no queue is empty;
n_queued is the sum of the queue lengths and never exceeds burst_limit.

Without a rate limit (rate_limit None or <= 0) send() hands every message
straight back and keeps no counters (OVS has no scheduler then, and reports
nothing). Cost per packet-in: with no limit, one test and a one-item list;
with a limit and nothing queued, a few float operations; queued, a deque
append, plus a scan over the queued ports when the queues are full.

The class has no sockets and reads no clock: the caller passes `now`
(time.monotonic() seconds) and sends what it gets back.
"""

import collections
import random

RUN_BATCH = 50                  # messages released per run() call at most (OVS's 50)


class PinSched:
    """Rate-limit one connection's packet-ins of one kind (miss or action).

    Args:
        rate_limit: packets per second; None or <= 0 means no limit.
        burst_limit: packets the bucket and the queues hold; None or <= 0
            means rate_limit // 4 (at least 1).
    """

    __slots__ = ('rate_limit', 'burst_limit', 'tokens', 'last_fill', 'queues', 'order',
                 'n_queued', 'n_normal', 'n_limited', 'n_queue_dropped')

    def __init__(self, rate_limit=None, burst_limit=None):
        self.rate_limit = self.burst_limit = None
        self._reset()
        self.set_limits(rate_limit, burst_limit)

    def set_limits(self, rate_limit, burst_limit=None):
        """Change the limits in place (ovs-vsctl set Controller ...).

        Turning the limit on starts a full bucket and zero counters; lowering
        the burst limit drops from the longest queues until the rest fits;
        turning the limit off releases every queued message.

        Returns:
            The messages to send now (non-empty only when the limit goes off).
        """
        if not rate_limit or rate_limit <= 0:
            released = [message for port in self.order for message in self.queues[port]]
            self.rate_limit = self.burst_limit = None
            self._reset()
            return released
        if not burst_limit or burst_limit <= 0:
            burst_limit = rate_limit // 4
        burst_limit = max(1, burst_limit)
        if self.rate_limit is None:
            self._reset()
            self.tokens = float(burst_limit)
        self.rate_limit, self.burst_limit = rate_limit, burst_limit
        self.tokens = min(self.tokens, float(burst_limit))
        while self.n_queued > burst_limit:
            self._drop_from_longest()
        return []

    def _reset(self):
        self.tokens = 0.0
        self.last_fill = None
        self.queues = {}                    # port_no -> deque of messages, never empty
        self.order = collections.deque()    # round-robin order of the ports in queues
        self.n_queued = self.n_normal = self.n_limited = self.n_queue_dropped = 0

    @property
    def limited(self):
        """True when a rate limit is configured (and counters are kept)."""
        return self.rate_limit is not None

    # --- the token bucket --------------------------------------------------

    def _refill(self, now):
        last = self.last_fill
        if last is None or now > last:      # a clock step back adds nothing
            if last is not None:
                self.tokens = min(self.burst_limit,
                                  self.tokens + (now - last) * self.rate_limit)
            self.last_fill = now

    def _take_token(self, now):
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    # --- sending -----------------------------------------------------------

    def send(self, port_no, message, now):
        """Offer one packet-in that arrived on `port_no`.

        Returns:
            The messages to send now: [message], or [] if it was queued.
        """
        if self.rate_limit is None:
            return [message]
        if not self.n_queued and self._take_token(now):
            self.n_normal += 1
            return [message]
        if self.n_queued >= self.burst_limit:
            self._drop_from_longest()
        queue = self.queues.get(port_no)
        if queue is None:
            queue = self.queues[port_no] = collections.deque()
            self.order.append(port_no)
        queue.append(message)
        self.n_queued += 1
        self.n_limited += 1
        return []

    def run(self, now):
        """Release queued messages for the tokens that came back, round-robin by port.

        Returns:
            The messages to send now, at most RUN_BATCH of them.
        """
        released = []
        while self.n_queued and len(released) < RUN_BATCH and self._take_token(now):
            port = self.order[0]
            queue = self.queues[port]
            released.append(queue.popleft())
            self.n_queued -= 1
            if queue:
                self.order.rotate(-1)
            else:
                del self.queues[port]
                self.order.popleft()
        return released

    def wait_time(self, now):
        """Seconds until run() can release a message; None when nothing is queued."""
        if not self.n_queued:
            return None
        tokens = self.tokens
        if self.last_fill is not None and now > self.last_fill:
            tokens += (now - self.last_fill) * self.rate_limit
        return max(0.0, (1.0 - tokens) / self.rate_limit)

    def _drop_from_longest(self):
        longest = max(len(queue) for queue in self.queues.values())
        port = random.choice([p for p, queue in self.queues.items() if len(queue) == longest])
        queue = self.queues[port]
        queue.popleft()
        if not queue:
            del self.queues[port]
            self.order.remove(port)
        self.n_queued -= 1
        self.n_queue_dropped += 1

    def stats(self):
        """The counters, named as OVS's pinsched_stats (all zero without a limit).

        In the Controller's status column OVS reports them per kind (TYPE is
        'miss' or 'action') as packet-in-TYPE-backlog (n_queued), -bypassed
        (n_normal), -queued (n_limited) and -dropped (n_queue_dropped).
        """
        return {'n_queued': self.n_queued, 'n_normal': self.n_normal,
                'n_limited': self.n_limited, 'n_queue_dropped': self.n_queue_dropped}
