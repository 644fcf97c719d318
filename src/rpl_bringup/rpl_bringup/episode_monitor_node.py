"""ROS 2 episode monitor: collects the stack's episode results (and control-path counts).

Subscribes, relative to its namespace, to ``episode`` (latched: late joiners get every
result while the sim bridge runs), ``command`` and ``base_action``, and, once the last two have a
publisher (at most ``startup_timeout_s``) and ``settle_s`` more, to ``observation``: a
lockstep sim bridge waits for its observation subscribers, so the monitor hears every
command and base action of the run (as the bag recorder does). Logs 'ready: ...' once
subscribed to ``episode``, prints one line per episode and writes an
:class:`rpl_bringup.episode_log.EpisodeLog` as JSON to ``output_path`` after every episode,
every second and at exit. The terminal observation o_T is counted apart, never as a step;
the action messages' names are the stream's by the rule of
:mod:`rpl_interfaces.action_names` (see :mod:`rpl_bringup.episode_log`). Started by the
stack launch files with ``monitor:=true`` (used by ``rpl demo``, the integration tests and
the loop benchmark).

Run alone: ``python -m rpl_bringup.episode_monitor_node --ros-args -r __ns:=/rpl
-p output_path:=results/episodes.json``
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from sensor_msgs.msg import JointState

from rpl_bringup.episode_log import EpisodeLog, EpisodeRecord, summary_line
from rpl_interfaces import contract, output_files
from rpl_interfaces.base_node import RplNode, run_node
from rpl_interfaces.codec import MessageError, decode
from rpl_interfaces.listener_startup import ListenerStartupConfig
from rpl_interfaces.params import describe

SAVE_PERIOD_S = 1.0


@dataclasses.dataclass(frozen=True)
class EpisodeMonitorConfig(ListenerStartupConfig):
    """Parameters of the episode monitor; the start-up ones (``startup_timeout_s``,
    ``settle_s``: :class:`ListenerStartupConfig`) apply with ``watch_control``."""

    output_path: str = dataclasses.field(
        default='',
        metadata=describe(
            'JSON file rewritten after every episode, every second and at exit; empty = none'
        ),
    )
    watch_control: bool = dataclasses.field(
        default=True,
        metadata=describe(
            'Also count observation, command and base_action messages (tags, non-finite)'
        ),
    )


def check_new_output(path: str) -> None:
    """ValueError (one line) unless ``path`` is a new file this process can write: results
    are never written over, and a path that cannot be written would stop the monitor only
    after the run started."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ValueError(
            f'output_path {path!r} exists (results are never written over; give a new file)'
        )
    try:
        output_files.check_output(path, force=False, option='output_path')
    except output_files.OutputError as exc:
        raise ValueError(str(exc)) from None


class EpisodeMonitorNode(RplNode):
    """Episode monitor; see the module docstring."""

    def __init__(self) -> None:
        super().__init__('episode_monitor')
        self.config = self.declare_config(EpisodeMonitorConfig)
        if self.config.output_path:
            check_new_output(self.config.output_path)
        self.log = EpisodeLog()
        self.control_subscription(contract.EPISODE, self._on_episode)
        if self.config.watch_control:
            # observation last: the sim bridge counts its subscribers before it starts, so
            # that no command or base action of the run is sent before the monitor hears it.
            watched = {
                self.resolve_topic_name(contract.COMMAND): self.control_subscription(
                    contract.COMMAND, self._on_command
                ),
                self.resolve_topic_name(contract.BASE_ACTION): self.control_subscription(
                    contract.BASE_ACTION, self._on_base_action
                ),
            }
            self.after_publishers_match(
                watched, self.config, self._watch, if_missing='counting from now on'
            )
        # Rewrites the file with the latest counts; the timer also keeps the executor waking
        # up, so that a SIGTERM is handled promptly.
        self.create_timer(SAVE_PERIOD_S, self.save)
        self.log_ready(f'ready: listening on {self.resolve_topic_name(contract.EPISODE)}')

    def _watch(self) -> None:
        self.control_subscription(contract.OBSERVATION, self._on_observation)
        self.get_logger().info('watching the control path')

    def _on_episode(self, msg: JointState) -> None:
        try:
            vec = decode(msg, contract.EPISODE_FIELDS)
        except MessageError as exc:
            self.get_logger().warning(f'malformed episode result ignored: {exc}')
            return
        record = EpisodeRecord.from_payload(vec.episode, vec.values, vec.stamp_ns)
        self.log.add_episode(record)
        summary = self.log.summary()
        print(
            f'episode {record.episode:3d}: {"success" if record.success else "failure"}, '
            f'final distance {record.final_distance:.3f} m, {record.steps} steps, '
            f'fallbacks base {record.fallback_base} zero {record.fallback_zero} | '
            f'success so far {summary.success_rate:.2f} ({summary.episodes} episodes), '
            f'fallbacks so far base {summary.fallback_base} zero {summary.fallback_zero}',
            flush=True,
        )
        self.save()

    def _on_observation(self, msg: JointState) -> None:
        try:
            vec = decode(msg)
        except MessageError:
            return
        self.log.add_observation(vec)  # o_T counted apart: not a step

    def _on_command(self, msg: JointState) -> None:
        self._count(msg, 'commands')

    def _on_base_action(self, msg: JointState) -> None:
        self._count(msg, 'base_actions')

    def _count(self, msg: JointState, kind: str) -> None:
        try:
            vec = decode(msg)
        except MessageError:
            return  # malformed messages are the sim bridge's to reject and report
        # Tallied under its names; the stream's names win by the rule of
        # rpl_interfaces.action_names (the monitor does not know the task).
        self.log.add_action(kind, tuple(msg.name[len(contract.META_FIELDS) :]), vec)

    def save(self) -> None:
        """Write the JSON file (if ``output_path`` is set)."""
        if self.config.output_path:
            self.log.write_json(self.config.output_path)


def main(args: Sequence[str] | None = None) -> int:
    """Console entry point: spin until Ctrl-C / SIGTERM, then write the file a last time."""
    nodes: list[EpisodeMonitorNode] = []

    def factory() -> EpisodeMonitorNode:
        nodes.append(EpisodeMonitorNode())
        return nodes[-1]

    code = run_node(factory, args, name='episode_monitor')
    if nodes:
        try:
            nodes[-1].save()  # the final counts, also after Ctrl-C / SIGTERM
        except OSError as exc:  # a full disk: the file keeps its last complete save
            print(
                f'[episode_monitor] error: cannot write {exc.filename}: '
                f'{exc.strerror or exc}; it keeps its last complete save, if any',
                flush=True,
            )
            code = code or 1
        if nodes[-1].log.episodes:
            print(f'summary: {summary_line(nodes[-1].log.summary())}', flush=True)
    return code


if __name__ == '__main__':
    raise SystemExit(main())
