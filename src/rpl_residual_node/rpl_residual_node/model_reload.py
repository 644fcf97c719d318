"""Loading a residual actor for the node: size limit, validation on real inputs, background.

A new model file must pass three checks before it replaces the running model:

1. its size is at most ``max_model_bytes`` (a file being written, or a wrong file, is
   refused without being read);
2. :meth:`OnnxActor.load`: the contract and a probe run (see ``docs/onnx_contract.md``);
3. :func:`check_on_recent_inputs`: a finite residual on the last real observations the
   node has decided (a model can pass the synthetic probe and still give NaN on the
   robot's own observation range);
4. :func:`rpl_residual_node.model_identity.check_identity`: what its metadata says it is
   (task, controller, field names) fits what the running stack has said of itself so far.

:class:`BackgroundLoad` runs 2 and 3 in a daemon thread at a lowered OS priority, so a
large or slow file never holds up the control loop; the caller swaps the finished actor in
with one reference assignment on its own thread. Pure Python + onnxruntime (no rclpy).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from rpl_residual_node.model_identity import (
    MismatchError,
    StackIdentity,
    check_identity,
    scale_excess,
)
from rpl_residual_node.onnx_actor import ModelError, ModelTooLargeError, OnnxActor

# How many recently decided inputs a new model is validated on.
RECENT_INPUTS = 32
# Nice increment of the loader thread (Linux nice values are per thread).
LOADER_NICE = 10


# Kinds of refusal (LoadResult.kind).
TOO_LARGE = 'too_large'  # above max_model_bytes
BAD_ON_RECENT = 'recent_inputs'  # non-finite (or failing) on the recent real observations
MISMATCH = 'mismatch'  # made for another task, controller or other field names
INVALID = 'invalid'  # any other contract failure: unreadable, names, sizes, probe


class RecentInputError(ModelError):
    """A model gives a non-finite residual (or fails) on recent real observations."""


class RecentInput(NamedTuple):
    """One decided step's model inputs, kept to validate the next model on.

    Attributes:
        episode: Episode id.
        step: Step index.
        observation: Shape (obs_dim,), finite.
        goal: Desired goal, shape (goal_dim,), finite (m, world frame for Fetch).
        previous: The same episode's previous observation, shape (obs_dim,), or None at
            the episode start (two-frame models then get ``observation`` twice).
        base: The step's base action, shape (action_dim,), finite (for models that take
            it as an input); None where not kept.
    """

    episode: int
    step: int
    observation: np.ndarray
    goal: np.ndarray
    previous: np.ndarray | None
    base: np.ndarray | None = None


class LoadResult(NamedTuple):
    """Outcome of :func:`load_and_check`.

    Attributes:
        actor: The validated actor, or None if the file was refused.
        error: One sentence naming the file and what is wrong (None on success).
        kind: None on success, else the refusal kind: TOO_LARGE, BAD_ON_RECENT, MISMATCH or
            INVALID.
        checked: Number of recent real observations the actor was run on.
        step_s: Median time of one single-step inference on the newest of them (0: none).
    """

    actor: OnnxActor | None
    error: str | None
    kind: str | None
    checked: int
    step_s: float = 0.0


def check_on_recent_inputs(actor: OnnxActor, recent: Sequence[RecentInput]) -> int:
    """Run ``actor`` on the recent inputs of its sizes; all residuals must be finite.

    Args:
        actor: A loaded, probed actor.
        recent: Recently decided inputs, oldest first; inputs of other sizes are skipped
            (they were fed to no model of these sizes).

    Returns:
        How many inputs were checked.

    Raises:
        RecentInputError: Inference raised, some residual is not finite (the sentence
            gives how many and the first such step), or one goes beyond the scale the
            model states.
    """
    usable = [item for item in recent if _fits(actor, item)]
    if not usable:
        return 0
    observations = np.stack([item.observation for item in usable])  # (n, obs_dim)
    goals = np.stack([item.goal for item in usable])  # (n, goal_dim)
    previous = np.stack(
        [
            item.observation
            if item.previous is None or item.previous.shape != item.observation.shape
            else item.previous
            for item in usable
        ]
    )
    base = np.stack([item.base for item in usable]) if actor.base_input else None
    where = f'the last {len(usable)} real observations'
    try:
        residual = actor(observations, goals, previous, base)  # (n, action_dim)
    except Exception as exc:  # onnxruntime raises plain Exception subclasses
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        message = f'model {actor.path}: inference failed on {where} ({text})'
        raise RecentInputError(message) from exc
    bad = ~np.all(np.isfinite(residual), axis=1)
    if np.any(bad):
        first = usable[int(np.argmax(bad))]
        raise RecentInputError(
            f'model {actor.path}: non-finite residual on {int(bad.sum())} of {where} '
            f'(first: episode {first.episode}, step {first.step})'
        )
    if excess := scale_excess(actor.identity, residual):
        raise RecentInputError(f'model {actor.path}: on {where} {excess}')
    return len(usable)


def _fits(actor: OnnxActor, item: RecentInput) -> bool:
    """The input has ``actor``'s sizes (and a base action where it takes one)."""
    return (
        item.observation.shape == (actor.obs_dim,)
        and item.goal.shape == (actor.goal_dim,)
        and (
            not actor.base_input
            or (item.base is not None and item.base.shape == (actor.action_dim,))
        )
    )


