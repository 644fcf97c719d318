"""Integration: lockstep episodes do not depend on machine load or on a frozen node.

The SlipperyPush stack with the committed residual model runs through ``rpl launch``
(sim bridge, base controller, residual node, episode monitor as processes over DDS) at the
default parameters, (a) with busy-loop processes taking the CPU and (b) with the residual
node stopped (SIGSTOP) for 2.5 s mid-run. Lockstep is the evaluation mode, so each run
must give the episodes of the in-process evaluation, with no fallback at all (before
issue 9, the sim fell back to the base action 50 ms after it, and in one frozen run applied
the zero action).
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import LAUNCH, Child, read_json, stop_process

from rpl_bringup.evaluation import evaluate
from rpl_residual_node.policy import ResidualPolicy
from rpl_sim_bridge.tasks import task_spec

pytestmark = pytest.mark.integration

TASK, CONTROLLER = 'slippery_push', 'reactive_push'
MODEL = pathlib.Path(__file__).parents[1] / 'models' / 'slippery_push_reactive_push' / 'actor.onnx'
SEED = 11
BUSY_LOOPS = 3  # on the 2-core test machine: more runnable processes than cores


@pytest.fixture(scope='module')
def in_process():
    """The in-process evaluation of the model for the first 4 seeds from SEED (a list of
    (success, final_distance, return) per episode)."""
    spec = task_spec(TASK)
    policy = ResidualPolicy.from_file(
        str(MODEL), obs_dim=spec.obs_dim, goal_dim=spec.goal_dim, action_dim=spec.action_dim
    )
    result = evaluate(TASK, CONTROLLER, 4, SEED, policy=policy, progress=False)
    return list(zip(result.successes, result.final_distances, result.returns, strict=True))


def _launch(tmp_path: pathlib.Path, name: str, *arguments: str) -> tuple[Child, pathlib.Path]:
    results = tmp_path / f'{name}.json'
    runner = Child(
        [
            *LAUNCH,
            'slippery_push.launch.py',
            f'seed:={SEED}',
            f'controller:={CONTROLLER}',
            f'model_path:={MODEL}',
            'monitor:=true',
            f'results:={results}',
            f'namespace:=/lockstep_{os.getpid()}_{name}',
            *arguments,
        ]
    )
    return runner, results


def _check(data: dict, output: str, expected: list[tuple], episodes: int) -> None:
    """Every episode as in-process, every step commanded; the summary line says so."""
    got = data['episodes']
    assert [e['episode'] for e in got] == list(range(episodes)), output
    steps = task_spec(TASK).max_episode_steps
    assert [(e['steps'], e['fallback_base'], e['fallback_zero']) for e in got] == [
        (steps, 0, 0)
    ] * episodes, output
    assert [e['success'] for e in got] == [s for s, _, _ in expected[:episodes]]
    np.testing.assert_allclose(
        [e['final_distance'] for e in got], [d for _, d, _ in expected[:episodes]], atol=1e-9
    )
    np.testing.assert_allclose(
        [e['episode_return'] for e in got], [r for _, _, r in expected[:episodes]], atol=1e-9
    )
    assert 'applied the zero action' not in output and 'applied the base action' not in output
    assert f'fallbacks base 0 zero 0 in {episodes * steps} steps' in output, output


def test_lockstep_episodes_under_cpu_load_equal_the_in_process_ones(tmp_path, in_process):
    busy = [
        subprocess.Popen([sys.executable, '-c', 'while True: pass']) for _ in range(BUSY_LOOPS)
    ]
    try:
        runner, results = _launch(tmp_path, 'load', 'episodes:=3')
        try:
            assert runner.wait(90) == 0, runner.output()
        finally:
            runner.stop()
    finally:
        for proc in busy:
            stop_process(proc, signal.SIGKILL)
    _check(read_json(results), runner.output(), in_process, 3)


def test_frozen_residual_node_pauses_the_lockstep_loop_without_any_fallback(tmp_path, in_process):
    """SIGSTOP of the residual node for 2.5 s (less than response_timeout_s): the sim waits
    for its command, then goes on; the episodes equal the in-process ones."""
    # 50 steps/s: the four episodes take ~4 s, so the freeze falls inside the run.
    runner, results = _launch(tmp_path, 'freeze', 'episodes:=4', 'max_rate:=50')
    try:
        end = time.monotonic() + 60
        while not (read_json(results) or {}).get('episodes'):
            assert time.monotonic() < end and runner.proc.poll() is None, runner.output()
            time.sleep(0.02)
        (residual,) = runner.pids_of('residual_node')
        os.kill(residual, signal.SIGSTOP)
        time.sleep(2.5)
        os.kill(residual, signal.SIGCONT)
        assert runner.wait(60) == 0, runner.output()
    finally:
        runner.stop()
    data = read_json(results)
    _check(data, runner.output(), in_process, 4)
    # The freeze really fell inside the run: one step took the 2.5 s.
    stamps = [e['stamp_s'] for e in data['episodes']]
    assert max(np.diff(stamps)) > 2.5, stamps
