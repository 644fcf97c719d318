"""Live learning input: step messages and episode results of one stack namespace, matched
by (episode id, step index) into complete episodes (:class:`EpisodeAssembler`).

No rclpy here: the trainer node (``trainer_node.py``) only converts messages and calls this.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence

import numpy as np

from rpl_interfaces import contract, step_index
from rpl_interfaces.codec import StampedVector
from rpl_trainer.episodes import (
    CONFLICTING,
    FALLBACK,
    INCOMPLETE,
    NON_FINITE,
    STEP_TOPICS,
    WRONG_LENGTH,
    EpisodeRecord,
    all_finite,
    check_layout,
    episode_record,
)

KEPT_CLOSED = 1024  # closed episode ids kept one by one; older ones count as closed by a floor


@dataclasses.dataclass
class _OpenEpisode:
    steps: dict[str, dict[int, StampedVector]] = dataclasses.field(
        default_factory=lambda: {topic: {} for topic in STEP_TOPICS}
    )
    result: contract.EpisodeResult | None = None
    conflicting: bool = False
    sent_until_ns: int = 0  # newest send time of its messages
    result_sent_ns: int = 0


@dataclasses.dataclass
class AssemblerCounts:
    """What the assembler has seen.

    Attributes:
        complete: Episodes emitted.
        skipped: Episodes dropped, by reason (:data:`SKIP_REASONS`).
        resent: Messages that repeated an (episode, step) with the same values (the sim
            bridge's start-up handshake and the nodes' answers to it); the first is kept.
        late: Messages of an episode already emitted or skipped, ignored.
        missing: Step messages (observations o_0 .. o_T, base actions and commands of steps
            0 .. T-1; and the result, one each) that episodes skipped as incomplete lacked:
            what never reached this process.
        results_only: Episode results with no step messages (results of episodes before
            this trainer started, delivered late through the latched ``episode`` topic).
        restarts: Times a sim bridge started its episode ids again from an id already seen.
        before_resume: Messages sent before the checkpoint this trainer resumed from was
            saved (publishers' history delivered again), ignored.
    """

    complete: int = 0
    skipped: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    resent: int = 0
    late: int = 0
    missing: int = 0
    results_only: int = 0
    restarts: int = 0
    before_resume: int = 0


class EpisodeAssembler:
    """Matches live step messages and episode results into complete episodes.

    An episode is emitted as soon as its result, the observations o_0 .. o_T (o_T: the
    terminal observation, step T) and, for every step 0 .. T-1, one base action and command
    are there; without o_T it is incomplete. Repeats of an (episode, step) follow
    the rule of :mod:`rpl_interfaces.step_index` (the bag reader's too): re-sends are kept
    once; a conflicting repeat skips the episode as ``conflicting``.

    Each step topic has one publisher per stack and DDS delivers a reliable publisher's
    messages in order, but the topics relative to each other in any order (a publisher
    matched late delivers its history in a burst). So an episode is skipped as
    ``incomplete`` as soon as a step topic it lacks steps of delivers a later episode:
    those steps can no longer come. As a backstop for a topic that has gone silent, it is
    also skipped once any step message of episode id + ``lag`` (or later) arrives. Results
    do not close episodes (they are one message per episode, on their own topic).
    One assembler per stack namespace.

    Args:
        layout: The observation payload layout (with achieved goals).
        episode_steps: Task episode length T; results with another step count are skipped.
        action_fields: The task spec's action fields (``TaskSpec.action_fields``): the
            payload of ``base_action`` and ``command``; another size is refused.
        lag: Episodes to wait for the missing messages of an episode on a topic that
            delivers nothing newer (>= 1; the control publishers keep 500 messages, ten
            50-step episodes, for a late-matched subscriber).
        resume_after_ns: Ignore messages sent at or before this time (ns): those of the
            episodes a resumed learner already has (:attr:`seen_until_ns` when it was
            saved), which the publishers' history delivers again; None: none.
        started_ns: When the subscriptions were made (ns): an episode of which only the
            result arrives is a result of before (``results_only``) if that was sent
            earlier, else a lost episode (skipped as incomplete). None: results before the
            first step message are the old ones.
    """

    def __init__(
        self,
        layout: contract.ObservationLayout,
        episode_steps: int,
        action_fields: Sequence[str],
        lag: int = 12,
        resume_after_ns: int | None = None,
        started_ns: int | None = None,
    ) -> None:
        check_layout(layout)
        if lag < 1:
            raise ValueError(f'lag must be >= 1 episode, got {lag}')
        if not action_fields:
            raise ValueError("action_fields is empty: give the task spec's action_fields")
        self.layout = layout
        self.episode_steps = episode_steps
        self.action_fields = tuple(action_fields)
        self.lag = lag
        self.counts = AssemblerCounts()
        # One line per skipped episode saying what it lacked; the owner logs and clears it.
        self.skip_lines: list[str] = []
        self._open: dict[int, _OpenEpisode] = {}
        # Episode ids emitted or skipped; those below _closed_floor count as closed too (the
        # set is trimmed to the newest KEPT_CLOSED: it grew by one id per episode, forever).
        self._closed: set[int] = set()
        self._closed_floor: int | None = None
        self._newest: dict[str, int] = {}  # step topic -> newest episode id it delivered
        self._first: int | None = None  # first episode id with a step message (this run)
        # Whole episodes of which nothing arrived: ids never opened below the episode every
        # topic has passed (ids count up by one per episode in a sim bridge run).
        self._reached: dict[str, int] = {}  # every topic -> newest episode id it delivered
        self._ids: set[int] = set()  # ids opened, at or above _vanished_to
        self._vanished_to: int | None = None  # ids below are accounted for
        self.resume_after_ns = resume_after_ns
        self.started_ns = started_ns
        # Newest send time of the messages of every episode emitted or skipped: what a
        # checkpoint saved now holds (the next start resumes after it).
        self.seen_until_ns = resume_after_ns or 0
        self._latest_sent_ns = 0  # newest send time of any message taken

    def add(
        self, topic: str, vec: StampedVector, sent_ns: int | None = None
    ) -> list[EpisodeRecord]:
        """Take one decoded message of ``topic`` (relative name: observation, base_action,
        command or episode), sent at ``sent_ns`` (default: its stamp).

        Returns:
            The episode completed by it (a list of none or one).

        Raises:
            ValueError: An unknown topic or a payload of the wrong size.
        """
        self._check(topic, vec)
        sent_ns = vec.stamp_ns if sent_ns is None else sent_ns
        if self.resume_after_ns is not None and sent_ns <= self.resume_after_ns:
            self.counts.before_resume += 1
            return []
        latest, self._latest_sent_ns = self._latest_sent_ns, max(self._latest_sent_ns, sent_ns)
        if self._is_closed(vec.episode):
            # A new sim bridge run counts its episodes from 0 again: its step-0 observation
            # is sent after everything taken so far. One sent before is a late message of
            # the closed episode (a reader that fell behind); taken for a restart, it
            # reopened every closed episode, and their late messages were counted again.
            if topic == contract.OBSERVATION and vec.step == 0 and sent_ns > latest:
                self._restart()
            else:
                self.counts.late += 1
                return []
        if topic != contract.EPISODE:
            if self._first is None:
                self._first = vec.episode
            self._close_passed(topic, vec.episode)
            self._close_stale(vec.episode)
        episode = self._open.setdefault(vec.episode, _OpenEpisode())
        episode.sent_until_ns = max(episode.sent_until_ns, sent_ns)
        if self._vanished_to is None:
            self._vanished_to = vec.episode
        self._ids.add(vec.episode)
        self._reached[topic] = max(self._reached.get(topic, vec.episode), vec.episode)
        self._count_vanished()
        if topic == contract.EPISODE:
            if episode.result is None:
                episode.result = contract.EpisodeResult.from_vector(vec.episode, vec.values)
                episode.result_sent_ns = sent_ns
            else:
                self.counts.resent += 1
        else:
            self._put(episode, topic, vec)
        record = self._try_complete(vec.episode)
        return [] if record is None else [record]

    def flush(self) -> None:
        """Skip every episode still open (end of input): counted as incomplete."""
        for ep in sorted(self._open):
            self._drop(ep)

    @property
    def open_episodes(self) -> list[int]:
        """Ids of the episodes still waiting for messages."""
        return sorted(self._open)

    def _check(self, topic: str, vec: StampedVector) -> None:
        sizes = {
            contract.OBSERVATION: len(self.layout.fields),
            contract.BASE_ACTION: len(self.action_fields),
            contract.COMMAND: len(self.action_fields),
            contract.EPISODE: len(contract.EPISODE_FIELDS),
        }
        if topic not in sizes:
            raise ValueError(f'topic must be one of {list(sizes)}, got {topic!r}')
        if np.shape(vec.values) != (sizes[topic],):
            raise ValueError(
                f'{topic} (episode {vec.episode}, step {vec.step}) has '
                f'{np.size(vec.values)} values, expected {sizes[topic]}'
            )

    def _put(self, episode: _OpenEpisode, topic: str, vec: StampedVector) -> None:
        placed = step_index.place(episode.steps[topic], vec)
        if placed is step_index.Placed.RESENT:
            self.counts.resent += 1
        elif placed is step_index.Placed.CONFLICT:
            episode.conflicting = True

    def _try_complete(self, ep: int) -> EpisodeRecord | None:
        episode = self._open[ep]
        result = episode.result
        if result is None:
            return None
        if episode.conflicting:
            return self._drop(ep, CONFLICTING)
        if result.steps != self.episode_steps:
            return self._drop(ep, WRONG_LENGTH)
        if result.fallback_base or result.fallback_zero:
            return self._drop(ep, FALLBACK)
        rows = {t: _rows(t, self.episode_steps) for t in STEP_TOPICS}
        if any(any(k not in episode.steps[t] for k in range(rows[t])) for t in STEP_TOPICS):
            return None
        if any(len(episode.steps[t]) != rows[t] for t in STEP_TOPICS):
            return self._drop(ep, INCOMPLETE)  # steps past the end: not this episode's shape
        arrays = [
            np.stack([episode.steps[t][k].values for k in range(rows[t])]) for t in STEP_TOPICS
        ]
        if not all_finite(*arrays):  # o_T included
            return self._drop(ep, NON_FINITE)
        del self._open[ep]
        self.seen_until_ns = max(self.seen_until_ns, episode.sent_until_ns)
        self._close(ep)
        self.counts.complete += 1
        return episode_record(ep, self.layout, *arrays, result)

    def _count_vanished(self) -> None:
        if len(self._reached) < len(STEP_TOPICS) + 1 or self._vanished_to is None:
            return
        floor = min(self._reached.values())
        for ep in range(self._vanished_to, floor):
            if ep not in self._ids:
                self._close(ep)
                self.counts.skipped[INCOMPLETE] += 1
                self.counts.missing += sum(_rows(t, self.episode_steps) for t in STEP_TOPICS) + 1
                self.skip_lines.append(
                    f'episode {ep} skipped as incomplete: none of its messages arrived'
                )
        self._vanished_to = max(self._vanished_to, floor)
        self._ids = {ep for ep in self._ids if ep >= self._vanished_to}

    def _close_passed(self, topic: str, episode: int) -> None:
        if episode <= self._newest.get(topic, episode - 1):
            return
        self._newest[topic] = episode
        for ep in sorted(self._open):
            if ep < episode and self._lacks_steps(self._open[ep], topic):
                self._drop(ep)

    def _lacks_steps(self, episode: _OpenEpisode, topic: str) -> bool:
        return len(episode.steps[topic]) < _rows(topic, self._steps_of(episode))

    def _steps_of(self, episode: _OpenEpisode) -> int:
        return self.episode_steps if episode.result is None else episode.result.steps

    def _close_stale(self, newest: int) -> None:
        for ep in sorted(self._open):
            if ep <= newest - self.lag:
                self._drop(ep)

    def _drop(self, ep: int, reason: str = INCOMPLETE) -> None:
        episode = self._open.pop(ep)
        self.seen_until_ns = max(self.seen_until_ns, episode.sent_until_ns)
        self._close(ep)
        if self.started_ns is None:
            old_result = self._first is None or ep < self._first
        else:
            old_result = episode.result_sent_ns < self.started_ns
        if not any(episode.steps.values()) and not episode.conflicting and old_result:
            self.counts.results_only += 1
            return
        self.counts.skipped[reason] += 1
        if reason == INCOMPLETE:
            self.counts.missing += int(episode.result is None)
        parts = [] if episode.result is not None else ['no result']
        for topic in STEP_TOPICS:
            rows = _rows(topic, self._steps_of(episode))
            lacking = [k for k in range(rows) if k not in episode.steps[topic]]
            if lacking and reason == INCOMPLETE:
                self.counts.missing += len(lacking)
            if lacking:
                terminal = ', o_T among them' if topic == contract.OBSERVATION else ''
                if terminal and lacking[-1] != rows - 1:
                    terminal = ''
                parts.append(f'{topic} lacks {len(lacking)} steps ({_ranges(lacking)}{terminal})')
        lacks = '; '.join(parts) or 'every step message and the result arrived'
        self.skip_lines.append(f'episode {ep} skipped as {reason}: {lacks}')

    def _is_closed(self, ep: int) -> bool:
        return ep in self._closed or (self._closed_floor is not None and ep < self._closed_floor)

    def _close(self, ep: int) -> None:
        self._closed.add(ep)
        if len(self._closed) > 2 * KEPT_CLOSED:  # trim to the newest KEPT_CLOSED ids
            kept = sorted(self._closed)[-KEPT_CLOSED:]
            self._closed_floor = max(self._closed_floor or kept[0], kept[0])
            self._closed = set(kept)

    def _restart(self) -> None:
        self.flush()
        self._closed.clear()
        self._closed_floor = None
        self._newest.clear()
        self._first = None
        self._reached.clear()
        self._ids.clear()
        self._vanished_to = None
        self.counts.restarts += 1


def _rows(topic: str, steps: int) -> int:
    """Messages an episode of ``steps`` steps has on a step topic: T + 1 observations (o_T,
    the terminal observation, is step T), T base actions and commands."""
    return steps + 1 if topic == contract.OBSERVATION else steps


def _ranges(numbers: Sequence[int]) -> str:
    """Sorted integers as ranges: [0, 1, 2, 7] -> '0-2, 7'."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ', '.join(str(a) if a == b else f'{a}-{b}' for a, b in spans)


__all__ = ['AssemblerCounts', 'EpisodeAssembler']
