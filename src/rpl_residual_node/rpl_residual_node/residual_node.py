"""ROS 2 residual node: observation + base_action in, command + residual + diagnostics out.

A thin shell around :class:`rpl_residual_node.mixer.ResidualMixer`: it decodes messages,
splits the observation payload by field name, publishes each Decision, checks the model
file for a hot reload on a timer and reports on /diagnostics. A malformed or invalid
message (undecodable, wrong field names, non-finite values) is rejected: counted, logged
(once per reason, then throttled), and without any effect on the node's state; it never
stops the node. Step halves dropped without their partner (it did not come within
``sync_timeout_s``, or a later step came first) are logged the same way on the reload
timer, with the matched publisher counts of both inputs, so a link that never matched (0)
is named rather than guessed. The terminal observation o_T
(``frame_id`` ``<task>/terminal``, published after an episode's last step) gets no
command: it is not a step
(:meth:`rpl_residual_node.mixer.ResidualMixer.add_terminal_observation`), and its tag is
not taken for the stream's task. The node knows no task: the action's size and field
names are the base action's own (any names, none repeated), and the command and residual
it publishes carry them. The observation's frame_id and field names and the base action's frame_id
and field names are what the stack says of itself: a model whose metadata names other
fields, or another task or controller (unless ``allow_model_mismatch``), is not run (base
action, one error line, ``count.model_refused_mismatch`` and ``count.model_mismatch`` in
/diagnostics; see :mod:`rpl_residual_node.model_identity`). A changed model file is loaded
and validated in a background thread (see :mod:`rpl_residual_node.model_reload`); while
that runs, a short timer looks for the result and swaps the model in on this (the
executor's) thread.

Run: ``residual_node --ros-args -r __ns:=/rpl -p model_path:=/path/actor.onnx`` (in the
stack's namespace: with nothing heard for ``silence_warning_s`` it warns once, naming the
topics it listens on).
The gain's old name ``residual_scale`` is refused at start with one line naming the new one
(see :data:`rpl_residual_node.mixing.RENAMED_PARAMETERS`).
A learning stack adds ``-p explore_noise:=0.2 -p explore_random:=0.3 -p explore_seed:=1``
(exploration on the model's residual; see :mod:`rpl_residual_node.mixing`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

from rcl_interfaces.msg import ParameterDescriptor
from sensor_msgs.msg import JointState

from rpl_interfaces import contract
from rpl_interfaces.action_names import action_field_problem
from rpl_interfaces.base_node import RplNode, run_node
from rpl_interfaces.codec import MessageError, decode
from rpl_interfaces.log_throttle import LogThrottle
from rpl_interfaces.params import ParameterError
from rpl_residual_node.decision import (
    INPUT_LATE,
    MODEL_MISMATCH,
    NO_MODEL,
    OK,
    RESIDUAL_BEYOND_SCALE,
    Decision,
    LatencyWindow,
)
from rpl_residual_node.input_timing import InputTracker
from rpl_residual_node.mixer import ResidualMixer
from rpl_residual_node.mixing import RENAMED_PARAMETERS, ResidualConfig, check_renamed
from rpl_residual_node.model_reload import TOO_LARGE
from rpl_residual_node.model_slot import MODEL_TOO_LARGE, ReloadEvent
from rpl_residual_node.step_pairing import (
    BASE_WITHOUT_OBSERVATION,
    OBSERVATION_WITHOUT_BASE,
    STREAM_RESTART,
    SYNC_TIMEOUT,
)

MALFORMED_OBSERVATION = 'malformed_observation'
MALFORMED_BASE_ACTION = 'malformed_base_action'
UNPAIRED = 'unpaired'  # log throttle key: halves dropped without their partner
# Input messages that never reached the callback (overwritten in the input queue, or lost):
# counted per topic (/diagnostics count.lost_observation, count.lost_base_action), logged.
LOST = {contract.OBSERVATION: 'lost_observation', contract.BASE_ACTION: 'lost_base_action'}
UNPAIRED_REASONS = (SYNC_TIMEOUT, OBSERVATION_WITHOUT_BASE, BASE_WITHOUT_OBSERVATION)
LOG_THROTTLE_S = 10.0
RELOAD_POLL_S = 0.05  # how often a running background model load is looked at


class _Layout(NamedTuple):
    """An observation payload's slices and the field names the model identity is checked on."""

    slices: contract.ObservationLayout
    observation_fields: tuple[str, ...]
    goal_fields: tuple[str, ...]


