"""`rpl eval` and `rpl plot` result files: checked before the work, never written over
without --force, default names that tell the runs apart; and no third-party chatter."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from rpl_bringup import cli
from rpl_interfaces import output_files

EVAL_1 = ['eval', '--task', 'push', '--controller', 'reactive_push', '--episodes', '1']
ADROIT = 'Adroit'  # gymnasium_robotics' notice about its Adroit tasks


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# --- the checks themselves --------------------------------------------------------------


def test_check_output_refuses_an_existing_file_unless_forced(tmp_path):
    path = tmp_path / 'result.json'
    path.write_text('{}')
    with pytest.raises(output_files.OutputError, match='exists already.*--force'):
        output_files.check_output(path, force=False, option='--json')
    assert output_files.check_output(path, force=True, option='--json') == path
    assert path.read_text() == '{}'  # a check writes nothing


def test_check_output_finds_a_folder_that_cannot_be_created_and_leaves_nothing(tmp_path):
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    with pytest.raises(output_files.OutputError, match='cannot write --json'):
        output_files.check_output(blocker / 'sub' / 'r.json', force=False, option='--json')
    deep = tmp_path / 'new' / 'deeper' / 'r.json'
    output_files.check_output(deep, force=False, option='--json')
    assert sorted(os.listdir(tmp_path)) == ['a_file']  # the probe's folders are gone again
    # A folder that takes no new file names it, not the probe's scratch file.
    with pytest.raises(output_files.OutputError) as caught:
        output_files.check_output('/proc/r.json', force=False, option='--json')
    assert '.rpl-probe' not in str(caught.value) and str(caught.value).endswith('(/proc)')


def test_write_output_never_replaces_without_force(tmp_path):
    path = tmp_path / 'out' / 'r.json'
    output_files.write_output(path, b'first', force=False)
    with pytest.raises(output_files.OutputError, match='not writing over it'):
        output_files.write_output(path, b'second', force=False)
    assert path.read_bytes() == b'first'
    output_files.write_output(path, b'second', force=True)
    assert path.read_bytes() == b'second'
    assert os.listdir(path.parent) == ['r.json']  # no scratch file left


def test_check_output_never_allows_an_input_and_names_odd_paths_in_one_line(tmp_path):
    """A result written over the model or bag it was made from (--force), `--json out/`
    written as a file, a too-long name as a traceback, a legal long name refused for the
    probe's longer scratch name."""
    model = tmp_path / 'actor.onnx'
    model.write_bytes(b'model')
    bag = tmp_path / 'bag'
    bag.mkdir()
    link = tmp_path / 'link.json'
    link.symlink_to(model)
    for path, inputs in ((model, [model]), (bag / 'metadata.yaml', [bag]), (link, [model])):
        with pytest.raises(output_files.OutputError, match='is an input of this command'):
            output_files.check_output(path, force=True, option='--json', inputs=inputs)
    with pytest.raises(output_files.OutputError, match="'out/' names a folder"):
        output_files.check_output('out/', force=False, option='--json')
    with pytest.raises(output_files.OutputError, match='cannot write --json .*too long'):
        output_files.check_output(tmp_path / ('b' * 300), force=False, option='--json')
    legal = tmp_path / ('n' * 250)  # NAME_MAX is 255
    output_files.check_output(legal, force=False, option='--json')
    output_files.write_output(legal, b'x', force=False)
    assert legal.read_bytes() == b'x' and model.read_bytes() == b'model'


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    """A full disk left a 0-byte or cut-off result that blocked the rerun ('exists
    already')."""

    def full(*args):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(output_files.os, 'replace', full)
    for force in (False, True):
        with pytest.raises(output_files.OutputError, match='No space left on device'):
            output_files.write_output(tmp_path / 'r.json', b'{}', force=force)
        assert os.listdir(tmp_path) == []


