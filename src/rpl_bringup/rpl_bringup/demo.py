"""``rpl demo``: the SlipperyPush stack as three ROS 2 processes, then a one-screen summary.

Plans ``slippery_push.launch.py`` (lockstep, N episodes, ``monitor:=true``) with the
project runner, supervises the four processes (node logs go to files, the episode
monitor's per-episode lines to the screen) and summarises the monitor's JSON: controller,
model, episodes, success rate with its 95 % interval, mean final distance and fallbacks.

With a trained SlipperyPush model (by default :data:`DEFAULT_MODEL`, the committed one;
``--model auto`` takes the newest under ``models/``) the stack runs twice with the same
seeds, base controller alone and then with the residual, and the summary puts both side by
side, both measured through the ROS stack.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import signal
import tempfile
import time
from collections.abc import Callable

from rpl_bringup import launch_runner
from rpl_bringup.catalog import HELDOUT_FILE
from rpl_bringup.episode_log import summary_from_dict
from rpl_bringup.launch_shim import LaunchError
from rpl_bringup.supervisor import PREFIX, Supervisor
from rpl_interfaces import contract

TASK = 'slippery_push'
MONITOR = 'episode_monitor'
NO_MODEL = 'base only (no trained residual yet)'
# The model ``rpl demo`` and ``make demo`` run when none is given: the committed SlipperyPush
# residual (README: results), looked up from the working folder, then from the checkout.
DEFAULT_MODEL = os.path.join('models', 'slippery_push_reactive_push', 'actor.onnx')
# Where ``--model auto`` looks, relative to each search folder (newest match wins):
# models/<name>/actor.onnx as committed with its COMMAND.md, or a loose models/<name>.onnx.
MODEL_PATTERNS = (f'*{TASK}*/actor.onnx', f'*{TASK}*.onnx')
COLUMN = 26  # characters per column of the side-by-side summary


def model_search_dirs() -> list[str]:
    """Folders that hold committed models: ./models and <checkout or share>/models."""
    folders = ['models']
    try:
        folders.append(os.path.join(launch_runner.find_package_share('rpl_bringup'), 'models'))
    except LaunchError:
        pass
    return folders


def default_model(search_dirs: list[str] | None = None) -> str:
    """:data:`DEFAULT_MODEL` as found in the first search folder that has it ('' if none).

    Args:
        search_dirs: Model folders (default :func:`model_search_dirs`); DEFAULT_MODEL is
            relative to their parents.
    """
    relative = os.path.relpath(DEFAULT_MODEL, 'models')
    for folder in model_search_dirs() if search_dirs is None else search_dirs:
        path = os.path.join(folder, relative)
        if os.path.isfile(path):
            return os.path.abspath(path)
    return ''


def model_file_problem(path: str) -> str | None:
    """Why a ``--model`` path cannot be a model file ('does not exist', 'is not a file':
    a folder), or None (``rpl demo`` and ``rpl eval`` say it the same way)."""
    if os.path.isfile(path):
        return None
    return 'is not a file' if os.path.exists(path) else 'does not exist'


def resolve_model(model: str | None, search_dirs: list[str] | None = None) -> str:
    """The model file for ``--model``: None (the default), a path, 'none', or 'auto'.

    Args:
        model: None for :data:`DEFAULT_MODEL` (base only where it is not installed), a
            file path, 'none' (base only) or 'auto' (the newest file matching
            :data:`MODEL_PATTERNS` in a search folder that is not a committed model, else
            the default, else the committed one last by path).
        search_dirs: Model folders (default: :func:`model_search_dirs`).

    Returns:
        Absolute path of the model, or '' for base only.

    Raises:
        LaunchError: An explicit path that is not a model file, or 'auto' with no file
            found.
    """
    if model is None:
        return default_model(search_dirs)
    if model in ('', 'none'):
        return ''
    if model != 'auto':
        if (problem := model_file_problem(model)) is not None:
            raise LaunchError(f'--model {model!r} {problem} (give a file, auto or none)')
        return os.path.abspath(model)
    if search_dirs is None:
        search_dirs = model_search_dirs()
    found = [
        path
        for folder in search_dirs
        for pattern in MODEL_PATTERNS
        for path in glob.glob(os.path.join(folder, pattern))
        if os.path.isfile(path)
    ]
    if not found:  # asked for a model: not a silent base-only run with exit 0
        patterns = ' or '.join(MODEL_PATTERNS)
        raise LaunchError(
            f'--model auto found no {patterns} in {", ".join(search_dirs)} (give --model '
            'FILE, or none for the base controller alone)'
        )
    # The newest model of one's own; the committed ones (a heldout.json beside them) only
    # where there is none, the default first: their times are the order a checkout wrote
    # them in (a fresh clone picked the live model over the default by 4 ms).
    own = [path for path in found if not _committed(path)]
    if own:
        return os.path.abspath(max(own, key=lambda path: (os.path.getmtime(path), path)))
    default = default_model(search_dirs)
    return default or os.path.abspath(max(found))


def _committed(path: str) -> bool:
    """A committed model: its folder has the held-out figures (``heldout.json``)."""
    return os.path.isfile(os.path.join(os.path.dirname(path), HELDOUT_FILE))


@dataclasses.dataclass(frozen=True)
class StackRun:
    """One lockstep run of a stack, as its episode monitor saw it.

    Attributes:
        model: Residual model file, '' for the base controller alone.
        data: The monitor's JSON (:meth:`rpl_bringup.episode_log.EpisodeLog.to_dict`), or
            None when no episode result arrived.
        code: Exit code of the launch (0: every episode ran).
        wall_s: Wall time from the first process start to the last stop, s.
        log_dir: Folder with the node logs and the monitor's JSON.
    """

    model: str
    data: dict | None
    code: int
    wall_s: float
    log_dir: str


def run_stack(
    *,
    task: str,
    episodes: int,
    controller: str,
    model: str,
    seed: int,
    namespace: str,
    log_dir: str,
    write: Callable[[str], None] = print,
    command_timeout_s: float | None = None,
) -> StackRun:
    """Run ``<task>.launch.py`` in lockstep for ``episodes`` episodes with the monitor.

    The nodes' logs go to files in ``log_dir``; the monitor's per-episode lines and the
    runner's warnings go to ``write``.

    Args:
        task: Task of the launch file (``slippery_push``, ``push``, ``pick_and_place``).
        episodes: Episodes, >= 1 (episode i is reset with seed + i).
        controller: Base controller name.
        model: Residual model file, '' for base only.
        seed: Seed of episode 0.
        namespace: ROS namespace of the nodes.
        log_dir: Folder for the node logs and ``episodes.json`` (created).
        write: Sink of the monitor's lines and the runner's warnings.
        command_timeout_s: The ``command_timeout`` launch argument (None: the default).

    Returns:
        The run's outcome.
    """
    launch_runner.apply_dds_defaults(os.environ)
    path = launch_runner.locate_launch_file('rpl_bringup', f'{task}.launch.py')
    os.makedirs(log_dir, exist_ok=True)
    results = os.path.join(log_dir, 'episodes.json')
    arguments = {
        'episodes': str(episodes),
        'controller': controller,
        'model_path': model,
        'seed': str(seed),
        'mode': 'lockstep',
        'namespace': namespace,
        'monitor': 'true',
        'results': results,
    }
    if command_timeout_s is not None:
        arguments['command_timeout'] = str(command_timeout_s)
    plans = launch_runner.plan_launch_file(path, arguments, force_shim=True)
    # One screen: the monitor's lines on it, the nodes' logs in files.
    plans = [p if p.name == MONITOR else dataclasses.replace(p, output='log') for p in plans]
    start = time.monotonic()
    code = Supervisor(plans, write=_screen_filter(write), log_dir=log_dir).run()
    wall_s = time.monotonic() - start
    data = None
    if os.path.isfile(results):
        with open(results) as f:
            data = json.load(f)
    return StackRun(model=model, data=data, code=code, wall_s=wall_s, log_dir=log_dir)


def _screen_filter(write: Callable[[str], None]) -> Callable[[str], None]:
    # One screen: per-episode lines of the monitor and what goes wrong; not the start and
    # stop chatter of the runner, nor the monitor's INFO log lines (its warnings, errors and
    # its own one-line failures, `[episode_monitor] error: ...`, are shown: it has no log).
    chatter = tuple(f'[{MONITOR}] [{level}]' for level in ('INFO', 'DEBUG'))

    def sink(line: str) -> None:
        if line.startswith(chatter) or line.startswith(f'{PREFIX} started '):
            return
        if line.startswith(PREFIX) and ' stopped (' in line:
            return
        write(line.removeprefix(f'[{MONITOR}] '))

    return sink


def format_summary(
    data: dict, *, controller: str, model: str, episodes: int, seed: int, wall_s: float
) -> str:
    """The one-screen summary of a demo run, from the monitor's JSON."""
    s = summary_from_dict(data)
    lines = [
        'RPL demo: SlipperyPush, 3 ROS 2 node processes over DDS (lockstep)',
        f'  controller          {controller}',
        f'  model               {model or NO_MODEL}',
        f'  episodes            {s.episodes} of {episodes} (seeds {seed}..{seed + episodes - 1})',
    ]
    if s.episodes:
        lo, hi = s.ci95
        rate = s.steps / wall_s if wall_s > 0 else math.nan
        lines += [
            f'  success rate        {s.success_rate:.2f} (95% CI {lo:.2f}-{hi:.2f})',
            f'  mean final distance {s.mean_final_distance:.3f} m',
            f'  fallbacks           base {s.fallback_base}, zero {s.fallback_zero} '
            f'(of {s.steps} steps)',
            f'  wall time           {wall_s:.1f} s including start-up ({rate:.0f} steps/s)',
        ]
    commands = data.get('commands', {})
    if commands.get('count'):
        tags = ', '.join(f'{k} {v}' for k, v in sorted(commands['tags'].items()))
        lines.append(f'  commands            {commands["count"]} ({tags})')
    return '\n'.join(lines)


