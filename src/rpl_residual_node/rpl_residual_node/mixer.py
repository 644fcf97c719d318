"""The residual node's state machine: message intake, composing pairing, decision and model.

Pure Python + numpy + onnxruntime (no rclpy), so every rule is unit-tested without ROS.
:class:`ResidualMixer` validates each incoming message, hands valid halves to
:class:`rpl_residual_node.step_pairing.StepPairing` (pairing by ``(episode, step)``,
expiry, duplicates, re-sent observations), decides each pair with
:class:`rpl_residual_node.decision.DecisionRule` (inference, clamp, exploration, fallback
reasons) on the model of :class:`rpl_residual_node.model_slot.ModelSlot` (load, hot
reload, identity check against the live stream), counts every reason in one Counter and
reports /diagnostics.

Action layout. Nothing here knows the action's size or names: a base action is a vector of
any non-empty size, and its field names (``add_base_action(..., fields)``) travel on to the
step's Decision, so the command and residual carry the base action's names. The size a base
action must have is the configured one, else, while a running model fits the stream and has
its size, that size (a base action of another size is then rejected: it neither becomes a
command nor resizes the stream), else any (no model, or one that does not fit: the base
action passes through whatever its size); a model's size is its graph's output (checked
against its metadata's ``action_fields``). A base action whose field names differ from the model's
``action_fields`` is a model mismatch (base fallback, one note); one of another size than a
model that names no fields gives a base fallback too (``base_action_wrong_size``).

Invalid messages are rejected. A base action that is not finite or not of the action size,
and an observation or goal that is not finite, are counted (``rejected_...``), reported
through ``on_reject`` and otherwise ignored: they mark no step as seen, drop no pending
step and clear nothing, so the valid message of the same step still wins (a forged NaN base
action cannot take a step from the real one, and forged non-finite observations with other
step ids cannot clear the pending steps). No command is ever made from an invalid base
action: the step waits for a valid one, and without one nothing is published for it (the
sim bridge then applies the real base action it received). A well-formed, finite forged
message cannot be told from a real one here (that takes authenticated topics, SROS2).

The terminal observation o_T (after an episode's last step; the node tells it by its tag,
:func:`rpl_interfaces.contract.is_terminal`) goes to
:meth:`ResidualMixer.add_terminal_observation`: it is not a step, so it gets no Decision and
no command, and it is neither a rejection nor a fallback (counted as
``terminal_observation``).
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from rpl_interfaces.codec import finite_as_float32
from rpl_residual_node.decision import (
    DECISION_REASONS,
    MODEL_LOAD_FAILED,
    NO_MODEL,
    OK,
    Decision,
    DecisionRule,
    LatencyWindow,
)
from rpl_residual_node.mixing import GainRamp, ResidualConfig
from rpl_residual_node.model_identity import StackIdentity
from rpl_residual_node.model_reload import RECENT_INPUTS
from rpl_residual_node.model_slot import ModelSlot, ReloadEvent
from rpl_residual_node.onnx_actor import OnnxActor
from rpl_residual_node.step_pairing import Pair, StepPairing

# Invalid messages, rejected without any effect on the state (see the module docstring).
REJECTED_OBSERVATION_NON_FINITE = 'rejected_observation_non_finite'
REJECTED_BASE_NON_FINITE = 'rejected_base_action_non_finite'
REJECTED_BASE_WRONG_SIZE = 'rejected_base_action_wrong_size'
# A base action outside [action_low, action_high]: used, and clipped with the command; a sign
# that the bounds are not the robot's (counted per base action message, repeats included, and
# reported like a rejection, throttled).
BASE_OUTSIDE_BOUNDS = 'base_action_outside_bounds'


class ResidualMixer:
    """Pairs observations with base actions and decides each step's command.

    Args:
        config: Mixing parameters and the model path.
        action_dim: Required action size; None (the default) learns it from the stream's
            base action field names and the model (see the module docstring).
        obs_dim: Expected observation size for model validation; None takes the model's.
        goal_dim: Expected desired-goal size; None takes the model's.
        clock: Monotonic time source in seconds (injectable for tests).
        max_pending: Most steps kept waiting for their partner.
        on_reject: Called with ``(reason, one line)`` for every rejected invalid message,
            and for a base action outside ``[action_low, action_high]`` (used, clipped:
            :data:`BASE_OUTSIDE_BOUNDS`); the node logs it, throttled; counted either way.
        recent_inputs: How many recently decided inputs a new model is validated on.
        on_model_note: Called with ``(level, one line)`` ('error' or 'warning') when the
            running model is found not to fit the stream (or fits only because
            ``allow_model_mismatch`` is set); once per model and stream facts.

    The model named by ``config.model_path`` is loaded at construction (synchronously: the
    node is not in the loop yet); see :attr:`last_reload` for the outcome.
    """

    def __init__(
        self,
        config: ResidualConfig,
        action_dim: int | None = None,
        obs_dim: int | None = None,
        goal_dim: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_pending: int = 32,
        on_reject: Callable[[str, str], None] | None = None,
        recent_inputs: int = RECENT_INPUTS,
        on_model_note: Callable[[str, str], None] | None = None,
    ) -> None:
        self.config = config
        self.action_dim = action_dim
        self._on_reject = on_reject
        self.counts: collections.Counter[str] = collections.Counter()
        self.last_reason: str | None = None
        self._pairing = StepPairing(self.counts, clock, config.sync_timeout_s, max_pending)
        self._rule = DecisionRule(config)
        # With a ramp, the residual comes in from 0 over it from the model's first decided
        # step (a start, a respawn or a model that loads late never jumps to the launch
        # gain); without, at the launch gain.
        ramp_in = config.residual_gain_ramp_s > 0
        self._gain = GainRamp(
            0.0 if ramp_in else config.residual_gain, config.residual_gain_ramp_s, clock
        )
        self._ramp_in_to: float | None = config.residual_gain if ramp_in else None
        self._model = ModelSlot(
            config, self.counts, action_dim, obs_dim, goal_dim, recent_inputs, on_model_note, clock
        )

    # ----------------------------------------------------------------- the parts' state
    @property
    def actor(self) -> OnnxActor | None:
        """The running model, or None."""
        return self._model.actor

    @property
    def model_error(self) -> str | None:
        """Why no model runs although one is configured (None otherwise)."""
        return self._model.model_error

    @property
    def last_reload(self) -> ReloadEvent | None:
        """The outcome of the last model (re)load attempt."""
        return self._model.last_reload

    @property
    def live(self) -> StackIdentity:
        """What the stream has said of itself so far."""
        return self._model.live

    @property
    def mismatch(self) -> str | None:
        """Why the running model is not run on this stream (None: it is, or not yet checked)."""
        return self._model.mismatch

    @property
    def reload_in_flight(self) -> bool:
        """A model file is being loaded and validated in the background."""
        return self._model.reload_in_flight

    @property
    def inference_latency(self) -> LatencyWindow:
        """Model run times of the decided steps."""
        return self._rule.inference_latency

    @property
    def explored_steps(self) -> int:
        """'ok' steps whose residual exploration changed."""
        return self._rule.explored_steps

    @property
    def random_steps(self) -> int:
        """Of the explored steps, those with a uniform random residual."""
        return self._rule.random_steps

    @property
    def pending(self) -> int:
        """Number of steps waiting for their partner."""
        return self._pairing.pending

    def check_reload(self) -> ReloadEvent | None:
        """See :meth:`rpl_residual_node.model_slot.ModelSlot.check_reload`."""
        return self._model.check_reload()

    def finish_reload(self) -> ReloadEvent | None:
        """See :meth:`rpl_residual_node.model_slot.ModelSlot.finish_reload`."""
        return self._model.finish_reload()

    def note_observation_source(
        self, task: str, observation_fields: tuple[str, ...], goal_fields: tuple[str, ...]
    ) -> None:
        """See :meth:`rpl_residual_node.model_slot.ModelSlot.note_observation_source`."""
        self._model.note_observation_source(task, observation_fields, goal_fields)

    def note_base_action_source(self, controller: str, action_fields: tuple[str, ...]) -> None:
        """See :meth:`rpl_residual_node.model_slot.ModelSlot.note_base_action_source`."""
        self._model.note_base_action_source(controller, action_fields)

    def expire(self) -> int:
        """Drop halves that waited longer than ``sync_timeout_s``; return how many."""
        return self._pairing.expire()

    # ----------------------------------------------------------------- message intake
    def add_observation(
        self,
        episode: int,
        step: int,
        observation: np.ndarray,
        desired_goal: np.ndarray,
        waited_s: float = 0.0,
    ) -> Decision | None:
        """Take one observation message.

        Args:
            episode: Episode id.
            step: Step index.
            observation: Observation fields, shape (obs_dim,); a size other than the model's
                gives a base-action fallback for the step; a non-finite one is rejected.
            desired_goal: Goal fields, shape (goal_dim,) (m, world frame for Fetch).
            waited_s: How long the message waited in the node before this call (from its
                reception); above ``max_input_age_s`` a step it completes is input_late.

        Returns:
            The Decision for this step if its base action was already there, the earlier
            Decision again if this step was decided from the same observation (a re-sent
            observation), else None (also for a rejected observation).
        """
        observation = np.array(observation, dtype=np.float64).reshape(-1)  # kept: a copy
        desired_goal = np.array(desired_goal, dtype=np.float64).reshape(-1)
        if not finite_as_float32(observation, desired_goal):
            self._reject(
                REJECTED_OBSERVATION_NON_FINITE,
                f'rejected the observation of episode {episode} step {step}: non-finite '
                'values (or beyond float32, the model input); waiting for a valid one',
            )
            return None
        result = self._pairing.add_observation((episode, step), observation, desired_goal)
        if isinstance(result, Pair):
            return self._decide(result, waited_s)
        return result

    def add_terminal_observation(self, episode: int, step: int) -> None:
        """Take the terminal observation o_T of ``episode`` (``step`` = T): never answered.

        See :meth:`rpl_residual_node.step_pairing.StepPairing.add_terminal`.
        """
        self._pairing.add_terminal((episode, step))

    def add_base_action(
        self,
        episode: int,
        step: int,
        action: np.ndarray,
        fields: tuple[str, ...] = (),
        controller: str | None = None,
        waited_s: float = 0.0,
    ) -> Decision | None:
        """Take one base action message.

        Args:
            episode: Episode id.
            step: Step index.
            action: Base action, shape (action_dim,); a non-finite or empty one, or one of
                another size than :meth:`expected_action_dim`, is rejected (no command is
                ever made from it).
            fields: Its field names, given on to the step's Decision.
            controller: Its frame_id: with it, the message's controller and ``fields`` are
                noted as the stream's (:meth:`note_base_action_source`) once the message is
                accepted, never from a rejected one, and its size is checked against the one
                a fitting model and the stream agree on (:meth:`_agreed_action_dim`).
            waited_s: As for :meth:`add_observation`.

        Returns:
            The Decision for this step if its observation was already there, else None
            (also for a rejected base action).
        """
        action = np.array(action, dtype=np.float64).reshape(-1)  # kept: a copy
        if controller is None:  # the caller notes the stream itself
            expected = self.expected_action_dim()
        else:
            expected = self._agreed_action_dim()
        if action.size == 0 or (expected is not None and action.size != expected):
            self._reject(
                REJECTED_BASE_WRONG_SIZE,
                f'rejected the base action of episode {episode} step {step}: '
                f'{action.size} values, expected {expected or "at least 1"}; waiting for a '
                'valid one',
            )
            return None
        if not finite_as_float32(action):
            self._reject(
                REJECTED_BASE_NON_FINITE,
                f'rejected the base action of episode {episode} step {step}: non-finite '
                f'values {action.tolist()} (or beyond float32); waiting for a valid one',
            )
            return None
        if controller is not None:
            self.note_base_action_source(controller, tuple(fields))
        low, high = self.config.action_low, self.config.action_high
        if action.min() < low or action.max() > high:
            self._reject(
                BASE_OUTSIDE_BOUNDS,
                f'the base action of episode {episode} step {step} {action.tolist()} is '
                f'outside the command bounds [{low:g}, {high:g}]: every command is clipped to '
                "them; if they are not your robot's range, set the residual node's action_low "
                '/ action_high',
            )
        pair = self._pairing.add_base_action((episode, step), action, tuple(fields))
        return None if pair is None else self._decide(pair, waited_s)

    def expected_action_dim(self) -> int | None:
        """The size a base action must have: the configured one, else the stream's (its
        noted field names), else the running model's; None: any non-empty size."""
        if self.action_dim is not None:
            return self.action_dim
        if self.live.action_fields is not None:
            return len(self.live.action_fields)
        actor = self.actor
        return actor.action_dim if actor is not None else None

    def _agreed_action_dim(self) -> int | None:
        """For a stream noted from its own messages: the configured size, else the size the
        running model and the stream agree on (the model fits the stream and has its size:
        that is the robot's action, and a base action of another size is invalid, so it
        can neither become a command nor take its step from the real one); else None: any
        size passes, as the base action it is (no model, or one that does not fit)."""
        if self.action_dim is not None:
            return self.action_dim
        actor, fields = self.actor, self.live.action_fields
        if actor is None or fields is None or actor.action_dim != len(fields):
            return None
        return len(fields) if self._model.refusal(actor) is None else None

    def _reject(self, reason: str, text: str) -> None:
        self.counts[reason] += 1
        if self._on_reject is not None:
            self._on_reject(reason, text)

    def set_gain(self, target: float) -> None:
        """A runtime change of ``residual_gain`` (the node's ``ros2 param set``): a raise is
        reached over ``residual_gain_ramp_s`` from the gain of this moment, a lower gain at
        once (:class:`~rpl_residual_node.mixing.GainRamp`)."""
        self._ramp_in_to = None
        self._gain.set(target)

    @property
    def beyond_scale(self) -> str | None:
        """What the last step beyond its model's stated scale reached (axis, value, scale)."""
        return self._rule.beyond_scale

    @property
    def gain(self) -> float:
        """The residual gain the next decided step gets."""
        return self._gain.now()

    @property
    def gain_target(self) -> float:
        """The gain it moves to (the launch gain while the ramp in waits for a step)."""
        return self._gain.target if self._ramp_in_to is None else self._ramp_in_to

    def _decide(self, pair: Pair, waited_s: float = 0.0) -> Decision:
        gain = self._gain.now()  # 0 while a ramp in waits for the model's first step
        if gain != self._rule.config.residual_gain:  # a runtime change, or its ramp
            self._rule.config = dataclasses.replace(self._rule.config, residual_gain=gain)
        self._model.remember(pair.key, pair.observation, pair.goal, pair.previous, pair.base)
        actor = self._model.actor  # one read: a swap in between cannot mix two models
        refused = actor is not None and self._model.refusal(actor) is not None
        no_model = MODEL_LOAD_FAILED if self.config.model_path else NO_MODEL
        decision = self._rule.decide(
            pair.key,
            pair.observation,
            pair.goal,
            pair.base,
            pair.previous,
            pair.fields,
            actor,
            no_model,
            refused,
            late=0.0 < self.config.max_input_age_s < waited_s,
        )
        if self._ramp_in_to is not None and decision.reason == OK:
            # The model's first step (at gain 0): the ramp in starts from here, not from a
            # step the base ran alone (a model that loaded later came in at full gain).
            self._gain.set(self._ramp_in_to)
            self._ramp_in_to = None
        self._pairing.decided(pair, decision)
        self.counts[decision.reason] += 1
        self.last_reason = decision.reason
        return decision

    # ----------------------------------------------------------------- reporting
    def diagnostics(self) -> tuple[str, str, dict[str, Any]]:
        """Status for /diagnostics.

        Returns:
            ``(level, message, values)``: level 'ok', 'warn' or 'error'; a one-line summary;
            key/value details (model, counts per reason, inference latency p50/p99 in us,
            exploration settings and explored step counts).
        """
        actor = self.actor
        values: dict[str, Any] = {
            'model_loaded': actor is not None,
            'model_path': self.config.model_path,
            'model': actor.describe() if actor else '',
            'model_error': self.model_error or '',
            'model_made_for': actor.identity.describe() if actor else '',
            'model_mismatch': self.mismatch or '',
            'allow_model_mismatch': self.config.allow_model_mismatch,
            'last_reload': self.last_reload.message if self.last_reload else '',
            'model_reload_running': self.reload_in_flight,
            'last_reason': self.last_reason or '',
            'decisions': sum(self.counts[r] for r in DECISION_REASONS),
            'pending': self.pending,
            'inference_p50_us': round(self.inference_latency.percentile_us(50), 1),
            'inference_p99_us': round(self.inference_latency.percentile_us(99), 1),
            'residual_gain': round(self.gain, 6),
            'residual_gain_target': self.gain_target,
            'explore_noise': self.config.explore_noise,
            'explore_random': self.config.explore_random,
            'explore_seed': self.config.explore_seed,
            'explored_steps': self.explored_steps,
            'explored_random_steps': self.random_steps,
        }
        for reason, count in sorted(self.counts.items()):
            values[f'count.{reason}'] = count
        if actor is None and self.config.model_path:
            return 'error', f'base action only: {self.model_error}', values
        if actor is not None and self.mismatch is not None:
            return 'error', f'base action only: the model does not fit: {self.mismatch}', values
        if self.last_reload is not None and not self.last_reload.loaded:
            return 'warn', self.last_reload.message, values
        if self.last_reason not in (None, OK, NO_MODEL):
            return 'warn', f'last step fell back to the base action: {self.last_reason}', values
        if actor is None:
            return 'ok', 'base action only: no model configured', values
        exploring = f' ({self.config.describe_exploration()})' if self.config.explores else ''
        gain, target = self.gain, self.gain_target
        if gain == 0.0 and target == 0.0:  # taken out on purpose: the base alone
            return 'ok', f'residual out (residual_gain 0): {actor.describe()}', values
        if gain != 1.0 or target != 1.0:
            toward = f', ramping to {target:g}' if target != gain else ''
            exploring = f'{exploring} at residual_gain {gain:.3g}{toward}'
        return 'ok', f'residual active{exploring}: {actor.describe()}', values
