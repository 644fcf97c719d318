"""Controllers by name: the one place that maps a parameter string to a controller.

Swapping base controllers is a parameter (``controller: reactive_push``), never code:
nodes, the trainer and the evaluation loop all call :func:`make_controller`.

A controller is declared by a :class:`ControllerSpec`: what it is, the tasks it suits, its
factory and its typed parameters (a frozen config dataclass, each field a parameter with a
description and range, e.g. ``carry_gain``). The built-in controllers are registered
below; a user's own controllers join from another installed package through the entry-point
group ``rpl.controllers`` (the entry point's name is the controller's name, its object a
``ControllerSpec``), loaded on the first look-up, or with :func:`register_controller`.

Parameters are set by name: ``make_controller(name, carry_gain=50.0)``, as text with
:func:`parse_controller_params` (``rpl eval --controller-param carry_gain=50``), as ROS
parameters of the controller node and as launch arguments (``carry_gain:=50``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rpl_base_controllers.base import BaseController
from rpl_base_controllers.cached_pets import CachedPETSConfig
from rpl_base_controllers.pets import PETSConfig
from rpl_base_controllers.reactive_hook import ReactiveHook, ReactiveHookConfig
from rpl_base_controllers.reactive_pick_and_place import (
    CALIBRATED_CARRY_GAIN,
    MISCALIBRATED_CARRY_GAIN,
    ReactivePickAndPlace,
    ReactivePickAndPlaceConfig,
)
from rpl_base_controllers.reactive_push import ReactivePush, ReactivePushConfig
from rpl_base_controllers.zero import ZERO, ZeroController
from rpl_interfaces.failures import raised_at
from rpl_interfaces.params import ParameterError, build_config
from rpl_interfaces.plugins import load_plugins
from rpl_sim_bridge.tasks.pusher_specs import PUSHER_TASKS

ENTRY_POINT_GROUP = 'rpl.controllers'
# A config field with this name is no parameter: it receives the task the controller runs
# on (a planning controller builds its model from it).
TASK_FIELD = 'task'
# Names of the controller node's own parameters: no controller parameter may take them.
RESERVED_NAMES = ('controller', 'controller_params', TASK_FIELD)
BUILT_IN = 'built-in'  # the source of the project's own controllers
# In ControllerSpec.tasks: the controller suits every registered task (it sizes itself from
# the task's spec, as the zero controller does).
ANY_TASK = '*'
# The stack launch files' ``controller:=external``: start no controller node, the user's own
# node (any language) publishes base_action. No controller may be registered under it.
EXTERNAL_CONTROLLER = 'external'

# factory(name, task, config) -> controller; task is the task name or None, config the
# validated config dataclass (None for a controller without parameters).
ControllerFactory = Callable[[str, 'str | None', Any], BaseController]


class UnknownControllerError(ValueError):
    """No controller is registered under the requested name."""


@dataclasses.dataclass(frozen=True)
class ControllerSpec:
    """Declaration of a controller: the object an ``rpl.controllers`` entry point names.

    Attributes:
        factory: ``factory(name, task, config) -> BaseController``: ``name`` is the registry
            name (the controller's ``name`` attribute), ``task`` the task name or None,
            ``config`` an instance of ``config`` with the parameter values (None without).
        description: One line for humans (``rpl list controllers``).
        tasks: Task names (as in :func:`rpl_sim_bridge.tasks.make_task`) it suits, or
            ``(ANY_TASK,)``: every registered task (listed as such by :func:`controller_info`).
        config: Frozen dataclass of its typed parameters (bool, int, float or str fields,
            each with a default and ``metadata=describe(...)``); None: no parameters.
        defaults: Registered defaults that differ from the dataclass defaults (a variant
            such as ``reactive_pick_and_place_calibrated``).
    """

    factory: ControllerFactory
    description: str
    tasks: tuple[str, ...]
    config: type | None = None
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ControllerParam:
    """One typed parameter of a controller.

    Attributes:
        name: Parameter name (a config field), e.g. ``'carry_gain'``.
        kind: ``bool``, ``int``, ``float`` or ``str``.
        default: The registered default.
        description: What it sets, with its unit.
        range: ``(low, high)`` or None.
        choices: Allowed values or None.
    """

    name: str
    kind: type
    default: Any
    description: str
    range: tuple[float, float] | None = None
    choices: tuple[Any, ...] | None = None


@dataclasses.dataclass(frozen=True)
class ControllerInfo:
    """What a registered controller is and which tasks it is meant for.

    Attributes:
        name: Registry name.
        description: One line for humans (shown by ``describe`` tools and errors).
        tasks: Task names (as in :func:`rpl_sim_bridge.tasks.make_task`) it suits.
        params: Its typed parameters with their registered defaults.
        source: ``'built-in'``, or the entry point it came from.
    """

    name: str
    description: str
    tasks: tuple[str, ...]
    params: tuple[ControllerParam, ...] = ()
    source: str = BUILT_IN


@dataclasses.dataclass(frozen=True)
class _Entry:
    info: ControllerInfo
    spec: ControllerSpec


_REGISTRY: dict[str, _Entry] = {}
_SKIPPED: dict[str, str] = {}  # plug-in name -> why it was skipped
# A name registered again by a plug-in -> both claims: asking for it is refused, which one
# would run depended on the order the installed packages were found in.
_CLAIMED_TWICE: dict[str, str] = {}
_plugins_loaded = False
_KINDS = (bool, int, float, str)


def _params_of(name: str, spec: ControllerSpec) -> tuple[ControllerParam, ...]:
    if spec.config is None:
        if spec.defaults:
            raise ValueError(f'controller {name!r}: defaults {dict(spec.defaults)} need a config')
        return ()
    if not dataclasses.is_dataclass(spec.config):
        raise ValueError(f'controller {name!r}: config must be a dataclass, got {spec.config!r}')
    fields = [f for f in dataclasses.fields(spec.config) if f.name != TASK_FIELD]
    # Registered defaults are checked like any value (unknown name, type, range).
    defaults = build_config(spec.config, dict(spec.defaults))
    params = []
    for field in fields:
        if field.name in RESERVED_NAMES:
            raise ValueError(f'controller {name!r}: parameter name {field.name!r} is reserved')
        default = getattr(defaults, field.name)
        if type(field.default) not in _KINDS:
            raise ValueError(
                f'controller {name!r}: parameter {field.name!r} must be bool, int, float or '
                f'str, got {type(field.default).__name__}'
            )
        meta = field.metadata
        params.append(
            ControllerParam(
                field.name,
                type(field.default),
                default,
                meta.get('description', ''),
                meta.get('range'),
                meta.get('choices'),
            )
        )
    return tuple(params)


def register_controller(
    name: str, spec: ControllerSpec, *, replace: bool = False, source: str = BUILT_IN
) -> None:
    """Make a controller available to :func:`make_controller` under ``name``.

    Args:
        name: Registry name (the ``controller`` parameter value).
        spec: Its declaration.
        replace: Allow replacing an existing registration.
        source: Where it comes from (shown by ``rpl list controllers``).

    Raises:
        ValueError: ``name`` is already registered and ``replace`` is False, ``name`` is
            :data:`EXTERNAL_CONTROLLER`, ``tasks`` is empty, or the parameters are badly
            declared.
    """
    if name == EXTERNAL_CONTROLLER:
        raise ValueError(
            f'controller name {name!r} is reserved: controller:={name} in a stack launch '
            'starts no controller node (your own node publishes base_action)'
        )
    if not isinstance(spec, ControllerSpec):
        raise ValueError(f'controller {name!r}: expected a ControllerSpec, got {spec!r}')
    if name in _REGISTRY and not replace:
        raise ValueError(
            f'controller {name!r} is already registered ({_REGISTRY[name].info.source})'
        )
    if not spec.tasks or isinstance(spec.tasks, str):
        raise ValueError(f'controller {name!r} must name a tuple of the tasks it suits')
    info = ControllerInfo(
        name, spec.description, tuple(spec.tasks), _params_of(name, spec), source
    )
    _REGISTRY[name] = _Entry(info, spec)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True

    def register(name: str, spec: ControllerSpec, source: str) -> None:
        if name in _REGISTRY:
            _CLAIMED_TWICE[name] = f'{_REGISTRY[name].info.source}; {source}'
        register_controller(name, spec, source=source)

    _SKIPPED.update(load_plugins(ENTRY_POINT_GROUP, ControllerSpec, register))


def available_controllers() -> list[str]:
    """Names of all registered controllers (built-in and plug-ins), sorted."""
    _load_plugins()
    return sorted(_REGISTRY)


def controllers_for(task: str) -> list[str]:
    """Registered controllers that suit ``task``, sorted."""
    return [n for n in available_controllers() if task in controller_info(n).tasks]


def skipped_plugins() -> dict[str, str]:
    """Plug-in controllers that failed to load: name -> the one-line reason."""
    _load_plugins()
    return dict(_SKIPPED)


def _suited_tasks(info: ControllerInfo) -> tuple[str, ...]:
    if ANY_TASK not in info.tasks:
        return info.tasks
    from rpl_sim_bridge.tasks import available_tasks

    return tuple(available_tasks())


def controller_info(name: str) -> ControllerInfo:
    """Description, suitable tasks and parameters of a registered controller (a controller
    for any task lists every task registered now).

    Raises:
        UnknownControllerError: ``name`` is not registered.
    """
    info = _lookup(name).info
    return dataclasses.replace(info, tasks=_suited_tasks(info))


def controller_config(name: str, task: str | None = None, **params: Any) -> Any:
    """The validated config of a controller with ``params`` set (None without parameters).

    Checks everything :func:`make_controller` checks without building the controller.

    Raises:
        UnknownControllerError: ``name`` is not registered.
        ValueError: ``task`` is not one the controller suits.
        rpl_interfaces.params.ParameterError: A bad parameter name or value.
    """
    entry = _lookup(name)
    if name in _CLAIMED_TWICE:
        claims = _CLAIMED_TWICE[name]
        why = (
            'the built-in ran, never the plug-in'
            if claims.startswith(BUILT_IN)
            else 'which one ran depended on the install order'
        )
        raise UnknownControllerError(
            f'controller {name!r} is registered twice ({claims}): {why}; rename or uninstall '
            'the plug-in'
        )
    if task is not None and task not in (suited := _suited_tasks(entry.info)):
        raise ValueError(f'controller {name!r} is meant for tasks {list(suited)}, not {task!r}')
    known = [p.name for p in entry.info.params]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ParameterError(
            f'controller {name!r} has no parameter(s) {unknown}; its parameters: {known}'
        )
    if entry.spec.config is None:
        return None
    values = {**entry.spec.defaults, **params}
    if task is not None and TASK_FIELD in {f.name for f in dataclasses.fields(entry.spec.config)}:
        values[TASK_FIELD] = task
    try:
        return build_config(entry.spec.config, values)
    except ParameterError as exc:
        raise ParameterError(f'controller {name!r}: {exc}') from None


class ControllerBuildError(ValueError):
    """A controller's factory raised something other than a ValueError (one line)."""


def make_controller(name: str, task: str | None = None, **params: Any) -> BaseController:
    """Build a registered controller.

    Args:
        name: Registry name, e.g. ``'reactive_push'``.
        task: The task it will control; checked against the controller's suitable tasks.
            Controllers that simulate (``discrete_mpc_push``) build their planning model
            from it. None skips the check and uses the controller's default task.
        **params: Its parameters (see :attr:`ControllerInfo.params`).

    Raises:
        UnknownControllerError: ``name`` is not registered (the message lists known names).
        ValueError: ``task`` is not one the controller suits, or the factory returned no
            controller.
        rpl_interfaces.params.ParameterError: A bad parameter name or value.
        ImportError: It needs a package this machine lacks (the planner: MuJoCo).
        ControllerBuildError: The factory raised anything else (a plug-in's code: a
            ValueError naming the controller, the exception and where it was raised).
    """
    config = controller_config(name, task, **params)
    entry = _lookup(name)
    try:
        controller = entry.spec.factory(name, task, config)
    except ValueError:
        raise  # its own refusal (a bad setting): as it is
    except ImportError as exc:
        if entry.info.source == BUILT_IN:
            raise  # a package missing here (the planner's MuJoCo): callers say so
        raise ControllerBuildError(
            f'controller {name!r} could not be built: {raised_at(exc, skip=[__file__])}'
        ) from exc
    except Exception as exc:  # a plug-in's bug or a factory of the wrong signature
        raise ControllerBuildError(
            f'controller {name!r} could not be built: {raised_at(exc, skip=[__file__])}'
        ) from exc
    if not isinstance(controller, BaseController):
        raise ValueError(
            f'controller {name!r}: its factory returned a {type(controller).__name__}, not a '
            'controller (name, reset, __call__, act_batch)'
        )
    return controller


def parse_controller_params(name: str, items: Iterable[str]) -> dict[str, Any]:
    """Typed parameter values from ``NAME=VALUE`` texts (``carry_gain=50``).

    Values are converted to the parameter's type (bool: true/false/1/0); ranges are checked
    by :func:`controller_config` / :func:`make_controller`.

    Raises:
        UnknownControllerError: ``name`` is not registered.
        rpl_interfaces.params.ParameterError: Not ``NAME=VALUE``, an unknown name, a name
            given twice, or a value that is not of the parameter's type (one line naming it).
    """
    params = {p.name: p for p in controller_info(name).params}
    values: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition('=')
        key = key.strip()
        if not sep or not key:
            raise ParameterError(f'controller parameter {item!r} is not NAME=VALUE')
        if key not in params:
            raise ParameterError(
                f'controller {name!r} has no parameter {key!r}; its parameters: {sorted(params)}'
            )
        if key in values:
            raise ParameterError(f'controller parameter {key!r} is given twice; give it once')
        values[key] = parse_value(params[key], text)
    return values


def params_from_text(name: str, text: str) -> dict[str, Any]:
    """Typed parameter values from ``'NAME=VALUE,NAME=VALUE'`` ('' = none); see
    :func:`parse_controller_params` (the form of the node's ``controller_params`` and of
    the trainer's ``controller_params`` setting).

    Raises:
        UnknownControllerError: ``name`` is not registered.
        rpl_interfaces.params.ParameterError: A bad item, name or value.
    """
    return parse_controller_params(name, split_params_text(text))


def split_params_text(text: str) -> list[str]:
    """The ``NAME=VALUE`` items of ``'NAME=VALUE,NAME=VALUE'`` text ('' = none).

    A piece without ``=`` continues the value before it, so a text value may hold a comma
    (``cache_file=/data/a,b.npz,neighbours=2`` is two items); a leading one stays an item, for
    :func:`parse_controller_params` to refuse as not ``NAME=VALUE``.
    """
    items: list[str] = []
    for piece in text.split(','):
        if not piece.strip():  # `a=1,`, `a=1,,b=2`: no item, as before
            continue
        if items and '=' not in piece:
            items[-1] += ',' + piece
        else:
            items.append(piece)
    return items


def stated_params(name: str, params: Mapping[str, Any]) -> str:
    """The parameters in ``params`` that differ from the registered defaults, as canonical
    ``'NAME=VALUE,...'`` text sorted by name ('' = the defaults): how a model states the
    base it was trained on (:mod:`rpl_residual_node.model_identity`, ``controller_params``).
    The text reads back with :func:`params_from_text`.

    Raises:
        UnknownControllerError: ``name`` is not registered.
    """
    kinds = {p.name: p for p in controller_info(name).params}
    values = {k: kinds[k].kind(v) for k, v in params.items() if k in kinds}  # 7 -> 7.0
    items = sorted((k, v) for k, v in values.items() if v != kinds[k].default)
    return ','.join(f'{k}={format_param(v)}' for k, v in items)


def stated_params_text(name: str, text: str) -> str:
    """:func:`stated_params` of ``'NAME=VALUE,...'`` text (:func:`params_from_text`): the
    canonical form of a run's or a node's ``controller_params``.

    Raises:
        UnknownControllerError: ``name`` is not registered.
        rpl_interfaces.params.ParameterError: A bad item, name or value.
    """
    return stated_params(name, params_from_text(name, text))


def format_param(value: Any) -> str:
    """A parameter value as :func:`parse_value` reads it back (bools as true / false)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def parse_value(param: ControllerParam, text: str) -> Any:
    """``text`` as a value of ``param``'s type.

    Raises:
        rpl_interfaces.params.ParameterError: Not a value of that type.
    """
    text = text.strip()
    expected = {bool: 'true or false', int: 'an integer', float: 'a number', str: 'text'}
    try:
        if param.kind is bool:
            value = {'true': True, '1': True, 'false': False, '0': False}[text.lower()]
        elif param.kind is str:
            value = text
        else:
            value = param.kind(text)
            if not math.isfinite(value):
                raise ValueError
    except (ValueError, KeyError):
        raise ParameterError(
            f'controller parameter {param.name}={text!r} is not {expected[param.kind]}'
        ) from None
    return value


def _lookup(name: str) -> _Entry:
    _load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        if name in _SKIPPED:
            raise UnknownControllerError(
                f'controller {name!r} is a plug-in that failed to load: {_SKIPPED[name]}'
            ) from None
        raise UnknownControllerError(
            f'unknown controller {name!r}; known controllers: {available_controllers()}'
        ) from None


# Built-in controllers. The planner's import (MuJoCo, a task instance) is deferred.


def _reactive_push(name: str, task: str | None, config: ReactivePushConfig) -> BaseController:
    return ReactivePush(config, name=name)


def _reactive_pick_and_place(
    name: str, task: str | None, config: ReactivePickAndPlaceConfig
) -> BaseController:
    return ReactivePickAndPlace(config, name=name)


def _reactive_hook(name: str, task: str | None, config: ReactiveHookConfig) -> BaseController:
    return ReactiveHook(config, name=name)


def _discrete_mpc_push(name: str, task: str | None, config: Any) -> BaseController:
    from rpl_base_controllers.discrete_mpc_push import DiscreteMPCPush

    return DiscreteMPCPush(config, name=name)


def _zero(name: str, task: str | None, config: None) -> BaseController:
    if task is None:
        return ZeroController(name=name)
    from rpl_sim_bridge.tasks import task_spec

    return ZeroController.for_task(task_spec(task), name=name)


def _pets(name: str, task: str | None, config: Any) -> BaseController:
    from rpl_base_controllers.pets import PETS

    # The planner scores its rollouts with the reward of the task it serves.
    return PETS(config if task is None else dataclasses.replace(config, task=task), name=name)


def _cached_pets(name: str, task: str | None, config: Any) -> BaseController:
    from rpl_base_controllers.cached_pets import CachedPETS
    from rpl_sim_bridge.tasks import task_spec

    spec = task_spec(task or 'mbrl_pusher')
    return CachedPETS(config, name=name, obs_dim=spec.obs_dim, action_dim=spec.action_dim)


def _mpc_config() -> type:
    from rpl_base_controllers.discrete_mpc_push import DiscreteMPCPushConfig

    return DiscreteMPCPushConfig


register_controller(
    'reactive_push',
    ControllerSpec(
        _reactive_push,
        'hand-designed pusher: above the push point, descend, push (gains 10 / 5)',
        ('push', 'slippery_push'),
        ReactivePushConfig,
    ),
)
register_controller(
    'reactive_pick_and_place',
    ControllerSpec(
        _reactive_pick_and_place,
        'hand-designed pick and place, miscalibrated: grasp 2 cm low, carry gain 83 '
        "(oscillates; the paper's 50 for a gripper that tracks its whole command)",
        ('pick_and_place',),
        ReactivePickAndPlaceConfig,
        {'carry_gain': MISCALIBRATED_CARRY_GAIN},
    ),
)
register_controller(
    'reactive_pick_and_place_calibrated',
    ControllerSpec(
        _reactive_pick_and_place,
        'hand-designed pick and place with gain 10 everywhere',
        ('pick_and_place',),
        ReactivePickAndPlaceConfig,
        {'carry_gain': CALIBRATED_CARRY_GAIN},
    ),
)
register_controller(
    'reactive_hook',
    ControllerSpec(
        _reactive_hook,
        'hand-designed hook use: grasp the hook, lift, place it behind the block, sweep the '
        'block to the goal',
        ('hook', 'noisy_hook', 'complex_hook'),
        ReactiveHookConfig,
    ),
)
register_controller(
    ZERO,
    ControllerSpec(
        _zero,
        "holds still (action 0, the task's action size): the base under Scratch / Expert "
        'Explore models',
        (ANY_TASK,),
    ),
)
register_controller(
    'discrete_mpc_push',
    ControllerSpec(
        _discrete_mpc_push,
        'best-first search over 6 unit moves on a planning copy of the simulator',
        ('push', 'slippery_push'),
        _mpc_config(),
    ),
)
register_controller(
    'pets',
    ControllerSpec(
        _pets,
        'PETS: CEM planning (TS-inf) through a 5-member probabilistic ensemble of the arm '
        '(the shipped model saw 12,750 steps; results/pets_v2 has the 15,000-step one '
        "behind cached_pets' cache); slow: the paper's expensive base",
        tuple(PUSHER_TASKS),
        PETSConfig,
    ),
)
register_controller(
    'cached_pets',
    ControllerSpec(
        _cached_pets,
        "PETS's actions at 500 states it visited, nearest neighbour (Euclidean) at run time",
        tuple(PUSHER_TASKS),
        CachedPETSConfig,
    ),
)