def _cell(run: StackRun, row: str) -> str:
    """One run's entry in row ``row`` of the side-by-side summary."""
    if row == 'command sources':  # tags of the commands the monitor saw
        tags = run.data.get('commands', {}).get('tags', {})
        return ', '.join(f'{k} {v}' for k, v in sorted(tags.items())) or '-'
    if row == 'wall time':
        return f'{run.wall_s:.1f} s'
    s = summary_from_dict(run.data)
    if not s.episodes:
        return 'no episode'
    if row == 'success rate':
        lo, hi = s.ci95
        return f'{s.success_rate:.2f} (95% CI {lo:.2f}-{hi:.2f})'
    if row == 'mean final distance':
        return f'{s.mean_final_distance:.3f} m'
    return f'base {s.fallback_base}, zero {s.fallback_zero}'  # fallbacks


def paired_successes(base: dict, rpl: dict) -> tuple[int, int, int]:
    """Episodes (same id, so same seed) reported by both runs, and how their success changed.

    Returns:
        ``(paired, gained, lost)``: episodes in both runs; episodes the residual turned from
        failure into success; episodes it turned from success into failure.
    """
    before = {e['episode']: bool(e['success']) for e in base.get('episodes', [])}
    after = {e['episode']: bool(e['success']) for e in rpl.get('episodes', [])}
    both = before.keys() & after.keys()
    gained = sum(after[k] and not before[k] for k in both)
    lost = sum(before[k] and not after[k] for k in both)
    return len(both), gained, lost


