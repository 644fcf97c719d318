"""Pure, batched goal reward and success (numpy only: no simulator, no ROS).

A goal task's reward and success are functions of goals alone, so a learner relabels goals
(HER), a bag is scored and a controller node runs without MuJoCo. A task's own are reached
from its spec: :meth:`rpl_sim_bridge.tasks.TaskSpec.reward` and
:meth:`~rpl_sim_bridge.tasks.TaskSpec.success` (threshold ``distance_threshold``).
"""

from __future__ import annotations

import numpy as np


def goal_distance(goal_a: np.ndarray, goal_b: np.ndarray) -> np.ndarray:
    """Euclidean distance between goals, batched over leading axes.

    Args:
        goal_a: Goals (..., goal_dim), m.
        goal_b: Goals (..., goal_dim), m; leading axes broadcast against ``goal_a``.

    Returns:
        Distances (...), m (a 0-d array for single goals).

    Raises:
        ValueError: The last axes differ in length.
    """
    a = np.asarray(goal_a, dtype=np.float64)
    b = np.asarray(goal_b, dtype=np.float64)
    if a.shape[-1:] != b.shape[-1:]:
        raise ValueError(
            f'goal_distance: goal shapes {a.shape} and {b.shape} differ in the last axis'
        )
    diff = a - b
    return np.sqrt(np.sum(diff * diff, axis=-1))


def sparse_reward(achieved: np.ndarray, desired: np.ndarray, threshold: float) -> np.ndarray:
    """Sparse goal reward ``-(distance > threshold)``, batched and pure.

    Args:
        achieved: Achieved goals (..., goal_dim), m.
        desired: Desired goals (..., goal_dim), m.
        threshold: Success radius, m.

    Returns:
        Rewards (...), float32: 0 within the threshold, -1 outside.
    """
    return -(goal_distance(achieved, desired) > threshold).astype(np.float32)


def goal_success(achieved: np.ndarray, desired: np.ndarray, threshold: float) -> np.ndarray:
    """Success ``distance <= threshold`` (exactly ``sparse_reward == 0``), batched and pure.

    Returns:
        Success flags (...), float32, 1 or 0.
    """
    return sparse_reward(achieved, desired, threshold) + np.float32(1.0)
