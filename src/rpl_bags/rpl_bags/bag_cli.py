"""``rpl bag``: record, play, evaluate and replay rosbag2 bags of the stack.

The ``rpl`` entry point (rpl_bringup) hands ``rpl bag ...`` to :func:`main`;
``python -m rpl_bags.bag_cli eval BAG`` does the same. Nothing here imports torch.

Examples::

    rpl bag record runs/bags/slippery_0 --namespace /rpl        # until Ctrl-C
    rpl launch rpl_bringup slippery_push.launch.py episodes:=20 record:=true bag:=runs/bags/s20
    rpl bag eval runs/bags/s20                                  # table + s20_eval.png/.json
    rpl bag play runs/bags/s20 --rate 2 --topics observation base_action
    rpl bag replay-model runs/bags/s20 --model models/candidate.onnx

Exit codes: 0 done; 1 done, but the bag had problems (printed as warnings) or, with
``--fail-on-change``, the candidate changed commands; 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
from collections.abc import Sequence

from rpl_bags.playback import (
    absolute_name,
    messages_to_play,
    parse_remaps,
    play_names,
    played_namespaces,
    select_topics,
)
from rpl_bags.reader import read_raw_bag
from rpl_bags.recorded import load_run
from rpl_bags.topics import RECORDED_TOPICS, BagError, parse_topic_list
from rpl_bags.writer import DEFAULT_STORAGE, STORAGES, existing_bag
from rpl_interfaces import cli_parser, output_files
from rpl_interfaces.params import ParameterError
from rpl_interfaces.trainer_files import bag_identity


class CliError(Exception):
    """A user error to print as one line (exit status 2)."""


def _add_record(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'record',
        help='record the control topics of a running stack until Ctrl-C',
        description='Record observation, base_action, residual, command, episode and '
        '/diagnostics of one stack namespace into a new rosbag2 bag (never overwrites).',
    )
    p.add_argument('bag', help='bag directory to create')
    p.add_argument('--namespace', default='/rpl', help='stack namespace (default /rpl)')
    p.add_argument('--storage', choices=STORAGES, default=DEFAULT_STORAGE)
    p.add_argument(
        '--topics', nargs='+', metavar='TOPIC', help=f'subset of {list(RECORDED_TOPICS)}'
    )


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'eval',
        help='evaluate a recorded run: per-episode table, summary, PNG',
        description='Per-episode success, final distance, return, residual magnitude, '
        'fallbacks; loop latency from the header stamps. Prints a table and writes a PNG and '
        'a JSON file (default: next to the bag, <bag>_eval.png / <bag>_eval.json).',
    )
    p.add_argument('bag', help='bag directory (or .mcap / .db3 file)')
    p.add_argument('--namespace', help='stack namespace (default: the only one in the bag)')
    p.add_argument('--png', metavar='OUT', help='figure file')
    p.add_argument('--json', metavar='OUT', help='result file')
    p.add_argument('--force', action='store_true', help='replace the PNG and JSON files')


def _add_play(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'play',
        help='republish a bag onto live topics with the recorded timing',
        description='Like ros2 bag play: publishes every stored message on its topic with '
        'the recorded QoS, spaced as recorded divided by --rate.',
    )
    p.add_argument('bag', help='bag directory (or .mcap / .db3 file)')
    p.add_argument('--rate', type=float, default=1.0, help='speed factor (default 1)')
    p.add_argument('--topics', nargs='+', metavar='TOPIC', help='topics to play (default all)')
    p.add_argument('--delay', type=float, default=0.0, metavar='S', help='start delay, s')
    p.add_argument(
        '--namespace',
        metavar='NS',
        help="publish the bag's stack topics in this namespace instead (e.g. /robot_b; "
        '/diagnostics keeps its name)',
    )
    p.add_argument(
        '--remap',
        nargs='+',
        action='extend',  # given twice: both rules (argparse kept the last)
        default=[],
        metavar='FROM:=TO',
        help='publish the bag topic FROM (its name in the bag) on TO, absolute names; it '
        'overrides --namespace for that topic',
    )
    p.add_argument(
        '--wait-subscribers',
        type=float,
        default=0.0,
        metavar='S',
        help='wait up to S seconds for a subscriber on every played topic (default 0)',
    )


def _add_replay(sub: argparse._SubParsersAction) -> None:
    from rpl_residual_node.mixing import ResidualConfig

    defaults = ResidualConfig()
    p = sub.add_parser(
        'replay-model',
        help='run a candidate ONNX residual over a bag and compare its commands',
        description='Compute the command a candidate residual would have sent at every '
        'recorded step (same mixing as the residual node) and compare with the recorded '
        'command. Open loop: the recorded states are kept.',
    )
    p.add_argument('bag', help='bag directory (or .mcap / .db3 file)')
    p.add_argument('--model', required=True, metavar='FILE.onnx', help='candidate actor')
    p.add_argument('--namespace', help='stack namespace (default: the only one in the bag)')
    p.add_argument(
        '--residual-gain',
        type=float,
        default=defaults.residual_gain,
        help="the residual node's residual_gain (default %(default)s)",
    )
    p.add_argument(
        '--residual-limit',
        type=float,
        help="the residual node's residual_limit (default: action high - low, the full "
        'override the trainer composes)',
    )
    for side, default in (('low', defaults.action_low), ('high', defaults.action_high)):
        p.add_argument(
            f'--action-{side}',
            type=float,
            help=f"the residual node's action_{side} (default: the bound the model states it "
            f'was trained for, else {default:g})',
        )
    p.add_argument(
        '--allow-model-mismatch',
        action='store_true',
        help='replay a model trained for another task than the recorded one (field names '
        'and action bounds must still match)',
    )
    p.add_argument(
        '--tolerance',
        type=float,
        default=1e-4,
        help='difference that counts as a changed command, action units (default 1e-4)',
    )
    p.add_argument(
        '--fail-on-change',
        action='store_true',
        help='exit 1 when any command differs by more than the tolerance',
    )
    p.add_argument('--json', metavar='OUT', help='also write the report as JSON')
    p.add_argument('--force', action='store_true', help='replace the JSON file if it exists')


def build_parser() -> argparse.ArgumentParser:
    """The ``rpl bag`` argument parser."""
    parser = cli_parser.ArgumentParser(
        prog='rpl bag', description='Record, play, evaluate and replay rosbag2 bags.'
    )
    sub = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    _add_record(sub)
    _add_play(sub)
    _add_eval(sub)
    _add_replay(sub)
    return parser


def _warn(command: str, problems: Sequence[str]) -> None:
    for problem in problems:
        print(f'rpl bag {command}: warning: {problem}', file=sys.stderr)


def _sibling(bag: str, suffix: str) -> str:
    """The default result file next to a bag: ``<bag folder name><suffix>``, also for the
    storage file of a bag folder given by name (inside the folder it was refused as an input,
    always); a lone storage file's name without its .mcap / .db3."""
    path = pathlib.Path(os.path.abspath(bag))  # `.` and `..` name their folder
    if path.suffix in ('.mcap', '.db3') and (path.parent / 'metadata.yaml').is_file():
        path = path.parent
    name = path.stem if path.suffix in ('.mcap', '.db3') else path.name
    if not name:  # the file system's root
        raise CliError(f'give --png and --json for a bag at {bag!r} (no folder to put them in)')
    return str(path.with_name(name + suffix))


