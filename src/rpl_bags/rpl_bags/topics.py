"""What the RPL stack records: topics, their message types and QoS, and the type store.

Every control topic is a ``sensor_msgs/msg/JointState`` of the topic contract
(:mod:`rpl_interfaces.contract`); ``/diagnostics`` is a ``diagnostic_msgs/msg/DiagnosticArray``;
``joint_states`` is the robot's standard ``sensor_msgs/msg/JointState`` (real joint names, no
contract meta fields).
Pure Python + numpy + rosbags: no rclpy, no torch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

import numpy as np

from rpl_interfaces import contract
from rpl_interfaces.codec import StampedVector

JOINT_STATE: Final = 'sensor_msgs/msg/JointState'
DIAGNOSTIC_ARRAY: Final = 'diagnostic_msgs/msg/DiagnosticArray'

# Everything on the control path, in the order of the runtime picture.
CONTROL_TOPICS: Final = (
    contract.OBSERVATION,
    contract.BASE_ACTION,
    contract.RESIDUAL,
    contract.COMMAND,
    contract.EPISODE,
)
# Recorded when published, never waited for: the health reports and the robot's standard
# joint state (off with the sim bridge's publish_joint_states:=false; a real robot's driver
# publishes its own), so a played bag shows the robot in stock ROS tools.
SIDE_TOPICS: Final = (contract.DIAGNOSTICS, contract.JOINT_STATES)
RECORDED_TOPICS: Final = (*CONTROL_TOPICS, *SIDE_TOPICS)
# Payload names of the action-like topics (the observation's come from the bag itself).
ACTION_TOPICS: Final = (contract.BASE_ACTION, contract.RESIDUAL, contract.COMMAND)


class BagError(ValueError):
    """A bag cannot be written or read; the message names the path and the problem."""


class TopicSpec(NamedTuple):
    """One recorded topic.

    Attributes:
        name: Absolute topic name, e.g. ``/rpl/observation``.
        msgtype: ROS 2 message type, e.g. ``sensor_msgs/msg/JointState``.
        qos: The QoS a subscriber of the stack asks for (the recorder subscribes so).
        offered: The QoS the stack publishes it with, where that differs (the control
            topics: transient local, a history of 500); stored as the offered QoS.
    """

    name: str
    msgtype: str
    qos: contract.QosSpec
    offered: contract.QosSpec | None = None

    @property
    def offered_qos(self) -> contract.QosSpec:
        """What the bag states as the topic's offered QoS, played back with it."""
        return self.qos if self.offered is None else self.offered


def resolve_topic(namespace: str, name: str) -> str:
    """Absolute name of a contract topic in ``namespace`` (absolute names stay as they are)."""
    if name.startswith('/'):
        return name
    return f'{namespace.rstrip("/")}/{name}'


def parse_topic_list(text: str) -> tuple[str, ...]:
    """Split a comma-separated topic list, checking every name is a recordable topic.

    Raises:
        BagError: An empty list, an unknown name or one named twice.
    """
    names = tuple(t.strip() for t in text.split(',') if t.strip())
    unknown = [n for n in names if n not in RECORDED_TOPICS]
    if unknown or not names:
        raise BagError(
            f'topics must be a comma-separated list of {list(RECORDED_TOPICS)}, got {text!r}'
        )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BagError(f'topics lists {", ".join(twice)} twice ({text!r}): give each topic once')
    return names


def recorded_topics(namespace: str, names: Sequence[str] = RECORDED_TOPICS) -> list[TopicSpec]:
    """The topics to record for one stack namespace, with their types, the QoS the recorder
    subscribes with and the QoS the stack publishes them with (stored as the offered QoS,
    so a played bag offers what the stack did: its control topics transient local with
    their history, which a late joiner receives)."""
    return [
        TopicSpec(
            name=resolve_topic(namespace, name),
            msgtype=DIAGNOSTIC_ARRAY if name == contract.DIAGNOSTICS else JOINT_STATE,
            qos=contract.TOPIC_QOS[name],
            offered=contract.publisher_qos(name) if name in CONTROL_TOPICS else None,
        )
        for name in names
    ]


@functools.cache
def typestore() -> Any:
    """The rosbags type store of ROS 2 Kilted (type hashes equal rclpy's; a test checks)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def encode_vector(vec: StampedVector, field_names: Sequence[str]) -> bytes:
    """CDR bytes of the ``JointState`` a node publishes for ``vec`` (for tests and tools).

    Args:
        vec: The stamped vector; ``vec.values`` has shape (len(field_names),).
        field_names: Payload names.
    """
    store = typestore()
    joint_state = store.types[JOINT_STATE]
    header = store.types['std_msgs/msg/Header']
    stamp = store.types['builtin_interfaces/msg/Time']
    values = np.asarray(vec.values, dtype=np.float64).reshape(-1)
    msg = joint_state(
        header=header(
            stamp=stamp(sec=int(vec.stamp_ns // 10**9), nanosec=int(vec.stamp_ns % 10**9)),
            frame_id=vec.tag,
        ),
        name=[*contract.META_FIELDS, *field_names],
        position=np.concatenate([[float(vec.episode), float(vec.step)], values]),
        velocity=np.zeros(0),
        effort=np.zeros(0),
    )
    return bytes(store.serialize_cdr(msg, JOINT_STATE))
