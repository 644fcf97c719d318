"""Core of the launch stand-in: context, substitutions, conditions, actions, descriptions.

Mirrors the small part of the ``launch`` API that the RPL launch files use, with the same
names and call signatures, so that one launch file runs under a real ``ros2 launch`` and
under ``rpl launch``. Evaluating a description does not start anything: every process
action adds a :class:`ProcessPlan` to the context, and :mod:`rpl_bringup.launch_runner`
supervises the plans.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar


class LaunchError(ValueError):
    """A launch file or its arguments cannot be evaluated (one clear sentence)."""


@dataclasses.dataclass(frozen=True)
class NodeDetails:
    """What a ROS node process was asked to be (kept for inspection and tests).

    Attributes:
        package: ROS package of the executable.
        executable: Executable (console script) name.
        name: Node name (``__node`` remap), or None to keep the node's own.
        namespace: Absolute namespace (``__ns`` remap), or None.
        parameter_files: YAML parameter files, in the order given.
        parameters: Parameter overrides (``-p name:=value``), evaluated to Python values.
        remappings: Topic remappings ``(from, to)``.
    """

    package: str
    executable: str
    name: str | None
    namespace: str | None
    parameter_files: tuple[str, ...]
    parameters: Mapping[str, Any]
    remappings: tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True)
class ProcessExited:
    """The event an ``on_exit`` callable receives, as ``launch.events.process.ProcessExited``.

    Attributes:
        process_name: The process's label (the node name for ROS nodes).
        pid: Its process id.
        returncode: Exit code; negative: killed by that signal.
        cmd: Its command line.
        name: The event's type name (as every ``launch`` event has), not the process's.
    """

    name: ClassVar[str] = 'launch.events.process.ProcessExited'
    process_name: str
    pid: int
    returncode: int
    cmd: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ExitVerdict:
    """What an ``on_exit`` callable decided about one exit (see :class:`ProcessPlan`).

    Attributes:
        shutdown: Reason to end the launch (the callable returned ``Shutdown()``), or None.
        messages: Lines to report (``LogInfo`` actions the callable returned).
    """

    shutdown: str | None = None
    messages: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ProcessPlan:
    """One process to supervise, fully evaluated.

    Attributes:
        name: Label for output lines and messages (the node name for ROS nodes).
        cmd: Command line, executable first.
        required: ``on_exit=Shutdown()``: its exit ends the launch.
        respawn: Restart it after ``respawn_delay`` when it exits unasked.
        respawn_delay: Seconds between its exit and the restart.
        output: 'screen' (lines printed with a name prefix) or 'log' (lines to a log file).
        env: Extra environment variables for this process only.
        cwd: Working directory, or None for the runner's.
        node: ROS node details, or None for a plain process.
        on_exit: The ``on_exit`` callable of the launch file, bound to its context: called
            with a :class:`ProcessExited` on every exit the launch did not ask for, before
            any respawn; returns an :class:`ExitVerdict`; an exception it raises ends the
            launch non-zero with its message (as the real ``launch`` does).
    """

    name: str
    cmd: tuple[str, ...]
    required: bool = False
    respawn: bool = False
    respawn_delay: float = 0.0
    output: str = 'screen'
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    cwd: str | None = None
    node: NodeDetails | None = None
    on_exit: Callable[[ProcessExited], ExitVerdict] | None = None


class LaunchContext:
    """Launch configurations plus the hooks that depend on the installation.

    Args:
        launch_configurations: Launch argument values given by the user (name -> text).
        find_package_share: ``package -> share directory`` (see
            :func:`rpl_bringup.launch_runner.find_package_share`).
        resolve_executable: ``(package, executable) -> command prefix`` (see
            :func:`rpl_bringup.launch_runner.resolve_executable`).
    """

    def __init__(
        self,
        launch_configurations: Mapping[str, str] | None = None,
        *,
        find_package_share: Callable[[str], str] | None = None,
        resolve_executable: Callable[[str, str], Sequence[str]] | None = None,
    ) -> None:
        self.launch_configurations: dict[str, str] = dict(launch_configurations or {})
        self.declared_arguments: dict[str, Any] = {}
        # Every launch configuration a substitution read: an argument given on the command
        # line that nothing declares but something reads (LaunchConfiguration('x',
        # default=...)) is used, as under ros2 launch.
        self.read_configurations: set[str] = set()
        self.processes: list[ProcessPlan] = []
        # As the real context's: True once the launch shuts down. Plans are made before
        # anything runs, and the runner calls on_exit callables only while not stopping.
        self.is_shutdown = False
        # Folder of the launch file being visited (ThisLaunchFileDir), set by the runner and
        # by IncludeLaunchDescription.
        self.launch_file_dir: str | None = None
        self._find_package_share = find_package_share
        self._resolve_executable = resolve_executable

    def find_package_share(self, package: str) -> str:
        """Share directory of ``package`` (raises LaunchError when unknown)."""
        if self._find_package_share is None:
            raise LaunchError(f'no package share resolver to find {package!r}')
        return self._find_package_share(package)

    def resolve_executable(self, package: str, executable: str) -> list[str]:
        """Command prefix that runs ``executable`` of ``package``."""
        if self._resolve_executable is None:
            return [executable]
        return list(self._resolve_executable(package, executable))

    def add_process(self, plan: ProcessPlan) -> None:
        """Record a process to start; a repeated name gets a ``-2``, ``-3``... suffix."""
        taken = {p.name for p in self.processes}
        name, n = plan.name, 1
        while name in taken:
            n += 1
            name = f'{plan.name}-{n}'
        self.processes.append(dataclasses.replace(plan, name=name))


class Substitution:
    """A piece of text known only at launch time."""

    def perform(self, context: LaunchContext) -> str:
        """The text, given the context."""
        raise NotImplementedError

    def describe(self) -> str:
        """Human-readable form for messages."""
        return type(self).__name__


class TextSubstitution(Substitution):
    """Literal text."""

    def __init__(self, *, text: str) -> None:
        self.text = str(text)

    def perform(self, context: LaunchContext) -> str:
        return self.text

    def describe(self) -> str:
        return repr(self.text)


SomeSubstitutionsType = str | Substitution | Iterable[str | Substitution]


def normalize_to_list_of_substitutions(value: SomeSubstitutionsType) -> list[Substitution]:
    """Turn text, one substitution or a mixed sequence of both into substitutions."""
    if isinstance(value, str):
        return [TextSubstitution(text=value)]
    if isinstance(value, Substitution):
        return [value]
    items = list(value)
    for item in items:
        if not isinstance(item, (str, Substitution)):
            raise LaunchError(f'expected text or substitutions, got {item!r}')
    return [TextSubstitution(text=i) if isinstance(i, str) else i for i in items]


def perform_substitutions(context: LaunchContext, subs: Sequence[Substitution]) -> str:
    """Concatenate the performed substitutions."""
    return ''.join(s.perform(context) for s in subs)


def is_substitution_like(value: Any) -> bool:
    """True for a substitution or a non-empty sequence holding at least one."""
    if isinstance(value, Substitution):
        return True
    if isinstance(value, (list, tuple)) and value:
        return any(isinstance(v, Substitution) for v in value) and all(
            isinstance(v, (str, Substitution)) for v in value
        )
    return False


class Condition:
    """Decides at launch time whether an action runs."""

    def evaluate(self, context: LaunchContext) -> bool:
        raise NotImplementedError


class Action:
    """Something a launch description does when visited.

    Args:
        condition: Skip the action when the condition evaluates False.
    """

    def __init__(self, *, condition: Condition | None = None) -> None:
        self.condition = condition

    def visit(self, context: LaunchContext) -> None:
        """Run the action if its condition holds."""
        if self.condition is None or self.condition.evaluate(context):
            self.execute(context)

    def execute(self, context: LaunchContext) -> None:
        """What the action does (default: nothing)."""


class LaunchDescription:
    """An ordered list of actions (what ``generate_launch_description`` returns)."""

    def __init__(self, initial_entities: Iterable[Action] | None = None) -> None:
        self.entities: list[Action] = list(initial_entities or [])

    def add_action(self, action: Action) -> None:
        """Append one action."""
        self.entities.append(action)

    add_entity = add_action

    def visit(self, context: LaunchContext) -> None:
        """Visit every action in order."""
        for entity in self.entities:
            if not isinstance(entity, Action):
                raise LaunchError(f'launch description holds a non-action {entity!r}')
            entity.visit(context)

    def get_launch_arguments(self, context: LaunchContext | None = None) -> list[Any]:
        """The ``DeclareLaunchArgument`` actions of this description, in order; with a
        ``context``, also those of included files (first declaration of a name wins, as in
        ``ros2 launch --show-args``) whose paths it can evaluate."""
        from rpl_bringup.launch_shim.actions import DeclareLaunchArgument
        from rpl_bringup.launch_shim.sources import GroupAction, IncludeLaunchDescription

        found: dict[str, Any] = {}
        for entity in self.entities:
            inner: list[Any] = []
            if isinstance(entity, DeclareLaunchArgument):
                inner = [entity]
            elif isinstance(entity, GroupAction):
                inner = LaunchDescription(entity.actions).get_launch_arguments(context)
            elif isinstance(entity, IncludeLaunchDescription) and context is not None:
                try:
                    included = entity.launch_description_source.get_launch_description(context)
                except LaunchError:
                    continue
                inner = included.get_launch_arguments(context)
            for argument in inner:
                found.setdefault(argument.name, argument)
        return list(found.values())
