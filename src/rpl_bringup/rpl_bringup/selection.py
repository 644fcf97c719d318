"""``rpl select``: choose a training run's model on more episodes than its periodic evaluations.

A run evaluates its policy every ``eval_interval`` env steps on a few dozen fixed episodes
and keeps the best as ``best_actor.onnx``. On a plateau those evaluations differ mostly by
noise (50 episodes pin a success rate near 0.8 down to +-0.11), so the best of twenty is
the luckiest as often as the best: NoisyHook's periodic best 0.84 measured 0.796 on 1000
held-out episodes. A run trained with ``--set snapshots=true`` keeps the model of every
periodic evaluation (``snapshots/actor_<env steps>.onnx``); this module takes the ``top``
of them by periodic score (success rate; a fixed-goal task's mean return), evaluates each
in-process exactly as ``rpl eval`` does on ``episodes`` selection episodes, and names the
best: the highest score, then (equal success) the smaller mean final distance, then the
higher periodic score, then the earlier snapshot (as ``best_actor.onnx`` keeps the earlier
of equal evaluations).

Selection episodes use reset seeds ``seed + i``, by default (``rpl select --seed``) 500000
onwards: apart from the training run's own episodes (hashed seeds), from the held-out
evaluations the README reports (seeds 1000 onwards) and from the controller band checks
(100000 onwards), so a held-out evaluation of the selected model stays held out.

Every candidate is read into memory and checked against the run's task and base controller
before any episode runs; the episodes run on those bytes, and the chosen bytes are what is
written (a run that is still training may replace its files meanwhile). Outputs, in the run
directory (names: :mod:`rpl_trainer.run_dir`), refused if they exist unless ``force``:
``selected_actor.onnx`` and then ``selection.json`` (every candidate's scores, the choice
and its sha256).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import pathlib
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from rpl_base_controllers.registry import split_params_text

try:  # optional for rpl_bringup: a robot install has no trainer (`rpl select` says so)
    from rpl_trainer.config import make_config
    from rpl_trainer.metrics import read_metrics
    from rpl_trainer.run_dir import (
        METRICS_FILE,
        RETURN_METRIC,
        SELECTED_ONNX_FILE,
        SELECTION_FILE,
        SNAPSHOT_DIR,
        RunDirError,
        best_metric,
        read_run_config,
        snapshots,
    )
except ModuleNotFoundError as exc:
    exc.add_note(
        'rpl select reads a training run: it needs rpl_trainer (pip install src/rpl_trainer)'
    )
    raise


class SelectionError(ValueError):
    """A run that cannot be selected from, or outputs that cannot be written (one line)."""


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One periodic model of a run: its file, when it was taken, its periodic score."""

    path: pathlib.Path
    env_steps: int
    periodic: float


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What selection needs of a run: the stack its models run on and its scored snapshots."""

    run_dir: pathlib.Path
    task: str
    controller: str
    """The base the models run on: the run's controller, ``zero`` for scratch and expert
    explore runs (whose actor outputs the whole action)."""
    controller_params: tuple[str, ...]
    metric: str
    """metrics.csv column of the periodic score (:func:`rpl_trainer.run_dir.best_metric`)."""
    snapshots: tuple[Snapshot, ...]
    unscored: tuple[pathlib.Path, ...]
    """Snapshots without a metrics.csv row (not candidates)."""

    @property
    def by_return(self) -> bool:
        """Scored by mean return (a fixed-goal task), not success rate."""
        return self.metric == RETURN_METRIC


def read_run(run_dir: str | pathlib.Path) -> RunInfo:
    """The stack (config.json), snapshots and their periodic scores (metrics.csv) of a run.

    Raises:
        SelectionError: Not a run directory, no snapshots, or no snapshot with a score.
    """
    run = pathlib.Path(run_dir)
    try:
        config = make_config(read_run_config(run))
    except RunDirError as exc:
        raise SelectionError(str(exc)) from None
    params = config.controller_params if config.uses_base else ''
    found = snapshots(run)
    if not found:
        raise SelectionError(
            f'{run} has no snapshots ({run / SNAPSHOT_DIR}/actor_<env steps>.onnx): train with '
            '`--set snapshots=true` (a stopped run: resume it with that setting)'
        )
    metrics_path = run / METRICS_FILE
    if not metrics_path.is_file():
        raise SelectionError(f'{metrics_path} does not exist: the periodic scores are in it')
    try:
        metrics = read_metrics(metrics_path)
    except ValueError as exc:
        raise SelectionError(str(exc)) from None
    except OSError as exc:
        raise SelectionError(f'{metrics_path} cannot be read: {exc.strerror or exc}') from None
    metric = best_metric(list(metrics))
    if metric not in metrics:
        raise SelectionError(f'{metrics_path} has no {metric} column: no periodic scores')
    scores = {
        int(step): float(value)
        for step, value in zip(metrics['env_steps'], metrics[metric], strict=True)
        if math.isfinite(value)
    }
    scored = tuple(Snapshot(path, s, scores[s]) for s, path in found.items() if s in scores)
    if not scored:
        raise SelectionError(f'no snapshot of {run} has a row in its {METRICS_FILE}')
    return RunInfo(
        run,
        config.task,
        config.deployed_controller,
        tuple(split_params_text(params)),
        metric,
        scored,
        tuple(path for s, path in found.items() if s not in scores),
    )


def candidates(snapshots: Sequence[Snapshot], top: int) -> list[Snapshot]:
    """The ``top`` snapshots of the highest periodic score (ties: the earlier first)."""
    if top < 1:
        raise ValueError(f'top must be at least 1, got {top}')
    return sorted(snapshots, key=lambda s: (-s.periodic, s.env_steps))[:top]


def selection_key(result: Any, by_return: bool) -> tuple[float, ...]:
    """What ranks an evaluation (higher first): the mean return of a fixed-goal task; a
    goal task's success rate, then the negated mean final distance."""
    if by_return:
        return (float(result.mean_return),)
    return (float(result.success_rate), -float(result.mean_final_distance))


