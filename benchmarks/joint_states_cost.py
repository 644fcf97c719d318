"""Per-step cost of the sim bridge's ``joint_states`` topic, measured on the node's own code.

A real :class:`rpl_sim_bridge.sim_bridge_node.SimBridgeNode` (not spun: its methods are
called directly) times, per simulation step:

* ``read``: ``task.joint_state()`` (what :class:`rpl_sim_bridge.episode_book.EpisodeBook`
  adds after every reset and step);
* ``joints``: building and publishing the ``sensor_msgs/JointState`` (``_publish_joints``);
* ``observation``: publishing the observation (``_publish_stamped``), for scale;

each with no reader of the topics, and with one reader of both in another process
(reliable, like ``ros2 topic echo``; the joint reader is matched before timing starts).
The joint samples are the task's own: one episode of random actions is stepped, and the
samples of its steps are published in turn. Prints a table of median and mean microseconds.

Run: ``nice -n 10 .venv/bin/python benchmarks/joint_states_cost.py [--task push]
[--calls 3000]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import rclpy

from rpl_interfaces import contract
from rpl_interfaces.base_node import now_ns
from rpl_sim_bridge.sim_bridge_node import SimBridgeNode

READER = textwrap.dedent(
    """
    import sys, rclpy
    from rclpy.executors import ExternalShutdownException
    from sensor_msgs.msg import JointState
    from rpl_interfaces import contract
    from rpl_interfaces.base_node import qos_profile
    rclpy.init()
    node = rclpy.create_node('joint_cost_reader', namespace=sys.argv[1])
    count = [0]
    for topic in (contract.JOINT_STATES, contract.OBSERVATION):
        node.create_subscription(
            JointState, topic, lambda m: count.__setitem__(0, count[0] + 1),
            qos_profile(contract.TOPIC_QOS[topic]))
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    """
)


def _time_calls(call, calls: int) -> np.ndarray:
    """Microseconds of each of ``calls`` calls of ``call(i)``."""
    out = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter_ns()
        call(i)
        out[i] = (time.perf_counter_ns() - t0) / 1e3
    return out


def measure(node: SimBridgeNode, calls: int) -> dict[str, np.ndarray]:
    """Time the read, the joint_states publish and the observation publish."""
    core, task = node.core, node.core.task
    rng = np.random.default_rng(0)
    core.begin(time.monotonic())
    observation, tag = core.observation(), task.spec.name  # its cost does not vary
    samples = []
    for _ in range(task.spec.max_episode_steps):
        samples.append(task.joint_state())
        task.step(rng.uniform(task.spec.action_low, task.spec.action_high, task.spec.action_dim))
    n = len(samples)
    obs_pub = node._obs_pub
    return {
        'read': _time_calls(lambda i: task.joint_state(), calls),
        'joints': _time_calls(lambda i: node._publish_joints(samples[i % n], now_ns()), calls),
        'observation': _time_calls(
            lambda i: node._publish_stamped(obs_pub, 0, i % n, observation, tag),
            calls,
        ),
    }


def main() -> int:
    """Run the measurement and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--task', default='push')
    parser.add_argument('--calls', type=int, default=3000)
    args = parser.parse_args()
    namespace = f'/joint_cost_{os.getpid()}'
    rclpy.init(args=['--ros-args', '-r', f'__ns:={namespace}', '-p', f'task:={args.task}'])
    node = SimBridgeNode()
    rows = [('no reader', measure(node, args.calls))]
    reader = subprocess.Popen([sys.executable, '-c', READER, namespace])
    try:
        deadline = time.monotonic() + 30.0
        while node._joint_pub.get_subscription_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # let the observation reader match too
        if node._joint_pub.get_subscription_count() < 1:
            raise SystemExit('the reader process never matched')
        rows.append(('1 reliable reader', measure(node, args.calls)))
    finally:
        reader.terminate()
        reader.wait(5.0)
        node.destroy_node()
        rclpy.try_shutdown()
    print(f'task {args.task}, {args.calls} calls each, microseconds (median / mean)')
    print(f'{"readers":<20}{"read":>16}{"joint_states":>16}{"observation":>16}')
    for label, times in rows:
        cells = ''.join(
            f'{np.median(times[k]):>8.1f} /{np.mean(times[k]):>6.1f}'
            for k in ('read', 'joints', 'observation')
        )
        print(f'{label:<20}{cells}')
    print(f'topic {contract.JOINT_STATES}: {len(node.core.joint_state().names)} joints')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
