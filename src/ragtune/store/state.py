"""Sync state a store keeps beside its chunks: the ingested roots, the sync log, small metadata, the write lock.

It belongs to the store, so a server backend keeps it in its own database (a table and an advisory lock)
while the embedded default keeps files in the index folder. :class:`FolderSyncState` is that default.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ragtune.errors import ConfigError

ROOTS_FILE = "roots.json"
SYNC_LOG = "sync_log.jsonl"
META_FILE = "meta.json"


@runtime_checkable
class SyncState(Protocol):
    """What ``ragtune sync`` needs to remember between runs, and the one-writer lock."""

    def roots(self) -> dict[str, list[str]]:
        """Ingested roots (real paths) -> their default ACL tokens."""
        ...

    def set_roots(self, roots: dict[str, list[str]]) -> None:
        """Replace the recorded roots atomically."""
        ...

    def append_sync(self, entry: dict[str, Any]) -> None:
        """Append one entry (time, root, counts) to the sync log."""
        ...

    def sync_log(self) -> list[dict[str, Any]]:
        """Every logged sync, oldest first."""
        ...

    def clear_sync_log(self) -> None:
        """Remove every sync log entry (``ragtune migrate --replace`` empties a target this way)."""
        ...

    def meta(self) -> dict[str, Any]:
        """Small facts about the index (e.g. the fingerprint of the embedder that filled it)."""
        ...

    def set_meta(self, key: str, value: Any) -> None:
        """Record one fact atomically."""
        ...

    def write_lock(self, what: str) -> AbstractContextManager[None]:
        """Hold the index's exclusive write lock; raise :class:`~ragtune.errors.LockedError` if another holds it."""
        ...


def _write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} ({what}) is damaged ({exc}); fix or remove it") from exc


class FolderSyncState:
    """:class:`SyncState` as files in a folder: ``roots.json``, ``sync_log.jsonl``, ``meta.json``, a lock file."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def roots(self) -> dict[str, list[str]]:
        """Recorded roots; a damaged file is a clear error, never an empty set."""
        data = _read_json(self.folder / ROOTS_FILE, "the ingested roots")
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise ConfigError(f"{self.folder / ROOTS_FILE} is damaged; fix it, or re-ingest every folder")
        return {str(k): [str(t) for t in v] for k, v in data.items()}

    def set_roots(self, roots: dict[str, list[str]]) -> None:
        """Write ``roots.json`` (temporary file, then rename)."""
        _write_json_atomic(self.folder / ROOTS_FILE, roots)

    def append_sync(self, entry: dict[str, Any]) -> None:
        """One JSON line per sync; a torn last line is ignored on reading."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / SYNC_LOG, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")

    def sync_log(self) -> list[dict[str, Any]]:
        """The logged syncs, oldest first."""
        path = self.folder / SYNC_LOG
        if not path.is_file():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return sorted(out, key=lambda e: e["time"])

    def clear_sync_log(self) -> None:
        """Delete ``sync_log.jsonl``: the log is empty afterwards."""
        (self.folder / SYNC_LOG).unlink(missing_ok=True)

    def meta(self) -> dict[str, Any]:
        """The contents of ``meta.json``."""
        data = _read_json(self.folder / META_FILE, "index metadata")
        return data if isinstance(data, dict) else {}

    def set_meta(self, key: str, value: Any) -> None:
        """Set one key of ``meta.json`` atomically."""
        _write_json_atomic(self.folder / META_FILE, {**self.meta(), key: value})

    def write_lock(self, what: str) -> AbstractContextManager[None]:
        """An exclusive ``flock`` on ``.write.lock``; the OS releases it if the process dies."""
        return _flock(self.folder, what)


@contextmanager
def _flock(folder: Path, what: str) -> Iterator[None]:
    import fcntl

    from ragtune.errors import LockedError

    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".write.lock", os.O_RDWR | os.O_CREAT, 0o644)
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
