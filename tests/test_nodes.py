"""Node-level tests: the real sim bridge and controller nodes as processes, over real topics.

No residual node runs: the test's probe plays the command publisher (silent, vanishing or
late), so the sim applies the base action or, after the start-up handshake, the probe's
commands. Each test uses its own ROS namespace; DDS stays on loopback (see conftest.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from helpers import SideNode, ros_args, stop_process
from rclpy.duration import Duration
from rclpy.publisher import Publisher
from sensor_msgs.msg import JointState

from rpl_base_controllers.controller_node import ControllerNodeConfig
from rpl_interfaces import contract
from rpl_interfaces.base_node import qos_profile
from rpl_interfaces.codec import StampedVector, decode, encode
from rpl_sim_bridge.bridge import observation_layout
from rpl_sim_bridge.tasks import task_spec

BIN = pathlib.Path(sys.executable).parent
NS = f'/rpl_test_nodes_{os.getpid()}'
EPISODE_STEPS = 50  # push
COMMAND_TIMEOUT_S = 0.05


class Probe(SideNode):
    """A test-side node: watches observations and episode results, can publish commands."""

    def __init__(self) -> None:
        super().__init__('probe', NS)
        self.results: list[StampedVector] = self.collect(contract.EPISODE, contract.EPISODE_FIELDS)
        self.observations: list[StampedVector] = []
        self.base_actions: list[StampedVector] = self.collect(
            contract.BASE_ACTION, contract.ACTION_FIELDS
        )
        self.diagnostics: dict[str, dict[str, str]] = {}  # node name -> latest key/values
        self.on_topic(contract.OBSERVATION, self._on_observation)
        self.node.create_subscription(
            DiagnosticArray,
            contract.DIAGNOSTICS,
            self._on_diagnostics,
            qos_profile(contract.DIAGNOSTICS_QOS),
        )

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(NS + '/'):
                self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}

    def _on_observation(self, msg: JointState) -> None:
        vec = decode(msg)
        if vec.tag == 'push' and vec.values.shape == (31,):  # not the probe's own bad one
            self.observations.append(vec)

    def clear(self) -> None:
        """Forget what earlier tests saw."""
        self.results.clear()
        self.observations.clear()
        self.base_actions.clear()

    def step_zero_copies(self) -> list[StampedVector]:
        """The observations of (episode 0, step 0) seen: the first and each re-send."""
        return [o for o in self.observations if (o.episode, o.step) == (0, 0)]


@pytest.fixture(scope='module')
def probe():
    probe = Probe()
    yield probe
    probe.close()


def start_node(
    repo_root: pathlib.Path, executable: str, config_file: str, *params: str
) -> subprocess.Popen:
    """Start a node in NS with ``config/<config_file>`` and ``name:=value`` overrides (output
    piped, text)."""
    args = ros_args(NS, *params, params_file=repo_root / 'config' / config_file)
    return subprocess.Popen(
        [str(BIN / executable), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.fixture(scope='module')
def controller(probe, repo_root):
    """One controller node for the module, started before any sim bridge."""
    proc = start_node(repo_root, 'controller_node', 'base_controller.yaml')
    up = probe.spin_until(lambda: probe.node.count_publishers(contract.BASE_ACTION) > 0, 20.0)
    assert up, 'controller node did not advertise base_action'
    yield proc
    stop_process(proc)
    assert proc.returncode in (0, -15), proc.stdout.read()


def run_sim(probe, repo_root, *params: str) -> tuple[subprocess.Popen, str]:
    """Run one sim bridge episode of push to completion; returns (process, output)."""
    proc = start_node(
        repo_root,
        'sim_bridge_node',
        'sim_bridge.yaml',
        'task:=push',
        'episodes:=1',
        'seed:=3',
        *params,
    )
    try:
        probe.spin_until(lambda: proc.poll() is not None, 25.0)
        output = proc.communicate(timeout=5)[0]
    finally:
        stop_process(proc)
    return proc, output


def test_lockstep_episode_falls_back_to_base_when_command_source_is_silent(
    probe, controller, repo_root
):
    """A command publisher exists (a hung residual node) but never answers: the start-up
    handshake re-sends observation (0, 0) until startup_timeout_s, the controller answers
    every copy with the same action, then every step falls back to the base action."""
    probe.clear()
    silent = probe.topic_publisher(contract.COMMAND)
    # A malformed observation first: the controller must log it and keep serving.
    bad = JointState()
    bad.header.frame_id = 'push'
    bad.name, bad.position = ['episode', 'step', 'x'], [0.0, 0.0, float('nan')]
    observation = probe.topic_publisher(contract.OBSERVATION)
    # Publish only once the controller's (volatile) subscription has matched this new
    # publisher (2 readers: the probe's own and the controller's): under load, discovery can
    # take longer than the publish, and the message was then lost (seen once in a full run
    # at load ~7: 'rejected' 0).
    assert probe.spin_until(lambda: observation.get_subscription_count() >= 2, 10.0)
    observation.publish(bad)
    # Gone before the sim bridge starts: a second observation publisher in its namespace is
    # another stack to it (it refuses to start, exit 5).
    assert observation.wait_for_all_acked(Duration(seconds=10.0))
    probe.node.destroy_publisher(observation)

    poisoned = []

    def poison_first_step() -> None:
        # NaN command for the current step: must be rejected, never applied.
        if probe.observations and not poisoned:
            obs = probe.observations[0]
            vec = StampedVector(obs.episode, obs.step, np.array([np.nan, 0, 0, 0]), 0, 'x')
            silent.publish(encode(JointState(), vec, contract.ACTION_FIELDS))
            poisoned.append(obs.step)

    timer = probe.node.create_timer(0.005, poison_first_step)
    handshake_s = 3.0  # startup_timeout_s: graph wait, then at most as long for command 0
    proc, output = run_sim(
        probe, repo_root, 'min_subscribers:=2', f'startup_timeout_s:={handshake_s}'
    )
    probe.node.destroy_timer(timer)
    probe.node.destroy_publisher(silent)
    # The episode ran (on the base) but not one step applied a command although a command
    # publisher was there: the run did not measure what it was started for, exit code 3.
    assert proc.returncode == 3, output
    assert 'not one of the 50 steps applied a command although a command publisher' in output
    assert 'no command for (episode 0, step 0) within startup_timeout_s' in output
    assert controller.poll() is None, 'controller node died'
    assert len(probe.results) == 1, output
    result = dict(zip(contract.EPISODE_FIELDS, probe.results[0].values, strict=True))
    assert result['steps'] == EPISODE_STEPS == probe.results[0].step
    assert result['fallback_base'] == EPISODE_STEPS, output
    assert result['fallback_zero'] == 0
    assert 0.0 <= result['final_distance'] < 1.0 and result['success'] in (0.0, 1.0)
    # Observation (0, 0) was re-sent (same values) for the whole handshake, and answered.
    copies = probe.step_zero_copies()
    assert len(copies) >= 5, [o.stamp_ns for o in copies]
    assert all(np.array_equal(o.values, copies[0].values) for o in copies)
    handshake_span_s = (copies[-1].stamp_ns - copies[0].stamp_ns) / 1e9
    assert 0.5 * handshake_s < handshake_span_s <= handshake_s + 0.1, handshake_span_s
    answers = [a for a in probe.base_actions if (a.episode, a.step) == (0, 0)]
    assert len(answers) >= 2 and all(np.array_equal(a.values, answers[0].values) for a in answers)
    later = probe.observations[len(copies) :]
    assert [o.step for o in later] == list(range(1, EPISODE_STEPS))
    # After the handshake each step waits ~command_timeout_s after the base action (step 0
    # at once: its base action is long there), not the 1 s step limit.
    span_s = (probe.results[0].stamp_ns - copies[-1].stamp_ns) / 1e9
    assert (EPISODE_STEPS - 1) * COMMAND_TIMEOUT_S <= span_s < EPISODE_STEPS * 0.15, span_s
    assert 'rejected' in output and 'non-finite' in output
    sim_diag = probe.diagnostics[f'{NS}/sim_bridge']
    assert sim_diag['mode'] == 'lockstep' and int(sim_diag['fallback_base']) == EPISODE_STEPS
    assert int(sim_diag['rejected_malformed']) == 1  # the NaN command
    assert sim_diag['handshake'] == 'timed_out'
    assert int(sim_diag['handshake_resends']) == len(copies) - 1
    controller_name = f'{NS}/base_controller'

    def controller_reported() -> bool:
        diag = probe.diagnostics.get(controller_name, {})
        return int(diag.get('actions_total', 0)) >= EPISODE_STEPS

    assert probe.spin_until(controller_reported, 3.0)
    controller_diag = probe.diagnostics[controller_name]
    assert int(controller_diag['rejected']) >= 1  # the malformed observation
    assert int(controller_diag['repeated_observations']) >= len(answers) - 1
    assert float(controller_diag['compute_mean_us']) > 0.0


def test_lockstep_applies_base_at_once_when_the_command_publisher_goes_away(
    probe, controller, repo_root
):
    """The only command publisher vanishes at step 0 (a residual node that died): the
    start-up handshake ends and from then on the base action is applied as soon as it
    arrives, without the timeout."""
    probe.clear()
    commands = [probe.topic_publisher(contract.COMMAND)]

    def drop_publisher() -> None:
        if probe.observations and commands:
            probe.node.destroy_publisher(commands.pop())

    timer = probe.node.create_timer(0.005, drop_publisher)
    proc, output = run_sim(probe, repo_root, 'min_subscribers:=2', 'startup_timeout_s:=20.0')
    probe.node.destroy_timer(timer)
    # Degraded to the base, as it must; and since no step applied a command, the finished
    # run says so and exits 3 (it measured the base controller, not the residual).
    assert proc.returncode == 3, output
    assert 'not one of the 50 steps applied a command' in output
    assert probe.results, output
    result = dict(zip(contract.EPISODE_FIELDS, probe.results[0].values, strict=True))
    assert result['fallback_base'] == result['steps'] == EPISODE_STEPS, output
    span_s = (probe.results[0].stamp_ns - probe.observations[0].stamp_ns) / 1e9
    assert span_s < 0.6 * EPISODE_STEPS * COMMAND_TIMEOUT_S, span_s


def test_handshake_waits_for_a_late_command_path_then_every_step_uses_the_command(
    probe, controller, repo_root
):
    """The command path's first messages are lost (a link not matched yet, played by a
    probe that ignores the first copies of observation (0, 0)): the handshake re-sends it
    until the command comes, and no step falls back."""
    probe.clear()
    commands = probe.topic_publisher(contract.COMMAND)
    ignore = 3  # copies of observation (0, 0) left unanswered
    ignored = []

    def answer(msg: JointState) -> None:
        # Answers every copy after the ignored ones, as the residual node does.
        vec = decode(msg)
        if vec.tag != 'push':
            return
        if (vec.episode, vec.step) == (0, 0) and len(ignored) < ignore:
            ignored.append(vec.stamp_ns)
            return
        action = StampedVector(vec.episode, vec.step, np.array([0.1, 0.0, 0.0, 0.0]), 0, 'p')
        commands.publish(encode(JointState(), action, contract.ACTION_FIELDS))

    subscription = probe.node.create_subscription(
        JointState,
        contract.OBSERVATION,
        answer,
        qos_profile(contract.TOPIC_QOS[contract.OBSERVATION]),
    )
    proc, output = run_sim(
        probe,
        repo_root,
        'min_subscribers:=2',
        'startup_timeout_s:=20.0',
        'handshake_period_s:=0.1',
        'command_timeout_s:=1.0',  # the probe answers from the test process: no hurry
    )
    probe.node.destroy_subscription(subscription)
    probe.node.destroy_publisher(commands)
    assert proc.returncode == 0, output
    assert len(probe.results) == 1, output
    result = dict(zip(contract.EPISODE_FIELDS, probe.results[0].values, strict=True))
    assert (result['fallback_base'], result['fallback_zero']) == (0, 0), output
    assert len(ignored) == ignore
    # At least `ignore` re-sends (more if the probe's own links matched late).
    resends = re.search(r'first command arrived after (\d+) re-sent observation', output)
    assert resends is not None and int(resends[1]) >= ignore, output
    sim_diag = probe.diagnostics[f'{NS}/sim_bridge']
    assert sim_diag['handshake'] == 'done'
    assert int(sim_diag['handshake_resends']) == int(resends[1])
    assert int(sim_diag['commands']) == EPISODE_STEPS
    later = probe.observations[len(probe.step_zero_copies()) :]
    assert [o.step for o in later] == list(range(1, EPISODE_STEPS))


def test_unknown_controller_exits_2_with_the_known_names():
    proc = subprocess.run(
        [str(BIN / 'controller_node'), *ros_args(NS, 'controller:=no_such_controller')],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    output = proc.stdout + proc.stderr
    assert "unknown controller 'no_such_controller'" in output
    assert 'reactive_push' in output
    assert 'Traceback' not in output


@pytest.mark.parametrize('case', ['exists', 'unwritable', 'folder'])
def test_the_episode_monitor_refuses_an_output_it_would_write_over_or_cannot_write(tmp_path, case):
    """One line and exit 2 before it subscribes to anything; an existing file is kept (the
    monitor used to replace it with its own results; an unwritable path stopped it with
    tracebacks a second after start)."""
    keep = tmp_path / 'keep.json'
    keep.write_text('{"keep": 1}')
    path, message = {
        'exists': (keep, f"output_path '{keep}' exists (results are never written over"),
        'unwritable': ('/proc/rpl_monitor.json', "cannot write output_path '/proc/rpl_monitor"),
        'folder': (tmp_path, f"output_path '{tmp_path}' is a folder"),
    }[case]
    proc = subprocess.run(
        [sys.executable, '-m', 'rpl_bringup.episode_monitor_node']
        + ros_args(NS, f'output_path:={path}'),
        capture_output=True,
        text=True,
        timeout=30,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert output.count('\n') == 1 and output.startswith('[episode_monitor] error: '), output
    assert message in output
    assert keep.read_text() == '{"keep": 1}'


@contextlib.contextmanager
def zero_controller(probe: Probe, name: str) -> Iterator[Publisher]:
    """A controller node ``name`` (zero controller, tag 'zero') and an observation
    publisher of the probe's; the node must stop cleanly afterwards."""
    probe.clear()
    proc = subprocess.Popen(
        [str(BIN / 'controller_node'), *ros_args(NS, 'controller:=zero'), '-r', f'__node:={name}'],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    observations = probe.topic_publisher(contract.OBSERVATION)
    try:
        yield observations
    finally:
        probe.node.destroy_publisher(observations)
        stop_process(proc)
    assert proc.returncode in (0, -15), proc.stdout.read()


def until_answered(probe: Probe, send_start: Callable[[int], None]) -> None:
    """Until the zero controller answers: ``send_start(episode)`` for episodes 100, 101, ...
    (each a step 0, a start the node answers from any state)."""
    episode = 100
    while not any(a.tag == 'zero' for a in probe.base_actions):
        assert episode < 300, 'controller node never answered'
        send_start(episode)
        episode += 1


def test_controller_yaml_defaults_match_the_config_dataclass(repo_root):
    data = yaml.safe_load((repo_root / 'config' / 'base_controller.yaml').read_text())
    params = data['/**/base_controller']['ros__parameters']
    assert params == {f.name: f.default for f in dataclasses.fields(ControllerNodeConfig)}


def test_controller_node_other_step_ids_and_invalid_messages_never_reset_its_state(
    probe, repo_root
):
    """Issue 9: forged observations with other step ids reset the controller's state (and
    its answer cache). Here a forged step of another episode, a NaN copy of the current
    step and another task's observation come between an observation and its re-send: the
    re-send still gets the cached answer, and the next step follows on."""
    name = 'forged_check'
    with zero_controller(probe, name) as observations:
        fields = observation_layout(task_spec('push')).fields
        other_fields = observation_layout(task_spec('pick_and_place')).fields
        rng = np.random.default_rng(0)
        real = [rng.uniform(-1.0, 1.0, len(fields)) for _ in range(2)]

        def send(episode, step, values, task='push', names=fields):
            vec = StampedVector(episode, step, np.asarray(values, dtype=float), 0, task)
            observations.publish(encode(JointState(), vec, names))
            probe.spin_until(lambda: False, 0.05)

        # Starts of another task (each answered by that task's own controller).
        until_answered(
            probe,
            lambda episode: send(
                episode, 0, real[0][: len(other_fields)], 'pick_and_place', other_fields
            ),
        )
        send(0, 0, real[0])
        send(5, 3, real[1])  # forged: another episode, mid-way
        send(0, 0, np.full(len(fields), np.nan))  # forged: NaN copy of the current step
        send(0, 7, real[1], 'pick_and_place', other_fields)  # another task's observation
        send(0, 0, real[0])  # the real one again (a handshake re-send)
        send(0, 1, real[1])
        node = f'{NS}/{name}'

        def reported() -> bool:
            diag = probe.diagnostics.get(node, {})
            last = (diag.get('task'), diag.get('episode'), diag.get('step'))
            return last == ('push', '0', '1') and int(diag.get('rejected', 0)) >= 1

        assert probe.spin_until(reported, 5.0), probe.diagnostics.get(node)
        diag = probe.diagnostics[node]
        assert int(diag['repeated_observations']) == 1, diag  # before the fix: 0
        assert int(diag['out_of_sequence']) == 2, diag  # (5, 3) and pick_and_place (0, 7)
        answered = [
            (a.episode, a.step) for a in probe.base_actions if a.tag == 'zero' and a.episode < 100
        ]
        assert answered == [(0, 0), (5, 3), (0, 7), (0, 0), (0, 1)], answered


@pytest.mark.integration
def test_controller_node_does_not_answer_a_terminal_observation(probe, repo_root):
    """The terminal observation o_T (step T, frame_id 'push/terminal') gets no base action
    and is not a rejection (before: its frame_id was taken for an unknown task); the next
    episode's step 0 is answered."""
    name = 'terminal_check'
    with zero_controller(probe, name) as observations:
        fields = observation_layout(task_spec('push')).fields
        values = np.random.default_rng(1).uniform(-1.0, 1.0, len(fields))

        def send(episode, step, tag):
            vec = StampedVector(episode, step, values, 0, tag)
            observations.publish(encode(JointState(), vec, fields))
            probe.spin_until(lambda: False, 0.05)

        def answered(episode, step):  # by this node (the module's controller runs too)
            mine = [a for a in probe.base_actions if a.tag == 'zero']
            return [a for a in mine if (a.episode, a.step) == (episode, step)]

        until_answered(probe, lambda episode: send(episode, 0, 'push'))
        send(0, 49, 'push')  # the last step of an episode
        send(0, EPISODE_STEPS, contract.terminal_tag('push'))  # its o_T
        send(1, 0, 'push')  # the next episode's first step
        assert probe.spin_until(lambda: answered(1, 0), 5.0), 'step 0 after o_T not answered'
        node = f'{NS}/{name}'

        def reported() -> bool:
            diag = probe.diagnostics.get(node, {})
            return (diag.get('episode'), diag.get('step')) == ('1', '0')

        assert probe.spin_until(reported, 5.0), probe.diagnostics.get(node)
        diag = probe.diagnostics[node]
        assert answered(0, EPISODE_STEPS) == [] and len(answered(0, 49)) == 1
        assert diag['rejected'] == '0' and diag['terminal_observations'] == '1', diag


@pytest.mark.parametrize(('episodes', 'expected'), [('1000', 128 + 15), ('0', 128 + 15)])
def test_a_sim_bridge_stopped_before_its_episodes_are_done_does_not_exit_0(
    repo_root, episodes, expected
):
    """Required by the launch: exit 0 read as 'finished', so a run cut off by a signal
    after 44 of 1000 episodes ended the launch with 0. Forever (episodes 0) too: a SIGTERM
    from outside to an explorer's bridge ended a learning launch with 0."""
    args = ros_args(
        f'/itest_{os.getpid()}_simstop',
        'task:=push',
        f'episodes:={episodes}',
        params_file=repo_root / 'config' / 'sim_bridge.yaml',
    )
    proc = subprocess.Popen(
        [str(BIN / 'sim_bridge_node'), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        for line in proc.stdout:  # its signal handlers are in place once the node logs
            lines.append(line)
            if "task 'push'" in line:
                break
        time.sleep(0.5)  # into the spin loop (the start's last line is printed just before)
    finally:
        code = stop_process(proc, signal.SIGTERM, timeout_s=20.0)
    output = ''.join(lines) + proc.stdout.read()
    if episodes == '0':  # no line: stopping is how a forever run ends
        assert code == expected and 'not complete' not in output, output
        return
    # The signal lands while the node spins (the usual case) or, under load, just before
    # (after its last start-up line): either way 128 + SIGTERM, and one line saying so.
    said = (
        f'[sim_bridge] stopped by SIGTERM after 0 of {episodes} episodes: the run is not complete',
        f'[sim_bridge] interrupted by SIGTERM while starting: none of the {episodes} episodes '
        'run; exit code 143',
    )
    assert code == expected and any(line in output for line in said), (code, output)


def test_a_second_sim_bridge_in_a_namespace_refuses_to_start(repo_root):
    """Two stacks in one namespace (two `rpl demo`s at once, a launch started twice)
    answered and counted each other's episodes and both ended with 0."""
    namespace = f'/itest_{os.getpid()}_twice'

    def bridge(*params: str) -> list[str]:
        return [
            str(BIN / 'sim_bridge_node'),
            *ros_args(
                namespace,
                'task:=push',
                *params,
                params_file=repo_root / 'config' / 'sim_bridge.yaml',
            ),
        ]

    # The first runs alone (no stack: it starts after its start-up timeout, zero actions).
    first = subprocess.Popen(
        bridge('startup_timeout_s:=0.2'),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for line in first.stdout:
            if 'starting after startup_timeout_s' in line:
                break
        second = subprocess.run(
            bridge('startup_timeout_s:=30.0'), capture_output=True, text=True, timeout=60
        )
    finally:
        stop_process(first, signal.SIGINT, timeout_s=20.0)
    output = second.stdout + second.stderr
    assert second.returncode == 5, output
    assert (
        f'[sim_bridge] error: 1 other node(s) already publish {namespace}/observation: '
        f'another stack runs in namespace {namespace!r}'
    ) in output, output
    assert 'exit code 5' in output and 'Traceback' not in output, output


def test_a_stack_whose_steps_two_controllers_answer_stops_with_exit_5(repo_root):
    """A second stack joining a running one in its namespace: the intruder's sim bridge
    refused to start (exit 5), but its controller and residual node had already joined and
    answered the running stack's observations; that stack applied whichever came first and
    ended 0 (205 of 2000 commands foreign, 6 of 40 episodes changed). Two controllers that
    answer the same steps differently are now a second stack to the sim bridge: one line,
    exit 5."""
    namespace = f'/itest_{os.getpid()}_two_controllers'
    config = repo_root / 'config'

    def node(executable: str, config_file: str, *params: str) -> subprocess.Popen:
        args = ros_args(namespace, *params, params_file=config / config_file)
        return subprocess.Popen(
            [str(BIN / executable), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    # Two controllers that answer differently (two identical ones change no episode).
    controllers = [
        node('controller_node', 'base_controller.yaml', f'controller:={name}', 'task:=push')
        for name in ('zero', 'reactive_push')
    ]
    try:
        sim = node(
            'sim_bridge_node',
            'sim_bridge.yaml',
            'task:=push',
            'episodes:=20',
            'min_subscribers:=2',
            'startup_timeout_s:=2.0',  # no residual node: base actions only, after 2 s
        )
        output = sim.communicate(timeout=120)[0]
    finally:
        for proc in controllers:
            stop_process(proc)
    assert sim.returncode == 5, output
    assert '[sim_bridge] error: two nodes answered episode ' in output, output
    assert (
        f'on {namespace}/base_action: another stack runs in namespace {namespace!r}'
    ) in output, output
    assert 'exit code 5' in output and 'Traceback' not in output, output


def test_a_controller_bound_to_another_task_than_the_stream_says_so_once(probe):
    """A controller given another task's parameter file (push.yaml on a slippery_push
    stack) answered the stack's observations as its own task without a word."""
    probe.clear()
    name = 'other_task_check'
    proc = subprocess.Popen(
        [
            str(BIN / 'controller_node'),
            *ros_args(NS, 'controller:=zero', 'task:=push'),
            '-r',
            f'__node:={name}',
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    observations = probe.topic_publisher(contract.OBSERVATION)
    fields = observation_layout(task_spec('push')).fields  # slippery_push has the same ones
    values = np.zeros(len(fields))

    def send(episode: int) -> None:
        vec = StampedVector(episode, 0, values, 0, 'slippery_push')
        observations.publish(encode(JointState(), vec, fields))
        probe.spin_until(lambda: False, 0.05)

    try:
        until_answered(probe, send)
        for episode in range(400, 403):
            send(episode)
    finally:
        probe.node.destroy_publisher(observations)
        stop_process(proc)
    output = proc.stdout.read()
    line = (
        "the observations are of task 'slippery_push' (their frame_id) but this controller is "
        "bound to task 'push' (its task parameter)"
    )
    assert output.count(line) == 1, output


def test_a_controller_that_hears_nothing_says_where_it_listens(tmp_path):
    """A base controller started outside the stack's namespace stayed silent forever (the
    residual node and the episode monitor said so, the controller did not)."""
    namespace = f'/lonely_{os.getpid()}'
    log = tmp_path / 'controller.log'
    with open(log, 'wb') as out:
        args = ros_args(namespace, 'controller:=zero', 'silence_warning_s:=1.0')
        proc = subprocess.Popen(
            [str(BIN / 'controller_node'), *args], stdout=out, stderr=subprocess.STDOUT
        )
    line = (
        f'no observation in 1 s and no publisher of it: listening on {namespace}/observation; '
        'is the node in the namespace'
    )
    try:
        deadline = time.monotonic() + 20.0
        while line not in log.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.1)
    finally:
        stop_process(proc, timeout_s=10.0)
    assert log.read_text().count('no observation in') == 1
