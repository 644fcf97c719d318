"""The run directory of ``rpl train`` (``--out DIR``): its file names, and the policy for
creating one, refusing to overwrite one, resuming one, and the JSON files kept in it.

Layout::

    DIR/config.json      the TrainConfig (a resumed run must match it)
    DIR/base_eval.json   success of the base controller alone (the plot's 'Initial' line)
    DIR/metrics.csv      one row per evaluation (rpl_trainer.metrics)
    DIR/checkpoint.pt    everything needed to continue (``--resume``): written at the start,
                         every ``checkpoint_interval`` env steps, at the end, and on
                         SIGINT / SIGTERM
    DIR/actor.onnx       the residual model at the end of the run (docs/onnx_contract.md)
    DIR/best_actor.onnx  the model at the best periodic evaluation (the run's own
                         evaluation seeds; `rpl eval` on held-out seeds judges it): of
                         the highest success rate, for a fixed-goal task the highest
                         mean return
    DIR/summary.json     final numbers
    DIR/snapshots/actor_<env steps>.onnx
                         the model of every periodic evaluation (``snapshots`` setting;
                         its score is that evaluation's metrics.csv row); a resumed run
                         removes those from after its checkpoint, as it does their rows
    DIR/selected_actor.onnx, DIR/selection.json
                         written by ``rpl select`` (rpl_bringup.selection): the snapshot
                         chosen on more episodes, and every candidate's scores
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import pathlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

from rpl_interfaces.output_files import json_bytes, os_reason, probe_write, write_whole
from rpl_trainer.config import TrainConfig, check_keys, config_differences, make_config

CONFIG_FILE = 'config.json'
BASE_EVAL_FILE = 'base_eval.json'
METRICS_FILE = 'metrics.csv'
CHECKPOINT_FILE = 'checkpoint.pt'
ONNX_FILE = 'actor.onnx'
BEST_ONNX_FILE = 'best_actor.onnx'
SUMMARY_FILE = 'summary.json'
SNAPSHOT_DIR = 'snapshots'
SELECTED_ONNX_FILE = 'selected_actor.onnx'
SELECTION_FILE = 'selection.json'
LOCK_FILE = '.training.lock'  # exists (locked) while a process trains into the folder


def snapshot_name(env_steps: int) -> str:
    """The run-directory path of the snapshot taken at ``env_steps`` (sorts by steps)."""
    return f'{SNAPSHOT_DIR}/actor_{env_steps:09d}.onnx'


def snapshot_steps(file_name: str) -> int | None:
    """The env steps of a snapshot file name (:func:`snapshot_name`), None for another file."""
    match = re.fullmatch(r'actor_(\d+)\.onnx', file_name)
    return int(match.group(1)) if match else None


def snapshots(out_dir: pathlib.Path) -> dict[int, pathlib.Path]:
    """The run's snapshot files by env steps, in step order."""
    found = {}
    for path in sorted((out_dir / SNAPSHOT_DIR).glob('actor_*.onnx')):
        steps = snapshot_steps(path.name)
        if steps is not None:
            found[steps] = path
    return dict(sorted(found.items()))


def drop_snapshots_after(out_dir: pathlib.Path, env_steps: int) -> None:
    """Remove the snapshots taken after ``env_steps`` (a resumed run goes back to its
    checkpoint and drops the metrics rows after it; their models go with them, so that no
    later row can be paired with a model of the abandoned part)."""
    for steps, path in snapshots(out_dir).items():
        if steps > env_steps:
            path.unlink()


class RunDirError(ValueError):
    """The output directory cannot be used (exists, or does not hold a matching run)."""


