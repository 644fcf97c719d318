"""Plug-ins: a user's own controller and task, installed from examples/, found everywhere.

The example package (examples/rpl_example_controller) is pip-installed into a temporary
folder that only this module's child processes see (``PYTHONPATH``); its controller and task
then run through `rpl list`, `rpl eval --workers 2` (spawned workers), `rpl train` (worker
processes) and the stack launch. Broken plug-ins (a missing module, an object of the wrong
type) are skipped with one line each. Controller parameters are set from the command line,
as launch arguments and as ROS parameters of the controller node.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from helpers import LAUNCH, Child, SideNode, plan_rpl_launch, read_json, ros_args, stop_process
from rclpy.parameter_client import AsyncParameterClient
from sensor_msgs.msg import JointState

from rpl_base_controllers.registry import make_controller
from rpl_interfaces import contract
from rpl_interfaces.base_node import qos_profile
from rpl_interfaces.codec import StampedVector, decode, encode
from rpl_interfaces.contract import EpisodeResult
from rpl_sim_bridge.bridge import observation_layout
from rpl_sim_bridge.layout import FetchObs
from rpl_sim_bridge.tasks import task_spec

RPL = [sys.executable, '-m', 'rpl_bringup.cli']
BIN = os.path.dirname(sys.executable)
EXAMPLE = 'proportional_push'


def _run(cmd: list[str], env: dict[str, str], timeout: float = 120.0, **kwargs):
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope='module')
def plugin_env(tmp_path_factory, repo_root):
    """Environment whose PYTHONPATH holds the example package, installed with pip."""
    root = tmp_path_factory.mktemp('plugin')
    source = root / 'src'
    shutil.copytree(repo_root / 'examples' / 'rpl_example_controller', source)  # no build/
    site = root / 'site'
    subprocess.run(
        [sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--no-build-isolation']
        + ['--target', str(site), str(source)],
        check=True,
        timeout=120,
    )
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(site), env.get('PYTHONPATH')]))
    return env


@pytest.fixture
def broken_env(tmp_path):
    """Environment with an installed distribution whose plug-ins are broken: a missing
    module, an object of the wrong type, a module that exits at import (sys.exit, or
    argparse run at import), a task named like a built-in one."""
    (tmp_path / 'exits_at_import.py').write_text('import sys\nsys.exit(3)\n')
    (tmp_path / 'parses_args_at_import.py').write_text(
        'import argparse\nparser = argparse.ArgumentParser(prog="mytool")\n'
        'parser.add_argument("--rate", type=float, required=True)\nparser.parse_args()\n'
    )
    dist = tmp_path / 'broken_plugins-0.1.dist-info'
    dist.mkdir()
    (dist / 'METADATA').write_text('Metadata-Version: 2.1\nName: broken-plugins\nVersion: 0.1\n')
    (dist / 'entry_points.txt').write_text(
        textwrap.dedent(
            """\
            [rpl.controllers]
            missing_module = no_such_module_here:SPEC
            wrong_type = json:dumps
            exits = exits_at_import:SPEC
            parses = parses_args_at_import:SPEC

            [rpl.tasks]
            push = json:loads
            """
        )
    )
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(tmp_path), env.get('PYTHONPATH')]))
    return env


FAULTY_PLUGINS = """
import os

import numpy as np
from rpl_base_controllers.registry import ControllerSpec


class Faulty:
    def __init__(self, name, fault):
        self.name, self.fault = name, fault

    def reset(self):
        if self.fault == 'reset':
            raise RuntimeError('user bug in my reset')

    def __call__(self, observation, desired_goal):
        self.calls = getattr(self, 'calls', 0) + 1
        if self.fault == 'late':  # fails at call FAULTY_FAIL_AT, when that is set
            if self.calls == int(os.environ.get('FAULTY_FAIL_AT', '0')):
                raise RuntimeError('user bug at a rare state')
            return np.zeros(4)
        if self.fault == 'raise':
            raise ZeroDivisionError('user bug in my planner')
        if self.fault == 'wide':  # a controller for a robot of five joints
            return np.zeros(5)
        if self.fault == 'reset':
            return np.zeros(4)
        return np.array([5.0, -5.0, 0.0, 0.0])  # metres for 5 cm steps: out of [-1, 1]

    def act_batch(self, observations, goals):
        return np.array([self(o, g) for o, g in zip(observations, goals)])


RAISING = ControllerSpec(lambda name, task, config: Faulty(name, 'raise'), 'raises', ('push',))
LOUD = ControllerSpec(lambda name, task, config: Faulty(name, 'loud'), 'too big', ('push',))
WIDE_ACTIONS = ControllerSpec(
    lambda name, task, config: Faulty(name, 'wide'), '5 values', ('push',)
)
RESETTING = ControllerSpec(lambda name, task, config: Faulty(name, 'reset'), 'reset', ('push',))
LATE = ControllerSpec(lambda name, task, config: Faulty(name, 'late'), 'fails late', ('push',))


def _unbuildable(name, task, config):
    raise RuntimeError('user bug in my constructor')


UNBUILDABLE = ControllerSpec(_unbuildable, 'cannot be built', ('push',))


import dataclasses
from rpl_sim_bridge.tasks.registry import TaskPlugin
from rpl_sim_bridge.tasks import task_spec


def _explode(**overrides):
    raise RuntimeError('user bug in my scene')


EXPLODING = TaskPlugin(dataclasses.replace(task_spec('push'), name='exploding'), _explode)


