"""Packet-in scheduling (pinsched.py) on a simulated clock.

The scheduler reads no clock, so a test drives it with `now` values: time
is simulated, nothing sleeps, and every count is exact. Messages are
(port, seq) tuples so that a test can tell whose packet-ins got through.
"""

import pytest

from mnovs.ofagent.pinsched import RUN_BATCH, PinSched

STEP = 0.001                                # the simulated loop turns every 1 ms


def simulate(sched, rates, seconds, start=0.0):
    """Offer `rates` ({port: packet-ins per second}) for `seconds`, 1 ms steps.

    Each step sends what arrived, then runs the scheduler, as the vswitchd
    loop would. Returns ({port: messages offered}, [messages delivered]).
    """
    offered = dict.fromkeys(rates, 0)
    delivered = []
    for step in range(round(seconds / STEP)):
        now = start + step * STEP
        for port, rate in rates.items():
            due = int((step + 1) * STEP * rate) - int(step * STEP * rate)
            for _ in range(due):
                delivered += sched.send(port, (port, offered[port]), now)
                offered[port] += 1
        delivered += sched.run(now)
    return offered, delivered


def fill_bucket_then_queue(sched, now=0.0):
    """Spend the full bucket at `now`; return what went out."""
    out = []
    for seq in range(sched.burst_limit):
        out += sched.send(9, (9, seq), now)
    return out


# --- no limit ----------------------------------------------------------------

def test_without_a_limit_everything_passes_and_nothing_is_counted():
    sched = PinSched()
    out = []
    for seq in range(10000):
        out += sched.send(seq % 3, (seq % 3, seq), 0.0)
    assert len(out) == 10000 and out[0] == (0, 0) and out[-1] == (0, 9999)
    assert sched.run(0.0) == [] and sched.wait_time(0.0) is None
    assert not sched.limited
    assert sched.stats() == {'n_queued': 0, 'n_normal': 0, 'n_limited': 0,
                             'n_queue_dropped': 0}


@pytest.mark.parametrize('rate', [None, 0, -5])
def test_no_rate_or_a_non_positive_one_means_no_limit(rate):
    assert not PinSched(rate, 50).limited


@pytest.mark.parametrize('rate, burst, expected', [
    (1000, None, 250),                      # OVS: a quarter of the rate
    (1000, 0, 250),
    (100, 25, 25),
    (100, 500, 500),
    (2, None, 1),                           # never below one packet
])
def test_burst_limit_defaults_as_ovs(rate, burst, expected):
    assert PinSched(rate, burst).burst_limit == expected


# --- the token bucket ----------------------------------------------------------

def test_a_full_bucket_lets_a_burst_through_then_queues():
    sched = PinSched(100, 25)
    out = fill_bucket_then_queue(sched)
    assert len(out) == 25
    assert sched.send(9, 'late', 0.0) == []
    assert sched.stats() == {'n_queued': 1, 'n_normal': 25, 'n_limited': 1,
                             'n_queue_dropped': 0}


def test_released_one_token_interval_later():
    sched = PinSched(100, 25)
    fill_bucket_then_queue(sched)
    sched.send(9, 'late', 0.0)
    assert sched.wait_time(0.0) == pytest.approx(0.01)
    assert sched.run(0.009) == []
    assert sched.wait_time(0.009) == pytest.approx(0.001)
    assert sched.run(0.0101) == ['late']
    assert sched.wait_time(0.0101) is None


def test_idle_time_saves_up_one_burst_at_most():
    sched = PinSched(100, 25)
    fill_bucket_then_queue(sched)
    out = []
    for seq in range(100):
        out += sched.send(1, seq, 60.0)     # a minute idle, then a burst
    assert out == list(range(25))


@pytest.mark.parametrize('rate, burst', [(100, 25), (1000, 250), (500, 10)])
def test_a_flood_gets_the_rate_plus_one_burst(rate, burst):
    sched = PinSched(rate, burst)
    seconds = 10
    offered, delivered = simulate(sched, {1: 4 * rate}, seconds)
    assert abs(len(delivered) - (burst + rate * seconds)) <= 1
    stats = sched.stats()
    # Every packet-in is accounted for: sent at once, released, dropped or waiting.
    assert stats['n_normal'] + stats['n_limited'] == offered[1]
    assert stats['n_limited'] == (len(delivered) - stats['n_normal']
                                  + stats['n_queue_dropped'] + stats['n_queued'])
    assert 0 < stats['n_queued'] <= burst


def test_no_second_of_a_flood_exceeds_the_rate_once_the_burst_is_spent():
    sched = PinSched(200, 50)
    times = []
    now = 0.0
    for step in range(5000):                # 5 s at 1 ms, 1000 packet-ins/s
        now = step * STEP
        n = len(sched.send(1, step, now)) + len(sched.run(now))
        times += [now] * n
    for second in range(1, 5):
        in_second = sum(1 for t in times if second <= t < second + 1)
        assert in_second <= 201


