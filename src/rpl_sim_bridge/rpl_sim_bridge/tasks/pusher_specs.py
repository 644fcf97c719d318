"""The ``mbrl_pusher`` task's spec, reward and success, without MuJoCo.

``mbrl_pusher``: the 7-DOF arm of Chua et al.'s PETS (the RPL paper's MBRLPusher) pushes a
cylinder to a FIXED goal on the table. The simulated task lives in
:mod:`rpl_sim_bridge.tasks.pusher`; this module only knows its layout and pure functions, so
a controller or a planner binds the task where MuJoCo is not installed.

Observation (20,), world frame, the PETS order: the 7 arm joint angles (rad), their 7
velocities (rad/s), the fingertip centre (``tips_arm`` body's centre of mass, m) and the
object's centre (m). No goal fields (``goal_dim`` 0): the goal is :data:`GOAL_POS`.
Action (7,): the joint torques in [-2, 2] N m (the XML's motors: ctrlrange [-2, 2], gear 1,
so an action of 2 applies 2 N m, as in PETS).

Reward (:class:`PusherReward`), the PETS code's weights and order::

    r = -(1.25 * |object - goal|_1 + 0.5 * |object - tip|_1 + 0.1 * |a|^2)

on the observation after the step and the executed (clipped) action. The paper's text lists
the same three terms in another order (goal, control, tip); the value is the same. The L1
norms are over xyz as in the PETS code, so the goal term includes the constant height
difference of the object's centre above the goal disc (0.048 m, i.e. -0.06 per step).

Success (:class:`PusherSuccess`): the object's centre within ``distance_threshold``
(0.05 m) of the goal in the table plane (xy, Euclidean). Not xyz: the object slides on the
table at z = -0.275 and the goal disc's centre is at z = -0.323, so an xyz distance could
never be below 0.048 m.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from rpl_interfaces.params import build_config, describe
from rpl_sim_bridge.tasks.registry import SimulatedTaskFactory, TaskSpec, register_task

PUSHER_JOINTS = (
    'r_shoulder_pan_joint',
    'r_shoulder_lift_joint',
    'r_upper_arm_roll_joint',
    'r_elbow_flex_joint',
    'r_forearm_roll_joint',
    'r_wrist_flex_joint',
    'r_wrist_roll_joint',
)
"""The arm's joints in the XML's (and the observation's) order."""

PUSHER_OBS_FIELDS = (
    *(f'qpos.{j}' for j in PUSHER_JOINTS),
    *(f'qvel.{j}' for j in PUSHER_JOINTS),
    *(f'tip.{a}' for a in 'xyz'),
    *(f'object.{a}' for a in 'xyz'),
)
PUSHER_ACTION_FIELDS = tuple(f'torque.{j}' for j in PUSHER_JOINTS)
PUSHER_ACTION_UNITS = 'joint torques, N m, each in [-2, 2] (motor gear 1)'

QPOS = slice(0, 7)
"""Joint angles (rad) in the observation."""
QVEL = slice(7, 14)
"""Joint velocities (rad/s)."""
TIP_POS = slice(14, 17)
"""Fingertip centre xyz (m, world)."""
OBJECT_POS = slice(17, 20)
"""Object centre xyz (m, world)."""

GOAL_POS = (0.45, -0.05, -0.323)
"""The fixed goal: centre of the XML's goal disc (m, world); checked against the model when
the task is built."""

GOAL_WEIGHT = 1.25
TIP_WEIGHT = 0.5
CONTROL_WEIGHT = 0.1


@dataclasses.dataclass(frozen=True)
class PusherReward:
    """The dense reward of a transition, pure and batched (the PETS code's weights).

    ``reward(next_obs (..., 20), action (..., 7)) -> (...)`` float32:
    ``-(1.25 * L1(object - goal) + 0.5 * L1(object - tip) + 0.1 * |action|^2)``, positions
    in m (xyz), action in N m.
    """

    goal: tuple[float, float, float] = GOAL_POS

    def __call__(self, next_obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        obj = next_obs[..., OBJECT_POS]
        to_goal = np.abs(obj - np.asarray(self.goal)).sum(axis=-1)
        to_tip = np.abs(obj - next_obs[..., TIP_POS]).sum(axis=-1)
        control = np.square(action).sum(axis=-1)
        cost = GOAL_WEIGHT * to_goal + TIP_WEIGHT * to_tip + CONTROL_WEIGHT * control
        return (-cost).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class PusherSuccess:
    """Success of an observation, pure and batched: ``obs (..., 20) -> (...)`` float32, 1
    when the object's centre is within ``threshold`` m of the goal in xy, else 0."""

    threshold: float
    goal: tuple[float, float, float] = GOAL_POS

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return (object_goal_distance(obs, self.goal) <= self.threshold).astype(np.float32)


def object_goal_distance(obs: np.ndarray, goal: tuple[float, ...] = GOAL_POS) -> np.ndarray:
    """Distance (m) in the table plane (xy) of the object from the goal: ``(..., 20) -> (...)``."""
    obs = np.asarray(obs)
    return np.linalg.norm(obs[..., OBJECT_POS.start : OBJECT_POS.start + 2] - goal[:2], axis=-1)


@dataclasses.dataclass(frozen=True)
class PusherTaskConfig:
    """Settings of the pusher task (defaults: the PETS pusher)."""

    max_episode_steps: int = dataclasses.field(
        default=150,
        metadata=describe('Episode length T (steps); truncated at T.', range=(1, 10**6)),
    )
    distance_threshold: float = dataclasses.field(
        default=0.05,
        metadata=describe(
            'Success radius of the object around the goal in the table plane (m).',
            range=(1e-4, 1.0),
        ),
    )
    physics_timestep: float = dataclasses.field(
        default=0.01, metadata=describe('MuJoCo timestep (s).', range=(1e-5, 0.1))
    )
    frame_skip: int = dataclasses.field(
        default=4,
        metadata=describe('Physics steps per control step.', range=(1, 1000)),
    )
    object_start: str = dataclasses.field(
        default='gymnasium',
        metadata=describe(
            "Object start distribution, offsets from the goal (m): 'gymnasium' (Pusher-v5): "
            'x ~ U(-0.2, 0.2), y ~ U(-0.3, 0), redrawn until farther than 0.17 m from the '
            "goal; 'pets' (the PETS code): x = 0.15 + N(0, 0.025^2), y = -0.25 + N(0, 0.025^2).",
            choices=('gymnasium', 'pets'),
        ),
    )
    mujoco_warnings: str = dataclasses.field(
        default='raise',
        metadata=describe(
            'What a MuJoCo warning (e.g. unstable simulation) does: raise MujocoWarningError '
            'or issue a Python MujocoWarning.',
            choices=('raise', 'warn'),
        ),
    )

    @property
    def control_dt(self) -> float:
        """Control period (s): ``frame_skip * physics_timestep`` (0.04 s by default)."""
        return self.frame_skip * self.physics_timestep


def pusher_spec(name: str, description: str, config: PusherTaskConfig) -> TaskSpec:
    """Spec of the pusher task (20-D observation, no goal, 7 torques in [-2, 2])."""
    return TaskSpec(
        name=name,
        description=description,
        obs_dim=len(PUSHER_OBS_FIELDS),
        goal_dim=0,
        action_dim=len(PUSHER_JOINTS),
        max_episode_steps=config.max_episode_steps,
        distance_threshold=config.distance_threshold,
        obs_fields=PUSHER_OBS_FIELDS,
        action_low=-2.0,
        action_high=2.0,
        control_dt=config.control_dt,
        action_fields=PUSHER_ACTION_FIELDS,
        action_units=PUSHER_ACTION_UNITS,
        step_reward=PusherReward(),
        obs_success=PusherSuccess(config.distance_threshold),
    )


PUSHER_TASKS: dict[str, tuple[str, dict[str, Any]]] = {
    'mbrl_pusher': (
        "PETS' 7-DOF arm pushes a cylinder to a fixed goal; zero gravity, torques; T = 150.",
        {},
    ),
    'mbrl_pusher_pets': (
        "mbrl_pusher with the PETS code's object start (the paper's MBRLPusher): the object "
        'starts near one point, (0.15, -0.25) m from the goal, std 0.025 m per axis.',
        {'object_start': 'pets'},
    ),
}
"""Registered pusher tasks: name -> (description, config values that differ from the
defaults of :class:`PusherTaskConfig`)."""


PUSHER_SIMULATOR = 'mujoco and gymnasium'
"""What the simulated pusher task needs, for the error where it is missing."""


for _name, (_description, _defaults) in PUSHER_TASKS.items():
    register_task(
        _name,
        pusher_spec(_name, _description, build_config(PusherTaskConfig, _defaults)),
        SimulatedTaskFactory(
            _name, 'rpl_sim_bridge.tasks.pusher', 'make_pusher_task', PUSHER_SIMULATOR
        ),
    )
