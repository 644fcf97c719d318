"""The argument parser of the ``rpl`` commands: a mistake on the command line is one line.

argparse prints its whole usage block before the error; with a dozen options that pushes
the one line that matters off the screen. This parser prints ``<prog>: error: <message>
(<prog> --help lists the options)`` and exits 2, as argparse does. Pure Python.
"""

from __future__ import annotations

import argparse
from typing import NoReturn


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line (its sub-parsers too).

    An empty or blank value is refused for every argument (it names no file, task or
    number). An argument that no parser takes is reported by the sub-command's parser (``rpl eval:
    error: unrecognized arguments: --bogus (rpl eval --help ...)``), whose help lists the
    options, not by the top one, whose help lists only the commands.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f'{self.prog}: error: {message} ({self.prog} --help lists the options)\n')

    def _get_value(self, action: argparse.Action, arg_string: str):  # noqa: ANN202 (argparse's)
        # An empty value names nothing: `--out ""` read as the current folder, `--json ""`
        # as "not given" (the default file was written), `rpl bag eval ""` was a traceback.
        # Refused as any other bad value, before the option's own type sees it.
        # (A sub-command's action is given all the strings after it: its parser checks them.)
        if not arg_string.strip() and action.nargs not in (argparse.PARSER, argparse.REMAINDER):
            raise argparse.ArgumentError(action, f'empty value {arg_string!r}')
        return super()._get_value(action, arg_string)

    def parse_args(self, args=None, namespace=None):  # noqa: ANN001, ANN201 (argparse's)
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self._chosen(parsed).error(f'unrecognized arguments: {" ".join(extras)}')
        return parsed

    def _chosen(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        """The deepest sub-command parser that ``parsed`` went through (self if none)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                sub = action.choices.get(getattr(parsed, action.dest, None) or '')
                if sub is not None:
                    return sub._chosen(parsed) if isinstance(sub, ArgumentParser) else sub
        return self
