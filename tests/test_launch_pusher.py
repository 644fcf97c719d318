"""The MBRLPusher stack: mbrl_pusher.launch.py with config/mbrl_pusher.yaml, a fixed-goal
task (no goal fields on the observation stream: goal_dim 0) with 7 torques in [-2, 2] N m.

Fast checks of the files, then one short recorded lockstep run (2 episodes of 150 steps)
through ``rpl launch`` with the zero base controller (``controller:=zero``: the checks do not
depend on the cached PETS actions), a tiny residual exported through the trainer's export
path (:func:`rpl_trainer.export.export_onnx`, goal_dim 0), the episode monitor and the bag
recorder; beside it one episode of the launch file as shipped (its default controller,
cached_pets) with the committed model ``models/mbrl_pusher_cached_pets/actor.onnx``.
Checked: every command came from the residual, the bag holds the 20 observation fields and
nothing else, replaying the model on it gives every command exactly, commands use the task's
whole torque range (beyond the Fetch +-1), ``rpl bag eval`` reports the monitor's episodes
(success and return), and the episodes equal the in-process ones
(:func:`rpl_bringup.evaluation.evaluate_model`, the ``rpl eval --model`` path) of the same
model and seeds, for both runs.
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest
import yaml
from helpers import RecordedLaunch, plan_rpl_launch

import rpl_base_controllers
from rpl_bags import bag_cli
from rpl_bags.bag_replay import replay_model
from rpl_bags.recorded import load_run
from rpl_base_controllers.registry import available_controllers, make_controller
from rpl_bringup.evaluation import evaluate_model, task_residual_config
from rpl_residual_node.policy import ResidualPolicy
from rpl_sim_bridge.tasks import make_task, task_spec
from rpl_sim_bridge.tasks.pusher_specs import PUSHER_OBS_FIELDS

TASK = 'mbrl_pusher'
DEFAULT_CONTROLLER = 'cached_pets'  # the launch file's default
CONTROLLER = 'zero'  # what the run uses
EPISODES, SEED = 2, 3
STEPS = 150
COMMITTED_MODEL = 'models/mbrl_pusher_cached_pets/actor.onnx'


def default_controller_missing() -> str | None:
    """Why the launch file's default controller cannot run here (None: it can)."""
    if DEFAULT_CONTROLLER not in available_controllers():
        return f'controller {DEFAULT_CONTROLLER!r} is not registered yet (`rpl list controllers`)'
    try:
        make_controller(DEFAULT_CONTROLLER, task=TASK)
    except ValueError as exc:  # e.g. its shipped cache file is not there yet
        return f'controller {DEFAULT_CONTROLLER!r} cannot be built: {exc}'
    return None


def test_the_config_file_sets_the_task_and_the_torque_range(repo_root):
    params = yaml.safe_load((repo_root / 'config' / f'{TASK}.yaml').read_text())
    assert params['/**/sim_bridge']['ros__parameters'] == {'task': TASK}
    assert params['/**/base_controller']['ros__parameters'] == {'task': TASK}
    residual = params['/**/residual_node']['ros__parameters']
    spec = task_spec(TASK)
    # The node clips commands to the task's bounds (as the sim bridge and the trainer do),
    # the same rule the in-process evaluation uses.
    mixing = task_residual_config(spec)
    assert (mixing.action_low, mixing.action_high) == (spec.action_low, spec.action_high)
    # The node lets through the largest residual the trainer can compose (residual_scale up
    # to the bounds' range, 4; the committed model's is 1).
    assert mixing.residual_limit == spec.action_high - spec.action_low
    assert residual == {
        'residual_limit': mixing.residual_limit,
        'residual_gain': 1.0,
        'action_low': spec.action_low,
        'action_high': spec.action_high,
    }
    assert (spec.action_low, spec.action_high) == (-2.0, 2.0)
    launch_file = repo_root / 'launch' / f'{TASK}.launch.py'
    text = launch_file.read_text()
    call = f"stack_launch_description(task='{TASK}', default_controller='{DEFAULT_CONTROLLER}')"
    assert call in text
    package = repo_root / 'src' / 'rpl_bringup'
    assert (package / 'launch' / launch_file.name).resolve() == launch_file.resolve()
    assert (package / 'config' / f'{TASK}.yaml').is_file()


