"""What a node's exit does to a launch: the ``on_exit`` callables of the stack's nodes.

:class:`RequiredExit` (a required node: exit 0 ends the launch, anything else ends it with
an error), :class:`WatchedExit` (a node whose output was asked for: a failure ends the
launch with an error) and :class:`RespawnWatch` (a respawning node: a log line, or an error
on a crash loop). Plain callables of the standard ``launch`` API, so ``ros2 launch`` and
``rpl launch`` apply them alike.
"""

from __future__ import annotations

import time
from typing import Any

from launch.actions import LogInfo, Shutdown

# A respawned node dying again within CRASH_LOOP_S of its restart is in a crash loop (e.g.
# a bad controller parameter): the launch ends with an error naming it (the project
# runner's own rule too).
from rpl_bringup.supervisor import CRASH_LOOP_S


class RequiredExit:
    """``on_exit`` callable of a required node (``launch`` calls it with the ProcessExited
    event and the context): exit code 0 of a node that ends its work by itself (a sim bridge
    after its ``episodes``) ends the launch (``Shutdown()``); any other exit raises, which
    ends the launch with exit code 1 under ``ros2 launch`` (a bare ``on_exit=Shutdown()``
    ends it with 0 there) and with the node's code (1 for a 0) under ``rpl launch``. With
    ``runs_until_stopped`` (a trainer, a bag recorder) exit 0 is no finished run but a
    signal from outside (``kill``, systemd): it raises too. (A sim bridge running forever
    exits 128 + the signal when stopped.) Exits while the launch is already shutting down
    change nothing."""

    def __init__(self, what: str, runs_until_stopped: bool = False) -> None:
        self._what = what
        self._runs_until_stopped = runs_until_stopped

    def __call__(self, event: Any, context: Any) -> Any:
        if getattr(context, 'is_shutdown', False):
            return None
        if event.returncode == 0 and not self._runs_until_stopped:
            return Shutdown(reason=f'{self._what} (required) finished')
        if event.returncode == 0:
            raise RuntimeError(
                f'required process {event.process_name} exited (code 0) although it runs '
                'until the launch stops (stopped from outside?): the launch did not do what '
                'was asked'
            )
        raise RuntimeError(f'required process {event.process_name} died (code {event.returncode})')


class WatchedExit:
    """``on_exit`` callable of a node that is not required but whose output the user asked
    for (the episode monitor and its ``results:=``), and that runs until the launch stops:
    any exit before that raises, which ends the launch with an error (the output is
    incomplete), exit 0 too (a SIGTERM from outside)."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __call__(self, event: Any, context: Any) -> Any:
        if getattr(context, 'is_shutdown', False):
            return None
        verb = 'exited' if event.returncode == 0 else 'died'
        raise RuntimeError(f'{event.process_name} {verb} (code {event.returncode}): {self._what}')


class RespawnWatch:
    """``on_exit`` callable of a respawning node: says what happens until it is back, and
    raises (ending the launch with an error) when it dies again within ``CRASH_LOOP_S`` of
    its restart, a crash loop that respawning cannot fix."""

    def __init__(self, what: str, respawn_delay: float, meanwhile: str) -> None:
        self._what, self._delay, self._meanwhile = what, respawn_delay, meanwhile
        self._last_exit: float | None = None

    def __call__(self, event: Any, context: Any) -> Any:
        if getattr(context, 'is_shutdown', False):
            return None
        now = time.monotonic()
        restarted = None if self._last_exit is None else self._last_exit + self._delay
        self._last_exit = now
        if restarted is not None and now - restarted < CRASH_LOOP_S:
            raise RuntimeError(
                f'{event.process_name} died again (code {event.returncode}) '
                f'{now - restarted:.1f} s after its restart: a crash loop ({self._what}: '
                'check its parameters)'
            )
        return LogInfo(
            msg=f'{self._what} died (exit code {event.returncode}); respawning it in '
            f'{self._delay:.1f} s; {self._meanwhile}'
        )
