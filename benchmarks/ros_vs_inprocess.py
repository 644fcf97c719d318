"""One residual model evaluated in-process and through the ROS stack, episode by episode.

Both sides run the same N seeded episodes (episode i is reset with seed + i):

* in-process: :func:`rpl_bringup.evaluation.evaluate_model` with
  :class:`rpl_residual_node.policy.ResidualPolicy` (one Python loop, no ROS);
* ROS: ``<task>.launch.py`` in lockstep (sim bridge, base controller and residual node as
  processes over DDS, plus the episode monitor), run by the project's launch runner.

Lockstep makes the stack deterministic, so every episode should end at the same final
distance and return (to float rounding) on both sides. Prints both success rates with their
Wilson 95 % intervals, the mean final distances and returns, the number of episodes whose
results differ (success, final distance by more than --tolerance m, or return by more than
--return-tolerance: for a fixed-goal task such as mbrl_pusher, whose results are returns of
its dense reward, the return is the result that counts), the stack's fallbacks (a step the
bridge applied without the residual's command: the usual cause of a difference) and the
wall times; writes results/ros_vs_inprocess_<task>.json.

Run: ``.venv/bin/python benchmarks/ros_vs_inprocess.py --model models/<name>/actor.onnx
[--task slippery_push] [--controller reactive_push] [--episodes 100] [--seed 0]``
(a fixed-goal task, e.g. ``--task mbrl_pusher --controller zero``, runs the same way)
(``--model none``: the base controller alone on both sides.)
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

from rpl_bringup import demo
from rpl_bringup.episode_log import summary_from_dict
from rpl_bringup.evaluation import EvalResult, evaluate_model

RESULTS = pathlib.Path(__file__).resolve().parents[1] / 'results'
TOLERANCE_M = 1e-9  # final distances closer than this count as equal, m
RETURN_TOLERANCE = 1e-9  # episode returns closer than this count as equal (reward units)


def in_process(task: str, controller: str, model: str, episodes: int, seed: int) -> EvalResult:
    """Evaluate ``model`` ('' = base only) in one Python loop."""
    return evaluate_model(task, controller, episodes, seed, model or None, progress=True)


def through_ros(
    task: str,
    controller: str,
    model: str,
    episodes: int,
    seed: int,
    command_timeout_s: float | None = None,
) -> dict:
    """Run the stack in lockstep; the monitor's JSON plus launch code, wall times and logs."""
    log_dir = tempfile.mkdtemp(prefix='rpl_ros_vs_inprocess_')

    def quiet(line: str) -> None:  # the runner's warnings, not one line per episode
        if not line.startswith('episode '):
            print(line, file=sys.stderr)

    run = demo.run_stack(
        task=task,
        episodes=episodes,
        controller=controller,
        model=model,
        seed=seed,
        namespace=f'/ros_vs_inprocess_{os.getpid()}',
        log_dir=log_dir,
        write=quiet,
        command_timeout_s=command_timeout_s,
    )
    if run.data is None:
        sys.exit(f'no episode result arrived (launch exit code {run.code}); logs in {log_dir}')
    stamps = [e['stamp_s'] for e in run.data['episodes']]
    steps = sum(e['steps'] for e in run.data['episodes'][1:])
    loop_s = stamps[-1] - stamps[0] if len(stamps) > 1 else float('nan')
    return {
        'data': run.data,
        'launch_code': run.code,
        'wall_s': run.wall_s,
        'loop_steps_per_s': steps / loop_s if loop_s > 0 else float('nan'),
        'log_dir': log_dir,
    }


