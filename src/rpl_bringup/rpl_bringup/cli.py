"""The ``rpl`` command line: launch, eval, demo, select, list, bag (rpl_bags); train / plot
(rpl_trainer).

Exit codes: 0 success, 2 bad usage or arguments (one clear message), anything else is the
failing launch's or tool's own code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shlex
import sys
from collections.abc import Sequence

from rpl_bringup import demo
from rpl_bringup.launch_shim import LaunchError
from rpl_interfaces import cli_parser, output_files

# First reset seed of `rpl select`'s episodes: apart from the training run's (hashed), the
# README's held-out evaluations (1000 onwards) and the controller bands (100000 onwards).
SELECTION_SEED = 500_000
# The reset seeds of the held-out evaluations (README: 200 or 1000 episodes from 1000):
# `rpl select` refuses to choose a model on them.
HELD_OUT_SEEDS = range(1000, 2000)

TRAINER_COMMANDS = {
    'train': 'train a residual policy (DDPG + HER) in simulation or from bags',
    'plot': 'plot learning curves and evaluation results',
    'bag': 'record, play, evaluate (eval) or replay a model over (replay-model) rosbag2 bags',
}


LIST_KINDS = ('tasks', 'controllers', 'models')


class UsageError(Exception):
    """Bad command-line usage: printed as one line, exit code 2."""


def _add_launch(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'launch',
        help='run a ROS 2 Python launch file (ros2 launch without a full ROS install)',
        description='Run a launch file: `rpl launch <package> <file.launch.py> [name:=value '
        '...]` or `rpl launch <path/to/file.launch.py> [name:=value ...]`. Uses the real '
        '`launch` package when installed, else the project runner: every node is a child '
        'process with its output prefixed by its name; Ctrl-C stops them all.',
        epilog='example: rpl launch rpl_bringup slippery_push.launch.py episodes:=5 '
        'controller:=discrete_mpc_push',
    )
    p.add_argument('target', help='package name, or the path of a launch file')
    p.add_argument(
        'rest', nargs='*', metavar='[FILE] ARG', help='launch file name, then name:=value'
    )
    p.add_argument(
        '-s', '--show-args', action='store_true', help='list the launch arguments and exit'
    )
    p.add_argument(
        '--own-runner',
        action='store_true',
        help="use this project's runner even where the real launch package is installed",
    )
    p.add_argument(
        '--sigint-timeout',
        type=float,
        default=5.0,
        metavar='S',
        help='when stopping: seconds from SIGINT to SIGTERM (default 5)',
    )
    p.add_argument(
        '--sigterm-timeout',
        type=float,
        default=5.0,
        metavar='S',
        help='when stopping: seconds from SIGTERM to SIGKILL (default 5)',
    )


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'eval',
        help='evaluate a base controller (+ residual model) in-process, no ROS',
        description='Run N seeded episodes in-process (episode i uses seed + i, as the sim '
        'bridge does) and report the success rate with its 95% interval and the mean '
        'final distance; write the result as JSON.',
    )
    p.add_argument(
        '--task', help="task name, e.g. slippery_push (default with --model: the model's)"
    )
    p.add_argument(
        '--controller',
        help="base controller, e.g. reactive_push (default with --model: the model's)",
    )
    p.add_argument('--model', metavar='FILE.onnx', help='residual actor (default: base only)')
    p.add_argument(
        '--allow-model-mismatch',
        action='store_true',
        help='run a model whose metadata names another task or controller (one made for '
        'other field names is refused always)',
    )
    p.add_argument(
        '--controller-param',
        action='append',
        default=[],
        metavar='NAME=VALUE',
        help='set a parameter of the controller, e.g. carry_gain=50 (repeatable; '
        '`rpl list controllers` names them)',
    )
    p.add_argument('--episodes', type=int, default=100, help='episodes (default 100)')
    p.add_argument('--seed', type=int, default=0, help='first reset seed (default 0)')
    p.add_argument(
        '--workers',
        type=int,
        default=1,
        help='processes to spread the episodes over (default 1); the results are the same '
        'episode by episode, only faster for slow controllers such as discrete_mpc_push',
    )
    p.add_argument(
        '--json',
        metavar='OUT',
        help='result file (default results/eval_<task>_<controller>_<model>_seed<seed>.json '
        'in the current folder; <model> is "base", or the model file name, or its folder '
        'name for an actor.onnx); checked before the episodes run',
    )
    p.add_argument(
        '--force', action='store_true', help='replace the result file if it exists already'
    )
    p.add_argument(
        '--no-progress',
        action='store_true',
        help='no progress output (default: a bar on a terminal, else a line per tenth of '
        'the episodes)',
    )


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'demo',
        help='run the SlipperyPush stack (3 node processes over DDS) and summarise',
        description='Launch slippery_push.launch.py in lockstep through the project runner '
        'for N episodes while an episode monitor collects the results, then print a '
        'one-screen summary. With a trained SlipperyPush model the stack runs twice on the '
        'same seeds, base controller alone and then with the residual, and the summary '
        'shows both side by side.',
    )
    p.add_argument('--episodes', type=int, default=20, help='episodes (per run; default 20)')
    p.add_argument(
        '--controller', default='reactive_push', help='base controller (default reactive_push)'
    )
    p.add_argument(
        '--model',
        default=None,
        metavar='FILE|auto|none',
        help=f'residual actor (default {demo.DEFAULT_MODEL}, the committed SlipperyPush '
        'model, as make demo runs it; base only where it is not installed); auto = the '
        'newest models/*slippery_push*/actor.onnx or models/*slippery_push*.onnx; '
        'none = base only',
    )
    p.add_argument('--seed', type=int, default=0, help='first reset seed (default 0)')
    p.add_argument(
        '--namespace', default='/rpl_demo', help='ROS namespace of the demo (default /rpl_demo)'
    )


def _add_select(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'select',
        help="choose a training run's model on more episodes than its periodic evaluations",
        description='Take the TOP snapshots of a run trained with `--set snapshots=true` by '
        'their periodic score, evaluate each in-process (as rpl eval does) on EPISODES '
        f'selection episodes (reset seeds from {SELECTION_SEED}, apart from the held-out '
        'seeds), and write the best to RUN/selected_actor.onnx with every score in '
        'RUN/selection.json.',
        epilog='example: rpl select runs/noisy_hook_s0 --top 5 --episodes 200 --workers 2',
    )
    p.add_argument('run', metavar='RUN', help='an `rpl train --out` directory with snapshots/')
    p.add_argument('--top', type=int, default=5, help='candidates (default 5)')
    p.add_argument(
        '--episodes', type=int, default=200, help='selection episodes per candidate (default 200)'
    )
    p.add_argument(
        '--seed',
        type=int,
        default=SELECTION_SEED,
        help=f'first reset seed of the selection episodes (default {SELECTION_SEED})',
    )
    p.add_argument('--workers', type=int, default=1, help='processes (default 1)')
    p.add_argument('--force', action='store_true', help="replace an earlier selection's two files")
    p.add_argument('--no-progress', action='store_true', help='no progress output')


def _add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'list',
        help='list the registered tasks or controllers, or the committed models',
        description='tasks: the registered tasks with their sizes; controllers: the '
        'registered base controllers with the tasks they suit; models: the committed '
        'models under models/ with their task, controller and held-out success '
        '(from models/<name>/heldout.json).',
    )
    p.add_argument('what', choices=LIST_KINDS, help='what to list')


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``rpl`` (subcommands launch, eval, demo, select, list, train, plot,
    bag)."""
    parser = cli_parser.ArgumentParser(
        prog='rpl',
        description='Residual Policy Learning on ROS 2: run stacks, evaluate, demo, train.',
    )
    sub = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    _add_launch(sub)
    _add_eval(sub)
    _add_demo(sub)
    _add_select(sub)
    _add_list(sub)
    for name, text in TRAINER_COMMANDS.items():
        home = 'rpl_bags' if name == 'bag' else 'rpl_trainer'
        sub.add_parser(name, help=f'{text} ({home})', add_help=False)
    return parser


