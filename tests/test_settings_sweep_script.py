"""benchmarks/settings_sweep.sh refuses bad use in one line and overwrites nothing.

(Its runs themselves are `rpl train` runs, tested elsewhere; a sweep is a benchmark.)"""

from __future__ import annotations

import subprocess


def _sweep(repo_root, *args):
    return subprocess.run(
        ['bash', str(repo_root / 'benchmarks' / 'settings_sweep.sh'), *args],
        capture_output=True, text=True, check=False, cwd=repo_root, timeout=60,
    )  # fmt: skip


def test_missing_arguments_print_the_usage(repo_root):
    done = _sweep(repo_root, 'only-one')
    assert done.returncode == 2 and done.stderr.startswith('usage: ')


def test_an_existing_output_directory_is_refused_untouched(repo_root, tmp_path):
    (tmp_path / 'keep.txt').write_text('mine')
    done = _sweep(repo_root, str(tmp_path), '0', '600')
    assert done.returncode == 2 and 'exists already' in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ['keep.txt']


def test_bad_numbers_and_unknown_settings_are_refused(repo_root, tmp_path):
    done = _sweep(repo_root, str(tmp_path / 'new'), '0 x', '600')
    assert done.returncode == 2 and "'x' is not a whole number" in done.stderr
    done = subprocess.run(
        ['bash', str(repo_root / 'benchmarks' / 'settings_sweep.sh'),
         str(tmp_path / 'new'), '0', '600'],
        capture_output=True, text=True, check=False, cwd=repo_root, timeout=60,
        env={'PATH': '/usr/bin:/bin', 'SETTINGS': 'scratch warmup'},
    )  # fmt: skip
    assert done.returncode == 2 and "no setting 'warmup'" in done.stderr
    assert not (tmp_path / 'new').exists()
