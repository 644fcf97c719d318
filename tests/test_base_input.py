"""An actor that sees the base action (``base_input``): the config's rule, the agent's
inputs in acting and in updates, the ONNX contract's ``base_action`` input (torch ==
onnxruntime, in action units), the node's loader and its refusal to run such a model
without a base action, the in-process policy, the reload check on recent inputs, and a
short training run that exports such a model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from rpl_interfaces.params import ParameterError
from rpl_residual_node.mixing import ResidualConfig
from rpl_residual_node.model_reload import RecentInput, check_on_recent_inputs
from rpl_residual_node.onnx_actor import OnnxActor
from rpl_residual_node.policy import ResidualPolicy
from rpl_trainer.config import make_config
from rpl_trainer.ddpg import DDPGAgent
from rpl_trainer.export import export_onnx
from rpl_trainer.her import Transitions
from rpl_trainer.networks import Actor, Dims

pytestmark = pytest.mark.usefixtures('one_torch_thread')

DIMS = Dims(6, 2, 3)
BOUND = 2.0  # the action bound the actor's base input is divided by


def _actor(dims: Dims = DIMS, two_frame: bool = False) -> Actor:
    torch.manual_seed(0)
    actor = Actor(
        dims, 32, 2, obs_clip=200.0, norm_clip=5.0, zero_last=False, two_frame=two_frame,
        base_input=True,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    actor.obs_norm.set_stats(rng.normal(0, 1, dims.obs_dim), rng.uniform(0.1, 2.0, dims.obs_dim))
    with torch.no_grad():
        actor.body[-1].weight.mul_(5.0)
    return actor


def _torch_residual(actor, obs, goal, base, prev=None, scale=1.5):
    with torch.no_grad():
        t = lambda x: None if x is None else torch.tensor(np.atleast_2d(x), dtype=torch.float32)  # noqa: E731
        return scale * actor(t(obs), t(goal), t(prev), t(base) / BOUND).numpy()


def test_base_input_needs_the_executed_critic_in_one_line():
    with pytest.raises(ParameterError, match="^base_input needs critic_action 'executed'"):
        make_config({'task': 'push', 'base_input': True, 'critic_action': 'residual'})
    config = make_config({'task': 'push', 'base_input': True, 'critic_action': 'executed'})
    assert config.base_input


def test_the_actors_first_layer_takes_the_base_action_and_refuses_to_run_without_it():
    actor = _actor()
    assert actor.body[0].in_features == DIMS.obs_dim + DIMS.goal_dim + DIMS.action_dim
    obs, goal = torch.zeros(2, DIMS.obs_dim), torch.zeros(2, DIMS.goal_dim)
    with pytest.raises(ValueError, match='needs base'):
        actor(obs, goal)
    low, high = actor(obs, goal, None, -torch.ones(2, 3)), actor(obs, goal, None, torch.ones(2, 3))
    assert not torch.allclose(low, high)  # the output depends on the base action


@pytest.mark.parametrize(('goal_dim', 'two_frame'), [(2, False), (2, True), (0, False)])
def test_export_adds_a_base_action_input_in_action_units(tmp_path, goal_dim, two_frame):
    dims = Dims(DIMS.obs_dim, goal_dim, DIMS.action_dim)
    actor = _actor(dims, two_frame)
    path = export_onnx(actor, tmp_path / 'actor.onnx', scale=1.5, base_bound=BOUND)
    names = [i.name for i in onnx.load(str(path)).graph.input]
    expected = ['observation'] + (['desired_goal'] if goal_dim else [])
    expected += (['previous_observation'] if two_frame else []) + ['base_action']
    assert names == expected
    loaded = OnnxActor.load(path)
    assert loaded.base_input and loaded.action_dim == 3
    assert 'sees the base action' in loaded.describe()
    rng = np.random.default_rng(1)
    obs, prev = rng.normal(size=(5, 6)), rng.normal(size=(5, 6))
    goal = rng.normal(size=(5, goal_dim))
    base = rng.uniform(-BOUND, BOUND, (5, 3))
    got = loaded(obs, goal, prev, base)
    expected_residual = _torch_residual(actor, obs, goal, base, prev if two_frame else None)
    np.testing.assert_allclose(got, expected_residual, atol=1e-5)
    assert not np.allclose(got, loaded(obs, goal, prev, -base))
    with pytest.raises(ValueError, match='needs the base action as an input'):
        loaded(obs, goal, prev)
    with pytest.raises(ValueError, match=r'base_action must have shape \(5, 3\)'):
        loaded(obs, goal, prev, base[:, :2])


def test_the_in_process_policy_feeds_the_base_action_and_falls_back_per_row(tmp_path):
    actor = _actor()
    path = export_onnx(actor, tmp_path / 'actor.onnx', scale=1.5, base_bound=BOUND)
    config = ResidualConfig(residual_limit=4.0, action_low=-BOUND, action_high=BOUND)
    policy = ResidualPolicy.from_file(str(path), config)
    rng = np.random.default_rng(2)
    obs, goal = rng.normal(size=(4, 6)), rng.normal(size=(4, 2))
    base = rng.uniform(-1.0, 1.0, (4, 3))
    base[3] = np.nan  # that row gets the safe action, the others the model's sum
    command, applied = policy.mix(obs, goal, base)
    residual = _torch_residual(actor, obs[:3], goal[:3], base[:3])
    np.testing.assert_allclose(command[:3], np.clip(base[:3] + residual, -BOUND, BOUND), atol=1e-5)
    assert np.all(np.isfinite(command)) and np.all(applied[3] == 0.0)


def test_the_reload_check_runs_a_base_input_model_only_on_inputs_with_a_base(tmp_path):
    path = export_onnx(_actor(), tmp_path / 'actor.onnx', scale=1.5, base_bound=BOUND)
    loaded = OnnxActor.load(path)
    obs, goal = np.ones(6), np.zeros(2)
    recent = [
        RecentInput(1, 0, obs, goal, None, np.zeros(3)),
        RecentInput(1, 1, obs, goal, obs, None),  # kept by an older node: no base
        RecentInput(1, 2, obs, goal, obs, np.ones(3)),
    ]
    assert check_on_recent_inputs(loaded, recent) == 2


def test_the_agent_acts_and_learns_with_the_base_action_as_input():
    config = make_config(
        {
            'task': 'push', 'base_input': True, 'critic_action': 'executed',
            'hidden_size': 32, 'batch_size': 16, 'burn_in_max_updates': 0,
            'update_precision': 'float32',
        }
    )  # fmt: skip
    torch.manual_seed(0)
    agent = DDPGAgent(DIMS, config, episode_steps=50, action_bounds=(-BOUND, BOUND))
    agent.burn_in.active = False
    assert agent.actor.base_input and agent.actor_target.base_input
    rng = np.random.default_rng(3)
    b = 16

    def draw(*shape):
        return rng.normal(size=shape).astype(np.float32)

    batch = Transitions(
        draw(b, 6), draw(b, 6), draw(b, 2), np.tanh(draw(b, 3)), -np.abs(draw(b)), draw(b, 6),
        executed=np.clip(draw(b, 3), -BOUND, BOUND), base=draw(b, 3), next_base=draw(b, 3),
    )  # fmt: skip
    obs, goal = draw(4, 6), draw(4, 2)
    before = agent.act(obs, goal, base=np.ones((4, 3)))
    np.testing.assert_array_equal(before, 0.0)  # zero last layer: exactly the base at first
    for _ in range(20):
        agent.update(batch)
    after_a = agent.act(obs, goal, base=np.ones((4, 3)))
    after_b = agent.act(obs, goal, base=-np.ones((4, 3)))
    assert np.any(after_a != 0.0) and not np.allclose(after_a, after_b)


def test_a_short_training_run_exports_a_model_that_takes_the_base_action(tmp_path):
    from test_fixed_goal_training import POINT_SPEC, point_problem

    from rpl_trainer.train import train

    config = make_config(
        {
            'task': POINT_SPEC.name, 'controller': 'idle', 'seed': 0,
            'total_env_steps': 400, 'num_envs': 4, 'hidden_size': 32, 'batch_size': 64,
            'updates_per_env_step': 0.5, 'burn_in_window': 50, 'burn_in_max_updates': 100,
            'eval_interval': 200, 'eval_episodes': 4, 'base_eval_episodes': 4,
            'critic_action': 'executed', 'base_input': True,
        }
    )  # fmt: skip
    out = tmp_path / 'run'
    train(config, out, problem=point_problem(), progress=False)
    for name in ('actor.onnx', 'best_actor.onnx'):
        model = OnnxActor.load(out / name)
        assert model.base_input
        obs = np.zeros((1, model.obs_dim))
        residual = model(obs, None, None, np.zeros((1, model.action_dim)))
        assert residual.shape == (1, model.action_dim) and np.all(np.isfinite(residual))


def test_export_refuses_a_base_input_actor_without_its_bound_in_one_line(tmp_path):
    from rpl_trainer.export import ExportError

    with pytest.raises(ExportError, match='^an actor with base_input needs base_bound') as info:
        export_onnx(_actor(), tmp_path / 'actor.onnx', scale=1.5)
    assert '\n' not in str(info.value) and not (tmp_path / 'actor.onnx').exists()


def test_the_nodes_mixer_feeds_the_steps_base_action_to_the_model(tmp_path):
    """The residual node's core (no ROS here; test_launch_pusher.py runs the stack with the
    committed base_input model): the decided command is base + residual(o, b)."""
    import fixed_goal_task

    from rpl_residual_node import decision as dec
    from rpl_residual_node.mixer import ResidualMixer
    from rpl_trainer.export import task_identity

    spec = fixed_goal_task.register()
    dims = Dims(spec.obs_dim, spec.goal_dim, spec.action_dim)
    actor = _actor(dims)
    identity = task_identity(spec, 'zero', residual_scale=1.5)
    path = export_onnx(actor, tmp_path / 'a.onnx', 1.5, identity=identity, base_bound=BOUND)
    config = ResidualConfig(model_path=str(path), action_low=-BOUND, action_high=BOUND)
    mixer = ResidualMixer(config)
    mixer.note_observation_source(spec.name, spec.obs_fields, spec.goal_fields)
    mixer.note_base_action_source('zero', spec.action_fields)
    rng = np.random.default_rng(5)
    for step, base in enumerate((rng.uniform(-1, 1, 7), -rng.uniform(-1, 1, 7))):
        obs = rng.normal(0, 1, 20)
        assert mixer.add_observation(0, step, obs, np.zeros(0)) is None
        decision = mixer.add_base_action(0, step, base, spec.action_fields)
        assert (decision.reason, decision.source) == (dec.OK, 'residual')
        residual = _torch_residual(actor, obs, np.zeros(0), base)[0]
        np.testing.assert_allclose(decision.command, np.clip(base + residual, -2, 2), atol=1e-5)
