"""Episode log (what the episode monitor collects) and the demo's model choice and summary."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from rpl_bringup import demo
from rpl_bringup.episode_log import (
    ControlTally,
    EpisodeLog,
    EpisodeRecord,
    summary_from_dict,
    summary_line,
    wilson_interval,
)
from rpl_bringup.launch_shim import LaunchError
from rpl_interfaces.codec import StampedVector
from rpl_interfaces.contract import ACTION_FIELDS, EPISODE_FIELDS, terminal_tag


def _record(episode: int, success: bool, distance: float, fallback_base: int = 0):
    # payload order: success, final_distance, return, steps, fallback_base, fallback_zero
    payload = np.array([float(success), distance, -10.0, 50.0, fallback_base, 0.0])
    return EpisodeRecord.from_payload(episode, payload, stamp_ns=1_500_000_000)


def test_record_reads_the_payload_by_field_name():
    assert EPISODE_FIELDS[:2] == ('success', 'final_distance')
    r = _record(4, True, 0.02, fallback_base=3)
    assert (r.episode, r.success, r.final_distance, r.steps) == (4, True, 0.02, 50)
    assert (r.episode_return, r.fallback_base, r.fallback_zero, r.stamp_s) == (-10, 3, 0, 1.5)
    with pytest.raises(ValueError, match='needs 6 values'):
        EpisodeRecord.from_payload(0, np.zeros(5))


def test_wilson_interval_brackets_the_rate_and_narrows_with_trials():
    lo, hi = wilson_interval(5, 10)
    assert lo < 0.5 < hi
    lo2, hi2 = wilson_interval(50, 100)
    assert hi2 - lo2 < hi - lo
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_summary_and_json_round_trip(tmp_path):
    log = EpisodeLog()
    log.add_episode(_record(0, True, 0.01))
    log.add_episode(_record(1, False, 0.30, fallback_base=7))
    log.add_episode(_record(1, False, 0.20, fallback_base=5))  # a repeat replaces
    s = log.summary()
    assert (s.episodes, s.success_rate, s.steps, s.fallback_base) == (2, 0.5, 100, 5)
    assert s.mean_final_distance == pytest.approx(0.105)
    path = str(tmp_path / 'sub' / 'episodes.json')
    log.write_json(path)
    with open(path) as f:
        data = json.load(f)
    assert summary_from_dict(data) == s
    assert [e['episode'] for e in data['episodes']] == [0, 1]
    assert os.listdir(tmp_path / 'sub') == ['episodes.json']  # no temporary file left


def test_a_long_run_keeps_the_latest_records_and_sums_every_episode(monkeypatch, tmp_path):
    """A monitor left running for days kept every record and rewrote them all every second
    (a growing file, a write of 0.5 s after a day); now it keeps the latest KEPT_EPISODES and
    the summary still counts every episode."""
    from rpl_bringup import episode_log

    monkeypatch.setattr(episode_log, 'KEPT_EPISODES', 5)
    log = EpisodeLog()
    for k in range(12):
        log.add_episode(_record(k, k % 3 == 0, 0.01 * k, fallback_base=k))
    log.add_episode(_record(11, True, 0.0, fallback_base=0))  # a repeat of a kept one
    s = log.summary()
    assert s.episodes == 12 and s.steps == 12 * 50
    assert s.success_rate == pytest.approx(5 / 12)  # 0, 3, 6, 9 and the repeated 11
    assert s.fallback_base == sum(range(11))
    assert s.mean_final_distance == pytest.approx(0.01 * sum(range(11)) / 12)
    path = tmp_path / 'results.json'
    log.write_json(str(path))
    data = json.loads(path.read_text())
    assert [e['episode'] for e in data['episodes']] == [7, 8, 9, 10, 11]
    assert data['episodes_not_kept'] == 7 and summary_from_dict(data) == s
    for k in range(3):  # a sim bridge restarted under the monitor: ids from 0 again
        log.add_episode(_record(k, True, 0.0))
    kept = sorted(log.episodes)
    assert kept == [0, 1, 2, 10, 11] and log.summary().episodes == 15  # the new run's kept


def test_an_empty_log_is_standard_json_and_reads_back_as_nan(tmp_path):
    """The means over no episode were written NaN, which jq and JavaScript refuse."""
    path = tmp_path / 'episodes.json'
    EpisodeLog().write_json(str(path))
    text = path.read_text()

    def refuse(constant):
        raise ValueError(f'{constant} is not JSON')

    data = json.loads(text, parse_constant=refuse)  # NaN / Infinity would raise
    assert data['summary']['success_rate'] is None
    back = summary_from_dict(data)
    assert back.episodes == 0 and math.isnan(back.success_rate)
    assert math.isnan(back.mean_final_distance)


def test_summary_line_shows_the_fallbacks_of_the_run():
    """Issue 9: fallbacks of an evaluation run are shown in its summary, not only as WARN
    lines (the monitor prints this line when the launch ends)."""
    log = EpisodeLog()
    log.add_episode(_record(0, True, 0.01))
    log.add_episode(_record(1, False, 0.20, fallback_base=5))
    line = summary_line(log.summary())
    assert line.startswith('2 episodes: success rate 0.50 (95 % CI ')
    assert line.endswith('fallbacks base 5 zero 0 in 100 steps (5.0 %)')
    assert summary_line(EpisodeLog().summary()) == 'no episode finished'


def test_control_tally_counts_tags_and_non_finite_values():
    tally = ControlTally()
    tally.add('residual', np.array([0.5, -0.9, 0.0, 1.0]))
    tally.add('base', np.array([np.nan, 0.2, 0.0, -0.3]))
    assert tally.count == 2 and tally.tags == {'residual': 1, 'base': 1}
    assert tally.non_finite == 1
    assert tally.max_abs == 1.0
    assert math.isnan(EpisodeLog().summary().success_rate)


def test_demo_model_choice(tmp_path):
    assert demo.resolve_model('none') == ''
    with pytest.raises(LaunchError, match='--model auto found no'):  # was '': base only
        demo.resolve_model('auto', search_dirs=[str(tmp_path)])
    older, newer = tmp_path / 'slippery_push_a.onnx', tmp_path / 'slippery_push_b.onnx'
    older.write_bytes(b'x')
    newer.write_bytes(b'x')
    os.utime(older, (1, 1))
    assert demo.resolve_model('auto', search_dirs=[str(tmp_path)]) == str(newer)
    assert demo.resolve_model(str(older)) == str(older)
    with pytest.raises(LaunchError, match='does not exist'):
        demo.resolve_model(str(tmp_path / 'missing.onnx'))


def test_demo_summary_says_base_only_without_a_model():
    log = EpisodeLog()
    log.add_episode(_record(0, True, 0.01))
    text = demo.format_summary(
        log.to_dict(), controller='reactive_push', model='', episodes=1, seed=0, wall_s=2.0
    )
    assert 'base only (no trained residual yet)' in text
    assert 'success rate        1.00 (95% CI 0.21-1.00)' in text


def test_the_action_names_are_the_majority_of_the_action_messages():
    # A 7-joint arm's actions are counted like Fetch's. Before: the first valid message
    # fixed the names, so one stray Fetch-named message first made every real one uncounted.
    joints = tuple(f'j{i}' for i in range(7))

    def vec(values, episode=0, tag='ctl'):
        return StampedVector(episode, 0, np.asarray(values, float), 0, tag)

    log = EpisodeLog()
    log.add_action('base_actions', ACTION_FIELDS, vec(np.zeros(4), tag='stray'))
    assert log.base_actions.count == 1 and log.to_dict()['action_fields'] == list(ACTION_FIELDS)
    log.add_action('base_actions', ('a', 'a'), vec(np.zeros(2)))  # a problem: never counted
    for episode in range(2):
        log.add_action('base_actions', joints, vec(np.arange(7), episode))
        log.add_action('commands', joints, vec(np.ones(7), episode, 'residual'))
    assert log.base_actions.count == 2 and log.base_actions.tags == {'ctl': 2}
    assert log.commands.count == 2 and log.commands.max_abs == 1.0
    assert log.to_dict()['action_fields'] == list(joints)
    assert EpisodeLog().commands.count == 0  # no action message yet


def test_a_terminal_observation_is_counted_apart_not_as_a_step():
    log = EpisodeLog()
    for k in range(3):
        log.add_observation(StampedVector(0, k, np.zeros(5), 0, 'push'))
    log.add_observation(StampedVector(0, 3, np.full(5, 9.0), 0, terminal_tag('push')))
    assert log.observations.count == 3 and log.observations.tags == {'push': 3}
    assert log.observations.max_abs == 0.0
    assert log.terminal_observations == 1 and log.to_dict()['terminal_observations'] == 1


def test_write_json_leaves_no_temporary_file_when_it_cannot_replace_the_target(tmp_path):
    target = tmp_path / 'results.json'
    target.mkdir()  # a folder where the file should go
    with pytest.raises(IsADirectoryError):
        EpisodeLog().write_json(str(target))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['results.json']


def test_write_json_keeps_the_last_complete_file_and_usual_permissions(tmp_path, monkeypatch):
    """A full disk at a later save keeps the earlier file whole and names the file; the file
    has the usual permissions (mkstemp made it 0600, unlike every other output)."""
    from rpl_interfaces import output_files

    target = tmp_path / 'results.json'
    EpisodeLog().write_json(str(target))
    before = target.read_bytes()
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask

    def no_room(path, mode='r', *args, **kwargs):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(output_files, 'open', no_room, raising=False)
    log = EpisodeLog()
    log.terminal_observations = 3
    with pytest.raises(OSError) as info:
        log.write_json(str(target))
    assert info.value.filename == str(target) and info.value.errno == 28
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['results.json']