# --- commands ---------------------------------------------------------------------------


def _packaged_hint(args: argparse.Namespace) -> str:
    """`ros2 launch`'s form, where a bare file name given alone is one of this project's
    launch files (``rpl launch slippery_push.launch.py`` reads it as a path)."""
    from rpl_bringup import launch_runner

    if os.sep in args.target:
        return ''
    try:
        ours = launch_runner.launch_files('rpl_bringup')
    except LaunchError:  # the package's share not found: no hint, the error stands
        return ''
    if args.target not in ours:
        return ''
    rest = ''.join(f' {shlex.quote(token)}' for token in args.rest)
    return f' here; the package file is `rpl launch rpl_bringup {args.target}{rest}`'


def cmd_launch(args: argparse.Namespace) -> int:
    """``rpl launch``."""
    from rpl_bringup import launch_runner

    if args.target.endswith(('.xml', '.yaml', '.yml')):  # a file's path, not a package
        package, file_name, tokens = None, args.target, args.rest
    elif args.target.endswith('.py'):  # a file's path (no package name ends so)
        if not os.path.isfile(args.target):
            what = 'is not a file' if os.path.exists(args.target) else 'does not exist'
            raise UsageError(f'launch file {args.target!r} {what}{_packaged_hint(args)}')
        package, file_name, tokens = None, args.target, args.rest
    elif args.rest:
        package, file_name, tokens = args.target, args.rest[0], args.rest[1:]
    else:
        raise UsageError(
            f'{args.target!r} is not a launch file; usage: rpl launch <package> '
            '<file.launch.py> [name:=value ...]'
        )
    path = launch_runner.locate_launch_file(package, file_name, args.own_runner)
    if args.show_args:
        for info in launch_runner.describe_launch_arguments(path):
            default = 'required' if info.default is None else f'default {info.default!r}'
            choices = f', one of {info.choices}' if info.choices else ''
            print(f"  '{info.name}': {info.description}\n      ({default}{choices})")
        return 0
    arguments = launch_runner.parse_launch_arguments(tokens)
    return launch_runner.run_launch_file(
        path,
        arguments,
        own_runner=args.own_runner,
        sigint_timeout=args.sigint_timeout,
        sigterm_timeout=args.sigterm_timeout,
    )


