"""Received actions of the sim bridge: what is accepted, what is kept, what a step applies.

Pure Python + numpy. The bridge keeps the newest accepted ``command`` and ``base_action``
(one :class:`ActionSlot` each). An offered action is accepted only for the running episode
and a step in the window: lockstep, the current step; realtime, the current step or up to
``max_command_age_steps`` before it (zero-order hold). Every other one is rejected and
counted, and never reaches the simulator:

* ``malformed``: undecodable, of the wrong length or with non-finite values;
* ``terminal``: an answer to the terminal observation o_T (``(episode, T)`` of the episode
  that just ended), which expects none;
* ``late`` (lockstep): for a step already taken, normal (command k usually arrives before
  base action k, and a re-sent observation is answered again);
* ``stale``: another episode, a step outside the window (one not observed yet: an answer
  stamped ahead of its observation), or older than the one held.

A rejected action changes nothing: it clears no slot and replaces no valid action.
Which action a step applies (:meth:`ActionIntake.choose`): the fresh command, else the
fresh base action (fallback), else zero (fallback).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from rpl_sim_bridge.episode_book import Counters, EpisodeBook


def check_payload(values: np.ndarray, dim: int) -> str | None:
    """Why a received payload cannot be used, or None if it can.

    Args:
        values: Received payload, expected shape (dim,).
        dim: Expected length.
    """
    if values.shape != (dim,):
        return f'expected {dim} values, got shape {values.shape}'
    if not np.isfinite(values).all():
        return f'non-finite values {values.tolist()}'
    return None


class Source(enum.Enum):
    """Where the action applied at a step came from."""

    COMMAND = 'command'  # the command of this step
    HELD = 'held'  # realtime: a fresh command of an earlier step (zero-order hold)
    BASE = 'base'  # fallback: the base action (no usable command)
    ZERO = 'zero'  # fallback: the safe zero action (nothing usable)


class Rejection(NamedTuple):
    """A message that was not accepted.

    Attributes:
        kind: 'malformed', 'terminal', 'late' or 'stale' (see the module docstring);
            'late' and 'terminal' are expected, counted and not logged.
        reason: One sentence for the log.
    """

    kind: str
    reason: str


class ActionSlot:
    """The newest accepted action of one topic: (episode, step, values, arrival time, s)."""

    __slots__ = ('episode', 'step', 'values', 'arrived')

    def __init__(self, action_dim: int) -> None:
        self.episode = -1
        self.step = -1
        self.values = np.zeros(action_dim)  # (action_dim,)
        self.arrived = 0.0

    def clear(self) -> None:
        """Hold nothing (a new episode starts)."""
        self.episode = -1
        self.step = -1

    def store(self, episode: int, step: int, values: np.ndarray, now: float) -> None:
        """Keep an accepted action (values copied)."""
        self.episode, self.step, self.arrived = episode, step, now
        self.values[:] = values


class ActionIntake:
    """The command and base action slots and the rules that fill them.

    Args:
        action_dim: Length of an action.
        book: The running episode (its id, step, end and terminal observation).
        counters: Run totals; rejections are counted here.
        lockstep: Lockstep mode (else realtime).
        max_age_steps: Realtime: actions for steps ``k - max_age_steps .. k`` are fresh.
    """

    def __init__(
        self,
        action_dim: int,
        book: EpisodeBook,
        counters: Counters,
        lockstep: bool,
        max_age_steps: int,
    ) -> None:
        self.action_dim = action_dim
        self.command = ActionSlot(action_dim)
        self.base = ActionSlot(action_dim)
        self._book, self._counters = book, counters
        self._lockstep = lockstep
        self._max_age = 0 if lockstep else max_age_steps
        self._zero = np.zeros(action_dim)

    def clear(self) -> None:
        """Forget both actions (a new episode starts)."""
        self.command.clear()
        self.base.clear()

    def reject_malformed(self, what: str, reason: str) -> Rejection:
        """Count a message that could not even be decoded; returns the rejection."""
        self._counters.rejected_malformed += 1
        return Rejection('malformed', f'{what}: {reason}')

    def offer(
        self, slot: ActionSlot, what: str, episode: int, step: int, values: np.ndarray, now: float
    ) -> Rejection | None:
        """Accept an action into ``slot`` (:attr:`command` or :attr:`base`) or reject it.

        Args:
            slot: Where it goes if accepted.
            what: 'command' or 'base action', for the reason.
            episode: Its episode id.
            step: Its step index.
            values: Its payload, (action_dim,).
            now: Arrival time, s.

        Returns:
            None if accepted, else the :class:`Rejection` (already counted).
        """
        problem = check_payload(values, self.action_dim)
        if problem is not None:
            return self.reject_malformed(f'{what} (episode {episode}, step {step})', problem)
        book, counters = self._book, self._counters
        if (episode, step) == book.terminal_key:
            counters.terminal_answers += 1
            return Rejection(
                'terminal',
                f'{what} for the terminal observation (episode {episode}, step {step}): '
                'none is expected',
            )
        if self._lockstep and book.already_taken(episode, step):
            if slot is self.base:
                counters.late_base += 1
            else:
                counters.late_commands += 1
            return Rejection('late', f'{what} for (episode {episode}, step {step}) came late')
        lo = book.step - self._max_age
        if not book.finished and episode == book.episode and step > book.step:
            counters.rejected_stale += 1  # no node can answer an observation not yet sent
            return Rejection(
                'stale',
                f'{what} for (episode {episode}, step {step}) is for a step the bridge has not '
                f'observed yet (it is at step {book.step}): an answer must carry the episode '
                'and step of the observation it answers (one stamped ahead is applied a step '
                'late)',
            )
        if book.finished or episode != book.episode or not lo <= step <= book.step:
            counters.rejected_stale += 1
            if slot is self.base and not book.finished and episode <= book.episode:
                counters.behind_base += 1  # an earlier step's: its sender falls behind
            return Rejection(
                'stale',
                f'{what} for (episode {episode}, step {step}) does not match the bridge at '
                f'(episode {book.episode}, step {book.step})',
            )
        if slot.episode == episode and step < slot.step:
            counters.rejected_stale += 1  # realtime: an older one than already held
            return Rejection('stale', f'{what} for step {step} is older than step {slot.step}')
        slot.store(episode, step, values, now)
        return None

    def is_current(self, slot: ActionSlot) -> bool:
        """``slot`` holds the action of the current step."""
        return slot.episode == self._book.episode and slot.step == self._book.step

    def choose(self) -> tuple[np.ndarray, Source]:
        """The action the current step applies and where it comes from.

        Returns:
            Action (action_dim,) (an internal buffer: copy it to keep it) and its source.
        """
        command = self.command
        if self._fresh(command):
            held = command.step < self._book.step
            return command.values, Source.HELD if held else Source.COMMAND
        if self._fresh(self.base):
            return self.base.values, Source.BASE
        return self._zero, Source.ZERO

    def _fresh(self, slot: ActionSlot) -> bool:
        book = self._book
        return slot.episode == book.episode and book.step - self._max_age <= slot.step <= book.step
