"""``rpl demo``: the SlipperyPush stack as three ROS 2 processes, then a one-screen summary.

Plans ``slippery_push.launch.py`` (lockstep, N episodes, ``monitor:=true``) with the
project runner, supervises the four processes (node logs go to files, the episode
monitor's per-episode lines to the screen) and summarises the monitor's JSON:
controller, model, episodes, success rate with its 95 % interval, mean final distance and
fallbacks.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import tempfile
import time
from collections.abc import Callable

from rpl_bringup import launch_runner
from rpl_bringup.episode_log import summary_from_dict
from rpl_bringup.launch_shim import LaunchError
from rpl_bringup.supervisor import PREFIX, Supervisor

TASK = 'slippery_push'
LAUNCH_FILE = 'slippery_push.launch.py'
MONITOR = 'episode_monitor'
NO_MODEL = 'base only (no trained residual yet)'


def resolve_model(model: str, search_dirs: list[str] | None = None) -> str:
    """The model file for ``--model``: a path, 'none', or 'auto'.

    Args:
        model: A file path, 'none' (base only) or 'auto' (the newest
            ``models/*slippery_push*.onnx`` in the working directory or the checkout).
        search_dirs: Folders searched by 'auto' (default: ./models and <checkout>/models).

    Returns:
        Absolute path of the model, or '' for base only.

    Raises:
        LaunchError: An explicit path that does not exist.
    """
    if model in ('', 'none'):
        return ''
    if model != 'auto':
        if not os.path.isfile(model):
            raise LaunchError(f'--model {model!r} does not exist (give a file, auto or none)')
        return os.path.abspath(model)
    if search_dirs is None:
        search_dirs = ['models']
        try:
            search_dirs.append(
                os.path.join(launch_runner.find_package_share('rpl_bringup'), 'models')
            )
        except LaunchError:
            pass
    found = [p for d in search_dirs for p in glob.glob(os.path.join(d, f'*{TASK}*.onnx'))]
    return os.path.abspath(max(found, key=os.path.getmtime)) if found else ''


def _screen_filter(write: Callable[[str], None]) -> Callable[[str], None]:
    # One screen: per-episode lines of the monitor and what goes wrong; not the start and
    # stop chatter of the runner.
    def sink(line: str) -> None:
        if line.startswith(f'[{MONITOR}] [') or line.startswith(f'{PREFIX} started '):
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


def run_demo(
    *,
    episodes: int,
    controller: str,
    model: str,
    seed: int,
    namespace: str = '/rpl_demo',
    write: Callable[[str], None] = print,
) -> int:
    """Run the demo; returns the process exit code (0 when all episodes were reported)."""
    model_path = resolve_model(model)
    launch_runner.apply_dds_defaults(os.environ)
    path = launch_runner.locate_launch_file('rpl_bringup', LAUNCH_FILE)
    log_dir = tempfile.mkdtemp(prefix='rpl_demo_')
    results = os.path.join(log_dir, 'episodes.json')
    arguments = {
        'episodes': str(episodes),
        'controller': controller,
        'model_path': model_path,
        'seed': str(seed),
        'mode': 'lockstep',
        'namespace': namespace,
        'monitor': 'true',
        'results': results,
    }
    plans = launch_runner.plan_launch_file(path, arguments, force_shim=True)
    # One screen: the monitor's lines on it, the nodes' logs in files.
    plans = [p if p.name == MONITOR else dataclasses.replace(p, output='log') for p in plans]
    write(
        f'rpl demo: {episodes} episodes of {TASK} with {controller}'
        f'{" + " + os.path.basename(model_path) if model_path else ""}; node logs in {log_dir}'
    )
    start = time.monotonic()
    code = Supervisor(plans, write=_screen_filter(write), log_dir=log_dir).run()
    wall_s = time.monotonic() - start
    if not os.path.isfile(results):
        write(f'no episode result arrived (launch exit code {code}); see the logs in {log_dir}')
        return code or 1
    with open(results) as f:
        data = json.load(f)
    write('')
    write(
        format_summary(
            data,
            controller=controller,
            model=model_path,
            episodes=episodes,
            seed=seed,
            wall_s=wall_s,
        )
    )
    if code == 0 and data['summary']['episodes'] < episodes:
        return 1
    return code
