"""The offline learner: DDPG + HER on episodes this process did not collect (bags, live
topics), with the RPL burn-in (critic-only updates), ONNX export, its update debt, and
:func:`save_learner` / :func:`load_learner` checkpoints so that a trainer resumes exactly.

Episodes come in as :class:`rpl_trainer.episodes.EpisodeRecord` (from
:mod:`rpl_trainer.assembler` live, :mod:`rpl_trainer.bag_ingest` from bags).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from rpl_trainer.checkpoint import (
    CheckpointError,
    learning_state,
    load_checkpoint,
    restore_learning_state,
    save_checkpoint,
)
from rpl_trainer.config import TrainConfig, config_differences, make_config
from rpl_trainer.ddpg import DDPGAgent, UpdateStats
from rpl_trainer.episodes import EpisodeRecord, episode_batch
from rpl_trainer.export import export_onnx
from rpl_trainer.her import BaseFn, HerSampler, ReplayBuffer, RewardFn
from rpl_trainer.networks import Dims


class UpdateDebt:
    """Gradient steps owed for ingested transitions (fractions carry over).

    Args:
        per_transition: Gradient steps per transition.
    """

    def __init__(self, per_transition: float) -> None:
        self.per_transition = per_transition
        self.owed = 0.0

    def add(self, transitions: int) -> None:
        """Owe the updates for newly stored transitions."""
        self.owed += self.per_transition * transitions

    def take(self, most: int) -> int:
        """Whole updates to run now, at most ``most``; they are no longer owed."""
        count = min(int(self.owed), most)
        self.owed -= count
        return count


class OfflineLearner:
    """DDPG + HER on episodes that were not collected by this process (bags, live topics).

    Args:
        config: Hyperparameters (``algo`` must be ``rpl``: the records hold base actions).
        dims: Observation, goal and action sizes.
        episode_steps: The task's episode length T (gamma = 1 - 1/T as in ``rpl train``);
            the buffer stores T - 1 transitions per episode.
        reward_fn: The task's pure batched reward function (for HER).
        base_fn: The batched base controller; needed (and only used) when
            ``config.goal_consistent_her`` recomputes residuals for relabelled goals.
    """

    def __init__(
        self,
        config: TrainConfig,
        dims: Dims,
        episode_steps: int,
        reward_fn: RewardFn,
        base_fn: BaseFn | None = None,
    ) -> None:
        if config.algo != 'rpl':
            raise ValueError(f'offline learning is for algo rpl, got {config.algo!r}')
        if episode_steps < 2:
            raise ValueError(f'episodes need at least 2 steps, got {episode_steps}')
        if config.goal_consistent_her and base_fn is None:
            raise ValueError('goal_consistent_her needs the base controller (base_fn)')
        self.config = config
        self.dims = dims
        self.episode_steps = episode_steps
        # As `rpl train` does: torch's default (one thread per core) made an update ~10x
        # slower next to a running stack (measured: 59.9 vs 5.9 ms at batch 64, 2 cores).
        torch.set_num_threads(config.torch_threads)
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.agent = DDPGAgent(dims, config, episode_steps)
        self.buffer = ReplayBuffer(dims, episode_steps - 1, config.buffer_size)
        self.sampler = HerSampler(
            reward_fn,
            config.future_p,
            base_fn if config.goal_consistent_her else None,
            config.residual_scale,
        )
        self.episodes = 0

    @classmethod
    def for_task(cls, config: TrainConfig) -> OfflineLearner:
        """Learner for ``config.task`` with the task's sizes, length and reward."""
        from rpl_trainer.problem import registered_problem

        problem = registered_problem(config.task, config.controller, config.controller_params)
        base_fn = problem.make_base_fn() if config.goal_consistent_her else None
        return cls(
            config,
            problem.dims,
            int(problem.spec.max_episode_steps),
            problem.reward_fn,
            base_fn,
        )

    def add(self, records: Sequence[EpisodeRecord]) -> int:
        """Store episodes and update the input statistics from HER samples of them.

        Returns:
            Transitions stored.

        Raises:
            ValueError: A record's length or sizes do not fit this learner.
        """
        if not records:
            return 0
        for r in records:
            sizes = (r.observation.shape[1], r.desired_goal.shape[1], r.command.shape[1])
            if r.steps != self.episode_steps or sizes != tuple(self.dims):
                raise ValueError(
                    f'episode {r.episode} has {r.steps} steps and sizes (obs, goal, action) '
                    f'{sizes}; this learner needs {self.episode_steps} and {tuple(self.dims)}'
                )
        batch = episode_batch(records, self.config.residual_scale)
        self.buffer.store(batch)
        n, steps = len(records), self.buffer.steps
        self.agent.update_normalizers(self.sampler.sample(batch, n, n * steps, self.rng))
        self.episodes += n
        return n * steps

    def update(self, count: int = 1) -> list[UpdateStats]:
        """Run ``count`` gradient steps (critic only while the burn-in lasts)."""
        if self.buffer.size == 0:
            return []
        stats = []
        for _ in range(count):
            batch = self.buffer.sample(self.sampler, self.config.batch_size, self.rng)
            stats.append(self.agent.update(batch))
        return stats

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue learning exactly: config, agent (networks,
        optimisers, normalisers, burn-in, update count), replay buffer, numpy and torch
        random states, episodes stored."""
        return {
            **learning_state(self.config, self.agent, self.buffer, self.rng),
            'counters': {'episodes': self.episodes},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` (into a learner of the same config and sizes).

        Raises:
            ValueError: The state was saved with a config that differs in fields other than
                budgets and bookkeeping (each difference named), or does not fit this learner.
        """
        saved = make_config(state['config'])
        differences = config_differences(saved, self.config)
        if differences:
            raise ValueError(
                'it was saved with a different config (' + '; '.join(differences) + ')'
            )
        try:
            restore_learning_state(state, self.agent, self.buffer, self.rng)
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f'it does not fit this learner ({exc})') from exc
        self.episodes = int(state['counters']['episodes'])

    def export(
        self, path: str | os.PathLike[str], metadata: Mapping[str, str] | None = None
    ) -> pathlib.Path:
        """Write the actor as an ONNX residual model (docs/onnx_contract.md).

        The file is written next to ``path`` under a temporary name, checked against torch,
        then moved over ``path`` with ``os.replace``: a hot-reloading residual node sees the
        old file or the new one, never a partial one.
        """
        props = {
            'task': self.config.task,
            'controller': self.config.controller,
            'algo': self.config.algo,
            'updates': str(self.agent.updates),
            'episodes': str(self.episodes),
            'source': 'trainer_node',
        }
        props.update(metadata or {})
        return export_onnx(self.agent.actor, path, self.config.residual_scale, props)


