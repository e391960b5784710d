"""One writer per project: an exclusive lock on ``index/.write.lock``, released by the OS if the process dies."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ragtune.errors import LockedError

LOCK_FILE = ".write.lock"


@contextmanager
def write_lock(index_dir: Path, what: str = "ingest") -> Iterator[None]:
    """Hold the project's write lock; another holder makes this raise :class:`LockedError` at once."""
    index_dir.mkdir(parents=True, exist_ok=True)
    path = index_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            raise LockedError(f"another ingest, sync or repair is running on this project ({holder}); "
                              "wait for it to finish, then run the command again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {what}".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
