"""``rpl train`` and ``rpl plot``: the trainer's command line.

The ``rpl`` entry point (rpl_bringup) imports this module lazily and calls
``main(['train', ...])`` or ``main(['plot', ...])``; ``python -m rpl_trainer.cli train ...``
does the same.

Examples::

    rpl train --task slippery_push --out runs/slippery_rpl_s0    # the shipped config
    rpl train --config my.yaml --set noise_eps=0.1 --seed 1 --out runs/x
    rpl train --out runs/slippery_rpl_s0 --resume --steps 400000
    rpl train --init-from runs/live/trainer.pt --out runs/from_live --steps 100000
    rpl plot runs/slippery_* --out results/slippery.png
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import re
import shlex
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from rpl_base_controllers.base import ControllerFailure
from rpl_interfaces import cli_parser
from rpl_sim_bridge.tasks import task_spec
from rpl_trainer.config import (
    ALGOS,
    RESUMABLE_CHANGES,
    VECTOR_ENV_KINDS,
    ParameterError,
    TrainConfig,
    check_keys,
    config_differences,
    make_config,
    read_config_file,
    shipped_config,
    shipped_config_tasks,
)


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


_FIELD_FLAGS = (
    ('--num-envs', 'num_envs', int, 'parallel environments'),
    ('--vector-env', 'vector_env', str, 'vector env kind: ' + ' or '.join(VECTOR_ENV_KINDS)),
    ('--threads', 'torch_threads', int, 'torch threads'),
    ('--eval-interval', 'eval_interval', int, 'env steps between evaluations'),
    ('--eval-episodes', 'eval_episodes', int, 'episodes per evaluation'),
    ('--updates-per-step', 'updates_per_env_step', float, 'gradient steps per env step'),
)
"""Flags that set one TrainConfig field each: (flag, field, type, help)."""


def _default(field: str) -> Any:
    return TrainConfig.__dataclass_fields__[field].default


def _train_epilog() -> str:
    lines = [
        'Settings, later ones winning: TrainConfig defaults (rpl_trainer/config.py), the',
        "task's shipped config (or --config FILE), --set, the flags. With --resume: the run's",
        'own config.json, and what the command line gives must agree with it. The settings',
        'in use are printed at the start and stored in DIR/config.json.',
        '',
        'Shipped configs (the settings of the committed models; rpl_trainer/train_configs/):',
    ]
    defaults = TrainConfig().to_dict()
    for task in shipped_config_tasks():
        try:
            values = read_config_file(shipped_config(task))
        except ValueError:
            continue
        changed = ' '.join(
            f'{key}={value}'
            for key, value in values.items()
            if key == 'controller' or (key != 'task' and defaults.get(key) != value)
        )
        lines.extend(textwrap.wrap(f'{task}: {changed}', 88, subsequent_indent='    '))
    lines.append(
        'Other tasks train with the TrainConfig defaults. `--show-config` prints the result.'
    )
    return '\n'.join(lines)


def resolve_train_config(args: argparse.Namespace) -> tuple[TrainConfig, str]:
    """The run's settings from the command line, and a line saying where they came from.

    Later sources win: TrainConfig defaults, a config file (``--config`` or the task's
    shipped one), ``--set``, the dedicated flags. With ``--resume`` the base is the run's
    own config.json and the command line may change only budgets and bookkeeping.

    Raises:
        CliError: Unknown key, bad value, no task, or a conflict with the resumed run.
    """
    from rpl_trainer.run_dir import RunDirError, read_run_config

    flags = {
        'task': args.task,
        'controller': args.controller,
        'controller_params': ','.join(args.controller_param) or None,
        'algo': args.algo,
        'total_env_steps': args.steps,
        'seed': args.seed,
        'two_frame': args.two_frame,
        'goal_consistent_her': args.goal_consistent_her,
    }
    flags.update({field: getattr(args, _attr(flag)) for flag, field, _, _ in _FIELD_FLAGS})
    flags = {key: value for key, value in flags.items() if value is not None}
    sets = _parse_set(args.set)
    origin: dict[str, str] = {}
    try:
        check_keys(sets, '--set')
        if args.resume and args.init_from is not None:
            raise CliError(
                '--init-from starts a new run; --resume continues the run in --out: give one'
            )
        if args.resume:
            if args.config is not None:
                raise CliError(
                    f'--config cannot be combined with --resume: the run in {args.out} keeps '
                    'its own config.json (change budgets with --steps, --eval-interval, --set)'
                )
            try:
                base = read_run_config(args.out)
            except RunDirError as exc:
                raise CliError(f'cannot resume: {exc}') from exc
            source = f'{args.out / "config.json"} (the run being resumed)'
        elif args.init_from is not None and args.config is None:
            base = _checkpoint_config(args.init_from)
            source = f'the checkpoint {args.init_from} (--init-from)'
        else:
            path = args.config
            if path is None and args.task is None:
                raise CliError('--task is required (or --config FILE, or --resume with --out)')
            if args.task is not None:
                try:
                    task_spec(args.task)
                except ValueError as exc:  # UnknownTaskError: it lists the known tasks
                    raise CliError(str(exc)) from None
            if path is None:
                path = shipped_config(args.task)
            base = read_config_file(path) if path is not None else {}
            if args.config is not None:
                source = f'config file {path}'
            elif path is not None:
                source = f'the shipped config for {args.task} ({path})'
            else:
                source = f'TrainConfig defaults (no shipped config for task {args.task!r})'
        origin.update({key: source for key in base})
        origin.update({key: f'--set {key}' for key in sets})
        origin.update({key: 'the command line' for key in flags})
        values = {**base, **sets, **flags}
        note = ''
        if (
            args.config is None
            and not args.resume
            and args.init_from is None
            and ('algo' in sets or 'algo' in flags)
            and values['algo'] != 'rpl'
        ):
            # A baseline asked for over the task's shipped RPL config (`rpl train --task
            # noisy_hook --algo scratch`): the executed-action critic and the base input
            # are RPL's options (the critic of a learner without a base sees the executed
            # action anyway, and there is no base action to see). A config file of the
            # user's own that says either is still refused, and so is a --set of them.
            turned = []
            if base.get('critic_action') == 'executed' and 'critic_action' not in sets:
                values['critic_action'] = 'residual'
                turned.append('critic_action=residual')
            if base.get('base_input') and 'base_input' not in sets:
                values['base_input'] = False
                turned.append('base_input=false')
            if turned:
                note = f'; {", ".join(turned)} for algo {values["algo"]} (no base to add)'
        if 'task' not in values:
            raise CliError(f'no task: {source} names none; pass --task')
        if 'controller' not in values:
            raise CliError(f'no controller: {source} names none; pass --controller')
        config = make_config(values)
        if args.resume:
            differences = config_differences(make_config(base), config)
            if differences:
                raise CliError(
                    f'--resume continues {args.out} with its own settings; the command line '
                    'conflicts with them ('
                    + '; '.join(differences)
                    + '); only '
                    + ', '.join(sorted(RESUMABLE_CHANGES))
                    + ' may change (or train into a new --out)'
                )
        if args.init_from is not None:
            from rpl_trainer.learner import learner_differences

            saved = make_config(_checkpoint_config(args.init_from))
            differences = learner_differences(saved, config)
            if differences:
                fix = (
                    'leave out --config to take its settings'
                    if args.config is not None
                    else 'leave out what changes them, to take its settings'
                )
                raise CliError(
                    f'--init-from {args.init_from}: its learner has other settings ('
                    + '; '.join(differences)
                    + f'); only budgets, acting and evaluation may differ ({fix})'
                )
    except RunDirError as exc:
        raise CliError(str(exc)) from exc
    except ParameterError as exc:
        named = re.search(r"parameter '(\w+)'", str(exc))
        where = origin.get(named.group(1)) if named else None
        raise CliError(f'{where}: {exc}' if where else str(exc)) from exc
    overrides = {key: values[key] for key in {**sets, **flags} if base.get(key) != values[key]}
    shown = ', '.join(f'{key}={value}' for key, value in overrides.items())
    shown = f'; command line: {shown}' if shown else ''
    return config, f'settings from {source}{shown}{note}'


def _checkpoint_config(path: pathlib.Path) -> dict[str, Any]:
    """The TrainConfig values of the learner in a checkpoint of either kind.

    Raises:
        CliError: The file is missing, unreadable or holds no learner.
    """
    from rpl_trainer.checkpoint import CheckpointError, load_learner_checkpoint

    try:
        return dict(load_learner_checkpoint(path)['learner']['config'])
    except CheckpointError as exc:
        raise CliError(f'--init-from: {exc}') from exc
    except (KeyError, TypeError) as exc:
        raise CliError(f'--init-from: checkpoint {path} is incomplete (missing {exc})') from exc


def _attr(flag: str) -> str:
    """argparse's attribute name of a ``--flag-name``."""
    return flag.lstrip('-').replace('-', '_')