def format_comparison(
    base: StackRun, rpl: StackRun, *, controller: str, episodes: int, seed: int
) -> str:
    """The one-screen summary of a base-only run and a residual run on the same seeds.

    Args:
        base: The run of the base controller alone (its ``data`` must not be None).
        rpl: The run with the residual model (its ``data`` must not be None).
        controller: Base controller name.
        episodes: Episodes asked for per run.
        seed: Seed of episode 0.
    """
    counts = [summary_from_dict(run.data).episodes for run in (base, rpl)]
    done = (
        f'{counts[0]}' if counts[0] == counts[1] else f'{counts[0]} (base) and {counts[1]} (RPL)'
    )
    lines = [
        'RPL demo: SlipperyPush, 3 ROS 2 node processes over DDS (lockstep), same seeds twice',
        f'  controller          {controller}',
        f'  model               {display_path(rpl.model)}',
        f'  episodes            {done} of {episodes} per run '
        f'(seeds {seed}..{seed + episodes - 1})',
        f'  {"":20}{"base only":{COLUMN}}base + residual (RPL)',
    ]
    for row in (
        'success rate',
        'mean final distance',
        'fallbacks',
        'command sources',
        'wall time',
    ):
        lines.append(f'  {row:20}{_cell(base, row):{COLUMN}}{_cell(rpl, row)}')
    paired, gained, lost = paired_successes(base.data, rpl.data)
    lines.append(
        f'  same seed, RPL vs base: {gained} failure(s) turned into success, {lost} success(es) '
        f'into failure, of {paired}'
    )
    return '\n'.join(lines)


def display_path(path: str) -> str:
    """``path`` relative to the working directory when it lies inside it, else absolute."""
    relative = os.path.relpath(path)
    return path if relative.startswith('..') else relative


def _prefixed(write: Callable[[str], None], prefix: str) -> Callable[[str], None]:
    return lambda line: write(f'{prefix}{line}')


