"""Bag ingestion: complete episodes of recorded stack bags (read by
:func:`rpl_bags.recorded.load_run`) into an :class:`rpl_trainer.offline.OfflineLearner`.

An episode is learned from with its terminal observation o_T (T transitions, as every other
path stores). Bags recorded before the sim bridge published o_T have none: their episodes
are skipped as ``no_terminal``, with one line per bag saying why (their results still
evaluate with ``rpl bag eval``).
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from rpl_bags.recorded import RecordedRun, load_run, load_runs
from rpl_bags.topics import BagError
from rpl_trainer.episodes import (
    FALLBACK,
    INCOMPLETE,
    NO_TERMINAL,
    NO_TERMINAL_WHY,
    NON_FINITE,
    WRONG_LENGTH,
    EpisodeRecord,
    all_finite,
    check_layout,
    episode_record,
)
from rpl_trainer.offline import OfflineLearner, UpdateDebt


def records_from_run(
    run: RecordedRun, episode_steps: int
) -> tuple[list[EpisodeRecord], collections.Counter[str]]:
    """Complete episodes of a bag read by :func:`rpl_bags.recorded.load_run`.

    Args:
        run: The recorded run (repeated messages are already reduced to the first).
        episode_steps: The task's episode length T; other lengths are skipped.

    Returns:
        The records, and skipped episodes counted by reason (:data:`SKIP_REASONS`).
    """
    check_layout(run.layout)
    records, skipped = [], collections.Counter()
    for ep in run.episodes:
        streams = (ep.observation, ep.base_action, ep.command)
        if ep.result is None or not all(s.present.all() for s in streams):
            skipped[INCOMPLETE] += 1
        elif ep.result.fallback_base or ep.result.fallback_zero:
            skipped[FALLBACK] += 1
        elif ep.steps != episode_steps:
            skipped[WRONG_LENGTH] += 1
        elif ep.terminal is None:
            skipped[NO_TERMINAL] += 1
        elif not all_finite(*(s.values for s in streams), ep.terminal):
            skipped[NON_FINITE] += 1
        else:
            observations = np.vstack([ep.observation.values, ep.terminal[None, :]])
            records.append(
                episode_record(
                    ep.episode,
                    run.layout,
                    observations,  # o_0 .. o_T, (T + 1, len(fields))
                    ep.base_action.values,
                    ep.command.values,
                    ep.result,
                )
            )
    return records, skipped


def no_terminal_line(skipped: int, episodes: int) -> str:
    """The one line saying why ``skipped`` of a bag's ``episodes`` lack o_T ('' if none)."""
    if not skipped:
        return ''
    return f'{skipped} of {episodes} episodes have no terminal observation: {NO_TERMINAL_WHY}'


class IngestReport(NamedTuple):
    """What :func:`ingest_bags` did.

    Attributes:
        episodes: Episodes stored in the buffer.
        transitions: Transitions stored (episodes x T).
        updates: Gradient steps run.
        skipped: Episodes not stored, by reason (:data:`SKIP_REASONS`).
        problems: The bags' problem lines, prefixed with the bag path (and per bag with
            episodes lacking o_T, the line saying why they were not learned from).
    """

    episodes: int
    transitions: int
    updates: int
    skipped: dict[str, int]
    problems: tuple[str, ...]


def ingest_bags(
    paths: Iterable[str | os.PathLike[str]],
    learner: OfflineLearner,
    updates_per_step: float = 0.0,
    namespace: str | None = None,
    task: str | None = None,
    controller: str | None = None,
) -> IngestReport:
    """Read bags episode by episode into the learner's buffer, optionally training on them.

    Args:
        paths: Bag directories (or storage files) recorded from the stack.
        learner: Receives the episodes.
        updates_per_step: Gradient steps per stored transition, run after each bag's
            episodes (0: only fill the buffer). While the RPL burn-in lasts these update
            only the critic.
        namespace: Stack namespace in the bags (None: every stack each bag recorded).
        task: The learner's task: a bag recorded on another one, or on several, is refused
            (None: any).
        controller: The learner's base controller: a bag whose base actions came from
            another one is refused (None: any); the learner recomputes base actions with its
            own.

    Raises:
        rpl_bags.topics.BagError: A bag cannot be read at all, or was recorded on another
            task or controller.
    """
    episodes = transitions = updates = 0
    skipped: collections.Counter[str] = collections.Counter()
    problems: list[str] = []
    debt = UpdateDebt(updates_per_step)
    runs = []
    for path in paths:
        stacks = load_runs(path) if namespace is None else [load_run(path, namespace)]
        runs += [(path, run, len(stacks) > 1) for run in stacks]
    for path, run, several in runs:  # all checked before any is stored
        where = f'bag {path}' + (f' (stack {run.namespace})' if several else '')
        tasks = {t for t in run.tasks if t}  # an untagged bag names none: read as any
        if task is not None and (tasks or {task}) != {task}:
            recorded = ', '.join(repr(t) for t in run.tasks if t)
            raise BagError(
                f'{where} was recorded on task {recorded}; this learner learns {task!r}: '
                'not read (its episodes would train on another task)'
            )
        if controller is not None and run.controllers and run.controllers != (controller,):
            raise BagError(
                f'{where}: its base actions came from {sorted(run.controllers)}; this learner '
                f'corrects {controller!r}: not read (it recomputes base actions with its own '
                'controller)'
            )
    for path, run, _ in runs:
        problems += [f'{path}: {line}' for line in run.problems]
        records, skips = records_from_run(run, learner.episode_steps)
        skipped.update(skips)
        if line := no_terminal_line(skips[NO_TERMINAL], len(run.episodes)):
            problems.append(f'{path}: {line}')
        for record in records:  # episode by episode: the buffer is FIFO
            stored = learner.add([record])
            episodes += 1
            transitions += stored
            debt.add(stored)
            updates += len(learner.update(debt.take(2**62)))
    return IngestReport(episodes, transitions, updates, dict(skipped), tuple(problems))


__all__ = ['IngestReport', 'ingest_bags', 'no_terminal_line', 'records_from_run']
