"""A recorded stack run read into per-episode numpy records aligned by step index.

:func:`load_run` validates everything: a damaged bag is read as far as it is readable
(:func:`rpl_bags.reader.read_raw_bag`); missing topics, messages that do not decode and
payloads whose size differs from the rest are skipped and reported, one sentence per kind,
in ``RecordedRun.problems``. Repeats of an (episode, step) follow the rule of
:mod:`rpl_interfaces.step_index`.

The terminal observation o_T (on ``observation`` with step T and ``frame_id``
:func:`rpl_interfaces.contract.terminal_tag` of the task, published after the last step) is
kept apart as ``RecordedEpisode.terminal``: the streams' rows stay the T steps that were
answered. Bags recorded before the sim bridge published o_T have none (``terminal`` None);
that is not a problem of the bag (their results evaluate as before), but learners skip
such episodes (:data:`rpl_trainer.episodes.NO_TERMINAL`).

Pure Python + numpy + rosbags: no rclpy, no torch.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from rpl_bags.reader import RawBag, RawMessage, TopicInfo, one_line, read_raw_bag
from rpl_bags.topics import (
    ACTION_TOPICS,
    CONTROL_TOPICS,
    JOINT_STATE,
    BagError,
    resolve_topic,
    typestore,
)
from rpl_interfaces import contract, step_index
from rpl_interfaces.action_names import action_field_problem, stream_action_fields
from rpl_interfaces.codec import MessageError, StampedVector, decode

# What a run is read from: the control path and the health reports (``joint_states``, when
# recorded, is for playback and stock tools; the observation holds what evaluation needs).
READ_TOPICS = (*CONTROL_TOPICS, contract.DIAGNOSTICS)


class Stream(NamedTuple):
    """One control topic over one episode, row k = step k.

    Attributes:
        values: Payload per step, (steps, dim) float64; NaN rows where no message was read.
        stamp_ns: Sender's header stamp per step (wall clock, ns), (steps,) int64; -1 where
            missing.
        tags: Sender's ``frame_id`` per step ('' where missing).
    """

    values: np.ndarray
    stamp_ns: np.ndarray
    tags: tuple[str, ...]

    @property
    def present(self) -> np.ndarray:
        """Steps with a message, (steps,) bool."""
        return self.stamp_ns >= 0


class RecordedEpisode(NamedTuple):
    """One episode of a recorded run.

    Attributes:
        episode: Episode id.
        steps: Rows of every stream (the result's step count, else the last step seen + 1).
        observation: Observation payload (task observation, achieved goal, desired goal).
        base_action: Base controller action, (steps, len(action_fields)).
        residual: Applied residual, (steps, len(action_fields)).
        command: Command sent to the sim, (steps, len(action_fields)).
        result: The sim bridge's result; None if the episode did not finish in the bag.
        terminal: The terminal observation o_T's payload (as ``observation``'s rows),
            (len(fields),); None if the bag has none for this episode (recorded before the
            sim bridge published it, or the recording ended first).
    """

    episode: int
    steps: int
    observation: Stream
    base_action: Stream
    residual: Stream
    command: Stream
    result: contract.EpisodeResult | None
    terminal: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class RecordedRun:
    """A bag read into episodes.

    Attributes:
        path: Bag path.
        namespace: Namespace of the recorded stack, e.g. ``/rpl``.
        task: Task name (the observations' frame_id).
        layout: Names and slices of the observation payload.
        action_fields: Payload names of the action topics (base_action, residual, command),
            the task's declared action as recorded; () when the bag holds no action.
        episodes: Episodes by id.
        counts: Messages read per topic (relative names, as in :data:`READ_TOPICS`).
        resent: Per control topic, messages that repeat an earlier (episode, step) with the
            same payload (the sim bridge's start-up handshake re-sends observation (0, 0),
            and the nodes answer it again); the first of each is used.
        problems: One sentence per kind of problem found, empty for a clean bag.
        tasks: Every task the observations are tagged with, the most frequent first (more
            than one: a recorder left running while the stack was relaunched with another
            task; ``task`` is the first).
        controllers: Every base controller the base actions name (their frame_id), the most
            frequent first (more than one: the stack's controller was swapped while
            recording).
    """

    path: str
    namespace: str
    task: str
    layout: contract.ObservationLayout
    action_fields: tuple[str, ...]
    episodes: tuple[RecordedEpisode, ...]
    counts: dict[str, int]
    resent: dict[str, int]
    problems: tuple[str, ...]
    tasks: tuple[str, ...] = ()
    controllers: tuple[str, ...] = ()


class _Problems:
    """Collects problems, one line per kind with a count and the first example."""

    def __init__(self, initial: Iterable[str] = ()) -> None:
        self._plain = list(initial)
        self._kinds: dict[str, list[str]] = {}

    def add(self, text: str) -> None:
        self._plain.append(text)

    def count(self, kind: str, example: str, unit: str = 'message') -> None:
        self._kinds.setdefault(kind, [unit]).append(example)

    def lines(self) -> tuple[str, ...]:
        counted = [
            f'{kind}: {len(ex)} {unit}s, e.g. {ex[0]}' if len(ex) > 1 else f'{kind}: {ex[0]}'
            for kind, (unit, *ex) in self._kinds.items()
        ]
        return (*self._plain, *counted)


def stack_namespaces(topics: Mapping[str, TopicInfo]) -> list[str]:
    """The namespaces of the stacks a bag holds (of its ``{topic: info}``): each namespace
    with an RPL control topic in it, sorted."""
    found = set()
    for name, info in topics.items():
        base = name.rsplit('/', 1)
        if info.msgtype == JOINT_STATE and len(base) == 2 and base[1] in CONTROL_TOPICS:
            found.add(base[0] or '/')
    return sorted(found)


def _choose_namespace(raw: RawBag, namespace: str | None) -> str:
    found = stack_namespaces(raw.topics)
    if namespace is not None:
        namespace = '/' + namespace.strip('/') if namespace.strip('/') else '/'
        if namespace not in found:
            raise BagError(
                f'bag {raw.path!r} has no control topics in namespace {namespace!r}; it has '
                f'{found or "none"} (topics: {sorted(raw.topics)})'
            )
        return namespace
    if not found:
        raise BagError(
            f'bag {raw.path!r} has none of the RPL control topics '
            f'{list(CONTROL_TOPICS)} (as sensor_msgs/msg/JointState); it has '
            f'{sorted(raw.topics) or "no topics"}'
        )
    if len(found) > 1:
        raise BagError(
            f'bag {raw.path!r} holds several stacks ({found}): choose one with --namespace'
        )
    return found[0]


def _decode_topic(
    messages: Iterable[RawMessage], topic: str, fields: Sequence[str] | None, problems: _Problems
) -> list[StampedVector]:
    store = typestore()
    out = []
    for i, m in enumerate(messages):
        try:
            msg = store.deserialize_cdr(m.data, JOINT_STATE)
        except Exception as exc:  # corrupt CDR raises assorted errors inside rosbags
            problems.count(f'{topic}: undecodable messages skipped', f'#{i}: {one_line(exc)}')
            continue
        try:
            out.append(decode(msg, fields))
        except MessageError as exc:
            problems.count(f'{topic}: messages off the contract skipped', f'#{i}: {exc}')
    return out


def _observation_fields(
    vectors: list[tuple[tuple[str, ...], StampedVector]], topic: str, problems: _Problems
) -> tuple[str, ...]:
    shapes = collections.Counter(names for names, _ in vectors)
    fields, n = shapes.most_common(1)[0]
    for other, count in shapes.items():
        if other != fields:
            problems.add(
                f'{topic}: {count} message(s) have {len(other)} payload fields where the other '
                f'{n} have {len(fields)} ({list(fields)[:3]}...); they were skipped'
            )
    return fields


def _read_named(
    messages: list[RawMessage], topic: str, problems: _Problems
) -> list[tuple[int, tuple[str, ...], StampedVector]]:
    """Decode messages of any payload names: (index in the topic, payload names, vector)."""
    store = typestore()
    named = []
    for i, m in enumerate(messages):
        try:
            msg = store.deserialize_cdr(m.data, JOINT_STATE)
            vec = decode(msg)
        except MessageError as exc:
            problems.count(f'{topic}: messages off the contract skipped', f'#{i}: {exc}')
            continue
        except Exception as exc:  # corrupt CDR
            problems.count(f'{topic}: undecodable messages skipped', f'#{i}: {one_line(exc)}')
            continue
        named.append((i, tuple(msg.name[len(contract.META_FIELDS) :]), vec))
    return named


def _read_observations(
    messages: list[RawMessage], topic: str, problems: _Problems
) -> tuple[tuple[str, ...], list[StampedVector]]:
    named = [(names, vec) for _, names, vec in _read_named(messages, topic, problems)]
    if not named:
        return (), []
    fields = _observation_fields(named, topic, problems)
    return fields, [vec for names, vec in named if names == fields]


def _read_actions(
    by_topic: dict[str, list[RawMessage]], names: dict[str, str], problems: _Problems
) -> tuple[tuple[str, ...], dict[str, list[StampedVector]]]:
    """The action messages under the stream's action names (the rule of
    :mod:`rpl_interfaces.action_names`: the valid names most action messages carry, the
    first received on a tie); the others are skipped."""
    named = {rel: _read_named(by_topic[rel], names[rel], problems) for rel in ACTION_TOPICS}
    received = sorted(
        (by_topic[rel][i].log_time_ns, payload)
        for rel in ACTION_TOPICS
        for i, payload, _ in named[rel]
    )
    fields = stream_action_fields(payload for _, payload in received)
    kept: dict[str, list[StampedVector]] = {rel: [] for rel in ACTION_TOPICS}
    if fields is None:
        for rel in ACTION_TOPICS:
            for i, payload, _ in named[rel]:
                problems.count(
                    f'{names[rel]}: messages off the contract skipped',
                    f'#{i}: {action_field_problem(payload)}',
                )
        return (), kept
    for rel in ACTION_TOPICS:
        for i, payload, vec in named[rel]:
            if payload == fields:
                kept[rel].append(vec)
            else:
                problems.count(
                    f'{names[rel]}: messages off the contract skipped',
                    f'#{i}: action fields {list(payload)}, the other action messages have '
                    f'{list(fields)}',
                )
    return fields, kept


def _stream(
    vectors: dict[int, StampedVector], steps: int, dim: int, topic: str, problems: _Problems
) -> Stream:
    values = np.full((steps, dim), np.nan)
    stamps = np.full(steps, -1, dtype=np.int64)
    tags = [''] * steps
    for step, vec in vectors.items():
        if step >= steps:
            problems.count(
                f'{topic}: messages past the episode end skipped',
                f'episode {vec.episode} step {step} of {steps}',
            )
            continue
        if not np.isfinite(vec.values).all():  # kept as recorded, and said
            problems.count(
                f'{topic}: messages with non-finite values (NaN or inf)',
                f'episode {vec.episode} step {step}',
            )
        values[step], stamps[step], tags[step] = vec.values, vec.stamp_ns, vec.tag
    return Stream(values, stamps, tuple(tags))


def _by_step(
    vectors: Iterable[StampedVector], topic: str, problems: _Problems
) -> tuple[dict[int, dict[int, StampedVector]], int]:
    """Index messages by (episode, step) with the rule of :mod:`rpl_interfaces.step_index`.

    Returns:
        The index and the number of re-sends (not a problem). Conflicting repeats are
        reported.
    """
    out: dict[int, dict[int, StampedVector]] = collections.defaultdict(dict)
    resent = 0
    for vec in vectors:
        placed = step_index.place(out[vec.episode], vec)
        if placed is step_index.Placed.RESENT:
            resent += 1
        elif placed is step_index.Placed.CONFLICT:
            problems.count(
                f'{topic}: repeated (episode, step) with another payload skipped',
                f'episode {vec.episode} step {vec.step}',
            )
    return out, resent


def _split_terminal(
    observations: list[StampedVector],
) -> tuple[list[StampedVector], list[StampedVector]]:
    """The terminal observations o_T and the step observations, each in order."""
    terminal = [v for v in observations if contract.is_terminal(v.tag)]
    return terminal, [v for v in observations if not contract.is_terminal(v.tag)]


def _terminal(
    by_step: dict[int, StampedVector], steps: int, topic: str, problems: _Problems
) -> np.ndarray | None:
    """The payload of an episode's terminal observation (step = its step count), or None."""
    for step, vec in by_step.items():
        if step != steps:
            problems.count(
                f'{topic}: terminal observations at another step than the episode end skipped',
                f'episode {vec.episode} step {step} of {steps}',
            )
    found = by_step.get(steps)
    if found is not None and not np.isfinite(found.values).all():
        problems.count(
            f'{topic}: terminal observations with non-finite values (NaN or inf)',
            f'episode {found.episode}',
        )
    return None if found is None else np.asarray(found.values, dtype=np.float64)


