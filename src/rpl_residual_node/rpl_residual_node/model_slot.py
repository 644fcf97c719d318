"""The running model: its load, hot reload, and identity check against the live stream.

Pure Python (+ onnxruntime through :mod:`rpl_residual_node.onnx_actor`; no rclpy).

Hot reload. :meth:`ModelSlot.check_reload` (called periodically on the control thread) only
stats the model file; a changed file of at most ``max_model_bytes`` is loaded and validated
in a background thread (:mod:`rpl_residual_node.model_reload`), including a run on the last
``RECENT_INPUTS`` decided observations, and swapped in by one reference assignment when the
thread is done. A refused file leaves the running model in place.

Model identity. The node tells what the stack says of itself
(:meth:`ModelSlot.note_observation_source`: the observation's frame_id = task and field
names; :meth:`ModelSlot.note_base_action_source`: the base action's frame_id = controller
and field names). A model whose metadata names other fields, or (unless
``allow_model_mismatch``) another task or controller, is not run on this stream
(:meth:`ModelSlot.refusal`), with one ``on_model_note`` ('error', line) per model and
stream; a hot-reloaded file that does not fit is refused and the running model stays. A
model that states no identity runs, with one warning.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from rpl_residual_node.mixing import ResidualConfig
from rpl_residual_node.model_identity import (
    MismatchError,
    StackIdentity,
    check_identity,
    clamp_warning,
)
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

# Model files refused at a (re)load; the running model (if any) stays.
MODEL_REJECTED = 'model_rejected'  # every refusal, whatever the reason
MODEL_TOO_LARGE = 'model_rejected_too_large'  # above max_model_bytes, not read
MODEL_BAD_ON_RECENT = 'model_rejected_on_recent_observations'  # NaN on real observations
MODEL_REFUSED_MISMATCH = 'model_refused_mismatch'  # a model found not to fit the stream


def slow_warning(step_s: float, period_s: float) -> str | None:
    """A model whose one step takes longer than the time between the steps the node decides
    (both measured; 0 = unknown) puts the node behind its input: the sentence, or None."""
    if step_s <= 0 or period_s <= 0 or step_s <= period_s:
        return None
    return (
        f'one step of it takes {step_s * 1e3:.1f} ms, more than the {period_s * 1e3:.1f} ms '
        'between the steps this node decides: the node will fall behind its input, and its '
        'steps fall back to the base action (input_late) or go without a command'
    )


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


def _file_signature(path: str) -> tuple[int, int] | None:
    """(mtime_ns, size) of a file, or None if it does not exist."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


