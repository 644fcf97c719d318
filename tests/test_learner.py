"""One learner for `rpl train` and the trainer node: the same checkpoint format, each side
starting from the other's, and each side's own resume still exact.

The toy reach task (10-step episodes) keeps every run to seconds. The trainer node
process starting from an `rpl train` run is in test_trainer_node.py; `rpl train
--init-from` on the command line in test_train_cli.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import TOY_RUN, toy_problem, toy_trainer

from rpl_trainer import offline
from rpl_trainer.checkpoint import (
    TRAIN_RUN,
    CheckpointError,
    load_checkpoint,
    load_learner_checkpoint,
)
from rpl_trainer.config import make_config
from rpl_trainer.her import EpisodeBatch
from rpl_trainer.learner import Learner, learner_differences, start_from
from rpl_trainer.offline import OfflineLearner


def toy_episodes(n: int, seed: int = 0) -> EpisodeBatch:
    """``n`` made-up toy episodes of T steps: T + 1 observations, T actions."""
    problem = toy_problem()
    dims, steps = problem.dims, problem.spec.max_episode_steps
    rng = np.random.default_rng(seed)
    draw = lambda *shape: rng.uniform(-1, 1, (n, *shape)).astype(np.float32)  # noqa: E731
    return EpisodeBatch(
        obs=draw(steps + 1, dims.obs_dim),
        achieved_goal=draw(steps + 1, dims.goal_dim),
        desired_goal=draw(steps, dims.goal_dim),
        action=draw(steps, dims.action_dim),
        executed=draw(steps, dims.action_dim),
    )


def toy_learner(**settings) -> OfflineLearner:
    """A trainer node's learner (the offline learner) on the toy task."""
    problem = toy_problem()
    config = make_config({**TOY_RUN, **settings})
    steps = problem.spec.max_episode_steps
    return OfflineLearner(config, problem.dims, steps, problem.reward_fn, None, 0.5)


def assert_same_learner(a: Learner, b: Learner) -> None:
    """Same weights, targets, normalisers, burn-in, buffer and update count."""
    sa, sb = a.state_dict(), b.state_dict()
    for name in ('actor', 'critic', 'actor_target', 'critic_target'):
        for key, value in sa['agent'][name].items():
            assert torch.equal(value, sb['agent'][name][key]), (name, key)
    for name in ('obs_stats', 'goal_stats'):
        for key, value in sa['agent'][name].items():
            np.testing.assert_array_equal(value, sb['agent'][name][key])
    np.testing.assert_equal(sa['agent']['burn_in'], sb['agent']['burn_in'])  # NaN-safe
    assert sa['agent']['updates'] == sb['agent']['updates']
    for key, value in sa['buffer']['episodes'].items():
        np.testing.assert_array_equal(value, sb['buffer']['episodes'][key])
    assert a.episodes == b.episodes


def test_both_sides_build_the_one_learner_and_store_t_transitions_per_episode(tmp_path):
    trainer = toy_trainer(tmp_path / 'run')
    node = toy_learner()
    steps = toy_problem().spec.max_episode_steps
    assert type(trainer.learner) is Learner and isinstance(node, Learner)
    assert trainer.learner.buffer.steps == node.buffer.steps == steps  # T, not T - 1
    assert node.store(toy_episodes(2)) == 2 * steps
    assert node.buffer.transitions == 2 * steps


