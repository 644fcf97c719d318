"""What a residual model says it is (its ONNX metadata), and the check against a running stack.

The exporter writes these ``metadata_props`` (all strings; see ``docs/onnx_contract.md``):

==================== =====================================================================
key                  value
==================== =====================================================================
``rpl_version``      project version that wrote the model (:data:`rpl_interfaces.__version__`)
``task``             task the model was trained on (the ``observation`` frame_id)
``controller``       base controller it was trained on (the ``base_action`` frame_id)
``controller_params`` that controller's parameters that differed from their registered
                     defaults, ``'NAME=VALUE,...'`` sorted by name ('' = the defaults;
                     e.g. ``neighbours=2`` for a blended cached_pets)
``observation_fields`` JSON list: the task's observation field names, in input order
``goal_fields``      JSON list: goal coordinate names (``desired_goal.<name>`` on the topic)
``action_fields``    JSON list: residual / action field names, in output order
``action_bounds``    JSON [low, high]: the action bounds the model was trained to command
                     within (the task's ``action_low`` / ``action_high``)
``residual_scale``   the scale inside the graph (action units); per-axis scales: the largest
``residual_scales``  JSON list, one scale per action field, where they differ (absent: every
                     axis has ``residual_scale``)
``training_steps``   environment steps (transitions) the model was trained on
``eval_success``     the run's evaluation success rate when the model was written (0..1)
==================== =====================================================================

The rule (:func:`check_identity`), against what the running stack says of itself
(:class:`StackIdentity`: the observation message's field names and frame_id, the base
action's field names and frame_id):

* other field names (observation, goal or action: names or order) are always refused:
  the model would read one quantity as another;
* other action bounds are always refused: the stack would clip the commands the model
  learned to another range (a model trained for torques in [-2, 2] behind a node clipping
  to [-1, 1]);
* another task or controller is refused unless explicitly allowed
  (``allow_model_mismatch``): a model trained on one base controller learned that
  controller's errors, and runs on another one only by the user's choice;
* other base controller parameters (``controller_params``) are a warning, never a
  refusal: they are only known where the controller is built in the same process (``rpl
  eval``; a stack's base controller is another node), and the same base can be named two
  ways (a cache file by its path, or as the default that is that file);
* what the model does not state (an old file, a hand-made model) is not checked; the caller
  warns once that it cannot be (:meth:`ModelIdentity.unstated`); what the stack has not
  said yet (no message seen) is checked when it has.

Pure Python (no onnx, no rclpy): the node reads the keys with onnxruntime.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rpl_interfaces import __version__, contract
from rpl_interfaces.params import yaml_float

VERSION = 'rpl_version'
TASK = 'task'
CONTROLLER = 'controller'
CONTROLLER_PARAMS = 'controller_params'
OBSERVATION_FIELDS = 'observation_fields'
GOAL_FIELDS = 'goal_fields'
ACTION_FIELDS = 'action_fields'
ACTION_BOUNDS = 'action_bounds'
RESIDUAL_SCALE = 'residual_scale'
RESIDUAL_SCALES = 'residual_scales'
TRAINING_STEPS = 'training_steps'
EVAL_SUCCESS = 'eval_success'

# What a model must state to be checked in full; an absent one is named in one warning.
CHECKED_KEYS = (TASK, CONTROLLER, OBSERVATION_FIELDS, GOAL_FIELDS, ACTION_FIELDS, ACTION_BOUNDS)
_FIELD_KEYS = (OBSERVATION_FIELDS, GOAL_FIELDS, ACTION_FIELDS)


class IdentityError(ValueError):
    """A model's identity metadata is malformed (e.g. a field list that is not JSON)."""


class MismatchError(ValueError):
    """A model does not fit the running stack (one line naming the difference).

    Attributes:
        overridable: Only the task or controller differ (``allow_model_mismatch`` would
            accept it); False when field names differ.
    """

    def __init__(self, message: str, overridable: bool) -> None:
        super().__init__(message)
        self.overridable = overridable


