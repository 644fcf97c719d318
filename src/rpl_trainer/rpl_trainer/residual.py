"""Residual action composition and exploration, one code path for every learner.

Every learner's actor outputs a tanh-space action u in [-1, 1]^A (what the buffer stores
and the critic sees). The executed action is

    a = clip(base(s, g) + scale * u, low, high)

with ``base`` the controller's action and ``scale = residual_scale`` for RPL (one number,
or one per action axis where ``residual_axis_scales`` names axes: :func:`residual_scales`),
and with ``base = 0`` and ``scale = high`` (the action bound) for the scratch learners. This
is the residual node's mixing rule (``command = clip(base + residual, -1, 1)``) with the
residual ``scale * u`` that the exported ONNX model outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rpl_interfaces.params import ParameterError
from rpl_trainer.config import ALGOS, TrainConfig

Scale = float | np.ndarray
"""A residual scale: one number for every axis, or an array with one per action axis."""


def as_scale(scale: float | Sequence[float] | np.ndarray) -> Scale:
    """``scale`` as a float where it is the same on every axis, else a float64 array."""
    array = np.asarray(scale, dtype=np.float64)
    if array.ndim == 0 or (array.size and np.all(array == array.flat[0])):
        return float(array.flat[0])
    return array


def largest_scale(scale: Scale) -> float:
    """The largest residual a model of this scale outputs on any axis (action units)."""
    return float(np.max(scale))


def axis_scales(scale: Scale) -> tuple[float, ...] | None:
    """The per-axis scales, or None where one number covers every axis."""
    scale = as_scale(scale)
    return None if isinstance(scale, float) else tuple(float(v) for v in scale)


def residual_scales(config: TrainConfig, action_fields: Sequence[str] | None) -> Scale:
    """The RPL residual scale of a run: ``residual_scale`` on every axis, except the action
    fields ``residual_axis_scales`` names (``'gripper:2 dz:1'``).

    Args:
        config: Supplies ``residual_scale``, ``residual_axis_scales``, ``algo`` and ``task``
            (the scratch learners ignore the per-axis scales like ``residual_scale``).
        action_fields: The task's action field names, in action order; may be None when
            ``residual_axis_scales`` is empty.

    Returns:
        A float (the same on every axis) or a float64 array, one scale per action axis.

    Raises:
        ParameterError: One line naming the first item that is not FIELD:SCALE, a field the
            task does not have or names twice, or a scale that is not a positive number.
    """
    text = config.residual_axis_scales
    if not text.strip() or config.algo != 'rpl':
        return float(config.residual_scale)
    what = 'residual_axis_scales'
    if action_fields is None:
        raise ParameterError(f'{what} names action fields, and none are known here')
    fields = list(action_fields)
    scales = np.full(len(fields), float(config.residual_scale))
    named: set[str] = set()
    for item in text.split():
        name, sep, value = item.partition(':')
        if not sep or not name:
            raise ParameterError(
                f'{what}: {item!r} is not ACTION_FIELD:SCALE (items separated by spaces)'
            )
        if name not in fields:
            raise ParameterError(
                f'{what}: task {config.task!r} has no action field {name!r}; its action '
                f'fields: {fields}'
            )
        if name in named:
            raise ParameterError(f'{what}: {name!r} is named twice')
        try:
            scale = float(value)
        except ValueError:
            scale = float('nan')
        if not (np.isfinite(scale) and scale > 0.0):
            hint = ' (items are separated by spaces, not commas)' if ',' in value else ''
            raise ParameterError(f'{what}: {name}:{value} is not a positive number{hint}')
        named.add(name)
        scales[fields.index(name)] = scale
    return as_scale(scales)


def action_bound(low: float, high: float) -> float:
    """The largest action magnitude, max(|low|, |high|): a scratch learner's scale, and what
    the executed-action critic divides executed actions by."""
    return max(abs(float(low)), abs(float(high)))


def compose_action(
    base: np.ndarray, u: np.ndarray, scale: Scale, low: float = -1.0, high: float = 1.0
) -> np.ndarray:
    """Executed action clip(base + scale * u, low, high).

    Args:
        base: Base actions (batch, action_dim) in action units (not clipped beforehand,
            like the residual node).
        u: Tanh-space residuals (batch, action_dim) in [-1, 1].
        scale: Residual scale (one, or one per axis).
        low: Lower action bound.
        high: Upper action bound.

    Returns:
        Executed actions (batch, action_dim), float32.
    """
    return np.clip(base + scale * u, low, high).astype(np.float32)


def residual_explaining(executed: np.ndarray, base: np.ndarray, scale: Scale) -> np.ndarray:
    """The tanh-space residual u' with clip(base + scale * u') == executed, when one exists.

    Used by goal-consistent HER: after relabelling, ``base`` is the base action for the new
    goal. No atanh is involved (u is stored after the tanh). Where ``executed`` sits on an
    action bound, any u' that pushes the sum past the bound reproduces it; this returns the
    smallest such |u'| (the one on the bound). The result is clipped to [-1, 1], which only
    binds when |executed - base| > scale, i.e. when no residual in range can explain it.

    Args:
        executed: Executed actions (batch, action_dim).
        base: Base actions under the relabelled goals (batch, action_dim).
        scale: Residual scale (> 0; one, or one per axis).

    Returns:
        Residuals (batch, action_dim) in [-1, 1], float32.
    """
    return np.clip((executed - base) / scale, -1.0, 1.0).astype(np.float32)


class ActionComposer:
    """Turns actor outputs (and base actions) into executed and stored actions.

    Args:
        algo: One of ``rpl``, ``scratch``, ``expert_explore``.
        residual_scale: RPL residual scale, one or one per axis (:func:`residual_scales`;
            the scratch learners use the action bound).
        low: Lower action bound of the task.
        high: Upper action bound of the task.
        noise_eps: Std of Gaussian noise on u while exploring.
        random_eps: Probability of a uniform random u while exploring (not for
            ``expert_explore``, whose replacement rule takes its place).
        expert_eps: ``expert_explore``: probability of replacing the executed action.
        expert_alpha: ``expert_explore``: probability that a replacement is the base action
            (else uniform random).
    """

    def __init__(
        self,
        algo: str,
        residual_scale: Scale,
        low: float,
        high: float,
        noise_eps: float,
        random_eps: float,
        expert_eps: float = 0.0,
        expert_alpha: float = 0.0,
    ) -> None:
        if algo not in ALGOS:
            raise ValueError(f'unknown algo {algo!r}; expected one of {list(ALGOS)}')
        self.algo = algo
        self.low = float(low)
        self.high = float(high)
        self.scale = as_scale(residual_scale) if algo == 'rpl' else action_bound(low, high)
        self.noise_eps = noise_eps
        self.random_eps = random_eps
        self.expert_eps = expert_eps
        self.expert_alpha = expert_alpha

    @property
    def uses_base(self) -> bool:
        """The executed action adds the base action."""
        return self.algo == 'rpl'

    def executed(self, u: np.ndarray, base: np.ndarray) -> np.ndarray:
        """Executed action (batch, action_dim) for tanh-space u and base actions."""
        if not self.uses_base:
            base = np.zeros_like(u)
        return compose_action(base, u, self.scale, self.low, self.high)

    def explore(
        self, u: np.ndarray, base: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exploratory version of the actor's deterministic u.

        Args:
            u: Deterministic actor output (batch, action_dim) in [-1, 1].
            base: Base actions (batch, action_dim) (used by ``rpl`` and ``expert_explore``).
            rng: Source of the noise.

        Returns:
            (u_stored, executed): the tanh-space action for the buffer and the action to
            execute, both (batch, action_dim) float32, with executed == self.executed(u_stored,
            base) for ``rpl`` and ``scratch``.
        """
        batch = u.shape[0]
        noisy = np.clip(u + self.noise_eps * rng.standard_normal(u.shape), -1.0, 1.0)
        uniform = rng.uniform(-1.0, 1.0, size=u.shape)
        if self.algo == 'expert_explore':
            replace = rng.random(batch) < self.expert_eps
            use_base = rng.random(batch) < self.expert_alpha
            base_u = np.clip(base, self.low, self.high) / self.scale
            replacement = np.where(use_base[:, None], base_u, uniform)
            stored = np.where(replace[:, None], replacement, noisy)
        else:
            random = rng.random(batch) < self.random_eps
            stored = np.where(random[:, None], uniform, noisy)
        stored = np.clip(stored, -1.0, 1.0).astype(np.float32)
        return stored, self.executed(stored, base)


