"""Writing rosbag2 bags: a standard bag directory (``metadata.yaml`` + one ``.mcap`` or
``.db3`` file) written with the ``rosbags`` library from the CDR bytes the recorder receives,
with the standard message definitions of ROS 2 Kilted, so ``ros2 bag play`` / ``ros2 bag
info`` and any reader that knows the standard messages read it. Nothing here writes to an
existing path.

Pure Python + rosbags: no rclpy, no torch.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence
from typing import Any, Final

from rpl_bags.topics import RECORDED_TOPICS, BagError, TopicSpec, typestore
from rpl_interfaces import contract
from rpl_interfaces.listener_startup import ListenerStartupConfig
from rpl_interfaces.params import describe

STORAGES: Final = ('mcap', 'sqlite3')
DEFAULT_STORAGE: Final = 'mcap'
_ROSBAG2_VERSION = 9  # what rosbag2 writes since Jazzy; Kilted reads it


def existing_bag(path: str | os.PathLike[str]) -> str | None:
    """The one line refusing a new bag at ``path`` when something is there, else None: a bag
    is never written over (the recorder, ``rpl bag record`` and ``record:=true`` say so
    alike)."""
    if os.path.lexists(path):
        return f'bag {str(path)!r} already exists (bags are never written over; give a new folder)'
    return None


@dataclasses.dataclass(frozen=True)
class BagRecorderConfig(ListenerStartupConfig):
    """Parameters of the bag recorder (``rpl_bags/bag_recorder_node.py``); the start-up
    ones (``startup_timeout_s``, ``settle_s``) are :class:`ListenerStartupConfig`'s."""

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
        problem = existing_bag(self.path)
        if problem:
            raise BagError(problem)
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
                t.name,
                t.msgtype,
                typestore=store,
                offered_qos_profiles=[_rosbags_qos(t.offered_qos)],
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
        process dies before :meth:`close` (through :func:`rpl_bags.reader.read_raw_bag`'s salvage).

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
        :func:`rpl_bags.reader.read_raw_bag`'s salvage. Never raises; idempotent."""
        if not self.closed:
            self.closed = True
            try:  # closing flushes the file's buffer, which fails again on a full disk
                self._writer.abort()
            except Exception:  # the file is closed all the same
                pass