def read_run_config(out_dir: pathlib.Path) -> dict[str, Any]:
    """The settings a run in ``out_dir`` was started with (its config.json).

    Raises:
        RunDirError: No config.json there, or one that is not a valid config (the message
            says which; callers add what they could not do).
    """
    config_path = out_dir / CONFIG_FILE
    if out_dir.is_file():
        raise RunDirError(f'{out_dir} is a file, not the folder of an `rpl train` run')
    if not config_path.is_file():
        raise RunDirError(f'{config_path} does not exist (no `rpl train` run in {out_dir})')
    try:
        values = json.loads(config_path.read_text())
        if not isinstance(values, dict):
            raise ValueError(f'it holds a JSON {type(values).__name__}, not an object')
        check_keys(values, 'it has')  # a close name, not all of them
        make_config(values)
    except (ValueError, TypeError) as exc:
        raise RunDirError(f'{config_path} is not a valid config ({exc})') from exc
    except OSError as exc:  # unreadable (an I/O error)
        raise RunDirError(f'{config_path} cannot be read: {exc.strerror or exc}') from None
    return values


def check_run_dir(out_dir: pathlib.Path, config: TrainConfig, resume: bool) -> None:
    """Refuse to overwrite anything, and to resume anything but the same run.

    Raises:
        RunDirError: Without ``resume``: ``out_dir`` exists and is not empty. With
            ``resume``: no config.json / checkpoint.pt there, or a config that differs in
            fields other than budgets and bookkeeping.
    """
    if not resume:
        if out_dir.exists() and not out_dir.is_dir():
            raise RunDirError(f'output directory {out_dir} is a file; choose a new directory')
        if out_dir.exists() and any(out_dir.iterdir()):
            raise RunDirError(
                f'output directory {out_dir} already exists and is not empty; pass --resume '
                'to continue the run in it, or choose a new directory'
            )
        try:  # before anything runs: a read-only or impossible path is one line now
            probe_write(out_dir / CONFIG_FILE)
        except OSError as exc:
            raise RunDirError(f'cannot write the run into {out_dir}: {os_reason(exc)}') from None
        return
    try:
        old = make_config(read_run_config(out_dir))
    except RunDirError as exc:
        raise RunDirError(f'cannot resume: {exc}') from exc
    differences = config_differences(old, config)
    if differences:
        raise RunDirError(
            f'cannot resume {out_dir}: the run used a different config ('
            + '; '.join(differences)
            + '); use the same options or a new directory'
        )
    if not (out_dir / CHECKPOINT_FILE).is_file():
        raise RunDirError(
            f'cannot resume: no checkpoint at {out_dir / CHECKPOINT_FILE} (runs write one at '
            'their start; this one was removed or predates that): remove the folder or train '
            'into another --out'
        )


class ExclusiveLock:
    """An advisory ``flock`` on ``path`` (created), held by one process at a time: what one
    process writes into (a run folder, a trainer node's model and checkpoint), a second one
    must not. The kernel releases it when the process dies; :meth:`release` also removes
    the file. The holder's pid is in the file, for the message of the one refused."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self._handle: Any = None

    def acquire(self) -> None:
        """Take the lock.

        Raises:
            BlockingIOError: Another process holds it (``.holder`` names its pid).
        """
        handle = self.path.open('a+')
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.seek(0)
            exc.holder = handle.read().strip() or 'unknown'
            handle.close()
            raise
        self._handle = handle  # held: released (and its file removed) whatever follows
        with contextlib.suppress(OSError):  # the pid only informs a refused second process
            handle.truncate(0)
            handle.write(str(os.getpid()))
            handle.flush()

    def release(self) -> None:
        """Let go of the lock and remove its file (nothing if not held)."""
        if self._handle is not None:
            # Its folder may be gone or be a file now: the lock is let go all the same (a
            # lock file left behind is taken over as stale by the next start).
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # a pid that never reached a full disk
                self._handle.close()
            self._handle = None


@contextlib.contextmanager
def training_lock(out_dir: pathlib.Path) -> Iterator[None]:
    """Hold the folder of a run while training into it (creating the folder).

    A second process training into the same folder, fresh or with ``--resume``, would
    interleave its metrics rows and write over the other's checkpoint and models: it is
    refused (:class:`ExclusiveLock` on :data:`LOCK_FILE`). A folder this call created and
    left empty is removed again.

    Raises:
        RunDirError: Another process holds the folder.
    """
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = ExclusiveLock(out_dir / LOCK_FILE)
    try:
        try:
            lock.acquire()
        except BlockingIOError as exc:
            raise RunDirError(
                f'{out_dir} is being trained by another process (pid {exc.holder}); wait for '
                'it to end, or stop it (Ctrl-C saves a checkpoint) and then --resume'
            ) from None
        try:
            yield
        finally:
            lock.release()
    finally:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()


def write_config(out_dir: pathlib.Path, config: TrainConfig) -> None:
    """Write the run's config.json (at every start, new or resumed)."""
    write_whole(out_dir / CONFIG_FILE, config.to_json().encode())


