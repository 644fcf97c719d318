"""What noisy_hook's success rate can reach, and where its episodes really end.

noisy_hook measures success (and reward) on the *noisy* block position, as the 2019 code
did: the achieved goal is the observed block xy plus N(0, std^2) noise drawn anew at every
step. So a block resting exactly on the goal still counts as a failure whenever the last
step's noise is longer than the success threshold. This prints:

1. P(success | the block's true planar distance d from the goal) for the registered noise
   std and threshold (Monte Carlo over --draws noise samples): the ceiling at d = 0, and
   how close a policy must really place the block for a given success rate;
2. with --episodes N: an in-process evaluation of the base controller (and --model) on
   noisy_hook that records each episode's true final distance (the noise subtracted) next
   to the task's noisy success: success on the true position, on the noisy one, the
   noisy success the true distances predict (the mean of 1. over the episodes), the
   mean (a placement bias) and spread of the true final offset per axis, and what
   happened in each episode on the true positions (OUTCOMES: placed, hook never lifted,
   block never moved, block moved closer or away) with the median steps at which the hook
   was first lifted and the block first moved;
3. with --noise-free base|model as well: the same, but that reader (the base controller,
   or the residual model) is given the observation without its noise, the other the noisy
   one as always: a diagnostic of whose noise costs the placement precision.

    .venv/bin/python tools/noisy_success.py --episodes 200 --seed 1000 [--model M]
        [--noise-free base|model] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from rpl_base_controllers.registry import make_controller
from rpl_bringup.evaluation import evaluate, load_residual_policy
from rpl_sim_bridge.layout import HookObs
from rpl_sim_bridge.tasks import make_task

TASK = 'noisy_hook'
DISTANCES_CM = (0, 1, 2, 3, 4, 5, 6, 8)


LIFTED_M = 0.05  # the hook counts as lifted once it is this far above its start
MOVED_M = 0.02  # the block counts as moved once it is this far (xy) from its start
OUTCOMES = (
    'placed',  # true final distance within the success threshold
    'hook never lifted',  # the gripper never raised the hook LIFTED_M off the table
    'block never moved',  # the hook was lifted but the block stayed within MOVED_M
    'block moved closer',  # the block moved and ended nearer the goal than it started
    'block moved away',  # the block moved and ended no nearer the goal
)


class TrueDistances:
    """The task, recording each episode's true (noise-free) course: the final block-goal
    offset, and what happened on the way (:data:`OUTCOMES`)."""

    def __init__(self, task, threshold: float) -> None:
        self.task = task
        self.threshold = threshold
        self.offsets: list[np.ndarray] = []  # (3,) per episode: true block - goal, m
        self.outcomes: list[str] = []
        self.lift_steps: list[int | None] = []  # first step with the hook lifted
        self.move_steps: list[int | None] = []  # first step with the block moved
        self._start: tuple[float, np.ndarray] = (0.0, np.zeros(2))
        self._steps = 0

    def __getattr__(self, name: str):
        return getattr(self.task, name)

    def _true(self, obs) -> tuple[float, np.ndarray]:
        """(hook z, block xy) without this step's noise."""
        clean = self.task.noise_free(obs['observation'])
        return float(clean[HookObs.HOOK_POS][2]), clean[HookObs.OBJECT_POS][:2]

    def reset(self, *args, **kwargs):
        obs, info = self.task.reset(*args, **kwargs)
        self._start = self._true(obs)
        self._steps = 0
        self.lift_steps.append(None)
        self.move_steps.append(None)
        return obs, info

    def step(self, action: np.ndarray):
        obs, reward, terminated, truncated, info = self.task.step(action)
        self._steps += 1
        hook_z, block_xy = self._true(obs)
        start_z, start_xy = self._start
        if self.lift_steps[-1] is None and hook_z - start_z > LIFTED_M:
            self.lift_steps[-1] = self._steps
        if self.move_steps[-1] is None and np.linalg.norm(block_xy - start_xy) > MOVED_M:
            self.move_steps[-1] = self._steps
        if terminated or truncated:
            block = np.array(obs['achieved_goal'], dtype=np.float64)
            block[:2] = block_xy
            goal = np.asarray(obs['desired_goal'], dtype=np.float64)
            self.offsets.append(block - goal)
            self.outcomes.append(self._outcome(block, goal, start_xy))
        return obs, reward, terminated, truncated, info

    def _outcome(self, block: np.ndarray, goal: np.ndarray, start_xy: np.ndarray) -> str:
        if np.linalg.norm(block - goal) < self.threshold:
            return OUTCOMES[0]
        if self.lift_steps[-1] is None:
            return OUTCOMES[1]
        if self.move_steps[-1] is None:
            return OUTCOMES[2]
        closer = np.linalg.norm(block[:2] - goal[:2]) < np.linalg.norm(start_xy - goal[:2])
        return OUTCOMES[3] if closer else OUTCOMES[4]


def success_probability(offset: np.ndarray, noise: np.ndarray, threshold: float) -> float:
    """P(|offset + (n_x, n_y, 0)| < threshold) over the noise draws ``noise`` (K, 2)."""
    dx, dy, dz = (float(v) for v in offset)
    squared = (dx + noise[:, 0]) ** 2 + (dy + noise[:, 1]) ** 2 + dz * dz
    return float(np.mean(squared < threshold * threshold))


