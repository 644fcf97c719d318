"""Learning from the stack's own messages: recorded bags and live topics -> HER episodes.

The residual stack publishes, per step k of episode e, the ``observation`` (task
observation, achieved goal, desired goal), the base controller's ``base_action`` and the
executed ``command``; the sim bridge publishes one ``episode`` result after the last step.
This module turns those into the replay buffer's episodes for the RPL learner:

* the stored tanh-space action is the residual that explains the executed command,
  u = clip((command - base_action) / residual_scale, -1, 1)
  (:func:`rpl_trainer.residual.residual_explaining`), whatever produced the command;
* rewards are not stored: the HER sampler recomputes them with the task's pure reward
  function from the achieved goals;
* the sim bridge publishes no observation after an episode's last step (the next message
  is the result, then the next episode's step 0), so an episode of T steps gives T - 1
  transitions: o_0 .. o_{T-1} and the commands of steps 0 .. T-2.

:class:`EpisodeAssembler` matches live messages by (episode id, step index) and emits only
complete episodes; :func:`records_from_run` does the same for a bag read by
:func:`rpl_bags.recorded.load_run`; :class:`OfflineLearner` stores them and runs DDPG + HER
updates (the RPL burn-in, i.e. critic-only updates, included) and exports the actor;
:func:`save_learner` / :func:`load_learner` checkpoint it so that a trainer resumes exactly.

No rclpy here: the trainer node (``trainer_node.py``) only converts messages and calls this.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from rpl_bags.recorded import RecordedRun, load_run
from rpl_interfaces import contract, step_index
from rpl_interfaces.codec import StampedVector
from rpl_interfaces.params import describe
from rpl_trainer.checkpoint import (
    CheckpointError,
    learning_state,
    load_checkpoint,
    restore_learning_state,
    save_checkpoint,
)
from rpl_trainer.config import ParameterError, TrainConfig, config_differences, make_config
from rpl_trainer.ddpg import DDPGAgent, UpdateStats
from rpl_trainer.export import export_onnx
from rpl_trainer.her import BaseFn, EpisodeBatch, HerSampler, ReplayBuffer, RewardFn
from rpl_trainer.networks import Dims
from rpl_trainer.residual import residual_explaining

STEP_TOPICS = (contract.OBSERVATION, contract.BASE_ACTION, contract.COMMAND)
"""The per-step topics an episode needs (relative names)."""

# Why an episode was not learned from (keys of the skip counters).
INCOMPLETE = 'incomplete'  # a step of observation / base_action / command or the result missing
CONFLICTING = 'conflicting'  # one (episode, step) sent twice with different values
FALLBACK = 'fallback'  # the sim applied a fallback action: the command is not what ran
WRONG_LENGTH = 'wrong_length'  # not the task's episode length
SKIP_REASONS = (INCOMPLETE, CONFLICTING, FALLBACK, WRONG_LENGTH)


class EpisodeRecord(NamedTuple):
    """One complete episode of T steps as the stack published it (float64 arrays).

    Attributes:
        episode: Episode id (per sim bridge run).
        observation: Task observations o_0 .. o_{T-1}, (T, obs_dim).
        achieved_goal: Achieved goals at the same steps, (T, goal_dim) (block position, m,
            world frame for Fetch).
        desired_goal: Desired goal at every step, (T, goal_dim), m, world frame.
        base_action: Base controller actions, (T, action_dim), action units.
        command: Executed commands clip(base + residual, -1, 1), (T, action_dim).
        result: The sim bridge's episode result.
    """

    episode: int
    observation: np.ndarray
    achieved_goal: np.ndarray
    desired_goal: np.ndarray
    base_action: np.ndarray
    command: np.ndarray
    result: contract.EpisodeResult

    @property
    def steps(self) -> int:
        """Steps T of the episode."""
        return int(self.command.shape[0])


def stored_residual(command: np.ndarray, base_action: np.ndarray, scale: float) -> np.ndarray:
    """Tanh-space residual u = clip((command - base_action) / scale, -1, 1) to store.

    Args:
        command: Executed commands (batch, action_dim).
        base_action: Base actions of the same steps (batch, action_dim).
        scale: Residual scale (> 0), ``TrainConfig.residual_scale``.

    Returns:
        (batch, action_dim) float32 in [-1, 1].
    """
    if not scale > 0:
        raise ValueError(f'residual scale must be positive, got {scale}')
    return residual_explaining(np.asarray(command), np.asarray(base_action), scale)


def episode_batch(records: Sequence[EpisodeRecord], scale: float) -> EpisodeBatch:
    """HER buffer episodes (N, T - 1 transitions each) from N records of T steps.

    Raises:
        ValueError: No records, records of different lengths, or fewer than 2 steps.
    """
    if not records:
        raise ValueError('no episode records to convert')
    lengths = {r.steps for r in records}
    if len(lengths) != 1 or min(lengths) < 2:
        raise ValueError(f'records must all have the same length >= 2 steps, got {lengths}')
    stack = lambda name: np.stack([getattr(r, name) for r in records])  # noqa: E731
    command = stack('command')[:, :-1]  # (N, T - 1, action_dim)
    base = stack('base_action')[:, :-1]
    n, t, a = command.shape
    residual = stored_residual(command.reshape(n * t, a), base.reshape(n * t, a), scale)
    return EpisodeBatch(
        obs=stack('observation').astype(np.float32),  # (N, T, obs_dim)
        achieved_goal=stack('achieved_goal').astype(np.float32),  # (N, T, goal_dim)
        desired_goal=stack('desired_goal')[:, :-1].astype(np.float32),  # (N, T - 1, goal_dim)
        action=residual.reshape(n, t, a),
        executed=command.astype(np.float32),
    )


def _record(
    episode: int,
    layout: contract.ObservationLayout,
    observation: np.ndarray,
    base_action: np.ndarray,
    command: np.ndarray,
    result: contract.EpisodeResult,
) -> EpisodeRecord:
    return EpisodeRecord(
        episode=episode,
        observation=observation[:, layout.observation],
        achieved_goal=observation[:, layout.achieved_goal],
        desired_goal=observation[:, layout.desired_goal],
        base_action=base_action,
        command=command,
        result=result,
    )


def _check_layout(layout: contract.ObservationLayout) -> None:
    if layout.achieved_goal.stop - layout.achieved_goal.start != layout.goal_dim:
        raise ValueError(
            'observations without achieved_goal.* fields cannot be learned from (HER needs '
            f'the achieved goal); fields: {list(layout.fields)[:4]}...'
        )


@dataclasses.dataclass(frozen=True)
class TrainerNodeConfig:
    """Parameters of the trainer node (``rpl_trainer/trainer_node.py``)."""

    task: str = dataclasses.field(
        default='slippery_push', metadata=describe('Registered task the stack runs')
    )
    controller: str = dataclasses.field(
        default='reactive_push', metadata=describe('Base controller the stack runs')
    )
    namespaces: str = dataclasses.field(
        default=contract.DEFAULT_NAMESPACE,
        metadata=describe(
            'Comma-separated stack namespaces to learn from live (observation, base_action, '
            'command, episode); empty: bags only'
        ),
    )
    bags: str = dataclasses.field(
        default='', metadata=describe('Comma-separated bag paths to ingest at start')
    )
    model_path: str = dataclasses.field(
        default='',
        metadata=describe(
            'ONNX file to (re)write, replaced atomically (the residual node hot-reloads it); '
            'required'
        ),
    )
    export_every_updates: int = dataclasses.field(
        default=2000,
        metadata=describe('Export a new model every this many gradient steps', range=(1, 10**9)),
    )
    updates_per_step: float = dataclasses.field(
        default=0.1,
        metadata=describe('Gradient steps per ingested transition', range=(0.0, 1000.0)),
    )
    seed: int = dataclasses.field(default=0, metadata=describe('Seed', range=(0, 2**31)))
    train_overrides: str = dataclasses.field(
        default='',
        metadata=describe(
            'Comma-separated key=value TrainConfig overrides, e.g. '
            "'burn_in_window=500,target_update_interval=1'"
        ),
    )
    checkpoint_path: str = dataclasses.field(
        default='',
        metadata=describe(
            'File to save the learner to (agent, normalisers, replay buffer, counters) every '
            'checkpoint_every_updates updates and at shutdown, by atomic replace; resumed from '
            "if it exists at start; '' = none"
        ),
    )
    checkpoint_every_updates: int = dataclasses.field(
        default=10000,
        metadata=describe('Save a checkpoint every this many gradient steps', range=(1, 10**9)),
    )
    history_depth: int = dataclasses.field(
        default=10000,
        metadata=describe(
            'Messages each live subscription holds for the trainer while it is busy (reader '
            'history, KEEP_LAST: the stacks never wait for it; 10000 = ~2 min of one stack '
            'at 80 steps/s); what overflows is counted as missing',
            range=(1, 10**6),
        ),
    )
    exit_after_updates: int = dataclasses.field(
        default=0,
        metadata=describe(
            'Offline learning: train this many gradient steps on the bags (no live topics), '
            'export the model (and save the checkpoint), then exit 0; 0 = learn until stopped',
            range=(0, 10**9),
        ),
    )

    def namespace_list(self) -> list[str]:
        """The namespaces, each with a leading '/'."""
        return ['/' + n.strip().strip('/') for n in self.namespaces.split(',') if n.strip()]

    def bag_list(self) -> list[str]:
        """The bag paths."""
        return [p.strip() for p in self.bags.split(',') if p.strip()]

    def train_config(self) -> TrainConfig:
        """The learner's hyperparameters: task, controller and seed of this config, the
        defaults, then ``train_overrides``.

        Raises:
            rpl_interfaces.params.ParameterError: A bad override (see :func:`parse_overrides`).
        """
        values = {'task': self.task, 'controller': self.controller, 'seed': self.seed}
        return make_config({**values, **parse_overrides(self.train_overrides)})


# Overrides that are trainer node parameters of their own.
_NODE_OWNED = ('task', 'controller', 'seed')


def parse_overrides(text: str) -> dict[str, Any]:
    """``'key=value,key=value'`` -> TrainConfig field values, checked against the fields.

    Values are read as JSON where they parse (``500``, ``0.5``, ``true``), else taken as
    text (``algo=rpl``); a whole float for an integer field (``1e6``) is taken as that
    integer.

    Raises:
        rpl_interfaces.params.ParameterError: An item without '=', an unknown or repeated key,
            a node parameter (task, controller, seed), or a value of the wrong type or out of
            range; the message names the key.
    """
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {}
    for item in (part.strip() for part in text.split(',')):
        if not item:
            continue
        key, sep, raw = (x.strip() for x in item.partition('='))
        if not sep or not key:
            raise ParameterError(f'train_overrides: expected key=value, got {item!r}')
        if key in _NODE_OWNED:
            raise ParameterError(
                f'train_overrides: {key!r} is a trainer node parameter; set {key}:=... instead'
            )
        if key not in fields:
            raise ParameterError(
                f'train_overrides: unknown key {key!r}; TrainConfig fields: {sorted(fields)}'
            )
        if key in values:
            raise ParameterError(f'train_overrides: {key!r} is given twice')
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        is_int = type(fields[key].default) is int
        if is_int and isinstance(value, float) and value.is_integer():
            value = int(value)
        values[key] = value
    try:
        make_config(values)  # types, ranges and choices, per key
    except ParameterError as exc:
        raise ParameterError(f'train_overrides: {exc}') from exc
    return values


class UpdateDebt:
    """Gradient steps owed for ingested transitions (fractions carry over).

    Args:
        per_transition: Gradient steps per transition.
    """

    def __init__(self, per_transition: float) -> None:
        self.per_transition = per_transition
        self.owed = 0.0

    def add(self, transitions: int) -> None:
        """Owe the updates for newly stored transitions."""
        self.owed += self.per_transition * transitions

    def take(self, most: int) -> int:
        """Whole updates to run now, at most ``most``; they are no longer owed."""
        count = min(int(self.owed), most)
        self.owed -= count
        return count


# --- recorded runs ----------------------------------------------------------------------------


def records_from_run(
    run: RecordedRun, episode_steps: int
) -> tuple[list[EpisodeRecord], collections.Counter[str]]:
    """Complete episodes of a bag read by :func:`rpl_bags.recorded.load_run`.

    Args:
        run: The recorded run (repeated messages are already reduced to the first).
        episode_steps: The task's episode length T; other lengths are skipped.

    Returns:
        The records, and skipped episodes counted by reason (:data:`SKIP_REASONS`).
    """
    _check_layout(run.layout)
    records, skipped = [], collections.Counter()
    for ep in run.episodes:
        streams = (ep.observation, ep.base_action, ep.command)
        if ep.result is None or not all(s.present.all() for s in streams):
            skipped[INCOMPLETE] += 1
        elif ep.result.fallback_base or ep.result.fallback_zero:
            skipped[FALLBACK] += 1
        elif ep.steps != episode_steps:
            skipped[WRONG_LENGTH] += 1
        else:
            records.append(
                _record(ep.episode, run.layout, *(s.values for s in streams), ep.result)
            )
    return records, skipped


# --- live messages ----------------------------------------------------------------------------


@dataclasses.dataclass
class _OpenEpisode:
    steps: dict[str, dict[int, StampedVector]] = dataclasses.field(
        default_factory=lambda: {topic: {} for topic in STEP_TOPICS}
    )
    result: contract.EpisodeResult | None = None
    conflicting: bool = False
    sent_until_ns: int = 0  # newest send time of its messages
    result_sent_ns: int = 0


@dataclasses.dataclass
class AssemblerCounts:
    """What the assembler has seen.

    Attributes:
        complete: Episodes emitted.
        skipped: Episodes dropped, by reason (:data:`SKIP_REASONS`).
        resent: Messages that repeated an (episode, step) with the same values (the sim
            bridge's start-up handshake and the nodes' answers to it); the first is kept.
        late: Messages of an episode already emitted or skipped, ignored.
        missing: Step messages (observation, base action, command; and the result, one
            each) that episodes skipped as incomplete lacked: what never reached this
            process.
        results_only: Episode results with no step messages (results of episodes before
            this trainer started, delivered late through the latched ``episode`` topic).
        restarts: Times a sim bridge started its episode ids again from an id already seen.
        before_resume: Messages sent before the checkpoint this trainer resumed from was
            saved (publishers' history delivered again), ignored.
    """

    complete: int = 0
    skipped: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    resent: int = 0
    late: int = 0
    missing: int = 0
    results_only: int = 0
    restarts: int = 0
    before_resume: int = 0


class EpisodeAssembler:
    """Matches live step messages and episode results into complete episodes.

    An episode is emitted as soon as its result and, for every step 0 .. T-1, one
    observation, base action and command are there. Repeats of an (episode, step) follow
    the rule of :mod:`rpl_interfaces.step_index` (the bag reader's too): re-sends are kept
    once; a conflicting repeat skips the episode as ``conflicting``.

    Each step topic has one publisher per stack and DDS delivers a reliable publisher's
    messages in order, but the topics relative to each other in any order (a publisher
    matched late delivers its history in a burst). So an episode is skipped as
    ``incomplete`` as soon as a step topic it lacks steps of delivers a later episode:
    those steps can no longer come. As a backstop for a topic that has gone silent, it is
    also skipped once any step message of episode id + ``lag`` (or later) arrives. Results
    do not close episodes (they are one message per episode, on their own topic).
    One assembler per stack namespace.

    Args:
        layout: The observation payload layout (with achieved goals).
        episode_steps: Task episode length T; results with another step count are skipped.
        lag: Episodes to wait for the missing messages of an episode on a topic that
            delivers nothing newer (>= 1; the control publishers keep 500 messages, ten
            50-step episodes, for a late-matched subscriber).
        resume_after_ns: Ignore messages sent at or before this time (ns): those of the
            episodes a resumed learner already has (:attr:`seen_until_ns` when it was
            saved), which the publishers' history delivers again; None: none.
        started_ns: When the subscriptions were made (ns): an episode of which only the
            result arrives is a result of before (``results_only``) if that was sent
            earlier, else a lost episode (skipped as incomplete). None: results before the
            first step message are the old ones.
    """

    def __init__(
        self,
        layout: contract.ObservationLayout,
        episode_steps: int,
        lag: int = 12,
        resume_after_ns: int | None = None,
        started_ns: int | None = None,
    ) -> None:
        _check_layout(layout)
        if lag < 1:
            raise ValueError(f'lag must be >= 1 episode, got {lag}')
        self.layout = layout
        self.episode_steps = episode_steps
        self.lag = lag
        self.counts = AssemblerCounts()
        # One line per skipped episode saying what it lacked; the owner logs and clears it.
        self.skip_lines: list[str] = []
        self._open: dict[int, _OpenEpisode] = {}
        self._closed: set[int] = set()
        self._newest: dict[str, int] = {}  # step topic -> newest episode id it delivered
        self._first: int | None = None  # first episode id with a step message (this run)
        # Whole episodes of which nothing arrived: ids never opened below the episode every
        # topic has passed (ids count up by one per episode in a sim bridge run).
        self._reached: dict[str, int] = {}  # every topic -> newest episode id it delivered
        self._ids: set[int] = set()  # ids opened, at or above _vanished_to
        self._vanished_to: int | None = None  # ids below are accounted for
        self.resume_after_ns = resume_after_ns
        self.started_ns = started_ns
        # Newest send time of the messages of every episode emitted or skipped: what a
        # checkpoint saved now holds (the next start resumes after it).
        self.seen_until_ns = resume_after_ns or 0

    def add(
        self, topic: str, vec: StampedVector, sent_ns: int | None = None
    ) -> list[EpisodeRecord]:
        """Take one decoded message of ``topic`` (relative name: observation, base_action,
        command or episode), sent at ``sent_ns`` (default: its stamp).

        Returns:
            The episode completed by it (a list of none or one).

        Raises:
            ValueError: An unknown topic or a payload of the wrong size.
        """
        self._check(topic, vec)
        sent_ns = vec.stamp_ns if sent_ns is None else sent_ns
        if self.resume_after_ns is not None and sent_ns <= self.resume_after_ns:
            self.counts.before_resume += 1
            return []
        if vec.episode in self._closed:
            if topic == contract.OBSERVATION and vec.step == 0:
                self._restart()  # a new sim bridge run counts its episodes from 0 again
            else:
                self.counts.late += 1
                return []
        if topic != contract.EPISODE:
            if self._first is None:
                self._first = vec.episode
            self._close_passed(topic, vec.episode)
            self._close_stale(vec.episode)
        episode = self._open.setdefault(vec.episode, _OpenEpisode())
        episode.sent_until_ns = max(episode.sent_until_ns, sent_ns)
        if self._vanished_to is None:
            self._vanished_to = vec.episode
        self._ids.add(vec.episode)
        self._reached[topic] = max(self._reached.get(topic, vec.episode), vec.episode)
        self._count_vanished()
        if topic == contract.EPISODE:
            if episode.result is None:
                episode.result = contract.EpisodeResult.from_vector(vec.episode, vec.values)
                episode.result_sent_ns = sent_ns
            else:
                self.counts.resent += 1
        else:
            self._put(episode, topic, vec)
        record = self._try_complete(vec.episode)
        return [] if record is None else [record]

    def flush(self) -> None:
        """Skip every episode still open (end of input): counted as incomplete."""
        for ep in sorted(self._open):
            self._drop(ep)

    @property
    def open_episodes(self) -> list[int]:
        """Ids of the episodes still waiting for messages."""
        return sorted(self._open)

    def _check(self, topic: str, vec: StampedVector) -> None:
        sizes = {
            contract.OBSERVATION: len(self.layout.fields),
            contract.BASE_ACTION: len(contract.ACTION_FIELDS),
            contract.COMMAND: len(contract.ACTION_FIELDS),
            contract.EPISODE: len(contract.EPISODE_FIELDS),
        }
        if topic not in sizes:
            raise ValueError(f'topic must be one of {list(sizes)}, got {topic!r}')
        if np.shape(vec.values) != (sizes[topic],):
            raise ValueError(
                f'{topic} (episode {vec.episode}, step {vec.step}) has '
                f'{np.size(vec.values)} values, expected {sizes[topic]}'
            )

    def _put(self, episode: _OpenEpisode, topic: str, vec: StampedVector) -> None:
        placed = step_index.place(episode.steps[topic], vec)
        if placed is step_index.Placed.RESENT:
            self.counts.resent += 1
        elif placed is step_index.Placed.CONFLICT:
            episode.conflicting = True

    def _try_complete(self, ep: int) -> EpisodeRecord | None:
        episode = self._open[ep]
        result = episode.result
        if result is None:
            return None
        if episode.conflicting:
            return self._drop(ep, CONFLICTING)
        if result.steps != self.episode_steps:
            return self._drop(ep, WRONG_LENGTH)
        if result.fallback_base or result.fallback_zero:
            return self._drop(ep, FALLBACK)
        wanted = range(self.episode_steps)
        if any(any(k not in episode.steps[t] for k in wanted) for t in STEP_TOPICS):
            return None
        if any(len(episode.steps[t]) != self.episode_steps for t in STEP_TOPICS):
            return self._drop(ep, INCOMPLETE)  # steps past the end: not this episode's shape
        arrays = [np.stack([episode.steps[t][k].values for k in wanted]) for t in STEP_TOPICS]
        del self._open[ep]
        self.seen_until_ns = max(self.seen_until_ns, episode.sent_until_ns)
        self._closed.add(ep)
        self.counts.complete += 1
        return _record(ep, self.layout, *arrays, result)

    def _count_vanished(self) -> None:
        if len(self._reached) < len(STEP_TOPICS) + 1 or self._vanished_to is None:
            return
        floor = min(self._reached.values())
        for ep in range(self._vanished_to, floor):
            if ep not in self._ids:
                self._closed.add(ep)
                self.counts.skipped[INCOMPLETE] += 1
                self.counts.missing += len(STEP_TOPICS) * self.episode_steps + 1
                self.skip_lines.append(
                    f'episode {ep} skipped as incomplete: none of its messages arrived'
                )
        self._vanished_to = max(self._vanished_to, floor)
        self._ids = {ep for ep in self._ids if ep >= self._vanished_to}

    def _close_passed(self, topic: str, episode: int) -> None:
        if episode <= self._newest.get(topic, episode - 1):
            return
        self._newest[topic] = episode
        for ep in sorted(self._open):
            if ep < episode and self._lacks_steps(self._open[ep], topic):
                self._drop(ep)

    def _lacks_steps(self, episode: _OpenEpisode, topic: str) -> bool:
        return len(episode.steps[topic]) < self._steps_of(episode)

    def _steps_of(self, episode: _OpenEpisode) -> int:
        return self.episode_steps if episode.result is None else episode.result.steps

    def _close_stale(self, newest: int) -> None:
        for ep in sorted(self._open):
            if ep <= newest - self.lag:
                self._drop(ep)

    def _drop(self, ep: int, reason: str = INCOMPLETE) -> None:
        episode = self._open.pop(ep)
        self.seen_until_ns = max(self.seen_until_ns, episode.sent_until_ns)
        self._closed.add(ep)
        if self.started_ns is None:
            old_result = self._first is None or ep < self._first
        else:
            old_result = episode.result_sent_ns < self.started_ns
        if not any(episode.steps.values()) and not episode.conflicting and old_result:
            self.counts.results_only += 1
            return
        self.counts.skipped[reason] += 1
        if reason == INCOMPLETE:
            self.counts.missing += int(episode.result is None)
        parts = [] if episode.result is not None else ['no result']
        for topic in STEP_TOPICS:
            lacking = [k for k in range(self._steps_of(episode)) if k not in episode.steps[topic]]
            if lacking and reason == INCOMPLETE:
                self.counts.missing += len(lacking)
            if lacking:
                parts.append(f'{topic} lacks {len(lacking)} steps ({_ranges(lacking)})')
        lacks = '; '.join(parts) or 'every step message and the result arrived'
        self.skip_lines.append(f'episode {ep} skipped as {reason}: {lacks}')

    def _restart(self) -> None:
        self.flush()
        self._closed.clear()
        self._newest.clear()
        self._first = None
        self._reached.clear()
        self._ids.clear()
        self._vanished_to = None
        self.counts.restarts += 1


def _ranges(numbers: Sequence[int]) -> str:
    """Sorted integers as ranges: [0, 1, 2, 7] -> '0-2, 7'."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ', '.join(str(a) if a == b else f'{a}-{b}' for a, b in spans)


# --- learning ---------------------------------------------------------------------------------


class IngestReport(NamedTuple):
    """What :func:`ingest_bags` did.

    Attributes:
        episodes: Episodes stored in the buffer.
        transitions: Transitions stored (episodes x (T - 1)).
        updates: Gradient steps run.
        skipped: Episodes not stored, by reason (:data:`SKIP_REASONS`).
        problems: The bags' problem lines, prefixed with the bag path.
    """

    episodes: int
    transitions: int
    updates: int
    skipped: dict[str, int]
    problems: tuple[str, ...]


class OfflineLearner:
    """DDPG + HER on episodes that were not collected by this process (bags, live topics).

    Args:
        config: Hyperparameters (``algo`` must be ``rpl``: the records hold base actions).
        dims: Observation, goal and action sizes.
        episode_steps: The task's episode length T (gamma = 1 - 1/T as in ``rpl train``);
            the buffer stores T - 1 transitions per episode.
        reward_fn: The task's pure batched reward function (for HER).
        base_fn: The batched base controller; needed (and only used) when
            ``config.goal_consistent_her`` recomputes residuals for relabelled goals.
    """

    def __init__(
        self,
        config: TrainConfig,
        dims: Dims,
        episode_steps: int,
        reward_fn: RewardFn,
        base_fn: BaseFn | None = None,
    ) -> None:
        if config.algo != 'rpl':
            raise ValueError(f'offline learning is for algo rpl, got {config.algo!r}')
        if episode_steps < 2:
            raise ValueError(f'episodes need at least 2 steps, got {episode_steps}')
        if config.goal_consistent_her and base_fn is None:
            raise ValueError('goal_consistent_her needs the base controller (base_fn)')
        self.config = config
        self.dims = dims
        self.episode_steps = episode_steps
        # As `rpl train` does: torch's default (one thread per core) made an update ~10x
        # slower next to a running stack (measured: 59.9 vs 5.9 ms at batch 64, 2 cores).
        torch.set_num_threads(config.torch_threads)
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.agent = DDPGAgent(dims, config, episode_steps)
        self.buffer = ReplayBuffer(dims, episode_steps - 1, config.buffer_size)
        self.sampler = HerSampler(
            reward_fn,
            config.future_p,
            base_fn if config.goal_consistent_her else None,
            config.residual_scale,
        )
        self.episodes = 0

    @classmethod
    def for_task(cls, config: TrainConfig) -> OfflineLearner:
        """Learner for ``config.task`` with the task's sizes, length and reward."""
        from rpl_trainer.train import registered_problem

        problem = registered_problem(config.task, config.controller, config.controller_params)
        base_fn = problem.make_base_fn() if config.goal_consistent_her else None
        return cls(
            config,
            problem.dims,
            int(problem.spec.max_episode_steps),
            problem.reward_fn,
            base_fn,
        )

    def add(self, records: Sequence[EpisodeRecord]) -> int:
        """Store episodes and update the input statistics from HER samples of them.

        Returns:
            Transitions stored.

        Raises:
            ValueError: A record's length or sizes do not fit this learner.
        """
        if not records:
            return 0
        for r in records:
            sizes = (r.observation.shape[1], r.desired_goal.shape[1], r.command.shape[1])
            if r.steps != self.episode_steps or sizes != tuple(self.dims):
                raise ValueError(
                    f'episode {r.episode} has {r.steps} steps and sizes (obs, goal, action) '
                    f'{sizes}; this learner needs {self.episode_steps} and {tuple(self.dims)}'
                )
        batch = episode_batch(records, self.config.residual_scale)
        self.buffer.store(batch)
        n, steps = len(records), self.buffer.steps
        self.agent.update_normalizers(self.sampler.sample(batch, n, n * steps, self.rng))
        self.episodes += n
        return n * steps

    def update(self, count: int = 1) -> list[UpdateStats]:
        """Run ``count`` gradient steps (critic only while the burn-in lasts)."""
        if self.buffer.size == 0:
            return []
        stats = []
        for _ in range(count):
            batch = self.buffer.sample(self.sampler, self.config.batch_size, self.rng)
            stats.append(self.agent.update(batch))
        return stats

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue learning exactly: config, agent (networks,
        optimisers, normalisers, burn-in, update count), replay buffer, numpy and torch
        random states, episodes stored."""
        return {
            **learning_state(self.config, self.agent, self.buffer, self.rng),
            'counters': {'episodes': self.episodes},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` (into a learner of the same config and sizes).

        Raises:
            ValueError: The state was saved with a config that differs in fields other than
                budgets and bookkeeping (each difference named), or does not fit this learner.
        """
        saved = make_config(state['config'])
        differences = config_differences(saved, self.config)
        if differences:
            raise ValueError(
                'it was saved with a different config (' + '; '.join(differences) + ')'
            )
        try:
            restore_learning_state(state, self.agent, self.buffer, self.rng)
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f'it does not fit this learner ({exc})') from exc
        self.episodes = int(state['counters']['episodes'])

    def export(
        self, path: str | os.PathLike[str], metadata: Mapping[str, str] | None = None
    ) -> pathlib.Path:
        """Write the actor as an ONNX residual model (docs/onnx_contract.md).

        The file is written next to ``path`` under a temporary name, checked against torch,
        then moved over ``path`` with ``os.replace``: a hot-reloading residual node sees the
        old file or the new one, never a partial one.
        """
        props = {
            'task': self.config.task,
            'controller': self.config.controller,
            'algo': self.config.algo,
            'updates': str(self.agent.updates),
            'episodes': str(self.episodes),
            'source': 'trainer_node',
        }
        props.update(metadata or {})
        return export_onnx(self.agent.actor, path, self.config.residual_scale, props)


LEARNER_CHECKPOINT = 'offline_learner'
"""The ``kind`` of a checkpoint written by :func:`save_learner`."""


def save_learner(
    path: str | os.PathLike[str],
    learner: OfflineLearner,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Save the learner (and the caller's own counters) to ``path`` by atomic replace.

    The file format is :mod:`rpl_trainer.checkpoint`'s (``rpl train`` writes the same).

    Args:
        path: Checkpoint file; its folder is created if needed.
        learner: What to save (:meth:`OfflineLearner.state_dict`).
        extra: Plain values (numbers, strings, lists, dicts) returned by
            :func:`load_learner`, e.g. the trainer node's update debt.
    """
    state = {
        'kind': LEARNER_CHECKPOINT,
        'learner': learner.state_dict(),
        'extra': dict(extra or {}),
    }
    save_checkpoint(path, state)


def load_learner(path: str | os.PathLike[str], learner: OfflineLearner) -> dict[str, Any]:
    """Restore a learner saved by :func:`save_learner`; the file is only read.

    Returns:
        The ``extra`` values saved with it.

    Raises:
        rpl_trainer.checkpoint.CheckpointError: Missing, corrupt or unreadable file, another
            kind of checkpoint (e.g. an ``rpl train`` run's), or a learner of another config
            or size; the message names the file and the reason.
    """
    state = load_checkpoint(path)
    kind = state.get('kind') if isinstance(state, dict) else None
    if kind != LEARNER_CHECKPOINT:
        raise CheckpointError(
            f'checkpoint {path} is not a trainer node checkpoint (kind {kind!r}, expected '
            f'{LEARNER_CHECKPOINT!r}; an `rpl train` checkpoint cannot be resumed here)'
        )
    try:
        learner.load_state_dict(state['learner'])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f'checkpoint {path} is incomplete (missing {exc})') from exc
    except ValueError as exc:  # ParameterError included
        raise CheckpointError(f'cannot resume from checkpoint {path}: {exc}') from exc
    return dict(state.get('extra', {}))


def ingest_bags(
    paths: Iterable[str | os.PathLike[str]],
    learner: OfflineLearner,
    updates_per_step: float = 0.0,
    namespace: str | None = None,
) -> IngestReport:
    """Read bags episode by episode into the learner's buffer, optionally training on them.

    Args:
        paths: Bag directories (or storage files) recorded from the stack.
        learner: Receives the episodes.
        updates_per_step: Gradient steps per stored transition, run after each bag's
            episodes (0: only fill the buffer). While the RPL burn-in lasts these update
            only the critic.
        namespace: Stack namespace in the bags (None: the only one in each bag).

    Raises:
        rpl_bags.topics.BagError: A bag cannot be read at all.
    """
    episodes = transitions = updates = 0
    skipped: collections.Counter[str] = collections.Counter()
    problems: list[str] = []
    debt = UpdateDebt(updates_per_step)
    for path in paths:
        run = load_run(path, namespace)
        problems += [f'{path}: {line}' for line in run.problems]
        records, skips = records_from_run(run, learner.episode_steps)
        skipped.update(skips)
        for record in records:  # episode by episode: the buffer is FIFO
            stored = learner.add([record])
            episodes += 1
            transitions += stored
            debt.add(stored)
            updates += len(learner.update(debt.take(2**62)))
    return IngestReport(episodes, transitions, updates, dict(skipped), tuple(problems))


__all__ = [
    'CONFLICTING',
    'FALLBACK',
    'INCOMPLETE',
    'LEARNER_CHECKPOINT',
    'SKIP_REASONS',
    'STEP_TOPICS',
    'TrainerNodeConfig',
    'UpdateDebt',
    'WRONG_LENGTH',
    'AssemblerCounts',
    'EpisodeAssembler',
    'EpisodeRecord',
    'IngestReport',
    'OfflineLearner',
    'episode_batch',
    'ingest_bags',
    'load_learner',
    'parse_overrides',
    'records_from_run',
    'save_learner',
    'stored_residual',
]
