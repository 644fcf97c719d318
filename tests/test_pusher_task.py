"""The ``mbrl_pusher`` task: its spec (without MuJoCo), reward and success against hand
computations, the physics settings (zero gravity, torques), determinism per seed, the
object's start distribution, state save/restore and ``rpl eval`` with the zero controller."""

from __future__ import annotations

import json
import subprocess
import sys

import mujoco
import numpy as np
import pytest

from rpl_base_controllers import controller_info
from rpl_bringup import cli
from rpl_sim_bridge.tasks import make_task, task_spec
from rpl_sim_bridge.tasks.pusher import GYM_MIN_GOAL_DISTANCE, PUSHER_XML
from rpl_sim_bridge.tasks.pusher_specs import (
    GOAL_POS,
    OBJECT_POS,
    PUSHER_JOINTS,
    QVEL,
    TIP_POS,
)

NAME = 'mbrl_pusher'
SPEC = task_spec(NAME)


@pytest.fixture(scope='module')
def task():
    built = make_task(NAME)
    yield built
    built.close()


def _obs(tip, obj) -> np.ndarray:
    obs = np.zeros(20)
    obs[TIP_POS], obs[OBJECT_POS] = tip, obj
    return obs


# --------------------------------------------------------------------------------- spec
def test_the_spec_has_20_named_fields_seven_torques_and_no_goal():
    assert (SPEC.obs_dim, SPEC.goal_dim, SPEC.action_dim) == (20, 0, 7)
    assert not SPEC.has_goal and SPEC.goal_fields == ()
    assert SPEC.max_episode_steps == 150
    assert (SPEC.action_low, SPEC.action_high) == (-2.0, 2.0)
    assert SPEC.control_dt == pytest.approx(0.04)
    assert SPEC.distance_threshold == 0.05
    assert SPEC.obs_fields[0] == 'qpos.r_shoulder_pan_joint'
    assert SPEC.obs_fields[7] == 'qvel.r_shoulder_pan_joint'
    assert SPEC.obs_fields[13] == 'qvel.r_wrist_roll_joint'
    assert SPEC.obs_fields[14:] == ('tip.x', 'tip.y', 'tip.z', 'object.x', 'object.y', 'object.z')
    assert SPEC.action_fields == tuple(f'torque.{j}' for j in PUSHER_JOINTS)


def test_the_joint_names_goal_and_motors_are_the_xmls():
    model = mujoco.MjModel.from_xml_path(PUSHER_XML)
    names = tuple(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, i) for i in range(7))
    assert names == PUSHER_JOINTS
    np.testing.assert_array_equal(model.actuator_ctrlrange, np.tile([-2.0, 2.0], (7, 1)))
    np.testing.assert_array_equal(model.actuator_gear[:, 0], np.ones(7))  # action 2 = 2 N m
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    goal = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, 'goal')
    np.testing.assert_allclose(data.xipos[goal], GOAL_POS, atol=1e-12)


def test_the_spec_reward_and_success_need_no_simulator():
    code = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] in ('mujoco', 'gymnasium', 'gymnasium_robotics'):
            raise ImportError(f'{name} is blocked')
sys.meta_path.insert(0, Blocker())
import numpy as np
from rpl_sim_bridge.tasks import SimulatorUnavailableError, make_task, task_spec
spec = task_spec('mbrl_pusher')
obs = np.zeros((3, 20))
print(spec.obs_dim, spec.transition_reward(obs, np.zeros((3, 7))).shape,
      spec.final_success(obs).tolist())
try:
    make_task('mbrl_pusher')
except SimulatorUnavailableError as exc:
    print('unavailable:', 'is blocked' in str(exc))
