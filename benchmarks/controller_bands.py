"""Base controllers against the success bands of the RPL paper (Fig. 3, "Initial" curves).

Runs :func:`rpl_bringup.evaluation.evaluate` for each row (default 200 episodes, seeds
0..199) and merges the results into results/controller_bands.json, then rewrites the
markdown table results/controller_bands.md and the bar chart results/controller_bands.png
from everything in the JSON. Rows can run separately (``--rows``), e.g. the slow planner in
the background while the reactive rows run in the foreground:

    nice .venv/bin/python benchmarks/controller_bands.py --rows mpc_push &
    .venv/bin/python benchmarks/controller_bands.py --rows push slippery \\
        slippery_block_table_only \\
        pick_place pick_place_gain50 pick_place_calibrated

Rows marked "diagnostic" are not the registered defaults: they show what a documented
difference to the original setup does (see their notes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import sys
from collections.abc import Callable

import mujoco

from rpl_base_controllers import make_controller
from rpl_bringup.evaluation import evaluate
from rpl_sim_bridge.tasks import GoalTask, make_task

RESULTS = pathlib.Path(__file__).resolve().parents[1] / 'results'
JSON_PATH = RESULTS / 'controller_bands.json'


@dataclasses.dataclass(frozen=True)
class Row:
    """One measured combination.

    Attributes:
        key: Short id (``--rows``).
        task: Registered task name.
        controller: Registered controller name.
        band: Paper band of the success rate (low, high).
        params: Controller parameters other than the registered defaults.
        variant: '' for the registered setup, else what was changed (diagnostic row).
        build_task: Builds the task; None = ``make_task(task)``.
        seed: Seed of episode 0 unless ``--seed`` is given (the hook rows use 100000, away
            from the seeds of the tests).
    """

    key: str
    task: str
    controller: str
    band: tuple[float, float]
    params: dict[str, float] = dataclasses.field(default_factory=dict)
    variant: str = ''
    build_task: Callable[[], GoalTask] | None = None
    seed: int = 0


def _slippery_block_table_only() -> GoalTask:
    """slippery_push with 0.18 on the block and table only (fingers keep 1.0)."""
    return make_task('slippery_push', surface_friction=0.0)


def _noisy_hook_paper_sigma() -> GoalTask:
    """noisy_hook with std 0.158 (the paper's sigma^2 = 0.025) instead of the code's 0.025."""
    return make_task('noisy_hook', obs_noise_std=0.158)


def _complex_hook_no_bumps() -> GoalTask:
    """complex_hook with the object library but no bumps on the table."""
    return make_task('complex_hook', bump_count_min=0, bump_count_max=0)


ROWS = (
    Row('push', 'push', 'reactive_push', (0.9, 1.0)),
    Row('slippery', 'slippery_push', 'reactive_push', (0.30, 0.60)),
    Row(
        'slippery_block_table_only',
        'slippery_push',
        'reactive_push',
        (0.30, 0.60),
        variant='diagnostic: sliding friction 0.18 on block and table only, fingers keep 1.0 '
        '(registered task: every geom (0.18, 5e-3, 1e-4) as in the 2019 code)',
        build_task=_slippery_block_table_only,
    ),
    Row('pick_place', 'pick_and_place', 'reactive_pick_and_place', (0.35, 0.65)),
    Row(
        'pick_place_gain50',
        'pick_and_place',
        'reactive_pick_and_place',
        (0.35, 0.65),
        params={'carry_gain': 50.0},
        variant='diagnostic: literal carry gain 50 (registered default 83, see '
        'reactive_pick_and_place.py)',
    ),
    Row(
        'pick_place_calibrated',
        'pick_and_place',
        'reactive_pick_and_place_calibrated',
        (0.85, 1.0),
    ),
    Row('mpc_push', 'push', 'discrete_mpc_push', (0.35, 0.65)),
    Row('hook', 'hook', 'reactive_hook', (0.9, 1.0), seed=100000),
    Row('noisy_hook', 'noisy_hook', 'reactive_hook', (0.05, 0.30), seed=100000),
    Row(
        'noisy_hook_sigma0158',
        'noisy_hook',
        'reactive_hook',
        (0.05, 0.30),
        variant="diagnostic: observation noise std 0.158 (the paper's sigma^2 = 0.025; "
        'registered noisy_hook: std 0.025 as in the 2019 code)',
        build_task=_noisy_hook_paper_sigma,
        seed=100000,
    ),
    Row('complex_hook', 'complex_hook', 'reactive_hook', (0.40, 0.70), seed=100000),
    Row(
        'complex_hook_no_bumps',
        'complex_hook',
        'reactive_hook',
        (0.40, 0.70),
        variant='diagnostic: the object library without the bumps',
        build_task=_complex_hook_no_bumps,
        seed=100000,
    ),
)


NOTES = """\
## What differs from the original setup, and why rows are where they are

- **slippery: every geom at 0.18, as the 2019 code.** The registered `slippery_push` sets
  EVERY geom to (0.18, 5e-3, 1e-4), fingers included, as the 2019 code did; block-table
  contacts then slide at 0.18 (tested). Row `slippery_block_table_only` lowers only the
  block and the table, so the fingers keep (1.0, 0.05, 0.01): ReactivePush then drags and
  spins the block (in a 100-episode probe 40 % of the blocks left the table) and falls
  below the paper's band. The friction of the gripper-block contact, not the controller,
  explains the gap, so the task follows the original code.
- **pick_place: gain 83, not 50.** In MuJoCo 3.3 / Gymnasium-Robotics the gripper covers
  about 60 % of a commanded displacement within one control step, so the literal carry gain
  50 gives a damped overshoot (loop factor 1 - 0.05 * 50 * 0.6 = -0.5) and no oscillation:
  row `pick_place_gain50`, near perfect. The paper describes an oscillating controller.
  Sustained oscillation starts above gain 2 / (0.05 * 0.6) = 67 (200-episode probes:
  0.995 at 67, 0.73 at 75, 0.515 at 83, 0.52 at 90). The registered default 83 = 50 / 0.6
  is the paper's gain for a gripper that tracks its whole command (loop factor -1.5).
  Failures at 83: the block is dropped or still swings more than 5 cm off at the last step.
- **mpc_push.** The planner copies the state from the 25-D observation (block pose and
  velocity, gripper position and velocity, fingers exactly; arm joints by inverse
  kinematics warm-started from its own prediction; see `planning_copy.py`). Without a
  residual its one-step prediction is exact to 1e-15 m, i.e. a perfect copy in effect.
  Ranking: (block-goal distance rounded to 1 mm, depth + gripper distance to the push point
  5 cm behind the block); the root is not a candidate. 30-episode probes of the
  alternatives: exact-float distances 0.63 (same as 1 mm: 0.60); the paper's wording
  (no depth term, noop when the root is best) 0.43 with 1-mm rounding but 0.03 with exact
  floats, because a resting block settles by micrometres between nodes and the root then
  wins every tie.
- **hook / noisy_hook: own scene, code's sigma.** The hook scene is our own MJCF (the 2019
  assets are gone; see `rpl_sim_bridge/tasks/hook.py`); ReactiveHook grasps the hook 0.2 m
  from the handle's free end, which puts the head 6 cm beyond the block at the hook target
  (block_x - 0.5, block_y - 0.05, 0.45). The registered `noisy_hook` uses the 2019 code's
  std 0.025 and lands in the paper's ~0.15 band; the paper's sigma^2 = 0.025 (std 0.158,
  row `noisy_hook_sigma0158`) buries the 3-5 cm tolerances of every phase test and gives
  ~0.01. Under noise the phase tests flicker (the hook hovers between carry and target
  height; grasping takes many tries), so the noisy rate depends on the placement tolerance
  (60-episode probes at std 0.025: 0.02 m -> 0.02, 0.03 -> 0.05, 0.04 (default) -> 0.12,
  0.05 -> 0.20); the clean task succeeds throughout.
