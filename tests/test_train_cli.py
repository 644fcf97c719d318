"""`rpl train` / `rpl plot`: smoke run on a real MuJoCo task, export, resume, bad inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers import TOY_RUN, rpl_train, run_tool, toy_problem, toy_trainer
from toy_goal_env import SPEC, ToyFactory

from rpl_interfaces.params import ParameterError
from rpl_residual_node.onnx_actor import OnnxActor
from rpl_trainer.checkpoint import load_checkpoint, save_checkpoint
from rpl_trainer.cli import main
from rpl_trainer.config import make_config
from rpl_trainer.her import usable_memory
from rpl_trainer.learner import Learner
from rpl_trainer.metrics import read_metrics
from rpl_trainer.networks import Actor, Dims
from rpl_trainer.rollout import StepBatch
from rpl_trainer.train import Trainer

SMOKE = [
    'train',
    '--task', 'push',
    '--controller', 'reactive_push',
    '--algo', 'rpl',
    '--seed', '3',
    '--eval-episodes', '2',
    '--set', 'base_eval_episodes=2',
    '--vector-env', 'sync',
    '--no-progress',
]  # fmt: skip
# On top of the shipped push config (rpl_trainer/train_configs/push.yaml); sync envs, as the
# two planner-less envs gain nothing from worker processes in a 200-step test.


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
    """A 200-step `rpl train` run (2 envs x 2 episodes of 50 steps)."""
    out = tmp_path_factory.mktemp('runs') / 'push_rpl'
    assert rpl_train([*SMOKE, '--steps', '200', '--out', str(out)]) == 0
    return out


def actor_from_checkpoint(run) -> Actor:
    state = load_checkpoint(run / 'checkpoint.pt')
    config = make_config(state['learner']['config'])
    actor = Actor(
        Dims(25, 3, 4),
        config.hidden_size,
        config.hidden_layers,
        config.obs_clip,
        config.norm_clip,
        zero_last=True,
        two_frame=config.two_frame,
    )
    actor.load_state_dict(state['learner']['agent']['actor'])
    return actor


def test_smoke_run_writes_the_run_directory(smoke_run):
    names = {p.name for p in smoke_run.iterdir()}
    assert {
        'config.json',
        'metrics.csv',
        'checkpoint.pt',
        'actor.onnx',
        'best_actor.onnx',
        'base_eval.json',
        'summary.json',
    } <= names
    config = json.loads((smoke_run / 'config.json').read_text())
    assert config['task'] == 'push' and config['total_env_steps'] == 200
    metrics = read_metrics(smoke_run / 'metrics.csv')
    np.testing.assert_array_equal(metrics['env_steps'], [0, 200])
    assert np.all(np.isfinite(metrics['eval/success_rate']))
    assert metrics['burn_in'][-1] == 1  # 10 updates: the critic is still burning in
    assert np.isfinite(metrics['losses/critic'][-1])
    # best_actor.onnx is the model of the first evaluation reaching the best success rate.
    summary = json.loads((smoke_run / 'summary.json').read_text())
    success = metrics['eval/success_rate']
    assert summary['best/success_rate'] == success.max()
    assert summary['best/env_steps'] == metrics['env_steps'][np.argmax(success)]
    best = onnx.load(smoke_run / 'best_actor.onnx')
    stamped = {p.key: p.value for p in best.metadata_props}
    assert stamped['env_steps'] == str(summary['best/env_steps'])


def test_smoke_export_loads_in_the_residual_node_and_matches_torch(smoke_run):
    loaded = OnnxActor.load(smoke_run / 'actor.onnx', obs_dim=25, goal_dim=3, action_dim=4)
    assert not loaded.two_frame
    actor = actor_from_checkpoint(smoke_run)
    with torch.no_grad():  # a non-zero last layer, so the comparison is not 0 == 0
        actor.body[-1].weight.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(0))
    # The export of the checkpoint's actor is exactly zero (burn-in kept it at init) ...
    rng = np.random.default_rng(0)
    obs = rng.normal(0.5, 1.0, (64, 25)).astype(np.float32)
    goal = rng.normal(0.5, 1.0, (64, 3)).astype(np.float32)
    session = ort.InferenceSession(
        str(smoke_run / 'actor.onnx'), providers=['CPUExecutionProvider']
    )
    (residual,) = session.run(['residual'], {'observation': obs, 'desired_goal': goal})
    np.testing.assert_array_equal(residual, 0.0)
    # ... and the same graph with the trained normalisers and a random last layer matches
    # torch within 1e-5.
    from rpl_trainer.export import export_onnx

    path = export_onnx(actor, smoke_run.parent / 'perturbed.onnx', scale=2.0)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    (residual,) = session.run(['residual'], {'observation': obs, 'desired_goal': goal})
    with torch.no_grad():
        expected = 2.0 * actor(torch.from_numpy(obs), torch.from_numpy(goal)).numpy()
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(residual, expected, atol=1e-5, rtol=0)


def test_resume_continues_the_run(smoke_run, tmp_path, capsys):
    run = tmp_path / 'resumed'
    shutil.copytree(smoke_run, run)
    assert main([*SMOKE, '--steps', '300', '--out', str(run), '--resume']) == 0
    # It says where it goes on from (after a kill, its last checkpoint: silently earlier).
    assert 'rpl train: resuming at 200 of 300 env steps' in capsys.readouterr().out
    metrics = read_metrics(run / 'metrics.csv')
    np.testing.assert_array_equal(metrics['env_steps'], [0, 200, 300])
    assert load_checkpoint(run / 'checkpoint.pt')['counters']['env_steps'] == 300
    assert json.loads((run / 'config.json').read_text())['total_env_steps'] == 300


def test_a_run_that_cannot_write_its_model_stops_with_one_line(smoke_run, tmp_path, capsys):
    """An OSError in the run (here actor.onnx cannot replace a folder of that name; a full
    disk alike) is one line with the way on, and the checkpoint stays good."""
    run = tmp_path / 'stuck'
    shutil.copytree(smoke_run, run)
    (run / 'actor.onnx').unlink()
    (run / 'actor.onnx').mkdir()
    assert rpl_train([*SMOKE, '--steps', '300', '--out', str(run), '--resume']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if 'warning: 300 env steps' not in line]  # the short budget's
    assert len(err) == 1 and 'actor.onnx' in err[0], err
    assert f'rpl train --out {run} --resume' in err[0]
    assert load_checkpoint(run / 'checkpoint.pt')['counters']['env_steps'] in (200, 300)


def test_bad_inputs_give_clear_errors_and_touch_nothing(smoke_run, tmp_path, capsys):
    def fails(args, *fragments):
        assert main(args) == 2
        out, err = capsys.readouterr()
        for fragment in fragments:
            assert fragment in err, err
        # The refusal is the one line: no start line or budget warning before it.
        assert err.count('\n') == 1 and 'settings from' not in out, (out, err)

    new = str(tmp_path / 'new')
    fails(
        ['train', '--task', 'nope', '--controller', 'reactive_push', '--steps', '9', '--out', new],
        "unknown task 'nope'",
        'slippery_push',
    )
    fails(['train', '--task', 'nope', '--steps', '9', '--out', new], "unknown task 'nope'")
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    fails([*SMOKE, '--steps', '9', '--out', str(blocker)], f'{blocker} is a file')
    fails([*SMOKE, '--steps', '9', '--out', str(blocker / 'run')], 'cannot write the run into')
    fails(['train', '--out', str(blocker), '--resume'], f'{blocker} is a file, not the folder')
    fails(
        ['train', '--task', 'push', '--controller', 'nope', '--steps', '9', '--out', new],
        "unknown controller 'nope'",
        'reactive_push',
    )
    if usable_memory() < 100 * 1024**3:
        huge = ['--set', 'buffer_size=1000000000']  # push: about 140 GiB of buffer
        fails([*SMOKE, '--steps', '9', '--out', new, *huge], 'GiB for the replay buffer')
    assert not (tmp_path / 'new').exists()

    fails(
        [*SMOKE, '--steps', '9', '--out', new, '--show-config', '--set', 'residual_axis_scales=x'],
        "residual_axis_scales: 'x' is not ACTION_FIELD:SCALE",
    )  # --show-config refuses what a run would refuse
    before = {p.name: p.read_bytes() for p in smoke_run.iterdir()}
    fails([*SMOKE, '--steps', '200', '--out', str(smoke_run)], 'already exists', '--resume')
    fails(
        ['train', '--out', str(smoke_run), '--resume', '--steps', '100'],
        'is at 200 env steps already, at or past the 100 asked for: nothing to train',
    )
    fails(
        [*SMOKE, '--steps', '200', '--out', str(smoke_run), '--resume', '--set', 'noise_eps=0.1'],
        'conflicts',
        'noise_eps',
    )
    assert {p.name: p.read_bytes() for p in smoke_run.iterdir()} == before

    fails([*SMOKE, '--steps', '200', '--out', new, '--resume'], 'cannot resume')
    broken = tmp_path / 'broken'
    shutil.copytree(smoke_run, broken)
    (broken / 'checkpoint.pt').write_bytes(b'not a checkpoint')
    fails([*SMOKE, '--steps', '300', '--out', str(broken), '--resume'], 'not a torch checkpoint')
    (broken / 'checkpoint.pt').unlink()
    fails([*SMOKE, '--steps', '300', '--out', str(broken), '--resume'], 'no checkpoint')
    config = (broken / 'config.json').read_text()
    (broken / 'config.json').write_text('[1, 2]')  # "cannot convert dictionary update ..."
    fails(['train', '--out', str(broken), '--resume'], 'it holds a JSON list, not an object')
    (broken / 'config.json').write_text(config)
    # A damaged metrics.csv: the resume appended its rows under a garbage header (exit 0),
    # and rpl plot then refused the file.
    shutil.copy(smoke_run / 'checkpoint.pt', broken / 'checkpoint.pt')
    (broken / 'metrics.csv').write_text('garbage,header\n1,2\n')
    fails(
        [*SMOKE, '--steps', '300', '--out', str(broken), '--resume'],
        'metrics.csv is not a metrics file (no env_steps column); a resume would write its',
        'move it away',
    )
    assert (broken / 'metrics.csv').read_text() == 'garbage,header\n1,2\n'
    # NaN weights: the run's first action failed with a traceback, and so did every resume.
    state = load_checkpoint(smoke_run / 'checkpoint.pt')
    next(iter(state['learner']['agent']['actor'].values())).fill_(float('nan'))
    save_checkpoint(broken / 'checkpoint.pt', state)
    fails(
        [*SMOKE, '--steps', '300', '--out', str(broken), '--resume'],
        'holds NaN or infinite weights in actor: no learner can continue from it',
    )
    nan_start = tmp_path / 'nan_start'
    fails(
        [
            *SMOKE,
            '--steps',
            '300',
            '--out',
            str(nan_start),
            '--init-from',
            str(broken / 'checkpoint.pt'),
        ],
        'holds NaN or infinite weights in actor',
    )
    assert not nan_start.exists()
    fails(  # a model instead of a checkpoint: it said "not a torch checkpoint file"
        [
            *SMOKE,
            '--steps',
            '300',
            '--out',
            str(nan_start),
            '--init-from',
            str(smoke_run / 'actor.onnx'),
        ],
        'is an ONNX model, not a checkpoint',
    )


def test_plot_draws_runs_and_rejects_non_runs(smoke_run, tmp_path, capsys):
    figure = tmp_path / 'fig' / 'success.png'
    assert main(['plot', str(smoke_run), '--out', str(figure)]) == 0
    assert figure.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    not_a_run = tmp_path / 'not_a_run'
    not_a_run.mkdir()
    assert main(['plot', str(not_a_run), '--out', str(tmp_path / 'other.png')]) == 2
    assert 'not a run directory' in capsys.readouterr().err
    # Never a figure into a run it draws (over its metrics.csv with --force, say).
    into = ['plot', str(smoke_run), '--out', str(smoke_run / 'metrics.csv'), '--force']
    assert main(into) == 2
    assert 'is an input of this command' in capsys.readouterr().err
    # The same run twice, or a copy of it (the same seed), would be drawn as two seeds.
    twice = main(['plot', str(smoke_run), str(smoke_run), '--out', str(tmp_path / 't.png')])
    assert twice == 2 and f'{smoke_run} is given twice' in capsys.readouterr().err
    copy = tmp_path / 'copy'
    shutil.copytree(smoke_run, copy)
    assert main(['plot', str(smoke_run), str(copy), '--out', str(tmp_path / 'c.png')]) == 2
    assert 'two runs with seed 3; the curve is a mean over seeds' in capsys.readouterr().err
    assert not (tmp_path / 't.png').exists() and not (tmp_path / 'c.png').exists()


def test_plot_x_axis_reads_wall_clock_minutes(smoke_run):
    """--x minutes puts each evaluation at its run's wall-clock (metrics wall_s / 60)."""
    from rpl_trainer.metrics import read_metrics
    from rpl_trainer.plot import SUCCESS, _load_run

    metrics = read_metrics(smoke_run / 'metrics.csv')
    keep = np.isfinite(metrics[SUCCESS])
    _, steps, _, _ = _load_run(smoke_run)
    _, minutes, success, _ = _load_run(smoke_run, 'minutes')
    np.testing.assert_array_equal(steps, metrics['env_steps'][keep])
    np.testing.assert_allclose(minutes, metrics['wall_s'][keep] / 60)
    assert np.all(np.diff(minutes) > 0) and len(success) == len(minutes)
    assert (
        main(['plot', str(smoke_run), '--x', 'minutes', '--out', str(smoke_run.parent / 'm.png')])
        == 0
    )