LEARNER_CHECKPOINT = 'offline_learner'
"""The ``kind`` of a checkpoint written by :func:`save_learner`."""


def save_learner(
    path: str | os.PathLike[str],
    learner: OfflineLearner,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Save the learner (and the caller's own counters) to ``path`` by atomic replace.

    The file format is :mod:`rpl_trainer.checkpoint`'s (``rpl train`` writes the same).

    Args:
        path: Checkpoint file; its folder is created if needed.
        learner: What to save (:meth:`OfflineLearner.state_dict`).
        extra: Plain values (numbers, strings, lists, dicts) returned by
            :func:`load_learner`, e.g. the trainer node's update debt.
    """
    state = {
        'kind': LEARNER_CHECKPOINT,
        'learner': learner.state_dict(),
        'extra': dict(extra or {}),
    }
    save_checkpoint(path, state)


def load_learner(path: str | os.PathLike[str], learner: OfflineLearner) -> dict[str, Any]:
    """Restore a learner saved by :func:`save_learner`; the file is only read.

    Returns:
        The ``extra`` values saved with it.

    Raises:
        rpl_trainer.checkpoint.CheckpointError: Missing, corrupt or unreadable file, another
            kind of checkpoint (e.g. an ``rpl train`` run's), or a learner of another config
            or size; the message names the file and the reason.
    """
    state = load_checkpoint(path)
    kind = state.get('kind') if isinstance(state, dict) else None
    if kind != LEARNER_CHECKPOINT:
        raise CheckpointError(
            f'checkpoint {path} is not a trainer node checkpoint (kind {kind!r}, expected '
            f'{LEARNER_CHECKPOINT!r}; an `rpl train` checkpoint cannot be resumed here)'
        )
    try:
        learner.load_state_dict(state['learner'])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f'checkpoint {path} is incomplete (missing {exc})') from exc
    except ValueError as exc:  # ParameterError included
        raise CheckpointError(f'cannot resume from checkpoint {path}: {exc}') from exc
    return dict(state.get('extra', {}))


__all__ = [
    'LEARNER_CHECKPOINT',
    'OfflineLearner',
    'UpdateDebt',
    'load_learner',
    'save_learner',
]
