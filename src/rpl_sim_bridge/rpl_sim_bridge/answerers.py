"""Which node answered each step: two nodes answering the same steps is a second stack.

Pure Python. A stack started in a namespace where another already runs shares its topics:
its controller and residual node answer the other stack's observations too, and the other
sim bridge applied whichever command came first (one run measured 205 of its 2000 commands
from the intruder, 6 of 40 episodes changed, exit 0). The count of publishers cannot tell
this apart from a respawned node whose old endpoints linger; two different publishers
answering the very same ``(episode, step)`` are two nodes. One such step can still be a
respawn (the old node answered the step, died, and the new one answered the sim's re-sent
observation); a second stack answers every step, so it takes ``CONFLICTS`` steps.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any

KEPT_STEPS = 64  # steps remembered per topic
CONFLICTS = 3  # steps answered by two publishers before it counts as a second stack


class AnswerLedger:
    """The publisher that answered each of the last ``KEPT_STEPS`` steps on one topic."""

    def __init__(self) -> None:
        self._by_step: collections.OrderedDict[tuple[int, int], bytes]
        self._by_step = collections.OrderedDict()
        self._conflicts: set[tuple[int, int]] = set()

    def second_answerer(self, key: tuple[int, int], info: Mapping[str, Any] | None) -> bool:
        """Note that the publisher in rclpy ``MessageInfo`` ``info`` answered step ``key``;
        True once ``CONFLICTS`` steps were each answered by two publishers (no gid: False)."""
        gid = (info or {}).get('publisher_gid')
        if not isinstance(gid, Mapping) or gid.get('data') is None:
            return False
        data = bytes(gid['data'])
        first = self._by_step.setdefault(key, data)
        self._by_step.move_to_end(key)
        while len(self._by_step) > KEPT_STEPS:
            self._by_step.popitem(last=False)
        if first != data:
            self._conflicts.add(key)
        return len(self._conflicts) >= CONFLICTS