def scale_range_note(config: TrainConfig, spec: Any, setting: str = '--set ') -> str | None:
    """A warning when the residual reaches further than the task's whole action range, or
    None. A residual of ``high - low`` already overrides any base action (2 on the Fetch
    tasks' [-1, 1], the default); more only clips, and its exploration noise, in units of
    the scale, is coarser for the range than the paper's (a plug-in task of [-0.5, 0.5]
    with the default 2: four times the range).

    Args:
        config: The run's config (``algo``, ``residual_scale``, per-axis scales).
        spec: The task's spec (``action_low``, ``action_high``, ``action_fields``).
        setting: How the reader sets a config field (``rpl train``: ``--set ``; the
            trainer node: ``train_overrides:=``).
    """
    if config.algo != 'rpl':
        return None
    span = float(spec.action_high - spec.action_low)
    scales = residual_scales(config, spec.action_fields)
    reach = largest_scale(scales)
    if reach <= span * (1.0 + 1e-9):
        return None
    if isinstance(scales, float):
        what, fix = f'residual_scale {reach:g}', f'{setting}residual_scale={span:g}'
    else:  # per-axis: the axes beyond it, set in residual_axis_scales
        over = [f for f, v in zip(spec.action_fields, scales, strict=True) if v > span]
        what = f'the residual scale of {", ".join(over)} ({reach:g} at most)'
        items = ' '.join(f'{f}:{span:g}' for f in over)
        fix = f"{setting}residual_axis_scales='{items}' (its other items as they are)"
    return (
        f'{what} reaches beyond the whole action range of task {spec.name!r} ({span:g} = '
        f'{spec.action_high:g} - ({spec.action_low:g})): the residual needs at most {span:g} '
        f'to override any base action, and exploration noise is in units of the scale; '
        f'{fix} fits it'
    )
