"""The controller interface every base controller implements, and input checks.

A base controller maps one observation and the desired goal of its task to one action;
the sizes are the task's (``TaskSpec``). The mixins (:class:`BatchedCallMixin`,
:class:`LoopedBatchMixin`) work for any task's sizes; :func:`check_single` and
:func:`check_batch` check a Fetch controller's inputs by default. This package's own
controllers are Fetch controllers: a Fetch base controller maps

* ``observation``: shape ``(obs_dim,)``, laid out as
  :class:`rpl_sim_bridge.layout.FetchObs` (positions in m in the world frame).
* ``desired_goal``: shape ``(3,)``, the goal position of the object (m, world frame).
* action: the Fetch tasks' declared action (``TaskSpec.action_fields``: dx, dy, dz,
  gripper), shape ``(4,)``, float64 in [-1, 1]: gripper displacement (x, y, z) in units of
  0.05 m per control step, and the finger command (+1 opens, -1 closes, 0 holds). The
  controller node publishes it under the bound task's ``action_fields``.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import enum
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from rpl_interfaces.contract import ACTION_FIELDS as FETCH_ACTION_FIELDS
from rpl_interfaces.failures import raised_at
from rpl_sim_bridge.layout import FetchObs

# This package's controllers are Fetch controllers: their action is the Fetch tasks'
# declared one (TaskSpec.action_fields); nothing else here assumes its size.
ACTION_DIM = len(FETCH_ACTION_FIELDS)
GOAL_DIM = 3
# Every controller reads at least gripper, object, relative position and finger state.
MIN_OBS_DIM = FetchObs.GRIPPER_STATE.stop
# A Fetch controller's inputs, (smallest obs_dim, goal_dim): the mixins' ``input_sizes``.
FETCH_INPUTS = (MIN_OBS_DIM, GOAL_DIM)


@runtime_checkable
class BaseController(Protocol):
    """A base controller: observation and goal in, bounded action out.

    A controller that keeps episode state between calls may also define ``get_state()``
    (a value that does not change with later calls) and ``set_state(state)``; without them
    :func:`save_state` copies the controller's attributes.

    Attributes:
        name: The registry name the controller was made under (e.g. ``'reactive_push'``).
    """

    name: str

    def reset(self) -> None:
        """Forget any episode state; called at the start of every episode."""
        ...

    def __call__(self, observation: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        """Action for one step: ``(obs_dim,)``, ``(goal_dim,)`` -> ``(action_dim,)`` float64
        within the task's action bounds (Fetch: ``(3,)`` goal, ``(4,)`` action in [-1, 1])."""
        ...

    def act_batch(self, observations: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """Actions for a batch: ``(B, obs_dim)``, ``(B, goal_dim)`` -> ``(B, action_dim)``."""
        ...


class LoopedBatchMixin:
    """Default ``act_batch``: calls the controller once per row.

    ``input_sizes`` (smallest obs_dim, goal_dim or None for any) is what the inputs are
    checked against: any task's by default; a Fetch controller sets :data:`FETCH_INPUTS`.
    """

    input_sizes: tuple[int, int | None] = (1, None)

    def act_batch(self, observations: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """One ``__call__`` per row: ``(B, obs_dim)``, ``(B, goal_dim)`` ->
        ``(B, action_dim)``; an empty batch gives ``(0, action_dim)`` where the controller
        has an ``action_dim`` attribute, else the Fetch action's 4 columns."""
        observations, goals = check_batch(observations, goals, *self.input_sizes)
        rows = [self(o, g) for o, g in zip(observations, goals, strict=True)]
        if not rows:
            return np.zeros((0, getattr(self, 'action_dim', ACTION_DIM)))
        return np.array(rows, dtype=np.float64)  # (B, the controller's action size)


def check_single(
    observation: np.ndarray,
    desired_goal: np.ndarray,
    min_obs_dim: int = MIN_OBS_DIM,
    goal_dim: int | None = GOAL_DIM,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate one observation ``(obs_dim,)`` and goal ``(goal_dim,)``; return float64
    copies. The defaults are a Fetch controller's (at least the 11 values it reads, a
    3-D goal); ``goal_dim=None`` takes a goal of any size.

    Raises:
        ValueError: Wrong shape or non-finite values, naming what was expected.
    """
    observation = np.asarray(observation, dtype=np.float64)
    desired_goal = np.asarray(desired_goal, dtype=np.float64)
    if observation.ndim != 1 or observation.shape[0] < min_obs_dim:
        raise ValueError(
            f'observation must have shape (obs_dim,) with obs_dim >= {min_obs_dim}, '
            f'got {observation.shape}'
        )
    if desired_goal.ndim != 1 or goal_dim is not None and desired_goal.shape != (goal_dim,):
        wanted = 'goal_dim' if goal_dim is None else goal_dim
        raise ValueError(f'desired_goal must have shape ({wanted},), got {desired_goal.shape}')
    _check_finite(observation, desired_goal)
    return observation, desired_goal


def check_batch(
    observations: np.ndarray,
    goals: np.ndarray,
    min_obs_dim: int = MIN_OBS_DIM,
    goal_dim: int | None = GOAL_DIM,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a batch ``(B, obs_dim)`` of observations and ``(B, goal_dim)`` of goals
    (defaults as :func:`check_single`'s).

    Raises:
        ValueError: Wrong shapes, mismatched batch sizes or non-finite values.
    """
    observations = np.asarray(observations, dtype=np.float64)
    goals = np.asarray(goals, dtype=np.float64)
    if observations.ndim != 2 or observations.shape[1] < min_obs_dim:
        raise ValueError(
            f'observations must have shape (B, obs_dim) with obs_dim >= {min_obs_dim}, '
            f'got {observations.shape}'
        )
    width = goals.shape[1] if goal_dim is None and goals.ndim == 2 else goal_dim
    if goals.shape != (observations.shape[0], width):
        raise ValueError(
            f'goals must have shape ({observations.shape[0]}, '
            f'{"goal_dim" if goal_dim is None else goal_dim}) to match the observations, got '
            f'{goals.shape}'
        )
    _check_finite(observations, goals)
    return observations, goals


def _check_finite(observation: np.ndarray, goal: np.ndarray) -> None:
    if not np.all(np.isfinite(observation)):
        raise ValueError('observation contains NaN or inf; a controller needs finite values')
    if not np.all(np.isfinite(goal)):
        raise ValueError('desired goal contains NaN or inf; a controller needs finite values')


class BatchedCallMixin:
    """Default ``__call__`` for controllers written batch-first: one row through
    ``act_batch``; its inputs checked against ``input_sizes`` as :class:`LoopedBatchMixin`'s.
    """

    input_sizes: tuple[int, int | None] = (1, None)

    def __call__(self, observation: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
        """Action for one step: ``(obs_dim,)``, ``(goal_dim,)`` -> ``(action_dim,)``."""
        observation, desired_goal = check_single(observation, desired_goal, *self.input_sizes)
        return self.act_batch(observation[None, :], desired_goal[None, :])[0]


_ATOMIC = (str, bytes, int, float, complex, bool, type(None), enum.Enum)


def _immutable(value: Any) -> bool:
    """True if nothing reachable from ``value`` can change in place: atoms, tuples and
    frozensets of them, frozen dataclasses whose fields are such values."""
    if isinstance(value, _ATOMIC):
        return True
    if isinstance(value, (tuple, frozenset)):
        return all(_immutable(v) for v in value)
    params = getattr(type(value), '__dataclass_params__', None)
    if params is not None and params.frozen and not isinstance(value, type):
        return all(_immutable(getattr(value, f.name)) for f in dataclasses.fields(value))
    return False


class _Attributes(dict):
    """A controller's attributes, all immutable: a shallow copy is a full snapshot."""


def save_state(controller: BaseController, known: dict[int, Any] | None = None) -> Any:
    """Episode state of ``controller`` now, to be put back with :func:`load_state`.

    Args:
        controller: The controller.
        known: Optional cache of values already found immutable (id -> value, the value
            kept so that its id stays its own): a controller whose attributes are all
            immutable (a stateless one) is then snapshot without a deep copy.
    """
    getter = getattr(controller, 'get_state', None)
    if getter is not None:
        return getter()
    attributes = vars(controller)
    if known is not None:
        for value in attributes.values():
            if known.get(id(value)) is not value:
                if not _immutable(value):
                    break
                known[id(value)] = value
        else:
            return _Attributes(attributes)
    return copy.deepcopy(attributes)


def load_state(controller: BaseController, state: Any) -> None:
    """Put back a state from :func:`save_state`."""
    setter = getattr(controller, 'set_state', None)
    if setter is not None:
        setter(state)
    elif isinstance(state, _Attributes):
        vars(controller).update(state)
    else:
        vars(controller).update(copy.deepcopy(state))


class _Answer(NamedTuple):
    """One answered step: its payload, action and the controller state after it."""

    episode: int
    step: int
    payload: np.ndarray  # the observation payload answered, (payload_dim,)
    action: np.ndarray  # (ACTION_DIM,)
    after: Any  # controller state after the call


class SequencedController:
    """Answers the observations of a stream with one stateful controller; no message can
    reset or corrupt the state that the real sequence of steps builds on.

    The sim publishes observations (e, 0), (e, 1), ... of each episode; other messages may
    be interleaved (forged ones, a re-send, a restarted sim). Each step is computed from the
    controller state after its predecessor ``(e, k - 1)``, or from a reset one for step 0,
    and the last ``history`` answers keep their states, so a message with another step id
    only adds an answer of its own. A repeated (episode, step) with the same payload gets
    the same action without calling the controller (a planner called twice could answer
    differently); with another payload, the later one wins: it is computed again from the
    state before that step.

    The terminal observation o_T (step T after an episode's last step T - 1, see
    :func:`rpl_interfaces.contract.is_terminal`) is not a step: it gets no action, the
    controller is not called and no state or answer changes, so the next episode's step 0
    (and a repeated step T - 1) is answered as if it had not come.

    Args:
        controller: The controller (its state is swapped in and out here).
        history: Answers kept (covers that many interleaved messages of other steps).
    """

    def __init__(self, controller: BaseController, history: int = 32) -> None:
        self.controller = controller
        # (episode, step) -> answer, oldest first (a replaced answer keeps its place).
        self._answers: dict[tuple[int, int], _Answer] = {}
        self._history = history
        self._immutable: dict[int, Any] = {}  # attribute values known immutable, by id
        self._live: _Answer | None = None  # whose `after` state the controller holds now
        self.counts = collections.Counter()  # kind of each answer, see :meth:`answer`

    def answer(
        self,
        episode: int,
        step: int,
        payload: np.ndarray,
        observation: np.ndarray,
        desired_goal: np.ndarray,
        terminal: bool = False,
    ) -> tuple[np.ndarray | None, str]:
        """Action for observation (episode, step).

        Args:
            episode: Episode id of the observation.
            step: Step index of the observation.
            payload: The whole observation payload (identifies a repetition).
            observation: ``(obs_dim,)`` part of it.
            desired_goal: ``(3,)`` part of it.
            terminal: It is the terminal observation o_T (its tag says so): not answered.

        Returns:
            The action (do not modify it) and the kind of answer: 'repeat' (same step,
            same payload), 'again' (same step, another payload), 'next' (the step after an
            answered one), 'start' (step 0) or 'jump' (no predecessor answered: a late
            start, a lost observation or a foreign message; computed from the newest
            earlier step of the episode, else from a reset). ``(None, 'terminal')`` for a
            terminal observation: nothing to send, nothing changed.

        Raises:
            ValueError: The controller refused the input; any other exception of its code
                is raised as it is (either way the next answer starts from a known state).
        """
        if terminal:
            self.counts['terminal'] += 1
            return None, 'terminal'
        answers = self._answers
        known = answers.get((episode, step))
        if known is not None and np.array_equal(known.payload, payload):
            self.counts['repeat'] += 1
            return known.action, 'repeat'
        if (prior := answers.get((episode, step - 1))) is not None:
            kind, before = 'next', prior.after
        elif step == 0:
            kind, before = 'start', None
        else:
            earlier = [a for a in answers.values() if a.episode == episode and a.step < step]
            latest = max(earlier, key=lambda a: a.step, default=None)
            kind, before = 'jump', None if latest is None else latest.after
        if known is not None:
            kind = 'again'
        try:
            self._restore(before)
            # Copies: a controller that changes its input in place would change the payload
            # a repeat is recognised by.
            action = np.asarray(
                self.controller(observation.copy(), desired_goal.copy()), dtype=np.float64
            )
            after = save_state(self.controller, self._immutable)
        except Exception:  # a refusal (ValueError) or a failure of its code (reset() too)
            self._live = None  # the controller may have changed before it raised
            raise
        answer = _Answer(episode, step, payload.copy(), action, after)
        if known is None and len(answers) >= self._history:
            del answers[next(iter(answers))]  # the oldest answer
        answers[episode, step] = answer
        self._live = answer
        self.counts[kind] += 1
        return action, kind

    def _restore(self, state: Any) -> None:
        live = self._live
        if state is None:
            self.controller.reset()
        elif live is None or state is not live.after:
            load_state(self.controller, state)


class ControllerFailure(RuntimeError):
    """The base controller raised, or gave an action that is not the task's size or not
    finite (one line naming the controller and where: the episode's seed and the step)."""


def checked_action(
    controller: BaseController,
    observation: np.ndarray,
    goal: np.ndarray,
    size: int,
    where: str,
) -> np.ndarray:
    """``controller(observation, goal)`` on copies of the inputs, checked: the one call of
    a controller in the evaluation and training loops.

    Copies: a controller that changes its input in place (an in-place normalisation) left
    the residual policy, and the trainer's stored transition, reading what it left there.

    Args:
        size: The task's action size.
        where: Where in the run, for the message (``'episode seed 3, step 7'``).

    Raises:
        ControllerFailure: It raised (its exception is the cause; the message says where in
            its code), or the action is not ``size`` finite values.
    """
    try:
        action = np.asarray(controller(observation.copy(), goal.copy()), dtype=np.float64)
    except Exception as exc:
        raise ControllerFailure(
            f'controller {controller.name!r} raised {raised_at(exc, skip=[__file__])}; {where}'
        ) from exc
    if action.shape != (size,) or not np.all(np.isfinite(action)):
        raise ControllerFailure(
            f'controller {controller.name!r} gave {action.tolist()} ({where}): the task '
            f'needs {size} finite values'
        )
    return action


def checked_reset(controller: BaseController, where: str) -> None:
    """``controller.reset()``; a failure of its code is a ControllerFailure naming where it
    raised and ``where`` in the run (the one reset call of the evaluation and training
    loops)."""
    try:
        controller.reset()
    except Exception as exc:
        raise ControllerFailure(
            f'controller {controller.name!r} raised {raised_at(exc, skip=[__file__])} in '
            f'reset(); {where}'
        ) from exc
