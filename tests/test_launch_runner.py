"""Launch runner: argument parsing, the shim on our real launch files, process supervision.

Fast and without DDS: supervision is exercised with tiny throwaway `python -c` children.
"""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml
from helpers import plan_rpl_launch, python_plan, supervise

from rpl_bringup import cli, launch_runner, launch_shim
from rpl_bringup.launch_shim import LaunchError, ProcessPlan
from rpl_bringup.launch_shim.core import ProcessExited
from rpl_bringup.launch_shim.ros_actions import parameter_text

PY = sys.executable
CLI_LAUNCH = [PY, '-m', 'rpl_bringup.cli', 'launch', '--own-runner']
STACKS = {
    'slippery_push.launch.py': ('slippery_push', 'reactive_push'),
    'push.launch.py': ('push', 'discrete_mpc_push'),
    'pick_and_place.launch.py': ('pick_and_place', 'reactive_pick_and_place'),
}


def _alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie waiting for a reaper counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = pathlib.Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != 'Z'


def _required(plan: ProcessPlan) -> bool:
    """True when the plan's exit ends the launch: exit 0 shuts it down, and (for the
    launch files' on_exit callable) a crash raises, which ends it with an error."""
    if plan.on_exit is None:
        return plan.required
    try:  # a node that runs until the launch stops (the trainer) fails it by exiting 0
        if plan.on_exit(ProcessExited(plan.name, 1, 0, plan.cmd)).shutdown is None:
            return False
    except RuntimeError as exc:
        if 'episode_monitor exited (code 0)' in str(exc):  # watched, not required
            return False
        assert 'although it runs until the launch stops' in str(exc), exc
    with pytest.raises(RuntimeError, match=rf'required process {plan.name} died \(code 3\)'):
        plan.on_exit(ProcessExited(plan.name, 1, 3, plan.cmd))
    return True


# --- launch arguments -----------------------------------------------------------------


def test_parse_launch_arguments_keeps_values_verbatim():
    parsed = launch_runner.parse_launch_arguments(['a:=1', 'path:=x:=y', 'empty:='])
    assert parsed == {'a': '1', 'path': 'x:=y', 'empty': ''}


@pytest.mark.parametrize('token', ['episodes=3', ':=3', 'episodes'])
def test_parse_launch_arguments_rejects_malformed_tokens(token):
    with pytest.raises(LaunchError, match='name:=value'):
        launch_runner.parse_launch_arguments([token])


def test_unknown_launch_argument_is_a_clear_error():
    expected = (
        r"unknown launch argument\(s\) \['epsiodes'\].*"
        r'declares: .*bag, .*command_timeout, controller, controller_params, episodes'
    )
    with pytest.raises(LaunchError, match=expected):
        plan_rpl_launch('slippery_push.launch.py', epsiodes='3')


def test_launch_argument_choices_are_enforced():
    with pytest.raises(LaunchError, match="mode:='fast' is not one of"):
        plan_rpl_launch('slippery_push.launch.py', mode='fast')


def test_invalid_namespace_is_rejected_before_any_process_starts():
    with pytest.raises(LaunchError, match='not a valid ROS namespace'):
        plan_rpl_launch('slippery_push.launch.py', namespace='/itest-1')


def test_cli_returns_2_with_message_on_bad_arguments(capsys):
    code = cli.main(['launch', 'rpl_bringup', 'slippery_push.launch.py', 'bogus:=1'])
    assert code == 2
    assert "unknown launch argument(s) ['bogus']" in capsys.readouterr().err
    assert cli.main(['launch', 'rpl_bringup', 'missing.launch.py']) == 2
    assert cli.main(['eval', '--task', 'push', '--controller', 'x', '--episodes', '0']) == 2
    workers = ['eval', '--task', 'push', '--controller', 'reactive_push', '--workers', '0']
    assert cli.main(workers) == 2
    assert '--workers must be at least 1' in capsys.readouterr().err
    seed = ['eval', '--task', 'push', '--controller', 'reactive_push', '--seed', '-5']
    assert cli.main(seed) == 2
    assert '--seed must be in 0..2147483647 (as the sim bridge), got -5' in capsys.readouterr().err
    for command in ('demo', 'select runs/none'):  # the same ranges wherever episodes run
        assert cli.main([*command.split(), '--episodes', '0']) == 2
        assert '--episodes must be in 1..1000000000, got 0' in capsys.readouterr().err
        assert cli.main([*command.split(), '--seed', str(2**31)]) == 2
        assert f'--seed must be in 0..2147483647 (as the sim bridge), got {2**31}' in (
            capsys.readouterr().err
        )


