"""The ``rpl`` console script.

Python imports the command line and what it needs (numpy, the launch runner; torch for the
training commands) before any handler of the commands is in place: a Ctrl-C then printed
a KeyboardInterrupt traceback. Here it is the one line and the shell's exit code 130.
"""

from __future__ import annotations

import sys


def main() -> int:
    """Run ``rpl`` (:func:`rpl_bringup.cli.main`); a Ctrl-C that no command handled is
    ``rpl: interrupted`` and exit code 130."""
    try:
        from rpl_bringup import cli

        return cli.main()
    except KeyboardInterrupt:
        print('rpl: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    raise SystemExit(main())
