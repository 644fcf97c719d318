"""The ``mbrl_pusher`` task in MuJoCo: the PETS 7-DOF arm pushing a cylinder to a fixed goal.

Model: Gymnasium's ``pusher_v5.xml`` (:data:`PUSHER_XML`, the PETS/gym arm; v5 lightens
the object's cylinder to density 0.01 and drops its invisible sphere), loaded as it is and
set in code to the PETS settings: zero gravity, timestep 0.01 s, 4 physics steps per control
step (control period 0.04 s), Euler integrator (the XML's). The seven motors have ctrlrange
[-2, 2] and gear 1, so the action is the joint torques in N m. The object (``object``) slides
on the table on two slide joints (``obj_slidex``, ``obj_slidey``); the goal body stays at
its XML position (:data:`rpl_sim_bridge.tasks.pusher_specs.GOAL_POS`).

Reset (the task's own generator, seeded by ``reset(seed)``): arm at the XML's zero pose,
every arm joint's velocity ~ U(-0.005, 0.005) rad/s; object offset from the goal in the
table plane by ``config.object_start``: ``'gymnasium'`` (Pusher-v5's draw): x ~ U(-0.2, 0.2),
y ~ U(-0.3, 0), redrawn until farther than 0.17 m from the goal, i.e. object start
x in [0.25, 0.65], y in [-0.35, -0.05] m; ``'pets'``: x = 0.15 + N(0, 0.025^2),
y = -0.25 + N(0, 0.025^2) (around (0.60, -0.30) m). Observation, reward and success: see
:mod:`rpl_sim_bridge.tasks.pusher_specs`.

Unlike Gymnasium, the observation is computed after ``mj_forward``, so the fingertip and
object positions belong to the same state as the joint angles (Gymnasium reads positions
that lag one physics step behind).
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium
import mujoco
import numpy as np

from rpl_interfaces.params import build_config
from rpl_sim_bridge.tasks.goal_task import GoalTask, ObsDict
from rpl_sim_bridge.tasks.joints import JointSample
from rpl_sim_bridge.tasks.pusher_specs import (
    GOAL_POS,
    OBJECT_POS,
    PUSHER_JOINTS,
    PUSHER_TASKS,
    QPOS,
    QVEL,
    TIP_POS,
    PusherTaskConfig,
    object_goal_distance,
    pusher_spec,
)

PUSHER_XML = os.path.join(
    os.path.dirname(gymnasium.__file__), 'envs', 'mujoco', 'assets', 'pusher_v5.xml'
)
"""Gymnasium's Pusher-v5 model file."""

ARM_VELOCITY_NOISE = 0.005
"""Half-width (rad/s) of the uniform initial velocity of every arm joint."""
GYM_X_RANGE = (-0.2, 0.2)
GYM_Y_RANGE = (-0.3, 0.0)
GYM_MIN_GOAL_DISTANCE = 0.17
"""'gymnasium' object start: offset ranges from the goal (m) and the least distance (m)."""
PETS_OFFSET = (0.15, -0.25)
PETS_STD = 0.025
"""'pets' object start: mean offset (x, y) from the goal (m) and its std (m)."""


