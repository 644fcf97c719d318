"""PETS and CachedPETS: the ensemble's training (torch), its numpy forward pass, the CEM
planner on a 1-D point mass, the cache lookup, the file errors and the registered
controllers on mbrl_pusher."""

from __future__ import annotations

import numpy as np
import pytest

from rpl_base_controllers.base import load_state, save_state
from rpl_base_controllers.cached_pets import (
    CachedPETS,
    CachedPETSConfig,
    cache_arrays,
    load_cache,
)
from rpl_base_controllers.pets import (
    CEMConfig,
    CEMPlanner,
    Ensemble,
    ModelFileError,
    PETSConfig,
    load_ensemble,
)
from rpl_base_controllers.registry import make_controller

NO_GOAL = np.zeros(0)


# ------------------------------------------------------------------ the ensemble (torch)


def _synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 2-D state, 1-D action: s' = s + 0.1 * (a, -s_0) + small noise."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 2))
    act = rng.uniform(-1, 1, (n, 1))
    delta = np.concatenate([0.1 * act, -0.1 * obs[:, :1]], axis=1)
    return obs, act, obs + delta + 0.01 * rng.normal(size=(n, 2))


def test_training_reduces_the_nll_and_the_numpy_model_matches_torch(tmp_path):
    torch = pytest.importorskip('torch')
    from rpl_trainer.pets_model import (
        EnsembleTrainConfig,
        ProbabilisticEnsemble,
        fit,
        save_ensemble,
    )

    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = EnsembleTrainConfig(members=3, hidden=32, layers=2, epochs=4, batch_size=32, lr=3e-3)
    model = ProbabilisticEnsemble(2, 1, config)
    obs, act, nxt = _synthetic(400)
    history = fit(model, obs, act, nxt, config)
    assert history[-1] < history[0] - 1.0, history

    path = tmp_path / 'ensemble.npz'
    save_ensemble(model, path, 'made by the test')
    ensemble = load_ensemble(path)
    assert (ensemble.size, ensemble.obs_dim, ensemble.action_dim) == (3, 2, 1)
    assert ensemble.command == 'made by the test'
    rows = np.broadcast_to(obs[:8], (3, 8, 2)), np.broadcast_to(act[:8], (3, 8, 1))
    mean, var = ensemble.predict(*rows)
    with torch.no_grad():
        x = torch.as_tensor(np.concatenate(rows, axis=-1), dtype=torch.float32)
        t_mean, t_logvar = model((x - model.in_mean) / model.in_std)
        t_mean = t_mean * model.out_std + model.out_mean
        t_var = torch.exp(t_logvar) * model.out_std**2
    np.testing.assert_allclose(mean, t_mean.numpy(), atol=1e-5)
    np.testing.assert_allclose(var, t_var.numpy(), rtol=1e-4)
    # The trained mean follows the dynamics: the delta's first entry is 0.1 * a.
    np.testing.assert_allclose(mean.mean(0)[:, 0], 0.1 * act[:8, 0], atol=0.03)


# ------------------------------------------------------------------ CEM on a point mass


def _point_mass(members: int = 2) -> Ensemble:
    """x' = x + 0.1 u exactly (variance e^-20): one linear layer, no normalisation."""
    w = np.zeros((members, 2, 2), np.float32)
    w[:, 1, 0] = 0.1  # action -> delta mean
    b = np.zeros((members, 1, 2), np.float32)
    b[:, :, 1] = -20.0  # log-variance
    one, zero = np.ones(1, np.float32), np.zeros(1, np.float32)
    return Ensemble(
        (w,),
        (b,),
        np.zeros(2, np.float32),
        np.ones(2, np.float32),
        zero,
        one,
        np.full(1, -10.0, np.float32),
        np.full(1, -20.0, np.float32),
    )


def _to_target(next_obs: np.ndarray, action: np.ndarray) -> np.ndarray:
    return -np.abs(next_obs[..., 0] - 1.0)


def test_cem_plans_towards_the_target_and_beats_random_plans():
    config = CEMConfig(population=64, elites=8, iterations=4, horizon=8, particles=2)
    planner = CEMPlanner(_point_mass(), _to_target, -np.ones(1), np.ones(1), config)
    obs = np.array([[0.0], [2.0]])  # below and above the target at 1
    plan = planner.plan(obs, planner.initial_mean(2))
    assert plan.shape == (2, 8, 1)
    assert plan[0, 0, 0] > 0.5 and plan[1, 0, 0] < -0.5
    random_plans = planner.rng.uniform(-1, 1, (2, 64, 8, 1))
    planned = planner.costs(obs, plan[:, None])[:, 0]
    assert np.all(planned < planner.costs(obs, random_plans).min(axis=1))


