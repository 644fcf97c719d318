"""What ``rpl train`` (and the offline learner) needs to know about a task: sizes, picklable
environment factories, the pure reward of a sampled transition and the batched base
controller (:class:`Problem`), built for a registered task and controller by
:func:`registered_problem`.

Two kinds of task train: goal tasks (sparse reward of goals, recomputed for HER's
relabelled goals) and fixed-goal tasks (``goal_dim`` 0) that declare the dense reward of a
transition (``TaskSpec.step_reward``); :func:`check_trainable_task` refuses the rest.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rpl_trainer.her import BaseFn, GoalReward, RewardFn, StepReward, TransitionReward
from rpl_trainer.networks import Dims
from rpl_trainer.rollout import EnvFactory, RegisteredEnv


@dataclasses.dataclass(frozen=True)
class Problem:
    """What the trainer needs to know about a task, with no live environment held.

    Attributes:
        spec: Task spec (dims, ``max_episode_steps``, ``action_low``/``action_high``,
            ``distance_threshold``, ``name``).
        env_factory: ``env_factory(with_controller) -> EnvFactory`` (picklable factories).
        reward_fn: A goal task's pure batched reward of goals for HER (its
            ``TaskSpec.reward``); None for a fixed-goal task (its reward is the spec's
            ``transition_reward``).
        make_base_fn: Builds a batched, stateless base ``(B, obs), (B, goal) -> (B, A)`` for
            goal-consistent HER; None when there is no controller.
    """

    spec: Any
    env_factory: Callable[[bool], EnvFactory]
    reward_fn: RewardFn | None
    make_base_fn: Callable[[], BaseFn] | None = None

    @property
    def dims(self) -> Dims:
        """Observation, goal and action sizes."""
        return Dims(self.spec.obs_dim, self.spec.goal_dim, self.spec.action_dim)

    @property
    def fixed_goal(self) -> bool:
        """The task has no goal fields (``goal_dim`` 0): a dense reward, returns reported."""
        return self.spec.goal_dim == 0

    @property
    def transition_reward(self) -> TransitionReward:
        """The reward of a sampled transition the learner's sampler uses: a goal task's
        :attr:`reward_fn` of (achieved goal o_{t+1}, goal), a fixed-goal task's
        ``spec.transition_reward`` of (o_{t+1}, executed a_t).

        Raises:
            ValueError: See :func:`check_trainable_task`.
        """
        check_trainable_task(self.spec)
        if self.fixed_goal:
            return StepReward(self.spec.transition_reward)
        return GoalReward(self.reward_fn)

    def training_reward(self, radius: float = 0.0) -> TransitionReward:
        """:attr:`transition_reward`, or with ``radius`` > 0 a goal task's sparse reward
        within ``radius`` m instead of the task's ``distance_threshold`` (``reward_threshold``:
        the learner's reward only; success is still the task's).

        Raises:
            ValueError: A radius for a fixed-goal task (its reward is dense).
        """
        if radius <= 0.0:
            return self.transition_reward
        if self.fixed_goal:
            raise ValueError(
                f'reward_threshold is for goal tasks; {self.spec.name} has a dense step reward'
            )
        return GoalReward(functools.partial(_radius_reward, radius=radius))

    def episode_scores(
        self, obs: np.ndarray, executed: np.ndarray, success: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Success and return of N finished episodes.

        Args:
            obs: Observations o_0 .. o_T, (N, T + 1, obs_dim).
            executed: Executed actions, (N, T, action_dim), action units.
            success: The task's ``is_success`` at the last step, (N,).

        Returns:
            Success (N,) and, for a fixed-goal task, the return (N,): the sum over the T
            steps of ``spec.transition_reward(o_{t+1}, a_t)`` (float64); its success is
            ``spec.final_success(o_T)`` where the spec declares ``obs_success``, else the
            task's. A goal task: ``success`` and None.
        """
        if not self.fixed_goal:
            return success, None
        rewards = self.spec.transition_reward(obs[:, 1:], executed)  # (N, T)
        if self.spec.obs_success is not None:
            success = self.spec.final_success(obs[:, -1])
        return success, rewards.astype(np.float64).sum(axis=1)


def _radius_reward(achieved: np.ndarray, desired: np.ndarray, info: Any = None, *, radius: float):
    """HER's reward signature for the sparse goal reward with another success radius."""
    from rpl_sim_bridge.tasks.rewards import sparse_reward

    return sparse_reward(achieved, desired, radius)


def _task_reward(achieved: np.ndarray, desired: np.ndarray, info: Any = None, *, spec: Any):
    """HER's reward signature for the task's own reward (``TaskSpec.reward``: pure, batched,
    numpy only, so offline learning needs no simulator)."""
    return spec.reward(achieved, desired)


def check_trainable_task(spec: Any) -> None:
    """Refuse a task the trainer cannot learn: a fixed-goal task (no goal fields) that
    declares no ``step_reward``.

    The learners recompute every sampled transition's reward from the stored episode: of
    goals for a goal task, of (o_{t+1}, executed a_t) for a fixed-goal task, which needs
    the task's pure dense reward ``TaskSpec.step_reward`` for that.

    Raises:
        ValueError: One line naming the task.
    """
    if spec.goal_dim == 0 and getattr(spec, 'step_reward', None) is None:
        raise ValueError(
            f'task {spec.name!r} has a fixed goal (goal_dim 0) but declares no step_reward: '
            'the trainer learns a fixed-goal task from its dense reward of a transition'
        )


def _registered_base_fn(controller: str, task: str, controller_params: str = '') -> BaseFn:
    from rpl_base_controllers.registry import make_controller, params_from_text

    params = params_from_text(controller, controller_params)
    return make_controller(controller, task=task, **params).act_batch


def registered_problem(task: str, controller: str | None, controller_params: str = '') -> Problem:
    """Problem for a registered task and controller, with errors that list the valid names.

    Args:
        task: Registered task name.
        controller: Registered controller name, None for no base.
        controller_params: The controller's parameters, ``'NAME=VALUE,...'``.

    Raises:
        ValueError: Unknown task or controller (``UnknownTaskError`` /
            ``UnknownControllerError``), a fixed-goal task without a step reward
            (:func:`check_trainable_task`), a
            controller not meant for the task, or a bad controller parameter
            (``ParameterError``).
    """
    from rpl_base_controllers.registry import (
        BUILT_IN,
        controller_config,
        controller_info,
        make_controller,
        params_from_text,
    )
    from rpl_sim_bridge.tasks import task_spec
    from rpl_sim_bridge.tasks.registry import check_claimed_once

    spec = task_spec(task)
    check_claimed_once(task)  # a name two registrations claim: before any file is written
    check_trainable_task(spec)
    make_base_fn = None
    if controller is not None:
        # An unknown controller, one of another task, bad parameters: one line each.
        params = params_from_text(controller, controller_params)
        controller_config(controller, task, **params)
        if controller_info(controller).source != BUILT_IN:
            # A plug-in's factory is foreign code: built once here, so that its failure is
            # one line before the run folder is written (not a traceback from the rollout).
            make_controller(controller, task, **params)
        make_base_fn = functools.partial(_registered_base_fn, controller, task, controller_params)
    return Problem(
        spec=spec,
        env_factory=lambda with_controller: RegisteredEnv(
            task, controller if with_controller else None, controller_params
        ),
        reward_fn=functools.partial(_task_reward, spec=spec) if spec.has_goal else None,
        make_base_fn=make_base_fn,
    )


__all__: Sequence[str] = ('Problem', 'check_trainable_task', 'registered_problem')
