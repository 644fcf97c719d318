"""Tests of the MuJoCo goal tasks (rpl_sim_bridge.tasks) and the observation layout."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from gymnasium_robotics.envs.fetch.push import MujocoFetchPushEnv

from rpl_interfaces.params import ParameterError
from rpl_sim_bridge.layout import FETCH_GOAL_FIELDS, FETCH_OBS_FIELDS, FetchObs
from rpl_sim_bridge.tasks import (
    FetchTask,
    GoalTask,
    MujocoWarning,
    MujocoWarningError,
    TaskSpec,
    UnknownTaskError,
    available_tasks,
    goal_distance,
    make_task,
    register_task,
    registry,
    sparse_reward,
    task_spec,
)

FETCH_TASKS = ('push', 'slippery_push', 'pick_and_place')


def _random_actions(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n, 4))


# ----------------------------------------------------------------------------- layout
def test_layout_slices_tile_the_observation_in_order():
    slices = [
        FetchObs.GRIP_POS,
        FetchObs.OBJECT_POS,
        FetchObs.OBJECT_REL_POS,
        FetchObs.GRIPPER_STATE,
        FetchObs.OBJECT_ROT,
        FetchObs.OBJECT_VELP,
        FetchObs.OBJECT_VELR,
        FetchObs.GRIP_VELP,
        FetchObs.GRIPPER_VEL,
    ]
    covered = np.concatenate([np.arange(FetchObs.DIM)[s] for s in slices])
    np.testing.assert_array_equal(covered, np.arange(25))
    assert len(FETCH_OBS_FIELDS) == len(set(FETCH_OBS_FIELDS)) == FetchObs.DIM
    assert FETCH_OBS_FIELDS[FetchObs.GRIPPER_STATE] == (
        'gripper_state.right',
        'gripper_state.left',
    )
    assert FETCH_OBS_FIELDS[FetchObs.OBJECT_POS] == (
        'object_pos.x',
        'object_pos.y',
        'object_pos.z',
    )
    assert FETCH_GOAL_FIELDS == ('x', 'y', 'z')


# ---------------------------------------------------------------------------- registry
def test_registry_lists_fetch_tasks_and_rejects_unknown_names_with_the_list():
    assert set(FETCH_TASKS) <= set(available_tasks())
    with pytest.raises(UnknownTaskError, match='push.*slippery_push') as err:
        task_spec('slipery_push')
    assert 'slipery_push' in str(err.value)
    assert isinstance(err.value, ValueError)
    with pytest.raises(UnknownTaskError, match='pick_and_place'):
        make_task('nope')


def test_register_task_refuses_duplicates_and_mismatched_names():
    spec = task_spec('push')
    with pytest.raises(ValueError, match='already registered'):
        register_task('push', spec, lambda **kw: None)
    with pytest.raises(ValueError, match='differs'):
        register_task('other', spec, lambda **kw: None)


def _long_push(kind=None, **overrides):
    """Push with 100-step episodes, named test_long_push (a factory of a registered task),
    built as ``kind`` (a FetchTask subclass; FetchTask by default)."""
    from gymnasium_robotics.envs.fetch.push import MujocoFetchPushEnv

    from rpl_interfaces.params import build_config
    from rpl_sim_bridge.tasks.fetch import FETCH_TASKS, FetchTask, FetchTaskConfig

    description, defaults = FETCH_TASKS['push']
    config = build_config(FetchTaskConfig, {**defaults, 'max_episode_steps': 100, **overrides})
    return (kind or FetchTask)('test_long_push', description, MujocoFetchPushEnv, config)


def test_register_task_adds_a_new_task(monkeypatch):
    monkeypatch.setattr(registry, '_REGISTRY', dict(registry._REGISTRY))  # undone after the test
    spec = dataclasses.replace(task_spec('push'), name='test_long_push', max_episode_steps=100)
    register_task('test_long_push', spec, _long_push)
    assert 'test_long_push' in available_tasks()
    assert task_spec('test_long_push').max_episode_steps == 100
    task = make_task('test_long_push')
    assert task.spec.max_episode_steps == 100
    task.close()


def test_a_task_built_other_than_its_registered_spec_is_refused(monkeypatch):
    """A plug-in registering a spec of 30-step episodes whose factory builds 50: rpl eval
    and the sim bridge ran 50 (the built task), rpl train 30 (the registered spec), both
    exit 0. Refused in one line naming the first difference; overrides change the spec on
    purpose and are not compared."""
    monkeypatch.setattr(registry, '_REGISTRY', dict(registry._REGISTRY))
    spec = dataclasses.replace(task_spec('push'), name='test_long_push', max_episode_steps=30)
    register_task('test_long_push', spec, _long_push)
    with pytest.raises(registry.TaskBuildError) as raised:
        make_task('test_long_push')
    assert str(raised.value).startswith(
        "task 'test_long_push': the task its factory built differs from the spec it "
        'registered (max_episode_steps 30 registered, 100 built)'
    )
    make_task('test_long_push', max_episode_steps=30).close()  # asked for: as built


def test_an_observe_of_other_sizes_than_the_spec_is_one_line(monkeypatch):
    """A plug-in whose observe() gave 7 values for a 6-field spec: rpl eval exited 0 with
    results, rpl train died in a torch traceback, the sim bridge in a numpy broadcast."""
    task = make_task('push')
    real = task.observe

    def seven() -> dict:
        obs = real()
        return {**obs, 'observation': np.r_[obs['observation'], 0.0]}

    monkeypatch.setattr(task, 'observe', seven)
    wanted = "task 'push': observe() gave 'observation' of shape (26,), its spec declares (25,)"
    with pytest.raises(ValueError, match=re.escape(wanted)):
        task.reset(seed=0)
    monkeypatch.setattr(task, 'observe', lambda: {**real(), 'desired_goal': np.zeros(2)})
    with pytest.raises(
        ValueError, match=r"gave 'desired_goal' of shape \(2,\), its spec declares \(3,\)"
    ):
        task.reset(seed=0)
    monkeypatch.setattr(task, 'observe', real)
    task.reset(seed=0)
    monkeypatch.setattr(task, 'observe', lambda: {'observation': real()['observation']})
    with pytest.raises(ValueError, match="gave 'achieved_goal' of nothing"):
        task.step(np.zeros(4))
    task.close()


@pytest.mark.parametrize('what', ['obs_fields', 'action_fields'])
def test_a_field_named_like_the_message_header_is_refused(what):
    """A field named 'step' or 'episode' sat beside the header's own in every message: a
    node reading by name took the field's value for the step."""
    spec = task_spec('push')
    names = list(getattr(spec, what))
    names[-1] = 'step'
    with pytest.raises(ValueError, match=f"{what} name 'step', which every message already"):
        dataclasses.replace(spec, **{what: tuple(names)})


