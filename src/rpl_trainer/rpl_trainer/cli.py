"""``rpl train`` and ``rpl plot``: the trainer's command line.

The ``rpl`` entry point (rpl_bringup) imports this module lazily and calls
``main(['train', ...])`` or ``main(['plot', ...])``; ``python -m rpl_trainer.cli train ...``
does the same.

Examples::

    rpl train --task slippery_push --controller reactive_push --algo rpl \\
        --steps 200000 --seed 0 --out runs/slippery_rpl_s0
    rpl train ... --out runs/slippery_rpl_s0 --resume --steps 400000
    rpl plot runs/slippery_* --out results/slippery.png
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

from rpl_trainer.config import ALGOS, VECTOR_ENV_KINDS, make_config


class CliError(Exception):
    """A user error to print as one line (exit status 2)."""


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition('=')
        if not sep or not key:
            raise CliError(f'--set expects KEY=VALUE, got {item!r}')
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


def build_parser() -> argparse.ArgumentParser:
    """The ``train`` / ``plot`` argument parser."""
    parser = argparse.ArgumentParser(prog='rpl', description='Residual policy learning tools.')
    commands = parser.add_subparsers(dest='command', required=True)

    train = commands.add_parser(
        'train',
        help='train a residual (or scratch) policy with DDPG + HER',
        description='Train with DDPG + HER; writes config.json, metrics.csv, checkpoint.pt '
        'and actor.onnx into --out.',
    )
    train.add_argument('--task', required=True, help='registered task, e.g. slippery_push')
    train.add_argument('--controller', required=True, help='base controller, e.g. reactive_push')
    train.add_argument('--algo', default='rpl', choices=ALGOS, help='learner (default: rpl)')
    train.add_argument('--steps', type=int, required=True, help='training budget in env steps')
    train.add_argument('--seed', type=int, default=0, help='run seed (default: 0)')
    train.add_argument('--out', required=True, type=pathlib.Path, help='run directory')
    train.add_argument('--two-frame', action='store_true', help='two-frame actor and critic')
    train.add_argument(
        '--goal-consistent-her',
        action='store_true',
        help='recompute the residual for relabelled goals',
    )
    train.add_argument('--resume', action='store_true', help='continue the run in --out')
    train.add_argument('--num-envs', type=int, help='parallel environments')
    train.add_argument('--vector-env', choices=VECTOR_ENV_KINDS, help='vector env kind')
    train.add_argument('--threads', type=int, help='torch threads')
    train.add_argument('--eval-interval', type=int, help='env steps between evaluations')
    train.add_argument('--eval-episodes', type=int, help='episodes per evaluation')
    train.add_argument('--updates-per-step', type=float, help='gradient steps per env step')
    train.add_argument(
        '--set',
        action='append',
        default=[],
        metavar='KEY=VALUE',
        help='any TrainConfig field (JSON value), e.g. --set noise_eps=0.1; repeatable',
    )
    train.add_argument('--no-progress', action='store_true', help='no progress bar')

    plot = commands.add_parser(
        'plot',
        help='plot success vs env steps of run directories',
        description='Success rate vs env steps, mean and min-max over seeds per algorithm, '
        "with the base controller's level as a dashed 'Initial' line.",
    )
    plot.add_argument('runs', nargs='+', type=pathlib.Path, help='run directories')
    plot.add_argument('--out', required=True, type=pathlib.Path, help='figure file (.png)')
    plot.add_argument('--title', help='figure title (default: the task name)')
    return parser


def _train(args: argparse.Namespace) -> int:
    from rpl_trainer.checkpoint import CheckpointError
    from rpl_trainer.train import RunDirError, check_run_dir, registered_problem, train

    values = _parse_set(args.set)
    values.update(
        task=args.task,
        controller=args.controller,
        algo=args.algo,
        total_env_steps=args.steps,
        seed=args.seed,
        two_frame=args.two_frame or values.get('two_frame', False),
        goal_consistent_her=args.goal_consistent_her or values.get('goal_consistent_her', False),
    )
    optional = {
        'num_envs': args.num_envs,
        'vector_env': args.vector_env,
        'torch_threads': args.threads,
        'eval_interval': args.eval_interval,
        'eval_episodes': args.eval_episodes,
        'updates_per_env_step': args.updates_per_step,
    }
    values.update({key: value for key, value in optional.items() if value is not None})
    try:
        config = make_config(values)
        problem = registered_problem(config.task, config.controller)
        check_run_dir(args.out, config, args.resume)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    try:
        result = train(config, args.out, args.resume, problem, progress=not args.no_progress)
    except (RunDirError, CheckpointError) as exc:
        raise CliError(str(exc)) from exc
    base = result.base_success_rate
    base_text = 'n/a' if base is None else f'{base:.3f}'
    print(
        f'{result.out_dir}: {result.env_steps} env steps in {result.wall_s:.1f} s, '
        f'eval success {result.success_rate:.3f} (base {base_text}); model {result.onnx_path}'
    )
    return 0


def _plot(args: argparse.Namespace) -> int:
    from rpl_trainer.plot import PlotError, plot_runs

    try:
        path = plot_runs(args.runs, args.out, title=args.title)
    except PlotError as exc:
        raise CliError(str(exc)) from exc
    print(f'wrote {path}')
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rpl train ...`` or ``rpl plot ...``; returns the exit status.

    Args:
        argv: Arguments after the program name, starting with ``train`` or ``plot``
            (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return _train(args) if args.command == 'train' else _plot(args)
    except CliError as exc:
        print(f'rpl {args.command}: error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f'rpl {args.command}: interrupted; `--resume` continues from the last checkpoint',
            file=sys.stderr,
        )
        return 130


if __name__ == '__main__':
    sys.exit(main())
