"""Stand-ins for ``launch.launch_description_sources`` and the include and group actions.

``IncludeLaunchDescription(PythonLaunchDescriptionSource(path), launch_arguments=...)``
works as in the real ``launch``: the arguments are evaluated in the including file's
context and set as launch configurations (like ``SetLaunchConfiguration``, not scoped:
they stay set after the include), then the included description is visited. Wrap the
include in ``GroupAction([...])`` (scoped by default) to keep them inside, as there.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
import traceback
from collections.abc import Iterable, Mapping
from typing import Any

from rpl_bringup.launch_shim.core import (
    Action,
    Condition,
    LaunchContext,
    LaunchDescription,
    LaunchError,
    SomeSubstitutionsType,
    normalize_to_list_of_substitutions,
    perform_substitutions,
)
from rpl_interfaces import TRACEBACK_ENV, wants_traceback

_loaded = itertools.count()
_SHIM_PACKAGE = __name__.rsplit('.', 1)[0]  # rpl_bringup.launch_shim


def load_python_launch_file(path: str) -> Any:
    """Import a Python launch file and return what its ``generate_launch_description()``
    returns (with whatever ``launch`` modules are registered now).

    Raises:
        LaunchError: The file is missing or defines no ``generate_launch_description``.
    """
    if not os.path.isfile(path):
        raise LaunchError(f'launch file {path!r} does not exist')
    name = f'rpl_launch_file_{next(_loaded)}_' + os.path.basename(path).replace('.', '_')
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LaunchError(f'cannot load launch file {path!r}')
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        generate = getattr(module, 'generate_launch_description', None)
        if not callable(generate):
            raise LaunchError(f'launch file {path!r} defines no generate_launch_description()')
        return generate()
    except LaunchError:
        raise
    except Exception as exc:  # the file's own mistake: one line saying where, unless asked
        if wants_traceback():
            raise
        raise _file_failure(path, exc) from None


def _file_failure(path: str, exc: Exception) -> LaunchError:
    """One line for a launch file that does not import or whose
    ``generate_launch_description()`` raised: the error and where, in that file if it is
    there (a syntax error, a missing module, a mistake in the function)."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        where = f'{os.path.basename(exc.filename)}:{exc.lineno}'
        text = f'SyntaxError: {exc.msg}'
    else:
        frames = traceback.extract_tb(exc.__traceback__)
        own = [f for f in frames if os.path.abspath(f.filename) == os.path.abspath(path)]
        frame = (own or frames)[-1]
        where = f'{os.path.basename(frame.filename)}:{frame.lineno} in {frame.name}'
        text = f'{type(exc).__name__}: {" ".join(str(exc).split()) or "-"}'
        module = (exc.name or '') if isinstance(exc, ImportError) else ''
        if module.startswith(_SHIM_PACKAGE) or module.split('.')[0] in ('launch', 'launch_ros'):
            missing = re.search(r"cannot import name '([^']+)'", str(exc))
            what = missing.group(1) if missing else module
            text = (
                f"{what} is not in rpl launch's own runner, which has only part of the launch "
                "API (README, Launch rules); with ROS 2's launch installed the file runs there"
            )
    return LaunchError(
        f'launch file {path!r} failed: {text} (at {where}); set {TRACEBACK_ENV}=1 for the '
        'whole traceback'
    )


class PythonLaunchDescriptionSource:
    """A ``*.launch.py`` file, its path given as text or substitutions."""

    def __init__(self, launch_file_path: SomeSubstitutionsType) -> None:
        self._path = normalize_to_list_of_substitutions(launch_file_path)

    def location(self, context: LaunchContext) -> str:
        """The file's path, substitutions performed."""
        return perform_substitutions(context, self._path)

    def get_launch_description(self, context: LaunchContext) -> LaunchDescription:
        """Load the file (raises LaunchError for anything but a LaunchDescription)."""
        path = self.location(context)
        description = load_python_launch_file(path)
        if not isinstance(description, LaunchDescription):
            raise LaunchError(
                f'{path!r}: generate_launch_description() returned {description!r}, not a '
                'LaunchDescription'
            )
        return description


AnyLaunchDescriptionSource = PythonLaunchDescriptionSource  # only Python files here


class IncludeLaunchDescription(Action):
    """Visit another launch file's description with the given launch arguments.

    Args:
        launch_description_source: A ``PythonLaunchDescriptionSource``, or the file's path.
        launch_arguments: ``(name, value)`` pairs (``dict.items()``); names and values are
            text or substitutions, evaluated in the including file's context.
    """

    def __init__(
        self,
        launch_description_source: PythonLaunchDescriptionSource | SomeSubstitutionsType,
        *,
        launch_arguments: Iterable[tuple[SomeSubstitutionsType, SomeSubstitutionsType]]
        | None = None,
        condition: Condition | None = None,
    ) -> None:
        super().__init__(condition=condition)
        if not isinstance(launch_description_source, PythonLaunchDescriptionSource):
            launch_description_source = PythonLaunchDescriptionSource(launch_description_source)
        self.launch_description_source = launch_description_source
        if isinstance(launch_arguments, Mapping):
            launch_arguments = launch_arguments.items()
        self.launch_arguments = tuple(launch_arguments or ())

    def execute(self, context: LaunchContext) -> None:
        path = self.launch_description_source.location(context)
        description = self.launch_description_source.get_launch_description(context)
        values = [
            (
                perform_substitutions(context, normalize_to_list_of_substitutions(name)),
                perform_substitutions(context, normalize_to_list_of_substitutions(value)),
            )
            for name, value in self.launch_arguments
        ]
        context.launch_configurations.update(values)
        outer_dir = context.launch_file_dir
        context.launch_file_dir = os.path.dirname(os.path.abspath(path))
        try:
            description.visit(context)
        finally:
            context.launch_file_dir = outer_dir


class GroupAction(Action):
    """Visit actions together; ``scoped`` (default) restores the launch configurations
    afterwards; ``forwarding=False`` starts the group from only ``launch_configurations``.

    Args:
        actions: The actions of the group.
        scoped: Keep launch configurations set inside the group inside it.
        forwarding: Let the group see the configurations set outside it.
        launch_configurations: Configurations to set at the start of the group.
    """

    def __init__(
        self,
        actions: Iterable[Action],
        *,
        scoped: bool = True,
        forwarding: bool = True,
        launch_configurations: Mapping[SomeSubstitutionsType, SomeSubstitutionsType] | None = None,
        condition: Condition | None = None,
    ) -> None:
        super().__init__(condition=condition)
        self.actions = list(actions)
        self.scoped, self.forwarding = scoped, forwarding
        self.launch_configurations = dict(launch_configurations or {})

    def execute(self, context: LaunchContext) -> None:
        saved = dict(context.launch_configurations)
        values = {
            perform_substitutions(context, normalize_to_list_of_substitutions(k)): (
                perform_substitutions(context, normalize_to_list_of_substitutions(v))
            )
            for k, v in self.launch_configurations.items()
        }
        if self.scoped and not self.forwarding:
            context.launch_configurations.clear()
        context.launch_configurations.update(values)
        try:
            LaunchDescription(self.actions).visit(context)
        finally:
            if self.scoped:
                context.launch_configurations.clear()
                context.launch_configurations.update(saved)


__all__ = [
    'AnyLaunchDescriptionSource',
    'GroupAction',
    'IncludeLaunchDescription',
    'PythonLaunchDescriptionSource',
]
