"""Train PETS on mbrl_pusher, build the CachedPETS cache, and measure both.

Subcommands (run from the repository root with the project's Python)::

    # 1. Data and ensemble: random-action episodes, then rounds of PETS episodes, refit
    #    after each round; writes the ensemble .npz (and the transitions next to it).
    python tools/train_pets.py train --out PATH.npz
    # 2. The cache: run PETS on-policy, keep its action at --states visited states.
    python tools/train_pets.py cache --model PATH.npz --out CACHE.npz
    # 3. ms per step of both controllers and returns of PETS / CachedPETS per cache size
    #    / zero over a few episodes (results/pets_cache_size.json and .png).
    python tools/train_pets.py evaluate --model PATH.npz --cache CACHE.npz

Episodes run side by side (``--parallel`` tasks): the planner plans all rows of a batch at
once, which is how PETS fits on 2 cores at all.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

import numpy as np
import torch

from rpl_base_controllers.cached_pets import CachedPETS, CachedPETSConfig, cache_arrays
from rpl_base_controllers.pets import PETS, PETSConfig
from rpl_base_controllers.zero import ZeroController
from rpl_sim_bridge.tasks import make_task, task_spec
from rpl_sim_bridge.tasks.pusher_specs import PUSHER_TASKS
from rpl_trainer.pets_model import (
    EnsembleTrainConfig,
    ProbabilisticEnsemble,
    fit,
    save_ensemble,
)


def command_line() -> str:
    """This invocation as one line (stored in the files it writes)."""
    return ' '.join(shlex.quote(a) for a in ['python', 'tools/train_pets.py', *sys.argv[1:]])


def run_episodes(task: str, controller, seeds: list[int], steps: int | None = None) -> dict:
    """Run one episode of ``task`` per seed side by side with a batched controller (None:
    random).

    Returns:
        ``obs (B, T, D)``, ``actions (B, T, A)``, ``next_obs (B, T, D)``, ``returns (B,)``,
        ``success (B,)`` and ``ms_per_step`` (controller time per step and episode).
    """
    spec = task_spec(task)
    tasks = [make_task(task) for _ in seeds]
    obs = np.stack([t.reset(seed=s)[0]['observation'] for t, s in zip(tasks, seeds, strict=True)])
    rng = np.random.default_rng(seeds[0] + 12345)
    steps = steps or spec.max_episode_steps
    rows = {'obs': [], 'actions': [], 'next_obs': [], 'rewards': []}
    if controller is not None:
        controller.reset()
    spent = 0.0
    for _ in range(steps):
        if controller is None:
            action = rng.uniform(spec.action_low, spec.action_high, (len(tasks), spec.action_dim))
        else:
            start = time.perf_counter()
            action = controller.act_batch(obs, np.zeros((len(tasks), 0)))
            spent += time.perf_counter() - start
        results = [t.step(a) for t, a in zip(tasks, action, strict=True)]
        next_obs = np.stack([r[0]['observation'] for r in results])
        rows['obs'].append(obs)
        rows['actions'].append(np.clip(action, spec.action_low, spec.action_high))
        rows['next_obs'].append(next_obs)
        rows['rewards'].append([r[1] for r in results])
        obs = next_obs
    out = {k: np.stack(v, axis=1) for k, v in rows.items()}
    out['returns'] = out.pop('rewards').sum(axis=1)
    out['success'] = spec.final_success(obs)
    out['ms_per_step'] = 1e3 * spent / (steps * len(tasks))
    for t in tasks:
        t.close()
    return out


def planner_config(args: argparse.Namespace, model_file: str) -> PETSConfig:
    return PETSConfig(
        model_file=model_file,
        population=args.population,
        elites=max(1, args.population // 10),
        iterations=args.iterations,
        horizon=args.horizon,
        particles=args.particles,
        seed=args.seed,
        task=args.task,
    )


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    spec = task_spec(args.task)
    config = EnsembleTrainConfig(hidden=args.hidden, layers=args.layers, epochs=args.epochs)
    model = ProbabilisticEnsemble(spec.obs_dim, spec.action_dim, config)
    random_episodes = args.random_steps // spec.max_episode_steps
    data = run_episodes(args.task, None, list(range(args.seed, args.seed + random_episodes)))
    parts = [data]
    log = {'command': command_line(), 'rounds': []}

    def refit(round_index: int, extra: dict | None) -> None:
        obs, act, nxt = (
            np.concatenate([p[k].reshape(-1, p[k].shape[-1]) for p in parts])
            for k in ('obs', 'actions', 'next_obs')
        )
        start = time.time()
        history = fit(model, obs, act, nxt, config, seed=args.seed + round_index)
        entry = {
            'round': round_index,
            'transitions': len(obs),
            'nll_before': history[0],
            'nll_after': history[-1],
            'fit_s': time.time() - start,
        }
        if extra:
            entry.update(extra)
        log['rounds'].append(entry)
        print(json.dumps(entry), flush=True)
        save_ensemble(model, args.out, command_line())

    refit(0, {'episodes': 'random', 'returns_mean': float(data['returns'].mean())})
    next_seed = args.seed + random_episodes
    for r in range(1, args.rounds + 1):
        seeds = list(range(next_seed, next_seed + args.round_episodes))
        next_seed += args.round_episodes
        pets = PETS(planner_config(args, args.out))
        episodes = run_episodes(args.task, pets, seeds)
        parts.append(episodes)
        refit(
            r,
            {
                'episodes': 'pets',
                'returns_mean': float(episodes['returns'].mean()),
                'success': float(episodes['success'].mean()),
                'ms_per_step': episodes['ms_per_step'],
            },
        )
    with open(os.path.splitext(args.out)[0] + '_train_log.json', 'w') as f:
        json.dump(log, f, indent=1)


def build_cache(args: argparse.Namespace) -> None:
    spec = task_spec(args.task)
    episodes = -(-args.states // spec.max_episode_steps)
    seeds = list(range(args.seed, args.seed + episodes))
    result = run_episodes(args.task, PETS(planner_config(args, args.model)), seeds)
    states = result['obs'].reshape(-1, spec.obs_dim)
    actions = result['actions'].reshape(-1, spec.action_dim)
    # Keep --states of the visited states in random order, so the first k are a sample.
    keep = np.random.default_rng(args.seed).permutation(len(states))[: args.states]
    np.savez(args.out, **cache_arrays(states[keep], actions[keep], command_line()))
    print(
        json.dumps(
            {
                'states': len(keep),
                'pets_returns': result['returns'].tolist(),
                'pets_success': result['success'].tolist(),
                'ms_per_step': result['ms_per_step'],
            }
        )
    )


def evaluate(args: argparse.Namespace) -> None:
    blend_sizes = []  # checked before the episodes run, not after
    for text in args.neighbours.split(',') if args.neighbours else ():
        k = int(text) if text.strip().isdigit() else 0
        if k < 2:
            raise SystemExit(f'train_pets.py: --neighbours takes sizes of 2 or more, got {text!r}')
        blend_sizes.append(k)
    spec = task_spec(args.task)
    seeds = list(range(args.seed, args.seed + args.episodes))
    report = {'command': command_line(), 'seeds': seeds, 'controllers': {}}

    def record(name: str, result: dict) -> None:
        report['controllers'][name] = {
            'returns': result['returns'].tolist(),
            'return_mean': float(result['returns'].mean()),
            'success': float(result['success'].mean()),
            'ms_per_step': result['ms_per_step'],
        }
        print(name, json.dumps(report['controllers'][name]), flush=True)

    record('zero', run_episodes(args.task, ZeroController.for_task(spec), seeds))
    sizes = [int(s) for s in args.cache_sizes.split(',')]
    for size in sizes:
        cached = CachedPETS(CachedPETSConfig(args.cache, size), obs_dim=spec.obs_dim)
        record(f'cached_pets_{size}', run_episodes(args.task, cached, seeds))
    if not args.skip_pets:
        record('pets', run_episodes(args.task, PETS(planner_config(args, args.model)), seeds))
    if args.pets_log:
        # PETS's own episodes while it built the cache (the last line `cache` printed).
        with open(args.pets_log) as f:
            built = json.loads(f.read().strip().splitlines()[-1])
        returns = np.asarray(built['pets_returns'])
        report['controllers']['pets_cache_build'] = {
            'returns': returns.tolist(),
            'return_mean': float(returns.mean()),
            'success': float(np.mean(built['pets_success'])),
            'ms_per_step': built['ms_per_step'],
            'note': f'the episodes that built the cache ({args.pets_log}), not these seeds',
        }
    # Single-row ms per step (what the controller node pays per observation).
    obs = run_episodes(args.task, None, seeds[:1], steps=20)['obs'][0]
    goal = np.zeros(0)
    timing = {}
    controllers = {'cached_pets': CachedPETS(CachedPETSConfig(args.cache))}
    for k in blend_sizes:
        blended = CachedPETS(CachedPETSConfig(args.cache, neighbours=k))
        controllers[f'cached_pets_neighbours{k}'] = blended
    controllers['pets'] = PETS(planner_config(args, args.model))
    for name, controller in controllers.items():
        controller(obs[0], goal)
        repeats = 5 if name == 'pets' else 200
        start = time.perf_counter()
        for i in range(repeats):
            controller(obs[i % len(obs)], goal)
        timing[name] = 1e3 * (time.perf_counter() - start) / repeats
    timing['ratio'] = timing['pets'] / timing['cached_pets']
    if args.time_chua:
        # Chua et al.'s pusher settings (handful-of-trials dmbrl/config/pusher.py; 20
        # particles): one planning step.
        chua = PETSConfig(
            model_file=args.model,
            population=500,
            elites=50,
            iterations=5,
            horizon=25,
            particles=20,
        )
        controller = PETS(chua)
        start = time.perf_counter()
        controller(obs[0], goal)
        timing['pets_chua_settings'] = 1e3 * (time.perf_counter() - start)
    report['single_step_ms'] = timing
    print(json.dumps(timing))
    os.makedirs(os.path.dirname(args.json) or '.', exist_ok=True)
    with open(args.json, 'w') as f:
        json.dump(report, f, indent=1)
    plot(report, sizes, os.path.splitext(args.json)[0] + '.png')


def plot(report: dict, sizes: list[int], path: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    runs = report['controllers']
    means = [runs[f'cached_pets_{s}']['return_mean'] for s in sizes]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(sizes, means, 'o-', label='CachedPETS')
    for name, style in (('pets', 'r--'), ('pets_cache_build', 'm--'), ('zero', 'k:')):
        if name in runs:
            ax.axhline(runs[name]['return_mean'], ls=style[1:], color=style[0], label=name)
    ax.set_xscale('log')
    ax.set_xlabel('cache size (states)')
    ax.set_ylabel(f'mean return ({len(report["seeds"])} episodes)')
    ax.set_title('mbrl_pusher: return vs cache size')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='what', required=True)
    for name in ('train', 'cache', 'evaluate'):
        p = sub.add_parser(name)
        p.add_argument('--seed', type=int, default=0)
        p.add_argument(
            '--task',
            choices=tuple(PUSHER_TASKS),
            default='mbrl_pusher',
            help='arm task (default %(default)s; mbrl_pusher_pets: the PETS object start)',
        )
        p.add_argument('--population', type=int, default=100)
        p.add_argument('--iterations', type=int, default=3)
        p.add_argument('--horizon', type=int, default=10)
        p.add_argument('--particles', type=int, default=5)
        if name == 'train':
            p.add_argument('--out', required=True)
            p.add_argument('--random-steps', type=int, default=13500)
            p.add_argument('--rounds', type=int, default=2)
            p.add_argument('--round-episodes', type=int, default=5)
            p.add_argument('--hidden', type=int, default=200)
            p.add_argument('--layers', type=int, default=3)
            p.add_argument('--epochs', type=int, default=5)
            p.add_argument('--threads', type=int, default=1)
        elif name == 'cache':
            p.add_argument('--model', required=True)
            p.add_argument('--out', required=True)
            p.add_argument('--states', type=int, default=500)
        else:
            p.add_argument('--model', required=True)
            p.add_argument('--cache', required=True)
            p.add_argument('--episodes', type=int, default=5)
            p.add_argument('--cache-sizes', default='1,10,100,500')
            p.add_argument('--skip-pets', action='store_true')
            p.add_argument(
                '--neighbours', help="also time cached_pets blending k neighbours, e.g. '2,4,8'"
            )
            p.add_argument('--time-chua', action='store_true', help="one step at Chua's settings")
            p.add_argument('--pets-log', help="output of `cache`: its PETS episodes' returns")
            p.add_argument('--json', default='results/pets_cache_size.json')
    args = parser.parse_args()
    {'train': train, 'cache': build_cache, 'evaluate': evaluate}[args.what](args)


if __name__ == '__main__':
    main()