def compare(
    local: EvalResult, ros: dict, tolerance_m: float, return_tolerance: float = RETURN_TOLERANCE
) -> dict:
    """Episode-by-episode comparison of the two sides.

    Returns:
        ``differing``: episode ids whose success, final distance (beyond ``tolerance_m``)
        or return (beyond ``return_tolerance``) differ, or that the stack did not report;
        ``max_abs_distance_difference`` (m); ``max_abs_return_difference``;
        ``with_fallbacks``: episode ids in which the bridge applied a fallback;
        ``differing_without_fallback``: differing episodes that had no fallback (a real
        discrepancy between the two code paths, not a timing effect).
    """
    reported = {e['episode']: e for e in ros['data']['episodes']}
    fallbacks = sorted(i for i, e in reported.items() if e['fallback_base'] or e['fallback_zero'])
    differing, differences, return_differences = [], [], []
    for i, (success, distance, episode_return) in enumerate(
        zip(local.successes, local.final_distances, local.returns, strict=True)
    ):
        episode = reported.get(i)
        if episode is None:
            differing.append(i)
            continue
        difference = abs(episode['final_distance'] - distance)
        differences.append(difference)
        return_difference = abs(episode['episode_return'] - episode_return)
        return_differences.append(return_difference)
        if (
            bool(episode['success']) != success
            or difference > tolerance_m
            or return_difference > return_tolerance
        ):
            differing.append(i)
    return {
        'differing': differing,
        'differing_without_fallback': [i for i in differing if i not in fallbacks],
        'max_abs_distance_difference': float(max(differences, default=float('nan'))),
        'max_abs_return_difference': float(max(return_differences, default=float('nan'))),
        'with_fallbacks': fallbacks,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', required=True, help='ONNX residual actor, or none')
    parser.add_argument('--task', default='slippery_push')
    parser.add_argument('--controller', default='reactive_push')
    parser.add_argument('--episodes', type=int, default=100)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--tolerance', type=float, default=TOLERANCE_M, help='m')
    parser.add_argument(
        '--return-tolerance', type=float, default=RETURN_TOLERANCE, help='reward units'
    )
    parser.add_argument(
        '--command-timeout',
        type=float,
        default=1.0,
        help='lockstep command timeout, s (generous: this measures equivalence, not latency)',
    )
    parser.add_argument('--out', help='JSON file (default results/ros_vs_inprocess_<task>.json)')
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f'--episodes must be at least 1, got {args.episodes}')
    model = '' if args.model == 'none' else os.path.abspath(args.model)
    if model and not os.path.isfile(model):
        parser.error(f'--model {args.model!r} does not exist (give an ONNX file or none)')

    start = time.perf_counter()
    local = in_process(args.task, args.controller, model, args.episodes, args.seed)
    local_wall_s = time.perf_counter() - start
    ros = through_ros(
        args.task, args.controller, model, args.episodes, args.seed, args.command_timeout
    )
    summary = summary_from_dict(ros['data'])
    diff = compare(local, ros, args.tolerance, args.return_tolerance)

    result = {
        'task': args.task,
        'controller': args.controller,
        'model': model or None,
        'episodes': args.episodes,
        'seed': args.seed,
        'tolerance_m': args.tolerance,
        'return_tolerance': args.return_tolerance,
        'cpu_count': os.cpu_count(),
        'in_process': {
            'success_rate': local.success_rate,
            'ci95': list(local.ci95),
            'mean_final_distance': local.mean_final_distance,
            'wall_s': local_wall_s,
            'successes': local.successes,
            'final_distances': local.final_distances,
            'mean_return': local.mean_return,
            'returns': local.returns,
        },
        'ros': {
            'episodes_reported': summary.episodes,
            'success_rate': summary.success_rate,
            'ci95': list(summary.ci95),
            'mean_final_distance': summary.mean_final_distance,
            'fallback_base': summary.fallback_base,
            'fallback_zero': summary.fallback_zero,
            'wall_s': ros['wall_s'],
            'loop_steps_per_s': ros['loop_steps_per_s'],
            'launch_code': ros['launch_code'],
            'command_sources': ros['data']['commands']['tags'],
            'successes': [bool(e['success']) for e in ros['data']['episodes']],
            'final_distances': [e['final_distance'] for e in ros['data']['episodes']],
            'mean_return': summary.mean_return,
            'returns': [e['episode_return'] for e in ros['data']['episodes']],
            'log_dir': ros['log_dir'],
        },
        'differing_episodes': diff['differing'],
        'differing_without_fallback': diff['differing_without_fallback'],
        'episodes_with_fallbacks': diff['with_fallbacks'],
        'max_abs_distance_difference': diff['max_abs_distance_difference'],
        'max_abs_return_difference': diff['max_abs_return_difference'],
    }
    out = pathlib.Path(args.out or RESULTS / f'ros_vs_inprocess_{args.task}.json')
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + '\n')

    label = f'{args.controller} + {os.path.basename(model)}' if model else args.controller
    lo, hi = local.ci95
    rlo, rhi = summary.ci95
    print(
        f'{args.task} / {label}: {args.episodes} episodes, '
        f'seeds {args.seed}..{args.seed + args.episodes - 1}'
    )
    print(f'  {"":12}{"success (95% CI)":26}{"mean final distance":22}{"mean return":14}wall time')
    print(
        f'  {"in-process":12}{f"{local.success_rate:.3f} ({lo:.3f}-{hi:.3f})":26}'
        f'{f"{local.mean_final_distance:.4f} m":22}{f"{local.mean_return:.3f}":14}'
        f'{local_wall_s:.1f} s'
    )
    print(
        f'  {"ROS stack":12}{f"{summary.success_rate:.3f} ({rlo:.3f}-{rhi:.3f})":26}'
        f'{f"{summary.mean_final_distance:.4f} m":22}{f"{summary.mean_return:.3f}":14}'
        f'{ros["wall_s"]:.1f} s including '
        f'start-up ({ros["loop_steps_per_s"]:.0f} steps/s in the loop)'
    )
    print(
        f'  episodes that differ: {len(diff["differing"])} of {args.episodes} '
        f'{diff["differing"][:20]}, {len(diff["differing_without_fallback"])} of them '
        f'without a fallback; max |final distance difference| '
        f'{diff["max_abs_distance_difference"]:.2e} m, max |return difference| '
        f'{diff["max_abs_return_difference"]:.2e}'
    )
    print(
        f'  stack fallbacks: base {summary.fallback_base}, zero {summary.fallback_zero} '
        f'in episodes {diff["with_fallbacks"][:20]}; command sources '
        f'{ros["data"]["commands"]["tags"]} (as seen by the monitor)'
    )
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
