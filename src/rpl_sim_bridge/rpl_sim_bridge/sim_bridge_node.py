"""ROS 2 shell of the sim bridge: publishes observations, applies commands, reports episodes.

Topics (relative to the node's namespace, see :mod:`rpl_interfaces.contract`):

* publishes ``observation`` (frame_id = task name; at the end of each episode the terminal
  observation o_T with step = T and frame_id ``contract.terminal_tag(task)``, just before
  the result), ``episode`` (one result per episode, latched) and ``/diagnostics`` (~1 Hz);
* publishes ``joint_states`` (unless ``publish_joint_states`` is false): the robot's joints
  as a standard ``sensor_msgs/JointState`` (MJCF joint names, no meta fields; frame_id =
  task name), one per simulation step: with the first publication of each observation
  (not its re-sends) and with each o_T, stamped exactly like that observation;
* subscribes ``command`` and ``base_action``.

All decisions (which action, fallbacks, rejections, episode ends) are made by
:class:`rpl_sim_bridge.bridge.SimBridge`; this module converts messages and wires timers.
Parameters: :class:`rpl_sim_bridge.bridge_config.SimBridgeConfig` (``config/sim_bridge.yaml``).
Exit codes: 0 when the configured episodes are done; 3 when they are done but not one step,
or at most half of them, applied a command although a command publisher was on the graph
(one error line; the launch then ends with an error: ``rpl launch`` 3, ``ros2 launch`` 1);
4 when they are done but a model it expected (``expect_model``) gave none of the applied
commands, or less than half of them; 5 when another node
already publishes its observation topic (a second stack in the namespace; it does not
start); 128 + the signal when a SIGINT / SIGTERM stops it before its episodes are done
(running forever too) or while it is built; 2 for a bad parameter, 1 for a runtime
failure.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence

import numpy as np
import rclpy
from rclpy.duration import Duration
from sensor_msgs.msg import JointState

from rpl_interfaces import contract
from rpl_interfaces.base_node import RplNode, StartInterrupted, now_ns, qos_profile, run_node
from rpl_interfaces.codec import MessageError, StampedVector, encode
from rpl_interfaces.log_throttle import LogThrottle
from rpl_sim_bridge.action_intake import Rejection, Source
from rpl_sim_bridge.answerers import AnswerLedger
from rpl_sim_bridge.bridge import Due, Handshake, SimBridge
from rpl_sim_bridge.bridge_config import LOCKSTEP, SimBridgeConfig, startup_decision
from rpl_sim_bridge.tasks import make_task
from rpl_sim_bridge.tasks.joints import JointSample

STARTUP_POLL_S = 0.05
DIAGNOSTICS_PERIOD_S = 1.0
LOG_PERIOD_S = 2.0
IDLE_PERIOD_S = 3600.0  # period of the lockstep deadline timer while it is not armed
# Exit code of a finished run in which no step, or at most half of them, applied a command
# although the residual node was on the graph (SimBridge.command_path_problem): it measured
# the fallback (mostly).
EXIT_COMMAND_PATH_UNANSWERED = 3
# Exit code of a finished run that expected a model (expect_model) and in which none, or
# less than half, of the applied commands came from it: the residual node passed the base
# action through (SimBridge.model_problem).
EXIT_MODEL_NEVER_RAN = 4
# Exit code of a bridge that found another node publishing its observation topic when it
# was about to start: a second stack in the same namespace (and ROS domain), whose
# controllers, residual node and episode monitor would answer and count both simulations.
EXIT_NAMESPACE_TAKEN = 5


class SimBridgeNode(RplNode):
    """Sim bridge node; see the module docstring."""

    def __init__(self) -> None:
        super().__init__('sim_bridge')
        self.config = self.declare_config(SimBridgeConfig)
        try:
            self._build()
        except KeyboardInterrupt:
            wanted = self.config.episodes
            raise StartInterrupted(
                f'none of the {wanted} episodes run' if wanted > 0 else 'no episode run'
            ) from None

    def _build(self) -> None:
        """Everything :meth:`__init__` does once the parameters are read."""
        cfg = self.config
        task = make_task(cfg.task)  # unknown task: ValueError listing the known names
        self.core = SimBridge(task, task.spec, cfg)
        self._lockstep = cfg.mode == LOCKSTEP
        self._fields = self.core.layout.fields
        self._terminal_tag = contract.terminal_tag(cfg.task)
        self._obs_pub = self.control_publisher(contract.OBSERVATION)
        self._episode_pub = self.control_publisher(contract.EPISODE)
        self._diag_pub = self.make_diagnostics()
        self._joint_pub = None
        if cfg.publish_joint_states:
            self._joint_pub = self.create_publisher(
                JointState, contract.JOINT_STATES, qos_profile(contract.JOINT_STATES_QOS)
            )
        self._command_sub = self.control_subscription(contract.COMMAND, self._on_command)
        self._base_sub = self.control_subscription(contract.BASE_ACTION, self._on_base)
        self._reject_log = LogThrottle(LOG_PERIOD_S)
        self._fallback_log = LogThrottle(LOG_PERIOD_S)
        self._running = False
        self._exit_code = 0  # set when a finished run failed (SimBridge.command_path_problem)
        self._t0 = time.monotonic()
        self._diag_last = (self._t0, 0)
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._on_diagnostics)
        self._warned_second_stack = False
        self._answers = {'command': AnswerLedger(), 'base action': AnswerLedger()}
        self._deadline_timer = None
        self._tick_timer = None
        self._pace_timer = None
        if self._lockstep:
            # One timer, re-armed for each step's fallback deadline (no polling).
            self._deadline_timer = self.create_timer(IDLE_PERIOD_S, self._on_deadline)
            self._deadline_timer.cancel()
            if self.core.pacer.paces:
                # One-shot (re-armed) timer that publishes a paced observation.
                self._pace_timer = self.create_timer(IDLE_PERIOD_S, self._on_pace)
                self._pace_timer.cancel()
        # Both modes wait for the graph (or startup_timeout_s) before the first observation.
        self._startup_timer = self.create_timer(STARTUP_POLL_S, self._on_startup_poll)
        self.get_logger().info(
            f'task {cfg.task!r}, mode {cfg.mode}, seed {cfg.seed}, '
            f'episodes {cfg.episodes or "forever"}'
        )

    # --- startup -----------------------------------------------------------------------
    def _other_observation_publishers(self) -> int:
        """How many nodes besides this bridge publish its observation topic."""
        return max(self.count_publishers(self._obs_pub.topic_name) - 1, 0)

    def _on_startup_poll(self) -> None:
        if others := self._other_observation_publishers():
            self._startup_timer.cancel()
            print(
                f'[sim_bridge] error: {others} other node(s) already publish '
                f'{self._obs_pub.topic_name}: another stack runs in namespace '
                f'{self.get_namespace()!r} (ROS_DOMAIN_ID '
                f'{os.environ.get("ROS_DOMAIN_ID") or 0}); the two would answer and count '
                "each other's episodes. Stop it, or start this one in another namespace; "
                f'exit code {EXIT_NAMESPACE_TAKEN}',
                flush=True,
            )
            self.request_exit(EXIT_NAMESPACE_TAKEN)
            return
        subscribers = self._obs_pub.get_subscription_count()
        commanders = self._command_sub.get_publisher_count()
        elapsed_s = time.monotonic() - self._t0
        decision = startup_decision(subscribers, commanders, elapsed_s, self.config)
        if decision is None:
            return
        self._startup_timer.cancel()
        if decision == 'ready':
            self.get_logger().info(
                f'starting after {elapsed_s:.2f} s: {subscribers} observation subscriber(s), '
                f'{commanders} command publisher(s)'
            )
        else:
            self.get_logger().warning(
                f'starting after startup_timeout_s={self.config.startup_timeout_s}: '
                f'{subscribers} observation subscriber(s) (wanted {self.config.min_subscribers}),'
                f' {commanders} command publisher(s) (wanted 1); missing actions fall back to '
                'the base action or zero'
            )
        self._start(commanders)

    def _start(self, command_publishers: int) -> None:
        self._running = True
        now = time.monotonic()
        self.core.begin(now, command_publishers)
        self._diag_last = (now, 0)
        self._publish_observation()
        if self._lockstep:
            self._arm_deadline(now)
        else:
            self._tick_timer = self.create_timer(1.0 / self.config.rate_hz, self._on_tick)

    # --- inputs ------------------------------------------------------------------------
    def _on_command(self, msg: JointState) -> None:
        now = time.monotonic()
        if not self._accepted(msg, 'command', now):
            return
        if self._lockstep and self._running and self.core.ready():
            self._step(now)

    def _on_base(self, msg: JointState) -> None:
        now = time.monotonic()
        if not self._accepted(msg, 'base action', now):
            return
        if self._lockstep and self._running:
            # Without any command publisher the base action is applied at once.
            self._read_graph()
            if self.core.ready():
                self._step(now)
            else:
                self._arm_deadline(now)

    def _read_graph(self) -> None:
        """Tell the core which of the nodes it waits for are on the graph."""
        self.core.command_source_present = self._command_sub.get_publisher_count() > 0
        self.core.base_source_present = self._base_sub.get_publisher_count() > 0

    def _take_pending(self, now: float) -> None:
        """Offer the commands and base actions already received but not yet taken.

        The executor runs a due timer before the subscriptions that became ready in the
        same wait, so without this a fallback deadline could win over an action that is
        already here (e.g. after this process was descheduled or blocked in a publish
        call). Called before any fallback is applied: an action that exists is used.
        """
        for sub, what in ((self._command_sub, 'command'), (self._base_sub, 'base action')):
            while True:
                with sub.handle:
                    taken = sub.handle.take_message(sub.msg_type, sub.raw)
                if taken is None:
                    break
                self._accepted(taken[0], what, now)

    def _accepted(
        self,
        msg: JointState,
        what: str,
        now: float,
    ) -> bool:
        """Decode an action message and offer it to the core; log a rejection (throttled).

        Args:
            msg: A ``command`` or ``base_action`` message.
            what: Its kind, ``'command'`` (:meth:`SimBridge.offer_command`, with its tag)
                or ``'base action'`` (:meth:`SimBridge.offer_base`).
            now: Arrival time, s (monotonic).

        Returns:
            True if the core accepted the action.
        """
        try:
            vec = self.core.decode_action(msg)
        except MessageError as exc:
            self._log_rejection(self.core.reject_malformed(what, str(exc)), now)
            return False
        answer = msg.header.frame_id.encode() + vec.values.tobytes()
        if self._answers[what].second_answerer((vec.episode, vec.step), answer):
            self._second_stack(what, vec.episode, vec.step)
            return False
        if what == 'command':
            rejection = self.core.offer_command(
                vec.episode, vec.step, vec.values, now, source=msg.header.frame_id
            )
        else:
            rejection = self.core.offer_base(vec.episode, vec.step, vec.values, now)
        if rejection is not None:
            self._log_rejection(rejection, now)
            return False
        return True

    def _second_stack(self, what: str, episode: int, step: int) -> None:
        """Two nodes answered the same step: end the run, exit 5 (its episodes would mix
        the two stacks' commands and still end 0)."""
        if self.exit_code is not None:
            return
        topic = self._command_sub if what == 'command' else self._base_sub
        print(
            f'[sim_bridge] error: two nodes answered episode {episode} step {step} on '
            f'{topic.topic_name}: another stack runs in namespace {self.get_namespace()!r} '
            f'(ROS_DOMAIN_ID {os.environ.get("ROS_DOMAIN_ID") or 0}) and its nodes answer '
            "this bridge's observations; its episodes from here on would not be this stack's "
            f'alone. Stop the other, or run each in its own namespace; '
            f'{self.core.counters.episodes} episode(s) done; exit code {EXIT_NAMESPACE_TAKEN}',
            flush=True,
        )
        self._running = False
        self.request_exit(EXIT_NAMESPACE_TAKEN)

    def _log_rejection(self, rejection: Rejection, now: float) -> None:
        if rejection.kind in ('late', 'terminal'):
            return  # expected; counted in diagnostics (late_*, terminal_answers)
        log, held = self._reject_log.should_log(now)
        if log:
            more = f' ({held} more since the last line)' if held else ''
            text = f'rejected {rejection.kind} message: {rejection.reason}{more}'
            self.get_logger().warning(text)

    # --- stepping ----------------------------------------------------------------------
    def _arm_deadline(self, now: float) -> None:
        delay_s = max(self.core.deadline() - now, 1e-4)
        self._deadline_timer.timer_period_ns = int(delay_s * 1e9)
        self._deadline_timer.reset()

    def _on_deadline(self) -> None:
        now = time.monotonic()
        if not self._running:
            self._deadline_timer.cancel()
            return
        core = self.core
        self._read_graph()
        handshake = core.handshake
        due = core.poll(now)
        if due is Due.STEP and not core.ready():
            # A fallback is due: first use whatever action is already received.
            self._take_pending(now)
            due = core.poll(now)
        if handshake is Handshake.WAITING and core.handshake is Handshake.TIMED_OUT:
            self.get_logger().warning(
                f'no command for (episode 0, step 0) within startup_timeout_s='
                f'{self.config.startup_timeout_s} although a command publisher exists '
                f'(observation re-sent {core.counters.handshake_resends} times): a link of '
                'the command path never matched or the residual node does not answer; '
                'missing commands fall back to the base action or zero from now on'
            )
        if due is Due.STEP:
            self._step(now)
            return
        if due is Due.RESEND:
            self._publish_observation(first=False)
        self._arm_deadline(now)

    def _on_tick(self) -> None:
        if self._running:
            self._step(time.monotonic())

    def _step(self, now: float) -> None:
        core = self.core
        episode, step = core.episode, core.step
        handshake = core.handshake
        outcome = core.advance(now)
        resends = core.counters.handshake_resends
        if handshake is Handshake.WAITING and core.handshake is Handshake.DONE and resends:
            self.get_logger().info(
                f'first command arrived after {resends} re-sent observation(s) (0, 0): '
                'the command path is complete'
            )
        for path in core.silenced:
            node = 'residual node (command)' if path == 'command' else 'base controller'
            self.get_logger().warning(
                f'the {node} is on the graph but did not answer (episode {episode}, step '
                f'{step}) within response_timeout_s={self.config.response_timeout_s}: '
                f'applied the {outcome.source.value} action; it counts as silent (shorter '
                'timeouts) until it answers again'
            )
        if outcome.source in (Source.BASE, Source.ZERO):
            log, held = self._fallback_log.should_log(now)
            if log:
                more = f' ({held} more fallbacks since the last line)' if held else ''
                self.get_logger().warning(
                    f'no command for (episode {episode}, step {step}): applied the '
                    f'{outcome.source.value} action{more}'
                )
        if outcome.result is not None:
            result = outcome.result
            # o_T first (no answer expected: nothing is armed for it), then the result.
            stamp_ns = self._publish_stamped(
                self._obs_pub,
                result.episode,
                result.steps,
                outcome.terminal,
                self._terminal_tag,
            )
            self._publish_joints(outcome.terminal_joints, stamp_ns)
            self.publish_vector(
                self._episode_pub,
                result.episode,
                result.steps,
                result.as_vector(),
                contract.EPISODE_FIELDS,
                self.config.task,
            )
            self.get_logger().info(
                f'episode {result.episode}: success {result.success}, final distance '
                f'{result.final_distance:.3f} m, return {result.episode_return:.1f}, '
                f'fallbacks base {result.fallback_base} zero {result.fallback_zero}'
            )
        if outcome.finished:
            self._finish()
            return
        wait_s = self.core.pacer.wait_s(now)  # lockstep_max_rate_hz (rpl_sim_bridge.pacing)
        if wait_s > 0.0:
            self._deadline_timer.cancel()
            self._pace_timer.timer_period_ns = int(wait_s * 1e9)
            self._pace_timer.reset()
            return
        self._publish_observation()
        if self._lockstep:
            self._arm_deadline(now)

    def _on_pace(self) -> None:
        self._pace_timer.cancel()
        if self._running:
            self._publish_observation()
            self._arm_deadline(time.monotonic())

    def _publish_observation(self, first: bool = True) -> None:
        """Publish the current observation; ``first`` = not a re-send of it."""
        core = self.core
        core.pacer.published(time.monotonic())
        stamp_ns = self._publish_stamped(
            self._obs_pub, core.episode, core.step, core.observation(), self.config.task
        )
        # The response limits run from here: the publish call can block (a reader process
        # stopped while holding its shared-memory port lock blocks every writer to it).
        if first:
            core.observation_sent(time.monotonic())
            self._publish_joints(core.joint_state(), stamp_ns)

    def _publish_stamped(
        self, publisher, episode: int, step: int, values: np.ndarray, tag: str
    ) -> int:
        """Publish one observation payload stamped now; returns its stamp, ns."""
        stamp_ns = now_ns()
        vec = StampedVector(episode, step, values, stamp_ns, tag)
        publisher.publish(encode(JointState(), vec, self._fields))
        return stamp_ns

    def _publish_joints(self, joints: JointSample | None, stamp_ns: int) -> None:
        """Publish the joints of the observation stamped ``stamp_ns`` on joint_states
        (nothing when the topic is off or the task reports no joints)."""
        if self._joint_pub is None or joints is None:
            return
        msg = JointState()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        msg.header.frame_id = self.config.task
        msg.name = list(joints.names)
        msg.position = joints.position.tolist()
        msg.velocity = joints.velocity.tolist()
        msg.effort = joints.effort.tolist()
        self._joint_pub.publish(msg)

    def _finish(self) -> None:
        self._running = False
        for timer in (self._deadline_timer, self._tick_timer, self._pace_timer):
            if timer is not None:
                timer.cancel()
        self._on_diagnostics()
        c = self.core.counters
        model = (
            f', commands from the model {self.core.model_commands} of {c.commands + c.held}'
            if self.config.expect_model
            else ''
        )
        self.get_logger().info(
            f'{c.episodes} episode(s) done: {c.steps} steps, fallbacks base {c.fallback_base} '
            f'zero {c.fallback_zero}, response timeouts {c.response_timeouts}{model}; exiting'
        )
        problem = self.core.command_path_problem()
        if problem is not None:
            self.get_logger().error(f'{problem}; exit code {EXIT_COMMAND_PATH_UNANSWERED}')
            self._exit_code = EXIT_COMMAND_PATH_UNANSWERED
        elif (problem := self.core.model_problem()) is not None:
            self.get_logger().error(f'{problem}; exit code {EXIT_MODEL_NEVER_RAN}')
            self._exit_code = EXIT_MODEL_NEVER_RAN
        self.create_timer(self.config.result_linger_s, self._on_linger_done)

    def destroy_node(self) -> None:
        """A bridge stopped by a signal before its last episode (or running forever,
        ``episodes`` 0) ends with 128 + the signal's number, not 0: exit 0 says its episodes
        are done, and the launch (the sim bridge is required) and any script after it read
        a cut-off run, or a forever bridge that a SIGTERM from outside stopped, as finished.
        A launch that stops it takes 128 + SIGINT / SIGTERM as the answer to its stop."""
        signum = getattr(self, 'stop_signal', None)
        core = getattr(self, 'core', None)
        if signum is not None and core is not None and not core.finished:
            wanted = self.config.episodes
            if wanted > 0:
                print(
                    f'[sim_bridge] stopped by {signal.Signals(signum).name} after '
                    f'{core.counters.episodes} of {wanted} episodes: the run is not complete',
                    flush=True,
                )
            self.request_exit(128 + signum)
        super().destroy_node()

    def _on_linger_done(self) -> None:
        self._obs_pub.wait_for_all_acked(Duration(seconds=1.0))  # the last o_T
        self._episode_pub.wait_for_all_acked(Duration(seconds=1.0))
        if self._exit_code:
            self.request_exit(self._exit_code)
        else:
            rclpy.try_shutdown()

    # --- diagnostics -------------------------------------------------------------------
    def _on_diagnostics(self) -> None:
        now = time.monotonic()
        if self._running and not self._warned_second_stack:
            if others := self._other_observation_publishers():
                self._warned_second_stack = True
                self.get_logger().warning(
                    f'{others} other node(s) now publish {self._obs_pub.topic_name} too: a '
                    'second stack in this namespace; its controllers and residual node may '
                    "answer this bridge's observations from now on"
                )
        c = self.core.counters
        last_t, last_steps = self._diag_last
        rate = (c.steps - last_steps) / max(now - last_t, 1e-9)
        self._diag_last = (now, c.steps)
        if not self._running and not self.core.finished:
            level, message = 'warn', 'waiting for subscribers and a command publisher'
        elif self.core.handshaking:
            level, message = 'ok', 'waiting for the first command (re-sending observation 0)'
        elif c.fallback_zero or c.rejected_malformed:
            level, message = 'warn', 'zero-action fallbacks or malformed messages seen'
        else:
            level, message = 'ok', f'{self.config.mode}, {rate:.0f} steps/s'
        self.publish_diagnostics(
            self._diag_pub,
            level,
            message,
            {
                'mode': self.config.mode,
                'task': self.config.task,
                'episode': self.core.episode,
                'step': self.core.step,
                'steps_per_s': f'{rate:.1f}',
                'steps_total': c.steps,
                'episodes_done': c.episodes,
                'commands': c.commands,
                'held_commands': c.held,
                'fallback_base': c.fallback_base,
                'fallback_zero': c.fallback_zero,
                'rejected_malformed': c.rejected_malformed,
                'rejected_stale': c.rejected_stale,
                'behind_base': c.behind_base,
                'late_base': c.late_base,
                'late_commands': c.late_commands,
                'terminal_answers': c.terminal_answers,
                'resends': c.resends,
                'handshake': self.core.handshake.value,
                'handshake_resends': c.handshake_resends,
                'response_timeouts': c.response_timeouts,
                'command_silent': self.core.command_silent,
                'base_silent': self.core.base_silent,
            },
        )


def main(args: Sequence[str] | None = None) -> int:
    """Console script ``sim_bridge_node``: run the node until done or interrupted."""
    return run_node(SimBridgeNode, args, name='sim_bridge')


if __name__ == '__main__':
    raise SystemExit(main())
