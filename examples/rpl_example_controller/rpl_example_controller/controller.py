"""A proportional pusher: stand behind the block, then drive it towards the goal.

Registered by the entry point ``proportional_push`` in group ``rpl.controllers``
(pyproject.toml): the registry loads :data:`PROPORTIONAL_PUSH`, a ``ControllerSpec``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rpl_base_controllers.base import FETCH_INPUTS, BatchedCallMixin, check_batch
from rpl_base_controllers.registry import ControllerSpec
from rpl_interfaces.params import describe
from rpl_sim_bridge.layout import FetchObs

ALIGNED_M = 0.02  # m: xy tolerance of 'above the push point' and 'on the goal line'
HOVER_M = 0.06  # m: approach height above the block centre


@dataclasses.dataclass(frozen=True)
class ProportionalPushConfig:
    """Typed parameters: settable as ``gain=8`` (``rpl eval --controller-param``, launch
    argument ``gain:=8``, ROS parameter ``gain``)."""

    gain: float = dataclasses.field(
        default=10.0,
        metadata=describe('proportional gain on the position error (1/m)', range=(0.0, 100.0)),
    )
    push_offset: float = dataclasses.field(
        default=0.06,
        metadata=describe(
            'push point behind the block centre, away from the goal (m)', range=(0.0, 0.2)
        ),
    )


class ProportionalPush(BatchedCallMixin):
    """Go above the push point, descend behind the block, push through it (batched)."""

    input_sizes = FETCH_INPUTS  # checked as a Fetch controller's inputs

    def __init__(self, config: ProportionalPushConfig, name: str) -> None:
        self.config = config
        self.name = name

    def reset(self) -> None:
        """No episode state."""

    def act_batch(self, observations: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """``(B, obs_dim)``, ``(B, 3)`` -> ``(B, 4)`` in [-1, 1] (fingers held: 0).

        Per row, the first that applies: push (low, behind the block, on the goal line):
        move by the block's error to the goal; descend (above the push point); lift (low
        elsewhere); approach (to above the push point). Targets in m, world frame."""
        observations, goals = check_batch(observations, goals)
        gripper = observations[:, FetchObs.GRIP_POS]
        block = observations[:, FetchObs.OBJECT_POS]
        to_goal = goals[:, :2] - block[:, :2]
        u = to_goal / np.maximum(np.linalg.norm(to_goal, axis=1, keepdims=True), 1e-9)
        push_point = block.copy()
        push_point[:, :2] -= self.config.push_offset * u
        rel = block[:, :2] - gripper[:, :2]  # gripper -> block, xy
        behind = np.sum(rel * u, axis=1) > 0.01
        lateral = np.abs(rel[:, 0] * u[:, 1] - rel[:, 1] * u[:, 0])
        low = gripper[:, 2] < block[:, 2] + 0.03
        above = np.linalg.norm(gripper[:, :2] - push_point[:, :2], axis=1) < ALIGNED_M
        hover = push_point + [0.0, 0.0, HOVER_M]
        lift = np.c_[gripper[:, :2], block[:, 2:3] + HOVER_M]
        push = np.c_[gripper[:, :2] + to_goal, block[:, 2:3]]
        target = np.where(low[:, None], lift, hover)
        target = np.where(above[:, None], push_point, target)
        pushing = low & behind & (lateral < ALIGNED_M)
        target = np.where(pushing[:, None], push, target)
        move = np.clip(self.config.gain * (target - gripper), -1.0, 1.0)  # 1 = 5 cm
        return np.c_[move, np.zeros(len(move))]


def _make(name: str, task: str | None, config: ProportionalPushConfig) -> ProportionalPush:
    return ProportionalPush(config, name)


PROPORTIONAL_PUSH = ControllerSpec(
    factory=_make,
    description='example plug-in: proportional pusher (gain 10 / m, push point 6 cm behind)',
    tasks=('push', 'slippery_push', 'icy_push'),
    config=ProportionalPushConfig,
)
