"""Writing files so that a crash or an error never leaves a half-written one in place."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_write(target: Path, suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """Yield a binary stream on a new temporary file in ``target``'s directory.

    When the block ends normally, the file is flushed, fsynced and renamed over ``target``
    (``os.replace``, atomic on POSIX and Windows), then the directory is fsynced so the rename
    survives a power cut. If the block or any of these steps raises (Ctrl-C included), the
    temporary file is removed and ``target`` is left as it was. The block can raise to reject
    what it wrote.
    """
    descriptor, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=suffix
    )
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
