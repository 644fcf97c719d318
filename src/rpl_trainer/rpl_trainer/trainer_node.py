"""ROS 2 trainer node: learns the residual from bags and live topics, exports ONNX models.

At start it ingests the bags in ``bags`` (critic burn-in included when ``updates_per_step``
> 0). Then, for every namespace in ``namespaces``, it subscribes to ``observation``,
``base_action``, ``command`` and ``episode`` (deep history, so a busy learner loses
nothing), assembles complete episodes (:class:`rpl_trainer.offline.EpisodeAssembler`:
episodes with dropped, conflicting or fallback steps are counted and skipped), stores them
and pays ``updates_per_step`` gradient steps per stored transition, a few per timer tick
so that callbacks keep flowing. Every ``export_every_updates`` gradient steps it writes a
new model to ``model_path`` by atomic replace, so a residual node with the same
``model_path`` hot-swaps it (validating before the swap). Diagnostics once per second:
episodes ingested and skipped, updates, burn-in, last export.

Run: ``python -m rpl_trainer.trainer_node --ros-args -p model_path:=models/live.onnx
-p namespaces:=/rpl -p bags:=data/run1``
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Sequence

from sensor_msgs.msg import JointState

from rpl_interfaces import contract
from rpl_interfaces.base_node import RplNode, qos_profile, run_node
from rpl_interfaces.codec import MessageError, decode
from rpl_interfaces.log_throttle import LogThrottle
from rpl_trainer import bags, offline
from rpl_trainer.config import make_config

UPDATE_PERIOD_S = 0.05
MAX_UPDATES_PER_TICK = 8  # ~0.1 s of 3 x 256 updates on one core: callbacks keep flowing
QUEUE_DEPTH = 1000
DIAGNOSTICS_PERIOD_S = 1.0


class TrainerNode(RplNode):
    """Trainer node; see the module docstring."""

    def __init__(self) -> None:
        super().__init__('trainer')
        self.config = cfg = self.declare_config(offline.TrainerNodeConfig)
        if not cfg.model_path:
            raise ValueError('model_path is empty: set the ONNX file to write (model_path:=PATH)')
        from rpl_sim_bridge.bridge import observation_layout
        from rpl_sim_bridge.tasks import task_spec

        train_config = make_config(
            {'task': cfg.task, 'controller': cfg.controller, 'seed': cfg.seed}
        )
        self.learner = offline.OfflineLearner.for_task(train_config)
        layout = observation_layout(task_spec(cfg.task))
        self.debt = offline.UpdateDebt(cfg.updates_per_step)
        self.malformed = 0
        self.bag_episodes = 0
        self.exports = 0
        self.last_export = 'none'
        self._exported_at = 0
        self._throttle = LogThrottle(5.0)
        for path in cfg.bag_list():
            report = offline.ingest_bags([path], self.learner)
            self.debt.add(report.transitions)
            self.bag_episodes += report.episodes
            self.get_logger().info(
                f'bag {path}: {report.episodes} episodes ({report.transitions} transitions) '
                f'stored, skipped {report.skipped or "none"}'
                + (f'; problems: {"; ".join(report.problems)}' if report.problems else '')
            )
        self.assemblers = {}
        self._subs = []
        for ns in cfg.namespace_list():
            assembler = offline.EpisodeAssembler(layout, self.learner.episode_steps)
            self.assemblers[ns] = assembler
            for topic, fields in (
                (contract.OBSERVATION, layout.fields),
                (contract.BASE_ACTION, contract.ACTION_FIELDS),
                (contract.COMMAND, contract.ACTION_FIELDS),
                (contract.EPISODE, contract.EPISODE_FIELDS),
            ):
                self._subs.append(self._subscribe(ns, topic, fields, assembler))
        self._diagnostics = self.make_diagnostics()
        self.create_timer(UPDATE_PERIOD_S, self._on_update_tick)
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._on_diagnostics)
        self.get_logger().info(
            f'ready: learning {cfg.task} with {cfg.controller} from '
            f'{list(self.assemblers) or "no live namespace"}; {self.learner.episodes} '
            f'episodes from bags; exporting to {cfg.model_path} every '
            f'{cfg.export_every_updates} updates'
        )

    def _subscribe(
        self,
        namespace: str,
        topic: str,
        fields: Sequence[str],
        assembler: offline.EpisodeAssembler,
    ):
        spec = contract.TOPIC_QOS[topic]
        qos = qos_profile(contract.QosSpec(QUEUE_DEPTH, spec.reliable, spec.transient_local))
        name = bags.resolve_topic(namespace, topic)
        callback: Callable[[JointState], None] = lambda msg: self._on_message(  # noqa: E731
            assembler, topic, name, fields, msg
        )
        return self.create_subscription(JointState, name, callback, qos)

    def _on_message(
        self,
        assembler: offline.EpisodeAssembler,
        topic: str,
        name: str,
        fields: Sequence[str],
        msg: JointState,
    ) -> None:
        try:
            records = assembler.add(topic, decode(msg, fields))
        except (MessageError, ValueError) as exc:
            self.malformed += 1
            log, held = self._throttle.should_log(time.monotonic(), name)
            if log:
                more = f' ({held} more since)' if held else ''
                self.get_logger().warning(f'{name}: message skipped: {exc}{more}')
            return
        if records:
            self.debt.add(self.learner.add(records))

    def _on_update_tick(self) -> None:
        self.learner.update(self.debt.take(MAX_UPDATES_PER_TICK))
        updates = self.learner.agent.updates
        if updates - self._exported_at >= self.config.export_every_updates:
            path = self.learner.export(self.config.model_path)
            self._exported_at = updates
            self.exports += 1
            self.last_export = f'{path} at {updates} updates ({time.strftime("%H:%M:%S")})'
            self.get_logger().info(f'exported {self.last_export}')

    def _on_diagnostics(self) -> None:
        counts = [a.counts for a in self.assemblers.values()]
        skipped = sum((c.skipped for c in counts), start=collections.Counter())
        agent = self.learner.agent
        values = {
            'episodes_ingested': self.learner.episodes,
            'episodes_from_bags': self.bag_episodes,
            'episodes_skipped': sum(skipped.values()),
            **{f'skipped_{reason}': skipped[reason] for reason in offline.SKIP_REASONS},
            'resent_messages': sum(c.resent for c in counts),
            'late_messages': sum(c.late for c in counts),
            'malformed_messages': self.malformed,
            'transitions': self.learner.buffer.transitions,
            'updates': agent.updates,
            'updates_owed': int(self.debt.owed),
            'burn_in': agent.actor_frozen,
            'exports': self.exports,
            'last_export': self.last_export,
        }
        level = 'warn' if self.malformed else 'ok'
        message = f'{self.learner.episodes} episodes, {agent.updates} updates'
        self.publish_diagnostics(self._diagnostics, level, message, values)


def main(args: Sequence[str] | None = None) -> int:
    """Console script ``trainer_node``: train until Ctrl-C / SIGTERM / shutdown."""
    return run_node(TrainerNode, args, name='trainer')


if __name__ == '__main__':
    raise SystemExit(main())