def test_pets_warm_starts_resets_and_replays_from_its_state():
    from rpl_base_controllers.pets import PETS

    config = PETSConfig(population=32, elites=4, iterations=2, horizon=5, particles=10)
    pets = PETS(
        config, ensemble=_point_mass(), reward=_to_target, low=-np.ones(1), high=np.ones(1)
    )
    first = pets(np.zeros(1), NO_GOAL)
    assert first.shape == (1,) and first[0] > 0
    state = save_state(pets)
    second = pets(np.array([0.1]), NO_GOAL)
    load_state(pets, state)
    np.testing.assert_array_equal(pets(np.array([0.1]), NO_GOAL), second)
    pets.reset()
    np.testing.assert_array_equal(pets(np.zeros(1), NO_GOAL), first)
    with pytest.raises(ValueError, match='fixed-goal'):
        pets(np.zeros(1), np.zeros(3))


# ------------------------------------------------------------------ the cache


def _write_cache(path, states, actions) -> str:
    np.savez(path, **cache_arrays(states, actions, 'test'))
    return str(path)


def test_cache_returns_the_action_of_the_nearest_state_and_respects_cache_size(tmp_path):
    states = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    actions = np.array([[1.0], [2.0], [3.0]])
    path = _write_cache(tmp_path / 'cache.npz', states, actions)
    cached = CachedPETS(CachedPETSConfig(path))
    queries = np.array([[0.9, 0.2], [0.1, 0.8], [-0.3, -0.1], [0.55, 0.6]])
    np.testing.assert_array_equal(
        cached.act_batch(queries, np.zeros((4, 0)))[:, 0], [2.0, 3.0, 1.0, 3.0]
    )
    np.testing.assert_array_equal(cached(np.array([0.9, 0.2]), NO_GOAL), [2.0])
    first_two = CachedPETS(CachedPETSConfig(path, cache_size=2))
    np.testing.assert_array_equal(
        first_two.act_batch(queries, np.zeros((4, 0)))[:, 0], [2, 1, 1, 2]
    )
    only_first = CachedPETS(CachedPETSConfig(path, cache_size=1))
    assert only_first(np.array([0.0, 1.0]), NO_GOAL)[0] == 1.0


def test_blending_neighbours_is_continuous_and_weighted_by_distance(tmp_path):
    states = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [3.0, 3.0]])
    actions = np.array([[1.0], [2.0], [3.0], [9.0]])
    path = _write_cache(tmp_path / 'cache.npz', states, actions)
    blend = CachedPETS(CachedPETSConfig(path, neighbours=2))
    goals = np.zeros((1, 0))
    # On a cached state: its own action. Halfway between the two nearest (third farther):
    # their mean. Weights 1/d_i - 1/d_3 otherwise.
    assert blend.act_batch(states[1:2], goals)[0, 0] == 2.0
    np.testing.assert_allclose(blend.act_batch(np.array([[0.5, -0.2]]), goals)[0, 0], 1.5)
    query = np.array([[0.2, 0.0]])
    d = np.linalg.norm(states[:3] - query, axis=1)  # 0.2, 0.8, ~1.02 (3rd nearest)
    w = 1 / d[:2] - 1 / d[2]
    np.testing.assert_allclose(blend.act_batch(query, goals)[0, 0], (w @ [1.0, 2.0]) / w.sum())
    # Continuous where the nearest neighbour jumps: across the boundary between states 1
    # and 2 (the line x = y near (0.8, 0.8), state 0 third) the nearest's action jumps by
    # 1, the blend's changes by as little as the step.
    nearest = CachedPETS(CachedPETSConfig(path))
    eps = 1e-6
    across = np.array([[0.8 + eps, 0.8 - eps], [0.8 - eps, 0.8 + eps]])
    jump = np.abs(np.diff(nearest.act_batch(across, np.zeros((2, 0)))[:, 0]))[0]
    step = np.abs(np.diff(blend.act_batch(across, np.zeros((2, 0)))[:, 0]))[0]
    assert jump == 1.0 and step < 1e-4
    # Along a line crossing several boundaries of the nearest's cells: no jumps.
    line = np.stack([np.linspace(-0.4, 1.4, 2001), np.full(2001, 0.3)], axis=1)
    values = blend.act_batch(line, np.zeros((len(line), 0)))[:, 0]
    cells = nearest.act_batch(line, np.zeros((len(line), 0)))[:, 0]
    assert np.max(np.abs(np.diff(cells))) == 1.0 and np.max(np.abs(np.diff(values))) < 0.05
    with pytest.raises(ValueError, match='neighbours 4 needs a cache of more than 4'):
        CachedPETS(CachedPETSConfig(path, neighbours=4))
    with pytest.raises(ValueError, match=r'gives 2 \(cache_size 2\)'):
        CachedPETS(CachedPETSConfig(path, cache_size=2, neighbours=2))
    # A state cached twice with two actions: on it and beside it, their mean (no jump).
    twice = _write_cache(
        tmp_path / 'twice.npz', np.vstack([states, states[:1]]), np.vstack([actions, [[5.0]]])
    )
    blend = CachedPETS(CachedPETSConfig(twice, neighbours=2))
    on, beside = blend.act_batch(np.array([[0.0, 0.0], [1e-9, 0.0]]), np.zeros((2, 0)))[:, 0]
    assert on == 3.0 and beside == pytest.approx(3.0)


