"""Hook tasks (``hook``, ``noisy_hook``): pull an out-of-reach block to the goal with a hook.

Scene (own MJCF; the 2019 assets are not available). The Fetch robot and its shared assets
(meshes, materials) are Gymnasium-Robotics' files, included by absolute path; the rest is
generated here as a string (:func:`hook_scene_xml`) so that a variant (ComplexHook) swaps
the block for another object or adds static bodies without a file per variant, and nothing
has to be installed as package data:

* table ``table0``: box centre (1.65, 0.75, 0.2), half-size (0.5, 0.45, 0.2), top at 0.4 m;
* block ``object0`` (body, geom, site, joint ``object0:joint``): 5 cm cube, 2 kg, as in the
  Fetch tasks, so the achieved goal is the block position;
* hook ``hook`` (body, site, joint ``hook:joint``): a free body of two boxes of 2 kg each,
  a handle of half-size (0.4, 0.015, 0.015) and a head of half-size (0.015, 0.1, 0.015) at
  +0.4 m x / +0.085 m y of the handle centre (an L whose head points to +y). The body frame
  (and the observed hook position) is the GRASP POINT on the handle axis,
  :data:`HOOK_GRASP_FROM_CENTRE` = 0.2 m from the handle centre towards its free end
  (0.2 m from that end). It starts at (1.35, 0.35, 0.415), yaw 0, resting on the table (the
  facts' z = 0.4 is the table top; the handle axis is 1.5 cm above it), not randomized: the
  handle covers x 1.15..1.95, the head x 1.95, y 0.335..0.535.

Why the grasp point there. ReactiveHook moves the hook to (block_x - 0.5, block_y - 0.05)
before it sweeps, with 0.1 m of slack in x. With the hook frame at distance e from the handle
centre, the head's inner face is then at block_x - 0.115 + e: it lies beyond the block's far
face (block_x + 0.025) only for e > 0.14 m; while pulling, the hook sits at
block_x - 0.36 - e, which stays within the 0.1 m slack only for e <= 0.24 m. e = 0.2 m leaves
6 cm of clearance behind the block and 4 cm of slack.

Sampling (the environment's own generator, seeded by ``reset(seed)``): block at
x = 1.8 + U(-0.05, 0.10), y = 0.75 + U(-0.05, 0.05), resting on the table; goal at
(1.65 + U(-0.05, 0.05), 0.75 + U(-0.05, 0.05), 0.42), the two offsets independent (the 2019
code added ONE scalar to both). The gripper is free (fingers work) and starts 0.2 m higher
than in Fetch pick and place.

Observation: 40-D :class:`rpl_sim_bridge.layout.HookObs` (the 25 Fetch entries with the block
as the object, then the hook's position, Euler angles, velocity relative to the gripper * dt,
angular velocity * dt and position relative to the gripper). Physics, finger and mocap
control, MuJoCo warnings and ``get_state`` / ``set_state`` are :class:`FetchTask`'s.

``noisy_hook``: ``obs_noise_std`` > 0 adds i.i.d. Gaussian noise to the block's xy, the
hook's xyz and both objects' Euler angles (11 numbers), drawn once at reset and once per
control step from the environment's generator (so ``reset(seed)`` reproduces an episode,
noise included; :meth:`HookTask.observe` is repeatable between steps). The relative positions
use the noisy positions, the achieved goal is the noisy block position (so are reward and
success). Velocities are not noisy. The noise is not part of :meth:`FetchTask.get_state`.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import gymnasium_robotics
import mujoco
import numpy as np
from gymnasium_robotics.envs.fetch import MujocoFetchEnv

from rpl_interfaces.params import build_config
from rpl_sim_bridge.layout import FetchObs, HookObs
from rpl_sim_bridge.tasks.fetch import FetchTask, _mat2euler
from rpl_sim_bridge.tasks.goal_task import ObsDict
from rpl_sim_bridge.tasks.hook_specs import HOOK_TASKS, HookTaskConfig, hook_spec

FETCH_ASSETS = os.path.join(os.path.dirname(gymnasium_robotics.__file__), 'envs', 'assets')
"""Gymnasium-Robotics' asset folder (Fetch robot.xml, shared.xml, meshes, textures)."""

TABLE_POS = (1.65, 0.75, 0.2)
TABLE_HALF_SIZE = (0.5, 0.45, 0.2)
TABLE_TOP_Z = TABLE_POS[2] + TABLE_HALF_SIZE[2]
BLOCK_HALF_SIZE = 0.025
BLOCK_XY = (1.8, 0.75)
"""Centre of the block's start distribution (m)."""
BLOCK_X_RANGE = (-0.05, 0.10)
BLOCK_Y_RANGE = (-0.05, 0.05)
GOAL_CENTRE = (1.65, 0.75, 0.42)
GOAL_XY_RANGE = 0.05
"""Half-width of the independent uniform goal offsets in x and in y (m)."""

