"""How fast the learner makes gradient updates, against what this machine could do, in one run.

Three figures, measured in turns (A B C A B C ...) so that a load change hits all of them:

* ``matmul``: a square fp32 matrix product (default 1024 x 1024) with the learner's torch
  threads; its rate in FLOP/s divided by the FLOPs of one DDPG update of the task's shapes
  is the **matmul limit** in updates/s (what the update would reach if all of its work ran
  at the speed of one large matrix product; small layers never quite do);
* ``bare``: a minimal DDPG update of the same shapes written here in plain eager torch
  (actor and critic MLPs, Adam, targets, polyak), on random tensors: no sampling, no
  normalisers, no bookkeeping;
* ``project``: ``Learner.update`` of :mod:`rpl_trainer.learner` on a buffer filled with
  random episodes of the task's shapes (HER sampling and relabelling included), and
  ``project_agent``: ``DDPGAgent.update`` alone on one pre-sampled batch (the learner
  without the sampling), and ``project_bf16``: ``Learner.update`` with
  ``update_precision=bfloat16`` (forward passes under bfloat16 autocast); with
  ``--compile`` also ``project_compiled``: ``Learner.update`` with the forward passes of its
  four networks compiled by ``torch.compile`` (inductor, C++ on CPU; the compile time is
  reported apart and not timed as updates).

FLOPs of one update (multiply-add = 2 FLOPs, B = batch, M_a / M_c = multiply-adds of one
actor / critic forward pass per sample): target actor and target critic forward (M_a + M_c),
critic forward and backward (3 M_c: the backward pass computes the input and the weight
gradients), actor forward and backward through the critic (3 M_a + 2 M_c: the critic's
weights get no gradient there, its input does). In all 2 B (4 M_a + 6 M_c).

Prints a table and writes ``results/trainer_speed.json``. Usage::

    .venv/bin/python benchmarks/trainer_speed.py                      # slippery_push shapes
    .venv/bin/python benchmarks/trainer_speed.py --task pick_and_place --seconds 5 --turns 4
    .venv/bin/python benchmarks/trainer_speed.py --compile --out results/trainer_speed_compile.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from rpl_sim_bridge.tasks import task_spec
from rpl_trainer.config import make_config, read_config_file, shipped_config
from rpl_trainer.her import EpisodeBatch
from rpl_trainer.learner import Learner
from rpl_trainer.networks import Dims, mlp
from rpl_trainer.problem import registered_problem

REPO = pathlib.Path(__file__).resolve().parents[1]
VARIANTS = ('bare', 'project', 'project_agent', 'project_bf16')


def mlp_macs(in_dim: int, hidden: int, layers: int, out_dim: int) -> int:
    """Multiply-adds of one forward pass of one sample through a ReLU MLP."""
    widths = [in_dim] + [hidden] * layers + [out_dim]
    return sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))


def update_flops(dims: Dims, hidden: int, layers: int, batch: int) -> int:
    """FLOPs of one DDPG update (module docstring)."""
    goal = dims.goal_dim
    actor = mlp_macs(dims.obs_dim + goal, hidden, layers, dims.action_dim)
    critic = mlp_macs(dims.obs_dim + goal + dims.action_dim, hidden, layers, 1)
    return 2 * batch * (4 * actor + 6 * critic)


def time_rate(work: Callable[[], None], seconds: float) -> float:
    """Calls of ``work`` per second over at least ``seconds`` (after one warm-up call)."""
    work()
    calls, start = 0, time.perf_counter()
    while True:
        work()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls / elapsed


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    try:
        for line in pathlib.Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def compile_forwards(learner: Learner) -> float:
    """Compile the forward passes of the learner's four networks; seconds the first
    update took (tracing and C++ compilation included)."""
    agent = learner.agent
    for net in (agent.actor, agent.critic, agent.actor_target, agent.critic_target):
        net.forward = torch.compile(net.forward, dynamic=False)
    start = time.perf_counter()
    learner.update(1)
    learner.update(1)  # the actor's backward graph compiles on its first use too
    return time.perf_counter() - start


def matmul_work(size: int) -> Callable[[], None]:
    a, b = torch.randn(size, size), torch.randn(size, size)
    return lambda: torch.mm(a, b)


class BareDDPG:
    """The smallest DDPG update of the given shapes, in plain eager torch."""

    def __init__(self, dims: Dims, hidden: int, layers: int, batch: int) -> None:
        net = lambda i, o: mlp(i, hidden, layers, o)  # noqa: E731  (plain ReLU MLPs)
        og = dims.obs_dim + dims.goal_dim
        self.actor, self.critic = net(og, dims.action_dim), net(og + dims.action_dim, 1)
        self.actor_t, self.critic_t = net(og, dims.action_dim), net(og + dims.action_dim, 1)
        self.actor_t.load_state_dict(self.actor.state_dict())
        self.critic_t.load_state_dict(self.critic.state_dict())
        self.opt_a = torch.optim.Adam(self.actor.parameters(), lr=1e-3)
        self.opt_c = torch.optim.Adam(self.critic.parameters(), lr=1e-3)
        self.x = torch.randn(batch, og)
        self.u = torch.rand(batch, dims.action_dim) * 2 - 1
        self.r = -torch.rand(batch, 1)
        self.x2 = torch.randn(batch, og)

    def update(self) -> None:
        with torch.no_grad():
            a2 = torch.tanh(self.actor_t(self.x2))
            y = torch.clamp(self.r + 0.98 * self.critic_t(torch.cat([self.x2, a2], 1)), -50, 0)
        loss_c = ((self.critic(torch.cat([self.x, self.u], 1)) - y) ** 2).mean()
        self.opt_c.zero_grad()
        loss_c.backward()
        self.opt_c.step()
        pi = torch.tanh(self.actor(self.x))
        loss_a = -self.critic(torch.cat([self.x, pi], 1)).mean() + (pi**2).mean()
        self.opt_a.zero_grad()
        loss_a.backward()
        self.opt_a.step()
        with torch.no_grad():
            for net, target in ((self.actor, self.actor_t), (self.critic, self.critic_t)):
                for p, pt in zip(net.parameters(), target.parameters(), strict=True):
                    pt.mul_(0.95).add_(p, alpha=0.05)


def random_episodes(dims: Dims, steps: int, count: int, rng: np.random.Generator):
    """``count`` episodes of random values in the buffer's shapes."""
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    return EpisodeBatch(
        obs=f(count, steps + 1, dims.obs_dim),
        achieved_goal=f(count, steps + 1, dims.goal_dim),
        desired_goal=f(count, steps, dims.goal_dim),
        action=np.clip(f(count, steps, dims.action_dim), -1, 1),
        executed=np.clip(f(count, steps, dims.action_dim), -1, 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--task', default='slippery_push')
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help="torch threads (default: the task's training config)",
    )
    parser.add_argument('--seconds', type=float, default=4.0, help='timed seconds per turn')
    parser.add_argument('--turns', type=int, default=3)
    parser.add_argument('--matmul-size', type=int, default=1024)
    parser.add_argument(
        '--compile',
        action='store_true',
        help='also time Learner.update with torch.compile-d network forward passes',
    )
    parser.add_argument('--out', default=str(REPO / 'results' / 'trainer_speed.json'))
    args = parser.parse_args()

    spec = task_spec(args.task)
    shipped = shipped_config(args.task)
    values = read_config_file(shipped) if shipped is not None else {'task': args.task}
    values['goal_consistent_her'] = False  # timed without a base controller
    if args.threads is not None:
        values['torch_threads'] = args.threads
    config = make_config(values)
    dims = Dims(spec.obs_dim, spec.goal_dim, spec.action_dim)
    steps = int(spec.max_episode_steps)
    hidden, layers, batch = config.hidden_size, config.hidden_layers, config.batch_size

    reward = registered_problem(args.task, None).reward_fn  # the task's HER reward

    def filled(precision: str) -> Learner:
        learner = Learner(  # sets torch's thread count
            dataclasses.replace(config, update_precision=precision),
            dims,
            steps,
            reward,
            action_fields=spec.action_fields,
        )
        learner.store(random_episodes(dims, steps, 200, np.random.default_rng(0)))
        learner.agent.burn_in.active = False  # time the full update (actor too)
        return learner

    learner, learner_bf16 = filled('float32'), filled('bfloat16')
    variants = list(VARIANTS)
    compile_s = None
    if args.compile:
        learner_compiled = filled('float32')
        print('compiling the forward passes (torch.compile) ...', flush=True)
        compile_s = compile_forwards(learner_compiled)
        print(f'compiled in {compile_s:.1f} s', flush=True)
        variants.append('project_compiled')
    presampled = learner.buffer.sample(learner.sampler, batch, learner.rng)
    bare = BareDDPG(dims, hidden, layers, batch)
    flops = update_flops(dims, hidden, layers, batch)
    mm_flops = 2 * args.matmul_size**3

    works = {
        'matmul': matmul_work(args.matmul_size),
        'bare': bare.update,
        'project': lambda: learner.update(1),
        'project_agent': lambda: learner.agent.update(presampled),
        'project_bf16': lambda: learner_bf16.update(1),
    }
    if args.compile:
        works['project_compiled'] = lambda: learner_compiled.update(1)
    rates: dict[str, list[float]] = {name: [] for name in works}
    load_before = os.getloadavg()
    started = time.perf_counter()
    for turn in range(args.turns):
        for name, work in works.items():
            rates[name].append(time_rate(work, args.seconds))
        print(
            f'turn {turn + 1}/{args.turns}: '
            + ', '.join(f'{n} {r[-1]:.1f}/s' for n, r in rates.items()),
            flush=True,
        )
    wall = time.perf_counter() - started

    per_turn_limit = [r * mm_flops / flops for r in rates['matmul']]
    result = {
        'task': args.task,
        'shapes': {
            'obs_dim': dims.obs_dim,
            'goal_dim': dims.goal_dim,
            'action_dim': dims.action_dim,
            'hidden': hidden,
            'layers': layers,
            'batch': batch,
        },
        'torch_threads': torch.get_num_threads(),
        'update_mflop': flops / 1e6,
        'matmul_gflops': [r * mm_flops / 1e9 for r in rates['matmul']],
        'limit_updates_per_s': per_turn_limit,
        'updates_per_s': {n: rates[n] for n in variants},
        'fraction_of_limit': {
            n: [r / lim for r, lim in zip(rates[n], per_turn_limit, strict=True)] for n in variants
        },
        'compile_s': compile_s,
        'turns': args.turns,
        'seconds_per_measure': args.seconds,
        'wall_s': wall,
        'load_average_before': load_before,
        'load_average_after': os.getloadavg(),
        'machine': f'{platform.node()} {cpu_model()}, {os.cpu_count()} cores, '
        f'torch {torch.__version__}',
    }
    med = statistics.median
    print(
        f'\none update ({args.task} shapes, batch {batch}, {layers} x {hidden}): '
        f'{flops / 1e6:.0f} MFLOP; torch threads {torch.get_num_threads()}'
    )
    print(
        f'matmul {args.matmul_size}^2: {med(result["matmul_gflops"]):.1f} GFLOP/s '
        f'-> limit {med(per_turn_limit):.0f} updates/s'
    )
    for name in variants:
        print(
            f'{name:>14}: {med(rates[name]):6.1f} updates/s = '
            f'{med(result["fraction_of_limit"][name]):.2f} of the limit (median of turns)'
        )
    print(f'load average {load_before[0]:.2f} -> {os.getloadavg()[0]:.2f}; {wall:.0f} s')
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + '\n')
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