def read_base_eval(out_dir: pathlib.Path) -> dict[str, Any] | None:
    """The base controller's evaluation saved by an earlier start of this run, or None."""
    path = out_dir / BASE_EVAL_FILE
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunDirError(
            f'{path} is not a readable base evaluation ({exc}); remove it and --resume: the '
            'base controller is evaluated again'
        ) from None
    if not isinstance(saved, dict):
        raise RunDirError(
            f'{path} is not a base evaluation (not a JSON object); remove it and --resume'
        )
    return saved


def write_base_eval(out_dir: pathlib.Path, result: dict[str, Any]) -> None:
    """Save the base controller's evaluation (a resumed run reads it, not re-runs it)."""
    write_whole(out_dir / BASE_EVAL_FILE, json_bytes(result))


SUCCESS_METRIC = 'eval/success_rate'
RETURN_METRIC = 'eval/return'


def no_best(metric: str = SUCCESS_METRIC) -> dict[str, float]:
    """The best evaluation before any: every evaluation beats it in ``metric`` (the success
    rate, or a fixed-goal task's mean return)."""
    if metric == SUCCESS_METRIC:
        return {SUCCESS_METRIC: -1.0, 'env_steps': -1}
    return {SUCCESS_METRIC: -1.0, metric: -math.inf, 'env_steps': -1}


def is_new_best(best: dict[str, float], value: float, metric: str = SUCCESS_METRIC) -> bool:
    """Whether an evaluation's ``metric`` (success rate or mean return) beats the best so
    far (ties keep the earlier model in best_actor.onnx)."""
    return value > best[metric]


def best_metric(columns: Sequence[str]) -> str:
    """The metrics.csv column a run ranks its models by: a fixed-goal task's evaluations
    have a mean return (``eval/return``) and are ranked by it, a goal task's by success."""
    return RETURN_METRIC if RETURN_METRIC in columns else SUCCESS_METRIC


def write_summary(out_dir: pathlib.Path, summary: dict[str, Any], best: dict[str, float]) -> None:
    """Write summary.json: the run's final numbers, then its best evaluation and model."""
    returns = {'best/return': best[RETURN_METRIC]} if RETURN_METRIC in best else {}
    summary = {
        **summary,
        'best/success_rate': best[SUCCESS_METRIC],
        **returns,
        'best/env_steps': best['env_steps'],
        'best_onnx': BEST_ONNX_FILE,
    }
    write_whole(out_dir / SUMMARY_FILE, json_bytes(summary))


__all__: Sequence[str] = (
    'BASE_EVAL_FILE',
    'BEST_ONNX_FILE',
    'CHECKPOINT_FILE',
    'CONFIG_FILE',
    'METRICS_FILE',
    'ONNX_FILE',
    'RETURN_METRIC',
    'SELECTED_ONNX_FILE',
    'SELECTION_FILE',
    'SNAPSHOT_DIR',
    'SUCCESS_METRIC',
    'SUMMARY_FILE',
    'RunDirError',
    'check_run_dir',
    'is_new_best',
    'no_best',
    'best_metric',
    'drop_snapshots_after',
    'snapshot_name',
    'snapshot_steps',
    'snapshots',
    'read_base_eval',
    'read_run_config',
    'write_base_eval',
    'write_config',
    'write_summary',
)
