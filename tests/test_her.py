"""HER buffer and 'future' sampler: shapes, goal provenance, rewards, goal-consistent residuals."""

from __future__ import annotations

import numpy as np
import pytest

from rpl_trainer.her import EpisodeBatch, HerSampler, ReplayBuffer
from rpl_trainer.networks import Dims
from rpl_trainer.residual import compose_action

EPISODES, STEPS, ACTION_DIM = 6, 5, 2
THRESHOLD = 0.5


def reward_fn(achieved, desired, info=None):
    """Sparse reward like the tasks': 0 within THRESHOLD, else -1."""
    return -(np.linalg.norm(achieved - desired, axis=-1) > THRESHOLD).astype(np.float32)


def tagged_episodes(episodes: int = EPISODES, offset: int = 0) -> EpisodeBatch:
    """Episodes whose entries name their own (episode, step).

    obs[e, t] = (e, t, 7), achieved_goal[e, t] = (1000 e + 10 t, 0): every achieved goal is
    unique and more than THRESHOLD from every other; the desired goals are never reached.
    """
    e = np.arange(episodes)[:, None] + offset
    t = np.arange(STEPS + 1)[None, :]
    e_grid, t_grid = np.broadcast_arrays(e, t)
    obs = np.stack([e_grid, t_grid, np.full_like(e_grid, 7)], axis=-1).astype(np.float32)
    achieved = np.stack([1000.0 * e_grid + 10.0 * t_grid, np.zeros_like(e_grid)], axis=-1)
    rng = np.random.default_rng(1)
    return EpisodeBatch(
        obs=obs,
        achieved_goal=achieved.astype(np.float32),
        desired_goal=np.full((episodes, STEPS, 2), -5.0, np.float32),
        action=rng.uniform(-1, 1, (episodes, STEPS, ACTION_DIM)).astype(np.float32),
        executed=rng.uniform(-1, 1, (episodes, STEPS, ACTION_DIM)).astype(np.float32),
    )


def decode(batch):
    """(episode, step) of each sample from the tagged observation."""
    return batch.obs[:, 0].astype(int), batch.obs[:, 1].astype(int)


def test_sample_shapes_and_dtypes():
    sampler = HerSampler(reward_fn, future_p=0.8)
    batch = sampler.sample(tagged_episodes(), EPISODES, 64, np.random.default_rng(0))
    assert batch.obs.shape == batch.prev_obs.shape == batch.next_obs.shape == (64, 3)
    assert batch.goal.shape == (64, 2)
    assert batch.action.shape == (64, ACTION_DIM)
    assert batch.reward.shape == (64,)
    present = [array for array in batch if array is not None]
    assert len(present) == 6  # the base-action fields are only for the executed critic
    assert all(array.dtype == np.float32 for array in present)