def step_time_s(actor: OnnxActor, recent: Sequence[RecentInput], runs: int = 3) -> float:
    """Median seconds of one single-step inference on the newest input of ``actor``'s sizes
    (as the node runs it, one step at a time), or 0.0 when there is none."""
    item = next((item for item in reversed(recent) if _fits(actor, item)), None)
    if item is None:
        return 0.0
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        actor(item.observation, item.goal, item.previous, item.base)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def load_and_check(
    path: str,
    obs_dim: int | None,
    goal_dim: int | None,
    action_dim: int | None,
    max_bytes: int,
    recent: Sequence[RecentInput] = (),
    live: StackIdentity | None = None,
    allow_mismatch: bool = False,
) -> LoadResult:
    """Load, probe and check a model on recent inputs and against the stack; never raises.

    Args:
        path: ONNX file.
        obs_dim: Required observation size (the running model's), or None for any.
        goal_dim: Required goal size, or None for any.
        action_dim: Required residual size, or None for any.
        max_bytes: Largest accepted file size in bytes.
        recent: Recent real inputs to check the model on (see :func:`check_on_recent_inputs`).
        live: What the running stack has said of itself (None: nothing yet).
        allow_mismatch: Accept another task or controller (never other field names).
    """
    try:
        actor = OnnxActor.load(path, obs_dim, goal_dim, action_dim, max_bytes=max_bytes)
        if live is not None:
            check_identity(actor.identity, live, allow_mismatch)
        checked = check_on_recent_inputs(actor, recent)
        step_s = step_time_s(actor, recent) if checked else 0.0
    except MismatchError as exc:
        return LoadResult(None, f'model {path} does not fit this stack: {exc}', MISMATCH, 0)
    except ModelTooLargeError as exc:
        return LoadResult(None, str(exc), TOO_LARGE, 0)
    except RecentInputError as exc:
        return LoadResult(None, str(exc), BAD_ON_RECENT, 0)
    except ModelError as exc:
        return LoadResult(None, str(exc), INVALID, 0)
    except Exception as exc:  # a loader fault must not kill the thread silently
        return LoadResult(None, f'model {path}: loading failed ({exc!r})', INVALID, 0)
    return LoadResult(actor, None, None, checked, step_s)


class BackgroundLoad:
    """One :func:`load_and_check` in a daemon thread, started at construction.

    Args:
        Those of :func:`load_and_check`; ``recent`` should be a snapshot (a tuple), as the
        control thread keeps appending to its own buffer.
    """

    def __init__(
        self,
        path: str,
        obs_dim: int | None,
        goal_dim: int | None,
        action_dim: int | None,
        max_bytes: int,
        recent: Sequence[RecentInput],
        live: StackIdentity | None = None,
        allow_mismatch: bool = False,
    ) -> None:
        self.path = path
        self.result: LoadResult | None = None
        self._done = threading.Event()
        self._args = (
            path,
            obs_dim,
            goal_dim,
            action_dim,
            max_bytes,
            tuple(recent),
            live,
            allow_mismatch,
        )
        self._thread = threading.Thread(target=self._run, name='model_load', daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            thread_id = threading.get_native_id()
            nice = os.getpriority(os.PRIO_PROCESS, thread_id)
            os.setpriority(os.PRIO_PROCESS, thread_id, min(19, nice + LOADER_NICE))
        except (AttributeError, OSError):  # not Linux, or not permitted: run as is
            pass
        try:
            self.result = load_and_check(*self._args)
        finally:
            self._done.set()

    @property
    def done(self) -> bool:
        """The result is there (the thread finished)."""
        return self._done.is_set()