def test_a_quiet_rate_never_queues():
    sched = PinSched(100, 25)
    _, delivered = simulate(sched, {1: 50, 2: 40}, 5)
    assert len(delivered) == 450
    assert sched.stats()['n_normal'] == 450 and sched.stats()['n_limited'] == 0


def test_a_clock_step_back_adds_no_tokens():
    sched = PinSched(100, 1)
    assert sched.send(1, 'a', 10.0) == ['a']
    assert sched.send(1, 'b', 5.0) == []
    assert sched.run(5.5) == [] and sched.run(9.999) == []
    assert sched.run(10.011) == ['b']


# --- queues: order, fairness, drops ----------------------------------------------

def test_nothing_overtakes_a_queued_packet_in():
    sched = PinSched(100, 25)
    fill_bucket_then_queue(sched)
    assert sched.send(1, 'first', 0.0) == []
    # A token is back at 0.02, but 'first' still waits: 'second' must queue too.
    assert sched.send(1, 'second', 0.02) == []
    assert sched.run(0.02) == ['first', 'second']


def test_a_quiet_port_gets_through_a_flood_on_another():
    sched = PinSched(100, 25)
    offered, delivered = simulate(sched, {1: 2000, 2: 10}, 10)
    quiet = [m for m in delivered if m[0] == 2]
    assert quiet == [(2, seq) for seq in range(len(quiet))]      # none lost, in order
    assert len(quiet) >= offered[2] - 1                          # the last may still wait
    assert sched.stats()['n_queue_dropped'] > 10000           # the flood paid


def test_release_is_round_robin_and_the_longest_queue_loses_its_oldest():
    sched = PinSched(100, 5)
    fill_bucket_then_queue(sched)
    for message in ['1a', '1b', '1c']:
        sched.send(1, message, 0.0)
    for message in ['2a', '2b']:
        sched.send(2, message, 0.0)
    assert sched.stats()['n_queued'] == 5
    sched.send(2, '2c', 0.0)                # full: port 1's queue is the longest
    assert sched.stats() == {'n_queued': 5, 'n_normal': 5, 'n_limited': 6,
                             'n_queue_dropped': 1}
    assert sched.run(1.0) == ['1b', '2a', '1c', '2b', '2c']
    assert sched.stats()['n_queued'] == 0 and sched.wait_time(1.0) is None


def test_a_newcomer_port_is_served_and_drops_come_from_the_longest():
    sched = PinSched(100, 4)
    fill_bucket_then_queue(sched)
    for seq in range(4):
        sched.send(1, (1, seq), 0.0)
    sched.send(3, (3, 0), 0.0)              # drops (1, 0)
    sched.send(3, (3, 1), 0.0)              # drops (1, 1)
    sched.send(3, (3, 2), 0.0)              # tie 2 vs 2: either loses its oldest
    assert sched.stats()['n_queue_dropped'] == 3
    released = sched.run(1.0)
    assert len(released) == 4
    assert released[:2] in ([(1, 3), (3, 0)], [(1, 2), (3, 1)])
    assert (3, 2) in released


def test_run_releases_a_bounded_batch():
    sched = PinSched(1000, 250)
    fill_bucket_then_queue(sched)
    for seq in range(200):
        sched.send(seq % 4, seq, 0.0)
    assert len(sched.run(1.0)) == RUN_BATCH
    assert sched.wait_time(1.0) == 0.0
    assert len(sched.run(1.0)) == RUN_BATCH


# --- changing the limits -----------------------------------------------------------

def test_lowering_the_burst_limit_drops_from_the_longest_queue():
    sched = PinSched(100, 10)
    fill_bucket_then_queue(sched)
    for message in ['1a', '1b', '1c', '1d', '2a']:
        sched.send(1 if message[0] == '1' else 2, message, 0.0)
    assert sched.set_limits(100, 3) == []
    assert sched.burst_limit == 3
    assert sched.stats()['n_queue_dropped'] == 2
    assert sched.run(1.0) == ['1c', '2a', '1d']


def test_turning_the_limit_off_releases_the_queue_and_on_again_starts_fresh():
    sched = PinSched(100, 10)
    fill_bucket_then_queue(sched)
    sched.send(1, 'x', 0.0)
    sched.send(2, 'y', 0.0)
    assert sorted(sched.set_limits(None)) == ['x', 'y']
    assert not sched.limited and sched.stats()['n_normal'] == 0
    assert sched.send(1, 'z', 0.0) == ['z']
    sched.set_limits(100, 10)
    assert sched.limited and sched.stats()['n_normal'] == 0
    assert len(fill_bucket_then_queue(sched, now=0.0)) == 10
