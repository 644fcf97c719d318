"""`rpl demo`: model search, the side-by-side summary, and one real base + residual run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

import pytest
from onnx_builders import goal_seeking_weights, linear_model

from rpl_bringup import cli, demo
from rpl_bringup.episode_log import EpisodeLog, EpisodeRecord


def _touch(path, mtime: float):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'x')
    os.utime(path, (mtime, mtime))
    return path


def _run(model: str, outcomes: list[tuple[bool, float]], tags: dict[str, int]) -> demo.StackRun:
    log = EpisodeLog()
    for i, (success, distance) in enumerate(outcomes):
        log.add_episode(EpisodeRecord(i, success, distance, -10.0, 50, 0, 0))
    data = log.to_dict()
    data['commands']['tags'] = tags
    return demo.StackRun(model=model, data=data, code=0, wall_s=4.0, log_dir='')


def test_auto_finds_the_newest_slippery_push_model_in_a_folder_or_loose(tmp_path):
    _touch(tmp_path / 'push_reactive_push' / 'actor.onnx', 9)  # another task: never chosen
    folder = _touch(tmp_path / 'slippery_push_reactive_push' / 'actor.onnx', 5)
    assert demo.resolve_model('auto', search_dirs=[str(tmp_path)]) == str(folder)
    loose = _touch(tmp_path / 'slippery_push_old.onnx', 1)
    assert demo.resolve_model('auto', search_dirs=[str(tmp_path)]) == str(folder)
    os.utime(loose, (7, 7))
    assert demo.resolve_model('auto', search_dirs=[str(tmp_path)]) == str(loose)
    (tmp_path / 'slippery_push_empty').mkdir()  # a folder without actor.onnx is skipped
    # Nothing found: one line (it ran the base alone, said nothing and exited 0).
    with pytest.raises(demo.LaunchError, match=r'--model auto found no \*slippery_push'):
        demo.resolve_model('auto', search_dirs=[str(tmp_path / 'slippery_push_empty')])


def test_the_default_model_is_the_committed_one_and_make_demo_uses_it(repo_root, tmp_path):
    # `rpl demo` without --model and `make demo` run the same model: the one default.
    committed = repo_root / demo.DEFAULT_MODEL
    assert committed.is_file()
    assert demo.resolve_model(None, search_dirs=[str(repo_root / 'models')]) == str(committed)
    assert demo.resolve_model(None) == str(committed)  # found through the checkout
    # With newer models next to it (auto would pick those), the default stays the same.
    newer = _touch(tmp_path / 'slippery_push_reactive_push_zz' / 'actor.onnx', 2e9)
    assert demo.resolve_model('auto', search_dirs=[str(tmp_path)]) == str(newer)
    _touch(tmp_path / 'slippery_push_reactive_push' / 'actor.onnx', 1)
    default = tmp_path / 'slippery_push_reactive_push' / 'actor.onnx'
    assert demo.resolve_model(None, search_dirs=[str(tmp_path)]) == str(default)
    assert demo.resolve_model(None, search_dirs=[str(tmp_path / 'nothing')]) == ''
    assert cli.build_parser().parse_args(['demo']).model is None
    make = subprocess.run(
        ['make', '-n', '-C', str(repo_root), 'demo'], capture_output=True, text=True
    )
    if make.returncode != 0:
        pytest.skip(f'make -n demo failed: {make.stderr.strip()}')
    command = next(line for line in make.stdout.splitlines() if 'rpl demo' in line)
    assert '--model' not in command, command  # make demo relies on rpl demo's default


def test_paired_successes_count_flips_per_episode_id():
    base = _run('', [(True, 0.01), (False, 0.2), (False, 0.3), (True, 0.02)], {})
    rpl = _run('m.onnx', [(True, 0.01), (True, 0.03), (False, 0.1)], {})  # episode 3 missing
    assert demo.paired_successes(base.data, rpl.data) == (3, 1, 0)
    assert demo.paired_successes(rpl.data, base.data) == (3, 0, 1)


def test_comparison_puts_base_and_residual_side_by_side():
    base = _run('', [(True, 0.01), (False, 0.2)], {'base': 100})
    rpl = _run('/m/actor.onnx', [(True, 0.01), (True, 0.03)], {'residual': 100})
    text = demo.format_comparison(base, rpl, controller='reactive_push', episodes=2, seed=4)
    lines = text.splitlines()
    assert '  model               /m/actor.onnx' in lines
    assert '  episodes            2 of 2 per run (seeds 4..5)' in lines
    header = next(line for line in lines if 'base only' in line)
    assert header.index('base only') < header.index('base + residual (RPL)')
    rate = next(line for line in lines if line.startswith('  success rate'))
    assert rate.split()[2:] == [
        '0.50',
        '(95%',
        'CI',
        '0.09-0.91)',
        '1.00',
        '(95%',
        'CI',
        '0.34-1.00)',
    ]
    distance = next(line for line in lines if line.startswith('  mean final distance'))
    assert distance.split()[3:] == ['0.105', 'm', '0.020', 'm']
    assert 'base 100' in text and 'residual 100' in text
    assert '1 failure(s) turned into success, 0 success(es) into failure, of 2' in text


@pytest.mark.integration
def test_demo_with_a_model_runs_base_then_residual_on_the_same_seeds(tmp_path):
    model = linear_model(
        tmp_path / 'slippery_push_goal_seeking.onnx',
        goal_seeking_weights(),
        obs_dim=25,
        goal_dim=3,
    )
    lines: list[str] = []
    code = demo.run_demo(
        episodes=2,
        controller='reactive_push',
        model=str(model),
        seed=0,
        namespace=f'/demotest_{os.getpid()}',
        write=lines.append,
    )
    text = '\n'.join(lines)
    lines = text.splitlines()  # the summary is written as one block
    assert code == 0, text
    for label in ('base', 'rpl'):
        assert f'[{label}] episode   1: ' in text
    assert '  episodes            2 of 2 per run (seeds 0..1)' in lines, text
    sources = next(line for line in lines if line.startswith('  command sources'))
    assert sources.split()[2] == 'base' and sources.split()[4] == 'residual', sources
    assert demo.NO_MODEL not in text


@pytest.mark.parametrize(
    'kind', ['junk', 'other_task', 'folder', 'other_controller', 'controller_of_another_task']
)
def test_demo_refuses_a_model_that_cannot_run_before_any_node_starts(tmp_path, repo_root, kind):
    """A residual node given such a model runs the base action: the demo would compare the
    base with itself and exit 0. It now stops first, with one line."""
    model = {
        'junk': tmp_path / 'junk.onnx',
        'other_task': repo_root / 'models' / 'noisy_hook_reactive_hook' / 'actor.onnx',
        'folder': tmp_path,
    }.get(kind, repo_root / 'models' / 'slippery_push_reactive_push' / 'actor.onnx')
    (tmp_path / 'junk.onnx').write_text('not a model')
    command = [sys.executable, '-m', 'rpl_bringup.cli', 'demo', '--episodes', '1']
    controller = {'other_controller': 'zero', 'controller_of_another_task': 'reactive_hook'}
    if kind in controller:
        command += ['--controller', controller[kind]]
    done = subprocess.run(
        [*command, '--model', str(model), '--namespace', f'/demo_refuse_{os.getpid()}'],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith('rpl demo: error:')
    expected = {
        'junk': 'is not a valid ONNX model',
        'other_task': "input 'observation' has 40 features but 25 were expected",
        'folder': 'is not a file',
        # No --allow-model-mismatch hint: rpl demo has no such option.
        'other_controller': "the running controller is 'zero'; give --model FILE of a model "
        'made for it, or --model none',
        # The controller first: no model fits a controller of another task.
        'controller_of_another_task': "controller 'reactive_hook' is meant for tasks ['hook', "
        "'noisy_hook', 'complex_hook'], not 'slippery_push'",
    }[kind]
    assert expected in done.stderr
    assert 'episode' not in done.stdout  # no stack ran


@pytest.mark.integration
def test_ctrl_c_during_the_base_run_stops_the_demo_there(repo_root):
    """It went on with the whole run with the residual, then set a 4-episode base rate
    beside a 20-episode one; Ctrl-C was honoured only by the exit code at the end."""
    command = [sys.executable, '-m', 'rpl_bringup.cli', 'demo', '--episodes', '50']
    proc = subprocess.Popen(
        [*command, '--namespace', f'/demo_ctrl_c_{os.getpid()}'],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: Ctrl-C reaches the group
    )
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith('[base] episode   1:'):
                os.killpg(proc.pid, signal.SIGINT)
                break
        lines += proc.stdout.readlines()
        code = proc.wait(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    text = ''.join(lines)
    assert code == 130, text
    assert (
        'rpl demo: the base run was interrupted; the run with the residual is not started' in text
    )
    assert not any(line.startswith('[rpl]') for line in lines), text


def test_the_demo_screen_keeps_the_monitors_errors_and_drops_its_info_lines():
    """The monitor's own error line (`RPL_SCHED=bogus`, a bad ROS_DOMAIN_ID) was dropped
    with its INFO lines, and it has no log file: only "episode_monitor died (code 2)"."""
    shown: list[str] = []
    sink = demo._screen_filter(shown.append)
    for line in (
        '[episode_monitor] [INFO] [1.5] [rpl_demo.episode_monitor]: ready: listening',
        '[episode_monitor] [episode_monitor] error: RPL_SCHED=bogus is not a policy',
        '[episode_monitor] [WARN] [1.6] [rpl_demo.episode_monitor]: no episode yet',
        '[episode_monitor] episode   0: success',
        '[rpl launch] started sim_bridge (pid 7): sim_bridge_node',
    ):
        sink(line)
    assert shown == [
        '[episode_monitor] error: RPL_SCHED=bogus is not a policy',
        '[WARN] [1.6] [rpl_demo.episode_monitor]: no episode yet',
        'episode   0: success',
    ]


def test_auto_prefers_a_model_of_ones_own_and_else_the_default_whatever_the_times(tmp_path):
    """In a fresh clone auto took the live model over the default: its file was 4 ms newer
    from the checkout, so the choice depended on the order git wrote the files. Committed
    models (a heldout.json beside them) now give way to any model of one's own, and among
    themselves the default wins."""
    default = _touch(tmp_path / 'slippery_push_reactive_push' / 'actor.onnx', 5)
    live = _touch(tmp_path / 'slippery_push_reactive_push_live' / 'actor.onnx', 6)
    for committed in (default, live):
        (committed.parent / 'heldout.json').write_text('{}')
    assert demo.resolve_model('auto', search_dirs=[str(tmp_path)]) == str(default)
    mine = _touch(tmp_path / 'slippery_push_mine.onnx', 1)  # older, but one's own
    assert demo.resolve_model('auto', search_dirs=[str(tmp_path)]) == str(mine)
