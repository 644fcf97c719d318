"""PETS: a probabilistic ensemble dynamics model planned through with CEM (Chua et al. 2018).

The base controller of the RPL paper's MBRLPusher task (7-DOF arm, fixed goal). Numpy only:
the controller node runs on robots without torch. The ensemble is trained by
``tools/train_pets.py`` (torch, :mod:`rpl_trainer.pets_model`) and read here from an
``.npz`` file (:func:`load_ensemble`, layout in :data:`ENSEMBLE_KEYS`).

Model. Each of the ``E`` members is an MLP (swish hidden layers) from the normalised
``(obs, action)`` to the mean and log-variance of the normalised next-state delta
``obs' - obs``; the log-variance is softly bounded by learned ``max_logvar`` /
``min_logvar`` (as in PETS).

Planner. Cross-entropy method over action sequences of ``horizon`` steps, with trajectory
sampling TS-inf: each of the ``particles`` rollouts of a candidate keeps one ensemble member
for the whole horizon (particle ``k`` uses member ``k mod E``) and samples its next state from
that member's Gaussian at every step. A candidate's cost is the mean over its particles of
``-sum_t step_reward(s_{t+1}, a_t)`` (the task's pure reward, :attr:`TaskSpec.step_reward`).
After ``iterations`` rounds (sample ``population`` candidates, keep ``elites``, move the mean
and variance towards theirs with smoothing ``alpha``) the first action of the mean plan is
returned; the plan, shifted by one step, warm-starts the next call (:meth:`PETS.reset`
forgets it). Candidates are drawn from a normal clipped to the action bounds, its variance
capped so that two standard deviations stay inside them (PETS draws a truncated normal).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import zipfile
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from rpl_interfaces.params import describe

ENSEMBLE_VERSION = 1
"""Layout version of the ensemble file this module reads."""
ENSEMBLE_KEYS = (
    'version',  # int, ENSEMBLE_VERSION
    'command',  # str, the command that made the file
    'obs_dim',  # int D
    'action_dim',  # int A
    'n_layers',  # int L: layers w0..w{L-1}, b0..b{L-1}
    'in_mean',  # (D + A,) input normalisation
    'in_std',  # (D + A,)
    'out_mean',  # (D,) delta normalisation
    'out_std',  # (D,)
    'max_logvar',  # (D,) soft upper bound of the normalised log-variance
    'min_logvar',  # (D,) soft lower bound
)
"""Entries of an ensemble file besides the layers ``w{i}`` ``(E, in, out)`` and ``b{i}``
``(E, out)``; the last layer outputs ``2 D``: normalised delta mean, then log-variance."""

RewardFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


class ModelFileError(ValueError):
    """A model or cache file is missing or malformed; the message names the file."""


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


class Ensemble(NamedTuple):
    """A probabilistic ensemble dynamics model (float32 arrays).

    Attributes:
        weights: Per layer ``(E, in, out)``.
        biases: Per layer ``(E, 1, out)``.
        in_mean: ``(D + A,)`` mean of the (obs, action) inputs.
        in_std: ``(D + A,)`` their standard deviation.
        out_mean: ``(D,)`` mean of the next-state deltas.
        out_std: ``(D,)`` their standard deviation.
        max_logvar: ``(D,)`` soft upper bound of the normalised log-variance.
        min_logvar: ``(D,)`` soft lower bound.
        command: The command that made the file.
    """

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    in_mean: np.ndarray
    in_std: np.ndarray
    out_mean: np.ndarray
    out_std: np.ndarray
    max_logvar: np.ndarray
    min_logvar: np.ndarray
    command: str = ''

    @property
    def size(self) -> int:
        """Number of members E."""
        return self.weights[0].shape[0]

    @property
    def obs_dim(self) -> int:
        """State size D."""
        return self.out_mean.shape[0]

    @property
    def action_dim(self) -> int:
        """Action size A."""
        return self.in_mean.shape[0] - self.out_mean.shape[0]

    def predict(self, obs: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of the next-state delta per member.

        Args:
            obs: ``(E, N, D)``: row ``n`` of member ``e`` is predicted by member ``e``.
            action: ``(E, N, A)``.

        Returns:
            ``(mean, var)``, each ``(E, N, D)`` float32, in the units of the observation.
        """
        x = np.concatenate([obs, action], axis=-1).astype(np.float32)
        x = (x - self.in_mean) / self.in_std
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = np.matmul(x, w) + b
            if i < last:
                x = x / (1.0 + np.exp(-x))  # swish
        d = self.obs_dim
        mean, logvar = x[..., :d], x[..., d:]
        logvar = self.max_logvar - _softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + _softplus(logvar - self.min_logvar)
        return mean * self.out_std + self.out_mean, np.exp(logvar) * self.out_std**2