def test_group_curves_mean_and_spread():
    from rpl_trainer.plot import group_curves

    grid, mean, low, high = group_curves(
        [(np.array([0.0, 100.0, 200.0]), np.array([0.0, 0.5, 1.0])),
         (np.array([0.0, 50.0, 150.0]), np.array([0.2, 0.2, 0.6]))]
    )  # fmt: skip
    np.testing.assert_array_equal(grid, [0, 50, 100, 150])
    # Interpolated: first run [0, 0.25, 0.5, 0.75], second [0.2, 0.2, 0.4, 0.6].
    np.testing.assert_allclose(mean, [0.1, 0.225, 0.45, 0.675])
    np.testing.assert_allclose(low, [0.0, 0.2, 0.4, 0.6])
    np.testing.assert_allclose(high, [0.2, 0.25, 0.5, 0.75])


def test_resumed_training_equals_uninterrupted_training(tmp_path):
    """Split a toy run at a checkpoint: the resumed run ends with the same weights."""
    straight = toy_trainer(tmp_path / 'a', total_env_steps=120)
    straight.run()
    toy_trainer(tmp_path / 'b', total_env_steps=60).run()
    second = toy_trainer(tmp_path / 'b', total_env_steps=120)
    second.run(resume=True)
    for a, b in zip(
        straight.learner.agent.actor.parameters(),
        second.learner.agent.actor.parameters(),
        strict=True,
    ):
        assert torch.equal(a, b)
    assert straight.learner.agent.updates == second.learner.agent.updates > 0
    assert not straight.learner.agent.actor_frozen  # the actor did learn in both


