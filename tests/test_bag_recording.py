"""Integration: record a lockstep SlipperyPush run with record:=true, then read, evaluate,
replay and play the bag.

One launch (module fixture) runs the stack with a small linear ONNX residual, the episode
monitor (the live run's own account) and the bag recorder. The bag is then read back with
rosbags alone (its AnyReader and the message definitions stored in the bag: nothing of this
project's reader), evaluated with ``rpl bag eval`` against the monitor's numbers, replayed
with the recorded model, and played onto live topics.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from helpers import SideNode, ros_args, stop_process
from onnx_builders import known_weights, linear_model

from rpl_bags.bag_replay import replay_model
from rpl_bags.reader import read_raw_bag
from rpl_bags.recorded import load_run
from rpl_residual_node.policy import ResidualPolicy
from rpl_trainer.checkpoint import load_checkpoint

pytestmark = pytest.mark.integration

RPL = [sys.executable, '-m', 'rpl_bringup.cli']
EPISODES, STEPS = 2, 50
CONTROL = ('observation', 'base_action', 'residual', 'command')


class Recording:
    """The recorded run: bag path, namespace, model, monitor JSON and launch output."""

    def __init__(self, root: pathlib.Path) -> None:
        self.namespace = f'/bagtest_{os.getpid()}'
        self.bag = root / 'run_bag'
        self.model = linear_model(
            root / 'actor.onnx', known_weights(in_dim=28) / 50, obs_dim=25, goal_dim=3
        )
        self.results = root / 'monitor.json'

    def launch(self, *extra: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
        cmd = [
            *RPL,
            'launch',
            'rpl_bringup',
            'slippery_push.launch.py',
            f'namespace:={self.namespace}',
            f'episodes:={EPISODES}',
            f'model_path:={self.model}',
            'record:=true',
            f'bag:={self.bag}',
            *extra,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)

    def monitor(self) -> dict:
        return json.loads(self.results.read_text())


@pytest.fixture(scope='module')
def recording(tmp_path_factory) -> Recording:
    rec = Recording(tmp_path_factory.mktemp('bag_recording'))
    done = rec.launch('monitor:=true', f'results:={rec.results}')
    output = done.stdout + done.stderr
    (rec.bag.parent / 'launch.log').write_text(output)  # every node's log, kept
    # Exit 0 also means the residual node's commands were applied: a run in which not one
    # step applied a command ends the sim bridge, and so the launch, with exit code 3.
    assert done.returncode == 0, output
    assert 'bag_recorder stopped (code 0)' in output, output
    assert rec.monitor()['summary']['episodes'] == EPISODES, output
    return rec


def test_the_bag_is_standard_rosbag2_that_rosbags_reads_alone(recording):
    from rosbags.highlevel import AnyReader

    meta = yaml.safe_load((recording.bag / 'metadata.yaml').read_text())
    info = meta['rosbag2_bagfile_information']
    assert info['storage_identifier'] == 'mcap'
    assert info['relative_file_paths'] == ['run_bag.mcap']

    ns = recording.namespace
    steps: dict[str, list[tuple[int, int]]] = {name: [] for name in CONTROL}
    results, diagnostics, joints = [], 0, []
    observed: set[int] = set()  # observation stamps, ns
    with AnyReader([recording.bag]) as reader:  # types from the bag's stored definitions
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types[f'{ns}/observation'] == 'sensor_msgs/msg/JointState'
        assert types[f'{ns}/joint_states'] == 'sensor_msgs/msg/JointState'
        assert types['/diagnostics'] == 'diagnostic_msgs/msg/DiagnosticArray'
        for connection, _, raw in reader.messages():
            msg = reader.deserialize(raw, connection.msgtype)
            name = connection.topic.rsplit('/', 1)[1]
            if connection.topic == '/diagnostics':
                diagnostics += 1
                continue
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            if name == 'joint_states':  # the robot's joints: standard names, no meta fields
                joints.append((stamp, tuple(msg.name), len(msg.position), len(msg.velocity)))
                continue
            if name == 'observation':
                observed.add(stamp)
            assert list(msg.name[:2]) == ['episode', 'step']
            episode, step = int(msg.position[0]), int(msg.position[1])
            if name == 'episode':
                results.append((episode, dict(zip(msg.name[2:], msg.position[2:], strict=True))))
            else:
                steps[name].append((episode, step))

    # Every control topic: each step of each episode in order, once; only step (0, 0) may
    # come again (the sim bridge's start-up handshake re-sends it and the nodes answer).
    # The observation topic also has each episode's terminal observation o_T (step T),
    # which nobody answers.
    expected = [(e, k) for e in range(EPISODES) for k in range(STEPS)]
    with_terminal = [(e, k) for e in range(EPISODES) for k in range(STEPS + 1)]
    for name in CONTROL:
        seen = steps[name]
        again = {s for i, s in enumerate(seen) if i and s == seen[i - 1]}
        assert again <= {(0, 0)}, name
        want = with_terminal if name == 'observation' else expected
        assert [s for i, s in enumerate(seen) if not i or s != seen[i - 1]] == want, name
    assert diagnostics >= 1
    # One joint state per simulation step (o_T included), stamped like its observation.
    assert len(joints) == EPISODES * (STEPS + 1)
    assert {stamp for stamp, *_ in joints} == observed
    names = joints[0][1]
    assert 'robot0:shoulder_pan_joint' in names and 'episode' not in names
    assert {(n, p, v) for _, n, p, v in joints} == {(names, len(names), len(names))}
    live = recording.monitor()['episodes']
    assert [e for e, _ in results] == [e['episode'] for e in live]
    for (_, payload), episode in zip(results, live, strict=True):
        assert bool(payload['success']) == episode['success']
        assert payload['final_distance'] == episode['final_distance']
        assert payload['return'] == episode['episode_return']
        assert payload['steps'] == episode['steps'] == STEPS
        assert payload['fallback_base'] == episode['fallback_base']


def test_bag_eval_gives_the_numbers_of_the_live_run(recording, tmp_path):
    out = tmp_path / 'eval.json'
    cmd = [*RPL, 'bag', 'eval', str(recording.bag), '--json', str(out)]
    cmd += ['--png', str(tmp_path / 'eval.png')]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    live = recording.monitor()
    assert [e['episode'] for e in result['episodes']] == [e['episode'] for e in live['episodes']]
    for got, want in zip(result['episodes'], live['episodes'], strict=True):
        assert got['success'] is want['success']  # true / false in every result file
        assert got['final_distance'] == want['final_distance']
        assert got['episode_return'] == want['episode_return']
        assert (got['fallback_base'], got['fallback_zero']) == (
            want['fallback_base'],
            want['fallback_zero'],
        )
    summary = result['summary']
    assert summary['success_rate'] == live['summary']['success_rate']
    # Every step the sim applied a command has the residual's command in the bag (the
    # monitor's own command count is no reference: it may join after the first steps).
    assert summary['residual_steps'] >= EPISODES * STEPS - summary['fallback_base']
    assert summary['mean_residual'] > 0.1  # the linear model's residual is not small
    assert 0 < summary['observation->command_p50_ms'] < 1000
    assert f'success                   {sum(e["success"] for e in live["episodes"])} of' in (
        done.stdout
    )


def test_replaying_the_recorded_model_reproduces_its_commands(recording):
    run = load_run(recording.bag)
    assert run.problems == ()
    assert all(ep.terminal is not None for ep in run.episodes)  # o_T of every episode
    report = replay_model(run, ResidualPolicy.from_file(str(recording.model)))
    assert report.steps == EPISODES * STEPS
    # Every command the residual node computed is reproduced exactly; a command that fell
    # back to the base action (a start-up race can cause one) is the only allowed change.
    assert report.steps_over_tolerance == report.recorded_sources.get('base', 0)
    if not report.recorded_sources.get('base'):
        assert float(report.max_abs_diff.max()) == 0.0


def test_recording_again_to_the_same_bag_is_refused_before_any_node_and_keeps_the_bag(
    recording,
):
    before = {p.name: p.read_bytes() for p in recording.bag.iterdir()}
    done = recording.launch(timeout_s=60)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert done.stdout == ''  # no node started (it used to fail once they had)
    assert (
        f"bag:='{recording.bag}': bag '{recording.bag}' already exists (bags are never"
        in done.stderr
    )
    assert done.stderr.count('\n') == 1, done.stderr
    assert {p.name: p.read_bytes() for p in recording.bag.iterdir()} == before


def test_play_republishes_in_order_with_the_recorded_timing(recording):
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from sensor_msgs.msg import JointState

    run = load_run(recording.bag)
    raw = read_raw_bag(recording.bag, topics=[f'{recording.namespace}/observation'])
    recorded_span_s = (raw.messages[-1].log_time_ns - raw.messages[0].log_time_ns) * 1e-9
    side = SideNode('bag_play_probe', recording.namespace)
    got, results = [], []
    side.node.create_subscription(
        JointState,
        'observation',
        lambda m: got.append((time.monotonic(), int(m.position[0]), int(m.position[1]))),
        1000,
    )
    latched = QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    side.node.create_subscription(
        JointState, 'episode', lambda m: results.append(list(m.position)), latched
    )
    cmd = [*RPL, 'bag', 'play', str(recording.bag), '--rate', '0.5']
    cmd += ['--topics', 'observation', 'episode', '--wait-subscribers', '20']
    player = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Playback at rate 0.5 lasts twice the recorded span (long when the recording ran on
        # a loaded machine: lockstep waits for slow nodes), plus discovery and start-up.
        deadline_s = 20 + recorded_span_s / 0.5 * 1.25
        assert side.spin_until(
            lambda: len(got) == EPISODES * (STEPS + 1) and len(results) == 2, deadline_s
        ), (len(got), len(results), recorded_span_s)
        assert player.wait(timeout=20) == 0, player.stdout.read()
    finally:
        stop_process(player)
        side.close()
    played = [(e, k) for _, e, k in got]  # with each episode's o_T (step T)
    assert played == [(e, k) for e in range(EPISODES) for k in range(STEPS + 1)]
    span_s = got[-1][0] - got[0][0]
    assert span_s == pytest.approx(recorded_span_s / 0.5, rel=0.25, abs=0.05)
    first = run.episodes[0].result
    assert results[0][:2] == [0.0, float(STEPS)]  # episode id, steps run
    assert results[0][2:] == pytest.approx(list(first.as_vector()))


def test_the_trainer_node_learns_from_the_recorded_bag(recording, tmp_path):
    """The trainer node (bags only, no live namespace) stores every recorded episode, burns
    in the critic on it and writes a model and a checkpoint."""
    model, checkpoint = tmp_path / 'live' / 'actor.onnx', tmp_path / 'trainer.ckpt'
    cmd = [
        sys.executable,
        '-m',
        'rpl_trainer.trainer_node',
        '--ros-args',
        '-r',
        f'__ns:={recording.namespace}_trainer',
        '-p',
        "namespaces:=''",
        '-p',
        f'bags:={recording.bag}',
        '-p',
        f'model_path:={model}',
        '-p',
        f'checkpoint_path:={checkpoint}',
        '-p',
        'updates_per_step:=0.1',
        '-p',
        'train_overrides:=hidden_size=64',
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and proc.poll() is None and not model.exists():
            time.sleep(0.1)
        time.sleep(1.0)  # the bag is ingested before the node spins: updates are owed
    finally:
        code = stop_process(proc, timeout_s=15.0)
        output = proc.stdout.read()
    assert code in (0, -15), output
    stored = f'{EPISODES} episodes ({EPISODES * STEPS} transitions) stored'
    assert stored in output, output
    assert model.is_file() and checkpoint.is_file(), output
    learner = load_checkpoint(checkpoint)['learner']
    assert learner['counters']['episodes'] == EPISODES
    assert learner['buffer']['episodes']['action'].shape == (EPISODES, STEPS, 4)


# --- a full disk -------------------------------------------------------------------------

SMALL_FS_BYTES = 256 * 1024


@pytest.fixture
def small_disk(tmp_path):
    """(folder, preexec_fn): a folder on a 256 KiB file system (a tmpfs, where mounting is
    permitted: ENOSPC, as on a full disk), else a plain folder and a child-process file-size
    limit of 256 KiB (RLIMIT_FSIZE: EFBIG from the same write calls)."""
    folder = tmp_path / 'small_fs'
    folder.mkdir()
    mount = ['mount', '-t', 'tmpfs', '-o', f'size={SMALL_FS_BYTES}', 'tmpfs', str(folder)]
    mounted = False
    try:
        mounted = subprocess.run(mount, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        pass
    if mounted:
        yield folder, None
        subprocess.run(['umount', str(folder)], capture_output=True, timeout=10)
        return
    try:
        import resource
    except ImportError:
        pytest.skip('neither a tmpfs mount nor RLIMIT_FSIZE is available here')

    def limit_file_size() -> None:  # Python ignores SIGXFSZ: writes fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (SMALL_FS_BYTES, SMALL_FS_BYTES))

    yield folder, limit_file_size


def test_a_full_disk_stops_the_recording_with_one_line_and_keeps_the_bag(small_disk, tmp_path):
    from sensor_msgs.msg import JointState

    from rpl_interfaces.codec import StampedVector, encode

    folder, preexec = small_disk
    namespace = f'/fulldisk_{os.getpid()}'
    bag = folder / 'bag'
    cmd = [sys.executable, '-m', 'rpl_bags.bag_recorder_node']
    cmd += ros_args(namespace, f'bag:={bag}', 'topics:=command', 'flush_period_s:=0.05')
    env = dict(os.environ, ROS_LOG_DIR=str(tmp_path / 'ros_log'))
    recorder = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=preexec,
    )
    side = SideNode('full_disk_feeder', namespace)
    try:
        publisher = side.node.create_publisher(JointState, 'command', 100)
        names = [f'v{i}' for i in range(300)]  # ~5 KB per message
        step = 0
        deadline = time.monotonic() + 30.0
        while recorder.poll() is None and time.monotonic() < deadline:
            vec = StampedVector(0, step, np.full(len(names), float(step)), time.time_ns(), 'x')
            publisher.publish(encode(JointState(), vec, names))
            step += 1
            side.spin_until(lambda: False, 0.005)
        code = stop_process(recorder, timeout_s=10)
        output = recorder.stdout.read()
    finally:
        stop_process(recorder, signal.SIGKILL)
        side.close()
    assert code == 1, output
    stopped = [line for line in output.splitlines() if 'stopped recording' in line]
    assert len(stopped) == 1, output
    assert 'No space left on device' in stopped[0] or 'File too large' in stopped[0], output
    assert 'Traceback' not in output and 'Exception ignored' not in output, output
    assert 'runtime error' not in output and 'wrote ' not in output, output
    raw = read_raw_bag(bag)  # what was flushed before the disk filled up
    topic = f'{namespace}/command'
    assert raw.topics[topic].msgtype == 'sensor_msgs/msg/JointState'
    kept = [m for m in raw.messages if m.topic == topic]
    assert kept, raw.problems
    assert raw.problems  # read by salvage: no metadata.yaml, the last chunk cut off


def test_a_recording_with_nothing_on_a_control_topic_says_so_and_fails(tmp_path):
    """A recorder in another namespace than the stack, or started after it, records nothing
    (or part): the final line used to show the zero counts only, and it exited 0 when it had
    recorded nothing at all."""
    namespace = f'/nobody_{os.getpid()}'
    bag = tmp_path / 'bag'
    cmd = [sys.executable, '-m', 'rpl_bags.bag_recorder_node']
    cmd += ros_args(namespace, f'bag:={bag}', 'topics:=command,episode,/diagnostics')
    cmd += ['-p', 'startup_timeout_s:=0.0', '-p', 'settle_s:=0.0']
    recorder = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(2.0)
        code = stop_process(recorder)  # SIGTERM: a clean stop
        output = recorder.stdout.read()
    finally:
        stop_process(recorder, signal.SIGKILL)
    assert code == 3, output
    errors = [line for line in output.splitlines() if 'nothing recorded on' in line]
    assert errors == [
        '[bag_recorder] error: nothing recorded on any control topic '
        f'({namespace}/command, {namespace}/episode): '
        f'was the stack running in {namespace}, after the recorder had started?; the empty '
        f'bag {bag} was removed'
    ], output  # /diagnostics is recorded when published, never expected
    assert not bag.exists()  # not a message in it: the name is free for the rerun


def test_a_mistyped_recorder_parameter_is_one_line_and_makes_no_bag(tmp_path):
    """An unknown parameter name is refused before the node does anything: a bag made
    before the refusal would block the corrected rerun ('already exists')."""
    bag = tmp_path / 'bag'
    cmd = [sys.executable, '-m', 'rpl_bags.bag_recorder_node']
    cmd += ros_args(f'/typo_{os.getpid()}', f'bag:={bag}', 'startup_timeout:=0')
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout.startswith(
        "[bag_recorder] error: unknown parameter 'startup_timeout' (did you mean "
        "'startup_timeout_s'?): this node has bag, "
    ), done.stdout
    assert done.stdout.count('\n') == 1 and done.stderr == '', done.stdout + done.stderr
    assert not bag.exists()


def record_beside(cmd: list[str], side: SideNode, publisher, matched=None) -> tuple[int, str]:
    """Run the recorder ``cmd`` beside ``side``'s ``publisher``: once the recorder has
    matched it, call ``matched()``, give the history 1 s to arrive, stop the recorder
    cleanly (SIGTERM) and close ``side``; the recorder's exit code and output."""
    recorder = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert side.spin_until(lambda: publisher.get_subscription_count() >= 1, 20.0)
        if matched is not None:
            matched()
        side.spin_until(lambda: False, 1.0)  # what the publishers hold delivered
        code = stop_process(recorder)
        return code, recorder.stdout.read()
    finally:
        stop_process(recorder, signal.SIGKILL)
        side.close()


