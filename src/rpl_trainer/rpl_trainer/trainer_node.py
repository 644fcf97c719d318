"""ROS 2 trainer node: learns the residual from bags and live topics, exports ONNX models.

At start it resumes from ``checkpoint_path`` if that file exists, exports the current
model at once if ``model_path`` does not exist yet (before any update that is the zero
residual, i.e. exactly the base controller, so residual nodes start on a model), and
ingests the bags in ``bags`` not already in the checkpoint (critic burn-in included when
``updates_per_step`` > 0). Then, for every namespace in ``namespaces``, it subscribes to
``observation``, ``base_action``, ``command`` and ``episode`` (deep history, so a busy
learner loses nothing), assembles complete episodes
(:class:`rpl_trainer.offline.EpisodeAssembler`: episodes with dropped, conflicting or
fallback steps are counted and skipped), stores them and pays ``updates_per_step``
gradient steps per stored transition in short timer ticks, so that messages keep flowing.
Every ``export_every_updates`` gradient steps it writes a new model to ``model_path`` by
atomic replace, so a residual node with the same ``model_path`` hot-swaps it (validating
before the swap). With ``checkpoint_path`` it saves the learner (agent, normalisers,
replay buffer, counters) every ``checkpoint_every_updates`` gradient steps and when it is
stopped (Ctrl-C / SIGTERM), by atomic replace. ``train_overrides`` sets TrainConfig fields
(``'burn_in_window=500,batch_size=128'``). Diagnostics once per second (episodes ingested
and skipped, updates, burn-in, exports, checkpoints), a progress line every 10 s.

Run: ``python -m rpl_trainer.trainer_node --ros-args -p model_path:=models/live.onnx
-p namespaces:=/rpl -p bags:=data/run1 -p checkpoint_path:=runs/live/trainer.pt``
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable, Sequence

from sensor_msgs.msg import JointState

from rpl_interfaces import contract
from rpl_interfaces.base_node import RplNode, qos_profile, run_node
from rpl_interfaces.codec import MessageError, decode
from rpl_interfaces.log_throttle import LogThrottle
from rpl_trainer import bags, offline
from rpl_trainer.checkpoint import CheckpointError

# Gradient steps run in timer ticks of at most UPDATE_BUDGET_S every UPDATE_PERIOD_S: the
# executor takes one message per subscription per turn, so ticks that take longer than
# their period starve the subscriptions (seen: a lockstep stack 4 episodes ahead of the
# trainer after 6). Half the time stays for messages; what is not paid is owed
# (diagnostics: updates_owed). One 3 x 256 update at batch 256: ~12-20 ms on one core.
UPDATE_PERIOD_S = 0.05
UPDATE_BUDGET_S = 0.025
QUEUE_DEPTH = 1000
DIAGNOSTICS_PERIOD_S = 1.0
PROGRESS_PERIOD_S = 10.0


class TrainerNode(RplNode):
    """Trainer node; see the module docstring."""

    def __init__(self) -> None:
        super().__init__('trainer')
        self.config = cfg = self.declare_config(offline.TrainerNodeConfig)
        if not cfg.model_path:
            raise ValueError('model_path is empty: set the ONNX file to write (model_path:=PATH)')
        from rpl_sim_bridge.bridge import observation_layout
        from rpl_sim_bridge.tasks import task_spec

        self.learner = offline.OfflineLearner.for_task(cfg.train_config())
        layout = observation_layout(task_spec(cfg.task))
        self.debt = offline.UpdateDebt(cfg.updates_per_step)
        self.malformed = 0
        self.bag_episodes = 0
        self.bags_ingested: list[str] = []
        self.exports = 0
        self.last_export = 'none'
        self.checkpoints = 0
        self.last_checkpoint = 'none'
        self.resumed = 'no'
        self._throttle = LogThrottle(5.0)
        if cfg.checkpoint_path and os.path.exists(cfg.checkpoint_path):
            self._resume(cfg.checkpoint_path)
        self._exported_at = self._checkpointed_at = self.learner.agent.updates
        if not os.path.exists(cfg.model_path):
            which = 'resumed' if self.learner.agent.updates else 'initial (zero residual)'
            self._export(f'{which} model, {cfg.model_path} did not exist')
        for path in cfg.bag_list():
            if path in self.bags_ingested:
                self.get_logger().info(f'bag {path}: already in the checkpoint, not read again')
                continue
            report = offline.ingest_bags([path], self.learner)
            self.debt.add(report.transitions)
            self.bag_episodes += report.episodes
            self.bags_ingested.append(path)
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
        self.create_timer(PROGRESS_PERIOD_S, self._on_progress)
        # Only a node that started completely saves at shutdown: one that failed on start
        # (a corrupt checkpoint, say) must leave the file as it found it.
        self._save_at_shutdown = bool(cfg.checkpoint_path)
        checkpoints = (
            f'; checkpoint {cfg.checkpoint_path} every {cfg.checkpoint_every_updates} updates '
            'and at shutdown'
            if cfg.checkpoint_path
            else '; no checkpoint_path: the learner is lost at shutdown'
        )
        self.get_logger().info(
            f'ready: learning {cfg.task} with {cfg.controller} from '
            f'{list(self.assemblers) or "no live namespace"}; {self.learner.episodes} '
            f'episodes stored; exporting to {cfg.model_path} every '
            f'{cfg.export_every_updates} updates{checkpoints}'
        )

    def _resume(self, path: str) -> None:
        try:
            extra = offline.load_learner(path, self.learner)
        except CheckpointError as exc:
            # run_node prints a ValueError as one line; the file is only ever read here.
            raise ValueError(
                f'{exc}. The file was left as it is: fix the parameters to match it, or move '
                'it away (or set another checkpoint_path) to start afresh'
            ) from exc
        self.debt.owed = float(extra.get('updates_owed', 0.0))
        self.bag_episodes = int(extra.get('bag_episodes', 0))
        self.bags_ingested = [str(p) for p in extra.get('bags', [])]
        agent = self.learner.agent
        self.resumed = f'{path} ({self.learner.episodes} episodes, {agent.updates} updates)'
        self.get_logger().info(
            f'resumed from checkpoint {path}: {self.learner.episodes} episodes, '
            f'{self.learner.buffer.transitions} transitions, {agent.updates} updates, '
            f'burn-in {"on" if agent.actor_frozen else "over"}'
        )

    def _export(self, why: str) -> None:
        path = self.learner.export(self.config.model_path)
        self._exported_at = self.learner.agent.updates
        self.exports += 1
        self.last_export = f'{path} at {self._exported_at} updates ({time.strftime("%H:%M:%S")})'
        self.get_logger().info(f'exported {self.last_export}: {why}')

    def save_checkpoint(self, why: str) -> None:
        """Save the learner and this node's counters to ``checkpoint_path`` (atomic)."""
        path = self.config.checkpoint_path
        started = time.monotonic()
        extra = {
            'updates_owed': self.debt.owed,
            'bag_episodes': self.bag_episodes,
            'bags': list(self.bags_ingested),
        }
        offline.save_learner(path, self.learner, extra)
        self._checkpointed_at = self.learner.agent.updates
        self.checkpoints += 1
        self.last_checkpoint = (
            f'{path} at {self._checkpointed_at} updates ({time.strftime("%H:%M:%S")})'
        )
        self.get_logger().info(
            f'checkpoint {self.last_checkpoint} ({why}; {time.monotonic() - started:.1f} s)'
        )

    def destroy_node(self) -> None:
        """Save a last checkpoint, then destroy the node.

        run_node calls this after Ctrl-C / SIGTERM; rclpy's shutdown also destroys the nodes
        of its context, including one whose ``__init__`` raised: that one saves nothing.
        """
        if getattr(self, '_save_at_shutdown', False):
            self._save_at_shutdown = False  # once, whoever calls first
            try:
                self.save_checkpoint('shutdown')
            except Exception as exc:  # report it; the node still goes down
                self.get_logger().error(
                    f'could not save the checkpoint {self.config.checkpoint_path}: {exc}'
                )
        super().destroy_node()

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
        deadline = time.monotonic() + UPDATE_BUDGET_S
        while time.monotonic() < deadline and self.debt.take(1):
            self.learner.update(1)
        updates = self.learner.agent.updates
        if updates - self._exported_at >= self.config.export_every_updates:
            self._export(f'every {self.config.export_every_updates} updates')
        checkpoint_every = self.config.checkpoint_every_updates
        if self.config.checkpoint_path and updates - self._checkpointed_at >= checkpoint_every:
            self.save_checkpoint(f'every {checkpoint_every} updates')

    def _skipped(self) -> collections.Counter[str]:
        counts = [a.counts for a in self.assemblers.values()]
        return sum((c.skipped for c in counts), start=collections.Counter())

    def _on_progress(self) -> None:
        agent = self.learner.agent
        skipped = self._skipped()
        reasons = ', '.join(f'{n} {reason}' for reason, n in sorted(skipped.items()) if n)
        self.get_logger().info(
            f'progress: {self.learner.episodes} episodes ({self.bag_episodes} from bags, '
            f'{sum(skipped.values())} skipped{": " + reasons if reasons else ""}), '
            f'{self.learner.buffer.transitions} '
            f'transitions, {agent.updates} updates ({int(self.debt.owed)} owed), burn-in '
            f'{"on" if agent.actor_frozen else "over"}, {self.exports} exports (last: '
            f'{self.last_export})'
        )

    def _on_diagnostics(self) -> None:
        counts = [a.counts for a in self.assemblers.values()]
        skipped = self._skipped()
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
            'checkpoints': self.checkpoints,
            'last_checkpoint': self.last_checkpoint,
            'resumed_from': self.resumed,
        }
        level = 'warn' if self.malformed else 'ok'
        message = f'{self.learner.episodes} episodes, {agent.updates} updates'
        self.publish_diagnostics(self._diagnostics, level, message, values)


def main(args: Sequence[str] | None = None) -> int:
    """Console script ``trainer_node``: train until Ctrl-C / SIGTERM / shutdown."""
    return run_node(TrainerNode, args, name='trainer')


if __name__ == '__main__':
    raise SystemExit(main())