def evaluation_failure() -> type[Exception]:
    """:class:`rpl_bringup.evaluation.ControllerFailure` (imported when needed: MuJoCo)."""
    from rpl_bringup.evaluation import ControllerFailure

    return ControllerFailure


def check_episodes_and_seed(episodes: int, seed: int) -> None:
    """UsageError unless ``--episodes`` and ``--seed`` are in the sim bridge's ranges."""
    from rpl_sim_bridge.bridge_config import MAX_EPISODES, MAX_SEED

    if not 1 <= episodes <= MAX_EPISODES:
        raise UsageError(f'--episodes must be in 1..{MAX_EPISODES}, got {episodes}')
    if not 0 <= seed <= MAX_SEED:
        raise UsageError(f'--seed must be in 0..{MAX_SEED} (as the sim bridge), got {seed}')


def check_task(task: str) -> None:
    """UsageError naming the registered tasks unless ``task`` is one of them."""
    from rpl_sim_bridge.tasks import task_spec

    try:
        task_spec(task)
    except ValueError as exc:  # UnknownTaskError: the message lists the known tasks
        raise UsageError(str(exc)) from None


def _task_and_controller_from_model(args: argparse.Namespace) -> None:
    """Fill ``--task`` / ``--controller`` not given from what ``--model`` states.

    Raises:
        UsageError: One is missing and there is no model, or the model does not state it.
    """
    if args.task is not None and args.controller is not None:
        return
    stated = None
    if args.model is not None:
        from rpl_residual_node.onnx_actor import ModelError, OnnxActor

        try:
            stated = OnnxActor.load(args.model).identity
        except ModelError as exc:
            raise UsageError(f'--model {args.model!r}: {exc}') from None
    for option, field in (('--task', 'task'), ('--controller', 'controller')):
        if getattr(args, field) is not None:
            continue
        value = getattr(stated, field, None)
        if not value:
            where = 'give it' if args.model is None else 'the model does not state it: give it'
            raise UsageError(f'{option} is required ({where})')
        setattr(args, field, value)
        if field == 'controller' and not args.controller_param and stated.controller_params:
            # The base the model was trained on: its parameters too, not the defaults.
            from rpl_base_controllers.registry import split_params_text

            args.controller_param = split_params_text(stated.controller_params)


