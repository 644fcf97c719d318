"""Conversion between stamped named vectors (numpy) and ``JointState`` messages.

Pure Python: works on any object with the ``JointState`` fields, so it is testable without a
ROS graph. Decoding validates everything a malformed sender could get wrong and raises
:class:`MessageError` with one clear sentence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from rpl_interfaces.contract import META_FIELDS


class MessageError(ValueError):
    """A received message does not follow the topic contract."""


class StampedVector(NamedTuple):
    """One control-path message in numpy form.

    Attributes:
        episode: Episode id (counts from 0 per sim bridge run).
        step: Step index inside the episode (0-based).
        values: Payload, shape (dim,), float64.
        stamp_ns: Sender's wall-clock stamp in nanoseconds.
        tag: ``header.frame_id`` (sender's tag).
    """

    episode: int
    step: int
    values: np.ndarray
    stamp_ns: int
    tag: str


FLOAT32_MAX = float(np.finfo(np.float32).max)


def finite_as_float32(*arrays: np.ndarray) -> bool:
    """Whether every value is finite and stays finite as float32, the precision models and
    replay buffers hold: a value such as 1e40 (a unit bug, garbage memory) is finite in a
    message's float64 but becomes inf there, like a NaN it is not a usable value."""
    return all(bool((np.abs(np.asarray(a, np.float64)) <= FLOAT32_MAX).all()) for a in arrays)


def encode(msg: Any, vec: StampedVector, field_names: Sequence[str]) -> Any:
    """Fill a ``JointState``-like message from a stamped vector.

    Args:
        msg: A fresh ``sensor_msgs.msg.JointState`` (or compatible object).
        vec: What to send; ``vec.values`` has shape (len(field_names),).
        field_names: Payload names, e.g. :data:`rpl_interfaces.contract.ACTION_FIELDS`.

    Returns:
        ``msg``, filled.
    """
    values = np.asarray(vec.values, dtype=np.float64).reshape(-1)
    if values.shape[0] != len(field_names):
        raise MessageError(
            f'payload has {values.shape[0]} values but {len(field_names)} field names'
        )
    msg.header.stamp.sec = int(vec.stamp_ns // 1_000_000_000)
    msg.header.stamp.nanosec = int(vec.stamp_ns % 1_000_000_000)
    msg.header.frame_id = vec.tag
    msg.name = [*META_FIELDS, *field_names]
    msg.position = [float(vec.episode), float(vec.step), *values.tolist()]
    return msg


def decode(msg: Any, field_names: Sequence[str] | None = None) -> StampedVector:
    """Read a stamped vector from a ``JointState``-like message, validating it.

    Args:
        msg: Received message.
        field_names: Expected payload names; ``None`` accepts any payload whose length
            matches its names.

    Returns:
        The decoded vector. Non-finite payload values are *not* rejected here (the caller
        decides how to fall back); non-finite or negative episode/step are.

    Raises:
        MessageError: Missing meta fields, names/values of different length, unexpected
            payload names, or an invalid episode/step.
    """
    names = list(msg.name)
    position = np.asarray(msg.position, dtype=np.float64)
    if len(names) != position.shape[0]:
        raise MessageError(f'message has {len(names)} names but {position.shape[0]} values')
    if tuple(names[: len(META_FIELDS)]) != META_FIELDS:
        raise MessageError(f'message must start with fields {list(META_FIELDS)}, got {names[:2]}')
    payload_names = names[len(META_FIELDS) :]
    if field_names is not None and tuple(payload_names) != tuple(field_names):
        raise MessageError(
            f'expected {len(field_names)} fields {list(field_names)[:4]}..., '
            f'got {len(payload_names)} fields {payload_names[:4]}...'
        )
    episode, step = float(position[0]), float(position[1])
    for label, value in (('episode', episode), ('step', step)):
        if not math.isfinite(value) or value < 0 or value != int(value):
            raise MessageError(f'{label} must be a non-negative integer, got {value!r}')
    stamp_ns = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
    return StampedVector(
        episode=int(episode),
        step=int(step),
        values=position[len(META_FIELDS) :].copy(),
        stamp_ns=stamp_ns,
        tag=str(msg.header.frame_id),
    )
