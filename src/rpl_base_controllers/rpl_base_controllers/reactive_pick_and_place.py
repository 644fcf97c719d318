"""ReactivePickAndPlace: the hand-designed grasp-and-carry controller of the RPL paper.

The grasp pose is the block centre plus ``grasp_offset_z`` (the paper's controller uses
-0.02 m, 2 cm BELOW the block centre: the fingertips stop on the table instead). Decision
order, evaluated for every row of a batch:

1. Grasped (gripper within tolerance of the grasp pose and fingers closed on the block):
   carry, i.e. move to ``goal + (0, 0, grasp_offset_z + workspace_height / 2)`` with
   ``carry_gain``, fingers closing.
2. Gripper within tolerance of the grasp pose, fingers not yet closed: close the fingers.
3. Gripper above the grasp pose (xy within tolerance): open the fingers if they are not
   fully open, else descend onto the grasp pose (``approach_gain``).
4. Otherwise: go ``workspace_height`` above the grasp pose (``approach_gain``).

Miscalibration. The paper's controller carries with gain 50 and oscillates around the carry
target, which drops its success to about 0.5. Here the gripper covers only about 60% of a
commanded displacement within one control step (measured: 0.60 for a single step from rest),
so gain 50 gives a per-step loop factor of 1 - 0.05 * 50 * 0.6 = -0.5: a damped overshoot,
no oscillation, and 0.995 success (200 episodes). Sustained oscillation needs a loop factor
below -1, i.e. a gain above 2 / (0.05 * 0.6) = 67 (measured: 0.995 success at 67, 0.73 at 75).
The default :data:`MISCALIBRATED_CARRY_GAIN` = 83 is the paper's 50 for a gripper that covers
its whole command per step (50 / 0.6), the loop factor -1.5 of the original description; it
oscillates as the paper reports and succeeds about half the time. ``carry_gain=50`` gives the
literal gain. The calibrated twin uses gain 10 everywhere. A pure function of
(observation, goal).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rpl_base_controllers.base import FETCH_INPUTS, BatchedCallMixin, check_batch
from rpl_base_controllers.waypoints import (
    CLOSE_FINGERS,
    OPEN_FINGERS,
    finger_only,
    move_towards,
    squared_distance,
    squared_xy_distance,
)
from rpl_interfaces.params import describe
from rpl_sim_bridge.layout import FetchObs

MISCALIBRATED_CARRY_GAIN = 83.0
"""Carry gain of the miscalibrated controller (1/m); see the module docstring."""
CALIBRATED_CARRY_GAIN = 10.0
"""Carry gain of the calibrated twin (1/m), equal to the approach gain."""


@dataclasses.dataclass(frozen=True)
class ReactivePickAndPlaceConfig:
    """Geometry, finger thresholds and gains of ReactivePickAndPlace (defaults: the paper's
    miscalibrated controller)."""

    grasp_offset_z: float = dataclasses.field(
        default=-0.02,
        metadata=describe(
            'height of the grasp pose relative to the block centre (m)', range=(-0.1, 0.1)
        ),
    )
    workspace_height: float = dataclasses.field(
        default=0.1,
        metadata=describe(
            'approach height above the grasp pose (m); the carry target is half of it above '
            'goal + grasp offset',
            range=(0.0, 0.5),
        ),
    )
    tolerance: float = dataclasses.field(
        default=1e-3,
        metadata=describe(
            'bound on squared distances for "at grasp pose", "above" (m^2)', range=(0.0, 1.0)
        ),
    )
    fingers_open_qpos: float = dataclasses.field(
        default=0.049,
        metadata=describe(
            'finger joint position (mean of both, m) from which the fingers count as open '
            '(fully open: 0.05)',
            range=(0.0, 0.1),
        ),
    )
    fingers_closed_qpos: float = dataclasses.field(
        default=0.026,
        metadata=describe(
            'finger joint position (mean of both, m) up to which the fingers count as closed '
            '(closed on the 5 cm block: about 0.024)',
            range=(0.0, 0.1),
        ),
    )
    approach_gain: float = dataclasses.field(
        default=10.0,
        metadata=describe(
            'gain of the moves above and onto the grasp pose (1/m)', range=(0.0, 1e3)
        ),
    )
    carry_gain: float = dataclasses.field(
        default=MISCALIBRATED_CARRY_GAIN,
        metadata=describe('gain of the carry to the goal once grasped (1/m)', range=(0.0, 1e3)),
    )


class ReactivePickAndPlace(BatchedCallMixin):
    """Hand-designed pick and place: above, open, descend, close, carry (batched)."""

    input_sizes = FETCH_INPUTS  # checked as a Fetch controller's inputs

    def __init__(
        self,
        config: ReactivePickAndPlaceConfig | None = None,
        name: str = 'reactive_pick_and_place',
    ):
        self.config = config or ReactivePickAndPlaceConfig()
        self.name = name

    def reset(self) -> None:
        """No episode state: nothing to forget."""

    def act_batch(self, observations: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """Actions for a batch: ``(B, obs_dim)``, ``(B, 3)`` -> ``(B, 4)`` in [-1, 1]."""
        observations, goals = check_batch(observations, goals)
        cfg = self.config
        batch = observations.shape[0]
        gripper = observations[:, FetchObs.GRIP_POS]
        block = observations[:, FetchObs.OBJECT_POS]
        fingers = observations[:, FetchObs.GRIPPER_STATE].mean(axis=1)  # (B,), m

        grasp_pose = block.copy()
        grasp_pose[:, 2] += cfg.grasp_offset_z
        at_grasp_pose = squared_distance(gripper, grasp_pose) < cfg.tolerance
        grasped = at_grasp_pose & (fingers <= cfg.fingers_closed_qpos)
        above = squared_xy_distance(gripper, grasp_pose) < cfg.tolerance
        fingers_open = fingers >= cfg.fingers_open_qpos

        carry_target = goals.copy()
        carry_target[:, 2] += cfg.grasp_offset_z + cfg.workspace_height / 2.0
        carry = move_towards(gripper, carry_target, cfg.carry_gain, CLOSE_FINGERS)
        close = finger_only(CLOSE_FINGERS, batch)
        open_ = finger_only(OPEN_FINGERS, batch)
        descend = move_towards(gripper, grasp_pose, cfg.approach_gain)
        hover = grasp_pose.copy()
        hover[:, 2] += cfg.workspace_height
        approach = move_towards(gripper, hover, cfg.approach_gain)

        actions = np.where(
            above[:, None], np.where(fingers_open[:, None], descend, open_), approach
        )
        actions = np.where(at_grasp_pose[:, None], close, actions)
        return np.where(grasped[:, None], carry, actions)
