"""Episode replay buffer and the HER 'future' sampler.

Episodes are stored whole (fixed length T, no early termination, as in the Fetch tasks), so
relabelling needs only indices: a transition (episode e, step t) may take as its goal the
achieved goal of any later step t' in [t + 1, T] of episode e. Rewards are recomputed by an
injected pure, batched reward of the sampled transition (:class:`TransitionReward`), never
by a live env: for a goal task the sparse reward of the next achieved goal and the (maybe
relabelled) goal (:class:`GoalReward`), for a fixed-goal task (goal width 0, nothing to
relabel) the dense reward of the next observation and the executed action
(:class:`StepReward`).

Shape example used in the comments: E stored episodes, T = 50 steps, B = 256 samples,
obs_dim = 25, goal_dim = 3, action_dim = 4.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import numpy as np

from rpl_trainer.networks import Dims
from rpl_trainer.residual import residual_explaining

RewardFn = Callable[[np.ndarray, np.ndarray, Any], np.ndarray]
"""compute_reward(achieved_goal (B, goal_dim), desired_goal (B, goal_dim), info) -> (B,)."""

BaseFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""base(observation (B, obs_dim), desired_goal (B, goal_dim)) -> base action (B, action_dim)."""


class TransitionReward:
    """The reward of sampled transitions, pure and batched: the sampler's one reward path.

    ``reward(next_obs (B, obs_dim), next_achieved_goal (B, goal_dim), goal (B, goal_dim),
    executed (B, action_dim)) -> (B,)``: o_{t+1}, its achieved goal, the transition's goal
    (relabelled or original) and the executed action a_t in action units.
    """

    sparse: ClassVar[bool]
    """Rewards are 0 or -1 (so returns lie in [-1 / (1 - gamma), 0] and the critic's
    targets may be clipped there); False for dense rewards of any size."""

    def __call__(
        self,
        next_obs: np.ndarray,
        next_achieved_goal: np.ndarray,
        goal: np.ndarray,
        executed: np.ndarray,
    ) -> np.ndarray:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class GoalReward(TransitionReward):
    """A goal task's sparse reward ``fn(achieved_goal_{t+1}, goal, None)`` (the task's
    ``compute_reward`` / ``TaskSpec.reward``: -1 or 0)."""

    fn: RewardFn
    sparse: ClassVar[bool] = True

    def __call__(self, next_obs, next_achieved_goal, goal, executed) -> np.ndarray:
        return self.fn(next_achieved_goal, goal, None)


@dataclasses.dataclass(frozen=True)
class StepReward(TransitionReward):
    """A fixed-goal task's dense reward ``fn(o_{t+1}, a_t)`` of the next observation and the
    executed action (``TaskSpec.transition_reward``); the goal (width 0) is not used."""

    fn: Callable[[np.ndarray, np.ndarray], np.ndarray]
    sparse: ClassVar[bool] = False

    def __call__(self, next_obs, next_achieved_goal, goal, executed) -> np.ndarray:
        return self.fn(next_obs, executed)


def transition_reward(reward: RewardFn | TransitionReward) -> TransitionReward:
    """``reward`` itself if it is a :class:`TransitionReward`, else a goal task's reward
    function of goals wrapped as :class:`GoalReward`."""
    return reward if isinstance(reward, TransitionReward) else GoalReward(reward)


class EpisodeBatch(NamedTuple):
    """N complete episodes of T steps (index t: state before action t; t = T: final state)."""

    obs: np.ndarray
    """(N, T + 1, obs_dim) observations."""
    achieved_goal: np.ndarray
    """(N, T + 1, goal_dim) achieved goals (block position for Fetch, m)."""
    desired_goal: np.ndarray
    """(N, T, goal_dim) the episode's desired goal at every step."""
    action: np.ndarray
    """(N, T, action_dim) tanh-space actions u in [-1, 1] (the residual for RPL)."""
    executed: np.ndarray
    """(N, T, action_dim) executed actions in action units (for goal-consistent HER)."""


class Transitions(NamedTuple):
    """A minibatch of (possibly relabelled) transitions, float32."""

    obs: np.ndarray
    """(B, obs_dim) o_t."""
    prev_obs: np.ndarray
    """(B, obs_dim) o_{t-1} (o_0 at t = 0); the next transition's previous frame is o_t."""
    goal: np.ndarray
    """(B, goal_dim) goal (relabelled or original)."""
    action: np.ndarray
    """(B, action_dim) tanh-space action u_t (recomputed for relabelled goals when
    goal-consistent)."""
    reward: np.ndarray
    """(B,) the sampler's :class:`TransitionReward` of the transition (goal tasks:
    reward_fn(achieved_goal_{t+1}, goal))."""
    next_obs: np.ndarray
    """(B, obs_dim) o_{t+1}."""
    executed: np.ndarray | None = None
    """(B, action_dim) the executed action a_t (action units); only for the critic that sees
    executed actions (``TrainConfig.critic_action``), else None."""
    base: np.ndarray | None = None
    """(B, action_dim) base(o_t, goal) (action units; the batch's goal); with ``executed``."""
    next_base: np.ndarray | None = None
    """(B, action_dim) base(o_{t+1}, goal); with ``executed``."""


