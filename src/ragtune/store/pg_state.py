"""The PostgreSQL store's :class:`~ragtune.store.state.SyncState`: roots, sync log and metadata in tables, and
the one-writer lock as a PostgreSQL advisory lock.

The lock is a session advisory lock held on a connection of its own (not one from the pool, which other
queries share), so it lasts exactly as long as the ``with`` block and PostgreSQL releases it if the process
dies or its connection drops. ``write_lock_holder`` records what holds it, for the second writer's message.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any

import psycopg
from psycopg import Connection, sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from ragtune.errors import LockedError
from ragtune.store.pg_schema import lock_key


class PgSyncState:
    """:class:`~ragtune.store.state.SyncState` in the store's schema (tables ``roots``, ``sync_log``, ``meta``)."""

    def __init__(self, pool: ConnectionPool[Any], schema: str, connect: Callable[[], Connection[Any]]) -> None:
        self._pool = pool
        self._schema = schema
        self._s = sql.Identifier(schema)
        self._connect = connect  # a new dedicated connection (autocommit), for the write lock

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(s=self._s)

    def roots(self) -> dict[str, list[str]]:
        """Ingested roots (real paths) -> their default ACL tokens."""
        with self._pool.connection() as conn:
            rows = conn.execute(self._q("SELECT root, acl FROM {s}.roots ORDER BY root")).fetchall()
        return {str(root): [str(t) for t in acl] for root, acl in rows}

    def set_roots(self, roots: dict[str, list[str]]) -> None:
        """Replace the recorded roots in one transaction."""
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(self._q("DELETE FROM {s}.roots"))
            if roots:
                with conn.cursor() as cur:
                    cur.executemany(self._q("INSERT INTO {s}.roots (root, acl) VALUES (%s, %s)"),
                                    [(root, list(acl)) for root, acl in roots.items()])

    def append_sync(self, entry: dict[str, Any]) -> None:
        """Append one entry (time, root, counts) to the sync log."""
        with self._pool.connection() as conn:
            conn.execute(self._q("INSERT INTO {s}.sync_log (time, entry) VALUES (%s, %s)"),
                         [float(entry["time"]), Jsonb(entry)])

    def sync_log(self) -> list[dict[str, Any]]:
        """Every logged sync, oldest first."""
        with self._pool.connection() as conn:
            rows = conn.execute(self._q("SELECT entry FROM {s}.sync_log ORDER BY time, id")).fetchall()
        return [dict(r[0]) for r in rows]

    def clear_sync_log(self) -> None:
        """Remove every sync log entry (``ragtune migrate --replace`` empties a target this way)."""
        with self._pool.connection() as conn:
            conn.execute(self._q("DELETE FROM {s}.sync_log"))

    def meta(self) -> dict[str, Any]:
        """Small facts about the index (e.g. the fingerprint of the embedder that filled it)."""
        with self._pool.connection() as conn:
            rows = conn.execute(self._q("SELECT key, value FROM {s}.meta")).fetchall()
        return {str(k): v for k, v in rows}

    def set_meta(self, key: str, value: Any) -> None:
        """Record one fact (one statement, so atomically)."""
        with self._pool.connection() as conn:
            conn.execute(self._q("INSERT INTO {s}.meta (key, value) VALUES (%s, %s) "
                                 "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"), [key, Jsonb(value)])

    def write_lock(self, what: str) -> AbstractContextManager[None]:
        """Hold the index's exclusive write lock; raise :class:`~ragtune.errors.LockedError` if another holds it."""
        return self._lock(what)

    @contextmanager
    def _lock(self, what: str) -> Iterator[None]:
        key = lock_key(self._schema, "write")
        conn = self._connect()
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()
            if not row or not row[0]:
                held = conn.execute(self._q("SELECT what FROM {s}.write_lock_holder")).fetchone()
                holder = str(held[0]) if held else "unknown"
                raise LockedError(f"another ingest, sync or repair is running on this index ({holder}); "
                                  "wait for it to finish, then run the command again")
            try:
                conn.execute(self._q("INSERT INTO {s}.write_lock_holder (what) VALUES (%s) ON CONFLICT (only_row) "
                                     "DO UPDATE SET what = EXCLUDED.what, since = now()"),
                             [f"pid {os.getpid()} on {socket.gethostname()}: {what}"])
                yield
            finally:
                if not conn.closed:
                    with suppress(psycopg.OperationalError):  # a lost connection has released the lock already
                        conn.execute(self._q("DELETE FROM {s}.write_lock_holder"))
                        conn.execute("SELECT pg_advisory_unlock(%s)", [key])
        finally:
            conn.close()


__all__ = ["PgSyncState"]
