"""Bag I/O on hand-made bags: round trip, evaluation numbers, replay, and damaged input.

The bags are written with :class:`rpl_bags.writer.BagWriter` from known per-step values, so
every number read back (payloads, stamps, latencies, residual norms, command differences)
is known exactly. The recorder and reader on a real stack run are in test_bag_recording.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from bag_builders import (
    BASE_DELAY,
    COMMAND_DELAY,
    GOAL_DIM,
    NS,
    OBS_DIM,
    OBS_FIELDS,
    PERIOD,
    T0,
    base_action,
    obs_stamp,
    observation,
    write_bag,
)
from helpers import SideNode, set_model_metadata, stop_process
from onnx_builders import known_weights, linear_model, nan_in_range_model

from rpl_bags import bag_cli
from rpl_bags.bag_eval import evaluate_run
from rpl_bags.bag_replay import format_report, replay_model
from rpl_bags.playback import (
    parse_remaps,
    play_names,
    playback_offsets,
    played_namespaces,
    select_topics,
)
from rpl_bags.reader import read_raw_bag
from rpl_bags.recorded import load_run
from rpl_bags.topics import (
    BagError,
    encode_vector,
    parse_topic_list,
    recorded_topics,
    resolve_topic,
    typestore,
)
from rpl_bags.writer import BagWriter
from rpl_interfaces import contract
from rpl_interfaces.codec import StampedVector
from rpl_residual_node.mixing import ResidualConfig
from rpl_residual_node.policy import ResidualPolicy


@pytest.fixture
def bag(tmp_path) -> tuple[pathlib.Path, dict]:
    path = tmp_path / 'run'
    return path, write_bag(path)


def mcap_file(path: pathlib.Path) -> pathlib.Path:
    (file,) = path.glob('*.mcap')
    return file


# --- topics and writing ------------------------------------------------------------------


def test_recorded_topics_live_in_the_namespace_with_the_contract_qos():
    specs = {s.name: s for s in recorded_topics('/rpl')}
    assert list(specs) == [
        '/rpl/observation',
        '/rpl/base_action',
        '/rpl/residual',
        '/rpl/command',
        '/rpl/episode',
        '/diagnostics',
        '/rpl/joint_states',
    ]
    assert specs['/rpl/episode'].qos.transient_local
    assert specs['/diagnostics'].msgtype == 'diagnostic_msgs/msg/DiagnosticArray'
    assert specs['/rpl/joint_states'].msgtype == 'sensor_msgs/msg/JointState'
    assert not specs['/rpl/joint_states'].qos.transient_local
    # The recorder subscribes as the loop's nodes do; the bag states what the stack offers
    # (it stated volatile, depth 10: a played bag gave a late joiner no history, and the
    # project's own recorder warned of a volatile publisher).
    observation = specs['/rpl/observation']
    assert not observation.qos.transient_local and observation.qos.depth == 10
    assert observation.offered_qos == contract.QosSpec(500, True, True)
    assert specs['/rpl/joint_states'].offered_qos == specs['/rpl/joint_states'].qos
    assert resolve_topic('/', 'command') == '/command'
    with pytest.raises(BagError, match="got 'observation,cmd'"):
        parse_topic_list('observation,cmd')
    # Twice: the recorder used to fail after creating the bag, with a 1,275-character line.
    with pytest.raises(BagError, match='topics lists observation twice .*: give each topic once'):
        parse_topic_list('observation, command,observation')


def test_typestore_hashes_equal_the_ones_rclpy_announces():
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import JointState

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node('hash_probe', context=context)
        for cls, name in ((JointState, '/hash_probe/js'), (DiagnosticArray, '/hash_probe/d')):
            node.create_publisher(cls, name, 1)
            (info,) = node.get_publishers_info_by_topic(name)
            assert str(info.topic_type_hash) == typestore().hash_rihs01(info.topic_type)
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_an_existing_path_is_never_written_over(tmp_path, bag):
    path, _ = bag
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    with pytest.raises(BagError, match=r'already exists \(bags are never written over'):
        BagWriter(path, recorded_topics(NS))
    empty = tmp_path / 'empty_dir'
    empty.mkdir()
    with pytest.raises(BagError, match='already exists'):
        BagWriter(empty, recorded_topics(NS))
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert list(empty.iterdir()) == []
    with pytest.raises(BagError, match="storage must be one of \\['mcap', 'sqlite3'\\]"):
        BagWriter(tmp_path / 'new', recorded_topics(NS), storage='rosbag1')


# --- reading a healthy bag ---------------------------------------------------------------


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_round_trip_gives_every_value_stamp_and_result(tmp_path, storage):
    path = tmp_path / 'run'
    written = write_bag(path, episodes=3, steps=4, storage=storage)
    run = load_run(path)
    assert run.problems == ()
    topics = read_raw_bag(path).topics  # the offered QoS, as rpl bag play publishes with
    assert topics[f'{NS}/command'].qos == contract.QosSpec(500, True, True)
    assert topics['/diagnostics'].qos == contract.DIAGNOSTICS_QOS
    assert (run.namespace, run.task) == (NS, 'toy_task')
    assert run.layout.fields == OBS_FIELDS and run.layout.obs_dim == OBS_DIM
    assert run.action_fields == contract.ACTION_FIELDS  # as recorded in the messages
    assert run.counts == {
        'observation': 12,
        'base_action': 12,
        'residual': 12,
        'command': 12,
        'episode': 3,
        '/diagnostics': 0,
    }
    assert [e.result for e in run.episodes] == written['results']
    for ep in run.episodes:
        assert ep.steps == 4
        for k in range(4):
            np.testing.assert_array_equal(ep.observation.values[k], observation(ep.episode, k))
            np.testing.assert_array_equal(ep.command.values[k], written['command'][ep.episode, k])
            assert ep.observation.stamp_ns[k] == obs_stamp(ep.episode, k, 4)
        assert ep.base_action.tags == ('toy_ctl',) * 4


def test_evaluation_numbers_of_a_known_bag(bag):
    path, written = bag
    evaluation = evaluate_run(load_run(path))
    s = evaluation.summary()
    assert (s['episodes'], s['successes'], s['success_rate']) == (2, 1, 0.5)
    assert s['mean_final_distance'] == pytest.approx(0.075)
    assert s['mean_return'] == pytest.approx(-3.5)
    assert (s['fallback_base'], s['fallback_zero'], s['residual_steps']) == (1, 0, 10)
    assert s['mean_residual'] == pytest.approx(0.2)  # ||(0.1, 0.1, 0.1, 0.1)||
    assert s['applied_commands'] == s['steps'] - 1  # one step fell back to the base
    assert s['observation->command_p99_ms'] == pytest.approx(COMMAND_DELAY * 1e-6)
    assert s['observation->base_action_p50_ms'] == pytest.approx(BASE_DELAY * 1e-6)
    assert s['step_period_p50_ms'] == pytest.approx(PERIOD * 1e-6)
    assert s['steps_per_s'] == pytest.approx(25.0)
    assert [e.finished for e in evaluation.episodes] == [True, True]
    json.dumps(evaluation.to_json())  # JSON-ready


def toy_model(path: pathlib.Path, two_frame: bool = False) -> pathlib.Path:
    """A small linear residual for the toy bags (two-frame: it also reads the previous
    observation)."""
    weights = known_weights(in_dim=5) / 10
    return linear_model(path, weights, obs_dim=OBS_DIM, goal_dim=GOAL_DIM, two_frame=two_frame)


def test_replaying_the_recorded_model_gives_zero_difference_and_another_does_not(tmp_path):
    model = toy_model(tmp_path / 'a.onnx')
    two_frame = toy_model(tmp_path / 'b.onnx', two_frame=True)
    recorded = ResidualPolicy.from_file(str(model))
    write_bag(tmp_path / 'run', steps=6, policy=recorded)
    run = load_run(tmp_path / 'run')

    same = replay_model(run, ResidualPolicy.from_file(str(model)))
    assert (same.steps, same.skipped, same.steps_over_tolerance) == (12, 0, 0)
    assert float(same.max_abs_diff.max()) == 0.0
    assert same.recorded_residual == pytest.approx(same.candidate_residual)

    # The two-frame actor averages with the previous observation: equal at step 0 (no
    # previous frame), different afterwards.
    other = replay_model(run, ResidualPolicy.from_file(str(two_frame)))
    assert other.steps_over_tolerance == 10
    assert other.max_abs_diff.max() > 1e-3


def test_a_candidate_that_is_nan_on_recorded_steps_is_named_and_fails(tmp_path, capsys):
    """A model NaN on some recorded observations (good on the load probe) was reported as
    one that merely changes commands ("275 of 500 changed"), exit 0: the node would run the
    base controller alone at those steps."""
    write_bag(tmp_path / 'run', episodes=2, steps=6)  # observation[0] = episode + 0.1 step
    model = nan_in_range_model(tmp_path / 'nan.onnx', 1.0, 1.25, obs_dim=OBS_DIM, goal_dim=3)
    report = replay_model(load_run(tmp_path / 'run'), ResidualPolicy.from_file(str(model)))
    assert (report.steps, report.non_finite) == (12, 3), report  # episode 1, steps 0-2
    assert 'non-finite residual       3 of 12 steps' in format_report(report, 'm', ('a',) * 4)
    code, err = run_cli(['replay-model', str(tmp_path / 'run'), '--model', str(model)])
    assert code == 1, err
    assert err.endswith(
        'gives a non-finite residual at 3 of 12 recorded steps; the residual node would run '
        'the base controller alone there\n'
    ), err


def test_a_candidate_beyond_its_stated_scale_on_recorded_steps_is_named_and_fails(tmp_path):
    """A model stating a scale its probe keeps to, but not the recorded observations: the
    node falls back to the base action at those steps, and replay-model counted them as
    ordinary changes."""
    write_bag(tmp_path / 'run', episodes=2, steps=6)  # observation[0] = episode + 0.1 step
    weights = np.zeros((4, OBS_DIM + GOAL_DIM), np.float32)
    weights[0, 0] = 1.0  # residual[0] = observation[0]; the probe's stay below 0.8
    model = linear_model(tmp_path / 'm.onnx', weights, obs_dim=OBS_DIM, goal_dim=GOAL_DIM)
    set_model_metadata(model, {'residual_scale': '1.3'})
    report = replay_model(load_run(tmp_path / 'run'), ResidualPolicy.from_file(str(model)))
    assert (report.steps, report.beyond_scale) == (12, 2), report  # episode 1, steps 4-5
    assert 'beyond its stated scale   2 of 12 steps' in format_report(report, 'm', ('a',) * 4)
    code, err = run_cli(['replay-model', str(tmp_path / 'run'), '--model', str(model)])
    assert code == 1, err
    assert err.endswith(
        'goes beyond the residual scale its metadata states at 2 of 12 recorded steps; the '
        'residual node would run the base controller alone there\n'
    ), err


def test_a_two_frame_replay_takes_the_previous_frame_as_the_node_does(tmp_path):
    """The model that made a two-frame run reproduces it across a lost command (the node
    paired that step's observation: it is the next step's previous frame) and is not
    compared where the previous frame is not in the bag (a recording that began
    mid-episode); it was reported as changing its commands in both."""
    model = toy_model(tmp_path / 'b.onnx', two_frame=True)

    def dropped(rel, episode, step):
        lost_command = (rel, episode, step) == ('command', 0, 2)
        late_start = episode == 1 and step < 2  # every topic of the first two steps
        return lost_command or late_start

    write_bag(tmp_path / 'run', steps=6, policy=ResidualPolicy.from_file(str(model)), drop=dropped)
    report = replay_model(load_run(tmp_path / 'run'), ResidualPolicy.from_file(str(model)))
    assert (report.skipped, report.no_previous) == (3, 1)  # 0/2; 1/0, 1/1 | 1/2
    assert report.steps == 12 - 3 - 1
    assert (report.steps_over_tolerance, float(report.max_abs_diff.max())) == (0, 0.0)
    text = format_report(report, 'b.onnx', ('dx', 'dy', 'dz', 'gripper'))
    assert '1 not compared: their previous frame is not in the bag' in text


def test_replay_names_mismatched_dimensions(tmp_path, bag):
    path, _ = bag
    model = linear_model(tmp_path / 'wide.onnx', known_weights(in_dim=7), obs_dim=4, goal_dim=3)
    code, err = run_cli(['replay-model', str(path), '--model', str(model)])
    assert code == 2
    assert "input 'observation' has 4 features but 2 were expected" in err
    assert 'observations have 2 observation and 3 goal values' in err


def test_playback_offsets_follow_the_recording_scaled_by_the_rate():
    times = [T0, T0 + 10**9, T0 + 3 * 10**9]
    np.testing.assert_allclose(playback_offsets(times, 2.0), [0.0, 0.5, 1.5])
    with pytest.raises(BagError, match='rate must be positive, got 0'):
        playback_offsets(times, 0)
    topics = ['/a/observation', '/b/observation', '/diagnostics']
    assert select_topics(topics, ['observation']) == topics[:2]
    assert select_topics(topics, ['/diagnostics']) == ['/diagnostics']
    with pytest.raises(BagError, match="topic 'cmd' is not in the bag"):
        select_topics(topics, ['cmd'])


def test_a_task_with_other_action_fields_is_read_at_its_size(tmp_path):
    # A 7-joint arm: the reader takes the action names and size from the messages.
    joints = tuple(f'joint{i}.torque' for i in range(7))
    path = tmp_path / 'arm'
    written = write_bag(path, episodes=2, steps=3, action_fields=joints, terminal=True)
    run = load_run(path)
    assert run.problems == () and run.action_fields == joints
    for ep in run.episodes:
        for stream in (ep.base_action, ep.residual, ep.command):
            assert stream.values.shape == (3, 7) and stream.present.all()
        np.testing.assert_array_equal(ep.command.values[2], written['command'][ep.episode, 2])
    from rpl_trainer.bag_ingest import records_from_run

    records, _ = records_from_run(run, 3)
    assert [r.episode for r in records] == [0]  # episode 1 reports fallbacks
    assert records[0].base_action.shape == records[0].command.shape == (3, 7)


def test_action_messages_under_other_names_than_the_rest_are_skipped(tmp_path):
    def renamed(put, ep, k, t):
        if (ep, k) == (1, 1):  # a base action of the right size under other names
            put('base_action', 1, 1, np.zeros(4), t, 'x', ('a0', 'a1', 'a2', 'a3'))

    path = tmp_path / 'run'
    write_bag(path, extra=renamed)
    run = load_run(path)
    assert run.action_fields == contract.ACTION_FIELDS
    assert run.problems == (
        f"{NS}/base_action: messages off the contract skipped: #6: action fields ['a0', "
        "'a1', 'a2', 'a3'], the other action messages have ['dx', 'dy', 'dz', 'gripper']",
    )
    np.testing.assert_array_equal(run.episodes[1].base_action.values[1], base_action(1, 1))


# --- bags with problems: clear errors, the readable part still read -----------------------


def test_a_missing_topic_is_reported_and_the_rest_is_read(tmp_path):
    path = tmp_path / 'run'
    write_bag(path, topics=('observation', 'base_action', 'command', 'episode'))
    run = load_run(path)
    assert f'topic {NS}/residual is not in the bag' in run.problems
    assert len(run.episodes) == 2 and all(e.result is not None for e in run.episodes)
    assert np.isnan(run.episodes[0].residual.values).all()
    assert np.isnan(evaluate_run(run).summary()['mean_residual'])


def test_mismatched_dimensions_are_skipped_and_counted(tmp_path):
    def wrong_sizes(put, ep, k, t):
        if k == 1:  # a second observation layout, and a 3-value command, for one step
            put('observation', 9, k, np.zeros(9), t, 'x', (*OBS_FIELDS, 'extra'))
            put('command', 9, k, np.zeros(3), t, 'x', ('dx', 'dy', 'dz'))

    path = tmp_path / 'run'
    write_bag(path, extra=wrong_sizes)
    run = load_run(path)
    text = '\n'.join(run.problems)
    assert '2 message(s) have 9 payload fields where the other 10 have 8' in text
    assert f'{NS}/command: messages off the contract skipped: 2 messages' in text
    assert [e.episode for e in run.episodes] == [0, 1]  # nothing of the bad episode 9
    assert run.counts['observation'] == 12


def test_a_resent_step_is_used_once_and_a_changed_repeat_is_reported(tmp_path):
    def repeats(put, ep, k, t):
        if (ep, k) == (0, 0):  # the sim's handshake re-sends observation (0, 0) unchanged
            put('observation', 0, 0, observation(0, 0), t + 50_000_000, 'toy_task', OBS_FIELDS)
        if (ep, k) == (1, 2):
            put(
                'base_action',
                1,
                2,
                np.ones(4),
                t + 2 * COMMAND_DELAY,
                'toy_ctl',
                contract.ACTION_FIELDS,
            )

    path = tmp_path / 'run'
    write_bag(path, extra=repeats)
    run = load_run(path)
    assert run.resent == {'observation': 1, 'base_action': 0, 'residual': 0, 'command': 0}
    assert run.counts['observation'] == 11
    assert run.episodes[0].observation.stamp_ns[0] == obs_stamp(0, 0, 5)  # the first is used
    assert run.problems == (
        f'{NS}/base_action: repeated (episode, step) with another payload skipped: '
        'episode 1 step 2',
    )
    np.testing.assert_array_equal(run.episodes[1].base_action.values[2], base_action(1, 2))


def test_no_control_topics_or_several_stacks_are_clear_errors(tmp_path):
    writer = BagWriter(tmp_path / 'diag', recorded_topics(NS, ('/diagnostics',)))
    writer.close()
    with pytest.raises(BagError, match='has none of the RPL control topics'):
        load_run(tmp_path / 'diag')
    path = tmp_path / 'two'
    writer = BagWriter(path, recorded_topics('/a') + recorded_topics('/b')[:1])
    writer.close()
    with pytest.raises(BagError, match=r"several stacks \(\['/a', '/b'\]\)"):
        load_run(path)
    with pytest.raises(BagError, match="no control topics in namespace '/c'"):
        load_run(path, namespace='c')
    with pytest.raises(BagError, match='no usable observation on /b/observation'):
        load_run(path, namespace='b')


def test_not_a_bag_is_a_clear_error(tmp_path):
    with pytest.raises(BagError, match='the path does not exist'):
        load_run(tmp_path / 'nothing')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(BagError, match='no metadata.yaml and no .mcap or .db3 file'):
        load_run(tmp_path / 'empty')
    (tmp_path / 'notes.txt').write_text('hello')
    with pytest.raises(BagError, match='is not a bag'):
        load_run(tmp_path / 'notes.txt')
    # Its storage file gone: said so (it read 'no metadata.yaml').
    write_bag(tmp_path / 'whole')
    mcap_file(tmp_path / 'whole').unlink()
    with pytest.raises(BagError, match=r'has its metadata.yaml but no \.mcap .*missing'):
        load_run(tmp_path / 'whole')
    (tmp_path / 'junk').mkdir()
    (tmp_path / 'junk' / 'junk.mcap').write_bytes(b'PK\x03\x04' + bytes(100))
    with pytest.raises(BagError, match=r"is not an MCAP file \(its first bytes are b'PK"):
        load_run(tmp_path / 'junk')


def test_a_bag_whose_recording_was_not_closed_is_read_in_full(bag):
    path, written = bag
    (path / 'metadata.yaml').unlink()
    run = load_run(path)
    assert any('has no metadata.yaml' in p for p in run.problems)
    assert run.counts['observation'] == 10
    assert [e.result for e in run.episodes] == written['results']


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_a_killed_recorder_leaves_everything_written_before_its_last_flush(tmp_path, storage):
    path = tmp_path / 'live'
    writer = BagWriter(path, recorded_topics(NS), storage)
    topic = f'{NS}/observation'
    for k in range(30):
        data = encode_vector(StampedVector(0, k, observation(0, k), T0 + k, 't'), OBS_FIELDS)
        writer.write(topic, T0 + k, data)
        if k == 19:
            writer.flush()
    # What a SIGKILL leaves: the files as they are now, no close, no metadata.yaml.
    killed = tmp_path / 'killed'
    shutil.copytree(path, killed)
    run = load_run(killed)
    assert any('has no metadata.yaml' in p for p in run.problems)
    assert run.counts['observation'] == 20
    np.testing.assert_array_equal(run.episodes[0].observation.values[19], observation(0, 19))
    writer.close()
    assert load_run(path).counts['observation'] == 30


@pytest.mark.parametrize('keep', [0.3, 0.6, 0.97])
def test_a_truncated_bag_gives_its_complete_messages(tmp_path, keep):
    path = tmp_path / 'run'
    write_bag(path, episodes=4, steps=10)
    file = mcap_file(path)
    data = file.read_bytes()
    file.write_bytes(data[: int(len(data) * keep)])
    run = load_run(path)
    text = '\n'.join(run.problems)
    assert 'cannot be read as a whole: File end magic is invalid' in text
    assert f'salvaged {sum(run.counts.values())} messages from the first' in text
    got = run.counts['observation']
    if keep < 0.9:  # cut inside the (one) chunk: its complete messages are read
        assert 'is cut off after' in text and 'its messages before the cut were read' in text
        assert 0 < got < 40
        # ... read up to the cut, which the line says (it said: up to the chunk's start)
        size = int(len(data) * keep)
        assert f'messages from the first {size} of {size} bytes' in text, text
    else:  # cut in the index and summary after the data: everything is read
        assert got == 40 and run.counts['episode'] == 4
    # Messages are stored in recording order, so what is read is a prefix of the run.
    steps = [(e.episode, k) for e in run.episodes for k in np.flatnonzero(e.observation.present)]
    assert steps == [(ep, k) for ep in range(4) for k in range(10)][:got]
    for e in run.episodes:
        for k in np.flatnonzero(e.observation.present):
            np.testing.assert_array_equal(e.observation.values[k], observation(e.episode, k))


def test_corrupt_bytes_are_reported_and_the_rest_is_still_read(tmp_path):
    path = tmp_path / 'run'
    write_bag(path, episodes=4, steps=10)
    file = mcap_file(path)
    data = bytearray(file.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 40] = b'\xff' * 40
    file.write_bytes(bytes(data))
    run = load_run(path)
    assert run.problems, 'the damage must be reported'
    assert 0 < run.counts['observation'] <= 40
    for e in run.episodes:  # whatever was read has the written values
        for k in np.flatnonzero(e.observation.present):
            np.testing.assert_array_equal(e.observation.values[k], observation(e.episode, k))


def test_a_damaged_chunk_that_the_reader_passes_over_is_counted_as_lost(tmp_path):
    """rosbags skips a damaged chunk of a closed bag without raising: ~400 of 8000
    messages, a whole episode among them, were gone without a word."""
    path = tmp_path / 'run'
    write_bag(path, episodes=40, steps=50)  # several chunks
    file = mcap_file(path)
    data = bytearray(file.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 200] = bytes(b ^ 0x5A for b in data[middle : middle + 200])
    file.write_bytes(bytes(data))
    raw = read_raw_bag(path)
    lost = [p for p in raw.problems if 'lost in the recording, or a damaged storage' in p]
    assert lost and lost[0].startswith(f'{NS}/base_action: metadata.yaml counts 2000'), lost
    read = sum(m.topic == f'{NS}/observation' for m in raw.messages)
    assert f'{NS}/observation: metadata.yaml counts 2000 messages, {read} were read' in (
        ' '.join(lost)
    )
    assert 0 < read < 2000  # the rest is still read


# --- the command line --------------------------------------------------------------------


def run_cli(argv: list[str]) -> tuple[int, str]:
    """Run ``rpl bag`` in-process; returns (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = bag_cli.main(argv)
        except SystemExit as exc:  # argparse's own refusals
            code = exc.code
    return code, err.getvalue()


def test_the_summary_counts_finished_episodes_and_weighs_the_residual_by_step():
    """On a realtime bag whose commands the sim rejected as stale, bag eval said 'commands
    from the residual: 94 of 150 steps' and plotted an 'applied residual' while the sim had
    applied none; its mean |residual| was a mean of episode means (2.1696 against
    replay-model's per-step 2.1129), and its steps counted an unfinished episode."""
    from rpl_bags.bag_eval import BagEvaluation, EpisodeMetrics, format_table

    def episode(i, finished, steps, rows, mean, zero):
        return EpisodeMetrics(
            i, finished, 0.0, 0.1, -steps, steps, 0, zero, mean, mean, rows, 1.0, rows
        )

    evaluation = BagEvaluation(
        'bag',
        '/rpl',
        'push',
        (
            episode(0, True, 50, 10, 1.0, 50),  # the sim applied none of its commands
            episode(1, True, 50, 40, 2.0, 50),
            episode(2, False, 44, 44, 9.0, 0),  # cut off: not in the totals
        ),
        {'step_period': np.array([40.0])},
        {},
        {},
        (),
    )
    s = evaluation.summary()
    assert s['mean_residual'] == pytest.approx((10 * 1.0 + 40 * 2.0) / 50)  # by step
    assert (s['steps'], s['residual_steps'], s['applied_commands']) == (100, 50, 0)
    text = format_table(evaluation)
    assert "the residual node sent its model's command at 50 of 100 steps" in text
    assert 'commands applied          0 of 100 steps by the sim bridge; fallbacks base 0, ' in text


def test_cli_eval_writes_table_png_and_json_next_to_the_bag(bag, capsys):
    path, _ = bag
    code, err = run_cli(['eval', str(path)])
    out = capsys.readouterr().out
    assert (code, err) == (0, '')
    assert 'success                   1 of 2 (0.500)' in out
    png, result = path.parent / 'run_eval.png', path.parent / 'run_eval.json'
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    data = json.loads(result.read_text(), parse_constant=_not_json)  # no NaN: jq reads it
    assert data['summary']['episodes'] == 2
    assert sorted(p.name for p in path.iterdir()) == ['metadata.yaml', 'run.mcap']
    # The bag's .mcap file named (the documented other form): the same files, next to the
    # folder (they were put inside it, refused as an input of the command: exit 2, always).
    png.unlink()
    result.unlink()
    code, err = run_cli(['eval', str(mcap_file(path))])
    assert (code, err) == (0, ''), err
    assert png.is_file() and result.is_file()
    assert sorted(p.name for p in path.iterdir()) == ['metadata.yaml', 'run.mcap']


def _not_json(constant: str) -> None:
    raise ValueError(f'{constant} is not standard JSON')


def test_cli_on_damaged_input_warns_or_fails_in_one_line(tmp_path, bag):
    path, _ = bag
    file = mcap_file(path)
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    code, err = run_cli(['eval', str(path), '--png', str(tmp_path / 'e.png')])
    assert code == 1
    assert err.startswith('rpl bag eval: warning: ')
    assert (tmp_path / 'e.png').exists()
    code, err = run_cli(['eval', str(tmp_path / 'missing')])
    assert code == 2
    assert (
        err
        == f"rpl bag eval: error: no bag at '{tmp_path / 'missing'}': the path does not exist\n"
    )


def test_cli_eval_never_writes_over_its_outputs_without_force(bag, capsys):
    path, _ = bag
    png, result = path.parent / 'run_eval.png', path.parent / 'run_eval.json'
    result.write_text('{"kept": true}')
    code, err = run_cli(['eval', str(path)])
    assert code == 2
    assert err.startswith(f"rpl bag eval: error: '{result}' exists already") and '--force' in err
    assert err.count('\n') == 1
    assert 'success' not in capsys.readouterr().out  # refused before the work
    assert not png.exists() and json.loads(result.read_text()) == {'kept': True}
    assert run_cli(['eval', str(path), '--force']) == (0, '')
    assert json.loads(result.read_text())['summary']['episodes'] == 2
    code, err = run_cli(['eval', str(path)])  # now the PNG exists too
    assert code == 2 and 'run_eval.png' in err


def test_cli_outputs_that_cannot_be_written_fail_before_the_work(bag, tmp_path):
    path, _ = bag
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    code, err = run_cli(['eval', str(path), '--json', str(blocker / 'out' / 'e.json')])
    assert code == 2 and err.startswith('rpl bag eval: error: cannot write --json'), err
    assert not (path.parent / 'run_eval.png').exists()
    replay = ['replay-model', str(path), '--model', 'missing.onnx']
    code, err = run_cli([*replay, '--json', str(blocker / 'r.json')])
    assert code == 2 and 'cannot write --json' in err, err  # before the model is even read


def test_cli_record_refuses_an_existing_bag(bag):
    path, _ = bag
    code, err = run_cli(['record', str(path)])
    assert code == 2 and 'already exists (bags are never written over; give a new folder)' in err


def test_bag_modules_never_import_torch_or_rclpy(tmp_path, bag):
    path, _ = bag
    script = (
        'import sys; from rpl_bags import bag_cli, bag_eval, bag_replay, recorded; '
        f'bag_eval.evaluate_run(recorded.load_run({str(path)!r})); '
        "print(sorted(m for m in ('torch', 'rclpy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, '-c', script], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == '[]'


def test_rpl_bag_eval_runs_where_rpl_trainer_and_torch_are_not_installed(tmp_path, bag):
    # A robot install: rpl_bringup + rpl_bags, no trainer. Both are made unimportable.
    path, _ = bag
    script = (
        'import sys; sys.modules["rpl_trainer"] = None; sys.modules["torch"] = None; '
        'from rpl_bringup import cli; '
        f'sys.exit(cli.main(["bag", "eval", {str(path)!r}, '
        f'"--png", {str(tmp_path / "e.png")!r}, "--json", {str(tmp_path / "e.json")!r}]))'
    )
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert 'episode' in proc.stdout


def stated_model(tmp_path, name: str, **props: str) -> pathlib.Path:
    """The toy linear model, stating the toy bag's fields plus ``props`` in its metadata."""
    model = linear_model(
        tmp_path / name, known_weights(in_dim=5) * 3, obs_dim=OBS_DIM, goal_dim=GOAL_DIM
    )
    fields = {
        'task': 'toy_task',
        'observation_fields': json.dumps(['grip_pos.x', 'grip_pos.y']),
        'goal_fields': json.dumps(['x', 'y', 'z']),
        'action_fields': json.dumps(list(contract.ACTION_FIELDS)),
    }
    return set_model_metadata(model, {**fields, **props})


def test_replay_clips_to_the_bounds_the_model_states_unless_told_otherwise(tmp_path, capsys):
    # Recorded behind a node clipping to [-2, 2]: the commands go beyond +-1.
    model = stated_model(tmp_path, 'torque.onnx', action_bounds='[-2, 2]')
    config = ResidualConfig(residual_limit=4.0, action_low=-2.0, action_high=2.0)
    written = write_bag(
        tmp_path / 'run', steps=6, policy=ResidualPolicy.from_file(str(model), config)
    )
    assert max(np.abs(c).max() for c in written['command'].values()) > 1.0
    argv = ['replay-model', str(tmp_path / 'run'), '--model', str(model)]

    code, err = run_cli([*argv, '--fail-on-change'])
    out = capsys.readouterr().out
    assert (code, err) == (0, '')
    assert 'commands clipped to [-2, 2] (the bounds the model states)' in out

    # Bounds other than the model's are refused in one line, before any replay.
    code, err = run_cli([*argv, '--action-low', '-1', '--action-high', '1'])
    assert code == 2
    assert err.count('\n') == 1
    assert 'trained to command actions in [-2, 2], the stack clips commands to [-1, 1]' in err
    assert '--allow-model-mismatch' not in err  # bounds are never overridable

    # Bounds that cannot be are named as the options given, not as a derived residual_limit.
    for bounds, message in (
        (
            ['--action-low', '1', '--action-high', '-1'],
            '--action-low 1 must be below --action-high -1',
        ),
        (
            ['--action-low', '3'],
            "--action-low 3 must be below --action-high 2 (an option not given is the model's",
        ),
        (['--action-low', 'nan'], '--action-low must be a finite number, got nan'),
    ):
        code, err = run_cli([*argv, *bounds])
        assert code == 2 and err.count('\n') == 1 and message in err, err
        assert 'residual_limit' not in err


def test_replay_refuses_a_model_of_another_task_or_fields_and_names_the_override(tmp_path, bag):
    path, _ = bag
    other_task = stated_model(tmp_path, 'other.onnx', task='slippery_push')
    code, err = run_cli(['replay-model', str(path), '--model', str(other_task)])
    assert code == 2
    assert "trained for task 'slippery_push', the running task is 'toy_task'" in err
    assert '(--allow-model-mismatch replays it anyway)' in err

    code, err = run_cli(
        ['replay-model', str(path), '--model', str(other_task), '--allow-model-mismatch']
    )
    assert code == 0
    assert 'warning: replaying although trained for task' in err

    # The bag's base actions name their controller (frame_id 'toy_ctl'): a model of another
    # one passed here and was refused by the residual node.
    other_controller = stated_model(tmp_path, 'ctl.onnx', controller='other_ctl')
    code, err = run_cli(['replay-model', str(path), '--model', str(other_controller)])
    assert code == 2
    assert "trained for controller 'other_ctl', the running controller is 'toy_ctl'" in err

    # Base actions that name no controller (empty frame_id): the residual node refuses a
    # model that names one, and the replay says so too (it replayed it unchecked).
    untagged = tmp_path / 'untagged'
    write_bag(untagged, controller_tag='')
    toy = stated_model(tmp_path, 'toy.onnx', controller='toy_ctl')
    code, err = run_cli(['replay-model', str(untagged), '--model', str(toy)])
    assert code == 2, err
    assert "trained for controller 'toy_ctl', the base_action messages do not name" in err
    code, err = run_cli(
        ['replay-model', str(untagged), '--model', str(toy), '--allow-model-mismatch']
    )
    assert code == 0, err

    renamed = stated_model(
        tmp_path, 'renamed.onnx', observation_fields=json.dumps(['grip_pos.y', 'grip_pos.x'])
    )
    code, err = run_cli(
        ['replay-model', str(path), '--model', str(renamed), '--allow-model-mismatch']
    )
    assert code == 2
    assert 'observation' in err and '--allow-model-mismatch' not in err


@pytest.mark.parametrize(
    ('argv', 'message'),
    [
        (['play', '{bag}', '--delay', 'nan'], '--delay nan is outside [0, 86400]'),
        (['play', '{bag}', '--rate', '1e-300'], '--rate 1e-300 is outside [0.001, 1000]'),
        (['play', '{bag}', '--wait-subscribers', '-1'], '--wait-subscribers -1 is outside'),
        (['record', '{new}', '--namespace', '/a//b'], "'/a//b' is not a ROS namespace"),
        (['record', '/proc/rpl_no_bag'], "cannot create bag '/proc/rpl_no_bag'"),
        (['record', ''], "argument bag: empty value ''"),
        (['eval', '{bag}', '--json', '{same}', '--png', '{same}'], 'must be different files'),
        # Not even --force writes a result over an input (the recording was replaced).
        (['eval', '{bag}', '--png', '{bag}/x.png', '--force'], 'is an input of this command'),
        (['eval', '{bag}', '--png', '{same}.svg'], 'must end in .png'),
    ],
    ids=[
        'delay',
        'rate',
        'wait',
        'namespace',
        'unwritable',
        'empty',
        'same-outputs',
        'input',
        'not-png',
    ],
)
def test_cli_bad_options_are_one_line_before_anything_runs(bag, tmp_path, capsys, argv, message):
    path, _ = bag
    places = {'bag': str(path), 'new': str(tmp_path / 'new_bag'), 'same': str(tmp_path / 'o')}
    code, err = run_cli([a.format(**places) for a in argv])
    assert code == 2 and err.count('\n') == 1 and message in err, err
    assert 'playing' not in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != path.name) == []


def test_default_result_names_keep_the_whole_bag_name(bag, tmp_path, monkeypatch):
    """`run.v1` and `run.v2` both wrote run_eval.*; `rpl bag eval .` was a traceback."""
    path, _ = bag
    dotted = tmp_path / 'run.v1'
    path.rename(dotted)
    assert run_cli(['eval', str(dotted)])[0] == 0
    assert (tmp_path / 'run.v1_eval.png').is_file() and (tmp_path / 'run.v1_eval.json').is_file()
    monkeypatch.chdir(dotted)
    code, err = run_cli(['eval', '.'])
    assert code == 2 and "run.v1_eval.png' exists already" in err, err  # the same names


def test_play_refuses_an_empty_bag_or_topics_without_messages(tmp_path, capsys):
    empty = tmp_path / 'empty'
    write_bag(empty, episodes=0)
    code, err = run_cli(['play', str(empty)])
    assert code == 2 and err.count('\n') == 1
    assert 'the bag has no messages' in err and 'nothing to play' in err
    assert 'playing' not in capsys.readouterr().out


def test_play_with_no_subscriber_after_the_wait_plays_nothing_and_fails(bag):
    """--wait-subscribers asks for subscribers; when none came, publishing to nobody would
    end with exit 0 and the data gone. No node subscribes in this test's DDS domain."""
    path, _ = bag
    cmd = [sys.executable, '-m', 'rpl_bringup.cli', 'bag', 'play', str(path)]
    cmd += ['--topics', 'observation', '--wait-subscribers', '0.5']
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    assert done.stdout == ''  # not even 'playing ...': nothing was
    assert done.stderr.count('\n') == 1, done.stderr
    assert 'no subscriber on /toy/observation after 0.5 s (--wait-subscribers)' in done.stderr
    assert 'nothing played' in done.stderr


def test_play_names_move_the_stack_into_a_namespace_and_apply_remaps_after():
    chosen = ['/diagnostics', '/toy/command', '/toy/joint_states', '/toy/observation']
    assert play_names(chosen, ['/toy']) == {t: t for t in chosen}
    moved = play_names(chosen, ['/toy'], '/robot_b', {'/toy/command': '/robot_b/cmd'})
    assert moved == {
        '/diagnostics': '/diagnostics',  # the health reports keep their global name
        '/toy/command': '/robot_b/cmd',  # a remap names the stored topic
        '/toy/joint_states': '/robot_b/joint_states',
        '/toy/observation': '/robot_b/observation',
    }
    # The namespaces of the topics played, whatever their kind (joint_states alone moves).
    assert played_namespaces(['/diagnostics', '/toy/joint_states']) == ['/toy']
    assert play_names(['/toy/joint_states'], ['/toy'], '/c') == {
        '/toy/joint_states': '/c/joint_states'
    }
    # A stack recorded in the root namespace moves too; /diagnostics still stays.
    root = play_names(['/diagnostics', '/observation'], ['/'], '/b')
    assert root == {'/diagnostics': '/diagnostics', '/observation': '/b/observation'}


@pytest.mark.parametrize(
    ('stacks', 'namespace', 'remaps', 'wanted'),
    [
        (['/a', '/b'], '/c', {}, 'the topics played are of /a, /b: play one stack'),
        ([], '/c', {}, 'the topics played are of none'),
        (['/toy'], None, {'/toy/residual': '/x'}, '/toy/residual is not played'),
        (['/toy'], None, {'/toy/command': '/toy/observation'}, 'would both be published on'),
    ],
)
def test_play_names_refuse_what_cannot_be_played_as_asked(stacks, namespace, remaps, wanted):
    with pytest.raises(BagError, match=re.escape(wanted)):
        play_names(['/toy/command', '/toy/observation'], stacks, namespace, remaps)


def test_remap_rules_are_ros2_bag_plays_form_and_checked():
    assert parse_remaps(['/toy/observation:=obs', 'a:=/b/c']) == {
        '/toy/observation': '/obs',
        '/a': '/b/c',
    }
    for rule, wanted in (
        ('/toy/observation=/x', 'is not FROM:=TO'),
        ('/toy/observation:=/1x', "--remap target '/1x' is not a ROS name"),
        ('/a//b:=/c', "--remap source '/a//b' is not a ROS name"),
    ):
        with pytest.raises(BagError, match=re.escape(wanted)):
            parse_remaps([rule])
    with pytest.raises(BagError, match='names /a twice'):
        parse_remaps(['/a:=/b', 'a:=/c'])


def test_play_into_another_namespace_and_under_remapped_names_over_dds(bag):
    """A bag recorded in /toy is published, over DDS, in the namespace and under the names
    asked for: the commands on /moved/cmd, the observations on /moved/obs (two --remap
    flags: argparse kept the last, and rcl applied both rules from the command line as
    global remaps, unchecked), nothing left in /toy or on the names remapped away."""
    from sensor_msgs.msg import JointState

    path, _ = bag
    side = SideNode('bag_play_names_probe', '/')
    names = ('/moved/obs', '/moved/cmd', '/toy/observation', '/moved/observation')
    got: dict[str, list] = {name: [] for name in names}
    for topic, received in got.items():
        side.node.create_subscription(
            JointState, topic, lambda m, r=received: r.append(m.header.frame_id), 100
        )
    cmd = [sys.executable, '-m', 'rpl_bringup.cli', 'bag', 'play', str(path), '--namespace']
    cmd += ['moved', '--remap', '/toy/command:=/moved/cmd', '--topics', 'observation']
    cmd += ['command', '--remap', '/toy/observation:=/moved/obs', '--wait-subscribers', '30']
    player = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        written = load_run(path)
        counts = (written.counts['observation'], written.counts['command'])
        assert side.spin_until(
            lambda: (len(got['/moved/obs']), len(got['/moved/cmd'])) == counts, 60
        ), {k: len(v) for k, v in got.items()}
        out, _ = player.communicate(timeout=30)
        side.spin_until(lambda: False, 0.5)  # anything sent elsewhere has come by now
    finally:
        stop_process(player)
        side.close()
    assert player.returncode == 0, out
    assert '/toy/command as /moved/cmd' in out and '/toy/observation as /moved/obs' in out
    assert got['/toy/observation'] == [] and got['/moved/observation'] == []


def test_play_moves_one_stack_of_a_bag_of_two_when_only_its_topics_are_played(tmp_path):
    """--namespace on a bag of two stacks was refused even with --topics picking one."""
    path = tmp_path / 'two'
    write_bag(path, namespaces=('/a', '/b'))
    cmd = [sys.executable, '-m', 'rpl_bringup.cli', 'bag', 'play', str(path), '--topics']
    cmd += ['/a/observation', '--namespace', '/c', '--wait-subscribers', '0.5']
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done  # nobody listens: the names it would have played on
    assert 'no subscriber on /c/observation after 0.5 s' in done.stderr, done.stderr
    both = subprocess.run(
        [*cmd[:7], '/a/observation', '/b/observation', *cmd[8:]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert both.returncode == 2 and 'the topics played are of /a, /b' in both.stderr, both.stderr


def test_play_with_a_bad_remap_or_namespace_is_one_line_before_any_node(bag, capsys):
    path, _ = bag
    for extra, wanted in (
        (['--remap', '/toy/residual:=/x', '--topics', 'command'], '/toy/residual is not played'),
        (['--namespace', '1bad'], "--namespace '1bad' is not a ROS namespace"),
    ):
        code, err = run_cli(['play', str(path), *extra])
        assert code == 2 and err.count('\n') == 1 and wanted in err, err
        assert 'playing' not in capsys.readouterr().out


def test_play_stopped_by_ctrl_c_says_how_much_went_out_and_fails(bag):
    """Ctrl-C during `rpl bag play` exited 0 with 'published N messages', as if it had
    played the bag."""
    path, _ = bag
    cmd = [sys.executable, '-m', 'rpl_bringup.cli', 'bag', 'play', str(path), '--rate', '0.01']
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as in a terminal, also when the test runner ignores SIGINT (a background job).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout.readline().startswith('playing ')
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert re.search(r'rpl bag play: interrupted: published \d+ of \d+ messages', err), err
    assert 'published' not in out and 'Traceback' not in err
