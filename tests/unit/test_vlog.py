"""RateLimitedLog: a flood of one event kind logs a few lines and counts the rest."""

import logging

from mnovs.vlog import RateLimitedLog


def test_burst_then_silence_then_a_line_that_counts_what_was_held_back(caplog):
    limited = RateLimitedLog(logging.getLogger('test.vlog'), burst=3, interval=60.0)
    with caplog.at_level(logging.INFO, logger='test.vlog'):
        for n in range(100):
            limited.warning('bad frame %d', n, now=10.0)
        assert [r.getMessage() for r in caplog.records] == [
            'bad frame 0', 'bad frame 1', 'bad frame 2']
        limited.info('bad frame %d', 100, now=70.0)      # a new interval
    assert caplog.records[-1].getMessage() == 'bad frame 100 (97 similar messages suppressed)'
    assert caplog.records[-1].levelno == logging.INFO


def test_exception_keeps_the_traceback(caplog):
    limited = RateLimitedLog(logging.getLogger('test.vlog'), burst=1)
    with caplog.at_level(logging.ERROR, logger='test.vlog'):
        try:
            1 / 0
        except ZeroDivisionError:
            limited.exception('upcall failed')
    (record,) = caplog.records
    assert record.exc_info[0] is ZeroDivisionError
