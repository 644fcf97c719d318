"""Residual node latency: observation receipt -> command publish, p50 / p99 over >= 5000 steps.

A driver in this process plays sim bridge and base controller for one residual node
process (with a 3 x 256 ONNX actor, or none with ``--no-model``): for each step it
publishes the base action, then the observation (recorded Fetch SlipperyPush states), and
waits for the command of that step (lockstep). Three views of the latency:

* node: the residual node's own receipt -> publish time (perf_counter in the node, its
  ``decision_p50_us`` / ``decision_p99_us`` on /diagnostics over its last 1000 decisions,
  sampled every 0.5 s; reported: median of the p50s, max of the p99s);
* stamp: observation header stamp (driver, just before publish) -> command header stamp
  (node, just before publish): the node time plus one DDS hop;
* round trip: observation publish -> command receipt in the driver (two hops + spin).

Target: node p99 < 1 ms, also with a training run beside it: ``--beside 'COMMAND'`` starts
COMMAND (e.g. ``.venv/bin/rpl train ...``) first and stops it at the end, and the load
average is recorded. ``--variant NAME:KEY=VALUE,...`` compares node configurations in the
same run (environment variables of the residual node process, e.g. ``RPL_SCHED=fifo:10``),
the variants taking turns ``--rounds`` times, so that a change in the machine's load falls
on each. Prints a table, writes results/residual_latency.json and .png.

Run: ``.venv/bin/python benchmarks/residual_latency.py [--steps 5000] [--no-model]
[--variant NAME:KEY=VALUE,...] [--rounds 1] [--beside COMMAND]``
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import JointState

from rpl_base_controllers.registry import make_controller
from rpl_bringup import launch_runner
from rpl_interfaces import contract
from rpl_interfaces.base_node import now_ns, qos_profile
from rpl_interfaces.codec import StampedVector, decode, encode
from rpl_sim_bridge.bridge import observation_layout
from rpl_sim_bridge.tasks import make_task, task_spec

TASK = 'slippery_push'
TARGET_P99_US = 1000.0
RESULTS = pathlib.Path(__file__).resolve().parents[1] / 'results'


def record_states(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Observation payloads (count, fields) and base actions (count, 4) of real episodes."""
    spec = task_spec(TASK)
    task, controller = make_task(TASK), make_controller('reactive_push', task=TASK)
    payloads, actions = [], []
    obs, _ = task.reset(seed=seed)
    while len(payloads) < count:
        action = controller(obs['observation'], obs['desired_goal'])
        payloads.append(
            np.concatenate([obs['observation'], obs['achieved_goal'], obs['desired_goal']])
        )
        actions.append(action)
        obs, _, terminated, truncated, _ = task.step(action)
        if terminated or truncated or len(payloads) % spec.max_episode_steps == 0:
            obs, _ = task.reset(seed=seed + len(payloads))
            controller.reset()
    return np.array(payloads), np.array(actions)


def export_actor(folder: str) -> str:
    """A randomly initialised 3 x 256 residual actor as ONNX (the size the paper uses)."""
    import torch

    from rpl_trainer.export import export_onnx
    from rpl_trainer.networks import Actor, Dims

    torch.manual_seed(0)
    spec = task_spec(TASK)
    dims = Dims(spec.obs_dim, spec.goal_dim, spec.action_dim)
    actor = Actor(dims, hidden=256, layers=3, obs_clip=200.0, norm_clip=5.0, zero_last=False)
    return str(export_onnx(actor, os.path.join(folder, 'bench_actor.onnx'), scale=2.0))


