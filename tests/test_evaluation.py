"""In-process evaluation loop: consistent numbers, seeds per episode, residual hook, Wilson CI."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rpl_base_controllers import make_controller
from rpl_bringup import evaluation
from rpl_bringup.evaluation import (
    EpisodeProgress,
    EvalResult,
    check_model_identity,
    evaluate,
    evaluate_model,
    evaluate_parallel,
    wilson_interval,
)
from rpl_sim_bridge.tasks import UnknownTaskError, make_task


@pytest.fixture(scope='module')
def push_result() -> EvalResult:
    return evaluate('push', 'reactive_push', episodes=4, seed=0, progress=False)


def test_evaluate_returns_consistent_numbers(push_result):
    r = push_result
    assert (r.task, r.controller, r.model, r.episodes, r.seed) == (
        'push',
        'reactive_push',
        None,
        4,
        0,
    )
    assert len(r.successes) == len(r.final_distances) == len(r.returns) == 4
    assert r.success_rate == sum(r.successes) / 4
    assert r.ci95 == wilson_interval(sum(r.successes), 4)
    assert r.mean_final_distance == pytest.approx(np.mean(r.final_distances))
    for success, distance, ret in zip(r.successes, r.final_distances, r.returns, strict=True):
        assert success == (distance <= 0.05)
        assert -50.0 <= ret <= 0.0 and float(ret).is_integer()
    assert r.success_rate == 1.0  # ReactivePush is near perfect on Push
    assert r.wall_s > 0.0
    record = r.to_json()
    assert json.loads(json.dumps(record)) == record
    assert record['ci95'] == list(r.ci95)
    assert record['mean_return'] == pytest.approx(np.mean(r.returns))  # as the other files


def test_episode_i_uses_seed_plus_i(push_result):
    later = evaluate('push', 'reactive_push', episodes=2, seed=2, progress=False)
    assert later.final_distances == push_result.final_distances[2:]
    assert later.returns == push_result.returns[2:]


def test_policy_sees_the_base_action_and_decides_the_command(push_result):
    seen = []

    class StandStill:
        resets = 0

        def reset(self):
            self.resets += 1

        def __call__(self, observation, desired_goal, base_action):
            seen.append((observation.shape, desired_goal.shape, base_action.copy()))
            return np.zeros(4)

    policy = StandStill()
    r = evaluate('push', 'reactive_push', episodes=2, seed=0, policy=policy, progress=False)
    assert policy.resets == 2 and len(seen) == 100
    assert seen[0][:2] == ((25,), (3,)) and np.any(seen[0][2] != 0.0)
    assert r.model == 'StandStill'
    # The gripper never moves, so the block stays where it started: both episodes fail.
    assert r.successes == [False, False]
    assert r.final_distances != push_result.final_distances[:2]

    passthrough = evaluate(
        'push',
        'reactive_push',
        episodes=2,
        seed=0,
        policy=lambda o, g, base: base,
        progress=False,
        model='identity',
    )
    assert passthrough.model == 'identity'
    assert passthrough.final_distances == push_result.final_distances[:2]


def test_evaluate_accepts_built_task_and_controller():
    task = make_task('pick_and_place')
    controller = make_controller('reactive_pick_and_place_calibrated')
    r = evaluate(task, controller, episodes=1, seed=0, progress=False)
    assert (r.task, r.controller) == ('pick_and_place', 'reactive_pick_and_place_calibrated')


def test_evaluate_rejects_bad_arguments():
    with pytest.raises(ValueError, match='episodes must be at least 1'):
        evaluate('push', 'reactive_push', episodes=0, seed=0, progress=False)
    with pytest.raises(UnknownTaskError):
        evaluate('pushh', 'reactive_push', episodes=1, seed=0, progress=False)
    with pytest.raises(ValueError, match='meant for tasks'):
        evaluate('push', 'reactive_pick_and_place', episodes=1, seed=0, progress=False)


@pytest.mark.parametrize(
    ('successes', 'n', 'expected'),
    [
        (0, 10, (0.0, 0.2775)),
        (5, 10, (0.2366, 0.7634)),
        (10, 10, (0.7225, 1.0)),
        (90, 100, (0.8256, 0.9448)),
        (0, 0, (0.0, 1.0)),
    ],
)
def test_wilson_interval_known_values(successes, n, expected):
    low, high = wilson_interval(successes, n)
    assert low == pytest.approx(expected[0], abs=1e-4)
    assert high == pytest.approx(expected[1], abs=1e-4)


def test_wilson_interval_rejects_impossible_counts():
    with pytest.raises(ValueError, match='0 <= successes <= n'):
        wilson_interval(11, 10)


def test_parallel_evaluation_matches_one_process_episode_by_episode(repo_root):
    model = str(repo_root / 'models' / 'slippery_push_reactive_push' / 'actor.onnx')
    task, controller = 'slippery_push', 'reactive_push'
    one = evaluate_model(task, controller, 5, seed=7, model_path=model)
    many = evaluate_parallel(
        task, controller, 5, seed=7, model_path=model, workers=2, chunk=2, progress=False
    )
    assert (many.task, many.controller, many.model, many.episodes, many.seed) == (
        task,
        controller,
        'actor.onnx',
        5,
        7,
    )
    assert many.successes == one.successes
    assert many.final_distances == one.final_distances
    assert many.returns == one.returns
    assert (many.success_rate, many.ci95) == (one.success_rate, one.ci95)


def test_parallel_evaluation_reports_bad_arguments_from_the_workers():
    with pytest.raises(ValueError, match='at least 1'):
        evaluate_parallel('push', 'reactive_push', 4, seed=0, workers=0)
    with pytest.raises(ValueError, match='no_such_controller'):
        evaluate_parallel('push', 'no_such_controller', 2, seed=0, workers=2, progress=False)


def _rpl_eval(cwd, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, '-m', 'rpl_bringup.cli', 'eval', '--episodes', '1', *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=180)


def test_rpl_eval_refuses_a_model_of_another_task_with_one_line(tmp_path, repo_root):
    model = repo_root / 'models' / 'slippery_push_reactive_push' / 'actor.onnx'
    args = ['--task', 'push', '--controller', 'reactive_push', '--model', str(model)]
    done = _rpl_eval(tmp_path, *args, '--no-progress')
    assert done.returncode == 2 and done.stdout == ''
    assert done.stderr.splitlines() == [
        f'rpl eval: error: model {model} does not fit push / reactive_push: trained for task '
        "'slippery_push', the running task is 'push' (--allow-model-mismatch runs it anyway)"
    ]
    assert not (tmp_path / 'results').exists()
    allowed = _rpl_eval(tmp_path, *args, '--no-progress', '--allow-model-mismatch')
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stderr.splitlines() == [
        f'rpl eval: warning: model {model} runs although trained for task '
        "'slippery_push', the running task is 'push'"
    ]


def test_rpl_eval_refuses_other_field_names_even_when_allowed(tmp_path, repo_root):
    import shutil

    from helpers import set_model_metadata

    from rpl_trainer.export import read_metadata

    source = repo_root / 'models' / 'slippery_push_reactive_push' / 'actor.onnx'
    model = shutil.copy(source, tmp_path / 'renamed.onnx')
    props = read_metadata(model)
    fields = json.loads(props['observation_fields'])
    fields[0] = 'gripper_position.x'
    set_model_metadata(model, {**props, 'observation_fields': json.dumps(fields)})
    done = _rpl_eval(
        tmp_path,
        *('--task', 'slippery_push', '--controller', 'reactive_push', '--model', str(model)),
        '--allow-model-mismatch',
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f'rpl eval: error: model {model} does not fit slippery_push / reactive_push: '
        "observation fields differ (model fields ['gripper_position.x'] are not in the "
        "stream, stream fields ['grip_pos.x'] are not in the model)"
    ]


def test_a_model_without_metadata_is_evaluated_with_a_warning(tmp_path):
    from onnx_builders import linear_model

    model = str(linear_model(tmp_path / 'bare.onnx', obs_dim=25, goal_dim=3))
    assert check_model_identity('push', 'reactive_push', model) == [
        f'model {model} does not state task, controller, observation_fields, goal_fields, '
        'action_fields, action_bounds (no rpl metadata): it is not checked against the task and '
        'controller for that'
    ]
    result = evaluate_model('push', 'reactive_push', 1, seed=0, model_path=model)
    assert result.episodes == 1


def test_evaluate_model_refuses_another_controller_unless_allowed(repo_root):
    model = str(repo_root / 'models' / 'push_discrete_mpc_push' / 'actor.onnx')
    with pytest.raises(ValueError, match="trained for controller 'discrete_mpc_push', the "):
        evaluate_model('push', 'reactive_push', 1, seed=0, model_path=model)
    result = evaluate_model(
        'push', 'reactive_push', 1, seed=0, model_path=model, allow_model_mismatch=True
    )
    assert result.episodes == 1


def test_progress_off_a_terminal_is_one_line_per_tenth():
    """Redirected (a log, a pipe, CI) the bar's carriage returns would fill the log: one
    line per tenth of the episodes instead, the last one always; nothing when disabled."""
    out = io.StringIO()  # not a terminal
    progress = EpisodeProgress('push/reactive_push', 25, enabled=True, stream=out)
    for done in range(1, 26):
        progress.update(1, done / 50)
    progress.close()
    lines = out.getvalue().splitlines()
    assert '\r' not in out.getvalue()
    assert [line.split(': ')[1].split(' ')[0] for line in lines] == [
        f'{k}/25' for k in (3, 6, 9, 12, 15, 18, 21, 24, 25)
    ]
    assert lines[-1] == 'push/reactive_push: 25/25 episodes, success 0.500'
    chunks = io.StringIO()  # worker chunks of 7 episodes: a line whenever a tenth is crossed
    progress = EpisodeProgress('push/reactive_push', 20, enabled=True, stream=chunks)
    for _ in range(2):
        progress.update(7, 0.25)
    progress.update(6, 0.25)
    assert [line.split(': ')[1].split(' ')[0] for line in chunks.getvalue().splitlines()] == [
        '7/20',
        '14/20',
        '20/20',
    ]
    quiet = io.StringIO()
    progress = EpisodeProgress('push/reactive_push', 20, enabled=False, stream=quiet)
    progress.update(20, 1.0)
    progress.close()
    assert quiet.getvalue() == ''


def _children(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = set()
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as stat:
                    fields = stat.read().rsplit(')', 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry))
    return found


def _alive(pids: set[int]) -> set[int]:
    return {p for p in pids if os.path.exists(f'/proc/{p}')}


@pytest.mark.parametrize(
    ('signum', 'group'),
    [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True)],
    ids=['SIGTERM', 'SIGINT', 'Ctrl-C'],
)
def test_a_stopped_parallel_eval_leaves_no_worker_running(tmp_path, signum, group):
    """The signal goes to `rpl eval` alone (as a job scheduler, `kill` or `timeout` send
    it), or to its whole process group (Ctrl-C in a terminal): SIGTERM kills it without
    cleanup, so the workers' parent watch ends them; SIGINT stops it (exit 130, one line)
    and it terminates them. Before, a SIGTERM left both workers orphaned, blocked for ever
    after their queued episodes, and Ctrl-C added multiprocessing's warning of a leaked
    semaphore (the workers' unused tqdm lock)."""
    command = [sys.executable, '-m', 'rpl_bringup.cli', 'eval', '--task', 'slippery_push']
    command += ['--controller', 'reactive_push', '--episodes', '100000', '--workers', '2']
    command += ['--no-progress', '--json', str(tmp_path / 'out.json')]
    log = tmp_path / 'stderr.txt'  # a file: orphaned workers would hold a pipe open
    with open(log, 'w') as stderr:
        proc = subprocess.Popen(
            command,
            cwd=tmp_path,
            start_new_session=True,
            stderr=stderr,
            # A background job (CI) inherits SIGINT ignored, and Python keeps it so: the
            # signal would not reach rpl eval at all.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        deadline = time.monotonic() + 60
        workers: set[int] = set()
        # The pool's 2 workers (and multiprocessing's resource tracker) once spawned.
        while len(workers) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = _children(proc.pid)
        assert len(workers) >= 3, workers
        time.sleep(3)  # the workers are evaluating
        if group:
            os.killpg(proc.pid, signum)  # its own session: the group is rpl eval's
        else:
            os.kill(proc.pid, signum)
        code = proc.wait(30)
        deadline = time.monotonic() + 10
        while _alive(workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(workers), (code, log.read_text())
        assert code == (-signal.SIGTERM if signum == signal.SIGTERM else 130)
        assert not (tmp_path / 'out.json').exists()
        if signum == signal.SIGINT:
            time.sleep(0.5)  # the resource tracker writes its warnings as it ends
            assert log.read_text() == 'rpl eval: interrupted\n'
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _alive(_children(proc.pid)):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ('args', 'message'),
    [
        (['--task', 'nope', '--controller', 'zero'], "unknown task 'nope'; known tasks: "),
        (['--task', 'push', '--controller', 'zero', '--seed', str(2**31)], '--seed must be in'),
        (['--task', 'push', '--controller', 'zero', '--model', '.'], "--model '.' is not a file"),
        (
            ['--task', 'push', '--controller', 'zero', '--episodes', str(10**20)],
            f'--episodes must be in 1..1000000000, got {10**20}',
        ),
    ],
    ids=['task', 'seed', 'folder', 'episodes'],
)
def test_rpl_eval_names_what_is_wrong_in_one_line(tmp_path, args, message):
    done = _rpl_eval(tmp_path, *args, '--no-progress')
    assert done.returncode == 2 and done.stdout == ''
    assert len(done.stderr.splitlines()) == 1 and message in done.stderr, done.stderr


class _FaultyController:
    """Zero actions until ``at_step``, then the fault: an exception, NaN or a short action."""

    name = 'faulty'

    def __init__(self, fault: str, at_step: int = 3) -> None:
        self.fault, self.at_step, self.step = fault, at_step, 0

    def reset(self) -> None:
        self.step = 0

    def __call__(self, observation, desired_goal):
        self.step += 1
        if self.step <= self.at_step:
            return np.zeros(4)
        if self.fault == 'raise':
            raise ZeroDivisionError('user bug in my planner')
        return np.array([0.1, np.nan, 0.0, 0.0]) if self.fault == 'nan' else np.zeros(3)


@pytest.mark.parametrize(
    ('fault', 'message'),
    [
        (
            'raise',
            "controller 'faulty' raised ZeroDivisionError: user bug in my planner (at "
            'test_evaluation.py:',
        ),
        ('nan', "controller 'faulty' gave [0.1, nan, 0.0, 0.0] (episode seed 5, step 3)"),
        ('short', "controller 'faulty' gave [0.0, 0.0, 0.0] (episode seed 5, step 3): the task"),
    ],
)
def test_a_controller_that_raises_or_gives_a_bad_action_is_named_with_the_step(fault, message):
    """A user's controller failing inside an evaluation is one line naming it, the episode's
    seed and the step (it was a 25-line traceback, or 'task push: action must be finite',
    which did not say whether the base or the residual gave it)."""
    with pytest.raises(evaluation.ControllerFailure) as info:
        evaluation.evaluate('push', _FaultyController(fault), episodes=1, seed=5, progress=False)
    text = str(info.value)
    assert message in text and '\n' not in text, text
    assert 'episode seed 5, step 3' in text


def test_a_model_of_another_tasks_sizes_names_the_task_it_states(repo_root):
    """A 20-field pusher model given to push said only 'has 20 features but 25 were
    expected'; the task its metadata states says which model it is."""
    from rpl_bringup.evaluation import load_residual_policy

    pusher = repo_root / 'models' / 'mbrl_pusher_cached_pets' / 'actor.onnx'
    with pytest.raises(ValueError) as raised:
        load_residual_policy('push', 'reactive_push', str(pusher))
    text = str(raised.value)
    assert 'features but 25 were expected' in text, text
    assert text.endswith("(it states it was made for task 'mbrl_pusher', this is 'push')"), text


def test_steps_beyond_the_models_stated_scale_run_the_base_and_are_counted(tmp_path):
    """In-process, as in the residual node, a residual beyond the scale its model states
    runs the base action at that step; rpl eval did so without a word."""
    from helpers import set_model_metadata
    from onnx_builders import linear_model

    from rpl_residual_node.policy import ResidualPolicy
    from rpl_sim_bridge.tasks import task_spec

    spec = task_spec('push')
    weights = np.zeros((spec.action_dim, spec.obs_dim + spec.goal_dim), np.float32)
    weights[0, 0] = 1.0  # residual dx = the gripper's x, ~1.3 m; the probe's stay below 1
    model = linear_model(tmp_path / 'm.onnx', weights, obs_dim=spec.obs_dim, goal_dim=3)
    set_model_metadata(model, {'residual_scale': '1.0'})
    policy = ResidualPolicy.from_file(str(model), obs_dim=spec.obs_dim, goal_dim=3)
    result = evaluate('push', 'reactive_push', episodes=1, seed=0, policy=policy)
    base = evaluate('push', 'reactive_push', episodes=1, seed=0)
    assert result.residual_beyond_scale == spec.max_episode_steps  # every step
    assert result.final_distances == base.final_distances  # the base action ran
    assert result.to_json()['residual_beyond_scale'] == spec.max_episode_steps
