"""`rpl train` stopped by Ctrl-C / SIGTERM / a crash: a checkpoint is saved, and
`rpl train --out DIR --resume` (nothing else) continues the run to its end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
import torch
from helpers import toy_trainer

from rpl_trainer import train as train_module
from rpl_trainer.checkpoint import load_checkpoint
from rpl_trainer.metrics import read_metrics
from rpl_trainer.stop import TrainingInterrupted
from rpl_trainer.train import Trainer

TINY = [
    '--task', 'push',
    '--controller', 'reactive_push',
    '--steps', '400',
    '--eval-interval', '200',
    '--eval-episodes', '2',
    '--set', 'base_eval_episodes=2',
]  # fmt: skip
# On top of the shipped push config: 2 envs x 50-step episodes, 100 env steps a cycle.


def rpl_train(*args: str) -> list[str]:
    return [sys.executable, '-m', 'rpl_trainer.cli', 'train', *args]


def interrupt_after_first_progress_line(command: list[str], sig: int) -> tuple[int, str]:
    """Start ``command``, signal its process group (as a terminal's Ctrl-C does) when the
    first progress line appears, and return its exit status and stderr."""
    proc = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if line.startswith('rpl train: 0/400 env steps'):
                os.killpg(proc.pid, sig)
                break
        lines.append(proc.stderr.read())
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, ''.join(lines)


def assert_resume_with_out_only_finishes(run) -> None:
    resumed = subprocess.run(
        rpl_train('--out', str(run), '--resume'),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f'settings from {run / "config.json"}' in resumed.stdout
    summary = json.loads((run / 'summary.json').read_text())
    assert summary['env_steps'] == 400
    steps = read_metrics(run / 'metrics.csv')['env_steps']
    np.testing.assert_array_equal(steps, [0, 200, 400])  # each evaluation once
    # 100 updates < 2 windows of 500: the run ends in burn-in, and says so.
    assert 'never left burn-in (critic 0 of 80 windows)' in resumed.stdout


def test_ctrl_c_saves_a_checkpoint_and_resume_needs_only_out(tmp_path):
    # Ctrl-C in a terminal signals the process group: the env worker processes too.
    run = tmp_path / 'run'
    sig = signal.SIGINT
    status, err = interrupt_after_first_progress_line(
        rpl_train(*TINY, '--vector-env', 'subprocess', '--out', str(run)), sig
    )
    assert status == 128 + sig, err
    assert 'Traceback' not in err, err
    assert 'burn-in: critic 0 of 80 windows, actor frozen' in err  # the progress line
    state = load_checkpoint(run / 'checkpoint.pt')
    stopped_at = state['counters']['env_steps']
    assert stopped_at < 400
    assert f'interrupted by SIGINT at {stopped_at} of 400 env steps' in err
    assert f'rpl train --out {run} --resume' in err
    assert not (run / 'summary.json').exists()
    # The actor as it stood is exported: a stopped run has a model to evaluate or deploy.
    assert f'the actor as it stands to {run / "actor.onnx"}' in err
    meta = onnxruntime.InferenceSession(str(run / 'actor.onnx')).get_modelmeta()
    stamped = meta.custom_metadata_map
    assert stamped['env_steps'] == str(stopped_at), stamped
    # Its success is stated only when an evaluation measured this actor (one at the steps
    # it stopped at; under load the signal can come after the 200-step evaluation).
    evaluated = stopped_at in read_metrics(run / 'metrics.csv')['env_steps']
    assert ('eval_success' in stamped) == evaluated, (stamped, stopped_at)
    assert_resume_with_out_only_finishes(run)


INTERRUPTED_RUN = {
    'checkpoint_interval': 1000,  # no periodic checkpoint in these runs
    'total_env_steps': 120,
}  # on top of helpers.TOY_RUN


def test_sigterm_then_a_second_signal_drops_the_cycle_and_the_save_survives_a_third(
    tmp_path, monkeypatch
):
    run = tmp_path / 'run'
    trainer = toy_trainer(run, **INTERRUPTED_RUN)
    steps_seen = []
    original_step = Trainer._train_while_stepping

    def signal_mid_cycle(self):
        steps_seen.append(self.env_steps)
        if self.env_steps == 40 and len([s for s in steps_seen if s == 40]) == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # finish the cycle ...
            os.kill(os.getpid(), signal.SIGINT)  # ... no: stop at the next step
        original_step(self)

    original_save = train_module.save_learner_checkpoint
    saves = []

    def signal_during_save(path, kind, learner, **run_state):
        saves.append(run_state['counters']['env_steps'])
        if len(saves) > 1:  # the save on the signal (not the one at the start)
            os.kill(os.getpid(), signal.SIGINT)  # only acknowledged while the file is written
        original_save(path, kind, learner, **run_state)

    monkeypatch.setattr(Trainer, '_train_while_stepping', signal_mid_cycle)
    monkeypatch.setattr(train_module, 'save_learner_checkpoint', signal_during_save)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted) as stopped:
        trainer.run()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    assert stopped.value.signum == signal.SIGTERM and stopped.value.env_steps == 40
    assert saves == [0, 40]  # at the start, and on the signal
    state = load_checkpoint(run / 'checkpoint.pt')  # intact despite the third signal
    assert state['counters']['env_steps'] == 40  # the unfinished cycle is not stored
    # 6 updates in the second cycle (the first had an empty buffer), 1 in the dropped one.
    assert state['learner']['agent']['updates'] == 7
    monkeypatch.undo()
    resumed = toy_trainer(run, **INTERRUPTED_RUN)
    result = resumed.run(resume=True)
    assert result.env_steps == 120
    steps = read_metrics(run / 'metrics.csv')['env_steps']
    np.testing.assert_array_equal(steps, [0, 40, 80, 120])


def test_a_run_killed_before_its_first_periodic_checkpoint_resumes(tmp_path, monkeypatch):
    """The start checkpoint: a crash (or SIGKILL) after the first evaluation row resumes,
    and the resumed run equals an uninterrupted one, each evaluation logged once."""
    straight = toy_trainer(tmp_path / 'straight', **INTERRUPTED_RUN)
    straight.run()

    run = tmp_path / 'run'

    def crash(self):
        raise RuntimeError('killed')

    monkeypatch.setattr(Trainer, '_cycle', crash)
    with pytest.raises(RuntimeError, match='killed'):
        toy_trainer(run, **INTERRUPTED_RUN).run()
    monkeypatch.undo()
    assert read_metrics(run / 'metrics.csv')['env_steps'].tolist() == [0]
    assert load_checkpoint(run / 'checkpoint.pt')['counters']['env_steps'] == 0
    resumed = toy_trainer(run, **INTERRUPTED_RUN)
    resumed.run(resume=True)
    steps = read_metrics(run / 'metrics.csv')['env_steps']
    np.testing.assert_array_equal(steps, [0, 40, 80, 120])
    for a, b in zip(
        straight.learner.agent.actor.parameters(),
        resumed.learner.agent.actor.parameters(),
        strict=True,
    ):
        assert torch.equal(a, b)


def test_a_run_being_trained_cannot_be_resumed_by_a_second_process(tmp_path):
    """Both used to train into the folder: interleaved metrics rows, the last writer's
    checkpoint and models. The second is refused in one line; the first finishes intact."""
    run = tmp_path / 'run'
    long_run = [*TINY[:4], '--steps', '100000', *TINY[6:]]  # long enough to be running
    first = subprocess.Popen(
        rpl_train(*long_run, '--out', str(run)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in first.stderr:  # the run holds its folder once it reports progress
            if line.startswith('rpl train: 0/100000 env steps'):
                break
        second = subprocess.run(
            rpl_train('--out', str(run), '--resume'), capture_output=True, text=True, timeout=120
        )
        assert first.poll() is None  # still training while the second was refused
        first.send_signal(signal.SIGTERM)  # stops after the cycle, with a checkpoint
        first.stderr.read()
        assert first.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert second.returncode == 2, second.stderr
    assert f'{run} is being trained by another process (pid {first.pid})' in second.stderr
    assert second.stderr.count('\n') == 1, second.stderr
    steps = read_metrics(run / 'metrics.csv')['env_steps']
    assert list(steps) == sorted(set(steps)), steps  # one writer: no interleaved rows
    assert not (run / '.training.lock').exists()  # released and removed at the end


def test_resume_says_when_the_metrics_file_is_gone(tmp_path, capsys):
    """A resumed run whose metrics.csv was deleted says the earlier rows are lost (it wrote a
    curve starting at the resume point without a word)."""
    run = tmp_path / 'run'
    toy_trainer(run, total_env_steps=80).run()
    (run / 'metrics.csv').unlink()
    capsys.readouterr()
    toy_trainer(run, total_env_steps=120).run(resume=True)
    err = capsys.readouterr().err
    assert f'warning: {run / "metrics.csv"} is missing: the evaluations to 80 env steps' in err
    np.testing.assert_array_equal(read_metrics(run / 'metrics.csv')['env_steps'], [120])
