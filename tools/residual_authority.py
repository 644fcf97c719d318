"""How much of a base controller's command a residual of a given scale can overrule.

The executed action is ``clip(base + scale * u, -1, 1)`` with ``u`` in [-1, 1]. On an axis
where the base commands ``b``, the residual can reverse the command only where
``|b| < scale``. That matters most where only the sign of a command does anything: Fetch's
finger command is a position target relative to the fingers' own position, saturated by
the actuator range, so a base that commands the fingers with +-1 (open / close) keeps them
at any ``residual_scale`` up to 1.

This runs the base controller alone for ``--episodes`` episodes (seeds ``--seed`` + i) and
prints, per action axis, the mean ``|b|`` and the share of steps on which a residual of
each ``--scales`` value could reverse the base's command; ``--json`` saves the figures.

    .venv/bin/python tools/residual_authority.py --task noisy_hook --controller reactive_hook
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from rpl_base_controllers.registry import make_controller
from rpl_bringup.evaluation import evaluate
from rpl_sim_bridge.tasks import task_spec


class Recording:
    """A base controller that keeps every command it gives (for :func:`evaluate`)."""

    def __init__(self, controller) -> None:
        self.controller = controller
        self.name = controller.name
        self.commands: list[np.ndarray] = []

    def reset(self) -> None:
        self.controller.reset()

    def __call__(self, observation: np.ndarray, goal: np.ndarray) -> np.ndarray:
        command = self.controller(observation, goal)
        self.commands.append(np.array(command, dtype=np.float64))
        return command


def base_commands(task_name: str, controller_name: str, episodes: int, seed: int) -> np.ndarray:
    """The base controller's commands (steps, action dim) over full episodes of its own."""
    recording = Recording(make_controller(controller_name, task=task_name))
    evaluate(task_name, recording, episodes, seed, progress=False)
    return np.array(recording.commands)


def reversible_share(commands: np.ndarray, scale: float) -> np.ndarray:
    """Per axis: the share of commands a residual of ``scale`` can reverse (|b| < scale)."""
    return np.mean(np.abs(commands) < scale, axis=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--task', default='noisy_hook')
    parser.add_argument('--controller', default='reactive_hook')
    parser.add_argument('--episodes', type=int, default=50)
    parser.add_argument('--seed', type=int, default=5000, help='seed of episode 0')
    parser.add_argument('--scales', type=float, nargs='+', default=[0.5, 1.0, 2.0])
    parser.add_argument('--json', default=None, help='write the figures here (new file)')
    args = parser.parse_args(argv)
    if args.episodes < 1 or min(args.scales) <= 0:
        parser.error('--episodes must be at least 1 and every --scales value positive')
    if args.json and os.path.exists(args.json):
        parser.error(f'--json {args.json} exists; not overwritten')
    try:
        commands = base_commands(args.task, args.controller, args.episodes, args.seed)
    except ValueError as exc:
        print(f'residual_authority: {exc}', file=sys.stderr)
        return 2
    names = task_spec(args.task).action_fields
    shares = {scale: reversible_share(commands, scale) for scale in args.scales}
    mean_abs = np.abs(commands).mean(axis=0)
    print(
        f'{args.task}/{args.controller}: {len(commands)} steps of {args.episodes} episodes '
        f'from seed {args.seed}; share of steps a residual of scale S can reverse'
    )
    width = max(len(name) for name in (*names, 'axis'))
    print(f'  {"axis":<{width}} mean|b|  ' + '  '.join(f'S={s:<5g}' for s in args.scales))
    for i, name in enumerate(names):
        row = '  '.join(f'{shares[s][i]:7.3f}' for s in args.scales)
        print(f'  {name:<{width}} {mean_abs[i]:7.3f}  {row}')
    if args.json:
        record = {
            'task': args.task,
            'controller': args.controller,
            'episodes': args.episodes,
            'seed': args.seed,
            'steps': len(commands),
            'axes': list(names),
            'mean_abs_command': mean_abs.tolist(),
            'reversible_share': {f'{s:g}': shares[s].tolist() for s in args.scales},
        }
        with open(args.json, 'x') as f:
            json.dump(record, f, indent=1)
        print(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
