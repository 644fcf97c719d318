"""Shared node plumbing: typed parameters, QoS profiles, message codecs, diagnostics.

The only module of this package that imports rclpy. Every RPL node derives from
:class:`RplNode` so that parameters, QoS and diagnostics behave the same everywhere.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.experimental import EventsExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rclpy.subscription import Subscription
from sensor_msgs.msg import JointState

from rpl_interfaces import TRACEBACK_ENV, contract, wants_traceback
from rpl_interfaces.codec import StampedVector, encode
from rpl_interfaces.failures import raised_at
from rpl_interfaces.listener_startup import ListenerStartupConfig
from rpl_interfaces.param_files import check_parameter_files, not_applied
from rpl_interfaces.params import ParameterError, build_config, check_known_parameters

C = TypeVar('C')

STARTUP_POLL_S = 0.05  # period of RplNode.after_publishers_match's polling, s

DIAG_LEVEL = {
    'ok': DiagnosticStatus.OK,
    'warn': DiagnosticStatus.WARN,
    'error': DiagnosticStatus.ERROR,
    'stale': DiagnosticStatus.STALE,
}


def qos_profile(spec: contract.QosSpec) -> QoSProfile:
    """Turn a plain :class:`~rpl_interfaces.contract.QosSpec` into an rclpy profile."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=spec.depth,
        reliability=(
            ReliabilityPolicy.RELIABLE if spec.reliable else ReliabilityPolicy.BEST_EFFORT
        ),
        durability=(
            DurabilityPolicy.TRANSIENT_LOCAL if spec.transient_local else DurabilityPolicy.VOLATILE
        ),
    )


def now_ns() -> int:
    """Wall-clock time in nanoseconds (the stamp of every control-path message)."""
    return time.time_ns()


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # the bounds of a ROS integer parameter


def constraints_text(metadata: Mapping[str, Any]) -> str:
    """The ``additional_constraints`` line of a config field: its range and choices."""
    constraints = []
    if 'range' in metadata:
        constraints.append(f'range {list(metadata["range"])}')
    if 'choices' in metadata:
        constraints.append(f'one of {list(metadata["choices"])}')
    return '; '.join(constraints)


def parameter_descriptor(field: dataclasses.Field) -> ParameterDescriptor:
    """The ROS descriptor of a config field, with its range as a ROS range: read-only,
    unless the field is marked ``runtime`` (:func:`rpl_interfaces.params.describe`).

    An int field gets an ``IntegerRange`` (bounds rounded inwards and clipped to int64), a
    float field a ``FloatingPointRange``; bool and string fields have no ROS range (their
    choices stay in ``additional_constraints``).
    """
    descriptor = ParameterDescriptor(
        description=field.metadata.get('description', ''),
        additional_constraints=constraints_text(field.metadata),
        read_only=not field.metadata.get('runtime', False),
    )
    bounds = field.metadata.get('range')
    kind = type(field.default)
    if bounds is not None and kind is int:
        lo, hi = bounds
        lo = INT64_MIN if lo == -math.inf else max(INT64_MIN, math.ceil(lo))
        hi = INT64_MAX if hi == math.inf else min(INT64_MAX, math.floor(hi))
        descriptor.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=1)]
    elif bounds is not None and kind is float:
        lo, hi = (float(b) for b in bounds)
        descriptor.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi)]
    return descriptor


class _MatchGate:
    """State of one :meth:`RplNode.after_publishers_match` wait."""

    def __init__(self, node, subscriptions, startup, then, if_missing: str):
        self.node = node
        self.subscriptions = subscriptions
        self.t0 = time.monotonic()
        self.startup = startup
        self.then = then
        self.if_missing = if_missing
        self.settle_until: float | None = None  # set once every publisher is seen
        self.timer = None

    def poll(self) -> None:
        now = time.monotonic()
        if self.settle_until is None:
            missing = [
                name for name, sub in self.subscriptions.items() if sub.get_publisher_count() == 0
            ]
            timeout_s = self.startup.startup_timeout_s
            if missing and now - self.t0 < timeout_s:
                return
            if missing and timeout_s > 0:  # 0: told not to wait, nothing to warn about
                self.node.get_logger().warning(
                    f'no publisher on {missing} after startup_timeout_s={timeout_s}; '
                    f'{self.if_missing}'
                )
            self.settle_until = now + self.startup.settle_s
        if now < self.settle_until:
            return
        self.timer.cancel()
        self.then()


