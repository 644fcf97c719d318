"""ROS 2 bag recorder: writes the control topics of one stack namespace to a rosbag2 bag.

Subscribes (raw CDR bytes, no deserialization) to ``observation``, ``base_action``,
``residual``, ``command``, ``episode`` (transient local: results published before it joined
are still recorded), ``/diagnostics`` and ``joint_states`` (the robot's joints) with the
contract's reliability and a deep history (``queue_depth``), transient local on the control
topics as the trainer node (their publishers keep a history of 500: one that DDS matches
seconds after it started still gives its first messages; a volatile subscription lost them,
81 % of a run's actions for a recorder started before the stack), and appends
every message with its receive time to a new bag through
:class:`rpl_bags.writer.BagWriter` (mcap by default). The bag is closed (``metadata.yaml``
written) on Ctrl-C / SIGTERM / launch shutdown; every ``flush_period_s`` what was received
is written to the file, so a killed recorder loses at most that much.

A write that fails (a full disk: ``No space left on device``) stops the recording: one error
line, the bag file is closed as it is (what was flushed before stays readable through
:func:`rpl_bags.reader.read_raw_bag`'s salvage, and so by ``rpl bag eval``), and the node
exits with code 1, which ends a launch that requires the recorder. Messages DDS reports lost
before they reached it (a publisher's history overwritten while the recorder stalled) are
one warning each and, at the end, one error line and exit code 4: the bag is kept, but it is
not the whole run. A volatile publisher on a control topic nothing else publishes yet is
recorded from its match on (the topic subscribed again volatile, one warning); beside a
matched transient-local one, or with another QoS it cannot match, it is one error line.

Start-up order matters for a lockstep run that waits for its subscribers: the recorder first
subscribes to every other topic, waits (up to ``startup_timeout_s``) until each of
``base_action``, ``residual``, ``command`` and ``episode`` has a publisher (never for
``/diagnostics`` and ``joint_states``, which a stack may not publish), then ``settle_s``
more (a publisher seen here may not have seen this subscriber yet), and only then subscribes
to ``observation``, the topic whose subscriber count the sim bridge waits for
(``min_subscribers``). Started by the stack launch files with ``record:=true bag:=PATH``.

Run alone: ``rpl bag record PATH --namespace /rpl`` or
``python -m rpl_bags.bag_recorder_node --ros-args -r __ns:=/rpl -p bag:=PATH``
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Sequence

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.event_handler import (
    QoSMessageLostInfo,
    QoSRequestedIncompatibleQoSInfo,
    SubscriptionEventCallbacks,
)
from rclpy.qos import QoSPolicyKind
from sensor_msgs.msg import JointState

from rpl_bags.topics import (
    DIAGNOSTIC_ARRAY,
    JOINT_STATE,
    SIDE_TOPICS,
    TopicSpec,
    parse_topic_list,
    recorded_topics,
    resolve_topic,
)
from rpl_bags.writer import BagRecorderConfig, BagWriter
from rpl_interfaces import contract
from rpl_interfaces.base_node import RplNode, qos_profile, run_node

EXIT_WRITE_FAILED = 1  # exit code after a failed write (full disk)
EXIT_NOTHING_RECORDED = 3  # exit code when no control topic received a message
EXIT_MESSAGES_LOST = 4  # exit code when DDS reported messages the recorder never got
# The control topics, whose publishers keep a transient-local history (RplNode.
# control_publisher): the recorder takes it, as the trainer node does, so a publisher that
# DDS matches after it started (discovery takes seconds) still gives its first messages.
_HISTORY_TOPICS = frozenset(
    (contract.OBSERVATION, contract.BASE_ACTION, contract.COMMAND, contract.RESIDUAL)
)
# What a failed bag write raises: the file system's error (ENOSPC, EFBIG, EIO, ...) for
# MCAP, sqlite's for sqlite3 ("database or disk is full").
WRITE_ERRORS = (OSError, sqlite3.Error)
_MSG_CLASSES = {JOINT_STATE: JointState, DIAGNOSTIC_ARRAY: DiagnosticArray}


def _policy_name(kind: int) -> str:
    """A DDS QoS policy's name (``durability``) from its kind number."""
    try:
        return QoSPolicyKind(kind).name.lower()
    except ValueError:
        return f'policy {kind}'