# --- the shim on the real launch files --------------------------------------------------


def test_a_bare_folder_does_not_count_as_the_real_package(tmp_path, monkeypatch):
    # From the repository root `import launch` finds the launch/ folder (a namespace
    # package without files): that is not the real launch package.
    (tmp_path / 'rpl_bare_folder').mkdir()
    (tmp_path / 'rpl_real_package').mkdir()
    (tmp_path / 'rpl_real_package' / '__init__.py').write_text('')
    monkeypatch.syspath_prepend(str(tmp_path))
    assert not launch_shim.is_real('rpl_bare_folder')
    assert launch_shim.is_real('rpl_real_package')
    assert not launch_shim.is_real('rpl_no_such_package')


def test_shim_modules_stand_in_for_missing_launch_packages():
    installed = launch_shim.install()
    import launch.actions
    import launch_ros.actions

    if 'launch' in installed:
        assert launch.actions.ExecuteProcess is launch_shim.actions.ExecuteProcess
        assert issubclass(launch_ros.actions.Node, launch.actions.ExecuteProcess)
    assert launch_shim.install(force=True)[0] == 'launch'
    assert sys.modules['launch.substitutions'] is launch_shim.substitutions_module


def test_every_bringup_module_bound_to_launch_classes_is_dropped_with_the_stand_in():
    """A helper importing ``launch`` keeps the classes it was first imported with: each one
    (stack_launch and the modules split from it) must be re-imported after the stand-in."""
    package = pathlib.Path(launch_runner.__file__).parent
    importing = {
        f'rpl_bringup.{path.stem}'
        for path in package.glob('*.py')
        if re.search(r'^\s*(from|import) launch(_ros)?\b', path.read_text(), re.MULTILINE)
    }
    assert 'rpl_bringup.stack_launch' in importing
    assert importing <= set(launch_runner._CACHED_HELPERS)


@pytest.mark.parametrize('file_name', sorted(STACKS))
def test_stack_launch_files_evaluate_to_three_nodes(file_name, repo_root):
    task, controller = STACKS[file_name]
    plans = {p.name: p for p in plan_rpl_launch(file_name)}
    assert list(plans) == ['sim_bridge', 'base_controller', 'residual_node']

    sim, base, residual = plans['sim_bridge'], plans['base_controller'], plans['residual_node']
    assert (_required(sim), sim.respawn) == (True, False)
    assert (_required(base), base.respawn, base.respawn_delay) == (False, True, 1.0)
    assert (_required(residual), residual.respawn, residual.respawn_delay) == (False, True, 1.0)
    assert sim.node.package == 'rpl_sim_bridge' and sim.cmd[0] == 'sim_bridge_node'
    assert base.node.package == 'rpl_base_controllers' and base.cmd[0] == 'controller_node'
    assert residual.node.package == 'rpl_residual_node' and residual.cmd[0] == 'residual_node'
    for plan in plans.values():
        assert plan.node.namespace == '/rpl'
        # node defaults first, then the stack's file
        assert plan.node.parameter_files[-1] == str(repo_root / 'config' / f'{task}.yaml')
        assert all(os.path.isfile(f) for f in plan.node.parameter_files)
    assert sim.node.parameter_files[0] == str(repo_root / 'config' / 'sim_bridge.yaml')
    assert sim.node.parameters == {
        'episodes': 0,
        'mode': 'lockstep',
        'seed': 0,
        'command_timeout_s': 0.05,
        'lockstep_max_rate_hz': 0.0,
        'expect_model': False,  # no model_path
    }
    assert base.node.parameters == {'controller': controller, 'controller_params': ''}
    # Lockstep (the default mode): the sim waits for every command, so the node's input-age
    # guard is off (a wait there is load; a fallback would make episodes depend on it).
    assert residual.node.parameters == {
        'model_path': '',
        'allow_model_mismatch': False,
        'residual_gain': 1.0,
        'residual_gain_ramp_s': 0.0,
        'max_input_age_s': 0.0,
    }


