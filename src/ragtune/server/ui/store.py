"""What the web UI keeps: log-in sessions, each user's chat history and readers' feedback (one SQLite file).

Sessions are stored by the SHA-256 of their random id (the cookie holds the id; the file never does) with the
credential they were opened with, so every request re-checks that credential: an API key's id (a revoked key
ends its sessions) or an OIDC access token (re-verified, so the session ends when the token expires).
History and feedback belong to a principal (user and groups): a user sees only entries made with the same rights,
so a key with fewer groups never shows answers drawn from documents it may no longer read.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.core import Principal
from ragtune.errors import ConfigError

SESSION_TTL_S = 8 * 3600
OIDC_LOGIN_TTL_S = 600  # how long a started OIDC log-in may take at the provider
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    sid_sha256 BLOB PRIMARY KEY, kind TEXT NOT NULL, credential TEXT NOT NULL, csrf TEXT NOT NULL,
    created_at REAL NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS oidc_logins (
    state_sha256 BLOB PRIMARY KEY, verifier TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, asked_at REAL NOT NULL,
    question TEXT NOT NULL, answer TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS history_owner ON history (owner, id);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT, history_id INTEGER NOT NULL, user TEXT NOT NULL, at REAL NOT NULL,
    verdict TEXT NOT NULL, comment TEXT NOT NULL, question TEXT NOT NULL, answer TEXT NOT NULL);
"""


def owner_of(principal: Principal) -> str:
    """The history key of a principal: its user and exact groups."""
    return json.dumps([principal.user, sorted(principal.groups)])


def _sha(sid: str) -> bytes:
    return hashlib.sha256(sid.encode()).digest()


@dataclass(frozen=True)
class Session:
    """An open log-in: the credential it stands for (``kind`` ``api_key``: the key's id; ``oidc``: the access
    token) and the token its forms must carry."""

    kind: str
    credential: str
    csrf: str


@dataclass(frozen=True)
class HistoryItem:
    """One question asked in the chat and what was answered (the API's answer body)."""

    id: int
    asked_at: float
    question: str
    answer: dict[str, Any]


class UiStore:
    """The UI's SQLite file (WAL, created owner-only), next to the key store."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self._ready = False

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            if not self._ready:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(_SCHEMA)
                self._ready = True
            yield conn
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"the web UI's store {self.path} cannot be used ({exc}); move it away to start "
                              f"afresh (sessions, chat history and feedback are lost)") from None
        finally:
            conn.close()

    # -- sessions ------------------------------------------------------------------------------------------

    def open_session(self, kind: str, credential: str, ttl_s: float = SESSION_TTL_S) -> tuple[str, Session]:
        """A new session for a verified credential: its id (for the cookie, shown once) and record."""
        sid, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), self.clock()
        with self._connect() as conn:
            conn.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
            conn.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
                         (_sha(sid), kind, credential, csrf, now, now + min(ttl_s, SESSION_TTL_S)))
        return sid, Session(kind, credential, csrf)

    def session(self, sid: str | None) -> Session | None:
        """The live session a cookie names, or None (unknown, expired or logged out)."""
        if not sid or len(sid) > 100:
            return None
        with self._connect() as conn:
            row = conn.execute("SELECT kind, credential, csrf FROM sessions WHERE sid_sha256 = ? AND expires_at >= ?",
                               (_sha(sid), self.clock())).fetchone()
        return Session(row[0], row[1], row[2]) if row else None

    def close_session(self, sid: str) -> None:
        """Log out: the session is gone."""
        with self._connect() as conn:
            conn.execute("DELETE FROM sessions WHERE sid_sha256 = ?", (_sha(sid),))

    def start_oidc_login(self, state: str, verifier: str) -> None:
        """Remember a started OIDC log-in: its PKCE code verifier, under the SHA-256 of its ``state``."""
        now = self.clock()
        with self._connect() as conn:
            conn.execute("DELETE FROM oidc_logins WHERE expires_at < ?", (now,))
            conn.execute("INSERT INTO oidc_logins VALUES (?, ?, ?)", (_sha(state), verifier, now + OIDC_LOGIN_TTL_S))

    def finish_oidc_login(self, state: str) -> str | None:
        """The code verifier of the log-in ``state`` names, once (it is deleted), or None: unknown or expired."""
        with self._connect() as conn:
            row = conn.execute("DELETE FROM oidc_logins WHERE state_sha256 = ? AND expires_at >= ? RETURNING verifier",
                               (_sha(state), self.clock())).fetchone()
        return str(row[0]) if row else None

    # -- history -------------------------------------------------------------------------------------------

    def add_history(self, principal: Principal, question: str, answer: dict[str, Any]) -> int:
        """Keep one asked question and its answer for ``principal``; returns its id."""
        with self._connect() as conn:
            cur = conn.execute("INSERT INTO history (owner, asked_at, question, answer) VALUES (?, ?, ?, ?)",
                               (owner_of(principal), self.clock(), question, json.dumps(answer)))
        return int(cur.lastrowid or 0)

    def history(self, principal: Principal, limit: int = 100) -> list[HistoryItem]:
        """``principal``'s own questions and answers, newest first."""
        with self._connect() as conn:
            rows = conn.execute("SELECT id, asked_at, question, answer FROM history WHERE owner = ? "
                                "ORDER BY id DESC LIMIT ?", (owner_of(principal), limit)).fetchall()
        return [HistoryItem(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def history_item(self, principal: Principal, item_id: int) -> HistoryItem | None:
        """One of ``principal``'s own history entries, or None (another user's looks the same as none)."""
        with self._connect() as conn:
            r = conn.execute("SELECT id, asked_at, question, answer FROM history WHERE owner = ? AND id = ?",
                             (owner_of(principal), item_id)).fetchone()
        return HistoryItem(r[0], r[1], r[2], json.loads(r[3])) if r else None

    # -- feedback ------------------------------------------------------------------------------------------

    def add_feedback(self, principal: Principal, item: HistoryItem, verdict: str, comment: str) -> None:
        """A reader's verdict on one of their answers: a labelled example (question, answer, cited chunks)."""
        with self._connect() as conn:
            conn.execute("INSERT INTO feedback (history_id, user, at, verdict, comment, question, answer) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", (item.id, principal.user, self.clock(), verdict, comment,
                                                          item.question, json.dumps(item.answer)))

    def feedback(self) -> list[dict[str, Any]]:
        """Every verdict, oldest first, as labelled examples: what an admin exports for later tuning. ``owner`` is
        the history key (:func:`owner_of`: user and groups when they asked) of the answer judged, or None."""
        with self._connect() as conn:
            rows = conn.execute("SELECT f.id, f.user, f.at, f.verdict, f.comment, f.question, f.answer, h.owner "
                                "FROM feedback f LEFT JOIN history h ON h.id = f.history_id "
                                "ORDER BY f.id").fetchall()
        out = []
        for fid, user, at, verdict, comment, question, answer, owner in rows:
            a = json.loads(answer)
            out.append({"id": fid, "user": user, "owner": owner, "at": at, "verdict": verdict, "comment": comment,
                        "question": question, "answer": a.get("answer", ""), "abstained": a.get("abstained"),
                        "cited_chunks": [{"chunk_id": c["chunk_id"], "doc_id": c["doc_id"], "path": c["path"],
                                          "snippet": c.get("snippet", "")} for c in a.get("citations", [])]})
        return out
