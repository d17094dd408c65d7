"""Tests for mnovs.dp.classifier: the megaflow classifier against a brute-force model."""

import random

import pytest

from mnovs.dp.classifier import Classifier, Megaflow

KEY_LEN = 24
DROP = ()
OUT1 = (('output', 1),)


def to_int(data):
    return int.from_bytes(data, 'big')


def to_bytes(value):
    return value.to_bytes(KEY_LEN, 'big')


def make_masks(rng):
    """A small set of masks, dense to very sparse, as xlate would produce."""
    def random_mask(density):
        return bytes(sum(1 << bit for bit in range(8) if rng.random() < density)
                     for _ in range(KEY_LEN))
    one_field = bytes([0xff]) + bytes(KEY_LEN - 1)             # in_port only
    two_fields = bytes([0xff, 0xff, 0x0f]) + bytes(KEY_LEN - 3)
    return [b'\xff' * KEY_LEN, random_mask(0.5), random_mask(0.2),
            one_field, two_fields]


def overlaps(flow_a, flow_b):
    """True if some key matches both megaflows."""
    both = to_int(flow_a.mask) & to_int(flow_b.mask)
    return flow_a.key_int & both == flow_b.key_int & both


def matching(flows, key):
    """Brute force: every megaflow in flows that matches key."""
    key_int = to_int(key)
    return [flow for flow in flows if key_int & to_int(flow.mask) == flow.key_int]


def packet_of(flow, rng):
    """A key matching flow, with random bits in its wildcarded positions."""
    mask = to_int(flow.mask)
    return to_bytes(flow.key_int | (rng.getrandbits(8 * KEY_LEN) & ~mask))


def sparse_key(rng):
    """A random key whose first bytes repeat often, so sparse masks collide."""
    return bytes([rng.randrange(4), rng.randrange(4), rng.randrange(32)]) + \
        rng.randbytes(KEY_LEN - 3)


class Model:
    """The reference: live megaflows by (mask, masked key), checked by brute force."""

    def __init__(self):
        self.flows = {}
        self.dead = []

    def check(self, classifier, key):
        expected = matching(self.flows.values(), key)
        assert len(expected) <= 1, 'test generated overlapping megaflows'
        found = classifier.lookup(key)
        assert found is (expected[0] if expected else None)
        assert found is None or found.alive


@pytest.mark.parametrize('cache_size', [1, 4, 256])
@pytest.mark.parametrize('seed', [1, 2, 3])
def test_random_operations_match_brute_force(seed, cache_size):
    rng = random.Random(seed)
    masks = make_masks(rng)
    classifier = Classifier(KEY_LEN, mask_cache_size=cache_size)
    model = Model()
    expected_hits = lookups = 0
    for step in range(1500):
        roll = rng.random()
        live = list(model.flows.values())
        if roll < 0.3 or not live:
            flow = Megaflow(sparse_key(rng), rng.choice(masks), OUT1, step)
            if any(overlaps(flow, other) for other in live):
                continue
            assert classifier.insert(flow) is None
            model.flows[flow.mask, flow.key_int] = flow
        elif roll < 0.4:
            old = rng.choice(live)
            new = Megaflow(packet_of(old, rng), old.mask, DROP, step)
            assert classifier.insert(new) is old
            assert not old.alive and new.alive
            model.flows[new.mask, new.key_int] = new
            model.dead.append(old)
        elif roll < 0.55:
            flow = rng.choice(live)
            classifier.remove(flow)
            assert not flow.alive
            assert classifier.find(flow.key, flow.mask) is None
            del model.flows[flow.mask, flow.key_int]
            model.dead.append(flow)
        elif roll < 0.57:
            classifier.rebalance()
        else:
            packets = [packet_of(flow, rng) for flow in rng.sample(live, min(4, len(live)))]
            packets += [packet_of(flow, rng) for flow in model.dead[-3:]]
            packets += [sparse_key(rng), rng.randbytes(KEY_LEN)]
            for key in packets * 2:       # twice: the second lookup may hit the mask cache
                expected_hits += bool(matching(model.flows.values(), key))
                lookups += 1
                model.check(classifier, key)
        assert len(classifier) == len(model.flows)
        assert classifier.n_masks == len({mask for mask, _ in model.flows})

    assert set(classifier) == set(model.flows.values())
    for flow in model.flows.values():
        assert classifier.find(packet_of(flow, rng), flow.mask) is flow
    assert classifier.n_lookups == lookups
    assert classifier.n_hits == expected_hits
    assert classifier.n_cache_hits <= classifier.n_hits
    assert classifier.n_mask_hits >= classifier.n_hits


def test_megaflow_stores_masked_key():
    flow = Megaflow(b'\xff\x0f', b'\xf0\xff', OUT1, 5.0)
    assert flow.key == b'\xf0\x0f'
    assert flow.mask == b'\xf0\xff'
    assert (flow.packets, flow.bytes, flow.tcp_flags) == (0, 0, 0)
    assert flow.used == flow.created == 5.0
    assert flow.alive
    with pytest.raises(ValueError):
        Megaflow(b'\x00\x00', b'\xff', OUT1, 0.0)


def test_argument_errors():
    with pytest.raises(ValueError):
        Classifier(KEY_LEN, mask_cache_size=3)
    classifier = Classifier(KEY_LEN)
    with pytest.raises(ValueError):
        classifier.insert(Megaflow(b'\x01', b'\xff', OUT1, 0.0))
    flow = Megaflow(bytes(KEY_LEN), b'\xff' * KEY_LEN, OUT1, 0.0)
    with pytest.raises(KeyError):
        classifier.remove(flow)
    classifier.insert(flow)
    classifier.remove(flow)
    with pytest.raises(KeyError):
        classifier.remove(flow)


