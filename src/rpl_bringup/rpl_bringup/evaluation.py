"""In-process evaluation: run a task with a base controller (and optional residual) for N episodes.

No ROS: the same task, controller and residual code the nodes run, called directly in one
loop, so that a success rate takes seconds instead of a launched stack.

Seeds: episode ``i`` (0-based) is reset with ``seed + i``. A ROS run that resets its
episodes with the same seeds (the sim bridge's ``seed`` parameter counts up the same way)
therefore sees the same initial block positions and goals, and its results can be compared
episode by episode with these.

A model is checked against what it says it is (:func:`check_model_identity`): one made for
other field names than the task's is refused, one made for another task or controller too
unless ``allow_model_mismatch``; one that says nothing runs, with a warning line.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np
from tqdm import tqdm

from rpl_base_controllers.base import (  # ControllerFailure: what rpl eval reports
    BaseController,
    ControllerFailure,  # noqa: F401
    checked_action,
    checked_reset,
)
from rpl_base_controllers.registry import make_controller, stated_params
from rpl_sim_bridge.tasks import GoalTask, make_task

# policy(observation (obs_dim,), desired_goal (goal_dim,), base_action (action_dim,)) -> command.
Policy = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclasses.dataclass
class EvalResult:
    """Outcome of :func:`evaluate`.

    Attributes:
        task: Task name.
        controller: Base controller name.
        model: Label of the residual policy (e.g. the ONNX file name), None for the base alone.
        episodes: Number of episodes run.
        seed: Seed of episode 0 (episode ``i`` used ``seed + i``).
        successes: Per episode: object within the task's threshold at the last step.
        final_distances: Per episode: object-goal distance at the last step, m.
        returns: Per episode: sum of the rewards (a goal task's sparse ones: -T .. 0; a
            fixed-goal task's dense ones, e.g. mbrl_pusher's).
        success_rate: Fraction of successful episodes.
        ci95: Wilson 95% interval of the success rate (low, high).
        mean_final_distance: Mean of ``final_distances``, m.
        wall_s: Wall time of the whole evaluation, s.
        base_outside_bounds: Steps whose base action was outside the task's action bounds
            (the task clips it: a controller in the wrong units shows here).
        residual_beyond_scale: Steps whose residual went beyond the scale its model states
            (the base action ran there, as in the residual node: a mislabelled file).
    """

    task: str
    controller: str
    model: str | None
    episodes: int
    seed: int
    successes: list[bool]
    final_distances: list[float]
    returns: list[float]
    success_rate: float
    ci95: tuple[float, float]
    mean_final_distance: float
    wall_s: float
    base_outside_bounds: int = 0
    residual_beyond_scale: int = 0

    @property
    def mean_return(self) -> float:
        """Mean of ``returns`` (NaN for no episodes)."""
        return float(np.mean(self.returns)) if self.returns else float('nan')

    def to_json(self) -> dict[str, Any]:
        """Plain dict of all fields (lists and floats only) and ``mean_return`` (the figure
        a fixed-goal task's results are; the monitor's and bag eval's files have it too),
        ready for ``json.dump`` (NaN written ``null`` by ``output_files.json_bytes``)."""
        record = dataclasses.asdict(self)
        record['ci95'] = list(self.ci95)
        record['mean_return'] = self.mean_return
        return record


class EpisodeProgress:
    """Progress of an evaluation: a tqdm bar on a terminal; elsewhere (a log, a pipe, CI)
    one line per tenth of the episodes, so a redirected run is readable.

    Args:
        label: What runs, e.g. ``slippery_push/reactive_push``.
        episodes: Episodes in all.
        enabled: False shows nothing.
        stream: Where it goes (default ``sys.stderr``).
    """

    def __init__(
        self, label: str, episodes: int, enabled: bool, stream: TextIO | None = None
    ) -> None:
        self.label, self.episodes = label, episodes
        self.stream = stream if stream is not None else sys.stderr
        tty = enabled and self.stream.isatty()
        self._lines = enabled and not tty
        # No tqdm object at all off a terminal: its first one creates a multiprocessing lock,
        # which an evaluation worker ended by Pool.terminate would leave behind (reported by
        # the resource tracker as a leaked semaphore).
        self._bar = (
            tqdm(total=episodes, desc=label, unit='ep', leave=False, file=self.stream)
            if tty
            else None
        )
        self._done = 0
        self._every = max(1, math.ceil(episodes / 10))

    def update(self, episodes: int, success_rate: float) -> None:
        """``episodes`` more are done; the success rate over all done so far."""
        before, self._done = self._done, self._done + episodes
        if self._bar is not None:
            self._bar.update(episodes)
            self._bar.set_postfix(success=f'{success_rate:.3f}', refresh=False)
        if self._lines and (
            self._done // self._every > before // self._every or self._done == self.episodes
        ):
            print(
                f'{self.label}: {self._done}/{self.episodes} episodes, success {success_rate:.3f}',
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        """Remove the bar (the lines stay)."""
        if self._bar is not None:
            self._bar.close()


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion.

    Args:
        successes: Number of successes, 0 <= successes <= n.
        n: Number of trials; 0 gives the uninformative (0, 1).
        z: Standard-normal quantile (1.96 for 95%).

    Returns:
        (low, high), both within [0, 1].

    Raises:
        ValueError: ``n`` negative or ``successes`` outside [0, n].
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f'wilson_interval needs 0 <= successes <= n, got {successes} of {n}')
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def evaluate(
    task: str | GoalTask,
    controller: str | BaseController,
    episodes: int,
    seed: int,
    policy: Policy | None = None,
    progress: bool = True,
    model: str | None = None,
    controller_params: dict[str, Any] | None = None,
) -> EvalResult:
    """Run full episodes and collect success, final distance and return.

    Each step: ``base = controller(observation, desired_goal)``; the command is
    ``policy(observation, desired_goal, base)`` if a policy is given, else ``base``.
    Episode ``i`` is reset with seed ``seed + i`` and runs to the task's truncation
    (``max_episode_steps``); success is ``info['is_success']`` of the last step.

    Args:
        task: Registered task name, or an already built task (e.g. with changed physics).
        controller: Registered controller name (built for ``task``), or a controller.
        episodes: Number of episodes, >= 1.
        seed: Seed of episode 0.
        policy: Optional residual policy; its ``reset()`` is called per episode if it has one.
        progress: Show a tqdm progress bar on stderr.
        model: Label of the policy for the result; default: the file name of
            ``policy.actor.path`` if there is one, else the policy's type name.
        controller_params: Parameters of a controller given by name (``carry_gain``).

    Returns:
        The per-episode outcomes and their summary.

    Raises:
        ValueError: ``episodes`` < 1, unknown task or controller, controller unsuited to
            the task.
    """
    if episodes < 1:
        raise ValueError(f'episodes must be at least 1, got {episodes}')
    env = make_task(task) if isinstance(task, str) else task
    task_name = env.spec.name
    if isinstance(controller, str):
        controller = make_controller(controller, task=task_name, **(controller_params or {}))
    if policy is not None and model is None:
        model = _policy_label(policy)
    successes: list[bool] = []
    final_distances: list[float] = []
    returns: list[float] = []
    outside = beyond = 0
    start = time.perf_counter()
    bar = EpisodeProgress(f'{task_name}/{controller.name}', episodes, progress)
    for episode in range(episodes):
        success, distance, episode_return, out, over = _run_episode(
            env, controller, policy, seed + episode
        )
        successes.append(success)
        final_distances.append(distance)
        returns.append(episode_return)
        outside += out
        beyond += over
        bar.update(1, float(np.mean(successes)))
    bar.close()
    return _result(
        task_name,
        controller.name,
        model,
        seed,
        successes,
        final_distances,
        returns,
        time.perf_counter() - start,
        outside,
        beyond,
    )


def evaluate_parallel(
    task: str,
    controller: str,
    episodes: int,
    seed: int,
    model_path: str | None = None,
    workers: int = 2,
    progress: bool = True,
    chunk: int = 10,
    controller_params: dict[str, Any] | None = None,
    allow_model_mismatch: bool = False,
) -> EvalResult:
    """:func:`evaluate` with the episodes spread over ``workers`` processes.

    Every episode resets the task, the controller and the policy with its own seed
    (``seed + i``), so the result is the same, episode by episode, as one process running
    them in order; only the wall time differs. Worth it for slow controllers
    (``discrete_mpc_push`` plans for ~70 ms per step). Each process builds its own task,
    controller and ONNX session (sessions do not cross processes), per chunk of ``chunk``
    consecutive episodes; the progress bar advances per finished chunk.

    Args:
        task: Registered task name.
        controller: Registered controller name.
        episodes: Number of episodes, >= 1.
        seed: Seed of episode 0.
        model_path: Residual ONNX actor, None for the base controller alone.
        workers: Processes, >= 1.
        progress: Show a tqdm progress bar on stderr.
        chunk: Episodes per unit of work, >= 1.
        controller_params: Parameters of the controller (``carry_gain``).
        allow_model_mismatch: Run a model made for another task or controller.

    Returns:
        The per-episode outcomes (in episode order) and their summary.

    Raises:
        ValueError: Bad counts, unknown task or controller, unusable model.
    """
    if episodes < 1 or workers < 1 or chunk < 1:
        raise ValueError(
            f'episodes, workers and chunk must be at least 1, got {episodes}, {workers}, {chunk}'
        )
    chunk = min(chunk, math.ceil(episodes / workers))
    starts = list(range(0, episodes, chunk))
    jobs = [
        (
            s,
            {
                'task': task,
                'controller': controller,
                'episodes': min(chunk, episodes - s),
                'seed': seed + s,
                'model_path': model_path,
                'controller_params': controller_params,
                'allow_model_mismatch': allow_model_mismatch,
            },
        )
        for s in starts
    ]
    parts: dict[int, EvalResult] = {}
    start = time.perf_counter()
    context = multiprocessing.get_context('spawn')  # no forked MuJoCo / ONNX state
    bar = EpisodeProgress(f'{task}/{controller}', episodes, progress)
    pool = context.Pool(workers, initializer=_exit_with_parent, initargs=(os.getpid(),))
    try:
        for s, part in pool.imap_unordered(_evaluate_chunk, jobs):
            # (a worker's ValueError is raised by the iteration, unchanged)
            parts[s] = part
            done = parts.values()
            rate = sum(sum(r.successes) for r in done) / sum(r.episodes for r in done)
            bar.update(part.episodes, rate)
    finally:
        # Done, or stopped by an exception (a worker's error, Ctrl-C): the workers end at
        # once, and are waited for. A parent killed outright leaves them to their parent
        # watch (_exit_with_parent).
        pool.terminate()
        pool.join()
    bar.close()
    ordered = [parts[s] for s in starts]
    first = ordered[0]
    return _result(
        first.task,
        first.controller,
        first.model,
        seed,
        [x for r in ordered for x in r.successes],
        [x for r in ordered for x in r.final_distances],
        [x for r in ordered for x in r.returns],
        time.perf_counter() - start,
        sum(r.base_outside_bounds for r in ordered),
        sum(r.residual_beyond_scale for r in ordered),
    )


PARENT_WATCH_PERIOD_S = 0.5  # how often an evaluation worker checks that its parent lives


def _exit_with_parent(parent: int) -> None:
    """Evaluation worker initializer: end this worker within :data:`PARENT_WATCH_PERIOD_S`
    once the process that started it is gone (killed by SIGTERM or SIGKILL, which run no
    cleanup), so that no worker keeps evaluating, or waiting, orphaned.

    Ctrl-C reaches every process of the terminal's group; a worker ignores it and is ended
    by its parent (``Pool.terminate``), which handles it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_WATCH_PERIOD_S)
        os._exit(1)

    threading.Thread(target=watch, name='parent-watch', daemon=True).start()


