"""The zero controller: holds still (action zero), for any task.

It is the base of the Scratch and Expert Explore learners, whose actors output the whole
action: with ``controller:=zero`` such a model runs through the same residual node
(command = clip(0 + residual, low, high)) as an RPL model. Its sizes are the task's
(``TaskSpec.obs_dim``, ``goal_dim``, ``action_dim``; goal_dim 0 for a fixed-goal task),
so it suits every registered task; without a task it takes the Fetch action size.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from rpl_base_controllers.base import ACTION_DIM

ZERO: Final = 'zero'  # its registry name: the controller a Scratch / Expert Explore model runs on


class ZeroController:
    """Always the zero action (no move; for Fetch, finger command 0 too).

    Args:
        name: Registry name.
        action_dim: Size of the action it returns.
        obs_dim: Required observation size, or None for any.
        goal_dim: Required desired-goal size (0 for a fixed-goal task), or None for any.
    """

    def __init__(
        self,
        name: str = ZERO,
        action_dim: int = ACTION_DIM,
        obs_dim: int | None = None,
        goal_dim: int | None = None,
    ) -> None:
        if action_dim < 1:
            raise ValueError(f'zero controller: action_dim must be >= 1, got {action_dim}')
        self.name = name
        self.action_dim = action_dim
        self.obs_dim = obs_dim
        self.goal_dim = goal_dim

    @classmethod
    def for_task(cls, spec: Any, name: str = ZERO) -> ZeroController:
        """Sized for a task spec (``obs_dim``, ``goal_dim``, ``action_dim``)."""
        return cls(name, spec.action_dim, spec.obs_dim, spec.goal_dim)

    def reset(self) -> None:
        """Nothing to reset."""

    def __call__(self, observation: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        """``(obs_dim,)``, ``(goal_dim,)`` -> zeros ``(action_dim,)`` (inputs are validated)."""
        observation = np.asarray(observation, dtype=np.float64)
        desired_goal = np.asarray(desired_goal, dtype=np.float64)
        if observation.ndim != 1:
            raise ValueError(f'observation must have shape (obs_dim,), got {observation.shape}')
        if desired_goal.ndim != 1:
            raise ValueError(f'desired_goal must have shape (goal_dim,), got {desired_goal.shape}')
        self._check(observation, desired_goal)
        return np.zeros(self.action_dim)

    def act_batch(self, observations: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """``(B, obs_dim)``, ``(B, goal_dim)`` -> zeros ``(B, action_dim)``."""
        observations = np.asarray(observations, dtype=np.float64)
        if observations.ndim != 2:
            raise ValueError(
                f'observations must have shape (B, obs_dim), got {observations.shape}'
            )
        goals = np.asarray(goals, dtype=np.float64)
        if goals.ndim != 2 or goals.shape[0] != observations.shape[0]:
            raise ValueError(
                f'goals must have shape ({observations.shape[0]}, goal_dim) to match the '
                f'observations, got {goals.shape}'
            )
        self._check(observations, goals)
        return np.zeros((observations.shape[0], self.action_dim))

    def _check(self, observations: np.ndarray, goals: np.ndarray) -> None:
        obs_dim, goal_dim = observations.shape[-1], goals.shape[-1]
        if self.obs_dim is not None and obs_dim != self.obs_dim:
            raise ValueError(f'observation must have {self.obs_dim} entries, got {obs_dim}')
        if self.goal_dim is not None and goal_dim != self.goal_dim:
            raise ValueError(f'desired_goal must have {self.goal_dim} entries, got {goal_dim}')
        if not np.all(np.isfinite(observations)):
            raise ValueError('observation contains NaN or inf; a controller needs finite values')
        if not np.all(np.isfinite(goals)):
            raise ValueError('desired goal contains NaN or inf; a controller needs finite values')
