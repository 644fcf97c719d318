"""The lockstep pacing rule (``lockstep_max_rate_hz``), pure and clock-injected.

In lockstep the loop runs as fast as the nodes answer. ``lockstep_max_rate_hz > 0`` caps it:
after a step, the next observation is published no sooner than ``1 / lockstep_max_rate_hz``
seconds after the previous publication of an observation (a re-send counts too), which
leaves CPU to a trainer on the same machine. Meanwhile nothing else can step: every action
for the next step answers an observation not yet published.
"""

from __future__ import annotations

import math


class LockstepPacer:
    """When the next observation may be published (times in s, any monotonic clock)."""

    def __init__(self, max_rate_hz: float) -> None:
        """Args:
        max_rate_hz: Most observations per second; 0 = no limit.
        """
        if max_rate_hz < 0.0 or not math.isfinite(max_rate_hz):
            raise ValueError(f'max_rate_hz must be a finite number >= 0, got {max_rate_hz}')
        self.min_period_s = 1.0 / max_rate_hz if max_rate_hz else 0.0
        self._last_s = -math.inf  # nothing published yet: no wait

    @property
    def paces(self) -> bool:
        """Whether a limit is set (the node needs a timer for the paced publications)."""
        return self.min_period_s > 0.0

    def published(self, now: float) -> None:
        """An observation (first publication or re-send) is being published at ``now``."""
        self._last_s = now

    def wait_s(self, now: float) -> float:
        """How long (s) the next observation must still wait at ``now``; 0.0 = publish now."""
        return max(0.0, self._last_s + self.min_period_s - now)