def load_ensemble(path: str | os.PathLike) -> Ensemble:
    """Read an ensemble file written by :func:`rpl_trainer.pets_model.save_ensemble`.

    Raises:
        ModelFileError: The file is missing, not an npz, of another version, or its arrays
            do not fit together (one line naming the file).
    """
    with _open_npz(path, 'PETS ensemble') as data:
        _check_version(path, data, ENSEMBLE_VERSION, 'PETS ensemble')
        n_layers = int(data['n_layers'])  # a missing entry: _Entries' one line
        weights = tuple(np.asarray(data[f'w{i}'], np.float32) for i in range(n_layers))
        biases = tuple(np.asarray(data[f'b{i}'], np.float32) for i in range(n_layers))
        arrays = {k: np.asarray(data[k], np.float32) for k in ENSEMBLE_KEYS[5:]}
        obs_dim, action_dim = int(data['obs_dim']), int(data['action_dim'])
        command = str(data['command'])
    d_in, d = obs_dim + action_dim, obs_dim
    shapes_ok = (
        n_layers >= 1
        and all(w.ndim == 3 and w.shape[0] == weights[0].shape[0] for w in weights)
        and weights[0].shape[1] == d_in
        and weights[-1].shape[2] == 2 * d
        and all(a.shape[2] == b.shape[1] for a, b in zip(weights[:-1], weights[1:], strict=True))
        and all(b.shape == (w.shape[0], w.shape[2]) for w, b in zip(weights, biases, strict=True))
        and arrays['in_mean'].shape == arrays['in_std'].shape == (d_in,)
        and all(arrays[k].shape == (d,) for k in ENSEMBLE_KEYS[7:])
    )
    if not shapes_ok:
        raise ModelFileError(f'PETS ensemble {path}: arrays of inconsistent shapes')
    if not all(np.all(np.isfinite(a)) for a in (*weights, *biases, *arrays.values())):
        raise ModelFileError(f'PETS ensemble {path}: contains NaN or inf')
    ensemble = Ensemble(weights, tuple(b[:, None, :] for b in biases), **arrays, command=command)
    return ensemble


class _NpzReader:
    def __init__(self, path: str | os.PathLike, what: str) -> None:
        self.path, self.what = path, what

    def __enter__(self) -> Any:
        try:
            self.data = np.load(self.path, allow_pickle=False)
        except FileNotFoundError:
            raise ModelFileError(f'{self.what} file {self.path} does not exist') from None
        except ValueError:  # numpy's words for it ("pickled data ... load it unsafely")
            raise ModelFileError(
                f'{self.what} file {self.path} is not an .npz archive (nor a NumPy array)'
            ) from None
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise ModelFileError(
                f'{self.what} file {self.path} is not a readable .npz ({exc})'
            ) from None
        if not hasattr(self.data, 'files'):
            raise ModelFileError(f'{self.what} file {self.path} is a single array, not an .npz')
        return _Entries(self.data, f'{self.what} {self.path}')

    def __exit__(self, *exc: Any) -> None:
        self.data.close()


class _Entries:
    """An open .npz whose missing entry is one line naming it and the file's entries."""

    def __init__(self, data: Any, what: str) -> None:
        self._data, self._what = data, what
        self.files = data.files

    def __getitem__(self, name: str) -> Any:
        if name not in self.files:
            raise ModelFileError(
                f'{self._what}: missing entry {name!r} (it has {", ".join(self.files) or "none"}'
                '): another kind of file?'
            )
        return self._data[name]


def _open_npz(path: str | os.PathLike, what: str) -> _NpzReader:
    return _NpzReader(path, what)


def _check_version(path: Any, data: Any, version: int, what: str) -> None:
    if 'version' not in data.files:
        raise ModelFileError(f'{what} file {path} has no version entry')
    found = int(data['version'])
    if found != version:
        raise ModelFileError(f'{what} file {path} has version {found}, this code reads {version}')


