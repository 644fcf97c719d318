"""Task registry: names -> (TaskSpec, factory), so new tasks plug in without touching callers.

The Fetch tasks register themselves (:mod:`rpl_sim_bridge.tasks.specs`; their factories import
MuJoCo when a task is built, never the look-ups here); a user's own tasks
join from another installed package through the entry-point group ``rpl.tasks`` (the entry
point's name is the task's name, its object a :class:`TaskPlugin`), loaded on the first
look-up, or with :func:`register_task`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from rpl_interfaces import contract
from rpl_interfaces.failures import raised_at
from rpl_interfaces.plugins import load_plugins
from rpl_sim_bridge.tasks.rewards import goal_success, sparse_reward

if TYPE_CHECKING:
    from rpl_sim_bridge.tasks.goal_task import GoalTask


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What a caller needs to know about a task without building it: its fields, sizes,
    episode length, action bounds and units, and (:meth:`reward`, :meth:`success`) its pure,
    batched reward and success of goals.

    Attributes:
        name: Registry name, e.g. ``'push'``.
        description: One line for humans.
        obs_dim: Length of ``observation`` (e.g. 25 for Fetch).
        goal_dim: Length of ``achieved_goal`` and ``desired_goal`` (3 for Fetch: block
            xyz, m); 0 for a fixed-goal task (no goal fields: the goal is part of the task,
            the observation alone decides the action).
        action_dim: Length of the action (4 for Fetch: gripper dx, dy, dz, finger).
        max_episode_steps: Episode length T; ``step`` reports ``truncated`` at step T.
        distance_threshold: Success radius around the goal, m.
        obs_fields: One readable name per observation entry (``len == obs_dim``).
        action_low: Lower bound of every action entry (actions are clipped to it).
        action_high: Upper bound of every action entry.
        control_dt: Control period, s (one ``step``).
        action_fields: One name per action entry (``len == action_dim``), the payload names
            of ``base_action`` and ``command``; a spec that declares none gets ``a0``,
            ``a1``, ... (the Fetch tasks declare ``dx, dy, dz, gripper``).
        goal_fields: One name per goal coordinate (``len == goal_dim``): the payload names
            ``achieved_goal.<g>`` and ``desired_goal.<g>`` of the observation; a spec that
            declares none gets ``g0``, ``g1``, ... (the Fetch tasks declare ``x, y, z``;
            a fixed-goal task has ``goal_dim`` 0 and none).
        action_units: Short description of the action entries' units and meaning, for
            humans (e.g. ``'dx, dy, dz: x 0.05 m per step; gripper: +1 opens'``).
        step_reward: A fixed-goal task's dense reward of a transition, pure and batched
            (numpy only, no simulator): ``step_reward(next_obs (..., obs_dim), action
            (..., action_dim)) -> (...)`` float32, where ``action`` is the executed
            (clipped) action and ``next_obs`` the observation after it; what ``step``
            returns. Required when ``goal_dim`` is 0 and the task is to be learned; goal
            tasks leave it None (their reward is :meth:`reward` of goals).
        obs_success: A fixed-goal task's success of an observation, pure and batched:
            ``obs_success(obs (..., obs_dim)) -> (...)`` float32 1 or 0 (the episode's
            success is that of its last observation). None for goal tasks.
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
    action_fields: tuple[str, ...] = ()
    goal_fields: tuple[str, ...] = ()
    action_units: str = ''
    step_reward: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    obs_success: Callable[[np.ndarray], np.ndarray] | None = None

    def __post_init__(self) -> None:
        for what, dim, least in (
            ('obs_dim', self.obs_dim, 1),
            ('goal_dim', self.goal_dim, 0),
            ('action_dim', self.action_dim, 1),
            ('max_episode_steps', self.max_episode_steps, 1),
        ):
            if not isinstance(dim, int) or isinstance(dim, bool) or dim < least:
                raise ValueError(
                    f'task {self.name!r}: {what} {dim!r} must be an integer >= {least}'
                )
        goal_fields = tuple(self.goal_fields) or tuple(f'g{i}' for i in range(self.goal_dim))
        action_fields = tuple(self.action_fields) or tuple(f'a{i}' for i in range(self.action_dim))
        object.__setattr__(self, 'goal_fields', goal_fields)
        object.__setattr__(self, 'action_fields', action_fields)
        object.__setattr__(self, 'obs_fields', tuple(self.obs_fields))
        for what, names, dim_name, dim in (
            ('obs_fields', self.obs_fields, 'obs_dim', self.obs_dim),
            ('goal_fields', self.goal_fields, 'goal_dim', self.goal_dim),
            ('action_fields', self.action_fields, 'action_dim', self.action_dim),
        ):
            if len(names) != dim:
                raise ValueError(f'task {self.name!r}: {len(names)} {what} for {dim_name} {dim}')
            bad = [n for n in names if not isinstance(n, str) or not n or n != n.strip()]
            if bad:
                raise ValueError(
                    f'task {self.name!r}: {what} must be non-empty names without surrounding '
                    f'spaces; got {bad[0]!r}'
                )
            if len(set(names)) != len(names):
                dup = next(n for n in names if names.count(n) > 1)
                raise ValueError(f'task {self.name!r}: {what} names {dup!r} more than once')
        goal_like = [
            n
            for n in self.obs_fields
            if n.startswith((contract.ACHIEVED_GOAL_PREFIX, contract.DESIRED_GOAL_PREFIX))
        ]
        if goal_like:
            raise ValueError(
                f'task {self.name!r}: obs_fields name {goal_like[0]!r} starts with a goal '
                'prefix; declare goal coordinates in goal_fields'
            )
        for what, names in (
            ('obs_fields', self.obs_fields),
            ('goal_fields', self.goal_fields),
            ('action_fields', self.action_fields),
        ):
            taken = [n for n in names if n in contract.META_FIELDS]
            if taken:  # a reader by name would take the header's value for it
                raise ValueError(
                    f'task {self.name!r}: {what} name {taken[0]!r}, which every message '
                    f'already uses for its header ({", ".join(contract.META_FIELDS)}); '
                    'rename it'
                )
        if not self.action_low < self.action_high:
            raise ValueError(
                f'task {self.name!r}: action_low {self.action_low} must be below '
                f'action_high {self.action_high}'
            )

    @property
    def has_goal(self) -> bool:
        """Whether the task is goal-conditioned (``goal_dim > 0``); False for a fixed goal."""
        return self.goal_dim > 0

    def reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        """The task's reward of goals, pure and batched: ``-(distance > distance_threshold)``.

        Args:
            achieved_goal: Achieved goals (..., goal_dim).
            desired_goal: Desired goals (..., goal_dim).

        Returns:
            Rewards (...), float32, 0 or -1 (what ``step`` returns; HER recomputes it).

        Raises:
            ValueError: A fixed-goal task (no goal fields), or goals of another size.
        """
        achieved, desired = self._goals(achieved_goal, desired_goal)
        return sparse_reward(achieved, desired, self.distance_threshold)

    def success(self, achieved_goal: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        """The task's success of goals, pure and batched: 1 within ``distance_threshold``
        (exactly ``reward == 0``), else 0; float32 (...). Raises like :meth:`reward`."""
        achieved, desired = self._goals(achieved_goal, desired_goal)
        return goal_success(achieved, desired, self.distance_threshold)

    def transition_reward(self, next_obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        """A fixed-goal task's dense reward of transitions (:attr:`step_reward`), batched:
        ``(..., obs_dim), (..., action_dim) -> (...)`` float32.

        Raises:
            ValueError: The task declares no ``step_reward`` (a goal task: use
                :meth:`reward`), or arrays of another size.
        """
        if self.step_reward is None:
            raise ValueError(
                f'task {self.name!r} declares no step_reward (a goal task rewards goals: '
                'TaskSpec.reward)'
            )
        next_obs, action = np.asarray(next_obs), np.asarray(action)
        self._check_last(next_obs, 'next_obs', self.obs_dim)
        self._check_last(action, 'action', self.action_dim)
        return np.asarray(self.step_reward(next_obs, action), dtype=np.float32)

    def final_success(self, obs: np.ndarray) -> np.ndarray:
        """A fixed-goal task's success of observations (:attr:`obs_success`), batched:
        ``(..., obs_dim) -> (...)`` float32 1 or 0. Raises like :meth:`transition_reward`."""
        if self.obs_success is None:
            raise ValueError(
                f'task {self.name!r} declares no obs_success (a goal task: TaskSpec.success)'
            )
        obs = np.asarray(obs)
        self._check_last(obs, 'obs', self.obs_dim)
        return np.asarray(self.obs_success(obs), dtype=np.float32)

    def _check_last(self, array: np.ndarray, what: str, size: int) -> None:
        if array.shape[-1:] != (size,):
            raise ValueError(
                f'task {self.name!r}: {what} must have shape (..., {size}), got {array.shape}'
            )

    def _goals(self, achieved: np.ndarray, desired: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.has_goal:
            raise ValueError(
                f'task {self.name!r} has a fixed goal (no goal fields): its reward and success '
                'are not functions of goals'
            )
        achieved, desired = np.asarray(achieved), np.asarray(desired)
        for what, goals in (('achieved_goal', achieved), ('desired_goal', desired)):
            if goals.shape[-1:] != (self.goal_dim,):
                raise ValueError(
                    f'task {self.name!r}: {what} must have shape (..., {self.goal_dim}), '
                    f'got {goals.shape}'
                )
        return achieved, desired


TaskFactory = Callable[..., 'GoalTask']
"""Builds a task; keyword arguments are the task's config overrides."""