"""
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert out.stdout.split('\n')[:2] == ['20 (3,) [0.0, 0.0, 0.0]', 'unavailable: True']


# ------------------------------------------------------------------- reward and success
def test_the_reward_is_the_pets_cost_by_hand():
    goal = np.array(GOAL_POS)
    obj = goal + [0.1, -0.2, 0.048]
    tip = obj + [0.03, 0.0, -0.01]
    action = np.array([1.0, -2.0, 0.0, 0.0, 0.5, 0.0, 0.0])
    # 1.25 * (0.1 + 0.2 + 0.048) + 0.5 * (0.03 + 0.01) + 0.1 * (1 + 4 + 0.25)
    expected = -(1.25 * 0.348 + 0.5 * 0.04 + 0.1 * 5.25)
    reward = SPEC.transition_reward(_obs(tip, obj), action)
    assert reward.dtype == np.float32 and reward.shape == ()
    assert float(reward) == pytest.approx(expected, rel=1e-6)
    batch = SPEC.transition_reward(np.stack([_obs(tip, obj), _obs(goal, goal)]), np.zeros((2, 7)))
    np.testing.assert_allclose(batch, [-(1.25 * 0.348 + 0.5 * 0.04), 0.0], rtol=1e-6, atol=1e-7)


def test_success_is_the_object_within_5_cm_of_the_goal_in_the_table_plane():
    goal = np.array(GOAL_POS)
    at = [
        [0.03, 0.04, 0.048],  # 0.05 m in xy: success (the boundary counts), z ignored
        [0.0, 0.049, 0.3],
        [0.03, 0.0401, 0.048],  # just outside
        [0.0, -0.2, 0.048],
    ]
    obs = np.stack([_obs(np.zeros(3), goal + d) for d in at])
    np.testing.assert_array_equal(SPEC.final_success(obs), [1.0, 1.0, 0.0, 0.0])


# ------------------------------------------------------------------------------ physics
def test_the_physics_settings_are_the_pets_ones(task):
    np.testing.assert_array_equal(task.model.opt.gravity, np.zeros(3))
    assert task.model.opt.timestep == 0.01 and task.config.frame_skip == 4


def test_at_rest_under_zero_torque_nothing_moves(task):
    task.reset(seed=3)
    qvel0 = task.data.qvel.copy()
    task.data.qvel[:] = 0.0  # the reset's small arm velocities off: the arm is at rest
    mujoco.mj_forward(task.model, task.data)
    before = task.observe()['observation']
    for _ in range(50):
        obs, *_ = task.step(np.zeros(7))
    np.testing.assert_allclose(obs['observation'], before, atol=1e-12)
    assert np.any(qvel0[:7] != 0.0)


def test_a_torque_moves_the_arm_and_the_effort_is_the_torque(task):
    task.reset(seed=4)
    action = np.array([2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    obs, *_ = task.step(action * 5.0)  # clipped to 2 N m
    assert obs['observation'][QVEL][0] > 0.05
    joints = task.joint_state()
    assert joints.names == PUSHER_JOINTS
    np.testing.assert_allclose(joints.effort, action, atol=1e-12)
    np.testing.assert_array_equal(joints.position, obs['observation'][:7])


def test_step_returns_the_specs_transition_reward_and_success(task):
    obs, info = task.reset(seed=5)
    assert obs['achieved_goal'].shape == (0,) and obs['desired_goal'].shape == (0,)
    rng = np.random.default_rng(0)
    for _ in range(20):
        action = rng.uniform(-3.0, 3.0, 7)
        obs, reward, terminated, truncated, info = task.step(action)
        expected = SPEC.transition_reward(obs['observation'], np.clip(action, -2.0, 2.0))
        assert reward == float(expected) and not terminated and not truncated
        assert info['is_success'] == float(SPEC.final_success(obs['observation']))
        obj_xy = obs['observation'][OBJECT_POS][:2]
        assert info['distance'] == pytest.approx(np.linalg.norm(obj_xy - GOAL_POS[:2]))


def test_the_episode_truncates_at_150_steps(task):
    task.reset(seed=6)
    for _ in range(149):
        assert not task.step(np.zeros(7))[3]
    assert task.step(np.zeros(7))[3]
    with pytest.raises(RuntimeError, match='truncated at 150 steps'):
        task.step(np.zeros(7))


# ------------------------------------------------------------------------------- resets
def test_a_seed_reproduces_the_episode(task):
    rng = np.random.default_rng(1)
    actions = rng.uniform(-2, 2, (30, 7))

    def run(seed: int) -> np.ndarray:
        obs, _ = task.reset(seed=seed)
        trace = [obs['observation']]
        trace += [task.step(a)[0]['observation'] for a in actions]
        return np.stack(trace)

    np.testing.assert_array_equal(run(7), run(7))
    assert not np.array_equal(run(7)[0], run(8)[0])


def test_the_object_starts_in_gymnasiums_ranges_away_from_the_goal(task):
    starts = np.stack([task.reset(seed=s)[0]['observation'][OBJECT_POS] for s in range(300)])
    offset = starts[:, :2] - GOAL_POS[:2]
    assert np.all((offset[:, 0] >= -0.2) & (offset[:, 0] <= 0.2))
    assert np.all((offset[:, 1] >= -0.3) & (offset[:, 1] <= 0.0))
    assert np.all(np.linalg.norm(offset, axis=1) > GYM_MIN_GOAL_DISTANCE)
    assert offset[:, 0].min() < -0.15 and offset[:, 0].max() > 0.15  # spread over the range
    np.testing.assert_allclose(starts[:, 2], -0.275, atol=1e-12)  # on the table
    arm = [task.reset(seed=s)[0]['observation'] for s in range(5)]
    for obs in arm:
        np.testing.assert_array_equal(obs[:7], np.zeros(7))
        assert np.all(np.abs(obs[QVEL]) <= 0.005)


def test_the_pets_object_start_is_around_its_mean():
    pets = make_task(NAME, object_start='pets')
    starts = np.stack([pets.reset(seed=s)[0]['observation'][OBJECT_POS] for s in range(200)])
    offset = starts[:, :2] - GOAL_POS[:2]
    np.testing.assert_allclose(offset.mean(axis=0), [0.15, -0.25], atol=0.006)
    np.testing.assert_allclose(offset.std(axis=0), [0.025, 0.025], atol=0.005)


def test_mbrl_pusher_pets_is_the_same_arm_with_the_pets_start():
    variant = make_task('mbrl_pusher_pets')
    assert variant.config.object_start == 'pets'
    assert task_spec('mbrl_pusher_pets').obs_fields == task_spec(NAME).obs_fields
    same_seed = make_task(NAME, object_start='pets')
    for seed in range(3):
        np.testing.assert_array_equal(
            variant.reset(seed=seed)[0]['observation'],
            same_seed.reset(seed=seed)[0]['observation'],
        )
    for name in ('pets', 'cached_pets'):
        assert 'mbrl_pusher_pets' in controller_info(name).tasks


def test_get_and_set_state_round_trip(task):
    task.reset(seed=9)
    for _ in range(10):
        task.step(np.full(7, 0.7))
    state = task.get_state()
    obs = task.observe()['observation']
    after = [task.step(np.full(7, -1.0))[0]['observation'] for _ in range(5)]
    task.set_state(state)
    np.testing.assert_array_equal(task.observe()['observation'], obs)
    task._elapsed_steps = 10
    again = [task.step(np.full(7, -1.0))[0]['observation'] for _ in range(5)]
    np.testing.assert_array_equal(np.stack(again), np.stack(after))
    with pytest.raises(ValueError, match='state must have shape'):
        task.set_state(state[:-1])


# ---------------------------------------------------------------------------- rpl eval
def test_rpl_eval_runs_the_zero_controller_and_reports_the_mean_return(tmp_path, capsys):
    out = tmp_path / 'eval.json'
    args = ['eval', '--task', NAME, '--controller', 'zero', '--episodes', '2']
    assert cli.main([*args, '--json', str(out), '--no-progress']) == 0
    result = json.loads(out.read_text())
    line = capsys.readouterr().out.splitlines()[0]
    assert line.endswith(f'; mean return {np.mean(result["returns"]):.2f}'), line
    assert result['successes'] == [False, False] and len(result['returns']) == 2
    # zero torque: the return is the goal and tip terms only, all 150 steps negative
    assert all(-400.0 < r < -50.0 for r in result['returns'])