- **complex_hook: above the band because of how the objects start.** 100 generated
  objects (12 kinds of primitive assemblies, 2.6-8 cm, 0.1-2 kg, friction 0.1-1.0, random
  yaw; `rpl_sim_bridge/tasks/object_library.py`) and 5-15 bumps 8-10 mm high. Without the
  bumps (row `complex_hook_no_bumps`) ReactiveHook nearly always succeeds: the failures
  come from object edges catching on bumps (the sweep stalls, or turns the object off the
  hook). Probes on the same seeds: bumps 5-10 mm high 0.805, 8-10 mm 0.735 (registered).
  Every object here starts resting upright; in the 2019 code the objects were dropped onto
  the table, which likely explains the rest of the gap to the paper's ~0.55 (an inference,
  not measured).
"""


def machine() -> str:
    """One line: CPU model, logical cores, Python and MuJoCo versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f'{cpu}, {os.cpu_count()} logical cores (shared), Python {platform.python_version()}, '
        f'MuJoCo {mujoco.__version__}'
    )


def run_row(row: Row, episodes: int, seed: int) -> dict:
    """Evaluate one row; returns its JSON record."""
    task = row.build_task() if row.build_task else make_task(row.task)
    controller = make_controller(row.controller, task=row.task, **row.params)
    result = evaluate(task, controller, episodes, seed, progress=True)
    steps = episodes * task.spec.max_episode_steps
    low, high = row.band
    return {
        **result.to_json(),
        'key': row.key,
        'params': row.params,
        'variant': row.variant,
        'band': [low, high],
        'in_band': low <= result.success_rate <= high,
        'ms_per_step': 1e3 * result.wall_s / steps,
        'machine': machine(),
    }