def test_the_launch_file_plans_the_stack_of_its_task(repo_root):
    plans = {p.name: p for p in plan_rpl_launch(f'{TASK}.launch.py', controller=CONTROLLER)}
    assert list(plans) == ['sim_bridge', 'base_controller', 'residual_node']
    for plan in plans.values():
        assert plan.node.parameter_files[-1] == str(repo_root / 'config' / f'{TASK}.yaml')
    assert plans['base_controller'].node.parameters['controller'] == CONTROLLER
    if DEFAULT_CONTROLLER in available_controllers():
        default = {p.name: p for p in plan_rpl_launch(f'{TASK}.launch.py')}
        assert default['base_controller'].node.parameters['controller'] == DEFAULT_CONTROLLER


def test_controller_arguments_are_checked_together_before_any_node(tmp_path):
    """Each argument was checked alone: neighbours 5 and cache_size 3 (a blend of 5 of 3
    entries), or particles 3 for a 5-member ensemble file, started the stack and crashed the
    controller node (a respawn, then exit 2)."""
    with pytest.raises(ValueError, match=r'launch arguments .*neighbours:=5.*gives 3'):
        plan_rpl_launch(f'{TASK}.launch.py', neighbours='5', cache_size='3')
    ensemble = tmp_path / 'ensemble.npz'
    shipped = pathlib.Path(rpl_base_controllers.__file__).parent / 'data' / 'pets_pusher_v1.npz'
    ensemble.write_bytes(shipped.read_bytes())
    with pytest.raises(ValueError, match=r'particles \(3\) must be a multiple of .* \(5\)'):
        plan_rpl_launch(
            f'{TASK}.launch.py', controller='pets', model_file=str(ensemble), particles='3'
        )
    # The shipped ensemble too (no model_file): it was found when the planner was built,
    # after the controller node had started and respawned once.
    with pytest.raises(ValueError, match=r'particles \(3\) must be a multiple of .* \(5\)'):
        plan_rpl_launch(f'{TASK}.launch.py', controller='pets', particles='3')


def tiny_model(path: pathlib.Path, controller: str = CONTROLLER) -> pathlib.Path:
    """A one-frame actor with fixed random weights and no goal input, exported as the
    trainer exports it; normalised around episode 0's first observation (std 0.1), so its
    residual moves the arm and reaches past +-1 N m, but does not saturate everywhere."""
    import torch

    from rpl_trainer.export import export_onnx, task_identity
    from rpl_trainer.networks import Actor, Dims

    spec = task_spec(TASK)
    torch.manual_seed(0)
    actor = Actor(
        Dims(spec.obs_dim, spec.goal_dim, spec.action_dim),
        16,
        2,
        obs_clip=200.0,
        norm_clip=5.0,
        zero_last=False,
    )
    first, _ = make_task(TASK).reset(seed=SEED)
    actor.obs_norm.set_stats(first['observation'], np.full(spec.obs_dim, 0.1))
    identity = task_identity(spec, controller, residual_scale=2.0)
    return export_onnx(actor, path, scale=2.0, identity=identity)


class StackRun(RecordedLaunch):
    """One recorded launch of the pusher stack (:class:`helpers.RecordedLaunch`).

    Args:
        folder: Where the model, bag, monitor JSON and log go.
        controller: The base controller (None: the launch file's default).
        episodes: Episodes to run (seeds SEED, SEED + 1, ...).
        model: The residual (None: :func:`tiny_model` for the controller).
    """

    def __init__(
        self,
        folder: pathlib.Path,
        controller: str | None,
        episodes: int,
        model: pathlib.Path | None = None,
    ) -> None:
        self.controller = controller or DEFAULT_CONTROLLER
        self.episodes = episodes
        super().__init__(
            folder,
            f'{TASK}.launch.py',
            model or tiny_model(folder / 'actor.onnx', self.controller),
            f'/pushertest_{os.getpid()}_{self.controller}',
            f'episodes:={episodes}',
            f'seed:={SEED}',
            *([f'controller:={controller}'] if controller else []),
        )


@pytest.fixture(scope='module')
def stack_runs(tmp_path_factory, repo_root) -> dict[str, StackRun]:
    """The zero-base run (always) and, once it can run here, one episode of the launch
    file's default controller with the committed model, side by side (lockstep: load
    changes timing, not episodes)."""
    runs = {CONTROLLER: StackRun(tmp_path_factory.mktemp('zero'), CONTROLLER, EPISODES)}
    if default_controller_missing() is None:
        folder = tmp_path_factory.mktemp(DEFAULT_CONTROLLER)
        runs[DEFAULT_CONTROLLER] = StackRun(folder, None, 1, repo_root / COMMITTED_MODEL)
    for run in runs.values():
        run.start()
    for run in runs.values():
        run.finish(timeout_s=120.0)
    return runs


@pytest.fixture
def stack_run(stack_runs) -> StackRun:
    return stack_runs[CONTROLLER]