def outcome_table(wrapped: TrueDistances) -> dict[str, dict]:
    """Per outcome: the share of the episodes and the median first step at which the hook
    was lifted and the block moved (None where no episode of it got there)."""
    table = {}
    for name in OUTCOMES:
        rows = [i for i, o in enumerate(wrapped.outcomes) if o == name]
        lifts = [wrapped.lift_steps[i] for i in rows if wrapped.lift_steps[i] is not None]
        moves = [wrapped.move_steps[i] for i in rows if wrapped.move_steps[i] is not None]
        table[name] = {
            'share': len(rows) / max(len(wrapped.outcomes), 1),
            'lift_step': float(np.median(lifts)) if lifts else None,
            'move_step': float(np.median(moves)) if moves else None,
        }
    return table


class NoiseFree:
    """A base controller or residual policy given the task's current observation without
    its noise: which reader's noise costs the placement precision (a diagnostic; the
    models were trained on the noisy observation)."""

    def __init__(self, task, inner) -> None:
        self.task = task
        self.inner = inner

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def reset(self) -> None:
        if hasattr(self.inner, 'reset'):
            self.inner.reset()

    def __call__(self, observation: np.ndarray, *rest):
        return self.inner(self.task.noise_free(observation), *rest)


def _step(value: float | None) -> str:
    return '  -' if value is None else f'{value:3.0f}'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--draws', type=int, default=1_000_000, help='noise samples')
    parser.add_argument('--episodes', type=int, default=0, help='also evaluate (0: table only)')
    parser.add_argument('--seed', type=int, default=1000, help='seed of episode 0')
    parser.add_argument('--controller', default='reactive_hook')
    parser.add_argument('--model', default=None, help='residual ONNX model (default: base)')
    parser.add_argument('--json', default=None, help='write the figures here (new file)')
    parser.add_argument(
        '--noise-free',
        choices=('base', 'model'),
        default=None,
        help='diagnostic: give the base controller or the model the noise-free observation',
    )
    args = parser.parse_args(argv)
    if args.draws < 1 or args.episodes < 0:
        parser.error('--draws must be at least 1 and --episodes at least 0')
    if args.noise_free and not args.episodes:
        parser.error('--noise-free needs --episodes (it is about evaluated episodes)')
    if args.noise_free == 'model' and args.model is None:
        parser.error('--noise-free model needs --model')
    if args.json and os.path.exists(args.json):
        parser.error(f'--json {args.json} exists; not overwritten')
    task = make_task(TASK)
    std = float(task.config.obs_noise_std)
    threshold = float(task.spec.distance_threshold)
    noise = np.random.default_rng(0).normal(0.0, std, (args.draws, 2))
    table = {
        cm: success_probability(np.array([cm / 100, 0.0, 0.0]), noise, threshold)
        for cm in DISTANCES_CM
    }
    print(f'{TASK}: noise std {std:g} m on the block xy, success within {threshold:g} m')
    print('true distance  P(success)')
    for cm, p in table.items():
        print(f'  {cm:4d} cm       {p:.3f}')
    record: dict = {'task': TASK, 'std': std, 'threshold': threshold, 'ceiling_by_cm': table}
    if args.episodes:
        try:
            policy = (
                load_residual_policy(TASK, args.controller, args.model) if args.model else None
            )
        except ValueError as exc:
            print(f'noisy_success: {exc}', file=sys.stderr)
            return 2
        wrapped = TrueDistances(task, threshold)
        controller = make_controller(args.controller, task=TASK)
        if args.noise_free == 'base':
            controller = NoiseFree(task, controller)
        elif args.noise_free == 'model':
            policy = NoiseFree(task, policy)
        result = evaluate(wrapped, controller, args.episodes, args.seed, policy=policy)
        true = np.linalg.norm(np.array(wrapped.offsets), axis=1)
        expected = [success_probability(o, noise, threshold) for o in wrapped.offsets]
        label = args.model or f'{args.controller} alone'
        if args.noise_free:
            label += f' (the {args.noise_free} sees the noise-free observation)'
        print(f'{label}, {args.episodes} episodes from seed {args.seed}:')
        print(f'  success on the noisy block (the task)   {result.success_rate:.3f}')
        print(f'  success on the true block position      {np.mean(true < threshold):.3f}')
        print(f'  noisy success the true distances predict {np.mean(expected):.3f}')
        print(f'  true final distance: median {np.median(true):.3f} m, mean {true.mean():.3f} m')
        offsets_xy = np.array(wrapped.offsets)[:, :2]
        bias, spread = offsets_xy.mean(axis=0), offsets_xy.std(axis=0)
        print(
            f'  true final offset from the goal, x / y: mean {bias[0]:+.4f} / {bias[1]:+.4f} m, '
            f'std {spread[0]:.4f} / {spread[1]:.4f} m'
        )
        outcomes = outcome_table(wrapped)
        print('  what happened (true positions)      share  median first step lifted / moved')
        for name, row in outcomes.items():
            print(
                f'    {name:<32} {row["share"]:.3f}  {_step(row["lift_step"])} / '
                f'{_step(row["move_step"])}'
            )
        record.update(
            controller=args.controller,
            model=args.model,
            noise_free=args.noise_free,
            episodes=args.episodes,
            seed=args.seed,
            noisy_success=result.success_rate,
            true_success=float(np.mean(true < threshold)),
            predicted_noisy_success=float(np.mean(expected)),
            true_final_distances=[float(d) for d in true],
            true_final_offsets_xy=offsets_xy.round(5).tolist(),
            outcomes=outcomes,
            episode_outcomes=wrapped.outcomes,
        )
    if args.json:
        with open(args.json, 'x') as f:
            json.dump(record, f, indent=1)
        print(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