def test_launch_arguments_reach_the_node_command_lines():
    plans = {
        p.name: p
        for p in plan_rpl_launch(
            'slippery_push.launch.py',
            controller='discrete_mpc_push',
            episodes='7',
            seed='42',
            mode='realtime',
            namespace='/itest',
            model_path='/tmp/actor.onnx',
            residual_gain='0.25',
            residual_gain_ramp_s='5',
        )
    }
    base = plans['base_controller'].cmd
    assert base[:2] == ('controller_node', '--ros-args')
    assert ('-r', '__node:=base_controller') == base[2:4]
    assert '__ns:=/itest' in base
    assert base[-4:-2] == ('-p', 'controller:="discrete_mpc_push"')
    sim = plans['sim_bridge']
    assert sim.node.parameters == {
        'episodes': 7,
        'mode': 'realtime',
        'seed': 42,
        'command_timeout_s': 0.05,
        'lockstep_max_rate_hz': 0.0,  # max_rate caps lockstep only (refused with realtime)
        'expect_model': True,  # model_path given
    }
    assert 'episodes:=7' in sim.cmd and 'seed:=42' in sim.cmd
    # Realtime: no override of max_input_age_s (config/residual_node.yaml's value applies).
    assert plans['residual_node'].cmd[-8:] == (
        '-p',
        'model_path:="/tmp/actor.onnx"',
        '-p',
        'allow_model_mismatch:=false',
        '-p',
        'residual_gain:=0.25',
        '-p',
        'residual_gain_ramp_s:=5.0',
    )
    assert '--params-file' in plans['residual_node'].cmd


def test_a_lockstep_rate_cap_in_realtime_mode_is_refused():
    """max_rate:=5 with mode:=realtime ran at the sim bridge's 25 Hz without a word."""
    with pytest.raises(ValueError, match=r"max_rate:='5' caps lockstep only; mode:=realtime"):
        plan_rpl_launch('slippery_push.launch.py', mode='realtime', max_rate='5')
    plans = {p.name: p for p in plan_rpl_launch('slippery_push.launch.py', mode='realtime')}
    assert plans['sim_bridge'].node.parameters['lockstep_max_rate_hz'] == 0.0
    plans = {p.name: p for p in plan_rpl_launch('slippery_push.launch.py', max_rate='5')}
    assert plans['sim_bridge'].node.parameters['lockstep_max_rate_hz'] == 5.0


def test_argument_values_reach_the_nodes_with_the_parameters_types(tmp_path):
    """launch_ros reads substituted parameter text as YAML: '1e-05' and 'inf' were strings
    for a double, a bag named 20241205 an integer, results 'yes' or a model 'on' booleans;
    each node then refused its parameter after the stack had started."""
    import yaml

    floats = {'command_timeout': '1e-5', 'max_rate': '0.00001', 'model_path': 'on'}
    plans = {p.name: p for p in plan_rpl_launch('slippery_push.launch.py', **floats)}
    from rpl_interfaces.params import yaml_float, yaml_string

    for value in (1e-05, 1e30, 0.1, 5.0, 4, float('inf'), -2.5e-12):
        assert yaml.safe_load(yaml_float(value)) == value, yaml_float(value)
        assert isinstance(yaml.safe_load(yaml_float(value)), float)
    for text in ('20241205', 'yes', 'on', '', 'runs/\U0001f916 bot', 'a "b" \\ c', 'x\x7fy\x85'):
        assert yaml.safe_load(yaml_string(text)) == text, yaml_string(text)
    sim = plans['sim_bridge'].node.parameters
    assert sim['command_timeout_s'] == 1e-05 and sim['lockstep_max_rate_hz'] == 1e-05
    assert plans['residual_node'].node.parameters['model_path'] == 'on'
    monkey = tmp_path / 'cwd'
    monkey.mkdir()
    cwd = os.getcwd()
    os.chdir(monkey)  # the names below are relative: new, writable files here
    try:
        paths = {'record': 'true', 'bag': '20241205', 'monitor': 'true', 'results': 'yes'}
        plans = {p.name: p for p in plan_rpl_launch('slippery_push.launch.py', **paths)}
    finally:
        os.chdir(cwd)
    assert plans['bag_recorder'].node.parameters == {'bag': '20241205'}
    assert plans['episode_monitor'].node.parameters == {'output_path': 'yes'}
    learn = {
        p.name: p
        for p in plan_rpl_launch(
            'slippery_push_learn.launch.py', explorers='0', train_overrides='yes', bags=''
        )
    }
    assert learn['trainer'].node.parameters['train_overrides'] == 'yes'


