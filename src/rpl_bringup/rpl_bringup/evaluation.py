"""In-process evaluation: run a task with a base controller (and optional residual) for N episodes.

No ROS: the same task, controller and residual code the nodes run, called directly in one
loop, so that a success rate takes seconds instead of a launched stack.

Seeds: episode ``i`` (0-based) is reset with ``seed + i``. A ROS run that resets its
episodes with the same seeds (the sim bridge's ``seed`` parameter counts up the same way)
therefore sees the same initial block positions and goals, and its results can be compared
episode by episode with these.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm import tqdm

from rpl_base_controllers.base import BaseController
from rpl_base_controllers.registry import make_controller
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
        returns: Per episode: sum of the sparse rewards (-T .. 0).
        success_rate: Fraction of successful episodes.
        ci95: Wilson 95% interval of the success rate (low, high).
        mean_final_distance: Mean of ``final_distances``, m.
        wall_s: Wall time of the whole evaluation, s.
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

    def to_json(self) -> dict[str, Any]:
        """Plain dict of all fields (lists and floats only), ready for ``json.dump``."""
        record = dataclasses.asdict(self)
        record['ci95'] = list(self.ci95)
        return record


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
        controller = make_controller(controller, task=task_name)
    if policy is not None and model is None:
        model = _policy_label(policy)
    successes: list[bool] = []
    final_distances: list[float] = []
    returns: list[float] = []
    start = time.perf_counter()
    bar = tqdm(
        range(episodes),
        desc=f'{task_name}/{controller.name}',
        unit='ep',
        disable=not progress,
        leave=False,
    )
    for episode in bar:
        success, distance, episode_return = _run_episode(env, controller, policy, seed + episode)
        successes.append(success)
        final_distances.append(distance)
        returns.append(episode_return)
        bar.set_postfix(success=f'{np.mean(successes):.3f}', refresh=False)
    bar.close()
    wall_s = time.perf_counter() - start
    n_success = int(sum(successes))
    return EvalResult(
        task=task_name,
        controller=controller.name,
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
    )


def _run_episode(
    env: GoalTask, controller: BaseController, policy: Policy | None, seed: int
) -> tuple[bool, float, float]:
    """One episode to truncation; returns (success, final distance m, return)."""
    obs, info = env.reset(seed=seed)
    controller.reset()
    if policy is not None and hasattr(policy, 'reset'):
        policy.reset()
    episode_return = 0.0
    truncated = terminated = False
    while not (truncated or terminated):
        observation, goal = obs['observation'], obs['desired_goal']
        command = controller(observation, goal)
        if policy is not None:
            command = policy(observation, goal, command)
        obs, reward, terminated, truncated, info = env.step(command)
        episode_return += float(reward)
    return bool(info['is_success']), float(info['distance']), episode_return


def _policy_label(policy: Any) -> str:
    path = getattr(getattr(policy, 'actor', None), 'path', None)
    if isinstance(path, str):
        return os.path.basename(path)
    return type(policy).__name__
