"""Tests for mnovs.dp.meter: token-bucket meters, driven by a simulated clock.

A stream is a run of apply() calls at evenly spaced times; the tests count
what passes against rate * time + burst, the token bucket's promise.
"""

import pytest

from mnovs.dp.meter import MeterTable

T0 = 1000.0             # creation time of every meter here


def stream(table, meter_id, pps, seconds, size=100, start=T0):
    """Offer pps packets of size bytes for seconds; return the pass count per second."""
    passed = [0] * int(seconds)
    for i in range(int(pps * seconds)):
        if table.apply(meter_id, size, start + i / pps):
            passed[int(i / pps)] += 1
    return passed


def table_with(meter_id, unit, bands):
    table = MeterTable()
    table.set(meter_id, unit, bands, now=T0)
    return table


# --- packets per second ------------------------------------------------------

def test_pktps_passes_rate_plus_default_burst():
    table = table_with(1, 'pktps', [('drop', 1000, None)])
    passed = stream(table, 1, 10000, 2)
    # A full bucket of one second's rate (the default burst), then the rate.
    assert abs(sum(passed) - (1000 + 2 * 1000)) <= 2
    assert abs(passed[1] - 1000) <= 1
    stats = table.stats(1, now=T0 + 2)
    assert stats['packet_in_count'] == 20000
    assert stats['bands'][0]['packet_count'] == 20000 - sum(passed)
    assert stats['bands'][0]['byte_count'] == 100 * (20000 - sum(passed))


def test_pktps_explicit_burst():
    table = table_with(7, 'pktps', [('drop', 1000, 100)])
    passed = stream(table, 7, 10000, 2)
    assert abs(sum(passed) - (100 + 2000)) <= 2


def test_stream_under_the_rate_passes_whole():
    table = table_with(1, 'pktps', [('drop', 1000, 10)])
    assert sum(stream(table, 1, 900, 2)) == 1800


def test_gso_frame_costs_its_segments():
    table = table_with(1, 'pktps', [('drop', 100, 50)])
    assert table.apply(1, 64000, T0, n_packets=45)        # full bucket: passes
    assert not table.apply(1, 64000, T0 + 0.1, n_packets=45)
    stats = table.stats(1, now=T0 + 0.1)
    assert stats['packet_in_count'] == 90 and stats['bands'][0]['packet_count'] == 45


# --- kilobits per second ---------------------------------------------------------

def test_kbps_passes_rate_plus_burst():
    table = table_with(2, 'kbps', [('drop', 1000, 100)])      # 1 Mbit/s, 100 kbit burst
    passed = stream(table, 2, 10000, 2, size=1000)            # 80 Mbit/s offered
    bits = sum(passed) * 8000
    assert abs(bits - (100_000 + 2 * 1_000_000)) <= 8000
    assert abs(passed[1] * 8000 - 1_000_000) <= 8000
    stats = table.stats(2, now=T0 + 2)
    assert stats['byte_in_count'] == 20000 * 1000
    assert stats['bands'][0]['byte_count'] == (20000 - sum(passed)) * 1000


def test_kbps_default_burst_is_one_second():
    table = table_with(2, 'kbps', [('drop', 800, None)])
    passed = stream(table, 2, 1000, 2, size=1000)             # 8 Mbit/s offered
    assert abs(sum(passed) - (100 + 200)) <= 1                # 100 frames/s of 8 kbit


def test_frame_larger_than_the_bucket_runs_into_debt():
    # A 64 KB super-frame (512 kbit) against a 100 kbit burst: it passes
    # when the bucket is full and the debt keeps the long-run rate.
    table = table_with(3, 'kbps', [('drop', 1000, 100)])
    passed = stream(table, 3, 1000, 2, size=64000)
    assert sum(passed) == 4                 # at 0, ~0.512, ~1.024, ~1.536 s
    assert sum(passed) * 512_000 <= 2 * 1_000_000 + 100_000 + 512_000


# --- several bands -----------------------------------------------------------------

def test_highest_exceeded_band_fires():
    table = table_with(4, 'pktps', [('dscp_remark', 100, 10), ('drop', 1000, 10)])
    # Under the drop band's rate: all pass, the remark band counts the excess.
    assert sum(stream(table, 4, 500, 2)) == 1000
    remark, drop = table.stats(4, now=T0 + 2)['bands']
    assert drop['packet_count'] == 0
    assert abs(remark['packet_count'] - (1000 - 10 - 200)) <= 2


def test_drop_band_fires_over_its_rate():
    table = table_with(4, 'pktps', [('dscp_remark', 100, 10), ('drop', 1000, 10)])
    passed = stream(table, 4, 10000, 2)
    assert abs(sum(passed) - (10 + 2000)) <= 2
    remark, drop = table.stats(4, now=T0 + 2)['bands']
    assert drop['packet_count'] == 20000 - sum(passed)
    assert remark['packet_count'] > 0           # packets over 100 but under 1000 pps


# --- the table ------------------------------------------------------------------

def test_unknown_meter_passes():
    assert MeterTable().apply(99, 1500, T0)


def test_clock_going_back_adds_no_tokens():
    table = table_with(1, 'pktps', [('drop', 10, 1)])
    assert table.apply(1, 60, T0 + 5)
    assert not table.apply(1, 60, T0 + 1)
    assert not table.apply(1, 60, T0 + 5)
    assert table.apply(1, 60, T0 + 5.1)


def test_set_replaces_delete_removes():
    table = table_with(1, 'pktps', [('drop', 10, 1)])
    assert table.apply(1, 60, T0)
    assert not table.apply(1, 60, T0)
    table.set(1, 'pktps', [('drop', 10, 1)], now=T0)
    assert table.stats(1, now=T0)['packet_in_count'] == 0
    assert table.apply(1, 60, T0)                     # a full bucket again
    assert 1 in table and len(table) == 1
    assert table.delete(1) and not table.delete(1)
    assert table.stats(1) is None and 1 not in table


def test_stats_report_config_and_duration():
    table = table_with(5, 'kbps', [('drop', 500, None), ('dscp_remark', 200, 30)])
    stats = table.stats(5, now=T0 + 2.5)
    assert stats['duration'] == 2.5 and stats['unit'] == 'kbps'
    assert [(b['kind'], b['rate'], b['burst']) for b in stats['bands']] == [
        ('drop', 500, 500), ('dscp_remark', 200, 30)]


def test_meter_without_bands_passes_and_counts():
    table = table_with(6, 'pktps', [])
    assert all(table.apply(6, 100, T0 + i) for i in range(5))
    assert table.stats(6, now=T0)['packet_in_count'] == 5


@pytest.mark.parametrize('unit, bands', [
    ('bps', [('drop', 1, None)]),
    ('kbps', [('police', 1, None)]),
    ('kbps', [('drop', 0, None)]),
    ('kbps', [('drop', -5, None)]),
    ('kbps', [('drop', '10', None)]),
    ('kbps', [('drop', True, None)]),
    ('kbps', [('drop', 10, -1)]),
    ('kbps', [('drop', 10, '1')]),
    ('kbps', [('drop', 10)]),
    ('kbps', [['drop', 10, None]]),
])
def test_set_rejects_bad_config(unit, bands):
    table = table_with(1, 'pktps', [('drop', 10, 1)])
    with pytest.raises(ValueError) as err:
        table.set(1, unit, bands, now=T0)
    assert '\n' not in str(err.value)
    assert table.stats(1, now=T0)['unit'] == 'pktps'       # unchanged
