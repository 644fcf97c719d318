"""Bags of the RPL stack: which topics are recorded, writing rosbag2 bags, reading them back.

A bag is a standard rosbag2 directory (``metadata.yaml`` + one ``.mcap`` or ``.db3`` file),
written with the ``rosbags`` library from the CDR bytes the recorder receives, with the
standard message definitions of ROS 2 Kilted (``sensor_msgs/msg/JointState``,
``diagnostic_msgs/msg/DiagnosticArray``), so ``ros2 bag play`` / ``ros2 bag info`` and any
reader that knows the standard messages read it.

Reading (:func:`load_run`) turns a bag into per-episode numpy records aligned by step
index, validating everything: a damaged bag (truncated, unfinished, corrupt) is read as far
as it is readable (:mod:`rpl_bags.mcap_salvage`); missing topics, messages that do not
decode and payloads whose size differs from the rest are skipped and reported, one
sentence per kind, in ``RecordedRun.problems``. Nothing here writes to an existing path.

Pure Python + numpy + rosbags: no rclpy, no torch.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import pathlib
from collections.abc import Collection, Iterable, Sequence
from typing import Any, Final, NamedTuple

import numpy as np

from rpl_bags import mcap_salvage
from rpl_interfaces import contract, step_index
from rpl_interfaces.codec import MessageError, StampedVector, decode
from rpl_interfaces.params import describe

JOINT_STATE: Final = 'sensor_msgs/msg/JointState'
DIAGNOSTIC_ARRAY: Final = 'diagnostic_msgs/msg/DiagnosticArray'

STORAGES: Final = ('mcap', 'sqlite3')
DEFAULT_STORAGE: Final = 'mcap'

# Everything on the control path, in the order of the runtime picture.
RECORDED_TOPICS: Final = (
    contract.OBSERVATION,
    contract.BASE_ACTION,
    contract.RESIDUAL,
    contract.COMMAND,
    contract.EPISODE,
    contract.DIAGNOSTICS,
)
# Payload names of the action-like topics (the observation's come from the bag itself).
ACTION_TOPICS: Final = (contract.BASE_ACTION, contract.RESIDUAL, contract.COMMAND)

_STORAGE_SUFFIX = {'.mcap': 'mcap', '.db3': 'sqlite3'}
_ROSBAG2_VERSION = 9  # what rosbag2 writes since Jazzy; Kilted reads it


class BagError(ValueError):
    """A bag cannot be written or read; the message names the path and the problem."""


@dataclasses.dataclass(frozen=True)
class BagRecorderConfig:
    """Parameters of the bag recorder (``rpl_bags/bag_recorder_node.py``)."""

    bag: str = dataclasses.field(
        default='',
        metadata=describe('Bag directory to create (must not exist yet); required'),
    )
    storage: str = dataclasses.field(
        default=DEFAULT_STORAGE,
        metadata=describe('rosbag2 storage format', choices=STORAGES),
    )
    topics: str = dataclasses.field(
        default=','.join(RECORDED_TOPICS),
        metadata=describe(
            'Comma-separated topics to record, relative to the namespace (/diagnostics is '
            'absolute); any of ' + ', '.join(RECORDED_TOPICS)
        ),
    )
    startup_timeout_s: float = dataclasses.field(
        default=10.0,
        metadata=describe(
            'Wait at most this long (s) for the publishers of the other topics before '
            'subscribing to observation (which lets a waiting sim bridge start)',
            range=(0.0, 600.0),
        ),
    )
    settle_s: float = dataclasses.field(
        default=1.0,
        metadata=describe(
            'Then wait this long (s) before subscribing to observation: seeing a publisher '
            'does not mean that it has already seen this subscriber (DDS discovery is not '
            'symmetric), and messages sent before it has are not received',
            range=(0.0, 60.0),
        ),
    )
    flush_period_s: float = dataclasses.field(
        default=1.0,
        metadata=describe(
            'Write buffered messages to the file this often (s): a killed recorder loses at '
            'most this much',
            range=(0.05, 3600.0),
        ),
    )
    queue_depth: int = dataclasses.field(
        default=1000,
        metadata=describe(
            'Subscription history depth: messages buffered while the recorder is busy',
            range=(10, 100000),
        ),
    )


class TopicSpec(NamedTuple):
    """One recorded topic.

    Attributes:
        name: Absolute topic name, e.g. ``/rpl/observation``.
        msgtype: ROS 2 message type, e.g. ``sensor_msgs/msg/JointState``.
        qos: The QoS the stack publishes it with (stored as the offered QoS).
    """

    name: str
    msgtype: str
    qos: contract.QosSpec


def resolve_topic(namespace: str, name: str) -> str:
    """Absolute name of a contract topic in ``namespace`` (absolute names stay as they are)."""
    if name.startswith('/'):
        return name
    return f'{namespace.rstrip("/")}/{name}'


def parse_topic_list(text: str) -> tuple[str, ...]:
    """Split a comma-separated topic list, checking every name is a recordable topic.

    Raises:
        BagError: An empty list or an unknown name.
    """
    names = tuple(t.strip() for t in text.split(',') if t.strip())
    unknown = [n for n in names if n not in RECORDED_TOPICS]
    if unknown or not names:
        raise BagError(
            f'topics must be a comma-separated list of {list(RECORDED_TOPICS)}, got {text!r}'
        )
    return names


def recorded_topics(namespace: str, names: Sequence[str] = RECORDED_TOPICS) -> list[TopicSpec]:
    """The topics to record for one stack namespace, with their types and QoS."""
    return [
        TopicSpec(
            name=resolve_topic(namespace, name),
            msgtype=DIAGNOSTIC_ARRAY if name == contract.DIAGNOSTICS else JOINT_STATE,
            qos=contract.TOPIC_QOS[name],
        )
        for name in names
    ]


@functools.cache
def typestore() -> Any:
    """The rosbags type store of ROS 2 Kilted (type hashes equal rclpy's; a test checks)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def encode_vector(vec: StampedVector, field_names: Sequence[str]) -> bytes:
    """CDR bytes of the ``JointState`` a node publishes for ``vec`` (for tests and tools).

    Args:
        vec: The stamped vector; ``vec.values`` has shape (len(field_names),).
        field_names: Payload names.
    """
    store = typestore()
    joint_state = store.types[JOINT_STATE]
    header = store.types['std_msgs/msg/Header']
    stamp = store.types['builtin_interfaces/msg/Time']
    values = np.asarray(vec.values, dtype=np.float64).reshape(-1)
    msg = joint_state(
        header=header(
            stamp=stamp(sec=int(vec.stamp_ns // 10**9), nanosec=int(vec.stamp_ns % 10**9)),
            frame_id=vec.tag,
        ),
        name=[*contract.META_FIELDS, *field_names],
        position=np.concatenate([[float(vec.episode), float(vec.step)], values]),
        velocity=np.zeros(0),
        effort=np.zeros(0),
    )
    return bytes(store.serialize_cdr(msg, JOINT_STATE))


# --- writing ---------------------------------------------------------------------------------


def _storage_plugin(storage: str) -> Any:
    from rosbags.rosbag2 import StoragePlugin

    if storage not in STORAGES:
        raise BagError(f'storage must be one of {list(STORAGES)}, got {storage!r}')
    plugin = getattr(StoragePlugin, storage.upper(), None)
    if plugin is None:
        raise BagError(
            f'the installed rosbags cannot write {storage!r} bags; use storage sqlite3 or '
            'upgrade rosbags'
        )
    return plugin


def _rosbags_qos(spec: contract.QosSpec) -> Any:
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    default_time = QosTime(sec=0, nsec=0)
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=spec.depth,
        reliability=QosReliability.RELIABLE if spec.reliable else QosReliability.BEST_EFFORT,
        durability=(
            QosDurability.TRANSIENT_LOCAL if spec.transient_local else QosDurability.VOLATILE
        ),
        deadline=default_time,
        lifespan=default_time,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=default_time,
        avoid_ros_namespace_conventions=False,
    )


class BagWriter:
    """Writes serialized messages of a fixed set of topics into a new rosbag2 bag.

    Args:
        path: Bag directory to create; it must not exist (never overwritten).
        topics: The topics (their offered QoS is stored for ``ros2 bag play``).
        storage: 'mcap' (default) or 'sqlite3'.

    Raises:
        BagError: ``path`` exists, the storage is unknown or the bag cannot be created.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        topics: Sequence[TopicSpec],
        storage: str = DEFAULT_STORAGE,
    ) -> None:
        from rosbags.rosbag2 import Writer, WriterError

        self.path = pathlib.Path(path)
        if not str(path):
            raise BagError('no bag path given: set the bag path (bag:=PATH)')
        if os.path.lexists(self.path):
            raise BagError(f'bag {str(self.path)!r} already exists; not overwriting it')
        plugin = _storage_plugin(storage)
        self.storage = storage
        self._writer = Writer(self.path, version=_ROSBAG2_VERSION, storage_plugin=plugin)
        try:
            self._writer.open()
        except (WriterError, OSError) as exc:
            raise BagError(f'cannot create bag {str(self.path)!r}: {exc}') from None
        store = typestore()
        self._connections = {
            t.name: self._writer.add_connection(
                t.name, t.msgtype, typestore=store, offered_qos_profiles=[_rosbags_qos(t.qos)]
            )
            for t in topics
        }
        self.counts: dict[str, int] = dict.fromkeys(self._connections, 0)
        self.closed = False

    def write(self, topic: str, log_time_ns: int, data: bytes) -> None:
        """Append one serialized message (CDR bytes) received at ``log_time_ns`` (ns)."""
        self._writer.write(self._connections[topic], log_time_ns, data)
        self.counts[topic] += 1

    def flush(self) -> None:
        """Put every message written so far into the file, so that it stays readable if the
        process dies before :meth:`close` (through :func:`read_raw_bag`'s salvage).

        rosbags keeps the open MCAP chunk (up to 1 MiB) in memory and the sqlite3
        transaction open until close; this ends the chunk or commits. It reaches into
        rosbags' storage object (checked with rosbags 0.11) and does nothing if that is not
        as expected.
        """
        storage = getattr(self._writer, 'storage', None)
        chunk = getattr(storage, 'chunk', None)
        if chunk is not None and hasattr(storage, 'close_chunk'):  # MCAP
            if getattr(chunk, 'msgs', None):
                storage.close_chunk()
                storage.bio.flush()
        elif hasattr(storage, 'conn'):  # sqlite3
            storage.conn.commit()

    def close(self) -> None:
        """Finish the storage file and write ``metadata.yaml`` (idempotent)."""
        if not self.closed:
            self.closed = True
            self._writer.close()

    def abort(self) -> None:
        """Give up after a failed write (a full disk): close the storage file as it is,
        without the summary and ``metadata.yaml`` that would need more space. What
        :meth:`flush` put into the file before stays readable through
        :func:`read_raw_bag`'s salvage. Never raises; idempotent."""
        if not self.closed:
            self.closed = True
            try:  # closing flushes the file's buffer, which fails again on a full disk
                self._writer.abort()
            except Exception:  # the file is closed all the same
                pass


# --- reading: raw messages -------------------------------------------------------------------


class RawMessage(NamedTuple):
    """One message as stored: topic, receive time (ns) and CDR bytes."""

    topic: str
    log_time_ns: int
    data: bytes


class TopicInfo(NamedTuple):
    """A topic of a bag: type, stored message count, offered QoS (None if not stored)."""

    name: str
    msgtype: str
    count: int
    qos: contract.QosSpec | None


@dataclasses.dataclass
class RawBag:
    """What :func:`read_raw_bag` read.

    Attributes:
        path: The bag path as given.
        topics: Topic name -> info, for every topic the bag declares.
        messages: Messages of the selected topics in receive-time order.
        problems: One sentence per damage found (empty for a healthy bag).
    """

    path: str
    topics: dict[str, TopicInfo]
    messages: list[RawMessage]
    problems: list[str]


def _qos_spec(profiles: Sequence[Any]) -> contract.QosSpec | None:
    from rosbags.interfaces import QosDurability, QosReliability

    if not profiles:
        return None
    qos = profiles[0]
    return contract.QosSpec(
        depth=max(int(qos.depth), 1),
        reliable=qos.reliability != QosReliability.BEST_EFFORT,
        transient_local=qos.durability == QosDurability.TRANSIENT_LOCAL,
    )


def _one_line(exc: BaseException) -> str:
    text = ' '.join(str(exc).split()) or type(exc).__name__
    return text.rstrip('.')


def _read_with_rosbags(path: pathlib.Path, selected: Collection[str] | None) -> RawBag:
    from rosbags.rosbag2 import Reader

    with Reader(path) as reader:
        topics = {
            c.topic: TopicInfo(c.topic, c.msgtype, c.msgcount, _qos_spec(_offered(c)))
            for c in reader.connections
        }
        wanted = [c for c in reader.connections if selected is None or c.topic in selected]
        messages = (
            [RawMessage(c.topic, int(t), bytes(data)) for c, t, data in reader.messages(wanted)]
            if wanted  # rosbags reads every connection when given none
            else []
        )
    return RawBag(str(path), topics, messages, [])


def _offered(connection: Any) -> Sequence[Any]:
    return getattr(connection.ext, 'offered_qos_profiles', ()) or ()


def _storage_files(path: pathlib.Path) -> list[pathlib.Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.suffix in _STORAGE_SUFFIX and p.is_file())


def _salvage(path: pathlib.Path, selected: Collection[str] | None, problems: list[str]) -> RawBag:
    topics: dict[str, TopicInfo] = {}
    messages: list[RawMessage] = []
    for file in _storage_files(path):
        if file.suffix == '.db3':
            try:  # rosbags reads a lone .db3 without metadata.yaml
                part = _read_with_rosbags(file, selected)
            except Exception as exc:  # a damaged database raises anything from apsw
                problems.append(f'{file}: {_one_line(exc)}; nothing read from it')
                continue
            topics.update(part.topics)
            messages += part.messages
            continue
        try:
            found = mcap_salvage.salvage_mcap(file)
        except mcap_salvage.SalvageError as exc:
            problems.append(str(exc))
            continue
        problems += [f'{file}: {p}' for p in found.problems]
        counts = collections.Counter(cid for cid, _, _ in found.messages)
        for cid, channel in found.channels.items():
            topics[channel.topic] = TopicInfo(channel.topic, channel.msgtype, counts[cid], None)
        for cid, log_time, data in found.messages:
            channel = found.channels.get(cid)
            if channel is None:
                continue
            if selected is None or channel.topic in selected:
                messages.append(RawMessage(channel.topic, log_time, data))
        problems.append(
            f'{file}: salvaged {len(found.messages)} messages from the first '
            f'{found.stopped_at} of {found.size} bytes'
        )
    messages.sort(key=lambda m: m.log_time_ns)
    return RawBag(str(path), topics, messages, problems)


def read_raw_bag(path: str | os.PathLike[str], topics: Collection[str] | None = None) -> RawBag:
    """Read the messages of a bag (directory with ``metadata.yaml``, or one storage file).

    A bag that a regular reader refuses (no ``metadata.yaml`` because the recording was not
    closed, a truncated or corrupt MCAP file) is read record by record as far as possible;
    what went wrong is listed in ``problems``.

    Args:
        path: Bag directory, ``.mcap`` or ``.db3`` file.
        topics: Absolute topic names to keep (None = all).

    Raises:
        BagError: Nothing at ``path``, not a bag, or nothing readable at all.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise BagError(f'no bag at {str(path)!r}: the path does not exist')
    if path.is_file() and path.suffix not in _STORAGE_SUFFIX:
        raise BagError(
            f'{str(path)!r} is not a bag: expected a bag directory, an .mcap or a .db3 file'
        )
    if path.is_dir() and not (path / 'metadata.yaml').exists():
        problems = [f'{str(path)!r} has no metadata.yaml (the recording was not closed?)']
    else:
        try:
            return _read_with_rosbags(path, topics)
        except Exception as exc:  # rosbags raises ReaderError, struct.error, KeyError, ...
            problems = [f'{str(path)!r} cannot be read as a whole: {_one_line(exc)}']
    if not _storage_files(path):
        raise BagError(
            f'{str(path)!r} is not a rosbag2 bag: no metadata.yaml and no .mcap or .db3 file'
        )
    raw = _salvage(path, topics, problems)
    if not raw.topics:
        raise BagError(f'nothing readable in bag {str(path)!r}: ' + '; '.join(raw.problems))
    return raw


# --- reading: per-episode records ------------------------------------------------------------


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
        base_action: Base controller action, (steps, 4).
        residual: Applied residual, (steps, 4).
        command: Command sent to the sim, (steps, 4).
        result: The sim bridge's result; None if the episode did not finish in the bag.
    """

    episode: int
    steps: int
    observation: Stream
    base_action: Stream
    residual: Stream
    command: Stream
    result: contract.EpisodeResult | None


@dataclasses.dataclass(frozen=True)
class RecordedRun:
    """A bag read into episodes.

    Attributes:
        path: Bag path.
        namespace: Namespace of the recorded stack, e.g. ``/rpl``.
        task: Task name (the observations' frame_id).
        layout: Names and slices of the observation payload.
        episodes: Episodes by id.
        counts: Messages read per topic (relative names, as in ``RECORDED_TOPICS``).
        resent: Per control topic, messages that repeat an earlier (episode, step) with the
            same payload (the sim bridge's start-up handshake re-sends observation (0, 0),
            and the nodes answer it again); the first of each is used.
        problems: One sentence per kind of problem found, empty for a clean bag.
    """

    path: str
    namespace: str
    task: str
    layout: contract.ObservationLayout
    episodes: tuple[RecordedEpisode, ...]
    counts: dict[str, int]
    resent: dict[str, int]
    problems: tuple[str, ...]


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


def _namespaces(raw: RawBag) -> list[str]:
    found = set()
    for name, info in raw.topics.items():
        base = name.rsplit('/', 1)
        if info.msgtype == JOINT_STATE and len(base) == 2 and base[1] in RECORDED_TOPICS:
            found.add(base[0] or '/')
    return sorted(found)


def _choose_namespace(raw: RawBag, namespace: str | None) -> str:
    found = _namespaces(raw)
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
            f'{list(RECORDED_TOPICS[:-1])} (as sensor_msgs/msg/JointState); it has '
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
            problems.count(f'{topic}: undecodable messages skipped', f'#{i}: {_one_line(exc)}')
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


def _read_observations(
    messages: list[RawMessage], topic: str, problems: _Problems
) -> tuple[tuple[str, ...], list[StampedVector]]:
    store = typestore()
    named: list[tuple[tuple[str, ...], StampedVector]] = []
    for i, m in enumerate(messages):
        try:
            msg = store.deserialize_cdr(m.data, JOINT_STATE)
            vec = decode(msg)
        except MessageError as exc:
            problems.count(f'{topic}: messages off the contract skipped', f'#{i}: {exc}')
            continue
        except Exception as exc:  # corrupt CDR
            problems.count(f'{topic}: undecodable messages skipped', f'#{i}: {_one_line(exc)}')
            continue
        named.append((tuple(msg.name[len(contract.META_FIELDS) :]), vec))
    if not named:
        return (), []
    fields = _observation_fields(named, topic, problems)
    return fields, [vec for names, vec in named if names == fields]


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
    ns = _choose_namespace(raw, namespace)
    problems = _Problems(raw.problems)
    names = {rel: resolve_topic(ns, rel) for rel in RECORDED_TOPICS}
    by_topic: dict[str, list[RawMessage]] = {rel: [] for rel in RECORDED_TOPICS}
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
    streams, resent = {}, {}
    streams[contract.OBSERVATION], resent[contract.OBSERVATION] = _by_step(
        observations, obs_topic, problems
    )
    for rel in ACTION_TOPICS:
        decoded = _decode_topic(by_topic[rel], names[rel], contract.ACTION_FIELDS, problems)
        streams[rel], resent[rel] = _by_step(decoded, names[rel], problems)
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
    ids = sorted(set(results).union(*(s.keys() for s in streams.values())))
    dims = {contract.OBSERVATION: len(fields)} | {rel: 4 for rel in ACTION_TOPICS}
    for ep in ids:
        result = results.get(ep)
        seen = [step for s in streams.values() for step in s.get(ep, {})]
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
        episodes.append(RecordedEpisode(ep, steps, result=result, **parts))
    tags = collections.Counter(v.tag for v in observations)
    return RecordedRun(
        path=raw.path,
        namespace=ns,
        task=tags.most_common(1)[0][0],
        layout=layout,
        episodes=tuple(episodes),
        counts={rel: len(msgs) for rel, msgs in by_topic.items()},
        resent=resent,
        problems=problems.lines(),
    )


def select_topics(raw_topics: Sequence[str], wanted: Sequence[str] | None) -> list[str]:
    """The bag topics to play: all, or those named (absolute, or relative = name suffix).

    Raises:
        BagError: A requested topic is not in the bag.
    """
    if not wanted:
        return sorted(raw_topics)
    chosen = []
    for name in wanted:
        matches = [
            t
            for t in raw_topics
            if t == name or (not name.startswith('/') and t.endswith('/' + name))
        ]
        if not matches:
            raise BagError(f'topic {name!r} is not in the bag; it has {sorted(raw_topics)}')
        chosen += [m for m in matches if m not in chosen]
    return chosen


def playback_offsets(log_times_ns: Sequence[int], rate: float) -> np.ndarray:
    """When to publish each message, seconds after the first, for playback at ``rate``.

    Args:
        log_times_ns: Receive times in the bag, (n,) ns, in the order of publication.
        rate: Playback speed factor (2.0 = twice as fast).

    Raises:
        BagError: ``rate`` is not positive.
    """
    if not rate > 0:
        raise BagError(f'rate must be positive, got {rate}')
    t = np.asarray(log_times_ns, dtype=np.int64)
    if t.size == 0:
        return np.zeros(0)
    return np.maximum.accumulate((t - t[0]) * 1e-9 / rate)
