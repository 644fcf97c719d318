"""The (episode, step) index of control-path messages and the re-send rule.

Every control message carries its episode id and step index. A message may arrive more than
once: the sim bridge re-sends observation (0, 0) until the stack answers (start-up
handshake) and the nodes answer each copy again. The rule, shared by the bag reader
(:func:`rpl_bags.recorded.load_run`) and the trainer's live episode assembler
(:class:`rpl_trainer.assembler.EpisodeAssembler`):

* the first message of an (episode, step) is the one kept;
* a repeat with the same payload (NaN equal to NaN) and the same tag is a re-send: counted,
  not a problem;
* a repeat with another payload or tag is a conflict: the caller reports or skips it.

Pure Python + numpy.
"""

from __future__ import annotations

import enum

import numpy as np

from rpl_interfaces.codec import StampedVector


class Placed(enum.Enum):
    """What :func:`place` did with a message."""

    FIRST = 'first'  # the first of its (episode, step): stored
    RESENT = 'resent'  # the same message again: not stored
    CONFLICT = 'conflict'  # another message for a step already stored: not stored


def is_resend(first: StampedVector, again: StampedVector) -> bool:
    """Whether ``again`` repeats ``first`` (same payload, NaN equal to NaN, and same tag)."""
    return first.tag == again.tag and np.array_equal(first.values, again.values, equal_nan=True)


def place(steps: dict[int, StampedVector], vec: StampedVector) -> Placed:
    """Store ``vec`` in one episode's step index of one topic unless its step is there.

    Args:
        steps: Step index -> the kept message, for ``vec``'s episode and topic (updated).
        vec: The received message.

    Returns:
        :attr:`Placed.FIRST` (stored), :attr:`Placed.RESENT` or :attr:`Placed.CONFLICT`.
    """
    first = steps.get(vec.step)
    if first is None:
        steps[vec.step] = vec
        return Placed.FIRST
    return Placed.RESENT if is_resend(first, vec) else Placed.CONFLICT