class Driver(Node):
    """Publishes base action + observation of a step and waits for its command."""

    def __init__(self) -> None:
        super().__init__('latency_driver')
        qos = qos_profile(contract.CONTROL_QOS)
        self.obs_pub = self.create_publisher(JointState, contract.OBSERVATION, qos)
        self.base_pub = self.create_publisher(JointState, contract.BASE_ACTION, qos)
        self.create_subscription(JointState, contract.COMMAND, self._on_command, qos)
        self.create_subscription(
            DiagnosticArray,
            contract.DIAGNOSTICS,
            self._on_diagnostics,
            qos_profile(contract.DIAGNOSTICS_QOS),
        )
        self.command: tuple[int, int, int, int] | None = None  # episode, step, stamp, recv
        self.node_windows: list[tuple[int, float, float]] = []  # (step count, p50_us, p99_us)
        self.residual_fqn = ''
        self.exchanges = 0  # lockstep exchanges so far (the node's window ends here)

    def _on_command(self, msg: JointState) -> None:
        received = now_ns()
        vec = decode(msg, contract.ACTION_FIELDS)
        self.command = (vec.episode, vec.step, vec.stamp_ns, received)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name != self.residual_fqn:
                continue
            values = {kv.key: kv.value for kv in status.values}
            p50, p99 = (
                float(values.get('decision_p50_us', 'nan')),
                float(values.get('decision_p99_us', 'nan')),
            )
            if np.isfinite(p99):
                self.node_windows.append((self.exchanges, p50, p99))

    def wait_for_graph(self, timeout_s: float) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if (
                self.obs_pub.get_subscription_count() > 0
                and self.base_pub.get_subscription_count() > 0
                and self.count_publishers(self.resolve_topic_name(contract.COMMAND)) > 0
            ):
                return
            rclpy.spin_once(self, timeout_sec=0.05)
        sys.exit(f'the residual node did not appear within {timeout_s} s')

    def step(self, episode: int, step: int, payload, fields, action) -> tuple[int, int, int]:
        """One lockstep exchange; returns (obs stamp, command stamp, command receipt), ns."""
        self.command = None
        base = StampedVector(episode, step, action, now_ns(), 'reactive_push')
        self.base_pub.publish(encode(JointState(), base, contract.ACTION_FIELDS))
        stamp = now_ns()
        self.obs_pub.publish(
            encode(JointState(), StampedVector(episode, step, payload, stamp, TASK), fields)
        )
        end = time.monotonic() + 2.0
        while self.command is None or self.command[:2] != (episode, step):
            if time.monotonic() > end:
                raise TimeoutError(f'no command for (episode {episode}, step {step})')
            rclpy.spin_once(self, timeout_sec=0.01)
        self.exchanges += 1
        return stamp, self.command[2], self.command[3]


def percentiles_us(ns: np.ndarray) -> dict[str, float]:
    us = ns / 1e3
    return {
        'p50_us': float(np.percentile(us, 50)),
        'p99_us': float(np.percentile(us, 99)),
        'max_us': float(us.max()),
    }