@pytest.mark.parametrize('name', FETCH_TASKS)
def test_spec_dims(name):
    spec = task_spec(name)
    assert (spec.obs_dim, spec.goal_dim, spec.action_dim) == (25, 3, 4)
    assert spec.max_episode_steps == 50
    assert spec.distance_threshold == 0.05
    assert (spec.action_low, spec.action_high) == (-1.0, 1.0)
    assert spec.control_dt == pytest.approx(0.04)
    assert spec.obs_fields == FETCH_OBS_FIELDS
    assert spec.action_fields == ('dx', 'dy', 'dz', 'gripper')  # declared by the task
    task = make_task(name)
    assert task.spec == spec
    assert isinstance(task, GoalTask)
    task.close()


def test_overrides_are_validated_and_reach_the_spec():
    task = make_task('push', max_episode_steps=7, distance_threshold=0.02)
    assert task.spec.max_episode_steps == 7
    assert task.spec.distance_threshold == 0.02
    with pytest.raises(ParameterError, match='max_episod_steps'):
        make_task('push', max_episod_steps=3)
    with pytest.raises(ParameterError, match='mujoco_warnings'):
        make_task('push', mujoco_warnings='ignore')


def test_control_period_must_be_whole_physics_steps():
    with pytest.raises(ValueError, match='whole number of physics steps'):
        make_task('push', control_dt=0.005, physics_timestep=0.002)
    task = make_task('push', control_dt=0.02)
    task.reset(seed=0)
    t0 = task.data.time
    task.step(np.zeros(4))
    assert task.data.time - t0 == pytest.approx(0.02)