class SimulatorUnavailableError(ImportError):
    """A task was built where its simulator (MuJoCo, Gymnasium-Robotics) is not installed."""


class SimulatedTaskFactory:
    """Factory of a built-in simulated task that imports its simulation module on the first
    build, so that registering (and reading) the task's spec needs no simulator.

    Args:
        name: Registered task name (passed to the builder).
        module: Module of the simulated task, e.g. ``'rpl_sim_bridge.tasks.fetch'``.
        builder: Name of its ``builder(name, **overrides) -> GoalTask`` function.
        needs: What the module needs, for the error (e.g. ``'mujoco and gymnasium-robotics'``).
    """

    def __init__(self, name: str, module: str, builder: str, needs: str) -> None:
        self.name, self.module, self.builder, self.needs = name, module, builder, needs

    def __call__(self, **overrides: Any) -> GoalTask:
        """Build the task with config overrides.

        Raises:
            SimulatorUnavailableError: The simulation module cannot be imported here.
        """
        try:
            module = importlib.import_module(self.module)
        except ImportError as exc:
            raise SimulatorUnavailableError(
                f'task {self.name!r} cannot be simulated here: {exc} (it needs {self.needs}; '
                'its spec does not)'
            ) from exc
        return getattr(module, self.builder)(self.name, **overrides)

    def __repr__(self) -> str:
        return f'{self.builder}({self.name!r}, ...)'