def load_run(path: str | os.PathLike[str], namespace: str | None = None) -> RecordedRun:
    """Read a recorded stack run into per-episode records.

    Args:
        path: Bag directory (or storage file).
        namespace: Stack namespace to read; None = the only one in the bag.

    Returns:
        The run; ``problems`` lists everything skipped or missing.

    Raises:
        BagError: Unreadable bag, no control topics (or several stacks and no namespace),
            or no usable observation.
    """
    raw = read_raw_bag(path)
    return _build_run(raw, _choose_namespace(raw, namespace))


def load_runs(path: str | os.PathLike[str]) -> list[RecordedRun]:
    """Every stack a bag recorded (one per namespace with control topics), read once.

    Raises:
        BagError: As :func:`load_run` (for any of its stacks).
    """
    raw = read_raw_bag(path)
    found = stack_namespaces(raw.topics)
    if not found:
        _choose_namespace(raw, None)  # raises: the bag has no control topics
    return [_build_run(raw, ns) for ns in found]


def _build_run(raw: RawBag, ns: str) -> RecordedRun:
    """The stack in namespace ``ns`` of a read bag (see :func:`load_run`)."""
    problems = _Problems(raw.problems)
    names = {rel: resolve_topic(ns, rel) for rel in READ_TOPICS}
    by_topic: dict[str, list[RawMessage]] = {rel: [] for rel in READ_TOPICS}
    relative = {absolute: rel for rel, absolute in names.items()}
    for m in raw.messages:
        if m.topic in relative:
            by_topic[relative[m.topic]].append(m)
    for rel, absolute in names.items():
        if absolute not in raw.topics:
            problems.add(f'topic {absolute} is not in the bag')
        elif rel != contract.DIAGNOSTICS and raw.topics[absolute].msgtype != JOINT_STATE:
            problems.add(
                f'topic {absolute} has type {raw.topics[absolute].msgtype}, expected '
                f'{JOINT_STATE}; skipped'
            )
            by_topic[rel] = []

    obs_topic = names[contract.OBSERVATION]
    fields, observations = _read_observations(by_topic[contract.OBSERVATION], obs_topic, problems)
    if not observations:
        raise BagError(
            f'bag {raw.path!r} has no usable observation on {obs_topic}: '
            + ('; '.join(problems.lines()) or 'the topic is empty')
        )
    try:
        layout = contract.split_observation_fields(fields)
    except ValueError as exc:
        raise BagError(f'bag {raw.path!r}: observations on {obs_topic}: {exc}') from None
    task_tags = collections.Counter(contract.task_of_tag(v.tag) for v in observations)
    if len(task_tags) > 1:
        tagged = ', '.join(f'{task!r} ({count})' for task, count in task_tags.most_common())
        problems.add(
            f'{obs_topic}: observations of several tasks, {tagged}: read as '
            f'{task_tags.most_common(1)[0][0]!r}'
        )
    terminals, observations = _split_terminal(observations)
    streams, resent = {}, {}
    streams[contract.OBSERVATION], resent[contract.OBSERVATION] = _by_step(
        observations, obs_topic, problems
    )
    terminal_index, resent_terminal = _by_step(terminals, f'{obs_topic} (terminal)', problems)
    resent[contract.OBSERVATION] += resent_terminal
    action_fields, actions = _read_actions(by_topic, names, problems)
    for rel in ACTION_TOPICS:
        streams[rel], resent[rel] = _by_step(actions[rel], names[rel], problems)
    results: dict[int, contract.EpisodeResult] = {}
    for vec in _decode_topic(
        by_topic[contract.EPISODE], names[contract.EPISODE], contract.EPISODE_FIELDS, problems
    ):
        if vec.episode in results:
            problems.count(
                f'{names[contract.EPISODE]}: repeated episode results skipped',
                f'episode {vec.episode}',
            )
            continue
        results[vec.episode] = contract.EpisodeResult.from_vector(vec.episode, vec.values)

    episodes = []
    ids = sorted(set(results).union(*(s.keys() for s in streams.values()), terminal_index.keys()))
    dims = {contract.OBSERVATION: len(fields)} | {rel: len(action_fields) for rel in ACTION_TOPICS}
    for ep in ids:
        result = results.get(ep)
        seen = [step for s in streams.values() for step in s.get(ep, {})]
        seen += [step - 1 for step in terminal_index.get(ep, {})]  # o_T follows step T - 1
        steps = result.steps if result is not None else max(seen) + 1
        if result is None:
            problems.count(
                'episodes without a result (recording ended first?)', f'episode {ep}', 'episode'
            )
        parts = {
            rel: _stream(streams[rel].get(ep, {}), steps, dims[rel], names[rel], problems)
            for rel in streams
        }
        for rel, stream in parts.items():
            missing = int(steps - stream.present.sum())
            if missing and names[rel] in raw.topics:
                problems.count(
                    f'{names[rel]}: steps with no message',
                    f'episode {ep}: {missing} of {steps}',
                    'episode',
                )
        terminal = _terminal(terminal_index.get(ep, {}), steps, obs_topic, problems)
        episodes.append(RecordedEpisode(ep, steps, result=result, terminal=terminal, **parts))
    controllers = collections.Counter(
        tag for ep in episodes for tag in ep.base_action.tags if tag
    ).most_common()
    if len(controllers) > 1:
        named = ', '.join(f'{name!r} ({count})' for name, count in controllers)
        problems.add(
            f'{names[contract.BASE_ACTION]}: base actions of several controllers, {named}'
        )
    return RecordedRun(
        path=raw.path,
        namespace=ns,
        task=task_tags.most_common(1)[0][0],
        layout=layout,
        action_fields=action_fields,
        episodes=tuple(episodes),
        counts={rel: len(msgs) for rel, msgs in by_topic.items()},
        resent=resent,
        problems=problems.lines(),
        tasks=tuple(task for task, _ in task_tags.most_common()),
        controllers=tuple(name for name, _ in controllers),
    )