def test_a_recorder_gets_what_a_publisher_sent_before_dds_matched_them(tmp_path):
    """A recorder started before the stack subscribed volatile: what the control publishers
    sent before DDS matched the recorder (seconds, on a loaded machine) was not in the bag,
    and it exited 0 (81 % of a 20-episode run's actions missing). The publishers keep a
    transient-local history of 500 for that. A volatile publisher (not the checklist's) is
    recorded from its match on, with one warning."""
    from rclpy.duration import Duration
    from sensor_msgs.msg import JointState

    from rpl_interfaces import contract
    from rpl_interfaces.base_node import qos_profile
    from rpl_interfaces.codec import StampedVector, encode

    namespace = f'/early_{os.getpid()}'
    side = SideNode('early_publisher', namespace)
    kept = qos_profile(contract.QosSpec(contract.CONTROL_PUBLISHER_DEPTH, True, True))
    command = side.node.create_publisher(JointState, contract.COMMAND, kept)
    volatile = qos_profile(contract.QosSpec(10, True, False))
    base = side.node.create_publisher(JointState, contract.BASE_ACTION, volatile)

    def send(publisher, k: int) -> None:
        vec = StampedVector(0, k, np.full(4, 0.1 * k), 0, 'residual')
        publisher.publish(encode(JointState(), vec, contract.ACTION_FIELDS))

    for k in range(30):  # all sent before the recorder exists
        send(command, k)
    bag = tmp_path / 'bag'
    cmd = [sys.executable, '-m', 'rpl_bags.bag_recorder_node']
    cmd += ros_args(namespace, f'bag:={bag}', 'topics:=command,base_action')

    def matched() -> None:  # from here on the volatile publisher is recorded
        for k in range(5):
            send(base, k)
        assert base.wait_for_all_acked(Duration(seconds=10.0))

    code, output = record_beside(cmd, side, base, matched)
    assert code == 0, output
    assert f'wrote {bag}: {namespace}/command 30, {namespace}/base_action 5' in output, output
    warned = [line for line in output.splitlines() if 'is volatile: recording' in line]
    assert len(warned) == 1 and f'a publisher on {namespace}/base_action is' in warned[0], output