class PusherTask(GoalTask):
    """The PETS pusher with a fixed goal: 20-D observation, 7 torques, dense reward.

    The episode loop (:class:`GoalTask`) rewards each step with
    ``spec.transition_reward(next_obs, clipped_action)``; ``info['is_success']`` is
    ``spec.final_success(obs)`` and ``info['distance']`` the object's xy distance (m) from
    the goal.

    Attributes:
        config: The task's settings.
    """

    def __init__(self, name: str, description: str, config: PusherTaskConfig) -> None:
        """Build the task.

        Args:
            name: Registry name.
            description: One line for the spec.
            config: Validated settings.

        Raises:
            ValueError: The XML's joints or goal position differ from the spec's.
        """
        super().__init__(pusher_spec(name, description, config))
        self.config = config
        m = mujoco.MjModel.from_xml_path(PUSHER_XML)
        m.opt.gravity[:] = 0.0
        m.opt.timestep = config.physics_timestep
        self.model, self.data = m, mujoco.MjData(m)
        joints = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, i) for i in range(7)]
        if tuple(joints) != PUSHER_JOINTS or list(m.jnt_dofadr[:7]) != list(range(7)):
            raise ValueError(f'{PUSHER_XML}: first joints {joints}, expected {PUSHER_JOINTS}')
        if list(m.actuator_trnid[:, 0]) != list(range(7)) or not np.all(
            m.actuator_gear[:, 0] == 1
        ):
            raise ValueError(f'{PUSHER_XML}: expected one gear-1 motor per arm joint')

        def joint(name: str) -> int:
            return int(m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)])

        self._obj_x, self._obj_y = joint('obj_slidex'), joint('obj_slidey')
        self._goal_joints = [joint('goal_slidex'), joint('goal_slidey')]
        self._tip_body = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, 'tips_arm')
        self._object_body = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, 'object')
        goal_body = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, 'goal')
        mujoco.mj_forward(m, self.data)
        if not np.allclose(self.data.xipos[goal_body], GOAL_POS, atol=1e-9):
            raise ValueError(
                f'{PUSHER_XML}: goal at {self.data.xipos[goal_body]}, spec says {GOAL_POS}'
            )
        self._rng = np.random.default_rng()
        self._track_mujoco()

    # ------------------------------------------------------------------------- physics
    def _sample_object_offset(self) -> np.ndarray:
        rng = self._rng
        if self.config.object_start == 'pets':
            return np.array(PETS_OFFSET) + rng.normal(0.0, PETS_STD, 2)
        while True:
            offset = np.array([rng.uniform(*GYM_X_RANGE), rng.uniform(*GYM_Y_RANGE)])
            if np.linalg.norm(offset) > GYM_MIN_GOAL_DISTANCE:
                return offset

    def _reset_physics(self, seed: int | None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)  # qpos0: the XML's pose, goal offset 0
        offset = self._sample_object_offset()
        d.qpos[self._obj_x], d.qpos[self._obj_y] = offset
        d.qvel[:7] = self._rng.uniform(-ARM_VELOCITY_NOISE, ARM_VELOCITY_NOISE, 7)
        mujoco.mj_forward(m, d)
        self._warnings_seen = d.warning.number.copy()  # mj_resetData zeroed them

    def simulate(self, action: np.ndarray) -> None:
        """Apply the torques for ``frame_skip`` physics steps.

        No reward, observation or step counting (a planner may call this on its own copy).

        Args:
            action: (7,) joint torques, N m, in [-2, 2] (clipped if outside).

        Raises:
            ValueError: Wrong shape or non-finite action.
            MujocoWarningError: MuJoCo reported a warning and ``mujoco_warnings='raise'``.
        """
        self.data.ctrl[:] = self.check_action(action)
        mujoco.mj_step(self.model, self.data, nstep=self.config.frame_skip)
        mujoco.mj_forward(self.model, self.data)
        self._check_warnings(self.config.mujoco_warnings)

    def observe(self) -> ObsDict:
        """Current observation dict: ``observation`` (20,) (layout
        :data:`~rpl_sim_bridge.tasks.pusher_specs.PUSHER_OBS_FIELDS`), empty (0,)
        ``achieved_goal`` and ``desired_goal`` (fresh float64 arrays)."""
        d = self.data
        obs = np.empty(self.spec.obs_dim)
        obs[QPOS] = d.qpos[:7]
        obs[QVEL] = d.qvel[:7]
        obs[TIP_POS] = d.xipos[self._tip_body]
        obs[OBJECT_POS] = d.xipos[self._object_body]
        return {'observation': obs, 'achieved_goal': np.zeros(0), 'desired_goal': np.zeros(0)}

    def fixed_goal_distance(self, observation: np.ndarray) -> float:
        """The object's distance (m) from the goal in the table plane (``info['distance']``)."""
        return float(object_goal_distance(observation))

    def joint_state(self) -> JointSample:
        """The arm's joint state now: the 7 arm joints only (the object's and the goal's
        slide joints, which :meth:`GoalTask.joint_state` would list, are not the robot's),
        with angles (rad), velocities (rad/s) and the motor torques of the last step
        (``qfrc_actuator``, N m), fresh arrays (7,) each."""
        d = self.data
        return JointSample(
            PUSHER_JOINTS, d.qpos[:7].copy(), d.qvel[:7].copy(), d.qfrc_actuator[:7].copy()
        )


def make_pusher_task(name: str, **overrides: Any) -> PusherTask:
    """Build a registered pusher task with config overrides.

    Raises:
        KeyError: ``name`` is not a pusher task.
        rpl_interfaces.params.ParameterError: Unknown override name or bad value.
    """
    description, defaults = PUSHER_TASKS[name]
    config = build_config(PusherTaskConfig, {**defaults, **overrides})
    return PusherTask(name, description, config)
