"""Parameters of the sim bridge, its two clock modes and the start-up gate.

Pure Python: :class:`SimBridgeConfig` is declared as ROS parameters by the node (defaults
mirrored in ``config/sim_bridge.yaml``), and :func:`startup_decision` says when the first
observation may go out. The rules each parameter tunes are described in
:mod:`rpl_sim_bridge.bridge`.
"""

from __future__ import annotations

import dataclasses

from rpl_interfaces.params import describe

# The ranges of ``seed`` and ``episodes``; every tool that starts episodes (launch files,
# ``rpl eval``, ``rpl demo``, ``rpl select``) takes its bounds from here.
MAX_SEED = 2**31 - 1
MAX_EPISODES = 10**9

LOCKSTEP = 'lockstep'
REALTIME = 'realtime'


@dataclasses.dataclass(frozen=True)
class SimBridgeConfig:
    """Parameters of the sim bridge (defaults mirrored in ``config/sim_bridge.yaml``)."""

    task: str = dataclasses.field(
        default='push', metadata=describe('Registered task name (rpl_sim_bridge.tasks).')
    )
    seed: int = dataclasses.field(
        default=0,
        metadata=describe('Episode i is reset with seed + i.', range=(0, MAX_SEED)),
    )
    episodes: int = dataclasses.field(
        default=0,
        metadata=describe(
            'Episodes to run, then publish the last terminal observation and result and exit 0 '
            '(3 if no step applied a command although a command publisher was there) '
            '(0 = forever).',
            range=(0, MAX_EPISODES),
        ),
    )
    mode: str = dataclasses.field(
        default=LOCKSTEP,
        metadata=describe(
            'lockstep: step when the command of the step arrives (deterministic); '
            'realtime: step at rate_hz with zero-order hold of the latest command.',
            choices=(LOCKSTEP, REALTIME),
        ),
    )
    rate_hz: float = dataclasses.field(
        default=25.0, metadata=describe('realtime: control rate, Hz.', range=(0.1, 1000.0))
    )
    lockstep_max_rate_hz: float = dataclasses.field(
        default=0.0,
        metadata=describe(
            'lockstep: at most this many steps per second (the next observation waits); '
            '0 = as fast as the nodes answer. Leaves CPU to a trainer on the same machine.',
            range=(0.0, 10000.0),
        ),
    )
    response_timeout_s: float = dataclasses.field(
        default=10.0,
        metadata=describe(
            'lockstep: while the residual node (command publisher) is on the graph and '
            'answering, wait at most this long after observation k for command k (and '
            'while the controller is, for base action k), then fall back and treat that '
            'node as silent until it answers again. A safety bound, not a pace: machine '
            'load must not change an episode, s.',
            range=(0.001, 600.0),
        ),
    )
    resend_period_s: float = dataclasses.field(
        default=1.0,
        metadata=describe(
            'lockstep, after the first step: while waiting for a live node past this, '
            're-publish the observation this often (same values; the nodes answer a repeat '
            'with the same action), so that a message lost by a stopped or restarted reader '
            'costs no fallback, s.',
            range=(0.001, 600.0),
        ),
    )
    command_timeout_s: float = dataclasses.field(
        default=0.05,
        metadata=describe(
            'lockstep, while the residual node is silent (missed response_timeout_s or '
            'the start-up handshake and has not answered since): after the base action of '
            'step k arrives, wait this long for the command of step k, then apply the '
            'base action, s.',
            range=(0.0, 60.0),
        ),
    )
    step_timeout_s: float = dataclasses.field(
        default=1.0,
        metadata=describe(
            'lockstep, while the controller is silent or off the graph: after publishing '
            'observation k, wait at most this long for any action, then apply the zero '
            'action, s.',
            range=(0.001, 600.0),
        ),
    )
    max_command_age_steps: int = dataclasses.field(
        default=1,
        metadata=describe(
            'realtime: a command or base action for step k - n .. k is fresh at step k.',
            range=(0, 1000),
        ),
    )
    startup_timeout_s: float = dataclasses.field(
        default=10.0,
        metadata=describe(
            'Wait at most this long for min_subscribers observation subscribers and a '
            'command publisher before the first observation; lockstep: then at most this '
            'long again for the first command (handshake), s.',
            range=(0.0, 3600.0),
        ),
    )
    handshake_period_s: float = dataclasses.field(
        default=0.2,
        metadata=describe(
            'lockstep, before the first step, while a command publisher exists: re-publish '
            'observation (episode 0, step 0) this often until its command arrives (no '
            'fallback meanwhile; at most startup_timeout_s), s.',
            range=(0.001, 60.0),
        ),
    )
    min_subscribers: int = dataclasses.field(
        default=2,
        metadata=describe(
            'Observation subscribers to wait for before the first step.',
            range=(0, 1000),
        ),
    )
    result_linger_s: float = dataclasses.field(
        default=0.5,
        metadata=describe(
            'After the last episode, keep the node alive this long so results are delivered, s.',
            range=(0.0, 60.0),
        ),
    )
    expect_model: bool = dataclasses.field(
        default=False,
        metadata=describe(
            'The residual node was given a model (the launch files set it from model_path): '
            'a finished run in which none, or less than half, of the applied commands came '
            'from the residual model (the node passed the base action through, e.g. a model '
            'that failed to load) exits non-zero.'
        ),
    )
    publish_joint_states: bool = dataclasses.field(
        default=True,
        metadata=describe(
            'Publish the joints of the robot (hinge and slide joints of the task model, '
            'MJCF names) as a standard sensor_msgs/JointState on joint_states once per '
            'simulation step, stamped like the observation of that step (for '
            'robot_state_publisher, rviz).'
        ),
    )


def startup_decision(
    subscribers: int, command_publishers: int, elapsed_s: float, config: SimBridgeConfig
) -> str | None:
    """Whether the bridge may publish its first observation yet (both clock modes).

    Args:
        subscribers: Matched subscribers of the observation topic.
        command_publishers: Matched publishers of the command topic.
        elapsed_s: Time since the node started waiting, s.
        config: Bridge parameters.

    Returns:
        None to keep waiting, 'ready' when the graph is complete, or 'timeout' when the
        wait is over without it (start anyway and say so).
    """
    if subscribers >= config.min_subscribers and command_publishers > 0:
        return 'ready'
    if elapsed_s >= config.startup_timeout_s:
        return 'timeout'
    return None