def test_monitor_argument_adds_the_episode_monitor_and_gates_the_sim_on_it():
    plans = {
        p.name: p
        for p in plan_rpl_launch('slippery_push.launch.py', monitor='true', results='r.json')
    }
    assert list(plans) == ['sim_bridge', 'base_controller', 'residual_node', 'episode_monitor']
    assert _required(plans['sim_bridge'])
    assert plans['sim_bridge'].node.parameters['min_subscribers'] == 3
    monitor = plans['episode_monitor']
    assert (monitor.node.package, monitor.node.namespace) == ('rpl_bringup', '/rpl')
    assert monitor.node.parameters == {'output_path': 'r.json'}
    assert not _required(monitor) and not monitor.respawn
    assert (
        'min_subscribers'
        not in {p.name: p for p in plan_rpl_launch('push.launch.py')}['sim_bridge'].node.parameters
    )


LEARN = 'slippery_push_learn.launch.py'
STACK_NODES = ['sim_bridge', 'base_controller', 'residual_node']


def _stacks(plans: list[ProcessPlan]) -> dict[str, dict[str, ProcessPlan]]:
    """Plans of the learning launch by namespace, then by node name."""
    out: dict[str, dict[str, ProcessPlan]] = {}
    for plan in plans:
        out.setdefault(plan.node.namespace, {})[plan.node.name] = plan
    return out


@pytest.mark.parametrize('explorers', [0, 1, 2])
def test_learn_launch_runs_the_watched_stack_explorers_and_one_trainer(explorers, repo_root):
    plans = plan_rpl_launch(
        LEARN, explorers=str(explorers), seed='7', model_path='/tmp/m/actor.onnx'
    )
    stacks = _stacks(plans)
    explorer_ns = [f'/rpl/explore_{i}' for i in range(explorers)]
    assert list(stacks) == ['/rpl', *explorer_ns]
    assert list(stacks['/rpl']) == ['trainer', *STACK_NODES]
    trainer = stacks['/rpl'].pop('trainer')
    assert (trainer.node.package, trainer.cmd[0]) == ('rpl_trainer', 'trainer_node')
    assert (_required(trainer), trainer.respawn) == (True, False)
    assert trainer.node.parameters == {
        'task': 'slippery_push',
        'controller': 'reactive_push',
        'controller_params': '',
        'namespaces': ','.join(['/rpl', *explorer_ns]),
        'bags': '',
        'model_path': '/tmp/m/actor.onnx',
        'checkpoint_path': '/tmp/m/actor.ckpt',  # beside the model when not given
        'init_from': '',
        'train_overrides': 'burn_in_window=500,target_update_interval=1',
        'updates_per_step': 0.25,
        'export_every_updates': 1000,
        'seed': 7,
    }
    for i, ns in enumerate(['/rpl', *explorer_ns]):
        stack = stacks[ns]
        assert list(stack) == STACK_NODES  # no monitor without monitor:=true
        sim, residual = stack['sim_bridge'], stack['residual_node']
        assert (_required(sim), residual.respawn) == (True, True)
        assert sim.node.parameter_files[-1] == str(repo_root / 'config' / 'slippery_push.yaml')
        watched = ns == '/rpl'
        seed = 7 if watched else 7 + i * 1_000_000  # explorer i - 1 is the i-th stack
        assert sim.node.parameters == {
            'command_timeout_s': 0.5,
            'lockstep_max_rate_hz': 0.0,
            'min_subscribers': 3,  # controller, residual node, trainer
            'startup_timeout_s': 120.0,
            'mode': 'lockstep',  # whatever a params_file says
            'episodes': 0,
            'seed': seed,
        }
        explore = {} if watched else {'explore_noise': 0.2, 'explore_random': 0.3}
        # An explorer keeps the trained gain, whatever a params_file says.
        explore.update(
            {}
            if watched
            else {'explore_seed': seed, 'residual_gain': 1.0, 'residual_gain_ramp_s': 0.0}
        )
        explore['max_input_age_s'] = 0.0  # lockstep: the input-age guard is off
        assert residual.node.parameters == {'model_path': '/tmp/m/actor.onnx', **explore}
        assert stack['base_controller'].node.parameters == {
            'controller': 'reactive_push',
            'controller_params': '',
        }


