"""Stopping ``rpl train`` by SIGINT / SIGTERM: the signals turned into stop requests
(:class:`StopSignals`), and the exception that reports the checkpoint saved before stopping
(:class:`TrainingInterrupted`).
"""

from __future__ import annotations

import os
import pathlib
import signal
import threading
from collections.abc import Sequence
from typing import Any


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped the run; its state was saved to the checkpoint first.

    Attributes:
        signum: The (first) signal received.
        env_steps: Env steps in the checkpoint (the resumed run starts there).
        total_env_steps: The run's budget.
        checkpoint: The checkpoint file.
        model: The actor as it stood, exported.
    """

    def __init__(
        self,
        signum: int,
        env_steps: int,
        total_env_steps: int,
        checkpoint: pathlib.Path,
        model: pathlib.Path,
    ) -> None:
        self.signum = signum
        self.env_steps = env_steps
        self.total_env_steps = total_env_steps
        self.checkpoint = checkpoint
        self.model = model
        super().__init__(
            f'interrupted by {signal.Signals(signum).name} at {env_steps} of '
            f'{total_env_steps} env steps; checkpoint saved to {checkpoint}, the actor as it '
            f'stands to {model}'
        )


class StopSignals:
    """SIGINT and SIGTERM turned into requests while a run is in progress (main thread only).

    The handler raises nothing, so whatever runs (an update, a checkpoint being written)
    completes. The first signal asks the run to stop after the current training cycle
    (evaluations stop at once: they change no learning state); the second to stop at the
    next env step, dropping the unfinished episodes; later ones are only acknowledged.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum = 0
        self.count = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        """A signal came: stop at the end of the current cycle (or evaluation)."""
        return self.count >= 1

    @property
    def urgent(self) -> bool:
        """A second signal came: stop at the next env step."""
        return self.count >= 2

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        name = signal.Signals(signum).name
        if self.count == 1:
            self.signum = signum
            text = (
                f'{name}: stopping after the current episodes, then saving a checkpoint '
                '(send it again to stop sooner)'
            )
        elif self.count == 2:
            text = f'{name}: stopping now; the unfinished episodes are dropped'
        else:
            text = f'{name}: saving the checkpoint (written atomically, never half-written)'
        # os.write, not print: a handler may run while the main thread is inside a print.
        os.write(2, f'\nrpl train: {text}\n'.encode())


__all__: Sequence[str] = ('StopSignals', 'TrainingInterrupted')