@dataclasses.dataclass(frozen=True)
class StackIdentity:
    """What the running stack says of itself; ``None`` = not known (yet).

    Attributes:
        task: Task name (``observation`` frame_id; in-process: the task evaluated).
        controller: Base controller name (``base_action`` frame_id).
        controller_params: The base controller's non-default parameters as canonical text
            (:func:`rpl_base_controllers.registry.stated_params`; '' = the defaults); None
            where they are not known (a stack: the base controller is another node).
        observation_fields: Observation field names, in payload order.
        goal_fields: Goal coordinate names (``desired_goal.<g>`` without the prefix).
        action_fields: Action field names (``base_action`` payload).
        action_bounds: ``(low, high)`` every command is clipped to (the residual node's
            ``action_low`` / ``action_high``; in-process and in an export: the task's).
    """

    task: str | None = None  # '' = a stream that names none (empty frame_id)
    controller: str | None = None  # '' likewise
    observation_fields: tuple[str, ...] | None = None
    goal_fields: tuple[str, ...] | None = None
    action_fields: tuple[str, ...] | None = None
    action_bounds: tuple[float, float] | None = None
    controller_params: str | None = None

    @classmethod
    def of_stream(
        cls,
        task: str | None,
        controller: str | None,
        observation_names: Sequence[str] | None,
        action_names: Sequence[str] | None,
    ) -> StackIdentity:
        """From the ``observation`` and ``base_action`` payload names (without the meta
        fields) and frame_ids, as a node receives them.

        Raises:
            ValueError: The observation names are not observation, achieved_goal.*,
                desired_goal.* (see :func:`rpl_interfaces.contract.split_observation_fields`).
        """
        observation = goal = None
        if observation_names is not None:
            layout = contract.split_observation_fields(observation_names)
            observation, goal = layout.observation_fields, layout.goal_fields
        return cls(
            task=task or None,
            controller=controller or None,
            observation_fields=observation,
            goal_fields=goal,
            action_fields=tuple(action_names) if action_names is not None else None,
        )

    @classmethod
    def of_task(
        cls,
        spec: Any,
        controller: str,
        observation_names: Sequence[str],
        action_names: Sequence[str],
    ) -> StackIdentity:
        """For an in-process run or an export: the names the stack would publish for a task.

        Args:
            spec: The task spec (``name``, ``obs_dim``, ``goal_dim``, ``action_dim``).
            controller: Base controller name.
            observation_names: The ``observation`` payload names the sim bridge publishes
                for the task.
            action_names: The task's action field names.

        Returns:
            The identity; a part whose count is not the spec's dimension (a task whose
            names are not declared in full) is left unstated (None), not stated wrongly.
        """
        stack = cls.of_stream(spec.name, controller, observation_names, action_names)
        dims = {
            'observation_fields': spec.obs_dim,
            'goal_fields': spec.goal_dim,
            'action_fields': spec.action_dim,
        }
        unstated = {key: None for key, dim in dims.items() if len(getattr(stack, key)) != dim}
        bounds = (float(spec.action_low), float(spec.action_high))
        return dataclasses.replace(stack, **unstated, action_bounds=bounds)