from rpl_interfaces.params import build_config
from rpl_sim_bridge.tasks.fetch import FETCH_TASKS, FetchTask, FetchTaskConfig


class WideObservation(FetchTask):
    def observe(self):
        obs = super().observe()
        return {**obs, 'observation': np.r_[obs['observation'], 0.0]}


def _push_named(name, kind=FetchTask, **settings):
    from gymnasium_robotics.envs.fetch.push import MujocoFetchPushEnv

    description, defaults = FETCH_TASKS['push']
    config = build_config(FetchTaskConfig, {**defaults, **settings})
    return kind(name, description, MujocoFetchPushEnv, config)


# Registered with 30-step episodes, built with push's 50.
LYING = TaskPlugin(
    dataclasses.replace(task_spec('push'), name='lying', max_episode_steps=30),
    lambda **overrides: _push_named('lying', **overrides),
)
# observe() gives 26 values for the 25 its spec declares.
WIDE = TaskPlugin(
    dataclasses.replace(task_spec('push'), name='wide'),
    lambda **overrides: _push_named('wide', WideObservation, **overrides),
)
"""


@pytest.fixture
def faulty_env(tmp_path):
    """Environment with two working plug-ins that misbehave when run: one raises, one
    gives actions outside the task's bounds."""
    (tmp_path / 'faulty_plugins.py').write_text(FAULTY_PLUGINS)
    dist = tmp_path / 'faulty_plugins-0.1.dist-info'
    dist.mkdir()
    (dist / 'METADATA').write_text('Metadata-Version: 2.1\nName: faulty-plugins\nVersion: 0.1\n')
    (dist / 'entry_points.txt').write_text(
        '[rpl.controllers]\n'
        'raising_push = faulty_plugins:RAISING\n'
        'loud_push = faulty_plugins:LOUD\n'
        'wide_push = faulty_plugins:WIDE_ACTIONS\n'
        'resetting_push = faulty_plugins:RESETTING\n'
        'late_push = faulty_plugins:LATE\n'
        'unbuildable_push = faulty_plugins:UNBUILDABLE\n'
        '[rpl.tasks]\n'
        'exploding = faulty_plugins:EXPLODING\n'
        'lying = faulty_plugins:LYING\n'
        'wide = faulty_plugins:WIDE\n'
    )
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(tmp_path), env.get('PYTHONPATH')]))
    return env


def test_a_plugin_that_raises_in_rpl_eval_is_one_line_naming_it(faulty_env, tmp_path):
    args = ['--task', 'push', '--controller', 'raising_push', '--episodes', '1', '--no-progress']
    proc = _run([*RPL, 'eval', *args, '--json', str(tmp_path / 'r.json')], faulty_env)
    assert proc.returncode == 1 and proc.stdout == '', proc.stderr
    assert proc.stderr.count('\n') == 1, proc.stderr  # was a 25-line traceback
    assert proc.stderr.startswith(
        "rpl eval: error: controller 'raising_push' raised ZeroDivisionError: user bug in my "
        'planner (at faulty_plugins.py:'
    ), proc.stderr
    assert not (tmp_path / 'r.json').exists()


def test_a_task_plugin_whose_factory_raises_is_one_line(faulty_env, tmp_path):
    args = ['--task', 'exploding', '--controller', 'zero', '--episodes', '1', '--no-progress']
    proc = _run([*RPL, 'eval', *args, '--json', str(tmp_path / 'r.json')], faulty_env)
    assert proc.returncode == 2 and proc.stdout == '', proc.stderr  # was a traceback
    assert proc.stderr.count('\n') == 1, proc.stderr
    assert proc.stderr.startswith(
        "rpl eval: error: task 'exploding' could not be built: RuntimeError: user bug in my "
        'scene (at faulty_plugins.py:'
    ), proc.stderr


@pytest.mark.parametrize(
    ('controller', 'code', 'message'),
    [
        (
            'unbuildable_push',
            2,
            "rpl eval: error: controller 'unbuildable_push' could not be built: RuntimeError: "
            'user bug in my constructor (at faulty_plugins.py:',
        ),
        (
            'resetting_push',
            1,
            "rpl eval: error: controller 'resetting_push' raised RuntimeError: user bug in my "
            'reset (at faulty_plugins.py:',
        ),
    ],
)
def test_a_plugin_that_raises_when_built_or_reset_is_one_line_too(
    faulty_env, tmp_path, controller, code, message
):
    """Only a failing step was one line: a raising factory (or one of the wrong signature)
    and a raising reset() were tracebacks."""
    args = ['--task', 'push', '--controller', controller, '--episodes', '1', '--no-progress']
    proc = _run([*RPL, 'eval', *args, '--json', str(tmp_path / 'r.json')], faulty_env)
    assert proc.returncode == code and proc.stdout == '', proc.stderr
    assert proc.stderr.count('\n') == 1 and proc.stderr.startswith(message), proc.stderr
    assert not (tmp_path / 'r.json').exists()


