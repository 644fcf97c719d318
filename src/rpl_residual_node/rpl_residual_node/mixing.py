"""The residual mixing rule and its configuration (pure numpy, no ROS).

The executed command is::

    command = clip(base + residual_gain * clamp(residual, -residual_limit, +residual_limit),
                   action_low, action_high)

With ``residual_gain = 1`` and ``residual_limit = 2`` on actions in [-1, 1] this is the
paper's ``clip(base + 2 tanh(f(s, g)), -1, 1)``: the ``2`` is the model's
``residual_scale``, inside the ONNX graph (its metadata names it), so the residual may fully
override the base. In general the full override is ``residual_limit = action_high -
action_low`` (:func:`full_override_limit`; 4 on mbrl_pusher's [-2, 2] N m), as the trainer
composes it with ``residual_scale`` = the bounds' range; a smaller limit changes what the
model learned. ``residual_limit = 0`` or ``residual_gain = 0`` turn the residual off
without unloading the model. The gain was called ``residual_scale`` before; that name now
means only the scale inside the graph, and a node given it is refused
(:data:`RENAMED_PARAMETERS`).

Exploration (learning stacks only; off by default, as deployment needs). When a validated
model produced a finite residual, :func:`explore_residual` may perturb it before the rule
above, as the trainer's exploration does with its tanh-space action::

    residual = uniform(-L, L)^A                         with probability explore_random
               clamp(residual + explore_noise * L * N(0, 1)^A, -L, L)   otherwise

``L`` is ``residual_limit``, or the model's own ``residual_scale`` (its metadata) where that
is smaller (:func:`explore_limit`): a model trained with ``residual_scale`` 0.5 explores
within +-0.5, the range the trainer explored it in and the range its stored residual
``u = (command - base) / scale`` can express; a model with per-axis scales (metadata
``residual_scales``) explores each axis within its own. The command and the published residual then
carry the explored residual, so a learner recovers it from ``command - base`` as for any
other step. Fallbacks never explore.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from rpl_interfaces.params import ParameterError, describe

# Parameters of the residual node that were renamed: old name -> new name. A launch file or
# parameter file that still sets an old name is refused at start (not silently ignored).
RENAMED_PARAMETERS = {'residual_scale': 'residual_gain'}


def check_renamed(given: Mapping[str, Any]) -> None:
    """Refuse a renamed parameter that was given a value.

    Args:
        given: Value of each old name of :data:`RENAMED_PARAMETERS`; ``None`` = not set.

    Raises:
        ParameterError: One line naming the old parameter and its new name.
    """
    for old, new in RENAMED_PARAMETERS.items():
        if given.get(old) is not None:
            raise ParameterError(
                f'parameter {old!r} was renamed to {new!r} (the gain on the clamped residual; '
                f"{old!r} now names only the model's scale inside its graph): "
                f'set {new}:={given[old]!r} instead'
            )


@dataclasses.dataclass(frozen=True)
class ResidualConfig:
    """Configuration of the residual mixer and node (one ROS parameter per field)."""

    model_path: str = dataclasses.field(
        default='',
        metadata=describe(
            'ONNX residual actor file (see docs/onnx_contract.md); empty = base action only'
        ),
    )
    allow_model_mismatch: bool = dataclasses.field(
        default=False,
        metadata=describe(
            'Run a model whose metadata names another task or base controller than the '
            'running stack (observation / base_action frame_id); other field names are '
            'refused always'
        ),
    )
    residual_gain: float = dataclasses.field(
        default=1.0,
        metadata=describe(
            'Gain on the clamped residual at deployment (1.0 = the model as trained; the '
            "model's own residual_scale is inside its graph); may be changed while the node "
            'runs (ros2 param set): a raise is reached over residual_gain_ramp_s, a lower gain '
            'at once',
            range=(0.0, 2.0),
            runtime=True,
        ),
    )
    residual_gain_ramp_s: float = dataclasses.field(
        default=0.0,
        metadata=describe(
            'A runtime raise of residual_gain moves there linearly over this long (s of wall '
            'time) from the gain of the moment, and at start the gain comes in from 0 over it; '
            'a lower gain applies at once; 0 = at the next step',
            range=(0.0, 3600.0),
        ),
    )
    residual_limit: float = dataclasses.field(
        default=2.0,
        metadata=describe(
            'Residual clamped to +-limit before the gain, action units; action_high - '
            'action_low (2.0 on +-1) = the residual may fully override the base, as the '
            'trainer composes it',
            range=(0.0, 200.0),
        ),
    )
    action_low: float = dataclasses.field(
        default=-1.0,
        metadata=describe('Lower bound of every command component', range=(-100.0, 0.0)),
    )
    action_high: float = dataclasses.field(
        default=1.0,
        metadata=describe('Upper bound of every command component', range=(0.0, 100.0)),
    )
    sync_timeout_s: float = dataclasses.field(
        default=1.0,
        metadata=describe(
            'An observation or base action waiting this long (s) for its partner is dropped',
            range=(0.001, 60.0),
        ),
    )
    max_input_age_s: float = dataclasses.field(
        default=0.1,
        metadata=describe(
            'A step whose last input message waited longer than this (s) in the node before '
            'its decision gets the base action and the model is not run (reason input_late): '
            'a node behind its input (a model slower than the input period, a stalled CPU) '
            'sends no stale residuals; 0 = never (the lockstep stacks: their sim waits for '
            'every command, so a wait there is load, not a fault)',
            range=(0.0, 60.0),
        ),
    )
    reload_period_s: float = dataclasses.field(
        default=1.0,
        metadata=describe(
            'How often (s) the model file mtime/size is checked for a hot reload',
            range=(0.05, 3600.0),
        ),
    )
    silence_warning_s: float = dataclasses.field(
        default=10.0,
        metadata=describe(
            'With no observation or base action this long (s) after start and no publisher '
            'of either, warn once naming the topics listened on (a node outside the stack '
            'namespace hears nothing); 0 = never',
            range=(0.0, 3600.0),
        ),
    )
    max_model_bytes: int = dataclasses.field(
        default=64 * 2**20,
        metadata=describe(
            'Largest model file accepted, bytes; a larger one is refused without being read '
            '(the shipped actors are ~0.6 MB)',
            range=(1024, 2**32),
        ),
    )
    diagnostics_period_s: float = dataclasses.field(
        default=1.0,
        metadata=describe('Period (s) of the /diagnostics status', range=(0.05, 3600.0)),
    )

    explore_noise: float = dataclasses.field(
        default=0.0,
        metadata=describe(
            'Exploration: std of Gaussian noise added to the model residual, as a fraction of '
            "residual_limit, or of the model's residual_scale if smaller (0 = off; learning "
            'stacks only)',
            range=(0.0, 1.0),
        ),
    )
    explore_random: float = dataclasses.field(
        default=0.0,
        metadata=describe(
            'Exploration: probability per step of replacing the model residual by a uniform '
            "random one in +-residual_limit, or +- the model's residual_scale if smaller (0 = "
            'off; learning stacks only)',
            range=(0.0, 1.0),
        ),
    )
    explore_seed: int = dataclasses.field(
        default=0,
        metadata=describe(
            'Seed of the exploration noise (any non-negative integer)', range=(0, 2**63 - 1)
        ),
    )

    def __post_init__(self) -> None:
        if not self.action_low < self.action_high:
            raise ParameterError(
                f'action_low ({self.action_low}) must be below action_high ({self.action_high})'
            )
        if self.explores and self.residual_gain > 1.0:
            raise ParameterError(
                f'a residual node that explores (explore_noise {self.explore_noise:g}, '
                f'explore_random {self.explore_random:g}) keeps residual_gain at most 1 (got '
                f'{self.residual_gain:g}): its learner stores (command - base) / scale, '
                'clipped to +-1, and a larger gain would store other actions than the ones run'
            )

    @property
    def safe_action_value(self) -> float:
        """The value of every component of the safe action: 0 moved into the bounds."""
        return float(np.clip(0.0, self.action_low, self.action_high))

    @property
    def explores(self) -> bool:
        """Exploration is on (``explore_noise`` or ``explore_random`` above 0)."""
        return self.explore_noise > 0.0 or self.explore_random > 0.0

    def describe_exploration(self) -> str:
        """One line naming the exploration settings, e.g. for a log or diagnostics."""
        if not self.explores:
            return 'exploration off'
        return (
            f'exploration on: noise std {self.explore_noise} x L (residual_limit, or the '
            f"model's residual_scale if smaller), random residual "
            f'with probability {self.explore_random}, seed {self.explore_seed}'
        )


def full_override_limit(action_low: float, action_high: float) -> float:
    """The ``residual_limit`` that lets the residual fully override the base on actions in
    [action_low, action_high] (the range the trainer's residual covers): high - low."""
    return action_high - action_low


def clamp_residual(residual: np.ndarray, config: ResidualConfig) -> np.ndarray:
    """Scaled, clamped residual: the term added to the base action.

    Args:
        residual: Actor output in action units, shape (..., action_dim).
        config: Supplies ``residual_limit`` and ``residual_gain``.

    Returns:
        ``residual_gain * clamp(residual, -residual_limit, residual_limit)``, float64,
        same shape.
    """
    limit = config.residual_limit
    return config.residual_gain * np.clip(np.asarray(residual, dtype=np.float64), -limit, limit)


def mix(
    base_action: np.ndarray, residual: np.ndarray, config: ResidualConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Combine a base action and a residual into the command (the mixing rule above).

    Args:
        base_action: Base controller action, shape (..., action_dim), finite.
        residual: Actor output in action units, shape (..., action_dim), finite.
        config: Gain, limit and action bounds.

    Returns:
        ``(command, applied)``: the command clipped to ``[action_low, action_high]`` and the
        scaled, clamped residual that was added to the base before the clip, both float64
        of the broadcast shape.
    """
    applied = clamp_residual(residual, config)
    base = np.asarray(base_action, dtype=np.float64)
    command = np.clip(base + applied, config.action_low, config.action_high)
    return command, applied


class GainRamp:
    """The residual gain over time: ``residual_gain`` at start, then each runtime raise
    reached linearly over ``ramp_s`` from the gain of that moment (at once for 0), so a
    residual brought in on a robot never jumps; a lower gain applies at once (taking a
    residual out is never slowed), and the same target again changes nothing.

    Args:
        gain: The gain at start.
        ramp_s: How long a raise takes (s), whatever its size (a lower gain: at once).
        clock: Seconds, monotonic (the mixer's clock).
    """

    def __init__(self, gain: float, ramp_s: float, clock: Callable[[], float]) -> None:
        self.target = gain
        self._from = gain
        self._ramp_s = ramp_s
        self._clock = clock
        self._since = clock()

    def set(self, target: float) -> None:
        """Move to ``target``: up from the gain of this moment over the ramp, down at once;
        the target it already has changes nothing (a repeated set restarted the ramp)."""
        target = float(target)
        if target == self.target:
            return
        now = self.now()
        self._from = target if target < now else now
        self._since = self._clock()
        self.target = target

    def now(self) -> float:
        """The gain of this moment."""
        if self._ramp_s <= 0.0:
            return self.target
        done = (self._clock() - self._since) / self._ramp_s
        if done >= 1.0:
            return self.target
        return self._from + (self.target - self._from) * max(done, 0.0)


def explore_limit(
    config: ResidualConfig,
    model_scale: float | None,
    model_scales: Sequence[float] | None = None,
) -> float | np.ndarray:
    """The exploration range L: ``residual_limit``, or the model's scale where smaller.

    Args:
        config: Supplies ``residual_limit``.
        model_scale: The running model's ``residual_scale`` (largest residual it can
            output, action units), or None where its metadata does not say.
        model_scales: Its per-axis scales (metadata ``residual_scales``), or None; where
            given, L is per axis: each axis explores within its own scale.

    Returns:
        One range, or one per action axis.
    """
    if model_scales is not None:
        return np.minimum(config.residual_limit, np.asarray(model_scales, dtype=np.float64))
    if model_scale is None or not model_scale > 0.0:
        return config.residual_limit
    return min(config.residual_limit, float(model_scale))


def explore_residual(
    residual: np.ndarray,
    config: ResidualConfig,
    rng: np.random.Generator,
    limit: float | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exploratory version of a model residual (the exploration rule above).

    Every call draws the same amount from ``rng`` (a normal and a uniform per component, one
    coin per row), so the stream position depends only on how many rows were explored.

    Args:
        residual: Finite actor output in action units, shape (..., action_dim).
        config: Supplies ``explore_noise``, ``explore_random`` and ``residual_limit``.
        rng: Source of the noise (seeded from ``explore_seed`` by the caller).
        limit: The range L (:func:`explore_limit`); default ``residual_limit``.

    Returns:
        ``(explored, replaced)``: the explored residual in ``[-L, L]``, float64 of the same
        shape, and a bool array of shape (...) that is True where the residual was replaced
        by a uniform random one.
    """
    limit = config.residual_limit if limit is None else limit
    residual = np.asarray(residual, dtype=np.float64)
    noise = rng.standard_normal(residual.shape)
    uniform = rng.uniform(-limit, limit, size=residual.shape)
    replaced = np.asarray(rng.random(residual.shape[:-1]) < config.explore_random)
    noisy = np.clip(residual + config.explore_noise * limit * noise, -limit, limit)
    return np.where(replaced[..., None], uniform, noisy), replaced


def safe_action(action_dim: int, config: ResidualConfig) -> np.ndarray:
    """The safe action (zero moved into the action bounds), shape (action_dim,)."""
    return np.full(action_dim, config.safe_action_value, dtype=np.float64)