def test_resume_from_a_mid_run_checkpoint_logs_each_evaluation_once(tmp_path, monkeypatch):
    """A run killed after a mid-run checkpoint and a later evaluation row resumes cleanly."""
    run_dir = tmp_path / 'run'
    saved = []
    original = Trainer._checkpoint

    def keep_first(self):
        original(self)
        if not saved:  # the first mid-run checkpoint, as a kill right after it leaves it
            saved.append((run_dir / 'checkpoint.pt').read_bytes())

    monkeypatch.setattr(Trainer, '_checkpoint', keep_first)
    straight = toy_trainer(run_dir, total_env_steps=120)
    straight.run()
    monkeypatch.setattr(Trainer, '_checkpoint', original)
    (run_dir / 'checkpoint.pt').write_bytes(saved[0])  # metrics.csv still has every row
    resumed = toy_trainer(run_dir, total_env_steps=120)
    resumed.run(resume=True)
    steps = read_metrics(run_dir / 'metrics.csv')['env_steps']
    assert len(set(steps.tolist())) == len(steps), steps  # no evaluation row twice
    assert steps[-1] == 120
    for a, b in zip(
        straight.learner.agent.actor.parameters(),
        resumed.learner.agent.actor.parameters(),
        strict=True,
    ):
        assert torch.equal(a, b)