# The ROS arguments run_node started rclpy with (None: sys.argv): the parameter files in
# them are read once more, one by one, to check this node's entries (rcl's merge hides them).
_START_ARGS: list[str] | None = None

NO_CLOCK_WARNING_S = 5.0  # use_sim_time and no /clock this long after start: one warning


class RplNode(Node):
    """Base class: declares a config dataclass as parameters and publishes diagnostics."""

    exit_code: int | None = None  # set by request_exit: run_node stops and returns it
    # The signal (SIGINT / SIGTERM) that stopped run_node's loop, set before the node is
    # destroyed (None: it stopped for another reason, a request_exit or a failure).
    stop_signal: int | None = None

    # The first exception a callback raised (caught by the guard every subscription and
    # timer callback runs in): run_node reports it in one line, exit code 1.
    callback_failure: Exception | None = None

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        # rclpy's use_sim_time, like the node's own parameters, is read at start only: set
        # at runtime it moved every timer to a /clock that nothing in a stack publishes, and
        # the node froze without a word (the lockstep run, hot reload, diagnostics).
        current = self.describe_parameter('use_sim_time')  # rclpy's own object: not changed
        descriptor = ParameterDescriptor(
            name=current.name,
            type=current.type,
            description='set at start only (-p use_sim_time:=...); read-only after',
            read_only=True,
        )
        self.set_descriptor('use_sim_time', descriptor)
        if self.get_parameter('use_sim_time').value:
            self._watch_sim_clock()

    def _watch_sim_clock(self) -> None:
        """With use_sim_time (a global parameter file of a larger system sets it), every
        timer of the node runs on /clock, which nothing in a stack publishes: one warning
        when none has come ``NO_CLOCK_WARNING_S`` of steady time after start (the sim bridge
        hung before its first step, the residual node's hot reload and diagnostics stopped,
        all without a word)."""

        def check() -> None:
            if self.get_clock().now().nanoseconds == 0:
                self.get_logger().warning(
                    f'use_sim_time is true and no /clock came in {NO_CLOCK_WARNING_S:g} s: '
                    "this node's timers wait for it (the sim's steps, hot reload, "
                    '/diagnostics, warnings); nothing in this project publishes /clock, so '
                    'leave use_sim_time false unless your system does'
                )

        self.once(NO_CLOCK_WARNING_S, check, Clock(clock_type=ClockType.STEADY_TIME))

    def request_exit(self, code: int) -> None:
        """Ask :func:`run_node` to stop spinning after this callback and exit with ``code``
        (the node is destroyed and rclpy shut down as after Ctrl-C)."""
        self.exit_code = code

    def create_subscription(self, msg_type: Any, topic: str, callback: Any, *args, **kwargs):
        """rclpy's, with ``callback`` guarded (:meth:`_guarded`)."""
        return super().create_subscription(
            msg_type, topic, self._guarded(callback), *args, **kwargs
        )

    def create_timer(self, timer_period_sec: float, callback: Any, *args, **kwargs):
        """rclpy's, with ``callback`` guarded (:meth:`_guarded`)."""
        return super().create_timer(timer_period_sec, self._guarded(callback), *args, **kwargs)

    def _guarded(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        """``callback``, its exception kept for :func:`run_node`'s one line instead of
        reaching the executor, which logs it as FATAL with its traceback first (the events
        executor does, for subscriptions)."""
        if callback is None:
            return callback

        @functools.wraps(callback)  # its signature too: rclpy passes a timer's info by it
        def guarded(*args: Any) -> Any:
            try:
                return callback(*args)
            except Exception as exc:
                if not rclpy.ok():  # the context went away: run_node's rule for that
                    raise
                if self.callback_failure is None:
                    self.callback_failure = exc
                self.request_exit(1)
                return None

        return guarded

    def given_parameters(self) -> Mapping[str, Parameter]:
        """The parameters set for this node at start (``-p``, parameter files, launch), by
        name, declared or not.

        rclpy keeps them in ``Node._parameter_overrides`` and has no public accessor; every
        rclpy release from Humble to Kilted has it.
        """
        return dict(getattr(self, '_parameter_overrides', {}))

    def declare_config(
        self, cls: type[C], also_known: Callable[[C], Iterable[str]] | None = None
    ) -> C:
        """Declare every field of ``cls`` as a read-only parameter with its ROS range.

        A field's ``range`` becomes the descriptor's ``FloatingPointRange`` /
        ``IntegerRange`` and its choices the ``additional_constraints`` text. Every field is
        ``read_only``: a node reads its config once, here, so a runtime ``ros2 param set``
        is refused instead of being accepted and ignored. Values given at start (launch
        arguments, ``-p name:=value``) are checked by :func:`~rpl_interfaces.params.
        build_config` first, whose error names the value and the expected range; the full
        descriptors are applied after that check.

        A parameter set at start that the node does not have (a typo: ROS itself ignores
        it) is refused here, before the node does anything: the names known are the fields,
        rclpy's own and ``also_known(config)`` (parameters the node declares itself later,
        such as a controller's).

        Returns:
            The validated config built from the parameter values.

        Raises:
            rpl_interfaces.params.ParameterError: A value is out of range or mistyped, or a
                name is unknown.
        """
        # Each parameter file on its own first: a mistyped entry is named with its file
        # before rclpy refuses the merged value without it (an integer for a double).
        argv = _START_ARGS if _START_ARGS is not None else sys.argv
        files = check_parameter_files(argv, self.get_fully_qualified_name(), cls)
        for line in files.warnings:
            self.get_logger().warning(line)
        values: dict[str, Any] = {}
        fields = dataclasses.fields(cls)
        for field in fields:
            text = ParameterDescriptor(
                description=field.metadata.get('description', ''),
                additional_constraints=constraints_text(field.metadata),
            )
            values[field.name] = self.declare_parameter(field.name, field.default, text).value
        config = build_config(cls, values)
        own = [*(f.name for f in fields), *(also_known(config) if also_known else ())]
        declared = [*self.get_parameters_by_prefix(''), *own]  # with rclpy's own
        check_known_parameters(self.given_parameters(), declared, listed=own)
        problem = not_applied(files.asked, values)
        if problem:
            raise ParameterError(problem)
        for field in fields:
            descriptor = parameter_descriptor(field)
            descriptor.type = self.describe_parameter(field.name).type  # as declared
            self.set_descriptor(field.name, descriptor)
        return config

    def on_runtime_change(
        self,
        apply: Callable[[str, Any], None],
        refuse: Callable[[str, Any], str | None] | None = None,
    ) -> None:
        """Call ``apply(name, value)`` for each parameter a runtime ``ros2 param set``
        changed; only fields marked ``runtime`` can change (the rest are read-only), and
        ROS has checked the value's type and range against the descriptor first.
        ``refuse(name, value)`` may give the reason a value is not taken now (the set
        fails with it, nothing changes), or None."""
        if refuse is not None:

            def check(parameters: list[Parameter]) -> SetParametersResult:
                for parameter in parameters:
                    reason = refuse(parameter.name, parameter.value)
                    if reason is not None:
                        return SetParametersResult(successful=False, reason=reason)
                return SetParametersResult(successful=True)

            self.add_on_set_parameters_callback(check)

        def applied(parameters: list[Parameter]) -> None:
            for parameter in parameters:
                apply(parameter.name, parameter.value)

        self.add_post_set_parameters_callback(applied)

    def control_publisher(self, name: str):
        """Publisher of stamped vectors on a contract topic with its QoS role; volatile
        topics keep a history of at least :data:`~rpl_interfaces.contract.
        CONTROL_PUBLISHER_DEPTH`, so a stalled reliable reader still gets every message
        (latched topics keep their depth: it is what a late joiner receives), and offer
        that history to transient-local subscribers that match late (the trainer node);
        volatile subscribers (the loop's nodes) get only new messages, as before."""
        return self.create_publisher(JointState, name, qos_profile(contract.publisher_qos(name)))

    def control_subscription(self, name: str, callback: Callable[[JointState], None]):
        """Subscription to a contract topic with its QoS role."""
        return self.create_subscription(
            JointState, name, callback, qos_profile(contract.TOPIC_QOS[name])
        )

    def warn_when_unheard(
        self, seconds: float, inputs: Mapping[str, Subscription], heard: Callable[[], bool]
    ) -> None:
        """One warning ``seconds`` after start when nothing was ``heard`` and no publisher
        matched any of ``inputs`` (name -> subscription): it names the resolved topics (a
        node started outside the stack's namespace heard nothing, and nothing said so).
        Matched publishers that have not sent yet are a stack still starting (a learning
        stack waits for its trainer): no warning then. 0 = never."""
        if seconds <= 0:
            return

        def check() -> None:
            if heard() or any(sub.get_publisher_count() for sub in inputs.values()):
                return
            either = 'either' if len(inputs) > 1 else 'it'
            topics = ' and '.join(sub.topic_name for sub in inputs.values())
            self.get_logger().warning(
                f'no {" or ".join(inputs)} in {seconds:g} s and no publisher of {either}: '
                f'listening on {topics}; is the node in the namespace of the nodes that '
                "publish them (the stack's, e.g. -r __ns:=/rpl)?"
            )

        # Steady time: on a /clock that jumps to wall time it fired at once (after 2.6 s).
        self.once(seconds, check, Clock(clock_type=ClockType.STEADY_TIME))

    def once(
        self, seconds: float, callback: Callable[[], None], clock: Clock | None = None
    ) -> None:
        """Call ``callback`` once, ``seconds`` from now (on ``clock``, default the node's)."""

        def fire() -> None:
            timer.cancel()
            self.destroy_timer(timer)
            callback()

        timer = self.create_timer(seconds, fire, clock=clock)

    def log_ready(self, text: str) -> None:
        """Log ``text`` (the node's ``ready: ...`` line) once the node spins, not while it
        is built: from that line on a Ctrl-C is the clean stop (a last save, exit 0), not
        an interrupted start (:func:`run_node`); logged in the constructor, a signal sent
        on reading it landed in the constructor's last instructions."""

        self.once(0.0, lambda: self.get_logger().info(text))

    def after_publishers_match(
        self,
        subscriptions: Mapping[str, Subscription],
        startup: ListenerStartupConfig,
        then: Callable[[], None],
        if_missing: str,
    ):
        """Call ``then()`` once each subscription has a matched publisher, + ``settle_s``.

        For a listener that must not let a lockstep sim bridge start before it hears the
        stack (the bridge waits for ``min_subscribers`` observation subscribers): subscribe
        to the other topics first, then to ``observation`` in ``then``. After
        ``startup.startup_timeout_s`` it warns once, naming the topics without a publisher
        and ending with ``if_missing`` (what the node does instead), and goes on (timeout
        0: do not wait, no warning). Seeing a publisher does not mean that it has seen this
        subscriber yet (DDS discovery is not symmetric, and a reliable volatile writer sends
        nothing to a reader it does not know), hence ``startup.settle_s`` more.

        Returns:
            The polling timer (cancel it to give up waiting).
        """
        gate = _MatchGate(self, subscriptions, startup, then, if_missing)
        gate.timer = self.create_timer(STARTUP_POLL_S, gate.poll)
        return gate.timer

    def publish_vector(
        self,
        publisher,
        episode: int,
        step: int,
        values: np.ndarray,
        field_names: Sequence[str],
        tag: str,
    ) -> None:
        """Encode and publish one stamped vector."""
        msg = encode(
            JointState(), StampedVector(episode, step, values, now_ns(), tag), field_names
        )
        publisher.publish(msg)

    def make_diagnostics(self):
        """Publisher on /diagnostics."""
        return self.create_publisher(
            DiagnosticArray, contract.DIAGNOSTICS, qos_profile(contract.DIAGNOSTICS_QOS)
        )

    def publish_diagnostics(
        self, publisher, level: str, message: str, values: dict[str, Any]
    ) -> None:
        """Publish one DiagnosticStatus named after this node.

        Args:
            publisher: From :meth:`make_diagnostics`.
            level: 'ok', 'warn', 'error' or 'stale'.
            message: One-line summary.
            values: Key/value details (stringified).
        """
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        status = DiagnosticStatus(
            level=DIAG_LEVEL[level],
            name=self.get_fully_qualified_name(),
            message=message,
            hardware_id=self.get_name(),
            values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()],
        )
        arr.status = [status]
        publisher.publish(arr)


