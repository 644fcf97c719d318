"""The test side of a real residual node process talked to over DDS (loopback): how to start
the node (:func:`start_node`) and a :class:`Driver` node that sends it observation and
base-action pairs and records its commands, residuals and diagnostics. Shared by
test_residual_node.py and test_residual_reload.py."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from helpers import SideNode, ros_args
from onnx_builders import OBS_DIM
from sensor_msgs.msg import JointState

from rpl_interfaces import contract
from rpl_interfaces.base_node import qos_profile
from rpl_interfaces.codec import StampedVector, decode, encode

NAMESPACE = '/residual_node_test'
OBS_FIELDS = contract.observation_fields([f'obs_{i}' for i in range(OBS_DIM)], 'xyz')
NODE_EXE = pathlib.Path(sys.executable).parent / 'residual_node'
OBS = np.r_[np.linspace(-0.5, 0.5, OBS_DIM), [1.2, 0.7, 0.42], [1.3, 0.8, 0.42]]
BASE = np.array([0.4, -0.3, 0.9, -0.8])


def start_node(tmp_path: pathlib.Path, *params: str) -> tuple[subprocess.Popen, pathlib.Path]:
    """The node with ``params`` (``name:=value``). Its input-age guard is off unless a test
    sets it (``max_input_age_s:=...``): the tests check what is
    decided, and on a loaded machine a callback may start more than the default 0.1 s after
    its message came (a step then falls back on purpose: test_node_late_and_lost_inputs)."""
    log = tmp_path / 'node.log'
    with open(log, 'wb') as out:
        proc = subprocess.Popen(
            [str(NODE_EXE), *ros_args(NAMESPACE, *_input_age_off(params), *params)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, log


def _input_age_off(params: tuple[str, ...]) -> list[str]:
    given = any(param.startswith('max_input_age_s:=') for param in params)
    return [] if given else ['max_input_age_s:=0.0']


class Driver(SideNode):
    """Test-side rclpy node in its own context: publishes inputs, records outputs."""

    def __init__(self) -> None:
        super().__init__('residual_test_driver', NAMESPACE)
        qos = qos_profile(contract.CONTROL_QOS)
        self.obs_pub = self.node.create_publisher(JointState, contract.OBSERVATION, qos)
        self.base_pub = self.node.create_publisher(JointState, contract.BASE_ACTION, qos)
        self.obs_tag = self.base_tag = 'test'  # frame_ids: task and controller names
        self.commands: list[StampedVector] = []
        self.residuals: list[StampedVector] = []
        self.diagnostics: list = []
        self.names: dict[str, list[tuple[str, ...]]] = {'command': [], 'residual': []}
        self.node.create_subscription(
            JointState, contract.COMMAND, lambda m: self._record(m, self.commands, 'command'), qos
        )
        self.node.create_subscription(
            JointState,
            contract.RESIDUAL,
            lambda m: self._record(m, self.residuals, 'residual'),
            qos,
        )
        self.node.create_subscription(
            DiagnosticArray,
            contract.DIAGNOSTICS,
            lambda m: self.diagnostics.extend(m.status),
            qos_profile(contract.DIAGNOSTICS_QOS),
        )

    def _record(self, msg: JointState, into: list, topic: str) -> None:
        into.append(decode(msg))
        self.names[topic].append(tuple(msg.name))

    def connected(self) -> bool:
        node = self.node
        return (
            self.obs_pub.get_subscription_count() > 0
            and self.base_pub.get_subscription_count() > 0
            and node.count_publishers(f'{NAMESPACE}/{contract.COMMAND}') > 0
            and node.count_publishers(f'{NAMESPACE}/{contract.RESIDUAL}') > 0
        )

    def send(self, pub, step: int, values, names, episode: int = 1) -> None:
        tag = self.obs_tag if pub is self.obs_pub else self.base_tag
        msg = encode(JointState(), StampedVector(episode, step, np.asarray(values), 0, tag), names)
        pub.publish(msg)

    def send_pair(self, step: int) -> None:
        """Observation ``step`` (OBS), then its base action (BASE), as on the real stack."""
        self.send(self.obs_pub, step, OBS, OBS_FIELDS)
        self.send(self.base_pub, step, BASE, contract.ACTION_FIELDS)

    def meet(self, log: pathlib.Path) -> None:
        """Wait for the node under test on the graph, then :meth:`handshake` with it."""
        assert self.spin_until(self.connected, 20.0), log.read_text()
        assert self.handshake(), log.read_text()

    def handshake(self, timeout_s: float = 20.0) -> bool:
        """Send valid pairs (episode 0) until the node answers one, then forget the answers.

        The tests then run in episode 1, so the node sees them as a newer episode.

        Seeing the node's subscriptions does not mean the node's readers have matched our
        writers yet (DDS discovery runs on both sides), so a first message can still be lost.
        """
        deadline = time.monotonic() + timeout_s
        step = 0
        while time.monotonic() < deadline:
            self.send(self.base_pub, step, BASE, contract.ACTION_FIELDS, episode=0)
            self.send(self.obs_pub, step, OBS, OBS_FIELDS, episode=0)
            if self.spin_until(lambda: self.commands, 0.25):
                self.spin_until(lambda: False, 0.3)  # let answers in flight arrive
                self.commands.clear()
                self.residuals.clear()
                self.names = {'command': [], 'residual': []}
                self.diagnostics.clear()
                return True
            step += 1
        return False