def write_markdown(records: dict[str, dict], path: pathlib.Path) -> None:
    """The table of all rows, in the order of :data:`ROWS`."""
    lines = [
        "# Base controllers vs. the paper's bands",
        '',
        'Produced by `benchmarks/controller_bands.py` (in-process `evaluate()`, episode i '
        "seeded with the row's seed + i: 0 for the Fetch rows, 100000 for the hook rows; "
        'T = 50 steps for Fetch, 100 for hook). Success = block within 5 cm of the goal at '
        'the last step. ms/step = wall time per control step, controller + simulation.',
        '',
        '| row | task | controller | episodes | success | 95% CI (Wilson) | mean final '
        'distance (m) | paper band | in band | wall (s) | ms/step |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    machines = set()
    for row in ROWS:
        r = records.get(row.key)
        if r is None:
            continue
        machines.add(r['machine'])
        low, high = r['band']
        band = f'>= {low:.2f}' if high >= 1.0 else f'{low:.2f}-{high:.2f}'
        params = ', '.join(f'{k}={v:g}' for k, v in r['params'].items())
        controller = r['controller'] + (f' ({params})' if params else '')
        task = r['task'] + {
            'slippery_block_table_only': ' (block+table only)',
            'noisy_hook_sigma0158': ' (std 0.158)',
        }.get(row.key, '')
        lines.append(
            f'| {r["key"]} | {task} | {controller} | {r["episodes"]} | {r["success_rate"]:.3f} '
            f'| {r["ci95"][0]:.3f}-{r["ci95"][1]:.3f} | {r["mean_final_distance"]:.4f} '
            f'| {band} | {"yes" if r["in_band"] else "no"} | {r["wall_s"]:.0f} '
            f'| {r["ms_per_step"]:.1f} |'
        )
    lines += ['', 'Diagnostic rows (not the registered defaults):', '']
    for row in ROWS:
        if row.variant and row.key in records:
            lines.append(f'- {row.key}: {row.variant}')
    lines += ['', 'Machine: ' + '; '.join(sorted(machines)), '', NOTES]
    path.write_text('\n'.join(lines))


def write_chart(records: dict[str, dict], path: pathlib.Path) -> None:
    """Bar chart: success rate with Wilson 95% error bars, the paper band shaded per bar."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rows = [r for r in ROWS if r.key in records]
    fig, ax = plt.subplots(figsize=(1.5 + 1.3 * len(rows), 4.2))
    for i, row in enumerate(rows):
        r = records[row.key]
        low, high = r['band']
        ax.add_patch(
            plt.Rectangle((i - 0.4, low), 0.8, high - low, color='tab:green', alpha=0.18, lw=0)
        )
        rate = r['success_rate']
        err = [[rate - r['ci95'][0]], [r['ci95'][1] - rate]]
        color = 'tab:blue' if r['in_band'] else 'tab:red'
        hatch = '//' if row.variant else None
        ax.bar(i, rate, 0.5, color=color, hatch=hatch, edgecolor='black', lw=0.5)
        ax.errorbar(i, rate, yerr=err, color='black', capsize=4)
    ax.set_xticks(range(len(rows)), [r.key for r in rows], rotation=25, ha='right')
    ax.set_ylim(0, 1.05)
    ax.set_ylabel('success rate (95% Wilson CI)')
    ax.set_title('Base controllers vs. paper bands (green); hatched = diagnostic variant')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    keys = [row.key for row in ROWS]
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--rows', nargs='+', choices=keys, default=keys, help='rows to run')
    parser.add_argument('--episodes', type=int, default=200, help='episodes per row')
    parser.add_argument(
        '--seed', type=int, default=None, help="seed of episode 0 (default: the row's seed)"
    )
    parser.add_argument('--report-only', action='store_true', help='only rewrite md and png')
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    rows = [] if args.report_only else [row for row in ROWS if row.key in args.rows]
    for row in rows:
        record = run_row(row, args.episodes, row.seed if args.seed is None else args.seed)
        print(
            f'{row.key}: success {record["success_rate"]:.3f} '
            f'(CI {record["ci95"][0]:.3f}-{record["ci95"][1]:.3f}), '
            f'in band {record["in_band"]}, {record["wall_s"]:.0f} s',
            flush=True,
        )
        # Re-read before writing: another run of this script may have added rows meanwhile.
        records = json.loads(JSON_PATH.read_text()) if JSON_PATH.exists() else {}
        records[row.key] = record
        JSON_PATH.write_text(json.dumps(records, indent=1) + '\n')
    records = json.loads(JSON_PATH.read_text()) if JSON_PATH.exists() else {}
    if not records:
        print('no results yet', file=sys.stderr)
        return 1
    write_markdown(records, RESULTS / 'controller_bands.md')
    write_chart(records, RESULTS / 'controller_bands.png')
    print(f'wrote {JSON_PATH} and the .md / .png next to it')
    return 0


if __name__ == '__main__':
    sys.exit(main())