def _rcl_reason(exc: Exception) -> str:
    """rcl's start error as one line: its reason without the C source locations."""
    text = ' '.join(str(exc).split())
    text = text.removeprefix('failed to initialize rcl: ')
    for cut in ('. Error: ', ', at /'):
        text = text.split(cut, 1)[0]
    return f'cannot start ROS: {text}'


def _factory_name(factory: Callable[[], Node]) -> str:
    return getattr(factory, '__name__', 'rpl node')


# Parameter problems found while the node is built: one line, exit code 2. rclpy's own
# parameter exceptions (``seed:=abc`` for an integer) are not ValueErrors.
_START_ERRORS = (
    ValueError,
    InvalidParameterTypeException,
    InvalidParameterValueException,
)
STOP_POLL_S = 0.1  # s: how soon a SIGINT / SIGTERM / exit request ends the spin loop
EXECUTOR_ENV = 'RPL_EXECUTOR'  # which rclpy executor run_node spins: one of EXECUTORS
EXECUTORS = ('events', 'single')
# The EventsExecutor runs the 3-node lockstep loop faster than the SingleThreadedExecutor:
# 362 vs 275 steps/s (1.15-1.49x per pair of runs, 3 pairs taking turns in one run of
# benchmarks/loop_throughput.py on the shared 2-core machine; results/loop_throughput.json).
DEFAULT_EXECUTOR = 'events'


