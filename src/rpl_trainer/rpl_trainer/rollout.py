"""Batched rollouts: several goal tasks stepped together, in this process or in workers.

Each environment slot pairs a task with its own base controller instance (controllers may
keep episode state, and the planning controllers need their own simulator copy), so the
base action for the current observation comes back with every reset and step. The learner
then makes one batched actor call per step for all environments.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import signal
import traceback
from collections.abc import Callable, Sequence
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from typing import Any, NamedTuple, Protocol

import numpy as np

from rpl_base_controllers.base import ControllerFailure, checked_action, checked_reset
from rpl_trainer.her import EpisodeBatch


class EnvFactory(Protocol):
    """Picklable factory of one environment slot: ``factory() -> (task, controller | None)``."""

    def __call__(self) -> tuple[Any, Any | None]: ...


@dataclasses.dataclass(frozen=True)
class RegisteredEnv:
    """Factory for a registered task and (optionally) a registered base controller.

    Attributes:
        task: Task name (``rpl_sim_bridge.tasks``).
        controller: Controller name (``rpl_base_controllers``), or None for no base.
        controller_params: Its parameters, ``'NAME=VALUE,...'`` ('' = the defaults).
        true_goal: The slots report the simulator's achieved goal
            (``GoalTask.true_achieved_goal``) instead of the observed one, for the replay
            buffer's achieved goals (``privileged_goal``); observations, success and
            distances stay the task's.
    """

    task: str
    controller: str | None
    controller_params: str = ''
    true_goal: bool = False

    def __call__(self) -> tuple[Any, Any | None]:
        from rpl_base_controllers.registry import make_controller, params_from_text
        from rpl_sim_bridge.tasks import make_task

        task = make_task(self.task)
        controller = None
        if self.controller is not None:
            params = params_from_text(self.controller, self.controller_params)
            controller = make_controller(self.controller, task=self.task, **params)
        return task, controller


class StepBatch(NamedTuple):
    """What N environments report after a reset or a step (float32 arrays)."""

    obs: np.ndarray
    """(N, obs_dim) observations."""
    achieved_goal: np.ndarray
    """(N, goal_dim) achieved goals."""
    desired_goal: np.ndarray
    """(N, goal_dim) desired goals."""
    base: np.ndarray
    """(N, action_dim) base action for this observation (zeros without a controller)."""
    is_success: np.ndarray
    """(N,) 1.0 where the goal is reached now."""
    distance: np.ndarray
    """(N,) goal distance now (m for Fetch)."""


class _Slot:
    """One task with its controller; returns plain tuples so results pickle cheaply."""

    def __init__(self, factory: EnvFactory) -> None:
        self.task, self.controller = factory()
        self.action_dim = int(self.task.spec.action_dim)
        self.true_goal = bool(getattr(factory, 'true_goal', False))
        self._seed = -1  # the current episode's reset seed (for a controller failure's line)

    def _report(self, obs: dict[str, np.ndarray], info: dict[str, float]) -> tuple:
        if self.controller is None:
            base = np.zeros(self.action_dim)
        else:
            base = checked_action(
                self.controller,
                obs['observation'],
                obs['desired_goal'],
                self.action_dim,
                f'task {self.task.spec.name!r}, training episode seed {self._seed}',
            )
        achieved = self.task.true_achieved_goal(obs) if self.true_goal else obs['achieved_goal']
        return (
            obs['observation'],
            achieved,
            obs['desired_goal'],
            base,
            info['is_success'],
            info['distance'],
        )

    def reset(self, seed: int) -> tuple:
        self._seed = int(seed)
        if self.controller is not None:
            checked_reset(
                self.controller, f'task {self.task.spec.name!r}, training episode seed {seed}'
            )
        obs, info = self.task.reset(seed=int(seed))
        return self._report(obs, info)

    def step(self, action: np.ndarray) -> tuple:
        obs, _, terminated, _, info = self.task.step(action)
        if terminated:
            raise RuntimeError(
                f'task {self.task.spec.name!r} terminated early; the trainer needs fixed-length '
                'episodes (no early termination)'
            )
        return self._report(obs, info)

    def close(self) -> None:
        self.task.close()


def _stack(rows: Sequence[tuple]) -> StepBatch:
    return StepBatch(*(np.asarray(column, np.float32) for column in zip(*rows, strict=True)))


class SyncVectorEnv:
    """N environment slots stepped one after another in this process.

    Args:
        factory: Builds one slot.
        num_envs: Number of slots N.
    """

    def __init__(self, factory: EnvFactory, num_envs: int) -> None:
        self.num_envs = num_envs
        self._slots = [_Slot(factory) for _ in range(num_envs)]

    def reset(self, seeds: Sequence[int]) -> StepBatch:
        """Reset slot i with seeds[i]."""
        return _stack([slot.reset(seed) for slot, seed in zip(self._slots, seeds, strict=True)])

    def step(self, actions: np.ndarray) -> StepBatch:
        """Step slot i with actions[i] (action units)."""
        return _stack([slot.step(a) for slot, a in zip(self._slots, actions, strict=True)])

    def step_async(self, actions: np.ndarray) -> None:
        """Remember the actions; :meth:`step_wait` steps (nothing runs in parallel here)."""
        self._pending = actions

    def step_wait(self) -> StepBatch:
        """Step with the actions given to :meth:`step_async`."""
        return self.step(self._pending)

    def close(self) -> None:
        """Release the tasks."""
        for slot in self._slots:
            slot.close()


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class WorkerDied(RuntimeError):
    """An environment worker process ended (killed, out of memory) while the run needed it."""


def _worker(connection: Connection, factory: EnvFactory, count: int) -> None:
    """Worker loop: owns ``count`` slots, answers ('reset', seeds), ('step', actions), 'close'.

    Ctrl-C in a terminal signals the whole process group: the workers ignore SIGINT and
    SIGTERM, so the trainer can finish its cycle and save a checkpoint; they end on 'close'
    or when the trainer's end of the pipe closes.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Blocked since the start (SubprocVectorEnv): a Ctrl-C while this process was still
    # importing was a KeyboardInterrupt traceback here and a dead worker there.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    try:
        slots = [_Slot(factory) for _ in range(count)]
        connection.send(('ok', None))
    except Exception:
        connection.send(('error', traceback.format_exc()))
        return
    while True:
        try:
            command, payload = connection.recv()
        except (EOFError, OSError):  # the trainer is gone
            command, payload = 'close', None
        if command == 'close':
            for slot in slots:
                slot.close()
            try:
                connection.send(('ok', None))
            except (BrokenPipeError, OSError):
                pass
            return
        try:
            if command == 'reset':
                rows = [slot.reset(seed) for slot, seed in zip(slots, payload, strict=True)]
            else:
                rows = [slot.step(a) for slot, a in zip(slots, payload, strict=True)]
            connection.send(('ok', rows))
        except ControllerFailure as exc:  # its one line, raised again in the trainer
            connection.send(('controller', str(exc)))
        except Exception:
            connection.send(('error', traceback.format_exc()))


