"""The training loop: batched rollouts with interleaved DDPG + HER updates, evaluation,
metrics, resumable checkpoints and the final ONNX export.

One cycle = one episode in each of the N environments. While the environments step, the
learner pays its update debt (``updates_per_env_step`` gradient steps per env step), so with
the subprocess vector env the updates overlap the simulation. After the cycle the episodes
go into the replay buffer and the input statistics are updated from HER-relabelled samples
of them (as in the baselines code). The learner (agent, buffer, HER, debt, export, state)
is :class:`rpl_trainer.learner.Learner`, the one the trainer node uses; one DDPG + HER
update reads top to bottom from there.

Around the loop, each in its own module: the run directory (what is written where, and
when a directory is refused) :mod:`rpl_trainer.run_dir`; the metrics file
:mod:`rpl_trainer.metrics`; stopping by SIGINT / SIGTERM :mod:`rpl_trainer.stop`; the task
as the trainer sees it :mod:`rpl_trainer.problem`.

A fixed-goal task (no goal fields, a dense reward per step, e.g. the pusher) trains on the
same path with goals of width 0; its evaluations also report the mean return
(``eval/return``: the sum of the step rewards over an episode), and its best model is the
one of the highest return (a goal task's: of the highest success rate).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from rpl_base_controllers.base import ControllerFailure
from rpl_residual_node.onnx_actor import TWO_FRAME_KEY
from rpl_trainer.checkpoint import (
    TRAIN_RUN,
    CheckpointError,
    load_learner_checkpoint,
    save_learner_checkpoint,
)
from rpl_trainer.config import TrainConfig
from rpl_trainer.ddpg import BurnIn
from rpl_trainer.export import task_identity
from rpl_trainer.learner import Learner, start_from
from rpl_trainer.metrics import Accumulator, append_row, read_metrics, truncate_metrics
from rpl_trainer.problem import Problem, registered_problem
from rpl_trainer.residual import ActionComposer, axis_scales, largest_scale, residual_scales
from rpl_trainer.rollout import (
    Rollout,
    RolloutAborted,
    StepBatch,
    VectorEnv,
    WorkerDied,
    collect_episodes,
    make_vector_env,
)
from rpl_trainer.run_dir import (
    BEST_ONNX_FILE,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    ONNX_FILE,
    SNAPSHOT_DIR,
    SUMMARY_FILE,
    RunDirError,
    check_run_dir,
    drop_snapshots_after,
    is_new_best,
    no_best,
    read_base_eval,
    snapshot_name,
    training_lock,
    write_base_eval,
    write_config,
    write_summary,
)
from rpl_trainer.stop import StopSignals, TrainingInterrupted

TRAIN_STREAM, EVAL_STREAM = 0, 1
SUCCESS, RETURN = 'eval/success_rate', 'eval/return'


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """Outcome of a run."""

    out_dir: pathlib.Path
    env_steps: int
    success_rate: float
    """Final evaluation success rate."""
    base_success_rate: float | None
    onnx_path: pathlib.Path
    wall_s: float
    burn_in: str = ''
    """Burn-in state at the end (:func:`burn_in_status`)."""
    actor_frozen: bool = False
    """The actor never left burn-in: the model is the zero residual (the base alone)."""
    mean_return: float | None = None
    """Final evaluation's mean return (fixed-goal tasks; None for goal tasks)."""
    base_return: float | None = None
    """The base controller's mean return (fixed-goal tasks, when measured)."""


def burn_in_status(burn_in: BurnIn) -> str:
    """Where burn-in stands, for the progress output.

    Examples: ``burn-in: critic 3 of 80 windows (q_drift 4.2 > 1), actor frozen``;
    ``actor learning (burn-in ended after 6 windows, by q_drift)``; ``''`` without burn-in.
    """
    if burn_in.ended_by == 'disabled':
        return ''
    windows = burn_in.updates // burn_in.window
    if not burn_in.active:
        return f'actor learning (burn-in ended after {windows} windows, by {burn_in.ended_by})'
    cap = burn_in.max_updates // burn_in.window if burn_in.max_updates else 0
    of = f' of {cap}' if cap else ''
    value = burn_in.value
    measured = (
        '' if math.isnan(value) else f' ({burn_in.criterion} {value:.3g} > {burn_in.beta:g})'
    )
    return f'burn-in: critic {windows}{of} windows{measured}, actor frozen'