def executor_kind() -> str:
    """The executor named by ``RPL_EXECUTOR`` (default :data:`DEFAULT_EXECUTOR`).

    Raises:
        ValueError: The name is not one of :data:`EXECUTORS`.
    """
    kind = os.environ.get(EXECUTOR_ENV) or DEFAULT_EXECUTOR
    if kind not in EXECUTORS:
        raise ValueError(f'{EXECUTOR_ENV}={kind!r} is not one of {list(EXECUTORS)}')
    return kind


SCHED_ENV = 'RPL_SCHED'  # opt-in scheduling of a node's threads: see parse_sched
CPUS_ENV = 'RPL_CPUS'  # opt-in CPU affinity of a node: comma list of CPU numbers
SCHED_POLICIES = ('fifo', 'rr', 'nice')


def parse_sched(text: str) -> tuple[str, int] | None:
    """``RPL_SCHED``: ``fifo:PRIORITY`` / ``rr:PRIORITY`` (real-time SCHED_FIFO / SCHED_RR,
    priority 1-99), ``nice:N`` (-20..19) or empty (no change).

    Raises:
        ValueError: Anything else (one line naming the value and what was expected).
    """
    if not text.strip():
        return None
    policy, _, number = text.strip().partition(':')
    bounds = (-20, 19) if policy == 'nice' else (1, 99)
    try:
        value = int(number)
    except ValueError:
        value = None
    if policy not in SCHED_POLICIES or value is None or not bounds[0] <= value <= bounds[1]:
        raise ValueError(
            f'{SCHED_ENV}={text!r}: expected fifo:1..99, rr:1..99 or nice:-20..19 (or empty)'
        )
    return policy, value


