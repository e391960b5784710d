"""The append-only, hash-chained audit log: one canonical JSON record per line, a head file beside it.

Each record holds ``seq`` (1, 2, ...), ``time`` (UTC, ISO 8601), ``prev`` (the previous record's hash,
:data:`GENESIS` for the first) and ``hash``: the SHA-256 of the record's canonical JSON without ``hash``
(sorted keys, no spaces, ASCII). ``audit.head`` holds the seq and hash of the last record, so a cut tail is
seen too. Appends hold an exclusive ``flock`` on a sidecar lock file, so several processes append safely,
and are durable (``fsync``) before :meth:`AuditLog.append` returns. The format and its limits: docs/audit.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragtune.errors import ConfigError

if TYPE_CHECKING:
    from ragtune.config import Settings

GENESIS = "0" * 64  # the ``prev`` of the first record
RESERVED = ("seq", "time", "prev", "hash", "after_torn")  # fields the log sets; a caller's record may not hold them
HEX64 = re.compile(r"^[0-9a-f]{64}$")
_TAIL_BLOCK = 8192


def canonical(record: Mapping[str, Any]) -> bytes:
    """The canonical JSON of ``record``: sorted keys, no spaces, ASCII only, no NaN or infinity."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``record`` without its ``hash`` field."""
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def head_path(log: Path) -> Path:
    """The head file beside ``log``: ``audit.jsonl`` -> ``audit.head``."""
    return log.with_suffix(".head")


def lock_path(log: Path) -> Path:
    """The sidecar lock file appends hold: ``audit.jsonl`` -> ``audit.jsonl.lock``."""
    return log.with_name(log.name + ".lock")


def log_path(settings: Settings) -> Path:
    """The project's audit log file (``audit.path``, relative to the project folder)."""
    p = settings.audit.path
    return p if p.is_absolute() else settings.project_dir / p


@dataclass(frozen=True)
class Head:
    """The seq and hash of the last record appended (seq 0 and :data:`GENESIS` for an empty log)."""

    seq: int
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """``{"seq": ..., "hash": ...}``, the form of ``audit.head``."""
        return {"seq": self.seq, "hash": self.hash}


def read_head(log: Path) -> Head | None:
    """The head beside ``log``; None when there is none. A damaged head file is a :class:`ConfigError`."""
    path = head_path(log)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
        seq, digest = data["seq"], data["hash"]
    except (ValueError, TypeError, KeyError):
        raise ConfigError(f"{path} (the audit log's head) is damaged: it must be {{\"seq\": N, \"hash\": \"...\"}}; "
                          "compare it with a head exported earlier (`ragtune audit head`)") from None
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or not isinstance(digest, str) \
            or not HEX64.match(digest):
        raise ConfigError(f"{path} (the audit log's head) is damaged: bad seq or hash; compare it with a head "
                          "exported earlier (`ragtune audit head`)")
    return Head(seq, digest)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_head(log: Path, head: Head, durable: bool) -> None:
    """Replace the head file atomically (temporary file, fsync, rename)."""
    path = head_path(log)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, json.dumps(head.to_dict(), sort_keys=True).encode() + b"\n")
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    # No fsync of the folder: a rename lost in a crash leaves the previous head, one record behind, which
    # verify accepts (it checks that record's hash) and the next append brings up to date.
    os.replace(tmp, path)


def _as_head(line: bytes) -> Head | None:
    try:
        rec = json.loads(line)
        seq, digest = rec["seq"], rec["hash"]
    except (ValueError, TypeError, KeyError):
        return None
    if isinstance(seq, int) and not isinstance(seq, bool) and isinstance(digest, str):
        return Head(seq, digest)
    return None


@dataclass(frozen=True)
class _Tail:
    last: Head | None  # the seq and hash of the last record in the file, if its last line is one
    unterminated: bool  # the file does not end with a newline
    torn: bool  # ... and what follows the last newline is no record: a torn append


