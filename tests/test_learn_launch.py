"""Integration: `slippery_push_learn.launch.py` end to end, through `rpl launch`.

One explorer stack, the watched stack and the trainer node as real processes over DDS:
the watched stack runs 2 paced lockstep episodes (``max_rate:=50``), then the launch ends
with exit code 0; both stacks' monitors wrote their results, the watched stack never
fell back, and the pacing held (50 steps at <= 50 steps/s last >= 1 s).
"""

from __future__ import annotations

import json
import os

import pytest
from helpers import LAUNCH, Child

pytestmark = pytest.mark.integration

RATE_HZ = 50.0
T = 50  # SlipperyPush episode steps


def test_learn_launch_runs_paced_stacks_and_the_trainer_then_exits_0(tmp_path):
    namespace = f'/learn_{os.getpid()}'
    results = tmp_path / 'results'
    model = tmp_path / 'live' / 'actor.onnx'
    runner = Child(
        [
            *LAUNCH,
            'slippery_push_learn.launch.py',
            f'namespace:={namespace}',
            'explorers:=1',
            'episodes:=2',
            f'max_rate:={RATE_HZ}',
            f'model_path:={model}',
            'monitor:=true',
            f'results:={results}',
            'train_overrides:=batch_size=64,hidden_size=64',
        ]
    )
    try:
        code = runner.wait(90.0)
    finally:
        runner.stop()
    assert code == 0, runner.output()
    assert model.is_file(), 'the trainer exported no model'
    # No checkpoint:= given: the learner is kept beside the model (it was lost at the stop).
    assert (tmp_path / 'live' / 'actor.ckpt').is_file(), runner.output()
    stack = namespace.strip('/')
    names = sorted(p.name for p in results.iterdir())
    assert names == [f'{stack}.json', f'{stack}_explore_0.json'], names
    watched = json.loads((results / f'{stack}.json').read_text())
    episodes = watched['episodes']
    assert [e['episode'] for e in episodes] == [0, 1], runner.output()
    assert all(e['steps'] == T for e in episodes)
    assert sum(e['fallback_base'] + e['fallback_zero'] for e in episodes) == 0
    # Episode 1's 50 steps were paced to at most RATE_HZ steps per second.
    assert episodes[1]['stamp_s'] - episodes[0]['stamp_s'] >= 0.98 * T / RATE_HZ
    assert 'explore_0.residual_node]: exploration on' in runner.output()


def test_learn_launch_init_from_a_missing_checkpoint_is_refused_before_any_node(tmp_path):
    # init_from:= is checked with the trainer's own start checks before any node starts
    # (the trainer refused it only once every stack was up): one line, exit 2.
    missing = tmp_path / 'no_run' / 'checkpoint.pt'
    runner = Child(
        [
            *LAUNCH,
            'slippery_push_learn.launch.py',
            f'namespace:=/learn_init_{os.getpid()}',
            'explorers:=0',
            f'model_path:={tmp_path / "actor.onnx"}',
            f'init_from:={missing}',
        ]
    )
    try:
        code = runner.wait(60.0)
    finally:
        runner.stop()
    output = runner.output()
    assert code == 2, output
    errors = [line for line in output.splitlines() if 'error:' in line]
    assert len(errors) == 1 and f'init_from: no checkpoint at {missing}' in errors[0], output
    assert "expected an `rpl train` run's DIR/checkpoint.pt" in errors[0], output
    assert '[trainer]' not in output and '[sim_bridge' not in output, output
    assert 'Traceback' not in output, output