@dataclasses.dataclass(frozen=True)
class CEMConfig:
    """Settings of the CEM planner with trajectory sampling."""

    population: int = dataclasses.field(
        default=100,
        metadata=describe('candidate action sequences per CEM iteration', range=(2, 5000)),
    )
    elites: int = dataclasses.field(
        default=10,
        metadata=describe('best candidates the distribution is refit to', range=(1, 5000)),
    )
    iterations: int = dataclasses.field(
        default=3, metadata=describe('CEM iterations per control step', range=(1, 50))
    )
    horizon: int = dataclasses.field(
        default=10, metadata=describe('planning horizon (control steps)', range=(1, 200))
    )
    particles: int = dataclasses.field(
        default=5,
        metadata=describe(
            'sampled rollouts per candidate (TS-inf; a multiple of the ensemble size)',
            range=(1, 200),
        ),
    )
    alpha: float = dataclasses.field(
        default=0.1,
        metadata=describe(
            'smoothing: weight of the old mean and variance in each CEM update',
            range=(0.0, 0.99),
        ),
    )
    seed: int = dataclasses.field(
        default=0,
        metadata=describe('seed of the sampling (re-seeded at reset)', range=(0, 2**31 - 1)),
    )


class CEMPlanner:
    """CEM over action sequences through a probabilistic ensemble (TS-inf), batched.

    Args:
        ensemble: The dynamics model.
        reward: ``reward(next_obs (..., D), action (..., A)) -> (...)``: pure, batched.
        low: ``(A,)`` lower action bounds.
        high: ``(A,)`` upper action bounds.
        config: Planner settings.
    """

    def __init__(
        self,
        ensemble: Ensemble,
        reward: RewardFn,
        low: np.ndarray,
        high: np.ndarray,
        config: CEMConfig,
    ) -> None:
        check_cem(config)
        check_particles(config, ensemble.size)
        self.ensemble, self.reward, self.config = ensemble, reward, config
        self.low = np.asarray(low, np.float32)
        self.high = np.asarray(high, np.float32)
        self.rng = np.random.default_rng(config.seed)

    def initial_mean(self, batch: int) -> np.ndarray:
        """The plan without a warm start: mid-range actions, ``(B, H, A)``."""
        mid = (self.low + self.high) / 2
        return np.broadcast_to(mid, (batch, self.config.horizon, mid.shape[0])).copy()

    def costs(self, obs: np.ndarray, plans: np.ndarray) -> np.ndarray:
        """Expected cost of action sequences from states (TS-inf rollouts).

        Args:
            obs: ``(B, D)`` current states.
            plans: ``(B, P, H, A)`` candidate action sequences.

        Returns:
            ``(B, P)``: mean over particles of minus the summed predicted reward.
        """
        e = self.ensemble.size
        k = self.config.particles // e
        b, p, h, a = plans.shape
        shape = (e, b, p, k)
        state = np.broadcast_to(obs[None, :, None, None, :], (*shape, obs.shape[-1]))
        state = state.reshape(e, -1, obs.shape[-1]).astype(np.float32)
        total = np.zeros((e, b * p * k), np.float32)
        for t in range(h):
            action = np.broadcast_to(plans[None, :, :, None, t, :], (*shape, a)).reshape(e, -1, a)
            mean, var = self.ensemble.predict(state, action)
            noise = self.rng.standard_normal(mean.shape, dtype=np.float32)
            state = state + mean + np.sqrt(var) * noise
            total -= self.reward(state, action)
        total = np.where(np.isfinite(total), total, np.float32(1e10))
        return total.reshape(shape).mean(axis=(0, 3))

    def plan(self, obs: np.ndarray, mean: np.ndarray) -> np.ndarray:
        """Refine plans with CEM.

        Args:
            obs: ``(B, D)`` current states.
            mean: ``(B, H, A)`` initial mean plans (a warm start or :meth:`initial_mean`).

        Returns:
            ``(B, H, A)`` the final mean plans.
        """
        cfg = self.config
        mean = np.asarray(mean, np.float32)
        var = np.broadcast_to(((self.high - self.low) / 4) ** 2, mean.shape).astype(np.float32)
        rows = np.arange(mean.shape[0])[:, None]
        for _ in range(cfg.iterations):
            room = np.minimum(mean - self.low, self.high - mean)
            std = np.sqrt(np.minimum(var, (room / 2) ** 2))
            shape = (mean.shape[0], cfg.population, *mean.shape[1:])
            noise = self.rng.standard_normal(shape, dtype=np.float32)
            samples = np.clip(mean[:, None] + std[:, None] * noise, self.low, self.high)
            cost = self.costs(obs, samples)  # (B, P)
            elite = samples[rows, np.argsort(cost, axis=1)[:, : cfg.elites]]  # (B, K, H, A)
            mean = cfg.alpha * mean + (1 - cfg.alpha) * elite.mean(axis=1)
            var = cfg.alpha * var + (1 - cfg.alpha) * elite.var(axis=1)
        return mean


