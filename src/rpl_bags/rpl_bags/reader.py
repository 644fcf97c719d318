"""Reading the messages of a rosbag2 bag, damaged ones too.

A bag that a regular reader refuses (no ``metadata.yaml`` because the recording was not
closed, a truncated or corrupt MCAP file) is read as far as it is readable
(:mod:`rpl_bags.mcap_salvage`), and every problem is named.

Pure Python + rosbags: no rclpy, no torch.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
import stat
from collections.abc import Collection, Sequence
from typing import Any, NamedTuple

from rpl_bags import mcap_salvage
from rpl_bags.topics import BagError
from rpl_interfaces import contract

_STORAGE_SUFFIX = {'.mcap': 'mcap', '.db3': 'sqlite3'}


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


def one_line(exc: BaseException) -> str:
    """An exception's message on one line, without a final period (for problem lines)."""
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
    # rosbags passes over a damaged chunk without a word: what the bag counts (its
    # metadata.yaml, or a lone file's summary) and was not read is said; the messages it
    # did read are kept.
    declared = collections.Counter()
    for c in wanted:
        declared[c.topic] += c.msgcount
    read = collections.Counter(m.topic for m in messages)
    source = 'metadata.yaml' if path.is_dir() else 'the file'
    problems = [
        f'{topic}: {source} counts {count} messages, {read[topic]} were read (lost in the '
        'recording, or a damaged storage file)'
        for topic, count in sorted(declared.items())
        if read[topic] < count
    ]
    return RawBag(str(path), topics, messages, problems)


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
                problems.append(f'{file}: {one_line(exc)}; nothing read from it')
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
    try:
        exists = path.exists()
    except OSError as exc:
        raise BagError(f'no bag at {str(path)!r}: {exc.strerror or exc}') from None
    if not exists:
        raise BagError(f'no bag at {str(path)!r}: the path does not exist')
    try:
        kind = os.stat(path).st_mode
    except OSError as exc:  # a name too long, a loop of links
        raise BagError(f'no bag at {str(path)!r}: {exc.strerror or exc}') from None
    regular_storage = stat.S_ISREG(kind) and path.suffix in _STORAGE_SUFFIX
    if not (stat.S_ISDIR(kind) or regular_storage):  # a device or pipe would be read forever
        raise BagError(
            f'{str(path)!r} is not a bag: expected a bag directory, an .mcap or a .db3 file'
        )
    metadata = path / 'metadata.yaml'
    if path.is_dir() and metadata.exists() and not metadata.is_file():
        raise BagError(f'bag {str(path)!r}: its metadata.yaml is not a regular file')
    if path.is_dir() and not metadata.exists():
        problems = [f'{str(path)!r} has no metadata.yaml (the recording was not closed?)']
    else:
        try:
            return _read_with_rosbags(path, topics)
        except Exception as exc:  # rosbags raises ReaderError, struct.error, KeyError, ...
            # Its own words where it has them; a damaged length field raises Python's
            # ("int too large to convert to C ssize_t"), which says nothing to a user.
            reason = (
                one_line(exc)
                if type(exc).__module__.startswith('rosbags')
                else (f'damaged ({type(exc).__name__})')
            )
            problems = [f'{str(path)!r} cannot be read as a whole: {reason}']
    if not _storage_files(path):
        if path.is_dir() and (path / 'metadata.yaml').exists():  # the reader's error says what
            raise BagError(
                f'bag {str(path)!r} has its metadata.yaml but no .mcap or .db3 file: '
                + '; '.join(problems)
            )
        raise BagError(
            f'{str(path)!r} is not a rosbag2 bag: no metadata.yaml and no .mcap or .db3 file'
        )
    raw = _salvage(path, topics, problems)
    if not raw.topics:
        raise BagError(f'nothing readable in bag {str(path)!r}: ' + '; '.join(raw.problems))
    return raw
