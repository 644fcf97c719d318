"""Read what is readable from a damaged MCAP file (truncated, unfinished or corrupt).

A recorder that is killed, a disk that fills up or a copy that stops half way leave an MCAP
file without its footer and summary; a flipped byte can break one record's length. Regular
readers (rosbags, rosbag2) then refuse the whole file. :func:`salvage_mcap` walks the
records from the start instead and keeps every schema, channel and message up to the first
record that cannot be read, including the complete messages of a chunk cut in the middle.

MCAP layout used here (https://mcap.dev/spec): magic ``\\x89MCAP0\\r\\n``, then records of
``opcode (uint8), length (uint64 LE), content``; strings are ``uint32 length + UTF-8``.
Pure Python; never writes.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import zlib
from collections.abc import Callable

MAGIC = b'\x89MCAP0\r\n'

OP_HEADER = 0x01
OP_FOOTER = 0x02
OP_SCHEMA = 0x03
OP_CHANNEL = 0x04
OP_MESSAGE = 0x05
OP_CHUNK = 0x06
OP_DATA_END = 0x0F

_RECORD_NAMES = {
    0x01: 'header',
    0x02: 'footer',
    0x03: 'schema',
    0x04: 'channel',
    0x05: 'message',
    0x06: 'chunk',
    0x07: 'message index',
    0x08: 'chunk index',
    0x09: 'attachment',
    0x0A: 'attachment index',
    0x0B: 'statistics',
    0x0C: 'metadata',
    0x0D: 'metadata index',
    0x0E: 'summary offset',
    0x0F: 'data end',
}

_RECORD_HEAD = struct.Struct('<BQ')  # opcode, content length
_MESSAGE_HEAD = struct.Struct('<HIQQ')  # channel id, sequence, log time, publish time
_CHUNK_HEAD = struct.Struct('<QQQI')  # start time, end time, uncompressed size, crc


class SalvageError(ValueError):
    """The file is not MCAP at all (nothing can be salvaged)."""


@dataclasses.dataclass(frozen=True)
class Channel:
    """One MCAP channel: a topic with its schema (message type) name."""

    topic: str
    msgtype: str
    encoding: str


@dataclasses.dataclass
class Salvage:
    """What :func:`salvage_mcap` could read.

    Attributes:
        channels: Channel id -> channel.
        messages: ``(channel id, log time ns, serialized data)`` in file order.
        stopped_at: Byte offset where reading stopped (file size when all was read).
        size: File size, bytes.
        problems: One sentence per thing that could not be read.
    """

    channels: dict[int, Channel] = dataclasses.field(default_factory=dict)
    messages: list[tuple[int, int, bytes]] = dataclasses.field(default_factory=list)
    stopped_at: int = 0
    size: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)


def _string(buf: memoryview, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from('<I', buf, pos)
    end = pos + 4 + n
    if end > len(buf):
        raise struct.error(f'string of {n} bytes runs past its record')
    return bytes(buf[pos + 4 : end]).decode('utf-8'), end


def _record_name(op: int) -> str:
    """'a chunk record', 'an unknown record (opcode 0xff)', ..."""
    if op in _RECORD_NAMES:
        return f'a {_RECORD_NAMES[op]} record'
    return f'an unknown record (opcode 0x{op:02x})'


def _decompressor(name: str) -> Callable[[bytes], bytes] | None:
    if name == '':
        return bytes
    if name == 'zstd':
        try:
            from compression import zstd  # Python >= 3.14
        except ImportError:
            try:
                from backports import zstd  # installed with rosbags
            except ImportError:
                return None
        return zstd.decompress
    if name == 'lz4':
        try:
            import lz4.frame
        except ImportError:
            return None
        return lz4.frame.decompress
    return None


class _Walker:
    """Walks records and fills a :class:`Salvage`."""

    def __init__(self, out: Salvage) -> None:
        self.out = out
        self.schemas: dict[int, str] = {}
        self.closed = False  # saw the footer (or data end): the writer finished the file

    def records(self, buf: memoryview, base: int, nested: bool) -> bool:
        """Read the records of ``buf`` (which starts at file offset ``base``).

        Returns:
            True when every record was read, False when reading stopped early.
        """
        pos = 0
        while pos < len(buf):
            if pos + _RECORD_HEAD.size > len(buf):
                return self._stop(base + pos, 'a record header is cut off', nested)
            op, length = _RECORD_HEAD.unpack_from(buf, pos)
            start = pos + _RECORD_HEAD.size
            if length > len(buf) - start:
                if op == OP_CHUNK and not nested:
                    self._partial_chunk(buf[start:], base + start)
                    why = (
                        f'the chunk at byte {base + pos} is cut off after {len(buf) - start} of '
                        f'{length} bytes (its messages before the cut were read)'
                    )
                    return self._stop(base + len(buf), why, nested)  # read up to the cut
                why = (
                    f'{_record_name(op)} declares {length} bytes but only {len(buf) - start} '
                    'follow (cut off, or a corrupt length)'
                )
                return self._stop(base + pos, why, nested)
            body = buf[start : start + length]
            try:
                self._record(op, body, base + start, nested)
            except (struct.error, UnicodeDecodeError) as exc:
                return self._stop(base + pos, f'{_record_name(op)} is malformed ({exc})', nested)
            pos = start + length
            if self.closed:
                break
        if not nested:
            self.out.stopped_at = base + pos
        return True

    def _stop(self, offset: int, why: str, nested: bool) -> bool:
        where = 'inside a chunk' if nested else 'in the file'
        self.out.problems.append(f'reading stopped at byte {offset} {where}: {why}')
        if not nested:
            self.out.stopped_at = offset
        return False

    def _record(self, op: int, body: memoryview, offset: int, nested: bool) -> None:
        if op == OP_SCHEMA:
            (sid,) = struct.unpack_from('<H', body, 0)
            name, _ = _string(body, 2)
            self.schemas[sid] = name
        elif op == OP_CHANNEL:
            cid, sid = struct.unpack_from('<HH', body, 0)
            topic, pos = _string(body, 4)
            encoding, _ = _string(body, pos)
            msgtype = self.schemas.get(sid, '')
            self.out.channels[cid] = Channel(topic=topic, msgtype=msgtype, encoding=encoding)
        elif op == OP_MESSAGE:
            cid, _, log_time, _ = _MESSAGE_HEAD.unpack_from(body, 0)
            self.out.messages.append((cid, log_time, bytes(body[_MESSAGE_HEAD.size :])))
        elif op == OP_CHUNK and not nested:
            self._chunk(body, offset)
        elif op in (OP_FOOTER, OP_DATA_END) and not nested:
            self.closed = True  # the summary section follows: nothing more to salvage

    @staticmethod
    def _chunk_parts(body: memoryview) -> tuple[int, str, int, int]:
        """``(crc, compression, data offset, data length)`` of a chunk record's content."""
        _, _, _, crc = _CHUNK_HEAD.unpack_from(body, 0)
        compression, pos = _string(body, _CHUNK_HEAD.size)
        (n,) = struct.unpack_from('<Q', body, pos)
        return crc, compression, pos + 8, n

    def _chunk(self, body: memoryview, offset: int) -> None:
        crc, compression, pos, n = self._chunk_parts(body)
        if n > len(body) - pos:
            raise struct.error(f'chunk data of {n} bytes runs past its record')
        decompress = _decompressor(compression)
        if decompress is None:
            self.out.problems.append(
                f'chunk at byte {offset} uses compression {compression!r}, which cannot be '
                'decompressed here; skipped'
            )
            return
        try:
            data = decompress(bytes(body[pos : pos + n]))
        except Exception as exc:  # any decompressor failure means a corrupt chunk
            self.out.problems.append(
                f'chunk at byte {offset} does not decompress ({exc}); skipped'
            )
            return
        if crc and zlib.crc32(data) != crc:
            self.out.problems.append(f'chunk at byte {offset} fails its CRC check; skipped')
            return
        self.records(memoryview(data), offset + pos, nested=True)

    def _partial_chunk(self, body: memoryview, offset: int) -> None:
        # Only an uncompressed chunk can be read up to the cut.
        try:
            _, compression, pos, _ = self._chunk_parts(body)
        except (struct.error, UnicodeDecodeError):
            return
        if compression == '':
            known = len(self.out.problems)
            self.records(body[pos:], offset + pos, nested=True)
            del self.out.problems[known:]  # the cut itself is reported by the caller


def salvage_mcap(path: str | os.PathLike[str]) -> Salvage:
    """Read every schema, channel and message that precedes the first unreadable record.

    Args:
        path: An ``.mcap`` file.

    Returns:
        The salvage; ``problems`` is empty when the whole data section was read.

    Raises:
        SalvageError: The file cannot be opened or does not start with the MCAP magic.
    """
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as exc:
        raise SalvageError(f'cannot read {os.fspath(path)!r}: {exc.strerror}') from None
    out = Salvage(size=len(data))
    if data[: len(MAGIC)] != MAGIC:
        raise SalvageError(
            f'{os.fspath(path)!r} is not an MCAP file (its first bytes are {data[:8]!r})'
        )
    walker = _Walker(out)
    if walker.records(memoryview(data)[len(MAGIC) :], len(MAGIC), nested=False) and not (
        walker.closed
    ):
        out.problems.append(
            f'the file ends at byte {len(data)} without its MCAP footer (the recording was not '
            'closed, or the file was cut at a record boundary)'
        )
    return out