def build_parser() -> argparse.ArgumentParser:
    """The ``train`` / ``plot`` argument parser."""
    parser = cli_parser.ArgumentParser(prog='rpl', description='Residual policy learning tools.')
    commands = parser.add_subparsers(dest='command', required=True)

    train = commands.add_parser(
        'train',
        help='train a residual (or scratch) policy with DDPG + HER',
        description='Train with DDPG + HER; writes config.json, metrics.csv, checkpoint.pt '
        'and actor.onnx into --out.\nCtrl-C (or SIGTERM) stops with a checkpoint; '
        '`rpl train --out DIR --resume` continues it.',
        epilog=_train_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        '--task', help="registered task, e.g. slippery_push (default: the --config file's)"
    )
    train.add_argument(
        '--controller',
        help="base controller, e.g. reactive_push (default: the config's; for the shipped "
        'configs the controller of the committed model)',
    )
    train.add_argument(
        '--controller-param',
        action='append',
        default=[],
        metavar='NAME=VALUE',
        help='set a parameter of the base controller, e.g. carry_gain=50 (repeatable; '
        'stored as controller_params in config.json)',
    )
    train.add_argument(
        '--config',
        type=pathlib.Path,
        metavar='FILE',
        help="YAML file of TrainConfig settings (default: the task's shipped config, if any)",
    )
    train.add_argument(
        '--algo', choices=ALGOS, help=f"learner (default: the config's, else {_default('algo')})"
    )
    train.add_argument(
        '--steps',
        type=int,
        help="training budget in env steps (default: the config's, else "
        f'{_default("total_env_steps")})',
    )
    train.add_argument('--seed', type=int, help=f'run seed (default: {_default("seed")})')
    train.add_argument('--out', required=True, type=pathlib.Path, help='run directory (required)')
    train.add_argument(
        '--two-frame',
        action=argparse.BooleanOptionalAction,
        help=f"two-frame actor and critic (default: the config's, else {_default('two_frame')})",
    )
    train.add_argument(
        '--goal-consistent-her',
        action=argparse.BooleanOptionalAction,
        help="recompute the residual for relabelled goals (default: the config's, else "
        f'{_default("goal_consistent_her")})',
    )
    train.add_argument(
        '--resume',
        action='store_true',
        help='continue the run in --out with its own config.json (only budgets and '
        'bookkeeping may change: ' + ', '.join(sorted(RESUMABLE_CHANGES)) + ')',
    )
    train.add_argument(
        '--init-from',
        type=pathlib.Path,
        metavar='FILE',
        help="start a new run from the learner of a checkpoint: a trainer node's "
        "checkpoint_path or another run's DIR/checkpoint.pt (networks, normalisers, burn-in, "
        'replay buffer); its settings are the base (instead of the shipped config) and the '
        'learner settings must stay as they are',
    )
    for flag, field, kind, text in _FIELD_FLAGS:
        train.add_argument(
            flag, type=kind, help=f"{text} (default: the config's, else {_default(field)})"
        )
    train.add_argument(
        '--set',
        action='append',
        default=[],
        metavar='KEY=VALUE',
        help='any TrainConfig field (JSON value), e.g. --set noise_eps=0.1; repeatable; '
        'overrides the config file, the flags above override it',
    )
    train.add_argument(
        '--show-config',
        action='store_true',
        help='print the settings this command would train with, and where they come from; '
        'train nothing',
    )
    train.add_argument(
        '--no-progress',
        action='store_true',
        help='no progress output (default: a bar on a terminal, else a line per evaluation)',
    )

    plot = commands.add_parser(
        'plot',
        help='plot success vs env steps of run directories',
        description='Success rate vs env steps, mean and min-max over seeds per algorithm, '
        "with the base controller's level as a dashed 'Initial' line.",
    )
    plot.add_argument('runs', nargs='+', type=pathlib.Path, help='run directories')
    plot.add_argument('--out', required=True, type=pathlib.Path, help='figure file (.png)')
    plot.add_argument('--title', help='figure title (default: the task name)')
    plot.add_argument(
        '--x',
        choices=('steps', 'minutes'),
        default='steps',
        help='horizontal axis: env steps (default) or wall-clock minutes of the runs',
    )
    plot.add_argument(
        '--metric',
        choices=('success', 'return'),
        default='success',
        help='vertical axis: eval success rate (default) or mean eval return (fixed-goal tasks)',
    )
    plot.add_argument(
        '--reference',
        action='append',
        default=[],
        type=_reference,
        metavar='LABEL=VALUE',
        help="a level measured elsewhere, drawn as a labelled line, e.g. 'PETS=-110.9' "
        '(repeatable)',
    )
    plot.add_argument(
        '--until',
        type=_positive_float,
        metavar='X',
        help='draw only the evaluations up to X on the horizontal axis (env steps or minutes), '
        'e.g. the first 100000 steps of a longer run next to short ones',
    )
    plot.add_argument('--force', action='store_true', help='replace --out if it exists already')
    return parser


