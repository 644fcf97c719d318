"""A planner's private copy of a Fetch task, rebuilt from observations alone.

The paper's DiscreteMPCPush planned on a *perfect* copy of the simulator (the full MuJoCo
state of the running environment). A base-controller node sees only the 25-D observation,
so this copy reconstructs the physics state from it:

Taken from the observation (exact up to float rounding):
    * block position, orientation (from the Euler angles) and linear and angular velocity
      (the observation gives them times dt, the linear one relative to the gripper);
    * gripper site position and linear velocity;
    * finger joint positions and velocities.

Reconstructed, not observed:
    * the arm joints (7 hinges from shoulder pan to wrist roll): warm-started from the
      copy's own prediction of the current state (the state after the move it chose at
      the previous step; the initial state after :meth:`PlanningCopy.reset`), then corrected
      by damped least-squares inverse kinematics until the gripper site is within
      ``ik_tolerance`` of the observed position. Joint velocities get the least-norm
      correction that matches the observed gripper velocity. Where the real arm took a
      different null-space posture, or the gripper orientation drifted, the copy differs.
    * base slides, torso, head: the copy's prediction (in Fetch they barely move).
    * the mocap target: no state to copy, every control step puts it relative to the
      gripper link (the task's ``simulate``).
    * constraint-solver warm start (``qacc_warmstart``) and simulated time: the copy's own.

The goal is not part of the physics and is passed to the planner directly.
"""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np
from gymnasium_robotics.utils.rotations import euler2quat

from rpl_sim_bridge.layout import FetchObs
from rpl_sim_bridge.tasks import make_task


@dataclasses.dataclass(frozen=True)
class SyncReport:
    """How well the copy matched the observation after :meth:`PlanningCopy.sync`.

    Attributes:
        gripper_error: Distance between the copy's and the observed gripper site, m.
        ik_iterations: Inverse-kinematics iterations used.
    """

    gripper_error: float
    ik_iterations: int


