"""Stand-in for ``launch_ros.actions.Node``: a ROS node process with name, namespace, params.

The evaluated command line is the one ``ros2 launch`` gives a node::

    EXE [arguments] --ros-args -r __node:=NAME -r __ns:=NS \
        --params-file FILE ... -p key:=value ... -r from:=to ...

Dict parameters become ``-p`` overrides (YAML text). rcl files a plain ``-p`` under the
``/**`` section and applies the sections in the order their keys first appear: after every
``--params-file`` as long as no file has a ``/**`` section (a file keyed ``/**`` would let a
file's node section win over them). The project's config files are keyed by node name; put
dicts last in ``parameters``, as the RPL launch files do. A node refuses to start when a
value it was given does not reach it (:mod:`rpl_interfaces.param_files`).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from rpl_bringup.launch_shim.actions import ExecuteProcess
from rpl_bringup.launch_shim.core import (
    LaunchContext,
    LaunchError,
    NodeDetails,
    SomeSubstitutionsType,
    is_substitution_like,
    normalize_to_list_of_substitutions,
    perform_substitutions,
)
from rpl_interfaces.params import yaml_float, yaml_string
from rpl_interfaces.ros_names import is_absolute_name, is_base_name


def parameter_text(value: Any) -> str:
    """YAML text of a parameter value for ``-p name:=TEXT`` (strings stay strings)."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return yaml_float(value)
    if isinstance(value, str):
        return yaml_string(value)
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(parameter_text(v) for v in value) + ']'
    raise LaunchError(f'unsupported parameter value {value!r} ({type(value).__name__})')


def _typed(text: str) -> Any:
    # Same rule as launch_ros: substituted text is read as YAML when that gives a scalar
    # or a list of scalars; anything else (empty text, mappings) stays text.
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list) and all(isinstance(v, (bool, int, float, str)) for v in value):
        return value
    return text


def _evaluate_value(context: LaunchContext, value: Any) -> Any:
    if is_substitution_like(value):
        return _typed(perform_substitutions(context, normalize_to_list_of_substitutions(value)))
    if isinstance(value, (list, tuple)):
        return [_evaluate_value(context, v) for v in value]
    if isinstance(value, (bool, int, float, str)):
        return value
    raise LaunchError(f'unsupported parameter value {value!r}')


def _flatten(
    context: LaunchContext, params: Mapping[Any, Any], prefix: str = ''
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = (
            key
            if isinstance(key, str)
            else perform_substitutions(context, normalize_to_list_of_substitutions(key))
        )
        full = f'{prefix}{name}'
        if isinstance(value, Mapping):
            out.update(_flatten(context, value, f'{full}.'))
        else:
            out[full] = _evaluate_value(context, value)
    return out


class Node(ExecuteProcess):
    """A ROS 2 node executable of a package.

    Args:
        executable: Executable name in the package (console script).
        package: ROS package name.
        name: Node name (``__node`` remap).
        namespace: Node namespace (``__ns`` remap); relative names get a leading '/'.
        parameters: YAML files (text, substitutions or paths) and dicts, applied in order.
        remappings: ``(from, to)`` topic remappings.
        arguments: Extra command-line arguments before ``--ros-args``.
        ros_arguments: Extra arguments after ``--ros-args``.
        **kwargs: ``ExecuteProcess`` options (output, respawn, respawn_delay, on_exit, ...).
    """

    def __init__(
        self,
        *,
        executable: SomeSubstitutionsType,
        package: SomeSubstitutionsType | None = None,
        name: SomeSubstitutionsType | None = None,
        namespace: SomeSubstitutionsType | None = None,
        parameters: Iterable[Any] | None = None,
        remappings: Iterable[tuple[SomeSubstitutionsType, SomeSubstitutionsType]] | None = None,
        arguments: Iterable[SomeSubstitutionsType] | None = None,
        ros_arguments: Iterable[SomeSubstitutionsType] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(cmd=[executable], name=name, **kwargs)
        self.package = package
        self.executable = executable
        self.node_name = name
        self.namespace = namespace
        self.parameters = list(parameters or [])
        self.remappings = list(remappings or [])
        self.arguments = list(arguments or [])
        self.ros_arguments = list(ros_arguments or [])

    def _text(self, context: LaunchContext, value: SomeSubstitutionsType | None) -> str | None:
        if value is None:
            return None
        return perform_substitutions(context, normalize_to_list_of_substitutions(value))

    def details(self, context: LaunchContext) -> NodeDetails:
        """Evaluate package, names, parameter files and overrides."""
        executable = self._text(context, self.executable)
        package = self._text(context, self.package) or ''
        name = self._text(context, self.node_name)
        if name is not None and not is_base_name(name):
            raise LaunchError(
                f'node name {name!r} is not a valid ROS name ([A-Za-z_][A-Za-z0-9_]*)'
            )
        namespace = self._text(context, self.namespace)
        if namespace:
            namespace = namespace if namespace.startswith('/') else '/' + namespace
            namespace = namespace.rstrip('/') or '/'
            if namespace != '/' and not is_absolute_name(namespace):
                raise LaunchError(
                    f'namespace {namespace!r} of node {name or executable!r} is not a valid ROS '
                    'namespace (/a/b: letters, digits, underscores; no leading digit)'
                )
        else:
            namespace = None
        files: list[str] = []
        overrides: dict[str, Any] = {}
        for entry in self.parameters:
            if isinstance(entry, Mapping):
                overrides.update(_flatten(context, entry))
                continue
            path = (
                os.fspath(entry)
                if isinstance(entry, pathlib.PurePath)
                else self._text(context, entry)
            )
            if not os.path.isfile(path):
                raise LaunchError(
                    f'parameter file {path!r} of node {name or executable!r} does not exist'
                )
            files.append(path)
        remaps = tuple(
            (self._text(context, src), self._text(context, dst)) for src, dst in self.remappings
        )
        return NodeDetails(
            package=package,
            executable=executable,
            name=name,
            namespace=namespace,
            parameter_files=tuple(files),
            parameters=overrides,
            remappings=remaps,
        )

    def execute(self, context: LaunchContext) -> None:
        node = self.details(context)
        cmd = context.resolve_executable(node.package, node.executable)
        cmd += [self._text(context, a) for a in self.arguments]
        cmd.append('--ros-args')
        cmd += [self._text(context, a) for a in self.ros_arguments]
        if node.name is not None:
            cmd += ['-r', f'__node:={node.name}']
        if node.namespace is not None:
            cmd += ['-r', f'__ns:={node.namespace}']
        for path in node.parameter_files:
            cmd += ['--params-file', path]
        for key, value in node.parameters.items():
            cmd += ['-p', f'{key}:={parameter_text(value)}']
        for src, dst in node.remappings:
            cmd += ['-r', f'{src}:={dst}']
        context.add_process(self._plan(context, cmd, node=node))

    def _label(self, context: LaunchContext, cmd: list[str]) -> str:
        # Output prefix: the node name, else the executable (not the resolved path).
        return self._text(context, self.node_name) or self._text(context, self.executable)


__all__ = ['Node']
