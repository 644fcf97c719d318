"""In-process residual policy for evaluation (``rpl eval --model``): same rule as the node.

No ROS and no message pairing: the caller already has the observation, goal and base
action of each step (one environment or a batch of them).
"""

from __future__ import annotations

import numpy as np

from rpl_residual_node.mixing import ResidualConfig, mix, safe_action
from rpl_residual_node.model_identity import within_reach
from rpl_residual_node.onnx_actor import OnnxActor


class ResidualPolicy:
    """``(observation, desired_goal, base_action) -> command`` with the node's mixing rule.

    Per row: a non-finite base action gives the safe action; a non-finite observation, goal
    or residual gives the (clipped) base action; otherwise the residual is clamped, scaled,
    added and the sum clipped to the action bounds. Without an actor the command is the
    base action. Two-frame actors get the previous call's observation, so call
    :meth:`reset` at every episode start.

    Args:
        actor: Validated ONNX actor, or None for base-only.
        config: Scale, limit and action bounds (``model_path`` is not read here).
    """

    def __init__(self, actor: OnnxActor | None, config: ResidualConfig | None = None) -> None:
        self.actor = actor
        self.config = config if config is not None else ResidualConfig()
        self._previous: np.ndarray | None = None
        # Rows of the last mix() whose residual came out non-finite, or beyond the scale
        # the model states (the base action was used there, as the residual node does):
        # what a replay of a candidate model counts.
        self.last_non_finite = np.zeros(0, dtype=bool)
        self.last_beyond_scale = np.zeros(0, dtype=bool)

    @classmethod
    def from_file(cls, path: str, config: ResidualConfig | None = None, **dims) -> ResidualPolicy:
        """Load and validate an actor (see :meth:`OnnxActor.load`) and wrap it."""
        return cls(OnnxActor.load(path, **dims), config)

    def reset(self) -> None:
        """Forget the previous observation (call at the start of every episode)."""
        self._previous = None

    def remember(self, observation: np.ndarray) -> None:
        """Take ``observation`` as the previous frame of the next call without acting on it
        (a step the caller does not mix but the residual node paired)."""
        self._previous = np.atleast_2d(np.asarray(observation, dtype=np.float64)).copy()

    def __call__(
        self, observation: np.ndarray, desired_goal: np.ndarray | None, base_action: np.ndarray
    ) -> np.ndarray:
        """Command for one step.

        Args:
            observation: Shape (obs_dim,) or (N, obs_dim).
            desired_goal: Shape (goal_dim,) or (N, goal_dim); None or empty for a
                fixed-goal task (goal_dim 0).
            base_action: Shape (action_dim,) or (N, action_dim).

        Returns:
            Command, float64, shape of ``base_action``, finite, inside the action bounds.
        """
        return self.mix(observation, desired_goal, base_action)[0]

    def mix(
        self, observation: np.ndarray, desired_goal: np.ndarray | None, base_action: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like ``__call__`` but also return the applied residual (zeros where it fell back).

        Returns:
            ``(command, applied_residual)``, both shaped like ``base_action``.
        """
        base = np.asarray(base_action, dtype=np.float64)
        single = base.ndim == 1
        base = np.atleast_2d(base)
        obs = np.atleast_2d(np.asarray(observation, dtype=np.float64))
        if desired_goal is None or np.size(desired_goal) == 0:  # a fixed-goal task
            goal = np.zeros((obs.shape[0], 0))
        else:
            goal = np.atleast_2d(np.asarray(desired_goal, dtype=np.float64))
        action_dim = base.shape[1]

        base_ok = np.all(np.isfinite(base), axis=1)
        command = np.where(
            base_ok[:, None],
            np.clip(np.nan_to_num(base), self.config.action_low, self.config.action_high),
            safe_action(action_dim, self.config),
        )
        applied = np.zeros_like(command)
        if self.actor is not None:
            inputs_ok = np.all(np.isfinite(obs), axis=1) & np.all(np.isfinite(goal), axis=1)
            previous = self._previous
            if previous is None or previous.shape != obs.shape:
                previous = obs
            self._previous = obs.copy()
            residual = self.actor(
                np.nan_to_num(obs),
                np.nan_to_num(goal),
                np.nan_to_num(previous),
                np.nan_to_num(base),
            )
            finite = np.all(np.isfinite(residual), axis=1)
            self.last_non_finite = base_ok & inputs_ok & ~finite
            within = finite & within_reach(np.nan_to_num(residual), self.actor.reach)
            self.last_beyond_scale = base_ok & inputs_ok & finite & ~within
            use = base_ok & inputs_ok & within
            mixed, mixed_applied = mix(base[use], residual[use], self.config)
            command[use] = mixed
            applied[use] = mixed_applied
        if single:
            return command[0], applied[0]
        return command, applied
