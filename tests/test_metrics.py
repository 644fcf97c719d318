"""metrics.csv of a run (rpl_trainer.metrics): rows appended under one header, NaN as an
empty cell, rows after a resumed checkpoint cut, the per-row sums."""

from __future__ import annotations

import math

import numpy as np

from rpl_trainer.ddpg import UpdateStats
from rpl_trainer.metrics import (
    METRIC_COLUMNS,
    Accumulator,
    append_row,
    read_metrics,
    truncate_metrics,
)


def row(env_steps: int, success: float) -> dict[str, float]:
    values = {column: 0.5 for column in METRIC_COLUMNS}
    values.update({'env_steps': env_steps, 'eval/success_rate': success})
    return values


def test_rows_share_one_header_and_nan_reads_back_as_nan(tmp_path):
    path = tmp_path / 'metrics.csv'
    append_row(path, row(0, float('nan')))
    append_row(path, row(100, 0.25))
    lines = path.read_text().splitlines()
    assert lines[0] == ','.join(METRIC_COLUMNS) and len(lines) == 3
    metrics = read_metrics(path)
    assert metrics['env_steps'].tolist() == [0.0, 100.0]
    assert math.isnan(metrics['eval/success_rate'][0]) and metrics['eval/success_rate'][1] == 0.25


def test_truncate_keeps_the_rows_up_to_the_checkpoint(tmp_path):
    path = tmp_path / 'metrics.csv'
    for steps in (0, 100, 200):
        append_row(path, row(steps, 0.1))
    truncate_metrics(path, 100)
    assert read_metrics(path)['env_steps'].tolist() == [0.0, 100.0]
    truncate_metrics(path, -1)  # a checkpoint taken before the first row
    assert path.read_text().splitlines() == [','.join(METRIC_COLUMNS)]
    assert set(read_metrics(path)) == set(METRIC_COLUMNS)
    truncate_metrics(tmp_path / 'none.csv', 5)  # no file: nothing to cut
    assert not (tmp_path / 'none.csv').exists()


def test_accumulator_means_are_nan_until_something_was_added():
    acc = Accumulator()
    assert all(np.isnan(v) for v in acc.means().values())
    acc.add_update(UpdateStats(critic_loss=1.0, actor_loss=-2.0, q_mean=3.0))
    acc.add_update(UpdateStats(critic_loss=3.0, actor_loss=-4.0, q_mean=5.0))
    acc.successes, acc.episodes = 1.0, 4
    assert acc.means() == {
        'train/success_rate': 0.25,
        'losses/critic': 2.0,
        'losses/actor': -3.0,
        'charts/q_mean': 4.0,
    }


def test_a_cut_off_last_row_is_left_out_and_repeated_steps_are_kept(tmp_path):
    """A resumed run evaluates its last step again (both rows are kept: readers take the
    last); a row cut off while written (a crash, a full disk) is not read as a step."""
    path = tmp_path / 'metrics.csv'
    path.write_text('env_steps,eval/success_rate,wall_s\n0,0.1,1\n100,0.2,2\n100,0.3,3\n10\n')
    metrics = read_metrics(path)
    assert metrics['env_steps'].tolist() == [0.0, 100.0, 100.0]
    assert metrics['eval/success_rate'].tolist() == [0.1, 0.2, 0.3]
