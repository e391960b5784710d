"""Conformance tests for a store's :class:`~ragtune.store.state.SyncState` (roots, sync log, metadata, lock).

A backend's suite mixes :class:`SyncStateTest` in next to the store suite; it uses the same ``store`` fixture.
"""

from __future__ import annotations

import pytest

from ragtune.errors import LockedError
from ragtune.store.base import Store
from ragtune.testing.store import StoreTestBase


class SyncStateTest(StoreTestBase):
    """Roots, the sync log and metadata survive a re-read; the write lock admits one holder at a time."""

    def test_roots_round_trip(self, store: Store) -> None:
        state = store.state
        assert state.roots() == {}
        state.set_roots({"/corpus/a": ["group:x"], "/corpus/b": []})
        assert state.roots() == {"/corpus/a": ["group:x"], "/corpus/b": []}
        state.set_roots({"/corpus/b": ["public"]})
        assert store.state.roots() == {"/corpus/b": ["public"]}

    def test_sync_log_is_oldest_first(self, store: Store) -> None:
        state = store.state
        assert state.sync_log() == []
        state.append_sync({"time": 2.0, "root": "/r", "ingested": 1})
        state.append_sync({"time": 1.0, "root": "/r", "ingested": 2})
        assert [e["time"] for e in store.state.sync_log()] == [1.0, 2.0]

    def test_meta_keys_are_set_one_at_a_time(self, store: Store) -> None:
        state = store.state
        state.set_meta("embedder", "m1")
        state.set_meta("other", 3)
        assert store.state.meta() == {"embedder": "m1", "other": 3}

    def test_write_lock_admits_one_holder(self, store: Store) -> None:
        with store.state.write_lock("first"), pytest.raises(LockedError, match="first"), \
                store.state.write_lock("second"):
            pass  # pragma: no cover - never entered
        with store.state.write_lock("third"):
            pass  # released after the first holder left
