"""Result files of the command-line tools: checked before the work, never written over silently.

A tool that runs for minutes (``rpl eval``, ``rpl plot``) calls :func:`check_output` on each
of its output paths before it starts, so that a path that cannot be written, or a file that
already exists, is one line at once instead of a traceback at the end. It then writes with
:func:`write_output`, which refuses to replace a file unless told to. Pure Python.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import pathlib
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Any


def json_bytes(data: Any, indent: int = 2) -> bytes:
    """A result as its JSON file holds it: standard JSON, a value that does not exist (the
    NaN of a mean over no episode, an infinity) written ``null``. Python writes ``NaN`` by
    default, which jq, JavaScript and most other readers refuse."""

    def strict(value: Any) -> Any:
        if isinstance(value, float):  # numpy's float64 too
            return value if math.isfinite(value) else None
        if isinstance(value, dict):
            return {key: strict(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [strict(item) for item in value]
        return value

    return (json.dumps(strict(data), indent=indent, allow_nan=False) + '\n').encode()


def json_float(value: Any) -> float:
    """A number read back from :func:`json_bytes`'s file: ``null`` is NaN again."""
    return math.nan if value is None else float(value)


class OutputError(ValueError):
    """An output path that exists already or cannot be written (one-line message)."""


def missing_parents(folder: pathlib.Path) -> list[pathlib.Path]:
    """The folders from ``folder`` up that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def within(path: str | os.PathLike[str], other: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is ``other`` or lies inside it (links and `..` resolved)."""
    path, other = os.path.realpath(path), os.path.realpath(other)
    return path == other or path.startswith(other.rstrip(os.sep) + os.sep)


def check_output(
    path: str | os.PathLike[str],
    *,
    force: bool,
    option: str,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> pathlib.Path:
    """Check that ``path`` can be written now, by trying it (:func:`probe_write`), and
    leave nothing behind.

    Args:
        path: The output file.
        force: Whether an existing file may be replaced.
        option: The command-line option that names the file (for the message), e.g. '--json'.
        inputs: Files and folders the command reads: the output may be none of them, nor
            lie inside one, even with ``force`` (a result written over the model or the bag
            it was made from).

    Returns:
        ``path`` as a Path.

    Raises:
        OutputError: ``path`` is an input, exists (and not ``force``), is or names a folder,
            is not a regular file (a link, device or pipe, even with ``force``), or cannot
            be created.
    """
    for source in inputs:
        if within(path, source):
            raise OutputError(
                f'{option} {os.fspath(path)!r} is an input of this command (or inside one); it '
                'is never written over: give another file'
            )
    if os.fspath(path).endswith(os.sep):  # `--json out/` names a folder, not a file
        raise OutputError(f'{option} {os.fspath(path)!r} names a folder; give a file path')
    path = pathlib.Path(path)
    try:
        folder = path.is_dir()
    except OSError as exc:  # a name too long, say
        raise OutputError(f'cannot write {option} {str(path)!r}: {os_reason(exc)}') from None
    if folder:
        raise OutputError(f'{option} {str(path)!r} is a folder; give a file path')
    if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode):
        # --force replaces a file by renaming a new one over it: a link, device or pipe
        # would be replaced, not written to
        raise OutputError(
            f'{option} {str(path)!r} is not a regular file (a link, device or pipe); '
            'not replacing it: give a file path'
        )
    if os.path.lexists(path) and not force:
        raise OutputError(
            f'{str(path)!r} exists already; not writing over it: add --force to replace it, '
            f'or give another {option}'
        )
    try:
        probe_write(path)
    except OSError as exc:
        raise OutputError(f'cannot write {option} {str(path)!r}: {os_reason(exc)}') from None
    return path


def probe_write(path: str | os.PathLike[str]) -> None:
    """Try whether a file can be written at ``path``, and leave nothing behind.

    The missing folders are created and a scratch file is written in the last one, then
    both are removed again, so that the answer is the file system's own (read-only mounts,
    permissions, a file where a folder should be).

    Raises:
        OSError: The folders or the scratch file cannot be created.
    """
    path = pathlib.Path(path)
    folder = path.absolute().parent
    missing = missing_parents(folder)
    try:
        for created in reversed(missing):
            created.mkdir()
        # A short scratch name: a legal name near NAME_MAX must not fail for the probe's.
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix='.rpl-probe-', delete=True):
                pass
        except OSError as exc:  # the folder's failure, not the probe's own name
            if exc.filename and os.path.basename(exc.filename).startswith('.rpl-probe-'):
                exc.filename = str(folder)
            raise
    finally:
        for created in missing:  # deepest first; only what this probe made
            try:
                created.rmdir()
            except OSError:
                pass


def os_reason(exc: OSError) -> str:
    """An OSError as one line: its reason, then the file it names (if any) in brackets."""
    reason = exc.strerror or str(exc)
    return reason + (f' ({exc.filename})' if exc.filename else '')


LOW_DISK_BYTES = 16 * 2**20  # less free than this after a failed write: the disk is full


