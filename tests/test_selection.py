"""`rpl train --set snapshots=true` and `rpl select`: the model of every periodic evaluation
is kept, and the best few are re-evaluated on more (selection) episodes (real MuJoCo push
runs, real ONNX Runtime)."""

from __future__ import annotations

import csv
import hashlib
import json
import pathlib
import shutil

import numpy as np
import pytest
from helpers import rpl_train, set_model_metadata, toy_trainer
from onnx_builders import corrupt_file, linear_model

from rpl_bringup.cli import SELECTION_SEED
from rpl_bringup.cli import main as rpl
from rpl_bringup.selection import Snapshot, candidates, choose, read_run
from rpl_sim_bridge.layout import FetchObs
from rpl_sim_bridge.tasks import task_spec
from rpl_trainer.export import read_metadata
from rpl_trainer.metrics import read_metrics
from rpl_trainer.run_dir import snapshot_name, snapshot_steps, snapshots
from rpl_trainer.train import Trainer

RUN = [
    'train',
    '--task', 'push',
    '--controller', 'reactive_push',
    '--seed', '3',
    '--eval-episodes', '2',
    '--set', 'base_eval_episodes=0',
    '--set', 'eval_interval=100',
    '--set', 'snapshots=true',
    '--vector-env', 'sync',
    '--no-progress',
    '--steps', '200',
]  # fmt: skip


@pytest.fixture(scope='module')
def snapshot_run(tmp_path_factory):
    """A 200-step push run evaluated at 0, 100 and 200 steps, a snapshot each."""
    out = tmp_path_factory.mktemp('runs') / 'push'
    assert rpl_train([*RUN, '--out', str(out)]) == 0
    return out


def test_a_finished_run_with_snapshots_names_rpl_select(tmp_path, capsys):
    run = tmp_path / 'run'
    assert rpl_train([*RUN, '--steps', '100', '--out', str(run)]) == 0
    assert f'`rpl select {run}`' in capsys.readouterr().out


