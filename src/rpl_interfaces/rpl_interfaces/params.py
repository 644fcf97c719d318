"""Typed parameter objects: one frozen dataclass per component, validated in one place.

Each dataclass field may carry ``metadata={'description': ..., 'range': (lo, hi),
'choices': (...)}``. Nodes declare exactly these fields as ROS parameters (see
:meth:`rpl_interfaces.base_node.RplNode.declare_config`: read-only, the range as the
descriptor's ``FloatingPointRange`` / ``IntegerRange``) and build the dataclass with
:func:`build_config`, which gives one clear error per bad value. Pure Python: no rclpy.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar('T')


class ParameterError(ValueError):
    """A parameter value is out of range, of the wrong type, or not one of the choices."""


def yaml_float(value: float) -> str:
    """Parameter text that YAML 1.1 (PyYAML, which launch_ros and ``rpl launch`` read
    substituted parameter text with) and rcl (``-p name:=TEXT``) both read as this double:
    ``repr`` gives ``1e-05``, ``4`` is an integer and ``inf`` a string to YAML 1.1; here
    ``1.0e-05``, ``4.0`` and ``.inf``."""
    value = float(value)
    if math.isnan(value):
        return '.nan'
    if math.isinf(value):
        return '.inf' if value > 0 else '-.inf'
    text = repr(value)
    mantissa, e, exponent = text.partition('e')
    if e and '.' not in mantissa:
        text = f'{mantissa}.0e{exponent}'
    return text


def yaml_string(value: str) -> str:
    """Parameter text that YAML keeps a string (``20241205``, ``yes`` or ``on`` would be an
    integer or a boolean): double-quoted, other characters as they are."""
    text = json.dumps(value, ensure_ascii=False)
    # YAML refuses DEL and the C1 controls raw (and reads NEL as a space): escaped.
    return ''.join(f'\\u{ord(c):04x}' if '\x7f' <= c <= '\x9f' else c for c in text)


def describe(
    description: str,
    *,
    range: tuple[float, float] | None = None,
    choices: tuple[str, ...] | None = None,
    runtime: bool = False,
) -> dict[str, Any]:
    """Build the ``metadata`` dict of a config field (description, range, choices).

    ``runtime`` marks the rare field a node lets ``ros2 param set`` change while it runs
    (every other parameter is read-only after start); the node applies the change."""
    meta: dict[str, Any] = {'description': description}
    if range is not None:
        meta['range'] = range
    if choices is not None:
        meta['choices'] = choices
    if runtime:
        meta['runtime'] = True
    return meta


def _coerce(name: str, value: Any, default: Any) -> Any:
    kind = type(default)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ParameterError(f'parameter {name!r} must be a bool, got {value!r}')
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParameterError(f'parameter {name!r} must be an integer, got {value!r}')
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParameterError(f'parameter {name!r} must be a number, got {value!r}')
        if not math.isfinite(float(value)):
            raise ParameterError(f'parameter {name!r} must be finite, got {value!r}')
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ParameterError(f'parameter {name!r} must be a string, got {value!r}')
        return value
    return value


def build_config(cls: type[T], values: Mapping[str, Any]) -> T:
    """Create a config dataclass from a mapping, checking types, ranges and choices.

    Args:
        cls: A dataclass whose fields all have defaults.
        values: Parameter values by field name; missing names keep their defaults.

    Returns:
        The validated config.

    Raises:
        ParameterError: Unknown name, wrong type, value outside range or choices.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ParameterError(f'unknown parameter(s) {unknown}; known: {sorted(fields)}')
    kwargs = {}
    for name, field in fields.items():
        default = field.default
        value = _coerce(name, values.get(name, default), default)
        lo_hi = field.metadata.get('range')
        if lo_hi is not None and not (lo_hi[0] <= value <= lo_hi[1]):
            raise ParameterError(
                f'parameter {name!r} = {value!r} is outside [{lo_hi[0]}, {lo_hi[1]}]'
            )
        choices = field.metadata.get('choices')
        if choices is not None and value not in choices:
            raise ParameterError(f'parameter {name!r} = {value!r} is not one of {list(choices)}')
        kwargs[name] = value
    return cls(**kwargs)


def check_known_parameters(
    given: Iterable[str], declared: Iterable[str], listed: Iterable[str] | None = None
) -> None:
    """ParameterError naming the parameters set at start that the node does not have.

    ROS accepts ``-p name:=value`` (or a parameter file entry) for any name and ignores one
    the node never declares: a typo such as ``episode:=5`` for ``episodes`` would run with
    the default, silently. Each unknown name is listed with the declared names it is
    closest to.

    Args:
        given: The names set for this node (command line, parameter files, launch).
        declared: The names the node declared (its own and rclpy's, e.g. ``use_sim_time``).
        listed: The names the message lists and suggests (default: ``declared``): a node's
            own, without rclpy's.
    """
    known = sorted(set(declared))
    shown = known if listed is None else sorted(set(listed))
    unknown = sorted(set(given) - set(known))
    if not unknown:
        return
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, shown, n=2)
        hint = f' (did you mean {" or ".join(map(repr, close))}?)' if close else ''
        parts.append(f'{name!r}{hint}')
    raise ParameterError(
        f'unknown parameter{"s" if len(unknown) > 1 else ""} {", ".join(parts)}: this node '
        f'has {", ".join(shown)}'
    )