def parse_cpus(text: str) -> set[int] | None:
    """``RPL_CPUS``: a comma list of CPU numbers this machine has, or empty (no change).

    Raises:
        ValueError: Not such a list (one line naming the value and what was expected).
    """
    if not text.strip():
        return None
    count = os.cpu_count() or 1
    try:
        cpus = {int(part) for part in text.split(',')}
    except ValueError:
        cpus = set()
    if not cpus or not all(0 <= cpu < count for cpu in cpus):
        raise ValueError(f'{CPUS_ENV}={text!r}: expected a comma list of CPUs 0..{count - 1}')
    return cpus


def apply_scheduling(sched: tuple[str, int] | None, cpus: set[int] | None) -> str | None:
    """Apply ``RPL_SCHED`` / ``RPL_CPUS`` to every thread of this process (the middleware's
    receive threads too: a message passes through one of them before the callback).

    Returns:
        None, or one line saying what the system refused (e.g. real-time priority without
        CAP_SYS_NICE); the node then runs with the default scheduling.
    """
    threads = [int(tid) for tid in os.listdir('/proc/self/task')]
    try:
        for tid in threads:
            if cpus is not None:
                os.sched_setaffinity(tid, cpus)
            if sched is None:
                continue
            policy, value = sched
            if policy == 'nice':
                os.setpriority(os.PRIO_PROCESS, tid, value)
            else:
                kind = os.SCHED_FIFO if policy == 'fifo' else os.SCHED_RR
                os.sched_setscheduler(tid, kind, os.sched_param(value))
    except (PermissionError, OSError) as exc:
        return (
            f'{SCHED_ENV}={os.environ.get(SCHED_ENV, "")!r} / {CPUS_ENV}='
            f'{os.environ.get(CPUS_ENV, "")!r} refused ({exc.strerror}): default scheduling'
        )
    return None