HOOK_HANDLE_HALF_SIZE = (0.4, 0.015, 0.015)
HOOK_HEAD_HALF_SIZE = (0.015, 0.1, 0.015)
HOOK_HEAD_OFFSET = (0.4, 0.085)
"""Head centre relative to the handle centre (x, y), m."""
HOOK_GRASP_FROM_CENTRE = 0.2
"""Distance (m) of the hook frame (grasp point) from the handle centre towards its free end."""
HOOK_PART_MASS = 2.0
HOOK_START = (1.35, 0.35, TABLE_TOP_Z + HOOK_HANDLE_HALF_SIZE[2])
"""Initial hook frame position (m), yaw 0."""
GRIPPER_EXTRA_HEIGHT = 0.2

_NOISE_SIZE = 11  # block xy (2), hook xyz (3), block euler (3), hook euler (3)


def _shift_noisy_fields(obs: np.ndarray, shift: np.ndarray) -> None:
    """Add ``shift`` (11,), laid out as :attr:`HookTask.observation_noise`, to the noisy
    fields of a hook observation (40,) in place; the positions relative to the gripper
    follow."""
    grip_pos = obs[HookObs.GRIP_POS]
    obs[HookObs.OBJECT_POS.start : HookObs.OBJECT_POS.start + 2] += shift[0:2]
    obs[HookObs.HOOK_POS] += shift[2:5]
    obs[HookObs.OBJECT_ROT] += shift[5:8]
    obs[HookObs.HOOK_ROT] += shift[8:11]
    obs[HookObs.OBJECT_REL_POS] = obs[HookObs.OBJECT_POS] - grip_pos
    obs[HookObs.HOOK_REL_POS] = obs[HookObs.HOOK_POS] - grip_pos


def _vec(values: Any) -> str:
    return ' '.join(f'{float(v):.6g}' for v in values)


BLOCK_XML = f"""
<body name="object0" pos="{_vec((*BLOCK_XY, TABLE_TOP_Z + BLOCK_HALF_SIZE))}">
  <joint name="object0:joint" type="free" damping="0.01"/>
  <geom name="object0" type="box" size="{_vec([BLOCK_HALF_SIZE] * 3)}" condim="3"
        material="block_mat" mass="2"/>
  <site name="object0" pos="0 0 0" size="0.02 0.02 0.02" rgba="1 0 0 1" type="sphere"/>
</body>"""
"""The 5 cm block of the Fetch tasks (body, geom, site and free joint all named object0)."""


def _hook_xml() -> str:
    e = HOOK_GRASP_FROM_CENTRE
    head = (e + HOOK_HEAD_OFFSET[0], HOOK_HEAD_OFFSET[1], 0.0)
    return f"""
<body name="hook" pos="{_vec(HOOK_START)}">
  <joint name="hook:joint" type="free" damping="0.01"/>
  <geom name="hook_handle" type="box" pos="{_vec((e, 0, 0))}"
        size="{_vec(HOOK_HANDLE_HALF_SIZE)}" condim="3" mass="{HOOK_PART_MASS:g}"
        rgba="0.8 0.4 0.1 1"/>
  <geom name="hook_head" type="box" pos="{_vec(head)}" size="{_vec(HOOK_HEAD_HALF_SIZE)}"
        condim="3" mass="{HOOK_PART_MASS:g}" rgba="0.8 0.4 0.1 1"/>
  <site name="hook" pos="0 0 0" size="0.01 0.01 0.01" rgba="0 0 1 1" type="sphere"/>
</body>"""