def _check_outputs(force: bool, inputs: tuple[str, ...], **paths: str | None) -> None:
    """Before the work: each output (option name -> path) can be written, exists only if
    ``force``, and is none of the ``inputs`` nor inside one (a bag folder, a model): not even
    --force writes a result over what it was made from."""
    named = {option: os.path.realpath(path) for option, path in paths.items() if path}
    if len(set(named.values())) < len(named):
        raise CliError(f'the outputs {", ".join(f"--{o}" for o in named)} must be different files')
    if paths.get('png') and not paths['png'].lower().endswith('.png'):
        raise CliError(f'--png {paths["png"]!r} must end in .png (the figure is a PNG image)')
    for option, path in paths.items():
        if path:
            output_files.check_output(path, force=force, option=f'--{option}', inputs=inputs)


def _bag_inputs(bag: str) -> tuple[str, ...]:
    """What reading ``bag`` opens: its folder (that of a storage file given by name) and
    every file in it, links followed by the check."""
    folder = bag_identity(bag)
    if not os.path.isdir(folder):
        return (folder,)
    return (folder, *(os.path.join(folder, name) for name in os.listdir(folder)))


def _json_bytes(data: dict) -> bytes:
    """A result as the JSON file holds it."""
    return output_files.json_bytes(data, indent=1)


def _write_json(path: str, data: dict, force: bool) -> None:
    output_files.write_output(path, _json_bytes(data), force=force)


