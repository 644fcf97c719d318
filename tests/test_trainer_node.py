"""Integration: the trainer node learns from live topics, exports models and resumes.

A test-side node publishes hand-made SlipperyPush episodes (observation, base_action,
command, episode) into a namespace, one of them with a dropped command; the real
trainer node process must export the zero-residual model at start (no model file yet),
assemble the complete episodes, skip the broken one, train, write ONNX models that the
residual node's loader accepts, save a checkpoint when stopped, and resume from it when
started again. The live loop with a real stack is in test_live_training.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import SideNode, ros_args, stop_process, trainer_command
from sensor_msgs.msg import JointState

from rpl_bags.topics import encode_vector, recorded_topics, resolve_topic
from rpl_bags.writer import BagWriter
from rpl_interfaces import contract
from rpl_interfaces.base_node import qos_profile
from rpl_interfaces.codec import StampedVector, encode
from rpl_residual_node.onnx_actor import OnnxActor
from rpl_sim_bridge.bridge import observation_layout
from rpl_sim_bridge.tasks import task_spec
from rpl_trainer.checkpoint import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.integration

SPEC = task_spec('slippery_push')
LAYOUT = observation_layout(SPEC)
T = SPEC.max_episode_steps


def publish_episode(
    side: SideNode,
    pubs: dict,
    ep: int,
    drop_command: int | None = None,
    pace_s: float = 0.0,
    tags: tuple[str, str] = ('slippery_push', 'reactive_push'),
):
    """One episode of a slippery_push stack: observations tagged with the task, base
    actions with the controller (``tags``; the trainer's defaults), commands, o_T, result."""
    rng = np.random.default_rng(ep)
    task, controller = tags
    topics = (
        (contract.OBSERVATION, LAYOUT.fields, lambda: rng.normal(0.5, 0.1, len(LAYOUT.fields))),
        (contract.BASE_ACTION, contract.ACTION_FIELDS, lambda: rng.uniform(-1, 1, 4)),
        (contract.COMMAND, contract.ACTION_FIELDS, lambda: rng.uniform(-1, 1, 4)),
    )
    tag_of = {contract.OBSERVATION: task, contract.BASE_ACTION: controller}
    for k in range(T):
        for topic, fields, draw in topics:
            values = draw()
            if topic == contract.COMMAND and k == drop_command:
                continue
            vec = StampedVector(ep, k, values, 0, tag_of.get(topic, 'residual'))
            pubs[topic].publish(encode(JointState(), vec, fields))
        if pace_s:
            side.spin_until(lambda: False, pace_s)
    terminal = StampedVector(ep, T, topics[0][2](), 0, contract.terminal_tag(task))
    pubs[contract.OBSERVATION].publish(encode(JointState(), terminal, LAYOUT.fields))  # o_T
    result = contract.EpisodeResult(ep, False, 0.2, -float(T), T, 0, 0)
    msg = encode(
        JointState(),
        StampedVector(ep, T, result.as_vector(), 0, 'slippery_push'),
        contract.EPISODE_FIELDS,
    )
    pubs[contract.EPISODE].publish(msg)
    side.spin_until(lambda: False, 0.05)


def stack_publishers(side: SideNode) -> dict:
    """Publishers with the stack's QoS (RplNode.control_publisher's: 500 messages of
    history, transient local) on the four topics the trainer learns from."""
    deep = qos_profile(
        contract.QosSpec(
            contract.CONTROL_PUBLISHER_DEPTH,
            transient_local=contract.CONTROL_PUBLISHER_TRANSIENT_LOCAL,
        )
    )
    pubs = {
        topic: side.node.create_publisher(JointState, topic, deep)
        for topic in (contract.OBSERVATION, contract.BASE_ACTION, contract.COMMAND)
    }
    pubs[contract.EPISODE] = side.node.create_publisher(
        JointState, contract.EPISODE, qos_profile(contract.EPISODE_QOS)
    )
    return pubs


def start_trainer(namespace: str, model, checkpoint) -> subprocess.Popen:
    cmd = trainer_command(
        namespace,
        model,
        f'checkpoint_path:={checkpoint}',
        'export_every_updates:=10',
        'updates_per_step:=0.1',
        'train_overrides:=hidden_size=64',
    )
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def watched_trainer(side: SideNode, namespace: str, model) -> tuple[dict, subprocess.Popen]:
    """A small trainer node learning live in ``namespace`` and exporting to ``model``, with
    ``side`` watching its /diagnostics values (the dict, filled as they come)."""
    status = side.watch_diagnostics(f'{namespace}/trainer')
    proc = subprocess.Popen(
        trainer_command(namespace, model, 'train_overrides:=hidden_size=64'),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return status, proc


def test_trainer_node_learns_from_live_topics_exports_and_resumes(tmp_path):
    namespace = f'/trainertest_{os.getpid()}'
    model = tmp_path / 'live' / 'actor.onnx'
    checkpoint = tmp_path / 'live' / 'trainer.pt'
    proc = start_trainer(namespace, model, checkpoint)
    side = SideNode('trainer_probe', namespace)
    outputs = []
    try:
        pubs = stack_publishers(side)
        status = side.watch_diagnostics(f'{namespace}/trainer')
        matched = side.spin_until(
            lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 25.0
        )
        assert matched, 'trainer node did not subscribe'
        # The zero-residual model is there before any episode: residual nodes start on it.
        assert side.spin_until(model.exists, 10.0), 'no initial model exported'
        initial = OnnxActor.load(model, obs_dim=SPEC.obs_dim, goal_dim=SPEC.goal_dim)
        assert not initial(np.full(SPEC.obs_dim, 0.3), np.full(SPEC.goal_dim, 0.5)).any()
        side.spin_until(lambda: False, 0.5)  # let discovery settle on the trainer's side
        for ep in range(4):
            publish_episode(side, pubs, ep, drop_command=7 if ep == 1 else None)
        assert side.spin_until(lambda: status.get('episodes_ingested') == '3', 20.0), status
        assert status['skipped_incomplete'] == '1' and status['missing_messages'] == '1'
        assert status['transitions'] == str(3 * T)
        assert side.spin_until(lambda: int(status['exports']) >= 2, 10.0), status
        assert int(status['updates']) >= 10
        actor = OnnxActor.load(model, obs_dim=SPEC.obs_dim, goal_dim=SPEC.goal_dim)
        assert actor(np.zeros(SPEC.obs_dim), np.zeros(SPEC.goal_dim)).shape == (4,)
        # At the start (a node killed before the first periodic one, every 10000 updates,
        # left nothing to resume and its next start was refused), and at shutdown.
        assert checkpoint.exists()
        updates = int(status['updates'])

        # Stopped, it saves the learner; started again, it resumes from it.
        code = stop_process(proc, timeout_s=15.0)
        outputs.append(proc.stdout.read())
        assert code == 0, outputs[-1]
        assert checkpoint.exists() and 'shutdown' in outputs[-1], outputs[-1]
        assert f'checkpoint {checkpoint} at 0 updates' in outputs[-1], outputs[-1]  # start
        assert sorted(os.listdir(model.parent)) == ['actor.onnx', 'trainer.pt']
        status.clear()
        proc = start_trainer(namespace, model, checkpoint)
        assert side.spin_until(lambda: 'resumed_from' in status, 25.0), 'no diagnostics'
        assert status['episodes_ingested'] == '3'
        assert status['transitions'] == str(3 * T)
        assert int(status['updates']) >= updates
        assert status['exports'] == '0'  # the model existed: no initial export
    finally:
        side.close()
        code = stop_process(proc, timeout_s=15.0)
        outputs.append(proc.stdout.read())
    assert code == 0, outputs[-1]
    assert 'resumed from checkpoint' in outputs[-1], outputs[-1]


def test_a_corrupt_checkpoint_or_a_bad_override_stops_the_start_with_one_clear_line(tmp_path):
    checkpoint = tmp_path / 'trainer.pt'
    checkpoint.write_bytes(b'not a checkpoint')
    model = tmp_path / 'actor.onnx'
    cases = (
        (f'checkpoint_path:={checkpoint}', f'checkpoint {checkpoint} is not a torch checkpoint'),
        (
            'train_overrides:=batch_sise=64',
            "train_overrides: unknown setting 'batch_sise'; did you mean batch_size?",
        ),
        (f'init_from:={tmp_path / "none.pt"}', f'init_from: no checkpoint at {tmp_path}'),
        (f'bags:={tmp_path / "no_bag"}', f'bags: no bag at {tmp_path / "no_bag"}'),
    )
    for param, message in cases:
        args = ros_args('/trainer_start', f'model_path:={model}', param)
        run = subprocess.run(
            [sys.executable, '-m', 'rpl_trainer.trainer_node', *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 2, run.stdout + run.stderr
        assert f'[trainer] error: {message}' in run.stdout, run.stdout + run.stderr
    assert checkpoint.read_bytes() == b'not a checkpoint'  # never written over
    assert sorted(os.listdir(tmp_path)) == ['trainer.pt']  # and no model exported


def test_episodes_published_before_the_trainer_matched_are_not_lost(tmp_path):
    """DDS discovery is not instant: a stack may run its first steps before the trainer's
    subscriptions are matched to its publishers. The publishers' transient-local history
    delivers them anyway: every episode is ingested, none skipped."""
    namespace = f'/trainerlate_{os.getpid()}'
    side = SideNode('trainer_late_probe', namespace)
    pubs = stack_publishers(side)
    for ep in range(2):  # 2 x 150 step messages: within the publishers' 500
        publish_episode(side, pubs, ep)
    status, proc = watched_trainer(side, namespace, tmp_path / 'actor.onnx')
    try:
        # 60 s: torch's import alone takes 20 s on a loaded 2-core machine
        assert side.spin_until(lambda: status.get('episodes_ingested') == '2', 60.0), status
        publish_episode(side, pubs, 2)  # and the live ones after it
        assert side.spin_until(lambda: status.get('episodes_ingested') == '3', 10.0), status
        assert status['episodes_skipped'] == '0' and status['missing_messages'] == '0'
        assert status['messages_lost'] == '0'
    finally:
        side.close()
        code = stop_process(proc, timeout_s=15.0)
        output = proc.stdout.read()
    assert code == 0, output


def test_live_messages_of_another_task_or_controller_are_not_learned(tmp_path):
    """A trainer of slippery_push / reactive_push stored the episodes of a stack running
    another controller, or another task, and exited 0 (a bag of either is refused). Such
    messages are skipped, counted and said; the stack's own are learned."""
    namespace = f'/trainerforeign_{os.getpid()}'
    side = SideNode('trainer_foreign_probe', namespace)
    pubs = stack_publishers(side)
    status, proc = watched_trainer(side, namespace, tmp_path / 'actor.onnx')
    try:
        assert side.spin_until(lambda: 'episodes_ingested' in status, 60.0), status
        publish_episode(side, pubs, 0, tags=('slippery_push', 'zero'))  # another controller
        publish_episode(side, pubs, 1, tags=('push', 'reactive_push'))  # another task
        publish_episode(side, pubs, 2)  # its own
        publish_episode(side, pubs, 3, tags=('', ''))  # untagged (o_T: '/terminal'): taken
        assert side.spin_until(lambda: status.get('episodes_ingested') == '2', 20.0), status
        # T base actions of 'zero', T observations and o_T of 'push'
        assert side.spin_until(lambda: status.get('foreign_messages') == str(2 * T + 1), 10)
    finally:
        side.close()
        code = stop_process(proc, timeout_s=15.0)
        output = proc.stdout.read()
    assert code == 0, output
    assert "message skipped: a base action of controller 'zero' (its frame_id)" in output, output
    assert "message skipped: an observation of task 'push' (its frame_id)" in output, output


BURST = 12  # episodes: 600 messages per topic, more than the publishers' history of 500


def test_a_trainer_that_cannot_keep_up_says_so_and_counts_what_it_missed(tmp_path):
    """A trainer stopped (SIGSTOP: a stand-in for one starved of CPU) while 12 episodes are
    published (more than the publishers' history of 500 messages per topic), with a reader
    history of 10 messages: the publishers never wait for it, and when it runs again it
    warns that it is behind and counts what it missed: messages DDS reports lost, episodes
    skipped as incomplete with the messages they lacked."""
    namespace = f'/trainerslow_{os.getpid()}'
    side = SideNode('trainer_slow_probe', namespace)
    pubs = stack_publishers(side)
    status = side.watch_diagnostics(f'{namespace}/trainer')
    proc = subprocess.Popen(
        trainer_command(
            namespace,
            tmp_path / 'actor.onnx',
            'history_depth:=10',
            'train_overrides:=hidden_size=64',
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert side.spin_until(lambda: 'episodes_ingested' in status, 60.0), 'no diagnostics'
        side.spin_until(lambda: False, 0.5)  # let discovery settle on the trainer's side
        proc.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            for ep in range(BURST):
                publish_episode(side, pubs, ep)
            assert time.monotonic() - started < 10.0  # publishing never waited for it
            side.spin_until(lambda: False, 2.5)
        finally:
            proc.send_signal(signal.SIGCONT)

        # Running again, at a stack's pace: the next episodes close the 3 (and each other).
        side.spin_until(lambda: False, 2.0)
        for ep in (BURST, BURST + 1):
            publish_episode(side, pubs, ep, pace_s=0.02)

        # Episode BURST (paced) arrives whole: every topic has passed the ones before, so
        # each of them that left any trace is accounted for (ingested or skipped); those
        # before the first message that got through leave none but the DDS loss count.
        assert side.spin_until(lambda: int(status.get('episodes_ingested', 0)) >= 1, 30.0)
        skipped = int(status['episodes_skipped'])
        assert skipped == int(status['skipped_incomplete']) >= 1, status
        assert int(status['missing_messages']) >= skipped, status
        assert int(status['episodes_ingested']) + skipped <= BURST + 2, status
        # The publishers' history (500) overflowed for the stopped reader: DDS reports it.
        assert int(status['messages_lost']) > 0, status
    finally:
        side.close()
        code = stop_process(proc, timeout_s=15.0)
        output = proc.stdout.read()
    assert code == 0, output
    assert 's after it was sent: the trainer is behind the stacks' in output, output
    assert 'messages lost in DDS' in output and ' lacks ' in output, output


def write_task_bag(
    path, episodes: int, task: str = SPEC.name, controller: str = 'reactive_push'
) -> None:
    """A bag as the recorder writes it (rpl_bags.writer.BagWriter) of ``episodes``
    SlipperyPush episodes with made-up values, its observations tagged ``task``, its base
    actions ``controller``."""
    ns = '/recorded'
    writer = BagWriter(path, recorded_topics(ns))
    stamp = 1_000_000_000
    topics = (
        (contract.OBSERVATION, LAYOUT.fields),
        (contract.BASE_ACTION, contract.ACTION_FIELDS),
        (contract.COMMAND, contract.ACTION_FIELDS),
    )
    tags = {contract.OBSERVATION: task, contract.BASE_ACTION: controller}
    for ep in range(episodes):
        rng = np.random.default_rng(ep)
        for k in range(T):
            for topic, fields in topics:
                stamp += 1_000_000
                values = rng.uniform(-1, 1, len(fields))
                tag = tags.get(topic, 'residual')
                data = encode_vector(StampedVector(ep, k, values, stamp, tag), fields)
                writer.write(resolve_topic(ns, topic), stamp, data)
        stamp += 1_000_000  # o_T, the terminal observation
        values = rng.uniform(-1, 1, len(LAYOUT.fields))
        terminal = StampedVector(ep, T, values, stamp, contract.terminal_tag(task))
        data = encode_vector(terminal, LAYOUT.fields)
        writer.write(resolve_topic(ns, contract.OBSERVATION), stamp, data)
        result = contract.EpisodeResult(ep, False, 0.2, -float(T), T, 0, 0)
        vec = StampedVector(ep, T, result.as_vector(), stamp, 'slippery_push')
        data = encode_vector(vec, contract.EPISODE_FIELDS)
        writer.write(resolve_topic(ns, contract.EPISODE), stamp, data)
    writer.close()


def popen_trainer(args: list[str]) -> subprocess.Popen:
    """A trainer node process with ``args`` (its ``--ros-args ...``), output as text;
    Ctrl-C (SIGINT) reaches it as in a terminal, also when the test runner ignores SIGINT
    (a background job)."""
    return subprocess.Popen(
        [sys.executable, '-m', 'rpl_trainer.trainer_node', *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def run_trainer(*params: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess:
    args = ros_args('/trainer_offline', "namespaces:=''", *params)
    return subprocess.run(
        [sys.executable, '-m', 'rpl_trainer.trainer_node', *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_a_fresh_trainer_never_writes_over_an_existing_model(tmp_path):
    """Without a checkpoint to resume, the node starts a new learner and exports it: a file
    already at model_path (another run's model) was replaced without a word."""
    bag = tmp_path / 'bag'
    write_task_bag(bag, episodes=1)
    model = tmp_path / 'keep.onnx'
    model.write_bytes(b"someone else's model")
    run = run_trainer(f'bags:={bag}', f'model_path:={model}', 'exit_after_updates:=5')
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"model_path '{model}' exists and this trainer starts a new learner" in run.stdout
    assert run.stdout.count('\n') == 1, run.stdout
    assert model.read_bytes() == b"someone else's model"


def test_a_second_trainer_of_the_same_model_is_refused(tmp_path):
    """Two bag-only trainers on one model_path both trained and wrote it, the last one
    winning; the second is refused while the first holds the model."""
    bag = tmp_path / 'bag'
    write_task_bag(bag, episodes=1)
    model = tmp_path / 'out' / 'actor.onnx'
    params = [f'bags:={bag}', f'model_path:={model}', 'exit_after_updates:=200000']
    first = popen_trainer(ros_args('/trainer_lock_a', "namespaces:=''", *params))
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / 'out' / 'actor.onnx.lock').exists():
            assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
            time.sleep(0.1)
        second = run_trainer(*params)
    finally:
        stop_process(first, signal.SIGTERM, timeout_s=30)
    assert second.returncode == 2, second.stdout + second.stderr
    assert f"model_path '{model}' is being trained by another trainer (pid {first.pid})" in (
        second.stdout
    )
    assert not (tmp_path / 'out' / 'actor.onnx.lock').exists()  # released at the first's end

    # One per checkpoint too: two models, one checkpoint_path, the last save winning.
    checkpoint = tmp_path / 'b' / 'trainer.pt'
    owned = [f'model_path:={tmp_path / "b" / "actor.onnx"}', f'checkpoint_path:={checkpoint}']
    first = popen_trainer(
        ros_args('/trainer_lock_b', "namespaces:=''", f'bags:={bag}', *owned, *params[2:])
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / 'b' / 'trainer.pt.lock').exists():
            assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
            time.sleep(0.1)
        other = tmp_path / 'other' / 'actor.onnx'
        second = run_trainer(
            f'bags:={bag}', f'model_path:={other}', f'checkpoint_path:={checkpoint}'
        )
    finally:
        stop_process(first, signal.SIGTERM, timeout_s=30)
    assert second.returncode == 2, second.stdout + second.stderr
    assert f"checkpoint_path '{checkpoint}' is being trained by another trainer" in second.stdout
    assert not other.parent.exists()  # its failed start left nothing


def test_a_bag_of_another_task_or_controller_stops_the_start_with_one_line(tmp_path):
    push, other = tmp_path / 'push_bag', tmp_path / 'mpc_bag'
    write_task_bag(push, episodes=1, task='push')  # same sizes: it would have been learned
    # The learner recomputes base actions with its own controller: a bag of another one
    # was learned as if it were this one's.
    write_task_bag(other, episodes=1, controller='discrete_mpc_push')
    model = tmp_path / 'out' / 'actor.onnx'
    for bag, message in (
        (push, f"bag {push} was recorded on task 'push'; this learner learns 'slippery_push'"),
        (
            other,
            f"bag {other}: its base actions came from ['discrete_mpc_push']; this learner "
            "corrects 'reactive_push'",
        ),
    ):
        run = run_trainer(f'bags:={bag}', f'model_path:={model}', 'exit_after_updates:=5')
        assert run.returncode == 2, run.stdout + run.stderr
        assert f'[trainer] error: {message}' in run.stdout, run.stdout
    assert not (tmp_path / 'out').exists()  # a failed start leaves no model folder behind
    # A live trainer (no exit_after_updates) exported its first model before reading the
    # bags: a refused bag left it behind, and the next start was refused for it.
    live = run_trainer(f'bags:={other}', f'model_path:={model}')
    assert live.returncode == 2 and 'its base actions came from' in live.stdout, live.stdout
    assert not (tmp_path / 'out').exists()


def test_a_bag_listed_twice_is_read_once_and_ctrl_c_of_an_offline_run_fails(tmp_path):
    """The same recording under two spellings was stored twice (weighing double); Ctrl-C
    of an offline run exited 0 without a model."""
    bag = tmp_path / 'run_bag'
    write_task_bag(bag, episodes=2)
    model = tmp_path / 'out' / 'actor.onnx'
    twice = f'bags:={bag},{tmp_path}/./run_bag/'
    params = [twice, f'model_path:={model}', 'exit_after_updates:=100000000']
    args = ros_args('/trainer_twice', "namespaces:=''", *params)
    code, output = _start_until_ready(args, 1.0, signal.SIGINT)  # some updates, then Ctrl-C
    assert 'listed twice in bags): read once' in output, output
    assert '2 episodes stored' in output, output  # in the ready line: not 4
    assert code == 130, output
    assert 'stopped by SIGINT after ' in output and 'of 100000000 updates on the bags' in output
    assert f'the model as it stands exported to {model}' in output, output
    assert model.is_file()


def test_exit_after_updates_trains_on_the_bags_exports_and_exits_0(tmp_path):
    bag = tmp_path / 'run_bag'
    write_task_bag(bag, episodes=3)
    model, checkpoint = tmp_path / 'out' / 'actor.onnx', tmp_path / 'out' / 'trainer.pt'
    run = run_trainer(
        f'bags:={bag}',
        f'model_path:={model}',
        f'checkpoint_path:={checkpoint}',
        'exit_after_updates:=30',
        'train_overrides:=hidden_size=64,batch_size=32',
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert f'3 episodes ({3 * T} transitions) stored' in output, output
    assert 'done: 30 updates on 3 episodes from 1 bag(s)' in output, output
    assert 'Traceback' not in output, output
    state = load_checkpoint(checkpoint)
    assert state['learner']['agent']['updates'] == 30
    assert state['learner']['counters']['episodes'] == 3
    actor = OnnxActor.load(model, obs_dim=SPEC.obs_dim, goal_dim=SPEC.goal_dim)
    assert actor(np.zeros(SPEC.obs_dim), np.zeros(SPEC.goal_dim)).shape == (4,)

    # Run again on the same checkpoint: the bag is not read twice, 30 more updates.
    again = run_trainer(
        f'bags:={bag}',
        f'model_path:={model}',
        f'checkpoint_path:={checkpoint}',
        'exit_after_updates:=30',
        'train_overrides:=hidden_size=64,batch_size=32',
    )
    output = again.stdout + again.stderr
    assert again.returncode == 0, output
    assert 'already in the checkpoint' in output, output
    assert load_checkpoint(checkpoint)['learner']['agent']['updates'] == 60

    # Resumed onto another file that exists (a typo, another run's model): refused, the
    # file kept; the same model moved along with its checkpoint is still this run's.
    other = tmp_path / 'other.onnx'
    other.write_bytes(b'not this run')
    common = [f'checkpoint_path:={checkpoint}', 'exit_after_updates:=30']
    common.append('train_overrides:=hidden_size=64,batch_size=32')
    refused = run_trainer(f'bags:={bag}', f'model_path:={other}', *common)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"model_path '{other}' exists and is not a model this checkpoint's trainer" in (
        refused.stdout
    )
    assert other.read_bytes() == b'not this run'
    moved = tmp_path / 'moved' / 'actor.onnx'
    moved.parent.mkdir()
    model.rename(moved)
    resumed = run_trainer(f'bags:={bag}', f'model_path:={moved}', *common)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr


def test_exit_after_updates_without_usable_bags_stops_with_one_line(tmp_path):
    not_a_bag = tmp_path / 'not_a_bag'
    not_a_bag.mkdir()
    (not_a_bag / 'metadata.yaml').write_text('garbage: [')
    model = tmp_path / 'actor.onnx'
    cases = (
        ((), 'exit_after_updates:=5 trains on bags, but bags is empty'),
        ((f'bags:={tmp_path / "missing"}',), str(tmp_path / 'missing')),
        ((f'bags:={not_a_bag}',), str(not_a_bag)),
    )
    for params, message in cases:
        run = run_trainer(f'model_path:={model}', 'exit_after_updates:=5', *params)
        output = run.stdout + run.stderr
        assert run.returncode == 2, output
        errors = [line for line in run.stdout.splitlines() if '[trainer] error:' in line]
        assert len(errors) == 1 and message in errors[0], output
        assert 'Traceback' not in output, output
    assert not model.exists()


def test_an_unwritable_model_path_stops_the_start_with_one_line(tmp_path):
    a_file = tmp_path / 'a_file'
    a_file.write_text('not a folder')
    cases = (
        (f'model_path:={a_file / "actor.onnx"}', f'model_path {a_file / "actor.onnx"} cannot'),
        (f'model_path:={tmp_path}', f'model_path {tmp_path} cannot be written'),
        ('model_path:=/proc/rpl_no_such_dir/actor.onnx', 'model_path /proc/rpl_no_such_dir'),
        (
            f'checkpoint_path:={a_file / "trainer.pt"}',
            f'checkpoint_path {a_file / "trainer.pt"} cannot be written',
        ),
    )
    for param, message in cases:
        params = [param] if param.startswith('model_path') else [param, 'model_path:=x.onnx']
        run = run_trainer(*params, timeout_s=60.0)
        output = run.stdout + run.stderr
        assert run.returncode == 2, output
        assert f'[trainer] error: {message}' in run.stdout, output
        assert 'Traceback' not in output, output
        # Checked first: before torch, the learner or any bag (no 'ready', no export).
        assert 'ready:' not in output and 'exported' not in output, output


def _start_until_ready(
    args: list[str], run_s: float = 0.0, sig: int = signal.SIGTERM
) -> tuple[int, str]:
    """Start a trainer node, stop it with ``sig`` ``run_s`` after it is ready, or once it
    has failed; its exit status and output."""
    proc = popen_trainer(args)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if 'ready:' in line or 'error' in line:
                time.sleep(run_s if 'ready:' in line else 0.0)
                break
    finally:
        code = stop_process(proc, sig, timeout_s=30.0)
        output = ''.join(lines) + proc.stdout.read()
    return code, output


def test_init_from_starts_the_node_from_an_rpl_train_run(tmp_path):
    """Warm start of live learning from a simulation-trained run: the node's learner is the
    run's (networks, normalisers, burn-in, replay buffer), saved again as its own."""
    import torch

    from rpl_trainer.cli import main as rpl_main

    SPEC_PUSH = task_spec('push')  # noqa: N806

    run = tmp_path / 'sim_run'
    threads = torch.get_num_threads()
    args = ['train', '--task', 'push', '--controller', 'reactive_push', '--steps', '200']
    small = ['--set', 'hidden_size=32', '--set', 'buffer_size=5000', '--set', 'batch_size=32']
    small += ['--set', 'burn_in_beta=0', '--updates-per-step', '0.5']  # the actor learns
    quiet = ['--eval-episodes', '2', '--set', 'base_eval_episodes=0', '--vector-env', 'sync']
    assert rpl_main([*args, *small, *quiet, '--no-progress', '--out', str(run)]) == 0
    torch.set_num_threads(threads)
    trained = load_checkpoint(run / 'checkpoint.pt')['learner']
    assert trained['agent']['updates'] == 50 and trained['agent']['burn_in']['active'] is False

    model, checkpoint = tmp_path / 'live' / 'actor.onnx', tmp_path / 'live' / 'trainer.pt'
    node = ('task:=push', 'controller:=reactive_push', f'init_from:={run / "checkpoint.pt"}')
    refused = run_trainer(*node, f'model_path:={model}', 'train_overrides:=batch_size=64')
    output = refused.stdout + refused.stderr
    assert refused.returncode == 2, output
    errors = [line for line in refused.stdout.splitlines() if '[trainer] error:' in line]
    assert len(errors) == 1 and 'batch_size: 32 -> 64' in errors[0], output

    live = (f'model_path:={model}', f'checkpoint_path:={checkpoint}')
    args = ros_args('/trainer_warm', "namespaces:=''", *node, *live)
    code, output = _start_until_ready(args)
    assert code == 0, output
    assert f'started from the rpl_train checkpoint {run / "checkpoint.pt"}' in output, output
    state = load_checkpoint(checkpoint)  # saved at shutdown, as the node's own
    assert state['kind'] == 'trainer_node'
    learner = state['learner']
    assert learner['agent']['updates'] == trained['agent']['updates']
    assert learner['counters']['episodes'] == trained['counters']['episodes'] == 4
    for name in ('actor', 'critic'):
        for key, value in trained['agent'][name].items():
            assert np.array_equal(learner['agent'][name][key], value), (name, key)
    np.testing.assert_array_equal(
        learner['buffer']['episodes']['obs'], trained['buffer']['episodes']['obs']
    )
    # Exported at start: the warm-started model, not the zero residual.
    actor = OnnxActor.load(model, obs_dim=SPEC_PUSH.obs_dim, goal_dim=SPEC_PUSH.goal_dim)
    assert actor(np.full(SPEC_PUSH.obs_dim, 0.3), np.full(SPEC_PUSH.goal_dim, 0.5)).any()

    # Started again with the same parameters, the node continues its own checkpoint and
    # says that init_from is not read (it was silently ignored).
    code, output = _start_until_ready(args)
    assert code == 0, output
    assert f'resumed from checkpoint {checkpoint}' in output, output
    assert f'init_from:={run / "checkpoint.pt"} not read' in output, output
    assert 'started from the rpl_train checkpoint' not in output, output

    # init_from no longer set: the learner init_from brought (hidden_size 32, not the
    # default) still continues; its config is in the node's checkpoint (it was refused).
    args = ros_args('/trainer_warm', "namespaces:=''", *node[:2], *live)
    code, output = _start_until_ready(args)
    assert code == 0, output
    assert f'resumed from checkpoint {checkpoint}' in output, output
    assert load_checkpoint(checkpoint)['learner']['config']['hidden_size'] == 32

    # A checkpoint from before stop 36 does not say where its learner came from: with
    # init_from still set it resumes, and says so from then on (its second restart was
    # refused: the first one saved "started from nothing").
    old = load_checkpoint(checkpoint)
    del old['extra']['init_from']
    save_checkpoint(checkpoint, old)
    code, output = _start_until_ready(ros_args('/trainer_warm', "namespaces:=''", *node, *live))
    assert code == 0 and f'resumed from checkpoint {checkpoint}' in output, output
    assert load_checkpoint(checkpoint)['extra']['init_from'] == os.path.realpath(
        run / 'checkpoint.pt'
    )
    code, output = _start_until_ready(args)  # init_from no longer set
    assert code == 0 and f'resumed from checkpoint {checkpoint}' in output, output


def test_a_live_trainer_exports_its_last_model_at_the_stop(tmp_path):
    """model_path lagged up to export_every_updates updates behind the learner at a stop,
    and a short live run left only the zero-residual model."""
    bag = tmp_path / 'run_bag'
    write_task_bag(bag, episodes=2)
    model = tmp_path / 'out' / 'actor.onnx'
    params = [f'bags:={bag}', f'model_path:={model}', 'export_every_updates:=100000000']
    args = ros_args('/trainer_last', 'namespaces:=/trainer_last', *params)
    code, output = _start_until_ready(args, 1.5, signal.SIGINT)  # updates on the bags' data
    assert code == 0, output
    exports = [line for line in output.splitlines() if ']: exported ' in line]
    assert len(exports) == 2, output
    assert exports[0].endswith('did not exist') and ' at 0 updates ' in exports[0], output
    assert exports[1].endswith(': shutdown') and ' at 0 updates ' not in exports[1], output
    assert model.is_file()


def test_a_live_trainer_never_writes_over_a_model_copied_to_its_model_path(tmp_path, repo_root):
    """A model copied over model_path while the trainer ran (to try it on the stack) was
    overwritten by the next export, without a word: now this run's models go beside it."""
    import shutil

    bag = tmp_path / 'run_bag'
    write_task_bag(bag, episodes=2)
    model = tmp_path / 'out' / 'actor.onnx'
    params = [f'bags:={bag}', f'model_path:={model}', 'export_every_updates:=100000000']
    proc = popen_trainer(ros_args('/trainer_taken', 'namespaces:=/trainer_taken', *params))
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if 'ready:' in line or 'error' in line:
                break
        assert model.is_file(), ''.join(lines)  # the zero-residual model, at the start
        foreign = repo_root / 'models' / 'slippery_push_reactive_push' / 'actor.onnx'
        shutil.copyfile(foreign, model)  # the user's own model, over the trainer's
        time.sleep(1.5)  # updates on the bags' data: the stop exports the last model
    finally:
        code = stop_process(proc, signal.SIGINT, timeout_s=30.0)
        output = ''.join(lines) + proc.stdout.read()
    assert code == 1, output
    assert model.read_bytes() == foreign.read_bytes(), output  # not written over
    diverted = [p for p in model.parent.iterdir() if p.name.startswith('actor.run-')]
    assert len(diverted) == 1 and diverted[0].suffix == '.onnx', output
    assert OnnxActor.load(diverted[0]).action_dim == 4  # this run's last model, loadable
    said = f'model_path {model} was replaced by a model this trainer did not write'
    assert output.count(said) == 2 and output.rstrip().endswith('exit code 1'), output
