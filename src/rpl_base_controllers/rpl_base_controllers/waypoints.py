"""Proportional moves to waypoints: the building block of the reactive base controllers.

All functions work on batches: positions have shape ``(B, 3)`` in m in the world frame,
actions shape ``(B, 4)`` (gripper displacement x, y, z in units of 0.05 m per step and the
finger command). A "tolerance" is a bound on a SQUARED distance (m^2), as in the original
controllers: the default 1e-3 m^2 means about 3.2 cm.
"""

from __future__ import annotations

import numpy as np

OPEN_FINGERS = 1.0
CLOSE_FINGERS = -1.0
HOLD_FINGERS = 0.0


def move_towards(
    gripper_pos: np.ndarray,
    target_pos: np.ndarray,
    gain: float | np.ndarray,
    finger_command: float | np.ndarray = HOLD_FINGERS,
) -> np.ndarray:
    """Proportional move of the gripper towards a waypoint, clipped to the action box.

    Args:
        gripper_pos: Gripper positions, shape (B, 3), m.
        target_pos: Waypoints, shape (B, 3), m.
        gain: Proportional gain (action units per m), scalar or shape (B,).
        finger_command: Finger command in [-1, 1], scalar or shape (B,).

    Returns:
        Actions ``clip([gain * (target - gripper), finger_command], -1, 1)``, shape (B, 4).
    """
    gain = np.asarray(gain, dtype=np.float64).reshape(-1, 1)
    xyz = gain * (target_pos - gripper_pos)
    fingers = np.broadcast_to(np.asarray(finger_command, dtype=np.float64), (xyz.shape[0],))
    return np.clip(np.concatenate([xyz, fingers[:, None]], axis=1), -1.0, 1.0)


def finger_only(finger_command: float, batch: int) -> np.ndarray:
    """Actions that keep the gripper still and only command the fingers, shape (batch, 4)."""
    actions = np.zeros((batch, 4))
    actions[:, 3] = finger_command
    return actions


def squared_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance over the last axis: ``(B, D), (B, D) -> (B,)``, m^2."""
    return np.sum(np.square(a - b), axis=-1)


def squared_xy_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared horizontal (x, y) distance: ``(B, 3), (B, 3) -> (B,)``, m^2."""
    return squared_distance(a[:, :2], b[:, :2])


def unit_xy(vectors: np.ndarray) -> np.ndarray:
    """Horizontal unit vectors of ``(B, 3)`` vectors, shape (B, 2); zero where xy is zero."""
    xy = vectors[:, :2]
    norm = np.linalg.norm(xy, axis=1, keepdims=True)
    return np.divide(xy, norm, out=np.zeros_like(xy), where=norm > 0.0)


def heading(vectors: np.ndarray) -> np.ndarray:
    """Heading angle of the xy part of ``(B, 3)`` vectors, rad in (-pi, pi], shape (B,)."""
    return np.arctan2(vectors[:, 1], vectors[:, 0])


def angle_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Absolute difference of two angle arrays wrapped to [0, pi], rad, shape (B,)."""
    return np.abs(np.mod(a - b + np.pi, 2.0 * np.pi) - np.pi)