def test_learn_launch_episodes_end_only_the_watched_stack_and_monitors_write_per_stack(
    tmp_path,
):
    plans = plan_rpl_launch(
        LEARN,
        explorers='2',
        episodes='5',
        monitor='true',
        results=str(tmp_path / 'res'),
        command_timeout='1',
        explore_noise='0.1',
        explore_random='0',
    )
    stacks = _stacks(plans)
    names = {'/rpl': 'rpl', '/rpl/explore_0': 'rpl_explore_0', '/rpl/explore_1': 'rpl_explore_1'}
    for ns, name in names.items():
        sim = stacks[ns]['sim_bridge'].node.parameters
        assert sim['episodes'] == (5 if ns == '/rpl' else 0)
        assert sim['min_subscribers'] == 4  # ... and the monitor
        assert sim['command_timeout_s'] == 1.0 and isinstance(sim['command_timeout_s'], float)
        monitor = stacks[ns]['episode_monitor']
        assert monitor.node.parameters == {'output_path': str(tmp_path / 'res' / f'{name}.json')}
    explorer = stacks['/rpl/explore_1']['residual_node'].node.parameters
    assert (explorer['explore_noise'], explorer['explore_random']) == (0.1, 0.0)
    unnamed = _stacks(plan_rpl_launch(LEARN, monitor='true', namespace='/live/'))
    assert unnamed['/live/explore_0']['episode_monitor'].node.parameters == {'output_path': ''}


def test_learn_launch_init_from_is_listed_and_reaches_the_trainer_node(capsys, tmp_path):
    # Warm start of the live trainer from an `rpl train` run (the node's init_from).
    assert cli.main(['launch', 'rpl_bringup', LEARN, '--show-args']) == 0
    listed = capsys.readouterr().out
    assert "'init_from': Trainer: checkpoint to start from" in listed, listed
    run = tmp_path / 'checkpoint.pt'
    run.write_bytes(b'')  # it must exist: the launch checks that before any node starts
    model = str(tmp_path / 'live' / 'actor.onnx')
    plans = plan_rpl_launch(LEARN, explorers='0', init_from=str(run), model_path=model)
    (trainer,) = [p for p in plans if p.node.name == 'trainer']
    assert trainer.node.parameters['init_from'] == str(run)


def test_learn_launch_parameters_are_fields_of_the_node_configs():
    import dataclasses

    from rpl_residual_node.mixing import ResidualConfig
    from rpl_sim_bridge.bridge_config import SimBridgeConfig
    from rpl_trainer.trainer_node_config import TrainerNodeConfig

    configs = {
        'trainer_node': TrainerNodeConfig,
        'sim_bridge_node': SimBridgeConfig,
        'residual_node': ResidualConfig,
    }
    for plan in plan_rpl_launch(LEARN, explorers='1'):
        config = configs.get(plan.node.executable)
        if config is not None:
            fields = {f.name for f in dataclasses.fields(config)}
            assert set(plan.node.parameters) <= fields, plan.name


@pytest.mark.parametrize(
    ('arguments', 'message'),
    [
        ({'explorers': '5'}, r"explorers:='5' is not one of \['0', '1', '2', '3', '4'\]"),
        ({'explorers': '-1'}, "explorers:='-1' is not one of"),
        ({'explore_noise': '1.5'}, r"explore_noise:='1.5' is outside \[0.0, 1.0\]"),
        ({'explore_random': 'often'}, "explore_random:='often' is not a number"),
        ({'seed': 'abc'}, "seed:='abc' is not an integer"),
    ],
)
def test_learn_launch_bad_arguments_are_clear_errors(arguments, message):
    with pytest.raises(LaunchError, match=message):
        plan_rpl_launch(LEARN, **arguments)


def test_parameter_text_keeps_strings_strings():
    assert parameter_text('') == '""'
    assert parameter_text('123') == '"123"'
    assert parameter_text(True) == 'true'
    assert parameter_text(3) == '3'
    assert parameter_text(0.5) == '0.5'
    assert parameter_text([1, 'a']) == '[1, "a"]'


def test_package_share_and_executables_resolve_in_this_checkout(repo_root):
    assert launch_runner.find_package_share('rpl_bringup') == str(repo_root)
    sim = launch_runner.resolve_executable('rpl_sim_bridge', 'sim_bridge_node')
    assert os.access(sim[0], os.X_OK)
    monitor = launch_runner.resolve_executable('rpl_bringup', 'episode_monitor_node')
    assert monitor[-1].endswith('episode_monitor_node')
    with pytest.raises(LaunchError, match="executable 'nope' of package 'rpl_bringup'"):
        launch_runner.resolve_executable('rpl_bringup', 'nope')
    with pytest.raises(LaunchError, match="package 'no_such_pkg' not found"):
        launch_runner.find_package_share('no_such_pkg')


