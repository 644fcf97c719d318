"""Stand-ins for ``launch.actions``: DeclareLaunchArgument, ExecuteProcess, Shutdown, LogInfo,
IncludeLaunchDescription and GroupAction (the last two in :mod:`.sources`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from rpl_bringup.launch_shim.core import (
    Action,
    Condition,
    ExitVerdict,
    LaunchContext,
    LaunchError,
    ProcessExited,
    ProcessPlan,
    SomeSubstitutionsType,
    Substitution,
    normalize_to_list_of_substitutions,
    perform_substitutions,
)
from rpl_bringup.launch_shim.sources import GroupAction, IncludeLaunchDescription

OUTPUT_CHOICES = ('screen', 'log', 'both', 'own_log')


class DeclareLaunchArgument(Action):
    """Declare a launch argument (``name:=value`` on the command line).

    Args:
        name: Argument name.
        default_value: Used when the user gives none; None makes the argument required.
        description: One line shown by ``rpl launch ... --show-args``.
        choices: Allowed values, or None for any.
    """

    def __init__(
        self,
        name: str,
        *,
        default_value: SomeSubstitutionsType | None = None,
        description: str | None = None,
        choices: Sequence[str] | None = None,
        condition: Condition | None = None,
    ) -> None:
        super().__init__(condition=condition)
        self.name = name
        self.default_value = (
            None if default_value is None else normalize_to_list_of_substitutions(default_value)
        )
        self.description = description or 'no description given'
        self.choices = None if choices is None else [str(c) for c in choices]

    def execute(self, context: LaunchContext) -> None:
        context.declared_arguments[self.name] = self
        if self.name not in context.launch_configurations:
            if self.default_value is None:
                raise LaunchError(
                    f'launch argument {self.name!r} is required: pass {self.name}:=VALUE '
                    f'({self.description})'
                )
            value = perform_substitutions(context, self.default_value)
            context.launch_configurations[self.name] = value
        value = context.launch_configurations[self.name]
        if self.choices is not None and value not in self.choices:
            raise LaunchError(
                f'launch argument {self.name}:={value!r} is not one of {self.choices}'
            )


class Shutdown(Action):
    """Shut the launch down; used as ``on_exit=Shutdown()`` to mark a required process."""

    def __init__(self, *, reason: str = 'a required process exited', **kwargs) -> None:
        super().__init__(**kwargs)
        self.reason = reason

    def execute(self, context: LaunchContext) -> None:
        raise LaunchError(
            'Shutdown() is supported only as on_exit=Shutdown() of a process by this runner'
        )


class LogInfo(Action):
    """Log a message: ``[INFO] [launch.user]: msg`` (also an ``on_exit`` callable's result).

    Args:
        msg: Text or substitutions.
    """

    def __init__(self, *, msg: SomeSubstitutionsType, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.msg = normalize_to_list_of_substitutions(msg)

    def text(self, context: LaunchContext) -> str:
        """The message, substitutions performed."""
        return perform_substitutions(context, self.msg)

    def execute(self, context: LaunchContext) -> None:
        print(f'[INFO] [launch.user]: {self.text(context)}', flush=True)


# on_exit of a process: actions run on every exit, or a callable (event, context) -> actions.
OnExitType = Action | Iterable[Action] | Callable[[Any, Any], Any] | None


def _as_actions(entities: Any) -> list[Any]:
    if entities is None:
        return []
    if isinstance(entities, Action) or not isinstance(entities, Iterable):
        return [entities]
    if isinstance(entities, (str, bytes)):
        return [entities]
    return list(entities)


def _is_shutdown(on_exit: OnExitType) -> bool:
    if on_exit is None or (callable(on_exit) and not isinstance(on_exit, Action)):
        return False
    actions = _as_actions(on_exit)
    for action in actions:
        if not isinstance(action, Shutdown):
            raise LaunchError(
                f'on_exit supports Shutdown() or a callable (event, context) here, got {action!r}'
            )
    return bool(actions)


def exit_verdict(entities: Any, context: LaunchContext) -> ExitVerdict:
    """What the entities an ``on_exit`` callable returned ask for.

    Raises:
        LaunchError: An entity other than ``Shutdown()`` or ``LogInfo()``.
    """
    shutdown, messages = None, []
    for entity in _as_actions(entities):
        if entity is None:
            continue
        if isinstance(entity, Shutdown):
            shutdown = entity.reason
        elif isinstance(entity, LogInfo):
            messages.append(entity.text(context))
        else:
            raise LaunchError(
                f'an on_exit callable returned {entity!r}; this runner supports Shutdown() '
                'and LogInfo() there'
            )
    return ExitVerdict(shutdown=shutdown, messages=tuple(messages))


def _bind_on_exit(
    on_exit: Callable[[Any, Any], Any], context: LaunchContext
) -> Callable[[ProcessExited], ExitVerdict]:
    def call(event: ProcessExited) -> ExitVerdict:
        return exit_verdict(on_exit(event, context), context)

    return call


def _perform(context: LaunchContext, value: SomeSubstitutionsType) -> str:
    return perform_substitutions(context, normalize_to_list_of_substitutions(value))


class ExecuteProcess(Action):
    """Run a process (the base of ``launch_ros.actions.Node``).

    Args:
        cmd: Command line; each element is text or substitutions.
        name: Label for its output lines; default: the executable's file name.
        cwd: Working directory.
        additional_env: Extra environment variables.
        output: 'screen' or 'both' (print), 'log' or 'own_log' (log file only).
        respawn: Restart it when it exits unasked (bool or substitution of 'true'/'false').
        respawn_delay: Seconds to wait before a restart.
        on_exit: ``Shutdown()`` to end the launch when this process exits; or, as in the
            real ``launch``, a callable ``(event, context)`` called on each exit with the
            event's ``returncode``, returning None, ``Shutdown()`` and/or ``LogInfo()``
            actions, or raising to end the launch with an error.
    """

    def __init__(
        self,
        *,
        cmd: Iterable[SomeSubstitutionsType],
        name: SomeSubstitutionsType | None = None,
        cwd: SomeSubstitutionsType | None = None,
        additional_env: Mapping[str, SomeSubstitutionsType] | None = None,
        output: str = 'log',
        respawn: bool | SomeSubstitutionsType = False,
        respawn_delay: float | None = None,
        on_exit: OnExitType = None,
        condition: Condition | None = None,
    ) -> None:
        super().__init__(condition=condition)
        if output not in OUTPUT_CHOICES:
            raise LaunchError(f'output={output!r} is not one of {list(OUTPUT_CHOICES)}')
        self.cmd = [normalize_to_list_of_substitutions(part) for part in cmd]
        self.name = name
        self.cwd = cwd
        self.additional_env = dict(additional_env or {})
        self.output = output
        self.respawn = respawn
        self.respawn_delay = 0.0 if respawn_delay is None else float(respawn_delay)
        if self.respawn_delay < 0:
            raise LaunchError(f'respawn_delay must be >= 0 s, got {respawn_delay!r}')
        self.required = _is_shutdown(on_exit)
        self.on_exit_callable = (
            on_exit if callable(on_exit) and not isinstance(on_exit, Action) else None
        )

    def _respawn(self, context: LaunchContext) -> bool:
        if isinstance(self.respawn, bool):
            return self.respawn
        text = _perform(context, self.respawn).strip().lower()
        if text not in ('true', 'false', '1', '0'):
            raise LaunchError(f'respawn must evaluate to true or false, got {text!r}')
        return text in ('true', '1')

    def _command(self, context: LaunchContext) -> list[str]:
        return [perform_substitutions(context, part) for part in self.cmd]

    def _label(self, context: LaunchContext, cmd: Sequence[str]) -> str:
        if self.name is not None:
            return _perform(context, self.name)
        return cmd[0].rsplit('/', 1)[-1] if cmd else 'process'

    def _plan(self, context: LaunchContext, cmd: list[str], **extra) -> ProcessPlan:
        if not cmd:
            raise LaunchError('a process needs a non-empty cmd')
        return ProcessPlan(
            name=self._label(context, cmd),
            cmd=tuple(cmd),
            required=self.required,
            respawn=self._respawn(context),
            respawn_delay=self.respawn_delay,
            output='screen' if self.output in ('screen', 'both') else 'log',
            env={k: _perform(context, v) for k, v in self.additional_env.items()},
            cwd=None if self.cwd is None else _perform(context, self.cwd),
            on_exit=(
                None
                if self.on_exit_callable is None
                else _bind_on_exit(self.on_exit_callable, context)
            ),
            **extra,
        )

    def execute(self, context: LaunchContext) -> None:
        context.add_process(self._plan(context, self._command(context)))


__all__ = [
    'DeclareLaunchArgument',
    'ExecuteProcess',
    'GroupAction',
    'IncludeLaunchDescription',
    'LogInfo',
    'Shutdown',
    'Substitution',
]