class BagRecorderNode(RplNode):
    """Bag recorder; see the module docstring."""

    def __init__(self) -> None:
        super().__init__('bag_recorder')
        self.config = cfg = self.declare_config(BagRecorderConfig)
        names = parse_topic_list(cfg.topics)
        self._specs = recorded_topics(self.get_namespace(), names)
        self.writer = BagWriter(cfg.bag, self._specs, cfg.storage)
        self.lost: dict[str, int] = {}  # DDS's message_lost counts per topic
        self.incompatible: set[str] = set()  # topics with a publisher it cannot match
        self._gate = resolve_topic(self.get_namespace(), contract.OBSERVATION)
        self._side_topics = {resolve_topic(self.get_namespace(), n) for n in SIDE_TOPICS}
        self._recorded_subs = {
            s.name: self._subscribe(s) for s in self._specs if s.name != self._gate
        }
        self._flush_timer = self.create_timer(cfg.flush_period_s, self._flush)
        self.write_error: str | None = None  # set when a write failed: recording stopped
        self._startup_timer = None
        # The subscriptions the gate waits on (the same dict object: a topic subscribed
        # again volatile is waited on so too).
        self._waited = {
            name: sub for name, sub in self._recorded_subs.items() if name not in self._side_topics
        }
        if any(s.name == self._gate for s in self._specs):
            self._startup_timer = self.after_publishers_match(
                self._waited, cfg, self._open_gate, if_missing='recording anyway'
            )
        else:
            self._ready()

    def _subscribe(self, spec: TopicSpec, history: bool = True):
        """Subscribe to ``spec``'s topic; a control topic transient local unless
        ``history`` is False (after a volatile publisher was seen there)."""
        topic = spec.name
        history = history and topic.rsplit('/', 1)[-1] in _HISTORY_TOPICS
        qos = qos_profile(
            contract.QosSpec(
                depth=self.config.queue_depth,
                reliable=spec.qos.reliable,
                transient_local=spec.qos.transient_local or history,
            )
        )

        def on_message(data: bytes) -> None:  # one argument: rclpy passes no MessageInfo
            if self.write_error is not None:
                return
            try:
                self.writer.write(topic, time.time_ns(), data)
            except WRITE_ERRORS as exc:
                self._stop_recording(exc)

        def on_lost(info: QoSMessageLostInfo) -> None:
            self.lost[topic] = self.lost.get(topic, 0) + info.total_count_change
            self.get_logger().warning(
                f'{info.total_count_change} message(s) on {topic} lost before they reached '
                f'the recorder ({self.lost[topic]} in all): the bag will not hold them'
            )

        def on_incompatible(info: QoSRequestedIncompatibleQoSInfo) -> None:
            if topic in self.incompatible:
                return
            self.incompatible.add(topic)
            policy = _policy_name(info.last_policy_kind)
            current = self._recorded_subs.get(topic)
            matched = current is not None and current.get_publisher_count() > 0
            if history and policy == 'durability' and not matched:  # a volatile publisher
                self.get_logger().warning(
                    f'a publisher on {topic} is volatile: recording that topic volatile, so '
                    'what it sends before DDS has matched the recorder is not in the bag '
                    "(publish control topics transient local: the README's controller "
                    'checklist)'
                )
                timers: list = []  # one-shot: the timer cancels itself
                timers.append(self.create_timer(0.0, lambda: self._volatile(spec, timers[0])))
                return
            self.get_logger().error(
                f'a publisher on {topic} offers a QoS this recorder cannot match ({policy}): '
                'nothing of it is recorded (the publishers it matched are); control topics are '
                "published reliable and transient local (the README's controller checklist)"
            )

        events = SubscriptionEventCallbacks(message_lost=on_lost, incompatible_qos=on_incompatible)
        return self.create_subscription(
            _MSG_CLASSES[spec.msgtype],
            spec.name,
            on_message,
            qos,
            raw=True,
            event_callbacks=events,
        )

    def _volatile(self, spec: TopicSpec, timer) -> None:  # noqa: ANN001 (rclpy Timer)
        """Subscribe to ``spec``'s topic volatile instead (a volatile publisher is there;
        done from the one-shot ``timer``, not from the subscription's own event)."""
        timer.cancel()
        self.destroy_timer(timer)
        old = self._recorded_subs.pop(spec.name, None)
        if old is None or self.write_error is not None:  # not subscribed (yet, or any more)
            return
        self.destroy_subscription(old)
        self._recorded_subs[spec.name] = self._subscribe(spec, history=False)
        if spec.name in self._waited:
            self._waited[spec.name] = self._recorded_subs[spec.name]

    def _flush(self) -> None:
        if self.write_error is not None:
            return
        try:
            self.writer.flush()
        except WRITE_ERRORS as exc:
            self._stop_recording(exc)

    def _stop_recording(self, exc: BaseException) -> None:
        """After a failed write: close the bag as it is, say so once, exit non-zero."""
        reason = getattr(exc, 'strerror', None) or ' '.join(str(exc).split())
        self.write_error = reason
        self.writer.abort()
        self._flush_timer.cancel()
        if self._startup_timer is not None:
            self._startup_timer.cancel()
        for sub in self._recorded_subs.values():
            self.destroy_subscription(sub)
        self._recorded_subs.clear()
        received = sum(self.writer.counts.values())
        self.get_logger().error(
            f'stopped recording: cannot write bag {self.writer.path}: {reason} '
            f'({type(exc).__name__}); {received} messages received, those flushed before '
            f'stay readable (rpl bag eval {self.writer.path}); exiting with code '
            f'{EXIT_WRITE_FAILED}'
        )
        self.request_exit(EXIT_WRITE_FAILED)

    def _open_gate(self) -> None:
        spec = next(s for s in self._specs if s.name == self._gate)
        self._recorded_subs[spec.name] = self._subscribe(spec)
        self._ready()

    def _ready(self) -> None:
        # A remapped topic is stored under its role's name in the namespace, where every
        # reader (bag eval, replay-model, the trainer) looks for it; say so, and how to play
        # it back onto the name it had.
        remapped = {
            name: sub.topic_name
            for name, sub in self._recorded_subs.items()
            if sub.topic_name != name
        }
        if remapped:
            rules = ' '.join(f'{name}:={topic}' for name, topic in sorted(remapped.items()))
            self.get_logger().info(
                'recording remapped topics under their role names (the names every rpl bag '
                f'tool reads): {", ".join(f"{t} as {n}" for n, t in sorted(remapped.items()))};'
                f' play them back onto their own names with rpl bag play BAG --remap {rules}'
            )
        self.log_ready(
            f'ready: recording {len(self._specs)} topics to {self.writer.path} '
            f'({self.writer.storage})'
        )

    def close(self) -> None:
        """Close the bag and say what was written."""
        if self.writer.closed:  # closed already, or given up after a failed write
            return
        try:
            self.writer.close()  # writes the summary and metadata.yaml: needs disk space
        except WRITE_ERRORS as exc:
            self.writer.abort()
            reason = getattr(exc, 'strerror', None) or ' '.join(str(exc).split())
            print(
                f'[bag_recorder] error: cannot finish bag {self.writer.path}: {reason}; '
                f'what was flushed stays readable (rpl bag eval {self.writer.path})',
                flush=True,
            )
            self.request_exit(EXIT_WRITE_FAILED)
            return
        counts = ', '.join(f'{n} {c}' for n, c in self.writer.counts.items())
        print(f'wrote {self.writer.path}: {counts}', flush=True)  # rosout is gone by now
        empty = [
            name
            for name, count in self.writer.counts.items()
            if count == 0 and name not in self._side_topics
        ]
        recorded_any = any(
            count for name, count in self.writer.counts.items() if name not in self._side_topics
        )
        if empty and not recorded_any:  # the recording asked for did not happen
            removed = ''
            if not any(self.writer.counts.values()):  # not a message: the name is free again
                shutil.rmtree(self.writer.path, ignore_errors=True)
                removed = f'; the empty bag {self.writer.path} was removed'
            print(
                f'[bag_recorder] error: nothing recorded on any control topic '
                f'({", ".join(empty)}): was the stack running in {self.get_namespace()}, after '
                f'the recorder had started?{removed}',
                flush=True,
            )
            self.request_exit(EXIT_NOTHING_RECORDED)
            return
        if empty:  # a stack in another namespace, or one that ran before the recorder
            print(
                f'[bag_recorder] warning: nothing recorded on {", ".join(empty)}: was the '
                f'stack running in {self.get_namespace()}, after the recorder had started?',
                flush=True,
            )
        if self.lost:  # asked to record the run, and the bag is known to miss some of it
            lost = ', '.join(f'{name} {count}' for name, count in sorted(self.lost.items()))
            print(
                f'[bag_recorder] error: messages lost before they reached the recorder ({lost}):'
                f' the bag {self.writer.path} is kept but incomplete (rpl bag eval names the '
                f'episodes); exit code {EXIT_MESSAGES_LOST}',
                flush=True,
            )
            self.request_exit(EXIT_MESSAGES_LOST)

    def destroy_node(self) -> None:
        """Close the bag first (run_node calls this on every way out)."""
        self.close()
        super().destroy_node()


def main(args: Sequence[str] | None = None) -> int:
    """Console script ``bag_recorder_node``: record until Ctrl-C / SIGTERM / shutdown."""
    return run_node(BagRecorderNode, args, name='bag_recorder')


if __name__ == '__main__':
    raise SystemExit(main())
