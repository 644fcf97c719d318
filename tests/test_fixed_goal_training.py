"""Training a fixed-goal task (no goal fields, a dense reward per step, like the pusher):
the sampler's reward is the spec's ``transition_reward`` of the stored (o_{t+1}, executed
a_t), the critic's targets are not clipped, ``rpl train`` learns a tiny simulated
fixed-goal task end to end and reports its return, the best model is the one of the
highest return, and the offline learner (the trainer node's) learns from such episodes
(test_fixed_goal.py: a fixed-goal task without a step reward is refused in one line)."""

from __future__ import annotations

import dataclasses
import json

import fixed_goal_task
import numpy as np
import pytest
import torch

from rpl_sim_bridge.tasks import TaskSpec, register_task
from rpl_trainer.config import make_config
from rpl_trainer.ddpg import DDPGAgent
from rpl_trainer.her import EpisodeBatch, HerSampler, StepReward, Transitions
from rpl_trainer.learner import Learner
from rpl_trainer.metrics import read_metrics
from rpl_trainer.networks import Dims
from rpl_trainer.problem import Problem, registered_problem

pytestmark = pytest.mark.usefixtures('one_torch_thread')

# ---- a pusher-like spec (no simulator) with the paper's MBRLPusher reward --------------

PUSHER_GOAL = np.array([0.45, -0.05, -0.323])  # m, the fixed object target


def pusher_reward(next_obs: np.ndarray, action: np.ndarray) -> np.ndarray:
    """-(1.25 |object - goal|_1 + 0.5 |object - tip|_1 + 0.1 |a|^2), (...,)."""
    tip, obj = next_obs[..., 14:17], next_obs[..., 17:20]
    return -(
        1.25 * np.abs(obj - PUSHER_GOAL).sum(-1)
        + 0.5 * np.abs(obj - tip).sum(-1)
        + 0.1 * np.square(action).sum(-1)
    )


def pusher_success(obs: np.ndarray) -> np.ndarray:
    return (np.linalg.norm(obs[..., 17:20] - PUSHER_GOAL, axis=-1) <= 0.05).astype(np.float32)


DENSE_NAME = 'fixed_goal_pusher_dense_test'
DENSE_SPEC = dataclasses.replace(
    fixed_goal_task.SPEC, name=DENSE_NAME, step_reward=pusher_reward, obs_success=pusher_success
)


def _no_simulator(**overrides: object) -> None:
    raise RuntimeError(f'{DENSE_NAME} is a spec-only test task')


register_task(DENSE_NAME, DENSE_SPEC, _no_simulator, replace=True)
fixed_goal_task.register()