def shift(plan: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """The plan one step later: ``(B, H, A)`` without its first action, ``fill`` appended."""
    return np.concatenate([plan[:, 1:], np.broadcast_to(fill, plan[:, :1].shape)], axis=1)


def default_data_file(name: str) -> str:
    """Path of a file shipped in this package's ``data`` folder."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', name)


def check_data_file(name: str, path: str) -> None:
    """ModelFileError (one line naming the parameter) unless ``path`` is '' (the shipped
    file) or a regular file: checked when the settings are made, so a launch refuses it before
    any node starts (the controller node crash-looped on it once the stack ran)."""
    if path and not os.path.isfile(path):
        what = 'does not exist' if not os.path.lexists(path) else 'is not a regular file'
        raise ModelFileError(f'{name} {path!r} {what}')


DEFAULT_ENSEMBLE_FILE = 'pets_pusher_v1.npz'
"""The shipped ensemble of the mbrl_pusher task (in ``rpl_base_controllers/data``)."""


@dataclasses.dataclass(frozen=True)
class PETSConfig(CEMConfig):
    """PETS on a task: the ensemble file and the CEM settings.

    Defaults fit a 2-core machine: 251 ms per single-row step on the shipped 5 x (3 x 200)
    ensemble (measured on the loaded 2-core VM, ``tools/train_pets.py evaluate``). Chua et
    al.'s pusher (their code, handful-of-trials ``dmbrl/config/pusher.py`` and
    ``default.py``): population 500, 50 elites, 5 iterations, alpha 0.1, horizon 25, 20
    particles (TS-inf), 100 iterations of one 150-step episode (the 15,000 steps); here
    that setting takes 18.0 s per step.
    """

    model_file: str = dataclasses.field(
        default='',
        metadata=describe(
            f"ensemble .npz ('' = the shipped {DEFAULT_ENSEMBLE_FILE}); made by "
            'tools/train_pets.py'
        ),
    )
    task: str = 'mbrl_pusher'

    def __post_init__(self) -> None:
        check_data_file('model_file', self.model_file)
        check_cem(self)  # at launch too, before any node starts (not at the planner's build)
        # The file's content (a file given) and the particles its members must divide, at
        # launch, before any node (the controller node found it only when it built the planner).
        members = load_ensemble(self.model_file).size if self.model_file else _shipped_members()
        check_particles(self, members)


@functools.lru_cache(maxsize=1)
def _shipped_members() -> int:
    """Members of the shipped ensemble (read once per process: 8 ms)."""
    return load_ensemble(default_data_file(DEFAULT_ENSEMBLE_FILE)).size


def check_cem(config: CEMConfig) -> None:
    """The settings' relations no range can say.

    Raises:
        ValueError: More elites than the population.
    """
    if config.elites > config.population:
        raise ValueError(
            f'CEM: elites ({config.elites}) must not exceed population ({config.population})'
        )


def check_particles(config: CEMConfig, members: int) -> None:
    """Refuse a particle count that the ensemble's ``members`` do not divide (TS-inf gives
    each member the same number of particles).

    Raises:
        ValueError: One line naming both.
    """
    if config.particles % members:
        raise ValueError(
            f'CEM: particles ({config.particles}) must be a multiple of the ensemble size '
            f'({members})'
        )


def _cem_config(config: CEMConfig) -> CEMConfig:
    return CEMConfig(**{f.name: getattr(config, f.name) for f in dataclasses.fields(CEMConfig)})


class PETS:
    """Model-based controller: CEM planning through the ensemble at every step.

    Args:
        config: Model file, planner settings and the task (its ``step_reward``, action
            bounds and sizes).
        name: Registry name.
        ensemble: Use this model instead of reading ``config.model_file``.
        reward: Use this reward instead of the task's (tests).
        low: Action lower bounds instead of the task's.
        high: Action upper bounds instead of the task's.
    """

    def __init__(
        self,
        config: PETSConfig,
        name: str = 'pets',
        ensemble: Ensemble | None = None,
        reward: RewardFn | None = None,
        low: np.ndarray | None = None,
        high: np.ndarray | None = None,
    ) -> None:
        self.name = name
        self.config = config
        if ensemble is None:
            ensemble = load_ensemble(config.model_file or default_data_file(DEFAULT_ENSEMBLE_FILE))
        if reward is None or low is None or high is None:
            from rpl_sim_bridge.tasks import task_spec

            spec = task_spec(config.task)
            if (spec.obs_dim, spec.action_dim) != (ensemble.obs_dim, ensemble.action_dim):
                raise ModelFileError(
                    f'PETS ensemble {config.model_file or DEFAULT_ENSEMBLE_FILE}: sizes '
                    f'(obs {ensemble.obs_dim}, action {ensemble.action_dim}) do not fit task '
                    f'{config.task!r} (obs {spec.obs_dim}, action {spec.action_dim})'
                )
            reward = reward or spec.step_reward
            size = (ensemble.action_dim,)
            low = np.broadcast_to(spec.action_low, size) if low is None else low
            high = np.broadcast_to(spec.action_high, size) if high is None else high
        self.planner = CEMPlanner(ensemble, reward, low, high, _cem_config(config))
        self.obs_dim, self.action_dim = ensemble.obs_dim, ensemble.action_dim
        self._plan: np.ndarray | None = None  # (B, H, A) mean plan of the last call

    def reset(self) -> None:
        """Forget the warm-start plan and re-seed the sampling."""
        self._plan = None
        self.planner.rng = np.random.default_rng(self.config.seed)

    def get_state(self) -> tuple[np.ndarray | None, dict]:
        """The warm-start plan and the sampler's state (copies)."""
        plan = None if self._plan is None else self._plan.copy()
        return plan, self.planner.rng.bit_generator.state

    def set_state(self, state: tuple[np.ndarray | None, dict]) -> None:
        """Put back a state from :meth:`get_state`."""
        plan, rng_state = state
        self._plan = None if plan is None else plan.copy()
        self.planner.rng = np.random.default_rng()
        self.planner.rng.bit_generator.state = rng_state

    def __call__(self, observation: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        """Action for one step: ``(D,)``, ``(0,)`` -> ``(A,)`` float64 within the bounds."""
        observation = np.asarray(observation, dtype=np.float64)
        if observation.ndim != 1:
            raise ValueError(
                f'observation must have shape ({self.obs_dim},), got {observation.shape}'
            )
        return self.act_batch(observation[None], np.asarray(desired_goal)[None])[0]

    def act_batch(self, observations: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """Actions for a batch: ``(B, D)``, ``(B, 0)`` -> ``(B, A)``; each row keeps its plan."""
        observations = check_fixed_goal_batch(observations, goals, self.obs_dim)
        batch = observations.shape[0]
        planner = self.planner
        if self._plan is None or self._plan.shape[0] != batch:
            start = planner.initial_mean(batch)
        else:
            start = shift(self._plan, (planner.low + planner.high) / 2)
        self._plan = planner.plan(observations, start)
        return np.clip(self._plan[:, 0], planner.low, planner.high).astype(np.float64)


def check_fixed_goal_batch(observations: Any, goals: Any, obs_dim: int) -> np.ndarray:
    """Validate ``(B, obs_dim)`` observations and ``(B, 0)`` goals of a fixed-goal task.

    Raises:
        ValueError: Wrong shapes or non-finite values.
    """
    observations = np.asarray(observations, dtype=np.float64)
    goals = np.asarray(goals, dtype=np.float64)
    if observations.ndim != 2 or observations.shape[1] != obs_dim:
        raise ValueError(f'observations must have shape (B, {obs_dim}), got {observations.shape}')
    if goals.shape != (observations.shape[0], 0):
        raise ValueError(
            f'desired goal must be empty (a fixed-goal task): shape ({observations.shape[0]}, 0), '
            f'got {goals.shape}'
        )
    if not np.all(np.isfinite(observations)):
        raise ValueError('observation contains NaN or inf; a controller needs finite values')
    return observations