def test_subprocess_and_sync_vector_envs_give_identical_episodes():
    from rpl_trainer.rollout import SubprocVectorEnv, SyncVectorEnv, collect_episodes

    def policy(step, prev_obs):
        u = np.tanh(step.desired_goal - step.obs).astype(np.float32)
        return u, np.clip(step.base + u, -1, 1).astype(np.float32)

    seeds = [5, 6, 7]
    sync = SyncVectorEnv(ToyFactory(), 3)
    workers = SubprocVectorEnv(ToyFactory(), 3, workers=2)
    try:
        calls = []
        a = collect_episodes(sync, policy, seeds, 10)
        b = collect_episodes(workers, policy, seeds, 10, while_stepping=lambda: calls.append(1))
    finally:
        sync.close()
        workers.close()
    assert len(calls) == 10
    for x, y in zip(a.episodes, b.episodes, strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.success, b.success)


def test_two_frame_goal_consistent_run_exports_a_two_frame_model(tmp_path):
    problem = toy_problem()
    config = make_config(
        {
            'task': 'toy_reach',
            'controller': 'toy_biased',
            'two_frame': True,
            'goal_consistent_her': True,
            'total_env_steps': 80,
            'num_envs': 2,
            'hidden_size': 16,
            'batch_size': 32,
            'burn_in_beta': 0.0,
            'eval_episodes': 2,
            'base_eval_episodes': 2,
        }
    )
    trainer = Trainer(config, problem, tmp_path / 'run', progress=False)
    result = trainer.run()
    assert trainer.learner.sampler.goal_consistent and trainer.learner.agent.updates > 0
    loaded = OnnxActor.load(result.onnx_path, obs_dim=2, goal_dim=2, action_dim=2)
    assert loaded.two_frame
    obs, prev, goal = np.array([0.1, 0.2]), np.array([0.0, 0.3]), np.array([0.5, -0.5])
    with torch.no_grad():
        expected = 2.0 * trainer.learner.agent.actor(
            *(torch.tensor(x[None], dtype=torch.float32) for x in (obs, goal, prev))
        )
    np.testing.assert_allclose(loaded(obs, goal, prev), expected.numpy()[0], atol=1e-5)


