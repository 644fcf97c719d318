"""Integration: the trainer node learns from live topics and exports a loadable model.

A test-side node publishes hand-made SlipperyPush episodes (observation, base_action,
command, episode) into a namespace, one of them with a dropped command; the real
trainer node process must assemble the complete ones, skip the broken one, train, and
write an ONNX model that the residual node's loader accepts.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from helpers import SideNode, ros_args, stop_process
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


def test_trainer_node_learns_from_live_topics_and_exports_a_loadable_model(tmp_path):
    namespace = f'/trainertest_{os.getpid()}'
    model = tmp_path / 'live' / 'actor.onnx'
    cmd = [
        sys.executable,
        '-m',
        'rpl_trainer.trainer_node',
        *ros_args(
            namespace,
            f'namespaces:={namespace}',
            f'model_path:={model}',
            'export_every_updates:=10',
            'updates_per_step:=0.1',
        ),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    side = SideNode('trainer_probe', namespace)
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
        side.spin_until(lambda: False, 0.5)  # let discovery settle on the trainer's side
        for ep in range(4):
            publish_episode(side, pubs, ep, drop_command=7 if ep == 1 else None)
        assert side.spin_until(lambda: model.exists(), 20.0), 'no model exported'
        assert side.spin_until(lambda: status.get('episodes_ingested') == '3', 5.0), status
        assert status['skipped_incomplete'] == '1'
        assert status['transitions'] == str(3 * (T - 1))
        assert int(status['updates']) >= 10 and status['exports'] != '0'
        actor = OnnxActor.load(model, obs_dim=SPEC.obs_dim, goal_dim=SPEC.goal_dim)
        assert actor(np.zeros(SPEC.obs_dim), np.zeros(SPEC.goal_dim)).shape == (4,)
        assert sorted(os.listdir(model.parent)) == ['actor.onnx']
    finally:
        side.close()
        code = stop_process(proc)
        output = proc.stdout.read()
    assert code in (0, -15), output
    assert 'exported' in output, output