@dataclasses.dataclass(frozen=True)
class ModelIdentity(StackIdentity):
    """What a model says it is; ``None`` = the model does not say.

    Attributes:
        version: Project version that wrote it.
        residual_scale: Scale inside the graph (action units); with per-axis scales the
            largest (the largest residual the model can output on any axis).
        residual_scales: One scale per action field where they differ, else None.
        training_steps: Environment steps it was trained on.
        eval_success: The run's evaluation success rate when it was written.
        (and the :class:`StackIdentity` fields it was trained for)
    """

    version: str | None = None
    residual_scale: float | None = None
    residual_scales: tuple[float, ...] | None = None
    training_steps: int | None = None
    eval_success: float | None = None

    @classmethod
    def for_stack(cls, stack: StackIdentity, **facts: object) -> ModelIdentity:
        """The identity of a model trained on ``stack``, written by this version."""
        return cls(**dataclasses.asdict(stack), version=__version__, **facts)

    @classmethod
    def from_props(cls, props: Mapping[str, str]) -> ModelIdentity:
        """Read the metadata keys of the table above; absent keys give None.

        Raises:
            IdentityError: A field list is not a JSON list of strings, a number does not
                parse or is negative or not finite, the bounds are not finite with low <
                high, or the per-axis scales are not one positive number per action field
                (one line naming the key and value).
        """

        def fields(key: str) -> tuple[str, ...] | None:
            if key not in props:
                return None
            try:
                value = json.loads(props[key])
            except ValueError:
                value = None
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise IdentityError(
                    f'metadata {key!r} must be a JSON list of names, got {props[key]!r}'
                )
            return tuple(value)

        def bounds() -> tuple[float, float] | None:
            if ACTION_BOUNDS not in props:
                return None
            try:
                value = json.loads(props[ACTION_BOUNDS])
                low, high = (float(v) for v in value)
                if not (math.isfinite(low) and math.isfinite(high) and low < high):
                    raise ValueError(value)
            except (ValueError, TypeError):
                raise IdentityError(
                    f'metadata {ACTION_BOUNDS!r} must be a JSON list [low, high] of finite '
                    f'numbers, low < high, got '
                    f'{props[ACTION_BOUNDS]!r}'
                ) from None
            return low, high

        def scales() -> tuple[float, ...] | None:
            if RESIDUAL_SCALES not in props:
                return None
            try:
                items = json.loads(props[RESIDUAL_SCALES])
                numbers = all(
                    isinstance(v, int | float) and not isinstance(v, bool) for v in items
                )
                value = tuple(float(v) for v in items) if numbers else ()
            except (ValueError, TypeError):
                value = ()
            actions = fields(ACTION_FIELDS)
            if not value or not all(math.isfinite(v) and v > 0.0 for v in value):
                problem = 'a JSON list of positive numbers'
            elif actions is not None and len(value) != len(actions):
                problem = f'one scale per action field ({len(actions)})'
            else:
                return value
            raise IdentityError(
                f'metadata {RESIDUAL_SCALES!r} must be {problem}, got {props[RESIDUAL_SCALES]!r}'
            )

        def number(key: str, kind: type, low: float, what: str) -> float | int | None:
            if key not in props or props[key] == '':
                return None
            try:
                value = kind(props[key])
            except ValueError:
                value = None
            if value is None or not (math.isfinite(value) and value >= low):
                raise IdentityError(f'metadata {key!r} must be {what}, got {props[key]!r}')
            return value

        return cls(
            task=props.get(TASK) or None,
            controller=props.get(CONTROLLER) or None,
            controller_params=props.get(CONTROLLER_PARAMS),  # '' = the defaults, stated
            observation_fields=fields(OBSERVATION_FIELDS),
            goal_fields=fields(GOAL_FIELDS),
            action_fields=fields(ACTION_FIELDS),
            action_bounds=bounds(),
            version=props.get(VERSION) or None,
            residual_scale=number(RESIDUAL_SCALE, float, 0.0, 'a finite number >= 0'),
            residual_scales=scales(),
            training_steps=number(TRAINING_STEPS, int, 0, 'a whole number >= 0'),
            eval_success=number(EVAL_SUCCESS, float, 0.0, 'a finite number >= 0'),
        )

    def to_props(self) -> dict[str, str]:
        """The metadata keys of what is stated (None values are left out)."""
        props: dict[str, str] = {}
        for key, value in (
            (VERSION, self.version),
            (TASK, self.task),
            (CONTROLLER, self.controller),
            (CONTROLLER_PARAMS, self.controller_params),
            (RESIDUAL_SCALE, None if self.residual_scale is None else repr(self.residual_scale)),
            (TRAINING_STEPS, None if self.training_steps is None else str(self.training_steps)),
            (EVAL_SUCCESS, None if self.eval_success is None else repr(self.eval_success)),
        ):
            if value is not None:
                props[key] = value
        for key in _FIELD_KEYS:
            value = getattr(self, key)
            if value is not None:
                props[key] = json.dumps(list(value))
        if self.residual_scales is not None:
            props[RESIDUAL_SCALES] = json.dumps(list(self.residual_scales))
        if self.action_bounds is not None:
            props[ACTION_BOUNDS] = json.dumps(list(self.action_bounds))
        return props

    def unstated(self) -> list[str]:
        """The checked keys this model does not state (empty: it can be checked in full)."""
        return [key for key in CHECKED_KEYS if getattr(self, key) is None]

    def unstated_warning(self, path: str, against: str) -> str | None:
        """One warning line naming what this model does not state, so is not checked
        ``against`` the running stack (None: everything is stated)."""
        missing = self.unstated()
        if not missing:
            return None
        why = ' (no rpl metadata)' if len(missing) == len(CHECKED_KEYS) else ''
        return (
            f'model {path} does not state {", ".join(missing)}{why}: it is not checked '
            f'against {against} for that'
        )

    def describe(self) -> str:
        """Short text, e.g. ``'slippery_push / reactive_push'`` or ``'mbrl_pusher /
        cached_pets (neighbours=2)'``, for logs."""
        params = f' ({self.controller_params})' if self.controller_params else ''
        return f'{self.task or "?"} / {self.controller or "?"}{params}'