def choose(keys: Sequence[tuple[float, ...]]) -> int:
    """Index of the highest key; ties go to the earlier one (the candidates are in
    periodic-rank order)."""
    if not keys:
        raise ValueError('no candidates to choose from')
    best = 0
    for index, key in enumerate(keys):
        if key > keys[best]:
            best = index
    return best


def check_outputs(run_dir: pathlib.Path, force: bool) -> tuple[pathlib.Path, pathlib.Path]:
    """The two output paths, checked before any episode runs.

    Raises:
        SelectionError: One exists (an earlier selection) and not ``force``, or cannot be
            written.
    """
    from rpl_interfaces import output_files

    paths = (run_dir / SELECTED_ONNX_FILE, run_dir / SELECTION_FILE)
    for path in paths:
        if path.is_symlink() or (path.exists() and not force):
            raise SelectionError(
                f'{path} exists already (an earlier selection); not writing over it'
                + (': add --force to replace it' if not path.is_symlink() else ' (a link)')
            )
        try:
            output_files.check_output(path, force=True, option='output')
        except output_files.OutputError as exc:
            raise SelectionError(str(exc)) from None
    return paths


def run_selection(
    info: RunInfo,
    top: int,
    episodes: int,
    seed: int,
    workers: int = 1,
    progress: bool = False,
    force: bool = False,
    report: Callable[[str], None] = print,
    warn: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Select among the ``top`` snapshots of ``info`` and write both outputs.

    Returns:
        The selection.json record.

    Raises:
        SelectionError: Outputs that exist or cannot be written, a candidate that cannot be
            read, is not a usable model or was made for another stack (before any episode
            runs). If a write fails the record is in the message's ``record`` attribute.
    """
    from rpl_base_controllers.registry import parse_controller_params
    from rpl_bringup import evaluation

    outputs = check_outputs(info.run_dir, force)
    try:
        params = parse_controller_params(info.controller, info.controller_params)
    except ValueError as exc:
        raise SelectionError(f'{info.run_dir}: {exc}') from None
    ranked = candidates(info.snapshots, top)
    blobs = []
    for snapshot in ranked:
        if not snapshot.path.is_file():  # a pipe or device would be read forever
            raise SelectionError(f'snapshot {snapshot.path} is not a regular file')
        try:
            blobs.append(snapshot.path.read_bytes())
        except OSError as exc:
            raise SelectionError(f'cannot read {snapshot.path}: {exc.strerror}') from None
    run, extra = evaluation.evaluate_model, {}
    if workers > 1:
        run, extra = evaluation.evaluate_parallel, {'workers': workers}
    with tempfile.TemporaryDirectory(prefix='rpl_select_') as scratch:
        copies = []
        for snapshot, blob in zip(ranked, blobs, strict=True):
            copy = pathlib.Path(scratch) / snapshot.path.name
            copy.write_bytes(blob)
            try:  # every candidate before the first episode
                lines = evaluation.check_model_identity(
                    info.task, info.controller, str(copy), False, params
                )
            except ValueError as exc:  # a run's own models: no mismatch to allow
                text = str(exc).replace(' (--allow-model-mismatch runs it anyway)', '')
                raise SelectionError(text.replace(str(copy), str(snapshot.path))) from None
            for line in lines:
                warn(line.replace(str(copy), str(snapshot.path)))
            copies.append(copy)
        results = []
        for snapshot, copy in zip(ranked, copies, strict=True):
            result = run(
                info.task,
                info.controller,
                episodes,
                seed,
                model_path=str(copy),
                progress=progress,
                controller_params=params,
                **extra,
            )
            results.append(result)
            lo, hi = result.ci95
            score = result.mean_return if info.by_return else result.success_rate
            report(
                f'{snapshot.path.name}: periodic {info.metric.removeprefix("eval/")} '
                f'{snapshot.periodic:.3f} -> {score:.3f} (success 95% CI {lo:.3f}-{hi:.3f}, '
                f'mean final distance {result.mean_final_distance:.4f} m)'
            )
    chosen = choose([selection_key(r, info.by_return) for r in results])
    record = selection_record(info, ranked, results, chosen, episodes, seed, blobs[chosen])
    _write(outputs, blobs[chosen], record, force)
    return record


def _write(
    outputs: tuple[pathlib.Path, pathlib.Path], model: bytes, record: dict[str, Any], force: bool
) -> None:
    """The model and its record, both or neither (a failed write keeps the record in the
    error): a model left beside another selection's record would be misread."""
    from rpl_interfaces import output_files

    data = output_files.json_bytes(record)
    try:
        output_files.write_outputs([(outputs[0], model), (outputs[1], data)], force=force)
    except output_files.OutputError as exc:
        error = SelectionError(f'{exc} (the selection is printed above)')
        error.record = data.decode()  # type: ignore[attr-defined]
        raise error from None


def selection_record(
    info: RunInfo,
    ranked: Sequence[Snapshot],
    results: Sequence[Any],
    chosen: int,
    episodes: int,
    seed: int,
    model: bytes,
) -> dict[str, Any]:
    """selection.json: the rule, every candidate with both scores, and the choice."""
    periodic_key = 'periodic_' + info.metric.removeprefix('eval/')
    entries = [
        {
            'snapshot': f'{SNAPSHOT_DIR}/{snapshot.path.name}',
            'env_steps': snapshot.env_steps,
            periodic_key: snapshot.periodic,
            'success_rate': result.success_rate,
            'ci95': list(result.ci95),
            'mean_final_distance': result.mean_final_distance,
            'mean_return': result.mean_return,
        }
        for snapshot, result in zip(ranked, results, strict=True)
    ]
    return {
        'task': info.task,
        'controller': info.controller,
        'controller_params': list(info.controller_params),
        'ranked_by': 'mean_return' if info.by_return else 'success_rate, mean_final_distance',
        'episodes': episodes,
        'seed': seed,
        'candidates': entries,
        'selected': entries[chosen]['snapshot'],
        'selected_env_steps': ranked[chosen].env_steps,
        'output': SELECTED_ONNX_FILE,
        'sha256': hashlib.sha256(model).hexdigest(),
    }


__all__: Sequence[str] = (
    'RunInfo',
    'SelectionError',
    'Snapshot',
    'candidates',
    'check_outputs',
    'choose',
    'read_run',
    'run_selection',
    'selection_key',
    'selection_record',
)
