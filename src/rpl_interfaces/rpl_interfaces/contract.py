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

The ``observation`` payload is the task's observation fields, then the achieved goal, then
the desired goal (:func:`observation_fields` builds the names, :func:`split_observation_fields`
finds the parts again from any message's names). A fixed-goal task (goal fields: none) sends
the observation fields only: both goal blocks are empty.

Besides the contract, the sim bridge publishes the robot's joints as a plain, standard
``sensor_msgs/msg/JointState`` on :data:`JOINT_STATES` (no meta fields: ``name`` = the
MJCF joint names, ``position``/``velocity``/``effort`` filled), once per simulation step,
stamped like that step's observation, so ``robot_state_publisher``, rviz and
``ros2 topic echo`` can show the robot. No node of the stack reads it.

Standard message types only, so ``ros2 topic echo``, ``ros2 bag`` and the ``rosbags``
library read every topic without custom type registration. This module is pure Python
(+ numpy): no rclpy. QoS is described here as plain data and turned into rclpy profiles in
:mod:`rpl_interfaces.base_node`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Final, NamedTuple

import numpy as np

DEFAULT_NAMESPACE: Final = '/rpl'

# Topic names, relative to the stack's namespace.
OBSERVATION: Final = 'observation'
BASE_ACTION: Final = 'base_action'
COMMAND: Final = 'command'
RESIDUAL: Final = 'residual'
EPISODE: Final = 'episode'
DIAGNOSTICS: Final = '/diagnostics'  # absolute, as every ROS 2 diagnostics tool expects
JOINT_STATES: Final = 'joint_states'  # the standard name robot_state_publisher subscribes to

# header.frame_id of a command: the residual node's source of it (the model's composition,
# or the base action passed through: no model, a fallback).
COMMAND_FROM_RESIDUAL: Final = 'residual'
COMMAND_FROM_BASE: Final = 'base'

# Leading meta fields of every stamped vector.
META_FIELDS: Final = ('episode', 'step')

# Name prefixes of the goal parts of the observation payload (``desired_goal.x``, ...).
ACHIEVED_GOAL_PREFIX: Final = 'achieved_goal.'
DESIRED_GOAL_PREFIX: Final = 'desired_goal.'

# The Fetch tasks' declared action fields (gripper displacement (x, y, z) * 0.05 m per step,
# and finger command); nodes take a task's from its spec (``TaskSpec.action_fields``) or from
# the base action's names, never from here.
ACTION_FIELDS: Final = ('dx', 'dy', 'dz', 'gripper')

# The terminal observation o_T. After an episode's last step (step T - 1) the sim bridge
# publishes the observation the episode ended in on ``observation``, with step = T and
# ``header.frame_id`` = :func:`terminal_tag` of its usual tag, then the episode result. No
# action is expected for it: controllers and the residual node do not answer it (an answer
# would be ignored, the bridge waits on no step T). Learners store it as the next
# observation of step T - 1, so an episode of T steps gives T transitions on every path.
TERMINAL_SUFFIX: Final = '/terminal'


def terminal_tag(tag: str) -> str:
    """``header.frame_id`` of a terminal observation whose sender's tag is ``tag``."""
    return tag + TERMINAL_SUFFIX


def is_terminal(tag: str) -> bool:
    """Whether an observation's ``header.frame_id`` marks the terminal observation o_T."""
    return tag.endswith(TERMINAL_SUFFIX)


def task_of_tag(tag: str) -> str:
    """The task an observation's ``header.frame_id`` names, a terminal observation's too
    ('' for an untagged one, ``'/terminal'`` included)."""
    return tag.removesuffix(TERMINAL_SUFFIX)


# Per-episode result published by the sim bridge on EPISODE (meta 'step' = steps run).
EPISODE_FIELDS: Final = (
    'success',
    'final_distance',
    'return',
    'steps',
    'fallback_base',
    'fallback_zero',
)


class EpisodeResult(NamedTuple):
    """One finished episode, named: the ``episode`` topic's meta ``episode`` and payload.

    Attributes:
        episode: Episode id (0-based; reset seed = seed + id).
        success: Block within the success threshold of the goal after the last step.
        final_distance: Block-goal distance after the last step, m.
        episode_return: Sum of rewards (payload field ``return``).
        steps: Steps run.
        fallback_base: Steps that applied the base action (no usable command).
        fallback_zero: Steps that applied the zero action (no usable action at all).
    """

    episode: int
    success: bool
    final_distance: float
    episode_return: float
    steps: int
    fallback_base: int
    fallback_zero: int

    def as_vector(self) -> np.ndarray:
        """Payload in :data:`EPISODE_FIELDS` order, (len(EPISODE_FIELDS),) float64."""
        named = {
            'success': float(self.success),
            'final_distance': self.final_distance,
            'return': self.episode_return,
            'steps': float(self.steps),
            'fallback_base': float(self.fallback_base),
            'fallback_zero': float(self.fallback_zero),
        }
        return np.array([named[field] for field in EPISODE_FIELDS], dtype=np.float64)

    @classmethod
    def from_vector(cls, episode: int, values: np.ndarray) -> EpisodeResult:
        """Read an ``episode`` message payload, (len(EPISODE_FIELDS),) in that order.

        Raises:
            ValueError: The payload has the wrong length.
        """
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.shape[0] != len(EPISODE_FIELDS):
            raise ValueError(
                f'episode payload needs {len(EPISODE_FIELDS)} values {list(EPISODE_FIELDS)}, '
                f'got {values.shape[0]}'
            )
        named = dict(zip(EPISODE_FIELDS, values.tolist(), strict=True))
        return cls(
            episode=int(episode),
            success=named['success'] >= 0.5,
            final_distance=named['final_distance'],
            episode_return=named['return'],
            steps=int(named['steps']),
            fallback_base=int(named['fallback_base']),
            fallback_zero=int(named['fallback_zero']),
        )


class ObservationLayout(NamedTuple):
    """Where the parts of an ``observation`` payload are.

    Attributes:
        fields: Payload names, in order (without the ``episode``/``step`` meta fields).
        observation: Slice of the task observation, (obs_dim,).
        achieved_goal: Slice of the ``achieved_goal.*`` fields, (goal_dim,) or empty.
        desired_goal: Slice of the ``desired_goal.*`` fields, (goal_dim,); empty (goal_dim
            0) for a fixed-goal task.
    """

    fields: tuple[str, ...]
    observation: slice
    achieved_goal: slice
    desired_goal: slice

    @property
    def obs_dim(self) -> int:
        """Number of observation fields."""
        return self.observation.stop - self.observation.start

    @property
    def goal_dim(self) -> int:
        """Number of desired-goal fields (0 for a fixed-goal task)."""
        return self.desired_goal.stop - self.desired_goal.start

    @property
    def observation_fields(self) -> tuple[str, ...]:
        """The task's observation field names."""
        return self.fields[self.observation]

    @property
    def goal_fields(self) -> tuple[str, ...]:
        """Goal coordinate names (``desired_goal.<g>`` without the prefix); () for none."""
        return tuple(n[len(DESIRED_GOAL_PREFIX) :] for n in self.fields[self.desired_goal])


def observation_fields(obs_fields: Sequence[str], goal_fields: Sequence[str]) -> tuple[str, ...]:
    """Payload names of the ``observation`` topic for one task.

    Args:
        obs_fields: The task's observation field names, e.g. ``('grip_pos.x', ...)``.
        goal_fields: Names of the goal coordinates, e.g. ``('x', 'y', 'z')``; empty for a
            fixed-goal task.

    Returns:
        ``obs_fields``, then ``achieved_goal.<g>`` and ``desired_goal.<g>`` for every goal
        coordinate ``g``.
    """
    return (
        *obs_fields,
        *(ACHIEVED_GOAL_PREFIX + g for g in goal_fields),
        *(DESIRED_GOAL_PREFIX + g for g in goal_fields),
    )


def split_observation_fields(names: Sequence[str]) -> ObservationLayout:
    """Find the observation / achieved-goal / desired-goal slices of an observation payload.

    The inverse of :func:`observation_fields`, for any task; the achieved-goal block may be
    missing, and both goal blocks are empty for a fixed-goal task (observation fields only).

    Args:
        names: Payload field names (without the leading ``episode``/``step``).

    Returns:
        The names and the three contiguous slices.

    Raises:
        ValueError: The names are not in that order, there are no observation fields, there
            are achieved-goal fields but no desired-goal fields, or the two goal blocks name
            different coordinates.
    """
    names = tuple(names)
    kinds = [
        2 if n.startswith(DESIRED_GOAL_PREFIX) else 1 if n.startswith(ACHIEVED_GOAL_PREFIX) else 0
        for n in names
    ]
    if kinds != sorted(kinds):
        raise ValueError(
            'observation fields must be the observation, then achieved_goal.*, then '
            f'desired_goal.*; got {list(names)}'
        )
    n_obs, n_achieved = kinds.count(0), kinds.count(1)
    n_desired = kinds.count(2)
    if n_obs == 0 or n_achieved not in (0, n_desired):
        raise ValueError(
            'expected observation fields, optionally achieved_goal.* fields, and as many '
            f'desired_goal.* fields (none for a fixed-goal task); got {n_obs}, {n_achieved} '
            f'and {n_desired}'
        )
    achieved = [n[len(ACHIEVED_GOAL_PREFIX) :] for n in names[n_obs : n_obs + n_achieved]]
    desired = [n[len(DESIRED_GOAL_PREFIX) :] for n in names[n_obs + n_achieved :]]
    if achieved and achieved != desired:
        raise ValueError(
            f'observation goal blocks differ: achieved_goal.{achieved} vs desired_goal.{desired}'
        )
    return ObservationLayout(
        fields=names,
        observation=slice(0, n_obs),
        achieved_goal=slice(n_obs, n_obs + n_achieved),
        desired_goal=slice(n_obs + n_achieved, len(names)),
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
# Joint states, for viewers only (nothing in the loop waits on them): reliable, keep last
# 10, volatile (the ROS 2 default profile, as joint_state_publisher and ros2_control's
# joint_state_broadcaster use). A reliable writer is matched by both kinds of reader:
# best-effort ones (robot_state_publisher subscribes with the sensor-data profile) and
# reliable ones (ros2 topic echo, rviz); a best-effort writer would not be matched by the
# latter. With KEEP_LAST 10 a slow reader loses old samples, the publisher never waits.
JOINT_STATES_QOS: Final = QosSpec(depth=10, reliable=True, transient_local=False)
# Writer-side history of the control-path publishers. With KEEP_LAST a reliable writer
# drops a sample that every reader has not acknowledged once `depth` newer ones are
# written, so a reader that stalls (a trainer node or bag recorder on a loaded machine)
# loses messages. Measured: with depth 10, a trainer next to two stacks capped at 80
# steps/s each on 2 cores got ~30 % of the episodes incomplete (no late messages: the
# messages never arrived). The in-loop subscribers keep depth 10.
CONTROL_PUBLISHER_DEPTH: Final = 500
# The control publishers also offer that history to transient-local subscribers (the
# trainer node): one matched after the publisher started (DDS discovery takes up to a few
# seconds) still receives the first messages, so the first episodes are not lost.
# Volatile subscribers (every node in the loop) receive only new messages, as before.
CONTROL_PUBLISHER_TRANSIENT_LOCAL: Final = True

TOPIC_QOS: Final = {
    OBSERVATION: CONTROL_QOS,
    BASE_ACTION: CONTROL_QOS,
    COMMAND: CONTROL_QOS,
    RESIDUAL: CONTROL_QOS,
    EPISODE: EPISODE_QOS,
    DIAGNOSTICS: DIAGNOSTICS_QOS,
    JOINT_STATES: JOINT_STATES_QOS,
}


def publisher_qos(name: str) -> QosSpec:
    """The QoS a stack node publishes the control topic ``name`` with (``TOPIC_QOS`` is what
    the loop's subscribers ask for): a volatile topic keeps a history of at least
    :data:`CONTROL_PUBLISHER_DEPTH` and offers it transient local; a latched one keeps
    its depth (what a late joiner receives)."""
    spec = TOPIC_QOS[name]
    if spec.transient_local:
        return spec
    return dataclasses.replace(
        spec,
        depth=max(spec.depth, CONTROL_PUBLISHER_DEPTH),
        transient_local=CONTROL_PUBLISHER_TRANSIENT_LOCAL,
    )
