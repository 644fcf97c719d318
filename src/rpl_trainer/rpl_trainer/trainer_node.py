"""ROS 2 trainer node: learns the residual from bags and live topics, exports ONNX models.

At start it checks that ``model_path`` (and ``checkpoint_path``) can be written, resumes
from ``checkpoint_path`` if that file exists, exports the current model at once if
``model_path`` does not exist yet (before any update that is the zero residual, i.e.
exactly the base controller, so residual nodes start on a model), and ingests the bags in
``bags`` not already in the checkpoint (critic burn-in included when ``updates_per_step``
> 0). Then, for every namespace in ``namespaces``, it subscribes to ``observation``,
``base_action``, ``command`` and ``episode`` and assembles complete episodes
(:class:`rpl_trainer.assembler.EpisodeAssembler`: episodes with dropped, conflicting or
fallback steps are counted and skipped, and what they lacked is logged), stores them and
pays ``updates_per_step`` gradient steps per stored transition in short timer ticks.

The live path loses nothing while the trainer keeps up, and never makes the stacks wait:

* the subscriptions are reliable, transient local (a publisher matched late by DDS
  discovery delivers its first messages from its history) and keep ``history_depth``
  messages per topic (KEEP_LAST: the stack's publishers never wait for the trainer);
* before every gradient step the tick takes every waiting message (the executor alone
  takes one message per subscription per turn);
* when it falls behind it says so (messages taken more than ``INTAKE_DELAY_WARN_S`` after
  they were sent) and counts what it did not get: messages DDS reports lost, and the
  messages the skipped episodes lacked (diagnostics ``messages_lost``,
  ``missing_messages``);
* a resumed trainer ignores the messages its checkpoint already holds.

Every ``export_every_updates`` gradient steps it writes a new model to ``model_path`` by
atomic replace, so a residual node with the same ``model_path`` hot-swaps it (validating
before the swap). With ``checkpoint_path`` it saves the learner (agent, normalisers,
replay buffer, counters) every ``checkpoint_every_updates`` gradient steps and when it is
stopped (Ctrl-C / SIGTERM), by atomic replace. ``init_from`` starts a new learner (no
``checkpoint_path`` file yet) from another checkpoint: an ``rpl train`` run's (warm start
from simulation: networks, normalisers, burn-in state, replay buffer) or another trainer
node's; its config is the base, and the node's task, controller and ``train_overrides``
must agree with its learner fields. ``train_overrides`` sets TrainConfig fields
(``'burn_in_window=500,batch_size=128'``). ``exit_after_updates:=N`` is offline learning on
recorded robot data: N gradient steps on the bags (no live topics), export, checkpoint,
exit 0. Diagnostics once per second (episodes ingested and skipped, updates, burn-in,
exports, checkpoints, intake), a progress line every 10 s.

Run: ``python -m rpl_trainer.trainer_node --ros-args -p model_path:=models/live.onnx
-p namespaces:=/rpl -p bags:=data/run1 -p checkpoint_path:=runs/live/trainer.pt``; offline:
``python -m rpl_trainer.trainer_node --ros-args -p bags:=data/run1 -p namespaces:=''
-p exit_after_updates:=20000 -p model_path:=models/offline.onnx``
"""

from __future__ import annotations

import collections
import contextlib
import os
import pathlib
import signal
import time
import uuid
from collections.abc import Callable, Sequence

import rclpy
from rclpy.event_handler import QoSMessageLostInfo, SubscriptionEventCallbacks
from sensor_msgs.msg import JointState

from rpl_bags.topics import resolve_topic
from rpl_interfaces import contract
from rpl_interfaces.base_node import RplNode, StartInterrupted, qos_profile, run_node
from rpl_interfaces.codec import MessageError, decode
from rpl_interfaces.log_throttle import LogThrottle
from rpl_interfaces.output_files import missing_parents
from rpl_interfaces.trainer_files import bag_identity
from rpl_trainer import offline
from rpl_trainer.assembler import EpisodeAssembler
from rpl_trainer.bag_ingest import ingest_bags
from rpl_trainer.checkpoint import CheckpointError, load_learner_checkpoint
from rpl_trainer.episodes import INCOMPLETE, SKIP_REASONS
from rpl_trainer.learner import start_from
from rpl_trainer.residual import scale_range_note
from rpl_trainer.run_dir import ExclusiveLock
from rpl_trainer.schedule import SaveSchedule
from rpl_trainer.trainer_node_config import TrainerNodeConfig

