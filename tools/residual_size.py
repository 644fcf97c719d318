"""How large a training run's residual is, on the states its replay buffer holds.

Loads an ``rpl train`` checkpoint (``RUN/checkpoint.pt``), rebuilds its agent, and runs the
actor on the most recent stored states with their episodes' own goals; prints, per action
axis, the mean and spread of tanh(f) and how often it has the sign of its mean (a global
bias the residual applies in every state shows as a fraction near 1). The dip study in
results/EXPERIMENTS.md quotes it.

    .venv/bin/python tools/residual_size.py runs/complex_hook_dip/checkpoint.pt [--states N]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from rpl_sim_bridge.tasks import task_spec
from rpl_trainer.checkpoint import CheckpointError, load_learner_checkpoint
from rpl_trainer.config import make_config
from rpl_trainer.ddpg import DDPGAgent
from rpl_trainer.networks import Dims
from rpl_trainer.problem import registered_problem
from rpl_trainer.residual import residual_scales


def residual_size(path: str, states: int) -> dict[str, np.ndarray]:
    """tanh(f) statistics per action axis over the last ``states`` stored states."""
    learner = load_learner_checkpoint(path)['learner']
    episodes = learner['buffer']['episodes']
    obs, goal = np.asarray(episodes['obs']), np.asarray(episodes['desired_goal'])
    steps = goal.shape[1]
    previous = np.concatenate([obs[:, :1], obs[:, : steps - 1]], axis=1)  # o_{t-1}; o_0 at t=0
    obs = obs[:, :steps].reshape(-1, obs.shape[-1])[-states:]
    previous = previous.reshape(-1, obs.shape[-1])[-states:]
    # (E * T, goal_dim); an explicit row count, so a fixed-goal task's width 0 reshapes too
    goal = goal.reshape(goal.shape[0] * steps, goal.shape[-1])[-states:]
    config = make_config(learner['config'])
    dims = Dims(obs.shape[-1], goal.shape[-1], np.asarray(episodes['action']).shape[-1])
    per_axis = config.residual_axis_scales.strip()
    fields = task_spec(config.task).action_fields if per_axis else None
    scale = residual_scales(config, fields)
    spec = task_spec(config.task)
    agent = DDPGAgent(
        dims,
        config,
        episode_steps=steps,
        action_bounds=(spec.action_low, spec.action_high),
        residual_scale=scale,
    )
    agent.load_state_dict(learner['agent'])
    base = None
    if config.base_input:  # the actor sees the base action: recompute it for these states
        problem = registered_problem(config.task, config.controller, config.controller_params)
        base = problem.make_base_fn()(obs, goal)
    u = agent.act(obs, goal, previous if config.two_frame else None, base)
    mean = u.mean(axis=0)
    return {
        'mean': mean,
        'std': u.std(axis=0),
        'mean_abs': np.abs(u).mean(axis=0),
        'sign_share': (np.sign(u) == np.sign(mean)).mean(axis=0),
        'scale': np.broadcast_to(np.asarray(scale, dtype=np.float64), mean.shape),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('checkpoint', help='RUN/checkpoint.pt of an rpl train run')
    parser.add_argument('--states', type=int, default=20000, help='latest stored states used')
    args = parser.parse_args(argv)
    if args.states < 1:
        parser.error(f'--states must be at least 1, got {args.states}')
    try:
        stats = residual_size(args.checkpoint, args.states)
    except (CheckpointError, OSError, KeyError, ValueError) as exc:
        print(f'residual_size: {args.checkpoint}: {exc}', file=sys.stderr)
        return 1
    np.set_printoptions(precision=3, suppress=True)
    for name in ('mean', 'std', 'mean_abs', 'sign_share'):
        print(f'tanh(f) {name:10s} per axis: {stats[name]}')
    scale = stats['scale']
    named = f'residual_scale {scale[0]:g}' if np.all(scale == scale[0]) else f'scales {scale}'
    print(f'mean abs residual in action units (x {named}):', stats['mean_abs'] * scale)
    return 0


if __name__ == '__main__':
    sys.exit(main())
