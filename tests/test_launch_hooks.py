"""The hook stacks: noisy_hook.launch.py and complex_hook.launch.py with config/noisy_hook.yaml
and config/complex_hook.yaml.

Fast checks of the files (what they launch, with which parameters), then one short lockstep
run of each launch file (2 episodes of 100 steps; both launches side by side in one module
fixture) through ``rpl launch`` with the default controller (reactive_hook), a small linear
ONNX residual, the episode monitor and the bag recorder: the sim bridge publishes the
task's 40 observation fields, the residual node acts on them, the bag holds them and
``rpl bag eval`` reports the run, and the episodes equal the in-process ones of the same
seeds (the noise and the random objects and bumps are drawn from the task's own seeded RNG,
so they reproduce through the stack).

Until a hook task or the reactive_hook controller is registered, the tests that need it are
skipped, naming what is missing.
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest
import yaml
from helpers import RecordedLaunch, plan_rpl_launch
from onnx_builders import known_weights, linear_model

from rpl_bags import bag_cli
from rpl_bags.bag_replay import replay_model
from rpl_bags.recorded import load_run
from rpl_base_controllers.registry import available_controllers, controller_info
from rpl_bringup.evaluation import evaluate
from rpl_residual_node.policy import ResidualPolicy
from rpl_sim_bridge.layout import HOOK_OBS_FIELDS
from rpl_sim_bridge.tasks import available_tasks, task_spec

TASKS = ('noisy_hook', 'complex_hook')
CONTROLLER = 'reactive_hook'  # the default controller of both launch files
EPISODES, SEED = 2, 3


def missing(task: str) -> str | None:
    """What keeps the stack of ``task`` from running (None: nothing)."""
    if task not in available_tasks():
        return f'task {task!r} is not registered yet (`rpl list tasks`)'
    if CONTROLLER not in available_controllers():
        return f'controller {CONTROLLER!r} is not registered yet (`rpl list controllers`)'
    if task not in controller_info(CONTROLLER).tasks:
        return f'controller {CONTROLLER!r} is not registered for task {task!r} yet'
    return None


def require_stack(task: str) -> None:
    """Skip the calling test unless ``task`` and ``reactive_hook`` (for it) are registered."""
    reason = missing(task)
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize('task', TASKS)
def test_the_config_file_sets_the_task_of_sim_bridge_and_controller(task, repo_root):
    params = yaml.safe_load((repo_root / 'config' / f'{task}.yaml').read_text())
    assert params['/**/sim_bridge']['ros__parameters'] == {'task': task}
    assert params['/**/base_controller']['ros__parameters'] == {'task': task}
    # The residual may override the base action fully, as on every other stack.
    assert params['/**/residual_node']['ros__parameters'] == {
        'residual_limit': 2.0,
        'residual_gain': 1.0,
    }
    launch_file = repo_root / 'launch' / f'{task}.launch.py'
    text = launch_file.read_text()
    assert f"stack_launch_description(task='{task}', default_controller='{CONTROLLER}')" in text
    # The package's launch/ and config/ are links to these folders (test_launch_packaging).
    package = repo_root / 'src' / 'rpl_bringup'
    assert (package / 'launch' / launch_file.name).resolve() == launch_file.resolve()
    assert (package / 'config' / f'{task}.yaml').is_file()


@pytest.mark.parametrize('task', TASKS)
def test_the_launch_file_plans_the_stack_of_its_task(task, repo_root):
    require_stack(task)
    plans = {p.name: p for p in plan_rpl_launch(f'{task}.launch.py')}
    assert list(plans) == ['sim_bridge', 'base_controller', 'residual_node']
    for plan in plans.values():
        assert plan.node.parameter_files[-1] == str(repo_root / 'config' / f'{task}.yaml')
    assert plans['base_controller'].node.parameters['controller'] == CONTROLLER
    # The residual node's override for a model of another task or controller, which its
    # refusal names, is a launch argument of every stack (it could not be reached).
    assert plans['residual_node'].node.parameters['allow_model_mismatch'] is False
    allowed = plan_rpl_launch(f'{task}.launch.py', allow_model_mismatch='true')
    (residual,) = [p for p in allowed if p.name == 'residual_node']
    assert residual.node.parameters['allow_model_mismatch'] is True
    with_extras = plan_rpl_launch(
        f'{task}.launch.py', monitor='true', record='true', bag='/tmp/never_written'
    )
    assert [p.name for p in with_extras][-2:] == ['episode_monitor', 'bag_recorder']


def residual_model(path: pathlib.Path) -> pathlib.Path:
    """Linear residual over the 40 observation and 3 goal entries; small enough that the
    base controller still leads, large enough to change every command."""
    return linear_model(path, known_weights(in_dim=43) / 400, obs_dim=40, goal_dim=3)


class StackRun(RecordedLaunch):
    """One recorded launch of a hook stack (:class:`helpers.RecordedLaunch`) with a linear
    residual model."""

    def __init__(self, task: str, folder: pathlib.Path) -> None:
        self.task = task
        super().__init__(
            folder,
            f'{task}.launch.py',
            residual_model(folder / 'actor.onnx'),
            f'/hooktest_{os.getpid()}_{task}',
            f'episodes:={EPISODES}',
            f'seed:={SEED}',
        )


@pytest.fixture(scope='module')
def stack_runs(tmp_path_factory) -> dict[str, StackRun]:
    """A run of every hook stack whose task and controller are registered, by task. The
    launches run side by side (lockstep: load changes their timing, not their episodes)."""
    runs = {}
    for task in TASKS:
        if missing(task) is None:
            runs[task] = StackRun(task, tmp_path_factory.mktemp(task))
    for run in runs.values():
        run.start()
    for run in runs.values():
        run.finish(timeout_s=120.0)
    return runs


@pytest.fixture(params=TASKS)
def stack_run(request, stack_runs) -> StackRun:
    require_stack(request.param)
    return stack_runs[request.param]


@pytest.mark.integration
def test_the_stack_runs_its_episodes_on_the_residual(stack_run):
    steps = task_spec(stack_run.task).max_episode_steps
    assert steps == 100
    episodes = stack_run.monitor['episodes']
    assert [
        (e['episode'], e['steps'], e['fallback_base'], e['fallback_zero']) for e in episodes
    ] == [(i, steps, 0, 0) for i in range(EPISODES)], stack_run.output
    assert set(stack_run.monitor['base_actions']['tags']) == {CONTROLLER}
    assert set(stack_run.monitor['commands']['tags']) == {'residual'}
    assert 'bag_recorder stopped (code 0)' in stack_run.output


@pytest.mark.integration
def test_the_bag_holds_the_40_observation_fields_and_replays_exactly(stack_run):
    run = load_run(stack_run.bag)
    assert run.problems == ()
    assert run.task == stack_run.task
    assert run.layout.observation_fields == HOOK_OBS_FIELDS == task_spec(run.task).obs_fields
    assert (run.layout.obs_dim, run.layout.goal_dim) == (40, 3)
    for episode in run.episodes:
        assert episode.observation.values.shape == (100, 40 + 3 + 3)
        assert np.all(episode.observation.present) and episode.terminal is not None
    # The residual node fed the model all 40 entries: replaying it gives every command.
    report = replay_model(run, ResidualPolicy.from_file(str(stack_run.model)))
    assert report.steps == EPISODES * 100
    assert float(report.max_abs_diff.max()) == 0.0
    assert report.candidate_residual > 0.01


@pytest.mark.integration
def test_rpl_bag_eval_reports_the_live_run(stack_run, tmp_path, capsys):
    out = tmp_path / 'eval.json'
    # `rpl bag eval BAG` (the CLI's own entry point, in this process: no second start-up)
    args = ['eval', str(stack_run.bag), '--json', str(out), '--png', str(tmp_path / 'e.png')]
    assert bag_cli.main(args) == 0
    assert f'{stack_run.task} run in ' in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result['task'] == stack_run.task
    live = stack_run.monitor['episodes']
    assert [(e['final_distance'], e['episode_return']) for e in result['episodes']] == [
        (e['final_distance'], e['episode_return']) for e in live
    ]
    assert result['summary']['steps'] == result['summary']['residual_steps'] == EPISODES * 100


@pytest.mark.integration
def test_the_stack_episodes_equal_the_in_process_ones(stack_run):
    spec = task_spec(stack_run.task)
    policy = ResidualPolicy.from_file(
        str(stack_run.model), obs_dim=spec.obs_dim, goal_dim=spec.goal_dim, action_dim=4
    )
    local = evaluate(stack_run.task, CONTROLLER, EPISODES, SEED, policy=policy, progress=False)
    live = stack_run.monitor['episodes']
    assert [bool(e['success']) for e in live] == local.successes
    np.testing.assert_allclose(
        [e['final_distance'] for e in live], local.final_distances, rtol=0, atol=1e-9
    )
    np.testing.assert_allclose(
        [e['episode_return'] for e in live], local.returns, rtol=0, atol=1e-9
    )