def cmd_record(args: argparse.Namespace) -> int:
    """``rpl bag record``: run the recorder node in this process."""
    from rpl_bags import bag_recorder_node

    topics = parse_topic_list(','.join(args.topics or RECORDED_TOPICS))
    namespace = _namespace(args.namespace)
    problem = existing_bag(args.bag)
    if problem:
        raise CliError(problem)
    try:  # before the node starts: a read-only or impossible path is one line here
        output_files.probe_write(os.path.join(args.bag, 'metadata.yaml'))
    except OSError as exc:
        raise CliError(f'cannot create bag {args.bag!r}: {output_files.os_reason(exc)}') from None
    # Subscribe to everything at once: nothing waits for this recorder (unlike record:=true).
    ros_args = ['--ros-args', '-r', f'__ns:={namespace}']
    ros_args += ['-p', 'startup_timeout_s:=0.0', '-p', 'settle_s:=0.0']
    for name, value in (('bag', args.bag), ('storage', args.storage), ('topics', topics)):
        text = ','.join(value) if isinstance(value, tuple) else value
        ros_args += ['-p', f'{name}:={json.dumps(text)}']
    return bag_recorder_node.main(ros_args)


def _namespace(text: str) -> str:
    """``--namespace`` as an absolute ROS namespace (``rpl`` -> ``/rpl``), else CliError."""
    try:
        return absolute_name(text, '--namespace', namespace=True)
    except BagError as exc:
        raise CliError(str(exc)) from None


# rpl bag play's timing options: (option, lowest, highest); rates outside these bounds
# would overflow the schedule's timestamps.
PLAY_BOUNDS = (('rate', 1e-3, 1e3), ('delay', 0.0, 86400.0), ('wait_subscribers', 0.0, 86400.0))


