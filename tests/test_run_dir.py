"""The `rpl train` run directory (rpl_trainer.run_dir): a used directory is refused, only
the same run resumes, and summary.json names the best model."""

from __future__ import annotations

import dataclasses
import json

import pytest

from rpl_trainer.config import make_config
from rpl_trainer.run_dir import (
    BEST_ONNX_FILE,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    SUMMARY_FILE,
    RunDirError,
    check_run_dir,
    is_new_best,
    no_best,
    read_base_eval,
    read_run_config,
    write_base_eval,
    write_config,
    write_summary,
)

CONFIG = make_config({'task': 'slippery_push', 'seed': 3})


def test_a_new_run_needs_a_missing_or_empty_directory(tmp_path):
    check_run_dir(tmp_path / 'new', CONFIG, resume=False)
    check_run_dir(tmp_path, CONFIG, resume=False)
    (tmp_path / 'x').write_text('')
    with pytest.raises(RunDirError, match='already exists and is not empty'):
        check_run_dir(tmp_path, CONFIG, resume=False)


def test_only_the_same_run_with_a_checkpoint_resumes(tmp_path):
    with pytest.raises(RunDirError, match='config.json does not exist'):
        check_run_dir(tmp_path, CONFIG, resume=True)
    write_config(tmp_path, CONFIG)
    assert read_run_config(tmp_path)['seed'] == 3
    with pytest.raises(RunDirError, match='no checkpoint'):
        check_run_dir(tmp_path, CONFIG, resume=True)
    (tmp_path / CHECKPOINT_FILE).write_bytes(b'')
    check_run_dir(tmp_path, dataclasses.replace(CONFIG, total_env_steps=9), True)  # a budget
    with pytest.raises(RunDirError, match=r'seed: 3 -> 4'):
        check_run_dir(tmp_path, make_config({'task': 'slippery_push', 'seed': 4}), True)
    (tmp_path / CONFIG_FILE).write_text('{"seed": "three"}')
    with pytest.raises(RunDirError, match='is not a valid config'):
        read_run_config(tmp_path)


def test_base_eval_and_summary_files(tmp_path):
    assert read_base_eval(tmp_path) is None
    write_base_eval(tmp_path, {'eval/success_rate': 0.5})
    assert read_base_eval(tmp_path) == {'eval/success_rate': 0.5}
    best = no_best()
    assert is_new_best(best, 0.0)
    best = {'eval/success_rate': 0.5, 'env_steps': 100}
    assert not is_new_best(best, 0.5)  # a tie keeps the earlier model
    write_summary(tmp_path, {'env_steps': 200, 'eval/success_rate': 0.4}, best)
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert summary == {
        'env_steps': 200,
        'eval/success_rate': 0.4,
        'best/success_rate': 0.5,
        'best/env_steps': 100,
        'best_onnx': BEST_ONNX_FILE,
    }
