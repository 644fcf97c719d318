"""Controllers by name: the one place that maps a parameter string to a controller.

Swapping base controllers is a parameter (``controller: reactive_push``), never code:
nodes, the trainer and the evaluation loop all call :func:`make_controller`. More
controllers (hooks, cached PETS) join with :func:`register_controller`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from rpl_base_controllers.base import BaseController
from rpl_base_controllers.reactive_pick_and_place import (
    CALIBRATED_CARRY_GAIN,
    MISCALIBRATED_CARRY_GAIN,
    ReactivePickAndPlace,
    ReactivePickAndPlaceConfig,
)
from rpl_base_controllers.reactive_push import ReactivePush, ReactivePushConfig
from rpl_base_controllers.zero import ZeroController
from rpl_interfaces.params import build_config

# factory(task, **params) -> controller; task is the task name or None.
ControllerFactory = Callable[..., BaseController]


class UnknownControllerError(ValueError):
    """No controller is registered under the requested name."""


@dataclasses.dataclass(frozen=True)
class ControllerInfo:
    """What a registered controller is and which tasks it is meant for.

    Attributes:
        name: Registry name.
        description: One line for humans (shown by ``describe`` tools and errors).
        tasks: Task names (as in :func:`rpl_sim_bridge.tasks.make_task`) it suits.
    """

    name: str
    description: str
    tasks: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class _Entry:
    info: ControllerInfo
    factory: ControllerFactory


_REGISTRY: dict[str, _Entry] = {}


def register_controller(
    name: str,
    factory: ControllerFactory,
    *,
    description: str,
    tasks: tuple[str, ...],
    replace: bool = False,
) -> None:
    """Make a controller available to :func:`make_controller` under ``name``.

    Args:
        name: Registry name (the ``controller`` parameter value).
        factory: ``factory(task, **params) -> BaseController``; ``task`` is the task name or
            None, ``params`` the controller's config fields.
        description: One line saying what it does.
        tasks: Task names it suits; :func:`make_controller` refuses any other task.
        replace: Allow replacing an existing registration.

    Raises:
        ValueError: ``name`` is already registered and ``replace`` is False, or ``tasks`` is
            empty.
    """
    if name in _REGISTRY and not replace:
        raise ValueError(f'controller {name!r} is already registered; pass replace=True')
    if not tasks:
        raise ValueError(f'controller {name!r} must name at least one task it suits')
    _REGISTRY[name] = _Entry(ControllerInfo(name, description, tuple(tasks)), factory)


def available_controllers() -> list[str]:
    """Names of all registered controllers, sorted."""
    return sorted(_REGISTRY)


def controller_info(name: str) -> ControllerInfo:
    """Description and suitable tasks of a registered controller.

    Raises:
        UnknownControllerError: ``name`` is not registered.
    """
    return _lookup(name).info


def make_controller(name: str, task: str | None = None, **params: Any) -> BaseController:
    """Build a registered controller.

    Args:
        name: Registry name, e.g. ``'reactive_push'``.
        task: The task it will control; checked against the controller's suitable tasks.
            Controllers that simulate (``discrete_mpc_push``) build their planning model
            from it. None skips the check and uses the controller's default task.
        **params: Config fields of the controller (see its config dataclass).

    Raises:
        UnknownControllerError: ``name`` is not registered (the message lists known names).
        ValueError: ``task`` is not one the controller suits.
        rpl_interfaces.params.ParameterError: A bad parameter name or value.
    """
    entry = _lookup(name)
    if task is not None and task not in entry.info.tasks:
        raise ValueError(
            f'controller {name!r} is meant for tasks {list(entry.info.tasks)}, not {task!r}'
        )
    return entry.factory(task, **params)


def _lookup(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownControllerError(
            f'unknown controller {name!r}; known controllers: {available_controllers()}'
        ) from None


# Built-in controllers. The planner's import (MuJoCo, a task instance) is deferred.


def _reactive_push(task: str | None, **params: Any) -> BaseController:
    return ReactivePush(build_config(ReactivePushConfig, params), name='reactive_push')


def _pick_and_place_factory(name: str, carry_gain: float) -> ControllerFactory:
    def factory(task: str | None, **params: Any) -> BaseController:
        values = {'carry_gain': carry_gain, **params}
        return ReactivePickAndPlace(build_config(ReactivePickAndPlaceConfig, values), name=name)

    return factory


def _discrete_mpc_push(task: str | None, **params: Any) -> BaseController:
    from rpl_base_controllers.discrete_mpc_push import DiscreteMPCPush, DiscreteMPCPushConfig

    values = dict(params)
    if task is not None:
        values.setdefault('task', task)
    return DiscreteMPCPush(build_config(DiscreteMPCPushConfig, values), name='discrete_mpc_push')


register_controller(
    'reactive_push',
    _reactive_push,
    description='hand-designed pusher: above the push point, descend, push (gains 10 / 5)',
    tasks=('push', 'slippery_push'),
)
register_controller(
    'reactive_pick_and_place',
    _pick_and_place_factory('reactive_pick_and_place', MISCALIBRATED_CARRY_GAIN),
    description='hand-designed pick and place, miscalibrated: grasp 2 cm low, carry gain 83 '
    "(oscillates; the paper's 50 for a gripper that tracks its whole command)",
    tasks=('pick_and_place',),
)
register_controller(
    'reactive_pick_and_place_calibrated',
    _pick_and_place_factory('reactive_pick_and_place_calibrated', CALIBRATED_CARRY_GAIN),
    description='hand-designed pick and place with gain 10 everywhere',
    tasks=('pick_and_place',),
)
register_controller(
    'zero',
    lambda task, **params: ZeroController(**params),
    description='holds still (action 0): the base under Scratch / Expert Explore models',
    tasks=('push', 'slippery_push', 'pick_and_place'),
)
register_controller(
    'discrete_mpc_push',
    _discrete_mpc_push,
    description='best-first search over 6 unit moves on a planning copy of the simulator',
    tasks=('push', 'slippery_push'),
)
