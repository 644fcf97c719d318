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
import subprocess
import sys

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from helpers import SideNode, ros_args, stop_process, trainer_command
from sensor_msgs.msg import JointState

from rpl_interfaces import contract
from rpl_interfaces.base_node import qos_profile
from rpl_interfaces.codec import StampedVector, encode
from rpl_residual_node.onnx_actor import OnnxActor
from rpl_sim_bridge.bridge import observation_layout
from rpl_sim_bridge.tasks import task_spec

pytestmark = pytest.mark.integration

SPEC = task_spec('slippery_push')
LAYOUT = observation_layout(SPEC)
T = SPEC.max_episode_steps


def publish_episode(side: SideNode, pubs: dict, ep: int, drop_command: int | None = None):
    rng = np.random.default_rng(ep)
    topics = (
        (contract.OBSERVATION, LAYOUT.fields, lambda: rng.normal(0.5, 0.1, len(LAYOUT.fields))),
        (contract.BASE_ACTION, contract.ACTION_FIELDS, lambda: rng.uniform(-1, 1, 4)),
        (contract.COMMAND, contract.ACTION_FIELDS, lambda: rng.uniform(-1, 1, 4)),
    )
    for k in range(T):
        for topic, fields, draw in topics:
            values = draw()
            if topic == contract.COMMAND and k == drop_command:
                continue
            msg = encode(JointState(), StampedVector(ep, k, values, 0, 'test'), fields)
            pubs[topic].publish(msg)
    result = contract.EpisodeResult(ep, False, 0.2, -float(T), T, 0, 0)
    msg = encode(
        JointState(),
        StampedVector(ep, T, result.as_vector(), 0, 'slippery_push'),
        contract.EPISODE_FIELDS,
    )
    pubs[contract.EPISODE].publish(msg)
    side.spin_until(lambda: False, 0.05)


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


def test_trainer_node_learns_from_live_topics_exports_and_resumes(tmp_path):
    namespace = f'/trainertest_{os.getpid()}'
    model = tmp_path / 'live' / 'actor.onnx'
    checkpoint = tmp_path / 'live' / 'trainer.pt'
    proc = start_trainer(namespace, model, checkpoint)
    side = SideNode('trainer_probe', namespace)
    outputs = []
    try:
        deep = qos_profile(contract.QosSpec(depth=1000))  # a burst: keep every message
        pubs = {
            topic: side.node.create_publisher(JointState, topic, deep)
            for topic in (contract.OBSERVATION, contract.BASE_ACTION, contract.COMMAND)
        }
        pubs[contract.EPISODE] = side.node.create_publisher(
            JointState, contract.EPISODE, qos_profile(contract.EPISODE_QOS)
        )
        status = {}

        def on_diagnostics(msg: DiagnosticArray) -> None:
            for s in msg.status:
                if s.name.endswith('/trainer'):
                    status.update({kv.key: kv.value for kv in s.values})

        side.node.create_subscription(
            DiagnosticArray, '/diagnostics', on_diagnostics, qos_profile(contract.DIAGNOSTICS_QOS)
        )
        matched = side.spin_until(
            lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 25.0
        )
        assert matched, 'trainer node did not subscribe'
        # The zero-residual model is there before any episode: residual nodes start on it.
        assert model.exists(), 'no initial model exported'
        initial = OnnxActor.load(model, obs_dim=SPEC.obs_dim, goal_dim=SPEC.goal_dim)
        assert not initial(np.full(SPEC.obs_dim, 0.3), np.full(SPEC.goal_dim, 0.5)).any()
        side.spin_until(lambda: False, 0.5)  # let discovery settle on the trainer's side
        for ep in range(4):
            publish_episode(side, pubs, ep, drop_command=7 if ep == 1 else None)
        assert side.spin_until(lambda: status.get('episodes_ingested') == '3', 20.0), status
        assert status['skipped_incomplete'] == '1'
        assert status['transitions'] == str(3 * (T - 1))
        assert side.spin_until(lambda: int(status['exports']) >= 2, 10.0), status
        assert int(status['updates']) >= 10
        actor = OnnxActor.load(model, obs_dim=SPEC.obs_dim, goal_dim=SPEC.goal_dim)
        assert actor(np.zeros(SPEC.obs_dim), np.zeros(SPEC.goal_dim)).shape == (4,)
        assert not checkpoint.exists()  # every 10000 updates, and at shutdown
        updates = int(status['updates'])

        # Stopped, it saves the learner; started again, it resumes from it.
        code = stop_process(proc)
        outputs.append(proc.stdout.read())
        assert code == 0, outputs[-1]
        assert checkpoint.exists() and 'shutdown' in outputs[-1], outputs[-1]
        assert sorted(os.listdir(model.parent)) == ['actor.onnx', 'trainer.pt']
        status.clear()
        proc = start_trainer(namespace, model, checkpoint)
        assert side.spin_until(lambda: 'resumed_from' in status, 25.0), 'no diagnostics'
        assert status['episodes_ingested'] == '3'
        assert status['transitions'] == str(3 * (T - 1))
        assert int(status['updates']) >= updates
        assert status['exports'] == '0'  # the model existed: no initial export
    finally:
        side.close()
        code = stop_process(proc)
        outputs.append(proc.stdout.read())
    assert code == 0, outputs[-1]
    assert 'resumed from checkpoint' in outputs[-1], outputs[-1]


def test_a_corrupt_checkpoint_or_a_bad_override_stops_the_start_with_one_clear_line(tmp_path):
    checkpoint = tmp_path / 'trainer.pt'
    checkpoint.write_bytes(b'not a checkpoint')
    model = tmp_path / 'actor.onnx'
    cases = (
        (f'checkpoint_path:={checkpoint}', f'checkpoint {checkpoint} is corrupt or unreadable'),
        ('train_overrides:=batch_sise=64', "train_overrides: unknown key 'batch_sise'"),
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
