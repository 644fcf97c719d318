"""The action field names of a stream: one rule for every reader of the action topics.

A stack's ``base_action``, ``residual`` and ``command`` messages carry the task's declared
action fields (``TaskSpec.action_fields``) after ``episode`` and ``step``; a reader that does
not know the task (the bag reader, the episode monitor) takes them from the messages. The
rule, :func:`stream_action_fields`: **the valid names that most action messages carry; on a
tie, those seen first**. Messages under other names are not the stream's (skipped, or not
counted).

Why the majority and not the first message: every real action message of a stack carries
the same names (the controller and the residual node publish under the task's fields), so
the stream's names are the ones nearly every message has. A stray message under other names
(another stack's, a probe's, a forged one, a node still on an old configuration) is a
minority wherever it comes; taken as the first message it would make every real message
after it "off the contract". A live reader applies the same rule to what it has seen so far
(:class:`ActionNameVote`) and keeps its counts per names, so once it has seen the messages a
bag holds it reports exactly what the bag reader reads from that bag. Names with a problem
(:func:`action_field_problem`: none, one repeated, an empty one) never win.

Pure Python: no rclpy, no numpy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def action_field_problem(names: Sequence[str]) -> str:
    """What is wrong with an action message's field names ('' if nothing): none, a repeated
    name, or an empty one."""
    names = tuple(names)
    if not names:
        return 'no action fields after episode, step'
    if len(set(names)) != len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        return f'action field names repeat: {repeated}'
    if '' in names:
        return 'an action field name is empty'
    return ''


class ActionNameVote:
    """The count of every valid names tuple seen, in first-seen order (see the module rule).

    Attributes:
        counts: Messages per valid names tuple, in the order the names were first seen.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, ...], int] = {}

    def add(self, names: Sequence[str]) -> bool:
        """Count one message's payload names; False (not counted) if they have a problem."""
        names = tuple(names)
        if action_field_problem(names):
            return False
        self.counts[names] = self.counts.get(names, 0) + 1
        return True

    @property
    def fields(self) -> tuple[str, ...] | None:
        """The stream's action names so far: most counted, first seen on a tie; None if no
        valid message was seen."""
        best: tuple[str, ...] | None = None
        for names, count in self.counts.items():  # first seen first: a tie keeps it
            if best is None or count > self.counts[best]:
                best = names
        return best


def stream_action_fields(names: Iterable[Sequence[str]]) -> tuple[str, ...] | None:
    """The action names of a stream whose messages carry ``names``, in arrival order.

    Returns:
        The valid names most messages carry, those seen first on a tie; None if no message
        has valid names.
    """
    vote = ActionNameVote()
    for one in names:
        vote.add(one)
    return vote.fields


__all__ = ['ActionNameVote', 'action_field_problem', 'stream_action_fields']