class SubprocVectorEnv:
    """N environment slots spread over worker processes (spawned, so torch is never forked).

    Args:
        factory: Builds one slot; must be picklable.
        num_envs: Number of slots N.
        workers: Worker processes (at most N); slots are split as evenly as possible.
    """

    def __init__(self, factory: EnvFactory, num_envs: int, workers: int) -> None:
        self.num_envs = num_envs
        workers = max(1, min(workers, num_envs))
        self._counts = [len(part) for part in np.array_split(np.arange(num_envs), workers)]
        context = mp.get_context('spawn')
        self._connections: list[Connection] = []
        self._processes = []
        # Started by the first spawn otherwise, with a mask of its own that it then
        # unblocks: that first worker ran unprotected (measured: worker 1 of 3).
        resource_tracker.ensure_running()
        try:
            for count in self._counts:
                parent, child = context.Pipe()
                process = context.Process(
                    target=_worker, args=(child, factory, count), daemon=True
                )
                # The workers start with SIGINT / SIGTERM blocked (they ignore both once
                # running); here a blocked one waits, it is not lost.
                blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
                try:
                    process.start()
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
                child.close()
                self._connections.append(parent)
                self._processes.append(process)
            for connection in self._connections:
                self._receive(connection)
        except BaseException:  # one worker failed or died: none is left running (it hung)
            self.close()
            raise

    def _died(self, connection: Connection) -> WorkerDied:
        """The error for the worker behind ``connection``, which is gone; closes the rest."""
        index = self._connections.index(connection)
        process = self._processes[index]
        process.join(timeout=2.0)
        code = process.exitcode
        if code is None:
            how = 'it closed its pipe'
        elif code < 0:
            how = f'killed by {signal.Signals(-code).name}'
        else:
            how = f'exit code {code}'
        self.close()
        return WorkerDied(
            f'environment worker {index + 1} of {len(self._counts)} (pid {process.pid}) ended '
            f'({how}) while the run needed it'
        )

    def _receive(self, connection: Connection) -> Any:
        try:
            status, payload = connection.recv()
        except (EOFError, OSError):
            raise self._died(connection) from None
        if status == 'controller':
            self.close()
            raise ControllerFailure(payload)
        if status != 'ok':
            self.close()
            raise RuntimeError(f'environment worker failed:\n{payload}')
        return payload

    def _send(self, command: str, values: Sequence[Any]) -> None:
        start = 0
        for connection, count in zip(self._connections, self._counts, strict=True):
            try:
                connection.send((command, list(values[start : start + count])))
            except OSError:  # BrokenPipeError, ConnectionResetError: the worker is gone
                raise self._died(connection) from None
            start += count

    def _gather(self) -> StepBatch:
        rows: list[tuple] = []
        for connection in self._connections:
            rows.extend(self._receive(connection))
        return _stack(rows)

    def reset(self, seeds: Sequence[int]) -> StepBatch:
        """Reset slot i with seeds[i]."""
        self._send('reset', list(seeds))
        return self._gather()

    def step(self, actions: np.ndarray) -> StepBatch:
        """Step slot i with actions[i] (action units)."""
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: np.ndarray) -> None:
        """Start stepping in the workers; this process is free until :meth:`step_wait`."""
        self._send('step', list(actions))

    def step_wait(self) -> StepBatch:
        """Results of the step started by :meth:`step_async`."""
        return self._gather()

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        for connection, process in zip(self._connections, self._processes, strict=True):
            if process.is_alive():
                try:
                    connection.send(('close', None))
                    connection.recv()
                except (BrokenPipeError, EOFError, OSError):
                    pass
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
            connection.close()
        self._connections = []
        self._processes = []