def test_record_starts_the_bag_recorder_of_rpl_bags():
    plans = {p.node.name: p for p in plan_rpl_launch('push.launch.py', record='true', bag='/b')}
    recorder = plans['bag_recorder']
    assert (recorder.node.package, recorder.node.executable) == ('rpl_bags', 'bag_recorder_node')
    script = launch_runner.resolve_executable('rpl_bags', 'bag_recorder_node')
    text = pathlib.Path(script[0]).read_text() if len(script) == 1 else ' '.join(script)
    assert 'rpl_bags.bag_recorder_node' in text, text


def test_dds_defaults_apply_only_when_unset(repo_root):
    env: dict[str, str] = {}
    launch_runner.apply_dds_defaults(env)
    assert env['FASTDDS_DEFAULT_PROFILES_FILE'] == str(
        repo_root / 'config' / 'fastdds_loopback.xml'
    )
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    mine = {'FASTDDS_DEFAULT_PROFILES_FILE': '/robot/profile.xml'}
    launch_runner.apply_dds_defaults(mine)
    assert mine == {'FASTDDS_DEFAULT_PROFILES_FILE': '/robot/profile.xml'}
    # Set empty: no profile at all (Fast DDS's defaults, a robot network), not the loopback.
    none = {'FASTDDS_DEFAULT_PROFILES_FILE': ''}
    launch_runner.apply_dds_defaults(none)
    assert none == {}


# --- supervision ------------------------------------------------------------------------


def test_required_exit_0_ends_the_launch_with_0_and_stops_the_others():
    code, lines, sup = supervise(
        [
            python_plan('sim', 'print("hello")', required=True),
            python_plan('idle', 'import time; time.sleep(30)'),
        ]
    )
    assert code == 0
    assert '[sim] hello' in lines
    assert any('sim finished (code 0); stopping the launch' in line for line in lines)
    # Stopped by the runner: SIGINT normally (-2); a child still starting up under load may
    # need the SIGTERM/SIGKILL escalation, so the exact code is not the point here.
    assert any(re.search(r'idle stopped \(code -?\d+\)$', line) for line in lines), lines
    assert sup.pids() == {'sim': None, 'idle': None}


def test_required_crash_ends_the_launch_nonzero_and_names_it():
    code, lines, _ = supervise(
        [
            python_plan('sim', 'import sys; sys.exit(3)', required=True),
            python_plan('idle', 'import time; time.sleep(30)'),
        ]
    )
    assert code == 3
    assert any('required process sim died (code 3); stopping the launch' in x for x in lines)


def test_killed_respawning_process_is_restarted(tmp_path):
    marker = tmp_path / 'first_life'
    second = tmp_path / 'second_life'
    victim = f"""
        import os, pathlib, signal, time
        first = pathlib.Path({str(marker)!r})
        if not first.exists():
            first.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        pathlib.Path({str(second)!r}).touch()
        time.sleep(30)
    """
    waiter = f"""
        import pathlib, sys, time
        end = time.monotonic() + 10
        while not pathlib.Path({str(second)!r}).exists():
            if time.monotonic() > end:
                sys.exit(4)
            time.sleep(0.02)
    """
    code, lines, sup = supervise(
        [
            python_plan('sim', waiter, required=True),
            python_plan('residual_node', victim, respawn=True, respawn_delay=0.2),
        ]
    )
    assert code == 0
    assert any('residual_node died (code -9); respawning in 0.2 s' in x for x in lines)
    assert sup.start_counts() == {'sim': 1, 'residual_node': 2}


def test_other_process_death_is_reported_and_the_launch_goes_on():
    code, lines, _ = supervise(
        [
            python_plan('sim', 'import time; time.sleep(0.5); print("done")', required=True),
            python_plan('controller', 'import sys; sys.exit(2)'),
        ]
    )
    # The launch goes on to the sim's end, then ends with 1: a process it started failed
    # (as when the launch ends by itself with a failed process; it ended with 0).
    assert code == 1
    assert any(x.endswith('controller died (code 2)') for x in lines)
    assert '[sim] done' in lines


def test_launch_without_required_process_ends_when_all_exit():
    assert supervise([python_plan('a', 'pass'), python_plan('b', 'pass')])[0] == 0
    assert (
        supervise([python_plan('a', 'pass'), python_plan('b', 'import sys; sys.exit(1)')])[0] == 1
    )