class ResidualNode(RplNode):
    """Publishes ``command = clip(base + scale * clamp(residual))`` for every step."""

    def __init__(self) -> None:
        super().__init__('residual_node')
        check_renamed({old: self._given_value(old) for old in RENAMED_PARAMETERS})
        self.config = self.declare_config(ResidualConfig)
        self._throttle = LogThrottle(LOG_THROTTLE_S)
        self.mixer = ResidualMixer(
            self.config,
            on_reject=self._warn,
            on_model_note=self._model_note,
        )
        self.on_runtime_change(self._on_runtime_change, self._refused_runtime_change)
        self._decision_latency = LatencyWindow()  # from each message's reception
        self._unpaired_reported = 0  # step halves dropped without partner, logged up to here
        self._inputs = {name: InputTracker() for name in LOST}
        self._lost_reported = 0  # lost input messages, reported up to here
        self._diagnosed_lost = 0  # ... and on /diagnostics
        self._restarts_reported = 0  # observation stream restarts, logged up to here
        self._layouts: dict[tuple[str, ...], _Layout | str] = {}
        self._command_pub = self.control_publisher(contract.COMMAND)
        self._residual_pub = self.control_publisher(contract.RESIDUAL)
        self._diagnostics_pub = self.make_diagnostics()
        # The middleware's MessageInfo (reception time, sequence numbers) only where the
        # input-age guard is on: rclpy's EventsExecutor cannot pass it, and a node taking it
        # spins on the slower single-threaded executor (a lockstep stack, guard off, keeps
        # the faster one; there a lost message is re-sent by the sim anyway).
        if self.config.max_input_age_s > 0:
            on_observation, on_base_action = self._on_observation, self._on_base_action
        else:

            def on_observation(msg: JointState) -> None:
                self._on_observation(msg, None)

            def on_base_action(msg: JointState) -> None:
                self._on_base_action(msg, None)

        self._observation_sub = self.control_subscription(contract.OBSERVATION, on_observation)
        self._base_action_sub = self.control_subscription(contract.BASE_ACTION, on_base_action)
        self._heard = False  # any observation or base action yet
        self.warn_when_unheard(
            self.config.silence_warning_s,
            {
                contract.OBSERVATION: self._observation_sub,
                contract.BASE_ACTION: self._base_action_sub,
            },
            lambda: self._heard,
        )
        self.create_timer(self.config.reload_period_s, self._on_reload_timer)
        self._reload_poll = self.create_timer(RELOAD_POLL_S, self._on_reload_poll)
        self._reload_poll.cancel()  # runs only while a model loads in the background
        self.create_timer(self.config.diagnostics_period_s, self._publish_diagnostics)
        if self.mixer.last_reload is not None:
            self._log_reload(self.mixer.last_reload)
        elif not self.config.model_path:
            self.get_logger().info('no model_path set: the command is the base action')
        if self.config.residual_gain_ramp_s > 0 and self.config.model_path:
            self.get_logger().info(
                f'residual_gain {self.config.residual_gain:g}, ramped in from 0 over '
                f'{self.config.residual_gain_ramp_s:g} s from the first step '
                '(residual_gain_ramp_s); a runtime raise is reached over the same time, a '
                'lower gain at once'
            )
        if self.config.explores:
            self.get_logger().warning(
                f'{self.config.describe_exploration()}: the residual is perturbed on purpose '
                '(a learning stack); set explore_noise and explore_random to 0 for deployment'
            )

    # ------------------------------------------------------------------ callbacks

    def _refused_runtime_change(self, name: str, value: object) -> str | None:
        """Why a runtime ``residual_gain`` is not taken: the config's own rule for it, as at
        start (a node that explores keeps it at most 1)."""
        if name != 'residual_gain':
            return None
        try:
            dataclasses.replace(self.config, residual_gain=float(value))
        except ParameterError as exc:
            return str(exc)
        return None

    def _on_runtime_change(self, name: str, value: object) -> None:
        """``ros2 param set`` of a runtime parameter (only ``residual_gain`` is one)."""
        if name != 'residual_gain':
            return
        was = self.mixer.gain
        # ROS takes a value within its float tolerance of a bound (2.0000019, -0.0): held
        # to the range the node refuses beyond at start.
        value = min(max(float(value), 0.0), 2.0) + 0.0
        if value == self.mixer.gain_target:  # its target already: nothing changes
            self.get_logger().info(f'residual_gain set to {value:g} again: unchanged')
            return
        self.mixer.set_gain(value)
        ramp_s = self.config.residual_gain_ramp_s
        over = (
            f', reached over {ramp_s:g} s (residual_gain_ramp_s)'
            if ramp_s > 0 and value > was
            else ''
        )
        self.get_logger().info(f'residual_gain set to {value:g} at runtime, from {was:g}{over}')

    def _arrived(self, topic: str, info: dict | None) -> float:
        """Seconds the message waited since its reception; counts the ones lost before it.

        (With the guard on, the callbacks take ``info`` as a required argument: rclpy hands
        a subscription callback the MessageInfo only when it cannot be called with the
        message alone; off, ``info`` is None: no wait, no count.)"""
        arrival = self._inputs[topic].arrival(info, time.time_ns())
        if arrival.lost:
            self.mixer.counts[LOST[topic]] += arrival.lost
        return arrival.waited_s

    def _on_observation(self, msg: JointState, info: dict | None) -> None:
        received = time.perf_counter()
        waited = self._arrived(contract.OBSERVATION, info)
        received -= waited
        self._heard = True
        try:
            vec = decode(msg)
        except MessageError as exc:
            self._warn(MALFORMED_OBSERVATION, f'dropped an observation: {exc}')
            return
        if contract.is_terminal(msg.header.frame_id):
            self.mixer.add_terminal_observation(vec.episode, vec.step)
            return
        layout = self._layout(tuple(msg.name[len(contract.META_FIELDS) :]))
        if isinstance(layout, str):
            self._warn(
                MALFORMED_OBSERVATION,
                f'rejected the observation of episode {vec.episode} step {vec.step}: {layout}',
            )
            return
        self.mixer.note_observation_source(
            msg.header.frame_id, layout.observation_fields, layout.goal_fields
        )
        observation = vec.values[layout.slices.observation]
        desired_goal = vec.values[layout.slices.desired_goal]
        decision = self.mixer.add_observation(
            vec.episode, vec.step, observation, desired_goal, waited_s=waited
        )
        self._publish(decision, received, waited)

    def _on_base_action(self, msg: JointState, info: dict | None) -> None:
        received = time.perf_counter()
        waited = self._arrived(contract.BASE_ACTION, info)
        received -= waited
        self._heard = True
        try:
            vec = decode(msg)
        except MessageError as exc:
            self._warn(MALFORMED_BASE_ACTION, f'dropped a base action: {exc}')
            return
        names = tuple(msg.name[len(contract.META_FIELDS) :])
        problem = action_field_problem(names)
        if problem:
            self._warn(
                MALFORMED_BASE_ACTION,
                f'rejected the base action of episode {vec.episode} step {vec.step}: {problem}',
            )
            return
        decision = self.mixer.add_base_action(
            vec.episode,
            vec.step,
            vec.values,
            names,
            controller=msg.header.frame_id,
            waited_s=waited,
        )
        self._publish(decision, received, waited)

    def _on_reload_timer(self) -> None:
        event = self.mixer.check_reload()
        if event is not None:
            self._log_reload(event)
        if self.mixer.reload_in_flight and self._reload_poll.is_canceled():
            self._reload_poll.reset()
        self.mixer.expire()
        unpaired = sum(self.mixer.counts[reason] for reason in UNPAIRED_REASONS)
        if unpaired > self._unpaired_reported and self._say_count(
            UNPAIRED,
            lambda: (
                f'{unpaired - self._unpaired_reported} step half(s) dropped without the other '
                f'half (it did not come within sync_timeout_s={self.config.sync_timeout_s}, '
                'or a later step came first): no command for those steps; matched publishers '
                f'now: observation {self._observation_sub.get_publisher_count()}, base_action '
                f'{self._base_action_sub.get_publisher_count()} (0: that link has not matched '
                'yet, or its node is gone)'
            ),
        ):
            self._unpaired_reported = unpaired
        restarts = self.mixer.counts[STREAM_RESTART]
        if restarts > self._restarts_reported and self._say_count(
            STREAM_RESTART,
            lambda: (
                f'the observation stream started over {restarts - self._restarts_reported} '
                'time(s) (an older step after a newer one, or a decided step again with other '
                'values): the steps waiting for their partner were dropped; a restarted sim '
                'or robot bridge is fine once, but again and again means two sources publish '
                f'on {self._observation_sub.topic_name}'
            ),
        ):
            self._restarts_reported = restarts
        lost = self._lost()
        if lost > self._lost_reported and self._say_count(
            LOST[contract.OBSERVATION],
            lambda: (
                f'{lost - self._lost_reported} input message(s) never reached the node '
                f'(observation {self.mixer.counts[LOST[contract.OBSERVATION]]}, base_action '
                f'{self.mixer.counts[LOST[contract.BASE_ACTION]]} in all): the node fell '
                'behind its input (each topic keeps its last 10 messages) and those steps got '
                'no command; the input comes faster than the node decides, or its CPU stalled'
            ),
        ):
            self._lost_reported = lost

    def _say_count(self, reason: str, text: Callable[[], str]) -> bool:
        """Log ``text()`` (a count since the last such line) unless throttled; True if
        logged, so the caller moves its reported mark only then (a held line's messages were
        lost from the next line's count: 21 said of 63 lost). Built only when logged (it
        asks the graph for publisher counts)."""
        log, _ = self._throttle.should_log(time.monotonic(), reason)
        if log:
            self.get_logger().warning(text())
        return log

    def _lost(self) -> int:
        return sum(self.mixer.counts[reason] for reason in LOST.values())

    def _on_reload_poll(self) -> None:
        event = self.mixer.finish_reload()
        if event is not None:
            self._log_reload(event)
        if not self.mixer.reload_in_flight:
            self._reload_poll.cancel()

    def _publish_diagnostics(self) -> None:
        level, message, values = self.mixer.diagnostics()
        lost = self._lost()
        if lost > self._diagnosed_lost and level != 'error':
            also = '' if level == 'ok' else f'; {message}'
            level = 'warn'
            message = (
                f'{lost - self._diagnosed_lost} input message(s) never reached the node since '
                f'the last report: it falls behind its input{also}'
            )
        self._diagnosed_lost = lost
        values['decision_p50_us'] = round(self._decision_latency.percentile_us(50), 1)
        values['decision_p99_us'] = round(self._decision_latency.percentile_us(99), 1)
        self.publish_diagnostics(self._diagnostics_pub, level, message, values)

    # ------------------------------------------------------------------ helpers
    def _given_value(self, name: str):
        """The value given at start to a parameter this node does not have, or None."""
        any_type = ParameterDescriptor(dynamic_typing=True)
        value = self.declare_parameter(name, None, any_type).value
        self.undeclare_parameter(name)
        return value

    def _publish(self, decision: Decision | None, received: float, waited: float) -> None:
        """Publish a Decision; ``received``: perf_counter time of the message's reception,
        ``waited``: seconds it waited in the node before its callback."""
        if decision is None:
            return
        self.publish_vector(
            self._command_pub,
            decision.episode,
            decision.step,
            decision.command,
            decision.fields,
            decision.source,
        )
        self._decision_latency.add(time.perf_counter() - received)
        model_name = os.path.basename(self.mixer.actor.path) if self.mixer.actor else ''
        self.publish_vector(
            self._residual_pub,
            decision.episode,
            decision.step,
            decision.residual,
            decision.fields,
            model_name,
        )
        if decision.reason == INPUT_LATE:
            self._warn(
                INPUT_LATE,
                f'episode {decision.episode} step {decision.step}: base action used, the model '
                f'not run: its input waited {waited * 1e3:.1f} ms in the node (max_input_age_s '
                f'{self.config.max_input_age_s:g} s); the node is behind its input (a model '
                'slower than the input period, a stalled CPU)',
            )
        elif decision.reason not in (OK, NO_MODEL, MODEL_MISMATCH):  # a mismatch: said once
            why = (
                f': {self.mixer.beyond_scale}' if decision.reason == RESIDUAL_BEYOND_SCALE else ''
            )
            self._warn(
                decision.reason,
                f'episode {decision.episode} step {decision.step}: base action used '
                f'({decision.reason}){why}',
            )

    def _layout(self, names: tuple[str, ...]) -> _Layout | str:
        """Observation layout of these field names (cached), or the error text."""
        layout = self._layouts.get(names)
        if layout is None:
            try:
                slices = contract.split_observation_fields(names)
                prefix = len(contract.DESIRED_GOAL_PREFIX)
                goal = tuple(name[prefix:] for name in names[slices.desired_goal])
                layout = _Layout(slices, names[slices.observation], goal)
            except ValueError as exc:
                layout = str(exc)
            if len(self._layouts) > 16:
                self._layouts.clear()
            self._layouts[names] = layout
        return layout

    def _warn(self, reason: str, text: str) -> None:
        if reason in (MALFORMED_OBSERVATION, MALFORMED_BASE_ACTION):
            self.mixer.counts[reason] += 1
        log, suppressed = self._throttle.should_log(time.monotonic(), reason)
        if log:
            more = f' ({suppressed} more since the last report)' if suppressed else ''
            self.get_logger().warning(text + more)

    def _model_note(self, level: str, text: str) -> None:
        if level == 'error':  # two call sites: rclpy fixes a call site's severity
            self.get_logger().error(text)
        else:
            self.get_logger().warning(text)

    def _log_reload(self, event: ReloadEvent) -> None:
        if event.loaded:
            self.get_logger().info(event.message)
            if event.warning:
                self.get_logger().warning(event.warning)
        elif event.refusal == TOO_LARGE:  # a file still being written: one line per 10 s
            log, suppressed = self._throttle.should_log(time.monotonic(), MODEL_TOO_LARGE)
            if log:
                more = f' ({suppressed} more refusals since the last report)' if suppressed else ''
                self.get_logger().error(event.message + more)
        else:
            self.get_logger().error(event.message)


def main(args: Sequence[str] | None = None) -> int:
    """Console entry point ``residual_node``."""
    return run_node(ResidualNode, args, name='residual_node')


if __name__ == '__main__':
    sys.exit(main())
