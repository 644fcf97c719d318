"""Live learning on the ROS stack: SlipperyPush success rises while the trainer node runs.

Starts ``slippery_push_learn.launch.py`` (the watched stack in ``/rpl_live`` without
exploration, ``--explorers`` exploring stacks, the trainer node learning from all of them
and exporting a new model every ``--export-every`` updates; every residual node hot-reloads
it) from the base controller alone (no model file yet: the trainer exports the
zero-residual model first), lets it run for ``--minutes``, then stops it with SIGINT.

While it runs it prints, every 30 s, the episodes of each stack and the watched stack's
success over its last 100 episodes. Afterwards it evaluates the last exported model
in-process on the held-out seeds (``--eval-episodes`` episodes from seed 1000, the seeds
of the README's tables) next to the base controller alone, and writes

* ``results/live_learning.json``: per-episode results of every stack (wall time since the
  launch, success, final distance), the model export times, the held-out evaluation and
  the machine;
* ``results/live_learning.png``: success of the watched stack and of the explorers
  (windows of ``--window`` consecutive episodes, with Wilson 95 % intervals) against wall
  time, the base controller's held-out level and the export times.

``--task noisy_hook`` starts ``noisy_hook_learn.launch.py`` instead, with its defaults (a
two-frame learner, exploration noise 0.1); pass ``--out`` and ``--work`` to keep the
SlipperyPush results.

Run: ``.venv/bin/python benchmarks/live_learning.py [--task slippery_push] [--minutes 30]
[--explorers 1] [--max-rate 80]``
(its run folder, ``runs/live_learning/``, must not exist: it holds the model, the
trainer checkpoint, the monitors' JSON and the launch log).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import re
import signal
import subprocess
import sys
import time

import numpy as np

from rpl_bringup.episode_log import wilson_interval
from rpl_bringup.evaluation import evaluate
from rpl_residual_node.policy import ResidualPolicy
from rpl_sim_bridge.tasks import task_spec

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / 'results'
# Task -> (base controller, learn launch file).
LEARN_LAUNCHES = {
    'slippery_push': ('reactive_push', 'slippery_push_learn.launch.py'),
    'noisy_hook': ('reactive_hook', 'noisy_hook_learn.launch.py'),
}
NAMESPACE = '/rpl_live'
HELD_OUT_SEED = 1000
PROGRESS_PERIOD_S = 30.0
STOP_GRACE_S = 60.0


def machine() -> str:
    """What ran the benchmark, for the README figure."""
    return f'{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}'


def read_stacks(results_dir: pathlib.Path) -> dict[str, list[dict]]:
    """Episode records of every stack's monitor file (name -> records sorted by episode)."""
    stacks = {}
    for path in sorted(results_dir.glob('*.json')):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # written atomically; a missing file just has no episode yet
        stacks[path.stem] = sorted(data.get('episodes', []), key=lambda r: r['episode'])
    return stacks


def trainer_summary(log_path: pathlib.Path) -> dict:
    """The trainer node's last progress line in the launch log, and its counts: episodes
    ingested and skipped (live), messages missing from skipped episodes and lost in DDS."""
    lines = [
        line.strip()
        for line in log_path.read_text(errors='replace').splitlines()
        if '.trainer]: progress:' in line
    ]
    if not lines:
        return {}
    last = lines[-1].split('progress: ', 1)[1]
    out: dict = {'last_progress': last}
    patterns = {
        'episodes_ingested': r'^(\d+) episodes',
        'episodes_from_bags': r'\((\d+) from bags',
        'episodes_skipped': r'(\d+) skipped',
        'updates': r'(\d+) updates',
        'missing_messages': r'(\d+) messages missing',
        'messages_lost': r'(\d+) lost in DDS',
    }
    for key, pattern in patterns.items():
        found = re.search(pattern, last)
        if found:
            out[key] = int(found.group(1))
    return out


def recent_success(records: list[dict], n: int = 100) -> str:
    """'0.62 over 100' for the last n records ('-' with none)."""
    tail = records[-n:]
    if not tail:
        return '-'
    return f'{np.mean([r["success"] for r in tail]):.2f} over {len(tail)}'


