"""Goal-conditioned task interface (its reward and success: :mod:`rpl_sim_bridge.tasks.rewards`).

A :class:`GoalTask` keeps the physics (``model``, ``data``, :meth:`~GoalTask.simulate`,
:meth:`~GoalTask.observe`) apart from the episode loop (:meth:`~GoalTask.reset`,
:meth:`~GoalTask.step`: counting, truncation, reward, success). Rewards are pure, batched
functions of goals (:mod:`rpl_sim_bridge.tasks.rewards`), so hindsight relabelling never
needs the simulator.
"""

from __future__ import annotations

import abc
import warnings
from typing import Any

import mujoco
import numpy as np

from rpl_sim_bridge.tasks.joints import JointIndex, JointSample
from rpl_sim_bridge.tasks.registry import TaskSpec
from rpl_sim_bridge.tasks.rewards import goal_distance, sparse_reward

ObsDict = dict[str, np.ndarray]
"""``{'observation': (obs_dim,), 'achieved_goal': (goal_dim,), 'desired_goal': (goal_dim,)}``."""


class MujocoWarningError(RuntimeError):
    """MuJoCo reported a simulation warning (unstable or overfull simulation)."""


class MujocoWarning(RuntimeWarning):
    """A MuJoCo simulation warning, issued when a task is set to warn instead of raise."""