# Gradient steps run in timer ticks of at most UPDATE_BUDGET_S every UPDATE_PERIOD_S, and
# before every one of them the tick takes every message waiting in the subscriptions'
# reader histories (intake first: a message is never left waiting for a gradient step).
# What is not paid is owed (diagnostics: updates_owed). One 3 x 256 update at batch 256:
# ~12-20 ms on one core. Offline (exit_after_updates) a tick trains for OFFLINE_BUDGET_S.
UPDATE_PERIOD_S = 0.05
UPDATE_BUDGET_S = 0.025
OFFLINE_BUDGET_S = 0.5
# Messages older than this when taken (sender's stamp to now) mean the trainer is falling
# behind the stacks: said once per LAG_LOG_PERIOD_S.
INTAKE_DELAY_WARN_S = 2.0
LAG_LOG_PERIOD_S = 10.0
DIAGNOSTICS_PERIOD_S = 1.0
PROGRESS_PERIOD_S = 10.0


RUN_KEY = 'trainer_run'
"""Model metadata: the id of the trainer run (kept in its checkpoint) that exported it."""


def model_run(path: str | os.PathLike[str]) -> str | None:
    """The trainer run a model file says it comes from (:data:`RUN_KEY`), or None: not an
    ONNX model, or one without the key."""
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(os.fspath(path), providers=['CPUExecutionProvider'])
    except Exception:  # not a model at all (a bag, a checkpoint, ...): not this run's
        return None
    return session.get_modelmeta().custom_metadata_map.get(RUN_KEY)


def _started_from(cfg: TrainerNodeConfig, extra: dict) -> str:
    """The checkpoint the node's own checkpoint's learner was once started from ('' if
    none): its ``init_from`` entry; a checkpoint from before stop 36 has none, and then
    ``init_from`` still set says so (kept from there on, so later starts need it no more)."""
    if 'init_from' in extra:
        return str(extra['init_from'] or '')
    return os.path.realpath(cfg.init_from) if cfg.init_from else ''


def _own_checkpoint_refused(exc: CheckpointError) -> ValueError:
    """The one line for a node checkpoint that cannot be continued (run_node prints a
    ValueError as one line); the file is only ever read."""
    return ValueError(
        f'{exc}. The file was left as it is: fix the parameters to match it, or move '
        'it away (or set another checkpoint_path) to start afresh'
    )


