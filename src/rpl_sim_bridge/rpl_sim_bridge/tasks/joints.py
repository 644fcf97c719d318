"""The robot's joint state read from a MuJoCo model: names, positions, velocities, efforts.

Pure read of ``model``/``data`` (nothing is computed or written in MuJoCo), for the sim
bridge's standard ``joint_states`` topic (:data:`rpl_interfaces.contract.JOINT_STATES`).
It covers every hinge and slide joint of the model, in model order, under its MJCF name
(Fetch: ``robot0:slide0`` .. ``robot0:l_gripper_finger_joint``, 15 joints); free and ball
joints (the objects, the hook) have no single position and are left out.

Units: hinge joints rad, rad/s, N m; slide joints m, m/s, N. The effort is the
actuator force on the joint's degree of freedom (``data.qfrc_actuator``, computed by
MuJoCo during the last step from the controls applied then): the Fetch arm is moved by
a mocap weld, not by actuators, so its joints and the base slides report 0; the finger
joints report the force of their position actuators on the tasks that have them
(pick_and_place and the hook tasks; 0 on push and slippery_push, whose fingers have none).
"""

from __future__ import annotations

from typing import NamedTuple

import mujoco
import numpy as np

_ONE_DOF_JOINTS = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))


class JointSample(NamedTuple):
    """The joint state at one instant.

    Attributes:
        names: Joint names (n,), as in the MJCF (an unnamed joint: ``joint<id>``).
        position: (n,) float64, rad (hinge) or m (slide), a copy.
        velocity: (n,) float64, rad/s or m/s, a copy.
        effort: (n,) float64, actuator force on the joint, N m or N, a copy.
    """

    names: tuple[str, ...]
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray


class JointIndex:
    """Where a model's hinge and slide joints are in ``qpos`` and in the dof arrays.

    Built once per model; :meth:`read` is then three gathers (a few microseconds).

    Attributes:
        model: The model the index was built for.
        names: Joint names (n,), model order.
        qpos_adr: (n,) int, index of each joint's position in ``data.qpos``.
        dof_adr: (n,) int, index of each joint's dof in ``data.qvel`` / ``qfrc_actuator``.
    """

    def __init__(self, model: mujoco.MjModel) -> None:
        ids = [j for j in range(model.njnt) if int(model.jnt_type[j]) in _ONE_DOF_JOINTS]
        self.model = model
        self.names = tuple(
            mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) or f'joint{j}' for j in ids
        )
        self.qpos_adr = np.asarray(model.jnt_qposadr[ids], dtype=np.intp)
        self.dof_adr = np.asarray(model.jnt_dofadr[ids], dtype=np.intp)

    def read(self, data: mujoco.MjData) -> JointSample:
        """The joint state in ``data`` (fresh arrays; ``data`` is not changed)."""
        return JointSample(
            self.names,
            data.qpos[self.qpos_adr],
            data.qvel[self.dof_adr],
            data.qfrc_actuator[self.dof_adr],
        )