class ModelSlot:
    """Holds the running model, reloads it, and checks it against the live stream.

    Args:
        config: The model path, size limit and ``allow_model_mismatch``.
        counts: Counter the model refusals are counted in (shared with the mixer).
        action_dim: Required action size for a loaded model; None takes the model's.
        obs_dim: Expected observation size; None takes the model's.
        goal_dim: Expected desired-goal size; None takes the model's.
        recent_inputs: How many recently decided inputs a new model is validated on.
        on_model_note: Called with ``(level, one line)`` ('error' or 'warning') when the
            running model is found not to fit the stream (or fits only because
            ``allow_model_mismatch`` is set); once per model and stream facts.
        clock: Monotonic time source in seconds (the decided steps' period).

    The model named by ``config.model_path`` is loaded at construction (synchronously);
    see :attr:`last_reload` for the outcome.
    """

    def __init__(
        self,
        config: ResidualConfig,
        counts: collections.Counter[str],
        action_dim: int | None = None,
        obs_dim: int | None = None,
        goal_dim: int | None = None,
        recent_inputs: int = RECENT_INPUTS,
        on_model_note: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._clock = clock
        self._counts = counts
        self._action_dim = action_dim
        self._obs_dim = obs_dim
        self._goal_dim = goal_dim
        self.actor: OnnxActor | None = None
        self.model_error: str | None = None  # why no model runs although one is configured
        self.last_reload: ReloadEvent | None = None
        self._signature: tuple[int, int] | None = None
        self._recent: collections.deque[RecentInput] = collections.deque(maxlen=recent_inputs)
        # When the last steps were decided (monotonic s): a new model slower than the time
        # between them would put the node behind its input.
        self._decided_at: collections.deque[float] = collections.deque(maxlen=recent_inputs)
        self._load_job: BackgroundLoad | None = None
        self._on_model_note = on_model_note
        # What the stream has said of itself so far, and the bounds this node clips to.
        self.live = StackIdentity(action_bounds=(config.action_low, config.action_high))
        self._verdict_for: tuple[OnnxActor | None, StackIdentity] | None = None
        self.mismatch: str | None = None  # why the running model is not run on this stream
        if config.model_path:
            self._signature = _file_signature(config.model_path)
            self.last_reload = self._apply(load_and_check(*self._load_args()))

    def remember(
        self,
        key: tuple[int, int],
        observation: np.ndarray,
        goal: np.ndarray,
        previous: np.ndarray | None,
        base: np.ndarray | None = None,
    ) -> None:
        """Keep a decided step's input, for validating the next model on real observations."""
        self._recent.append(RecentInput(*key, observation, goal, previous, base))
        self._decided_at.append(self._clock())

    def step_period_s(self) -> float:
        """Median seconds between the recently decided steps (0.0: fewer than 3)."""
        if len(self._decided_at) < 3:
            return 0.0
        return float(np.median(np.diff(np.fromiter(self._decided_at, dtype=np.float64))))

    # ----------------------------------------------------------------- loading
    def _load_args(self) -> tuple[str, int | None, int | None, int | None, int]:
        # A replacement must fit the observations the running model was fed.
        obs_dim, goal_dim, action_dim = self._obs_dim, self._goal_dim, self._action_dim
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
            warnings = []
            unstated = identity.unstated_warning(result.actor.path, 'the running stack')
            if unstated:
                warnings.append(unstated)
            clamped = clamp_warning(identity, self.config.residual_limit)
            if clamped:
                warnings.append(f'model {result.actor.path}: {clamped}')
            # Only with the input-age guard on: in lockstep (off) the sim waits for every
            # command, and a slower model only slows the loop down.
            on = self.config.max_input_age_s > 0
            slow = slow_warning(result.step_s, self.step_period_s()) if on else None
            if slow:
                warnings.append(f'model {result.actor.path}: {slow}')
            return ReloadEvent(True, message, warning='; '.join(warnings))
        self._counts[MODEL_REJECTED] += 1
        if result.kind == TOO_LARGE:
            self._counts[MODEL_TOO_LARGE] += 1
        elif result.kind == BAD_ON_RECENT:
            self._counts[MODEL_BAD_ON_RECENT] += 1
        elif result.kind == MISMATCH:
            self._counts[MODEL_REFUSED_MISMATCH] += 1
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
            task: The observation's frame_id ('' = not stated: a model that names its task
                is then refused, as for another task).
            observation_fields: Observation field names, in payload order.
            goal_fields: Goal coordinate names (``desired_goal.<g>`` without the prefix).
        """
        live = self.live
        if (
            live.task == task
            and live.observation_fields == observation_fields
            and live.goal_fields == goal_fields
        ):
            return
        self.live = dataclasses.replace(
            live,
            task=task,  # '' stays '': a model that names its task is not run unchecked
            observation_fields=tuple(observation_fields),
            goal_fields=tuple(goal_fields),
        )

    def note_base_action_source(self, controller: str, action_fields: tuple[str, ...]) -> None:
        """What the base action stream says: its frame_id (controller) and field names.

        Cheap when nothing changed (call it for every base action).
        """
        live = self.live
        if live.controller == controller and live.action_fields == action_fields:
            return
        self.live = dataclasses.replace(
            live, controller=controller, action_fields=tuple(action_fields)
        )

    def refusal(self, actor: OnnxActor) -> str | None:
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
            self._counts[MODEL_REFUSED_MISMATCH] += 1
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