def hook_scene_xml(object_xml: str = BLOCK_XML, extra_xml: str = '') -> str:
    """MJCF text of the hook scene.

    Args:
        object_xml: The manipulated object: a free body with a geom and a site named
            ``object0`` and a free joint ``object0:joint`` (default: the 5 cm block).
        extra_xml: More world bodies (e.g. static bumps), inserted after the hook.

    Returns:
        A complete MJCF model (robot and meshes included from :data:`FETCH_ASSETS`;
            finger position actuators as in Fetch pick and place).
    """
    a = FETCH_ASSETS
    return f"""<mujoco model="hook">
  <compiler angle="radian" coordinate="local" meshdir="{a}/stls/fetch"
            texturedir="{a}/textures"/>
  <option timestep="0.002"><flag warmstart="enable"/></option>
  <include file="{a}/fetch/shared.xml"/>
  <worldbody>
    <geom name="floor0" pos="1.05 0.75 0" size="1.2 0.8 1" type="plane" condim="3"
          material="floor_mat"/>
    <body name="floor0" pos="1.05 0.75 0">
      <site name="target0" pos="0 0 0.5" size="0.02 0.02 0.02" rgba="1 0 0 1" type="sphere"/>
    </body>
    <include file="{a}/fetch/robot.xml"/>
    <body name="table0" pos="{_vec(TABLE_POS)}">
      <geom name="table0" type="box" size="{_vec(TABLE_HALF_SIZE)}" mass="2000"
            material="table_mat"/>
    </body>
    {object_xml}
    {_hook_xml()}
    {extra_xml}
    <light directional="true" ambient="0.2 0.2 0.2" diffuse="0.8 0.8 0.8"
           specular="0.3 0.3 0.3" castshadow="false" pos="0 0 4" dir="0 0 -1" name="light0"/>
  </worldbody>
  <actuator>
    <position ctrllimited="true" ctrlrange="0 0.2" joint="robot0:l_gripper_finger_joint"
              kp="30000" name="robot0:l_gripper_finger_joint" user="1"/>
    <position ctrllimited="true" ctrlrange="0 0.2" joint="robot0:r_gripper_finger_joint"
              kp="30000" name="robot0:r_gripper_finger_joint" user="1"/>
  </actuator>
</mujoco>"""


class HookFetchEnv(MujocoFetchEnv):
    """Unwrapped Gymnasium-Robotics Fetch env on the hook scene: model, initial gripper
    pose (free fingers, 0.2 m extra height), block and goal sampling. Stepping and
    observations are :class:`HookTask`'s."""

    def __init__(self, scene_xml: str | None = None) -> None:
        """Build the model from ``scene_xml`` (default: :func:`hook_scene_xml`)."""
        self._scene_xml = scene_xml or hook_scene_xml()
        block_z = TABLE_TOP_Z + BLOCK_HALF_SIZE
        super().__init__(
            # Only checked to exist: the model is built from the scene text (see below).
            model_path=os.path.join(FETCH_ASSETS, 'fetch', 'robot.xml'),
            has_object=True,
            block_gripper=False,
            n_substeps=20,
            gripper_extra_height=GRIPPER_EXTRA_HEIGHT,
            target_in_the_air=False,
            target_offset=0.0,
            obj_range=0.0,
            target_range=0.0,
            distance_threshold=0.05,
            initial_qpos={
                'robot0:slide0': 0.405,
                'robot0:slide1': 0.48,
                'robot0:slide2': 0.0,
                'object0:joint': [*BLOCK_XY, block_z, 1.0, 0.0, 0.0, 0.0],
                'hook:joint': [*HOOK_START, 1.0, 0.0, 0.0, 0.0],
            },
            reward_type='sparse',
        )

    def _initialize_simulation(self) -> None:
        # As MujocoRobotEnv's, but from the generated text instead of a file.
        self.model = self._mujoco.MjModel.from_xml_string(self._scene_xml)
        self.data = self._mujoco.MjData(self.model)
        self._model_names = self._utils.MujocoModelNames(self.model)
        self.model.vis.global_.offwidth = self.width
        self.model.vis.global_.offheight = self.height
        self._env_setup(initial_qpos=self.initial_qpos)
        self.initial_time = self.data.time
        self.initial_qpos = np.copy(self.data.qpos)
        self.initial_qvel = np.copy(self.data.qvel)

    def _reset_sim(self) -> bool:
        mujoco.mj_resetData(self.model, self.data)
        self.data.time = self.initial_time
        self.data.qpos[:] = self.initial_qpos
        self.data.qvel[:] = self.initial_qvel
        rng = self.np_random
        block_xy = np.array(BLOCK_XY) + (rng.uniform(*BLOCK_X_RANGE), rng.uniform(*BLOCK_Y_RANGE))
        block = self._utils.get_joint_qpos(self.model, self.data, 'object0:joint')
        block[:2] = block_xy
        self._utils.set_joint_qpos(self.model, self.data, 'object0:joint', block)
        # The hook starts where the setup settled it (initial_qpos), not randomized.
        mujoco.mj_forward(self.model, self.data)
        return True

    def _sample_goal(self) -> np.ndarray:
        offset = self.np_random.uniform(-GOAL_XY_RANGE, GOAL_XY_RANGE, size=2)
        return np.array([GOAL_CENTRE[0] + offset[0], GOAL_CENTRE[1] + offset[1], GOAL_CENTRE[2]])