def _evaluate_chunk(job: tuple[int, dict[str, Any]]) -> tuple[int, EvalResult]:
    """One unit of :func:`evaluate_parallel`: (first episode index, its result)."""
    first, arguments = job
    return first, evaluate_model(**arguments)


def task_residual_config(spec: Any) -> Any:
    """The residual mixing rule of the stack of ``spec``'s task: the node's defaults with
    the commands clipped to the task's action bounds (as the sim bridge applies them and the
    trainer composes them; e.g. mbrl_pusher's torques in [-2, 2] N m, not the Fetch +-1) and
    the residual limited to the bounds' range (full override, as the trainer composes it).

    Args:
        spec: The task's :class:`rpl_sim_bridge.tasks.registry.TaskSpec`.

    Returns:
        A :class:`rpl_residual_node.mixing.ResidualConfig`.
    """
    from rpl_residual_node.mixing import ResidualConfig, full_override_limit

    return ResidualConfig(
        residual_limit=full_override_limit(spec.action_low, spec.action_high),
        action_low=spec.action_low,
        action_high=spec.action_high,
    )


def evaluate_model(
    task: str,
    controller: str,
    episodes: int,
    seed: int,
    model_path: str | None = None,
    progress: bool = False,
    controller_params: dict[str, Any] | None = None,
    allow_model_mismatch: bool = False,
) -> EvalResult:
    """:func:`evaluate` of a base controller plus the residual ONNX actor at ``model_path``
    (None: the base alone), built here for the task's sizes. Module level, so that
    :func:`evaluate_parallel`'s worker processes can run it.

    Raises:
        ValueError: Unknown task or controller, unusable model.
    """
    policy = None
    if model_path is not None:
        policy = load_residual_policy(task, controller, model_path, allow_model_mismatch)
    return evaluate(
        task,
        controller,
        episodes,
        seed,
        policy=policy,
        progress=progress,
        controller_params=controller_params,
    )