def run_demo(
    *,
    episodes: int,
    controller: str,
    model: str | None,
    seed: int,
    namespace: str = '/rpl_demo',
    write: Callable[[str], None] = print,
) -> int:
    """Run the demo; returns the process exit code (0 when all episodes were reported).

    Without a model: one base-only run. With one: a base-only run, then a run with the
    residual, on the same seeds, each in its own namespace under ``namespace``. ``model``
    as for :func:`resolve_model` (None: :data:`DEFAULT_MODEL`).
    """
    model_path = resolve_model(model)
    if model_path:
        check_model(controller, model_path)
    if model is None and not model_path:
        write(f'rpl demo: the default model {DEFAULT_MODEL} is not here: base controller only')
    log_dir = tempfile.mkdtemp(prefix='rpl_demo_')
    stack = {'task': TASK, 'episodes': episodes, 'controller': controller, 'seed': seed}
    if not model_path:
        write(f'rpl demo: {episodes} episodes of {TASK} with {controller}; node logs in {log_dir}')
        run = run_stack(**stack, model='', namespace=namespace, log_dir=log_dir, write=write)
        if run.data is None:
            return _no_result(run, write)
        write('')
        write(
            format_summary(
                run.data,
                controller=controller,
                model='',
                episodes=episodes,
                seed=seed,
                wall_s=run.wall_s,
            )
        )
        return _exit_code([run], episodes)
    write(
        f'rpl demo: {episodes} episodes of {TASK} with {controller}, first alone, then + '
        f'{display_path(model_path)}, same seeds; node logs in {log_dir}'
    )
    runs = []
    for label in ('base', 'rpl'):
        runs.append(
            run_stack(
                **stack,
                model=model_path if label == 'rpl' else '',
                namespace=f'{namespace.rstrip("/")}/{label}',
                log_dir=os.path.join(log_dir, label),
                write=_prefixed(write, f'[{label}] '),
            )
        )
        if runs[-1].data is None:
            return _no_result(runs[-1], write)
        if runs[-1].code != 0:  # interrupted (130 / 143) or failed: no run compares with it
            return _stopped_early(runs[-1], label, write, controller, episodes, seed)
    write('')
    write(format_comparison(*runs, controller=controller, episodes=episodes, seed=seed))
    if not runs[-1].data.get('commands', {}).get('tags', {}).get(contract.COMMAND_FROM_RESIDUAL):
        write(
            f'rpl demo: error: no command of the second run came from the residual node, so '
            f'{display_path(model_path)} never ran; see the logs in {runs[-1].log_dir}'
        )
        return 1
    return _exit_code(runs, episodes)


def check_model(controller: str, model_path: str) -> None:
    """Raises LaunchError (one line) unless the model at ``model_path`` loads and was made
    for the demo's task and ``controller`` (as ``rpl eval`` checks it), before any node
    starts: a residual node given a bad model runs the base action, which would make the
    comparison base against base."""
    from rpl_base_controllers.registry import controller_config, controllers_for
    from rpl_bringup.evaluation import load_residual_policy

    try:  # the controller first: a model cannot make a controller of another task fit
        controller_config(controller, TASK)
    except ValueError as exc:  # UnknownControllerError too
        known = controllers_for(TASK)
        raise LaunchError(f'{exc}; controllers for task {TASK}: {known}') from None
    try:
        load_residual_policy(TASK, controller, model_path, override=None)
    except ValueError as exc:
        raise LaunchError(
            f'{exc}; give --model FILE of a model made for it, or --model none for the base '
            'controller alone'
        ) from None


def _stopped_early(
    run: StackRun,
    label: str,
    write: Callable[[str], None],
    controller: str,
    episodes: int,
    seed: int,
) -> int:
    """What a run that ended with a non-zero code got (its summary), and why the demo
    stops there; returns the run's code."""
    write('')
    write(
        format_summary(
            run.data,
            controller=controller,
            model=run.model,
            episodes=episodes,
            seed=seed,
            wall_s=run.wall_s,
        )
    )
    interrupted = run.code in (128 + signal.SIGINT, 128 + signal.SIGTERM)
    why = 'was interrupted' if interrupted else f'ended with code {run.code}'
    rest = '; the run with the residual is not started' if label == 'base' else ''
    write(f'rpl demo: the {label} run {why}{rest}; see the logs in {run.log_dir}')
    return run.code


def _no_result(run: StackRun, write: Callable[[str], None]) -> int:
    write(
        f'no episode result arrived (launch exit code {run.code}); see the logs in {run.log_dir}'
    )
    return run.code or 1


def _exit_code(runs: list[StackRun], episodes: int) -> int:
    for run in runs:
        if run.code != 0:
            return run.code
        if run.data['summary']['episodes'] < episodes:
            return 1
    return 0
