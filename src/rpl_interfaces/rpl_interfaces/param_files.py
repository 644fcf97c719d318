"""Parameter files and ``-p`` read one by one, as rcl reads each, to check what rcl's merge
hides.

Pure Python (PyYAML). rcl merges a node's ``--params-file`` files and, for a parameter set
twice, may keep the earlier value: when the later value's type differs (a user's
``episodes: 5.0`` after the stack's ``episodes: 0`` ran forever, ``seed: "7"`` ran seed 0),
and when the later file's section comes earlier in rcl's order (it applies sections in the
order their keys first appear across all files: a user's ``/**: residual_gain: 0.5`` after
the stack's ``/**/residual_node`` section ran at 1.0; rcl files a plain ``-p`` under
``/**`` too). A node named otherwise than a file's
keys gets nothing of it (a sim bridge named ``sim`` ran task push on its defaults). Nothing
said so. :func:`check_parameter_files` reads each file as rcl types YAML
(:func:`rcl_scalar`) and says what the node was asked for; the node compares it with what
it got (:meth:`rpl_interfaces.base_node.RplNode.declare_config`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import yaml

from rpl_interfaces.params import ParameterError, _coerce

_TRUE = frozenset('Y y yes Yes YES true True TRUE on On ON'.split())
_FALSE = frozenset('N n no No NO false False FALSE off Off OFF'.split())
_INF_NAN = frozenset(f'{s}{v}' for s in ('', '+', '-') for v in ('.inf', '.Inf', '.INF'))
_INF_NAN |= {'.nan', '.NaN', '.NAN'}
_INT = re.compile(r'[+-]?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)')  # strtoll, base 0
_STR = 'tag:yaml.org,2002:str'


def params_files(argv: Sequence[str]) -> list[str]:
    """The ``--params-file`` paths among ROS arguments (in their order)."""
    return [value for flag, value in _ros_options(argv) if flag == '--params-file']


def _sources(argv: Sequence[str]) -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """The parameter sources among ROS arguments, in their order: each ``--params-file``
    (its sections) and each ``-p [node:]name:=value`` (one section: rcl files a plain one
    under ``/**``, a node's under ``/<node>``), as ``(label, sections)``; an unreadable or
    malformed file is skipped (rcl itself refuses it, in one line)."""
    for flag, value in _ros_options(argv):
        if flag == '--params-file':
            try:
                with open(value, encoding='utf-8') as handle:
                    root = yaml.compose(handle, Loader=_Loader)
            except (OSError, yaml.YAMLError):
                continue
            yield f'parameter file {value}', list(_sections(_value(root) if root else None))
        elif flag in ('-p', '--param') and ':=' in value:
            name, text = value.split(':=', 1)
            node, _, name = name.rpartition(':')
            try:
                parsed = _value(yaml.compose(text, Loader=_Loader)) if text else ''
            except yaml.YAMLError:
                continue
            yield f'-p {value}', [(f'/{node}' if node else '/**', {name: parsed})]


def _ros_options(argv: Sequence[str]) -> Iterator[tuple[str, str]]:
    tokens, ros = list(argv), False
    for i, token in enumerate(tokens):
        if token == '--ros-args':
            ros = True
        elif token == '--' and ros:
            ros = False
        elif ros and token.startswith('-') and i + 1 < len(tokens):
            yield token, tokens[i + 1]


def rcl_scalar(text: str, quoted: bool) -> Any:
    """A YAML scalar typed as rcl's ``get_value`` types it: quoted (or ``!!str``) a string;
    else a bool (``y``, ``yes``, ``on``, ``true``, ... and their negations), an integer
    (strtoll base 0: ``0x1f``, ``017`` octal), a double (strtod: ``1e-3``, ``.inf``),
    else a string (``1_000``, ``1:30``, ``2024-01-01``, ``null``)."""
    if quoted:
        return text
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    if _INT.fullmatch(text):
        sign = -1 if text.startswith('-') else 1
        digits = text.lstrip('+-')
        base = 16 if digits[:2] in ('0x', '0X') else 8 if digits.startswith('0') else 10
        return sign * int(digits, base)
    if text in _INF_NAN:
        return float(text.replace('.', '').lower())
    if '_' not in text and text == text.strip() and text:
        try:
            return float(text)  # strtod's forms (Python's float adds only '_', refused)
        except ValueError:
            pass
    return text


class _Loader(yaml.SafeLoader):
    """Composes as PyYAML does, noting each scalar's explicit tag (``!!str``), which the
    composed node cannot tell from an implicit one."""

    def compose_scalar_node(self, anchor: Any) -> yaml.ScalarNode:
        tag = self.peek_event().tag
        node = super().compose_scalar_node(anchor)
        node.explicit_tag = tag
        return node


def _value(node: yaml.Node, key: bool = False) -> Any:
    """A composed YAML node as rcl reads it (mappings, sequences, typed scalars; keys as
    their text: a key ``y`` or ``on`` is a name, not a bool)."""
    if isinstance(node, yaml.MappingNode):
        return {_value(k, key=True): _value(v) for k, v in node.value}
    if isinstance(node, yaml.SequenceNode):
        return [_value(item) for item in node.value]
    if key:
        return node.value
    explicit_str = getattr(node, 'explicit_tag', None) in (_STR, '!!str')
    return rcl_scalar(node.value, node.style in ("'", '"') or explicit_str)


def _sections(data: Any, prefix: str = '') -> Iterator[tuple[str, dict[str, Any]]]:
    """``(node key, flattened parameters)`` of a parameter file (nested namespace keys
    joined with '/', nested parameter names with '.')."""
    if not isinstance(data, Mapping):
        return
    for key, value in data.items():
        if key == 'ros__parameters' and isinstance(value, Mapping):
            yield prefix or '/', dict(_flat(value))
        elif isinstance(value, Mapping):
            yield from _sections(value, f'{prefix}/{str(key).strip("/")}')


def _flat(params: Mapping[str, Any], prefix: str = '') -> Iterator[tuple[str, Any]]:
    for key, value in params.items():
        name = f'{prefix}{key}'
        if isinstance(value, Mapping):
            yield from _flat(value, f'{name}.')
        else:
            yield name, value


def _matches(pattern: Sequence[str], name: Sequence[str]) -> bool:
    """rcl's node-name match: ``*`` one token, ``**`` any number of tokens."""
    if not pattern:
        return not name
    head, rest = pattern[0], pattern[1:]
    if head == '**':
        return any(_matches(rest, name[i:]) for i in range(len(name) + 1))
    return bool(name) and head in ('*', name[0]) and _matches(rest, name[1:])


class Asked(NamedTuple):
    """A parameter value a source asked for: the value, the source (``parameter file P``
    or ``-p name:=value``) and its section."""

    value: Any
    path: str
    section: str


class FileCheck(NamedTuple):
    """What :func:`check_parameter_files` found.

    Attributes:
        asked: Field name -> the value the last source that sets it asked for (argument
            order, a later section of a file over an earlier one).
        warnings: Files that name nodes but none this one.
    """

    asked: dict[str, Asked]
    warnings: list[str]


def check_parameter_files(argv: Sequence[str], node_fqn: str, cls: type) -> FileCheck:
    """Check this node's entries of each parameter source (files and ``-p``) on its own.

    Args:
        argv: The node's ROS arguments (``--params-file`` and ``-p`` in their order).
        node_fqn: The node's fully qualified name, e.g. ``/rpl/sim_bridge``.
        cls: The node's config dataclass (the entries of its fields are checked).

    Raises:
        ParameterError: A file's entry of another type than its field's, naming file and
            section (rcl would have dropped it without a word, or rclpy refused it without
            the file).
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    name = [t for t in node_fqn.split('/') if t]
    asked: dict[str, Asked] = {}
    warnings = []
    for label, sections in _sources(argv):
        mine = [key for key, _ in sections if _matches([t for t in key.split('/') if t], name)]
        for key, params in sections:
            if key not in mine:
                continue
            for param, value in params.items():
                field = fields.get(param)
                if field is None:
                    continue  # an unknown name is refused on the merged parameters
                default = field.default
                if type(default) is float and type(value) is int:
                    raise ParameterError(
                        f'{label}, section {key}: parameter {param!r} must be a double, got '
                        f'the integer {value!r} (write {value}.0)'
                    )
                try:
                    _coerce(param, value, default)
                except ParameterError as exc:
                    raise ParameterError(f'{label}, section {key}: {exc}') from None
                asked[param] = Asked(value, label, key)
        if sections and not mine and label.startswith('parameter file'):
            keys = [key for key, _ in sections]
            warnings.append(
                f'{label} has no section for this node ({node_fqn}): its sections {keys} set '
                'nothing here; is the node named as the file expects?'
            )
    return FileCheck(asked, warnings)


def not_applied(asked: Mapping[str, Asked], got: Mapping[str, Any]) -> str:
    """The first parameter whose value the last source that sets it asked for is not the
    node's, as one sentence ('' when all are): rcl's merge kept an earlier value."""
    for param, want in asked.items():
        if param not in got:
            continue
        if not isinstance(want.value, (bool, int, float, str)):
            continue  # arrays: compared by rclpy's own types, not here
        have = got[param]
        same = (
            math.isclose(float(want.value), float(have), rel_tol=1e-12, abs_tol=0.0)
            if isinstance(have, float) and not isinstance(want.value, bool)
            else want.value == have
        )
        if not same:
            return (
                f'{want.path} sets {param} to {want.value!r} (section {want.section}), but '
                f'rcl gave the node {have!r} from another section: it applies the sections in '
                'the order their keys first appear across the files and -p, not in the order '
                "of the sources; key this entry as the other source keys the node's section"
            )
    return ''