ENTRY_POINT_GROUP = 'rpl.tasks'


class TaskPlugin(NamedTuple):
    """Declaration of a task: the object an ``rpl.tasks`` entry point names.

    Attributes:
        spec: The task's spec with default settings (``spec.name`` = the entry point name).
        factory: ``factory(**overrides) -> GoalTask``.
    """

    spec: TaskSpec
    factory: TaskFactory


class UnknownTaskError(ValueError):
    """A task name that is not registered; the message lists the registered names."""


class TaskBuildError(ValueError):
    """A task's factory raised (a plug-in's bug) or returned no task (one line)."""


_REGISTRY: dict[str, tuple[TaskSpec, TaskFactory]] = {}
_SKIPPED: dict[str, str] = {}  # plug-in name -> why it was skipped
_CLAIMED_TWICE: dict[str, str] = {}  # a name a plug-in registered again -> that plug-in
_PLUGINS: set[str] = set()  # tasks an rpl.tasks entry point registered
_plugins_loaded = False


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


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True

    def register(name: str, plugin: TaskPlugin, source: str) -> None:
        if not isinstance(plugin.spec, TaskSpec) or not callable(plugin.factory):
            raise ValueError('must be TaskPlugin(spec: TaskSpec, factory: callable)')
        if name in _REGISTRY:
            _CLAIMED_TWICE[name] = source
            raise ValueError(f'names task {name!r}, which is already registered')
        register_task(name, plugin.spec, plugin.factory)
        _PLUGINS.add(name)

    _SKIPPED.update(load_plugins(ENTRY_POINT_GROUP, TaskPlugin, register))


