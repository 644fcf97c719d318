"""The argument parser of the ``rpl`` commands: a mistake on the command line is one line.

argparse prints its whole usage block before the error; with a dozen options that pushes
the one line that matters off the screen. This parser prints ``<prog>: error: <message>
(<prog> --help lists the options)`` and exits 2, as argparse does. Pure Python.
"""

from __future__ import annotations

import argparse
from typing import NoReturn


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line (its sub-parsers too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f'{self.prog}: error: {message} ({self.prog} --help lists the options)\n')
