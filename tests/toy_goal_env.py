"""A tiny deterministic goal task for trainer tests: a point reaching a goal in the plane.

State: point position p in [-1, 1]^2 (m). Goal: g in [-1, 1]^2. Action a in [-1, 1]^2
moves the point by ``STEP_SIZE * a`` (clipped to the box). Success: |p - g| <= 0.1 at the
last of T = 10 steps; sparse reward -(d > 0.1), like the Fetch tasks. Episodes start at a
seeded random p and g, so each reset seed reproduces its episode.

``BiasedController`` is a deliberately poor base controller (too weak, pushed sideways)
for residual tests; it is a pure function of (observation, goal), batched.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from rpl_sim_bridge.tasks import TaskSpec, sparse_reward

STEP_SIZE = 0.3  # m per unit action
THRESHOLD = 0.1  # m
EPISODE_STEPS = 10

SPEC = TaskSpec(
    name='toy_reach',
    description='point in the plane reaching a goal (trainer tests)',
    obs_dim=2,
    goal_dim=2,
    action_dim=2,
    max_episode_steps=EPISODE_STEPS,
    distance_threshold=THRESHOLD,
    obs_fields=('point_x', 'point_y'),
    action_low=-1.0,
    action_high=1.0,
    control_dt=1.0,
)


def toy_reward(achieved: np.ndarray, desired: np.ndarray, info: Any = None) -> np.ndarray:
    """Pure batched reward -(d > threshold), shape (...,)."""
    return sparse_reward(achieved, desired, THRESHOLD)


class PointReach:
    """The task: gymnasium-like reset/step with goal dicts."""

    spec = SPEC

    def __init__(self) -> None:
        self._point = np.zeros(2)
        self._goal = np.zeros(2)
        self._steps = 0

    def _obs(self) -> dict[str, np.ndarray]:
        return {
            'observation': self._point.copy(),
            'achieved_goal': self._point.copy(),
            'desired_goal': self._goal.copy(),
        }

    def _info(self) -> dict[str, float]:
        distance = float(np.linalg.norm(self._point - self._goal))
        return {'is_success': float(distance <= THRESHOLD), 'distance': distance}

    def reset(self, seed: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        rng = np.random.default_rng(seed)
        self._point = rng.uniform(-1.0, 1.0, 2)
        self._goal = rng.uniform(-1.0, 1.0, 2)
        self._steps = 0
        return self._obs(), self._info()

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        self._point = np.clip(self._point + STEP_SIZE * action, -1.0, 1.0)
        self._steps += 1
        info = self._info()
        return self._obs(), info['is_success'] - 1.0, False, self._steps >= EPISODE_STEPS, info

    def compute_reward(self, achieved: np.ndarray, desired: np.ndarray, info: Any = None):
        return toy_reward(achieved, desired, info)

    def close(self) -> None:
        return None


class BiasedController:
    """Poor base: a = clip(0.5 * (g - p) / STEP_SIZE + (0, 0.4), -1, 1)."""

    name = 'toy_biased'

    def reset(self) -> None:
        return None

    def act_batch(self, observations: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """(B, 2), (B, 2) -> (B, 2)."""
        raw = 0.5 * (np.asarray(goals) - np.asarray(observations)) / STEP_SIZE
        return np.clip(raw + np.array([0.0, 0.4]), -1.0, 1.0)

    def __call__(self, observation: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        return self.act_batch(observation[None], desired_goal[None])[0]


@dataclasses.dataclass(frozen=True)
class ToyFactory:
    """Picklable env-slot factory: the task and, if asked, the biased controller."""

    with_controller: bool = True

    def __call__(self) -> tuple[PointReach, BiasedController | None]:
        return PointReach(), BiasedController() if self.with_controller else None