def test_several_outputs_are_written_all_or_none(tmp_path):
    """`rpl select` left a new model beside another selection's record, `rpl bag eval` a
    figure without its JSON, when the second write failed."""
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    first = tmp_path / 'selected_actor.onnx'
    for force in (False, True):
        with pytest.raises(output_files.OutputError, match='cannot write'):
            output_files.write_outputs(
                [(first, b'model'), (blocker / 'selection.json', b'{}')], force=force
            )
        assert sorted(os.listdir(tmp_path)) == ['a_file']
    written = output_files.write_outputs(
        [(first, b'm'), (tmp_path / 'r.json', b'{}')], force=False
    )
    assert [p.read_bytes() for p in written] == [b'm', b'{}']


# --- rpl eval ------------------------------------------------------------------------------


def test_eval_default_file_names_the_model_and_seed():
    assert cli.default_eval_json('push', 'reactive_push', None, 0) == os.path.join(
        'results', 'eval_push_reactive_push_base_seed0.json'
    )
    model = os.path.join('models', 'slippery_push_reactive_push', 'actor.onnx')
    assert cli.model_label(model) == 'slippery_push_reactive_push'
    assert cli.model_label('runs/best model.onnx') == 'best_model'
    name = cli.default_eval_json('slippery_push', 'reactive_push', model, 7)
    assert name.endswith('eval_slippery_push_reactive_push_slippery_push_reactive_push_seed7.json')


def test_eval_into_a_folder_that_cannot_be_created_fails_before_any_episode(
    tmp_path, capsys, monkeypatch
):
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    ran = []
    monkeypatch.setattr(cli.importlib, 'import_module', lambda name: ran.append(name))
    code = cli.main([*EVAL_1, '--json', str(blocker / 'results' / 'r.json')])
    assert code == 2
    line = _error_line(capsys)
    assert line.startswith('rpl eval: error: cannot write --json'), line
    assert ran == []  # the evaluation was never even imported


