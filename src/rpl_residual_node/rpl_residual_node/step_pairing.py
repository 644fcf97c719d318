"""Step pairing: an observation and a base action meet by ``(episode, step)``.

Pure Python + numpy. Only the bookkeeping of halves lives here; what is decided for a pair
is :mod:`rpl_residual_node.decision`'s, and :class:`rpl_residual_node.mixer.ResidualMixer`
composes the two.

Observations and base actions arrive on two topics, each in order (one reliable writer per
topic), but in any order relative to each other. A pair is handed out exactly once per
``(episode, step)`` as soon as both halves are there. Because each topic is ordered, an
observation for a newer step means the observation of an older pending base action will
never come: that base action is dropped (and likewise for observations). A half waiting
longer than ``sync_timeout_s`` is dropped too, and so is the oldest step when more than
``max_pending`` wait. An observation for an *older* key than the last observation seen
means the sim bridge restarted: all state is cleared.

Re-sent observations. Before its first step the sim bridge re-publishes observation (0, 0)
until its command arrives (a handshake). An observation repeated for a step that was
already decided, with the same values, is answered with that step's Decision again (the
same object; counted as ``resent_decision``). A repeated base action only counts as a
duplicate. A repeated key with *other* observation values is a sim bridge that restarted
at that step: all state is cleared.

The terminal observation o_T (step T after an episode's last step, see
:func:`rpl_interfaces.contract.is_terminal`) is not a step: :meth:`StepPairing.add_terminal`
only notes its key (counted as ``terminal_observation``); nothing waits for it, nothing is
dropped or cleared, and a base action for that key (a controller that answered o_T) is
dropped (``dropped_base_action_for_terminal``): no command is ever made for o_T.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from rpl_residual_node.decision import Decision

# Reasons for dropping a half pair (no Decision for that step).
BASE_WITHOUT_OBSERVATION = 'dropped_base_action_without_observation'
OBSERVATION_WITHOUT_BASE = 'dropped_observation_without_base_action'
SYNC_TIMEOUT = 'dropped_sync_timeout'
DUPLICATE = 'dropped_duplicate'
STREAM_RESTART = 'stream_restart'
# A repeated observation of a decided step, answered with the same Decision again.
RESENT = 'resent_decision'
# The terminal observation o_T: noted, never paired (not a drop, not a fallback).
TERMINAL = 'terminal_observation'
BASE_FOR_TERMINAL = 'dropped_base_action_for_terminal'

Key = tuple[int, int]  # (episode, step)


class Pair(NamedTuple):
    """Both halves of one step, ready to be decided.

    Attributes:
        key: ``(episode, step)``.
        observation: Observation fields, shape (obs_dim,).
        goal: Goal fields, shape (goal_dim,).
        base: Base action, shape (action_dim,).
        fields: The base action's field names.
        previous: The latest observation of the same episode received before this step's
            (None at its start), whether or not its own step was paired.
    """

    key: Key
    observation: np.ndarray
    goal: np.ndarray
    base: np.ndarray
    fields: tuple[str, ...]
    previous: np.ndarray | None


class _Decided(NamedTuple):
    """A decided step: its Decision and the observation it was made from."""

    decision: Decision
    observation: np.ndarray  # (obs_dim,)
    goal: np.ndarray  # (goal_dim,)


class _Pending:
    """One step's halves while waiting for the other one."""

    __slots__ = ('arrived_s', 'base', 'fields', 'goal', 'observation', 'previous')

    def __init__(self, arrived_s: float) -> None:
        self.arrived_s = arrived_s
        self.observation: np.ndarray | None = None
        self.previous: np.ndarray | None = None
        self.goal: np.ndarray | None = None
        self.base: np.ndarray | None = None
        self.fields: tuple[str, ...] = ()


