"""Named slices of the Fetch observation vector, so that no code indexes it by number.

The layout is that of Gymnasium-Robotics ``Fetch*-v4`` (25-D). Positions are in the
world frame (m); velocities are multiplied by the control period ``dt`` (0.04 s), so they
are displacements per control step (m or rad per step), exactly as the Fetch envs report them.

Example::

    obs = obs_dict['observation']            # (batch, 25) or (25,)
    gripper_pos = obs[..., FetchObs.GRIP_POS]  # (batch, 3), m, world frame
"""

from __future__ import annotations


class FetchObs:
    """Slices of the 25-D Fetch observation (``observation`` entry of the obs dict).

    Attributes:
        GRIP_POS: Gripper site ``robot0:grip`` position (3,), m, world frame.
        OBJECT_POS: Block site ``object0`` position (3,), m, world frame.
        OBJECT_REL_POS: ``OBJECT_POS - GRIP_POS`` (3,), m.
        GRIPPER_STATE: Finger joint positions (right, left) (2,), m (0 = closed).
        OBJECT_ROT: Block orientation as Euler angles (3,), rad (Gymnasium-Robotics
            ``mat2euler`` convention).
        OBJECT_VELP: Block linear velocity relative to the gripper, times dt (3,), m/step.
        OBJECT_VELR: Block angular velocity, times dt (3,), rad/step, world frame.
        GRIP_VELP: Gripper linear velocity, times dt (3,), m/step, world frame.
        GRIPPER_VEL: Finger joint velocities (right, left), times dt (2,), m/step.
        DIM: Length of the observation vector (25).
    """

    GRIP_POS = slice(0, 3)
    OBJECT_POS = slice(3, 6)
    OBJECT_REL_POS = slice(6, 9)
    GRIPPER_STATE = slice(9, 11)
    OBJECT_ROT = slice(11, 14)
    OBJECT_VELP = slice(14, 17)
    OBJECT_VELR = slice(17, 20)
    GRIP_VELP = slice(20, 23)
    GRIPPER_VEL = slice(23, 25)
    DIM = 25


FETCH_GOAL_FIELDS: tuple[str, ...] = ('x', 'y', 'z')
"""Names of the 3 Fetch goal coordinates (block position, m, world frame). Other code takes a
task's goal names from its spec (``TaskSpec.goal_fields``)."""

_XYZ = FETCH_GOAL_FIELDS
_FINGERS = ('right', 'left')  # joint order in the Fetch model: r_gripper before l_gripper
_ROT = ('roll', 'pitch', 'yaw')

FETCH_OBS_FIELDS: tuple[str, ...] = (
    *(f'grip_pos.{a}' for a in _XYZ),
    *(f'object_pos.{a}' for a in _XYZ),
    *(f'object_rel_pos.{a}' for a in _XYZ),
    *(f'gripper_state.{f}' for f in _FINGERS),
    *(f'object_rot.{a}' for a in _ROT),
    *(f'object_velp.{a}' for a in _XYZ),
    *(f'object_velr.{a}' for a in _XYZ),
    *(f'grip_velp.{a}' for a in _XYZ),
    *(f'gripper_vel.{f}' for f in _FINGERS),
)
"""Readable name of each of the 25 observation entries, in order (for logs, bags, plots)."""

assert len(FETCH_OBS_FIELDS) == FetchObs.DIM


class HookObs(FetchObs):
    """Slices of the 40-D hook observation: the 25 Fetch entries (:class:`FetchObs`, the
    object being the block) followed by 15 entries of the hook (a free body of two boxes).

    Attributes:
        HOOK_POS: Hook body position (3,), m, world frame.
        HOOK_ROT: Hook orientation as Euler angles (3,), rad (same convention as
            ``OBJECT_ROT``).
        HOOK_VELP: Hook linear velocity relative to the gripper, times dt (3,), m/step.
        HOOK_VELR: Hook angular velocity, times dt (3,), rad/step, world frame.
        HOOK_REL_POS: ``HOOK_POS - GRIP_POS`` (3,), m.
        DIM: Length of the observation vector (40).
    """

    HOOK_POS = slice(25, 28)
    HOOK_ROT = slice(28, 31)
    HOOK_VELP = slice(31, 34)
    HOOK_VELR = slice(34, 37)
    HOOK_REL_POS = slice(37, 40)
    DIM = 40


HOOK_OBS_FIELDS: tuple[str, ...] = (
    *FETCH_OBS_FIELDS,
    *(f'hook_pos.{a}' for a in _XYZ),
    *(f'hook_rot.{a}' for a in _ROT),
    *(f'hook_velp.{a}' for a in _XYZ),
    *(f'hook_velr.{a}' for a in _XYZ),
    *(f'hook_rel_pos.{a}' for a in _XYZ),
)
"""Readable name of each of the 40 hook observation entries, in order."""

assert len(HOOK_OBS_FIELDS) == HookObs.DIM