def test_insert_same_flow_twice_is_a_no_op():
    classifier = Classifier(KEY_LEN)
    flow = Megaflow(bytes(KEY_LEN), b'\xff' * KEY_LEN, OUT1, 0.0)
    assert classifier.insert(flow) is None
    assert classifier.insert(flow) is None
    assert flow.alive and len(classifier) == 1


def test_counters_follow_probes():
    # With one cache slot, the cache always holds the last subtable that hit.
    rng = random.Random(7)
    mask_a = b'\xff' + bytes(KEY_LEN - 1)
    mask_b = bytes(1) + b'\xff' + bytes(KEY_LEN - 2)
    flow_a = Megaflow(b'\x01' + bytes(KEY_LEN - 1), mask_a, OUT1, 0.0)
    flow_b = Megaflow(b'\x00\x02' + bytes(KEY_LEN - 2), mask_b, OUT1, 0.0)
    classifier = Classifier(KEY_LEN, mask_cache_size=1)
    classifier.insert(flow_a)
    classifier.insert(flow_b)
    key_b = b'\x00\x02' + rng.randbytes(KEY_LEN - 2)
    key_a = b'\x01\x00' + rng.randbytes(KEY_LEN - 2)
    key_miss = b'\x00\x00' + rng.randbytes(KEY_LEN - 2)

    def counters():
        return (classifier.n_lookups, classifier.n_hits,
                classifier.n_mask_hits, classifier.n_cache_hits)

    assert classifier.lookup(key_b) is flow_b      # cold: probe A, then B
    assert counters() == (1, 1, 2, 0)
    assert classifier.lookup(key_b) is flow_b      # cache guesses B
    assert counters() == (2, 2, 3, 1)
    assert classifier.lookup(key_a) is flow_a      # guess B is wrong, then A
    assert counters() == (3, 3, 5, 1)
    assert classifier.lookup(key_miss) is None     # guess A, then B
    assert counters() == (4, 3, 7, 1)
    assert classifier.find(key_a, mask_a) is flow_a
    assert classifier.find(key_a, mask_b) is None
    assert counters() == (4, 3, 7, 1)


@pytest.mark.parametrize('cache_size', [1, 256])
def test_stale_mask_cache_after_subtable_removal(cache_size):
    rng = random.Random(11)
    mask_a = b'\xff\xff' + bytes(KEY_LEN - 2)
    mask_b = b'\xff' + bytes(KEY_LEN - 1)
    classifier = Classifier(KEY_LEN, mask_cache_size=cache_size)
    flows_a = [Megaflow(bytes([1, i]) + bytes(KEY_LEN - 2), mask_a, OUT1, 0.0)
               for i in range(8)]
    for flow in flows_a:
        classifier.insert(flow)
    keys = [packet_of(flow, rng) for flow in flows_a]
    assert [classifier.lookup(key) for key in keys] == flows_a    # cache holds A

    for flow in flows_a:
        classifier.remove(flow)
    assert classifier.n_masks == 0 and len(classifier) == 0
    assert all(classifier.lookup(key) is None for key in keys)

    # A new subtable with the same mask; the dropped one must stay dead.
    flows_a2 = [Megaflow(bytes([2, i]) + bytes(KEY_LEN - 2), mask_a, OUT1, 0.0)
                for i in range(8)]
    for flow in flows_a2:
        classifier.insert(flow)
    assert all(classifier.lookup(key) is None for key in keys)
    assert [classifier.lookup(packet_of(flow, rng)) for flow in flows_a2] == flows_a2

    # The cached subtable is live but no longer holds the match; another does.
    flow_b = Megaflow(b'\x01' + bytes(KEY_LEN - 1), mask_b, DROP, 0.0)
    classifier.insert(flow_b)
    assert all(classifier.lookup(key) is flow_b for key in keys)
    classifier.remove(flow_b)
    assert all(classifier.lookup(key) is None for key in keys)
    assert not flow_b.alive


def test_rebalance_sorts_by_recent_hits_and_keeps_results():
    rng = random.Random(5)
    masks = [bytes([0xff, low]) + bytes(KEY_LEN - 2) for low in (0x00, 0xf0, 0xff)]
    flows = [Megaflow(bytes([i, 0xff]) + bytes(KEY_LEN - 2), mask, OUT1, 0.0)
             for i, mask in enumerate(masks)]
    assert not any(overlaps(a, b) for a in flows for b in flows if a is not b)
    classifier = Classifier(KEY_LEN)
    for flow in flows:
        classifier.insert(flow)
    assert [flow.mask for flow in classifier] == masks        # insertion order

    for flow, times in zip(flows, (1, 5, 20)):
        for _ in range(times):
            assert classifier.lookup(packet_of(flow, rng)) is flow
    classifier.rebalance()
    assert [flow.mask for flow in classifier] == masks[::-1]

    for _ in range(30):       # hits counted since the last rebalance only
        assert classifier.lookup(packet_of(flows[0], rng)) is flows[0]
    for _ in range(10):
        assert classifier.lookup(packet_of(flows[1], rng)) is flows[1]
    classifier.rebalance()
    assert [flow.mask for flow in classifier] == masks
    for flow in flows:
        assert classifier.lookup(packet_of(flow, rng)) is flow


def test_iteration_is_a_snapshot():
    classifier = Classifier(KEY_LEN)
    flows = [Megaflow(bytes([i]) + bytes(KEY_LEN - 1), b'\xff' * KEY_LEN, OUT1, 0.0)
             for i in range(10)]
    for flow in flows:
        classifier.insert(flow)
    for flow in classifier:
        classifier.remove(flow)
    assert len(classifier) == 0 and classifier.n_masks == 0
    assert not any(flow.alive for flow in flows)
