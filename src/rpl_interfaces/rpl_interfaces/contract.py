"""The topic contract of the RPL stack: names, roles, QoS and field names.

Every control-path topic is a ``sensor_msgs/msg/JointState`` used as a *stamped, named
vector*:

* ``header.stamp``: wall-clock time the sender produced the message.
* ``header.frame_id``: the sender's tag (task name on ``observation``, controller name on
  ``base_action``, ``residual`` or ``base`` on ``command``, model file on ``residual``).
* ``name[i]`` / ``position[i]``: one named value each. The first two entries are always
  ``episode`` (episode id) and ``step`` (step index inside the episode, 0-based); the rest
  are the payload (see :data:`ACTION_FIELDS` and the task's observation field names).
* ``velocity`` and ``effort`` stay empty.

Standard message types only, so ``ros2 topic echo``, ``ros2 bag`` and the ``rosbags``
library read every topic without custom type registration. This module is pure Python: no
rclpy. QoS is described here as plain data and turned into rclpy profiles in
:mod:`rpl_interfaces.base_node`.
"""

from __future__ import annotations

import dataclasses
from typing import Final

DEFAULT_NAMESPACE: Final = '/rpl'

# Topic names, relative to the stack's namespace.
OBSERVATION: Final = 'observation'
BASE_ACTION: Final = 'base_action'
COMMAND: Final = 'command'
RESIDUAL: Final = 'residual'
EPISODE: Final = 'episode'
DIAGNOSTICS: Final = '/diagnostics'  # absolute, as every ROS 2 diagnostics tool expects

# Leading meta fields of every stamped vector.
META_FIELDS: Final = ('episode', 'step')

# Fetch action: gripper displacement (x, y, z) * 0.05 m per step, and finger command.
ACTION_FIELDS: Final = ('dx', 'dy', 'dz', 'gripper')

# Per-episode result published by the sim bridge on EPISODE (meta 'step' = steps run).
EPISODE_FIELDS: Final = (
    'success',
    'final_distance',
    'return',
    'steps',
    'fallback_base',
    'fallback_zero',
)


@dataclasses.dataclass(frozen=True)
class QosSpec:
    """Plain-data QoS description of one topic role.

    Attributes:
        depth: History depth (KEEP_LAST).
        reliable: RELIABLE if True, else BEST_EFFORT.
        transient_local: TRANSIENT_LOCAL durability (late joiners get the history).
    """

    depth: int
    reliable: bool = True
    transient_local: bool = False


# Control path: reliable (lockstep must not lose a step), shallow history (only fresh
# messages matter). Episode results: reliable and latched so late joiners see them.
CONTROL_QOS: Final = QosSpec(depth=10, reliable=True, transient_local=False)
EPISODE_QOS: Final = QosSpec(depth=100, reliable=True, transient_local=True)
DIAGNOSTICS_QOS: Final = QosSpec(depth=10, reliable=True, transient_local=False)

TOPIC_QOS: Final = {
    OBSERVATION: CONTROL_QOS,
    BASE_ACTION: CONTROL_QOS,
    COMMAND: CONTROL_QOS,
    RESIDUAL: CONTROL_QOS,
    EPISODE: EPISODE_QOS,
    DIAGNOSTICS: DIAGNOSTICS_QOS,
}
