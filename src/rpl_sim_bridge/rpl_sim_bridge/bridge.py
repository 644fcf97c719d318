"""Pure core of the sim bridge: clock modes, action selection, fallbacks, episode results.

The node (:mod:`rpl_sim_bridge.sim_bridge_node`) only converts messages and wires topics
and timers; every decision is made here, without ROS, with time injected as an argument
(seconds on any monotonic clock), so it is unit-tested with a fake clock.

Which action is applied at step ``k`` of an episode:

* ``lockstep`` (deterministic, as fast as the nodes answer). The sim publishes observation
  ``k`` (``t_obs`` = when the publish call returned) and steps as soon as the *command*
  for ``(episode, k)`` arrives. While a command publisher is on the graph and *answering*,
  the step waits for the command up to ``t_obs + response_timeout_s`` (a safety bound of
  seconds: a node slowed down by machine load, or by a publish call blocked behind a
  stopped process, answers late, not never), so the episode does not depend on machine
  load. When that bound is hit, the base action is applied (``fallback_base``; zero if
  none arrived, ``fallback_zero``) and the command path counts as *silent* until a command
  of the current step arrives again. While it is silent: once the base action for
  ``(episode, k)`` has arrived at ``t_base``, the command gets ``command_timeout_s`` more,
  then the base action is applied (``fallback_base``). The base action itself is waited
  for the same way: up to ``t_obs + response_timeout_s`` while a base action publisher is
  on the graph and answering, else ``t_obs + step_timeout_s``, then the zero action is
  applied (``fallback_zero``) and the base path counts as silent until a base action of
  the current step arrives. So the zero action is never applied while a base action for
  the step is on its way from a live controller; a hung residual node costs one
  ``response_timeout_s``, then ~``command_timeout_s`` per step. While it waits for a live
  node, the sim re-publishes observation ``k`` every ``resend_period_s`` (the nodes answer
  a repeat with the same action): a message lost by a reader that was stopped or restarted
  (the residual node drops a half that waited ``sync_timeout_s`` for its partner) is
  recovered without a fallback. When no node publishes commands at all (the node reports
  this from the ROS graph), the base action is applied as soon as it arrives (still
  counted as ``fallback_base``).
* ``lockstep`` start-up handshake. DDS matches each writer-reader pair on its own, so the
  bridge seeing its own endpoints does not prove that the residual node already hears the
  controller or that the bridge hears the residual node's command writer (such a link can
  match ~2 s later, and a sample sent before it matched is lost for good). So when a
  command publisher exists at the start, step 0 of episode 0 is a handshake on real data:
  observation (0, 0) is re-published every ``handshake_period_s`` until command (0, 0)
  arrives, and no fallback is applied meanwhile (the controller and the residual node
  answer a repeated observation with the same action). A command proves every link of
  the command path. After ``startup_timeout_s`` without it the command path is silent
  (and the base path too if no base action came), and the rules above apply; if the
  command publisher goes away, they apply at once. Without a command publisher there is no
  handshake.
* ``realtime`` (fixed-rate wall clock, zero-order hold). At every tick the sim applies the
  newest command of the current episode whose step is within ``max_command_age_steps`` of
  ``k`` (the step of the last published observation); else the newest such base action
  (``fallback_base``); else zero (``fallback_zero``). A command for an earlier step than
  ``k`` is a *held* command (counted, not a fallback).

The terminal observation. When an episode ends after step ``T - 1``, :meth:`SimBridge.advance`
returns the observation the episode ended in (o_T) with the result; the node publishes it on
``observation`` with step ``T`` and ``contract.terminal_tag`` of its tag, then the result,
then starts the next episode. Nothing waits on it: no deadline, no re-send, no fallback.
An answer to it (a command or base action for that ``(episode, T)``) is rejected as
``terminal`` and only counted.

Messages of another episode, of a step outside the accepted window, of the wrong length or
with non-finite values are rejected and counted; they never reach the simulator. Episode
``i`` (0-based) is reset with seed ``seed + i``, the same rule as the in-process evaluator.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, NamedTuple, Protocol

import numpy as np

from rpl_interfaces.codec import StampedVector, decode
from rpl_interfaces.contract import (
    EpisodeResult,
    ObservationLayout,
    observation_fields,
    split_observation_fields,
)
from rpl_interfaces.params import describe
from rpl_sim_bridge.layout import GOAL_FIELDS
from rpl_sim_bridge.pacing import LockstepPacer

LOCKSTEP = 'lockstep'
REALTIME = 'realtime'


@dataclasses.dataclass(frozen=True)
class SimBridgeConfig:
    """Parameters of the sim bridge (defaults mirrored in ``config/sim_bridge.yaml``)."""

    task: str = dataclasses.field(
        default='push', metadata=describe('Registered task name (rpl_sim_bridge.tasks).')
    )
    seed: int = dataclasses.field(
        default=0,
        metadata=describe('Episode i is reset with seed + i.', range=(0, 2**31 - 1)),
    )
    episodes: int = dataclasses.field(
        default=0,
        metadata=describe(
            'Episodes to run, then publish the last result and exit 0 (0 = forever).',
            range=(0, 10**9),
        ),
    )
    mode: str = dataclasses.field(
        default=LOCKSTEP,
        metadata=describe(
            'lockstep: step when the command of the step arrives (deterministic); '
            'realtime: step at rate_hz with zero-order hold of the latest command.',
            choices=(LOCKSTEP, REALTIME),
        ),
    )
    rate_hz: float = dataclasses.field(
        default=25.0, metadata=describe('realtime: control rate, Hz.', range=(0.1, 1000.0))
    )
    lockstep_max_rate_hz: float = dataclasses.field(
        default=0.0,
        metadata=describe(
            'lockstep: at most this many steps per second (the next observation waits); '
            '0 = as fast as the nodes answer. Leaves CPU to a trainer on the same machine.',
            range=(0.0, 10000.0),
        ),
    )
    response_timeout_s: float = dataclasses.field(
        default=10.0,
        metadata=describe(
            'lockstep: while the residual node (command publisher) is on the graph and '
            'answering, wait at most this long after observation k for command k (and '
            'while the controller is, for base action k), then fall back and treat that '
            'node as silent until it answers again. A safety bound, not a pace: machine '
            'load must not change an episode, s.',
            range=(0.001, 600.0),
        ),
    )
    resend_period_s: float = dataclasses.field(
        default=1.0,
        metadata=describe(
            'lockstep, after the first step: while waiting for a live node past this, '
            're-publish the observation this often (same values; the nodes answer a repeat '
            'with the same action), so that a message lost by a stopped or restarted reader '
            'costs no fallback, s.',
            range=(0.001, 600.0),
        ),
    )
    command_timeout_s: float = dataclasses.field(
        default=0.05,
        metadata=describe(
            'lockstep, while the residual node is silent (missed response_timeout_s or '
            'the start-up handshake and has not answered since): after the base action of '
            'step k arrives, wait this long for the command of step k, then apply the '
            'base action, s.',
            range=(0.0, 60.0),
        ),
    )
    step_timeout_s: float = dataclasses.field(
        default=1.0,
        metadata=describe(
            'lockstep, while the controller is silent or off the graph: after publishing '
            'observation k, wait at most this long for any action, then apply the zero '
            'action, s.',
            range=(0.001, 600.0),
        ),
    )
    max_command_age_steps: int = dataclasses.field(
        default=1,
        metadata=describe(
            'realtime: a command or base action for step k - n .. k is fresh at step k.',
            range=(0, 1000),
        ),
    )
    startup_timeout_s: float = dataclasses.field(
        default=10.0,
        metadata=describe(
            'Wait at most this long for min_subscribers observation subscribers and a '
            'command publisher before the first observation; lockstep: then at most this '
            'long again for the first command (handshake), s.',
            range=(0.0, 3600.0),
        ),
    )
    handshake_period_s: float = dataclasses.field(
        default=0.2,
        metadata=describe(
            'lockstep, before the first step, while a command publisher exists: re-publish '
            'observation (episode 0, step 0) this often until its command arrives (no '
            'fallback meanwhile; at most startup_timeout_s), s.',
            range=(0.001, 60.0),
        ),
    )
    min_subscribers: int = dataclasses.field(
        default=2,
        metadata=describe(
            'Observation subscribers to wait for before the first step.',
            range=(0, 1000),
        ),
    )
    result_linger_s: float = dataclasses.field(
        default=0.5,
        metadata=describe(
            'After the last episode, keep the node alive this long so results are delivered, s.',
            range=(0.0, 60.0),
        ),
    )


class GoalTaskLike(Protocol):
    """What the bridge needs of a task (see ``rpl_sim_bridge.tasks.GoalTask``)."""

    def reset(self, seed: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]: ...

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]: ...


class TaskSpecLike(Protocol):
    """The fields of ``rpl_sim_bridge.tasks.TaskSpec`` the bridge reads."""

    name: str
    obs_dim: int
    goal_dim: int
    action_dim: int
    max_episode_steps: int
    obs_fields: tuple[str, ...]
    action_low: float
    action_high: float
    action_fields: tuple[str, ...]


def observation_layout(spec: TaskSpecLike) -> ObservationLayout:
    """Payload layout of the ``observation`` topic for one task.

    Payload = task ``obs_fields`` + ``achieved_goal.{x,y,z}`` + ``desired_goal.{x,y,z}``
    (block position and goal, m, world frame); see
    :func:`rpl_interfaces.contract.observation_fields`.
    """
    return split_observation_fields(observation_fields(spec.obs_fields, GOAL_FIELDS))


def check_payload(values: np.ndarray, dim: int) -> str | None:
    """Why a received payload cannot be used, or None if it can.

    Args:
        values: Received payload, expected shape (dim,).
        dim: Expected length.
    """
    if values.shape != (dim,):
        return f'expected {dim} values, got shape {values.shape}'
    if not np.isfinite(values).all():
        return f'non-finite values {values.tolist()}'
    return None


class Source(enum.Enum):
    """Where the action applied at a step came from."""

    COMMAND = 'command'  # the command of this step
    HELD = 'held'  # realtime: a fresh command of an earlier step (zero-order hold)
    BASE = 'base'  # fallback: the base action (no usable command)
    ZERO = 'zero'  # fallback: the safe zero action (nothing usable)


class Handshake(enum.Enum):
    """State of the lockstep start-up handshake (see the module docstring)."""

    OFF = 'off'  # realtime, or no command publisher at the start
    WAITING = 'waiting'  # observation (0, 0) is re-sent until its command arrives
    DONE = 'done'  # command (0, 0) arrived: every link of the command path works
    TIMED_OUT = 'timed_out'  # none within startup_timeout_s: the normal fallback rules
    ABANDONED = 'abandoned'  # the command publisher went away: the base-only rule


class Due(enum.Enum):
    """What the lockstep loop has to do now (see :meth:`SimBridge.poll`)."""

    WAIT = 'wait'  # nothing until the next message or :meth:`SimBridge.deadline`
    RESEND = 'resend'  # handshake: publish the current observation again
    STEP = 'step'  # call :meth:`SimBridge.advance`


class Rejection(NamedTuple):
    """A message that was not accepted.

    Attributes:
        kind: 'malformed' (undecodable, wrong length, non-finite), 'stale' (another
            episode, or a step outside the accepted window) or 'late' (lockstep: a base
            action or command for a step the bridge already took: normal, as command k
            usually arrives before base action k and a re-sent observation is answered
            again; counted, not logged) or 'terminal' (an answer to a terminal observation,
            which expects none; counted, not logged).
        reason: One sentence for the log.
    """

    kind: str
    reason: str


@dataclasses.dataclass
class Counters:
    """Running totals over the whole run (reported on /diagnostics)."""

    steps: int = 0
    episodes: int = 0
    commands: int = 0
    held: int = 0
    fallback_base: int = 0
    fallback_zero: int = 0
    rejected_malformed: int = 0
    rejected_stale: int = 0
    late_base: int = 0
    handshake_resends: int = 0
    response_timeouts: int = 0  # lockstep: a node on the graph missed response_timeout_s
    resends: int = 0  # lockstep, after the handshake: observations re-sent while waiting
    late_commands: int = 0  # commands for a step already taken (e.g. answers to a re-send)
    terminal_answers: int = 0  # commands or base actions for a terminal observation (unused)


class StepOutcome(NamedTuple):
    """What one simulator step produced.

    Attributes:
        source: Where the applied action came from.
        result: The finished episode's result, or None while the episode runs.
        finished: True when the configured number of episodes is done (no new observation).
        terminal: With a result: the payload of the terminal observation o_T, the
            observation the episode ended in ((len(layout.fields),) float64, a copy), to be
            published with step ``result.steps`` before the result; else None.
    """

    source: Source
    result: EpisodeResult | None
    finished: bool
    terminal: np.ndarray | None = None


class _Slot:
    """The newest accepted action of one topic: (episode, step, values, arrival time)."""

    __slots__ = ('episode', 'step', 'values', 'arrived')

    def __init__(self, action_dim: int) -> None:
        self.episode = -1
        self.step = -1
        self.values = np.zeros(action_dim)
        self.arrived = 0.0

    def clear(self) -> None:
        self.episode = -1
        self.step = -1

    def store(self, episode: int, step: int, values: np.ndarray, now: float) -> None:
        self.episode, self.step, self.arrived = episode, step, now
        self.values[:] = values


def startup_decision(
    subscribers: int, command_publishers: int, elapsed_s: float, config: SimBridgeConfig
) -> str | None:
    """Whether the bridge may publish its first observation yet (both clock modes).

    Args:
        subscribers: Matched subscribers of the observation topic.
        command_publishers: Matched publishers of the command topic.
        elapsed_s: Time since the node started waiting, s.
        config: Bridge parameters.

    Returns:
        None to keep waiting, 'ready' when the graph is complete, or 'timeout' when the
        wait is over without it (start anyway and say so).
    """
    if subscribers >= config.min_subscribers and command_publishers > 0:
        return 'ready'
    if elapsed_s >= config.startup_timeout_s:
        return 'timeout'
    return None


class SimBridge:
    """Runs episodes of a goal task, fed by commands, base actions and a clock.

    Call :meth:`begin` once, publish :meth:`observation`, then feed messages with
    :meth:`offer_command` / :meth:`offer_base` and call :meth:`advance` when
    :meth:`ready` (lockstep), when :meth:`poll` at :meth:`deadline` says so (lockstep; it
    may also ask to publish the observation again) or every tick (realtime). After each
    :meth:`advance` publish the result (if any) and, unless finished, the new
    :meth:`observation`.

    Attributes:
        command_source_present: Whether a command publisher is on the graph (set by the
            node from the ROS graph); without one the base action is applied at once.
        base_source_present: Whether a base action publisher is on the graph (set by the
            node); without one the zero action comes after ``step_timeout_s``.
        handshake: State of the start-up handshake.
        silenced: Lockstep: the paths ('command', 'base') the last :meth:`advance` found
            silent after ``response_timeout_s`` (empty when none), for the node's log.
        pacer: Lockstep: when the next observation may be published
            (``lockstep_max_rate_hz``; no limit in realtime mode). The node tells it of every
            publication and, after :meth:`advance`, waits :meth:`LockstepPacer.wait_s`.
    """

    def __init__(self, task: GoalTaskLike, spec: TaskSpecLike, config: SimBridgeConfig) -> None:
        """Wrap a task.

        Args:
            task: A fresh task instance (reset by :meth:`begin`).
            spec: Its spec (dimensions, episode length, action bounds).
            config: Bridge parameters.
        """
        self.task, self.spec, self.config = task, spec, config
        self.layout = observation_layout(spec)
        self.counters = Counters()
        self.command_source_present = True
        self.base_source_present = True
        self.handshake = Handshake.OFF
        self.silenced: tuple[str, ...] = ()
        self._command_silent = False  # lockstep: the residual node missed a response
        self._base_silent = False  # lockstep: the controller missed a response
        self._lockstep = config.mode == LOCKSTEP
        self.pacer = LockstepPacer(config.lockstep_max_rate_hz if self._lockstep else 0.0)
        self._handshake_until = 0.0  # the handshake gives up at this time, s
        self._resend_at = 0.0  # the next re-send of observation (0, 0) is due then, s
        self._command = _Slot(spec.action_dim)
        self._base = _Slot(spec.action_dim)
        self._zero = np.zeros(spec.action_dim)
        self._action = np.zeros(spec.action_dim)
        self._obs = np.zeros(len(self.layout.fields))
        self._episode = 0
        self._step = 0
        self._published_at = 0.0
        self._next_resend = 0.0  # lockstep: the next re-send of a waiting observation, s
        self._finished = False
        self._terminal_key = (-1, -1)  # (episode, step) of the latest terminal observation
        self._return = 0.0
        self._ep_fallback_base = 0
        self._ep_fallback_zero = 0

    # --- state -------------------------------------------------------------------------
    @property
    def episode(self) -> int:
        """Id of the running episode (0-based)."""
        return self._episode

    @property
    def step(self) -> int:
        """Step index of the latest observation (the step whose action is awaited)."""
        return self._step

    @property
    def finished(self) -> bool:
        """True once ``config.episodes`` episodes have run (never when episodes == 0)."""
        return self._finished

    @property
    def action_fields(self) -> tuple[str, ...]:
        """Payload names of ``command`` and ``base_action``: the task's declared action."""
        return tuple(self.spec.action_fields)

    def decode_action(self, msg: Any) -> StampedVector:
        """Read a ``command`` or ``base_action`` message under the task's action names.

        Raises:
            MessageError: The message breaks the topic contract, e.g. other payload names.
        """
        return decode(msg, self.action_fields)

    def observation(self) -> np.ndarray:
        """Payload of the latest observation, (len(layout.fields),) float64, a copy."""
        return self._obs.copy()

    def episode_seed(self, episode: int) -> int:
        """Reset seed of episode ``episode``: ``config.seed + episode``."""
        return self.config.seed + episode

    @property
    def handshaking(self) -> bool:
        """Lockstep: the first step waits for its command, re-sending the observation."""
        return self.handshake is Handshake.WAITING and self.command_source_present

    def begin(self, now: float, command_publishers: int | None = None) -> None:
        """Reset the first episode; its observation (step 0) is published at ``now``.

        Args:
            now: Current time, s.
            command_publishers: Command publishers on the graph now; in lockstep, one or
                more starts the handshake (until ``now + startup_timeout_s``). None = not
                known: no handshake, :attr:`command_source_present` left as it is.
        """
        self._reset_episode(0, now)
        if command_publishers is not None:
            self.command_source_present = command_publishers > 0
        if self._lockstep and command_publishers:
            self.handshake = Handshake.WAITING
            self._handshake_until = now + self.config.startup_timeout_s
            self._resend_at = now + self.config.handshake_period_s

    # --- inputs ------------------------------------------------------------------------
    def offer_command(
        self, episode: int, step: int, values: np.ndarray, now: float
    ) -> Rejection | None:
        """Offer a command from the ``command`` topic.

        Returns:
            None if accepted, else a :class:`Rejection` (already counted).
        """
        return self._offer(self._command, 'command', episode, step, values, now)

    def offer_base(
        self, episode: int, step: int, values: np.ndarray, now: float
    ) -> Rejection | None:
        """Offer a base action from the ``base_action`` topic (same rules as commands).

        Returns:
            None if accepted, else a :class:`Rejection` (already counted).
        """
        return self._offer(self._base, 'base action', episode, step, values, now)

    def reject_malformed(self, what: str, reason: str) -> Rejection:
        """Count a message that could not even be decoded; returns the rejection."""
        self.counters.rejected_malformed += 1
        return Rejection('malformed', f'{what}: {reason}')

    def _offer(
        self, slot: _Slot, what: str, episode: int, step: int, values: np.ndarray, now: float
    ) -> Rejection | None:
        problem = check_payload(values, self.spec.action_dim)
        if problem is not None:
            return self.reject_malformed(f'{what} (episode {episode}, step {step})', problem)
        if (episode, step) == self._terminal_key:
            self.counters.terminal_answers += 1
            return Rejection(
                'terminal',
                f'{what} for the terminal observation (episode {episode}, step {step}): '
                'none is expected',
            )
        if self._lockstep:
            lo = self._step
        else:
            lo = self._step - self.config.max_command_age_steps
        if self._lockstep and self._already_taken(episode, step):
            if slot is self._base:
                self.counters.late_base += 1
            else:
                self.counters.late_commands += 1
            return Rejection('late', f'{what} for (episode {episode}, step {step}) came late')
        if self._finished or episode != self._episode or not lo <= step <= self._step:
            self.counters.rejected_stale += 1
            return Rejection(
                'stale',
                f'{what} for (episode {episode}, step {step}) does not match the bridge at '
                f'(episode {self._episode}, step {self._step})',
            )
        if slot.episode == episode and step < slot.step:
            self.counters.rejected_stale += 1  # realtime: an older one than already held
            return Rejection('stale', f'{what} for step {step} is older than step {slot.step}')
        slot.store(episode, step, values, now)
        if step == self._step:  # the node answers again
            if slot is self._command:
                self._command_silent = False
            else:
                self._base_silent = False
        return None

    def _already_taken(self, episode: int, step: int) -> bool:
        """(episode, step) is a step this bridge has already simulated."""
        return episode < self._episode or (episode == self._episode and step < self._step)

    # --- lockstep timing ---------------------------------------------------------------
    def observation_sent(self, now: float) -> None:
        """Lockstep: the current observation's publish call returned at ``now``; the
        response time limits run from here (a publish can block, e.g. behind a stopped
        reader process, and no node can answer an observation before it is sent).
        Not for a re-send: the limits run from the first publication."""
        self._published_at = now
        self._next_resend = now + self.config.resend_period_s

    @property
    def command_silent(self) -> bool:
        """Lockstep: the residual node missed a response and has not answered since."""
        return self._command_silent

    @property
    def base_silent(self) -> bool:
        """Lockstep: the controller missed a response and has not answered since."""
        return self._base_silent

    def _awaiting_command(self) -> bool:
        return self.command_source_present and not self._command_silent

    def _awaiting_base(self) -> bool:
        return self.base_source_present and not self._base_silent

    def ready(self) -> bool:
        """Lockstep: the step can be taken now (command here, or base here and no command
        source on the graph)."""
        if self._finished:
            return False
        if self._is_current(self._command):
            return True
        return not self.command_source_present and self._is_current(self._base)

    def deadline(self) -> float:
        """Lockstep: the time at which the step is taken with a fallback action (during the
        handshake: the next re-send, or giving up), s."""
        if self.handshaking:
            return min(self._resend_at, self._handshake_until)
        cfg = self.config
        if self._awaiting_response():
            return min(self._published_at + cfg.response_timeout_s, self._next_resend)
        if self._is_current(self._base):
            return self._base.arrived + cfg.command_timeout_s
        return self._published_at + cfg.step_timeout_s

    def _awaiting_response(self) -> bool:
        """A live node is awaited: the command, or (no base action yet) the base action."""
        return self._awaiting_command() or (
            self._awaiting_base() and not self._is_current(self._base)
        )

    def poll(self, now: float) -> Due:
        """Lockstep: what to do at ``now`` (call it at :meth:`deadline`).

        During the handshake this says when to publish the observation again (counted in
        ``counters.handshake_resends``) and ends the handshake at ``startup_timeout_s``
        (:attr:`handshake` becomes TIMED_OUT; the normal fallback rules apply from then on,
        measured from the observation's first publication and the base action's arrival).
        After it, while a live node is awaited, it says RESEND every ``resend_period_s``
        (counted in ``counters.resends``).

        Returns:
            STEP when the step is to be taken now, RESEND when the observation is to be
            published again, else WAIT.
        """
        if self._finished:
            return Due.WAIT
        if self.ready():
            return Due.STEP
        if self.handshaking:
            if now < self._handshake_until:
                if now < self._resend_at:
                    return Due.WAIT
                self._resend_at = now + self.config.handshake_period_s
                self.counters.handshake_resends += 1
                return Due.RESEND
            self.handshake = Handshake.TIMED_OUT
            # The command path never answered; the base path did if its action is here.
            self._command_silent = True
            self._base_silent = not self._is_current(self._base)
        if self._lockstep and self._awaiting_response():
            if now >= self._published_at + self.config.response_timeout_s:
                return Due.STEP
            if now >= self._next_resend:
                self._next_resend = now + self.config.resend_period_s
                self.counters.resends += 1
                return Due.RESEND
            return Due.WAIT
        return Due.STEP if now >= self.deadline() else Due.WAIT

    def _is_current(self, slot: _Slot) -> bool:
        return slot.episode == self._episode and slot.step == self._step

    # --- stepping ----------------------------------------------------------------------
    def choose(self) -> tuple[np.ndarray, Source]:
        """The action the next :meth:`advance` applies and where it comes from.

        Returns:
            Action (action_dim,) (an internal buffer: copy it to keep it) and its source.
        """
        command = self._command
        if command.episode == self._episode and self._fresh(command):
            return command.values, Source.COMMAND if command.step == self._step else Source.HELD
        if self._base.episode == self._episode and self._fresh(self._base):
            return self._base.values, Source.BASE
        return self._zero, Source.ZERO

    def _fresh(self, slot: _Slot) -> bool:
        if self._lockstep:
            return slot.step == self._step
        return self._step - self.config.max_command_age_steps <= slot.step <= self._step

    def advance(self, now: float) -> StepOutcome:
        """Apply the chosen action, step the task, book the step; start the next episode.

        Args:
            now: Current time, s; the next observation counts as published at ``now``.

        Returns:
            The action's source, the episode result and terminal observation if the episode
            ended, and whether the run is finished.

        Raises:
            RuntimeError: Called after the run finished.
        """
        if self._finished:
            raise RuntimeError('advance() called after the last episode finished')
        action, source = self.choose()
        if self.handshake is Handshake.WAITING:
            done = source is Source.COMMAND
            self.handshake = Handshake.DONE if done else Handshake.ABANDONED
        self.silenced = ()
        if self._lockstep and source is not Source.COMMAND:
            self._silence(source)
        np.clip(action, self.spec.action_low, self.spec.action_high, out=self._action)
        obs, reward, terminated, truncated, info = self.task.step(self._action)
        counters = self.counters
        counters.steps += 1
        if source is Source.COMMAND:
            counters.commands += 1
        elif source is Source.HELD:
            counters.held += 1
        elif source is Source.BASE:
            counters.fallback_base += 1
            self._ep_fallback_base += 1
        else:
            counters.fallback_zero += 1
            self._ep_fallback_zero += 1
        self._return += float(reward)
        self._step += 1
        if not (terminated or truncated or self._step >= self.spec.max_episode_steps):
            self._fill_observation(obs)
            self.observation_sent(now)
            return StepOutcome(source, None, False)
        self._fill_observation(obs)
        terminal = self._obs.copy()
        self._terminal_key = (self._episode, self._step)
        result = EpisodeResult(
            episode=self._episode,
            success=bool(info['is_success']),
            final_distance=float(info['distance']),
            episode_return=self._return,
            steps=self._step,
            fallback_base=self._ep_fallback_base,
            fallback_zero=self._ep_fallback_zero,
        )
        counters.episodes += 1
        if self.config.episodes and counters.episodes >= self.config.episodes:
            self._finished = True
        else:
            self._reset_episode(self._episode + 1, now)
        return StepOutcome(source, result, self._finished, terminal)

    def _silence(self, source: Source) -> None:
        """Lockstep fallback: a node that was awaited (on the graph, answering) missed its
        response; it counts as silent until it answers a current step again."""
        silenced = []
        if self._awaiting_command():
            self._command_silent = True
            silenced.append('command')
        if source is Source.ZERO and self._awaiting_base():
            self._base_silent = True
            silenced.append('base')
        if silenced:
            self.counters.response_timeouts += 1
            self.silenced = tuple(silenced)

    def _reset_episode(self, episode: int, now: float) -> None:
        obs, _ = self.task.reset(seed=self.episode_seed(episode))
        self._episode, self._step = episode, 0
        self._return = 0.0
        self._ep_fallback_base = self._ep_fallback_zero = 0
        self._command.clear()
        self._base.clear()
        self._fill_observation(obs)
        self.observation_sent(now)

    def _fill_observation(self, obs: dict[str, np.ndarray]) -> None:
        layout = self.layout
        self._obs[layout.observation] = obs['observation']
        self._obs[layout.achieved_goal] = obs['achieved_goal']
        self._obs[layout.desired_goal] = obs['desired_goal']