def test_greedy_envs_act_deterministically_and_need_an_exploring_env(tmp_path):
    trainer = toy_trainer(tmp_path / 'g', total_env_steps=40)
    greedy = Trainer(
        make_config({**TOY_RUN, 'total_env_steps': 40, 'greedy_envs': 1}),
        trainer.problem,
        tmp_path / 'h',
    )
    n, obs_dim, goal_dim, act_dim = 2, SPEC.obs_dim, SPEC.goal_dim, SPEC.action_dim
    rng = np.random.default_rng(0)
    step = StepBatch(
        obs=rng.normal(size=(n, obs_dim)).astype(np.float32),
        achieved_goal=np.zeros((n, goal_dim), np.float32),
        desired_goal=rng.normal(size=(n, goal_dim)).astype(np.float32),
        base=rng.uniform(-0.5, 0.5, size=(n, act_dim)).astype(np.float32),
        is_success=np.zeros(n, np.float32),
        distance=np.ones(n, np.float32),
    )
    prev = np.zeros((n, obs_dim), np.float32)
    u_plain, executed_plain = trainer._explore(step, prev)
    u_greedy, executed_greedy = greedy._explore(step, prev)
    # Same seed, same random draws: env 0 explores identically, env 1 acts greedily (the
    # zero-initialised residual: exactly the base action).
    np.testing.assert_array_equal(u_greedy[0], u_plain[0])
    np.testing.assert_array_equal(u_greedy[1], np.zeros(act_dim))
    np.testing.assert_allclose(executed_greedy[1], step.base[1])
    assert not np.allclose(executed_plain[1], step.base[1])  # it would have explored
    with pytest.raises(ParameterError, match='greedy_envs'):
        make_config({**TOY_RUN, 'greedy_envs': 2})


