"""API keys: ``KeyStore`` keeps them hashed in SQLite and turns a presented key into an :class:`Identity`.

A key reads ``rtk_<id>_<secret>``: the id (16 hex digits) names the record, the secret is 32 random bytes
(``secrets.token_urlsafe``). Only the SHA-256 of the whole key is stored: a key this random cannot be guessed
from its hash, so no slow password KDF (bcrypt, argon2) is needed, and checking a key costs microseconds.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragtune.core import Principal
from ragtune.errors import AclError, ConfigError
from ragtune.service.identity import AuthError, Identity, Role, parse_role

if TYPE_CHECKING:
    from ragtune.config import Settings

PREFIX = "rtk_"
KEY_PATTERN = re.compile(r"^rtk_(?P<id>[0-9a-f]{16})_(?P<secret>[A-Za-z0-9_-]{43})$")
_ID_PATTERN = re.compile(r"^(?:rtk_)?(?P<id>[0-9a-f]{16})$")
LAST_USED_EVERY_S = 60.0  # last_used is written at most this often per key, so busy keys cause no write storm
_BUSY_TIMEOUT_MS = 10_000
_DUMMY_HASH = hashlib.sha256(b"no such key").digest()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    key_sha256 BLOB NOT NULL,
    user TEXT NOT NULL,
    groups TEXT NOT NULL,
    role TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    last_used_at REAL,
    revoked_at REAL
)
"""


