"""DDPG agent: burn-in, targets, target clipping, and a learning test on the toy goal task."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import toy_problem

from rpl_trainer.config import make_config
from rpl_trainer.ddpg import BurnIn, DDPGAgent, UpdateStats, polyak_update
from rpl_trainer.her import Transitions
from rpl_trainer.networks import Dims
from rpl_trainer.train import train

pytestmark = pytest.mark.usefixtures('one_torch_thread')

DIMS = Dims(4, 2, 2)


def random_batch(rng: np.random.Generator, size: int = 64) -> Transitions:
    return Transitions(
        obs=rng.normal(size=(size, 4)).astype(np.float32),
        prev_obs=rng.normal(size=(size, 4)).astype(np.float32),
        goal=rng.normal(size=(size, 2)).astype(np.float32),
        action=rng.uniform(-1, 1, (size, 2)).astype(np.float32),
        reward=-(rng.random(size) < 0.7).astype(np.float32),
        next_obs=rng.normal(size=(size, 4)).astype(np.float32),
    )


def small_config(**values):
    return make_config({'hidden_size': 32, 'batch_size': 64, **values})


def test_burn_in_keeps_the_actor_unchanged_while_the_critic_learns():
    torch.manual_seed(0)
    config = small_config(algo='rpl', burn_in_window=5, burn_in_beta=1e-9, burn_in_max_updates=0)
    agent = DDPGAgent(DIMS, config, episode_steps=10)
    actor_before = [p.detach().clone() for p in agent.actor.parameters()]
    critic_before = [p.detach().clone() for p in agent.critic.parameters()]
    rng = np.random.default_rng(0)
    for _ in range(30):
        agent.update(random_batch(rng))
    assert agent.actor_frozen
    for before, after in zip(actor_before, agent.actor.parameters(), strict=True):
        assert torch.equal(before, after)
    assert any(
        not torch.equal(b, a)
        for b, a in zip(critic_before, agent.critic.parameters(), strict=True)
    )
    # Released by the cap: the next updates move the actor.
    agent.burn_in.max_updates = agent.burn_in.updates + 1
    agent.update(random_batch(rng))
    assert not agent.actor_frozen and agent.burn_in.ended_by == 'cap'
    agent.update(random_batch(rng))
    assert any(
        not torch.equal(b, a) for b, a in zip(actor_before, agent.actor.parameters(), strict=True)
    )


def test_scratch_learner_has_no_burn_in():
    agent = DDPGAgent(DIMS, small_config(algo='scratch'), episode_steps=10)
    assert not agent.actor_frozen and agent.burn_in.ended_by == 'disabled'


def stats(loss: float, q: float) -> UpdateStats:
    return UpdateStats(critic_loss=loss, actor_loss=-q, q_mean=q)


def test_q_drift_burn_in_waits_for_the_mean_q_to_settle():
    burn_in = BurnIn('q_drift', beta=1.0, window=2, max_updates=0, enabled=True)
    # Window means of Q: -1, -4 (drift 3), -6 (drift 2), -6.5 (drift 0.5 < 1: done).
    for q in [-1, -1, -4, -4, -6, -6, -6.5]:
        burn_in.observe(stats(0.1, q))
        assert burn_in.active
    burn_in.observe(stats(0.1, -6.5))
    assert not burn_in.active
    assert burn_in.ended_by == 'q_drift' and burn_in.value == pytest.approx(0.5)
    assert burn_in.updates == 8


def test_critic_loss_burn_in_uses_the_window_mean_loss():
    burn_in = BurnIn('critic_loss', beta=1.0, window=3, max_updates=0, enabled=True)
    for loss in [3.0, 2.0, 1.0, 0.5, 0.5]:
        burn_in.observe(stats(loss, -1.0))
    assert burn_in.active and burn_in.value == pytest.approx(2.0)
    burn_in.observe(stats(0.5, -1.0))
    assert not burn_in.active and burn_in.value == pytest.approx(0.5)


def test_polyak_update_blends_parameters_and_copies_buffers():
    online, target = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        online.weight.fill_(1.0)
        target.weight.fill_(0.0)
        online.running_mean.fill_(5.0)
    polyak_update(online, target, 0.95)
    assert torch.allclose(target.weight, torch.full((3,), 0.05))
    assert torch.equal(target.running_mean, online.running_mean)


def test_critic_targets_are_clipped_to_the_return_range():
    config = small_config(algo='scratch', critic_lr=0.0, actor_lr=0.0)
    agent = DDPGAgent(DIMS, config, episode_steps=10)
    assert agent.gamma == pytest.approx(0.9) and agent.clip_return == pytest.approx(10.0)
    with torch.no_grad():  # a target critic that predicts +1000 everywhere
        agent.critic_target.body[-1].bias.fill_(1000.0)
        agent.critic_target.body[-1].weight.zero_()
        agent.critic.body[-1].weight.zero_()
        agent.critic.body[-1].bias.zero_()
    result = agent.update(random_batch(np.random.default_rng(0)))
    # Q = 0 everywhere and targets clipped to 0: the loss is 0, not 900^2.
    assert result.critic_loss == pytest.approx(0.0)


def test_the_executed_action_critic_learns_q_of_the_executed_action_over_the_bound():
    # Torques in [-2, 2], residual scale 1: the critic sees clip(base + u, -2, 2) / 2 for the
    # stored transition and clip(base' + pi'(o'), -2, 2) / 2 in its target.
    torch.manual_seed(0)
    config = small_config(
        algo='rpl', critic_action='executed', residual_scale=1.0, critic_lr=0.0, actor_lr=0.0
    )
    agent = DDPGAgent(DIMS, config, episode_steps=10, clip_target=False, action_bounds=(-2, 2))
    rng = np.random.default_rng(0)
    plain = random_batch(rng)
    size = plain.obs.shape[0]
    with torch.no_grad():  # a target actor far from zero, so the clip binds somewhere
        agent.actor_target.body[-1].bias.fill_(0.8)
    batch = plain._replace(
        executed=rng.uniform(-2, 2, (size, 2)).astype(np.float32),
        base=rng.uniform(-2.5, 2.5, (size, 2)).astype(np.float32),
        next_base=rng.uniform(-2.5, 2.5, (size, 2)).astype(np.float32),
    )
    tensor = torch.as_tensor
    obs, goal, next_obs = tensor(batch.obs), tensor(batch.goal), tensor(batch.next_obs)
    with torch.no_grad():
        next_u = agent.actor_target(next_obs, goal)
        next_a = torch.clamp(tensor(batch.next_base) + next_u, -2.0, 2.0) / 2.0
        target = tensor(batch.reward) + agent.gamma * agent.critic_target(next_obs, goal, next_a)
        q = agent.critic(obs, goal, tensor(batch.executed) / 2.0)
        expected = torch.mean((q - target) ** 2).item()
        residual_view = torch.mean((agent.critic(obs, goal, tensor(batch.action)) - target) ** 2)
    assert agent.update(batch).critic_loss == pytest.approx(expected, rel=1e-5)
    assert abs(residual_view.item() - expected) > 1e-3  # the test can tell the two apart
    with pytest.raises(ValueError, match='executed and base actions'):
        agent.update(plain)


def test_two_frame_update_runs_and_averages_frames():
    torch.manual_seed(0)
    agent = DDPGAgent(DIMS, small_config(algo='scratch', two_frame=True), episode_steps=10)
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    goal = np.zeros((5, 2), np.float32)
    same = agent.act(obs, goal, obs)
    with torch.no_grad():
        expected = torch.tanh(
            agent.actor.body(
                torch.cat(
                    [
                        agent.actor.obs_norm(torch.from_numpy(obs)),
                        agent.actor.goal_norm(torch.from_numpy(goal)),
                    ],
                    dim=-1,
                )
            )
        ).numpy()
    np.testing.assert_allclose(same, expected, atol=1e-6)
    assert not np.allclose(agent.act(obs, goal, obs[::-1].copy()), same)
    agent.update(random_batch(np.random.default_rng(1)))


@pytest.mark.parametrize(
    ('algo', 'critic_action'), [('scratch', 'residual'), ('rpl', 'residual'), ('rpl', 'executed')]
)
def test_ddpg_her_learns_the_toy_goal_task(tmp_path, algo, critic_action):
    """From ~0.05 (random / the biased base) to >= 0.9 success in 1600 env steps."""
    config = make_config(
        {
            'task': 'toy_reach',
            'controller': 'toy_biased',
            'algo': algo,
            'critic_action': critic_action,
            'seed': 1,
            'total_env_steps': 1600,
            'num_envs': 4,
            'hidden_size': 64,
            'batch_size': 128,
            'updates_per_env_step': 0.5,
            'target_update_interval': 1,
            'burn_in_window': 100,
            'eval_interval': 800,
            'eval_episodes': 40,
            'base_eval_episodes': 40,
        }
    )
    result = train(config, tmp_path / critic_action, problem=toy_problem(), progress=False)
    assert result.base_success_rate <= 0.2
    assert result.success_rate >= 0.9


def test_a_bfloat16_update_keeps_float32_weights_and_follows_the_float32_update():
    """update_precision=bfloat16 runs the forward passes in bfloat16 but keeps the weights,
    gradients and optimiser state in float32, and its steps go the way of the float32 ones."""
    rng = np.random.default_rng(3)
    batches = [random_batch(rng) for _ in range(20)]
    agents = {}
    for precision in ('float32', 'bfloat16'):
        torch.manual_seed(0)
        config = small_config(algo='scratch', update_precision=precision)
        agent = DDPGAgent(DIMS, config, episode_steps=10)
        for batch in batches:
            stats = agent.update(batch)
            assert np.isfinite(stats).all()
        agents[precision] = agent
    fp32, bf16 = agents['float32'], agents['bfloat16']
    for p32, p16 in zip(fp32.critic.parameters(), bf16.critic.parameters(), strict=True):
        assert p16.dtype == torch.float32
        assert not torch.equal(p32, p16)  # the precision really changed the computation
        assert torch.allclose(p32, p16, atol=0.02)  # ... and only by rounding
    with pytest.raises(ValueError, match='update_precision'):
        small_config(update_precision='float16')


def test_auto_precision_picks_the_faster_one_and_remembers_it(monkeypatch):
    """update_precision=auto times both precisions once per process on the run's shapes and
    keeps the faster (float32 unless bfloat16 is 10 % faster); the agent then updates in it."""
    from rpl_trainer import ddpg

    monkeypatch.setattr(ddpg, '_RESOLVED_PRECISION', {})
    config = small_config(algo='scratch', update_precision='auto')
    agent = DDPGAgent(DIMS, config, episode_steps=10)
    torch_state = torch.random.get_rng_state()
    precision = agent.update_precision
    ratio = agent.precision_ratio
    assert torch.equal(torch.random.get_rng_state(), torch_state)  # the run's stream untouched
    assert ratio > 0.0
    assert precision == ('bfloat16' if ratio >= ddpg.AUTO_PRECISION_MARGIN else 'float32')
    # The second agent of the same shapes reuses the measurement.
    other = DDPGAgent(DIMS, config, episode_steps=10)
    assert (other.update_precision, other.precision_ratio) == (precision, ratio)
    assert len(ddpg._RESOLVED_PRECISION) == 1
    # A fixed precision is never measured.
    fixed = DDPGAgent(DIMS, small_config(update_precision='bfloat16'), episode_steps=10)
    assert fixed.update_precision == 'bfloat16' and math.isnan(fixed.precision_ratio)


def residual_size(agent: DDPGAgent, batch: Transitions) -> float:
    return float(np.abs(agent.act(batch.obs, batch.goal)).mean())


def test_actor_warm_up_ramps_the_actor_rate_from_its_release():
    """The actor's rate rises linearly over actor_warmup_updates actor steps counted from the
    end of burn-in (not from the first critic step), then stays at actor_lr."""
    torch.manual_seed(0)
    config = small_config(
        algo='rpl',
        burn_in_window=5,
        burn_in_beta=1e-9,
        burn_in_max_updates=4,
        actor_warmup_updates=4,
        actor_lr=1e-3,
    )
    agent = DDPGAgent(DIMS, config, episode_steps=10)
    rng = np.random.default_rng(0)
    for _ in range(4):  # burn-in: no actor steps, the rate is not touched
        agent.update(random_batch(rng))
    assert not agent.actor_frozen and agent.actor_updates == 0
    rates = []
    for _ in range(6):
        agent.update(random_batch(rng))
        rates.append(agent.actor_optimizer.param_groups[0]['lr'])
    assert rates == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert agent.actor_updates == 6


def test_actor_warm_up_keeps_the_released_residual_small():
    """Right after its release, a zero-initialised RPL actor under Adam moves its residual by
    about the learning rate times the summed hidden activations per step; the warm-up makes
    the first steps smaller, so after the same number of steps the residual is smaller."""
    sizes = {}
    for warmup in (0, 200):
        torch.manual_seed(0)
        config = small_config(
            algo='rpl', burn_in_beta=1e-9, burn_in_max_updates=1, actor_warmup_updates=warmup
        )
        agent = DDPGAgent(DIMS, config, episode_steps=10)
        rng = np.random.default_rng(1)
        probe = random_batch(np.random.default_rng(2))
        for _ in range(21):
            agent.update(random_batch(rng))
        sizes[warmup] = residual_size(agent, probe)
    assert 0.0 < sizes[200] < 0.2 * sizes[0]


def test_actor_update_count_survives_a_checkpoint():
    config = small_config(
        algo='rpl', burn_in_beta=1e-9, burn_in_max_updates=2, actor_warmup_updates=10
    )
    agent = DDPGAgent(DIMS, config, episode_steps=10)
    rng = np.random.default_rng(0)
    for _ in range(7):
        agent.update(random_batch(rng))
    state = agent.state_dict()
    restored = DDPGAgent(DIMS, config, episode_steps=10)
    restored.load_state_dict(state)
    assert restored.actor_updates == agent.actor_updates == 5
    # A checkpoint from before the option counts every update after burn-in.
    del state['actor_updates']
    restored.load_state_dict(state)
    assert restored.actor_updates == 5
