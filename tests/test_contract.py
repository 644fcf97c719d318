"""The observation payload layout of the topic contract: built from a task, split by name."""

from __future__ import annotations

import numpy as np
import pytest

from rpl_interfaces.contract import observation_fields, split_observation_fields


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


@pytest.mark.parametrize(
    'names',
    [
        ['a', 'desired_goal.x', 'achieved_goal.x'],  # wrong order
        ['a', 'desired_goal.x', 'b'],  # observation after the goal
        ['a', 'achieved_goal.x'],  # no desired goal
        ['desired_goal.x'],  # no observation
        ['a', 'achieved_goal.x', 'achieved_goal.y', 'desired_goal.x'],  # sizes differ
    ],
)
def test_split_observation_fields_rejects_bad_layouts(names):
    with pytest.raises(ValueError, match='observation'):
        split_observation_fields(names)