@pytest.mark.parametrize('kind', ['missing', 'garbage', 'version', 'entry', 'nan'])
def test_a_bad_file_is_one_clear_error_naming_it(tmp_path, kind):
    path = tmp_path / f'{kind}.npz'
    good = cache_arrays(np.zeros((2, 3)), np.zeros((2, 1)), 'test')
    if kind == 'garbage':
        path.write_bytes(b'not a zip file at all, nor an array' * 8)
    elif kind == 'version':
        np.savez(path, **{**good, 'version': np.int64(99)})
    elif kind == 'entry':
        np.savez(path, **{k: v for k, v in good.items() if k != 'actions'})
    elif kind == 'nan':
        np.savez(path, **{**good, 'states': np.full((2, 3), np.nan)})
    for load in (load_cache, load_ensemble):
        with pytest.raises(ModelFileError) as caught:
            load(path)
        message = str(caught.value)
        assert str(path) in message and '\n' not in message
        # numpy's "contains pickled data ... load it unsafely" for random bytes, and
        # "missing entry 'actions is not a file in the archive'", were the lines
        assert 'pickle' not in message and 'is not a file in the archive' not in message
    if kind == 'entry':
        with pytest.raises(ModelFileError, match="missing entry 'actions' \\(it has "):
            load_cache(path)
    with pytest.raises(ModelFileError, match=str(path)):
        make_controller('cached_pets', 'mbrl_pusher', cache_file=str(path))
    with pytest.raises(ModelFileError, match=str(path)):
        make_controller('pets', 'mbrl_pusher', model_file=str(path))


# ------------------------------------------------------------------ the shipped controllers


def test_shipped_controllers_act_on_the_pusher():
    from rpl_sim_bridge.tasks import task_spec

    spec = task_spec('mbrl_pusher')
    obs = np.zeros(spec.obs_dim)
    obs[17:20] = (0.6, -0.3, -0.275)  # object
    cached = make_controller('cached_pets', 'mbrl_pusher')
    action = cached(obs, NO_GOAL)
    assert action.shape == (7,) and np.all(np.abs(action) <= 2.0)
    nearest = cached.nearest(obs[None])[0]
    np.testing.assert_array_equal(action, cached.actions[nearest])
    pets = make_controller(
        'pets', 'mbrl_pusher', population=16, elites=4, iterations=1, horizon=3, particles=5
    )
    action = pets(obs, NO_GOAL)
    assert action.shape == (7,) and np.all(np.abs(action) <= 2.0)


def test_more_elites_than_the_population_is_refused_with_the_settings():
    """It was found only when the planner was built, in the controller node after the
    other nodes had started (a respawn, then the launch's exit 2)."""
    with pytest.raises(ValueError, match=r'CEM: elites \(10\) must not exceed population \(5\)'):
        PETSConfig(population=5, elites=10)
    from rpl_base_controllers.registry import controller_config

    with pytest.raises(ValueError, match='must not exceed population'):
        controller_config('pets', 'mbrl_pusher', population=5, elites=10)


def test_a_cache_too_small_for_the_blend_is_refused_with_the_settings():
    """neighbours above the shipped cache's 500 entries: found by the controller node after
    the stack had started (one respawn, then exit 2); now by the launch's settings check."""
    from rpl_base_controllers.registry import controller_config

    with pytest.raises(ValueError, match='neighbours 600 needs a cache of more than 600 entries'):
        controller_config('cached_pets', 'mbrl_pusher', neighbours=600)
    with pytest.raises(ValueError, match=r'gives 3 \(cache_size 3\)'):
        controller_config('cached_pets', 'mbrl_pusher', neighbours=5, cache_size=3)
    controller_config('cached_pets', 'mbrl_pusher', neighbours=4)  # the shipped cache: fine
