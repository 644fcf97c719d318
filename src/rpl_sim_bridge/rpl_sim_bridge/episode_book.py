"""The sim bridge's episodes: the task, the observation payload, the books and the results.

Pure Python + numpy. :class:`EpisodeBook` resets episode ``i`` (0-based) with seed
``seed + i`` (the in-process evaluator's rule), applies one action per step (clipped to
the task's bounds), books where it came from and the reward, and when the episode ends
returns its :class:`rpl_interfaces.contract.EpisodeResult` with the terminal observation
o_T: the observation the episode ended in, published with step ``T`` (the steps run) and
no action expected for it. After ``episodes`` episodes (if not 0) the run is finished.
With ``joint_states`` on, it also reads the task's joints (``task.joint_state()``) once
after every reset and step, for the bridge's ``joint_states`` topic.
When to step, and with which action, is :class:`rpl_sim_bridge.bridge.SimBridge`'s.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from rpl_interfaces.contract import (
    EpisodeResult,
    ObservationLayout,
    observation_fields,
    split_observation_fields,
)
from rpl_sim_bridge.action_intake import Source

if TYPE_CHECKING:
    from rpl_sim_bridge.tasks.joints import JointSample


class GoalTaskLike(Protocol):
    """What the bridge needs of a task (see ``rpl_sim_bridge.tasks.GoalTask``)."""

    def reset(self, seed: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]: ...

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]: ...


class TaskSpecLike(Protocol):
    """The fields of ``rpl_sim_bridge.tasks.TaskSpec`` the bridge reads."""

    name: str
    obs_dim: int
    goal_dim: int
    action_dim: int
    max_episode_steps: int
    obs_fields: tuple[str, ...]
    goal_fields: tuple[str, ...]
    action_low: float
    action_high: float
    action_fields: tuple[str, ...]


def observation_layout(spec: TaskSpecLike) -> ObservationLayout:
    """Payload layout of the ``observation`` topic for one task.

    Payload = the task's ``obs_fields``, then ``achieved_goal.<g>`` and ``desired_goal.<g>``
    for each of its ``goal_fields`` (Fetch: x, y, z; block position and goal, m, world
    frame; none for a fixed-goal task); see :func:`rpl_interfaces.contract.observation_fields`.
    """
    return split_observation_fields(observation_fields(spec.obs_fields, spec.goal_fields))


@dataclasses.dataclass
class Counters:
    """Running totals over the whole run (reported on /diagnostics)."""

    steps: int = 0
    episodes: int = 0
    commands: int = 0
    held: int = 0
    fallback_base: int = 0
    fallback_zero: int = 0
    rejected_malformed: int = 0
    rejected_stale: int = 0
    behind_base: int = 0  # of those, base actions for a step already past (a slow sender)
    late_base: int = 0
    handshake_resends: int = 0
    response_timeouts: int = 0  # lockstep: a node on the graph missed response_timeout_s
    resends: int = 0  # lockstep, after the handshake: observations re-sent while waiting
    late_commands: int = 0  # commands for a step already taken (e.g. answers to a re-send)
    terminal_answers: int = 0  # commands or base actions for a terminal observation (unused)


class EpisodeEnd(NamedTuple):
    """How an episode ended.

    Attributes:
        result: Its result (``steps`` = T).
        terminal: The terminal observation o_T's payload, (len(layout.fields),) float64,
            a copy: published with step T before the result.
        terminal_joints: The joints in o_T's state, or None (joint states off, or a task
            without ``joint_state()``).
    """

    result: EpisodeResult
    terminal: np.ndarray
    terminal_joints: JointSample | None = None


class EpisodeBook:
    """Runs the episodes of one task and keeps their books.

    Args:
        task: A fresh task instance (reset by :meth:`reset`).
        spec: Its spec (observation and goal names, episode length, action bounds).
        seed: Episode ``i`` is reset with ``seed + i``.
        episodes: Episodes to run; 0 = forever.
        counters: Run totals, updated on every step.
        joint_states: Read ``task.joint_state()`` after every reset and step (kept in
            :attr:`joints`); ignored for a task without that method.

    Attributes:
        joints: The joints of the latest observation's state, or None (not read).
    """

    def __init__(
        self,
        task: GoalTaskLike,
        spec: TaskSpecLike,
        seed: int,
        episodes: int,
        counters: Counters,
        joint_states: bool = False,
    ) -> None:
        self.task, self.spec = task, spec
        self.layout = observation_layout(spec)
        self._seed, self._episodes = seed, episodes
        self._counters = counters
        self._action = np.zeros(spec.action_dim)  # the applied (clipped) action
        self._obs = np.zeros(len(self.layout.fields))  # the latest observation payload
        self.episode = 0
        self.step = 0
        self.finished = False
        self.terminal_key = (-1, -1)  # (episode, step) of the latest terminal observation
        self._return = 0.0
        self._fallback_base = 0
        self._fallback_zero = 0
        self._read_joints = getattr(task, 'joint_state', None) if joint_states else None
        self.joints: JointSample | None = None

    def episode_seed(self, episode: int) -> int:
        """Reset seed of episode ``episode``: ``seed + episode``."""
        return self._seed + episode

    def observation(self) -> np.ndarray:
        """Payload of the latest observation, (len(layout.fields),) float64, a copy."""
        return self._obs.copy()

    def already_taken(self, episode: int, step: int) -> bool:
        """(episode, step) is a step already simulated."""
        return episode < self.episode or (episode == self.episode and step < self.step)

    def reset(self, episode: int) -> None:
        """Start episode ``episode`` (its step 0 observation becomes the latest)."""
        obs, _ = self.task.reset(seed=self.episode_seed(episode))
        self.episode, self.step = episode, 0
        self._return = 0.0
        self._fallback_base = self._fallback_zero = 0
        self._fill(obs)
        if self._read_joints is not None:
            self.joints = self._read_joints()

    def apply(self, action: np.ndarray, source: Source) -> EpisodeEnd | None:
        """Step the task with ``action`` (clipped to the spec's bounds) and book the step.

        Args:
            action: (action_dim,), not modified.
            source: Where it came from (counted; BASE and ZERO are fallbacks).

        Returns:
            None while the episode runs (the next observation is the latest), else its end.

        Raises:
            RuntimeError: Called after the run finished.
        """
        if self.finished:
            raise RuntimeError('apply() called after the last episode finished')
        spec, counters = self.spec, self._counters
        np.clip(action, spec.action_low, spec.action_high, out=self._action)
        obs, reward, terminated, truncated, info = self.task.step(self._action)
        counters.steps += 1
        if source is Source.COMMAND:
            counters.commands += 1
        elif source is Source.HELD:
            counters.held += 1
        elif source is Source.BASE:
            counters.fallback_base += 1
            self._fallback_base += 1
        else:
            counters.fallback_zero += 1
            self._fallback_zero += 1
        self._return += float(reward)
        self.step += 1
        self._fill(obs)
        if self._read_joints is not None:
            self.joints = self._read_joints()
        if not (terminated or truncated or self.step >= spec.max_episode_steps):
            return None
        self.terminal_key = (self.episode, self.step)
        result = EpisodeResult(
            episode=self.episode,
            success=bool(info['is_success']),
            final_distance=float(info['distance']),
            episode_return=self._return,
            steps=self.step,
            fallback_base=self._fallback_base,
            fallback_zero=self._fallback_zero,
        )
        counters.episodes += 1
        if self._episodes and counters.episodes >= self._episodes:
            self.finished = True
        return EpisodeEnd(result, self._obs.copy(), self.joints)

    def _fill(self, obs: dict[str, np.ndarray]) -> None:
        """Write a task observation dict into the payload (a part without fields is skipped:
        a fixed-goal task has no goal parts)."""
        for part in ('observation', 'achieved_goal', 'desired_goal'):
            where = getattr(self.layout, part)
            if where.stop > where.start:
                self._obs[where] = obs[part]