def test_future_goals_come_from_later_steps_of_the_same_episode():
    episodes = tagged_episodes()
    batch = HerSampler(reward_fn, future_p=0.8).sample(
        episodes, EPISODES, 20_000, np.random.default_rng(0)
    )
    ep, t = decode(batch)
    relabelled = batch.goal[:, 0] >= 0  # original desired goals are (-5, -5)
    goal_episode = (batch.goal[relabelled, 0] // 1000).astype(int)
    goal_step = ((batch.goal[relabelled, 0] % 1000) / 10).round().astype(int)
    np.testing.assert_array_equal(goal_episode, ep[relabelled])
    assert np.all(goal_step >= t[relabelled] + 1)
    assert np.all(goal_step <= STEPS)
    assert abs(relabelled.mean() - 0.8) < 0.02
    # Every later step is used: from t = 0 all of 1..T appear.
    assert set(goal_step[t[relabelled] == 0]) == set(range(1, STEPS + 1))
    # Transition bookkeeping: next and previous frames of the same episode.
    np.testing.assert_array_equal(batch.next_obs[:, 1], t + 1)
    np.testing.assert_array_equal(batch.prev_obs[:, 1], np.maximum(t - 1, 0))
    np.testing.assert_array_equal(batch.next_obs[:, 0], ep)


def test_relabelled_rewards_equal_the_task_reward_function():
    from toy_goal_env import toy_reward

    rng = np.random.default_rng(3)
    # A real random walk: many relabelled goals are reached, some are not.
    positions = np.cumsum(rng.normal(0, 0.05, (EPISODES, STEPS + 1, 2)), axis=1)
    episodes = EpisodeBatch(
        obs=positions.astype(np.float32),
        achieved_goal=positions.astype(np.float32),
        desired_goal=rng.uniform(-1, 1, (EPISODES, STEPS, 2)).astype(np.float32),
        action=np.zeros((EPISODES, STEPS, 2), np.float32),
        executed=np.zeros((EPISODES, STEPS, 2), np.float32),
    )
    batch = HerSampler(toy_reward, future_p=0.8).sample(
        episodes, EPISODES, 4096, np.random.default_rng(0)
    )
    # next_obs is the achieved goal after the action (observation == position here).
    np.testing.assert_array_equal(batch.reward, toy_reward(batch.next_obs, batch.goal))
    assert 0.1 < (batch.reward == 0).mean() < 0.9


def test_no_relabelling_keeps_desired_goals_and_rewards():
    batch = HerSampler(reward_fn, future_p=0.0).sample(
        tagged_episodes(), EPISODES, 500, np.random.default_rng(0)
    )
    np.testing.assert_array_equal(batch.goal, -5.0)
    np.testing.assert_array_equal(batch.reward, -1.0)


def test_goal_consistent_relabelling_recomputes_the_residual():
    episodes = tagged_episodes()
    scale = 2.0

    def base_fn(obs, goal):  # depends on the goal, as a real controller does
        return np.tanh(np.stack([goal[:, 0] / 1000.0 - obs[:, 0], goal[:, 1] - 0.3], axis=-1))

    sampler = HerSampler(reward_fn, future_p=0.8, base_fn=base_fn, scale=scale)
    batch = sampler.sample(episodes, EPISODES, 2000, np.random.default_rng(0))
    ep, t = decode(batch)
    relabelled = batch.goal[:, 0] >= 0
    executed = episodes.executed[ep, t]
    base = base_fn(batch.obs, batch.goal)
    # The stored residual reproduces the executed action under the new goal ...
    np.testing.assert_allclose(
        compose_action(base[relabelled], batch.action[relabelled], scale),
        executed[relabelled],
        atol=1e-6,
    )
    # ... and the others keep the residual that was executed.
    np.testing.assert_array_equal(batch.action[~relabelled], episodes.action[ep, t][~relabelled])


def test_the_executed_action_critics_batches_carry_executed_and_base_actions():
    episodes = tagged_episodes()

    def base_fn(obs, goal):
        return np.stack([goal[:, 0] / 1000.0 - obs[:, 0], goal[:, 1] - 0.3], axis=-1)

    sampler = HerSampler(reward_fn, future_p=0.8, base_fn=base_fn, base_use='critic')
    assert sampler.with_base_actions and not sampler.goal_consistent
    batch = sampler.sample(episodes, EPISODES, 500, np.random.default_rng(0))
    ep, t = decode(batch)
    # The executed action as stored (the same under any goal), the base under the batch's
    # (possibly relabelled) goal at o_t and at o_{t+1}; the residual is not recomputed.
    np.testing.assert_array_equal(batch.executed, episodes.executed[ep, t])
    np.testing.assert_allclose(batch.base, base_fn(batch.obs, batch.goal), rtol=1e-6)
    np.testing.assert_allclose(batch.next_base, base_fn(batch.next_obs, batch.goal), rtol=1e-6)
    np.testing.assert_array_equal(batch.action, episodes.action[ep, t])
    # Without that use, batches carry none of them.
    plain = HerSampler(reward_fn, 0.8).sample(episodes, EPISODES, 10, np.random.default_rng(0))
    assert plain.executed is None and plain.base is None and plain.next_base is None
    with pytest.raises(ValueError, match='base_use'):
        HerSampler(reward_fn, 0.8, base_fn=base_fn, base_use='actor')


def test_replay_buffer_is_fifo_over_whole_episodes_and_round_trips():
    buffer = ReplayBuffer(Dims(3, 2, ACTION_DIM), STEPS, capacity=4 * STEPS + 3)
    assert buffer.max_episodes == 4
    buffer.store(tagged_episodes(3, offset=0))
    buffer.store(tagged_episodes(3, offset=3))  # episodes 0 and 1 are overwritten
    assert buffer.size == 4 and buffer.transitions == 4 * STEPS
    sampler = HerSampler(reward_fn, future_p=0.0)
    batch = buffer.sample(sampler, 1000, np.random.default_rng(0))
    assert set(decode(batch)[0]) == {2, 3, 4, 5}

    copy = ReplayBuffer(Dims(3, 2, ACTION_DIM), STEPS, capacity=4 * STEPS)
    copy.load_state_dict(buffer.state_dict())
    again = copy.sample(sampler, 1000, np.random.default_rng(0))
    assert set(decode(again)[0]) == {2, 3, 4, 5}
    # Oldest first: the next store overwrites episode 2 in both.
    for target in (buffer, copy):
        target.store(tagged_episodes(1, offset=6))
    assert set(decode(copy.sample(sampler, 1000, np.random.default_rng(1)))[0]) == {3, 4, 5, 6}
    assert set(decode(buffer.sample(sampler, 1000, np.random.default_rng(1)))[0]) == {
        3,
        4,
        5,
        6,
    }


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match='future_p'):
        HerSampler(reward_fn, future_p=1.5)
    with pytest.raises(ValueError, match='empty'):
        HerSampler(reward_fn, 0.8).sample(tagged_episodes(), 0, 4, np.random.default_rng(0))
    buffer = ReplayBuffer(Dims(3, 2, ACTION_DIM), STEPS + 1, capacity=100)
    with pytest.raises(ValueError, match='steps'):
        buffer.store(tagged_episodes())


def test_a_buffer_larger_than_the_machines_memory_is_one_line():
    """numpy's allocation failed with a traceback (or succeeded lazily, to be killed
    later); the size is refused before anything is allocated, naming the setting."""
    import os

    from rpl_trainer.her import usable_memory

    memory = usable_memory()
    assert 0 < memory <= os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    dims = Dims(25, 3, 4)
    per_transition = 4 * (25 + 3 + 3 + 2 * 4)  # about: float32 obs, goals, two actions
    capacity = (memory // per_transition) * 2
    with pytest.raises(ValueError, match=rf'^buffer_size={capacity} needs .* lower buffer_size$'):
        ReplayBuffer(dims, 50, capacity)
    ReplayBuffer(dims, 50, capacity // 1000)  # a size that fits is made as before
