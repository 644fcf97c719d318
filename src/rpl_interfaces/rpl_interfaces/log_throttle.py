"""When a node may log a repeated problem: one line per reason and period (pure, no ROS).

A node that rejects a message or falls back at every step at 25 Hz must not flood its log.
Each reason gets its first line at once, then at most one line per ``period_s``; the lines
held back in between are counted and reported with the next line.

Example::

    log, held = throttle.should_log(time.monotonic(), 'malformed_observation')
    if log:
        more = f' ({held} more since the last line)' if held else ''
        logger.warning(f'dropped an observation{more}')
"""

from __future__ import annotations

import collections


class LogThrottle:
    """Lets one log line per reason through every ``period_s`` and counts the ones held back.

    Args:
        period_s: Minimum time between two lines of one reason, s.
    """

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._last: dict[str, float] = {}
        self._held: collections.Counter[str] = collections.Counter()

    def should_log(self, now: float, reason: str = '') -> tuple[bool, int]:
        """Whether a line of ``reason`` may be logged at ``now``.

        Args:
            now: Current time on any monotonic clock, s.
            reason: What the line is about; each reason is throttled on its own.

        Returns:
            ``(log, held)``: ``log`` is True if the line may be logged (then ``held`` is the
            number of lines of this reason held back since its last line, else 0).
        """
        last = self._last.get(reason)
        if last is not None and now - last < self.period_s:
            self._held[reason] += 1
            return False, 0
        self._last[reason] = now
        return True, self._held.pop(reason, 0)