def _tail(fd: int, size: int) -> _Tail:
    """Read the end of the file backwards until its last line (and, if that is torn, the one before) is known."""
    if size == 0:
        return _Tail(None, False, False)
    unterminated = os.pread(fd, 1, size - 1) != b"\n"
    buf, pos = b"", size
    while True:
        start = max(0, pos - _TAIL_BLOCK)
        buf = os.pread(fd, pos - start, start) + buf
        pos = start
        cut = buf.rfind(b"\n", 0, len(buf) - (0 if unterminated else 1))  # the newline before the last line
        if cut >= 0 or pos == 0:
            break
    last_line = buf[cut + 1 :] if unterminated else buf[cut + 1 : -1]
    last = _as_head(last_line)
    if not unterminated or last is not None:
        return _Tail(last, unterminated, False)
    # A torn last line: the record before it is the one to chain to.
    while True:
        before = buf.rfind(b"\n", 0, cut) if cut > 0 else -1
        if before >= 0 or pos == 0:
            break
        start = max(0, pos - _TAIL_BLOCK)
        chunk = os.pread(fd, pos - start, start)
        buf, cut, pos = chunk + buf, cut + len(chunk), start
    return _Tail(_as_head(buf[before + 1 : cut]) if cut >= 0 else None, True, True)


def _now() -> datetime:
    return datetime.now(UTC)


class AuditLog:
    """The audit log at ``path`` (a JSONL file; its folder is created 0700, the files 0600).

    ``durable=False`` skips the ``fsync`` calls; only the benchmark uses it, to measure what they cost.
    ``clock`` gives the time of each record (UTC); tests pass a fixed one.
    """

    def __init__(self, path: Path, *, durable: bool = True, clock: Callable[[], datetime] = _now) -> None:
        self.path = Path(path)
        self.durable = durable
        self.clock = clock

    @property
    def head_path(self) -> Path:
        """The head file beside the log."""
        return head_path(self.path)

    def _ensure_folder(self) -> None:
        folder = self.path.parent
        if not folder.is_dir():
            try:
                folder.mkdir(parents=True, exist_ok=True)
                folder.chmod(0o700)
            except OSError as exc:
                raise ConfigError(f"cannot create the audit log folder {folder} ({exc.strerror}); set audit.path "
                                  "in ragtune.yaml to a writable place") from None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        self._ensure_folder()
        fd = os.open(lock_path(self.path), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits: appends are short, and every worker must get its turn
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def append(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Append one record (``fields`` plus ``seq``, ``time``, ``prev``, ``hash``), durably; return it.

        The predecessor is the head, unless the file's last record is newer (a crash after the line was
        written but before the head was): a cut tail thus stays a visible gap and is never papered over.
        A torn last line (a crash mid-append) is kept, and this record starts on a fresh line after it.
        """
        clash = [k for k in RESERVED if k in fields]
        if clash:
            raise ValueError(f"audit record fields {clash} are set by the log; rename them")
        with self._locked():
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size == 0 and not self.head_path.exists():
                    _write_head(self.path, Head(0, GENESIS), self.durable)
                head = read_head(self.path) or Head(0, GENESIS)
                tail = _tail(fd, size)
                prev = tail.last if tail.last is not None and tail.last.seq > head.seq else head
                record = {**fields, "seq": prev.seq + 1, "time": _iso(self.clock()), "prev": prev.hash}
                if tail.torn:
                    record["after_torn"] = True  # hashed, so the torn line before it stays on record
                record["hash"] = record_hash(record)
                _write_all(fd, (b"\n" if tail.unterminated else b"") + canonical(record) + b"\n")
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            _write_head(self.path, Head(record["seq"], record["hash"]), self.durable)
            if size == 0 and self.durable:  # a new log: make its folder entries (log, head) durable once
                dfd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        return record

    def head(self) -> Head | None:
        """The current head (None before the first append)."""
        return read_head(self.path)


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("audit times must be timezone-aware (UTC)")
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
