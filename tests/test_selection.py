"""`rpl train --set snapshots=true` and `rpl select`: the model of every periodic evaluation
is kept, and the best few are re-evaluated on more (selection) episodes (real MuJoCo push
runs, real ONNX Runtime)."""

from __future__ import annotations

import csv
import json
import pathlib

import numpy as np
import onnx
import pytest
import torch
from onnx_builders import linear_model

from rpl_bringup.cli import SELECTION_SEED
from rpl_bringup.cli import main as rpl
from rpl_bringup.selection import Snapshot, candidates, choose, read_run
from rpl_sim_bridge.layout import FetchObs
from rpl_sim_bridge.tasks import task_spec
from rpl_trainer.cli import main as trainer
from rpl_trainer.export import read_metadata
from rpl_trainer.run_dir import snapshot_name, snapshot_steps

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
    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp('runs') / 'push'
    assert trainer([*RUN, '--out', str(out)]) == 0
    torch.set_num_threads(threads)
    return out


def fresh_copy(run: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of the run's files that a test may change."""
    copy = tmp_path / 'run'
    for path in run.rglob('*'):
        if path.is_file():
            target = copy / path.relative_to(run)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    return copy


def set_periodic(run: pathlib.Path, scores: dict[int, float]) -> None:
    """Rewrite metrics.csv's periodic success of the rows at the given env steps."""
    path = run / 'metrics.csv'
    with path.open(newline='') as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        step = int(row['env_steps'])
        if step in scores:
            row['eval/success_rate'] = str(scores[step])
    with path.open('w', newline='') as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def lifting_model(path: pathlib.Path, like: pathlib.Path) -> pathlib.Path:
    """A push residual that drives the gripper up all episode (dz = 10 * grip height: the
    block is never pushed), with the metadata of the run's model ``like``."""
    spec = task_spec('push')
    weights = np.zeros((spec.action_dim, spec.obs_dim + spec.goal_dim), np.float32)
    weights[2, FetchObs.GRIP_POS.start + 2] = 10.0
    linear_model(path, weights, obs_dim=spec.obs_dim, goal_dim=spec.goal_dim)
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, read_metadata(like))
    onnx.save(proto, str(path))
    return path


def test_a_run_keeps_a_snapshot_of_every_periodic_evaluation(snapshot_run):
    files = sorted((snapshot_run / 'snapshots').iterdir())
    assert [snapshot_steps(f.name) for f in files] == [0, 100, 200]
    assert [f.name for f in files] == [pathlib.Path(snapshot_name(s)).name for s in (0, 100, 200)]
    for path, steps in zip(files, (0, 100, 200), strict=True):
        meta = read_metadata(path)
        assert meta['training_steps'] == str(steps) and meta['task'] == 'push'
    assert snapshot_steps('best_actor.onnx') is None


def test_candidates_rank_by_periodic_score_and_choose_by_selection_score():
    snaps = [Snapshot(pathlib.Path(f'{s}.onnx'), s, p) for s, p in ((0, 0.5), (1, 0.9), (2, 0.9))]
    ranked = candidates(snaps, 2)
    assert [s.env_steps for s in ranked] == [1, 2]  # ties: the earlier first
    assert choose(ranked, [0.7, 0.8]) == 1
    assert choose(ranked, [0.8, 0.8]) == 0  # a tie keeps the higher-ranked one
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
    assert json.loads((run / 'selection.json').read_text())['selected_env_steps'] == 100


def test_select_refuses_what_it_cannot_select_from(snapshot_run, tmp_path, capsys):
    def fails(args, *words):
        assert rpl(['select', *args, '--no-progress']) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and all(w in err[0] for w in words), err

    fails([str(tmp_path)], 'not an `rpl train` run directory')
    run = fresh_copy(snapshot_run, tmp_path)
    fails([str(run), '--top', '0'], '--top must be at least 1')
    fails([str(run), '--episodes', '0'], '--episodes must be at least 1')
    for path in (run / 'snapshots').iterdir():
        path.unlink()
    fails([str(run)], 'has no snapshots', 'snapshots=true')
    assert not (run / 'selected_actor.onnx').exists()


def test_a_snapshot_past_the_last_metrics_row_is_not_a_candidate(snapshot_run, tmp_path):
    run = fresh_copy(snapshot_run, tmp_path)
    (run / snapshot_name(300)).write_bytes((run / snapshot_name(200)).read_bytes())
    info = read_run(run, lambda task: False)
    assert [s.env_steps for s in info.snapshots] == [0, 100, 200]
    assert [p.name for p in info.unscored] == ['actor_000000300.onnx']
