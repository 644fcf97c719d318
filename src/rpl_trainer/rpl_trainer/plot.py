"""Learning curves like the paper's Figure 3: success vs env steps, grouped by learner.

Each group (RPL, Scratch, Expert Explore) shows the mean over its runs (seeds) and the
min-max spread; a dashed 'Initial' line marks the base controller's success, averaged over
the runs' ``base_eval.json`` (one line per base where the runs had different ones).
``metric='return'`` draws the mean evaluation return of fixed-goal tasks instead
(``eval/return``, the paper's MBRLPusher curves). Runs of one learner whose configs differ
in more than the seed and the bookkeeping fields (budget, evaluation interval, ...) are
separate groups, labelled with the differing settings (e.g.
``RPL, greedy_envs=1``): only seeds of one configuration are averaged.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from rpl_interfaces import output_files
from rpl_trainer.config import RESUMABLE_CHANGES, TrainConfig
from rpl_trainer.metrics import read_metrics
from rpl_trainer.run_dir import BASE_EVAL_FILE, CONFIG_FILE, METRICS_FILE

LABELS = {'rpl': 'RPL', 'scratch': 'Scratch', 'expert_explore': 'Expert Explore'}
COLORS = {'rpl': 'tab:blue', 'scratch': 'tab:orange', 'expert_explore': 'tab:green'}
BASE_ALGOS = frozenset({'rpl', 'expert_explore'})  # algorithms whose actions use the base
REFERENCE_COLORS = ('tab:red', 'tab:purple', 'tab:brown', 'tab:gray')  # ``--reference`` lines
SUCCESS = 'eval/success_rate'

METRICS = {
    'success': (SUCCESS, 'Success rate', (-0.02, 1.02)),
    'return': ('eval/return', 'Return', None),
}
"""``rpl plot --metric``: metrics column, axis label and vertical limits (None: automatic)."""


# Config fields that never make two runs different learners.
NOT_A_VARIANT = RESUMABLE_CHANGES | {'seed', 'base_eval_episodes', 'eval_episodes'}


def _algo(config: dict) -> str:
    """A run's algorithm; a config without one gets TrainConfig's default, RPL."""
    return config.get('algo', 'rpl')


def _base_text(config: dict) -> str:
    """A run's base controller parameters that differ from their registered defaults, as
    canonical ``'NAME=VALUE,...'`` text (:func:`rpl_base_controllers.registry.
    stated_params_text`, so the order they were given in does not matter); a controller
    that is not registered (a test problem's) keeps the text as written."""
    controller = str(config.get('controller', ''))
    text = str(config.get('controller_params') or '')
    try:
        from rpl_base_controllers.registry import stated_params_text

        return stated_params_text(controller, text)
    except ValueError:
        return text


def _base_params(config: dict) -> dict[str, str]:
    """:func:`_base_text` by parameter name."""
    from rpl_base_controllers.registry import split_params_text

    items = split_params_text(_base_text(config))
    return dict(item.strip().partition('=')[::2] for item in items)


def _param_default(controller: str, name: str) -> str | None:
    """The registered default of a controller parameter as text ('(default)' where it is
    empty or the controller is not registered); None if the controller has no such one."""
    try:
        from rpl_base_controllers.registry import controller_info, format_param

        params = {p.name: p for p in controller_info(controller).params}
    except ValueError:
        return '(default)'
    if name not in params:
        return None
    return format_param(params[name].default) or '(default)'


def _base_labels(configs: Sequence[dict]) -> list[str]:
    """Per config, only the base parameters that differ between these configs, as
    'name=value, ...' (a parameter one config leaves at its default shows the default), so
    a label names what sets its base apart and not the parts all bases share."""
    items = [_base_params(config) for config in configs]
    names = sorted({n for i in items for n in i if len({j.get(n) for j in items}) > 1})
    labels = []
    for config, values in zip(configs, items, strict=True):
        controller = str(config.get('controller', ''))
        shown = {n: values.get(n) or _param_default(controller, n) for n in names}
        labels.append(', '.join(f'{n}={v}' for n, v in shown.items() if v is not None))
    return labels


def variant_keys(configs: Sequence[dict]) -> list[tuple[str, str]]:
    """Group key (algo, settings) per run config: ``settings`` names the fields that differ
    between runs of the same algo (besides :data:`NOT_A_VARIANT`) as 'name=value, ...'
    ('' when all runs of that algo share one configuration); of ``controller_params`` only
    the parameters that differ (:func:`_base_labels`)."""
    defaults = TrainConfig().to_dict()  # a field newer than a run has its default there
    configs = [{**defaults, **config} for config in configs]
    for config in configs:  # compared as the canonical text: item order does not matter
        config['controller_params'] = _base_text(config)
    by_algo: dict[str, list[dict]] = {}
    for config in configs:
        by_algo.setdefault(_algo(config), []).append(config)
    varying = {
        algo: sorted(
            name
            for name in set().union(*map(set, group))
            if name not in NOT_A_VARIANT and len({repr(c.get(name)) for c in group}) > 1
        )
        for algo, group in by_algo.items()
    }
    base_labels = {
        algo: dict(zip(map(id, group), _base_labels(group), strict=True))
        for algo, group in by_algo.items()
    }
    keys = []
    for config in configs:
        algo = _algo(config)
        parts = [
            base_labels[algo][id(config)] if n == 'controller_params' else f'{n}={config.get(n)}'
            for n in varying[algo]
        ]
        keys.append((algo, ', '.join(part for part in parts if part)))
    return keys


class PlotError(ValueError):
    """A run directory cannot be plotted."""


X_AXES = {
    'steps': ('env_steps', 1.0, 'Env steps'),
    'minutes': ('wall_s', 1 / 60, 'Wall-clock (min)'),
}
"""``rpl plot --x``: metrics column, scale and axis label of each horizontal axis."""


def initial_levels(runs: Sequence[tuple[dict, float | None]]) -> list[tuple[str, float]]:
    """The figure's 'Initial' lines from (config, the base's measured level or None) per run.

    The mean base level of the runs whose actions go through the base (RPL, Expert Explore),
    one line per base: runs on different bases (another controller, another cache, cached
    actions blended) start from different levels, so averaging them would draw a level no
    run started from; each line is then labelled with what sets its base apart. A Scratch
    run's ``base_eval`` measured a controller its actor never uses, possibly another one
    than the RPL runs' (another cache, other gains), so it counts only in a figure of
    Scratch runs alone. Empty when no run that counts measured its base.
    """
    if any(_algo(config) in BASE_ALGOS for config, _ in runs):
        chosen = [(c, float(b)) for c, b in runs if b is not None and _algo(c) in BASE_ALGOS]
    else:  # Scratch alone: whatever bases they measured, one line
        levels = [float(b) for _, b in runs if b is not None]
        return [('Initial', float(np.mean(levels)))] if levels else []
    by_base: dict[tuple[str, str], list[float]] = {}
    first: dict[tuple[str, str], dict] = {}
    for config, level in chosen:
        key = (str(config.get('controller', '')), _base_text(config))
        by_base.setdefault(key, []).append(level)
        first.setdefault(key, config)
    if len(by_base) <= 1:
        return [('Initial', float(np.mean(v))) for v in by_base.values()]
    keys = sorted(by_base)
    controllers_differ = len({controller for controller, _ in keys}) > 1
    lines = []
    for key, params in zip(keys, _base_labels([first[k] for k in keys]), strict=True):
        parts = ([key[0] or '?'] if controllers_differ else []) + ([params] if params else [])
        lines.append((f'Initial, {", ".join(parts)}', float(np.mean(by_base[key]))))
    return lines


def _load_run(
    run: pathlib.Path, x: str = 'steps', metric: str = 'success'
) -> tuple[dict, np.ndarray, np.ndarray, float | None]:
    """(config, x values (K,), metric (K,), the base's metric or None) of one run directory;
    x is env steps or wall-clock minutes (:data:`X_AXES`), the metric the success rate or
    the return (:data:`METRICS`)."""
    for name in (CONFIG_FILE, METRICS_FILE):
        if not (run / name).is_file():
            raise PlotError(f'{run} is not a run directory: {name} is missing')
    config = _read_json_object(run / CONFIG_FILE)
    try:
        metrics = read_metrics(run / METRICS_FILE)
    except ValueError as exc:
        raise PlotError(str(exc)) from None
    except OSError as exc:
        raise PlotError(f'{run / METRICS_FILE} cannot be read: {exc.strerror or exc}') from None
    column, scale, _ = X_AXES[x]
    name = METRICS[metric][0]
    steps, success = metrics.get(column), metrics.get(name)
    if steps is None or success is None or not np.isfinite(success).any():
        raise PlotError(f'{run / METRICS_FILE} has no {name} values yet')
    # One point per env step, the last row's (a resumed run evaluates its last step again),
    # whatever the x axis.
    env_steps = metrics['env_steps']
    last = len(env_steps) - 1 - np.unique(env_steps[::-1], return_index=True)[1]
    keep = last[np.isfinite(success[last])]
    base = None
    if (run / BASE_EVAL_FILE).is_file():
        base = _read_json_object(run / BASE_EVAL_FILE).get(name)
        if base is not None and (isinstance(base, bool) or not isinstance(base, (int, float))):
            raise PlotError(f'{run / BASE_EVAL_FILE}: {name} is {base!r}, not a number')
    return config, steps[keep] * scale, success[keep], base


def _read_json_object(path: pathlib.Path) -> dict[str, Any]:
    """A run's JSON file that holds one object, else PlotError naming it."""
    try:
        value = json.loads(path.read_text(encoding='utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlotError(f'{path} is not valid JSON ({exc})') from None
    except OSError as exc:  # unreadable (an I/O error)
        raise PlotError(f'{path} cannot be read: {exc.strerror or exc}') from None
    if not isinstance(value, dict):
        raise PlotError(f'{path} holds a {type(value).__name__}, not a JSON object')
    return value


def group_curves(
    runs: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max of several curves on a common grid.

    The grid is the union of the runs' evaluation steps up to the shortest run's last one
    (so every point averages all runs); each curve is linearly interpolated onto it.

    Args:
        runs: (env_steps (K_i,), success (K_i,)) per run, steps increasing.

    Returns:
        grid (G,), mean (G,), low (G,), high (G,).
    """
    end = min(float(steps[-1]) for steps, _ in runs)
    grid = np.unique(np.concatenate([steps for steps, _ in runs]))
    grid = grid[grid <= end]
    curves = np.stack([np.interp(grid, steps, values) for steps, values in runs])
    return grid, curves.mean(axis=0), curves.min(axis=0), curves.max(axis=0)


def plot_runs(
    runs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    title: str | None = None,
    force: bool = False,
    x: str = 'steps',
    metric: str = 'success',
    references: Sequence[tuple[str, float]] = (),
    until: float | None = None,
) -> pathlib.Path:
    """Draw the success (or return) curves of run directories into an image file.

    Args:
        runs: Run directories written by ``rpl train``.
        out: Image path (format from the suffix, e.g. .png); parents are created.
        title: Figure title; default: the task name(s).
        force: Replace ``out`` if it exists (else that is an error, found before plotting).
        x: Horizontal axis, ``'steps'`` (env steps) or ``'minutes'`` (wall-clock of the
            runs, from their metrics' ``wall_s``: compare runs that shared one machine).
        metric: Vertical axis, ``'success'`` (success rate) or ``'return'`` (mean
            evaluation return, written by fixed-goal tasks only).
        references: ``(label, value)`` levels measured elsewhere, drawn as labelled
            horizontal lines (e.g. the paper's PETS line: a controller too slow to train
            behind, evaluated on its own).
        until: Draw only the evaluations at or before this value of ``x`` (None: all).

    Returns:
        The image path.

    Raises:
        PlotError: A directory is missing or has no evaluations, the runs mix tasks, or
            ``out`` exists (without ``force``) or cannot be written.
    """
    try:
        # Never into a run it draws (its metrics.csv, config.json, ...).
        output_files.check_output(out, force=force, option='--out', inputs=tuple(runs))
    except output_files.OutputError as exc:
        raise PlotError(str(exc)) from None
    import matplotlib

    matplotlib.use('Agg')
    from matplotlib.backend_bases import FigureCanvasBase

    kinds = FigureCanvasBase.get_supported_filetypes()
    kind = pathlib.Path(out).suffix.lstrip('.').lower() or 'png'
    if kind not in kinds:
        raise PlotError(
            f'--out {out}: matplotlib writes no .{kind} image; give one of '
            + ', '.join(f'.{k}' for k in sorted(kinds))
        )
    import matplotlib.pyplot as plt

    loaded = []
    seen: dict[pathlib.Path, pathlib.Path] = {}
    for run in map(pathlib.Path, runs):
        if not run.is_dir():
            raise PlotError(f'run directory {run} does not exist')
        if run.resolve() in seen:  # it would count as one more seed of its curve
            raise PlotError(f'{run} is given twice (as {seen[run.resolve()]} before)')
        seen[run.resolve()] = run
        config, steps, values, base = _load_run(run, x, metric)
        if until is not None:
            keep = steps <= until
            if not keep.any():
                raise PlotError(f'{run} has no evaluation at or before --until {until:g}')
            steps, values = steps[keep], values[keep]
        loaded.append((config, steps, values, base))
    groups: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = {}
    keys = variant_keys([config for config, *_ in loaded])
    seeds: dict[tuple[str, str], list[object]] = {}
    for key, (config, steps, success, _) in zip(keys, loaded, strict=True):
        groups.setdefault(key, []).append((steps, success))
        seeds.setdefault(key, []).append(config.get('seed'))
    for (label, _), group_seeds in seeds.items():
        repeated = sorted({str(s) for s in group_seeds if group_seeds.count(s) > 1})
        if repeated:  # the same seed twice is one run twice: not a spread over seeds
            raise PlotError(
                f'{label}: two runs with seed {", ".join(repeated)}; the curve is a mean over '
                'seeds: give each seed once'
            )
    tasks = {str(config.get('task', '?')) for config, *_ in loaded}
    initials = initial_levels([(config, base) for config, *_, base in loaded])

    if len(tasks) > 1:
        raise PlotError(
            f'the runs are from different tasks ({", ".join(sorted(tasks))}); plot one task '
            'per figure'
        )
    # The legend sits below the axes; each of its lines makes the figure taller so that
    # tight_layout does not squeeze the axes to make room for it.
    entries = len(groups) + len(initials) + len(references)
    figure, axes = plt.subplots(figsize=(6.0, max(4.0, 3.0 + 0.2 * entries)))
    rank = {algo: i for i, algo in enumerate(LABELS)}
    order = sorted(groups, key=lambda key: (rank.get(key[0], len(rank)), key))
    styles = ('-', '--', ':', '-.')
    markers = ('o', 's', '^', 'v', 'D')  # with the 4 styles: 20 variants drawn apart
    for key in order:
        algo, settings = key
        grid, mean, low, high = group_curves(groups[key])
        color = COLORS.get(algo)
        same_algo = [k for k in order if k[0] == algo]
        index = same_algo.index(key)
        style, marker = styles[index % len(styles)], markers[index % len(markers)]
        n = len(groups[key])
        name = LABELS.get(algo, algo) + (f', {settings}' if settings else '')
        label = f'{name} ({n} seed{"s" if n > 1 else ""})'
        axes.plot(
            grid, mean, color=color, linestyle=style, marker=marker, markersize=3, label=label
        )
        axes.fill_between(grid, low, high, color=color, alpha=0.2, linewidth=0)
    for i, (label, level) in enumerate(initials):
        gray = str(0.55 * i / max(len(initials) - 1, 1))  # black, then lighter grays
        axes.axhline(level, color=gray, linestyle=(0, (4, 2 + i)), label=label)
    for i, (label, value) in enumerate(references):
        color = REFERENCE_COLORS[i % len(REFERENCE_COLORS)]
        axes.axhline(value, color=color, linestyle='-.', label=label)
    axes.set_xlabel(X_AXES[x][2])
    _, label, limits = METRICS[metric]
    axes.set_ylabel(label)
    if limits is not None:
        axes.set_ylim(*limits)
    axes.set_title(title or ', '.join(sorted(tasks)))
    axes.grid(alpha=0.3)
    # Below the axes: inside, a long legend (labelled variants) hides the curves.
    axes.legend(loc='upper center', bbox_to_anchor=(0.5, -0.2), fontsize='small', ncol=1)
    figure.tight_layout()
    out = pathlib.Path(out)
    image = io.BytesIO()
    figure.savefig(image, format=out.suffix.lstrip('.') or 'png', dpi=120, bbox_inches='tight')
    plt.close(figure)
    try:
        return output_files.write_output(out, image.getvalue(), force=force)
    except output_files.OutputError as exc:
        raise PlotError(str(exc)) from None