def test_the_executed_action_critic_is_for_rpl_without_goal_consistent_her():
    # One line per misuse, naming the setting to change.
    with pytest.raises(ParameterError, match="scratch's critic already sees"):
        make_config({**TOY_RUN, 'algo': 'scratch', 'critic_action': 'executed'})
    with pytest.raises(ParameterError, match='set goal_consistent_her false'):
        make_config({**TOY_RUN, 'critic_action': 'executed', 'goal_consistent_her': True})
    with pytest.raises(ParameterError, match='critic_action'):
        make_config({**TOY_RUN, 'critic_action': 'base'})
    # A learner without a base controller cannot recompute base actions.
    config = make_config({**TOY_RUN, 'critic_action': 'executed'})
    with pytest.raises(ValueError, match='needs the base controller'):
        Learner(config, Dims(4, 2, 2), 10, lambda achieved, desired: -np.ones(len(achieved)))


def test_plot_groups_seeds_of_one_config_and_separates_variants():
    from rpl_trainer.plot import variant_keys  # matplotlib-free, like group_curves above

    base = {'algo': 'rpl', 'task': 't', 'seed': 0, 'total_env_steps': 100, 'greedy_envs': 0}
    configs = [
        base,
        {**base, 'seed': 1, 'total_env_steps': 300},  # another seed, longer: same group
        {**base, 'greedy_envs': 1},  # another setting: its own group, labelled with it
        {'algo': 'scratch', 'task': 't', 'seed': 0, 'greedy_envs': 0},
        {'algo': 'rpl', 'task': 't', 'seed': 2},  # an older run: greedy_envs is the default
    ]
    keys = variant_keys(configs)
    assert keys == [
        ('rpl', 'greedy_envs=0'),
        ('rpl', 'greedy_envs=0'),
        ('rpl', 'greedy_envs=1'),
        ('scratch', ''),
        ('rpl', 'greedy_envs=0'),
    ]


def push_node_checkpoint(path, **settings):
    """A trainer node checkpoint (:func:`rpl_trainer.offline.save_learner`) of a small push
    learner that stored 2 made-up episodes and took 4 gradient steps; returns the learner."""
    from rpl_trainer.her import EpisodeBatch
    from rpl_trainer.offline import OfflineLearner, save_learner

    values = {'task': 'push', 'controller': 'reactive_push', 'hidden_size': 16}
    learner = OfflineLearner.for_task(make_config({**values, 'batch_size': 16, **settings}))
    dims, steps = learner.dims, learner.episode_steps
    rng = np.random.default_rng(0)
    draw = lambda *shape: rng.uniform(-1, 1, (2, *shape)).astype(np.float32)  # noqa: E731
    learner.store(
        EpisodeBatch(
            obs=draw(steps + 1, dims.obs_dim),
            achieved_goal=draw(steps + 1, dims.goal_dim),
            desired_goal=draw(steps, dims.goal_dim),
            action=draw(steps, dims.action_dim),
            executed=draw(steps, dims.action_dim),
        )
    )
    learner.update(4)
    save_learner(path, learner, {'bags': []})
    return learner


INIT_FROM_RUN = [
    'train',
    '--steps', '100',
    '--eval-interval', '100',
    '--eval-episodes', '2',
    '--set', 'base_eval_episodes=0',
    '--vector-env', 'sync',
    '--no-progress',
]  # fmt: skip


def test_init_from_a_trainer_node_checkpoint_continues_its_learner(tmp_path, capsys):
    node = tmp_path / 'live' / 'trainer.pt'
    push_node_checkpoint(node)
    out = tmp_path / 'from_live'
    assert rpl_train([*INIT_FROM_RUN, '--init-from', str(node), '--out', str(out)]) == 0
    assert f'settings from the checkpoint {node} (--init-from)' in capsys.readouterr().out
    config = json.loads((out / 'config.json').read_text())
    assert (config['task'], config['hidden_size'], config['batch_size']) == ('push', 16, 16)
    state = load_checkpoint(out / 'checkpoint.pt')
    assert state['kind'] == 'rpl_train' and state['counters']['env_steps'] == 100
    assert state['learner']['counters']['episodes'] == 2 + 2  # the node's, then this run's
    assert state['learner']['agent']['updates'] > 4


