"""Residual action composition and exploration, one code path for every learner.

Every learner's actor outputs a tanh-space action u in [-1, 1]^A (what the buffer stores
and the critic sees). The executed action is

    a = clip(base(s, g) + scale * u, low, high)

with ``base`` the controller's action and ``scale = residual_scale`` for RPL, and with
``base = 0`` and ``scale = high`` (the action bound) for the scratch learners. This is the
residual node's mixing rule (``command = clip(base + residual, -1, 1)``) with the residual
``scale * u`` that the exported ONNX model outputs.
"""

from __future__ import annotations

import numpy as np

from rpl_trainer.config import ALGOS


def action_bound(low: float, high: float) -> float:
    """The largest action magnitude, max(|low|, |high|): a scratch learner's scale, and what
    the executed-action critic divides executed actions by."""
    return max(abs(float(low)), abs(float(high)))


def compose_action(
    base: np.ndarray, u: np.ndarray, scale: float, low: float = -1.0, high: float = 1.0
) -> np.ndarray:
    """Executed action clip(base + scale * u, low, high).

    Args:
        base: Base actions (batch, action_dim) in action units (not clipped beforehand,
            like the residual node).
        u: Tanh-space residuals (batch, action_dim) in [-1, 1].
        scale: Residual scale.
        low: Lower action bound.
        high: Upper action bound.

    Returns:
        Executed actions (batch, action_dim), float32.
    """
    return np.clip(base + scale * u, low, high).astype(np.float32)


def residual_explaining(executed: np.ndarray, base: np.ndarray, scale: float) -> np.ndarray:
    """The tanh-space residual u' with clip(base + scale * u') == executed, when one exists.

    Used by goal-consistent HER: after relabelling, ``base`` is the base action for the new
    goal. No atanh is involved (u is stored after the tanh). Where ``executed`` sits on an
    action bound, any u' that pushes the sum past the bound reproduces it; this returns the
    smallest such |u'| (the one on the bound). The result is clipped to [-1, 1], which only
    binds when |executed - base| > scale, i.e. when no residual in range can explain it.

    Args:
        executed: Executed actions (batch, action_dim).
        base: Base actions under the relabelled goals (batch, action_dim).
        scale: Residual scale (> 0).

    Returns:
        Residuals (batch, action_dim) in [-1, 1], float32.
    """
    return np.clip((executed - base) / scale, -1.0, 1.0).astype(np.float32)


class ActionComposer:
    """Turns actor outputs (and base actions) into executed and stored actions.

    Args:
        algo: One of ``rpl``, ``scratch``, ``expert_explore``.
        residual_scale: RPL residual scale (the scratch learners use the action bound).
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
        residual_scale: float,
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
        self.scale = float(residual_scale) if algo == 'rpl' else action_bound(low, high)
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