class BaseActionProbe:
    """A side node in ``namespace`` that publishes observations to a controller node and
    collects its ``base_action`` answers."""

    def __init__(self, namespace: str) -> None:
        self.side = SideNode('probe', namespace)
        self.answers: list[StampedVector] = []
        self.side.node.create_subscription(
            JointState,
            contract.BASE_ACTION,
            lambda msg: self.answers.append(decode(msg, contract.ACTION_FIELDS)),
            qos_profile(contract.TOPIC_QOS[contract.BASE_ACTION]),
        )
        self.publisher = self.side.node.create_publisher(
            JointState, contract.OBSERVATION, qos_profile(contract.TOPIC_QOS[contract.OBSERVATION])
        )

    def ask(self, task: str, values: np.ndarray) -> StampedVector:
        """Send observation ``values`` of ``task`` (steps 0, 1, ...) until one is answered."""
        fields = observation_layout(task_spec(task)).fields
        step = 0
        while not self.answers and step < 400:
            vec = StampedVector(0, step, values, 0, task)
            self.publisher.publish(encode(JointState(), vec, fields))
            self.side.spin_until(lambda: bool(self.answers), 0.05)
            step += 1
        assert self.answers, 'controller node never answered'
        return self.answers[0]


def _probed_controller_node(
    controller: str, env: dict[str, str]
) -> tuple[BaseActionProbe, subprocess.Popen]:
    """A controller node running ``controller`` in a namespace of its own, and a probe
    there that sends it observations and collects its base actions."""
    namespace = f'/rpl_test_{controller}_{os.getpid()}'
    probe = BaseActionProbe(namespace)
    proc = subprocess.Popen(
        [os.path.join(BIN, 'controller_node'), *ros_args(namespace, f'controller:={controller}')],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    return probe, proc


def test_rpl_eval_reports_base_actions_outside_the_tasks_bounds(faulty_env, tmp_path):
    args = ['--task', 'push', '--controller', 'loud_push', '--episodes', '2', '--no-progress']
    proc = _run([*RPL, 'eval', *args, '--json', str(tmp_path / 'r.json')], faulty_env)
    assert proc.returncode == 0, proc.stderr
    steps = 2 * task_spec('push').max_episode_steps
    assert proc.stderr == (
        "rpl eval: warning: controller 'loud_push' gave actions outside the task's bounds "
        f"[-1, 1] in {steps} steps (clipped by the task): are its units the task's?\n"
    )
    assert json.loads((tmp_path / 'r.json').read_text())['base_outside_bounds'] == steps


def test_the_controller_node_reports_actions_outside_the_tasks_bounds(faulty_env):
    """They are published (the stack clips every command), and said, throttled."""
    probe, proc = _probed_controller_node('loud_push', faulty_env)
    try:
        answer = probe.ask('push', np.zeros(len(observation_layout(task_spec('push')).fields)))
        np.testing.assert_array_equal(answer.values, [5.0, -5.0, 0.0, 0.0])
    finally:
        probe.side.close()
        stop_process(proc)
    output = proc.stdout.read()
    assert "[5.0, -5.0, 0.0, 0.0] is outside the task's action bounds [-1, 1] (published" in (
        output
    ), output


def _feed_push_observations(probe: BaseActionProbe, proc: subprocess.Popen, steps: int) -> None:
    """Once the controller node hears the probe (what is sent before is lost: volatile),
    send it push observations of steps 0, 1, ... every 0.1 s: ``steps`` of them, fewer if
    the node ends or 30 s pass."""
    fields = observation_layout(task_spec('push')).fields
    subscribed = probe.side.spin_until(
        lambda: probe.publisher.get_subscription_count() >= 1 or proc.poll() is not None, 60.0
    )
    assert subscribed and proc.poll() is None, 'the controller node never subscribed'
    deadline = time.monotonic() + 30.0
    step = 0
    while proc.poll() is None and time.monotonic() < deadline and step < steps:
        vec = StampedVector(0, step, np.zeros(len(fields)), 0, 'push')
        probe.publisher.publish(encode(JointState(), vec, fields))
        probe.side.spin_until(lambda: False, 0.1)
        step += 1


def test_a_controller_that_raises_in_the_node_loses_that_step_not_the_node(faulty_env):
    """Only a ValueError was a refused step: any other exception of the controller's code
    killed the node, and the respawned one on the re-sent observation (a crash loop that
    stopped the whole stack)."""
    probe, proc = _probed_controller_node('raising_push', faulty_env)
    try:
        _feed_push_observations(probe, proc, steps=20)
        assert proc.poll() is None, 'the controller node died'
        assert probe.answers == []  # no action from a controller that raised
    finally:
        probe.side.close()
        code = stop_process(proc)
    output = proc.stdout.read()
    assert code == 0, output
    # (The first observations may go out before the node's subscription is matched.)
    assert re.search(
        r'rejected controller raised \(episode 0, step \d+\): ZeroDivisionError: user bug in '
        r'my planner \(at faulty_plugins.py:\d+ in __call__\); no base action for this step',
        output,
    ), output
    assert 'Traceback' not in output and 'runtime error' not in output, output


def test_a_controller_of_another_size_ends_the_node_after_its_first_outputs(faulty_env):
    """A controller giving 5 values for push's 4 was refused step by step: the stack applied
    the zero action a second a step and ended with exit 3 after ~110 s. Its first three
    outputs all of another size end the node with one line, exit 1."""
    probe, proc = _probed_controller_node('wide_push', faulty_env)
    try:
        _feed_push_observations(probe, proc, steps=50)
        code = proc.wait(timeout=20)
    finally:
        probe.side.close()
        stop_process(proc)
    output = proc.stdout.read()
    assert code == 1 and probe.answers == [], output
    assert (
        "controller 'wide_push' gave 3 actions of shape (5,) and none of shape (4,), the 4 "
        "values task 'push' takes (dx, dy, dz, gripper): a controller for another robot or "
        'task?; exiting with code 1' in output
    ), output
    assert 'Traceback' not in output, output


# ------------------------------------------------------------------ broken plug-ins


def test_broken_plugins_are_skipped_with_one_line_each(broken_env):
    proc = _run([*RPL, 'list', 'controllers'], broken_env)
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[0] for line in proc.stdout.splitlines()][-1] == 'zero'
    assert 'reactive_push' in proc.stdout
    # The zero controller suits every registered task, so its listing reads the task
    # plug-ins too: the broken task plug-in gets its line as well.
    warnings = proc.stderr.splitlines()
    assert len(warnings) == 5, proc.stderr
    assert "'push = json:loads'" in warnings[4] and 'expected a TaskPlugin' in warnings[4]
    # It ended every command and node silently with its exit code 3.
    assert "'exits = exits_at_import:SPEC'" in warnings[2]
    assert 'cannot be loaded: SystemExit: 3' in warnings[2]
    # argparse at import printed its usage and error above the skip line, as if they were
    # rpl's own; now its last line is in the skip line and nothing else is printed.
    assert "'parses = parses_args_at_import:SPEC'" in warnings[3]
    assert warnings[3].endswith(
        "cannot be loaded: SystemExit: 2 (it printed: 'mytool: error: the following "
        "arguments are required: --rate')"
    ), warnings[3]
    assert "entry point 'missing_module = no_such_module_here:SPEC'" in warnings[0]
    assert 'from broken-plugins 0.1' in warnings[0]
    assert 'ModuleNotFoundError' in warnings[0]
    assert "'wrong_type = json:dumps'" in warnings[1]
    assert 'expected a ControllerSpec' in warnings[1]
    tasks = _run([*RPL, 'list', 'tasks'], broken_env)
    assert tasks.returncode == 0, tasks.stderr
    assert "'push = json:loads'" in tasks.stderr and 'expected a TaskPlugin' in tasks.stderr
    listed = {line.split()[0] for line in tasks.stdout.splitlines() if line.strip()}
    assert {'push', 'pick_and_place'} <= listed  # the built-in push is still there