def windows(records: list[dict], size: int, start_s: float) -> dict[str, list[float]]:
    """Success per window of ``size`` consecutive episodes, against the window's end time."""
    out: dict[str, list[float]] = {'minutes': [], 'success': [], 'lo': [], 'hi': []}
    for i in range(0, len(records) - size + 1, size):
        chunk = records[i : i + size]
        wins = sum(bool(r['success']) for r in chunk)
        lo, hi = wilson_interval(wins, size)
        out['minutes'].append((chunk[-1]['stamp_s'] - start_s) / 60.0)
        out['success'].append(wins / size)
        out['lo'].append(lo)
        out['hi'].append(hi)
    return out


def held_out(task: str, model: pathlib.Path | None, episodes: int) -> dict:
    """In-process success on the held-out seeds, base alone when ``model`` is None."""
    controller = LEARN_LAUNCHES[task][0]
    policy = None
    if model is not None:
        spec = task_spec(task)
        policy = ResidualPolicy.from_file(
            str(model), obs_dim=spec.obs_dim, goal_dim=spec.goal_dim, action_dim=spec.action_dim
        )
    result = evaluate(task, controller, episodes, HELD_OUT_SEED, policy=policy, progress=True)
    wins = int(round(result.success_rate * episodes))
    return {
        'episodes': episodes,
        'seed': HELD_OUT_SEED,
        'success_rate': result.success_rate,
        'ci95': wilson_interval(wins, episodes),
        'mean_final_distance': result.mean_final_distance,
    }


