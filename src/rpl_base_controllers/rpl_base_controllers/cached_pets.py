"""CachedPETS: the actions PETS chose at states it visited, looked up by nearest neighbour.

The RPL paper's fast stand-in for PETS on MBRLPusher: PETS is run on-policy and its action
stored at each visited state (``tools/train_pets.py cache`` stores 500); at run time the
controller returns the stored action of the cached state nearest to the observation
(Euclidean distance over the raw observation). Brute force: one ``(B, N)`` distance matrix,
``N <= 1000`` in practice. Numpy only; stateless (a pure function of the observation).

``neighbours`` > 1 (not in the paper) blends the actions of the k nearest states instead,
weighted by ``1/d_i - 1/d_(k+1)`` (d: distances in increasing order): a state entering or
leaving the k nearest has weight 0 there, so the action is a continuous function of the
observation where the nearest neighbour's jumps at every boundary between cached states.

Cache file (``.npz``, :data:`CACHE_VERSION`): ``states (N, D)``, ``actions (N, A)``,
``version``, ``command`` (what made it).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from rpl_base_controllers.pets import (
    ModelFileError,
    _check_version,
    _open_npz,
    check_data_file,
    check_fixed_goal_batch,
    default_data_file,
)
from rpl_interfaces.params import describe

CACHE_VERSION = 1
"""Layout version of the cache file this module reads."""
DEFAULT_CACHE_FILE = 'cached_pets_pusher_v2.npz'
"""The shipped cache of the mbrl_pusher task (in ``rpl_base_controllers/data``): 500 states
of the 15,000-step PETS ensemble (``results/pets_v2``) planning at horizon 25, the paper's
setting. ``cached_pets_pusher_v1.npz`` beside it, the cache of the first ensemble (12,750
steps, under-trained) at horizon 10, was the default until stop 26; name it by path to
reproduce the results made with it."""


@dataclasses.dataclass(frozen=True)
class CachedPETSConfig:
    """The cache file and how much of it to use."""

    cache_file: str = dataclasses.field(
        default='',
        metadata=describe(
            f"cache .npz of PETS's states and actions ('' = the shipped {DEFAULT_CACHE_FILE}); "
            'made by tools/train_pets.py cache'
        ),
    )
    cache_size: int = dataclasses.field(
        default=0,
        metadata=describe('use the first k cached entries (0 = all)', range=(0, 10_000_000)),
    )
    neighbours: int = dataclasses.field(
        default=1,
        metadata=describe(
            'cached actions blended per step (1 = the nearest one, the paper; k > 1: the k '
            'nearest, weighted so the action is continuous in the observation)',
            range=(1, 1000),
        ),
    )

    def __post_init__(self) -> None:
        check_data_file('cache_file', self.cache_file)
        if self.cache_file or self.cache_size or self.neighbours > 1:  # what a launch sets
            # The file's content against the settings, before any node starts (the
            # controller node found it, after a respawn, once the stack ran).
            states, _, _ = load_cache(self.cache_path)
            check_neighbours(self, len(states))

    @property
    def cache_path(self) -> str:
        """The cache file used: ``cache_file``, or the shipped one."""
        return self.cache_file or default_data_file(DEFAULT_CACHE_FILE)


def check_neighbours(config: CachedPETSConfig, entries: int) -> None:
    """Refuse a blend of more neighbours than the cache (its first ``cache_size``) holds.

    Raises:
        ValueError: One line naming the settings and the file.
    """
    used = min(entries, config.cache_size) if config.cache_size else entries
    if config.neighbours > 1 and config.neighbours >= used:
        size = f' (cache_size {config.cache_size})' if config.cache_size else ''
        raise ValueError(
            f'cached_pets: neighbours {config.neighbours} needs a cache of more than '
            f'{config.neighbours} entries, {config.cache_path} gives {used}{size}'
        )


def load_cache(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, str]:
    """Read a cache file: ``states (N, D)`` float64, ``actions (N, A)`` float64, command.

    Raises:
        ModelFileError: Missing, unreadable, another version, missing entries, shapes that
            do not fit, no entries or non-finite values (one line naming the file).
    """
    with _open_npz(path, 'CachedPETS cache') as data:
        _check_version(path, data, CACHE_VERSION, 'CachedPETS cache')
        states = np.asarray(data['states'], np.float64)  # a missing entry: one line
        actions = np.asarray(data['actions'], np.float64)
        command = str(data['command'])
    if states.ndim != 2 or actions.ndim != 2 or len(states) != len(actions) or not len(states):
        raise ModelFileError(
            f'CachedPETS cache {path}: states {states.shape} and actions {actions.shape} must '
            'be (N, obs_dim) and (N, action_dim) with N >= 1'
        )
    if not (np.all(np.isfinite(states)) and np.all(np.isfinite(actions))):
        raise ModelFileError(f'CachedPETS cache {path}: contains NaN or inf')
    return states, actions, command


class CachedPETS:
    """Nearest-neighbour lookup of PETS's cached actions (or a blend of the k nearest).

    Args:
        config: Cache file and size.
        name: Registry name.
        obs_dim: Required observation size, or None to take the cache's.
        action_dim: Required action size, or None to take the cache's.
    """

    def __init__(
        self,
        config: CachedPETSConfig,
        name: str = 'cached_pets',
        obs_dim: int | None = None,
        action_dim: int | None = None,
    ) -> None:
        path = config.cache_path
        states, actions, self.command = load_cache(path)
        if (obs_dim, action_dim) != (None, None) and (
            (obs_dim or states.shape[1], action_dim or actions.shape[1])
            != (states.shape[1], actions.shape[1])
        ):
            raise ModelFileError(
                f'CachedPETS cache {path}: states of size {states.shape[1]} and actions of '
                f'size {actions.shape[1]}, the task needs {obs_dim} and {action_dim}'
            )
        check_neighbours(config, len(states))
        if config.cache_size:
            states, actions = states[: config.cache_size], actions[: config.cache_size]
        self.neighbours = config.neighbours
        self.name = name
        self.states, self.actions = states, actions
        self._sq_norms = np.einsum('nd,nd->n', states, states)  # (N,)

    def reset(self) -> None:
        """Nothing to reset (a pure function of the observation)."""

    def __call__(self, observation: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        """Action for one step: ``(D,)``, ``(0,)`` -> ``(A,)``."""
        observation = np.asarray(observation, dtype=np.float64)
        if observation.ndim != 1:
            raise ValueError(
                f'observation must have shape ({self.states.shape[1]},), got {observation.shape}'
            )
        return self.act_batch(observation[None], np.asarray(desired_goal)[None])[0]

    def act_batch(self, observations: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """Cached actions of the nearest states (blended over ``neighbours`` of them):
        ``(B, D)``, ``(B, 0)`` -> ``(B, A)``."""
        observations = check_fixed_goal_batch(observations, goals, self.states.shape[1])
        if self.neighbours == 1:
            return self.actions[self.nearest(observations)].copy()
        return self._blend(observations)

    def nearest(self, observations: np.ndarray) -> np.ndarray:
        """Index ``(B,)`` of the nearest cached state (Euclidean) of each ``(B, D)`` row."""
        return np.argmin(self._scores(observations), axis=1)

    def _scores(self, observations: np.ndarray) -> np.ndarray:
        """``(B, N)``: |s - o|^2 - |o|^2 = |s|^2 - 2 s.o per row and cached state (the
        missing |o|^2 does not change which states are nearest)."""
        return self._sq_norms[None, :] - 2.0 * observations @ self.states.T

    def _blend(self, observations: np.ndarray) -> np.ndarray:
        """Weighted actions of the ``neighbours`` nearest states, continuous in the input."""
        k = self.neighbours
        norms = np.einsum('bd,bd->b', observations, observations)  # (B,) |o|^2
        sq = self._scores(observations) + norms[:, None]  # (B, N) squared distances
        closest = np.argpartition(sq, k, axis=1)[:, : k + 1]  # (B, k + 1), unordered
        sq_near = np.take_along_axis(sq, closest, axis=1)
        order = np.argsort(sq_near, axis=1)
        closest = np.take_along_axis(closest, order, axis=1)
        dist = np.sqrt(np.maximum(np.take_along_axis(sq_near, order, axis=1), 0.0))
        # 1/d_i - 1/d_(k+1) for the k nearest; an exact hit (d = 0) takes the actions of
        # the cached states it hits alone (equally, where states repeat: of at most k).
        with np.errstate(divide='ignore', invalid='ignore'):
            inverse = 1.0 / dist
        weights = inverse[:, :k] - inverse[:, k : k + 1]
        exact = dist[:, 0] == 0.0
        weights[exact] = (dist[exact, :k] == 0.0).astype(float)
        weights[~np.isfinite(weights)] = 0.0
        total = weights.sum(axis=1, keepdims=True)
        tied = total[:, 0] <= 0.0  # the k + 1 nearest all at one distance: plain average
        weights[tied] = 1.0
        total[tied] = k
        return np.einsum('bk,bka->ba', weights / total, self.actions[closest[:, :k]])


def cache_arrays(states: Any, actions: Any, command: str) -> dict[str, np.ndarray]:
    """The entries of a cache file (for ``np.savez``)."""
    return {
        'version': np.int64(CACHE_VERSION),
        'command': np.str_(command),
        'states': np.asarray(states, np.float64),
        'actions': np.asarray(actions, np.float64),
    }
