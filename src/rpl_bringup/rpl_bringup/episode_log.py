"""Tally of what a running stack reports: episode results and control-path messages.

Pure Python + numpy (no ROS): :mod:`rpl_bringup.episode_monitor_node` feeds it from the
``episode``, ``observation``, ``command`` and ``base_action`` topics and writes
:meth:`EpisodeLog.to_dict` as JSON; ``rpl demo`` and the integration tests read that file
back.

The monitor does not know the task. The action messages' names are the stream's by the rule
of :mod:`rpl_interfaces.action_names` (the valid names most of them carry, the first seen on
a tie: what the bag reader takes from a bag of the same run); every message is tallied under
its names and the commands and base actions reported are those under the stream's names.
The terminal observation o_T (``frame_id`` ``<task>/terminal``, after each episode's last
step) is not a step: it is counted apart (``terminal_observations``), not as an observation.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from rpl_interfaces.action_names import ActionNameVote
from rpl_interfaces.codec import StampedVector
from rpl_interfaces.contract import EpisodeResult, is_terminal
from rpl_interfaces.output_files import json_bytes, json_float, write_whole


class EpisodeRecord(NamedTuple):
    """One finished episode as the sim bridge reported it: the fields of
    :class:`rpl_interfaces.contract.EpisodeResult`, then the message's time stamp.

    Attributes:
        episode, success, final_distance, episode_return, steps, fallback_base,
            fallback_zero: As in :class:`~rpl_interfaces.contract.EpisodeResult`.
        stamp_s: Wall-clock time the bridge published the result (header stamp), s.
    """

    episode: int
    success: bool
    final_distance: float
    episode_return: float
    steps: int
    fallback_base: int
    fallback_zero: int
    stamp_s: float = 0.0

    @classmethod
    def from_payload(cls, episode: int, values: np.ndarray, stamp_ns: int = 0) -> EpisodeRecord:
        """Build from an ``episode`` message payload, (len(EPISODE_FIELDS),) in that order
        (read by :meth:`rpl_interfaces.contract.EpisodeResult.from_vector`).

        Raises:
            ValueError: The payload has the wrong length.
        """
        return cls(*EpisodeResult.from_vector(episode, values), stamp_s=stamp_ns * 1e-9)


@dataclasses.dataclass
class ControlTally:
    """Counts of one control-path topic (``observation``, ``command`` or ``base_action``).

    Attributes:
        count: Messages received.
        tags: Messages per ``header.frame_id`` (sender tag).
        non_finite: Messages with a NaN or infinite payload value.
        max_abs: Largest absolute finite payload value seen.
    """

    count: int = 0
    tags: dict[str, int] = dataclasses.field(default_factory=dict)
    non_finite: int = 0
    max_abs: float = 0.0

    def add(self, tag: str, values: np.ndarray) -> None:
        """Count one message with payload ``values``, shape (dim,)."""
        self.count += 1
        self.tags[tag] = self.tags.get(tag, 0) + 1
        values = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(values)
        if not finite.all():
            self.non_finite += 1
        if finite.any():
            self.max_abs = max(self.max_abs, float(np.abs(values[finite]).max()))


class Summary(NamedTuple):
    """Aggregate of the episodes so far.

    Attributes:
        episodes: Episodes reported.
        success_rate: Fraction of successful episodes (nan with no episode).
        ci95: Wilson 95 % interval of the success rate (lo, hi).
        mean_final_distance: Mean block-goal distance after the last step, m.
        steps: Steps run in all.
        fallback_base: Steps that applied the base action.
        fallback_zero: Steps that applied the zero action.
        mean_return: Mean episode return (sum of the task's rewards; nan with no episode):
            the result of a fixed-goal task with a dense reward, such as mbrl_pusher.
    """

    episodes: int
    success_rate: float
    ci95: tuple[float, float]
    mean_final_distance: float
    steps: int
    fallback_base: int
    fallback_zero: int
    mean_return: float = math.nan  # (absent from JSON files written before it)


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a success rate (95 % for z = 1.96); (0, 1) with no trial."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


KEPT_EPISODES = 1000
"""Episode records kept (those that arrived last); the summary counts every episode. A monitor
left running for days kept every record and rewrote them all every second: 212 bytes and
~5 kB of memory per episode, a write of 0.5 s after a day of 30 episodes a minute."""

ACTION_TALLIES = ('commands', 'base_actions')
"""The action topics' tallies (``command``, ``base_action``) by their key in the JSON."""


class EpisodeLog:
    """Everything the monitor has seen; episodes are keyed by id (a repeat replaces).

    Attributes:
        episodes: Results by episode id, the ``KEPT_EPISODES`` that arrived last (a sim
            bridge restarted under the monitor counts from 0 again: its records are kept);
            the summary is over every episode, also those no longer kept. A repeated id
            replaces its record while that is kept (a latched result heard again), and counts
            as a new episode once it is not.
        observations: The step observations o_0 .. o_{T-1} (not o_T).
        terminal_observations: Terminal observations o_T seen.
        action_names: The vote on the action messages' names (both action topics).
    """

    def __init__(self) -> None:
        self.episodes: collections.OrderedDict[int, EpisodeRecord] = collections.OrderedDict()
        self._totals = np.zeros(len(_TOTALS))  # sums over every episode, by _TOTALS
        self._count = 0  # episodes in the totals
        self.dropped = 0  # episodes counted but no longer kept as records
        self.observations = ControlTally()
        self.terminal_observations = 0
        self.action_names = ActionNameVote()
        self._actions: dict[str, dict[tuple[str, ...], ControlTally]] = {
            kind: {} for kind in ACTION_TALLIES
        }

    def add_episode(self, record: EpisodeRecord) -> None:
        """Store one episode result (a repeat of a kept id replaces it)."""
        old = self.episodes.get(record.episode)
        if old is None:
            self._count += 1
        else:
            self._totals -= _totals_of(old)
        self._totals += _totals_of(record)
        self.episodes[record.episode] = record
        self.episodes.move_to_end(record.episode)
        while len(self.episodes) > KEPT_EPISODES:
            self.episodes.popitem(last=False)  # the earliest to arrive
            self.dropped += 1

    def add_observation(self, vec: StampedVector) -> None:
        """Count one decoded ``observation`` message (o_T apart: it is not a step)."""
        if is_terminal(vec.tag):
            self.terminal_observations += 1
        else:
            self.observations.add(vec.tag, vec.values)

    def add_action(self, kind: str, names: tuple[str, ...], vec: StampedVector) -> None:
        """Count one decoded action message of ``kind`` ('commands' or 'base_actions')
        carrying payload ``names``; names with a problem are not counted."""
        if self.action_names.add(names):
            self._actions[kind].setdefault(tuple(names), ControlTally()).add(vec.tag, vec.values)

    def action_tally(self, kind: str) -> ControlTally:
        """The tally of ``kind`` under the stream's action names (empty before any)."""
        fields = self.action_names.fields
        return self._actions[kind].get(fields, ControlTally()) if fields else ControlTally()

    @property
    def commands(self) -> ControlTally:
        """``command`` messages under the stream's action names."""
        return self.action_tally('commands')

    @property
    def base_actions(self) -> ControlTally:
        """``base_action`` messages under the stream's action names."""
        return self.action_tally('base_actions')

    def summary(self) -> Summary:
        """Success rate with its interval, mean final distance, fallback totals, mean
        return."""
        n = self._count
        total = dict(zip(_TOTALS, self._totals.tolist(), strict=True))
        wins = round(total['success'])
        return Summary(
            episodes=n,
            success_rate=wins / n if n else math.nan,
            ci95=wilson_interval(wins, n),
            mean_final_distance=total['final_distance'] / n if n else math.nan,
            steps=round(total['steps']),
            fallback_base=round(total['fallback_base']),
            fallback_zero=round(total['fallback_zero']),
            mean_return=total['episode_return'] / n if n else math.nan,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (see :func:`summary_from_dict` for reading it back)."""
        return {
            'summary': self.summary()._asdict(),
            'episodes': [r._asdict() for _, r in sorted(self.episodes.items())],
            'episodes_not_kept': self.dropped,  # the earliest, in the summary only
            'observations': dataclasses.asdict(self.observations),
            'terminal_observations': self.terminal_observations,
            'action_fields': list(self.action_names.fields or ()),
            'commands': dataclasses.asdict(self.commands),
            'base_actions': dataclasses.asdict(self.base_actions),
        }

    def write_json(self, path: str) -> None:
        """Write :meth:`to_dict` whole or not at all (readers never see half a file; a
        failed write, a full disk, keeps the last complete one and raises an OSError
        naming the file)."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        write_whole(path, json_bytes(self.to_dict(), indent=1))


_TOTALS = (
    'success',
    'final_distance',
    'episode_return',
    'steps',
    'fallback_base',
    'fallback_zero',
)


def _totals_of(record: EpisodeRecord) -> np.ndarray:
    """The record's values that the summary sums, in ``_TOTALS`` order."""
    return np.array([float(getattr(record, name)) for name in _TOTALS])


def summary_line(summary: Summary) -> str:
    """One line for the end of a run: success rate with its interval, mean final distance,
    mean return (a fixed-goal task's result) and the fallback steps (base action or zero
    instead of a command), never left to WARN lines alone."""
    if not summary.episodes:
        return 'no episode finished'
    lo, hi = summary.ci95
    fallbacks = summary.fallback_base + summary.fallback_zero
    share = fallbacks / summary.steps if summary.steps else 0.0
    return (
        f'{summary.episodes} episodes: success rate {summary.success_rate:.2f} '
        f'(95 % CI {lo:.2f}-{hi:.2f}), mean final distance '
        f'{summary.mean_final_distance:.3f} m, mean return {summary.mean_return:.2f}, '
        f'fallbacks base {summary.fallback_base} '
        f'zero {summary.fallback_zero} in {summary.steps} steps ({100 * share:.1f} %)'
    )


def summary_from_dict(data: Mapping[str, Any]) -> Summary:
    """The :class:`Summary` stored by :meth:`EpisodeLog.to_dict`."""
    s = dict(data['summary'])
    s['ci95'] = tuple(json_float(v) for v in s['ci95'])
    for key, value in s.items():  # a mean over no episode is null in the file: NaN again
        if value is None:
            s[key] = json_float(value)
    return Summary(**s)