def test_eval_refuses_to_overwrite_and_force_replaces(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main([*EVAL_1, '--no-progress']) == 0
    default = tmp_path / 'results' / 'eval_push_reactive_push_base_seed0.json'
    first = json.loads(default.read_text())
    assert first['episodes'] == 1
    capsys.readouterr()
    default.write_text('{"kept": true}')
    assert cli.main([*EVAL_1, '--no-progress']) == 2
    line = _error_line(capsys)
    assert 'eval_push_reactive_push_base_seed0.json' in line and '--force' in line, line
    assert json.loads(default.read_text()) == {'kept': True}
    assert cli.main([*EVAL_1, '--no-progress', '--force']) == 0
    assert json.loads(default.read_text())['successes'] == first['successes']


def test_eval_of_a_model_names_it_in_the_default_file_and_the_record(
    tmp_path, repo_root, capsys, monkeypatch
):
    model = repo_root / 'models' / 'push_discrete_mpc_push' / 'actor.onnx'
    monkeypatch.chdir(tmp_path)
    args = ['eval', '--task', 'push', '--controller', 'reactive_push', '--episodes', '1']
    args += ['--allow-model-mismatch']  # the model was trained on discrete_mpc_push
    assert cli.main([*args, '--model', str(model), '--seed', '3', '--no-progress']) == 0
    out = tmp_path / 'results' / 'eval_push_reactive_push_push_discrete_mpc_push_seed3.json'
    assert json.loads(out.read_text())['model'] == str(model)
    assert f'push / reactive_push + {model}: success rate' in capsys.readouterr().out


def test_rpl_eval_prints_no_adroit_notice(tmp_path):
    done = subprocess.run(
        [sys.executable, '-m', 'rpl_bringup.cli', *EVAL_1, '--no-progress'],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert ADROIT not in done.stdout + done.stderr
    assert done.stderr == '', done.stderr


@pytest.mark.parametrize(
    'args', [['list', 'controllers'], ['train', '--task', 'push', '--out', 'x', '--show-config']]
)
def test_a_reader_that_goes_away_ends_rpl_quietly_with_the_sigpipe_status(args):
    # `rpl list controllers | head -1`: the pipe closes before rpl writes; no traceback.
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, 'w') as stdout:
        done = subprocess.run(
            [sys.executable, '-m', 'rpl_bringup.cli', *args],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert done.returncode == cli.BROKEN_PIPE_EXIT, done.stderr
    assert 'Traceback' not in done.stderr, done.stderr


# --- rpl plot --------------------------------------------------------------------------


def _fake_run(root: pathlib.Path, seed: int) -> pathlib.Path:
    run = root / f'push_rpl_{seed}'
    run.mkdir(parents=True)
    (run / 'config.json').write_text(json.dumps({'task': 'push', 'algo': 'rpl', 'seed': seed}))
    rows = ['env_steps,eval/success_rate', '0,0.1', '1000,0.5', '2000,0.8']
    (run / 'metrics.csv').write_text('\n'.join(rows) + '\n')
    return run


def test_plot_refuses_to_overwrite_and_force_replaces(tmp_path, capsys):
    from rpl_trainer.cli import main as trainer_main

    runs = [str(_fake_run(tmp_path, seed)) for seed in (0, 1)]
    figure = tmp_path / 'fig' / 'success.png'
    assert trainer_main(['plot', *runs, '--out', str(figure)]) == 0
    assert figure.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    capsys.readouterr()
    figure.write_bytes(b'keep me')
    assert trainer_main(['plot', *runs, '--out', str(figure)]) == 2
    line = _error_line(capsys)
    assert str(figure) in line and '--force' in line, line
    assert figure.read_bytes() == b'keep me'
    assert trainer_main(['plot', *runs, '--out', str(figure), '--force']) == 0
    assert figure.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_plot_into_a_folder_that_cannot_be_created_is_one_line(tmp_path, capsys):
    from rpl_trainer.cli import main as trainer_main

    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    run = str(_fake_run(tmp_path, 0))
    assert trainer_main(['plot', run, '--out', str(blocker / 'fig.png')]) == 2
    assert 'cannot write --out' in _error_line(capsys)


@pytest.mark.parametrize(
    ('damage', 'message'),
    [
        (
            ('metrics.csv', b'env_steps,eval/success_rate\n0,abc\n'),
            "line 2: eval/success_rate 'abc'",
        ),
        (('metrics.csv', b'\xff\xfe\x00'), 'is not a metrics file (not UTF-8 text'),
        (('metrics.csv', b'steps,eval/success_rate\n0,0.5\n'), 'no env_steps column'),
        (('config.json', b'{'), 'config.json is not valid JSON'),
        (('config.json', b'[1, 2]'), 'config.json holds a list, not a JSON object'),
        (('base_eval.json', b'{'), 'base_eval.json is not valid JSON'),
        (  # it was a traceback (float('abc'))
            ('base_eval.json', b'{"eval/success_rate": "abc"}'),
            "base_eval.json: eval/success_rate is 'abc', not a number",
        ),
        (  # it drew an empty figure and exited 0
            ('metrics.csv', b'env_steps,eval/success_rate\n0,0.1\n,0.5\n'),
            "line 3: env_steps '' is not a step count",
        ),
        (  # it drew one point and exited 0
            ('metrics.csv', b'env_steps,eval/success_rate\n100,0.1\n0,0.5\n'),
            'line 3: env_steps 0 after 100: the rows are not in the order of a run',
        ),
    ],
    ids=[
        'cell',
        'bytes',
        'no-steps',
        'config',
        'config-list',
        'base-eval',
        'base-eval-text',
        'empty-step',
        'falling-steps',
    ],
)
def test_plot_of_a_damaged_run_is_one_line(tmp_path, capsys, damage, message):
    from rpl_trainer.cli import main as trainer_main

    run = _fake_run(tmp_path, 0)
    name, content = damage
    (run / name).write_bytes(content)
    figure = tmp_path / 'fig.png'
    assert trainer_main(['plot', str(run), '--out', str(figure)]) == 2
    assert message in _error_line(capsys)
    assert not figure.exists()


def test_plot_refuses_an_image_kind_matplotlib_cannot_write(tmp_path, capsys):
    from rpl_trainer.cli import main as trainer_main

    figure = tmp_path / 'fig.txt'
    assert trainer_main(['plot', str(_fake_run(tmp_path, 0)), '--out', str(figure)]) == 2
    assert 'matplotlib writes no .txt image; give one of' in _error_line(capsys)
    assert not figure.exists()


def test_force_never_replaces_a_link_a_device_or_a_pipe(tmp_path):
    real = tmp_path / 'real.json'
    real.write_text('kept')
    link = tmp_path / 'link.json'
    link.symlink_to(real)
    fifo = tmp_path / 'fifo.json'
    os.mkfifo(fifo)
    for path in (link, fifo, pathlib.Path(os.devnull)):
        with pytest.raises(output_files.OutputError, match='is not a regular file'):
            output_files.check_output(path, force=True, option='--json')
    assert link.is_symlink() and real.read_text() == 'kept'
    assert pathlib.Path(os.devnull).is_char_device()


def test_result_json_is_standard_json_with_null_for_a_missing_value():
    """Python writes NaN / Infinity by default; jq and JavaScript refuse them."""
    import numpy as np

    record = {'mean': np.float64('nan'), 'rows': [(1.5, float('inf')), [2, True]], 'n': 3}
    data = output_files.json_bytes(record)
    assert json.loads(data) == {'mean': None, 'rows': [[1.5, None], [2, True]], 'n': 3}
    assert b'NaN' not in data and b'Infinity' not in data and data.endswith(b'\n')
    assert np.isnan(output_files.json_float(None)) and output_files.json_float(2) == 2.0


def test_plot_takes_the_last_row_of_a_step_a_resumed_run_evaluated_twice(tmp_path):
    from rpl_trainer.plot import _load_run

    run = _fake_run(tmp_path, 0)
    rows = [
        'env_steps,eval/success_rate,wall_s',
        '0,0.1,0',
        '1000,0.5,60',
        '1000,0.6,66',
        '2000,0.8,120',
    ]
    (run / 'metrics.csv').write_text('\n'.join(rows) + '\n')
    _, steps, success, _ = _load_run(run)
    assert steps.tolist() == [0.0, 1000.0, 2000.0]
    assert success.tolist() == [0.1, 0.6, 0.8]
    _, minutes, success, _ = _load_run(run, x='minutes')  # the same rows on any axis
    assert minutes.tolist() == [0.0, 1.1, 2.0] and success.tolist() == [0.1, 0.6, 0.8]


def test_eval_of_a_model_takes_its_task_and_controller_from_it(repo_root, tmp_path, capsys):
    """--task and --controller were required with a model that states both."""
    model = repo_root / 'models' / 'slippery_push_reactive_push' / 'actor.onnx'
    args = ['eval', '--episodes', '1', '--no-progress', '--json', str(tmp_path / 'r.json')]
    assert cli.main([*args, '--model', str(model)]) == 0
    assert f'slippery_push / reactive_push + {model}: success rate' in capsys.readouterr().out
    assert cli.main(['eval', '--episodes', '1']) == 2  # no model: nothing to take them from
    assert 'rpl eval: error: --task is required (give it)' in capsys.readouterr().err


def test_eval_of_a_model_takes_the_controller_parameters_it_states(repo_root, tmp_path):
    """The model's controller was taken, its parameters were not: it was evaluated on a base
    with the registered defaults, a warning only."""
    import shutil

    import onnx
    from helpers import set_model_metadata

    model = tmp_path / 'tuned.onnx'
    shutil.copy(
        repo_root / 'models' / 'pick_and_place_reactive_pick_and_place' / 'actor.onnx', model
    )
    props = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    set_model_metadata(model, {**props, 'controller_params': 'carry_gain=50.0'})
    out = tmp_path / 'r.json'
    args = ['eval', '--episodes', '1', '--no-progress', '--json', str(out), '--model', str(model)]
    assert cli.main(args) == 0
    assert json.loads(out.read_text())['controller_params'] == {'carry_gain': 50.0}