class StepPairing:
    """Pending halves, decided steps and the stream's order, by ``(episode, step)``.

    Args:
        counts: Counter the drop reasons above are counted in (shared with the mixer).
        clock: Monotonic time source in seconds.
        sync_timeout_s: How long a half waits for its partner.
        max_pending: Most steps kept waiting for their partner.
    """

    def __init__(
        self,
        counts: collections.Counter[str],
        clock: Callable[[], float],
        sync_timeout_s: float,
        max_pending: int,
    ) -> None:
        self._counts = counts
        self._clock = clock
        self._sync_timeout_s = sync_timeout_s
        self._max_pending = max_pending
        self._pending: dict[Key, _Pending] = {}
        self._decided: collections.OrderedDict[Key, _Decided] = collections.OrderedDict()
        self._last_observation_key: Key | None = None
        # The last observation received (episode, step, obs): the previous frame of the next
        # one (it was the last *paired* one, several steps old where steps went unpaired).
        self._last_observation: tuple[int, int, np.ndarray] | None = None
        self._terminal: collections.OrderedDict[Key, None] = collections.OrderedDict()

    def add_observation(
        self, key: Key, observation: np.ndarray, goal: np.ndarray
    ) -> Pair | Decision | None:
        """Take a finite observation (kept as given: pass a copy).

        Returns:
            The step's Pair if its base action was there, the earlier Decision if this step
            was decided from the same observation (a re-sent observation), else None.
        """
        if self._last_observation_key is not None and key < self._last_observation_key:
            self._restart()
        self._last_observation_key = key
        decided = self._decided.get(key)
        if decided is not None:
            if _same(decided.observation, observation) and _same(decided.goal, goal):
                self._counts[RESENT] += 1
                return decided.decision
            self._restart()  # same step, other values: a new sim bridge run
        self._drop_older(key, keep='observation', reason=BASE_WITHOUT_OBSERVATION)
        entry = self._entry(key)
        if entry.observation is None:  # a re-send of a pending step keeps its previous frame
            entry.previous = self._previous_observation(key)
        entry.observation = observation
        entry.goal = goal
        self._last_observation = (key[0], key[1], observation)
        return self._pair(key, entry)

    def add_terminal(self, key: Key) -> None:
        """Note the terminal observation o_T of an episode (``key`` = (episode, T)).

        It is not a step: no Pair, no Decision. A base action already waiting under that key
        (a controller that answered o_T) is dropped, and so is any later one.
        """
        self._counts[TERMINAL] += 1
        self._terminal[key] = None
        while len(self._terminal) > self._max_pending:
            self._terminal.popitem(last=False)
        entry = self._pending.get(key)
        if entry is not None and entry.observation is None:
            del self._pending[key]
            self._counts[BASE_FOR_TERMINAL] += 1

    def add_base_action(
        self, key: Key, action: np.ndarray, fields: tuple[str, ...]
    ) -> Pair | None:
        """Take a valid base action (kept as given: pass a copy).

        Returns:
            The step's Pair if its observation was there, else None (also for a duplicate,
            and for a base action answering a terminal observation).
        """
        if key in self._terminal:
            self._counts[BASE_FOR_TERMINAL] += 1
            return None
        if key in self._decided:
            self._counts[DUPLICATE] += 1
            return None
        self._drop_older(key, keep='base', reason=OBSERVATION_WITHOUT_BASE)
        entry = self._entry(key)
        entry.base = action
        entry.fields = tuple(fields)
        return self._pair(key, entry)

    def decided(self, pair: Pair, decision: Decision) -> None:
        """Remember a pair's Decision, for a re-sent observation of its step."""
        self._decided[pair.key] = _Decided(decision, pair.observation, pair.goal)
        while len(self._decided) > 4 * self._max_pending:
            self._decided.popitem(last=False)

    def expire(self) -> int:
        """Drop halves that waited longer than ``sync_timeout_s``; return how many."""
        now = self._clock()
        stale = [
            key
            for key, entry in self._pending.items()
            if now - entry.arrived_s > self._sync_timeout_s
        ]
        for key in stale:
            del self._pending[key]
            self._counts[SYNC_TIMEOUT] += 1
        return len(stale)

    @property
    def pending(self) -> int:
        """Number of steps waiting for their partner."""
        return len(self._pending)

    def _restart(self) -> None:
        self._pending.clear()
        self._decided.clear()
        self._terminal.clear()
        self._last_observation = None
        self._counts[STREAM_RESTART] += 1

    def _entry(self, key: Key) -> _Pending:
        self.expire()
        entry = self._pending.get(key)
        if entry is None:
            entry = self._pending[key] = _Pending(self._clock())
            while len(self._pending) > self._max_pending:
                oldest = min(self._pending)
                del self._pending[oldest]
                self._counts[SYNC_TIMEOUT] += 1
        return entry

    def _drop_older(self, key: Key, keep: str, reason: str) -> None:
        """Drop pending steps older than ``key`` that lack the half on ``keep``'s topic.

        That topic is ordered, so a message for ``key`` there means the missing half of any
        older step will never arrive.
        """
        for old in [k for k in self._pending if k < key]:
            entry = self._pending[old]
            missing = entry.observation is None if keep == 'observation' else entry.base is None
            if missing:
                del self._pending[old]
                self._counts[reason] += 1

    def _pair(self, key: Key, entry: _Pending) -> Pair | None:
        if entry.base is None or entry.observation is None or entry.goal is None:
            return None
        del self._pending[key]
        return Pair(key, entry.observation, entry.goal, entry.base, entry.fields, entry.previous)

    def _previous_observation(self, key: Key) -> np.ndarray | None:
        """The latest observation received before ``key``'s, if of the same episode and an
        earlier step (None at episode start)."""
        if self._last_observation is None:
            return None
        episode, step, observation = self._last_observation
        if episode == key[0] and step < key[1]:
            return observation
        return None


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shapes and values (NaN equal to NaN: a re-sent bad observation is the same)."""
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))