def available_tasks() -> list[str]:
    """Registered task names (built-in and plug-ins), sorted."""
    _load_plugins()
    return sorted(_REGISTRY)


def is_plugin(name: str) -> bool:
    """Whether an ``rpl.tasks`` entry point registered ``name`` (foreign code)."""
    _load_plugins()
    return name in _PLUGINS


def check_plugin_task(name: str) -> None:
    """Build a plug-in task once and reset it (its factory and ``observe()`` are foreign
    code), so that a fault there is one line before anything is written; built-in tasks
    are not built.

    Raises:
        TaskBuildError, ValueError: What :func:`make_task` or the first ``reset`` raised.
    """
    if not is_plugin(name):
        return
    task = make_task(name)
    try:
        task.reset(seed=0)
    finally:
        close = getattr(task, 'close', None)
        if callable(close):
            close()


def skipped_plugins() -> dict[str, str]:
    """Plug-in tasks that failed to load: name -> the one-line reason."""
    _load_plugins()
    return dict(_SKIPPED)


def _lookup(name: str) -> tuple[TaskSpec, TaskFactory]:
    _load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        if name in _SKIPPED:
            raise UnknownTaskError(
                f'task {name!r} is a plug-in that failed to load: {_SKIPPED[name]}'
            ) from None
        raise UnknownTaskError(
            f'unknown task {name!r}; known tasks: {", ".join(available_tasks())}'
        ) from None


def task_spec(name: str) -> TaskSpec:
    """Spec of a registered task with its default settings.

    Raises:
        UnknownTaskError: ``name`` is not registered (the message lists the known names).
    """
    return _lookup(name)[0]


def check_claimed_once(name: str) -> None:
    """Raises UnknownTaskError when a plug-in registered ``name`` again: asking for it is
    refused (the first registration would run, never the plug-in's)."""
    _load_plugins()
    if name in _CLAIMED_TWICE:
        raise UnknownTaskError(
            f'task {name!r} is registered twice (again by {_CLAIMED_TWICE[name]}): the first '
            'registration ran, never this one; rename or uninstall the plug-in'
        )


def make_task(name: str, **overrides: Any) -> GoalTask:
    """Build a fresh instance of a registered task.

    Args:
        name: Registry name, e.g. ``'slippery_push'``.
        **overrides: Config values to change (e.g. ``max_episode_steps=100``); the task's
            config class validates them and rejects unknown names.

    Raises:
        UnknownTaskError: ``name`` is not registered (the message lists the known names), or
            a plug-in registered it again (which one ran would depend on the install order).
    """
    factory = _lookup(name)[1]
    check_claimed_once(name)
    try:
        task = factory(**overrides)
    except (ValueError, ImportError):
        raise  # a bad override, a package missing here: as they are
    except Exception as exc:  # a plug-in's bug: one line, as for a controller
        if overrides and isinstance(exc, TypeError):
            raise  # an override the task's config does not take
        raise TaskBuildError(
            f'task {name!r} could not be built: {raised_at(exc, skip=[__file__])}'
        ) from exc
    if task is None:
        raise TaskBuildError(f'task {name!r}: its factory returned None, not a task')
    if not overrides:  # settings changed on purpose change the spec too
        difference = _spec_difference(_lookup(name)[0], getattr(task, 'spec', None))
        if difference is not None:
            raise TaskBuildError(
                f'task {name!r}: the task its factory built differs from the spec it '
                f'registered ({difference}): the trainer takes the registered one, the '
                'simulation the built one; register the spec of the task the factory builds '
                'by default'
            )
    return task


def _spec_difference(registered: TaskSpec, built: object) -> str | None:
    """The first data field that differs between the registered and the built spec, in
    words, or None. Functions (``step_reward``, ``obs_success``) are not compared: a
    plug-in that builds its spec again makes new ones (a lambda, a ``functools.partial``)
    that never compare equal."""
    if not isinstance(built, TaskSpec):
        return f'its spec is {type(built).__name__}, not a TaskSpec'
    for field in dataclasses.fields(TaskSpec):
        ours, theirs = getattr(registered, field.name), getattr(built, field.name)
        if callable(ours) and callable(theirs):
            continue
        if ours != theirs:
            return f'{field.name} {_short(ours)} registered, {_short(theirs)} built'
    return None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + '...'