class HookTask(FetchTask):
    """A hook task: :class:`FetchTask` physics on the hook scene, 40-D observation
    (:class:`HookObs`), optional observation noise (``config.obs_noise_std``).

    Attributes:
        hook_body_id: Id of the hook body.
        hook_geom_ids: Ids of the hook's two geoms (handle, head).
    """

    def __init__(
        self,
        name: str,
        description: str,
        config: HookTaskConfig,
        object_xml: str = BLOCK_XML,
        extra_xml: str = '',
    ) -> None:
        """Build the task.

        Args:
            name: Registry name.
            description: One line for the spec.
            config: Validated settings.
            object_xml: The manipulated object (see :func:`hook_scene_xml`).
            extra_xml: More world bodies (see :func:`hook_scene_xml`).
        """
        scene = hook_scene_xml(object_xml, extra_xml)
        super().__init__(
            name,
            description,
            functools.partial(HookFetchEnv, scene),
            config,
            spec=hook_spec(name, description, config),
        )
        m = self.model
        self._hook_site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, 'hook')
        self.hook_body_id = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, 'hook')
        self.hook_geom_ids = np.flatnonzero(m.geom_bodyid == self.hook_body_id)
        self._noise_std = float(config.obs_noise_std)
        self._noise = np.zeros(_NOISE_SIZE)

    def _draw_noise(self) -> None:
        if self._noise_std > 0.0:
            self._noise = self._env.np_random.normal(0.0, self._noise_std, _NOISE_SIZE)

    def _reset_physics(self, seed: int | None) -> None:
        super()._reset_physics(seed)
        self._draw_noise()

    def simulate(self, action: np.ndarray) -> None:
        """One control step (:meth:`FetchTask.simulate`), then new observation noise."""
        super().simulate(action)
        self._draw_noise()

    @property
    def observation_noise(self) -> np.ndarray:
        """The noise of the current observation (11,): block xy (m), hook xyz (m), block
        Euler angles (rad), hook Euler angles (rad); zeros for a clean task (a copy)."""
        return self._noise.copy()

    def noise_free(self, observation: np.ndarray) -> np.ndarray:
        """The current observation (40,) without this step's noise (a copy). Only for the
        observation of the current step (the noise is redrawn at every step and reset).
        For diagnostics (tools/noisy_success.py) and :meth:`true_achieved_goal`: the task's
        readers get the noisy one."""
        clean = np.array(observation, dtype=np.float64)
        if self._noise_std > 0.0:
            _shift_noisy_fields(clean, -self._noise)
        return clean

    def true_achieved_goal(self, observation: ObsDict) -> np.ndarray:
        """The block position without this step's noise (:meth:`GoalTask.true_achieved_goal`)."""
        return self.noise_free(observation['observation'])[HookObs.OBJECT_POS]

    def observe(self) -> ObsDict:
        """Current observation dict (fresh float64 arrays; layout :class:`HookObs`)."""
        fetch = super().observe()
        m, d, dt = self.model, self.data, self._dt
        jacp, jacr = self._jacp, self._jacr
        obs = np.empty(HookObs.DIM)
        obs[: FetchObs.DIM] = fetch['observation']
        grip_pos = obs[HookObs.GRIP_POS]
        grip_velp = obs[HookObs.GRIP_VELP]
        mujoco.mj_jacSite(m, d, jacp, jacr, self._hook_site)
        obs[HookObs.HOOK_POS] = d.site_xpos[self._hook_site]
        obs[HookObs.HOOK_ROT] = _mat2euler(d.site_xmat[self._hook_site])
        obs[HookObs.HOOK_VELP] = jacp @ d.qvel * dt - grip_velp
        obs[HookObs.HOOK_VELR] = jacr @ d.qvel * dt
        obs[HookObs.HOOK_REL_POS] = obs[HookObs.HOOK_POS] - grip_pos
        if self._noise_std > 0.0:
            _shift_noisy_fields(obs, self._noise)
        return {
            'observation': obs,
            'achieved_goal': obs[HookObs.OBJECT_POS].copy(),
            'desired_goal': fetch['desired_goal'],
        }


def make_hook_task(name: str, **overrides: Any) -> HookTask:
    """Build one of the registered hook tasks with config overrides.

    Raises:
        KeyError: ``name`` is not a hook task.
        rpl_interfaces.params.ParameterError: Unknown override name or bad value.
    """
    description, defaults = HOOK_TASKS[name]
    config = build_config(HookTaskConfig, {**defaults, **overrides})
    return HookTask(name, description, config)