@pytest.mark.integration
def test_the_stack_runs_its_episodes_on_the_residual(stack_run):
    assert task_spec(TASK).max_episode_steps == STEPS
    episodes = stack_run.monitor['episodes']
    assert [
        (e['episode'], e['steps'], e['fallback_base'], e['fallback_zero']) for e in episodes
    ] == [(i, STEPS, 0, 0) for i in range(EPISODES)], stack_run.output
    assert set(stack_run.monitor['base_actions']['tags']) == {CONTROLLER}
    # (the monitor's tally is best effort; the bag test checks every command's source)
    assert set(stack_run.monitor['commands']['tags']) == {'residual'}
    assert set(stack_run.monitor['observations']['tags']) == {TASK}
    assert 'bag_recorder stopped (code 0)' in stack_run.output
    # The monitor reports the result of a fixed-goal task: the mean return.
    returns = [e['episode_return'] for e in episodes]
    assert stack_run.monitor['summary']['mean_return'] == pytest.approx(np.mean(returns))
    assert f'mean return {np.mean(returns):.2f}, fallbacks' in stack_run.output


@pytest.mark.integration
def test_the_bag_holds_the_20_fields_and_replays_every_command(stack_run):
    run = load_run(stack_run.bag)
    assert run.problems == ()
    assert run.task == TASK
    assert run.layout.observation_fields == PUSHER_OBS_FIELDS == task_spec(TASK).obs_fields
    assert (run.layout.obs_dim, run.layout.goal_dim) == (20, 0)
    assert len(run.episodes) == EPISODES
    for episode in run.episodes:
        assert episode.observation.values.shape == (STEPS, 20)  # no goal columns
        assert np.all(episode.observation.present) and episode.terminal is not None
        assert set(episode.command.tags) == {'residual'}
        # The node clipped to the task's torque range, not to the Fetch +-1.
        commands = np.abs(episode.command.values)
        assert commands.max() > 1.2 and commands.max() <= 2.0
    policy = ResidualPolicy.from_file(str(stack_run.model), task_residual_config(task_spec(TASK)))
    report = replay_model(run, policy)
    assert report.steps == EPISODES * STEPS
    assert float(report.max_abs_diff.max()) == 0.0
    assert report.candidate_residual > 0.1


@pytest.mark.integration
def test_rpl_bag_eval_reports_the_live_run(stack_run, tmp_path, capsys):
    out = tmp_path / 'eval.json'
    args = ['eval', str(stack_run.bag), '--json', str(out), '--png', str(tmp_path / 'e.png')]
    assert bag_cli.main(args) == 0
    assert f'{TASK} run in ' in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result['task'] == TASK
    live = stack_run.monitor['episodes']
    assert [(e['success'], e['episode_return']) for e in result['episodes']] == [
        (e['success'], e['episode_return']) for e in live
    ]
    assert result['summary']['steps'] == result['summary']['residual_steps'] == EPISODES * STEPS


@pytest.mark.integration
def test_the_stack_episodes_equal_the_in_process_ones(stack_run):
    local = evaluate_model(TASK, CONTROLLER, EPISODES, SEED, str(stack_run.model))
    live = stack_run.monitor['episodes']
    assert [bool(e['success']) for e in live] == local.successes
    np.testing.assert_allclose(
        [e['episode_return'] for e in live], local.returns, rtol=0, atol=1e-9
    )
    np.testing.assert_allclose(
        [e['final_distance'] for e in live], local.final_distances, rtol=0, atol=1e-9
    )


@pytest.mark.integration
def test_the_default_controller_runs_through_the_stack_as_in_process(stack_runs):
    """One episode of the launch file as shipped (its default base controller, no
    controller:=) with the committed model: the base actions come from it, every command
    from the residual, the episode equals the in-process one."""
    reason = default_controller_missing()
    if reason:
        pytest.skip(reason)
    run = stack_runs[DEFAULT_CONTROLLER]
    live = run.monitor['episodes']
    assert [(e['steps'], e['fallback_base'], e['fallback_zero']) for e in live] == [
        (STEPS, 0, 0)
    ], run.output
    assert set(run.monitor['base_actions']['tags']) == {DEFAULT_CONTROLLER}
    assert set(run.monitor['commands']['tags']) == {'residual'}
    local = evaluate_model(TASK, DEFAULT_CONTROLLER, 1, SEED, str(run.model))
    assert [bool(e['success']) for e in live] == local.successes
    np.testing.assert_allclose(
        [e['episode_return'] for e in live], local.returns, rtol=0, atol=1e-9
    )
