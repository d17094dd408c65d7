"""Tests for mnovs.dp.emc: the exact-match microflow cache."""

import pytest

from mnovs.dp.classifier import Megaflow
from mnovs.dp.emc import MicroflowCache

KEY_LEN = 8
EXACT = b'\xff' * KEY_LEN
OUT1 = (('output', 1),)


def key(i):
    return i.to_bytes(KEY_LEN, 'big')


def test_bounded_by_size():
    emc = MicroflowCache(size=8)
    flow = Megaflow(key(0), bytes(KEY_LEN), OUT1, 0.0)
    for i in range(100):
        emc.insert(key(i), flow)
        assert 1 <= len(emc) <= 8
        assert emc.table[key(i)] is flow         # the newest entry always survives


def test_reinsert_when_full_keeps_the_table():
    emc = MicroflowCache(size=4)
    old = Megaflow(key(0), bytes(KEY_LEN), OUT1, 0.0)
    new = Megaflow(key(0), bytes(KEY_LEN), (), 0.0)
    for i in range(4):
        emc.insert(key(i), old)
    emc.insert(key(2), new)
    assert len(emc) == 4
    assert emc.table[key(2)] is new
    assert emc.table[key(3)] is old


def test_table_is_the_inline_hot_path():
    emc = MicroflowCache()
    flow = Megaflow(key(5), EXACT, OUT1, 0.0)
    emc.insert(key(5), flow)
    assert emc.table.get(key(5)) is flow
    assert emc.table.get(key(6)) is None


def test_size_must_be_positive():
    with pytest.raises(ValueError):
        MicroflowCache(size=0)