def test_stopping_escalates_to_sigterm_for_a_child_that_ignores_sigint():
    stubborn = """
        import signal, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print('ready', flush=True)
        time.sleep(30)
    """
    start = time.monotonic()
    code, lines, _ = supervise(
        [
            python_plan('sim', 'import time; time.sleep(0.3)', required=True),
            python_plan('stubborn', stubborn),
        ],
        sigint_timeout=0.3,
    )
    assert code == 0
    assert any('stubborn still running; sending SIGTERM' in x for x in lines)
    assert any(x.endswith('stubborn stopped (code -15)') for x in lines)
    assert time.monotonic() - start < 5.0


def test_required_process_that_cannot_start_ends_the_launch_at_once():
    start = time.monotonic()
    code, lines, sup = supervise(
        [
            ProcessPlan(name='ghost', cmd=('/no/such/exe',), required=True),
            python_plan('idle', 'import time; time.sleep(30)'),
        ]
    )
    assert code == 127
    assert any('cannot start ghost' in x for x in lines)
    assert sup.start_counts() == {'ghost': 0, 'idle': 0}
    assert time.monotonic() - start < 2.0


LAUNCH_FILE = """
import sys
from launch import LaunchDescription
from launch.actions import ExecuteProcess, Shutdown

PARENT = '''
import subprocess, sys, time
child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
print('grandchild', child.pid, flush=True)
time.sleep(60)
'''
STUBBORN = '''
import signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
print('ignoring SIGINT', flush=True)
time.sleep(60)
'''


def generate_launch_description():
    return LaunchDescription([
        ExecuteProcess(cmd=[sys.executable, '-c', 'import time; time.sleep(60)'],
                       name='sim', output='screen', on_exit=Shutdown()),
        ExecuteProcess(cmd=[sys.executable, '-c', PARENT], name='parent', output='screen'),
        ExecuteProcess(cmd=[sys.executable, '-c', STUBBORN], name='stubborn', output='screen',
                       respawn=True, respawn_delay=0.1),
    ])
"""


def test_sigterm_to_the_runner_leaves_no_process_behind(tmp_path):
    launch_file = tmp_path / 'orphans.launch.py'
    launch_file.write_text(LAUNCH_FILE)
    runner = subprocess.Popen(
        [*CLI_LAUNCH, str(launch_file), '--sigint-timeout', '0.5'],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    pids: list[int] = []
    seen: list[str] = []
    try:
        for line in runner.stdout:
            seen.append(line)
            if line.startswith('[rpl launch] started '):
                pids.append(int(line.split('(pid ')[1].split(')')[0]))
            if line.startswith('[parent] grandchild '):
                pids.append(int(line.split()[-1]))
            if len(pids) == 4 and '[stubborn] ignoring SIGINT\n' in seen:
                break
        assert len(pids) == 4, ''.join(seen)
        runner.send_signal(signal.SIGTERM)
        rest, _ = runner.communicate(timeout=15)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 128 + signal.SIGTERM, rest
    assert 'received SIGTERM; stopping all processes' in rest
    assert 'stubborn still running; sending SIGTERM' in rest
    deadline = time.monotonic() + 3.0
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in pids if _alive(p)] == []


