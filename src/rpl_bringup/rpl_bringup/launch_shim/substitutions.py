"""Stand-ins for ``launch.substitutions``: LaunchConfiguration, PathJoinSubstitution,
ThisLaunchFileDir, text."""

from __future__ import annotations

import os
from collections.abc import Iterable

from rpl_bringup.launch_shim.core import (
    LaunchContext,
    LaunchError,
    SomeSubstitutionsType,
    Substitution,
    TextSubstitution,
    normalize_to_list_of_substitutions,
    perform_substitutions,
)


class LaunchConfiguration(Substitution):
    """The value of a launch argument.

    Args:
        variable_name: Argument name.
        default: Text used when the argument was neither given nor declared with a default.
    """

    def __init__(
        self, variable_name: str, *, default: SomeSubstitutionsType | None = None
    ) -> None:
        self.variable_name = variable_name
        self.default = None if default is None else normalize_to_list_of_substitutions(default)

    def perform(self, context: LaunchContext) -> str:
        context.read_configurations.add(self.variable_name)
        if self.variable_name in context.launch_configurations:
            return context.launch_configurations[self.variable_name]
        if self.default is not None:
            return perform_substitutions(context, self.default)
        raise LaunchError(
            f'launch configuration {self.variable_name!r} has no value: declare it with '
            'DeclareLaunchArgument or give a default'
        )

    def describe(self) -> str:
        return f'LaunchConfiguration({self.variable_name!r})'


class PathJoinSubstitution(Substitution):
    """Join path parts with the platform separator; each part is text or substitutions."""

    def __init__(self, substitutions: Iterable[SomeSubstitutionsType]) -> None:
        self.parts = [normalize_to_list_of_substitutions(p) for p in substitutions]

    def perform(self, context: LaunchContext) -> str:
        return os.path.join(*(perform_substitutions(context, p) for p in self.parts))


class ThisLaunchFileDir(Substitution):
    """The folder of the launch file this substitution is in."""

    def perform(self, context: LaunchContext) -> str:
        if context.launch_file_dir is None:
            raise LaunchError('ThisLaunchFileDir() used outside a launch file')
        return context.launch_file_dir


__all__ = [
    'LaunchConfiguration',
    'PathJoinSubstitution',
    'Substitution',
    'TextSubstitution',
    'ThisLaunchFileDir',
]
