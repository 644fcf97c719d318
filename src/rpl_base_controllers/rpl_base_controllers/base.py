"""The controller interface every base controller implements, and input checks.

A base controller maps one Fetch observation and the desired goal to one action:

* ``observation``: shape ``(obs_dim,)``, laid out as
  :class:`rpl_sim_bridge.layout.FetchObs` (positions in m in the world frame).
* ``desired_goal``: shape ``(3,)``, the goal position of the object (m, world frame).
* action: shape ``(4,)``, float64 in [-1, 1]: gripper displacement (x, y, z) in units of
  0.05 m per control step, and the finger command (+1 opens, -1 closes, 0 holds).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from rpl_sim_bridge.layout import FetchObs

ACTION_DIM = 4
GOAL_DIM = 3
# Every controller reads at least gripper, object, relative position and finger state.
MIN_OBS_DIM = FetchObs.GRIPPER_STATE.stop


@runtime_checkable
class BaseController(Protocol):
    """A base controller: observation and goal in, bounded action out.

    Attributes:
        name: The registry name the controller was made under (e.g. ``'reactive_push'``).
    """

    name: str

    def reset(self) -> None:
        """Forget any episode state; called at the start of every episode."""
        ...

    def __call__(self, observation: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        """Action for one step: ``(obs_dim,)``, ``(3,)`` -> ``(4,)`` float64 in [-1, 1]."""
        ...

    def act_batch(self, observations: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """Actions for a batch: ``(B, obs_dim)``, ``(B, 3)`` -> ``(B, 4)``."""
        ...


class LoopedBatchMixin:
    """Default ``act_batch``: calls the controller once per row."""

    def act_batch(self, observations: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """One ``__call__`` per row: ``(B, obs_dim)``, ``(B, 3)`` -> ``(B, 4)``."""
        observations, goals = check_batch(observations, goals)
        actions = np.zeros((observations.shape[0], ACTION_DIM))
        for row, (observation, goal) in enumerate(zip(observations, goals, strict=True)):
            actions[row] = self(observation, goal)
        return actions


def check_single(
    observation: np.ndarray, desired_goal: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Validate one observation ``(obs_dim,)`` and goal ``(3,)``; return float64 copies.

    Raises:
        ValueError: Wrong shape or non-finite values, naming what was expected.
    """
    observation = np.asarray(observation, dtype=np.float64)
    desired_goal = np.asarray(desired_goal, dtype=np.float64)
    if observation.ndim != 1 or observation.shape[0] < MIN_OBS_DIM:
        raise ValueError(
            f'observation must have shape (obs_dim,) with obs_dim >= {MIN_OBS_DIM}, '
            f'got {observation.shape}'
        )
    if desired_goal.shape != (GOAL_DIM,):
        raise ValueError(f'desired_goal must have shape ({GOAL_DIM},), got {desired_goal.shape}')
    _check_finite(observation, desired_goal)
    return observation, desired_goal


def check_batch(observations: np.ndarray, goals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a batch ``(B, obs_dim)`` of observations and ``(B, 3)`` of goals.

    Raises:
        ValueError: Wrong shapes, mismatched batch sizes or non-finite values.
    """
    observations = np.asarray(observations, dtype=np.float64)
    goals = np.asarray(goals, dtype=np.float64)
    if observations.ndim != 2 or observations.shape[1] < MIN_OBS_DIM:
        raise ValueError(
            f'observations must have shape (B, obs_dim) with obs_dim >= {MIN_OBS_DIM}, '
            f'got {observations.shape}'
        )
    if goals.shape != (observations.shape[0], GOAL_DIM):
        raise ValueError(
            f'goals must have shape ({observations.shape[0]}, {GOAL_DIM}) to match the '
            f'observations, got {goals.shape}'
        )
    _check_finite(observations, goals)
    return observations, goals


def _check_finite(observation: np.ndarray, goal: np.ndarray) -> None:
    if not np.all(np.isfinite(observation)):
        raise ValueError('observation contains NaN or inf; a controller needs finite values')
    if not np.all(np.isfinite(goal)):
        raise ValueError('desired goal contains NaN or inf; a controller needs finite values')


class BatchedCallMixin:
    """Default ``__call__`` for controllers written batch-first: one row through ``act_batch``."""

    def __call__(self, observation: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        """Action for one step: ``(obs_dim,)``, ``(3,)`` -> ``(4,)`` float64 in [-1, 1]."""
        observation, desired_goal = check_single(observation, desired_goal)
        return self.act_batch(observation[None, :], desired_goal[None, :])[0]