def takes_message_info(node: Node) -> bool:
    """Whether a subscription of ``node`` has a ``callback(msg, info)``: rclpy 9.1's
    EventsExecutor fails on those (SystemError: null argument to internal routine)."""
    with_info = Subscription.CallbackType.WithMessageInfo
    return any(getattr(s, '_callback_type', None) == with_info for s in node.subscriptions)


def make_executor(kind: str, node: Node) -> Executor:
    """The executor :func:`run_node` spins ``node`` with: ``'events'`` (rclpy's
    EventsExecutor: callbacks dispatched from middleware events in C++; the
    SingleThreadedExecutor instead for a node with message-info callbacks, see
    :func:`takes_message_info`) or ``'single'`` (the SingleThreadedExecutor, which builds a
    wait set in Python on every turn)."""
    if kind == 'events' and not takes_message_info(node):
        executor = EventsExecutor()
    else:
        executor = SingleThreadedExecutor()
    executor.add_node(node)
    return executor


class _StopSignals:
    """SIGINT / SIGTERM handlers that ask the spin loop to stop, while rclpy stays up.

    rclpy's own handlers shut the context down at once: a node that then logs while it is
    destroyed (a last checkpoint, a closed bag) has no rosout publisher any more and rcl
    prints "Failed to publish log message to rosout". Here the loop stops first, the node
    is destroyed while its context is valid, and rclpy shuts down last. Before the loop
    runs (while the node is built), and for a second signal, the signal raises
    KeyboardInterrupt wherever the process is.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self.spinning = False
        self._previous = {}
        if threading.current_thread() is threading.main_thread():  # else: the caller's job
            self._previous = {
                sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)
            }

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None or not self.spinning:
            self.received = signum
            raise KeyboardInterrupt
        self.received = signum

    def hold(self) -> None:
        """While the node is destroyed (a last checkpoint being saved): further signals are
        noted and said, not raised, so that the save completes."""
        if self._previous:
            for sig in self._previous:
                signal.signal(sig, self._held)

    def _held(self, signum: int, frame: Any) -> None:
        print(
            f'{signal.Signals(signum).name} received while shutting down; finishing the '
            'last save first',
            file=sys.stderr,
            flush=True,
        )

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class StartInterrupted(KeyboardInterrupt):
    """A signal while a node is built, with what did not happen as its message (``none of
    the 3 episodes run``): a node's constructor raises it from the KeyboardInterrupt to say
    so in :func:`run_node`'s line."""


def _interrupted_start(label: str, exc: KeyboardInterrupt, signum: int | None) -> int:
    """The line and exit code (128 + the signal, as a shell's) of a node interrupted while
    it was built: it never ran, so not 0 (the launch and a script would read it as done)."""
    signum = signum or signal.SIGINT
    detail = str(exc) if isinstance(exc, StartInterrupted) else 'not started'
    print(
        f'[{label}] interrupted by {signal.Signals(signum).name} while starting: {detail}; '
        f'exit code {128 + signum}',
        flush=True,
    )
    return 128 + signum


def _failure_line(label: str, exc: BaseException, started: bool) -> str:
    """One line for an unexpected exception: raised by a callback (``started``) or while
    the node was built, with where it was raised."""
    return (
        f'[{label}] {"runtime error in a callback" if started else "failed to start"}: '
        f'{raised_at(exc)}; exit code 1 (set {TRACEBACK_ENV}=1 for the whole traceback)'
    )


