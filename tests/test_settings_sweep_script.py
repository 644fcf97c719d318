"""benchmarks/settings_sweep.sh refuses bad use in one line and overwrites nothing, and its
settings give back the configs of the README's runs made with it.

(Its runs themselves are `rpl train` runs, tested elsewhere; a sweep is a benchmark.)"""

from __future__ import annotations

import json
import os
import shlex
import subprocess

import pytest

from rpl_trainer.cli import main

# Each setting and a committed run it made (results/baselines), seed 0.
RUNS = {
    'exec_noburn': 'mbrl_pusher_v2_h200_exec_noburn_s0',
    'exec_noburn_warm': 'mbrl_pusher_v2_h200_exec_noburn_warm_s0',
    'exec_noburn_warm_scale2': 'mbrl_pusher_v2_h200_exec_noburn_warm_scale2_s0',
    'resid_noburn_warm': 'mbrl_pusher_v2_h200_resid_noburn_warm_s0',
    'scratch': 'mbrl_pusher_v2_h200_scratch_s0',
    'knn2_warm': 'mbrl_pusher_v2_h200_s27_knn2_warm_s0',
    'knn4_warm': 'mbrl_pusher_v2_h200_s27_knn4_warm_s0',
    'exec_noburn_warm_l2low': 'mbrl_pusher_v2_h200_s27_exec_noburn_warm_l2low_s0',
    'exec_noburn_warm_utd005': 'mbrl_pusher_s27_exec_noburn_warm_utd005_s0',
    'scratch_utd005': 'mbrl_pusher_s27_scratch_utd005_s0',
    'complex_hook_gc_her': 's27_complex_hook_gc_her_s0',
    'complex_hook_plain_her': 's27_complex_hook_plain_her_s0',
    'base_input': 'mbrl_pusher_s28_base_input_s0',
    'base_input_scale2': 'mbrl_pusher_s28_base_input_scale2_s0',
}
# Settings that change what a run writes, not what it learns: the sweep's budget, and the
# snapshots the hook configs keep since stop 31 (`rpl select`).
BOOKKEEPING = ('total_env_steps', 'snapshots')
# TrainConfig fields the committed runs predate, with their defaults (the old behaviour).
ADDED_LATER = {
    'base_input': False,  # stop 28
    'privileged_goal': False,  # stop 31
    'reward_threshold': 0.0,  # stop 31
}


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


def test_every_setting_gives_back_the_config_of_its_committed_run(repo_root, tmp_path, capsys):
    done = subprocess.run(
        ['bash', str(repo_root / 'benchmarks' / 'settings_sweep.sh'),
         str(tmp_path / 'sweep'), '0', '1000'],
        capture_output=True, text=True, check=True, cwd=repo_root, timeout=60,
        env={**os.environ, 'DRY_RUN': '1', 'SETTINGS': ' '.join(RUNS)},
    )  # fmt: skip
    commands = done.stdout.splitlines()
    assert len(commands) == len(RUNS) and not (tmp_path / 'sweep').exists()
    for command, (setting, run) in zip(commands, RUNS.items(), strict=True):
        argv = shlex.split(command)
        assert argv[:2] == ['rpl', 'train'] and argv[-1].endswith(f'/{setting}_s0'), command
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(repo_root)
            assert main([*argv[1:], '--show-config']) == 0
        printed = capsys.readouterr().out
        config = json.loads(printed[printed.index('{') :])
        committed = json.loads(
            (repo_root / 'results' / 'baselines' / run / 'config.json').read_text()
        )
        # A field added after the run (e.g. base_input, stop 28) has the default that gives
        # the old behaviour: the run had that.
        committed = {**ADDED_LATER, **committed}
        differ = {
            key
            for key in config.keys() | committed.keys()
            if key not in BOOKKEEPING and config.get(key) != committed.get(key)
        }
        assert not differ, (setting, {k: (config.get(k), committed.get(k)) for k in differ})
