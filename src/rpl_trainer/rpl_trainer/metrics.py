"""The metrics file of a ``rpl train`` run (metrics.csv): its columns, the per-row sums of
losses and successes, appending one row per evaluation, cutting rows back on resume, and
reading it back as columns (for ``rpl plot`` and the benchmarks).

Column names follow CleanRL's families: ``eval/...``, ``train/...``, ``losses/...``,
``charts/...``. Floats are written with 6 significant digits; NaN is an empty cell.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rpl_interfaces.output_files import write_failure

if TYPE_CHECKING:
    from rpl_trainer.ddpg import UpdateStats

METRIC_COLUMNS = (
    'env_steps',
    'episodes',
    'updates',
    'wall_s',
    'eval/success_rate',
    'eval/mean_final_distance',
    'train/success_rate',
    'losses/critic',
    'losses/actor',
    'charts/q_mean',
    'burn_in',
    'burn_in/value',
    'charts/env_steps_per_s',
    'charts/updates_per_s',
)
"""The columns of every run's file; a fixed-goal run's has ``eval/return`` too
(:func:`row_columns`)."""

RETURN_COLUMN = 'eval/return'
"""Mean evaluation return of a fixed-goal task, after ``eval/success_rate`` in its rows."""


def row_columns(row: Mapping[str, Any]) -> tuple[str, ...]:
    """The columns of a row: :data:`METRIC_COLUMNS`, with :data:`RETURN_COLUMN` after the
    success rate when the row has one (goal tasks' files stay as they were)."""
    if RETURN_COLUMN not in row:
        return METRIC_COLUMNS
    at = METRIC_COLUMNS.index('eval/success_rate') + 1
    return (*METRIC_COLUMNS[:at], RETURN_COLUMN, *METRIC_COLUMNS[at:])


class Accumulator:
    """Sums of per-update and per-episode numbers between two metrics rows.

    Its attributes are saved in the checkpoint (``vars(acc)``), so a resumed run continues
    the sums of the row in progress.
    """

    def __init__(self) -> None:
        self.critic = self.actor = self.q = 0.0
        self.updates = 0
        self.successes = 0.0
        self.episodes = 0

    def add_update(self, stats: UpdateStats) -> None:
        """Add the losses and mean Q of one gradient step."""
        self.critic += stats.critic_loss
        self.actor += stats.actor_loss
        self.q += stats.q_mean
        self.updates += 1

    def means(self) -> dict[str, float]:
        """The row's ``train/...``, ``losses/...`` and ``charts/q_mean`` (NaN: none yet)."""
        n = max(self.updates, 1)
        nan = float('nan')
        return {
            'train/success_rate': self.successes / self.episodes if self.episodes else nan,
            'losses/critic': self.critic / n if self.updates else nan,
            'losses/actor': self.actor / n if self.updates else nan,
            'charts/q_mean': self.q / n if self.updates else nan,
        }


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return '' if math.isnan(value) else f'{value:.6g}'
    return value


def _last_byte(path: pathlib.Path) -> bytes:
    with path.open('rb') as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def append_row(path: pathlib.Path, row: Mapping[str, Any]) -> None:
    """Append ``row`` (every column of :func:`row_columns`) to ``path``, with the header
    when the file is new or empty. A failed write (a full disk) leaves the file as it was
    (cut back to its size before: no partial row a later append would run into) and raises
    an OSError naming it."""
    size = path.stat().st_size if path.exists() else None
    if size and _last_byte(path) != b'\n':  # a row an older version's crash cut off:
        size = path.read_bytes().rfind(b'\n') + 1  # the next row must not join it
        os.truncate(path, size)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=row_columns(row))
    if not size:
        writer.writeheader()
    writer.writerow({k: _fmt(row[k]) for k in row_columns(row)})
    try:
        with path.open('a', newline='') as handle:
            handle.write(text.getvalue())
    except OSError as exc:
        with contextlib.suppress(OSError):
            if size is None:
                path.unlink()
            else:
                os.truncate(path, size)
        raise write_failure(path, exc) from None


def truncate_metrics(path: pathlib.Path, env_steps: int) -> None:
    """Drop metrics rows written after the checkpoint being resumed (a crash after it).

    Args:
        path: The metrics file (nothing happens when it does not exist).
        env_steps: Keep the rows at or before this many env steps (-1: keep none).
    """
    if not path.is_file():
        return
    with path.open(newline='') as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        columns = reader.fieldnames or METRIC_COLUMNS
    kept = [row for row in rows if int(row['env_steps']) <= env_steps]
    if len(kept) == len(rows):
        return
    with path.open('w', newline='') as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(kept)


def read_metrics(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """metrics.csv as columns of floats (empty cells: NaN).

    A last row with fewer cells than the header (cut off by a crash or a full disk while
    it was written) is left out. Rows of the same ``env_steps`` (a resumed run evaluates its
    last step again) are all kept: readers take the last one.

    Raises:
        OSError: The file cannot be read.
        ValueError: One line naming the file: not UTF-8 text, no ``env_steps`` column, a
            cell that is not a number, a row without a step count, or rows out of the
            order of a run (``env_steps`` falling).
    """
    path = pathlib.Path(path)
    try:
        with path.open(newline='', encoding='utf-8') as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = list(reader.fieldnames or METRIC_COLUMNS)
    except UnicodeDecodeError as exc:
        raise ValueError(f'{path} is not a metrics file (not UTF-8 text: {exc.reason})') from None
    if 'env_steps' not in columns:
        raise ValueError(f'{path} is not a metrics file (no env_steps column)')
    if rows and None in rows[-1].values():
        rows.pop()  # cut off while it was written
    table: dict[str, np.ndarray] = {}
    for key in columns:
        values = []
        for line, row in enumerate(rows, start=2):
            cell = row.get(key)
            try:
                values.append(float(cell) if cell else np.nan)
            except ValueError:
                raise ValueError(f'{path} line {line}: {key} {cell!r} is not a number') from None
        table[key] = np.array(values)
    steps = table['env_steps']
    for index, step in enumerate(steps):
        line = index + 2
        if not (np.isfinite(step) and step >= 0):
            cell = rows[index].get('env_steps')
            raise ValueError(f'{path} line {line}: env_steps {cell!r} is not a step count')
        if index and step < steps[index - 1]:
            raise ValueError(
                f'{path} line {line}: env_steps {step:.0f} after {steps[index - 1]:.0f}: the '
                'rows are not in the order of a run'
            )
    return table


__all__: Sequence[str] = (
    'METRIC_COLUMNS',
    'RETURN_COLUMN',
    'Accumulator',
    'append_row',
    'read_metrics',
    'row_columns',
    'truncate_metrics',
)