def test_a_remapped_topic_is_recorded_under_its_role_name_and_the_recorder_says_so(tmp_path):
    """A stack whose topics are remapped (two stacks in one namespace) was recorded under
    the role names without a word: the bag seemed to hold the other stack's topics. The
    bag keeps the role names (every rpl bag tool reads them), and the recorder names each
    remapped topic and the --remap that plays it back onto its own name."""
    from sensor_msgs.msg import JointState

    from rpl_interfaces import contract
    from rpl_interfaces.base_node import qos_profile
    from rpl_interfaces.codec import StampedVector, encode

    namespace = f'/remapped_{os.getpid()}'
    side = SideNode('remapped_publisher', namespace)
    kept = qos_profile(contract.QosSpec(contract.CONTROL_PUBLISHER_DEPTH, True, True))
    command = side.node.create_publisher(JointState, 'cmd_b', kept)
    for k in range(5):  # kept for the recorder by the transient-local history
        vec = StampedVector(0, k, np.full(4, 0.1 * k), 0, 'residual')
        command.publish(encode(JointState(), vec, contract.ACTION_FIELDS))
    bag = tmp_path / 'bag'
    cmd = [sys.executable, '-m', 'rpl_bags.bag_recorder_node']
    cmd += [*ros_args(namespace, f'bag:={bag}', 'topics:=command'), '-r', 'command:=cmd_b']
    code, output = record_beside(cmd, side, command)
    assert code == 0, output
    assert f'wrote {bag}: {namespace}/command 5' in output, output
    said = [line for line in output.splitlines() if 'recording remapped topics' in line]
    assert len(said) == 1, output
    assert f'{namespace}/cmd_b as {namespace}/command' in said[0], output
    assert f'--remap {namespace}/command:={namespace}/cmd_b' in said[0], output
    assert list(read_raw_bag(bag).topics) == [f'{namespace}/command']