class PlanningCopy:
    """Private task instance for planning; its state is set from observations.

    Args:
        task: Task name for :func:`rpl_sim_bridge.tasks.make_task` (same physics as the real
            task, e.g. the lower friction of ``slippery_push``).
        ik_iterations: Most damped least-squares iterations per sync.
        ik_tolerance: Gripper position error (m) at which the iterations stop.
        ik_damping: Damping (m) of the least-squares steps.
    """

    def __init__(
        self,
        task: str,
        ik_iterations: int = 20,
        ik_tolerance: float = 1e-6,
        ik_damping: float = 1e-3,
    ):
        self.task = make_task(task)
        self.model: mujoco.MjModel = self.task.model
        self.data: mujoco.MjData = self.task.data
        self.dt = self.task.spec.control_dt
        self._ik_iterations = ik_iterations
        self._ik_tolerance = ik_tolerance
        self._ik_damping = ik_damping
        m = self.model
        site, body = mujoco.mjtObj.mjOBJ_SITE, mujoco.mjtObj.mjOBJ_BODY
        self._grip_site = mujoco.mj_name2id(m, site, 'robot0:grip')
        object_joint = m.joint('object0:joint')
        self._object_qpos = int(object_joint.qposadr[0])
        self._object_dof = int(object_joint.dofadr[0])
        self._finger_qpos, self._finger_dof = _finger_addresses(m)
        self._arm_qpos, self._arm_dof = _arm_hinges(
            m, mujoco.mj_name2id(m, body, 'robot0:gripper_link')
        )
        self._jacp = np.zeros((3, m.nv))
        self._initial_state = np.zeros(0)
        self.reset()

    def reset(self) -> np.ndarray:
        """Put the copy in the task's initial state (seed 0); return that state vector."""
        self.task.reset(seed=0)
        self._initial_state = self.task.get_state()
        return self._initial_state

    @property
    def initial_state(self) -> np.ndarray:
        """State after :meth:`reset` (arm in the task's initial posture), a copy."""
        return self._initial_state.copy()

    def sync(self, observation: np.ndarray, warm_state: np.ndarray) -> SyncReport:
        """Set the copy's state from an observation, starting from a predicted state.

        Args:
            observation: Fetch observation, shape (25,) (layout :class:`FetchObs`).
            warm_state: A state of this copy (``task.get_state()``) that supplies what the
                observation does not (see the module docstring).

        Returns:
            How closely the gripper position was matched.
        """
        m, d = self.model, self.data
        self.task.set_state(warm_state)
        dt = self.dt
        # Block: free joint (position, quaternion; linear velocity in the world frame,
        # angular velocity in the block frame).
        block_pos = observation[FetchObs.OBJECT_POS]
        block_quat = euler2quat(observation[FetchObs.OBJECT_ROT])
        grip_vel = observation[FetchObs.GRIP_VELP] / dt  # (3,), m/s, world
        block_vel = observation[FetchObs.OBJECT_VELP] / dt + grip_vel
        block_angvel_world = observation[FetchObs.OBJECT_VELR] / dt  # (3,), rad/s
        rotation = np.zeros(9)
        mujoco.mju_quat2Mat(rotation, block_quat)
        q, v = self._object_qpos, self._object_dof
        d.qpos[q : q + 3] = block_pos
        d.qpos[q + 3 : q + 7] = block_quat
        d.qvel[v : v + 3] = block_vel
        d.qvel[v + 3 : v + 6] = rotation.reshape(3, 3).T @ block_angvel_world
        # Fingers.
        d.qpos[self._finger_qpos] = observation[FetchObs.GRIPPER_STATE]
        d.qvel[self._finger_dof] = observation[FetchObs.GRIPPER_VEL] / dt
        # Arm: inverse kinematics of the gripper site position, then velocities.
        target = observation[FetchObs.GRIP_POS]
        iterations, error = self._solve_ik(target)
        jac = self._jacp[:, self._arm_dof]
        velocity_error = grip_vel - self._jacp @ d.qvel
        d.qvel[self._arm_dof] += np.linalg.lstsq(jac, velocity_error, rcond=None)[0]
        mujoco.mj_forward(m, d)
        return SyncReport(gripper_error=error, ik_iterations=iterations)

    def _solve_ik(self, target: np.ndarray) -> tuple[int, float]:
        """Move the arm hinges so that the gripper site reaches ``target`` (3,), m.

        Leaves ``self._jacp`` holding the site Jacobian at the final posture.
        """
        m, d = self.model, self.data
        damping = self._ik_damping**2 * np.eye(3)
        iterations = 0
        while True:
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            mujoco.mj_jacSite(m, d, self._jacp, None, self._grip_site)
            error_vec = target - d.site_xpos[self._grip_site]
            error = float(np.linalg.norm(error_vec))
            if error <= self._ik_tolerance or iterations >= self._ik_iterations:
                return iterations, error
            jac = self._jacp[:, self._arm_dof]  # (3, 7)
            step = jac.T @ np.linalg.solve(jac @ jac.T + damping, error_vec)
            d.qpos[self._arm_qpos] += step
            iterations += 1

    def simulate_from(self, state: np.ndarray, action: np.ndarray) -> np.ndarray:
        """One control step of ``action`` (4,) from ``state``; returns the next state."""
        self.task.set_state(state)
        self.task.simulate(action)
        return self.task.get_state()

    def gripper_and_block(self) -> tuple[np.ndarray, np.ndarray]:
        """Current gripper site and block positions, shapes (3,), (3,), m (copies)."""
        observation = self.task.observe()['observation']
        return observation[FetchObs.GRIP_POS], observation[FetchObs.OBJECT_POS]


def _finger_addresses(model: mujoco.MjModel) -> tuple[np.ndarray, np.ndarray]:
    """qpos and dof addresses of the two finger joints, in observation order (right, left)."""
    names = ('robot0:r_gripper_finger_joint', 'robot0:l_gripper_finger_joint')
    joints = [model.joint(name) for name in names]
    return (
        np.array([int(j.qposadr[0]) for j in joints]),
        np.array([int(j.dofadr[0]) for j in joints]),
    )


def _arm_hinges(model: mujoco.MjModel, end_body: int) -> tuple[np.ndarray, np.ndarray]:
    """qpos and dof addresses of the hinge joints on the chain from the world to ``end_body``."""
    qpos, dofs = [], []
    body = end_body
    while body > 0:
        start, count = model.body_jntadr[body], model.body_jntnum[body]
        for joint in range(start, start + count):
            if model.jnt_type[joint] == mujoco.mjtJoint.mjJNT_HINGE:
                qpos.append(int(model.jnt_qposadr[joint]))
                dofs.append(int(model.jnt_dofadr[joint]))
        body = model.body_parentid[body]
    if not dofs:
        raise ValueError('no hinge joints between the world and the gripper link')
    order = np.argsort(dofs)
    return np.array(qpos)[order], np.array(dofs)[order]