def _reference(text: str) -> tuple[str, float]:
    """``LABEL=VALUE`` of ``rpl plot --reference`` (argparse type: its error is one line)."""
    label, sep, value = text.rpartition('=')
    number = _number(value)
    if not sep or not label.strip() or not math.isfinite(number):
        raise argparse.ArgumentTypeError(
            f'must be LABEL=VALUE with a finite number, e.g. PETS=-110.9, got {text!r}'
        )
    return label.strip(), number


def _number(text: str) -> float:
    """``float(text)``, NaN for text that is no number (the callers' checks refuse it)."""
    try:
        return float(text)
    except ValueError:
        return float('nan')


def _positive_float(text: str) -> float:
    """A finite number above 0 (argparse type: its error is one line)."""
    number = _number(text)
    if not (math.isfinite(number) and number > 0):
        raise argparse.ArgumentTypeError(f'must be a number above 0, got {text!r}')
    return number


def _resume_command(out: str, more: str = '') -> str:
    """The command that continues the run in ``out`` (``more``: options after it), quoted
    for a shell."""
    return f'`rpl train --out {shlex.quote(str(out))} --resume{more}`'


def _after_stop(out: str, checkpoint_file: str, when: str) -> str:
    """What is left of a run that stopped on an error, and how to go on (``when``: the
    condition, e.g. `` once the controller is mended``)."""
    if (pathlib.Path(out) / checkpoint_file).is_file():
        return f'checkpointed: {_resume_command(out)} continues it from there{when}'
    return f'nothing of it was kept: run the same command again{when}'