class GoalTask(abc.ABC):
    """A goal-conditioned MuJoCo task with the Gymnasium-Robotics GoalEnv step contract.

    Subclasses implement the physics: :meth:`_reset_physics`, :meth:`simulate`,
    :meth:`observe`, :meth:`get_state`, :meth:`set_state`. This class runs the episode:
    action checks, step counting, truncation at ``spec.max_episode_steps``, reward and
    success. Episodes never terminate early (``terminated`` is always False); the success of
    an episode is ``info['is_success']`` of its final step.

    Attributes:
        spec: The task's spec (dims, episode length, threshold, bounds, control period).
        model: ``mujoco.MjModel`` of this task (owned by the task).
        data: ``mujoco.MjData`` of this task (owned by the task).
    """

    spec: TaskSpec
    model: mujoco.MjModel
    data: mujoco.MjData

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self._elapsed_steps: int | None = None  # None until the first reset

    # ----------------------------------------------------------------- physics (subclass)
    @abc.abstractmethod
    def _reset_physics(self, seed: int | None) -> None:
        """Put the simulator in a new initial state and sample a new goal."""

    @abc.abstractmethod
    def simulate(self, action: np.ndarray) -> None:
        """Apply one control step (checked and clipped action) without episode bookkeeping.

        Args:
            action: Action (action_dim,) in [action_low, action_high] (clipped if outside).
        """

    @abc.abstractmethod
    def observe(self) -> ObsDict:
        """Current observation dict (fresh float64 arrays), without stepping."""

    def true_achieved_goal(self, observation: ObsDict) -> np.ndarray:
        """The achieved goal of the current state as the simulator knows it, for the
        observation dict of this step: ``observation['achieved_goal']`` for a task without
        observation noise; a noisy task removes this step's noise. Training-time
        privileged information (``rpl train --set privileged_goal=true``); the task's
        readers, reward and success keep the observed goal."""
        return np.array(observation['achieved_goal'], dtype=np.float64)

    # ------------------------------------------------------- MuJoCo state and warnings
    def _track_mujoco(self) -> None:
        """Set up :meth:`get_state` / :meth:`set_state` and the warning counters of
        :meth:`_check_warnings`; subclasses call it once :attr:`model` and :attr:`data` exist
        (and set ``_warnings_seen`` again after ``mj_resetData``, which zeroes the counts)."""
        self._state_spec = mujoco.mjtState.mjSTATE_INTEGRATION
        self._state_size = mujoco.mj_stateSize(self.model, self._state_spec)
        self._warnings_seen = self.data.warning.number.copy()

    def get_state(self) -> np.ndarray:
        """Full physics state (``mjSTATE_INTEGRATION``: time, qpos, qvel, act, warm start,
        ctrl, applied forces, mocap pos/quat, ...) as a new float64 vector (n,), for
        save/restore by planners. What is not physics (the goal, the step count, a task's
        random generator) is not in it."""
        state = np.empty(self._state_size)
        mujoco.mj_getState(self.model, self.data, state, self._state_spec)
        return state

    def set_state(self, state: np.ndarray) -> None:
        """Restore a state from :meth:`get_state` and recompute the derived quantities.

        Raises:
            ValueError: ``state`` does not have this task's state size.
        """
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (self._state_size,):
            raise ValueError(
                f'task {self.spec.name!r}: state must have shape ({self._state_size},), '
                f'got {state.shape}'
            )
        mujoco.mj_setState(self.model, self.data, state, self._state_spec)
        mujoco.mj_forward(self.model, self.data)

    def _check_warnings(self, policy: str) -> None:
        """Raise or warn about MuJoCo warnings issued since the last check.

        Args:
            policy: ``'raise'`` (:class:`MujocoWarningError`) or ``'warn'``
                (:class:`MujocoWarning`): the task config's ``mujoco_warnings``.
        """
        counts = self.data.warning.number
        if np.array_equal(counts, self._warnings_seen):
            return
        new = np.flatnonzero(counts > self._warnings_seen)
        self._warnings_seen = counts.copy()
        details = ', '.join(
            f'{mujoco.mjtWarning(int(i)).name} (info {self.data.warning[int(i)].lastinfo})'
            for i in new
        )
        message = (
            f'task {self.spec.name!r}: MuJoCo warning at t = {self.data.time:.3f} s: {details}; '
            'the simulation state is unreliable, call reset()'
        )
        if policy == 'raise':
            raise MujocoWarningError(message)
        warnings.warn(message, MujocoWarning, stacklevel=4)

    def close(self) -> None:
        """Release resources (nothing to release by default)."""
        return None

    def joint_state(self) -> JointSample:
        """The robot's joints now: every hinge and slide joint of :attr:`model` (free joints
        left out) with its MJCF name, position, velocity and actuator effort, (n,) each.

        A pure read of :attr:`model` and :attr:`data` (the episode is not changed); see
        :mod:`rpl_sim_bridge.tasks.joints` for the units and what the effort is.
        """
        index = getattr(self, '_joint_index', None)
        if index is None or index.model is not self.model:
            index = self._joint_index = JointIndex(self.model)
        return index.read(self.data)

    # ---------------------------------------------------------------------- episode loop
    @property
    def elapsed_steps(self) -> int:
        """Steps taken in the current episode (0 right after reset)."""
        return 0 if self._elapsed_steps is None else self._elapsed_steps

    def check_action(self, action: Any) -> np.ndarray:
        """Validate an action and clip it to the spec's bounds.

        Args:
            action: Array-like (action_dim,).

        Returns:
            A float64 copy (action_dim,), clipped to [action_low, action_high].

        Raises:
            ValueError: Wrong shape or non-finite entries (the message shows the action).
        """
        a = np.array(action, dtype=np.float64)  # copy: the caller's array is never changed
        if a.shape != (self.spec.action_dim,):
            raise ValueError(
                f'task {self.spec.name!r}: action must have shape ({self.spec.action_dim},), '
                f'got shape {a.shape}: {action!r}'
            )
        if not np.isfinite(a).all():
            raise ValueError(f'task {self.spec.name!r}: action must be finite, got {a!r}')
        return np.clip(a, self.spec.action_low, self.spec.action_high, out=a)

    def reset(self, seed: int | None = None) -> tuple[ObsDict, dict[str, float]]:
        """Start a new episode.

        Args:
            seed: Seeds the task's random generator (initial block position, goal); the same
                seed gives the same initial observation. None continues the current stream.

        Returns:
            ``(obs, info)`` with ``info = {'is_success': 0/1, 'distance': m}``.
        """
        self._reset_physics(seed)
        self._elapsed_steps = 0
        obs = self._observed()
        return obs, self._goal_info(obs)

    def _observed(self) -> ObsDict:
        """:meth:`observe`, checked against the spec (a plug-in's observe() of another size
        was taken as it came: a wrong result, or a numpy or torch error far from it).

        Raises:
            ValueError: A part missing or of another size than the spec declares.
        """
        obs = self.observe()
        spec = self.spec
        for key, size in (
            ('observation', spec.obs_dim),
            ('achieved_goal', spec.goal_dim),
            ('desired_goal', spec.goal_dim),
        ):
            part = obs.get(key) if isinstance(obs, dict) else None
            shape = getattr(part, 'shape', None)
            if shape != (size,):
                got = 'nothing' if part is None else f'shape {shape}'
                raise ValueError(
                    f'task {spec.name!r}: observe() gave {key!r} of {got}, its spec declares '
                    f'({size},)'
                )
        return obs

    def step(self, action: Any) -> tuple[ObsDict, float, bool, bool, dict[str, float]]:
        """Advance one control step.

        Args:
            action: (action_dim,) in [action_low, action_high]; clipped if outside.

        Returns:
            ``(obs, reward, terminated, truncated, info)``: reward is -1.0 or 0.0 (a
            fixed-goal task: ``spec.transition_reward(obs, clipped action)`` and
            ``is_success`` is ``spec.final_success(obs)``);
            terminated is always False; truncated is True at step ``max_episode_steps``;
            info has ``'is_success'`` (1.0 when the object is within ``distance_threshold``
            of the goal now, else 0.0; equals ``reward + 1``) and ``'distance'`` (m).

        Raises:
            ValueError: Bad action (wrong shape or not finite).
            RuntimeError: ``reset`` was not called, or the episode is already over.
        """
        if self._elapsed_steps is None:
            raise RuntimeError(f'task {self.spec.name!r}: call reset() before step()')
        if self._elapsed_steps >= self.spec.max_episode_steps:
            raise RuntimeError(
                f'task {self.spec.name!r}: the episode was truncated at '
                f'{self.spec.max_episode_steps} steps; call reset() to start a new one'
            )
        self.simulate(action)
        self._elapsed_steps += 1
        obs = self._observed()
        info = self._goal_info(obs)
        truncated = self._elapsed_steps >= self.spec.max_episode_steps
        if self.spec.has_goal:
            reward = info['is_success'] - 1.0
        else:  # a fixed goal: the spec's dense reward of (next obs, executed action)
            executed = self.check_action(action)
            reward = float(self.spec.transition_reward(obs['observation'], executed))
        return obs, reward, False, truncated, info

    def compute_reward(
        self, achieved: np.ndarray, desired: np.ndarray, info: Any = None
    ) -> np.ndarray:
        """Sparse reward of (relabelled) goals, batched, without the simulator.

        Args:
            achieved: Achieved goals (..., goal_dim), m.
            desired: Desired goals (..., goal_dim), m.
            info: Ignored (kept for the GoalEnv signature).

        Returns:
            Rewards (...), float32, ``-(distance > distance_threshold)``.
        """
        return sparse_reward(achieved, desired, self.spec.distance_threshold)

    def fixed_goal_distance(self, observation: np.ndarray) -> float:
        """A fixed-goal task's distance (m) of an observation (obs_dim,) from its goal, for
        ``info['distance']``; NaN unless the task says how."""
        return float('nan')

    def _goal_info(self, obs: ObsDict) -> dict[str, float]:
        if not self.spec.has_goal:
            observation = obs['observation']
            success = float(self.spec.final_success(observation))
            return {'is_success': success, 'distance': self.fixed_goal_distance(observation)}
        distance = float(goal_distance(obs['achieved_goal'], obs['desired_goal']))
        # Success is exactly "reward == 0", so the two never disagree at the threshold.
        success = 0.0 if distance > self.spec.distance_threshold else 1.0
        return {'is_success': success, 'distance': distance}