class TrainerNode(RplNode):
    """Trainer node; see the module docstring."""

    def __init__(self) -> None:
        super().__init__('trainer')
        try:
            self._start()
        except BaseException as exc:  # a start that fails lets go of its files again
            for lock in getattr(self, '_locks', ()):
                lock.release()
            for folder in getattr(self, '_made_folders', ()):  # deepest first, if empty
                with contextlib.suppress(OSError):
                    folder.rmdir()
            if isinstance(exc, KeyboardInterrupt):
                raise StartInterrupted('nothing learned or written') from None
            raise

    def _start(self) -> None:
        """Everything :meth:`__init__` does after the node exists (see the class)."""
        self.config = cfg = self.declare_config(TrainerNodeConfig)
        cfg.check_start()  # the files and overrides, before any work (the launch's checks)
        # One trainer per model and per checkpoint: a second one would write over them.
        self._locks: list[ExclusiveLock] = []
        self._made_folders: list[pathlib.Path] = []  # removed if the start fails
        for what, path in (
            ('model_path', cfg.model_path),
            ('checkpoint_path', cfg.checkpoint_path),
        ):
            if not path:
                continue
            lock_path = pathlib.Path(f'{path}.lock').absolute()
            self._made_folders = missing_parents(lock_path.parent) + self._made_folders
            lock_path.parent.mkdir(parents=True, exist_ok=True)  # the file's folder
            lock = ExclusiveLock(lock_path)
            try:
                lock.acquire()
            except BlockingIOError as exc:
                raise ValueError(
                    f'{what} {path!r} is being trained by another trainer (pid '
                    f'{exc.holder}); one trainer per model and checkpoint'
                ) from None
            self._locks.append(lock)
        self.offline_only = cfg.exit_after_updates > 0
        self._offline_finished = False
        if self.offline_only and not cfg.bag_list():
            raise ValueError(
                f'exit_after_updates:={cfg.exit_after_updates} trains on bags, but bags is '
                'empty: set bags:=PATH[,PATH...] (bags recorded with record:=true)'
            )
        from rpl_sim_bridge.bridge import observation_layout
        from rpl_sim_bridge.tasks import task_spec

        own = self._read_own_checkpoint(cfg.checkpoint_path) if cfg.resuming() else None
        self._init_from = ''  # the checkpoint this learner was once started from
        self.learner = offline.OfflineLearner.for_task(
            cfg.train_config(self._base_config(cfg, own)), cfg.updates_per_step
        )
        spec = task_spec(cfg.task)
        # As rpl train warns (a resumed checkpoint keeps its scale: a fresh learner's fix).
        if note := scale_range_note(self.learner.config, spec, 'train_overrides:='):
            self.get_logger().warning(note)
        layout = observation_layout(spec)
        action_fields = tuple(spec.action_fields)  # the payload names of the action topics
        self.debt = self.learner.debt  # updates_per_step per stored transition
        self.malformed = 0
        self.foreign = 0  # live messages of another task or controller, not learned from
        self.bag_episodes = 0
        self._run_id = uuid.uuid4().hex  # a resumed run's is its checkpoint's
        self._diverted: str | None = None  # where models go once model_path was taken over
        self._adopt_model = False  # resumed from a checkpoint without a run id (stop < 35)
        self.bags_ingested: list[str] = []
        self.exports = 0
        self.last_export = 'none'
        self.checkpoints = 0
        self.last_checkpoint = 'none'
        self.resumed = 'no'
        self.lost: collections.Counter[str] = collections.Counter()  # DDS-reported, by topic
        self.intake_delay_s = 0.0  # largest in the current diagnostics period
        self._intake_delay_max_s = 0.0
        self._lag_logged_at = -LAG_LOG_PERIOD_S
        self._updates_at_start = 0
        self._resume_after_ns: dict[str, int] = {}  # namespace -> from the checkpoint
        self._throttle = LogThrottle(5.0)
        if own is not None:
            self._resume(cfg.checkpoint_path, own)
        elif cfg.init_from:
            self._start_from(cfg.init_from)
        self.schedule = SaveSchedule(
            cfg.export_every_updates,
            cfg.checkpoint_every_updates if cfg.checkpoint_path else None,
            self.learner.agent.updates,
        )
        self._updates_at_start = self.learner.agent.updates
        self._ingest(cfg)  # before anything is written: a refused bag leaves no model behind
        if self.offline_only and self.learner.buffer.size == 0:
            raise ValueError(
                f'exit_after_updates:={cfg.exit_after_updates}: the bags {cfg.bag_list()} hold '
                'no complete episode to learn from (see the bag lines above)'
            )
        self.assemblers = {}
        self._subs = []  # (subscription, its message handler), drained by the update tick
        for ns in [] if self.offline_only else cfg.namespace_list():
            assembler = EpisodeAssembler(
                layout,
                self.learner.episode_steps,
                action_fields,
                resume_after_ns=self._resume_after_ns.get(ns),
                started_ns=time.time_ns(),
            )
            self.assemblers[ns] = assembler
            # Results first and observations last: the sim bridge starts once every trainer
            # observation subscriber is there, by then the others have been announced.
            for topic, fields in (
                (contract.EPISODE, contract.EPISODE_FIELDS),
                (contract.BASE_ACTION, action_fields),
                (contract.COMMAND, action_fields),
                (contract.OBSERVATION, layout.fields),
            ):
                self._subs.append(self._subscribe(ns, topic, fields, assembler))
        # Written once everything that could refuse the start has passed (a bad namespace,
        # a refused bag): a failed start leaves no model that blocks the next one.
        if cfg.checkpoint_path and not os.path.exists(cfg.checkpoint_path):
            # As `rpl train` does: a node killed before its first periodic checkpoint (10000
            # updates) left a model and nothing to resume, and the same start was refused.
            # Before the model: a start cut short in between leaves no model without it.
            self.save_checkpoint('start')
        if not os.path.exists(cfg.model_path) and not self.offline_only:
            which = 'resumed' if self.learner.agent.updates else 'initial (zero residual)'
            self._export(f'{which} model, {cfg.model_path} did not exist')
        checkpoints = (
            f'; checkpoint {cfg.checkpoint_path} every {cfg.checkpoint_every_updates} updates '
            'and at shutdown'
            if cfg.checkpoint_path
            else '; no checkpoint_path: the learner is lost at shutdown'
        )
        source = list(self.assemblers) or 'no live namespace'
        if self.offline_only:
            source = f'the bags only, {cfg.exit_after_updates} updates, then exit'
        self.log_ready(
            f'ready: learning {cfg.task} with {cfg.controller} from {source}; '
            f'{self.learner.episodes} episodes stored; exporting to {cfg.model_path} every '
            f'{cfg.export_every_updates} updates{checkpoints}'
        )  # its timer first: its line comes before an offline run's last one
        self._diagnostics = self.make_diagnostics()
        self.create_timer(UPDATE_PERIOD_S, self._on_update_tick)
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._on_diagnostics)
        self.create_timer(PROGRESS_PERIOD_S, self._on_progress)
        # Only a node that started completely saves at shutdown: one that failed on start
        # (a corrupt checkpoint, say) must leave the file as it found it.
        self._save_at_shutdown = bool(cfg.checkpoint_path)

    def _ingest(self, cfg: TrainerNodeConfig) -> None:
        """Store the episodes of ``cfg``'s bags (each bag once)."""
        listed: dict[str, str] = {}  # the bag (its folder, resolved) -> as listed
        stored = {bag_identity(p) for p in self.bags_ingested}  # by the checkpoint
        for path in cfg.bag_list():
            bag = bag_identity(path)
            if bag in listed:  # one recording stored twice would weigh double
                self.get_logger().warning(
                    f'bag {path}: the same bag as {listed[bag]} (listed twice in bags): read once'
                )
                continue
            listed[bag] = path
            if bag in stored:
                self.get_logger().info(f'bag {path}: already in the checkpoint, not read again')
                continue
            # BagError: one line (another task or controller, unreadable, ...).
            report = ingest_bags([path], self.learner, task=cfg.task, controller=cfg.controller)
            self.debt.add(report.transitions)
            self.bag_episodes += report.episodes
            self.bags_ingested.append(bag)  # resolved: a resume from another folder agrees
            self.get_logger().info(
                f'bag {path}: {report.episodes} episodes ({report.transitions} transitions) '
                f'stored, skipped {report.skipped or "none"}'
                + (f'; problems: {"; ".join(report.problems)}' if report.problems else '')
            )

    @staticmethod
    def _read_own_checkpoint(path: str) -> dict:
        """The node's own checkpoint, read once at start (the learner's config, then the
        learner)."""
        try:
            return offline.read_learner(path)
        except CheckpointError as exc:
            raise _own_checkpoint_refused(exc) from exc

    @staticmethod
    def _base_config(cfg: TrainerNodeConfig, own: dict | None) -> dict | None:
        """The config the learner continues, under the node's parameters: with ``init_from``
        that checkpoint's; resuming a learner that ``init_from`` once started, its own
        checkpoint's (``init_from`` need not still be set); else None (the defaults)."""
        if own is not None:
            started = _started_from(cfg, own.get('extra', {}))
            path, state = cfg.checkpoint_path, own
        elif cfg.init_from:
            started, path, state = cfg.init_from, cfg.init_from, None
        else:
            return None
        if not started:
            return None
        try:
            state = state or load_learner_checkpoint(path)
            return dict(state['learner']['config'])
        except (CheckpointError, KeyError, TypeError) as exc:
            raise ValueError(f'init_from: {exc}') from None

    def _start_from(self, path: str) -> None:
        try:
            kind = start_from(self.learner, path)
        except CheckpointError as exc:
            raise ValueError(
                f'init_from: {exc}; set task, controller and train_overrides to agree with '
                'it, or leave init_from empty (the default) to start afresh'
            ) from None
        self._init_from = os.path.realpath(path)
        self.resumed = f'{path} ({kind} checkpoint, warm start)'
        self.get_logger().info(
            f'started from the {kind} checkpoint {path} (init_from): {self._learner_summary()}'
        )

    def _resume(self, path: str, own: dict) -> None:
        try:
            extra = offline.load_learner(path, self.learner, own)
        except CheckpointError as exc:
            raise _own_checkpoint_refused(exc) from exc
        self._init_from = _started_from(self.config, extra)
        wrote = extra.get('model_path')  # both absent in checkpoints before stop 35
        if not extra.get('run_id'):  # such a run's model names no run: it is taken as its
            self._adopt_model = True
        self._run_id = extra.get('run_id') or self._run_id
        model = self.config.model_path
        if (
            wrote
            and os.path.lexists(model)
            and os.path.realpath(model) != wrote
            and model_run(model) != self._run_id  # this run's model, its folder moved
        ):
            raise ValueError(
                f"model_path {model!r} exists and is not a model this checkpoint's trainer "
                f'wrote (it wrote {wrote}): it would be written over; give that model_path, '
                'or a new file'
            )
        self.bag_episodes = int(extra.get('bag_episodes', 0))
        self.bags_ingested = [str(p) for p in extra.get('bags', [])]
        self._resume_after_ns = {str(k): int(v) for k, v in extra.get('seen_until', {}).items()}
        agent = self.learner.agent
        self.resumed = f'{path} ({self.learner.episodes} episodes, {agent.updates} updates)'
        self.get_logger().info(f'resumed from checkpoint {path}: {self._learner_summary()}')
        if self.config.init_from:
            # The node's own checkpoint continues the learner that init_from once started;
            # starting again from init_from would throw that learning away.
            self.get_logger().info(
                f'init_from:={self.config.init_from} not read: the learner continues from its '
                f'own checkpoint {path} (move that file away to start again from init_from)'
            )

    def _learner_summary(self) -> str:
        """What a loaded checkpoint brought: episodes, transitions, updates, burn-in."""
        agent = self.learner.agent
        return (
            f'{self.learner.episodes} episodes, {self.learner.buffer.transitions} transitions, '
            f'{agent.updates} updates, burn-in {"on" if agent.actor_frozen else "over"}'
        )

    def _export(self, why: str) -> None:
        from rpl_sim_bridge.tasks import task_spec
        from rpl_trainer.export import task_identity
        from rpl_trainer.residual import axis_scales, largest_scale

        identity = task_identity(
            task_spec(self.config.task),
            self.config.controller,
            self.learner.config.deployed_controller_params,  # the node's controller_params
            residual_scale=largest_scale(self.learner.residual_scale),
            residual_scales=axis_scales(self.learner.residual_scale),
            training_steps=self.learner.buffer.transitions,
        )
        # The run's id, in its checkpoint too: a resumed run knows its model when moved.
        metadata = {**identity.to_props(), RUN_KEY: self._run_id}
        path = self.learner.export(self._export_target(), metadata=metadata)
        updates = self.learner.agent.updates
        self.schedule.exported(updates)
        self.exports += 1
        self.last_export = f'{path} at {updates} updates ({time.strftime("%H:%M:%S")})'
        self.get_logger().info(f'exported {self.last_export}: {why}')

    def _export_target(self) -> str:
        """``model_path``, unless a file this run did not write is there now (copied over
        it, or another trainer's): that is never written over, and from then on this run's
        models go beside it, ``<model_path stem>.run-<run id>.onnx`` (said once, and again
        at the stop, which then exits 1). Before an export ``model_path`` is absent (a new
        learner refuses an existing one) or this run's (a resume checks it; a checkpoint from
        before run ids adopts the model there with its first export)."""
        model = self.config.model_path
        if self._adopt_model:  # a checkpoint from before run ids: its first export only
            self._adopt_model = False
            return model
        if self._diverted is None and os.path.lexists(model):
            if model_run(model) != self._run_id:
                root, _ = os.path.splitext(model)
                self._diverted = f'{root}.run-{self._run_id[:8]}.onnx'
                self.get_logger().error(self._diverted_line())
        return self._diverted or model

    def _diverted_line(self) -> str:
        return (
            f'model_path {self.config.model_path} was replaced by a model this trainer did '
            f'not write: not written over; its models go to {self._diverted} (the residual '
            'node reloads only model_path: copy one there, or move that file away and '
            'restart the trainer)'
        )

    def save_checkpoint(self, why: str) -> None:
        """Save the learner and this node's counters to ``checkpoint_path`` (atomic)."""
        path = self.config.checkpoint_path
        started = time.monotonic()
        extra = {
            'bag_episodes': self.bag_episodes,
            'bags': list(self.bags_ingested),
            # The learner's config is that checkpoint's: a resume builds it so again.
            'init_from': self._init_from,
            # Which model this trainer wrote: a resumed trainer writes over that one only.
            'model_path': os.path.realpath(self.config.model_path),
            'run_id': self._run_id,
            # Per namespace: messages sent up to then are in this checkpoint; a resumed
            # trainer ignores them when the publishers' history delivers them again.
            'seen_until': {
                **self._resume_after_ns,
                **{ns: a.seen_until_ns for ns, a in self.assemblers.items()},
            },
        }
        offline.save_learner(path, self.learner, extra)
        updates = self.learner.agent.updates
        self.schedule.checkpointed(updates)
        self.checkpoints += 1
        self.last_checkpoint = f'{path} at {updates} updates ({time.strftime("%H:%M:%S")})'
        self.get_logger().info(
            f'checkpoint {self.last_checkpoint} ({why}; {time.monotonic() - started:.1f} s)'
        )

    def _offline_stopped_early(self, signum: int) -> None:
        """An offline run (exit_after_updates) stopped before its updates were done: the
        model as it stands is exported, and the exit is not 0 (it was: a script went on to
        deploy a model that was not there, or not the one asked for)."""
        done = self.learner.agent.updates - self._updates_at_start
        try:
            self._export('stopped early')
            model = f'the model as it stands exported to {self.config.model_path}'
        except Exception as exc:  # the node still goes down, and says so
            model = f'no model exported ({exc})'
        kept = 'saving the checkpoint' if self.config.checkpoint_path else 'no checkpoint_path'
        print(
            f'[trainer] stopped by {signal.Signals(signum).name} after {done} of '
            f'{self.config.exit_after_updates} updates on the bags; {model}; {kept}',
            flush=True,
        )
        self.request_exit(128 + signum)  # as the shell reports a process the signal ended

    def _export_last(self) -> None:
        """A live trainer's last model at shutdown, when it learned since its last export
        (``model_path`` lagged up to ``export_every_updates`` updates behind the learner,
        and a short run left only the zero-residual model)."""
        if self.learner.agent.updates <= self.schedule.exported_at:
            return
        try:
            self._export('shutdown')
        except Exception as exc:  # the node still goes down, and not with 0
            self.get_logger().error(
                f'could not export the last model to {self.config.model_path}: {exc}; it holds '
                f'the one exported before ({self.last_export})'
            )
            self.request_exit(1)

    def destroy_node(self) -> None:
        """Export the last model (live), save a last checkpoint, then destroy the node.

        run_node calls this after Ctrl-C / SIGTERM; rclpy's shutdown also destroys the nodes
        of its context, including one whose ``__init__`` raised: that one saves nothing.
        """
        if getattr(self, '_diagnostics', None) is not None:  # it started: a last line
            try:
                self._drain()
            except RuntimeError:  # rclpy's RCLError: the context is already shut down
                pass
            self._on_progress()
        started = getattr(self, '_diagnostics', None) is not None
        stopped = self.stop_signal is not None  # Ctrl-C / SIGTERM, not a failure
        if started and stopped and self.offline_only and not self._offline_finished:
            self._offline_stopped_early(self.stop_signal)
        if started and not self.offline_only:
            self._export_last()
        # What was asked for (models at model_path) stopped; getattr: __init__ may have
        # raised before the attribute was set.
        if getattr(self, '_diverted', None) is not None:
            self.get_logger().error(f'{self._diverted_line()}; exit code 1')
            self.request_exit(1)
        if getattr(self, '_save_at_shutdown', False):
            self._save_at_shutdown = False  # once, whoever calls first
            try:
                self.save_checkpoint('shutdown')
            except Exception as exc:  # report it; the node still goes down, not with 0
                self.get_logger().error(
                    f'could not save the checkpoint {self.config.checkpoint_path}: {exc}; the '
                    'learning since the last checkpoint is lost'
                )
                self.request_exit(1)
        try:
            super().destroy_node()
        finally:
            for lock in getattr(self, '_locks', ()):
                lock.release()

    def _subscribe(
        self,
        namespace: str,
        topic: str,
        fields: Sequence[str],
        assembler: EpisodeAssembler,
    ):
        # Reliable, deep, and transient local like the control publishers: a publisher
        # matched after it started (DDS discovery is not instant) still delivers its first
        # messages from its history.
        spec = contract.TOPIC_QOS[topic]
        depth = self.config.history_depth
        qos = qos_profile(contract.QosSpec(depth, spec.reliable, transient_local=True))
        name = resolve_topic(namespace, topic)
        callback: Callable[[JointState, dict], None] = lambda msg, info: self._on_message(  # noqa: E731
            assembler, topic, name, fields, msg, info['source_timestamp']
        )
        lost: Callable[[QoSMessageLostInfo], None] = lambda info: self._on_lost(  # noqa: E731
            name, info
        )
        sub = self.create_subscription(
            JointState,
            name,
            callback,
            qos,
            event_callbacks=SubscriptionEventCallbacks(message_lost=lost),
        )
        return sub, callback

    def _drain(self) -> None:
        """Take every message waiting in the subscriptions' reader histories now.

        The executor takes one message per subscription per turn; between gradient steps
        this empties the queues at once, so messages never wait for the learner.
        """
        for sub, callback in self._subs:
            while True:
                try:
                    with sub.handle:
                        taken = sub.handle.take_message(sub.msg_type, sub.raw)
                except rclpy.exceptions.InvalidHandle:
                    break  # destroyed at shutdown
                if taken is None:
                    break
                callback(*taken)

    def _foreign(self, topic: str, tag: str) -> str | None:
        """What another stack a live message comes from, by its tag, or None: an
        observation of another task, a base action of another controller (a bag of either
        is refused; live they were learned from). Untagged messages are taken, as bags'."""
        task, controller = self.config.task, self.config.controller
        if topic == contract.OBSERVATION:
            streamed = contract.task_of_tag(tag)  # o_T's too; '/terminal' is untagged
            return None if streamed in ('', task) else f'an observation of task {streamed!r}'
        if not tag:
            return None
        if topic == contract.BASE_ACTION and controller and tag != controller:
            return f'a base action of controller {tag!r}'
        return None

    def _on_lost(self, name: str, info: QoSMessageLostInfo) -> None:
        """DDS reports messages this subscription will never get (overwritten in the
        publisher's history before they were delivered)."""
        self.lost[name] += info.total_count_change
        self.get_logger().warning(
            f'{name}: {info.total_count_change} messages lost in DDS ({self.lost[name]} in '
            'all): the trainer did not take them in time; their episodes are skipped'
        )

    def _on_message(
        self,
        assembler: EpisodeAssembler,
        topic: str,
        name: str,
        fields: Sequence[str],
        msg: JointState,
        sent_ns: int,
    ) -> None:
        try:
            vec = decode(msg, fields)
            if (other := self._foreign(topic, vec.tag)) is not None:
                self.foreign += 1
                log, held = self._throttle.should_log(time.monotonic(), f'{name}:foreign')
                if log:
                    more = f' ({held} more since)' if held else ''
                    self.get_logger().warning(
                        f'{name}: message skipped: {other} (its frame_id), this learner '
                        f'learns {self.config.task!r} corrected by {self.config.controller!r}; '
                        f'its episodes are not learned{more}'
                    )
                return
            records = assembler.add(topic, vec, sent_ns)
        except (MessageError, ValueError) as exc:
            self.malformed += 1
            log, held = self._throttle.should_log(time.monotonic(), name)
            if log:
                more = f' ({held} more since)' if held else ''
                self.get_logger().warning(f'{name}: message skipped: {exc}{more}')
            return
        # Messages sent before it subscribed (publishers' history) are old, not delayed.
        delay_s = (time.time_ns() - max(sent_ns, assembler.started_ns or 0)) * 1e-9
        self._intake_delay_max_s = max(self._intake_delay_max_s, delay_s)
        now = time.monotonic()
        if delay_s > INTAKE_DELAY_WARN_S and now - self._lag_logged_at >= LAG_LOG_PERIOD_S:
            self._lag_logged_at = now
            self.get_logger().warning(
                f'{name}: message taken {delay_s:.1f} s after it was sent: the trainer is '
                'behind the stacks (CPU-starved or stopped; or the history of a publisher '
                f'matched late); {int(self.debt.owed)} updates owed. Messages wait in the '
                f'reader history ({self.config.history_depth} per topic); what overflows '
                'is counted as missing'
            )
        for line in assembler.skip_lines:
            self.get_logger().warning(f'{name.rsplit("/", 1)[0] or "/"}: {line}')
        assembler.skip_lines.clear()
        if records:
            self.debt.add(self.learner.add(records))

    def _on_update_tick(self) -> None:
        if self.offline_only:
            self._offline_tick()
            return
        deadline = time.monotonic() + UPDATE_BUDGET_S
        self._drain()
        while time.monotonic() < deadline and self.debt.take(1):
            self.learner.update(1)
            self._drain()
        self._export_or_checkpoint()

    def _offline_tick(self) -> None:
        deadline = time.monotonic() + OFFLINE_BUDGET_S
        target = self._updates_at_start + self.config.exit_after_updates
        while time.monotonic() < deadline and self.learner.agent.updates < target:
            self.learner.update(1)
        if self.learner.agent.updates < target:
            self._export_or_checkpoint()
            return
        self._export(f'{self.config.exit_after_updates} updates on the bags done')
        if self.config.checkpoint_path:
            self.save_checkpoint('done')
        self._save_at_shutdown = False
        self._offline_finished = True
        self.get_logger().info(
            f'done: {self.config.exit_after_updates} updates on {self.learner.episodes} '
            f'episodes from {len(self.bags_ingested)} bag(s); model {self.config.model_path}'
        )
        self.request_exit(0)  # run_node stops spinning, destroys the node, exits 0

    def _export_or_checkpoint(self) -> None:
        updates = self.learner.agent.updates
        if self.schedule.export_due(updates):
            self._export(f'every {self.schedule.export_every} updates')
        if self.schedule.checkpoint_due(updates):
            self.save_checkpoint(f'every {self.schedule.checkpoint_every} updates')

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
            f'{self.learner.buffer.transitions} transitions, {agent.updates} updates'
            + (
                f' of {self._updates_at_start + self.config.exit_after_updates}'
                if self.offline_only
                else f' ({int(self.debt.owed)} owed)'
            )
            + f', burn-in {"on" if agent.actor_frozen else "over"}, {self.exports} exports '
            f'(last: {self.last_export})'
            + (
                f'; intake: {self._missing()} messages missing, {sum(self.lost.values())} '
                f'lost in DDS, delay up to {self.intake_delay_s:.2f} s'
                if self.assemblers
                else ''
            )
        )

    def _missing(self) -> int:
        return sum(a.counts.missing for a in self.assemblers.values())

    def _on_diagnostics(self) -> None:
        counts = [a.counts for a in self.assemblers.values()]
        skipped = self._skipped()
        self.intake_delay_s, self._intake_delay_max_s = self._intake_delay_max_s, 0.0
        agent = self.learner.agent
        values = {
            'episodes_ingested': self.learner.episodes,
            'episodes_from_bags': self.bag_episodes,
            'episodes_skipped': sum(skipped.values()),
            **{f'skipped_{reason}': skipped[reason] for reason in SKIP_REASONS},
            'resent_messages': sum(c.resent for c in counts),
            'late_messages': sum(c.late for c in counts),
            'messages_before_resume': sum(c.before_resume for c in counts),
            'missing_messages': self._missing(),
            'messages_lost': sum(self.lost.values()),
            'intake_delay_s': round(self.intake_delay_s, 3),
            'malformed_messages': self.malformed,
            'foreign_messages': self.foreign,
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
        lossy = self.malformed or self.foreign or skipped[INCOMPLETE] or self.lost
        level = 'warn' if lossy or self.intake_delay_s > INTAKE_DELAY_WARN_S else 'ok'
        message = f'{self.learner.episodes} episodes, {agent.updates} updates'
        self.publish_diagnostics(self._diagnostics, level, message, values)


def main(args: Sequence[str] | None = None) -> int:
    """Console script ``trainer_node``: train until Ctrl-C / SIGTERM / shutdown."""
    return run_node(TrainerNode, args, name='trainer')


if __name__ == '__main__':
    raise SystemExit(main())