VectorEnv = SyncVectorEnv | SubprocVectorEnv


def make_vector_env(factory: EnvFactory, num_envs: int, kind: str) -> VectorEnv:
    """``sync`` or ``subprocess`` (one worker per env, at most os.cpu_count() workers)."""
    if kind == 'sync':
        return SyncVectorEnv(factory, num_envs)
    if kind == 'subprocess':
        return SubprocVectorEnv(factory, num_envs, workers=min(num_envs, mp.cpu_count()))
    raise ValueError(f'vector env kind must be sync or subprocess, got {kind!r}')


Policy = Callable[[StepBatch, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""policy(step, prev_obs (N, obs_dim)) -> (u_stored (N, A) in [-1, 1], executed (N, A))."""


class RolloutAborted(Exception):
    """``collect_episodes`` stopped before the end of its episodes (its ``abort`` said so)."""


class Rollout(NamedTuple):
    """N finished episodes and their outcome."""

    episodes: EpisodeBatch
    success: np.ndarray
    """(N,) is_success at the last step (the paper's success measure)."""
    final_distance: np.ndarray
    """(N,) goal distance at the last step."""


def collect_episodes(
    env: VectorEnv,
    policy: Policy,
    seeds: Sequence[int],
    steps: int,
    while_stepping: Callable[[], None] | None = None,
    abort: Callable[[], bool] | None = None,
) -> Rollout:
    """Run one episode of ``steps`` steps in every slot, in lockstep.

    Args:
        env: Vector env with N slots.
        policy: Maps the current step batch and the previous observations to the stored and
            executed actions.
        seeds: Reset seed per slot (N,).
        steps: Episode length T.
        while_stepping: Called once per step while the environments step (in parallel with
            them for the subprocess env): the trainer's gradient updates go here.
        abort: Asked before every step; True drops the unfinished episodes.

    Returns:
        The episodes (obs and achieved goals T + 1 long) and their success.

    Raises:
        RolloutAborted: ``abort`` returned True (no step is left in flight).
    """
    step = env.reset(seeds)
    n = step.obs.shape[0]
    obs = [step.obs]
    achieved = [step.achieved_goal]
    desired, stored, executed = [], [], []
    prev_obs = step.obs
    for _ in range(steps):
        if abort is not None and abort():
            raise RolloutAborted
        u, action = policy(step, prev_obs)
        desired.append(step.desired_goal)
        stored.append(u)
        executed.append(action)
        prev_obs = step.obs
        env.step_async(action)
        if while_stepping is not None:
            while_stepping()
        step = env.step_wait()
        obs.append(step.obs)
        achieved.append(step.achieved_goal)
    episodes = EpisodeBatch(
        obs=np.stack(obs, axis=1),
        achieved_goal=np.stack(achieved, axis=1),
        desired_goal=np.stack(desired, axis=1),
        action=np.stack(stored, axis=1).astype(np.float32),
        executed=np.stack(executed, axis=1).astype(np.float32),
    )
    assert episodes.obs.shape[:2] == (n, steps + 1)
    return Rollout(episodes, step.is_success.copy(), step.distance.copy())
