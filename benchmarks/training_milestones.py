"""Environment steps and wall-clock time at which training runs first reached given levels.

Reads the ``metrics.csv`` and ``config.json`` that ``rpl train`` writes into each run
directory and prints, per run, the first periodic evaluation at or above each level, the
best evaluation, and the last one. The levels are of the success rate (default 0.5, 0.8,
0.9) or, with ``--metric return``, of the mean evaluation return of a fixed-goal task
(MBRLPusher; ``--levels`` then required, e.g. -100 -95 -90). Saves the table as markdown and
JSON. A level never reached is reported as such.

    .venv/bin/python benchmarks/training_milestones.py runs/slippery_push_rpl_s0 \\
        runs/slippery_push_scratch_s0 --out results/training_milestones_slippery_push
    .venv/bin/python benchmarks/training_milestones.py runs/mbrl_pusher_* --metric return \\
        --levels -100 -90 --out results/training_milestones_mbrl_pusher
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform

import numpy as np

from rpl_trainer.metrics import read_metrics
from rpl_trainer.plot import variant_keys

LEVELS = (0.5, 0.8, 0.9)
COLUMNS = {'success': 'eval/success_rate', 'return': 'eval/return'}


def milestones(
    run_dir: pathlib.Path, levels: tuple[float, ...] = LEVELS, metric: str = 'success'
) -> dict:
    """First evaluation row at or above each level, plus best and last rows.

    Args:
        run_dir: A directory written by ``rpl train``.
        levels: Levels of ``metric``: success rates in [0, 1], or returns.
        metric: ``'success'`` (``eval/success_rate``) or ``'return'`` (``eval/return``).

    Returns:
        A JSON-ready dict: run, task, controller, algo, eval episodes, and per level
        ``{'env_steps', 'wall_s'}`` or ``None`` when never reached; best and last rows
        carry the metric's value under its name (``success`` or ``return``).
    """
    config = json.loads((run_dir / 'config.json').read_text())
    metrics = read_metrics(run_dir / 'metrics.csv')
    if COLUMNS[metric] not in metrics:
        raise ValueError(f'{run_dir}: metrics.csv has no {COLUMNS[metric]} column')
    success = metrics[COLUMNS[metric]]
    steps = metrics['env_steps']
    wall = metrics['wall_s']
    evaluated = ~np.isnan(success)
    if not evaluated.any():
        raise ValueError(f'{run_dir}: metrics.csv has no evaluation rows yet')
    result = {
        'run': str(run_dir),
        'task': config['task'],
        'controller': config.get('controller'),
        'algo': config['algo'],
        'eval_episodes': config['eval_episodes'],
        'metric': metric,
        'levels': {},
    }
    for level in levels:
        hits = np.flatnonzero(evaluated & (success >= level - 1e-9))
        key = f'{level:.2f}' if metric == 'success' else f'{level:g}'
        result['levels'][key] = (
            {'env_steps': int(steps[hits[0]]), 'wall_s': float(wall[hits[0]])}
            if hits.size
            else None
        )
    best = int(np.nanargmax(np.where(evaluated, success, np.nan)))
    last = int(np.flatnonzero(evaluated)[-1])
    result['best'] = {metric: float(success[best]), 'env_steps': int(steps[best])}
    result['last'] = {
        metric: float(success[last]),
        'env_steps': int(steps[last]),
        'wall_s': float(wall[last]),
    }
    return result


def seed_summary(rows: list[dict]) -> dict:
    """Median and range over seeds of the steps and minutes to each level."""
    summary = {'runs': [pathlib.Path(r['run']).name for r in rows], 'levels': {}}
    for level in rows[0]['levels']:
        hits = [r['levels'][level] for r in rows if r['levels'][level] is not None]
        entry = {'reached': f'{len(hits)} of {len(rows)}'}
        if hits:
            for key in ('env_steps', 'wall_s'):
                values = [h[key] for h in hits]
                entry[key] = {
                    'median': float(np.median(values)),
                    'min': min(values),
                    'max': max(values),
                }
        summary['levels'][level] = entry
    return summary


def summary_markdown(groups: list[dict]) -> str:
    """One row per configuration with several seeds."""
    lines = [
        '| seeds | ' + ' | '.join(f'to {lvl}' for lvl in groups[0]['levels']) + ' |',
        '|' + '---|' * (1 + len(groups[0]['levels'])),
    ]
    for g in groups:
        cells = [', '.join(g['runs'])]
        for entry in g['levels'].values():
            if 'env_steps' not in entry:
                cells.append(f'not reached ({entry["reached"]})')
                continue
            st, wall = entry['env_steps'], entry['wall_s']
            cells.append(
                f'{entry["reached"]}: median {_k(st["median"])} '
                f'({_k(st["min"])[:-1]}-{_k(st["max"])}), '
                f'{wall["median"] / 60:.1f} min ({wall["min"] / 60:.1f}-{wall["max"] / 60:.1f})'
            )
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def _k(steps: float) -> str:
    """Env steps in thousands, halves kept: 52500 -> '52.5k'."""
    return f'{steps / 1000:g}k'


def _cell(hit: dict | None) -> str:
    if hit is None:
        return 'not reached'
    return f'{_k(hit["env_steps"])} steps, {hit["wall_s"] / 60:.1f} min'


def to_markdown(rows: list[dict]) -> str:
    """One table row per run."""
    header = ['run', 'algo', 'eval episodes'] + [f'to {lvl}' for lvl in rows[0]['levels']]
    header += ['best (at)', 'last (at, wall)']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for r in rows:
        cells = [pathlib.Path(r['run']).name, r['algo'], str(r['eval_episodes'])]
        cells += [_cell(hit) for hit in r['levels'].values()]
        best, last, metric = r['best'], r['last'], r['metric']
        cells.append(f'{best[metric]:.2f} ({_k(best["env_steps"])})')
        at = f'{_k(last["env_steps"])}, {last["wall_s"] / 60:.1f} min'
        cells.append(f'{last[metric]:.2f} ({at})')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('runs', nargs='+', type=pathlib.Path, help='rpl train run directories')
    parser.add_argument('--out', type=pathlib.Path, required=True, help='path stem (.md, .json)')
    parser.add_argument(
        '--metric', choices=sorted(COLUMNS), default='success', help='what the levels are of'
    )
    parser.add_argument(
        '--levels', type=float, nargs='+', help='levels (default for success: 0.5 0.8 0.9)'
    )
    args = parser.parse_args()
    if args.levels is None and args.metric != 'success':
        parser.error('--metric return needs --levels (returns are task-specific)')
    levels = tuple(args.levels) if args.levels else LEVELS
    try:
        rows = [milestones(run, levels, args.metric) for run in args.runs]
    except (OSError, ValueError, KeyError) as error:
        parser.exit(2, f'training_milestones: {error}\n')
    table = to_markdown(rows)
    # Seeds of one configuration: the runs `rpl plot` draws as one curve.
    configs = [json.loads((run / 'config.json').read_text()) for run in args.runs]
    by_config: dict[tuple[str, str], list[dict]] = {}
    for key, row in zip(variant_keys(configs), rows, strict=True):
        by_config.setdefault(key, []).append(row)
    groups = [seed_summary(g) for g in by_config.values() if len(g) > 1]
    if groups:
        table += '\n\nSeeds of one configuration (median, range over the seeds that reached):\n\n'
        table += summary_markdown(groups)
    machine = f'{platform.machine()}, {platform.python_version()}'
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix('.md').write_text(table + f'\n\nPython {machine}\n')
    args.out.with_suffix('.json').write_text(
        json.dumps({'runs': rows, 'seed_groups': groups}, indent=2) + '\n'
    )
    print(f'wrote {args.out}.md and .json')


if __name__ == '__main__':
    main()
