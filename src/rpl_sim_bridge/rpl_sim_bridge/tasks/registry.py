"""Task registry: names -> (TaskSpec, factory), so new tasks plug in without touching callers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rpl_sim_bridge.tasks.goal_task import GoalTask


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What a caller needs to know about a goal task without building it.

    Attributes:
        name: Registry name, e.g. ``'push'``.
        description: One line for humans.
        obs_dim: Length of ``observation`` (e.g. 25 for Fetch).
        goal_dim: Length of ``achieved_goal`` and ``desired_goal`` (3: block xyz, m).
        action_dim: Length of the action (4 for Fetch: gripper dx, dy, dz, finger).
        max_episode_steps: Episode length T; ``step`` reports ``truncated`` at step T.
        distance_threshold: Success radius around the goal, m.
        obs_fields: One readable name per observation entry (``len == obs_dim``).
        action_low: Lower bound of every action entry (actions are clipped to it).
        action_high: Upper bound of every action entry.
        control_dt: Control period, s (one ``step``).
    """

    name: str
    description: str
    obs_dim: int
    goal_dim: int
    action_dim: int
    max_episode_steps: int
    distance_threshold: float
    obs_fields: tuple[str, ...]
    action_low: float
    action_high: float
    control_dt: float

    def __post_init__(self) -> None:
        if len(self.obs_fields) != self.obs_dim:
            raise ValueError(
                f'task {self.name!r}: {len(self.obs_fields)} obs_fields for obs_dim {self.obs_dim}'
            )
        if not self.action_low < self.action_high:
            raise ValueError(
                f'task {self.name!r}: action_low {self.action_low} must be below '
                f'action_high {self.action_high}'
            )


TaskFactory = Callable[..., 'GoalTask']
"""Builds a task; keyword arguments are the task's config overrides."""


class UnknownTaskError(ValueError):
    """A task name that is not registered; the message lists the registered names."""


_REGISTRY: dict[str, tuple[TaskSpec, TaskFactory]] = {}


def register_task(name: str, spec: TaskSpec, factory: TaskFactory, *, replace: bool = False):
    """Register a goal task under ``name``.

    Args:
        name: Registry name; must equal ``spec.name``.
        spec: The task's spec with default settings.
        factory: ``factory(**overrides) -> GoalTask``.
        replace: Allow replacing an existing registration (otherwise an error).

    Raises:
        ValueError: Name already taken (and ``replace`` is false) or not equal to ``spec.name``.
    """
    if name != spec.name:
        raise ValueError(f'register_task: name {name!r} differs from spec.name {spec.name!r}')
    if name in _REGISTRY and not replace:
        raise ValueError(f'task {name!r} is already registered; pass replace=True to replace it')
    _REGISTRY[name] = (spec, factory)


def available_tasks() -> list[str]:
    """Registered task names, sorted."""
    return sorted(_REGISTRY)


def _lookup(name: str) -> tuple[TaskSpec, TaskFactory]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownTaskError(
            f'unknown task {name!r}; known tasks: {", ".join(available_tasks())}'
        ) from None


def task_spec(name: str) -> TaskSpec:
    """Spec of a registered task with its default settings.

    Raises:
        UnknownTaskError: ``name`` is not registered (the message lists the known names).
    """
    return _lookup(name)[0]


def make_task(name: str, **overrides: Any) -> GoalTask:
    """Build a fresh instance of a registered task.

    Args:
        name: Registry name, e.g. ``'slippery_push'``.
        **overrides: Config values to change (e.g. ``max_episode_steps=100``); the task's
            config class validates them and rejects unknown names.

    Raises:
        UnknownTaskError: ``name`` is not registered (the message lists the known names).
    """
    return _lookup(name)[1](**overrides)
