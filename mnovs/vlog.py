"""Rate-limited logging, as OVS's VLOG_RATE_LIMIT_INIT: a flood never floods the log.

Anything an outsider can trigger per packet or per message (a malformed
frame, a failing upcall, a bad control request) logs through a
RateLimitedLog: at most `burst` lines per `interval` seconds for that event
kind. The lines held back are counted, and the next line that gets through
says how many there were, as OVS's "Dropped N log messages in last S
seconds" does. Counting drops is the job of the counters (dpctl/show); the
log only has to say that something happens, and what.
"""

import time


class RateLimitedLog:
    """One event kind's log lines, at most `burst` per `interval` seconds.

    Args:
        logger: the logging.Logger to write to.
        burst: lines allowed per interval.
        interval: seconds.
    """

    __slots__ = ('logger', 'burst', 'interval', 'window_start', 'in_window', 'suppressed')

    def __init__(self, logger, burst=5, interval=60.0):
        self.logger = logger
        self.burst = burst
        self.interval = interval
        self.window_start = float('-inf')
        self.in_window = 0
        self.suppressed = 0

    def _admit(self, now):
        if now - self.window_start >= self.interval:
            self.window_start = now
            self.in_window = 0
        if self.in_window >= self.burst:
            self.suppressed += 1
            return False
        self.in_window += 1
        return True

    def _log(self, method, msg, args, now, **kwargs):
        if now is None:
            now = time.monotonic()
        if not self._admit(now):
            return
        if self.suppressed:
            msg += ' (%d similar messages suppressed)'
            args += (self.suppressed,)
            self.suppressed = 0
        method(msg, *args, **kwargs)

    def warning(self, msg, *args, now=None):
        self._log(self.logger.warning, msg, args, now)

    def info(self, msg, *args, now=None):
        self._log(self.logger.info, msg, args, now)

    def exception(self, msg, *args, now=None):
        """Log at ERROR with the traceback of the exception being handled."""
        self._log(self.logger.error, msg, args, now, exc_info=True)
