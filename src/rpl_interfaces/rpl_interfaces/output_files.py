"""Result files of the command-line tools: checked before the work, never written over silently.

A tool that runs for minutes (``rpl eval``, ``rpl plot``) calls :func:`check_output` on each
of its output paths before it starts, so that a path that cannot be written, or a file that
already exists, is one line at once instead of a traceback at the end. It then writes with
:func:`write_output`, which refuses to replace a file unless told to. Pure Python.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import stat
import tempfile


class OutputError(ValueError):
    """An output path that exists already or cannot be written (one-line message)."""


def missing_parents(folder: pathlib.Path) -> list[pathlib.Path]:
    """The folders from ``folder`` up that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def check_output(path: str | os.PathLike[str], *, force: bool, option: str) -> pathlib.Path:
    """Check that ``path`` can be written now, by trying it (:func:`probe_write`), and
    leave nothing behind.

    Args:
        path: The output file.
        force: Whether an existing file may be replaced.
        option: The command-line option that names the file (for the message), e.g. '--json'.

    Returns:
        ``path`` as a Path.

    Raises:
        OutputError: ``path`` exists (and not ``force``), is a folder, is not a regular
            file (a link, device or pipe, even with ``force``), or cannot be created.
    """
    path = pathlib.Path(path)
    if path.is_dir():
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
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f'.{path.name}.', delete=True):
            pass
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


def write_output(path: str | os.PathLike[str], data: bytes, *, force: bool) -> pathlib.Path:
    """Write ``data`` to ``path`` (missing folders are created).

    Without ``force`` the file is created exclusively: a file that appeared since
    :func:`check_output` is kept. With ``force`` the file is replaced atomically (a reader
    sees the old or the new content, never a part).

    Raises:
        OutputError: The file exists (and not ``force``) or cannot be written.
    """
    path = pathlib.Path(path)
    try:
        path.absolute().parent.mkdir(parents=True, exist_ok=True)
        if not force:
            with open(path, 'xb') as f:
                f.write(data)
            return path
        scratch = path.absolute().parent / f'.{path.name}.{os.getpid()}.tmp'
        try:
            with open(scratch, 'xb') as f:  # the usual permissions, unlike mkstemp's 0600
                f.write(data)
            os.replace(scratch, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(scratch)
            raise
    except FileExistsError:
        raise OutputError(
            f'{str(path)!r} appeared while this ran; not writing over it: add --force to '
            'replace it, or give another path'
        ) from None
    except OSError as exc:
        raise OutputError(f'cannot write {str(path)!r}: {exc.strerror or exc}') from None
    return path