def test_init_from_refuses_other_learner_settings_with_one_line(tmp_path, capsys):
    node = tmp_path / 'trainer.pt'
    push_node_checkpoint(node)
    out = tmp_path / 'run'
    cases = (
        (['--set', 'batch_size=32'], 'batch_size: 16 -> 32'),
        (['--task', 'slippery_push'], "task: 'push' -> 'slippery_push'"),
        (['--task', 'slippery_push'], 'leave out what changes them'),  # no --config given
        (['--resume'], '--init-from starts a new run; --resume continues'),
    )
    for extra, message in cases:
        assert main([*INIT_FROM_RUN, '--init-from', str(node), '--out', str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and message in err, err
    missing = tmp_path / 'missing.pt'
    assert main([*INIT_FROM_RUN, '--init-from', str(missing), '--out', str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and f'--init-from: no checkpoint at {missing}' in err, err
    assert not out.exists()


def test_a_scratch_model_states_the_zero_controller_it_runs_on(smoke_run, tmp_path):
    from rpl_bringup.evaluation import check_model_identity

    out = tmp_path / 'push_scratch'
    # The base it measured as 'Initial' has non-default parameters; the model states none.
    gain = ['--controller-param', 'push_gain=7']
    args = [*SMOKE, '--algo', 'scratch', '--steps', '200', *gain, '--out', str(out)]
    assert main(args) == 0
    for name in ('actor.onnx', 'best_actor.onnx'):
        props = {p.key: p.value for p in onnx.load(out / name).metadata_props}
        assert (props['task'], props['controller'], props['algo']) == ('push', 'zero', 'scratch')
    # It runs behind the zero controller without --allow-model-mismatch, and is refused
    # behind the controller the run measured as 'Initial' (the actor is the whole action).
    assert check_model_identity('push', 'zero', str(out / 'actor.onnx')) == []
    with pytest.raises(ValueError, match="trained for controller 'zero'"):
        check_model_identity('push', 'reactive_push', str(out / 'actor.onnx'))
    assert props['controller_params'] == ''  # the zero controller's: none
    # An RPL model states its base controller and that controller's parameters that differ
    # from the defaults ('' here), and rpl eval warns, once, when it runs on others.
    props = {p.key: p.value for p in onnx.load(smoke_run / 'actor.onnx').metadata_props}
    assert (props['controller'], props['controller_params']) == ('reactive_push', '')
    model = str(smoke_run / 'actor.onnx')
    assert check_model_identity('push', 'reactive_push', model, controller_params={}) == []
    [warning] = check_model_identity(
        'push', 'reactive_push', model, controller_params={'push_gain': 7.0, 'push_offset': 0.075}
    )
    assert "parameters the defaults, this run uses 'push_gain=7.0'" in warning


def test_plot_draws_reference_lines_and_refuses_malformed_ones(smoke_run, tmp_path, capsys):
    plain, marked = tmp_path / 'plain.png', tmp_path / 'marked.png'
    assert main(['plot', str(smoke_run), '--out', str(plain)]) == 0
    argv = ['plot', str(smoke_run), '--out', str(marked), '--reference', 'PETS (10 eps)=0.4']
    assert main(argv) == 0
    assert marked.read_bytes() != plain.read_bytes()  # the line and its legend entry
    for bad in ('PETS', 'PETS=fast', '=0.4', 'PETS=nan'):
        with pytest.raises(SystemExit) as exit_info:
            main(['plot', str(smoke_run), '--out', str(tmp_path / 'x.png'), '--reference', bad])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert f"must be LABEL=VALUE with a finite number, e.g. PETS=-110.9, got '{bad}'" in err
    assert not (tmp_path / 'x.png').exists()


def test_plot_until_draws_the_start_of_a_long_run_and_refuses_an_empty_one(
    repo_root, tmp_path, capsys
):
    run = repo_root / 'results' / 'baselines' / 'complex_hook_rpl_s0'  # 1M steps, 21 evals
    whole, start = tmp_path / 'whole.png', tmp_path / 'start.png'
    assert main(['plot', str(run), '--out', str(whole)]) == 0
    assert main(['plot', str(run), '--out', str(start), '--until', '100000']) == 0
    assert start.read_bytes() != whole.read_bytes()
    # Its first evaluation is at 0.25 min of wall clock: nothing to draw before that.
    argv = ['plot', str(run), '--out', str(tmp_path / 'x.png'), '--x', 'minutes']
    assert main([*argv, '--until', '0.1']) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'has no evaluation at or before --until 0.1' in err, err
    for bad in ('0', '-5', 'soon', 'inf'):
        with pytest.raises(SystemExit):
            main([*argv, '--until', bad])
        assert f"must be a number above 0, got '{bad}'" in capsys.readouterr().err
    assert not (tmp_path / 'x.png').exists()


def test_residual_size_tool_reads_a_run_checkpoint(smoke_run, repo_root, tmp_path):
    done = run_tool(repo_root, 'residual_size', str(smoke_run / 'checkpoint.pt'), '--states', '50')
    assert done.returncode == 0, done.stderr
    # 200 steps end no burn-in: the zero-initialised actor adds nothing on any axis.
    line = next(x for x in done.stdout.splitlines() if x.startswith('tanh(f) mean_abs'))
    assert line.endswith('[0. 0. 0. 0.]'), done.stdout
    assert 'x residual_scale 2' in done.stdout
    missing = tmp_path / 'none.pt'
    done = run_tool(repo_root, 'residual_size', str(missing))
    assert done.returncode == 1 and done.stderr.count('\n') == 1
    assert f'no checkpoint at {missing}' in done.stderr


def test_the_initial_line_is_the_base_level_of_the_runs_that_act_through_the_base():
    from rpl_trainer.plot import initial_levels

    rpl, expert, scratch = {'algo': 'rpl'}, {'algo': 'expert_explore'}, {'algo': 'scratch'}
    # Scratch measured another base (e.g. another cache): not RPL's starting point.
    assert initial_levels([(rpl, -112.0), (rpl, -110.0), (scratch, -129.0)]) == [
        ('Initial', -111.0)
    ]
    assert initial_levels([(expert, 0.4), (scratch, 0.1), (rpl, None)]) == [('Initial', 0.4)]
    assert initial_levels([({}, 0.5), (scratch, 0.1)]) == [('Initial', 0.5)]  # no algo: RPL
    [(label, level)] = initial_levels([(scratch, 0.1), (scratch, 0.3)])
    assert label == 'Initial' and level == pytest.approx(0.2)
    assert initial_levels([(rpl, None), (scratch, None)]) == []
    assert initial_levels([(rpl, None), (scratch, 0.1)]) == []  # not RPL's starting point
    # Runs on two bases (a blended cache): one line each, named by the parameter that
    # differs only (the cache file they share is left out; the order of items is not a
    # difference, nor is a parameter named at its default).
    cache = 'cache_file=c.npz'
    plain = {'algo': 'rpl', 'controller': 'cached_pets', 'controller_params': cache}
    same = {**plain, 'controller_params': f'neighbours=1,{cache}'}
    blended = {**plain, 'controller_params': f'neighbours=2,{cache}'}
    reordered = {**plain, 'controller_params': f'{cache},neighbours=2'}
    levels = [(plain, -113.0), (blended, -99.0), (same, -115.0), (reordered, -101.0)]
    assert initial_levels(levels) == [
        ('Initial, neighbours=1', -114.0),
        ('Initial, neighbours=2', -100.0),
    ]
    # The curves' labels name the same difference, not the whole parameter text.
    from rpl_trainer.plot import variant_keys

    assert variant_keys([plain, blended, reordered, same]) == [
        ('rpl', 'neighbours=1'),
        ('rpl', 'neighbours=2'),
        ('rpl', 'neighbours=2'),
        ('rpl', 'neighbours=1'),
    ]


def test_a_resume_keeps_the_precision_auto_resolved_to(tmp_path):
    """update_precision=auto was measured again at every resume: one run could switch from
    bfloat16 to float32 half-way, and summary.json said only the last."""
    run = tmp_path / 'auto'
    assert (
        main([*SMOKE, '--steps', '200', '--out', str(run), '--set', 'update_precision=auto']) == 0
    )
    state = load_checkpoint(run / 'checkpoint.pt')
    measured = state['learner']['agent']['update_precision']
    assert measured in ('bfloat16', 'float32')
    other = 'float32' if measured == 'bfloat16' else 'bfloat16'
    state['learner']['agent']['update_precision'] = other  # as if measured so at the start
    save_checkpoint(run / 'checkpoint.pt', state)
    assert main([*SMOKE, '--steps', '300', '--out', str(run), '--resume']) == 0
    assert json.loads((run / 'summary.json').read_text())['update_precision'] == other
