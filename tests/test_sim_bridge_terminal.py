"""The terminal observation o_T over DDS: the real sim bridge node process and a test probe.

The probe plays the residual node (it publishes the commands; no controller runs) and
records every ``observation`` and ``episode`` message. Per episode of T steps the sim bridge
publishes observations 0 .. T - 1 (tag ``push``), then exactly one o_T with step T and tag
``push/terminal`` holding the state the episode ended in, then the result; nothing waits on
o_T, and an answer to it changes nothing.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from helpers import SideNode, ros_args, stop_process
from sensor_msgs.msg import JointState

from rpl_interfaces import contract
from rpl_interfaces.codec import StampedVector, decode, encode
from rpl_sim_bridge.bridge_config import LOCKSTEP, REALTIME
from rpl_sim_bridge.episode_book import observation_layout
from rpl_sim_bridge.tasks import task_spec

pytestmark = pytest.mark.integration

NS = f'/rpl_test_terminal_{os.getpid()}'
EPISODES = 3
SIM_BRIDGE = pathlib.Path(sys.executable).parent / 'sim_bridge_node'
TASK = 'push'
ACTION = np.array([0.3, -0.2, 0.0, 0.0])


class Probe(SideNode):
    """Records observations and results; answers observations with a command."""

    def __init__(self, answer_terminal: bool) -> None:
        super().__init__('terminal_probe', NS)
        self.answer_terminal = answer_terminal
        self.observations: list[StampedVector] = []
        self.results = self.collect(contract.EPISODE, contract.EPISODE_FIELDS)
        self.diagnostics = self.watch_diagnostics(f'{NS}/sim_bridge')
        self.commands = self.topic_publisher(contract.COMMAND)
        self.on_topic(contract.OBSERVATION, self._on_observation)

    def terminals(self) -> list[StampedVector]:
        """The terminal observations seen."""
        return [o for o in self.observations if contract.is_terminal(o.tag)]

    def _on_observation(self, msg: JointState) -> None:
        vec = decode(msg)
        self.observations.append(vec)
        if contract.is_terminal(vec.tag) and not self.answer_terminal:
            return
        answer = StampedVector(vec.episode, vec.step, ACTION, 0, 'probe')
        self.commands.publish(encode(JointState(), answer, contract.ACTION_FIELDS))


@pytest.mark.parametrize(
    'mode, answer_terminal',
    [(LOCKSTEP, False), (LOCKSTEP, True), (REALTIME, True)],
    ids=['lockstep', 'lockstep-answered', 'realtime-answered'],
)
def test_every_episode_ends_with_one_terminal_observation_before_its_result(mode, answer_terminal):
    probe = Probe(answer_terminal)
    proc = subprocess.Popen(
        [
            str(SIM_BRIDGE),
            *ros_args(
                NS,
                f'task:={TASK}',
                f'episodes:={EPISODES}',
                'seed:=4',
                f'mode:={mode}',
                'rate_hz:=100.0',
                'min_subscribers:=1',
                'startup_timeout_s:=20.0',
                'result_linger_s:=0.2',
            ),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        probe.spin_until(lambda: proc.poll() is not None, 60.0)
        # Everything was acknowledged before the node exited; take what is still queued.
        probe.spin_until(
            lambda: len(probe.results) == EPISODES and len(probe.terminals()) == EPISODES, 3.0
        )
    finally:
        stop_process(proc)
        output = proc.stdout.read()
        probe.close()
    assert proc.returncode == 0, output
    assert len(probe.results) == EPISODES, output
    layout = observation_layout(task_spec(TASK))
    for result_msg in probe.results:
        episode = result_msg.episode
        result = contract.EpisodeResult.from_vector(episode, result_msg.values)
        steps = result.steps
        assert steps == task_spec(TASK).max_episode_steps == result_msg.step
        if mode == LOCKSTEP:
            assert (result.fallback_base, result.fallback_zero) == (0, 0), output
        seen = [o for o in probe.observations if o.episode == episode]
        ends = [o for o in seen if contract.is_terminal(o.tag)]
        assert len(ends) == 1, [(o.step, o.tag) for o in ends]
        end = ends[0]
        assert end.step == steps and end.tag == contract.terminal_tag(TASK)
        running = [o for o in seen if not contract.is_terminal(o.tag)]
        assert {o.tag for o in running} == {TASK}
        assert sorted({o.step for o in running}) == list(range(steps))
        # The state the episode ended in: its block-goal distance is the result's, and the
        # goal is the episode's.
        achieved, desired = end.values[layout.achieved_goal], end.values[layout.desired_goal]
        assert np.linalg.norm(achieved - desired) == pytest.approx(result.final_distance, abs=1e-9)
        np.testing.assert_array_equal(desired, running[0].values[layout.desired_goal])
        last_running = max(running, key=lambda o: o.stamp_ns)
        assert not np.array_equal(end.values, last_running.values)  # one step later
        # Order on the wire: the last running observation, o_T, then the result.
        assert last_running.stamp_ns < end.stamp_ns < result_msg.stamp_ns
    diag = probe.diagnostics
    assert int(diag['episodes_done']) == EPISODES, diag
    assert int(diag['response_timeouts']) == 0 and int(diag['resends']) == 0, diag
    if mode == LOCKSTEP:
        # (Realtime: an answer that misses its tick window is stale, o_T or not.)
        assert int(diag['rejected_stale']) == 0, diag
        assert int(diag['commands']) == EPISODES * steps, diag
    answered = int(diag['terminal_answers'])
    if answer_terminal:  # the answer to the last o_T may come after the final diagnostics
        assert EPISODES - 1 <= answered <= EPISODES, diag
    else:
        assert answered == 0, diag