def _train(args: argparse.Namespace) -> int:
    from rpl_sim_bridge.tasks.registry import check_plugin_task
    from rpl_trainer.checkpoint import CheckpointError
    from rpl_trainer.export import ExportError
    from rpl_trainer.problem import registered_problem
    from rpl_trainer.residual import residual_scales, scale_range_note
    from rpl_trainer.rollout import WorkerDied
    from rpl_trainer.run_dir import CHECKPOINT_FILE, RunDirError, check_run_dir
    from rpl_trainer.stop import TrainingInterrupted
    from rpl_trainer.train import Trainer, burn_in_budget_note, thread_contention_note

    config, source = resolve_train_config(args)
    try:
        problem = registered_problem(config.task, config.controller, config.controller_params)
        residual_scales(config, problem.spec.action_fields)  # names the task's action fields
        # A plug-in task's factory and observe() are foreign code: built and reset once here,
        # so a fault is one line before the run folder is written (learning from bags, the
        # trainer node, never builds the simulation).
        check_plugin_task(config.task)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    try:  # settings and a folder a run would refuse are refused with --show-config too
        check_run_dir(args.out, config, args.resume)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if args.show_config:
        print(source)
        print(config.to_json(), end='')
        return 0
    threads_note = thread_contention_note(config)  # before this process loads the CPU
    try:
        # Checks the rest against the task (reward radius, privileged goals), writes nothing.
        trainer = Trainer(config, problem, args.out, progress=not args.no_progress)
    except ValueError as exc:
        raise CliError(str(exc)) from exc

    def starting() -> None:
        print(f'rpl train: {source}', flush=True)
        if args.resume:  # from its last checkpoint, which a kill may have left well behind
            print(
                f'rpl train: resuming at {trainer.env_steps} of {config.total_env_steps} env '
                'steps (its last checkpoint)',
                flush=True,
            )
        scale_note = scale_range_note(config, problem.spec)
        for note in (burn_in_budget_note(config), threads_note, scale_note):
            if note:
                print(f'rpl train: warning: {note}', file=sys.stderr, flush=True)

    try:
        result = trainer.run(args.resume, args.init_from, on_start=starting)
    except (RunDirError, CheckpointError) as exc:
        raise CliError(str(exc)) from exc
    except (ExportError, OSError) as exc:  # a model that does not export, a full disk
        what = f'cannot write {exc.filename}: {exc.strerror}' if _names_file(exc) else exc
        then = _after_stop(args.out, CHECKPOINT_FILE, ' once that is mended')
        raise CliError(f'{what}; the run stopped: {then}') from exc
    except (ControllerFailure, WorkerDied) as exc:  # one line, not 0, the run kept
        mended = ' once the controller is mended' if isinstance(exc, ControllerFailure) else ''
        then = _after_stop(args.out, CHECKPOINT_FILE, mended)
        print(
            f'rpl train: error: {exc}; the run stopped at {trainer.env_steps} env steps, {then}',
            file=sys.stderr,
        )
        return 1
    except TrainingInterrupted as exc:
        print(
            f'rpl train: {exc}; {_resume_command(args.out)} continues it',
            file=sys.stderr,
        )
        return 128 + exc.signum
    base = result.base_success_rate
    # The two are measured on different episode counts (eval_episodes, base_eval_episodes):
    # say how many, so a 2-episode 1.000 is not read against a 20-episode base.
    base_text = 'n/a' if base is None else f'{base:.3f} over {config.base_eval_episodes}'
    returns = ''
    if result.mean_return is not None:
        base_return = 'n/a' if result.base_return is None else f'{result.base_return:.4g}'
        returns = f', return {result.mean_return:.4g} (base {base_return})'
    print(
        f'{result.out_dir}: {result.env_steps} env steps in {result.wall_s:.1f} s, '
        f'eval success {result.success_rate:.3f} over {config.eval_episodes} episodes (base '
        f'{base_text}){returns}; '
        f'model {result.onnx_path}'
    )
    if result.actor_frozen:
        print(
            f'rpl train: note: the actor never left burn-in ({_windows(result.burn_in)}): the '
            'model is '
            'the zero residual, i.e. the base controller alone; train longer '
            f'({_resume_command(args.out, " --steps N")})'
        )
    if config.snapshots:
        print(
            f'rpl train: best_actor.onnx is the best of the periodic evaluations; `rpl select '
            f'{args.out}` re-evaluates the best snapshots on more episodes'
        )
    return 0


def _windows(status: str) -> str:
    return status.removeprefix('burn-in: ').removesuffix(', actor frozen')


def _plot(args: argparse.Namespace) -> int:
    from rpl_trainer.plot import PlotError, plot_runs

    try:
        path = plot_runs(
            args.runs,
            args.out,
            title=args.title,
            force=args.force,
            x=args.x,
            metric=args.metric,
            references=args.reference,
            until=args.until,
        )
    except PlotError as exc:
        raise CliError(str(exc)) from exc
    print(f'wrote {path}')
    return 0


def _names_file(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and bool(exc.filename) and bool(exc.strerror)


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
    except KeyboardInterrupt:  # before or after a run (a run itself stops with a checkpoint)
        saved = args.command == 'train' and (args.out / 'checkpoint.pt').is_file()
        hint = f'; {_resume_command(args.out)} continues the run' if saved else ''
        print(f'rpl {args.command}: interrupted{hint}', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
