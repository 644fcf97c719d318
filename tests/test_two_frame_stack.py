"""Integration: a two-frame residual model acts the same through the ROS stack as in-process,
step by step, and the residual node really feeds it the previous frame.

The model is a real trainer export (:func:`rpl_trainer.export.export_onnx` of a two-frame
:class:`rpl_trainer.networks.Actor`: f averaged over (o_{t-1}, g) and (o_t, g), then
2 * tanh), with fixed random weights. One launch of the SlipperyPush stack (lockstep, bag
recorder) runs it for a few episodes; the in-process side runs the same seeds with
:class:`rpl_residual_node.policy.ResidualPolicy`, recording every command. Per step the bag's
observation and command must equal the in-process ones, and a one-frame reading of the same
model (previous observation = current one) must give other commands wherever the observation
changed since the last step: a node that fed the current frame twice, or a stale frame,
would match the one-frame reading or drift from the in-process run.
"""

from __future__ import annotations

import os
import pathlib
import subprocess

import numpy as np
import pytest
from helpers import LAUNCH

from rpl_bags.recorded import RecordedRun, load_run
from rpl_bringup.evaluation import evaluate
from rpl_residual_node.onnx_actor import OnnxActor
from rpl_residual_node.policy import ResidualPolicy
from rpl_sim_bridge.tasks import make_task, task_spec

pytestmark = pytest.mark.integration

TASK, CONTROLLER = 'slippery_push', 'reactive_push'
EPISODES, SEED = 2, 11
SCALE = 2.0  # residual = SCALE * tanh(f), as the trainer exports it
OBS_STD = 0.02  # normaliser std of every observation entry: 2 cm moves shift f visibly


class RecordingPolicy:
    """Wraps a :class:`ResidualPolicy`; keeps (observation, command) of every step.

    Attributes:
        episodes: Per episode, a list of (observation (obs_dim,), command (action_dim,)).
    """

    def __init__(self, policy: ResidualPolicy) -> None:
        self.policy = policy
        self.episodes: list[list[tuple[np.ndarray, np.ndarray]]] = []

    def reset(self) -> None:
        self.policy.reset()
        self.episodes.append([])

    def __call__(self, observation: np.ndarray, goal: np.ndarray, base: np.ndarray) -> np.ndarray:
        command = self.policy(observation, goal, base)
        self.episodes[-1].append((observation.copy(), np.array(command, dtype=np.float64)))
        return command


def two_frame_model(path: pathlib.Path) -> pathlib.Path:
    """Export a two-frame actor with fixed random weights, normalised around the first
    observation of episode 0 (so its residual is neither zero nor saturated)."""
    import torch

    from rpl_trainer.export import export_onnx, task_identity
    from rpl_trainer.networks import Actor, Dims

    spec = task_spec(TASK)
    torch.manual_seed(0)
    actor = Actor(
        Dims(spec.obs_dim, spec.goal_dim, spec.action_dim),
        32,
        2,
        obs_clip=200.0,
        norm_clip=5.0,
        zero_last=False,
        two_frame=True,
    )
    first, _ = make_task(TASK).reset(seed=SEED)
    actor.obs_norm.set_stats(first['observation'], np.full(spec.obs_dim, OBS_STD))
    actor.goal_norm.set_stats(first['desired_goal'], np.full(spec.goal_dim, 0.1))
    identity = task_identity(spec, CONTROLLER, residual_scale=SCALE)
    return export_onnx(actor, path, scale=SCALE, identity=identity)


class Runs:
    """The stack's recorded run and the in-process run of the same model and seeds."""

    def __init__(self, model: pathlib.Path, stack: RecordedRun, local: RecordingPolicy) -> None:
        self.model = model
        self.stack = stack
        self.local = local


@pytest.fixture(scope='module')
def runs(tmp_path_factory) -> Runs:
    folder = tmp_path_factory.mktemp('two_frame_stack')
    model = two_frame_model(folder / 'two_frame.onnx')
    spec = task_spec(TASK)
    local = RecordingPolicy(
        ResidualPolicy.from_file(
            str(model), obs_dim=spec.obs_dim, goal_dim=spec.goal_dim, action_dim=spec.action_dim
        )
    )
    evaluate(TASK, CONTROLLER, EPISODES, SEED, policy=local, progress=False)
    bag = folder / 'bag'
    done = subprocess.run(
        [
            *LAUNCH,
            f'{TASK}.launch.py',
            f'episodes:={EPISODES}',
            f'seed:={SEED}',
            f'controller:={CONTROLLER}',
            f'model_path:={model}',
            'mode:=lockstep',
            'command_timeout:=1.0',  # equivalence, not latency (loaded 2-core machine)
            'record:=true',
            f'bag:={bag}',
            f'namespace:=/two_frame_{os.getpid()}',
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return Runs(model, load_run(bag), local)


def test_stack_commands_equal_in_process_commands_step_by_step(runs):
    stack, local = runs.stack, runs.local
    steps = task_spec(TASK).max_episode_steps
    assert stack.problems == ()
    assert [(e.episode, e.steps) for e in stack.episodes] == [(i, steps) for i in range(EPISODES)]
    obs_dim = stack.layout.obs_dim
    for episode in stack.episodes:
        assert set(episode.command.tags) == {'residual'}, episode.episode  # no fallback
        assert (episode.result.fallback_base, episode.result.fallback_zero) == (0, 0)
        observations = np.array([o for o, _ in local.episodes[episode.episode]])
        commands = np.array([c for _, c in local.episodes[episode.episode]])
        np.testing.assert_array_equal(episode.observation.values[:, :obs_dim], observations)
        np.testing.assert_allclose(episode.command.values, commands, rtol=0, atol=1e-9)


def test_the_node_fed_the_previous_frame_not_the_current_one(runs):
    """Replayed open loop on the recorded observations: the two-frame reading (previous =
    the recorded step before) gives the recorded residuals; the one-frame reading (previous
    = current) gives the same only at each episode's first step."""
    actor = OnnxActor.load(runs.model)
    layout = runs.stack.layout
    one_frame_gaps = []
    for episode in runs.stack.episodes:
        values = episode.observation.values
        obs, goal = values[:, layout.observation], values[:, layout.desired_goal]
        previous = np.concatenate([obs[:1], obs[:-1]])
        two = np.asarray(actor(obs, goal, previous), dtype=np.float64)
        one = np.asarray(actor(obs, goal, obs), dtype=np.float64)
        np.testing.assert_allclose(episode.residual.values, two, rtol=0, atol=1e-6)
        gap = np.max(np.abs(one - two), axis=1)  # (steps,)
        assert gap[0] == 0.0  # no previous frame at the start: the current one stands in
        # Where the observation changed by more than 0.1 mm (or rad) since the last step,
        # the two readings differ by more than the 1e-6 the node's residuals are held to.
        moved = np.max(np.abs(obs[1:] - obs[:-1]), axis=1) > 1e-4
        assert moved.sum() >= 10, moved  # the gripper moves for a good part of the episode
        assert np.all(gap[1:][moved] > 1e-5), gap
        one_frame_gaps.append(gap.max())
    assert max(one_frame_gaps) > 0.05, one_frame_gaps  # a clearly different action
