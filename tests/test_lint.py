"""The whole tree passes the project's one linter and formatter (ruff, ruff.toml): `make test`
fails on a lint error or an unformatted file, not only `make lint`."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    'command', [['check', '--no-cache'], ['format', '--check', '--no-cache']], ids=' '.join
)
def test_ruff_passes_on_the_whole_tree(repo_root, command):
    done = subprocess.run(
        [sys.executable, '-m', 'ruff', *command, '.'],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f'ruff {" ".join(command)} .:\n{done.stdout}{done.stderr}'