BASE_USES = ('relabel', 'critic')
"""What a sampler's base controller is for: goal-consistent relabelling, or the base
actions of the critic that sees executed actions."""


class HerSampler:
    """Samples transitions with 'future' relabelling from stored episodes.

    Args:
        reward_fn: The reward of sampled transitions (:class:`TransitionReward`), or a goal
            task's pure batched reward function of goals (taken as :class:`GoalReward`).
        future_p: Probability of relabelling a sampled transition (k = 4: 0.8; a fixed-goal
            task has nothing to relabel: its goals have width 0).
        base_fn: Batched base controller, for ``base_use``; None: neither use.
        scale: Residual scale, only for goal-consistent relabelling.
        base_use: ``'relabel'``: relabelled transitions get the residual recomputed for the
            new goal; ``'critic'``: every batch carries its executed actions and the base
            actions at o_t and o_{t+1} under the batch's goals.
    """

    def __init__(
        self,
        reward_fn: RewardFn | TransitionReward,
        future_p: float,
        base_fn: BaseFn | None = None,
        scale: float | np.ndarray = 1.0,
        base_use: str = 'relabel',
    ) -> None:
        if not 0.0 <= future_p <= 1.0:
            raise ValueError(f'future_p must be in [0, 1], got {future_p}')
        if base_use not in BASE_USES:
            raise ValueError(f'base_use must be one of {BASE_USES}, got {base_use!r}')
        self.reward = transition_reward(reward_fn)
        self.future_p = future_p
        self.base_fn = base_fn
        self.scale = scale
        self.base_use = base_use

    @property
    def goal_consistent(self) -> bool:
        """Relabelled transitions get the residual recomputed for the new goal."""
        return self.base_fn is not None and self.base_use == 'relabel'

    @property
    def with_base_actions(self) -> bool:
        """Batches carry executed and base actions (the executed-action critic)."""
        return self.base_fn is not None and self.base_use == 'critic'

    def sample(
        self,
        episodes: EpisodeBatch,
        num_episodes: int,
        batch_size: int,
        rng: np.random.Generator,
    ) -> Transitions:
        """Draw ``batch_size`` transitions uniformly from the first ``num_episodes`` episodes."""
        if num_episodes < 1:
            raise ValueError('cannot sample from an empty replay buffer')
        steps = episodes.action.shape[1]  # T
        ep = rng.integers(0, num_episodes, size=batch_size)  # (B,) episode indices
        t = rng.integers(0, steps, size=batch_size)  # (B,) in [0, T)
        goal = episodes.desired_goal[ep, t].copy()  # (B, goal_dim)
        action = episodes.action[ep, t].copy()  # (B, action_dim)
        relabel, future_t = self._future_steps(t, steps, rng)
        goal[relabel] = episodes.achieved_goal[ep[relabel], future_t[relabel]]
        obs = episodes.obs[ep, t]  # (B, obs_dim)
        if self.goal_consistent and relabel.any():
            action[relabel] = self._consistent_action(
                obs[relabel], goal[relabel], episodes.executed[ep[relabel], t[relabel]]
            )
        next_obs = episodes.obs[ep, t + 1]  # (B, obs_dim)
        reward = self.reward(
            next_obs, episodes.achieved_goal[ep, t + 1], goal, episodes.executed[ep, t]
        )
        extra = {}
        if self.with_base_actions:
            extra = {
                'executed': episodes.executed[ep, t].astype(np.float32),
                'base': self._base(obs, goal),
                'next_base': self._base(next_obs, goal),
            }
        return Transitions(
            obs=obs.astype(np.float32),
            prev_obs=episodes.obs[ep, np.maximum(t - 1, 0)].astype(np.float32),
            goal=goal.astype(np.float32),
            action=action.astype(np.float32),
            reward=np.asarray(reward, np.float32).reshape(batch_size),
            next_obs=next_obs.astype(np.float32),
            **extra,
        )

    def _base(self, obs: np.ndarray, goal: np.ndarray, dtype: type = np.float32) -> np.ndarray:
        """Base actions (B, action_dim) of a batch of observations and goals."""
        return np.asarray(self.base_fn(obs, goal), dtype)

    def _future_steps(
        self, t: np.ndarray, steps: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Which samples to relabel (B,) bool, and their future step (B,) in [t + 1, T].

        E.g. T = 50, t = 47: the offset floor(U * (T - t)) is 0, 1 or 2, so the goal is the
        achieved goal after step 47, 48 or 49 (achieved_goal index 48, 49 or 50).
        """
        relabel = rng.random(t.shape[0]) < self.future_p
        offset = np.floor(rng.random(t.shape[0]) * (steps - t)).astype(np.int64)
        return relabel, t + 1 + offset

    def _consistent_action(
        self, obs: np.ndarray, goal: np.ndarray, executed: np.ndarray
    ) -> np.ndarray:
        """Residual (n, action_dim) that explains ``executed`` under the new goals."""
        return residual_explaining(executed, self._base(obs, goal, np.float64), self.scale)


# Where a container's memory limit is (cgroup v2, v1); absent or unlimited: the machine's.
_CGROUP_LIMITS = ('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes')


def usable_memory() -> int | None:
    """Bytes this process may use: the machine's memory, or its container's limit where
    that is lower (None: not known here)."""
    try:
        memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    except (AttributeError, ValueError, OSError):
        return None
    for path in _CGROUP_LIMITS:
        try:
            with open(path) as f:
                memory = min(memory, int(f.read().strip()))  # 'max': not a limit
        except (OSError, ValueError):
            continue
    return memory


def _check_fits(nbytes: int, capacity: int) -> None:
    """Refuse a replay buffer larger than the memory this process may use, in one line
    (numpy's allocation would fail with a traceback, or succeed lazily and be killed
    later)."""
    memory = usable_memory()
    if memory is not None and nbytes > memory:
        gib = 1024**3
        raise ValueError(
            f'buffer_size={capacity} needs {nbytes / gib:.1f} GiB for the replay buffer, more '
            f'than the {memory / gib:.1f} GiB of memory this process may use (the machine '
            "or its container's limit): lower buffer_size"
        )


class ReplayBuffer:
    """FIFO store of whole episodes (capacity rounded down to whole episodes, at least one).

    Args:
        dims: Task sizes.
        episode_steps: Episode length T.
        capacity: Capacity in transitions.
    """

    def __init__(self, dims: Dims, episode_steps: int, capacity: int) -> None:
        self.dims = dims
        self.steps = episode_steps
        self.max_episodes = max(1, capacity // episode_steps)
        n, t = self.max_episodes, episode_steps
        per_episode = (t + 1) * (dims.obs_dim + dims.goal_dim)  # obs, achieved goal
        per_episode += t * (dims.goal_dim + 2 * dims.action_dim)  # goal, action, executed
        _check_fits(n * per_episode * np.dtype(np.float32).itemsize, capacity)
        self._data = EpisodeBatch(
            obs=np.zeros((n, t + 1, dims.obs_dim), np.float32),
            achieved_goal=np.zeros((n, t + 1, dims.goal_dim), np.float32),
            desired_goal=np.zeros((n, t, dims.goal_dim), np.float32),
            action=np.zeros((n, t, dims.action_dim), np.float32),
            executed=np.zeros((n, t, dims.action_dim), np.float32),
        )
        self.size = 0  # stored episodes
        self._next = 0  # slot of the next episode

    @property
    def transitions(self) -> int:
        """Stored transitions."""
        return self.size * self.steps

    def store(self, batch: EpisodeBatch) -> None:
        """Append N episodes, overwriting the oldest when full."""
        n = batch.obs.shape[0]
        if batch.action.shape[1] != self.steps:
            raise ValueError(
                f'episodes have {batch.action.shape[1]} steps; this buffer stores {self.steps}'
            )
        if n > self.max_episodes:  # only the newest episodes fit
            batch = EpisodeBatch(*(array[-self.max_episodes :] for array in batch))
            n = self.max_episodes
        slots = (self._next + np.arange(n)) % self.max_episodes
        for store, new in zip(self._data, batch, strict=True):
            store[slots] = new
        self._next = int((self._next + n) % self.max_episodes)
        self.size = min(self.size + n, self.max_episodes)

    def sample(
        self, sampler: HerSampler, batch_size: int, rng: np.random.Generator
    ) -> Transitions:
        """Relabelled minibatch of ``batch_size`` transitions."""
        return sampler.sample(self._data, self.size, batch_size, rng)

    def state_dict(self) -> dict[str, Any]:
        """Stored episodes (oldest first) for checkpoints."""
        order = (self._next - self.size + np.arange(self.size)) % self.max_episodes
        return {
            'episodes': {name: array[order].copy() for name, array in self._data._asdict().items()}
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (into an empty buffer of the same shape)."""
        self.size = 0
        self._next = 0
        episodes = EpisodeBatch(**state['episodes'])
        if episodes.obs.shape[0]:
            self.store(episodes)
