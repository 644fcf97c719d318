"""Plug-ins by Python entry point: the one loader behind the controller and task registries.

A user's package registers a controller or a task in its own ``pyproject.toml`` /
``setup.py``, e.g.::

    [project.entry-points.'rpl.controllers']
    my_pusher = 'my_package.controllers:MY_PUSHER'   # a ControllerSpec

Every program that looks a name up (``rpl eval`` and its worker processes, ``rpl train``,
the nodes, the launch files) finds it through :func:`importlib.metadata.entry_points`, i.e.
from the ``*.dist-info`` folders on ``sys.path`` (``PYTHONPATH`` included). A plug-in that
cannot be imported, names an object of the wrong type or a name already taken is skipped
with one warning line naming the entry point; the others load as usual. Pure Python.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Callable
from importlib import metadata
from typing import Any

LOG = logging.getLogger('rpl.plugins')


def entry_point_label(entry_point: metadata.EntryPoint) -> str:
    """``'<name> = <module:object>' (group <group>, from <distribution>)`` for messages."""
    dist = getattr(entry_point, 'dist', None)
    source = f', from {dist.metadata["Name"]} {dist.version}' if dist is not None else ''
    where = f'(group {entry_point.group}{source})'
    return f"entry point '{entry_point.name} = {entry_point.value}' {where}"


def _rebind_log_streams(printed: io.StringIO) -> None:
    """Point logging handlers made during the import (``logging.basicConfig()`` at import
    binds the root handler to the stream of that moment) at the real stderr: they wrote
    into the held-back buffer for the rest of the process, rpl's own skip lines included."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, 'handlers', ()):
            if isinstance(handler, logging.StreamHandler) and handler.stream is printed:
                handler.setStream(sys.stderr)


def _last_line(printed: io.StringIO) -> str:
    """`` (it printed: '<its last line>')``, or '' when the import printed nothing."""
    lines = [line for line in printed.getvalue().splitlines() if line.strip()]
    if not lines:
        return ''
    last = lines[-1].strip()
    return f' (it printed: {last[:200]!r})'


def load_plugins(
    group: str, expected: type, register: Callable[[str, Any, str], None]
) -> dict[str, str]:
    """Load every entry point of ``group`` and register the object each one names.

    Args:
        group: Entry-point group, e.g. ``'rpl.controllers'``.
        expected: The type the named object must have (e.g. ``ControllerSpec``).
        register: ``register(name, obj, source)``; a ValueError from it (name taken, bad
            declaration) skips that plug-in. ``source`` is the entry point's label.

    Returns:
        Entry-point name -> the one-line reason it was skipped (also logged as a warning).
    """
    skipped: dict[str, str] = {}
    for entry_point in metadata.entry_points(group=group):
        label = entry_point_label(entry_point)
        printed = io.StringIO()
        try:
            # What the import prints is held back: shown (on stderr) once the import worked,
            # its last line in the skip line when it failed (argparse run at import printed
            # its usage and error above the skip line, as if from the command itself).
            try:
                with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
                    obj = entry_point.load()
            finally:
                _rebind_log_streams(printed)
        except (Exception, SystemExit) as exc:  # any failure of foreign code: skip it, keep
            # the rest (a module that calls sys.exit or argparse at import ended every command
            # and node silently with its code)
            reason = f'cannot be loaded: {type(exc).__name__}: {exc}{_last_line(printed)}'
        else:
            sys.stderr.write(printed.getvalue())
            if isinstance(obj, expected):
                try:
                    register(entry_point.name, obj, label)
                    continue
                except ValueError as exc:
                    reason = str(exc)
            else:
                reason = f'names a {type(obj).__name__}, expected a {expected.__name__}'
        skipped[entry_point.name] = f'{label} {reason}'
        LOG.warning('rpl: skipped plug-in %s %s', label, reason)
    return skipped