def _few(names: list[str], shown: int = 6) -> str:
    """A field list for a one-line message: the first ``shown`` names and how many more
    (a pusher model on a Fetch stack listed all 20 and 25 names, 1871 characters)."""
    if len(names) <= shown:
        return str(names)
    return f'{names[:shown]} and {len(names) - shown} more'


def _field_difference(what: str, model: tuple[str, ...], live: tuple[str, ...]) -> str:
    """One phrase naming how two field lists differ."""
    missing = [name for name in model if name not in live]
    extra = [name for name in live if name not in model]
    if what == 'goal' and not live:
        detail = f'the model takes goal fields {list(model)}, the stream has none (fixed goal)'
    elif what == 'goal' and not model:
        detail = f'the model is for a fixed goal, the stream has goal fields {list(live)}'
    elif missing or extra:
        parts = []
        if missing:
            parts.append(f'model fields {_few(missing)} are not in the stream')
        if extra:
            parts.append(f'stream fields {_few(extra)} are not in the model')
        detail = ', '.join(parts)
    elif len(model) != len(live):
        detail = f'{len(model)} model fields, {len(live)} stream fields'
    else:
        first = next(i for i, (a, b) in enumerate(zip(model, live, strict=True)) if a != b)
        detail = (
            f'same names in another order, position {first}: {model[first]!r} in the model, '
            f'{live[first]!r} in the stream'
        )
    return f'{what} fields differ ({detail})'


# How far above its stated scale a residual may come out (float32 rounding of tanh * scale).
_SCALE_SLACK = 1e-5


def stated_reach(model: ModelIdentity, action_dim: int) -> np.ndarray | None:
    """The largest residual per axis the model states it outputs (its ``residual_scales``,
    else ``residual_scale`` on every axis), with the float32 slack of ``scale * tanh``;
    None where it states no scale."""
    if model.residual_scales is not None and len(model.residual_scales) == action_dim:
        scales = np.asarray(model.residual_scales, dtype=np.float64)
    elif model.residual_scale is not None:
        scales = np.full(action_dim, model.residual_scale)
    else:
        return None
    return scales * (1.0 + _SCALE_SLACK) + 1e-7


def within_reach(residual: np.ndarray, reach: np.ndarray | None) -> np.ndarray:
    """Rows of ``residual`` (..., action_dim) within a model's :func:`stated_reach` on every
    axis (all rows where it states none): one rule for the node and the in-process policy."""
    if reach is None:
        return np.ones(residual.shape[:-1], dtype=bool)
    return np.all(np.abs(residual) <= reach, axis=-1)


def scale_excess(model: ModelIdentity, residual: np.ndarray) -> str | None:
    """What a model's output says against its stated scale, or None where it keeps to it.

    The scale is inside the graph (``scale * tanh``), so no honest model's residual is ever
    larger; one that is does not say what it is (its exploration range and the clamp
    warning would take the stated number).

    Args:
        model: What the model says it is (``residual_scale``, ``residual_scales``,
            ``action_fields``).
        residual: Its finite output, (n, action_dim).

    Returns:
        One clause naming the largest excess (axis, value, stated scale), or None.
    """
    limit = stated_reach(model, residual.shape[-1])
    if residual.size == 0 or limit is None:
        return None
    reach = np.max(np.abs(residual.reshape(-1, residual.shape[-1])), axis=0)
    over = reach - limit
    if not np.any(over > 0):
        return None
    axis = int(np.argmax(over))
    per_axis = model.residual_scales is not None and len(model.residual_scales) == limit.size
    stated = model.residual_scales[axis] if per_axis else model.residual_scale
    key = RESIDUAL_SCALES if per_axis else RESIDUAL_SCALE
    names = model.action_fields
    name = names[axis] if names is not None and len(names) > axis else f'axis {axis}'
    return (
        f'its residual reaches {reach[axis]:.6g} on {name}, beyond the {stated:g} its '
        f'metadata states ({key}): the file does not say what it is (export it again from '
        'its run)'
    )


