"""The learner: DDPG + HER on stored episodes, one for ``rpl train`` and the trainer node.

Both build the same :class:`Learner` (agent, replay buffer, HER sampler, update debt,
normaliser updates, export, state); they differ only in where episodes come from (the
in-process rollouts of :mod:`rpl_trainer.train`, the stack's messages and bags of
:mod:`rpl_trainer.offline`) and in what they write around it.

One gradient step (:meth:`Learner.update`), top to bottom:

1. sample: B transitions uniformly from the stored episodes; with probability
   ``future_p`` a transition's goal is replaced by an achieved goal of a later step of
   its episode (HER 'future'), its reward recomputed by the task's pure reward of the
   transition (:meth:`rpl_trainer.her.HerSampler.sample`; a fixed-goal task: goals of
   width 0, nothing relabelled, the dense reward of (o_{t+1}, executed a_t));
2. targets: y = clip(r + gamma * Q'(o', g, pi'(o', g)), -1 / (1 - gamma), 0) (the clip
   only for the sparse goal rewards);
3. critic loss: mean (Q(o, g, u) - y)^2, one Adam step;
4. actor loss: -mean Q(o, g, pi(o, g)) + action_l2 * mean pi^2, one Adam step, skipped
   while the RPL burn-in lasts (critic only; :class:`rpl_trainer.ddpg.BurnIn`);
5. polyak: every ``target_update_interval`` steps the targets move towards the online
   networks (steps 2-5: :meth:`rpl_trainer.ddpg.DDPGAgent.update`).

Every batch of stored episodes also updates the input normalisers from HER samples of it
(as in the baselines code). A checkpoint's ``learner`` entry is :meth:`Learner.state_dict`,
the same for both sides (:mod:`rpl_trainer.checkpoint`), so each can start from the other's
(:func:`start_from`).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from rpl_trainer.checkpoint import CheckpointError, load_learner_checkpoint
from rpl_trainer.config import TrainConfig, config_differences, make_config
from rpl_trainer.ddpg import DDPGAgent, UpdateStats
from rpl_trainer.export import export_onnx
from rpl_trainer.her import (
    BaseFn,
    EpisodeBatch,
    HerSampler,
    ReplayBuffer,
    RewardFn,
    TransitionReward,
    transition_reward,
)
from rpl_trainer.networks import Dims
from rpl_trainer.residual import Scale, residual_scales

NOT_LEARNER_FIELDS = frozenset(
    {
        'seed',  # a warm start continues the saved random state
        'total_env_steps',
        'num_envs',
        'vector_env',
        'torch_threads',
        'random_eps',
        'noise_eps',
        'greedy_envs',
        'expert_eps',
        'expert_alpha',
        'updates_per_env_step',
        'eval_interval',
        'eval_episodes',
        'base_eval_episodes',
        'checkpoint_interval',
        'snapshots',
        # Which achieved goals the rollouts store: the buffer a warm start takes keeps the
        # goals it was filled with.
        'privileged_goal',
    }
)
"""TrainConfig fields of ``rpl train``'s loop (budget, acting, evaluation), not of the
learner; every other field shapes the learner and must match for a warm start."""


def learner_differences(saved: TrainConfig, new: TrainConfig) -> list[str]:
    """Learner fields that differ, as ``'name: saved -> new'`` (see NOT_LEARNER_FIELDS)."""
    return [
        f'{f.name}: {getattr(saved, f.name)!r} -> {getattr(new, f.name)!r}'
        for f in dataclasses.fields(TrainConfig)
        if f.name not in NOT_LEARNER_FIELDS and getattr(saved, f.name) != getattr(new, f.name)
    ]


class UpdateDebt:
    """Gradient steps owed for new transitions or env steps (fractions carry over).

    Args:
        per_transition: Gradient steps per transition (``rpl train``: per env step).
    """

    def __init__(self, per_transition: float) -> None:
        self.per_transition = per_transition
        self.owed = 0.0

    def add(self, transitions: int) -> None:
        """Owe the updates for ``transitions`` new transitions (or env steps)."""
        self.owed += self.per_transition * transitions

    def take(self, most: int | None = None) -> int:
        """Whole updates to run now (at most ``most``); they are no longer owed."""
        count = int(self.owed) if most is None else min(int(self.owed), most)
        self.owed -= count
        return count


class Learner:
    """DDPG + HER (residual) on whole stored episodes of the task's length; for a fixed-goal
    task plain DDPG (residual) on its dense reward (goals of width 0, nothing relabelled).

    Args:
        config: Hyperparameters.
        dims: Observation, goal and action sizes.
        episode_steps: The task's episode length T: gamma = 1 - 1/T (unless set) and the
            buffer stores T transitions per episode (observations o_0 .. o_T).
        reward_fn: The reward of sampled transitions
            (:attr:`rpl_trainer.problem.Problem.transition_reward`), or a goal task's pure
            batched reward function of goals (for HER). Its ``sparse`` decides whether the
            critic's targets are clipped.
        base_fn: The batched base controller; needed (and only used) when goal-consistent
            HER recomputes RPL residuals for relabelled goals, or when the critic sees
            executed actions (``critic_action`` 'executed').
        updates_per_transition: Rate of the update debt (default: the config's
            ``updates_per_env_step``).
        action_bounds: The task's (low, high) action bounds, for the executed-action critic.
        action_fields: The task's action field names, for ``residual_axis_scales``
            (:func:`rpl_trainer.residual.residual_scales`); may be None where that is empty.

    Raises:
        rpl_interfaces.params.ParameterError: A bad ``residual_axis_scales``.
        ValueError: No steps, goal-consistent HER for RPL without ``base_fn`` or for a
            fixed-goal task (goal_dim 0), the executed-action critic without ``base_fn``,
            or an ``algo`` other than :attr:`only_algo`.
    """

    only_algo: str | None = None
    """The one ``config.algo`` a subclass learns with (None: any)."""

    def __init__(
        self,
        config: TrainConfig,
        dims: Dims,
        episode_steps: int,
        reward_fn: RewardFn | TransitionReward,
        base_fn: BaseFn | None = None,
        updates_per_transition: float | None = None,
        action_bounds: tuple[float, float] = (-1.0, 1.0),
        action_fields: Sequence[str] | None = None,
    ) -> None:
        if self.only_algo is not None and config.algo != self.only_algo:
            raise ValueError(
                f'{type(self).__name__} learns with algo {self.only_algo}, got {config.algo!r}'
            )
        if episode_steps < 1:
            raise ValueError(f'episodes need at least 1 step, got {episode_steps}')
        consistent = config.goal_consistent_her and config.algo == 'rpl'
        if consistent and dims.goal_dim == 0:
            raise ValueError(
                'goal-consistent HER relabels goals, and a fixed-goal task (goal_dim 0) has '
                'none: set goal_consistent_her false'
            )
        if consistent and base_fn is None:
            raise ValueError('goal-consistent HER needs the base controller (base_fn)')
        critic_base = config.critic_action == 'executed'
        if critic_base and base_fn is None:
            raise ValueError(
                "critic_action 'executed' needs the base controller (base_fn) to recompute "
                'base actions of sampled transitions'
            )
        self.config = config
        self.dims = dims
        self.episode_steps = episode_steps
        self.residual_scale = residual_scales(config, action_fields)
        """The RPL residual scale, one or one per action axis (what exports put in the graph
        and what stored commands are divided by)."""
        # torch's default (one thread per core) made an update ~10x slower next to a
        # running stack (measured: 59.9 vs 5.9 ms at batch 64, 2 cores).
        torch.set_num_threads(config.torch_threads)
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        """Batch sampling, normaliser samples and (``rpl train``) exploration draws."""
        reward = transition_reward(reward_fn)
        self.agent = DDPGAgent(
            dims,
            config,
            episode_steps,
            clip_target=reward.sparse,
            action_bounds=action_bounds,
            residual_scale=self.residual_scale,
        )
        if config.buffer_size < episode_steps:  # it was raised to one episode without a word
            raise ValueError(
                f'buffer_size={config.buffer_size} holds less than one episode of this task '
                f'({episode_steps} steps); give at least {episode_steps}'
            )
        self.buffer = ReplayBuffer(dims, episode_steps, config.buffer_size)
        self.sampler = HerSampler(
            reward,
            config.future_p,
            base_fn if config.updates_use_base else None,
            self.residual_scale,
            base_use='critic' if critic_base else 'relabel',
        )
        if updates_per_transition is None:
            updates_per_transition = config.updates_per_env_step
        self.debt = UpdateDebt(updates_per_transition)
        self.episodes = 0
        """Episodes stored so far."""

    def store(self, episodes: EpisodeBatch) -> int:
        """Store N whole episodes and update the input statistics from N * T HER samples.

        Returns:
            Transitions stored (N * T).
        """
        self.buffer.store(episodes)
        n, steps = episodes.action.shape[0], self.buffer.steps
        self.agent.update_normalizers(self.sampler.sample(episodes, n, n * steps, self.rng))
        self.episodes += n
        return n * steps

    def update(self, count: int = 1) -> list[UpdateStats]:
        """Run ``count`` gradient steps (none while the buffer is empty)."""
        if self.buffer.size == 0:
            return []
        stats = []
        for _ in range(count):
            batch = self.buffer.sample(self.sampler, self.config.batch_size, self.rng)
            stats.append(self.agent.update(batch))
        return stats

    def pay_debt(self, most: int | None = None) -> list[UpdateStats]:
        """Run the whole updates owed (at most ``most``); none while the buffer is empty."""
        if self.buffer.size == 0:
            return []
        return self.update(self.debt.take(most))

    def export(
        self,
        path: str | os.PathLike[str],
        metadata: Mapping[str, str] | None = None,
        identity: Any = None,
        scale: Scale | None = None,
    ) -> pathlib.Path:
        """Write the actor as an ONNX residual model (docs/onnx_contract.md), atomically.

        Args:
            path: Model file; written under a temporary name, checked against torch, then
                moved over ``path`` (a hot-reloading residual node never sees a partial file).
            metadata: Extra metadata strings.
            identity: The model's identity (:func:`rpl_trainer.export.task_identity`).
            scale: Output scale in action units (default: ``residual_scale``; the scratch
                learners use the action bound).
        """
        scale = self.residual_scale if scale is None else scale
        return export_onnx(
            self.agent.actor, path, scale, metadata, identity, self.agent.action_bound
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue learning exactly: config, agent (networks,
        optimisers, normalisers, burn-in, update count), replay buffer, numpy and torch
        random states, episodes stored and updates owed."""
        return {
            'config': self.config.to_dict(),
            'agent': self.agent.state_dict(),
            'buffer': self.buffer.state_dict(),
            'rng': self.rng.bit_generator.state,
            'torch_rng': torch.get_rng_state(),
            'counters': {'episodes': self.episodes, 'updates_owed': self.debt.owed},
        }

    def load_state_dict(self, state: Mapping[str, Any], warm_start: bool = False) -> None:
        """Restore from :meth:`state_dict` (torch's global random state included).

        Args:
            state: A :meth:`state_dict`.
            warm_start: The state comes from another run (or the other side): only the
                learner fields must match (not budgets, acting or evaluation), and no
                updates are owed afterwards.

        Raises:
            ValueError: The config differs where it may not (each difference named), or the
                state does not fit this learner (sizes, episode length).
        """
        saved = make_config(state['config'])
        if warm_start:
            differences = learner_differences(saved, self.config)
        else:
            differences = config_differences(saved, self.config)
        if differences:
            raise ValueError(
                'it was saved with a different config (' + '; '.join(differences) + ')'
            )
        try:
            self.agent.load_state_dict(state['agent'], keep_precision=not warm_start)
            self.buffer.load_state_dict(state['buffer'])
            self.rng.bit_generator.state = state['rng']
            torch.set_rng_state(state['torch_rng'])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f'it does not fit this learner ({_first_line(exc)})') from exc
        counters = state['counters']
        self.episodes = int(counters['episodes'])
        self.debt.owed = 0.0 if warm_start else float(counters['updates_owed'])