def run(steps: int, warmup: int, use_model: bool, seed: int, env: dict | None = None) -> dict:
    launch_runner.apply_dds_defaults(os.environ)
    folder = tempfile.mkdtemp(prefix='rpl_bench_latency_')
    model = export_actor(folder) if use_model else ''
    payloads, actions = record_states(500, seed)
    fields = observation_layout(task_spec(TASK)).fields
    namespace = f'/bench_latency_{os.getpid()}'
    cmd = launch_runner.resolve_executable('rpl_residual_node', 'residual_node')
    cmd += ['--ros-args', '-r', '__node:=residual_node', '-r', f'__ns:={namespace}']
    cmd += ['-p', f'model_path:={json.dumps(model)}', '-p', 'diagnostics_period_s:=0.5']
    # A lockstep driver: the input-age guard off, as the lockstep stacks run the node (on,
    # the node spins rclpy's single-threaded executor: README, ROS loop speed).
    cmd += ['-p', 'max_input_age_s:=0.0']
    log = open(os.path.join(folder, 'residual_node.log'), 'w')  # noqa: SIM115
    node_proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    rclpy.init(args=['--ros-args', '-r', f'__ns:={namespace}'])
    driver = Driver()
    driver.residual_fqn = f'{namespace}/residual_node'
    try:
        driver.wait_for_graph(30.0)
        horizon = task_spec(TASK).max_episode_steps
        rows = []
        for k in range(warmup + steps):
            episode, step = divmod(k, horizon)
            i = k % len(payloads)
            row = driver.step(episode, step, payloads[i], fields, actions[i])
            if k >= warmup:
                rows.append(row)
        # let the node report a window that covers only measured steps
        end = time.monotonic() + 1.2
        while time.monotonic() < end:
            rclpy.spin_once(driver, timeout_sec=0.05)
    finally:
        driver.destroy_node()
        rclpy.try_shutdown()
        node_proc.terminate()
        node_proc.wait(10)
        log.close()
    rows = np.array(rows, dtype=np.int64)
    stamp_ns = rows[:, 1] - rows[:, 0]
    round_trip_ns = rows[:, 2] - rows[:, 0]
    # The node reports its last 1000 decisions: keep the windows of measured steps only.
    first = warmup + min(steps, 1000)
    windows = np.array([w[1:] for w in driver.node_windows if w[0] >= first])
    if windows.size == 0:
        windows = np.full((1, 2), np.nan)
    return {
        'env': env or {},
        'steps': steps,
        'model': 'random 3x256 ONNX actor' if use_model else 'none (base only)',
        'node_p50_us_median': float(np.nanmedian(windows[:, 0])),
        'node_p99_us_max': float(np.nanmax(windows[:, 1])),
        'node_windows': windows.tolist(),
        'stamp': percentiles_us(stamp_ns),
        'round_trip': percentiles_us(round_trip_ns),
        'stamp_us': (stamp_ns / 1e3).tolist(),
        'round_trip_us': (round_trip_ns / 1e3).tolist(),
        'log': log.name,
    }


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``NAME:KEY=VALUE,...``: a name and the residual node's extra environment."""
    name, _, rest = text.partition(':')
    env = {}
    for item in filter(None, (part.strip() for part in rest.split(','))):
        key, sep, value = item.partition('=')
        if not sep or not key:
            raise argparse.ArgumentTypeError(f'{text!r}: expected NAME:KEY=VALUE,...')
        env[key] = value
    if not name.strip():
        raise argparse.ArgumentTypeError(f'{text!r}: expected NAME:KEY=VALUE,...')
    return name.strip(), env


def merge(runs: list[dict]) -> dict:
    """One variant's runs (taking turns with the others) as one result."""
    stamp_us = np.concatenate([r['stamp_us'] for r in runs])
    round_trip_us = np.concatenate([r['round_trip_us'] for r in runs])
    windows = np.concatenate([np.array(r['node_windows'], dtype=float) for r in runs])
    return {
        **runs[0],
        'steps': sum(r['steps'] for r in runs),
        'node_p50_us_median': float(np.nanmedian(windows[:, 0])),
        'node_p99_us_max': float(np.nanmax(windows[:, 1])),
        'node_p99_us_per_run': [r['node_p99_us_max'] for r in runs],
        'node_windows': windows.tolist(),
        'stamp': percentiles_us((stamp_us * 1e3).astype(np.int64)),
        'round_trip': percentiles_us((round_trip_us * 1e3).astype(np.int64)),
        'stamp_us': stamp_us.tolist(),
        'round_trip_us': round_trip_us.tolist(),
        'log': [r['log'] for r in runs],
    }


