"""What ``rpl train`` (and the offline learner) needs to know about a task: sizes, picklable
environment factories, the pure HER reward and the batched base controller
(:class:`Problem`), built for a registered task and controller by :func:`registered_problem`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rpl_trainer.her import BaseFn, RewardFn
from rpl_trainer.networks import Dims
from rpl_trainer.rollout import EnvFactory, RegisteredEnv


@dataclasses.dataclass(frozen=True)
class Problem:
    """What the trainer needs to know about a task, with no live environment held.

    Attributes:
        spec: Task spec (dims, ``max_episode_steps``, ``action_low``/``action_high``,
            ``distance_threshold``, ``name``).
        env_factory: ``env_factory(with_controller) -> EnvFactory`` (picklable factories).
        reward_fn: Pure batched reward for HER (the task's ``TaskSpec.reward``).
        make_base_fn: Builds a batched, stateless base ``(B, obs), (B, goal) -> (B, A)`` for
            goal-consistent HER; None when there is no controller.
    """

    spec: Any
    env_factory: Callable[[bool], EnvFactory]
    reward_fn: RewardFn
    make_base_fn: Callable[[], BaseFn] | None = None

    @property
    def dims(self) -> Dims:
        """Observation, goal and action sizes."""
        return Dims(self.spec.obs_dim, self.spec.goal_dim, self.spec.action_dim)


def _task_reward(achieved: np.ndarray, desired: np.ndarray, info: Any = None, *, spec: Any):
    """HER's reward signature for the task's own reward (``TaskSpec.reward``: pure, batched,
    numpy only, so offline learning needs no simulator)."""
    return spec.reward(achieved, desired)


def check_goal_task(spec: Any) -> None:
    """Refuse a task the trainer cannot learn: one without goal fields (a fixed goal).

    The trainer's learners store goals and recompute every sampled transition's reward
    from them (HER, also with ``future_p`` 0), so a fixed-goal task, whose reward is not a
    function of goals, would be learned on a constant reward.

    Raises:
        ValueError: One line naming the task.
    """
    if spec.goal_dim == 0:
        raise ValueError(
            f'task {spec.name!r} has no goal (fixed-goal task, goal_dim 0); HER and the '
            "trainer's reward need one: the trainer learns goal tasks only"
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
            ``UnknownControllerError``), a task without goals (:func:`check_goal_task`), a
            controller not meant for the task, or a bad controller parameter
            (``ParameterError``).
    """
    from rpl_base_controllers.registry import controller_config, controller_info, params_from_text
    from rpl_sim_bridge.tasks import task_spec

    spec = task_spec(task)
    check_goal_task(spec)
    make_base_fn = None
    if controller is not None:
        info = controller_info(controller)
        if task not in info.tasks:
            raise ValueError(
                f'controller {controller!r} is meant for tasks {list(info.tasks)}, not {task!r}'
            )
        controller_config(controller, task, **params_from_text(controller, controller_params))
        make_base_fn = functools.partial(_registered_base_fn, controller, task, controller_params)
    return Problem(
        spec=spec,
        env_factory=lambda with_controller: RegisteredEnv(
            task, controller if with_controller else None, controller_params
        ),
        reward_fn=functools.partial(_task_reward, spec=spec),
        make_base_fn=make_base_fn,
    )


__all__: Sequence[str] = ('Problem', 'check_goal_task', 'registered_problem')
