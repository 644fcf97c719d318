"""`privileged_goal` and `reward_threshold`: the replay buffer's achieved goals from the
simulator instead of the noisy reading, and a training reward with its own radius (real
MuJoCo noisy_hook)."""

from __future__ import annotations

import numpy as np
import pytest

from rpl_sim_bridge.layout import HookObs
from rpl_sim_bridge.tasks import make_task
from rpl_trainer.cli import main as trainer
from rpl_trainer.config import make_config
from rpl_trainer.offline import OfflineLearner
from rpl_trainer.problem import registered_problem
from rpl_trainer.rollout import RegisteredEnv, SyncVectorEnv


def test_true_goal_slots_report_the_block_without_its_noise():
    seeds, action = [11, 12], np.zeros((2, 4))
    observed = SyncVectorEnv(RegisteredEnv('noisy_hook', 'reactive_hook'), 2)
    true = SyncVectorEnv(RegisteredEnv('noisy_hook', 'reactive_hook', true_goal=True), 2)
    for env in (observed, true):
        env.reset(seeds)
    a, b = observed.step(action), true.step(action)
    # Same episodes and the same noisy observations (the noise is the task's own draw) ...
    np.testing.assert_array_equal(a.obs, b.obs)
    np.testing.assert_array_equal(a.is_success, b.is_success)
    # ... the observed goal is the noisy block reading, the true one is not.
    np.testing.assert_array_equal(a.achieved_goal, a.obs[:, HookObs.OBJECT_POS])
    task = make_task('noisy_hook')
    obs, _ = task.reset(seed=11)
    noise = task.observation_noise[:2]  # the block's xy noise of this observation
    np.testing.assert_allclose(task.true_achieved_goal(obs)[:2], obs['achieved_goal'][:2] - noise)
    assert np.abs(a.achieved_goal[:, :2] - b.achieved_goal[:, :2]).max() > 1e-3
    np.testing.assert_allclose(a.achieved_goal[:, 2], b.achieved_goal[:, 2], atol=1e-6)
    for env in (observed, true):
        env.close()


def test_a_clean_task_reports_the_observed_goal():
    task = make_task('hook')
    obs, _ = task.reset(seed=3)
    np.testing.assert_array_equal(task.true_achieved_goal(obs), obs['achieved_goal'])


def test_reward_threshold_changes_the_training_radius_only():
    problem = registered_problem('noisy_hook', 'reactive_hook')
    goal = np.zeros((3, 3))
    achieved = np.array([[0.01, 0, 0], [0.03, 0, 0], [0.06, 0, 0]])
    task_reward = problem.training_reward(0.0)
    tight = problem.training_reward(0.02)
    next_obs = np.zeros((3, problem.spec.obs_dim))
    executed = np.zeros((3, problem.spec.action_dim))
    np.testing.assert_array_equal(
        task_reward(next_obs, achieved, goal, executed), [0.0, 0.0, -1.0]
    )
    np.testing.assert_array_equal(tight(next_obs, achieved, goal, executed), [0.0, -1.0, -1.0])
    with pytest.raises(ValueError, match='dense step reward'):
        registered_problem('mbrl_pusher', 'cached_pets').training_reward(0.02)


def test_bad_combinations_are_refused_with_one_line(tmp_path, capsys):
    pusher = ['train', '--task', 'mbrl_pusher', '--steps', '10', '--out', str(tmp_path / 'p')]
    assert trainer([*pusher, '--set', 'reward_threshold=0.02']) == 2
    assert 'reward_threshold is for goal tasks' in capsys.readouterr().err
    assert not (tmp_path / 'p').exists()
    config = make_config({'task': 'noisy_hook', 'controller': 'reactive_hook'})
    with pytest.raises(ValueError, match='privileged_goal needs the simulator'):
        OfflineLearner.for_task(make_config({**config.to_dict(), 'privileged_goal': True}))


def test_the_trainer_reports_true_goals_only_where_asked_and_possible(tmp_path):
    from helpers import toy_trainer

    from rpl_trainer.train import Trainer

    problem = registered_problem('noisy_hook', 'reactive_hook')
    settings = {'task': 'noisy_hook', 'controller': 'reactive_hook', 'hidden_size': 16}
    plain = Trainer(make_config(settings), problem, tmp_path / 'a', progress=False)
    assert not plain._env_factory(True).true_goal
    config = make_config({**settings, 'privileged_goal': True})
    assert Trainer(config, problem, tmp_path / 'b', progress=False)._env_factory(True).true_goal
    with pytest.raises(ValueError, match='privileged_goal needs a registered task'):
        toy_trainer(tmp_path / 'c', privileged_goal=True)._env_factory(True)
