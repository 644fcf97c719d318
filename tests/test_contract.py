"""Payload layouts of the topic contract: observation fields (built, split by name) and the
episode result (encoded, decoded)."""

from __future__ import annotations

import numpy as np
import pytest

from rpl_interfaces.contract import (
    EPISODE_FIELDS,
    EpisodeResult,
    observation_fields,
    split_observation_fields,
)


def test_observation_fields_then_split_round_trip():
    fields = observation_fields(('grip_pos.x', 'grip_pos.y', 'finger_width'), ('x', 'y', 'z'))
    assert fields == (
        'grip_pos.x',
        'grip_pos.y',
        'finger_width',
        'achieved_goal.x',
        'achieved_goal.y',
        'achieved_goal.z',
        'desired_goal.x',
        'desired_goal.y',
        'desired_goal.z',
    )
    layout = split_observation_fields(fields)
    assert layout.fields == fields
    assert (layout.obs_dim, layout.goal_dim) == (3, 3)
    payload = np.arange(9.0)
    np.testing.assert_array_equal(payload[layout.observation], [0, 1, 2])
    np.testing.assert_array_equal(payload[layout.achieved_goal], [3, 4, 5])
    np.testing.assert_array_equal(payload[layout.desired_goal], [6, 7, 8])


def test_split_observation_fields_without_achieved_goal():
    layout = split_observation_fields(['a', 'b', 'desired_goal.x', 'desired_goal.y'])
    assert (layout.obs_dim, layout.goal_dim) == (2, 2)
    assert layout.achieved_goal == slice(2, 2)


def test_fixed_goal_task_has_observation_fields_only():
    fields = observation_fields(('q0', 'q1', 'qd0'), ())
    assert fields == ('q0', 'q1', 'qd0')
    layout = split_observation_fields(fields)
    assert (layout.obs_dim, layout.goal_dim) == (3, 0)
    assert layout.observation_fields == fields and layout.goal_fields == ()
    payload = np.arange(3.0)
    assert payload[layout.achieved_goal].shape == payload[layout.desired_goal].shape == (0,)
    with_goal = split_observation_fields(observation_fields(('q0',), ('x', 'y')))
    assert with_goal.goal_fields == ('x', 'y')


@pytest.mark.parametrize(
    'names',
    [
        ['a', 'desired_goal.x', 'achieved_goal.x'],  # wrong order
        ['a', 'desired_goal.x', 'b'],  # observation after the goal
        ['a', 'achieved_goal.x'],  # achieved goal without a desired goal
        ['a', 'achieved_goal.x', 'desired_goal.y'],  # goal blocks name different coordinates
        [],  # nothing
        ['desired_goal.x'],  # no observation
        ['a', 'achieved_goal.x', 'achieved_goal.y', 'desired_goal.x'],  # sizes differ
    ],
)
def test_split_observation_fields_rejects_bad_layouts(names):
    with pytest.raises(ValueError, match='observation'):
        split_observation_fields(names)


def test_episode_result_payload_is_named_and_round_trips():
    result = EpisodeResult(
        episode=7,
        success=True,
        final_distance=0.03,
        episode_return=-12.0,
        steps=50,
        fallback_base=4,
        fallback_zero=1,
    )
    payload = result.as_vector()
    assert dict(zip(EPISODE_FIELDS, payload.tolist(), strict=True)) == {
        'success': 1.0,
        'final_distance': 0.03,
        'return': -12.0,
        'steps': 50.0,
        'fallback_base': 4.0,
        'fallback_zero': 1.0,
    }
    assert EpisodeResult.from_vector(7, payload) == result
    with pytest.raises(ValueError, match='episode payload needs 6 values'):
        EpisodeResult.from_vector(7, payload[:5])
