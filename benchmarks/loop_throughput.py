"""Loop throughput: the full 3-node lockstep loop over DDS vs the in-process step rate.

Measured in the same run, so that the ratio means something on a shared machine:

* in-process: task.step + base controller in one Python loop (resets included), and the
  task step alone (the physics limit of this machine);
* 3-node lockstep: slippery_push.launch.py (sim bridge, base controller, residual node as
  separate processes talking over DDS, plus the episode monitor: ``monitor:=true``) run by
  the project's launch runner, timed by the header stamps of the episode results
  (start-up excluded: from the end of episode 0 to the end of the last episode), once per
  rclpy executor the nodes spin (``RPL_EXECUTOR``: ``single`` = SingleThreadedExecutor,
  ``events`` = rclpy's EventsExecutor), the executors taking turns ``--repeats`` times so
  that a change in the machine's load falls on both;
* named variants (``--variant NAME:KEY=VALUE,...``) in the same turns: environment
  variables for every node process (an RMW setting, a Fast DDS profile, ``PYTHONPATH`` to
  another source tree for a before/after comparison) and ``watch_control=true|false`` for
  the monitor (false: it subscribes to the episode results only, so the 3-node loop is
  measured without a 4th process decoding every control message; the fallback counts come
  from the sim bridge's episode results either way).

Target: >= 150 steps/s for the 3-node loop. Prints a table, writes
results/loop_throughput.json and results/loop_throughput.png.

Run: ``.venv/bin/python benchmarks/loop_throughput.py [--episodes 20] [--steps 2000]
[--executors single,events] [--variant NAME:KEY=VALUE,...] [--repeats 1]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import tempfile
import threading
import time

import numpy as np

from rpl_base_controllers.registry import make_controller
from rpl_bringup import launch_runner
from rpl_bringup.supervisor import Supervisor
from rpl_interfaces.base_node import EXECUTOR_ENV, EXECUTORS
from rpl_sim_bridge.tasks import make_task

TASK = 'slippery_push'
TARGET_STEPS_PER_S = 150.0
TARGET_RATIO = 0.6  # issue 10: 3-node loop rate / in-process task + controller rate
RESULTS = pathlib.Path(__file__).resolve().parents[1] / 'results'


def in_process_rates(controller: str, steps: int, seed: int) -> dict[str, float]:
    """Steps/s of task.step alone and of task.step + controller, one loop, resets included."""
    task = make_task(TASK)
    policy = make_controller(controller, task=TASK)
    obs, _ = task.reset(seed=seed)
    policy.reset()
    step_s = control_s = 0.0
    episode = 0
    start = time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        action = policy(obs['observation'], obs['desired_goal'])
        t1 = time.perf_counter()
        obs, _, terminated, truncated, _ = task.step(action)
        if terminated or truncated:
            episode += 1
            obs, _ = task.reset(seed=seed + episode)
            policy.reset()
        step_s += time.perf_counter() - t1
        control_s += t1 - t0
    total = time.perf_counter() - start
    return {
        'env_only_steps_per_s': steps / step_s,
        'env_and_controller_steps_per_s': steps / total,
        'controller_mean_us': 1e6 * control_s / steps,
    }


CLOCK_TICKS = os.sysconf('SC_CLK_TCK')


def _child_cpu_s() -> dict[str, float]:
    """CPU seconds (user + system, all threads) of each child process of this one, by its
    ROS node name (``__node:=``), read from /proc."""
    me = str(os.getpid())
    cpu: dict[str, float] = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                fields = f.read().rpartition(')')[2].split()
            if fields[1] != me:
                continue
            with open(f'/proc/{entry}/cmdline', 'rb') as f:
                args = f.read().split(b'\0')
        except OSError:
            continue  # gone meanwhile
        names = [a[len(b'__node:=') :].decode() for a in args if a.startswith(b'__node:=')]
        cpu[names[0] if names else entry] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return cpu


class CpuSampler:
    """Samples the children's CPU seconds every ``period_s`` (wall-clock stamped), so that
    the CPU each node spent between two episode-result stamps is known: CPU per step is
    what a loaded, shared machine changes least."""

    def __init__(self, period_s: float = 0.25) -> None:
        self.period_s = period_s
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), _child_cpu_s()))
            self._stop.wait(self.period_s)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds per node from the last sample at or before ``t0`` to the first at or
        after ``t1`` (a node missing from either sample is left out)."""
        before = [s for s in self.samples if s[0] <= t0]
        after = [s for s in self.samples if s[0] >= t1]
        if not before or not after:
            return {}
        start, end = before[-1][1], after[0][1]
        return {name: end[name] - start[name] for name in start if name in end}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One configuration of the stack compared in a run.

    Attributes:
        name: Label in the table and the JSON.
        env: Environment variables for every process of the stack.
        watch_control: The monitor's ``watch_control`` parameter (None: its default).
    """

    name: str
    env: dict[str, str]
    watch_control: bool | None = None


def parse_variant(text: str) -> Variant:
    """``NAME:KEY=VALUE,KEY=VALUE`` (``watch_control=true|false`` is the monitor's)."""
    name, _, rest = text.partition(':')
    env: dict[str, str] = {}
    watch: bool | None = None
    for item in filter(None, (part.strip() for part in rest.split(','))):
        key, sep, value = item.partition('=')
        if not sep or not key:
            raise argparse.ArgumentTypeError(f'{text!r}: expected NAME:KEY=VALUE,...')
        if key == 'watch_control':
            if value not in ('true', 'false'):
                raise argparse.ArgumentTypeError(f'{text!r}: watch_control is true or false')
            watch = value == 'true'
        else:
            env[key] = value
    if not name.strip():
        raise argparse.ArgumentTypeError(f'{text!r}: expected NAME:KEY=VALUE,...')
    return Variant(name.strip(), env, watch)


def stack_rate(controller: str, episodes: int, seed: int, variant: Variant) -> dict[str, object]:
    """Run the 3-node stack in lockstep for ``episodes`` episodes in the configuration
    ``variant``; rate from result stamps."""
    launch_runner.apply_dds_defaults(os.environ)
    namespace = f'/bench_loop_{os.getpid()}'
    path = launch_runner.locate_launch_file('rpl_bringup', f'{TASK}.launch.py')
    log_dir = tempfile.mkdtemp(prefix='rpl_bench_loop_')
    output = os.path.join(log_dir, 'episodes.json')
    arguments = {
        'episodes': str(episodes),
        'controller': controller,
        'seed': str(seed),
        'mode': 'lockstep',
        'namespace': namespace,
        'monitor': 'true',
        'results': output,
    }
    plans = launch_runner.plan_launch_file(path, arguments, force_shim=True)
    plans = [dataclasses.replace(p, output='log') for p in plans]
    if variant.watch_control is not None:
        flag = ('-p', f'watch_control:={str(variant.watch_control).lower()}')
        plans = [
            dataclasses.replace(p, cmd=p.cmd + flag) if p.name == 'episode_monitor' else p
            for p in plans
        ]
    lines: list[str] = []
    env = {**os.environ, **variant.env}
    with CpuSampler() as sampler:
        code = Supervisor(plans, write=lines.append, log_dir=log_dir, env=env).run()
    if code != 0 or not os.path.isfile(output):
        sys.exit(f'stack run failed (exit {code}); logs in {log_dir}:\n' + '\n'.join(lines))
    with open(output) as f:
        records = json.load(f)['episodes']
    if len(records) < 2:
        sys.exit(f'only {len(records)} episode result(s) arrived; logs in {log_dir}')
    stamps = np.array([r['stamp_s'] for r in records])
    steps = np.array([r['steps'] for r in records])
    per_episode = steps[1:] / np.diff(stamps)
    cpu = sampler.between(stamps[0], stamps[-1])
    timed_steps = int(steps[1:].sum())
    return {
        'variant': variant.name,
        'env': variant.env,
        'watch_control': variant.watch_control,
        'steps_per_s': float(steps[1:].sum() / (stamps[-1] - stamps[0])),
        'seconds': float(stamps[-1] - stamps[0]),
        'per_episode_steps_per_s': per_episode.tolist(),
        'episodes_timed': len(records) - 1,
        'cpu_ms_per_step': {name: 1e3 * c / timed_steps for name, c in cpu.items()},
        'fallback_base': int(sum(r['fallback_base'] for r in records)),
        'fallback_zero': int(sum(r['fallback_zero'] for r in records)),
        'log_dir': log_dir,
    }


def plot(result: dict, path: pathlib.Path) -> None:
    """Bar chart of the in-process rates and of the 3-node rate per executor, with the target."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    labels = ['task step\n(in-process)', 'task + controller\n(in-process)']
    values = [
        result['in_process']['env_only_steps_per_s'],
        result['in_process']['env_and_controller_steps_per_s'],
    ]
    for name, stack in result['stack'].items():
        labels.append(f'3-node lockstep\n({name})')
        values.append(stack['steps_per_s'])
    fig, ax = plt.subplots(figsize=(3.2 + 1.6 * len(values), 4))
    colors = ['#c63', '#36c', '#6a3', '#a3a', '#aa3']
    ax.bar(
        labels,
        values,
        color=['#9aa', '#699'] + [colors[i % 5] for i in range(len(result['stack']))],
    )
    for i, stack in enumerate(result['stack'].values(), start=2):
        per_episode = [v for run in stack['runs'] for v in run['per_episode_steps_per_s']]
        ax.scatter([i] * len(per_episode), per_episode, s=8, color='k', zorder=3)
    ax.axhline(TARGET_STEPS_PER_S, color='r', ls='--', label=f'target {TARGET_STEPS_PER_S:.0f}')
    ratio_line = TARGET_RATIO * result['in_process']['env_and_controller_steps_per_s']
    ax.axhline(ratio_line, color='m', ls=':', label=f'{TARGET_RATIO} of task + controller')
    for i, v in enumerate(values):
        ax.text(i, v, f'{v:.0f}', ha='center', va='bottom')
    ax.set_ylabel('steps / s (dots: per episode)')
    ax.set_title(f'{TASK} loop throughput ({result["controller"]}, one machine)')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _executors(text: str) -> list[str]:
    names = [name.strip() for name in text.split(',') if name.strip()]
    unknown = sorted(set(names) - set(EXECUTORS))
    if unknown:
        raise argparse.ArgumentTypeError(f'{text!r}: expected a comma list of {list(EXECUTORS)}')
    return names


def _summary(runs: list[dict]) -> dict[str, object]:
    """One executor's runs: the rate over all timed episodes of all runs, and the runs."""
    steps = sum(r['steps_per_s'] * r['seconds'] for r in runs)
    seconds = sum(r['seconds'] for r in runs)
    return {
        'steps_per_s': steps / seconds,
        'episodes_timed': sum(r['episodes_timed'] for r in runs),
        'cpu_ms_per_step': {
            name: float(np.mean([r['cpu_ms_per_step'].get(name, np.nan) for r in runs]))
            for name in runs[0]['cpu_ms_per_step']
        },
        'fallback_base': sum(r['fallback_base'] for r in runs),
        'fallback_zero': sum(r['fallback_zero'] for r in runs),
        'runs': runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--episodes', type=int, default=20, help='stack episodes (50 steps)')
    parser.add_argument('--steps', type=int, default=2000, help='in-process steps')
    parser.add_argument('--controller', default='reactive_push')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--executors',
        type=_executors,
        default=list(EXECUTORS),
        help=f'comma list of rclpy executors the nodes spin, compared in this run {EXECUTORS} '
        '(none: --executors "")',
    )
    parser.add_argument(
        '--variant',
        type=parse_variant,
        action='append',
        default=[],
        help='NAME:KEY=VALUE,... a stack configuration compared in this run: environment '
        'variables of the nodes, watch_control=true|false for the monitor (repeatable)',
    )
    parser.add_argument('--repeats', type=int, default=1, help='stack runs per variant')
    parser.add_argument('--out', default=str(RESULTS / 'loop_throughput'), help='path stem')
    args = parser.parse_args(argv)
    if args.episodes < 2:
        parser.error('--episodes must be at least 2 (episode 0 includes start-up)')
    if args.repeats < 1:
        parser.error('--repeats must be at least 1')

    load_before = os.getloadavg()
    in_process = in_process_rates(args.controller, args.steps, args.seed)
    variants = [Variant(e, {EXECUTOR_ENV: e}) for e in args.executors] + args.variant
    if not variants:
        parser.error('nothing to run: give --executors or --variant')
    if len({v.name for v in variants}) != len(variants):
        parser.error('variant names must differ (an executor name counts as one)')
    runs: dict[str, list[dict]] = {v.name: [] for v in variants}
    in_process_per_turn: list[float] = []
    for turn in range(args.repeats):
        if turn:  # the in-process rate of this turn too: the ratio of the same load
            in_process_per_turn.append(
                in_process_rates(args.controller, args.steps, args.seed)[
                    'env_and_controller_steps_per_s'
                ]
            )
        else:
            in_process_per_turn.append(in_process['env_and_controller_steps_per_s'])
        for variant in variants:  # taking turns: a load change falls on each
            run = stack_rate(args.controller, args.episodes, args.seed, variant)
            run['load_1min_after'] = os.getloadavg()[0]  # the machine's load during the run
            runs[variant.name].append(run)
    stack = {name: _summary(variant_runs) for name, variant_runs in runs.items()}
    first = runs[variants[0].name]
    for name, variant_runs in runs.items():  # per turn: the load was about the same
        stack[name]['paired_ratio_to_first'] = [
            run['steps_per_s'] / ref['steps_per_s']
            for run, ref in zip(variant_runs, first, strict=True)
        ]
        stack[name]['paired_ratio_to_in_process'] = [
            run['steps_per_s'] / rate
            for run, rate in zip(variant_runs, in_process_per_turn, strict=True)
        ]
    rate = in_process['env_and_controller_steps_per_s']
    result = {
        'task': TASK,
        'controller': args.controller,
        'cpu_count': os.cpu_count(),
        'load_average_1_5_15_min': {'before': load_before, 'after': os.getloadavg()},
        'in_process': in_process,
        'in_process_env_and_controller_per_turn': in_process_per_turn,
        'stack': stack,
        'ratio_stack_to_in_process': {e: s['steps_per_s'] / rate for e, s in stack.items()},
        'target_steps_per_s': TARGET_STEPS_PER_S,
        'meets_target': {e: s['steps_per_s'] >= TARGET_STEPS_PER_S for e, s in stack.items()},
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix('.json').write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix('.png'))
    print(f'{TASK} / {args.controller} on {os.cpu_count()} CPUs')
    print(f'  load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} (1 min)')
    print(f'  task step alone (in-process)    {in_process["env_only_steps_per_s"]:8.0f} steps/s')
    print(f'  task + controller (in-process)  {rate:8.0f} steps/s')
    for executor, summary in stack.items():
        print(
            f'  3-node lockstep, {executor:<10} {summary["steps_per_s"]:8.0f} steps/s '
            f'= {summary["steps_per_s"] / rate:.2f} of in-process '
            f'({summary["episodes_timed"]} episodes in {len(summary["runs"])} run(s): '
            + ', '.join(f'{r["steps_per_s"]:.0f}' for r in summary['runs'])
            + '; per turn x'
            + '/'.join(f'{r:.2f}' for r in summary['paired_ratio_to_first'])
            + f' of {variants[0].name}, x'
            + '/'.join(f'{r:.2f}' for r in summary['paired_ratio_to_in_process'])
            + " of that turn's in-process; load "
            + '/'.join(f'{r["load_1min_after"]:.1f}' for r in summary['runs'])
            + f'; fallbacks base {summary["fallback_base"]}, zero {summary["fallback_zero"]}); '
            f'target >= {TARGET_STEPS_PER_S:.0f}: '
            f'{"met" if result["meets_target"][executor] else "NOT met"}'
        )
    print('  CPU ms per step (user + system, all threads; mean over runs):')
    for name, summary in stack.items():
        cpu = summary['cpu_ms_per_step']
        print(
            f'    {name:<10} total {sum(cpu.values()):5.2f}: '
            + ', '.join(f'{node} {ms:.2f}' for node, ms in cpu.items())
        )
    print(f'wrote {out.with_suffix(".json")} and {out.with_suffix(".png")}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
