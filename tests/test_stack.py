"""Integration: the SlipperyPush stack as real node processes over DDS, through `rpl launch`.

Each test starts `rpl launch rpl_bringup slippery_push.launch.py monitor:=true` in its own
namespace: with the three nodes runs the episode monitor (rpl_bringup.episode_monitor_node),
which writes what it sees on the `episode`, `observation`, `command` and `base_action`
topics to a JSON file, and which the sim bridge waits for before its first step.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest
from helpers import LAUNCH, Child, read_json

pytestmark = pytest.mark.integration


def _wait_for(check: Callable[[], bool], timeout: float, what: str, runner: Child) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    pytest.fail(f'timed out waiting for {what}:\n{runner.output()}')


@pytest.fixture
def stack(tmp_path):
    """Start a launch with the episode monitor in a fresh namespace; returns a starter."""
    started: list[Child] = []

    def start(name: str, *arguments: str) -> tuple[Child, str]:
        output = str(tmp_path / f'{name}.json')
        namespace = f'namespace:=/itest_{os.getpid()}_{name}'
        monitor = ['monitor:=true', f'results:={output}']
        runner = Child([*LAUNCH, 'slippery_push.launch.py', namespace, *monitor, *arguments])
        started.append(runner)
        return runner, output

    yield start
    for child in started:
        child.stop()


def test_lockstep_episodes_arrive_and_the_launch_exits_0(stack):
    runner, output = stack('episodes', 'episodes:=2', 'mode:=lockstep', 'seed:=3')
    assert runner.wait(45) == 0, runner.output()
    assert 'sim_bridge finished (code 0); stopping the launch' in runner.output()
    assert '[episode_monitor] episode   1: ' in runner.output()
    data = read_json(output)
    assert data['summary']['episodes'] == 2, runner.output()
    assert [e['episode'] for e in data['episodes']] == [0, 1]
    assert all(e['steps'] == 50 for e in data['episodes'])
    assert set(data['base_actions']['tags']) == {'reactive_push'}
    assert data['commands']['count'] > 0
    assert data['commands']['non_finite'] == 0


def test_controller_is_swapped_by_launch_argument(stack):
    runner, output = stack('swap', 'episodes:=1', 'controller:=discrete_mpc_push')
    assert runner.wait(45) == 0, runner.output()
    data = read_json(output)
    assert data['summary']['episodes'] == 1, runner.output()
    assert set(data['base_actions']['tags']) == {'discrete_mpc_push'}


def test_killed_residual_node_falls_back_to_base_and_is_respawned(stack):
    runner, output = stack('respawn', 'episodes:=0')  # run until stopped

    def commands_flowing() -> bool:
        data = read_json(output)
        return bool(runner.pids_of('residual_node')) and bool(data and data['episodes'])

    _wait_for(commands_flowing, 30, 'the first episode', runner)
    first = runner.pids_of('residual_node')[0]
    done_before_kill = len(read_json(output)['episodes'])
    os.kill(first, signal.SIGKILL)

    # The runner says so and restarts it. Meanwhile the lockstep sim waits for the command
    # (up to response_timeout_s, re-sending the observation), then goes on with base actions;
    # the new node answers the re-sent observation, so the run may not fall back at all.
    _wait_for(lambda: len(runner.pids_of('residual_node')) == 2, 15, 'the respawn', runner)
    assert 'residual_node died (code -9); respawning in 1.0 s' in runner.output()

    def recovered() -> bool:
        # two episodes finished after the kill, the last one clean (the new node commands)
        episodes = (read_json(output) or {'episodes': []})['episodes'][done_before_kill:]
        return len(episodes) >= 2 and episodes[-1]['fallback_base'] == 0

    _wait_for(recovered, 40, 'clean episodes after the respawn', runner)
    data = read_json(output)
    assert all(e['fallback_zero'] == 0 for e in data['episodes'])
    assert data['commands']['non_finite'] == 0
    assert data['commands']['max_abs'] <= 1.0
    assert runner.proc.poll() is None  # the required sim bridge never stopped

    runner.proc.send_signal(signal.SIGINT)
    assert runner.wait(15) == 128 + signal.SIGINT
    for pid in (*runner.pids_of('residual_node'), *runner.pids_of('sim_bridge')):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
