"""Which answer each step got: other answers to the same steps are a second stack.

Pure Python. A stack started in a namespace where another already runs shares its topics:
its controller and residual node answer the other stack's observations too, and the other
sim bridge applied whichever command came first (one run measured 205 of its 2000 commands
from the intruder, 6 of 40 episodes changed, exit 0). The count of publishers cannot tell
this apart from a respawned node whose old endpoints linger. The nodes answer a repeated
observation with the same message, so a step answered twice with *different* messages (tag
and values) had two answerers. One such step can still be a respawn (the old node answered
the step and died; the new one, its state reset, answered the sim's re-send); a second stack
whose answers differ does so at every step, so it takes ``CONFLICTS`` of the last
``KEPT_STEPS`` steps. (Two stacks that answer identically change nothing this can see, nor
any episode.)
"""

from __future__ import annotations

import collections

KEPT_STEPS = 64  # steps remembered per topic
CONFLICTS = 3  # of those, steps answered differently before it counts as a second stack


class AnswerLedger:
    """The first answer to each of the last ``KEPT_STEPS`` steps on one topic."""

    def __init__(self) -> None:
        self._by_step: collections.OrderedDict[tuple[int, int], bytes]
        self._by_step = collections.OrderedDict()
        self._conflicts: set[tuple[int, int]] = set()

    def second_answerer(self, key: tuple[int, int], answer: bytes) -> bool:
        """Note ``answer`` (the message's tag and values) to step ``key``; True once
        ``CONFLICTS`` of the kept steps were answered differently."""
        first = self._by_step.setdefault(key, answer)
        self._by_step.move_to_end(key)
        while len(self._by_step) > KEPT_STEPS:
            old, _ = self._by_step.popitem(last=False)
            self._conflicts.discard(old)  # a respawn long ago is forgotten
        if first != answer:
            self._conflicts.add(key)
        return len(self._conflicts) >= CONFLICTS