def plot(results: dict[str, dict], path: pathlib.Path, beside: str) -> None:
    """Histogram of obs stamp -> command stamp per variant, with each node p99."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.logspace(1.5, 4.5, 80)
    colors = ['#c63', '#36c', '#6a3', '#a3a']
    for i, (name, result) in enumerate(results.items()):
        color = colors[i % len(colors)]
        ax.hist(
            result['stamp_us'],
            bins=bins,
            alpha=0.5,
            color=color,
            label=f'{name}: obs -> cmd stamp',
        )
        ax.axvline(
            result['node_p99_us_max'], color=color, ls='-', label=f'{name}: node p99 (diagnostics)'
        )
    ax.axvline(TARGET_P99_US, color='r', ls='--', label='target p99 1 ms')
    ax.set_xscale('log')
    ax.set_xlabel('latency (us)')
    ax.set_ylabel('steps')
    first = next(iter(results.values()))
    ax.set_title(
        f'residual node latency, {first["steps"]} steps per variant'
        + (', training beside' if beside else ''),
        fontsize=10,
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--steps', type=int, default=5000, help='measured steps (>= 5000)')
    parser.add_argument('--warmup', type=int, default=200)
    parser.add_argument('--no-model', action='store_true', help='base only (no ONNX actor)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--variant',
        type=parse_variant,
        action='append',
        default=[],
        help='NAME:KEY=VALUE,... environment of the residual node, compared in this run '
        '(repeatable; none: the default configuration only)',
    )
    parser.add_argument('--rounds', type=int, default=1, help='runs per variant, taking turns')
    parser.add_argument('--beside', default='', help='command run beside (e.g. a training run)')
    parser.add_argument('--out', default=str(RESULTS / 'residual_latency'), help='path stem')
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error('--rounds must be at least 1')
    variants = args.variant or [('default', {})]
    if len({name for name, _ in variants}) != len(variants):
        parser.error('variant names must differ')
    beside = None
    if args.beside:
        beside = subprocess.Popen(
            shlex.split(args.beside),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(5.0)  # past its start-up: training is running
    load = [os.getloadavg()]
    runs: dict[str, list[dict]] = {name: [] for name, _ in variants}
    try:
        for _ in range(args.rounds):
            for name, env in variants:
                runs[name].append(run(args.steps, args.warmup, not args.no_model, args.seed, env))
                load.append(os.getloadavg())
        beside_alive = beside is None or beside.poll() is None
    finally:
        if beside is not None and beside.poll() is None:
            os.killpg(beside.pid, signal.SIGTERM)
            beside.wait(30)
    if not beside_alive:
        sys.exit(f'the command beside ended early (exit {beside.returncode}): {args.beside}')
    results = {name: merge(variant_runs) for name, variant_runs in runs.items()}
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        'cpu_count': os.cpu_count(),
        'beside': args.beside,
        'load_average_1_5_15_min': load,
        'variants': results,
    }
    out.with_suffix('.json').write_text(json.dumps(summary))
    plot(results, out.with_suffix('.png'), args.beside)
    print(f'residual node latency, {args.steps} steps x {args.rounds} round(s) per variant')
    print(
        f'  beside: {args.beside or "nothing"}; load average (1 min) '
        + ' -> '.join(f'{entry[0]:.2f}' for entry in load)
    )
    for name, result in results.items():
        s, r = result['stamp'], result['round_trip']
        p99 = result['node_p99_us_max']
        print(
            f'  {name:<10} model: {result["model"]}; node receipt -> publish p50 '
            f'{result["node_p50_us_median"]:5.0f} us, p99 {p99:6.0f} us (max of windows; '
            'per run ' + ', '.join(f'{v:.0f}' for v in result['node_p99_us_per_run']) + ') '
            f'target p99 < {TARGET_P99_US:.0f} us: {"met" if p99 < TARGET_P99_US else "NOT met"}'
        )
        print(
            f'  {"":<10} obs stamp -> cmd stamp p50 {s["p50_us"]:5.0f} us, p99 {s["p99_us"]:6.0f}'
            f' us; round trip p50 {r["p50_us"]:5.0f} us, p99 {r["p99_us"]:6.0f} us'
        )
    print(f'wrote {out.with_suffix(".json")} and {out.with_suffix(".png")}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