def load_residual_policy(
    task: str,
    controller: str,
    model_path: str,
    allow_model_mismatch: bool = False,
    override: str | None = '--allow-model-mismatch',
) -> Any:
    """The residual ONNX actor at ``model_path`` as the stack of ``task`` mixes it (a
    :class:`rpl_residual_node.policy.ResidualPolicy`), checked against ``task`` and
    ``controller`` (:func:`check_model_identity`'s rule).

    Args:
        override: The option that runs a model of another task or controller anyway, named
            in the refusal (None: the command has none).

    Raises:
        ValueError: One line: an unusable model, or one made for another stack.
    """
    from rpl_residual_node.policy import ResidualPolicy
    from rpl_sim_bridge.tasks import task_spec

    spec = task_spec(task)
    try:
        policy = ResidualPolicy.from_file(
            model_path,
            task_residual_config(spec),
            obs_dim=spec.obs_dim,
            goal_dim=spec.goal_dim,
            action_dim=spec.action_dim,
        )
    except ValueError as exc:  # sizes of another task: say the task it states, if any
        made_for = _stated_task(model_path)
        if made_for is not None and made_for != task:
            raise ValueError(
                f'{exc} (it states it was made for task {made_for!r}, this is {task!r})'
            ) from None
        raise
    check_identity_of(
        policy, task, controller, model_path, allow_model_mismatch, override=override
    )
    return policy