def cmd_eval(args: argparse.Namespace) -> int:
    """``rpl eval``."""
    check_episodes_and_seed(args.episodes, args.seed)
    if args.workers < 1:
        raise UsageError(f'--workers must be at least 1, got {args.workers}')
    if args.model is not None and (problem := demo.model_file_problem(args.model)) is not None:
        raise UsageError(f'--model {args.model!r} {problem}')
    _task_and_controller_from_model(args)
    check_task(args.task)
    out = args.json or default_eval_json(args.task, args.controller, args.model, args.seed)
    try:  # before the episodes run, not after
        inputs = (args.model,) if args.model else ()  # a result never replaces the model
        output_files.check_output(out, force=args.force, option='--json', inputs=inputs)
    except output_files.OutputError as exc:
        raise UsageError(str(exc)) from None
    try:  # unknown controller or parameter, bad value: one line, exit code 2
        from rpl_base_controllers.registry import controller_config, parse_controller_params

        params = parse_controller_params(args.controller, args.controller_param)
        controller_config(args.controller, args.task, **params)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    evaluation = importlib.import_module('rpl_bringup.evaluation')  # MuJoCo: only for eval
    try:  # unknown task or controller, or a bad model: one line, exit code 2
        if args.model is not None:  # before the episodes: refused at once, or warned once
            for line in evaluation.check_model_identity(
                args.task, args.controller, args.model, args.allow_model_mismatch, params
            ):
                print(f'rpl eval: warning: {line}', file=sys.stderr)
        run, extra = evaluation.evaluate_model, {}
        if args.workers > 1:  # same episodes, spread over processes
            run, extra = evaluation.evaluate_parallel, {'workers': args.workers}
        result = run(
            args.task,
            args.controller,
            args.episodes,
            args.seed,
            model_path=args.model,
            progress=not args.no_progress,
            controller_params=params,
            allow_model_mismatch=args.allow_model_mismatch,
            **extra,
        )
    except evaluation_failure() as exc:  # the controller's fault, not the command's
        print(f'rpl eval: error: {exc}', file=sys.stderr)
        return 1
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if result.base_outside_bounds:
        from rpl_sim_bridge.tasks import task_spec

        spec = task_spec(args.task)
        print(
            f"rpl eval: warning: controller {args.controller!r} gave actions outside the task's "
            f'bounds [{spec.action_low:g}, {spec.action_high:g}] in {result.base_outside_bounds} '
            "steps (clipped by the task): are its units the task's?",
            file=sys.stderr,
        )
    if result.residual_beyond_scale:
        print(
            f'rpl eval: warning: model {args.model} went beyond the residual scale its metadata '
            f'states in {result.residual_beyond_scale} steps, which ran the base action (as the '
            'residual node does): the file does not say what it is',
            file=sys.stderr,
        )
    lo, hi = result.ci95
    label = f'{args.controller} + {args.model}' if args.model else args.controller
    # A fixed-goal task's reward is dense (its results are returns): show the mean return.
    from rpl_sim_bridge.tasks import task_spec

    dense = '' if task_spec(args.task).has_goal else f'; mean return {result.mean_return:.2f}'
    print(
        f'{args.task} / {label}: success rate {result.success_rate:.3f} '
        f'(95% CI {lo:.3f}-{hi:.3f}) over {args.episodes} episodes (seed {args.seed}); '
        f'mean final distance {result.mean_final_distance:.4f} m{dense}'
    )
    record = result.to_json()
    if params:
        record['controller_params'] = params
    if args.model:  # the path as given: which actor.onnx it was
        record['model'] = args.model
    data = output_files.json_bytes(record)
    try:
        output_files.write_output(out, data, force=args.force)
    except output_files.OutputError as exc:
        print(data.decode(), end='')  # the result is not lost
        raise UsageError(str(exc)) from None
    print(f'wrote {out}')
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    """``rpl select``: see :mod:`rpl_bringup.selection`."""
    for option in ('top', 'workers'):
        if getattr(args, option) < 1:
            raise UsageError(f'--{option} must be at least 1, got {getattr(args, option)}')
    check_episodes_and_seed(args.episodes, args.seed)
    used = range(args.seed, args.seed + args.episodes)
    if used.start < HELD_OUT_SEEDS.stop and HELD_OUT_SEEDS.start < used.stop:
        raise UsageError(
            f'--seed {args.seed} with --episodes {args.episodes} uses reset seeds {used.start}..'
            f'{used.stop - 1}, which include the held-out seeds {HELD_OUT_SEEDS.start}..'
            f'{HELD_OUT_SEEDS.stop - 1}: a model chosen on them is not tested on unseen '
            f'episodes (the default --seed {SELECTION_SEED} keeps apart)'
        )
    try:
        from rpl_bringup import selection
    except ModuleNotFoundError as exc:
        if not (exc.name or '').startswith('rpl_trainer'):
            raise
        print(TRAINER_MISSING.format(command='select'), file=sys.stderr)
        return 1
    try:
        info = selection.read_run(args.run)
        for path in info.unscored:
            print(
                f'rpl select: note: {path} has no metrics.csv row: not a candidate',
                file=sys.stderr,
            )
        count = min(args.top, len(info.snapshots))
        print(
            f'rpl select: the {count} of {len(info.snapshots)} snapshots of {args.run} with the '
            f'highest periodic {info.metric}, {args.episodes} episodes each from seed {args.seed}',
            file=sys.stderr,
        )
        record = selection.run_selection(
            info,
            args.top,
            args.episodes,
            args.seed,
            workers=args.workers,
            progress=not args.no_progress,
            force=args.force,
            warn=lambda line: print(f'rpl select: warning: {line}', file=sys.stderr),
        )
    except selection.SelectionError as exc:
        if getattr(exc, 'record', None):
            print(exc.record, end='')  # the result is not lost
        raise UsageError(str(exc)) from None
    except evaluation_failure() as exc:  # the run's controller failed: not a usage error
        print(f'rpl select: error: {exc}', file=sys.stderr)
        return 1
    print(
        f'selected {record["selected"]} ({record["selected_env_steps"]} env steps) over '
        f'{args.episodes} selection episodes; wrote {info.run_dir / record["output"]} and its '
        'scores beside it (selection.json)'
    )
    return 0


