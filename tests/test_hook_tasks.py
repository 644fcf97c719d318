"""Tests of the hook tasks (hook, noisy_hook): spec, scene, sampling, noise, determinism."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import mujoco
import numpy as np
import pytest

from rpl_sim_bridge.layout import FETCH_GOAL_FIELDS, HOOK_OBS_FIELDS, HookObs
from rpl_sim_bridge.tasks import HookTaskConfig, make_task, task_spec
from rpl_sim_bridge.tasks.hook import (
    BLOCK_X_RANGE,
    BLOCK_XY,
    BLOCK_Y_RANGE,
    GOAL_CENTRE,
    GOAL_XY_RANGE,
    HOOK_GRASP_FROM_CENTRE,
    HOOK_START,
    HookTask,
)
from rpl_sim_bridge.tasks.hook_specs import NOISY_HOOK_STD

HOOK_TASKS = ('hook', 'noisy_hook')


def _actions(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n, 4))


@pytest.fixture(scope='module')
def hook() -> HookTask:
    return make_task('hook')


@pytest.fixture(scope='module')
def noisy() -> HookTask:
    return make_task('noisy_hook')


@pytest.mark.parametrize('name', HOOK_TASKS)
def test_spec_has_the_40_hook_fields_and_the_fetch_action(name):
    spec = task_spec(name)
    assert spec.obs_dim == HookObs.DIM == 40
    assert spec.obs_fields == HOOK_OBS_FIELDS
    assert spec.goal_fields == FETCH_GOAL_FIELDS
    assert spec.action_fields == ('dx', 'dy', 'dz', 'gripper')
    assert (spec.max_episode_steps, spec.distance_threshold) == (100, 0.05)
    assert (spec.action_low, spec.action_high, spec.control_dt) == (-1.0, 1.0, 0.04)


def test_noise_is_a_config_parameter(noisy, hook):
    assert noisy.config.obs_noise_std == NOISY_HOOK_STD == 0.025
    assert hook.config.obs_noise_std == 0.0
    assert make_task('noisy_hook', obs_noise_std=0.158).config.obs_noise_std == 0.158
    assert HookTaskConfig().max_episode_steps == 100


def test_observation_matches_the_spec_and_the_physics(hook):
    obs, info = hook.reset(seed=3)
    o = obs['observation']
    assert o.shape == (40,) and obs['achieved_goal'].shape == obs['desired_goal'].shape == (3,)
    np.testing.assert_array_equal(obs['achieved_goal'], o[HookObs.OBJECT_POS])
    np.testing.assert_allclose(o[HookObs.HOOK_REL_POS], o[HookObs.HOOK_POS] - o[HookObs.GRIP_POS])
    hook_body = hook.data.xpos[hook.hook_body_id]
    np.testing.assert_allclose(o[HookObs.HOOK_POS], hook_body, atol=1e-12)
    for _ in range(5):
        obs, *_ = hook.step(np.array([0.0, 0.0, 0.0, 1.0]))
    assert info['is_success'] in (0.0, 1.0)


def test_hook_starts_at_its_fixed_pose_resting_on_the_table(hook):
    for seed in (0, 1, 2):
        o = hook.reset(seed=seed)[0]['observation']
        np.testing.assert_allclose(o[HookObs.HOOK_POS], HOOK_START, atol=2e-3)
        np.testing.assert_allclose(o[HookObs.HOOK_ROT], 0.0, atol=1e-3)
        np.testing.assert_allclose(o[HookObs.HOOK_VELP] + o[HookObs.GRIP_VELP], 0.0, atol=1e-4)
    m, d = hook.model, hook.data
    handle, head = (
        mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, n) for n in ('hook_handle', 'hook_head')
    )
    assert set(hook.hook_geom_ids) == {handle, head}
    np.testing.assert_allclose(m.geom_size[handle], (0.4, 0.015, 0.015))
    np.testing.assert_allclose(m.geom_size[head], (0.015, 0.1, 0.015))
    np.testing.assert_allclose(m.body_mass[hook.hook_body_id], 4.0)
    # Head at +0.4 x / +0.085 y of the handle centre; the hook frame 0.2 m towards the free end.
    np.testing.assert_allclose(
        d.geom_xpos[head] - d.geom_xpos[handle], (0.4, 0.085, 0.0), atol=1e-3
    )
    np.testing.assert_allclose(
        d.geom_xpos[handle] - d.xpos[hook.hook_body_id],
        (HOOK_GRASP_FROM_CENTRE, 0.0, 0.0),
        atol=1e-3,
    )


def test_block_start_and_goal_distributions(hook):
    blocks, goals = [], []
    for seed in range(150):
        obs = hook.reset(seed=seed)[0]
        blocks.append(obs['achieved_goal'])
        goals.append(obs['desired_goal'])
    blocks, goals = np.array(blocks), np.array(goals)
    bx, by = blocks[:, 0] - BLOCK_XY[0], blocks[:, 1] - BLOCK_XY[1]
    assert BLOCK_X_RANGE[0] <= bx.min() < BLOCK_X_RANGE[0] + 0.02
    assert BLOCK_X_RANGE[1] - 0.02 < bx.max() <= BLOCK_X_RANGE[1]
    assert BLOCK_Y_RANGE[0] <= by.min() < BLOCK_Y_RANGE[0] + 0.02
    assert BLOCK_Y_RANGE[1] - 0.02 < by.max() <= BLOCK_Y_RANGE[1]
    np.testing.assert_allclose(blocks[:, 2], 0.425, atol=2e-3)  # resting on the table top
    offsets = goals[:, :2] - GOAL_CENTRE[:2]
    assert np.abs(offsets).max() <= GOAL_XY_RANGE
    assert np.abs(offsets).max(axis=0).min() > GOAL_XY_RANGE - 0.01
    np.testing.assert_array_equal(goals[:, 2], GOAL_CENTRE[2])
    # Independent offsets per axis (the 2019 code used one scalar for both).
    assert abs(np.corrcoef(offsets.T)[0, 1]) < 0.3
    # The block starts out of reach, the goal lies between it and the robot.
    assert (goals[:, 0] < blocks[:, 0]).all()


@pytest.mark.parametrize('name', HOOK_TASKS)
def test_same_seed_same_episode_noise_included(name):
    a, b = make_task(name), make_task(name)
    actions = _actions(30, seed=4)
    runs = []
    for task in (a, b):
        obs, _ = task.reset(seed=11)
        trace = [obs['observation']]
        for action in actions:
            obs, reward, _, _, info = task.step(action)
            trace.append(np.concatenate([obs['observation'], obs['achieved_goal'], [reward]]))
        runs.append(trace)
    for x, y in zip(*runs, strict=True):
        np.testing.assert_array_equal(x, y)
    other = a.reset(seed=12)[0]['observation']
    assert not np.array_equal(other, runs[0][0])


def test_noise_is_drawn_at_reset_and_every_step_and_observe_repeats(noisy):
    obs, _ = noisy.reset(seed=5)
    first = noisy.observation_noise
    assert np.all(first != 0.0)
    np.testing.assert_array_equal(noisy.observe()['observation'], obs['observation'])
    noisy.step(np.zeros(4))
    assert not np.array_equal(noisy.observation_noise, first)


def test_noise_statistics_and_untouched_entries(noisy, hook):
    """Noisy minus clean observation of the same physics state: the 11 noisy entries carry
    N(0, sigma), the relative positions follow them, everything else is identical; and
    noise_free() takes exactly that off again (a clean task's observation stays as it is)."""
    sigma = noisy.config.obs_noise_std
    noisy_idx = np.r_[3, 4, 25, 26, 27, 11, 12, 13, 28, 29, 30]  # block xy, hook xyz, eulers
    rel_idx = np.r_[6, 7, 37, 38, 39]
    diffs, achieved = [], []
    actions = _actions(100, seed=7)
    for episode in range(4):
        noisy.reset(seed=100 + episode)
        for action in actions:
            obs = noisy.step(action)[0]
            hook.set_state(noisy.get_state())
            hook.set_goal(noisy.goal)
            clean = hook.observe()
            diff = obs['observation'] - clean['observation']
            diffs.append(diff)
            np.testing.assert_allclose(diff[noisy_idx], noisy.observation_noise, atol=1e-12)
            np.testing.assert_allclose(diff[rel_idx], diff[[3, 4, 25, 26, 27]], atol=1e-12)
            np.testing.assert_array_equal(obs['achieved_goal'], obs['observation'][3:6])
            free = noisy.noise_free(obs['observation'])
            np.testing.assert_allclose(free, clean['observation'], rtol=0, atol=1e-12)
            np.testing.assert_array_equal(
                hook.noise_free(clean['observation']), clean['observation']
            )
            achieved.append(obs['achieved_goal'] - clean['achieved_goal'])
    diffs = np.array(diffs)  # (400, 40)
    samples = diffs[:, noisy_idx]
    n = samples.shape[0]
    assert np.all(np.abs(samples.mean(axis=0)) < 4.5 * sigma / np.sqrt(n))
    np.testing.assert_allclose(samples.std(axis=0), sigma, rtol=0.2)
    assert abs(samples.std() - sigma) < 0.05 * sigma
    untouched = np.setdiff1d(np.arange(40), np.r_[noisy_idx, rel_idx])
    np.testing.assert_array_equal(diffs[:, untouched], 0.0)
    achieved = np.array(achieved)
    np.testing.assert_array_equal(achieved[:, 2], 0.0)  # block z is not noisy
    assert np.all(achieved[:, :2] != 0.0)


def test_get_state_set_state_round_trip(hook):
    hook.reset(seed=8)
    for action in _actions(15, seed=1):
        hook.step(action)
    state = hook.get_state()
    saved = hook.observe()['observation']
    later = [hook.step(a)[0]['observation'] for a in _actions(10, seed=2)]
    hook.set_state(state)
    np.testing.assert_array_equal(hook.observe()['observation'], saved)
    again = [hook.step(a)[0]['observation'] for a in _actions(10, seed=2)]
    np.testing.assert_array_equal(np.array(again), np.array(later))
    with pytest.raises(ValueError, match='state must have shape'):
        hook.set_state(state[:-1])


def test_noisy_success_tool_gives_the_ceiling_and_the_true_distances(repo_root, tmp_path):
    """tools/noisy_success.py: the success ceiling of a block resting on the goal is the
    chance that planar N(0, std^2) noise stays inside the threshold, 1 - exp(-r^2 / 2 std^2)
    (0.865 for 0.05 m and 0.025 m); the recorded true distances are the noisy ones minus the
    noise, and a repeat of an existing --json is refused."""
    out = tmp_path / 'ceiling.json'
    tool = [sys.executable, str(repo_root / 'tools' / 'noisy_success.py')]
    args = ['--episodes', '2', '--seed', '5', '--draws', '200000', '--json', str(out)]
    done = subprocess.run([*tool, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    exact = 1.0 - math.exp(-(0.05**2) / (2 * NOISY_HOOK_STD**2))
    assert record['ceiling_by_cm']['0'] == pytest.approx(exact, abs=0.005)
    assert record['ceiling_by_cm']['8'] < 0.1
    true = record['true_final_distances']
    assert len(true) == 2 and record['true_success'] == np.mean(np.array(true) < 0.05)
    # The planar offsets (true block - goal) are the distances' x and y parts: what is left
    # is the height of the block resting on the table over the goal's (a few mm).
    offsets = np.array(record['true_final_offsets_xy'])
    assert offsets.shape == (2, 2)
    planar = np.linalg.norm(offsets, axis=1)
    height = np.sqrt(np.maximum(np.array(true) ** 2 - planar**2, 0.0))
    assert np.all(planar <= np.array(true) + 1e-4) and np.all(height < 0.02)
    # Every episode has one outcome; 'placed' is exactly the true success.
    outcomes = record['episode_outcomes']
    assert len(outcomes) == 2 and set(outcomes) <= set(record['outcomes'])
    assert sum(row['share'] for row in record['outcomes'].values()) == pytest.approx(1.0)
    assert record['outcomes']['placed']['share'] == record['true_success']
    # The task's own final distance is the noisy one: the same episodes, another number.
    task = make_task('noisy_hook')
    from rpl_bringup.evaluation import evaluate

    noisy = evaluate(task, 'reactive_hook', 2, 5, progress=False).final_distances
    assert noisy != pytest.approx(true, abs=1e-9)
    assert noisy == pytest.approx(true, abs=0.15)  # apart by the block's xy noise (6 std)
    again = subprocess.run([*tool, *args], capture_output=True, text=True, check=False)
    assert again.returncode == 2 and 'exists; not overwritten' in again.stderr
    # The diagnostic: ReactiveHook given the noise-free observation places the block.
    free = tmp_path / 'free.json'
    args = ['--episodes', '2', '--seed', '5', '--draws', '1000', '--noise-free', 'base']
    done = subprocess.run([*tool, *args, '--json', str(free)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    record = json.loads(free.read_text())
    assert record['noise_free'] == 'base' and record['true_success'] == 1.0
    missing = subprocess.run(
        [*tool, '--episodes', '1', '--noise-free', 'model'], capture_output=True, text=True
    )
    assert missing.returncode == 2 and '--noise-free model needs --model' in missing.stderr
    table_only = subprocess.run([*tool, '--noise-free', 'base'], capture_output=True, text=True)
    assert table_only.returncode == 2 and 'needs --episodes' in table_only.stderr


def test_noise_free_reader_gets_the_clean_observation_the_other_the_noisy_one(repo_root, noisy):
    """tools/noisy_success.py's NoiseFree: the wrapped reader (a base controller or a
    residual policy) is called with the task's noise-free observation, the caller's array
    stays the noisy one, and reset and attributes (the label's actor path) pass through."""
    spec = importlib.util.spec_from_file_location(
        'noisy_success', repo_root / 'tools' / 'noisy_success.py'
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)

    class Reader:
        actor = 'the actor'

        def __init__(self) -> None:
            self.seen, self.resets = [], 0

        def reset(self) -> None:
            self.resets += 1

        def __call__(self, observation, *rest):
            self.seen.append((observation, rest))
            return 'command'

    obs, _ = noisy.reset(seed=11)
    observation = obs['observation'].copy()
    reader = Reader()
    wrapped = tool.NoiseFree(noisy, reader)
    wrapped.reset()
    assert wrapped(observation, 'goal', 'base') == 'command' and reader.resets == 1
    seen, rest = reader.seen[0]
    np.testing.assert_array_equal(seen, noisy.noise_free(observation))
    assert not np.array_equal(seen, observation) and rest == ('goal', 'base')
    np.testing.assert_array_equal(observation, obs['observation'])  # the caller's, untouched
    assert wrapped.actor == 'the actor'


def test_residual_authority_tool_shows_the_fingers_out_of_reach_below_scale_one(
    repo_root, tmp_path
):
    """tools/residual_authority.py: ReactiveHook commands its fingers with +-1 only, so a
    residual can reverse them at scale 2 and never at 0.5 or 1; the shares grow with the
    scale on every axis; an existing --json is refused."""
    out = tmp_path / 'authority.json'
    tool = [sys.executable, str(repo_root / 'tools' / 'residual_authority.py')]
    args = ['--task', 'hook', '--episodes', '1', '--seed', '7', '--json', str(out)]
    done = subprocess.run([*tool, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    assert record['steps'] == 100 and record['axes'][-1] == 'gripper'
    shares = {s: np.array(v) for s, v in record['reversible_share'].items()}
    assert shares['0.5'][-1] == 0.0 and shares['1'][-1] == 0.0 and shares['2'][-1] == 1.0
    assert np.all(shares['0.5'] <= shares['1']) and np.all(shares['1'] <= shares['2'])
    assert record['mean_abs_command'][-1] == pytest.approx(1.0)
    again = subprocess.run([*tool, *args], capture_output=True, text=True, check=False)
    assert again.returncode == 2 and 'exists; not overwritten' in again.stderr
