"""Integration: one residual model gives the same episodes in-process and through ROS.

The same seeds are run (a) by :func:`rpl_bringup.evaluation.evaluate` with
:class:`rpl_residual_node.policy.ResidualPolicy` and (b) by the SlipperyPush stack started
with ``rpl launch`` (sim bridge, base controller and residual node as processes over DDS,
lockstep, episode monitor). Per episode the success, final distance and return must agree,
and every command must come from the residual (no fallback anywhere).

Models, all following docs/onnx_contract.md:

* ``trained``: exported by a tiny real ``rpl train`` run; its actor is still the zero-init
  one (residual exactly 0), so its commands equal the base actions;
* ``trained_perturbed``: the same exported graph (clipping, normalisation, MLP,
  ``scale * tanh``) with fixed pseudo-random output-layer weights: a non-trivial residual;
* ``goal_seeking_two_frame``: hand-made with ``onnx.helper``, residual (dx, dy, dz) =
  GAIN * (desired_goal - object_pos), gripper 0, as a two-frame model (mean over the
  current and the previous observation), which checks the node's previous-observation
  bookkeeping against the policy's.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import onnx
import pytest
from helpers import LAUNCH, Child, read_json
from onnx import numpy_helper
from onnx_builders import GOAL_SEEKING_TASK, goal_seeking_weights, linear_model

from rpl_bringup.evaluation import EvalResult, evaluate
from rpl_residual_node.policy import ResidualPolicy
from rpl_sim_bridge.tasks import task_spec

pytestmark = pytest.mark.integration

TASK, CONTROLLER = GOAL_SEEKING_TASK, 'reactive_push'
EPISODES, SEED = 2, 5
TRAIN = [
    sys.executable, '-m', 'rpl_trainer.cli', 'train',
    '--task', TASK, '--controller', CONTROLLER, '--algo', 'rpl',
    '--steps', '200', '--seed', '0', '--eval-episodes', '1',
    '--set', 'base_eval_episodes=0', '--threads', '1', '--no-progress',
]  # fmt: skip
MODELS = ('trained', 'trained_perturbed', 'goal_seeking_two_frame')
NON_TRIVIAL = MODELS[1:]


def perturbed_output_layer(
    source: pathlib.Path, target: pathlib.Path, std: float = 0.05
) -> pathlib.Path:
    """Copy an exported actor with its output-layer weights (the Gemm before the Tanh) set
    to fixed normal values of standard deviation ``std``."""
    model = onnx.load(str(source))
    tanh = next(n for n in model.graph.node if n.op_type == 'Tanh')
    layer = next(n for n in model.graph.node if tanh.input[0] in n.output)
    weight = next(i for i in model.graph.initializer if i.name == layer.input[1])
    shape = numpy_helper.to_array(weight).shape  # (action_dim, hidden)
    values = np.random.default_rng(0).normal(0.0, std, shape).astype(np.float32)
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    onnx.save(model, str(target))
    return target


def _launch(name: str, model: pathlib.Path, folder: pathlib.Path) -> tuple[Child, str]:
    results = str(folder / f'{name}.json')
    runner = Child(
        [
            *LAUNCH,
            'slippery_push.launch.py',
            f'episodes:={EPISODES}',
            f'seed:={SEED}',
            f'controller:={CONTROLLER}',
            f'model_path:={model}',
            'mode:=lockstep',
            'monitor:=true',
            # Equivalence, not latency: on a loaded 2-core machine a command can come more
            # than the default 50 ms after its base action, which would be a fallback.
            'command_timeout:=1.0',
            f'results:={results}',
            f'namespace:=/eqtest_{os.getpid()}_{name}',
        ]
    )
    return runner, results


@pytest.fixture(scope='module')
def stack_runs(tmp_path_factory) -> dict[str, tuple[pathlib.Path, dict, str]]:
    """Per model name: (model file, episode monitor JSON, launch output) of its stack run.

    One launch at a time, after the trainer: on the shared 2-core machine a residual node
    starved of CPU for longer than the bridge's command_timeout_s (50 ms) would make the
    bridge fall back.
    """
    folder = tmp_path_factory.mktemp('equivalence')
    trained = subprocess.run(
        [*TRAIN, '--out', str(folder / 'trained')],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    )
    assert trained.returncode == 0, trained.stdout
    spec = task_spec(TASK)
    dims = {'obs_dim': spec.obs_dim, 'goal_dim': spec.goal_dim}
    trained_model = folder / 'trained' / 'actor.onnx'
    models = {
        'trained': trained_model,
        'trained_perturbed': perturbed_output_layer(trained_model, folder / 'perturbed.onnx'),
        'goal_seeking_two_frame': linear_model(
            folder / 'goal_seeking_two_frame.onnx', goal_seeking_weights(), two_frame=True, **dims
        ),
    }
    return {name: _run(name, model, folder) for name, model in models.items()}


def _run(name: str, model: pathlib.Path, folder: pathlib.Path) -> tuple[pathlib.Path, dict, str]:
    """(model, monitor JSON, launch output) of one launch, the only one: the sim bridge's
    start-up handshake makes its first step wait until a command has come through every
    link of the command path (DDS matches them one by one, up to ~2 s apart), so no step
    of a healthy stack falls back."""
    runner, results = _launch(name, model, folder)
    try:
        assert runner.wait(45) == 0, f'{name}:\n{runner.output()}'
    finally:
        runner.stop()
        (folder / f'{name}.log').write_text(runner.output())  # kept beside the results
    return model, read_json(results), runner.output()


def _in_process(model: pathlib.Path | None) -> EvalResult:
    policy = None
    if model is not None:
        spec = task_spec(TASK)
        policy = ResidualPolicy.from_file(
            str(model), obs_dim=spec.obs_dim, goal_dim=spec.goal_dim, action_dim=spec.action_dim
        )
    return evaluate(TASK, CONTROLLER, EPISODES, SEED, policy=policy, progress=False)


@pytest.mark.parametrize('name', MODELS)
def test_stack_episodes_equal_in_process_episodes(stack_runs, name):
    model, data, log = stack_runs[name]
    expected = _in_process(model)
    episodes = data['episodes']
    assert [e['episode'] for e in episodes] == list(range(EPISODES))
    assert [e['success'] for e in episodes] == expected.successes
    np.testing.assert_allclose(
        [e['final_distance'] for e in episodes], expected.final_distances, rtol=0, atol=1e-9
    )
    np.testing.assert_allclose(
        [e['episode_return'] for e in episodes], expected.returns, rtol=0, atol=1e-9
    )


@pytest.mark.parametrize('name', MODELS)
def test_every_stack_command_came_from_the_residual(stack_runs, name):
    """One launch, zero fallbacks: the bridge counts every step it did not get a command
    for; the monitor may miss the first few command messages (its subscription can match
    late), never a whole kind."""
    _, data, log = stack_runs[name]
    steps = task_spec(TASK).max_episode_steps
    assert [(e['steps'], e['fallback_base'], e['fallback_zero']) for e in data['episodes']] == [
        (steps, 0, 0)
    ] * EPISODES, log
    assert set(data['commands']['tags']) == {'residual'}
    assert data['commands']['non_finite'] == 0


@pytest.mark.parametrize('name', NON_TRIVIAL)
def test_non_trivial_residuals_change_the_episodes(stack_runs, name):
    """Guard against a vacuous comparison: these residuals change the outcome."""
    change = np.subtract(
        _in_process(stack_runs[name][0]).final_distances, _in_process(None).final_distances
    )
    assert np.max(np.abs(change)) > 1e-3, change