def write_failure(path: str | os.PathLike[str], exc: BaseException) -> BaseException:
    """What to raise for a write of ``path`` that failed with ``exc``: an OSError naming
    the file; torch's writers report a full disk as a RuntimeError ("unexpected pos ..."),
    which said nothing of the disk or the file: with the disk (nearly) full it is ENOSPC
    naming the file, otherwise ``exc`` itself (a real error of the writer)."""
    if isinstance(exc, OSError):
        return OSError(exc.errno, exc.strerror or str(exc), os.fspath(path))
    try:
        free = shutil.disk_usage(pathlib.Path(path).absolute().parent).free
    except OSError:
        return exc
    if free < LOW_DISK_BYTES:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))
    return exc


def _scratch_beside(path: pathlib.Path) -> pathlib.Path:
    """A new scratch file's name beside ``path`` (this process's, this moment's)."""
    return path.absolute().parent / f'.rpl-{os.getpid()}-{time.monotonic_ns()}.tmp'


@contextlib.contextmanager
def replacing(
    path: str | os.PathLike[str],
    writer_errors: tuple[type[BaseException], ...] = (OSError,),
    own_scratch: bool = False,
) -> Iterator[pathlib.Path]:
    """Write ``path`` whole or not at all, over what is there: the body writes the scratch
    file yielded, beside ``path``, which replaces ``path`` when the body ends without an
    exception. A failed write (a full disk) leaves the old file as it was and nothing
    half-written: no scratch file stays. An exception of ``writer_errors`` (torch's writers
    add RuntimeError) is raised as :func:`write_failure` says.

    The scratch file is new and this process's; with ``own_scratch`` (a file only one
    process writes, under its lock: a checkpoint, an exported model) it has one name per
    target, ``.<name>.tmp``, so that one left by a process killed while it wrote (hundreds
    of MB for a checkpoint) is written over by the next save, not left beside others."""
    path = pathlib.Path(path)
    if own_scratch:
        scratch = path.absolute().parent / f'.{path.name}.tmp'
    else:
        scratch = _scratch_beside(path)
    try:
        yield scratch
        os.replace(scratch, path)
    except writer_errors as exc:
        failure = write_failure(path, exc)
        if failure is exc:
            raise
        raise failure from None
    finally:
        with contextlib.suppress(OSError):
            scratch.unlink()  # only there when the write or the rename failed


def write_whole(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``path`` whole or not at all (:func:`replacing`). Raises the OSError of
    :func:`write_failure`."""
    with replacing(path) as scratch, open(scratch, 'xb') as f:  # no link followed
        f.write(data)


def write_output(path: str | os.PathLike[str], data: bytes, *, force: bool) -> pathlib.Path:
    """Write ``data`` to ``path`` (missing folders are created).

    Without ``force`` the file is created exclusively: a file that appeared since
    :func:`check_output` is kept. With ``force`` the file is replaced atomically (a reader
    sees the old or the new content, never a part).

    Raises:
        OutputError: The file exists (and not ``force``) or cannot be written.
    """
    return write_outputs([(path, data)], force=force)[0]


def write_outputs(
    files: Sequence[tuple[str | os.PathLike[str], bytes]], *, force: bool
) -> list[pathlib.Path]:
    """Write several result files, all or none: each is written whole to a scratch file
    beside its name first, and only when every one is written are they moved onto their
    names (a full disk leaves nothing half-written, and a model is never left without the
    record that goes with it). Names as for :func:`write_output`.

    Raises:
        OutputError: A file exists (and not ``force``) or cannot be written; nothing of
            this call is left then.
    """
    paths = [pathlib.Path(path) for path, _ in files]
    scratches: list[pathlib.Path] = []
    reserved: list[pathlib.Path] = []
    current = paths[0] if paths else pathlib.Path()
    appeared = False
    try:
        for path, (_, data) in zip(paths, files, strict=True):
            current = path
            path.absolute().parent.mkdir(parents=True, exist_ok=True)
            scratch = _scratch_beside(path)
            with open(scratch, 'xb') as f:  # the usual permissions, unlike mkstemp's 0600
                scratches.append(scratch)
                f.write(data)
        if not force:  # the names taken exclusively: a file that appeared since is kept
            for path in paths:
                current = path
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    appeared = True
                    raise
                reserved.append(path)
        for path, scratch in zip(paths, list(scratches), strict=True):
            current = path
            os.replace(scratch, path)  # a rename: it does not fail for a full disk
            scratches.remove(scratch)
            if path in reserved:
                reserved.remove(path)
    except BaseException as exc:
        for leftover in [*scratches, *reserved]:  # scratch files, empty placeholders
            with contextlib.suppress(OSError):
                os.unlink(leftover)
        if appeared:
            raise OutputError(
                f'{str(current)!r} appeared while this ran; not writing over it: add --force '
                'to replace it, or give another path'
            ) from None
        if isinstance(exc, OSError):
            raise OutputError(f'cannot write {str(current)!r}: {exc.strerror or exc}') from None
        raise
    return paths
