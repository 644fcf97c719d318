"""Integration: live learning on a real SlipperyPush stack (issue 4's loop, end to end).

The trainer node starts first with no model file: it exports the zero-residual model at
once. Then `rpl launch rpl_bringup slippery_push.launch.py` runs a few lockstep episodes
in the same namespace with the residual node on that model file. The trainer must learn
from the stack's live topics, export new models while the episodes run, and the residual
node must hot-reload them, without one fallback or dropped command in the sim bridge.
"""

from __future__ import annotations

import json
import os

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from helpers import LAUNCH, Child, SideNode, trainer_command

from rpl_interfaces import contract
from rpl_interfaces.base_node import qos_profile

pytestmark = pytest.mark.integration

EPISODES = 6
T = 50  # SlipperyPush episode steps


def test_a_live_stack_feeds_the_trainer_and_hot_reloads_its_models(tmp_path):
    namespace = f'/live_{os.getpid()}'
    model = tmp_path / 'live' / 'actor.onnx'
    results = tmp_path / 'episodes.json'
    trainer = Child(
        trainer_command(
            namespace,
            model,
            'export_every_updates:=10',
            'updates_per_step:=1.0',
            # the actor learns from the first update (no burn-in): new models differ
            'train_overrides:=burn_in_beta=0,batch_size=64,hidden_size=64',
        )
    )
    side = SideNode('live_probe', namespace)
    stack = None
    status: dict[str, dict[str, str]] = {}

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for s in msg.status:
            if s.name in (f'{namespace}/trainer', f'{namespace}/residual_node'):
                status.setdefault(s.name.rsplit('/', 1)[1], {}).update(
                    {kv.key: kv.value for kv in s.values}
                )

    side.node.create_subscription(
        DiagnosticArray, '/diagnostics', on_diagnostics, qos_profile(contract.DIAGNOSTICS_QOS)
    )
    try:
        assert side.spin_until(model.exists, 30.0), f'no initial model:\n{trainer.output()}'
        stack = Child(
            [
                *LAUNCH,
                'slippery_push.launch.py',
                f'namespace:={namespace}',
                f'model_path:={model}',
                f'episodes:={EPISODES}',
                'seed:=5',
                'command_timeout:=0.5',  # the trainer shares the 2 cores: no timing fallbacks
                'max_rate:=40',  # uncapped, the stack starves the trainer (README)
                'monitor:=true',
                f'results:={results}',
            ]
        )
        ended = side.spin_until(lambda: stack.proc.poll() is not None, 60.0)
        assert ended and stack.proc.returncode == 0, stack.output()

        def ingested() -> int:
            return int(status.get('trainer', {}).get('episodes_ingested', 0))

        side.spin_until(lambda: ingested() >= EPISODES, 10.0)  # it may lag a little
    finally:
        side.close()
        if stack is not None:
            stack.stop()
        trainer.stop()

    # The sim ran every episode on the residual node's commands: no fallback, no drop.
    data = json.loads(results.read_text())
    assert [e['episode'] for e in data['episodes']] == list(range(EPISODES)), stack.output()
    assert all(e['steps'] == T for e in data['episodes'])
    fallbacks = [(e['fallback_base'], e['fallback_zero']) for e in data['episodes']]
    assert fallbacks == [(0, 0)] * EPISODES, stack.output()

    # The trainer learned from every live episode, the first included (the publishers'
    # transient-local history covers a trainer whose subscriptions DDS matched after the
    # stack started), and exported new models after the initial one.
    trained = status['trainer']
    assert int(trained['episodes_ingested']) == EPISODES, (trained, trainer.output())
    assert trained['episodes_skipped'] == '0', (trained, trainer.output())
    assert trained['missing_messages'] == '0' and trained['messages_lost'] == '0', trained
    assert trained['malformed_messages'] == '0', trained
    assert int(trained['transitions']) == int(trained['episodes_ingested']) * T  # o_T too
    assert int(trained['updates']) >= 10 and int(trained['exports']) >= 2, trained

    # The residual node started on the initial model and swapped in a new one while the
    # episodes ran, and every decision came from a model (no fallback to the base action).
    residual = status['residual_node']
    assert residual['model_loaded'] == 'True', residual
    assert int(residual['count.ok']) >= (EPISODES - 1) * T, residual
    assert residual['decisions'] == residual['count.ok'], residual
    loads = [
        i
        for i, line in enumerate(stack.lines)
        if 'residual_node' in line and 'loaded model' in line
    ]
    last_episode = next(
        i for i, line in enumerate(stack.lines) if f'episode {EPISODES - 1:3d}:' in line
    )
    assert len(loads) >= 2 and loads[1] < last_episode, stack.output()
