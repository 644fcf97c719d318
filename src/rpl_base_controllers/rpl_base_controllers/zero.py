"""The zero controller: holds the gripper still (action zero).

It is the base of the Scratch and Expert Explore learners, whose actors output the whole
action: with ``controller:=zero`` such a model runs through the same residual node
(command = clip(0 + residual, -1, 1)) as an RPL model.
"""

from __future__ import annotations

import numpy as np

from rpl_base_controllers.base import ACTION_DIM, check_batch, check_single


class ZeroController:
    """Always the zero action (no move, finger command 0)."""

    def __init__(self, name: str = 'zero') -> None:
        self.name = name

    def reset(self) -> None:
        """Nothing to reset."""

    def __call__(self, observation: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        """``(obs_dim,)``, ``(3,)`` -> zeros ``(4,)`` (inputs are still validated)."""
        check_single(observation, desired_goal)
        return np.zeros(ACTION_DIM)

    def act_batch(self, observations: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """``(B, obs_dim)``, ``(B, 3)`` -> zeros ``(B, 4)``."""
        observations, _ = check_batch(observations, goals)
        return np.zeros((observations.shape[0], ACTION_DIM))