def burn_in_budget_note(config: TrainConfig) -> str | None:
    """A warning when the budget cannot end burn-in, or None.

    Burn-in can end after two windows at the earliest (``q_drift`` compares a window with
    the one before; ``critic_loss``: one window). A run with fewer gradient steps keeps the
    actor at its zero initialisation: its model is the base controller alone.
    """
    if not config.burn_in_enabled:
        return None
    first = (2 if config.burn_in_criterion == 'q_drift' else 1) * config.burn_in_window
    if config.burn_in_max_updates:
        first = min(first, config.burn_in_max_updates)
    updates = int(config.total_env_steps * config.updates_per_env_step)
    if updates >= first:
        return None
    return (
        f'{config.total_env_steps} env steps give ~{updates} gradient steps, fewer than the '
        f'{first} burn-in needs at least ({config.burn_in_criterion}, windows of '
        f'{config.burn_in_window}): the actor stays frozen and the model equals the base '
        'controller; raise --steps or --updates-per-step'
    )


def thread_contention_note(
    config: TrainConfig, cores: int | None = None, load: float | None = None
) -> str | None:
    """A warning when ``torch_threads`` above 1 must share the cores with other work, or None.

    Intra-op threads wait for each other at every matrix product: on the 2-core VM, 2 threads
    beside another job made 38-178 env steps/s against 237-341 with 1 (config.py). ``cores``:
    the CPUs this process may use; ``load``: the 1-minute load average (both read here when
    not given; the run itself has not started, so the load is the others').
    """
    if config.torch_threads <= 1:
        return None
    cores = len(os.sched_getaffinity(0)) if cores is None else cores
    load = os.getloadavg()[0] if load is None else load
    if config.torch_threads + load <= cores + 0.5:
        return None
    return (
        f'--threads {config.torch_threads} on {cores} core(s) with a load of {load:.1f} '
        'from other work: the torch threads wait for each other and for it, and the run can '
        'be several times slower than with --threads 1'
    )


def episode_seed(seed: int, stream: int, index: int) -> int:
    """Reset seed of episode ``index`` of a stream (train / eval) of run ``seed``."""
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(1)[0])


def _no_rows_file(metrics: pathlib.Path) -> bool:
    """A metrics.csv that is missing or empty (no header, no row)."""
    return not metrics.is_file() or metrics.stat().st_size == 0