def _stated_task(model_path: str) -> str | None:
    """The task a model file's metadata names, or None (unreadable, or it does not say)."""
    from rpl_residual_node.onnx_actor import OnnxActor

    try:
        return OnnxActor.load(model_path).identity.task
    except (ValueError, OSError):
        return None


def check_model_identity(
    task: str,
    controller: str,
    model_path: str,
    allow_model_mismatch: bool = False,
    controller_params: dict[str, Any] | None = None,
) -> list[str]:
    """Load the model at ``model_path`` and check it against ``task`` and ``controller``
    (with ``controller_params``, if given: the model's stated base parameters are compared
    with them, a difference is a warning).

    The fields compared are those the sim bridge publishes for the task (the in-process
    run feeds the model the same values); the rule is
    :func:`rpl_residual_node.model_identity.check_identity`.

    Returns:
        Lines to warn with: what the model does not state (so cannot be checked), and the
        differences ``allow_model_mismatch`` let through.

    Raises:
        ValueError: One line: an unusable model, other field names, or (without
            ``allow_model_mismatch``) another task or controller.
    """
    from rpl_residual_node.policy import ResidualPolicy
    from rpl_sim_bridge.tasks import task_spec

    spec = task_spec(task)
    policy = ResidualPolicy.from_file(
        model_path, obs_dim=spec.obs_dim, goal_dim=spec.goal_dim, action_dim=spec.action_dim
    )
    return check_identity_of(
        policy, task, controller, model_path, allow_model_mismatch, controller_params
    )


