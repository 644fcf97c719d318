"""One episode as the stack published it, why an episode is not learned from, and its
conversion into HER buffer episodes; shared by the live assembler and bag ingestion.

The residual stack publishes, per step k = 0 .. T-1 of episode e, the ``observation`` o_k
(task observation, achieved goal, desired goal), the base controller's ``base_action`` and
the executed ``command``. After the last step the sim bridge publishes the terminal
observation o_T (step T, ``frame_id`` :func:`rpl_interfaces.contract.terminal_tag` of the
task; nobody answers it), then the ``episode`` result. So one episode of T steps is

* observations o_0 .. o_T and achieved goals: T + 1 rows;
* desired goal, base action and command of steps 0 .. T-1: T rows;

and gives T transitions (o_k, u_k, o_{k+1}): the shapes of
:class:`rpl_trainer.her.EpisodeBatch`, the same that ``rpl train`` stores in process.

* the stored tanh-space action is the residual that explains the executed command,
  u = clip((command - base_action) / residual_scale, -1, 1)
  (:func:`rpl_trainer.residual.residual_explaining`), whatever produced the command;
* rewards are not stored: the HER sampler recomputes them with the task's pure reward
  function from the achieved goals.

Bags recorded before the sim bridge published o_T lack it: their episodes are skipped as
``no_terminal`` (their results still evaluate).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from rpl_interfaces import contract
from rpl_interfaces.codec import finite_as_float32
from rpl_trainer.her import EpisodeBatch
from rpl_trainer.residual import Scale, residual_explaining

STEP_TOPICS = (contract.OBSERVATION, contract.BASE_ACTION, contract.COMMAND)
"""The per-step topics an episode needs (relative names)."""

# Why an episode was not learned from (keys of the skip counters).
INCOMPLETE = 'incomplete'  # a step of observation / base_action / command or the result missing
CONFLICTING = 'conflicting'  # one (episode, step) sent twice with different values
FALLBACK = 'fallback'  # the sim applied a fallback action: the command is not what ran
WRONG_LENGTH = 'wrong_length'  # not the task's episode length
# No terminal observation o_T: a bag recorded before the sim bridge published it.
NO_TERMINAL = 'no_terminal'
# A recorded value that is not finite (NaN, inf): it would train the networks into NaN.
NON_FINITE = 'non_finite'
SKIP_REASONS = (INCOMPLETE, CONFLICTING, FALLBACK, WRONG_LENGTH, NO_TERMINAL, NON_FINITE)
NO_TERMINAL_WHY = (
    'recorded before the sim bridge published the terminal observation o_T (step T, '
    "frame_id '<task>/terminal'), so the last transition cannot be stored; not learned from "
    '(rpl bag eval still reads their results)'
)
"""Why :data:`NO_TERMINAL` episodes are not learned from (one line for the user)."""


def all_finite(*arrays: np.ndarray) -> bool:
    """Whether every value of an episode's arrays is finite (also as the replay buffer's
    float32): an episode with a NaN or inf (a diverging simulation, a robot controller's
    bad output) is not learned from (:data:`NON_FINITE`), live or from a bag."""
    return finite_as_float32(*arrays)


class EpisodeRecord(NamedTuple):
    """One complete episode of T steps as the stack published it (float64 arrays).

    Attributes:
        episode: Episode id (per sim bridge run).
        observation: Task observations o_0 .. o_T (o_T: the terminal observation),
            (T + 1, obs_dim).
        achieved_goal: Achieved goals of the same observations, (T + 1, goal_dim) (block
            position, m, world frame for Fetch).
        desired_goal: Desired goal of steps 0 .. T-1, (T, goal_dim), m, world frame.
        base_action: Base controller actions, (T, action_dim), action units.
        command: Executed commands clip(base + residual, -1, 1), (T, action_dim).
        result: The sim bridge's episode result.
    """

    episode: int
    observation: np.ndarray
    achieved_goal: np.ndarray
    desired_goal: np.ndarray
    base_action: np.ndarray
    command: np.ndarray
    result: contract.EpisodeResult

    @property
    def steps(self) -> int:
        """Steps T of the episode."""
        return int(self.command.shape[0])


def stored_residual(command: np.ndarray, base_action: np.ndarray, scale: Scale) -> np.ndarray:
    """Tanh-space residual u = clip((command - base_action) / scale, -1, 1) to store.

    Args:
        command: Executed commands (batch, action_dim).
        base_action: Base actions of the same steps (batch, action_dim).
        scale: Residual scale (> 0), one or one per axis
            (:func:`rpl_trainer.residual.residual_scales`).

    Returns:
        (batch, action_dim) float32 in [-1, 1].
    """
    if not np.all(np.asarray(scale) > 0):
        raise ValueError(f'residual scale must be positive, got {scale}')
    return residual_explaining(np.asarray(command), np.asarray(base_action), scale)


def episode_batch(records: Sequence[EpisodeRecord], scale: Scale) -> EpisodeBatch:
    """HER buffer episodes (N, T transitions each) from N records of T steps.

    Raises:
        ValueError: No records, records of different lengths, no step, or a record whose
            observations are not one more than its steps.
    """
    if not records:
        raise ValueError('no episode records to convert')
    lengths = {r.steps for r in records}
    if len(lengths) != 1 or min(lengths) < 1:
        raise ValueError(f'records must all have the same length >= 1 step, got {lengths}')
    for r in records:
        check_record(r)
    stack = lambda name: np.stack([getattr(r, name) for r in records])  # noqa: E731
    command = stack('command')  # (N, T, action_dim)
    base = stack('base_action')
    n, t, a = command.shape
    residual = stored_residual(command.reshape(n * t, a), base.reshape(n * t, a), scale)
    return EpisodeBatch(
        obs=stack('observation').astype(np.float32),  # (N, T + 1, obs_dim)
        achieved_goal=stack('achieved_goal').astype(np.float32),  # (N, T + 1, goal_dim)
        desired_goal=stack('desired_goal').astype(np.float32),  # (N, T, goal_dim)
        action=residual.reshape(n, t, a),
        executed=command.astype(np.float32),
    )


def check_record(record: EpisodeRecord) -> None:
    """Refuse a record whose row counts are not T + 1 observations and T steps.

    Raises:
        ValueError: Naming the episode and the rows it has.
    """
    t = record.steps
    rows = {
        'observation': (record.observation.shape[0], t + 1),
        'achieved_goal': (record.achieved_goal.shape[0], t + 1),
        'desired_goal': (record.desired_goal.shape[0], t),
        'base_action': (record.base_action.shape[0], t),
    }
    wrong = {name: got for name, (got, want) in rows.items() if got != want}
    if wrong:
        raise ValueError(
            f'episode {record.episode} of {t} steps needs T + 1 = {t + 1} observation and '
            f'achieved-goal rows (o_0 .. o_T) and {t} desired-goal, base-action and command '
            f'rows; got {wrong}'
        )


def episode_record(
    episode: int,
    layout: contract.ObservationLayout,
    observation: np.ndarray,
    base_action: np.ndarray,
    command: np.ndarray,
    result: contract.EpisodeResult,
) -> EpisodeRecord:
    """An :class:`EpisodeRecord` from whole observation payloads split by ``layout``.

    Args:
        episode: Episode id.
        layout: The observation payload layout (with achieved goals).
        observation: Observation payloads o_0 .. o_T (the last: the terminal observation),
            (T + 1, len(layout.fields)).
        base_action: Base actions of steps 0 .. T-1, (T, action_dim).
        command: Executed commands of the same steps, (T, action_dim).
        result: The sim bridge's episode result.

    Raises:
        ValueError: The row counts are not T + 1 observations and T steps.
    """
    record = EpisodeRecord(
        episode=episode,
        observation=observation[:, layout.observation],
        achieved_goal=observation[:, layout.achieved_goal],
        desired_goal=observation[:-1, layout.desired_goal],
        base_action=base_action,
        command=command,
        result=result,
    )
    check_record(record)
    return record


def check_layout(layout: contract.ObservationLayout) -> None:
    """Refuse a layout without achieved goals.

    Raises:
        ValueError: The observations carry no ``achieved_goal.*`` fields.
    """
    if layout.achieved_goal.stop - layout.achieved_goal.start != layout.goal_dim:
        raise ValueError(
            'observations without achieved_goal.* fields cannot be learned from (HER needs '
            f'the achieved goal); fields: {list(layout.fields)[:4]}...'
        )


__all__ = [
    'CONFLICTING',
    'FALLBACK',
    'INCOMPLETE',
    'NO_TERMINAL',
    'NO_TERMINAL_WHY',
    'NON_FINITE',
    'all_finite',
    'SKIP_REASONS',
    'STEP_TOPICS',
    'WRONG_LENGTH',
    'EpisodeRecord',
    'check_layout',
    'check_record',
    'episode_batch',
    'episode_record',
    'stored_residual',
]
