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
from rpl_trainer.rollout import RegisteredEnv, SyncVectorEnv, make_vector_env


def simulator_block(slot) -> np.ndarray:
    """The block position (3,) of a slot's simulator, read from MuJoCo directly."""
    task = slot.task
    return task.data.site_xpos[task._object_site].copy()


def test_true_goal_slots_report_the_simulators_block_position():
    seeds, action = [11, 12], np.zeros((2, 4))
    observed = SyncVectorEnv(RegisteredEnv('noisy_hook', 'reactive_hook'), 2)
    true = SyncVectorEnv(RegisteredEnv('noisy_hook', 'reactive_hook', true_goal=True), 2)
    try:
        for batch_a, batch_b in (
            (observed.reset(seeds), true.reset(seeds)),
            (observed.step(action), true.step(action)),
        ):
            # Same episodes, same noisy observations (the noise is the task's own draw) ...
            np.testing.assert_array_equal(batch_a.obs, batch_b.obs)
            np.testing.assert_array_equal(batch_a.is_success, batch_b.is_success)
            # ... the observed goal is the noisy block reading, the true one the simulator's.
            np.testing.assert_array_equal(
                batch_a.achieved_goal, batch_a.obs[:, HookObs.OBJECT_POS]
            )
            sim = np.stack([simulator_block(slot) for slot in true._slots])
            np.testing.assert_allclose(batch_b.achieved_goal, sim, atol=1e-6)
            assert np.abs(batch_a.achieved_goal[:, :2] - sim[:, :2]).max() > 1e-3
    finally:
        observed.close()
        true.close()


def test_a_privileged_run_stores_true_goals_in_its_buffer(tmp_path):
    """Whole episodes through the trainer's rollout, in worker processes (the flag travels
    with the pickled factory): xy differ from the noisy reading, z (never noisy) equal."""
    from rpl_trainer.train import Trainer

    problem = registered_problem('noisy_hook', 'reactive_hook')
    settings = {
        'task': 'noisy_hook',
        'controller': 'reactive_hook',
        'hidden_size': 16,
        'privileged_goal': True,
        'vector_env': 'subprocess',
    }
    trainer = Trainer(make_config(settings), problem, tmp_path / 'run', progress=False)
    trainer.env = make_vector_env(trainer.env_factory, 2, 'subprocess')
    try:
        trainer._cycle()
    finally:
        trainer.env.close()
    data = trainer.learner.buffer._data
    stored = data.achieved_goal[:2]
    read = data.obs[:2, :, HookObs.OBJECT_POS]
    np.testing.assert_allclose(stored[..., 2], read[..., 2], atol=1e-6)
    offsets = np.linalg.norm(stored[..., :2] - read[..., :2], axis=-1)
    assert offsets.min() > 0 and 0.01 < offsets.mean() < 0.06  # the noise: std 0.025 per axis


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


def test_the_learners_sample_rewards_with_the_radius(tmp_path):
    """The radius reaches the sampler of `rpl train`'s learner and of the offline one."""
    from rpl_trainer.train import Trainer

    problem = registered_problem('noisy_hook', 'reactive_hook')
    goal, achieved = np.zeros((1, 3)), np.array([[0.03, 0.0, 0.0]])
    next_obs, executed = np.zeros((1, problem.spec.obs_dim)), np.zeros((1, 4))
    for radius, reward in ((0.0, 0.0), (0.02, -1.0)):
        config = make_config(
            {'task': 'noisy_hook', 'controller': 'reactive_hook', 'reward_threshold': radius}
        )
        learners = (
            Trainer(config, problem, tmp_path / f'r{radius}', progress=False).learner,
            OfflineLearner.for_task(config),
        )
        for learner in learners:
            assert learner.sampler.reward(next_obs, achieved, goal, executed)[0] == reward


def test_bad_combinations_are_refused_with_one_line(tmp_path, capsys):
    pusher = ['train', '--task', 'mbrl_pusher', '--steps', '10', '--out', str(tmp_path / 'p')]
    for setting, words in (
        ('reward_threshold=0.02', 'reward_threshold is for goal tasks'),
        ('privileged_goal=true', 'privileged_goal is for goal tasks'),
    ):
        assert trainer([*pusher, '--set', setting]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count('\n') == 1, err
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
        toy_trainer(tmp_path / 'c', privileged_goal=True)
    assert not (tmp_path / 'c').exists()  # refused before the run directory is made