def test_the_trainer_node_learner_starts_from_an_rpl_train_checkpoint(tmp_path):
    run = tmp_path / 'run'
    trainer = toy_trainer(run, total_env_steps=80, burn_in_beta=0.0)
    trainer.run()
    path = run / 'checkpoint.pt'
    state = load_checkpoint(path)
    assert state['kind'] == TRAIN_RUN and state['counters']['env_steps'] == 80
    # The node's own settings differ only outside the learner (seed, acting, budgets).
    node = toy_learner(burn_in_beta=0.0, seed=9, noise_eps=0.5, total_env_steps=10)
    assert start_from(node, path) == TRAIN_RUN
    assert_same_learner(node, trainer.learner)
    assert node.agent.updates > 0 and not node.agent.actor_frozen
    assert node.debt.owed == 0.0  # the run's debt is its own
    # It goes on learning from there, on episodes of the same shape.
    node.store(toy_episodes(1))
    assert len(node.update(3)) == 3 and node.agent.updates == trainer.learner.agent.updates + 3


def test_rpl_train_starts_from_a_trainer_node_checkpoint(tmp_path):
    node = toy_learner(burn_in_beta=0.0)
    node.store(toy_episodes(3))
    node.update(5)
    path = tmp_path / 'live' / 'trainer.pt'
    offline.save_learner(path, node, {'bags': ['a']})

    fresh = toy_trainer(tmp_path / 'probe', burn_in_beta=0.0)
    start_from(fresh.learner, path)
    assert_same_learner(fresh.learner, node)

    trainer = toy_trainer(tmp_path / 'run', total_env_steps=40, burn_in_beta=0.0)
    result = trainer.run(init_from=path)
    assert result.env_steps == 40  # a new run: its counters start at 0
    learner = trainer.learner
    assert learner.episodes == 3 + 4  # the node's episodes, then 2 cycles of 2 envs
    assert learner.buffer.size == 7
    assert learner.agent.updates > 5
    saved = load_checkpoint(tmp_path / 'run' / 'checkpoint.pt')
    assert saved['learner']['counters']['episodes'] == 7


def test_a_learner_of_other_learner_settings_is_refused_naming_each_difference(tmp_path):
    node = toy_learner()
    path = tmp_path / 'trainer.pt'
    offline.save_learner(path, node)
    other = toy_learner(batch_size=16, hidden_size=32)
    with pytest.raises(CheckpointError, match='hidden_size: 16 -> 32; batch_size: 32 -> 16'):
        start_from(other, path)
    before = make_config(TOY_RUN)
    after = make_config({**TOY_RUN, 'seed': 5, 'num_envs': 4, 'polyak': 0.9})
    assert learner_differences(before, after) == ['polyak: 0.95 -> 0.9']
    with pytest.raises(CheckpointError, match='is a trainer node checkpoint, not an `rpl'):
        load_learner_checkpoint(path, TRAIN_RUN)


def test_a_trainer_node_checkpoint_resumes_exactly_with_its_debt(tmp_path):
    node = toy_learner(burn_in_beta=0.0)
    node.store(toy_episodes(2))
    node.update(3)
    node.debt.add(3)  # 1.5 updates owed at 0.5 per transition
    path = tmp_path / 'trainer.pt'
    offline.save_learner(path, node, {'seen_until': {'/rpl': 7}})
    expected = node.update(4)
    resumed = toy_learner(burn_in_beta=0.0)
    assert offline.load_learner(path, resumed) == {'seen_until': {'/rpl': 7}}
    assert resumed.debt.owed == pytest.approx(1.5)
    assert resumed.update(4) == expected  # same samples, same weights, same losses
    with pytest.raises(CheckpointError, match='different config .*batch_size: 32 -> 8'):
        offline.load_learner(path, toy_learner(burn_in_beta=0.0, batch_size=8))


def test_the_offline_learner_takes_only_rpl_and_the_shared_learner_any_algo():
    # One constructor (Learner's); the subclass states its algo, it does not repeat it.
    with pytest.raises(ValueError, match=r"OfflineLearner learns with algo rpl, got 'scratch'"):
        toy_learner(algo='scratch')
    problem = toy_problem()
    config = make_config({**TOY_RUN, 'algo': 'scratch'})
    steps = problem.spec.max_episode_steps
    assert Learner(config, problem.dims, steps, problem.reward_fn).config.algo == 'scratch'
