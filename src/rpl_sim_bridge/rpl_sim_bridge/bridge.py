"""Pure core of the sim bridge: when to step, with which action, and the fallbacks.

The node (:mod:`rpl_sim_bridge.sim_bridge_node`) only converts messages and wires topics
and timers; every decision is made here, without ROS, with time injected as an argument
(seconds on any monotonic clock), so it is unit-tested with a fake clock.
:class:`SimBridge` is the stepping state machine (handshake, response waits, silence,
re-sends) and composes :class:`rpl_sim_bridge.action_intake.ActionIntake` (which received
actions are accepted, and which one a step applies) and
:class:`rpl_sim_bridge.episode_book.EpisodeBook` (the task, seeds, books, results and the
terminal observation); its parameters are
:class:`rpl_sim_bridge.bridge_config.SimBridgeConfig`.

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
with non-finite values are rejected and counted; they never reach the simulator (see
:mod:`rpl_sim_bridge.action_intake`). Episode ``i`` (0-based) is reset with seed
``seed + i``, the same rule as the in-process evaluator.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from rpl_interfaces.codec import StampedVector, decode
from rpl_interfaces.contract import COMMAND_FROM_RESIDUAL, EpisodeResult
from rpl_sim_bridge.action_intake import (
    ActionIntake,
    ActionSlot,
    Rejection,
    Source,
    check_payload,
)
from rpl_sim_bridge.bridge_config import LOCKSTEP, REALTIME, SimBridgeConfig, startup_decision
from rpl_sim_bridge.episode_book import (
    Counters,
    EpisodeBook,
    GoalTaskLike,
    TaskSpecLike,
    observation_layout,
)
from rpl_sim_bridge.pacing import LockstepPacer

if TYPE_CHECKING:
    from rpl_sim_bridge.tasks.joints import JointSample

# Names other packages import from here (their homes are the modules above).
__all__ = [
    'LOCKSTEP',
    'REALTIME',
    'Counters',
    'Due',
    'GoalTaskLike',
    'Handshake',
    'Rejection',
    'SimBridge',
    'SimBridgeConfig',
    'Source',
    'StepOutcome',
    'TaskSpecLike',
    'check_payload',
    'observation_layout',
    'startup_decision',
]


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


class StepOutcome(NamedTuple):
    """What one simulator step produced.

    Attributes:
        source: Where the applied action came from.
        result: The finished episode's result, or None while the episode runs.
        finished: True when the configured number of episodes is done (no new observation).
        terminal: With a result: the payload of the terminal observation o_T, the
            observation the episode ended in ((len(layout.fields),) float64, a copy), to be
            published with step ``result.steps`` before the result; else None.
        terminal_joints: With a result and joint states on: the joints in o_T's state
            (published with it); else None.
    """

    source: Source
    result: EpisodeResult | None
    finished: bool
    terminal: np.ndarray | None = None
    terminal_joints: JointSample | None = None


class SimBridge:
    """Runs episodes of a goal task, fed by commands, base actions and a clock.

    Call :meth:`begin` once, publish :meth:`observation`, then feed messages with
    :meth:`offer_command` / :meth:`offer_base` and call :meth:`advance` when
    :meth:`ready` (lockstep), when :meth:`poll` at :meth:`deadline` says so (lockstep; it
    may also ask to publish the observation again) or every tick (realtime). After each
    :meth:`advance` publish the terminal observation and the result (if the episode ended)
    and, unless finished, the new :meth:`observation`.

    Attributes:
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
        self.counters = Counters()
        self._lockstep = config.mode == LOCKSTEP
        self._book = EpisodeBook(
            task,
            spec,
            config.seed,
            config.episodes,
            self.counters,
            joint_states=config.publish_joint_states,
        )
        self.layout = self._book.layout
        self._intake = ActionIntake(
            spec.action_dim,
            self._book,
            self.counters,
            self._lockstep,
            config.max_command_age_steps,
        )
        self._command_source_present = True
        self._command_source_seen = False  # a command publisher was on the graph at some point
        self._model_commands = 0  # applied commands tagged as the residual model's
        self._command_from_model = False  # the command in the slot is tagged so
        self.base_source_present = True
        self.handshake = Handshake.OFF
        self.silenced: tuple[str, ...] = ()
        self._command_silent = False  # lockstep: the residual node missed a response
        self._base_silent = False  # lockstep: the controller missed a response
        self.pacer = LockstepPacer(config.lockstep_max_rate_hz if self._lockstep else 0.0)
        self._handshake_until = 0.0  # the handshake gives up at this time, s
        self._resend_at = 0.0  # the next re-send of observation (0, 0) is due then, s
        self._published_at = 0.0
        self._next_resend = 0.0  # lockstep: the next re-send of a waiting observation, s

    # --- state -------------------------------------------------------------------------
    @property
    def episode(self) -> int:
        """Id of the running episode (0-based)."""
        return self._book.episode

    @property
    def step(self) -> int:
        """Step index of the latest observation (the step whose action is awaited)."""
        return self._book.step

    @property
    def finished(self) -> bool:
        """True once ``config.episodes`` episodes have run (never when episodes == 0)."""
        return self._book.finished

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
        return self._book.observation()

    def joint_state(self) -> JointSample | None:
        """The joints in the latest observation's state (read once when the state was
        reached), or None (``config.publish_joint_states`` off, or a task without
        ``joint_state()``)."""
        return self._book.joints

    def episode_seed(self, episode: int) -> int:
        """Reset seed of episode ``episode``: ``config.seed + episode``."""
        return self._book.episode_seed(episode)

    @property
    def command_source_present(self) -> bool:
        """Whether a command publisher is on the graph (set by the node from the ROS graph);
        without one the base action is applied at once."""
        return self._command_source_present

    @command_source_present.setter
    def command_source_present(self, present: bool) -> None:
        self._command_source_present = present
        self._command_source_seen |= present

    def command_path_problem(self) -> str | None:
        """Why a finished run did not run the command path it had, or None.

        A run during which a command publisher (the residual node) was on the graph but in
        which not one step applied a command ran the base controller alone: every step fell
        back (the command path never answered, e.g. a link that never matched). The run
        was asked to measure the command, so this is a failure, not a result; the node
        says so and exits non-zero. A stack without any command publisher (the base
        controller alone, on purpose) is not a problem, and neither is a run with some
        fallbacks among applied commands (counted in the results and diagnostics); a run in
        which most steps fell back (more than half: a controller failing from some state
        on, a command path that answered only now and then) is one, as its episodes
        measured mostly the fallback. A realtime command applied a tick late (held) counts
        as applied. Whether a publisher
        was there is what the node told the core (:meth:`begin` with a count, the
        :attr:`command_source_present` setter); ``begin(now)`` without a count says nothing,
        so such a run has this problem only when every step fell back to the zero action
        (nothing answered at all: a sim bridge no node heard).

        Returns:
            One sentence, or None.
        """
        c = self.counters
        if not self._book.finished:
            return None
        if not self._command_source_seen:
            if c.steps and c.fallback_zero == c.steps:  # nothing answered at all
                return (
                    f'every one of the {c.steps} steps fell back to the zero action: no base '
                    'action and no command came, and no command publisher was on the graph; '
                    'no node of the stack heard this bridge (another namespace or remap, or '
                    'none started), so these episodes measured the zero action, not a '
                    'controller'
                )
            return None
        if c.commands or c.held:
            return self._mostly_fallbacks()
        if c.fallback_zero > c.fallback_base:  # mostly no base action either
            why = (
                f'no valid base action came for {c.fallback_zero} of them either, and the '
                'residual node answers a step only with its base action: the base controller '
                f'is the first suspect ({self._suspect_hint()}); these episodes measured the '
                'zero action, not the residual'
            )
        else:
            why = (
                'the command path never answered in time, so these episodes measured the '
                'base controller, not the residual'
            )
        return (
            f'not one of the {c.steps} steps applied a command although a command publisher '
            f'(the residual node) was on the graph ({self._fallback_counts()}): {why}'
        )

    def _suspect_hint(self) -> str:
        """Where to look for why the base actions did not come: in realtime, answers that
        mostly came for steps already past mean a node slower than the tick (a planning
        controller: discrete_mpc_push ~70 ms a step on a small CPU against 40 ms at
        25 Hz); its log then says nothing."""
        c = self.counters
        if not self._lockstep and c.steps and 2 * c.behind_base >= c.fallback_zero > 0:
            period_ms = 1000.0 / self.config.rate_hz
            return (
                f'{c.behind_base} base actions came for steps already past: the controller '
                f'answers slower than the realtime tick of {period_ms:g} ms and falls behind, '
                'as a planning controller does on a small CPU; run it with mode:=lockstep, '
                'which waits for it'
            )
        return 'its log says why'

    def _fallback_counts(self) -> str:
        """The fallbacks and rejected commands of the run, for a problem's line."""
        c = self.counters
        return (
            f'fallbacks base {c.fallback_base} zero {c.fallback_zero}; commands rejected '
            f'malformed {c.rejected_malformed}, stale {c.rejected_stale}, late {c.late_commands}'
        )

    def _mostly_fallbacks(self) -> str | None:
        """The problem of a run that applied commands but fell back at most steps."""
        c = self.counters
        fallbacks = c.fallback_base + c.fallback_zero
        if 2 * fallbacks <= c.steps:
            return None
        if c.fallback_zero > c.fallback_base:
            what = (
                'the zero action (no valid base action came either: the base controller is '
                f'the first suspect, {self._suspect_hint()})'
            )
        else:
            what = 'the base action (the command path did not answer in time)'
        return (
            f'{fallbacks} of the {c.steps} steps fell back, most of them to {what}; only '
            f'{c.commands + c.held} applied a command ({self._fallback_counts()}): these '
            'episodes measured mostly the fallback, not the stack'
        )

    def model_problem(self) -> str | None:
        """Why a finished run that expected a model (``expect_model``) measured no model,
        or None.

        The launch files set ``expect_model`` when they give the residual node a model. A
        finished run in which not one accepted command came from that model (every command
        was the base action passed through: the model did not load, or was refused) measured
        the base controller, not the residual; the node says so and exits non-zero. So is
        one in which most applied commands (more than half) were the base action passed
        through (a model that loaded late, or that is non-finite on many states).

        Returns:
            One sentence, or None.
        """
        c = self.counters
        if not (self.config.expect_model and self._book.finished and c.episodes):
            return None
        if self._model_commands:
            applied = c.commands + c.held
            if 2 * self._model_commands >= applied:
                return None
            return (
                f'only {self._model_commands} of the {applied} applied commands came from '
                'the residual model (expect_model): at the others the residual node passed '
                'the base action through (its log says why, e.g. residual_non_finite, '
                'input_late or model_load_failed), so these episodes measured mostly the base '
                'controller'
            )
        return (
            f'not one of the {c.steps} steps got a command from the residual model '
            '(expect_model: the launch gave the residual node a model_path): the residual '
            'node passed the base action through, so these episodes measured the base '
            'controller; its log says why (e.g. model_load_failed)'
        )

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
        self._start_episode(0, now)
        if command_publishers is not None:
            self.command_source_present = command_publishers > 0
        if self._lockstep and command_publishers:
            self.handshake = Handshake.WAITING
            self._handshake_until = now + self.config.startup_timeout_s
            self._resend_at = now + self.config.handshake_period_s

    # --- inputs ------------------------------------------------------------------------
    @property
    def model_commands(self) -> int:
        """Applied commands tagged as the residual model's (not the base passed through)."""
        return self._model_commands

    def offer_command(
        self, episode: int, step: int, values: np.ndarray, now: float, source: str = ''
    ) -> Rejection | None:
        """Offer a command from the ``command`` topic.

        Args:
            source: The command's tag (``header.frame_id``): an accepted command tagged
                :data:`~rpl_interfaces.contract.COMMAND_FROM_RESIDUAL` counts as one from
                the residual model (:meth:`model_problem`).

        Returns:
            None if accepted, else a :class:`Rejection` (already counted).
        """
        rejection = self._offer(self._intake.command, 'command', episode, step, values, now)
        if rejection is None:  # the slot holds it now: counted when a step applies it
            self._command_from_model = source == COMMAND_FROM_RESIDUAL
        return rejection

    def offer_base(
        self, episode: int, step: int, values: np.ndarray, now: float
    ) -> Rejection | None:
        """Offer a base action from the ``base_action`` topic (same rules as commands).

        Returns:
            None if accepted, else a :class:`Rejection` (already counted).
        """
        return self._offer(self._intake.base, 'base action', episode, step, values, now)

    def reject_malformed(self, what: str, reason: str) -> Rejection:
        """Count a message that could not even be decoded; returns the rejection."""
        return self._intake.reject_malformed(what, reason)

    def _offer(
        self, slot: ActionSlot, what: str, episode: int, step: int, values: np.ndarray, now: float
    ) -> Rejection | None:
        rejection = self._intake.offer(slot, what, episode, step, values, now)
        if rejection is None and step == self._book.step:  # the node answers again
            if slot is self._intake.command:
                self._command_silent = False
            else:
                self._base_silent = False
        return rejection

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
        if self._book.finished:
            return False
        intake = self._intake
        if intake.is_current(intake.command):
            return True
        return not self.command_source_present and intake.is_current(intake.base)

    def deadline(self) -> float:
        """Lockstep: the time at which the step is taken with a fallback action (during the
        handshake: the next re-send, or giving up), s."""
        if self.handshaking:
            return min(self._resend_at, self._handshake_until)
        cfg = self.config
        if self._awaiting_response():
            return min(self._published_at + cfg.response_timeout_s, self._next_resend)
        base = self._intake.base
        if self._intake.is_current(base):
            return base.arrived + cfg.command_timeout_s
        return self._published_at + cfg.step_timeout_s

    def _awaiting_response(self) -> bool:
        """A live node is awaited: the command, or (no base action yet) the base action."""
        return self._awaiting_command() or (
            self._awaiting_base() and not self._intake.is_current(self._intake.base)
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
        if self._book.finished:
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
            self._base_silent = not self._intake.is_current(self._intake.base)
        if self._lockstep and self._awaiting_response():
            if now >= self._published_at + self.config.response_timeout_s:
                return Due.STEP
            if now >= self._next_resend:
                self._next_resend = now + self.config.resend_period_s
                self.counters.resends += 1
                return Due.RESEND
            return Due.WAIT
        return Due.STEP if now >= self.deadline() else Due.WAIT

    # --- stepping ----------------------------------------------------------------------
    def choose(self) -> tuple[np.ndarray, Source]:
        """The action the next :meth:`advance` applies and where it comes from.

        Returns:
            Action (action_dim,) (an internal buffer: copy it to keep it) and its source.
        """
        return self._intake.choose()

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
        book = self._book
        if book.finished:
            raise RuntimeError('advance() called after the last episode finished')
        action, source = self._intake.choose()
        if self.handshake is Handshake.WAITING:
            done = source is Source.COMMAND
            self.handshake = Handshake.DONE if done else Handshake.ABANDONED
        self.silenced = ()
        if self._lockstep and source is not Source.COMMAND:
            self._silence(source)
        if source in (Source.COMMAND, Source.HELD) and self._command_from_model:
            self._model_commands += 1  # applied, as counters.commands + held count
        end = book.apply(action, source)
        if end is None:
            self.observation_sent(now)
            return StepOutcome(source, None, False)
        if not book.finished:
            self._start_episode(book.episode + 1, now)
        return StepOutcome(source, end.result, book.finished, end.terminal, end.terminal_joints)

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

    def _start_episode(self, episode: int, now: float) -> None:
        self._book.reset(episode)
        self._intake.clear()
        self.observation_sent(now)