# ------------------------------------------------------------------------ reset / step
@pytest.mark.parametrize('name', FETCH_TASKS)
def test_reset_and_step_shapes_and_dtypes(name):
    task = make_task(name)
    obs, info = task.reset(seed=0)
    shapes = {'observation': (25,), 'achieved_goal': (3,), 'desired_goal': (3,)}
    assert set(obs) == set(shapes)
    for key, shape in shapes.items():
        assert obs[key].shape == shape and obs[key].dtype == np.float64
    assert set(info) == {'is_success', 'distance'}
    np.testing.assert_array_equal(obs['achieved_goal'], obs['observation'][FetchObs.OBJECT_POS])
    obs2, reward, terminated, truncated, info = task.step(np.array([0.3, -0.2, 0.1, 1.0]))
    assert isinstance(reward, float) and reward in (-1.0, 0.0)
    assert terminated is False and truncated is False
    assert isinstance(info['is_success'], float) and isinstance(info['distance'], float)
    assert not np.shares_memory(obs2['observation'], task.observe()['observation'])
    assert task.elapsed_steps == 1
    task.close()


def test_push_matches_stock_gymnasium_fetch_push_bit_for_bit():
    task = make_task('push')
    stock = MujocoFetchPushEnv()
    obs, _ = task.reset(seed=11)
    stock_obs, _ = stock.reset(seed=11)
    for action in _random_actions(25, seed=4) * 1.5:  # also exercises clipping
        for key in obs:
            np.testing.assert_array_equal(obs[key], stock_obs[key])
        obs, reward, *_ = task.step(action)
        stock_obs, stock_reward, *_ = stock.step(action)
        assert reward == stock_reward
    stock.close()


@pytest.mark.parametrize('name', ['push', 'pick_and_place'])
def test_same_seed_same_trajectory_different_seed_differs(name):
    a, b, c = make_task(name), make_task(name), make_task(name)
    obs_a, _ = a.reset(seed=5)
    obs_b, _ = b.reset(seed=5)
    obs_c, _ = c.reset(seed=6)
    assert not np.array_equal(obs_a['desired_goal'], obs_c['desired_goal'])
    assert not np.array_equal(obs_a['observation'], obs_c['observation'])
    for action in _random_actions(6):
        for key in obs_a:
            np.testing.assert_array_equal(obs_a[key], obs_b[key])
        obs_a, *_ = a.step(action)
        obs_b, *_ = b.step(action)
    # Reseeding the same instance replays the same episode start.
    again, _ = a.reset(seed=5)
    first, _ = b.reset(seed=5)
    np.testing.assert_array_equal(again['observation'], first['observation'])


def test_truncation_at_max_episode_steps_and_no_step_after():
    task = make_task('push')
    task.reset(seed=0)
    flags = [task.step(np.zeros(4))[3] for _ in range(50)]
    assert flags == [False] * 49 + [True]
    with pytest.raises(RuntimeError, match='reset'):
        task.step(np.zeros(4))
    task.reset(seed=1)
    assert task.elapsed_steps == 0
    assert task.step(np.zeros(4))[3] is False


def test_step_before_reset_is_an_error():
    with pytest.raises(RuntimeError, match='reset'):
        make_task('push').step(np.zeros(4))


@pytest.mark.parametrize(
    'action, match',
    [
        (np.array([0.0, np.nan, 0.0, 0.0]), 'finite'),
        (np.array([0.0, 0.0, np.inf, 0.0]), 'finite'),
        (np.zeros(3), r'shape \(4,\)'),
        (np.zeros((1, 4)), r'shape \(4,\)'),
    ],
)
def test_bad_action_is_a_value_error_naming_it(action, match):
    task = make_task('push')
    task.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        task.step(action)
    assert task.elapsed_steps == 0


def test_actions_outside_bounds_are_clipped():
    a, b = make_task('push'), make_task('push')
    a.reset(seed=2)
    b.reset(seed=2)
    big = np.array([7.0, -3.0, 1.5, 9.0])
    obs_a, *_ = a.step(big)
    obs_b, *_ = b.step(np.clip(big, -1.0, 1.0))
    np.testing.assert_array_equal(obs_a['observation'], obs_b['observation'])
    np.testing.assert_array_equal(big, [7.0, -3.0, 1.5, 9.0])  # caller's array untouched


