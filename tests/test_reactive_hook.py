"""Tests of ReactiveHook: each phase on synthetic observations, batching, registry, episodes."""

from __future__ import annotations

import numpy as np
import pytest

from rpl_base_controllers import controller_info, make_controller
from rpl_base_controllers.reactive_hook import ReactiveHook, ReactiveHookConfig
from rpl_sim_bridge.layout import HookObs
from rpl_sim_bridge.tasks import make_task

OPEN, CLOSED_ON_HANDLE, EMPTY = 0.05, 0.015, 0.0
BLOCK = np.array([1.85, 0.75, 0.425])
GOAL = np.array([1.65, 0.72, 0.42])
TARGET = np.array([BLOCK[0] - 0.5, BLOCK[1] - 0.05, 0.45])  # hook target behind the block


def _obs(gripper, hook, fingers, block=BLOCK) -> np.ndarray:
    """A 40-D hook observation with the given positions (m) and finger opening (m)."""
    obs = np.zeros(HookObs.DIM)
    obs[HookObs.GRIP_POS] = gripper
    obs[HookObs.OBJECT_POS] = block
    obs[HookObs.OBJECT_REL_POS] = np.asarray(block) - gripper
    obs[HookObs.GRIPPER_STATE] = fingers
    obs[HookObs.HOOK_POS] = hook
    obs[HookObs.HOOK_REL_POS] = np.asarray(hook) - gripper
    return obs


def _act(gripper, hook, fingers, block=BLOCK, goal=GOAL) -> np.ndarray:
    return ReactiveHook()(_obs(np.array(gripper), np.array(hook), fingers, block), goal)


HOOK_ON_TABLE = (1.35, 0.35, 0.415)


def test_far_from_the_hook_goes_above_it_opening_the_fingers():
    a = _act((1.34, 0.75, 0.53), HOOK_ON_TABLE, EMPTY)
    assert a[1] == -1.0 and a[3] == 1.0  # towards the hook (-y), fingers opening
    assert a[2] < 0.0  # hover height 0.515 below the gripper


def test_above_the_hook_with_closed_fingers_opens_them_without_moving():
    np.testing.assert_array_equal(_act((1.35, 0.35, 0.5), HOOK_ON_TABLE, EMPTY), [0, 0, 0, 1])


def test_above_the_hook_with_open_fingers_descends_below_the_handle():
    a = _act((1.35, 0.35, 0.5), HOOK_ON_TABLE, OPEN)
    assert a[2] == -1.0 and a[3] == 1.0 and abs(a[0]) < 1e-9 and abs(a[1]) < 1e-9


def test_at_the_handle_closes_the_fingers():
    np.testing.assert_array_equal(_act((1.35, 0.35, 0.42), HOOK_ON_TABLE, OPEN), [0, 0, 0, -1])


def test_fingers_closed_on_nothing_do_not_count_as_holding():
    # Closed but empty at the handle: close again (grasp phase), not a carry.
    np.testing.assert_array_equal(_act((1.35, 0.35, 0.42), HOOK_ON_TABLE, EMPTY), [0, 0, 0, -1])


def test_held_hook_on_the_table_is_lifted_straight_up():
    a = _act((1.35, 0.35, 0.42), HOOK_ON_TABLE, CLOSED_ON_HANDLE)
    assert a[2] > 0.0 and a[3] == -1.0
    assert a[0] == 0.0 and a[1] == 0.0


def test_lifted_hook_moves_over_its_target_at_the_carry_height():
    hook = (1.30, 0.45, 0.50)
    a = _act((1.30, 0.45, 0.505), hook, CLOSED_ON_HANDLE)
    assert a[0] > 0.0 and a[1] == 1.0 and a[3] == -1.0  # towards (1.35, 0.70)
    assert abs(a[2]) < 0.1


def test_hook_over_its_target_is_lowered():
    hook = (TARGET[0], TARGET[1], 0.50)
    a = _act((hook[0], hook[1], 0.505), hook, CLOSED_ON_HANDLE)
    np.testing.assert_allclose(a, [0.0, 0.0, -0.5, -1.0], atol=1e-9)  # gain 10 x 0.05 m


@pytest.mark.parametrize('trail', [0.0, 0.06])
def test_hook_in_place_sweeps_towards_the_goal(trail):
    hook = TARGET - (trail, 0.0, 0.0)  # the hook may trail its target while it pulls
    a = _act(hook + (0.0, 0.0, 0.005), hook, CLOSED_ON_HANDLE)
    direction = (GOAL - BLOCK)[:2] / np.linalg.norm((GOAL - BLOCK)[:2])
    np.testing.assert_allclose(a[:2], 0.4 * direction)
    assert a[2] == 0.0 and a[3] == -1.0


def test_hook_trailing_beyond_the_slack_is_carried_back():
    hook = TARGET - (0.15, 0.0, 0.0)
    a = _act(hook + (0.0, 0.0, 0.005), hook, CLOSED_ON_HANDLE)
    assert a[0] > 0.0 and a[2] > 0.0  # back towards the target, at the carry height


def test_block_at_the_goal_stops_with_closed_fingers():
    block = GOAL + (0.004, -0.004, 0.005)  # |dx| + |dy| = 0.008 <= 0.01
    a = _act(TARGET, TARGET, CLOSED_ON_HANDLE, block=block)
    np.testing.assert_array_equal(a, [0, 0, 0, -1])


def test_batch_equals_rows_and_rejects_the_fetch_observation():
    controller = ReactiveHook()
    rows = [
        _obs(np.array((1.34, 0.75, 0.53)), np.array(HOOK_ON_TABLE), EMPTY),
        _obs(np.array((1.35, 0.35, 0.42)), np.array(HOOK_ON_TABLE), OPEN),
        _obs(TARGET + (0, 0, 0.005), TARGET, CLOSED_ON_HANDLE),
    ]
    batch = controller.act_batch(np.array(rows), np.tile(GOAL, (3, 1)))
    for row, action in zip(rows, batch, strict=True):
        np.testing.assert_array_equal(controller(row, GOAL), action)
    assert np.all(np.abs(batch) <= 1.0)
    with pytest.raises(ValueError, match='40-D hook observation'):
        controller.act_batch(np.zeros((1, 25)), GOAL[None])


def test_registered_for_the_hook_tasks_with_typed_parameters():
    info = controller_info('reactive_hook')
    assert set(info.tasks) >= {'hook', 'noisy_hook', 'complex_hook'}
    params = {p.name: p.default for p in info.params}
    assert params['lift_z'] == 0.5 and params['sweep_speed'] == 0.4
    assert params['grasp_offset_z'] == -0.05 and params['place_slack'] == 0.1
    controller = make_controller('reactive_hook', task='noisy_hook', sweep_speed=0.3)
    assert controller.config == ReactiveHookConfig(sweep_speed=0.3)
    with pytest.raises(ValueError, match='meant for tasks'):
        make_controller('reactive_hook', task='push')


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_clean_hook_episode_succeeds(seed):
    task = make_task('hook')
    controller = make_controller('reactive_hook', task='hook')
    obs, _ = task.reset(seed=seed)
    for _ in range(task.spec.max_episode_steps):
        obs, _, _, truncated, info = task.step(controller(obs['observation'], obs['desired_goal']))
    assert truncated and info['is_success'] == 1.0, info