def run_node(
    factory: Callable[[], Node], args: Sequence[str] | None = None, name: str | None = None
) -> int:
    """Init rclpy, spin a node until Ctrl-C/SIGTERM, rclpy shutdown or an exit request,
    clean up.

    Two kinds of failure, told apart: a bad parameter found while the node is built
    (``ParameterError`` or another ``ValueError`` from ``factory``, or rclpy's parameter
    type/value exceptions) is one line and exit code 2; an exception raised later by a
    callback is a runtime failure: one line naming the node, the exception and where it
    was raised, exit code 1 (the traceback too if ``RPL_TRACEBACK=1``). A SIGINT / SIGTERM
    while the node is built is one line and 128 + the signal (:class:`StartInterrupted`
    says what did not happen); once it spins, the same signal is a clean stop (0, or the
    node's own code: :attr:`RplNode.stop_signal`). A node ends itself
    with :meth:`RplNode.request_exit`. The executor is :func:`make_executor`'s, named by the
    environment variable ``RPL_EXECUTOR`` (``events``, the default, or ``single``); an
    unknown name is an error at start, exit code 2. Opt-in: ``RPL_SCHED`` (real-time or
    nice priority, :func:`parse_sched`) and ``RPL_CPUS`` (CPU affinity) for every thread of
    the process once the node is built; a malformed value is an error at start (exit code
    2), a refused one a warning. After start-up the objects allocated so far are frozen
    out of the garbage collector (``gc.freeze``).

    Args:
        factory: Builds the node (after ``rclpy.init``).
        args: ROS arguments (``--ros-args ...``).
        name: Name used in the error line when the node could not even be built
            (default: the factory's name).

    Returns:
        Process exit code.
    """
    try:
        global _START_ARGS
        _START_ARGS = None if args is None else list(args)
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as exc:  # rcl's error: malformed --ros-args, a bad ROS_DOMAIN_ID, ...
        print(f'[{name or _factory_name(factory)}] error: {_rcl_reason(exc)}', flush=True)
        return 2
    signals = _StopSignals()
    node = None
    code = 0
    try:
        try:
            kind = executor_kind()
            sched = parse_sched(os.environ.get(SCHED_ENV, ''))
            cpus = parse_cpus(os.environ.get(CPUS_ENV, ''))
            node = factory()
        except _START_ERRORS as exc:  # includes ParameterError: one clear line
            print(f'[{name or _factory_name(factory)}] error: {exc}', flush=True)
            return 2
        executor = make_executor(kind, node)
        refused = apply_scheduling(sched, cpus)  # after the node: its DDS threads exist
        if refused:
            node.get_logger().warning(refused)
        # What start-up allocated (modules, the node, a loaded model) stays out of every
        # later collection: shorter GC pauses in the callbacks.
        gc.collect()
        gc.freeze()
        signals.spinning = True
        while rclpy.ok() and signals.received is None:
            executor.spin_once(timeout_sec=STOP_POLL_S)
            if getattr(node, 'exit_code', None) is not None:
                code = node.exit_code
                break
        failure = getattr(node, 'callback_failure', None)
        if failure is not None:  # a guarded callback raised: reported as if it escaped
            raise failure
    except KeyboardInterrupt as exc:
        if node is None:  # while it was built; later, a Ctrl-C is the usual clean stop
            code = _interrupted_start(name or _factory_name(factory), exc, signals.received)
    except ExternalShutdownException:
        pass
    except Exception as exc:
        # An RCL failure after an outside shutdown (the context went away while spin was
        # building its wait set) is a clean stop; anything else is the node's failure.
        if isinstance(exc, RuntimeError) and not rclpy.ok():
            pass
        else:
            label = node.get_name() if node is not None else (name or _factory_name(factory))
            if wants_traceback():
                traceback.print_exception(exc)
            print(_failure_line(label, exc, started=node is not None), flush=True)
            code = 1
    finally:
        if node is not None:
            node.stop_signal = signals.received
            signals.hold()  # a second Ctrl-C must not cut a last save short
            try:
                node.destroy_node()  # while the context is valid: its logs reach rosout
            finally:
                signals.restore()
            if code == 0 and getattr(node, 'exit_code', None):
                code = node.exit_code  # a failure while the node was destroyed
        else:
            signals.restore()
        rclpy.try_shutdown()
    return code
