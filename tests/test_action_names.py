"""One rule for a stream's action names (rpl_interfaces.action_names), used by the bag reader
and the episode monitor: the valid names most action messages carry, the first on a tie."""

from __future__ import annotations

import numpy as np
from bag_builders import write_bag

from rpl_bags.recorded import load_run
from rpl_bringup.episode_log import EpisodeLog
from rpl_interfaces.action_names import (
    ActionNameVote,
    action_field_problem,
    stream_action_fields,
)
from rpl_interfaces.codec import StampedVector
from rpl_interfaces.contract import ACTION_FIELDS

JOINTS = tuple(f'joint{i}.torque' for i in range(7))


def test_the_majority_wins_wherever_the_stray_names_come():
    for stray_at in (0, 2, 4):
        names = [JOINTS] * 4
        names.insert(stray_at, ACTION_FIELDS)
        assert stream_action_fields(names) == JOINTS


def test_a_tie_goes_to_the_names_seen_first_and_invalid_names_never_win():
    assert stream_action_fields([ACTION_FIELDS, JOINTS, JOINTS, ACTION_FIELDS]) == ACTION_FIELDS
    assert stream_action_fields([('a', 'a')] * 3 + [(), ('x', '')] * 3 + [JOINTS]) == JOINTS
    assert stream_action_fields([('a', 'a'), ()]) is None
    assert stream_action_fields([]) is None


def test_the_vote_follows_the_stream_as_it_comes():
    vote = ActionNameVote()
    assert vote.fields is None
    assert vote.add(ACTION_FIELDS) and vote.fields == ACTION_FIELDS  # the only one so far
    assert not vote.add(('a', 'a'))
    vote.add(JOINTS)
    assert vote.fields == ACTION_FIELDS  # a tie: the first seen
    vote.add(JOINTS)
    assert vote.fields == JOINTS and vote.counts == {ACTION_FIELDS: 1, JOINTS: 2}


def test_problems_are_named():
    assert action_field_problem(()) == 'no action fields after episode, step'
    assert action_field_problem(('a', 'b', 'a')) == "action field names repeat: ['a']"
    assert action_field_problem(('a', '')) == 'an action field name is empty'
    assert action_field_problem(JOINTS) == ''


def test_the_bag_reader_and_the_episode_monitor_agree_on_a_stray_first_message(tmp_path):
    """Before: the monitor took the first valid message's names, the bag reader the
    majority; a stray Fetch-named base action first made them disagree."""

    def stray_first(put, ep, k, t):
        if (ep, k) == (0, 0):
            put('base_action', 0, 0, np.zeros(4), t - 10, 'stray', ACTION_FIELDS)

    path = tmp_path / 'arm'
    write_bag(path, episodes=1, steps=3, action_fields=JOINTS, extra=stray_first)
    run = load_run(path)
    assert run.action_fields == JOINTS
    log = EpisodeLog()  # fed what the monitor receives, in the same order
    log.add_action('base_actions', ACTION_FIELDS, StampedVector(0, 0, np.zeros(4), 0, 'stray'))
    for k in range(3):
        log.add_action('base_actions', JOINTS, StampedVector(0, k, np.zeros(7), 0, 'ctl'))
        log.add_action('commands', JOINTS, StampedVector(0, k, np.zeros(7), 0, 'residual'))
    assert log.action_names.fields == run.action_fields
    assert log.base_actions.tags == {'ctl': 3}