class Trainer:
    """DDPG + HER (residual) training of one config on one problem, in one directory.

    Args:
        config: The run's hyperparameters.
        problem: Task, environments, reward and base.
        out_dir: Run directory (:mod:`rpl_trainer.run_dir`).
        progress: Show progress on stderr: a tqdm bar on a terminal, else a line per
            evaluation.
    """

    def __init__(
        self,
        config: TrainConfig,
        problem: Problem,
        out_dir: str | pathlib.Path,
        progress: bool = True,
    ) -> None:
        self.config = config
        self.problem = problem
        self.out_dir = pathlib.Path(out_dir)
        self.progress = progress
        spec = problem.spec
        self.steps = int(spec.max_episode_steps)
        self.composer = ActionComposer(
            config.algo,
            residual_scales(config, spec.action_fields),
            spec.action_low,
            spec.action_high,
            config.noise_eps,
            config.random_eps,
            config.expert_eps,
            config.expert_alpha,
        )
        if config.updates_use_base and problem.make_base_fn is None:
            raise ValueError(
                "goal-consistent HER and critic_action 'executed' need a base controller"
            )
        base_fn = problem.make_base_fn() if config.updates_use_base else None
        self.learner = Learner(
            config,
            problem.dims,
            self.steps,
            problem.training_reward(config.reward_threshold),
            base_fn,
            action_bounds=(spec.action_low, spec.action_high),
            action_fields=spec.action_fields,
        )
        uses_controller = config.algo in ('rpl', 'expert_explore')
        self.env_factory = self._env_factory(uses_controller)
        """Builds the rollout slots (checked here, before the run directory is touched)."""
        self.select = RETURN if problem.fixed_goal else SUCCESS
        """The evaluation metric that picks ``best_actor.onnx``: the success rate of a goal
        task; the mean return of a fixed-goal task (dense reward: the return ranks models
        that all fail, or all succeed, at the last step)."""
        self.env_steps = 0
        self.episodes = 0  # collected by this run (the learner counts what it stores)
        self.wall_s = 0.0
        self.next_eval = 0
        self.next_checkpoint = config.checkpoint_interval
        self.last_eval: dict[str, float] = {}
        # Best periodic evaluation so far (model selection on the training run's own
        # evaluation seeds, never on the held-out seeds of `rpl eval`).
        self.best = no_best(self.select)
        self.acc = Accumulator()
        self._row_clock = (0, 0, 0.0)  # env steps, updates, wall s at the last row
        self._stop = StopSignals()  # replaced by an active one while run() runs

    # ---- acting ---------------------------------------------------------------------

    def _prev(self, prev_obs: np.ndarray) -> np.ndarray | None:
        return prev_obs if self.config.two_frame else None

    def _explore(self, step: StepBatch, prev_obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = self.learner.agent.act(step.obs, step.desired_goal, self._prev(prev_obs), step.base)
        stored, executed = self.composer.explore(u, step.base, self.learner.rng)
        greedy = self.config.greedy_envs
        if greedy:  # the last envs act deterministically (same random draws for the rest)
            stored[-greedy:] = u[-greedy:]
            executed[-greedy:] = self.composer.executed(u[-greedy:], step.base[-greedy:])
        return stored, executed

    def _deterministic(
        self, step: StepBatch, prev_obs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        u = self.learner.agent.act(step.obs, step.desired_goal, self._prev(prev_obs), step.base)
        return u, self.composer.executed(u, step.base)

    def _base_only(self, step: StepBatch, prev_obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        action = np.clip(step.base, self.composer.low, self.composer.high)
        return np.zeros_like(action), action.astype(np.float32)

    def evaluate(
        self, env: VectorEnv, policy, episodes: int, abort: Callable[[], bool] | None = None
    ) -> dict[str, float]:
        """Success rate and mean final distance over the fixed evaluation seeds; for a
        fixed-goal task also the mean return (``eval/return``,
        :meth:`rpl_trainer.problem.Problem.episode_scores`).

        Raises:
            RolloutAborted: ``abort`` returned True.
        """
        successes, distances, returns = [], [], []
        index = 0
        while index < episodes:
            seeds = [
                episode_seed(self.config.seed, EVAL_STREAM, index + i) for i in range(env.num_envs)
            ]
            rollout = collect_episodes(env, policy, seeds, self.steps, abort=abort)
            take = min(env.num_envs, episodes - index)
            success, episode_return = self._scores(rollout)
            successes.extend(success[:take])
            distances.extend(rollout.final_distance[:take])
            if episode_return is not None:
                returns.extend(episode_return[:take])
            index += take
        result = {
            SUCCESS: float(np.mean(successes)),
            'eval/mean_final_distance': float(np.mean(distances)),
        }
        if returns:
            result[RETURN] = float(np.mean(returns))
        return result

    def _scores(self, rollout: Rollout) -> tuple[np.ndarray, np.ndarray | None]:
        """Success (N,) and, for a fixed-goal task, return (N,) of a rollout's episodes."""
        episodes = rollout.episodes
        return self.problem.episode_scores(episodes.obs, episodes.executed, rollout.success)

    # ---- learning -------------------------------------------------------------------

    def _train_while_stepping(self) -> None:
        """Pay the update debt of one vector step (N env steps)."""
        if self.learner.buffer.size == 0:
            return
        self.learner.debt.add(self.env.num_envs)
        for stats in self.learner.pay_debt():
            self.acc.add_update(stats)

    def _cycle(self) -> None:
        n = self.env.num_envs
        seeds = [episode_seed(self.config.seed, TRAIN_STREAM, self.episodes + i) for i in range(n)]
        rollout = collect_episodes(
            self.env,
            self._explore,
            seeds,
            self.steps,
            self._train_while_stepping,
            abort=lambda: self._stop.urgent,
        )
        self.learner.store(rollout.episodes)
        self.env_steps += n * self.steps
        self.episodes += n
        self.acc.successes += float(self._scores(rollout)[0].sum())
        self.acc.episodes += n

    # ---- bookkeeping ----------------------------------------------------------------

    def _write_row(self, eval_metrics: dict[str, float]) -> dict[str, Any]:
        steps0, updates0, wall0 = self._row_clock
        dt = max(self.wall_s - wall0, 1e-9)
        burn_in = self.learner.agent.burn_in
        row: dict[str, Any] = {
            'env_steps': self.env_steps,
            'episodes': self.episodes,
            'updates': self.learner.agent.updates,
            'wall_s': round(self.wall_s, 3),
            **eval_metrics,
            **self.acc.means(),
            'burn_in': int(burn_in.active),
            'burn_in/value': burn_in.value,
            'charts/env_steps_per_s': (self.env_steps - steps0) / dt,
            'charts/updates_per_s': (self.learner.agent.updates - updates0) / dt,
        }
        append_row(self.out_dir / METRICS_FILE, row)
        self.acc = Accumulator()
        self._row_clock = (self.env_steps, self.learner.agent.updates, self.wall_s)
        return row

    def _run_state(self) -> dict[str, Any]:
        """This run's own entries of its checkpoint (next to the learner's)."""
        return {
            'counters': {
                'env_steps': self.env_steps,
                'episodes': self.episodes,
                'wall_s': self.wall_s,
                'next_eval': self.next_eval,
                'next_checkpoint': self.next_checkpoint,
                'row_clock': list(self._row_clock),
            },
            'accumulator': dict(vars(self.acc)),
            'last_eval': dict(self.last_eval),
            'best': dict(self.best),
        }

    def _restore(self, state: dict[str, Any]) -> None:
        try:
            self.learner.load_state_dict(state['learner'])
        except ValueError as exc:
            path = self.out_dir / CHECKPOINT_FILE
            raise CheckpointError(f'cannot resume from checkpoint {path}: {exc}') from exc
        counters = state['counters']
        self.env_steps = int(counters['env_steps'])
        self.episodes = int(counters['episodes'])
        self.wall_s = float(counters['wall_s'])
        self.next_eval = int(counters['next_eval'])
        self.next_checkpoint = int(counters['next_checkpoint'])
        self._row_clock = tuple(counters['row_clock'])
        vars(self.acc).update(state['accumulator'])
        self.last_eval = dict(state['last_eval'])
        self.best = dict(state.get('best', self.best))

    def _logged_step(self) -> int:
        """The env steps of the last row the checkpoint had logged (-1: none)."""
        return self._row_clock[0] if self.last_eval else -1

    def _check_metrics(self) -> None:
        """Refuse to resume into a damaged metrics.csv (new rows were appended under a
        garbage header, and the curve was lost to ``rpl plot``); say which rows a short one
        lacks (a resume filled the gap without a word).

        Raises:
            RunDirError: Not a metrics file (one line naming the file and what is wrong).
        """
        metrics = self.out_dir / METRICS_FILE
        if _no_rows_file(metrics):
            return  # missing or empty: _trim_to_checkpoint says the rows are gone
        try:
            steps = read_metrics(metrics)['env_steps']
        except (OSError, ValueError) as exc:
            raise RunDirError(
                f'{exc}; a resume would write its rows under it: restore it, or move it away '
                f'(the resumed run then writes its rows from {self.env_steps} on)'
            ) from None
        logged = self._logged_step()
        last = int(steps[-1]) if len(steps) else -1
        if last < logged:
            print(
                f'rpl train: warning: {metrics} ends at '
                f'{"no row" if last < 0 else f"{last} env steps"}, its run evaluated to {logged}:'
                ' those rows are not in it any more (restore the file first to keep the whole '
                'curve)',
                file=sys.stderr,
                flush=True,
            )

    def _trim_to_checkpoint(self) -> None:
        """A resumed run's files as its checkpoint left them (after every refusal, before
        the run goes on)."""
        # A mid-run checkpoint is taken right after the cycle that crosses its boundary,
        # before that step's evaluation row: keep only the rows it had logged, so the
        # resumed run writes that row once (not a duplicate of a row from after it). The
        # checkpoint taken at the start has no row at all.
        logged = self._logged_step()
        metrics = self.out_dir / METRICS_FILE
        if logged >= 0 and _no_rows_file(metrics):
            print(
                f'rpl train: warning: {metrics} is missing: the evaluations to {logged} env '
                f'steps are not in it any more; the resumed run writes its rows from '
                f'{self.env_steps} on (restore the file first to keep the whole curve)',
                file=sys.stderr,
                flush=True,
            )
        truncate_metrics(metrics, logged)
        drop_snapshots_after(self.out_dir, logged)

    def _export(self, name: str) -> pathlib.Path:
        config = self.config
        return self.learner.export(
            self.out_dir / name,
            scale=self.composer.scale,
            identity=task_identity(
                self.problem.spec,
                config.deployed_controller,
                config.deployed_controller_params,
                residual_scale=largest_scale(self.composer.scale),
                residual_scales=axis_scales(self.composer.scale),
                training_steps=self.env_steps,
                # Only an evaluation of this actor: a run stopped between two evaluations
                # exports an actor that none has measured.
                eval_success=self.last_eval.get(SUCCESS)
                if self._row_clock[0] == self.env_steps
                else None,
            ),
            metadata={
                'algo': config.algo,
                TWO_FRAME_KEY: str(config.two_frame).lower(),
                'env_steps': str(self.env_steps),
                'seed': str(config.seed),
            },
        )

    def _keep_best(self) -> None:
        """Export ``best_actor.onnx`` when this evaluation beats every earlier one (in
        :attr:`select`)."""
        if is_new_best(self.best, self.last_eval[self.select], self.select):
            self._export(BEST_ONNX_FILE)
            best = {SUCCESS: self.last_eval[SUCCESS]}
            if RETURN in self.last_eval:
                best[RETURN] = self.last_eval[RETURN]
            self.best = {**best, 'env_steps': self.env_steps}

    def _checkpoint(self) -> None:
        path = self.out_dir / CHECKPOINT_FILE
        save_learner_checkpoint(path, TRAIN_RUN, self.learner.state_dict(), **self._run_state())

    def _base_eval(self) -> dict[str, Any] | None:
        """The base controller's evaluation (saved by an earlier start, or run now), or
        None when there is none."""
        saved = read_base_eval(self.out_dir)
        if saved is not None:
            return saved
        episodes = self.config.base_eval_episodes
        if episodes == 0 or self.problem.make_base_fn is None:
            return None
        abort = self._stop_requested
        if self.config.algo in ('rpl', 'expert_explore'):  # self.env has controllers
            result = self.evaluate(self.env, self._base_only, episodes, abort)
        else:
            env = make_vector_env(
                self.problem.env_factory(True), self.config.num_envs, self.config.vector_env
            )
            try:
                result = self.evaluate(env, self._base_only, episodes, abort)
            finally:
                env.close()
        result.update(episodes=episodes, controller=self.config.controller)
        write_base_eval(self.out_dir, result)
        return result

    def _env_factory(self, uses_controller: bool) -> Any:
        """The problem's environment factory, reporting the simulator's achieved goals for
        ``privileged_goal``.

        Raises:
            ValueError: ``privileged_goal`` for a fixed-goal task (no achieved goal) or with
                a factory that cannot report them.
        """
        factory = self.problem.env_factory(uses_controller)
        if not self.config.privileged_goal:
            return factory
        if self.problem.fixed_goal:
            raise ValueError(
                f'privileged_goal is for goal tasks; {self.problem.spec.name} has no achieved goal'
            )
        if not (dataclasses.is_dataclass(factory) and hasattr(factory, 'true_goal')):
            raise ValueError(
                f'privileged_goal needs a registered task; {type(factory).__name__} cannot '
                "report the simulator's achieved goal"
            )
        return dataclasses.replace(factory, true_goal=True)

    # ---- the run --------------------------------------------------------------------

    def _stop_requested(self) -> bool:
        return self._stop.requested

    def _progress_bar(self) -> tqdm:
        """A tqdm bar on a terminal; elsewhere (a log, a pipe) lines from :meth:`_report`."""
        tty = self.progress and sys.stderr.isatty()
        self._lines = self.progress and not tty
        return tqdm(
            total=self.config.total_env_steps,
            initial=min(self.env_steps, self.config.total_env_steps),
            unit='step',
            dynamic_ncols=True,
            disable=not tty,
            desc=f'{self.config.algo} {self.config.task}',
        )

    def _report(self, bar: tqdm) -> None:
        """Show the last evaluation and where burn-in stands (after every cycle)."""
        row = self.last_eval
        parts = [f'eval {_show(row.get(SUCCESS))}']
        if RETURN in row:
            parts.append(f'return {_show(row[RETURN])}')
        status = burn_in_status(self.learner.agent.burn_in)
        if status:
            parts.append(status)
        bar.set_postfix_str(' | '.join(parts), refresh=False)

    def _report_precision(self) -> None:
        """Resolve ``update_precision=auto`` before the clock starts, and say what won."""
        agent = self.learner.agent
        precision = agent.update_precision
        if self.progress and self.config.update_precision == 'auto':
            print(
                f'rpl train: update_precision auto -> {precision} (bfloat16 made '
                f'{agent.precision_ratio:.2f}x the float32 updates/s on this CPU)',
                file=sys.stderr,
                flush=True,
            )

    def _report_line(self, row: dict[str, Any]) -> None:
        if not self._lines:
            return
        status = burn_in_status(self.learner.agent.burn_in)
        mean_return = f', return {_show(row[RETURN])}' if RETURN in row else ''
        print(
            f'rpl train: {self.env_steps}/{self.config.total_env_steps} env steps, '
            f'{self.wall_s:.0f} s, eval success {_show(row.get(SUCCESS))}{mean_return}, '
            f'critic loss {_show(row.get("losses/critic"))}' + (f', {status}' if status else ''),
            file=sys.stderr,
            flush=True,
        )

    def _loop(self, bar: tqdm, clock: float) -> bool:
        """Evaluate, train and checkpoint until the budget is spent (True) or a signal asked
        to stop (False, after the current cycle).

        Raises:
            RolloutAborted: A signal stopped an evaluation, or a second one a cycle.
        """
        config = self.config
        while True:
            done = self.env_steps >= config.total_env_steps
            unlogged = self._row_clock[0] != self.env_steps or not self.last_eval
            if self.env_steps >= self.next_eval or (done and unlogged):
                self.wall_s = time.perf_counter() - clock
                self.last_eval = self.evaluate(
                    self.env, self._deterministic, config.eval_episodes, self._stop_requested
                )
                self.wall_s = time.perf_counter() - clock
                row = self._write_row(self.last_eval)
                self._keep_best()
                if config.snapshots:
                    (self.out_dir / SNAPSHOT_DIR).mkdir(exist_ok=True)
                    self._export(snapshot_name(self.env_steps))
                while self.next_eval <= self.env_steps:
                    self.next_eval += config.eval_interval
                self._report_line(row)
            self._report(bar)
            if done:
                return True
            if self._stop.requested:
                return False
            before = self.env_steps
            self._cycle()
            self.wall_s = time.perf_counter() - clock
            bar.update(min(self.env_steps, config.total_env_steps) - min(before, bar.total))
            if self.env_steps >= self.next_checkpoint:
                self._checkpoint()
                while self.next_checkpoint <= self.env_steps:
                    self.next_checkpoint += config.checkpoint_interval

    def _train(self) -> tuple[dict[str, Any] | None, bool]:
        """Train to the budget or a stop, then checkpoint; returns the base controller's
        evaluation (or None) and whether the budget was reached."""
        config = self.config
        self.env = make_vector_env(self.env_factory, config.num_envs, config.vector_env)
        bar = self._progress_bar()
        clock = time.perf_counter() - self.wall_s
        base = None
        failure = None
        try:
            if not self._stop.requested:
                base = self._base_eval()
            finished = not self._stop.requested and self._loop(bar, clock)
        except RolloutAborted:
            finished = False
        except (ControllerFailure, WorkerDied) as exc:  # the run so far is kept
            failure = exc
        finally:
            bar.close()
            self.env.close()
        self.wall_s = time.perf_counter() - clock
        self._checkpoint()
        if failure is not None:
            raise failure
        return base, finished

    def _end_written(self) -> bool:
        """Whether this run's end (actor.onnx and summary.json of its env steps) is there:
        a run whose last checkpoint reached the budget but whose export or summary failed
        (a full disk) is finished by a resume, not refused as having nothing to train."""
        try:
            summary = json.loads((self.out_dir / SUMMARY_FILE).read_text())
        except (OSError, ValueError):
            return False
        return (
            isinstance(summary, dict)
            and summary.get('env_steps') == self.env_steps
            and (self.out_dir / ONNX_FILE).is_file()
        )

    def run(
        self,
        resume: bool = False,
        init_from: str | pathlib.Path | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> TrainResult:
        """Train to ``total_env_steps``, evaluating, logging and checkpointing on the way.

        A run checkpoints at its start, so one killed at any moment can be resumed. SIGINT
        and SIGTERM (in the main thread) stop it with a checkpoint: see
        :class:`rpl_trainer.stop.StopSignals`.

        Args:
            resume: Continue from ``out_dir/checkpoint.pt`` (see
                :func:`rpl_trainer.run_dir.check_run_dir`).
            init_from: A new run's learner starts from the learner of this checkpoint
                (another ``rpl train`` run's or a trainer node's, of the same learner
                fields): networks, optimisers, normalisers, burn-in, replay buffer, random
                state (:func:`rpl_trainer.learner.start_from`).
            on_start: Called once every refusal is past (the folder's lock, the checkpoint
                read), before anything is written: a caller's start lines come after a
                refusal could, never before it.

        Raises:
            RunDirError: See :func:`rpl_trainer.run_dir.check_run_dir`.
            CheckpointError: Missing or corrupt checkpoint on resume, or an ``init_from``
                checkpoint that does not fit.
            TrainingInterrupted: SIGINT or SIGTERM; the checkpoint holds the state to resume.
            ControllerFailure: The base controller raised or gave a non-finite action;
                the checkpoint holds the run up to the cycle it failed in.
            WorkerDied: An environment worker process ended (checkpointed likewise).
        """
        config = self.config
        check_run_dir(self.out_dir, config, resume)
        finishing = False  # at its budget, but its end (model, summary) was never written
        with training_lock(self.out_dir), StopSignals() as self._stop:
            if resume:
                self._restore(load_learner_checkpoint(self.out_dir / CHECKPOINT_FILE, TRAIN_RUN))
                at_budget = self.env_steps >= config.total_env_steps
                # Only a run whose last step was evaluated: its summary says that evaluation.
                evaluated = self._row_clock[0] == self.env_steps
                finishing = at_budget and evaluated and not self._end_written()
                if at_budget and not finishing:  # before anything is rewritten
                    raise RunDirError(
                        f'the run in {self.out_dir} is at {self.env_steps} env steps already, '
                        f'at or past the {config.total_env_steps} asked for: nothing to train '
                        '(a larger --steps continues it)'
                    )
            else:
                if init_from is not None:
                    start_from(self.learner, init_from)
                self.out_dir.mkdir(parents=True, exist_ok=True)
            if resume:
                self._check_metrics()
            if on_start is not None:
                on_start()
            if resume:
                self._trim_to_checkpoint()
            try:
                write_config(self.out_dir, config)
                if not resume:
                    self._checkpoint()
            except OSError:
                if not resume:  # nothing of a new run is kept: the same command runs again
                    for name in (CONFIG_FILE, CHECKPOINT_FILE):
                        (self.out_dir / name).unlink(missing_ok=True)
                raise
            self._report_precision()

            if finishing:  # the last checkpoint is at the budget: only its end is written
                base, finished = read_base_eval(self.out_dir), True
            else:
                base, finished = self._train()
            if not finished:
                # The actor as it stands, deployable and evaluable like the finished run's
                # (the checkpoint alone needed a resume to the end before any model existed).
                raise TrainingInterrupted(
                    self._stop.signum,
                    self.env_steps,
                    config.total_env_steps,
                    self.out_dir / CHECKPOINT_FILE,
                    self._export(ONNX_FILE),
                )
            onnx_path = self._export(ONNX_FILE)
            burn_in = self.learner.agent.burn_in
            base = base or {}
            result = TrainResult(
                out_dir=self.out_dir,
                env_steps=self.env_steps,
                success_rate=self.last_eval[SUCCESS],
                base_success_rate=base.get(SUCCESS),
                onnx_path=onnx_path,
                wall_s=self.wall_s,
                burn_in=burn_in_status(burn_in),
                actor_frozen=burn_in.active,
                mean_return=self.last_eval.get(RETURN),
                base_return=base.get(RETURN),
            )
            returns = {}
            if result.mean_return is not None:
                returns = {RETURN: result.mean_return, 'base/return': result.base_return}
            summary = {
                'env_steps': result.env_steps,
                'eval/success_rate': result.success_rate,
                **returns,
                'base/success_rate': result.base_success_rate,
                'wall_s': round(result.wall_s, 3),
                'updates': self.learner.agent.updates,
                'update_precision': self.learner.agent.update_precision,
                'burn_in_ended_by': burn_in.ended_by,
                'burn_in_updates': burn_in.updates,
                'actor_frozen': burn_in.active,
                'onnx': onnx_path.name,
            }
            write_summary(self.out_dir, summary, self.best)
        self._stop = StopSignals()
        return result


def _show(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return f'{value:.3g}'


def train(
    config: TrainConfig,
    out_dir: str | pathlib.Path,
    resume: bool = False,
    problem: Problem | None = None,
    progress: bool = True,
    init_from: str | pathlib.Path | None = None,
) -> TrainResult:
    """Train ``config`` into ``out_dir`` (the registered task/controller unless ``problem``),
    a new run's learner starting from the checkpoint ``init_from`` if given.

    Raises:
        RunDirError, CheckpointError, ValueError: See :meth:`Trainer.run` and
            :func:`registered_problem`.
    """
    if problem is None:
        controller = config.controller or None
        problem = registered_problem(config.task, controller, config.controller_params)
    return Trainer(config, problem, out_dir, progress).run(resume, init_from)


__all__: Sequence[str] = (
    'TrainResult',
    'Trainer',
    'burn_in_budget_note',
    'burn_in_status',
    'train',
)
