"""``rpl select``: choose a training run's model on more episodes than its periodic evaluations.

A run evaluates its policy every ``eval_interval`` env steps on a few dozen fixed episodes
and keeps the best as ``best_actor.onnx``. On a plateau those evaluations differ mostly by
noise (50 episodes pin a success rate near 0.8 down to +-0.11), so the best of twenty is
the luckiest as often as the best: NoisyHook's periodic best 0.84 measured 0.796 on 1000
held-out episodes. A run trained with ``--set snapshots=true`` keeps the model of every
periodic evaluation (``snapshots/actor_<env steps>.onnx``); this module takes the ``top``
of them by periodic score, evaluates each in-process exactly as ``rpl eval`` does on
``episodes`` selection episodes, and names the best.

Selection episodes use reset seeds ``seed + i``, by default (``rpl select --seed``) 500000
onwards: apart from the training run's own episodes (hashed seeds), from the held-out
evaluations the README reports (seeds 1000 onwards) and from the controller band checks
(100000 onwards), so a held-out evaluation of the selected model stays held out.

Outputs, both refused if they exist unless ``force``, both checked before any episode runs:
``RUN/selected_actor.onnx`` (a byte copy of the chosen snapshot) and
``RUN/selection.json`` (every candidate's periodic and selection score, and the choice).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

try:  # optional for rpl_bringup: a robot install has no trainer (`rpl select` says so)
    from rpl_trainer.metrics import read_metrics
    from rpl_trainer.run_dir import CONFIG_FILE, METRICS_FILE, SNAPSHOT_DIR, snapshot_steps
except ModuleNotFoundError as exc:
    exc.add_note(
        'rpl select reads a training run: it needs rpl_trainer (pip install src/rpl_trainer)'
    )
    raise

SELECTED_FILE = 'selected_actor.onnx'
SELECTION_FILE = 'selection.json'


class SelectionError(ValueError):
    """A run directory that cannot be selected from (one-line message)."""


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One periodic model of a run: its file, when it was taken, its periodic score."""

    path: pathlib.Path
    env_steps: int
    periodic: float


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What selection needs of a run: its stack and its scored snapshots."""

    task: str
    controller: str
    controller_params: tuple[str, ...]
    metric: str
    """``success_rate`` (goal tasks) or ``return`` (fixed-goal tasks: dense rewards)."""
    snapshots: tuple[Snapshot, ...]
    unscored: tuple[pathlib.Path, ...]
    """Snapshots without a metrics.csv row (a resumed run went back past them; it writes
    them again when it gets there): not candidates."""


def read_run(run_dir: str | pathlib.Path, fixed_goal: Callable[[str], bool]) -> RunInfo:
    """The stack (config.json), snapshots and their periodic scores (metrics.csv) of a run.

    Args:
        run_dir: An ``rpl train --out`` directory.
        fixed_goal: Whether a task name is a fixed-goal task (scored by mean return).

    Raises:
        SelectionError: Not a run directory, no snapshots, or no snapshot with a score.
    """
    run = pathlib.Path(run_dir)
    config_path = run / CONFIG_FILE
    if not config_path.is_file():
        raise SelectionError(f'{run} is not an `rpl train` run directory (no config.json)')
    try:
        config = json.loads(config_path.read_text())
        task, controller = str(config['task']), str(config['controller'])
    except (ValueError, KeyError, TypeError) as exc:
        raise SelectionError(f'{config_path} is not a run config ({exc})') from None
    params = tuple(p for p in str(config.get('controller_params', '')).split(',') if p.strip())
    files = sorted((run / SNAPSHOT_DIR).glob('actor_*.onnx'))
    steps = {path: step for path in files if (step := snapshot_steps(path.name)) is not None}
    if not steps:
        raise SelectionError(
            f'{run} has no snapshots ({run / SNAPSHOT_DIR}/actor_<env steps>.onnx): train with '
            '`--set snapshots=true` (a running or stopped run: resume it with that setting)'
        )
    metric = 'return' if fixed_goal(task) else 'success_rate'
    scores = _periodic_scores(run / METRICS_FILE, f'eval/{metric}')
    snapshots = tuple(
        Snapshot(path, step, scores[step]) for path, step in steps.items() if step in scores
    )
    unscored = tuple(path for path, step in steps.items() if step not in scores)
    if not snapshots:
        raise SelectionError(f'no snapshot of {run} has a row in its metrics.csv')
    return RunInfo(task, controller, params, metric, snapshots, unscored)


def _periodic_scores(path: pathlib.Path, column: str) -> dict[int, float]:
    """``column`` of each metrics.csv row by its env steps (the later of two rows for the
    same steps)."""
    if not path.is_file():
        raise SelectionError(f'{path} does not exist: the periodic scores are in it')
    metrics = read_metrics(path)
    if column not in metrics:
        raise SelectionError(f'{path} has no {column} column')
    return {
        int(step): float(value)
        for step, value in zip(metrics['env_steps'], metrics[column], strict=True)
        if math.isfinite(value)
    }


def candidates(snapshots: Sequence[Snapshot], top: int) -> list[Snapshot]:
    """The ``top`` snapshots of the highest periodic score (ties: the earlier first, as
    ``best_actor.onnx`` keeps the earlier of equal evaluations)."""
    if top < 1:
        raise ValueError(f'top must be at least 1, got {top}')
    return sorted(snapshots, key=lambda s: (-s.periodic, s.env_steps))[:top]


def choose(ranked: Sequence[Snapshot], scores: Sequence[float]) -> int:
    """Index of the selected candidate: the highest selection score; ties go to the higher
    periodic score, then the earlier snapshot (``ranked`` is in that order already)."""
    if not ranked or len(ranked) != len(scores):
        raise ValueError('one selection score per candidate is needed')
    best = 0
    for index, score in enumerate(scores):
        if score > scores[best]:
            best = index
    return best


def selection_record(
    info: RunInfo,
    ranked: Sequence[Snapshot],
    results: Sequence[Any],
    chosen: int,
    episodes: int,
    seed: int,
) -> dict[str, Any]:
    """selection.json: the rule, every candidate with both scores, and the choice."""
    entries = []
    for snapshot, result in zip(ranked, results, strict=True):
        entries.append(
            {
                'snapshot': f'{SNAPSHOT_DIR}/{snapshot.path.name}',
                'env_steps': snapshot.env_steps,
                f'periodic_{info.metric}': snapshot.periodic,
                'success_rate': result.success_rate,
                'ci95': list(result.ci95),
                'mean_final_distance': result.mean_final_distance,
                'mean_return': result.mean_return,
            }
        )
    return {
        'task': info.task,
        'controller': info.controller,
        'metric': info.metric,
        'episodes': episodes,
        'seed': seed,
        'candidates': entries,
        'selected': entries[chosen]['snapshot'],
        'selected_env_steps': ranked[chosen].env_steps,
        'output': SELECTED_FILE,
    }


def score_of(result: Any, metric: str) -> float:
    """The selection score of an evaluation result."""
    return float(result.mean_return if metric == 'return' else result.success_rate)


__all__: Sequence[str] = (
    'SELECTED_FILE',
    'SELECTION_FILE',
    'RunInfo',
    'SelectionError',
    'Snapshot',
    'candidates',
    'choose',
    'read_run',
    'score_of',
    'selection_record',
)
