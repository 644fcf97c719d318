"""Stable-Baselines3 DDPG + HerReplayBuffer vs rpl_trainer's DDPG + HER, in one run.

Both learn the same registered task from scratch (no base controller: SB3 has no residual
learner) for the same env-step budget with matched hyperparameters (3 x 256 ReLU, Adam
1e-3, batch 256, buffer 1e6, HER future k = 4, gamma = 1 - 1/T, Gaussian noise 0.2, the
same update-to-data ratio; SB3's per-step ``tau`` is set to the same average target speed
as our polyak 0.95 every ``target_update_interval`` steps). Differences that remain: SB3
has no input normalisation, no random-action exploration (``random_eps``) and no target
clipping; it steps one env, ours ``num_envs``.

Measured and printed, and saved to ``results/sb3_vs_own_<task>.json``:

* gradient updates per second (the same number of updates timed on each learner's own
  buffer after training, one torch thread);
* success rate of the deterministic policy on the same evaluation reset seeds after the
  budget, and the wall time of each training run.

Usage (tiny check)::

    .venv/bin/python benchmarks/sb3_vs_own.py --task push --steps 500 --eval-episodes 2
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import platform
import tempfile
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rpl_sim_bridge.tasks import make_task, task_spec
from rpl_trainer.config import make_config
from rpl_trainer.problem import registered_problem
from rpl_trainer.train import EVAL_STREAM, Trainer, episode_seed

REPO = pathlib.Path(__file__).resolve().parents[1]


class GoalTaskEnv(gym.Env):
    """A registered goal task as a gymnasium goal env (Dict observation, compute_reward)."""

    def __init__(self, task: str) -> None:
        self.task = make_task(task)
        spec = self.task.spec
        box = lambda n: gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)  # noqa: E731
        self.observation_space = gym.spaces.Dict(
            {
                'observation': box(spec.obs_dim),
                'achieved_goal': box(spec.goal_dim),
                'desired_goal': box(spec.goal_dim),
            }
        )
        self.action_space = gym.spaces.Box(
            spec.action_low, spec.action_high, (spec.action_dim,), np.float32
        )
        self._next_seed = 0

    @staticmethod
    def _cast(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {key: np.asarray(value, np.float32) for key, value in obs.items()}

    def reset(self, *, seed: int | None = None, options: Any = None):
        if seed is not None:
            self._next_seed = seed
        obs, info = self.task.reset(seed=self._next_seed)
        self._next_seed += 1
        return self._cast(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.task.step(action)
        return self._cast(obs), float(reward), terminated, truncated, info

    def compute_reward(self, achieved_goal, desired_goal, info):
        return self.task.compute_reward(achieved_goal, desired_goal, info)


def time_updates(update, count: int) -> float:
    """Updates per second of ``update()`` over ``count`` calls (after 5 warm-up calls)."""
    for _ in range(5):
        update()
    start = time.perf_counter()
    for _ in range(count):
        update()
    return count / (time.perf_counter() - start)


def run_own(args: argparse.Namespace, out_dir: pathlib.Path) -> dict[str, Any]:
    config = make_config(
        {
            'task': args.task,
            'controller': args.controller,
            'algo': 'scratch',
            'seed': args.seed,
            'total_env_steps': args.steps,
            'updates_per_env_step': args.utd,
            'eval_interval': 10**10,
            'eval_episodes': args.eval_episodes,
            'base_eval_episodes': 0,
            'torch_threads': 1,
        }
    )
    trainer = Trainer(config, registered_problem(args.task, args.controller), out_dir, False)
    start = time.perf_counter()
    result = trainer.run()
    wall = time.perf_counter() - start

    def update() -> None:
        batch = trainer.learner.buffer.sample(
            trainer.learner.sampler, config.batch_size, trainer.learner.rng
        )
        trainer.learner.agent.update(batch)

    return {
        'success_rate': result.success_rate,
        'train_wall_s': wall,
        'gradient_updates': trainer.learner.agent.updates,
        'updates_per_s': time_updates(update, args.timed_updates),
    }


def run_sb3(args: argparse.Namespace) -> dict[str, Any]:
    from stable_baselines3 import DDPG
    from stable_baselines3.common.noise import NormalActionNoise
    from stable_baselines3.her import HerReplayBuffer

    spec = task_spec(args.task)
    steps_per_episode = spec.max_episode_steps
    gradient_steps = max(1, round(args.utd * steps_per_episode))
    defaults = make_config({})
    tau = 1.0 - defaults.polyak ** (1.0 / defaults.target_update_interval)
    env = GoalTaskEnv(args.task)
    model = DDPG(
        'MultiInputPolicy',
        env,
        learning_rate=defaults.actor_lr,
        buffer_size=defaults.buffer_size,
        learning_starts=2 * steps_per_episode,
        batch_size=defaults.batch_size,
        tau=tau,
        gamma=1.0 - 1.0 / steps_per_episode,
        train_freq=(steps_per_episode, 'step'),
        gradient_steps=gradient_steps,
        action_noise=NormalActionNoise(
            np.zeros(spec.action_dim), defaults.noise_eps * np.ones(spec.action_dim)
        ),
        replay_buffer_class=HerReplayBuffer,
        replay_buffer_kwargs={
            'n_sampled_goal': defaults.her_k,
            'goal_selection_strategy': 'future',
        },
        policy_kwargs={'net_arch': [defaults.hidden_size] * defaults.hidden_layers},
        seed=args.seed,
        device='cpu',
        verbose=0,
    )
    start = time.perf_counter()
    model.learn(total_timesteps=args.steps)
    wall = time.perf_counter() - start

    successes = []
    for index in range(args.eval_episodes):
        obs, _ = env.reset(seed=episode_seed(args.seed, EVAL_STREAM, index))
        info = {'is_success': 0.0}
        for _ in range(steps_per_episode):
            action, _ = model.predict(obs, deterministic=True)
            obs, _, _, _, info = env.step(action)
        successes.append(info['is_success'])
    return {
        'success_rate': float(np.mean(successes)),
        'train_wall_s': wall,
        'gradient_updates': int(model._n_updates),
        'updates_per_s': time_updates(
            lambda: model.train(gradient_steps=1, batch_size=defaults.batch_size),
            args.timed_updates,
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--task', default='push', help='registered task (default: push)')
    parser.add_argument(
        '--controller', default='reactive_push', help='only for the task check (not used)'
    )
    parser.add_argument('--steps', type=int, default=50_000, help='env-step budget of each')
    parser.add_argument('--utd', type=float, default=0.1, help='gradient updates per env step')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--eval-episodes', type=int, default=50)
    parser.add_argument('--timed-updates', type=int, default=100)
    parser.add_argument('--out', type=pathlib.Path, default=None, help='JSON path')
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        own = run_own(args, pathlib.Path(tmp) / 'run')
    torch.set_num_threads(1)
    sb3 = run_sb3(args)
    report = {
        'task': args.task,
        'env_steps': args.steps,
        'updates_per_env_step': args.utd,
        'seed': args.seed,
        'eval_episodes': args.eval_episodes,
        'machine': f'{platform.machine()} {torch.get_num_threads()} torch thread(s)',
        'rpl_trainer': own,
        'sb3': sb3,
        'updates_per_s_ratio': own['updates_per_s'] / sb3['updates_per_s'],
    }
    for name in ('rpl_trainer', 'sb3'):
        r = report[name]
        print(
            f'{name:12s} success {r["success_rate"]:.3f}  train {r["train_wall_s"]:.1f} s  '
            f'{r["gradient_updates"]} updates  {r["updates_per_s"]:.1f} updates/s'
        )
    print(f'update speed ratio (ours / SB3): {report["updates_per_s_ratio"]:.2f}')
    out = args.out or REPO / 'results' / f'sb3_vs_own_{args.task}.json'
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=_json_default) + '\n')
    print(f'wrote {out}')


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return float(value)


if __name__ == '__main__':
    main()
