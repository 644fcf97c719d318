"""Fetch goal tasks (push, slippery push, pick and place) on Gymnasium-Robotics' MuJoCo model.

The Fetch model, its initial state, the block and goal sampling come from the *unwrapped*
Gymnasium-Robotics ``MujocoFetch*Env`` (no TimeLimit or order-enforcing wrappers; this module
counts steps itself). The per-step physics and the observation are done here with MuJoCo
names resolved to ids once, which replicates ``FetchPush-v4`` exactly (same floats) at a
lower cost per step.

Differences from the stock envs, all deliberate:

* After the substeps of a control step, ``mj_forward`` is always called (stock Fetch calls it
  only when the gripper is blocked, as in Push). Observations of pick-and-place therefore
  show the state after the step instead of kinematics one 2 ms substep old, and
  :meth:`FetchTask.set_state` restores a state exactly. Push is bit-identical to stock.
* ``info['is_success']`` is ``distance <= threshold`` (stock: ``<``), so that it always
  equals ``reward + 1``.
* MuJoCo warnings (e.g. unstable simulation) raise :class:`MujocoWarningError` or issue a
  :class:`MujocoWarning`, by config; stock ignores them.

SlipperyPush: every geom's friction is set to (0.18, 5e-3, 1e-4), as the 2019 RPL code did,
so block-table contacts (and block-finger contacts) slide with 0.18. MuJoCo combines the
friction of two contacting geoms of equal priority by element-wise maximum, so lowering the
block alone would leave the block-table contact at the table's 1.0. Lowering only block and
table (``surface_friction=0``, ``block_table_friction=0.18``) keeps grippy fingers that drag
the block: ReactivePush then scores 0.19 instead of the paper's ~0.45 (see
results/controller_bands.md), which is why the registered task follows the 2019 code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import mujoco
import numpy as np
from gymnasium_robotics.envs.fetch.pick_and_place import MujocoFetchPickAndPlaceEnv
from gymnasium_robotics.envs.fetch.push import MujocoFetchPushEnv

from rpl_interfaces.params import build_config
from rpl_sim_bridge.layout import FetchObs
from rpl_sim_bridge.tasks.goal_task import GoalTask, ObsDict
from rpl_sim_bridge.tasks.registry import TaskSpec
from rpl_sim_bridge.tasks.specs import (  # noqa: F401  (re-exported)
    FETCH_ACTION_FIELDS,
    FETCH_TASKS,
    FetchTaskConfig,
    fetch_spec,
)

GRIPPER_STEP = 0.05
"""Mocap displacement per unit of action along x, y, z (m per control step)."""

# Stock Fetch adds this quaternion to the gripper's current orientation to get the mocap
# target; MuJoCo normalises mocap quaternions, so the gripper keeps pointing down.
_MOCAP_QUAT_OFFSET = np.array([1.0, 0.0, 1.0, 0.0])

_EULER_EPS = np.finfo(np.float64).eps * 4.0  # singularity threshold of the stock mat2euler
_OLD_CODE_SPIN_ROLL = (5e-3, 1e-4)  # torsional, rolling friction the 2019 code set everywhere


def _mat2euler(mat: np.ndarray) -> tuple[float, float, float]:
    """Euler angles (rad) of a rotation matrix (9,), same convention as Gymnasium-Robotics."""
    m00, m01, m02, m10, m11, m12, _, _, m22 = (float(v) for v in mat)
    cy = math.sqrt(m22 * m22 + m12 * m12)
    if cy > _EULER_EPS:
        return -math.atan2(m12, m22), -math.atan2(-m02, cy), -math.atan2(m01, m00)
    return 0.0, -math.atan2(-m02, cy), -math.atan2(-m10, m11)


def _whole_substeps(control_dt: float, timestep: float) -> int:
    """Number of physics steps per control step; error unless it is a whole number."""
    ratio = control_dt / timestep
    n = round(ratio)
    if n < 1 or abs(ratio - n) > 1e-9 * ratio:
        raise ValueError(
            f'control_dt {control_dt} s is not a whole number of physics steps of {timestep} s '
            f'(ratio {ratio:.9g}); choose control_dt = k * physics_timestep for an integer k >= 1'
        )
    return n


class FetchTask(GoalTask):
    """A Fetch goal task: 25-D observation, 3-D goal (block xyz), 4-D action in [-1, 1].

    Action: ``[dx, dy, dz, finger]``; xyz times :data:`GRIPPER_STEP` (m) moves the mocap
    target of the gripper relative to the gripper's current position (world frame); the finger
    value is added to both finger positions as a position-actuator target (ignored when the
    gripper is blocked, as in Push). Observation layout: :class:`rpl_sim_bridge.layout.FetchObs`.
    """

    def __init__(
        self,
        name: str,
        description: str,
        env_class: Callable[[], Any],
        config: FetchTaskConfig,
        spec: TaskSpec | None = None,
    ) -> None:
        """Build the task.

        Args:
            name: Registry name (goes into the spec and error messages).
            description: One line for the spec.
            env_class: Unwrapped Gymnasium-Robotics MuJoCo Fetch env class, or any
                zero-argument factory of one (model + sampling).
            config: Validated settings.
            spec: The task's spec; None: the 25-D Fetch spec from ``config`` (a subclass
                with a longer observation passes its own).

        Raises:
            ValueError: ``control_dt`` is not a whole number of physics steps.
        """
        n_substeps = _whole_substeps(config.control_dt, config.physics_timestep)
        super().__init__(spec or fetch_spec(name, description, config))
        self.config = config
        self._env = env_class()  # unwrapped: builds the model and settles the initial state
        self.model: mujoco.MjModel = self._env.model
        self.data: mujoco.MjData = self._env.data
        self.model.opt.timestep = config.physics_timestep
        self._n_substeps = n_substeps
        # Velocities are reported times the control period, as stock Fetch does.
        self._dt = n_substeps * self.model.opt.timestep
        self._block_gripper = bool(self._env.block_gripper)
        self._resolve_ids()
        if config.surface_friction > 0.0:
            self.model.geom_friction[:] = (config.surface_friction, *_OLD_CODE_SPIN_ROLL)
        self.model.geom_friction[self.block_geom_id, 0] = config.block_table_friction
        self.model.geom_friction[self.table_geom_ids, 0] = config.block_table_friction
        nv = self.model.nv
        self._jacp = np.zeros((3, nv))
        self._jacr = np.zeros((3, nv))
        self._goal = np.zeros(self.spec.goal_dim)
        self._track_mujoco()

    def _resolve_ids(self) -> None:
        m = self.model
        site = mujoco.mjtObj.mjOBJ_SITE
        self._grip_site = mujoco.mj_name2id(m, site, 'robot0:grip')
        self._object_site = mujoco.mj_name2id(m, site, 'object0')
        self.block_geom_id = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, 'object0')
        """Id of the block geom."""
        table_body = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, 'table0')
        self.table_geom_ids = np.flatnonzero(m.geom_bodyid == table_body)
        """Ids of the table geoms (one box in the stock model)."""
        missing = [
            what
            for what, i in (
                ('site robot0:grip', self._grip_site),
                ('site object0', self._object_site),
                ('geom object0', self.block_geom_id),
                ('body table0', table_body),
            )
            if i < 0
        ]
        if missing or self.table_geom_ids.size == 0:
            raise ValueError(f'Fetch model lacks {missing or ["table0 geoms"]}')
        # The mocap body is welded to the gripper link; the action moves the mocap target.
        weld = int(np.flatnonzero(m.eq_type == mujoco.mjtEq.mjEQ_WELD)[0])
        body1, body2 = int(m.eq_obj1id[weld]), int(m.eq_obj2id[weld])
        if m.body_mocapid[body1] >= 0:
            self._mocap_id, self._welded_body = int(m.body_mocapid[body1]), body2
        else:
            self._mocap_id, self._welded_body = int(m.body_mocapid[body2]), body1
        # Stock gripper_state: the last two joints whose names start with 'robot' (r, l).
        robot_joints = [j for j in range(m.njnt) if m.joint(j).name.startswith('robot')]
        fingers = robot_joints[-2:]
        self._finger_qpos = np.array([m.jnt_qposadr[j] for j in fingers])
        self._finger_dof = np.array([m.jnt_dofadr[j] for j in fingers])
        # Position actuators (biastype != none) target qpos + command, as stock Fetch does.
        self._act_qpos = np.array([m.jnt_qposadr[m.actuator_trnid[i, 0]] for i in range(m.nu)])
        self._act_relative = np.array(
            [m.actuator_biastype[i] != mujoco.mjtBias.mjBIAS_NONE for i in range(m.nu)], bool
        )

    # ------------------------------------------------------------------------- physics
    def _reset_physics(self, seed: int | None) -> None:
        self._env.reset(seed=seed)  # stock reset: initial state, block position, goal
        self._goal = np.array(self._env.goal, dtype=np.float64)
        self._warnings_seen = self.data.warning.number.copy()  # mj_resetData zeroed them

    def simulate(self, action: np.ndarray) -> None:
        """Apply one control step: mocap move, finger command, n_substeps x ``mj_step``.

        No reward, observation or step counting (a planner may call this on its own copy).

        Args:
            action: (4,) ``[dx, dy, dz, finger]`` in [-1, 1] (clipped if outside).

        Raises:
            ValueError: Wrong shape or non-finite action.
            MujocoWarningError: MuJoCo reported a warning and ``mujoco_warnings='raise'``.
        """
        a = self.check_action(action)
        m, d = self.model, self.data
        if m.nu:
            finger = 0.0 if self._block_gripper else a[3]
            d.ctrl[:] = np.where(self._act_relative, d.qpos[self._act_qpos] + finger, finger)
        d.mocap_pos[self._mocap_id] = d.xpos[self._welded_body] + a[:3] * GRIPPER_STEP
        d.mocap_quat[self._mocap_id] = d.xquat[self._welded_body] + _MOCAP_QUAT_OFFSET
        mujoco.mj_step(m, d, nstep=self._n_substeps)
        if self._block_gripper:
            d.qpos[self._finger_qpos] = 0.0
        mujoco.mj_forward(m, d)
        self._check_warnings(self.config.mujoco_warnings)

    def observe(self) -> ObsDict:
        """Current observation dict (fresh float64 arrays; layout :class:`FetchObs`)."""
        m, d = self.model, self.data
        jacp, jacr, dt = self._jacp, self._jacr, self._dt
        obs = np.empty(FetchObs.DIM)
        grip_pos = d.site_xpos[self._grip_site]
        object_pos = d.site_xpos[self._object_site]
        mujoco.mj_jacSite(m, d, jacp, None, self._grip_site)
        grip_velp = jacp @ d.qvel * dt
        mujoco.mj_jacSite(m, d, jacp, jacr, self._object_site)
        obs[FetchObs.GRIP_POS] = grip_pos
        obs[FetchObs.OBJECT_POS] = object_pos
        obs[FetchObs.OBJECT_REL_POS] = object_pos - grip_pos
        obs[FetchObs.GRIPPER_STATE] = d.qpos[self._finger_qpos]
        obs[FetchObs.OBJECT_ROT] = _mat2euler(d.site_xmat[self._object_site])
        obs[FetchObs.OBJECT_VELP] = jacp @ d.qvel * dt - grip_velp
        obs[FetchObs.OBJECT_VELR] = jacr @ d.qvel * dt
        obs[FetchObs.GRIP_VELP] = grip_velp
        obs[FetchObs.GRIPPER_VEL] = d.qvel[self._finger_dof] * dt
        return {
            'observation': obs,
            'achieved_goal': obs[FetchObs.OBJECT_POS].copy(),
            'desired_goal': self._goal.copy(),
        }

    @property
    def goal(self) -> np.ndarray:
        """Desired goal (3,), m, world frame (a copy)."""
        return self._goal.copy()

    def set_goal(self, goal: np.ndarray) -> None:
        """Replace the desired goal (e.g. on a planner's copy of the task).

        Raises:
            ValueError: ``goal`` is not a finite (3,) vector.
        """
        g = np.array(goal, dtype=np.float64)
        if g.shape != self._goal.shape or not np.isfinite(g).all():
            raise ValueError(
                f'task {self.spec.name!r}: goal must be a finite ({self._goal.size},) vector, '
                f'got {goal!r}'
            )
        self._goal = g

    def close(self) -> None:
        """Close the underlying Gymnasium-Robotics env (its renderer, if any)."""
        self._env.close()


# --------------------------------------------------------------------------- registry
# The specs and their registration: rpl_sim_bridge.tasks.specs (no MuJoCo there).
FETCH_ENVS: dict[str, type] = {
    'push': MujocoFetchPushEnv,
    'slippery_push': MujocoFetchPushEnv,
    'pick_and_place': MujocoFetchPickAndPlaceEnv,
}
"""Unwrapped Gymnasium-Robotics env (model + sampling) of each task in :data:`FETCH_TASKS`."""


def make_fetch_task(name: str, **overrides: Any) -> FetchTask:
    """Build one of the registered Fetch tasks with config overrides.

    Raises:
        KeyError: ``name`` is not a Fetch task.
        rpl_interfaces.params.ParameterError: Unknown override name or bad value.
    """
    description, defaults = FETCH_TASKS[name]
    config = build_config(FetchTaskConfig, {**defaults, **overrides})
    return FetchTask(name, description, FETCH_ENVS[name], config)
