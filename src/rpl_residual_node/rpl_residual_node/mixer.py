"""The residual node's state machine: pair messages by step, mix, fall back, hot reload.

Pure Python + numpy + onnxruntime (no rclpy), so every rule is unit-tested without ROS.

Pairing. Observations and base actions arrive on two topics, each in order (one reliable
writer per topic), but in any order relative to each other. A :class:`Decision` is made
exactly once per ``(episode, step)`` as soon as both halves are there. Because each topic
is ordered, an observation for a newer step means the observation of an older pending base
action will never come: that base action is dropped (and likewise for observations). A
half waiting longer than ``sync_timeout_s`` is dropped too. An observation for an *older*
key than the last observation seen means the sim bridge restarted: all state is cleared.

Re-sent observations. Before its first step the sim bridge re-publishes observation
(0, 0) until its command arrives (a handshake: the command path's DDS links match one by
one, and a command sent before the last one matched is lost). An observation repeated for
a step that was already decided, with the same values, is answered with that step's
Decision again (the same object: a step's decision never changes; counted as
``resent_decision``, not as a new decision). A repeated base action only counts as a
duplicate: the controller repeats its action because the observation was repeated, so the
observation alone triggers the one re-emission. A repeated key with *other* observation
values is a sim bridge that restarted at that step: all state is cleared.

Action layout. Nothing here knows the action's size or names: a base action is a vector of
any non-empty size, and its field names (``add_base_action(..., fields)``) travel on to the
step's Decision, so the command and residual carry the base action's names. The size a base
action must have is the stream's own (the field names it last noted), else the running
model's, else any; a model's size is its graph's output (checked against its metadata's
``action_fields``). A base action whose field names differ from the model's
``action_fields`` is a model mismatch (base fallback, one note); one of another size than a
model that names no fields gives a base fallback too (``base_action_wrong_size``).

Invalid messages are rejected. A base action that is not finite or not of the action size,
and an observation or goal that is not finite, are counted (``rejected_...``), reported
through ``on_reject`` and otherwise ignored: they mark no step as seen, drop no pending
step and clear nothing, so the valid message of the same step still wins (a forged NaN base
action cannot take a step from the real one, and forged non-finite observations with other
step ids cannot clear the pending steps). No command is ever made from an invalid base
action: the step waits for a valid one, and without one nothing is published for it (the
sim bridge then applies the real base action it received). A well-formed, finite forged
message cannot be told from a real one here (that takes authenticated topics, SROS2).

Fallback. Every Decision says where the command came from (``source`` 'residual' or
'base') and why (``reason``); reasons are counted. The command is never NaN.

Hot reload. :meth:`ResidualMixer.check_reload` (called periodically on the control thread)
only stats the model file; a changed file of at most ``max_model_bytes`` is loaded and
validated in a background thread (:mod:`rpl_residual_node.model_reload`), including a run
on the last ``RECENT_INPUTS`` decided observations, and swapped in by one reference
assignment when the thread is done. A refused file leaves the running model in place.

Model identity. The node tells the mixer what the stack says of itself
(:meth:`ResidualMixer.note_observation_source`: the observation's frame_id = task and field
names; :meth:`ResidualMixer.note_base_action_source`: the base action's frame_id =
controller and field names). A model whose metadata names other fields, or (unless
``allow_model_mismatch``) another task or controller, is not run on this stream: every step
falls back to the base action (reason ``model_mismatch``), with one ``on_model_note``
('error', line) per model and stream; a hot-reloaded file that does not fit is refused and
the running model stays. A model that states no identity runs, with one warning.

Exploration. With ``explore_noise`` or ``explore_random`` above 0 (learning stacks), every
'ok' step's residual goes through :func:`rpl_residual_node.mixing.explore_residual` (one
numpy Generator seeded from ``explore_seed``) before the mixing rule; fallbacks never
explore and draw nothing, and a re-sent observation gets the same explored Decision again.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from rpl_residual_node.mixing import ResidualConfig, explore_residual, mix
from rpl_residual_node.model_identity import MismatchError, StackIdentity, check_identity
from rpl_residual_node.model_reload import (
    BAD_ON_RECENT,
    MISMATCH,
    RECENT_INPUTS,
    TOO_LARGE,
    BackgroundLoad,
    LoadResult,
    RecentInput,
    load_and_check,
)
from rpl_residual_node.onnx_actor import ModelTooLargeError, OnnxActor, check_model_size

SOURCE_RESIDUAL = 'residual'
SOURCE_BASE = 'base'

# Reasons of a Decision. 'ok' means the residual was applied; all others are fallbacks.
OK = 'ok'
NO_MODEL = 'no_model'
MODEL_LOAD_FAILED = 'model_load_failed'
OBSERVATION_WRONG_SIZE = 'observation_wrong_size'  # not the model's sizes
RESIDUAL_NON_FINITE = 'residual_non_finite'
INFERENCE_ERROR = 'inference_error'
MODEL_MISMATCH = 'model_mismatch'  # made for another task, controller or fields
BASE_ACTION_WRONG_SIZE = 'base_action_wrong_size'  # not the model's action size

# Reasons for dropping a half pair (no Decision for that step).
BASE_WITHOUT_OBSERVATION = 'dropped_base_action_without_observation'
OBSERVATION_WITHOUT_BASE = 'dropped_observation_without_base_action'
SYNC_TIMEOUT = 'dropped_sync_timeout'
DUPLICATE = 'dropped_duplicate'
STREAM_RESTART = 'stream_restart'
# A repeated observation of a decided step, answered with the same Decision again.
RESENT = 'resent_decision'

# Invalid messages, rejected without any effect on the state (see the module docstring).
REJECTED_OBSERVATION_NON_FINITE = 'rejected_observation_non_finite'
REJECTED_BASE_NON_FINITE = 'rejected_base_action_non_finite'
REJECTED_BASE_WRONG_SIZE = 'rejected_base_action_wrong_size'

# Model files refused at a (re)load; the running model (if any) stays.
MODEL_REJECTED = 'model_rejected'  # every refusal, whatever the reason
MODEL_TOO_LARGE = 'model_rejected_too_large'  # above max_model_bytes, not read
MODEL_BAD_ON_RECENT = 'model_rejected_on_recent_observations'  # NaN on real observations
MODEL_REFUSED_MISMATCH = 'model_refused_mismatch'  # a model found not to fit the stream

Key = tuple[int, int]  # (episode, step)


class Decision(NamedTuple):
    """What to send for one step.

    Attributes:
        episode: Episode id.
        step: Step index.
        command: Action to execute, shape (action_dim,), finite, inside the action bounds.
        residual: Scaled, clamped residual that was added to the base, shape (action_dim,),
            after exploration when it was on; zeros on fallback.
        source: 'residual' or 'base' (the base action, or the safe action if the base was bad).
        reason: 'ok' or the fallback reason (one of this module's reason constants).
        explored: True if exploration changed the model's residual (only on 'ok' steps).
        fields: The base action's field names (those of ``command`` and ``residual``).
    """

    episode: int
    step: int
    command: np.ndarray
    residual: np.ndarray
    source: str
    reason: str
    explored: bool = False
    fields: tuple[str, ...] = ()


class ReloadEvent(NamedTuple):
    """Outcome of a model (re)load attempt.

    Attributes:
        loaded: True if the new model was validated and swapped in.
        message: One line for the log.
        refusal: Why a file was refused (a :mod:`rpl_residual_node.model_reload` kind:
            'too_large', 'recent_inputs', 'mismatch', 'invalid'); '' when loaded or not a
            refusal.
        warning: One more line for the log as a warning ('' if none): a loaded model that
            does not say what it is, so it cannot be checked against the stack.
    """

    loaded: bool
    message: str
    refusal: str = ''
    warning: str = ''


class LatencyWindow:
    """The last ``size`` durations, with percentiles (for diagnostics)."""

    def __init__(self, size: int = 1000) -> None:
        self._values: collections.deque[float] = collections.deque(maxlen=size)

    def add(self, seconds: float) -> None:
        """Record one duration in seconds."""
        self._values.append(seconds)

    def __len__(self) -> int:
        return len(self._values)

    def percentile_us(self, q: float) -> float:
        """The q-th percentile (0..100) in microseconds; NaN when empty."""
        if not self._values:
            return math.nan
        return float(np.percentile(np.fromiter(self._values, dtype=np.float64), q) * 1e6)


class _Decided(NamedTuple):
    """A decided step: its Decision and the observation it was made from."""

    decision: Decision
    observation: np.ndarray  # (obs_dim,)
    goal: np.ndarray  # (goal_dim,)


class _Pending:
    """One step's halves while waiting for the other one."""

    __slots__ = ('arrived_s', 'base', 'fields', 'goal', 'observation')

    def __init__(self, arrived_s: float) -> None:
        self.arrived_s = arrived_s
        self.observation: np.ndarray | None = None
        self.goal: np.ndarray | None = None
        self.base: np.ndarray | None = None
        self.fields: tuple[str, ...] = ()


def _file_signature(path: str) -> tuple[int, int] | None:
    """(mtime_ns, size) of a file, or None if it does not exist."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


class ResidualMixer:
    """Pairs observations with base actions and decides each step's command.

    Args:
        config: Mixing parameters and the model path.
        action_dim: Required action size; None (the default) learns it from the stream's
            base action field names and the model (see the module docstring).
        obs_dim: Expected observation size for model validation; None takes the model's.
        goal_dim: Expected desired-goal size; None takes the model's.
        clock: Monotonic time source in seconds (injectable for tests).
        max_pending: Most steps kept waiting for their partner.
        on_reject: Called with ``(reason, one line)`` for every rejected invalid message
            (the node logs it, throttled); the rejection is counted either way.
        recent_inputs: How many recently decided inputs a new model is validated on.
        on_model_note: Called with ``(level, one line)`` ('error' or 'warning') when the
            running model is found not to fit the stream (or fits only because
            ``allow_model_mismatch`` is set); once per model and stream facts.

    The model named by ``config.model_path`` is loaded at construction (synchronously: the
    node is not in the loop yet); see :attr:`last_reload` for the outcome.
    """

    def __init__(
        self,
        config: ResidualConfig,
        action_dim: int | None = None,
        obs_dim: int | None = None,
        goal_dim: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_pending: int = 32,
        on_reject: Callable[[str, str], None] | None = None,
        recent_inputs: int = RECENT_INPUTS,
        on_model_note: Callable[[str, str], None] | None = None,
    ) -> None:
        self.config = config
        self.action_dim = action_dim
        self._obs_dim = obs_dim
        self._goal_dim = goal_dim
        self._clock = clock
        self._max_pending = max_pending
        self._on_reject = on_reject
        self.actor: OnnxActor | None = None
        self.model_error: str | None = None  # why no model runs although one is configured
        self.last_reload: ReloadEvent | None = None
        self._signature: tuple[int, int] | None = None
        self._pending: dict[Key, _Pending] = {}
        self._decided: collections.OrderedDict[Key, _Decided] = collections.OrderedDict()
        self._last_observation_key: Key | None = None
        self._previous: tuple[int, int, np.ndarray] | None = None  # (episode, step, obs)
        self._recent: collections.deque[RecentInput] = collections.deque(maxlen=recent_inputs)
        self._load_job: BackgroundLoad | None = None
        self.counts: collections.Counter[str] = collections.Counter()
        self.last_reason: str | None = None
        self.inference_latency = LatencyWindow()
        self._explore_rng = np.random.default_rng(config.explore_seed)
        self.explored_steps = 0  # 'ok' steps whose residual exploration changed
        self.random_steps = 0  # of those, steps with a uniform random residual
        self._on_model_note = on_model_note
        self.live = StackIdentity()  # what the stream has said of itself so far
        self._verdict_for: tuple[OnnxActor | None, StackIdentity] | None = None
        self.mismatch: str | None = None  # why the running model is not run on this stream
        if config.model_path:
            self._signature = _file_signature(config.model_path)
            self.last_reload = self._apply(load_and_check(*self._load_args()))

    # ----------------------------------------------------------------- model handling
    def _load_args(self) -> tuple[str, int | None, int | None, int | None, int]:
        # A replacement must fit the observations the running model was fed.
        obs_dim, goal_dim, action_dim = self._obs_dim, self._goal_dim, self.action_dim
        if self.actor is not None and self.mismatch is None:
            obs_dim, goal_dim = self.actor.obs_dim, self.actor.goal_dim
            action_dim = self.actor.action_dim
        path, max_bytes = self.config.model_path, self.config.max_model_bytes
        return path, obs_dim, goal_dim, action_dim, max_bytes

    def _apply(self, result: LoadResult) -> ReloadEvent:
        """Swap in a validated actor (one reference assignment), or keep the running one."""
        if result.actor is not None:
            self.actor = result.actor
            self.model_error = None
            self.mismatch = None  # checked against the stream at its first step
            self._verdict_for = None
            identity = result.actor.identity
            message = f'loaded model {result.actor.describe()}, made for {identity.describe()}'
            if result.checked:
                message += f', finite on the last {result.checked} real observations'
            warning = ''
            if identity.unstated():
                warning = (
                    f'model {result.actor.path} does not state {", ".join(identity.unstated())} '
                    '(no rpl metadata): it is not checked against the running stack for that'
                )
            return ReloadEvent(True, message, warning=warning)
        self.counts[MODEL_REJECTED] += 1
        if result.kind == TOO_LARGE:
            self.counts[MODEL_TOO_LARGE] += 1
        elif result.kind == BAD_ON_RECENT:
            self.counts[MODEL_BAD_ON_RECENT] += 1
        elif result.kind == MISMATCH:
            self.counts[MODEL_REFUSED_MISMATCH] += 1
        kind = result.kind or ''
        if self.actor is None:
            self.model_error = result.error
            message = f'no model loaded, using the base action: {result.error}'
            return ReloadEvent(False, message, kind)
        message = f'rejected the new model, keeping {self.actor.describe()}: {result.error}'
        return ReloadEvent(False, message, kind)

    @property
    def reload_in_flight(self) -> bool:
        """A model file is being loaded and validated in the background."""
        return self._load_job is not None

    def check_reload(self) -> ReloadEvent | None:
        """Look at the model file; start, or finish, a reload when it changed.

        Called periodically on the control thread; it only stats the file. A changed file
        (mtime_ns or size) larger than ``max_model_bytes`` is refused at once without being
        read; otherwise it is loaded and validated (contract, probe, a finite residual on
        the recent real observations, the running model's observation and goal sizes) in
        a background thread, and a later call swaps it in (see :meth:`finish_reload`). A
        refused file leaves the running model in place and is not retried until it
        changes again; a file that disappears keeps the running model.

        Returns:
            None if nothing changed or a load is still running, else what happened.
        """
        if not self.config.model_path:
            return None
        if self._load_job is not None:
            return self.finish_reload()
        signature = _file_signature(self.config.model_path)
        if signature == self._signature:
            return None
        self._signature = signature
        path, *_ = load_args = self._load_args()
        if signature is None:
            running = self.actor.describe() if self.actor else 'the base action'
            event = ReloadEvent(False, f'model file {path!r} disappeared; keeping {running}')
        else:
            try:  # a file too large is refused here, from its size alone
                check_model_size(path, signature[1], self.config.max_model_bytes)
            except ModelTooLargeError as exc:
                event = self._apply(LoadResult(None, str(exc), TOO_LARGE, 0))
            else:
                self._load_job = BackgroundLoad(
                    *load_args, tuple(self._recent), self.live, self.config.allow_model_mismatch
                )
                return None
        self.last_reload = event
        return event

    def finish_reload(self) -> ReloadEvent | None:
        """Swap in (or refuse) the model of a finished background load.

        Cheap (one flag read while the load runs); call it on the control thread.

        Returns:
            None while no load finished, else what happened.
        """
        job = self._load_job
        if job is None or not job.done:
            return None
        self._load_job = None
        event = self._apply(job.result)
        self.last_reload = event
        return event

    # ----------------------------------------------------------------- stream identity
    def note_observation_source(
        self, task: str, observation_fields: tuple[str, ...], goal_fields: tuple[str, ...]
    ) -> None:
        """What the observation stream says: its frame_id (task) and field names.

        Cheap when nothing changed (call it for every observation).

        Args:
            task: The observation's frame_id ('' = not stated).
            observation_fields: Observation field names, in payload order.
            goal_fields: Goal coordinate names (``desired_goal.<g>`` without the prefix).
        """
        live = self.live
        task_or_none = task or None
        if (
            live.task == task_or_none
            and live.observation_fields == observation_fields
            and live.goal_fields == goal_fields
        ):
            return
        self.live = dataclasses.replace(
            live,
            task=task_or_none,
            observation_fields=tuple(observation_fields),
            goal_fields=tuple(goal_fields),
        )

    def note_base_action_source(self, controller: str, action_fields: tuple[str, ...]) -> None:
        """What the base action stream says: its frame_id (controller) and field names.

        Cheap when nothing changed (call it for every base action).
        """
        live = self.live
        controller_or_none = controller or None
        if live.controller == controller_or_none and live.action_fields == action_fields:
            return
        self.live = dataclasses.replace(
            live, controller=controller_or_none, action_fields=tuple(action_fields)
        )

    def _refusal(self, actor: OnnxActor) -> str | None:
        """Why ``actor`` must not run on this stream (cached per actor and stream facts)."""
        verdict_for = self._verdict_for
        if verdict_for is not None and verdict_for[0] is actor and verdict_for[1] is self.live:
            return self.mismatch
        self._verdict_for = (actor, self.live)
        name = os.path.basename(actor.path)
        try:
            allowed = check_identity(actor.identity, self.live, self.config.allow_model_mismatch)
        except MismatchError as exc:
            self.mismatch = str(exc)
            self.counts[MODEL_REFUSED_MISMATCH] += 1
            hint = ' (allow_model_mismatch:=true runs it anyway)' if exc.overridable else ''
            self._note(
                'error',
                f'model {name} does not fit this stack, using the base action: {exc}{hint}',
            )
            return self.mismatch
        self.mismatch = None
        if allowed:
            self._note(
                'warning',
                f'model {name} runs although {"; ".join(allowed)} (allow_model_mismatch)',
            )
        return None

    def _note(self, level: str, text: str) -> None:
        if self._on_model_note is not None:
            self._on_model_note(level, text)

    # ----------------------------------------------------------------- message intake
    def add_observation(
        self, episode: int, step: int, observation: np.ndarray, desired_goal: np.ndarray
    ) -> Decision | None:
        """Take one observation message.

        Args:
            episode: Episode id.
            step: Step index.
            observation: Observation fields, shape (obs_dim,); a size other than the model's
                gives a base-action fallback for the step; a non-finite one is rejected.
            desired_goal: Goal fields, shape (goal_dim,) (m, world frame for Fetch).

        Returns:
            The Decision for this step if its base action was already there, the earlier
            Decision again if this step was decided from the same observation (a re-sent
            observation), else None (also for a rejected observation).
        """
        key = (episode, step)
        observation = np.array(observation, dtype=np.float64).reshape(-1)  # kept: a copy
        desired_goal = np.array(desired_goal, dtype=np.float64).reshape(-1)
        if not (np.all(np.isfinite(observation)) and np.all(np.isfinite(desired_goal))):
            self._reject(
                REJECTED_OBSERVATION_NON_FINITE,
                f'rejected the observation of episode {episode} step {step}: non-finite '
                'values; waiting for a valid one',
            )
            return None
        if self._last_observation_key is not None and key < self._last_observation_key:
            self._restart()
        self._last_observation_key = key
        decided = self._decided.get(key)
        if decided is not None:
            if _same(decided.observation, observation) and _same(decided.goal, desired_goal):
                self.counts[RESENT] += 1
                return decided.decision
            self._restart()  # same step, other values: a new sim bridge run
        self._drop_older(key, keep='observation', reason=BASE_WITHOUT_OBSERVATION)
        entry = self._entry(key)
        entry.observation = observation
        entry.goal = desired_goal
        return self._maybe_decide(key, entry)

    def add_base_action(
        self, episode: int, step: int, action: np.ndarray, fields: tuple[str, ...] = ()
    ) -> Decision | None:
        """Take one base action message.

        Args:
            episode: Episode id.
            step: Step index.
            action: Base action, shape (action_dim,); a non-finite or empty one, or one of
                another size than :meth:`expected_action_dim`, is rejected (no command is
                ever made from it).
            fields: Its field names, given on to the step's Decision.

        Returns:
            The Decision for this step if its observation was already there, else None
            (also for a rejected base action).
        """
        key = (episode, step)
        action = np.array(action, dtype=np.float64).reshape(-1)  # kept: a copy
        expected = self.expected_action_dim()
        if action.size == 0 or (expected is not None and action.size != expected):
            self._reject(
                REJECTED_BASE_WRONG_SIZE,
                f'rejected the base action of episode {episode} step {step}: '
                f'{action.size} values, expected {expected or "at least 1"}; waiting for a '
                'valid one',
            )
            return None
        if not np.all(np.isfinite(action)):
            self._reject(
                REJECTED_BASE_NON_FINITE,
                f'rejected the base action of episode {episode} step {step}: non-finite '
                f'values {action.tolist()}; waiting for a valid one',
            )
            return None
        if key in self._decided:
            self.counts[DUPLICATE] += 1
            return None
        self._drop_older(key, keep='base', reason=OBSERVATION_WITHOUT_BASE)
        entry = self._entry(key)
        entry.base = action
        entry.fields = tuple(fields)
        return self._maybe_decide(key, entry)

    def expected_action_dim(self) -> int | None:
        """The size a base action must have: the configured one, else the stream's (its last
        noted field names), else the running model's; None: any non-empty size."""
        if self.action_dim is not None:
            return self.action_dim
        if self.live.action_fields is not None:
            return len(self.live.action_fields)
        actor = self.actor
        return actor.action_dim if actor is not None else None

    def expire(self) -> int:
        """Drop halves that waited longer than ``sync_timeout_s``; return how many."""
        now = self._clock()
        stale = [
            key
            for key, entry in self._pending.items()
            if now - entry.arrived_s > self.config.sync_timeout_s
        ]
        for key in stale:
            del self._pending[key]
            self.counts[SYNC_TIMEOUT] += 1
        return len(stale)

    @property
    def pending(self) -> int:
        """Number of steps waiting for their partner."""
        return len(self._pending)

    def _reject(self, reason: str, text: str) -> None:
        self.counts[reason] += 1
        if self._on_reject is not None:
            self._on_reject(reason, text)

    def _restart(self) -> None:
        self._pending.clear()
        self._decided.clear()
        self._previous = None
        self.counts[STREAM_RESTART] += 1

    def _entry(self, key: Key) -> _Pending:
        self.expire()
        entry = self._pending.get(key)
        if entry is None:
            entry = self._pending[key] = _Pending(self._clock())
            while len(self._pending) > self._max_pending:
                oldest = min(self._pending)
                del self._pending[oldest]
                self.counts[SYNC_TIMEOUT] += 1
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
                self.counts[reason] += 1

    def _maybe_decide(self, key: Key, entry: _Pending) -> Decision | None:
        if entry.base is None or entry.observation is None:
            return None
        del self._pending[key]
        previous = self._previous_observation(key)
        self._previous = (key[0], key[1], entry.observation)
        self._recent.append(RecentInput(*key, entry.observation, entry.goal, previous))
        decision = self._decide(
            key, entry.observation, entry.goal, entry.base, previous, entry.fields
        )
        self._decided[key] = _Decided(decision, entry.observation, entry.goal)
        while len(self._decided) > 4 * self._max_pending:
            self._decided.popitem(last=False)
        self.counts[decision.reason] += 1
        self.last_reason = decision.reason
        return decision

    # ----------------------------------------------------------------- the rule
    def _fallback(
        self, key: Key, command: np.ndarray, reason: str, fields: tuple[str, ...]
    ) -> Decision:
        residual = np.zeros_like(command)
        return Decision(key[0], key[1], command, residual, SOURCE_BASE, reason, False, fields)

    def _decide(
        self,
        key: Key,
        observation: np.ndarray,
        goal: np.ndarray,
        base: np.ndarray,
        previous: np.ndarray | None,
        fields: tuple[str, ...] = (),
    ) -> Decision:
        """The rule for one step; ``base`` (action_dim,), observation and goal are finite."""
        base_command = np.clip(base, self.config.action_low, self.config.action_high)
        actor = self.actor  # one read: a swap in between cannot mix two models
        if actor is None:
            reason = MODEL_LOAD_FAILED if self.config.model_path else NO_MODEL
            return self._fallback(key, base_command, reason, fields)
        if self._refusal(actor) is not None:
            return self._fallback(key, base_command, MODEL_MISMATCH, fields)
        if observation.shape != (actor.obs_dim,) or goal.shape != (actor.goal_dim,):
            return self._fallback(key, base_command, OBSERVATION_WRONG_SIZE, fields)
        if base.shape != (actor.action_dim,):
            return self._fallback(key, base_command, BASE_ACTION_WRONG_SIZE, fields)
        if previous is not None and previous.shape != observation.shape:
            previous = None
        start = time.perf_counter()
        try:
            residual = actor(observation, goal, previous)
        except Exception:  # a fault in the model never stops the control loop
            return self._fallback(key, base_command, INFERENCE_ERROR, fields)
        self.inference_latency.add(time.perf_counter() - start)
        if residual.shape != base.shape:
            return self._fallback(key, base_command, INFERENCE_ERROR, fields)
        if not np.all(np.isfinite(residual)):
            return self._fallback(key, base_command, RESIDUAL_NON_FINITE, fields)
        explored = False
        if self.config.explores:
            residual, replaced = explore_residual(residual, self.config, self._explore_rng)
            explored = bool(replaced) or self.config.explore_noise > 0.0
            self.random_steps += int(replaced)
            self.explored_steps += int(explored)
        command, applied = mix(base, residual, self.config)
        return Decision(key[0], key[1], command, applied, SOURCE_RESIDUAL, OK, explored, fields)

    def _previous_observation(self, key: Key) -> np.ndarray | None:
        """The latest earlier observation of the same episode (None at episode start)."""
        if self._previous is None:
            return None
        episode, step, observation = self._previous
        if episode == key[0] and step < key[1]:
            return observation
        return None

    # ----------------------------------------------------------------- reporting
    def diagnostics(self) -> tuple[str, str, dict[str, Any]]:
        """Status for /diagnostics.

        Returns:
            ``(level, message, values)``: level 'ok', 'warn' or 'error'; a one-line summary;
            key/value details (model, counts per reason, inference latency p50/p99 in us,
            exploration settings and explored step counts).
        """
        values: dict[str, Any] = {
            'model_loaded': self.actor is not None,
            'model_path': self.config.model_path,
            'model': self.actor.describe() if self.actor else '',
            'model_error': self.model_error or '',
            'model_made_for': self.actor.identity.describe() if self.actor else '',
            'model_mismatch': self.mismatch or '',
            'allow_model_mismatch': self.config.allow_model_mismatch,
            'last_reload': self.last_reload.message if self.last_reload else '',
            'model_reload_running': self.reload_in_flight,
            'last_reason': self.last_reason or '',
            'decisions': sum(self.counts[r] for r in _DECISION_REASONS),
            'pending': self.pending,
            'inference_p50_us': round(self.inference_latency.percentile_us(50), 1),
            'inference_p99_us': round(self.inference_latency.percentile_us(99), 1),
            'explore_noise': self.config.explore_noise,
            'explore_random': self.config.explore_random,
            'explore_seed': self.config.explore_seed,
            'explored_steps': self.explored_steps,
            'explored_random_steps': self.random_steps,
        }
        for reason, count in sorted(self.counts.items()):
            values[f'count.{reason}'] = count
        if self.actor is None and self.config.model_path:
            return 'error', f'base action only: {self.model_error}', values
        if self.actor is not None and self.mismatch is not None:
            return 'error', f'base action only: the model does not fit: {self.mismatch}', values
        if self.last_reload is not None and not self.last_reload.loaded:
            return 'warn', self.last_reload.message, values
        if self.last_reason not in (None, OK, NO_MODEL):
            return 'warn', f'last step fell back to the base action: {self.last_reason}', values
        if self.actor is None:
            return 'ok', 'base action only: no model configured', values
        exploring = f' ({self.config.describe_exploration()})' if self.config.explores else ''
        return 'ok', f'residual active{exploring}: {self.actor.describe()}', values


def action_field_problem(names: tuple[str, ...]) -> str:
    """What is wrong with a base action's field names ('' if nothing): none, a repeated
    name, or an empty one."""
    if not names:
        return 'no action fields after episode, step'
    if len(set(names)) != len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        return f'action field names repeat: {repeated}'
    if '' in names:
        return 'an action field name is empty'
    return ''


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shapes and values (NaN equal to NaN: a re-sent bad observation is the same)."""
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


_DECISION_REASONS = (
    OK,
    NO_MODEL,
    MODEL_LOAD_FAILED,
    OBSERVATION_WRONG_SIZE,
    RESIDUAL_NON_FINITE,
    INFERENCE_ERROR,
    MODEL_MISMATCH,
    BASE_ACTION_WRONG_SIZE,
)