@pytest.mark.parametrize(
    ('argv', 'message'),
    [
        (['eval', '--task'], 'rpl eval: error: argument --task: expected one argument'),
        (['train', '--steps', 'x'], "rpl train: error: argument --steps: invalid int value: 'x'"),
        (['bag', 'play'], 'rpl bag play: error: the following arguments are required: bag'),
        (['frobnicate'], "rpl: error: argument COMMAND: invalid choice: 'frobnicate'"),
        (  # named by the sub-command, whose --help lists its options
            ['eval', '--task', 'push', '--controller', 'zero', '--bogus'],
            'rpl eval: error: unrecognized arguments: --bogus (rpl eval --help',
        ),
        (['bag', 'play', 'x', '--bogus'], 'rpl bag play: error: unrecognized arguments: --bogus'),
        # An empty value names nothing: --out '' trained into the current folder, --json ''
        # wrote the default file, `rpl bag eval ''` was a traceback.
        (
            ['train', '--task', 'push', '--out', ''],
            "rpl train: error: argument --out: empty value ''",
        ),
        (['eval', '--json', ' '], "rpl eval: error: argument --json: empty value ' '"),
        (['bag', 'eval', ''], "rpl bag eval: error: argument bag: empty value ''"),
    ],
    ids=[
        'eval',
        'train',
        'bag',
        'command',
        'eval-unknown',
        'bag-unknown',
        'train-empty',
        'eval-empty',
        'bag-empty',
    ],
)
def test_a_command_line_mistake_is_one_line_naming_help(argv, message):
    """argparse's usage block is not printed before the error: the one line that matters
    stays on screen, and says where the options are listed."""
    done = subprocess.run(
        [sys.executable, '-m', 'rpl_bringup.cli', *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stdout == ''
    assert done.stderr.count('\n') == 1 and done.stderr.startswith(message), done.stderr
    assert done.stderr.rstrip().endswith('--help lists the options)')


def test_the_parameters_a_spec_implies_are_what_every_shipped_task_file_states(repo_root):
    """A plug-in task's stack takes its parameters from its spec (task_parameters): for
    every shipped task they equal what its config/<task>.yaml states, so a plug-in gets
    what a shipped task of the same sizes and bounds would."""
    import yaml

    from rpl_bringup.task_parameters import task_parameters

    files = sorted((repo_root / 'config').glob('*.yaml'))
    tasks = [f for f in files if f.stem not in ('sim_bridge', 'base_controller', 'residual_node')]
    assert len(tasks) == 6
    defaults = yaml.safe_load((repo_root / 'config' / 'residual_node.yaml').read_text())
    residual_defaults = defaults['/**/residual_node']['ros__parameters']
    for path in tasks:
        stated = {
            key.rsplit('/', 1)[-1]: value['ros__parameters']
            for key, value in yaml.safe_load(path.read_text()).items()
        }
        derived = task_parameters(path.stem)
        assert set(stated) == set(derived), path.name
        for node, params in derived.items():
            effective = {**(residual_defaults if node == 'residual_node' else {}), **stated[node]}
            assert {k: effective[k] for k in params} == params, (path.name, node)
            # Nothing a file states that the spec cannot imply (the gain is a launch argument
            # of every stack, its file value the same default).
            assert set(stated[node]) <= {*params, 'residual_gain'}, (path.name, node)


def test_a_params_file_of_ones_own_keeps_the_stack_bound_to_its_task(tmp_path):
    """A task's own parameter file without `task` had the sim bridge run its default (Fetch
    push) for a plug-in task, with exit 0: the sim bridge and the controller are bound to
    the launch's task after the file; the residual node takes the file as it is."""
    own = tmp_path / 'mine.yaml'
    own.write_text('/**/residual_node:\n  ros__parameters:\n    residual_limit: 1.0\n')
    launch_file = tmp_path / 'mine.launch.py'
    launch_file.write_text(
        'from rpl_bringup.stack_launch import stack_launch_description\n\n\n'
        'def generate_launch_description():\n'
        f"    return stack_launch_description('pick_and_place', 'reactive_pick_and_place', "
        f'params_file={str(own)!r})\n'
    )
    plans = {
        p.name: p
        for p in launch_runner.plan_launch_file(
            str(launch_file), {}, resolve=lambda pkg, exe: [exe], force_shim=True
        )
    }
    for name in ('sim_bridge', 'base_controller', 'residual_node'):
        assert str(own) in plans[name].node.parameter_files, name
    assert plans['sim_bridge'].node.parameters['task'] == 'pick_and_place'
    assert plans['base_controller'].node.parameters['task'] == 'pick_and_place'
    assert 'task' not in plans['residual_node'].node.parameters
    # What the file does not set, the spec gives, in a file before it (its limit wins).
    files = plans['residual_node'].node.parameter_files
    spec_file = next(
        f for f in files if os.path.basename(f).startswith('rpl_pick_and_place_spec_')
    )
    assert files.index(spec_file) < files.index(str(own)), files
    stated = yaml.safe_load(pathlib.Path(spec_file).read_text())
    assert stated['/**/residual_node']['ros__parameters'] == {
        'action_low': -1.0,
        'action_high': 1.0,
        'residual_limit': 2.0,
    }


def test_a_launch_files_wrong_default_controller_is_named_as_its_own(tmp_path):
    """A launch file of one's own with a default controller of another task was refused as
    if the user had given controller:= on the command line."""
    launch_file = tmp_path / 'bad.launch.py'
    launch_file.write_text(
        'from rpl_bringup.stack_launch import stack_launch_description\n\n\n'
        'def generate_launch_description():\n'
        "    return stack_launch_description('push', 'reactive_hook')\n"
    )
    with pytest.raises(Exception, match=r"default_controller='reactive_hook' of this launch file"):
        launch_runner.plan_launch_file(
            str(launch_file), {}, resolve=lambda pkg, exe: [exe], force_shim=True
        )