def plot(data: dict, path: pathlib.Path) -> None:
    """Success against wall time for the watched stack and the explorers."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, curve in data['windows'].items():
        if not curve['minutes']:
            continue
        watched = name == data['watched']
        label = f'{name} (no exploration)' if watched else f'{name} (exploring)'
        x = np.array(curve['minutes'])
        ax.plot(x, curve['success'], marker='o', lw=2 if watched else 1, label=label)
        if watched:
            ax.fill_between(x, curve['lo'], curve['hi'], alpha=0.2)
    base = data['held_out']['base']['success_rate']
    ax.axhline(base, color='grey', ls='--', label=f'base controller, held-out ({base:.2f})')
    final = data['held_out'].get('final_model')
    if final:
        ax.axhline(
            final['success_rate'],
            color='black',
            ls=':',
            label=f'last model, held-out ({final["success_rate"]:.2f})',
        )
    for i, minute in enumerate(data['export_minutes']):
        ax.axvline(
            minute, color='tab:green', alpha=0.15, lw=1, label='model export' if i == 0 else None
        )
    ax.set_xlabel('wall time since launch (min)')
    ax.set_ylabel(f'success over {data["window"]} consecutive episodes')
    ax.set_ylim(0, 1)
    ax.set_title(
        f'Live RPL on the ROS stack: {data["task"]} / {LEARN_LAUNCHES[data["task"]][0]}, '
        f'{data["explorers"]} explorer(s), {data["minutes"]:.0f} min'
    )
    ax.legend(loc='lower right', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--task', choices=sorted(LEARN_LAUNCHES), default='slippery_push')
    parser.add_argument('--minutes', type=float, default=30.0, help='run length (min)')
    parser.add_argument('--explorers', type=int, default=1, help='exploring stacks (0..4)')
    parser.add_argument(
        '--max-rate',
        type=float,
        default=80.0,
        help='lockstep cap on each stack, steps/s (0: none; uncapped stacks starve the '
        'trainer on 2 cores and it skips episodes)',
    )
    parser.add_argument('--updates-per-step', type=float, default=0.25)
    parser.add_argument('--export-every', type=int, default=1000, help='updates per export')
    parser.add_argument(
        '--train-overrides',
        default=None,
        help='TrainConfig overrides for the trainer node (key=value,...; default: the launch '
        "file's train_overrides, which `rpl launch rpl_bringup FILE --show-args` prints)",
    )
    parser.add_argument('--window', type=int, default=50, help='episodes per plotted point')
    parser.add_argument('--eval-episodes', type=int, default=200, help='held-out episodes')
    parser.add_argument('--work', type=pathlib.Path, default=ROOT / 'runs' / 'live_learning')
    parser.add_argument('--out', type=pathlib.Path, default=RESULTS / 'live_learning')
    args = parser.parse_args(argv)
    if args.work.exists():
        parser.error(f'--work {args.work} exists; move it away or pass another folder')
    if not 0 <= args.explorers <= 4:
        parser.error(f'--explorers must be 0..4, got {args.explorers}')
    results_dir = args.work / 'results'
    model = args.work / 'actor.onnx'
    args.work.mkdir(parents=True)
    command = [
        sys.executable,
        '-m',
        'rpl_bringup.cli',
        'launch',
        'rpl_bringup',
        LEARN_LAUNCHES[args.task][1],
        f'namespace:={NAMESPACE}',
        f'explorers:={args.explorers}',
        f'max_rate:={args.max_rate}',
        f'model_path:={model}',
        f'checkpoint:={args.work / "trainer.ckpt"}',
        f'updates_per_step:={args.updates_per_step}',
        f'export_every_updates:={args.export_every}',
        'monitor:=true',
        f'results:={results_dir}',
    ]
    if args.train_overrides is not None:
        command.append(f'train_overrides:={args.train_overrides}')
    print('running:', ' '.join(command), flush=True)
    log = (args.work / 'launch.log').open('w')
    load_before = os.getloadavg()
    start = time.time()
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    exports: list[float] = []
    last_signature = None
    next_report = start + PROGRESS_PERIOD_S
    try:
        while time.time() - start < args.minutes * 60.0:
            if proc.poll() is not None:
                sys.exit(f'the launch ended early (code {proc.returncode}); see {log.name}')
            try:
                stat = model.stat()
                signature = (stat.st_mtime_ns, stat.st_size)
            except FileNotFoundError:
                signature = None
            if signature is not None and signature != last_signature:
                exports.append(time.time())
                last_signature = signature
            if time.time() >= next_report:
                next_report += PROGRESS_PERIOD_S
                stacks = read_stacks(results_dir)
                counts = ', '.join(f'{k} {len(v)}' for k, v in stacks.items()) or 'none yet'
                watched = stacks.get(NAMESPACE.strip('/'), [])
                print(
                    f'[{(time.time() - start) / 60:5.1f} min] episodes: {counts}; '
                    f'watched stack success {recent_success(watched)}; '
                    f'{len(exports)} model exports',
                    flush=True,
                )
            time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    minutes = (time.time() - start) / 60.0
    load_after = os.getloadavg()
    trainer = trainer_summary(args.work / 'launch.log')
    stacks = read_stacks(results_dir)
    watched_name = NAMESPACE.strip('/')
    if watched_name not in stacks:
        sys.exit(f'no results of the watched stack in {results_dir}; see {args.work}/launch.log')
    print(f'stopped after {minutes:.1f} min; evaluating on the held-out seeds', flush=True)
    held = {'base': held_out(args.task, None, args.eval_episodes)}
    if model.exists():
        held['final_model'] = held_out(args.task, model, args.eval_episodes)
    data = {
        'task': args.task,
        'command': ' '.join(command),
        'minutes': minutes,
        'explorers': args.explorers,
        'window': args.window,
        'watched': watched_name,
        'episodes': {
            name: [
                {
                    'episode': r['episode'],
                    'minutes': (r['stamp_s'] - start) / 60.0,
                    'success': bool(r['success']),
                    'final_distance': r['final_distance'],
                    'fallback_base': r['fallback_base'],
                }
                for r in records
            ]
            for name, records in stacks.items()
        },
        'windows': {
            name: windows(records, args.window, start) for name, records in stacks.items()
        },
        'export_minutes': [(t - start) / 60.0 for t in exports],
        'held_out': held,
        'machine': machine(),
        'load_average_1_5_15_min': {'start': load_before, 'end': load_after},
        'trainer': trainer,
        'episodes_run': {name: len(records) for name, records in stacks.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    json_path = args.out.with_suffix('.json')
    json_path.write_text(json.dumps(data, indent=1) + '\n')
    plot(data, args.out.with_suffix('.png'))
    watched = data['windows'][watched_name]
    print(f'watched stack {watched_name}: {len(stacks[watched_name])} episodes')
    if watched['success']:
        print(
            f'  first {args.window} episodes: {watched["success"][0]:.2f}; '
            f'last {args.window}: {watched["success"][-1]:.2f}'
        )
    for name, result in held.items():
        lo, hi = result['ci95']
        print(f'  held-out {name}: {result["success_rate"]:.3f} ({lo:.3f}-{hi:.3f})')
    run_total = sum(len(records) for records in stacks.values())
    print(
        f'trainer: {trainer.get("episodes_ingested", "?")} live episodes ingested, '
        f'{trainer.get("episodes_skipped", "?")} skipped, {trainer.get("missing_messages", "?")}'
        f' messages missing, {trainer.get("messages_lost", "?")} lost in DDS; the stacks ran '
        f'{run_total} episodes'
    )
    print(f'{len(exports)} model exports; wrote {json_path} and {args.out.with_suffix(".png")}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