def cmd_play(args: argparse.Namespace) -> int:
    """``rpl bag play``."""
    from rpl_bags import bag_play_node

    for name, low, high in PLAY_BOUNDS:
        value = getattr(args, name)
        if not low <= value <= high:  # NaN fails too
            option = '--' + name.replace('_', '-')
            raise CliError(f'{option} {value:g} is outside [{low:g}, {high:g}]')
    namespace = None if args.namespace is None else _namespace(args.namespace)
    remaps = parse_remaps(args.remap)
    raw = read_raw_bag(args.bag)
    _warn('play', raw.problems)
    chosen = select_topics(list(raw.topics), args.topics)
    names = play_names(chosen, played_namespaces(chosen), namespace, remaps)
    # An empty bag is refused before any node starts.
    total = len(messages_to_play(raw.messages, chosen))
    shown = ', '.join(t if names[t] == t else f'{t} as {names[t]}' for t in chosen)
    try:
        count = bag_play_node.play(
            raw,
            rate=args.rate,
            topics=chosen,
            delay_s=args.delay,
            wait_subscribers_s=args.wait_subscribers,
            on_start=lambda: print(
                f'playing {args.bag}: {shown} at rate {args.rate:g}', flush=True
            ),
            names=names,
        )
    except bag_play_node.PlayInterrupted as exc:  # the play asked for did not happen
        print(
            f'rpl bag play: interrupted: published {exc.published} of {total} messages',
            file=sys.stderr,
        )
        return 130
    print(f'published {count} messages')
    return 1 if raw.problems else 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``rpl bag eval``."""
    from rpl_bags.bag_eval import evaluate_run, format_table, plot_evaluation

    png = args.png or _sibling(args.bag, '_eval.png')
    out = args.json or _sibling(args.bag, '_eval.json')
    _check_outputs(args.force, _bag_inputs(args.bag), png=png, json=out)
    run = load_run(args.bag, args.namespace)
    _warn('eval', run.problems)
    evaluation = evaluate_run(run)
    print(format_table(evaluation))
    files = [(png, plot_evaluation(evaluation)), (out, _json_bytes(evaluation.to_json()))]
    output_files.write_outputs(files, force=args.force)  # both or neither
    print(f'wrote {png} and {out}')
    return 1 if run.problems else 0


def _check_action_bounds(args: argparse.Namespace, low: float, high: float) -> None:
    """CliError unless the command bounds are finite and ``low < high`` (``low`` / ``high``:
    ``--action-low`` / ``--action-high``, or the model's bound where one is not given)."""
    for option, value in (('--action-low', args.action_low), ('--action-high', args.action_high)):
        if value is not None and not math.isfinite(value):
            raise CliError(f'{option} must be a finite number, got {value}')
    if not low < high:
        raise CliError(
            f'--action-low {low:g} must be below --action-high {high:g} '
            "(an option not given is the model's bound)"
        )


def cmd_replay(args: argparse.Namespace) -> int:
    """``rpl bag replay-model``."""
    from rpl_bags.bag_replay import format_report, replay_model
    from rpl_interfaces.params import build_config
    from rpl_residual_node.mixing import ResidualConfig, full_override_limit
    from rpl_residual_node.model_identity import (
        MismatchError,
        StackIdentity,
        check_identity,
        clamp_warning,
    )
    from rpl_residual_node.onnx_actor import ModelError, OnnxActor
    from rpl_residual_node.policy import ResidualPolicy

    if not (args.tolerance >= 0 and math.isfinite(args.tolerance)):
        raise CliError(f'--tolerance must be a finite number >= 0, got {args.tolerance}')
    _check_outputs(args.force, (*_bag_inputs(args.bag), args.model), json=args.json)
    run = load_run(args.bag, args.namespace)
    _warn('replay-model', run.problems)
    try:
        actor = OnnxActor.load(
            args.model,
            obs_dim=run.layout.obs_dim,
            goal_dim=run.layout.goal_dim,
            action_dim=len(run.action_fields) or None,
        )
    except ModelError as exc:
        raise CliError(
            f"{exc} (the bag's {run.task} observations have {run.layout.obs_dim} observation "
            f'and {run.layout.goal_dim} goal values, its actions {len(run.action_fields)})'
        ) from None
    defaults = ResidualConfig()
    stated = actor.identity.action_bounds or (defaults.action_low, defaults.action_high)
    low = stated[0] if args.action_low is None else args.action_low
    high = stated[1] if args.action_high is None else args.action_high
    _check_action_bounds(args, low, high)  # before the residual limit derived from them
    limit = full_override_limit(low, high) if args.residual_limit is None else args.residual_limit
    config = build_config(
        ResidualConfig,
        {
            'model_path': args.model,
            'residual_gain': args.residual_gain,
            'residual_limit': limit,
            'action_low': low,
            'action_high': high,
        },
    )
    # The controller whose base actions the bag holds (their frame_id), as the residual
    # node compares it: a model of another controller passed here and was refused there.
    # Several (a problem line says so): none is compared. Base actions that name none
    # (empty frame_id), like untagged observations (task ''), are a stream that names none:
    # the node refuses a model that names one, and so does the replay.
    if len(run.controllers) == 1:
        controller: str | None = run.controllers[0]
    elif not run.controllers and any(ep.base_action.present.any() for ep in run.episodes):
        controller = ''
    else:
        controller = None
    recorded = StackIdentity(
        task=run.task,
        controller=controller,
        observation_fields=run.layout.observation_fields,
        goal_fields=run.layout.goal_fields,
        action_fields=run.action_fields or None,
        action_bounds=(config.action_low, config.action_high),
    )
    try:
        allowed = check_identity(actor.identity, recorded, args.allow_model_mismatch)
    except MismatchError as exc:
        hint = ' (--allow-model-mismatch replays it anyway)' if exc.overridable else ''
        raise CliError(
            f'model {args.model} does not fit the bag {run.path}: {exc}{hint}'
        ) from None
    _warn('replay-model', [f'replaying although {difference}' for difference in allowed])
    clamped = clamp_warning(actor.identity, config.residual_limit, '--residual-limit ')
    _warn('replay-model', [f'model {args.model}: {clamped}'] if clamped else [])
    if (args.action_low, args.action_high) != (None, None):
        source = 'as given'
    elif actor.identity.action_bounds is not None:
        source = 'the bounds the model states'
    else:
        source = 'the default: the model does not state its bounds'
    print(f'commands clipped to [{config.action_low:g}, {config.action_high:g}] ({source})')
    policy = ResidualPolicy(actor, config)
    report = replay_model(run, policy, args.tolerance)
    print(format_report(report, args.model, run.action_fields))
    if args.json:
        _write_json(
            args.json, {'bag': run.path, 'model': args.model, **report.to_json()}, args.force
        )
        print(f'wrote {args.json}')
    # A model NaN on recorded data, or beyond the scale it states, is not one to deploy:
    # every cause that applies, then exit 1.
    causes = [
        (report.non_finite, 'gives a non-finite residual'),
        (report.beyond_scale, 'goes beyond the residual scale its metadata states'),
    ]
    for count, what in causes:
        if count:
            print(
                f'rpl bag replay-model: error: model {args.model} {what} at {count} of '
                f'{report.steps} recorded steps; the residual node would run the base '
                'controller alone there',
                file=sys.stderr,
            )
    if any(count for count, _ in causes):
        return 1
    if args.fail_on_change and report.steps_over_tolerance:
        return 1
    return 1 if run.problems else 0


COMMANDS = {'record': cmd_record, 'play': cmd_play, 'eval': cmd_eval, 'replay-model': cmd_replay}


def main(argv: Sequence[str] | None = None) -> int:
    """``rpl bag ...``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(COMMANDS[args.command](args) or 0)
    except (CliError, BagError, ParameterError, output_files.OutputError) as exc:
        print(f'rpl bag {args.command}: error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    raise SystemExit(main())
