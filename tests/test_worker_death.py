"""An environment worker process that dies (kill -9, out of memory, an exit in user code)
is one error naming it, never a hang: at start the trainer printed an EOFError traceback
and then never exited; later the line was `[Errno 104] Connection reset by peer`."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from rpl_sim_bridge.tasks import make_task
from rpl_trainer.rollout import SubprocVectorEnv, WorkerDied


class Factory:
    """Builds the push task without a controller; ``exit_code`` ends the worker instead."""

    def __init__(self, exit_code: int | None = None) -> None:
        self.exit_code = exit_code

    def __call__(self):  # noqa: ANN204 (EnvFactory)
        if self.exit_code is not None:
            os._exit(self.exit_code)
        return make_task('push'), None


def test_a_worker_that_dies_while_starting_is_one_error_and_no_hang():
    started = time.monotonic()
    with pytest.raises(
        WorkerDied, match=r'environment worker 1 of 1 \(pid \d+\) ended \(exit code 3\)'
    ):
        SubprocVectorEnv(Factory(exit_code=3), 1, workers=1)
    assert time.monotonic() - started < 60.0


def test_a_worker_killed_mid_run_is_named_with_its_signal_and_the_rest_stop():
    env = SubprocVectorEnv(Factory(), 2, workers=2)
    processes = list(env._processes)
    try:
        env.reset([1, 2])
        os.kill(processes[1].pid, signal.SIGKILL)
        processes[1].join(timeout=10.0)
        with pytest.raises(WorkerDied, match=r'worker 2 of 2 .*\(killed by SIGKILL\)'):
            env.step(np.zeros((2, 4)))
        assert not any(p.is_alive() for p in processes)  # the other one was stopped too
    finally:
        env.close()