# ----------------------------------------------------------------------------- reward
def test_reward_is_batched_pure_and_a_distance_threshold():
    rng = np.random.default_rng(0)
    achieved = rng.uniform(0.0, 0.1, size=(64, 3))
    desired = rng.uniform(0.0, 0.1, size=(64, 3))
    distances = np.linalg.norm(achieved - desired, axis=-1)
    expected = -(distances > 0.05).astype(np.float32)
    task = make_task('push')
    rewards = task.compute_reward(achieved, desired, None)
    assert rewards.dtype == np.float32 and rewards.shape == (64,)
    np.testing.assert_array_equal(rewards, expected)
    assert 0 < (rewards == 0).sum() < 64  # both outcomes are exercised
    np.testing.assert_array_equal(sparse_reward(achieved, desired, 0.05), expected)
    np.testing.assert_allclose(goal_distance(achieved, desired), distances)
    batched = sparse_reward(achieved.reshape(8, 8, 3), desired.reshape(8, 8, 3), 0.05)
    np.testing.assert_array_equal(batched, expected.reshape(8, 8))
    assert sparse_reward(desired[0], desired[0], 0.05) == 0.0
    with pytest.raises(ValueError, match='last axis'):
        goal_distance(np.zeros(3), np.zeros(2))


@pytest.mark.parametrize('name', FETCH_TASKS)
def test_is_success_and_reward_agree_with_distance(name):
    task = make_task(name)
    obs, info = task.reset(seed=3)
    for action in _random_actions(10, seed=1):
        obs, reward, _, _, info = task.step(action)
        d = np.linalg.norm(obs['achieved_goal'] - obs['desired_goal'])
        assert info['distance'] == pytest.approx(d)
        assert info['is_success'] == float(d <= 0.05)
        assert reward == info['is_success'] - 1.0
        assert reward == task.compute_reward(obs['achieved_goal'], obs['desired_goal'])
    # A goal moved onto the block is reached at the next step.
    task.set_goal(task.observe()['achieved_goal'])
    _, reward, _, _, info = task.step(np.zeros(4))
    assert info['is_success'] == 1.0 and reward == 0.0


def test_pick_and_place_puts_about_half_the_goals_in_the_air():
    task = make_task('pick_and_place')
    table_z = task.reset(seed=0)[0]['achieved_goal'][2]
    heights = np.array([task.reset(seed=s)[0]['desired_goal'][2] for s in range(60)])
    in_air = np.mean(heights > table_z + 1e-6)
    assert 0.25 < in_air < 0.75
    push = make_task('push')
    push_heights = [push.reset(seed=s)[0]['desired_goal'][2] for s in range(10)]
    np.testing.assert_allclose(push_heights, push_heights[0])


def test_pick_and_place_fingers_follow_the_gripper_action_but_push_fingers_stay_blocked():
    pnp, push = make_task('pick_and_place'), make_task('push')
    pnp.reset(seed=0)
    push.reset(seed=0)
    for _ in range(5):
        pnp_obs, *_ = pnp.step(np.array([0.0, 0.0, 0.0, 1.0]))
        push_obs, *_ = push.step(np.array([0.0, 0.0, 0.0, 1.0]))
    assert (pnp_obs['observation'][FetchObs.GRIPPER_STATE] > 0.02).all()
    np.testing.assert_array_equal(push_obs['observation'][FetchObs.GRIPPER_STATE], 0.0)


# ------------------------------------------------------------------- planner interface
@pytest.mark.parametrize('name', FETCH_TASKS)
def test_get_state_set_state_reproduces_the_next_observation(name):
    task = make_task(name)
    task.reset(seed=4)
    actions = _random_actions(8, seed=2)
    for action in actions[:4]:
        task.step(action)
    state = task.get_state()
    saved = task.observe()
    task.simulate(actions[4])
    expected = task.observe()
    task.simulate(actions[5])
    task.set_state(state)
    for key in saved:
        np.testing.assert_array_equal(task.observe()[key], saved[key])
    task.simulate(actions[4])
    for key in expected:
        np.testing.assert_array_equal(task.observe()[key], expected[key])
    # A second instance (a planner's private copy) reproduces it too.
    copy = make_task(name)
    copy.reset(seed=99)
    copy.set_state(state)
    copy.set_goal(saved['desired_goal'])
    copy.simulate(actions[4])
    for key in expected:
        np.testing.assert_array_equal(copy.observe()[key], expected[key])
    with pytest.raises(ValueError, match='state must have shape'):
        task.set_state(state[:-1])


def test_simulate_does_no_episode_bookkeeping():
    task = make_task('push')
    task.reset(seed=0)
    for _ in range(60):
        task.simulate(np.zeros(4))
    assert task.elapsed_steps == 0


