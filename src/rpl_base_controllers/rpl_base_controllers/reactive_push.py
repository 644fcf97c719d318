"""ReactivePush: the hand-designed pushing controller of the RPL paper.

The gripper pushes the block along the line from the block to the goal. The push point
lies ``push_offset`` behind the block on that line, ``push_height`` above the block centre.
Decision order, evaluated for every row of a batch:

1. Block within tolerance of the goal: stay still.
2. Gripper at push height, its heading to the goal within ``max_push_angle`` of the
   block's, and the block nearer the goal (in xy) than the gripper: push, i.e. move at the
   current height towards the goal with ``push_gain``.
3. Gripper above the push point (xy within tolerance): descend onto it (``approach_gain``).
4. Otherwise: go to ``workspace_height`` above the push point (``approach_gain``).

The fingers are held (command 0); Push blocks them anyway. A pure function of
(observation, goal), so the trainer can re-evaluate it for relabelled goals.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from rpl_base_controllers.base import FETCH_INPUTS, BatchedCallMixin, check_batch
from rpl_base_controllers.waypoints import (
    angle_between,
    heading,
    move_towards,
    squared_distance,
    squared_xy_distance,
    unit_xy,
)
from rpl_interfaces.params import describe
from rpl_sim_bridge.layout import FetchObs


@dataclasses.dataclass(frozen=True)
class ReactivePushConfig:
    """Geometry and gains of ReactivePush (defaults: the paper's controller)."""

    push_offset: float = dataclasses.field(
        default=0.075,
        metadata=describe(
            'distance of the push point behind the block centre, along goal->block (m)',
            range=(0.0, 0.5),
        ),
    )
    push_height: float = dataclasses.field(
        default=0.005,
        metadata=describe(
            'height of the push point above the block centre (m)', range=(-0.1, 0.1)
        ),
    )
    workspace_height: float = dataclasses.field(
        default=0.1,
        metadata=describe('approach height above the push point (m)', range=(0.0, 0.5)),
    )
    tolerance: float = dataclasses.field(
        default=1e-3,
        metadata=describe(
            'bound on squared distances for "at goal", "at push height", "above" (m^2)',
            range=(0.0, 1.0),
        ),
    )
    max_push_angle: float = dataclasses.field(
        default=math.pi / 4,
        metadata=describe(
            'largest heading difference gripper->goal vs block->goal that still pushes (rad)',
            range=(0.0, math.pi),
        ),
    )
    approach_gain: float = dataclasses.field(
        default=10.0,
        metadata=describe('gain of the moves to and onto the push point (1/m)', range=(0.0, 1e3)),
    )
    push_gain: float = dataclasses.field(
        default=5.0,
        metadata=describe('gain of the push towards the goal (1/m)', range=(0.0, 1e3)),
    )


def push_point(block_pos: np.ndarray, goal: np.ndarray, config: ReactivePushConfig) -> np.ndarray:
    """Where the gripper should stand to push the block towards the goal.

    Args:
        block_pos: Block positions, shape (B, 3), m.
        goal: Goal positions, shape (B, 3), m.
        config: Push geometry.

    Returns:
        Push points, shape (B, 3), m: ``push_offset`` behind the block on the goal->block
        line (in xy) and ``push_height`` above the block centre.
    """
    point = block_pos.copy()
    point[:, :2] -= config.push_offset * unit_xy(goal - block_pos)
    point[:, 2] += config.push_height
    return point


class ReactivePush(BatchedCallMixin):
    """Hand-designed pusher: approach from above, descend behind the block, push (batched)."""

    input_sizes = FETCH_INPUTS  # checked as a Fetch controller's inputs

    def __init__(self, config: ReactivePushConfig | None = None, name: str = 'reactive_push'):
        self.config = config or ReactivePushConfig()
        self.name = name

    def reset(self) -> None:
        """No episode state: nothing to forget."""

    def act_batch(self, observations: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """Actions for a batch: ``(B, obs_dim)``, ``(B, 3)`` -> ``(B, 4)`` in [-1, 1]."""
        observations, goals = check_batch(observations, goals)
        cfg = self.config
        gripper = observations[:, FetchObs.GRIP_POS]
        block = observations[:, FetchObs.OBJECT_POS]
        push = push_point(block, goals, cfg)

        at_goal = squared_distance(block, goals) < cfg.tolerance
        at_push_height = np.square(gripper[:, 2] - push[:, 2]) < cfg.tolerance
        aligned = angle_between(heading(goals - gripper), heading(goals - block)) < (
            cfg.max_push_angle
        )
        block_ahead = squared_xy_distance(block, goals) < squared_xy_distance(gripper, goals)
        pushing = at_push_height & aligned & block_ahead
        above_push = squared_xy_distance(gripper, push) < cfg.tolerance

        # Every branch as a (B, 4) action; the decision order picks one per row.
        goal_at_height = goals.copy()
        goal_at_height[:, 2] = gripper[:, 2]
        push_move = move_towards(gripper, goal_at_height, cfg.push_gain)
        descend = move_towards(gripper, push, cfg.approach_gain)
        hover = push.copy()
        hover[:, 2] += cfg.workspace_height
        approach = move_towards(gripper, hover, cfg.approach_gain)

        actions = np.where(above_push[:, None], descend, approach)
        actions = np.where(pushing[:, None], push_move, actions)
        return np.where(at_goal[:, None], 0.0, actions)