def fresh_copy(run: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of the run's files that a test may change."""
    return pathlib.Path(shutil.copytree(run, tmp_path / 'run'))


def set_periodic(
    run: pathlib.Path, scores: dict[int, float], column: str = 'eval/success_rate'
) -> None:
    """Rewrite metrics.csv's periodic score (``column``) of the rows at the given env steps."""
    path = run / 'metrics.csv'
    with path.open(newline='') as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        step = int(row['env_steps'])
        if step in scores:
            row[column] = str(scores[step])
    with path.open('w', newline='') as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def lifting_model(path: pathlib.Path, like: pathlib.Path) -> pathlib.Path:
    """A push residual that drives the gripper up all episode (dz = 2 tanh(10 * grip
    height), within the scale 2 the run's models state: the block is never pushed), with
    the metadata of the run's model ``like``."""
    spec = task_spec('push')
    weights = np.zeros((spec.action_dim, spec.obs_dim + spec.goal_dim), np.float32)
    weights[2, FetchObs.GRIP_POS.start + 2] = 10.0
    linear_model(path, weights, obs_dim=spec.obs_dim, goal_dim=spec.goal_dim, scale=2.0)
    return set_model_metadata(path, read_metadata(like))


def test_a_run_keeps_a_snapshot_of_every_periodic_evaluation(snapshot_run):
    files = sorted((snapshot_run / 'snapshots').iterdir())
    assert [snapshot_steps(f.name) for f in files] == [0, 100, 200]
    assert [f.name for f in files] == [pathlib.Path(snapshot_name(s)).name for s in (0, 100, 200)]
    for path, steps in zip(files, (0, 100, 200), strict=True):
        meta = read_metadata(path)
        assert meta['training_steps'] == str(steps) and meta['task'] == 'push'


def test_candidates_rank_by_periodic_score_and_choose_by_selection_score():
    snaps = [Snapshot(pathlib.Path(f'{s}.onnx'), s, p) for s, p in ((0, 0.5), (1, 0.9), (2, 0.9))]
    ranked = candidates(snaps, 2)
    assert [s.env_steps for s in ranked] == [1, 2]  # ties: the earlier first
    assert choose([(0.7, -0.02), (0.8, -0.03)]) == 1  # success first
    assert choose([(0.8, -0.03), (0.8, -0.02)]) == 1  # then the smaller final distance
    assert choose([(0.8, -0.02), (0.8, -0.02)]) == 0  # a full tie keeps the higher-ranked
    with pytest.raises(ValueError, match='at least 1'):
        candidates(snaps, 0)


def test_select_overrides_a_lucky_periodic_best(snapshot_run, tmp_path, capsys):
    run = fresh_copy(snapshot_run, tmp_path)
    # The snapshot at 100 steps becomes a model that fails every episode, and the run's
    # periodic evaluation (as if lucky) ranks it first; the others rank below it.
    lucky = run / snapshot_name(100)
    lifting_model(lucky, like=run / snapshot_name(0))
    set_periodic(run, {0: 0.5, 100: 1.0, 200: 0.5})

    assert rpl(['select', str(run), '--top', '2', '--episodes', '2', '--no-progress']) == 0
    record = json.loads((run / 'selection.json').read_text())
    assert [c['env_steps'] for c in record['candidates']] == [100, 0]
    assert [c['periodic_success_rate'] for c in record['candidates']] == [1.0, 0.5]
    scores = [c['success_rate'] for c in record['candidates']]
    assert scores[0] == 0.0 and scores[1] == 1.0
    assert record['selected_env_steps'] == 0 and record['seed'] == SELECTION_SEED
    chosen = (run / snapshot_name(0)).read_bytes()
    assert (run / 'selected_actor.onnx').read_bytes() == chosen
    assert 'selected snapshots/actor_000000000.onnx' in capsys.readouterr().out

    # Nothing is written over without --force; with it, the selection is made again.
    (run / 'selection.json').write_text('{"earlier": true}')
    assert rpl(['select', str(run), '--top', '2', '--episodes', '2', '--no-progress']) == 2
    err = capsys.readouterr().err
    assert 'exists already' in err and '--force' in err
    assert json.loads((run / 'selection.json').read_text()) == {'earlier': True}
    args = ['select', str(run), '--top', '1', '--episodes', '2', '--no-progress', '--force']
    assert rpl(args) == 0
    record = json.loads((run / 'selection.json').read_text())
    assert record['selected_env_steps'] == 100
    assert (run / 'selected_actor.onnx').read_bytes() == lucky.read_bytes()
    assert record['sha256'] == hashlib.sha256(lucky.read_bytes()).hexdigest()


def test_select_refuses_what_it_cannot_select_from(snapshot_run, tmp_path, capsys):
    def fails(args, *words):
        assert rpl(['select', *args, '--no-progress']) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and all(w in err[0] for w in words), err

    fails([str(tmp_path)], 'no `rpl train` run in')
    run = fresh_copy(snapshot_run, tmp_path)
    config = (run / 'config.json').read_text()
    (run / 'config.json').write_text('{"seed": "three"}')
    fails([str(run)], 'config.json is not a valid config')
    (run / 'config.json').write_text(config)
    fails([str(run), '--top', '0'], '--top must be at least 1')
    metrics = (run / 'metrics.csv').read_text()
    (run / 'metrics.csv').write_text(metrics.replace('\n0,', '\nzero,', 1))
    fails([str(run)], "metrics.csv line 2: env_steps 'zero' is not a number")
    (run / 'metrics.csv').write_text(metrics.replace('\n0,', '\n,', 1))  # was a traceback
    fails([str(run)], "metrics.csv line 2: env_steps '' is not a step count")
    header = metrics.splitlines()[0]
    (run / 'metrics.csv').write_text(
        metrics.replace(header, header.replace('eval/success_rate', 'x'))
    )
    fails([str(run)], 'has no eval/success_rate column')
    (run / 'metrics.csv').write_text(metrics)
    fails([str(run), '--episodes', '0'], '--episodes must be in 1..1000000000, got 0')
    # Never on the held-out seeds: choosing a model on them would leave nothing unseen.
    fails([str(run), '--seed', '900', '--episodes', '101'], 'include the held-out seeds 1000..')
    for path in (run / 'snapshots').iterdir():
        path.unlink()
    fails([str(run)], 'has no snapshots', 'snapshots=true')
    assert not (run / 'selected_actor.onnx').exists()


def test_a_bad_candidate_is_refused_before_any_episode_runs(snapshot_run, tmp_path, capsys):
    run = fresh_copy(snapshot_run, tmp_path)
    corrupt_file(run / snapshot_name(200))
    set_periodic(run, {0: 0.5, 100: 0.5, 200: 1.0})
    assert rpl(['select', str(run), '--top', '2', '--episodes', '2']) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert 'actor_000000200.onnx' in lines[-1] and lines[-1].startswith('rpl select: error:')
    assert 'actor_000000000' not in out  # no candidate was evaluated
    assert not (run / 'selected_actor.onnx').exists() and not (run / 'selection.json').exists()


def test_a_scratch_run_is_selected_on_the_zero_controller(tmp_path, capsys):
    """Scratch models output the whole action: they run on the zero base, as exported."""
    run = tmp_path / 'scratch'
    assert rpl_train([*RUN, '--algo', 'scratch', '--steps', '100', '--out', str(run)]) == 0
    assert read_run(run).controller == 'zero'
    assert rpl(['select', str(run), '--episodes', '1', '--no-progress']) == 0
    assert json.loads((run / 'selection.json').read_text())['controller'] == 'zero'


def test_a_resumed_run_drops_the_snapshots_from_after_its_checkpoint(tmp_path, monkeypatch):
    """Killed after a mid-run checkpoint and later evaluations, then resumed without
    snapshots: no model of the abandoned part stays to be paired with a new row."""
    run_dir = tmp_path / 'run'
    saved = []
    original = Trainer._checkpoint

    def keep_first(self):
        original(self)
        if not saved and self.env_steps > 0:  # the first mid-run checkpoint
            saved.append(((run_dir / 'checkpoint.pt').read_bytes(), self._row_clock[0]))

    monkeypatch.setattr(Trainer, '_checkpoint', keep_first)
    toy_trainer(run_dir, total_env_steps=120, snapshots=True).run()
    monkeypatch.setattr(Trainer, '_checkpoint', original)
    before = sorted(snapshots(run_dir))
    checkpoint, logged = saved[0]
    assert before[-1] > logged  # snapshots exist past the checkpoint's last row
    (run_dir / 'checkpoint.pt').write_bytes(checkpoint)
    toy_trainer(run_dir, total_env_steps=120, snapshots=False).run(resume=True)
    assert sorted(snapshots(run_dir)) == [s for s in before if s <= logged]
    assert read_metrics(run_dir / 'metrics.csv')['env_steps'][-1] == 120
    assert snapshot_steps('best_actor.onnx') is None


def test_a_fixed_goal_run_is_ranked_and_selected_by_return(tmp_path):
    """mbrl_pusher (dense reward): the periodic return ranks, the mean return selects."""
    run = tmp_path / 'pusher'
    args = ['train', '--task', 'mbrl_pusher', '--seed', '3', '--eval-episodes', '1',
            '--set', 'base_eval_episodes=0', '--set', 'eval_interval=100',
            '--set', 'snapshots=true', '--set', 'num_envs=1', '--vector-env', 'sync',
            '--no-progress', '--steps', '100', '--out', str(run)]  # fmt: skip
    assert rpl_train(args) == 0
    info = read_run(run)
    assert info.by_return and [s.env_steps for s in info.snapshots] == [0, 150]
    set_periodic(run, {0: -120.0, 150: -90.0}, 'eval/return')  # the later one ranks first
    assert rpl(['select', str(run), '--episodes', '1', '--no-progress']) == 0
    record = json.loads((run / 'selection.json').read_text())
    assert record['ranked_by'] == 'mean_return'
    assert [c['periodic_return'] for c in record['candidates']] == [-90.0, -120.0]
    returns = [c['mean_return'] for c in record['candidates']]
    assert record['selected_env_steps'] == (150 if returns[0] >= returns[1] else 0)