def iso_time(t: float | None) -> str | None:
    """A UNIX time as ISO 8601 UTC to the second, or None."""
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class KeyRecord:
    """What the store knows about one key: never the key itself."""

    key_id: str
    user: str
    groups: tuple[str, ...]
    role: Role
    note: str
    created_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None

    @property
    def revoked(self) -> bool:
        """Whether the key was revoked."""
        return self.revoked_at is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, times as ISO 8601 UTC."""
        return {"key_id": self.key_id, "user": self.user, "groups": list(self.groups), "role": self.role.value,
                "note": self.note, "created_at": iso_time(self.created_at),
                "last_used_at": iso_time(self.last_used_at), "revoked_at": iso_time(self.revoked_at)}


def _check_name(kind: str, name: str) -> str:
    if not name or any(c == "," or c.isspace() for c in name):
        raise AclError(f"invalid {kind} name {name!r}: it must be non-empty, without commas or whitespace")
    return name


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("ascii")).digest()


class KeyStore:
    """API keys in one SQLite file (WAL, busy timeout, created owner-only).

    Nothing is read or written until the first call; the file and its folder are created then.
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self._ready = False
        self._local = threading.local()  # this thread's reader connection, for :meth:`verify`

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyStore:
        """The project's store at ``service.keys_path`` (relative to the project folder)."""
        path = settings.service.keys_path
        return cls(path if path.is_absolute() else settings.project_dir / path)

    # -- storage ---------------------------------------------------------------------------------------------

    def _prepare(self) -> None:
        if self.path.exists():
            if os.name == "posix":
                mode = stat.S_IMODE(self.path.stat().st_mode)
                if mode & 0o077:
                    raise ConfigError(f"{self.path} is readable or writable by other users (mode {mode:04o}); "
                                      f"whoever can write it can grant themselves any role: run "
                                      f"`chmod 600 {self.path}`")
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Created 0600 before SQLite opens it; SQLite gives its -wal and -shm files the same mode.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if not self._ready:
            self._prepare()
        conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            if not self._ready:
                self._init_schema(conn)
            yield conn
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"the API key store {self.path} cannot be used ({exc}); check the file, or move it "
                              f"away and create new keys") from None
        finally:
            conn.close()

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        # The hot path (a key checked on every request) reuses one connection per thread: WAL readers see every
        # commit (a revocation takes effect on the next request), and the schema is read once. Reopened when
        # the file is replaced (moved away and recreated), so a new store never answers with the old keys.
        try:
            st = os.stat(self.path)
        except OSError:
            st = None
        cached = getattr(self._local, "reader", None)
        if not self._ready or st is None or cached is None or cached[0] != (st.st_dev, st.st_ino):
            with self._connect() as conn:  # creates and checks the file and schema, with the usual errors
                pass
            st = os.stat(self.path)
            conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            if cached is not None:
                cached[1].close()
            cached = self._local.reader = ((st.st_dev, st.st_ino), conn)
        try:
            yield cached[1]
        except sqlite3.DatabaseError as exc:
            self._local.reader = None
            cached[1].close()
            raise ConfigError(f"the API key store {self.path} cannot be used ({exc}); check the file, or move it "
                              f"away and create new keys") from None

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        # Switching to WAL needs an exclusive lock and SQLite does not wait for it (no busy handler there), so
        # processes opening a new store together retry here until the busy timeout. WAL mode is then persistent.
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        delay = 0.005
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(_SCHEMA)
                break
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        self._ready = True

    @staticmethod
    def _record(row: tuple[Any, ...]) -> KeyRecord:
        key_id, user, groups, role, note, created, used, revoked = row
        return KeyRecord(key_id, user, tuple(json.loads(groups)), Role(role), note, created, used, revoked)

    _COLUMNS = "key_id, user, groups, role, note, created_at, last_used_at, revoked_at"

    # -- public API ------------------------------------------------------------------------------------------

    def create(self, user: str, groups: Iterable[str], role: Role | str, note: str = "") -> tuple[KeyRecord, str]:
        """A new key for ``user`` in ``groups`` with ``role``: its record and the key text (shown once, never
        stored)."""
        user = _check_name("user", user)
        group_set = tuple(sorted({_check_name("group", g) for g in groups}))
        Principal(user, frozenset(group_set))  # the names must also be valid ACL names
        role = parse_role(role) if not isinstance(role, Role) else role
        key_id = secrets.token_hex(8)
        key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        record = KeyRecord(key_id, user, group_set, role, note, self.clock())
        with self._connect() as conn:
            conn.execute(f"INSERT INTO api_keys ({self._COLUMNS}, key_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (key_id, user, json.dumps(list(group_set)), role.value, note, record.created_at,
                          None, None, _digest(key)))
        return record, key

    def list(self) -> builtins.list[KeyRecord]:
        """Every key's record (revoked ones too), oldest first."""
        with self._connect() as conn:
            rows = conn.execute(f"SELECT {self._COLUMNS} FROM api_keys ORDER BY created_at, key_id").fetchall()
        return [self._record(r) for r in rows]

    def get(self, key_id: str) -> KeyRecord | None:
        """One key's record by id (``3f2a...`` or ``rtk_3f2a...``), or None if there is no such key."""
        match = _ID_PATTERN.match(key_id.strip())
        if not match:
            raise ConfigError(f"{key_id!r} is not a key id: use the 16-hex-digit id shown by `ragtune keys list`")
        with self._connect() as conn:
            row = conn.execute(f"SELECT {self._COLUMNS} FROM api_keys WHERE key_id = ?",
                               (match["id"],)).fetchone()
        return None if row is None else self._record(row)

    def revoke(self, key_id: str) -> KeyRecord | None:
        """Revoke a key (idempotent); its record afterwards, or None if there is no such key."""
        record = self.get(key_id)
        if record is None or record.revoked:
            return record
        with self._connect() as conn:
            conn.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                         (self.clock(), record.key_id))
        return self.get(record.key_id)

    def authenticate(self, key: str) -> Identity:
        """The identity of a presented key, or ``AuthError`` (malformed, invalid or revoked key); records the
        key's last use (at most once a minute)."""
        identity, due = self.verify(key)
        if due:
            self.touch(identity.credential_id)
        return identity

    def verify(self, key: str) -> tuple[Identity, bool]:
        """:meth:`authenticate` without the write: the identity, and whether the key's last use is due to be
        recorded with :meth:`touch`. Only reads (WAL readers never wait for a writer), so an event loop may
        call it."""
        match = KEY_PATTERN.match(key)
        if not match:
            raise AuthError("malformed_credentials", "this is not a ragtune API key (expected rtk_<id>_<secret>, "
                                                     "as printed by `ragtune keys create`)")
        with self._reader() as conn:
            row = conn.execute(f"SELECT {self._COLUMNS}, key_sha256 FROM api_keys WHERE key_id = ?",
                               (match["id"],)).fetchone()
        stored = row[-1] if row is not None else _DUMMY_HASH
        # Compared in constant time; an unknown id costs the same comparison.
        if not hmac.compare_digest(stored, _digest(key)) or row is None:
            raise AuthError("invalid_key", "the API key is not valid: check it was copied whole, or ask an admin "
                                           "for a new one (`ragtune keys create`)")
        record = self._record(row[:-1])
        if record.revoked:
            raise AuthError("revoked_key", "the API key was revoked: ask an admin for a new one")
        principal = Principal(record.user, frozenset(record.groups))
        due = record.last_used_at is None or self.clock() - record.last_used_at >= LAST_USED_EVERY_S
        return Identity._verified(principal, record.role, "api_key", record.key_id), due

    def identity(self, key_id: str) -> Identity | None:
        """The identity key ``key_id`` stands for now, or None when it is unknown or revoked: what a web session
        opened with that key re-checks on every request (the key itself is never kept)."""
        with self._reader() as conn:
            row = conn.execute(f"SELECT {self._COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
        record = self._record(row) if row is not None else None
        if record is None or record.revoked:
            return None
        return Identity._verified(Principal(record.user, frozenset(record.groups)), record.role, "api_key",
                                  record.key_id)

    def touch(self, key_id: str) -> None:
        """Record that key ``key_id`` was used now, unless that was recorded in the last minute (best effort)."""
        now = self.clock()
        try:
            with self._connect() as conn:
                conn.execute("UPDATE api_keys SET last_used_at = ? WHERE key_id = ? "
                             "AND (last_used_at IS NULL OR last_used_at <= ?)",
                             (now, key_id, now - LAST_USED_EVERY_S))
        except ConfigError:
            pass  # last_used is best effort: a locked database must not fail a valid request