def tagged_pusher_episodes(n: int, steps: int, seed: int = 0) -> EpisodeBatch:
    """Random pusher episodes whose qpos.j0 / qpos.j1 hold the episode and step index."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(0, 0.3, (n, steps + 1, 20)).astype(np.float32)
    obs[:, :, 0] = np.arange(n)[:, None]
    obs[:, :, 1] = np.arange(steps + 1)[None, :]
    return EpisodeBatch(
        obs=obs,
        achieved_goal=np.zeros((n, steps + 1, 0), np.float32),
        desired_goal=np.zeros((n, steps, 0), np.float32),
        action=rng.uniform(-1, 1, (n, steps, 7)).astype(np.float32),
        executed=rng.uniform(-2, 2, (n, steps, 7)).astype(np.float32),
    )


def test_the_sampled_reward_is_the_specs_reward_of_the_stored_transition():
    episodes = tagged_pusher_episodes(5, 12)
    problem = registered_problem(DENSE_NAME, 'zero')
    assert problem.fixed_goal and problem.reward_fn is None
    reward = problem.transition_reward
    assert isinstance(reward, StepReward) and not reward.sparse
    batch = HerSampler(reward, future_p=0.8).sample(episodes, 5, 300, np.random.default_rng(1))
    ep = batch.obs[:, 0].astype(int)
    t = batch.obs[:, 1].astype(int)
    assert batch.goal.shape == (300, 0)
    np.testing.assert_array_equal(batch.next_obs, episodes.obs[ep, t + 1])
    np.testing.assert_array_equal(batch.action, episodes.action[ep, t])
    expected = DENSE_SPEC.transition_reward(episodes.obs[ep, t + 1], episodes.executed[ep, t])
    np.testing.assert_allclose(batch.reward, expected, rtol=1e-6)
    assert batch.reward.min() < -1.0  # dense rewards below the sparse range


def test_dense_targets_are_not_clipped_and_sparse_ones_are():
    """With a target critic that answers 0 (never updated here), the critic regresses onto
    y = r = -30: clipped to -1 / (1 - gamma) = -10 for sparse rewards, not for dense ones."""
    dims = Dims(3, 0, 2)
    config = make_config(
        {'hidden_size': 8, 'algo': 'scratch', 'critic_lr': 0.05, 'target_update_interval': 10**6}
    )
    zeros = np.zeros((8, 3), np.float32)
    batch = Transitions(
        obs=zeros,
        prev_obs=zeros,
        goal=np.zeros((8, 0), np.float32),
        action=np.zeros((8, 2), np.float32),
        reward=np.full(8, -30.0, np.float32),
        next_obs=zeros,
    )
    q = {}
    for clip in (True, False):
        torch.manual_seed(0)
        agent = DDPGAgent(dims, config, episode_steps=10, clip_target=clip)
        with torch.no_grad():
            agent.critic_target.body[-1].weight.zero_()
            agent.critic_target.body[-1].bias.zero_()
        for _ in range(120):
            agent.update(batch)
        with torch.no_grad():
            q[clip] = float(agent.critic(torch.zeros(1, 3), torch.zeros(1, 0), torch.zeros(1, 2)))
    assert q[True] == pytest.approx(-10.0, abs=0.5)
    assert q[False] == pytest.approx(-30.0, abs=1.5)


def test_goal_consistent_her_is_refused_for_a_fixed_goal_task_in_one_line():
    problem = registered_problem(DENSE_NAME, 'zero')
    config = make_config({'task': DENSE_NAME, 'controller': 'zero', 'goal_consistent_her': True})
    with pytest.raises(ValueError) as info:
        Learner(config, problem.dims, 100, problem.transition_reward, problem.make_base_fn())
    assert str(info.value) == (
        'goal-consistent HER relabels goals, and a fixed-goal task (goal_dim 0) has none: set '
        'goal_consistent_her false'
    )


def test_the_trainer_nodes_assembler_and_learner_learn_from_fixed_goal_episodes():
    """The live path of the trainer node: stack messages of a fixed-goal stream (no goal
    fields) -> EpisodeAssembler -> OfflineLearner.for_task, rewards from the spec."""
    from rpl_interfaces import contract
    from rpl_interfaces.codec import StampedVector
    from rpl_trainer.assembler import EpisodeAssembler
    from rpl_trainer.offline import OfflineLearner

    config = make_config(
        {'task': DENSE_NAME, 'controller': 'zero', 'hidden_size': 16, 'batch_size': 32}
    )
    learner = OfflineLearner.for_task(config, updates_per_transition=0.05)
    assert not learner.agent.clip_target
    assert learner.sampler.reward.fn == DENSE_SPEC.transition_reward
    steps = DENSE_SPEC.max_episode_steps
    episodes = tagged_pusher_episodes(2, steps)
    layout = contract.split_observation_fields(
        contract.observation_fields(DENSE_SPEC.obs_fields, DENSE_SPEC.goal_fields)
    )
    assembler = EpisodeAssembler(layout, steps, DENSE_SPEC.action_fields)
    records = []
    for ep in range(2):
        messages = []
        for k in range(steps):
            messages += [
                (contract.OBSERVATION, episodes.obs[ep, k], DENSE_NAME),
                (contract.BASE_ACTION, np.zeros(7), 'zero'),
                (contract.COMMAND, episodes.executed[ep, k], 'residual'),
            ]
        terminal = contract.terminal_tag(DENSE_NAME)
        messages.append((contract.OBSERVATION, episodes.obs[ep, steps], terminal))
        result = contract.EpisodeResult(ep, False, 0.0, -1.0, steps, 0, 0).as_vector()
        messages.append((contract.EPISODE, result, DENSE_NAME))
        for i, (topic, values, tag) in enumerate(messages):
            k = min(i // 3, steps)
            stamped = StampedVector(ep, k, np.asarray(values, np.float64), 1000 * i, tag)
            records += assembler.add(topic, stamped)
    assert [r.episode for r in records] == [0, 1] and records[0].desired_goal.shape == (steps, 0)
    assert learner.add(records) == 2 * steps
    before = [p.clone() for p in learner.agent.critic.parameters()]
    learner.debt.add(2 * steps)  # as the trainer node does for stored transitions
    stats = learner.pay_debt()
    assert len(stats) == 10 and all(np.isfinite(s.critic_loss) for s in stats)
    critic = learner.agent.critic.parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before, critic, strict=True))
    batch = learner.buffer.sample(learner.sampler, 64, np.random.default_rng(0))
    ep, t = batch.obs[:, 0].astype(int), batch.obs[:, 1].astype(int)
    expected = DENSE_SPEC.transition_reward(episodes.obs[ep, t + 1], episodes.executed[ep, t])
    np.testing.assert_allclose(batch.reward, expected, rtol=1e-6)


# ---- a tiny simulated fixed-goal task: a point pushed to a fixed target ----------------

TARGET = np.array([0.5, -0.5])  # m
STEP_SIZE = 0.3  # m per unit action
STEPS = 10


def point_reward(next_obs: np.ndarray, action: np.ndarray) -> np.ndarray:
    """-(1.25 |p - target|_1 + 0.1 |a|^2) per step, (...,): a dense reward like the pusher's."""
    return -(1.25 * np.abs(next_obs - TARGET).sum(-1) + 0.1 * np.square(action).sum(-1))


def point_success(obs: np.ndarray) -> np.ndarray:
    return (np.linalg.norm(obs - TARGET, axis=-1) <= 0.1).astype(np.float32)


