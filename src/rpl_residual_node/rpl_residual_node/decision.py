"""The decision for one paired step: model inference, clamp, exploration and fallback.

Pure Python + numpy (the model is an :class:`rpl_residual_node.onnx_actor.OnnxActor` handed
in). Every Decision says where the command came from (``source`` 'residual' or 'base') and
why (``reason``); the command is never NaN. With ``explore_noise`` or ``explore_random``
above 0 (learning stacks), every 'ok' step's residual goes through
:func:`rpl_residual_node.mixing.explore_residual` (one numpy Generator seeded from
``explore_seed``; within the model's own residual_scale where that is below
residual_limit) before the mixing rule; fallbacks never explore and draw nothing.
"""

from __future__ import annotations

import collections
import math
import time
from typing import NamedTuple

import numpy as np

from rpl_interfaces import contract
from rpl_residual_node.mixing import ResidualConfig, explore_limit, explore_residual, mix
from rpl_residual_node.model_identity import scale_excess, within_reach
from rpl_residual_node.onnx_actor import OnnxActor

SOURCE_RESIDUAL = contract.COMMAND_FROM_RESIDUAL
SOURCE_BASE = contract.COMMAND_FROM_BASE

# Reasons of a Decision. 'ok' means the residual was applied; all others are fallbacks.
OK = 'ok'
NO_MODEL = 'no_model'
MODEL_LOAD_FAILED = 'model_load_failed'
OBSERVATION_WRONG_SIZE = 'observation_wrong_size'  # not the model's sizes
RESIDUAL_NON_FINITE = 'residual_non_finite'
INFERENCE_ERROR = 'inference_error'
MODEL_MISMATCH = 'model_mismatch'  # made for another task, controller or fields
BASE_ACTION_WRONG_SIZE = 'base_action_wrong_size'  # not the model's action size
INPUT_LATE = 'input_late'  # its input waited longer than max_input_age_s: model not run
# The residual went beyond the scale the model states (a mislabelled file: the load and
# reload checks saw no such input).
RESIDUAL_BEYOND_SCALE = 'residual_beyond_scale'

DECISION_REASONS = (
    OK,
    NO_MODEL,
    MODEL_LOAD_FAILED,
    OBSERVATION_WRONG_SIZE,
    RESIDUAL_NON_FINITE,
    INFERENCE_ERROR,
    MODEL_MISMATCH,
    BASE_ACTION_WRONG_SIZE,
    INPUT_LATE,
    RESIDUAL_BEYOND_SCALE,
)


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


class DecisionRule:
    """Decides one step's command from its finite halves and the running model.

    Args:
        config: Mixing and exploration parameters.

    Attributes:
        inference_latency: Model run times of the decided steps.
        explored_steps: 'ok' steps whose residual exploration changed.
        random_steps: Of those, steps with a uniform random residual.
    """

    def __init__(self, config: ResidualConfig) -> None:
        self.config = config
        self.inference_latency = LatencyWindow()
        self._explore_rng = np.random.default_rng(config.explore_seed)
        self.explored_steps = 0
        self.random_steps = 0
        self.beyond_scale: str | None = None  # the last step beyond the stated scale, said

    def decide(
        self,
        key: tuple[int, int],
        observation: np.ndarray,
        goal: np.ndarray,
        base: np.ndarray,
        previous: np.ndarray | None,
        fields: tuple[str, ...],
        actor: OnnxActor | None,
        no_model_reason: str,
        refused: bool,
        late: bool = False,
    ) -> Decision:
        """The rule for one step; ``base`` (action_dim,), observation and goal are finite.

        Args:
            key: ``(episode, step)``.
            observation: Observation, shape (obs_dim,).
            goal: Desired goal, shape (goal_dim,).
            base: Base action, shape (action_dim,).
            previous: The episode's previous observation (None at its start).
            fields: The base action's field names.
            actor: The running model (read once by the caller), or None.
            no_model_reason: The reason when ``actor`` is None.
            refused: The model does not fit this stream (base fallback, model_mismatch).
            late: The step's input waited longer than ``max_input_age_s`` (base fallback,
                input_late, without running the model).
        """
        config = self.config
        base_command = np.clip(base, config.action_low, config.action_high)
        if actor is None:
            return _fallback(key, base_command, no_model_reason, fields)
        if refused:
            return _fallback(key, base_command, MODEL_MISMATCH, fields)
        if late:
            return _fallback(key, base_command, INPUT_LATE, fields)
        if observation.shape != (actor.obs_dim,) or goal.shape != (actor.goal_dim,):
            return _fallback(key, base_command, OBSERVATION_WRONG_SIZE, fields)
        if base.shape != (actor.action_dim,):
            return _fallback(key, base_command, BASE_ACTION_WRONG_SIZE, fields)
        if previous is not None and previous.shape != observation.shape:
            previous = None
        start = time.perf_counter()
        try:
            residual = actor(observation, goal, previous, base)
        except Exception:  # a fault in the model never stops the control loop
            return _fallback(key, base_command, INFERENCE_ERROR, fields)
        self.inference_latency.add(time.perf_counter() - start)
        if residual.shape != base.shape:
            return _fallback(key, base_command, INFERENCE_ERROR, fields)
        if not np.all(np.isfinite(residual)):
            return _fallback(key, base_command, RESIDUAL_NON_FINITE, fields)
        if not within_reach(residual, actor.reach):
            self.beyond_scale = scale_excess(actor.identity, residual[None, :])  # for the log
            return _fallback(key, base_command, RESIDUAL_BEYOND_SCALE, fields)
        explored = False
        if config.explores:
            identity = actor.identity
            limit = explore_limit(config, identity.residual_scale, identity.residual_scales)
            residual, replaced = explore_residual(residual, config, self._explore_rng, limit)
            explored = bool(replaced) or config.explore_noise > 0.0
            self.random_steps += int(replaced)
            self.explored_steps += int(explored)
        command, applied = mix(base, residual, config)
        return Decision(key[0], key[1], command, applied, SOURCE_RESIDUAL, OK, explored, fields)


def _fallback(
    key: tuple[int, int], command: np.ndarray, reason: str, fields: tuple[str, ...]
) -> Decision:
    residual = np.zeros_like(command)
    return Decision(key[0], key[1], command, residual, SOURCE_BASE, reason, False, fields)