def _first_line(exc: BaseException) -> str:
    """torch's load_state_dict error as one line: its first mismatch ("size mismatch for
    net.0.weight: copying a param with shape ... current model is ..."), not all of them."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith('Error(s) in loading state_dict'):
        more = f' (and {len(lines) - 2} more)' if len(lines) > 2 else ''
        return f'{lines[1]}{more}'
    return ' '.join(lines)


def start_from(learner: Learner, path: str | os.PathLike[str]) -> str:
    """Warm start: load the learner part of any learner checkpoint (``rpl train``'s or the
    trainer node's) into ``learner``; the file is only read.

    Returns:
        The checkpoint's kind (:data:`rpl_trainer.checkpoint.CHECKPOINT_KINDS`).

    Raises:
        CheckpointError: Missing, corrupt or foreign file, or a learner of other learner
            fields or sizes; one line naming the file and the reason.
    """
    state = load_learner_checkpoint(path)
    try:
        learner.load_state_dict(state['learner'], warm_start=True)
    except KeyError as exc:
        raise CheckpointError(f'checkpoint {path} is incomplete (missing {exc})') from exc
    except ValueError as exc:
        raise CheckpointError(f'cannot start from checkpoint {path}: {exc}') from exc
    return str(state['kind'])


__all__ = [
    'NOT_LEARNER_FIELDS',
    'Learner',
    'UpdateDebt',
    'learner_differences',
    'start_from',
]