def test_a_broken_plugin_named_on_the_command_line_fails_with_its_reason(broken_env, tmp_path):
    args = ['--task', 'push', '--controller', 'missing_module', '--json', str(tmp_path / 'r')]
    proc = _run([*RPL, 'eval', *args], broken_env)
    assert proc.returncode == 2
    assert "controller 'missing_module' is a plug-in that failed to load" in proc.stderr
    assert 'Traceback' not in proc.stderr


# ------------------------------------------------------------ controller parameters


def test_eval_controller_param_sets_the_gain_and_rejects_bad_ones(tmp_path):
    base = ['eval', '--task', 'pick_and_place', '--controller', 'reactive_pick_and_place']
    base += ['--episodes', '1', '--no-progress']
    out = tmp_path / 'gain50.json'
    proc = _run([*RPL, *base, '--controller-param', 'carry_gain=50', '--json', str(out)], None)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())['controller_params'] == {'carry_gain': 50.0}
    for item, message in [
        ('carry_gian=50', "has no parameter 'carry_gian'; its parameters: ['approach_gain'"),
        ('carry_gain=fast', "carry_gain='fast' is not a number"),
        ('carry_gain=-1', "'carry_gain' = -1.0 is outside [0.0, 1000.0]"),
        ('carry_gain', "'carry_gain' is not NAME=VALUE"),
    ]:
        proc = _run([*RPL, *base, '--controller-param', item, '--json', str(tmp_path / 'x')], None)
        assert proc.returncode == 2, (item, proc.stderr)
        assert proc.stderr.count('\n') == 1 and message in proc.stderr, proc.stderr
    twice = ['--controller-param', 'carry_gain=5', '--controller-param', 'carry_gain=6']
    proc = _run([*RPL, *base, *twice, '--json', str(tmp_path / 'x')], None)
    assert proc.returncode == 2 and "'carry_gain' is given twice; give it once" in proc.stderr


def test_launch_passes_only_the_set_controller_params_to_the_controller_node():
    plans = plan_rpl_launch('pick_and_place.launch.py', carry_gain='50', approach_gain='12')
    node = next(p for p in plans if p.name == 'base_controller').node
    assert node.parameters['controller_params'] == 'approach_gain=12.0,carry_gain=50.0'
    default = plan_rpl_launch('pick_and_place.launch.py')
    node = next(p for p in default if p.name == 'base_controller').node
    assert node.parameters['controller_params'] == ''  # the node's files / registered defaults


def test_controller_params_sets_a_parameter_named_like_a_launch_argument():
    """`seed:=3` for the planner's seed moved the simulator's seeds instead, exit 0: a
    controller parameter named like a launch argument could not be set from a launch."""
    plans = plan_rpl_launch('mbrl_pusher.launch.py', controller='pets', controller_params='seed=3')
    node = next(p for p in plans if p.name == 'base_controller').node
    assert node.parameters['controller_params'] == 'seed=3'
    sim = next(p for p in plans if p.name == 'sim_bridge').node
    assert sim.parameters['seed'] == 0  # the stack's own seed argument, untouched
    with pytest.raises(
        Exception, match=r"controller_params:='carry_gain=5' sets \['carry_gain'\]"
    ):
        plan_rpl_launch(
            'pick_and_place.launch.py', carry_gain='50', controller_params='carry_gain=5'
        )
    with pytest.raises(Exception, match=r"controller_params:='sed=3'.*no parameter"):
        plan_rpl_launch('mbrl_pusher.launch.py', controller='pets', controller_params='sed=3')