def model_label(model: str | None) -> str:
    """Short name of a model file for file names: 'base' for none, else the file's stem, or
    its folder's name for the usual ``<folder>/actor.onnx``."""
    if not model:
        return 'base'
    path = os.path.abspath(model)
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem == 'actor':
        stem = os.path.basename(os.path.dirname(path)) or stem
    return re.sub(r'[^A-Za-z0-9._-]+', '_', stem)


def default_eval_json(task: str, controller: str, model: str | None, seed: int) -> str:
    """Default ``rpl eval`` result file: ``results/eval_<task>_<controller>_<model>_seed<seed>
    .json`` in the current folder (see :func:`model_label`)."""
    name = f'eval_{task}_{controller}_{model_label(model)}_seed{seed}.json'
    return os.path.join('results', name)


def cmd_demo(args: argparse.Namespace) -> int:
    """``rpl demo``."""
    check_episodes_and_seed(args.episodes, args.seed)
    return demo.run_demo(
        episodes=args.episodes,
        controller=args.controller,
        model=args.model,
        seed=args.seed,
        namespace=args.namespace,
    )


def cmd_list(args: argparse.Namespace) -> int:
    """``rpl list tasks|controllers|models``."""
    from rpl_bringup import catalog

    if args.what == 'tasks':
        lines = catalog.task_lines()
    elif args.what == 'controllers':
        lines = catalog.controller_lines()
    else:
        try:
            lines = catalog.model_lines(demo.model_search_dirs())
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if not lines:
            lines = ["no models found under ./models or the checkout's models/"]
    print('\n'.join(lines))
    return 0


def cmd_bag(argv: Sequence[str]) -> int:
    """``rpl bag record|play|eval|replay-model``: hand over to ``rpl_bags.bag_cli.main``
    (bag I/O only: no torch is imported)."""
    from rpl_bags import bag_cli

    return int(bag_cli.main(argv) or 0)


# A robot install (rpl_bringup without rpl_trainer: no torch) has no trainer to hand over to.
TRAINER_MISSING = (
    'rpl {command}: the trainer is not installed here (rpl_bringup runs stacks without it); '
    'install it with: pip install src/rpl_trainer (it brings torch)'
)


def cmd_trainer(command: str, argv: Sequence[str]) -> int:
    """``rpl train|plot``: hand over to ``rpl_trainer.cli.main``; exit code 1 with one line
    saying what to install where ``rpl_trainer`` is not installed."""
    try:
        from rpl_trainer import cli as trainer_cli
    except ModuleNotFoundError as exc:
        if exc.name != 'rpl_trainer':
            raise
        print(TRAINER_MISSING.format(command=command), file=sys.stderr)
        return 1
    return int(trainer_cli.main([command, *argv]) or 0)


COMMANDS = {
    'launch': cmd_launch,
    'eval': cmd_eval,
    'demo': cmd_demo,
    'select': cmd_select,
    'list': cmd_list,
}


# Exit status when the reader of stdout went away (`rpl list controllers | head -1`): the
# shell's for a process killed by SIGPIPE, without Python's traceback.
BROKEN_PIPE_EXIT = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``rpl``."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # Nothing more can be written there; point stdout at /dev/null so that the
        # interpreter's final flush does not fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE_EXIT


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == 'bag':
        return cmd_bag(argv[1:])
    if argv and argv[0] in TRAINER_COMMANDS:
        return cmd_trainer(argv[0], argv[1:])
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == 'launch' and extra and not any(e.startswith('-') for e in extra):
        # Options anywhere, as `ros2 launch` takes them: argparse ends a '*' positional at
        # the first option, so `FILE -s name:=value` left the arguments unrecognized.
        args.rest = [*args.rest, *extra]
    elif extra:
        parser.parse_args(argv)  # argparse's own one line and exit 2 for what is unknown
    try:
        return COMMANDS[args.command](args)
    except (UsageError, LaunchError) as exc:
        print(f'rpl {args.command}: error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f'rpl {args.command}: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    raise SystemExit(main())
