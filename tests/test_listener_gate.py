"""The stack's listeners (episode monitor, bag recorder) let a lockstep sim bridge start only
once they hear the action topics (or after startup_timeout_s, with one warning naming the
silent ones), so that they miss no command of the run.

The sim bridge starts when it has ``min_subscribers`` observation subscribers. A listener
that subscribed to observation at once could be counted before its command reader had
matched the residual node's writer, and a short run then finished unheard (seen in CI: a
two-episode `rpl demo` base run whose monitor counted no command at all). Both listeners
subscribe to observation last, after their other topics have a publisher and settle_s more.
Real nodes in their own processes over DDS.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import SideNode, ros_args, stop_process
from sensor_msgs.msg import JointState

from rpl_bags.reader import read_raw_bag
from rpl_interfaces import contract
from rpl_interfaces.codec import StampedVector, encode

pytestmark = pytest.mark.integration

NAMES = ('a0', 'a1', 'a2', 'a3')
# The topics each listener waits for before it subscribes to observation: the monitor's are
# fixed; the recorder waits for every recorded topic but the side ones, so it records just
# these here (RECORDED below).
WAITED = (contract.COMMAND, contract.BASE_ACTION)
RECORDED = (contract.OBSERVATION, *WAITED)


def _start(kind: str, namespace: str, tmp_path, *extra: str) -> tuple[subprocess.Popen, str]:
    """A listener process (shipped start-up settings unless ``extra`` sets them) and its
    output file."""
    if kind == 'monitor':
        out = str(tmp_path / 'episodes.json')
        module, params = 'rpl_bringup.episode_monitor_node', [f'output_path:={out}']
    else:
        out = str(tmp_path / 'bag')
        topics = 'topics:=' + ','.join(RECORDED)
        module, params = 'rpl_bags.bag_recorder_node', [f'bag:={out}', topics]
    cmd = [sys.executable, '-m', module, *ros_args(namespace, *params, *extra)]
    env = dict(os.environ, ROS_LOG_DIR=str(tmp_path / 'ros_log'))
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    return proc, out


def _commands_heard(kind: str, out: str, namespace: str) -> int:
    if kind == 'monitor':
        with open(out) as f:
            return json.load(f)['commands']['count']
    raw = read_raw_bag(out, topics=[f'{namespace}/{contract.COMMAND}'])
    return len(raw.messages)


@pytest.mark.parametrize('kind', ['monitor', 'recorder'])
def test_observation_is_subscribed_last_and_the_first_command_is_heard(kind, tmp_path):
    namespace = f'/gate_{kind}_{os.getpid()}'
    proc, out = _start(kind, namespace, tmp_path)
    side = SideNode(f'gate_side_{kind}', namespace)
    try:
        observation = side.topic_publisher(contract.OBSERVATION)
        # The listener is up once it subscribes to the action topics...
        up = side.spin_until(
            lambda: side.node.count_subscribers(f'{namespace}/{contract.COMMAND}') > 0, 30.0
        )
        assert up, 'the listener never subscribed to command'
        # ... and without their publishers it does not subscribe to observation.
        side.spin_until(lambda: observation.get_subscription_count() > 0, 2.0)
        assert observation.get_subscription_count() == 0
        publishers = {name: side.topic_publisher(name) for name in WAITED}
        assert side.spin_until(lambda: observation.get_subscription_count() > 0, 20.0)
        # What a lockstep bridge does as soon as it counts the listener: the run starts.
        vec = StampedVector(0, 0, np.zeros(len(NAMES)), time.time_ns(), 'residual')
        publishers[contract.COMMAND].publish(encode(JointState(), vec, NAMES))
        side.spin_until(lambda: False, 1.5)  # delivered and, by the monitor, saved
        assert stop_process(proc, signal.SIGINT, timeout_s=10) == 0
        output = proc.stdout.read()
    finally:
        stop_process(proc, signal.SIGKILL)
        side.close()
    assert _commands_heard(kind, out, namespace) == 1, output


@pytest.mark.parametrize(
    ('kind', 'instead'), [('monitor', 'counting from now on'), ('recorder', 'recording anyway')]
)
def test_without_publishers_it_subscribes_after_the_timeout_and_says_which(
    kind, instead, tmp_path
):
    # Nothing publishes the action topics: after startup_timeout_s the listener gives up
    # waiting, names the silent topics in one warning and lets the bridge start.
    namespace = f'/gate_timeout_{kind}_{os.getpid()}'
    proc, _ = _start(kind, namespace, tmp_path, 'startup_timeout_s:=1.0', 'settle_s:=0.0')
    side = SideNode(f'gate_timeout_side_{kind}', namespace)
    try:
        observation = side.topic_publisher(contract.OBSERVATION)
        assert side.spin_until(lambda: observation.get_subscription_count() > 0, 30.0)
        code = stop_process(proc, signal.SIGINT, timeout_s=10)
        output = proc.stdout.read()
    finally:
        stop_process(proc, signal.SIGKILL)
        side.close()
    # A recorder that recorded nothing on any control topic says so and exits 3 (the
    # recording asked for did not happen); the monitor's counts are its result either way.
    assert code == (3 if kind == 'recorder' else 0), output
    silent = sorted(f'{namespace}/{name}' for name in WAITED)
    warnings = [line for line in output.splitlines() if 'no publisher on' in line]
    assert len(warnings) == 1, output
    assert all(topic in warnings[0] for topic in silent), warnings[0]
    assert warnings[0].endswith(f'after startup_timeout_s=1.0; {instead}'), warnings[0]
