"""Residual composition: an untrained RPL policy IS the base controller (torch, ONNX, MuJoCo)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rpl_trainer.config import make_config
from rpl_trainer.ddpg import DDPGAgent
from rpl_trainer.export import export_onnx
from rpl_trainer.her import Transitions
from rpl_trainer.networks import Dims
from rpl_trainer.residual import ActionComposer, compose_action, residual_explaining
from rpl_trainer.rollout import RegisteredEnv, SyncVectorEnv, collect_episodes

pytestmark = pytest.mark.usefixtures('one_torch_thread')

DIMS = Dims(25, 3, 4)


def fitted_rpl_agent(seed: int = 0) -> DDPGAgent:
    """An RPL agent whose normalisers have seen data (so hidden activations are not trivial)."""
    torch.manual_seed(seed)
    agent = DDPGAgent(DIMS, make_config({'algo': 'rpl', 'hidden_size': 32}), episode_steps=50)
    rng = np.random.default_rng(seed)
    batch = Transitions(
        obs=rng.normal(1.0, 0.3, (64, 25)).astype(np.float32),
        prev_obs=rng.normal(1.0, 0.3, (64, 25)).astype(np.float32),
        goal=rng.normal(0.5, 0.1, (64, 3)).astype(np.float32),
        action=np.zeros((64, 4), np.float32),
        reward=np.zeros(64, np.float32),
        next_obs=np.zeros((64, 25), np.float32),
    )
    agent.update_normalizers(batch)
    return agent


def test_zero_initialised_residual_is_exactly_zero_in_torch_and_onnx(tmp_path):
    import onnxruntime as ort

    agent = fitted_rpl_agent()
    rng = np.random.default_rng(1)
    obs = rng.normal(1.0, 3.0, (32, 25)).astype(np.float32)
    goal = rng.normal(0.5, 3.0, (32, 3)).astype(np.float32)
    base = rng.uniform(-1.5, 1.5, (32, 4))
    u = agent.act(obs, goal)
    assert np.array_equal(u, np.zeros_like(u))
    composer = ActionComposer('rpl', 2.0, -1.0, 1.0, noise_eps=0.2, random_eps=0.3)
    np.testing.assert_array_equal(
        composer.executed(u, base), np.clip(base, -1, 1).astype(np.float32)
    )

    path = export_onnx(agent.actor, tmp_path / 'actor.onnx', scale=2.0)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    (residual,) = session.run(['residual'], {'observation': obs, 'desired_goal': goal})
    assert np.array_equal(residual, np.zeros((32, 4), np.float32))


def test_untrained_rpl_rollout_reproduces_the_base_controller_in_mujoco():
    """Same seeds, same MuJoCo task: RPL at init and the base alone give identical episodes."""
    agent = fitted_rpl_agent()
    composer = ActionComposer('rpl', 2.0, -1.0, 1.0, noise_eps=0.2, random_eps=0.3)
    env = SyncVectorEnv(RegisteredEnv('push', 'reactive_push'), num_envs=1)
    try:

        def rpl_policy(step, prev_obs):
            u = agent.act(step.obs, step.desired_goal)
            return u, composer.executed(u, step.base)

        def base_policy(step, prev_obs):
            return np.zeros_like(step.base), np.clip(step.base, -1, 1).astype(np.float32)

        rpl = collect_episodes(env, rpl_policy, [11], steps=20)
        base = collect_episodes(env, base_policy, [11], steps=20)
    finally:
        env.close()
    np.testing.assert_array_equal(rpl.episodes.executed, base.episodes.executed)
    np.testing.assert_array_equal(rpl.episodes.obs, base.episodes.obs)
    assert np.abs(base.episodes.executed).max() > 0.1  # the controller did move


def test_scratch_actor_is_not_zero_initialised():
    torch.manual_seed(0)
    agent = DDPGAgent(DIMS, make_config({'algo': 'scratch', 'hidden_size': 32}), 50)
    u = agent.act(np.ones((4, 25), np.float32), np.ones((4, 3), np.float32))
    assert np.abs(u).max() > 1e-3


def test_residual_explaining_inverts_the_composition():
    rng = np.random.default_rng(0)
    base = rng.uniform(-1, 1, (1000, 4))
    executed = rng.uniform(-1, 1, (1000, 4))
    executed[:100] = 1.0  # saturated actions
    u = residual_explaining(executed, base, 2.0)
    assert np.all(np.abs(u) <= 1.0)
    np.testing.assert_allclose(compose_action(base, u, 2.0), executed, atol=1e-6)
    # Saturated: the smallest residual that reaches the bound.
    np.testing.assert_allclose(u[:100], (1.0 - base[:100]) / 2.0, atol=1e-6)
    # A base far outside the bounds cannot be explained: the residual saturates at +-1.
    assert residual_explaining(np.array([[-1.0]]), np.array([[5.0]]), 2.0)[0, 0] == -1.0


def test_rpl_exploration_stores_the_residual_and_executes_base_plus_residual():
    rng = np.random.default_rng(0)
    u_det = np.full((20_000, 4), 0.1, np.float32)
    base = rng.uniform(-1, 1, (20_000, 4))
    noisy = ActionComposer('rpl', 2.0, -1.0, 1.0, noise_eps=0.2, random_eps=0.0)
    stored, executed = noisy.explore(u_det, base, rng)
    np.testing.assert_array_equal(executed, compose_action(base, stored, 2.0))
    assert abs(np.std(stored - 0.1) - 0.2) < 0.01
    random_only = ActionComposer('rpl', 2.0, -1.0, 1.0, noise_eps=0.0, random_eps=0.3)
    stored, executed = random_only.explore(u_det, base, rng)
    assert np.all(np.abs(stored) <= 1.0)
    random_rows = np.any(stored != np.float32(0.1), axis=1)
    assert abs(random_rows.mean() - 0.3) < 0.02
    np.testing.assert_array_equal(executed, compose_action(base, stored, 2.0))


def test_scratch_ignores_the_base_and_expert_explore_uses_it():
    rng = np.random.default_rng(0)
    base = np.full((20_000, 4), 0.7)
    scratch = ActionComposer('scratch', 2.0, -1.0, 1.0, noise_eps=0.0, random_eps=0.0)
    stored, executed = scratch.explore(np.zeros((20_000, 4), np.float32), base, rng)
    np.testing.assert_array_equal(executed, 0.0)
    expert = ActionComposer(
        'expert_explore',
        2.0,
        -1.0,
        1.0,
        noise_eps=0.0,
        random_eps=0.3,
        expert_eps=0.6,
        expert_alpha=0.8,
    )
    stored, executed = expert.explore(np.zeros((20_000, 4), np.float32), base, rng)
    np.testing.assert_array_equal(stored, executed)  # scale 1, no base added
    is_base = np.all(executed == np.float32(0.7), axis=1)
    is_policy = np.all(executed == 0.0, axis=1)
    assert abs(is_base.mean() - 0.6 * 0.8) < 0.02
    assert abs(is_policy.mean() - 0.4) < 0.02


def test_unknown_algo_is_rejected():
    with pytest.raises(ValueError, match='unknown algo'):
        ActionComposer('ppo', 2.0, -1.0, 1.0, 0.2, 0.3)