def check_identity_of(
    policy: Any,
    task: str,
    controller: str,
    model_path: str,
    allow_model_mismatch: bool,
    controller_params: dict[str, Any] | None = None,
    override: str | None = '--allow-model-mismatch',
) -> list[str]:
    """:func:`check_model_identity` of an already loaded ``ResidualPolicy``; ``override``
    as for :func:`load_residual_policy`."""
    from rpl_residual_node.model_identity import (
        MismatchError,
        StackIdentity,
        check_identity,
        clamp_warning,
    )
    from rpl_sim_bridge.bridge import observation_layout
    from rpl_sim_bridge.tasks import task_spec

    spec = task_spec(task)
    actions = tuple(spec.action_fields)  # as the task declares them
    stack = StackIdentity.of_task(spec, controller, observation_layout(spec).fields, actions)
    if controller_params is not None:
        stated = stated_params(controller, controller_params)
        stack = dataclasses.replace(stack, controller_params=stated)
    identity = policy.actor.identity
    try:
        allowed = check_identity(identity, stack, allow_model_mismatch)
    except MismatchError as exc:
        hint = f' ({override} runs it anyway)' if exc.overridable and override else ''
        raise ValueError(
            f'model {model_path} does not fit {task} / {controller}: {exc}{hint}'
        ) from None
    warnings = [f'model {model_path} runs although {difference}' for difference in allowed]
    # rpl eval mixes with the task's stack settings: the fix is the stack's parameter.
    clamped = clamp_warning(
        identity,
        task_residual_config(spec).residual_limit,
        "in the stack, the residual node's residual_limit:=",
    )
    if clamped:  # in-process evaluation mixes as the task's stack does
        warnings.append(f'model {model_path}: {clamped}')
    unstated = identity.unstated_warning(model_path, 'the task and controller')
    if unstated:
        warnings.append(unstated)
    return warnings


def _result(
    task: str,
    controller: str,
    model: str | None,
    seed: int,
    successes: list[bool],
    final_distances: list[float],
    returns: list[float],
    wall_s: float,
    base_outside_bounds: int = 0,
    residual_beyond_scale: int = 0,
) -> EvalResult:
    """An :class:`EvalResult` with its summary fields computed from the episode lists."""
    episodes = len(successes)
    n_success = int(sum(successes))
    return EvalResult(
        task=task,
        controller=controller,
        model=model,
        episodes=episodes,
        seed=seed,
        successes=successes,
        final_distances=final_distances,
        returns=returns,
        success_rate=n_success / episodes,
        ci95=wilson_interval(n_success, episodes),
        mean_final_distance=float(np.mean(final_distances)),
        wall_s=wall_s,
        base_outside_bounds=base_outside_bounds,
        residual_beyond_scale=residual_beyond_scale,
    )


def base_action(
    controller: BaseController,
    observation: np.ndarray,
    goal: np.ndarray,
    size: int,
    seed: int,
    step: int,
) -> np.ndarray:
    """``controller(observation, goal)``, checked (:func:`checked_action`); ``seed`` (the
    episode's reset seed) and ``step`` say where, in the message of a ControllerFailure."""
    return checked_action(controller, observation, goal, size, f'episode seed {seed}, step {step}')


def _run_episode(
    env: GoalTask, controller: BaseController, policy: Policy | None, seed: int
) -> tuple[bool, float, float, int, int]:
    """One episode to truncation; returns (success, final distance m, return, steps whose
    base action was outside the task's action bounds, steps whose residual went beyond its
    model's stated scale).

    Raises:
        ControllerFailure: See :func:`base_action`.
    """
    obs, info = env.reset(seed=seed)
    checked_reset(controller, f'episode seed {seed}')
    if policy is not None and hasattr(policy, 'reset'):
        policy.reset()
    episode_return = 0.0
    truncated = terminated = False
    step = outside = beyond = 0
    low, high = env.spec.action_low, env.spec.action_high
    while not (truncated or terminated):
        observation, goal = obs['observation'], obs['desired_goal']
        command = base_action(controller, observation, goal, env.spec.action_dim, seed, step)
        outside += bool(command.min() < low or command.max() > high)
        step += 1
        if policy is not None:
            command = policy(observation, goal, command)
            beyond += int(np.any(getattr(policy, 'last_beyond_scale', False)))
        obs, reward, terminated, truncated, info = env.step(command)
        episode_return += float(reward)
    success, distance = bool(info['is_success']), float(info['distance'])
    return success, distance, episode_return, outside, beyond


def _policy_label(policy: Any) -> str:
    path = getattr(getattr(policy, 'actor', None), 'path', None)
    if isinstance(path, str):
        return os.path.basename(path)
    return type(policy).__name__