# ---------------------------------------------------------------------------- friction
def _block_table_contact_frictions(task: FetchTask) -> list[float]:
    data = task.data
    frictions = []
    for i in range(data.ncon):
        pair = set(data.contact.geom[i])
        if task.block_geom_id in pair and pair & set(task.table_geom_ids.tolist()):
            frictions.append(float(data.contact.friction[i][0]))
    return frictions


@pytest.mark.parametrize('name, expected', [('slippery_push', 0.18), ('push', 1.0)])
def test_block_table_contact_friction(name, expected):
    task = make_task(name)
    task.reset(seed=0)
    for _ in range(25):  # gripper stays put above the table; the block settles
        obs, *_ = task.step(np.zeros(4))
    speed = np.abs(obs['observation'][FetchObs.OBJECT_VELP]).max()
    assert speed < 1e-4  # at rest (m per step)
    frictions = _block_table_contact_frictions(task)
    assert len(frictions) >= 1
    assert frictions == [pytest.approx(expected)] * len(frictions)


def test_slippery_push_block_slides_further_when_launched():
    # Launch the block at 0.5 m/s away from the gripper; it slides v^2 / (2 mu g):
    # ~0.013 m at mu = 1.0 and ~0.07 m at mu = 0.18.
    travelled = {}
    for name in ('push', 'slippery_push'):
        task = make_task(name)
        obs, _ = task.reset(seed=0)
        start = obs['achieved_goal']
        away = -obs['observation'][FetchObs.OBJECT_REL_POS][:2]
        block_joint = task.model.joint('object0:joint')
        velocity = task.data.qvel[block_joint.dofadr[0] : block_joint.dofadr[0] + 3]
        velocity[:2] = 0.5 * away / np.linalg.norm(away)
        for _ in range(10):
            obs, *_ = task.step(np.zeros(4))
        travelled[name] = np.linalg.norm(obs['achieved_goal'][:2] - start[:2])
    assert 0.005 < travelled['push'] < 0.04
    assert 0.05 < travelled['slippery_push'] < 0.2
    assert travelled['slippery_push'] > 3.0 * travelled['push']


