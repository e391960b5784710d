"""The web UI's SQLite store: sessions (hashed ids, expiry, log-out), history and feedback owned by a principal
(user and exact groups), single-use OIDC log-ins."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ragtune.core import Principal
from ragtune.errors import ConfigError
from ragtune.server.ui.store import OIDC_LOGIN_TTL_S, SESSION_TTL_S, UiStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_sessions_are_stored_hashed_expire_and_end_at_log_out(tmp_path: Path) -> None:
    clock = Clock()
    store = UiStore(tmp_path / "ui.sqlite", clock=clock)
    sid, session = store.open_session("api_key", "0123456789abcdef")
    assert store.session(sid) == session and store.session("forged") is None and store.session(None) is None
    raw = (tmp_path / "ui.sqlite").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("ui.sqlite-*"))
    assert sid.encode() not in raw  # only the hash of the id is kept
    assert stat.S_IMODE((tmp_path / "ui.sqlite").stat().st_mode) == 0o600
    clock.now += SESSION_TTL_S + 1
    assert store.session(sid) is None
    sid2, _ = store.open_session("oidc", "a.b.c", ttl_s=60)
    clock.now += 61
    assert store.session(sid2) is None  # an OIDC session lasts no longer than its token
    sid3, _ = store.open_session("api_key", "0123456789abcdef")
    store.close_session(sid3)
    assert store.session(sid3) is None


def test_history_and_feedback_belong_to_the_user_and_their_exact_groups(tmp_path: Path) -> None:
    store = UiStore(tmp_path / "ui.sqlite")
    hana = Principal("hana", frozenset({"hr", "staff"}))
    hana_narrower = Principal("hana", frozenset({"staff"}))
    otto = Principal("otto", frozenset({"hr", "staff"}))
    answer = {"answer": "Sixteen weeks.", "abstained": False,
              "citations": [{"chunk_id": "c1", "doc_id": "d1", "path": "hr/leave.md", "snippet": "Sixteen weeks"}]}
    item_id = store.add_history(hana, "How long is leave?", answer)
    assert [h.question for h in store.history(hana)] == ["How long is leave?"]
    assert store.history(otto) == [] and store.history(hana_narrower) == []
    assert store.history_item(otto, item_id) is None and store.history_item(hana_narrower, item_id) is None
    item = store.history_item(hana, item_id)
    assert item is not None
    store.add_feedback(hana, item, "down", "too short")
    [row] = store.feedback()
    assert (row["user"], row["verdict"], row["comment"], row["question"], row["answer"]) == (
        "hana", "down", "too short", "How long is leave?", "Sixteen weeks.")
    assert row["cited_chunks"] == [{"chunk_id": "c1", "doc_id": "d1", "path": "hr/leave.md",
                                    "snippet": "Sixteen weeks"}]


def test_an_oidc_log_in_can_be_finished_once_and_not_after_it_expires(tmp_path: Path) -> None:
    clock = Clock()
    store = UiStore(tmp_path / "ui.sqlite", clock=clock)
    store.start_oidc_login("state-1", "verifier-1")
    assert store.finish_oidc_login("state-1") == "verifier-1"
    assert store.finish_oidc_login("state-1") is None
    store.start_oidc_login("state-2", "verifier-2")
    clock.now += OIDC_LOGIN_TTL_S + 1
    assert store.finish_oidc_login("state-2") is None
    assert store.finish_oidc_login("never-started") is None


def test_a_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ui.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="move it away"):
        UiStore(path).session("x" * 20)
