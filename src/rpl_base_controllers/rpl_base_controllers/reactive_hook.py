"""ReactiveHook: the hand-designed hook controller of the RPL paper (tasks hook, noisy_hook,
complex_hook).

The gripper takes the hook at its grasp point (the hook frame of the hook tasks: on the
handle axis, 0.2 m from the handle centre towards its free end, see
:mod:`rpl_sim_bridge.tasks.hook`), carries it behind the block and sweeps the block to the
goal. Decision order, evaluated for every row of a batch (g gripper, h hook, b block, all
observed positions, m):

1. Done: ``|goal_x - b_x| + |goal_y - b_y| <= done_l1``: stay still, fingers closed.
2. Holding the hook (fingers closed on something: mean finger position between
   ``fingers_empty_qpos`` and ``fingers_closed_qpos``, and h within ``hold_tolerance`` of g):

   a. Hook in place behind the block: with the hook target
      ``t = (b_x + target_dx, b_y + target_dy, target_z)`` = (b_x - 0.5, b_y - 0.05, 0.45),
      ``t - h`` in x and in y between ``-place_tolerance`` and ``place_slack`` and
      ``h_z <= t_z + place_tolerance``: sweep, i.e. move at
      ``sweep_speed * unit(goal_xy - b_xy)`` (no z), fingers closed. The slack lets the hook
      trail its target while it pulls the block (the head's inner face touches the block
      with the hook at about b_x - 0.56) or drifts in -y before the head catches it.
   b. Hook farther than ``place_tolerance`` from the target in x or y: below
      ``lift_z - 0.05`` lift straight up to ``lift_z`` = 0.5, else move it at ``lift_z`` over
      the target.
   c. Otherwise lower it onto the target. A move of the hook is a move of the gripper by
      the hook's error (``carry_gain``), fingers closed.
3. Gripper at the handle (xy within ``tolerance`` of h, at most ``grasp_height`` above it):
   close the fingers.
4. Gripper above h (xy within ``tolerance``): open the fingers if they are not fully open,
   else descend towards ``h + (0, 0, grasp_offset_z)`` (``grasp_offset_z`` = -0.05: below
   the handle axis, so the descent presses on until the fingertips reach the table).
5. Otherwise: go ``hover_height`` above h, opening the fingers.

"Held" looks at the fingers (not noisy) and a loose 10 cm bound rather than at the 3 cm
"above" test: under noise the latter fails about half the steps and the controller would
let go of the hook. Lowering and sweeping accept the hook up to ``place_tolerance`` = 4 cm
ahead of its target: at the target the head clears the block by 6 cm.

Measured, 200 episodes each on seeds 100000 + i (``benchmarks/controller_bands.py --rows
hook noisy_hook noisy_hook_sigma0158``, results/controller_bands.md): hook 1.000 (95% CI
0.981-1.000; paper: near perfect), noisy_hook (std 0.025) 0.110 (0.074-0.161; paper ~0.15),
noisy_hook with the paper's sigma^2 = 0.025 (std 0.158) 0.010 (0.003-0.036).

Why noisy_hook fails: the phase tests flicker. The hook hovers between the carry height and
the target height, grasping takes many tries, and lowering or sweeping happens only on the
steps where the noisy hook and block positions agree with the tolerances. The rate
therefore depends on ``place_tolerance`` (std 0.025, 60 episodes each: 0.02 m -> 0.02,
0.03 -> 0.05, 0.04 -> 0.12, 0.05 -> 0.20), which was set from the geometry (the 6 cm head
clearance), not to hit the band; the clean task succeeded in every episode tried with
0.02 and with 0.04.

A pure function of (observation, goal). Observation layout:
:class:`rpl_sim_bridge.layout.HookObs` (40-D).
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
    unit_xy,
)
from rpl_interfaces.params import describe
from rpl_sim_bridge.layout import HookObs


@dataclasses.dataclass(frozen=True)
class ReactiveHookConfig:
    """Geometry, thresholds and gains of ReactiveHook (defaults: the paper's controller)."""

    grasp_offset_z: float = dataclasses.field(
        default=-0.05,
        metadata=describe(
            'height of the descent target relative to the hook frame (m)', range=(-0.2, 0.2)
        ),
    )
    hover_height: float = dataclasses.field(
        default=0.1,
        metadata=describe('approach height above the hook frame (m)', range=(0.0, 0.5)),
    )
    grasp_height: float = dataclasses.field(
        default=0.01,
        metadata=describe(
            'the gripper is at the handle when at most this high above the hook frame (m)',
            range=(-0.1, 0.2),
        ),
    )
    hold_tolerance: float = dataclasses.field(
        default=0.01,
        metadata=describe(
            'bound on the squared distance gripper-hook (m^2) for "held" (0.01: 10 cm)',
            range=(0.0, 1.0),
        ),
    )
    tolerance: float = dataclasses.field(
        default=1e-3,
        metadata=describe(
            'bound on the squared xy distance gripper-hook for "above" (m^2)',
            range=(0.0, 1.0),
        ),
    )
    fingers_open_qpos: float = dataclasses.field(
        default=0.049,
        metadata=describe(
            'finger joint position (mean of both, m) from which the fingers count as open',
            range=(0.0, 0.1),
        ),
    )
    fingers_closed_qpos: float = dataclasses.field(
        default=0.02,
        metadata=describe(
            'finger joint position (mean of both, m) up to which the fingers count as closed '
            '(closed on the 3 cm handle: about 0.015)',
            range=(0.0, 0.1),
        ),
    )
    fingers_empty_qpos: float = dataclasses.field(
        default=0.005,
        metadata=describe(
            'finger joint position (mean of both, m) below which the closed fingers hold '
            'nothing (closed on nothing: about 0)',
            range=(0.0, 0.1),
        ),
    )
    lift_z: float = dataclasses.field(
        default=0.5,
        metadata=describe('height of the hook frame while carried (m)', range=(0.0, 2.0)),
    )
    target_dx: float = dataclasses.field(
        default=-0.5,
        metadata=describe('hook target x relative to the block (m)', range=(-2.0, 2.0)),
    )
    target_dy: float = dataclasses.field(
        default=-0.05,
        metadata=describe('hook target y relative to the block (m)', range=(-2.0, 2.0)),
    )
    target_z: float = dataclasses.field(
        default=0.45,
        metadata=describe('hook target height (m, world)', range=(0.0, 2.0)),
    )
    place_slack: float = dataclasses.field(
        default=0.1,
        metadata=describe(
            'how far (m) the hook may trail its target in x and still count as in place',
            range=(0.0, 1.0),
        ),
    )
    place_tolerance: float = dataclasses.field(
        default=0.04,
        metadata=describe(
            'tolerance (m) of the hook at its target: x and y ahead of it, z above it, and '
            'the xy error up to which it is lowered (the head clears the block by 6 cm)',
            range=(0.0, 1.0),
        ),
    )
    sweep_speed: float = dataclasses.field(
        default=0.4,
        metadata=describe(
            'action magnitude of the sweep towards the goal (x 0.05 m per step)',
            range=(0.0, 1.0),
        ),
    )
    done_l1: float = dataclasses.field(
        default=0.01,
        metadata=describe(
            'stop when |dx| + |dy| of the block to the goal is at most this (m)',
            range=(0.0, 1.0),
        ),
    )
    approach_gain: float = dataclasses.field(
        default=10.0,
        metadata=describe('gain of the moves to and onto the hook (1/m)', range=(0.0, 1e3)),
    )
    carry_gain: float = dataclasses.field(
        default=10.0,
        metadata=describe('gain of the moves of the held hook (1/m)', range=(0.0, 1e3)),
    )


class ReactiveHook(BatchedCallMixin):
    """Hand-designed hook use: grasp the hook, place it behind the block, sweep (batched)."""

    input_sizes = FETCH_INPUTS  # checked as a Fetch controller's inputs

    def __init__(self, config: ReactiveHookConfig | None = None, name: str = 'reactive_hook'):
        self.config = config or ReactiveHookConfig()
        self.name = name

    def reset(self) -> None:
        """No episode state: nothing to forget."""

    def act_batch(self, observations: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """Actions for a batch: ``(B, 40)``, ``(B, 3)`` -> ``(B, 4)`` in [-1, 1].

        Raises:
            ValueError: Bad shapes (fewer than 40 observation entries) or non-finite values.
        """
        observations, goals = check_batch(observations, goals)
        if observations.shape[1] < HookObs.DIM:
            raise ValueError(
                f'reactive_hook needs the {HookObs.DIM}-D hook observation, got '
                f'{observations.shape[1]} entries'
            )
        cfg = self.config
        batch = observations.shape[0]
        gripper = observations[:, HookObs.GRIP_POS]
        block = observations[:, HookObs.OBJECT_POS]
        hook = observations[:, HookObs.HOOK_POS]
        fingers = observations[:, HookObs.GRIPPER_STATE].mean(axis=1)  # (B,), m

        # Grasping the hook (phases 3-5).
        above = squared_xy_distance(gripper, hook) < cfg.tolerance
        height = gripper[:, 2] - hook[:, 2]  # (B,), m
        at_handle = above & (height <= cfg.grasp_height)
        held = (
            (squared_distance(gripper, hook) < cfg.hold_tolerance)
            & (fingers <= cfg.fingers_closed_qpos)
            & (fingers >= cfg.fingers_empty_qpos)
        )
        descent_target = hook.copy()
        descent_target[:, 2] += cfg.grasp_offset_z
        hover = hook.copy()
        hover[:, 2] += cfg.hover_height
        descend = move_towards(gripper, descent_target, cfg.approach_gain, OPEN_FINGERS)
        open_ = finger_only(OPEN_FINGERS, batch)
        fingers_open = (fingers >= cfg.fingers_open_qpos)[:, None]
        actions = np.where(
            above[:, None],
            np.where(fingers_open, descend, open_),
            move_towards(gripper, hover, cfg.approach_gain, OPEN_FINGERS),
        )
        actions = np.where(at_handle[:, None], finger_only(CLOSE_FINGERS, batch), actions)

        # Carrying the hook to its target behind the block (phase 2b, 2c).
        target = np.stack(
            [
                block[:, 0] + cfg.target_dx,
                block[:, 1] + cfg.target_dy,
                np.full(batch, cfg.target_z),
            ],
            axis=1,
        )
        error = target - hook  # (B, 3), m
        xy_far = np.max(np.abs(error[:, :2]), axis=1) > cfg.place_tolerance
        carry_target = target.copy()
        carry_target[:, 2] = np.where(xy_far, cfg.lift_z, cfg.target_z)
        low = xy_far & (hook[:, 2] < cfg.lift_z - 0.05)
        carry_target[:, :2] = np.where(low[:, None], hook[:, :2], carry_target[:, :2])
        carry = move_towards(gripper, gripper + carry_target - hook, cfg.carry_gain, CLOSE_FINGERS)

        # Sweeping (phase 2a).
        in_place = (
            (error[:, 0] <= cfg.place_slack)
            & (error[:, 0] >= -cfg.place_tolerance)
            & (error[:, 1] <= cfg.place_slack)
            & (error[:, 1] >= -cfg.place_tolerance)
            & (error[:, 2] >= -cfg.place_tolerance)
        )
        sweep = np.zeros((batch, 4))
        sweep[:, :2] = cfg.sweep_speed * unit_xy(goals - block)
        sweep[:, 3] = CLOSE_FINGERS
        holding = np.where(in_place[:, None], sweep, carry)
        actions = np.where(held[:, None], holding, actions)

        done = np.sum(np.abs(goals[:, :2] - block[:, :2]), axis=1) <= cfg.done_l1
        return np.where(done[:, None], finger_only(CLOSE_FINGERS, batch), actions)