def clamp_warning(
    model: ModelIdentity, residual_limit: float, setting: str = 'residual_limit:='
) -> str | None:
    """A warning when the stack clamps a model's residual below the range it learned.

    Args:
        model: What the model says it is (its ``residual_scale``: the largest residual it
            can output, action units).
        residual_limit: The stack's clamp (the residual node's ``residual_limit``).
        setting: How the reader sets the limit, the scale follows (the node's ROS
            parameter by default, written as a float: ROS refuses ``residual_limit:=4``
            for a double parameter; ``rpl bag replay-model``: ``--residual-limit ``).

    Returns:
        One sentence naming both numbers and the fix, or None when the limit covers the
        scale or the model does not state its scale.
    """
    scale = model.residual_scale
    if scale is None or residual_limit >= scale:
        return None
    return (
        f'its residuals reach +-{scale:g} (residual_scale) but residual_limit clamps them to '
        f'+-{residual_limit:g}, so it runs other than trained ({setting}{yaml_float(scale)} '
        'runs it as trained)'
    )


def check_identity(
    model: ModelIdentity, live: StackIdentity, allow_mismatch: bool = False
) -> list[str]:
    """Check a model against the running stack (the rule in the module docstring).

    Args:
        model: What the model says it is.
        live: What the stack says of itself.
        allow_mismatch: Accept another task or controller (never other fields).

    Returns:
        The allowed differences (another task or controller, with ``allow_mismatch``; other
        controller parameters, always), one phrase each, for a warning; empty when
        everything stated matches.

    Raises:
        MismatchError: A field difference, or (without ``allow_mismatch``) another task or
            controller: one line naming every difference.
    """
    refused: list[str] = []
    for key, what in zip(_FIELD_KEYS, ('observation', 'goal', 'action'), strict=True):
        stated, running = getattr(model, key), getattr(live, key)
        if stated is not None and running is not None and stated != running:
            refused.append(_field_difference(what, stated, running))
    stated, running = model.action_bounds, live.action_bounds
    if stated is not None and running is not None and tuple(stated) != tuple(running):
        refused.append(
            f'the model was trained to command actions in [{stated[0]:g}, {stated[1]:g}], '
            f'the stack clips commands to [{running[0]:g}, {running[1]:g}] (residual node '
            'action_low / action_high)'
        )
    fields_differ = bool(refused)
    allowed: list[str] = []
    for key, topic in ((TASK, 'observation'), (CONTROLLER, 'base_action')):
        stated, running = getattr(model, key), getattr(live, key)
        if stated is not None and running == '':  # said to be nobody: not checkable
            (allowed if allow_mismatch else refused).append(
                f'trained for {key} {stated!r}, the {topic} messages do not name their '
                f"{key} (empty header.frame_id: set it to the {key}'s name)"
            )
        elif stated is not None and running is not None and stated != running:
            (allowed if allow_mismatch else refused).append(
                f'trained for {key} {stated!r}, the running {key} is {running!r}'
            )
    if refused:
        raise MismatchError('; '.join(refused), overridable=not fields_differ)
    stated, running = model.controller_params, live.controller_params
    same_controller = model.controller is None or model.controller == live.controller
    if stated is not None and running is not None and stated != running and same_controller:

        def name(params: str) -> str:
            return repr(params) if params else 'the defaults'

        allowed.append(
            f'trained with {model.controller or "its controller"} parameters {name(stated)}, '
            f'this run uses {name(running)} (name the same ones to run it as trained)'
        )
    return allowed
