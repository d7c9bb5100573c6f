"""Writing files so that a crash or an error never leaves a half-written one in place."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO


def file_path(path: Any, where: str) -> Path:
    """``path`` (str, bytes or os.PathLike) as a Path; TypeError/ValueError naming ``where`` for
    anything else or an empty path."""
    try:
        raw = os.fspath(path)
    except TypeError:
        raise TypeError(f"{where}: expected a file path (str, bytes or os.PathLike), got {type(path).__name__}") from None
    text = os.fsdecode(raw)
    if not text:
        raise ValueError(f"{where}: expected a file path, got an empty one")
    return Path(text)


@contextmanager
def atomic_write(target: Path, suffix: str = ".tmp", where: str = "atomic_write") -> Iterator[BinaryIO]:
    """Yield a binary stream on a new temporary file in ``target``'s directory.

    When the block ends normally, the file is flushed, fsynced and renamed over ``target``
    (``os.replace``, atomic on POSIX and Windows), then the directory is fsynced so the rename
    survives a power cut. If the block or any of these steps raises (Ctrl-C included), the
    temporary file is removed and ``target`` is left as it was. The block can raise to reject
    what it wrote.

    Like a plain ``open(target, "wb")``, the write goes through a symbolic link to the file it
    names (the link stays a link; the temporary file is made beside the linked file, so that
    directory must accept new files, where open() would only need the file writable) and is
    refused for a file the caller may not write (PermissionError); a target that exists but is not
    a regular file (a device, a pipe) is refused too (ValueError), since replacing it would destroy
    it rather than write to it. These checks are ``writable_target``'s, whose errors name ``where``.
    """
    target = writable_target(target, where)
    # A short temporary name: one built from the target's would fail for names near the file
    # system's limit (255 bytes), which a plain open() accepts.
    try:
        descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=".nncore-", suffix=suffix)
    except OSError as error:
        raise OSError(error.errno, f"cannot write {target}: {error.strerror}", str(target)) from None
    try:
        with os.fdopen(descriptor, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        # mkstemp creates the file readable by its owner only; give it the mode a plain open()
        # would (or the mode of the file it replaces).
        os.chmod(temporary, _file_mode(target))
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass  # the error that got us here is the one to report
        raise
    _fsync_directory(target.parent)


def writable_target(target: Path, where: str) -> Path:
    """The file a write to ``target`` lands in (symbolic links followed), after the checks
    ``atomic_write`` describes and that its directory exists (FileNotFoundError). Callers that
    have work to do before writing call it first, so that a bad path fails before that work."""
    resolved = Path(os.path.realpath(target))
    try:
        mode = resolved.stat().st_mode
    except FileNotFoundError:
        if not resolved.parent.is_dir():
            raise FileNotFoundError(
                errno.ENOENT, f"{where}: cannot write {target}: the directory {resolved.parent} does not exist", str(target)
            ) from None
        return resolved
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(
            errno.EISDIR, f"{where}: cannot write {target}: it is a directory, expected a file path", str(target)
        )
    if not stat.S_ISREG(mode):
        raise ValueError(f"{where}: cannot write {target}: it exists and is not a regular file (a device, a pipe or a socket)")
    if not os.access(resolved, os.W_OK):
        raise PermissionError(errno.EACCES, f"{where}: cannot write {target}: the file is read-only", str(target))
    return resolved


def _file_mode(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    # Linux reports the umask without changing it; elsewhere it can only be read by setting it,
    # which briefly affects other threads, so that is the fallback.
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable. Not every OS can open a directory (Windows cannot)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError as error:
        # Some file systems do not support fsync on directories; the data itself is synced.
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(descriptor)