def test_learn_launch_passes_controller_params_to_every_stack():
    plans = plan_rpl_launch('slippery_push_learn.launch.py', explorers='2', push_gain='4')
    controllers = [p.node for p in plans if p.node.name == 'base_controller']
    assert len(controllers) == 3
    assert {node.parameters['controller_params'] for node in controllers} == {'push_gain=4.0'}


def test_controller_external_starts_no_controller_node():
    """``controller:=external``: the user's own node publishes base_action; the rest of the
    stack is the same (the sim bridge still waits for two observation subscribers)."""
    default = plan_rpl_launch('push.launch.py')
    plans = plan_rpl_launch('push.launch.py', controller='external')
    assert [p.name for p in default] == ['sim_bridge', 'base_controller', 'residual_node']
    assert [p.name for p in plans] == ['sim_bridge', 'residual_node']
    sims = [p.node for p in (default[0], plans[0])]
    assert sims[0].parameters == sims[1].parameters


def test_no_controller_can_be_registered_as_external():
    from rpl_base_controllers.registry import ControllerSpec, register_controller

    spec = ControllerSpec(factory=lambda name, task, config: None, description='', tasks=('push',))
    with pytest.raises(ValueError, match="controller name 'external' is reserved"):
        register_controller('external', spec)


@pytest.mark.parametrize(
    ('file_name', 'arguments', 'message'),
    [
        (
            'pick_and_place.launch.py',
            ['carry_gain:=abc'],
            "launch argument carry_gain:='abc': controller parameter",
        ),
        ('pick_and_place.launch.py', ['carry_gain:=5000'], 'is outside [0.0, 1000.0]'),
        (
            'pick_and_place.launch.py',
            ['controller:=zero', 'carry_gain:=50'],
            "controller 'zero' has no parameter",
        ),
        (
            'pick_and_place.launch.py',
            ['controller:=external', 'carry_gain:=50'],
            'controller:=external starts no controller node; set the parameter on your own node',
        ),
        (
            'slippery_push_learn.launch.py',
            ['controller:=external'],
            'live learning runs the base controller in its trainer too',
        ),
    ],
)
def test_launch_rejects_a_bad_controller_param_before_any_node_starts(
    file_name, arguments, message
):
    proc = _run([*LAUNCH, file_name, *arguments], None, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and proc.stderr.count('\n') == 1, proc.stderr
    assert 'started' not in proc.stdout


@pytest.mark.integration
@pytest.mark.parametrize(
    'gain', ['carry_gain:=50.0', 'controller_params:=carry_gain=50'], ids=['ros', 'launch']
)
def test_controller_node_answers_with_its_ros_parameter_gain(gain):
    """``carry_gain:=50.0`` on the node, or ``controller_params`` as the launch files pass
    ``carry_gain:=50``: its action for a carry step is the gain-50 one."""
    namespace = f'/rpl_test_plugins_{os.getpid()}'
    layout = observation_layout(task_spec('pick_and_place'))
    # A grasped block (fingers closed on it) 1 cm short of the carry target along x.
    gripper = np.array([1.3, 0.75, 0.455])
    observation = np.zeros(layout.observation.stop - layout.observation.start)
    observation[FetchObs.GRIP_POS] = gripper
    observation[FetchObs.OBJECT_POS] = gripper + [0.0, 0.0, 0.005]
    observation[FetchObs.OBJECT_REL_POS] = [0.0, 0.0, 0.005]
    observation[FetchObs.GRIPPER_STATE] = (0.024, 0.024)
    goal = gripper + [0.01, 0.0, -0.03]  # carry target = goal + (0, 0, -0.02 + 0.05)
    values = np.zeros(len(layout.fields))
    values[layout.observation] = observation
    values[layout.desired_goal] = goal
    expected = make_controller('reactive_pick_and_place', carry_gain=50.0)(observation, goal)
    default = make_controller('reactive_pick_and_place')(observation, goal)
    np.testing.assert_allclose(expected, [0.5, 0.0, 0.0, -1.0], atol=1e-12)  # 83: 0.83
    probe = BaseActionProbe(namespace)
    side = probe.side
    params = ['controller:=reactive_pick_and_place', gain]
    proc = subprocess.Popen(
        [os.path.join(BIN, 'controller_node'), *ros_args(namespace, *params)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        answer = probe.ask('pick_and_place', values)
        client = AsyncParameterClient(side.node, f'{namespace}/base_controller')
        values = client.get_parameters(['carry_gain'])
        described = client.describe_parameters(['carry_gain'])
        assert side.spin_until(lambda: values.done() and described.done(), 10.0)
        assert values.result().values[0].double_value == 50.0  # what the controller runs with
        descriptor = described.result().descriptors[0]
        assert descriptor.read_only  # a runtime change would not be applied: refused
        limits = descriptor.floating_point_range[0]
        assert (limits.from_value, limits.to_value) == (0.0, 1000.0)
    finally:
        side.close()
        stop_process(proc)
    np.testing.assert_allclose(answer.values, expected)
    assert not np.allclose(expected, default)  # the gain made a difference


@pytest.mark.parametrize(
    ('param', 'message'),
    [
        ('carry_gain:=-5.0', "'carry_gain' = -5.0 is outside [0.0, 1000.0]"),
        ('controller_params:=carry_gain=-5', "'carry_gain' = -5.0 is outside [0.0, 1000.0]"),
        ('controller_params:=carry_gian=5', "has no parameter 'carry_gian'"),
        (
            'controller_params:=carry_gain=5,carry_gain=6',
            "controller parameter 'carry_gain' is given twice; give it once",
        ),
        (
            ('controller_params:=carry_gain=5', 'carry_gain:=6.0'),
            "'carry_gain' is given twice with different values: controller_params "
            'carry_gain=5.0 and carry_gain:=6.0',
        ),
    ],
)
def test_controller_node_rejects_a_bad_parameter_value_with_one_line(param, message):
    # A value set two ways used to run silently with the controller_params one.
    given = param if isinstance(param, tuple) else (param,)
    params = ['controller:=reactive_pick_and_place', *given]
    proc = _run([os.path.join(BIN, 'controller_node'), *ros_args('/rpl_bad', *params)], None)
    assert proc.returncode == 2
    output = proc.stdout + proc.stderr
    assert message in output
    assert 'Traceback' not in output


# ---------------------------------------------------------------- the example package


def test_list_shows_the_example_controller_and_task(plugin_env):
    controllers = _run([*RPL, 'list', 'controllers'], plugin_env)
    assert controllers.returncode == 0 and controllers.stderr == '', controllers.stderr
    line = next(x for x in controllers.stdout.splitlines() if x.startswith(EXAMPLE))
    assert 'tasks: push, slippery_push, icy_push;' in line
    assert 'parameters: gain=10.0, push_offset=0.06; plug-in: entry point ' in line
    assert 'from rpl-example-controller 0.1.0' in line
    tasks = _run([*RPL, 'list', 'tasks'], plugin_env)
    assert any(x.startswith('icy_push ') for x in tasks.stdout.splitlines()), tasks.stdout


def test_eval_with_workers_runs_the_example_on_its_own_task(plugin_env, tmp_path):
    out = tmp_path / 'eval.json'
    cmd = [*RPL, 'eval', '--task', 'icy_push', '--controller', EXAMPLE, '--episodes', '4']
    cmd += ['--workers', '2', '--controller-param', 'gain=8', '--json', str(out)]
    proc = _run([*cmd, '--no-progress'], plugin_env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert (result['task'], result['controller'], result['episodes']) == ('icy_push', EXAMPLE, 4)
    assert result['controller_params'] == {'gain': 8.0}
    bad = _run(
        [*[a if a != 'gain=8' else 'gain=1000' for a in cmd[:-2]], '--json', str(tmp_path / 'b')],
        plugin_env,
    )
    assert bad.returncode == 2 and "'gain' = 1000.0 is outside [0.0, 100.0]" in bad.stderr


def test_train_runs_the_example_controller_in_worker_processes(plugin_env, tmp_path):
    out = tmp_path / 'run'
    cmd = [*RPL, 'train', '--task', 'icy_push', '--controller', EXAMPLE, '--steps', '100']
    cmd += ['--eval-episodes', '1', '--set', 'base_eval_episodes=1', '--num-envs', '2']
    cmd += ['--vector-env', 'subprocess', '--no-progress', '--controller-param', 'gain=8']
    proc = _run([*cmd, '--out', str(out)], plugin_env, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / 'actor.onnx').is_file()
    config = json.loads((out / 'config.json').read_text())
    assert (config['controller'], config['controller_params']) == (EXAMPLE, 'gain=8')
    cmd = [a if a != 'gain=8' else 'gain=-1' for a in cmd]  # given once (twice is refused)
    bad = _run([*cmd, '--out', str(tmp_path / 'b')], plugin_env)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "'gain' = -1.0 is outside [0.0, 100.0]" in bad.stderr and 'Traceback' not in bad.stderr


@pytest.mark.integration
def test_stack_launch_runs_the_example_controller(plugin_env, tmp_path, monkeypatch):
    monkeypatch.setenv('PYTHONPATH', plugin_env['PYTHONPATH'])  # Child inherits it
    namespace = f'/rpl_test_plugin_{os.getpid()}'
    arguments = [f'controller:={EXAMPLE}', 'gain:=8']
    _, data = _one_monitored_episode('slippery_push.launch.py', namespace, arguments, tmp_path)
    assert set(data['base_actions']['tags']) == {EXAMPLE}


@pytest.mark.integration
def test_a_plugin_task_runs_as_a_stack_from_its_own_launch_file(
    plugin_env, repo_root, tmp_path, monkeypatch
):
    """A plug-in task had no way into a stack: the launch files are one per shipped task,
    and a launch file of its own on stack_launch_description failed for the
    config/<task>.yaml only shipped tasks have. Its parameters now come from its spec."""
    monkeypatch.setenv('PYTHONPATH', plugin_env['PYTHONPATH'])  # Child inherits it
    namespace = f'/rpl_test_plugin_task_{os.getpid()}'
    launch_file = (
        repo_root / 'examples' / 'rpl_example_controller' / 'launch' / 'icy_push.launch.py'
    )
    own = [sys.executable, '-m', 'rpl_bringup.cli', 'launch']
    output, data = _one_monitored_episode(str(launch_file), namespace, ['gain:=8'], tmp_path, own)
    assert set(data['base_actions']['tags']) == {EXAMPLE}
    assert set(data['observations']['tags']) == {'icy_push'}  # the plug-in task ran
    assert (data['summary']['fallback_base'], data['summary']['fallback_zero']) == (0, 0)


def _one_monitored_episode(
    file_name: str, namespace: str, arguments: list[str], tmp_path, launch: list[str] = LAUNCH
) -> tuple[str, dict]:
    """Runs one episode of the stack launch ``file_name`` with its episode monitor; returns
    the launch's output and the monitor's results."""
    output = tmp_path / 'results.json'
    runner = Child(
        [
            *launch,
            file_name,
            f'namespace:={namespace}',
            *arguments,
            'episodes:=1',
            'monitor:=true',
            f'results:={output}',
        ]
    )
    try:
        assert runner.wait(90) == 0, runner.output()
    finally:
        runner.stop()
    data = read_json(output)
    assert data['summary']['episodes'] == 1, runner.output()
    return runner.output(), data


# A controller written outside the project: plain rclpy and sensor_msgs, no RPL import; it
# follows the README's checklist ("Your own controller and robot"), as one in C++ would.
FOREIGN_CONTROLLER = """
import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState

ACTION = ['dx', 'dy', 'dz', 'gripper']


class Foreign(Node):
    def __init__(self):
        super().__init__('foreign_controller')
        latched = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        volatile = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.create_publisher(JointState, 'base_action', latched)
        self.create_subscription(JointState, 'observation', self.on_observation, volatile)
        self.last = (None, None)  # (episode, step), action: a re-send gets the same answer

    def on_observation(self, msg):
        key = (msg.position[0], msg.position[1])
        if key != self.last[0]:
            obs = dict(zip(msg.name, msg.position))
            move = [obs['object_pos.' + a] - obs['grip_pos.' + a] for a in 'xyz']
            self.last = (key, [max(-1.0, min(1.0, 10.0 * m)) for m in move] + [0.0])
        out = JointState()
        out.header.stamp = self.get_clock().now().to_msg()
        out.header.frame_id = 'foreign'
        out.name = ['episode', 'step', *ACTION]
        out.position = [*key, *self.last[1]]
        self.pub.publish(out)


rclpy.init()
try:
    rclpy.spin(Foreign())
except KeyboardInterrupt:
    pass
"""


@pytest.mark.integration
def test_stack_launch_with_controller_external_runs_the_foreign_controller(tmp_path):
    """The launch file starts the sim bridge and the residual node; the foreign controller
    (no RPL import) runs as its own process in the namespace, as it would on a robot."""
    namespace = f'/rpl_test_external_{os.getpid()}'
    foreign = subprocess.Popen(
        [sys.executable, '-c', FOREIGN_CONTROLLER, '--ros-args', '-r', f'__ns:={namespace}']
    )
    try:
        arguments = ['controller:=external', 'seed:=3']
        output, data = _one_monitored_episode('push.launch.py', namespace, arguments, tmp_path)
    finally:
        stop_process(foreign)
    assert 'base_controller' not in output
    assert set(data['base_actions']['tags']) == {'foreign'}
    assert (data['summary']['fallback_base'], data['summary']['fallback_zero']) == (0, 0)


def _episode_result(msg: JointState) -> EpisodeResult:
    vec = decode(msg, contract.EPISODE_FIELDS)
    return EpisodeResult.from_vector(vec.episode, vec.values)


@pytest.mark.integration
def test_a_controller_outside_the_project_that_follows_the_checklist_runs_the_stack(repo_root):
    namespace = f'/rpl_test_foreign_{os.getpid()}'
    config = repo_root / 'config'
    side = SideNode('probe', namespace)
    results: list[EpisodeResult] = []
    side.node.create_subscription(
        JointState,
        contract.EPISODE,
        lambda msg: results.append(_episode_result(msg)),
        qos_profile(contract.TOPIC_QOS[contract.EPISODE]),
    )
    # The probe also reads observations, and the sim waits for 3 observation subscribers
    # (controller, residual node, probe): a 50-step episode takes ~0.1 s, so a sim that did
    # not wait for the probe could finish before DDS matched the probe's episode reader.
    side.node.create_subscription(
        JointState,
        contract.OBSERVATION,
        lambda msg: None,
        qos_profile(contract.TOPIC_QOS[contract.OBSERVATION]),
    )
    residual = subprocess.Popen(
        [
            os.path.join(BIN, 'residual_node'),
            *ros_args(namespace, params_file=config / 'residual_node.yaml'),
        ]
    )
    foreign = subprocess.Popen(
        [sys.executable, '-c', FOREIGN_CONTROLLER, '--ros-args', '-r', f'__ns:={namespace}']
    )
    sim = subprocess.Popen(
        [
            os.path.join(BIN, 'sim_bridge_node'),
            *ros_args(
                namespace,
                'task:=push',
                'episodes:=1',
                'seed:=3',
                'min_subscribers:=3',
                params_file=config / 'sim_bridge.yaml',
            ),
        ]
    )
    try:
        assert side.spin_until(lambda: sim.poll() is not None, 60.0), 'sim did not finish'
        assert sim.returncode == 0
        side.spin_until(lambda: bool(results), 5.0)
    finally:
        side.close()
        for proc in (sim, foreign, residual):
            stop_process(proc)
    assert len(results) == 1
    # Every step got the foreign controller's action through the residual node.
    assert (results[0].steps, results[0].fallback_base, results[0].fallback_zero) == (50, 0, 0)


def test_a_name_registered_twice_is_refused_when_asked_for(faulty_env, tmp_path):
    """A plug-in named like a built-in (or like another plug-in) was skipped with a line on
    stderr, and the name ran whichever registration came first, exit 0."""
    dist = tmp_path / 'clashing_plugins-0.1.dist-info'
    dist.mkdir()
    (dist / 'METADATA').write_text('Metadata-Version: 2.1\nName: clashing-plugins\nVersion: 0.1\n')
    (dist / 'entry_points.txt').write_text(
        '[rpl.controllers]\nreactive_push = faulty_plugins:LOUD\n'
    )
    args = ['--task', 'push', '--controller', 'reactive_push', '--episodes', '1']
    proc = _run([*RPL, 'eval', *args, '--json', str(tmp_path / 'r.json')], faulty_env)
    assert proc.returncode == 2, proc.stderr
    error = proc.stderr.splitlines()[-1]
    assert error.startswith(
        "rpl eval: error: controller 'reactive_push' is registered twice (built-in; entry "
        "point 'reactive_push = faulty_plugins:LOUD'"
    ), proc.stderr
    assert not (tmp_path / 'r.json').exists()
    listed = _run([*RPL, 'list', 'controllers'], faulty_env)  # the listing still works
    assert listed.returncode == 0 and 'reactive_push' in listed.stdout, listed.stderr


def test_rpl_train_says_a_plugin_that_cannot_be_built_before_writing_its_run(faulty_env, tmp_path):
    """Its factory ran first in the rollout, after the run folder was written: a traceback,
    and the same command then refused for the folder it left."""
    run = tmp_path / 'run'
    args = ['--task', 'push', '--controller', 'unbuildable_push', '--steps', '200']
    proc = _run([*RPL, 'train', *args, '--out', str(run), '--no-progress'], faulty_env)
    assert proc.returncode == 2, proc.stderr
    assert "controller 'unbuildable_push' could not be built: RuntimeError: user bug in my " in (
        proc.stderr
    ), proc.stderr
    assert 'Traceback' not in proc.stderr and not run.exists(), proc.stderr


@pytest.mark.parametrize(
    ('task', 'message'),
    [
        (
            'lying',
            "task 'lying': the task its factory built differs from the spec it registered "
            '(max_episode_steps 30 registered, 50 built)',
        ),
        ('wide', "task 'wide': observe() gave 'observation' of shape (26,), its spec declares"),
    ],
)
def test_a_task_plugin_at_odds_with_its_spec_is_one_line_before_a_run_is_written(
    faulty_env, tmp_path, task, message
):
    """A registered spec of 30 steps built as 50: rpl eval ran 50-step episodes, rpl train
    30, both exit 0; an observe() of 26 values for 25: rpl eval exited 0 with results, rpl
    train died in a torch traceback and left a run folder that blocked the same command."""
    run = tmp_path / 'run'
    args = ['--task', task, '--controller', 'zero', '--no-progress']
    trained = _run([*RPL, 'train', *args, '--steps', '200', '--out', str(run)], faulty_env)
    evaluated = _run([*RPL, 'eval', *args, '--json', str(tmp_path / 'r.json')], faulty_env)
    for command, proc in (('train', trained), ('eval', evaluated)):
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count('\n') == 1, proc.stderr
        assert proc.stderr.startswith(f'rpl {command}: error: {message}'), proc.stderr
    assert not run.exists() and not (tmp_path / 'r.json').exists()


def test_rpl_train_keeps_a_run_its_controller_stopped_and_resumes_it_once_mended(
    faulty_env, tmp_path
):
    """A controller failing after some steps stopped the run with "the run stopped" alone:
    the steps since the last periodic checkpoint were lost, and nothing said how to go on."""
    run = tmp_path / 'run'
    args = ['--task', 'push', '--controller', 'late_push', '--steps', '400', '--eval-episodes']
    args += ['2', '--eval-interval', '200', '--set', 'base_eval_episodes=0', '--no-progress']
    failing = {**faulty_env, 'FAULTY_FAIL_AT': '160'}
    proc = _run([*RPL, 'train', *args, '--out', str(run)], failing)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "rpl train: error: controller 'late_push' raised RuntimeError: user bug at a rare state"
    ), proc.stderr
    stopped = re.search(
        r'the run stopped at (\d+) env steps, checkpointed: `rpl train --out ', last
    )
    assert stopped and int(stopped.group(1)) > 0, last
    assert 'Traceback' not in proc.stderr
    resumed = _run([*RPL, 'train', '--out', str(run), '--resume', '--no-progress'], faulty_env)
    assert resumed.returncode == 0, resumed.stderr
    steps = [
        int(line.split(',')[0]) for line in (run / 'metrics.csv').read_text().splitlines()[1:]
    ]
    assert steps[-1] == 400 and int(stopped.group(1)) in steps, steps


def test_a_plugin_that_configures_logging_at_import_leaves_the_later_lines_shown(tmp_path):
    """Held-back import output bound a plug-in's `logging.basicConfig()` (at import) to the
    buffer: every later log line of the process, rpl's own skip lines included, was lost."""
    (tmp_path / 'logs_at_import.py').write_text(
        "import logging\nlogging.basicConfig(format='%(message)s')\nSPEC = 3\n"
    )
    dist = tmp_path / 'logging_plugins-0.1.dist-info'
    dist.mkdir()
    (dist / 'METADATA').write_text('Metadata-Version: 2.1\nName: logging-plugins\nVersion: 0.1\n')
    (dist / 'entry_points.txt').write_text(
        '[rpl.controllers]\nconfigures = logs_at_import:SPEC\nlater = no_such_module_x:SPEC\n'
    )
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(tmp_path), env.get('PYTHONPATH')]))
    proc = _run([*RPL, 'list', 'controllers'], env)
    assert proc.returncode == 0, proc.stderr
    assert "'configures = logs_at_import:SPEC'" in proc.stderr, proc.stderr
    assert "'later = no_such_module_x:SPEC'" in proc.stderr, proc.stderr
