"""A full disk while `rpl train` writes: one line naming the file, nothing half-written,
nothing earlier lost, and the command the line advises works (the failures are injected:
torch's zip writer and Python's file writes fail as they do on a full file system)."""

from __future__ import annotations

import errno
import json
import shutil

import pytest
from helpers import rpl_train

from rpl_interfaces import output_files
from rpl_trainer import checkpoint, metrics, run_dir
from rpl_trainer.checkpoint import load_checkpoint, save_checkpoint

SMALL = [
    'train', '--task', 'push', '--controller', 'reactive_push', '--seed', '3',
    '--eval-episodes', '2', '--set', 'base_eval_episodes=2', '--vector-env', 'sync',
    '--set', 'hidden_size=32', '--set', 'batch_size=32', '--set', 'buffer_size=5000',
    '--no-progress',
]  # fmt: skip


def _disk_full(monkeypatch) -> None:
    """The disk as a failed write leaves it: (almost) nothing free."""
    usage = shutil.disk_usage('/')
    monkeypatch.setattr(output_files.shutil, 'disk_usage', lambda path: usage._replace(free=4096))


def test_a_checkpoint_on_a_full_disk_is_an_oserror_naming_it_and_keeps_the_old(
    tmp_path, monkeypatch
):
    """torch reports the failed write as a RuntimeError ('unexpected pos ...'): it was a
    traceback through `rpl train` and the trainer node, naming neither disk nor file."""
    path = tmp_path / 'checkpoint.pt'
    save_checkpoint(path, {'a': 1})
    before = path.read_bytes()

    def failing_save(obj, target):
        open(target, 'wb').write(b'partial')
        raise RuntimeError('[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0')

    monkeypatch.setattr(checkpoint.torch, 'save', failing_save)
    _disk_full(monkeypatch)
    with pytest.raises(OSError) as info:
        save_checkpoint(path, {'a': 2})
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(path))
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]
    # With room on the disk, torch's own error is not taken for a full disk.
    monkeypatch.undo()
    monkeypatch.setattr(checkpoint.torch, 'save', failing_save)
    with pytest.raises(RuntimeError, match='unexpected pos'):
        save_checkpoint(path, {'a': 2})
    assert load_checkpoint(path) == {'a': 1}


def test_a_metrics_row_that_does_not_fit_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    """A cut-off row stayed, and the next append ran into it ('4400,...'); an empty file
    left by a failed first row got rows without a header."""
    path = tmp_path / 'metrics.csv'
    row = dict.fromkeys(metrics.METRIC_COLUMNS, 1.5) | {'env_steps': 100}
    metrics.append_row(path, row)
    before = path.read_text()
    real_open = type(path).open

    class HalfWriter:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, text):
            self.handle.write(text[: len(text) // 2])
            self.handle.flush()
            raise OSError(errno.ENOSPC, 'No space left on device')

    def half_open(self, mode='r', *args, **kwargs):
        handle = real_open(self, mode, *args, **kwargs)
        return HalfWriter(handle) if 'a' in mode else handle

    monkeypatch.setattr(type(path), 'open', half_open)
    with pytest.raises(OSError) as info:
        metrics.append_row(path, row | {'env_steps': 400})
    assert info.value.filename == str(path) and info.value.errno == errno.ENOSPC
    assert path.read_text() == before
    fresh = tmp_path / 'fresh.csv'
    with pytest.raises(OSError):
        metrics.append_row(fresh, row)
    assert not fresh.exists()  # no empty file whose next row would lack the header
    monkeypatch.undo()
    (tmp_path / 'empty.csv').write_text('')
    metrics.append_row(tmp_path / 'empty.csv', row)
    header = (tmp_path / 'empty.csv').read_text().splitlines()[0]
    assert header == ','.join(metrics.METRIC_COLUMNS)
    # A row an older version left cut off (no newline) is dropped, not joined.
    with path.open('a') as f:
        f.write('44,1.')
    metrics.append_row(path, row | {'env_steps': 400})
    assert path.read_text().splitlines()[1:] == [
        before.splitlines()[1],
        before.splitlines()[1].replace('100', '400', 1),
    ]


def test_run_files_are_written_whole_and_a_bad_base_eval_is_one_line(tmp_path, monkeypatch):
    run_dir.write_base_eval(tmp_path, {'eval/success_rate': 0.5})
    before = (tmp_path / run_dir.BASE_EVAL_FILE).read_bytes()
    monkeypatch.setattr(output_files, 'open', _failing_open, raising=False)
    with pytest.raises(OSError) as info:
        run_dir.write_base_eval(tmp_path, {'eval/success_rate': 0.9})
    assert info.value.filename == str(tmp_path / run_dir.BASE_EVAL_FILE)
    assert (tmp_path / run_dir.BASE_EVAL_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [run_dir.BASE_EVAL_FILE]
    monkeypatch.undo()
    (tmp_path / run_dir.BASE_EVAL_FILE).write_text('')  # as an older version could leave it
    with pytest.raises(run_dir.RunDirError, match='is not a readable base evaluation'):
        run_dir.read_base_eval(tmp_path)


def _failing_open(path, mode='r', *args, **kwargs):
    handle = open(path, mode, *args, **kwargs)  # noqa: SIM115
    handle.close()
    raise OSError(errno.ENOSPC, 'No space left on device')


def test_a_new_run_whose_first_checkpoint_fails_leaves_nothing_and_says_run_again(
    tmp_path, monkeypatch, capsys
):
    """It said `--resume continues it from its last checkpoint` (there was none) and left
    config.json, so running the command again was refused as 'not empty'."""
    out = tmp_path / 'run'

    def failing(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, 'No space left on device', str(path))

    monkeypatch.setattr('rpl_trainer.train.save_learner_checkpoint', failing)
    assert rpl_train([*SMALL, '--steps', '100', '--out', str(out)]) == 2
    err = capsys.readouterr().err
    assert f'cannot write {out / "checkpoint.pt"}: No space left on device' in err, err
    assert 'nothing of it was kept: run the same command again' in err, err
    assert not out.exists()


def test_a_run_whose_end_was_not_written_is_finished_by_its_resume(tmp_path, capsys):
    """The final checkpoint reached the budget, then the export failed (a full disk): the
    advised `--resume` was refused as 'nothing to train' and the run had no model."""
    out = tmp_path / 'run'
    assert rpl_train([*SMALL, '--steps', '100', '--out', str(out)]) == 0
    summary = json.loads((out / 'summary.json').read_text())
    model = (out / 'actor.onnx').read_bytes()
    (out / 'actor.onnx').unlink()
    (out / 'summary.json').unlink()
    capsys.readouterr()
    assert rpl_train(['train', '--out', str(out), '--resume', '--no-progress']) == 0
    assert json.loads((out / 'summary.json').read_text())['env_steps'] == summary['env_steps']
    assert (out / 'actor.onnx').read_bytes() == model  # the same learner, exported again
    assert rpl_train(['train', '--out', str(out), '--resume', '--no-progress']) == 2
    assert 'nothing to train' in capsys.readouterr().err