POINT_SPEC = TaskSpec(
    name='toy_fixed_target',
    description='point in the plane pushed to a fixed target (trainer tests)',
    obs_dim=2,
    goal_dim=0,
    action_dim=2,
    max_episode_steps=STEPS,
    distance_threshold=0.1,
    obs_fields=('point_x', 'point_y'),
    action_low=-1.0,
    action_high=1.0,
    control_dt=1.0,
    step_reward=point_reward,
    obs_success=point_success,
)


class FixedTarget:
    """The task: a point at a seeded random start moved by ``STEP_SIZE * a``; no goals."""

    spec = POINT_SPEC

    def __init__(self) -> None:
        self._point = np.zeros(2)
        self._steps = 0

    def _obs(self) -> dict[str, np.ndarray]:
        return {'observation': self._point.copy(), 'achieved_goal': np.zeros(0),
                'desired_goal': np.zeros(0)}  # fmt: skip

    def _info(self) -> dict[str, float]:
        distance = float(np.linalg.norm(self._point - TARGET))
        return {'is_success': float(point_success(self._point)), 'distance': distance}

    def reset(self, seed: int | None = None):
        self._point = np.random.default_rng(seed).uniform(-1.0, 1.0, 2)
        self._steps = 0
        return self._obs(), self._info()

    def step(self, action: np.ndarray):
        action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        self._point = np.clip(self._point + STEP_SIZE * action, -1.0, 1.0)
        self._steps += 1
        reward = float(point_reward(self._point, action))
        return self._obs(), reward, False, self._steps >= STEPS, self._info()

    def close(self) -> None:
        return None


class Idle:
    """The base controller: does nothing (the residual must learn the whole push)."""

    def reset(self) -> None:
        return None

    def act_batch(self, observations: np.ndarray, goals: np.ndarray) -> np.ndarray:
        return np.zeros((len(observations), 2))

    def __call__(self, observation: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        return np.zeros(2)


@dataclasses.dataclass(frozen=True)
class PointFactory:
    with_controller: bool = True

    def __call__(self):
        return FixedTarget(), Idle() if self.with_controller else None


def point_problem() -> Problem:
    return Problem(POINT_SPEC, PointFactory, None, lambda: Idle().act_batch)


def test_rpl_train_learns_a_fixed_goal_task_and_reports_its_return(tmp_path):
    """From the zero residual (the idle base: return -15.9) to a return above -5, the best
    model chosen by return; metrics, summary and the return plot carry it."""
    from rpl_trainer.plot import plot_runs
    from rpl_trainer.train import train

    config = make_config(
        {
            'task': POINT_SPEC.name,
            'controller': 'idle',
            'seed': 0,
            'total_env_steps': 1600,
            'num_envs': 4,
            'hidden_size': 64,
            'batch_size': 128,
            'updates_per_env_step': 0.5,
            'target_update_interval': 1,
            'burn_in_window': 50,
            'burn_in_max_updates': 100,
            'eval_interval': 400,
            'eval_episodes': 20,
            'base_eval_episodes': 20,
        }
    )
    out = tmp_path / 'run'
    result = train(config, out, problem=point_problem(), progress=False)
    metrics = read_metrics(out / 'metrics.csv')
    returns = metrics['eval/return']
    assert len(returns) == 5 and np.all(np.isfinite(returns))
    # The first evaluation is the zero residual: the idle base's return.
    assert returns[0] == pytest.approx(result.base_return)
    assert result.base_return < -12.0
    assert result.mean_return == pytest.approx(returns[-1], rel=1e-5)
    assert result.mean_return > -5.0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['eval/return'] == result.mean_return
    assert summary['best/return'] == pytest.approx(returns.max(), rel=1e-5)
    best_row = int(np.argmax(returns))
    assert summary['best/env_steps'] == metrics['env_steps'][best_row]
    base = json.loads((out / 'base_eval.json').read_text())
    assert base['eval/return'] == result.base_return
    path = plot_runs([out], tmp_path / 'return.png', metric='return')
    assert path.stat().st_size > 1000


def test_return_rows_keep_their_column_when_cut_back_and_goal_rows_stay_as_they_were(tmp_path):
    from rpl_trainer.metrics import METRIC_COLUMNS, append_row, row_columns, truncate_metrics

    goal_row = dict.fromkeys(METRIC_COLUMNS, 0.5)
    assert row_columns(goal_row) == METRIC_COLUMNS
    path = tmp_path / 'metrics.csv'
    for steps in (0, 100, 200):
        append_row(path, {**goal_row, 'env_steps': steps, 'eval/return': -10.0 - steps})
    header = path.read_text().splitlines()[0].split(',')
    assert header[4:7] == ['eval/success_rate', 'eval/return', 'eval/mean_final_distance']
    truncate_metrics(path, 100)
    metrics = read_metrics(path)
    np.testing.assert_array_equal(metrics['eval/return'], [-10.0, -110.0])
    assert path.read_text().splitlines()[0].split(',') == header