# ---------------------------------------------------------------------------- warnings
def test_mujoco_warnings_raise_or_warn(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo writes MUJOCO_LOG.TXT into the working directory
    task = make_task('push')
    task.reset(seed=0)
    task.data.qvel[0] = 1e20
    with pytest.raises(MujocoWarningError, match='mjWARN_BADQVEL'):
        task.step(np.zeros(4))
    quiet = make_task('push', mujoco_warnings='warn')
    quiet.reset(seed=0)
    quiet.data.qvel[0] = 1e20
    with pytest.warns(MujocoWarning, match='mjWARN_BADQVEL'):
        quiet.step(np.zeros(4))


def test_task_spec_rejects_inconsistent_fields():
    with pytest.raises(ValueError, match='obs_fields'):
        dataclasses.replace(task_spec('push'), obs_dim=24)
    assert isinstance(task_spec('push'), TaskSpec)


def test_slippery_push_uses_2019_friction_on_every_geom():
    task = make_task('slippery_push')
    np.testing.assert_allclose(
        task.model.geom_friction, np.tile([0.18, 5e-3, 1e-4], (task.model.ngeom, 1))
    )
    push = make_task('push')
    assert push.model.geom_friction[push.block_geom_id, 0] == pytest.approx(1.0)


def test_a_spec_declares_its_action_fields_or_gets_generic_names():
    push = task_spec('push')
    arm = dataclasses.replace(push, name='arm', action_dim=7, action_fields=())
    assert arm.action_fields == tuple(f'a{i}' for i in range(7))
    named = dataclasses.replace(
        push, name='arm', action_dim=7, action_fields=tuple(f'j{i}' for i in range(7))
    )
    assert named.action_fields[-1] == 'j6'
    with pytest.raises(ValueError, match="task 'arm': 3 action_fields for action_dim 7"):
        dataclasses.replace(push, name='arm', action_dim=7, action_fields=('a', 'b', 'c'))


def test_a_spec_declares_its_goal_fields_generic_names_or_none():
    push = task_spec('push')
    assert push.goal_fields == ('x', 'y', 'z') and push.goal_dim == 3 and push.has_goal
    assert 'm per step' in push.action_units
    generic = dataclasses.replace(push, name='reach', goal_dim=2, goal_fields=())
    assert generic.goal_fields == ('g0', 'g1')
    fixed = dataclasses.replace(push, name='pusher', goal_dim=0, goal_fields=())
    assert fixed.goal_fields == () and not fixed.has_goal
    with pytest.raises(ValueError, match="^task 'reach': 3 goal_fields for goal_dim 2$"):
        dataclasses.replace(push, name='reach', goal_dim=2)
    with pytest.raises(ValueError, match="^task 'bad': goal_dim -1 must be an integer >= 0$"):
        dataclasses.replace(push, name='bad', goal_dim=-1, goal_fields=())
    with pytest.raises(ValueError, match="goal_fields names 'x' more than once"):
        dataclasses.replace(push, name='bad', goal_fields=('x', 'x', 'z'))
    with pytest.raises(ValueError, match="goal_fields must be non-empty names.*got ''"):
        dataclasses.replace(push, name='bad', goal_fields=('x', '', 'z'))
    with pytest.raises(ValueError, match='starts with a goal prefix'):
        fields = ('desired_goal.x', *push.obs_fields[1:])
        dataclasses.replace(push, name='bad', obs_fields=fields)


def test_the_specs_module_and_the_simulated_tasks_agree():
    """The specs are built without MuJoCo (tasks.specs); the simulation module reuses them."""
    import rpl_sim_bridge.tasks as tasks
    from rpl_sim_bridge.tasks import fetch, specs

    assert set(specs.FETCH_TASKS) == set(fetch.FETCH_ENVS) == set(FETCH_TASKS)
    assert fetch.FetchTaskConfig is specs.FetchTaskConfig is tasks.FetchTaskConfig
    assert tasks.FetchTask is fetch.FetchTask and tasks.sparse_reward is sparse_reward
    with pytest.raises(AttributeError, match='no attribute'):
        tasks.NoSuchTask  # noqa: B018


def test_fixed_goal_spec_rewards_transitions_and_scores_observations():
    """A fixed-goal spec's step_reward / obs_success are reached through
    transition_reward / final_success, checked for sizes; a goal task has neither."""
    import dataclasses as dc

    from rpl_sim_bridge.tasks import task_spec
    from rpl_sim_bridge.tasks.registry import TaskSpec

    def reward(next_obs, action):
        return -np.abs(next_obs[..., 0]) - 0.1 * np.sum(action**2, axis=-1)

    spec = TaskSpec(
        name='fixed', description='d', obs_dim=2, goal_dim=0, action_dim=1,
        max_episode_steps=5, distance_threshold=0.05, obs_fields=('a', 'b'),
        action_low=-1.0, action_high=1.0, control_dt=0.1, step_reward=reward,
        obs_success=lambda obs: (np.abs(obs[..., 0]) <= 0.05).astype(np.float32),
    )  # fmt: skip
    r = spec.transition_reward(np.array([[0.5, 0.0], [0.0, 1.0]]), np.array([[1.0], [0.0]]))
    assert r.dtype == np.float32
    np.testing.assert_allclose(r, [-0.6, 0.0])
    np.testing.assert_array_equal(spec.final_success(np.array([[0.01, 9.0], [0.2, 0.0]])), [1, 0])
    with pytest.raises(ValueError, match=r'next_obs must have shape \(\.\.\., 2\)'):
        spec.transition_reward(np.zeros((3, 3)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match='declares no step_reward'):
        task_spec('push').transition_reward(np.zeros(25), np.zeros(4))
    with pytest.raises(ValueError, match='declares no obs_success'):
        dc.replace(spec, obs_success=None).final_success(np.zeros(2))


def test_a_plugin_that_makes_its_reward_function_again_is_not_refused(monkeypatch):
    """A fixed-goal plug-in builds its spec in the task from its config, with a reward made
    anew (a functools.partial): the functions never compare equal, and the spec check
    refused an honest plug-in with two identical-looking values."""
    import functools

    from rpl_sim_bridge.tasks.fetch import FetchTask

    def reward(obs, action, k):
        return -k

    def spec_with(k):
        base = dataclasses.replace(task_spec('push'), name='test_long_push', max_episode_steps=100)
        return dataclasses.replace(base, step_reward=functools.partial(reward, k=k))

    class Rewarded(FetchTask):
        @property
        def spec(self):
            return spec_with(0.1)

        @spec.setter
        def spec(self, value):
            pass

    monkeypatch.setattr(registry, '_REGISTRY', dict(registry._REGISTRY))
    register_task('test_long_push', spec_with(0.1), lambda **kw: _long_push(kind=Rewarded, **kw))
    make_task('test_long_push').close()
