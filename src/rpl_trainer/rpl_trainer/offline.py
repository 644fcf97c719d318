"""The learner on episodes this process did not collect (bags, live topics): the shared
:class:`rpl_trainer.learner.Learner` fed with :class:`rpl_trainer.episodes.EpisodeRecord`
(from :mod:`rpl_trainer.assembler` live, :mod:`rpl_trainer.bag_ingest` from bags), and
the trainer node's checkpoints (:func:`save_learner` / :func:`load_learner`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from rpl_trainer.checkpoint import (
    TRAINER_NODE,
    CheckpointError,
    load_learner_checkpoint,
    save_learner_checkpoint,
)
from rpl_trainer.config import TrainConfig
from rpl_trainer.episodes import EpisodeRecord, episode_batch
from rpl_trainer.learner import Learner, UpdateDebt


class OfflineLearner(Learner):
    """The shared learner, fed with episode records (``algo`` must be ``rpl``: the records
    hold base actions).

    Takes :class:`rpl_trainer.learner.Learner`'s arguments; the buffer stores T transitions
    per episode (with the terminal observation o_T), as ``rpl train``'s does.
    """

    only_algo = 'rpl'

    @classmethod
    def for_task(
        cls, config: TrainConfig, updates_per_transition: float | None = None
    ) -> OfflineLearner:
        """Learner for ``config.task`` with the task's sizes, length and reward of a sampled
        transition (a goal task's sparse reward of goals, a fixed-goal task's dense
        ``TaskSpec.step_reward``: :attr:`rpl_trainer.problem.Problem.transition_reward`,
        with ``reward_threshold``'s radius if set).

        Raises:
            ValueError: ``privileged_goal`` (episodes from bags or a live stack carry the
                observed goals only), or see :func:`registered_problem`.
        """
        from rpl_trainer.problem import registered_problem

        if config.privileged_goal:
            raise ValueError(
                'privileged_goal needs the simulator (rpl train): recorded and live episodes '
                'carry the observed achieved goals only; set privileged_goal=false (the trainer '
                'node: in train_overrides)'
            )
        problem = registered_problem(config.task, config.controller, config.controller_params)
        base_fn = problem.make_base_fn() if config.updates_use_base else None
        return cls(
            config,
            problem.dims,
            int(problem.spec.max_episode_steps),
            problem.training_reward(config.reward_threshold),
            base_fn,
            updates_per_transition,
            action_bounds=(problem.spec.action_low, problem.spec.action_high),
            action_fields=problem.spec.action_fields,
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
        return self.store(episode_batch(records, self.residual_scale))


def save_learner(
    path: str | os.PathLike[str],
    learner: Learner,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Save a trainer node checkpoint (the learner and the node's own counters) to ``path``
    by atomic replace (:func:`rpl_trainer.checkpoint.save_learner_checkpoint`).

    Args:
        path: Checkpoint file; its folder is created if needed.
        learner: What to save (:meth:`Learner.state_dict`).
        extra: Plain values (numbers, strings, lists, dicts) returned by
            :func:`load_learner`, e.g. the bags already ingested.
    """
    save_learner_checkpoint(path, TRAINER_NODE, learner.state_dict(), extra=dict(extra or {}))


def read_learner(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint saved by :func:`save_learner` (for :func:`load_learner`), without
    loading it into a learner: its ``learner`` config can build the learner first.

    Raises:
        rpl_trainer.checkpoint.CheckpointError: As :func:`load_learner`.
    """
    return load_learner_checkpoint(path, TRAINER_NODE)


def load_learner(
    path: str | os.PathLike[str], learner: Learner, state: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Resume a learner saved by :func:`save_learner`; the file is only read.

    Args:
        path: The checkpoint.
        learner: Loaded in place.
        state: The file as :func:`read_learner` read it already (it is not read again).

    Returns:
        The ``extra`` values saved with it.

    Raises:
        rpl_trainer.checkpoint.CheckpointError: Missing, corrupt or unreadable file, another
            kind of checkpoint (an ``rpl train`` run's: start from it with
            :func:`rpl_trainer.learner.start_from`), or a learner of another config or size;
            the message names the file and the reason.
    """
    if state is None:
        state = read_learner(path)
    try:
        learner.load_state_dict(state['learner'])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f'checkpoint {path} is incomplete (missing {exc})') from exc
    except ValueError as exc:  # ParameterError included
        raise CheckpointError(f'cannot resume from checkpoint {path}: {exc}') from exc
    return dict(state.get('extra', {}))


__all__ = [
    'OfflineLearner',
    'UpdateDebt',
    'load_learner',
    'read_learner',
    'save_learner',
]
