"""LanceStore against the Store conformance suite shipped in ``ragtune.testing.store``, plus Lance-only cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.core import Principal
from ragtune.store.base import Store
from ragtune.store.lance import LanceStore, acl_filter
from ragtune.testing.store import LEGAL, ExportTest, StoreConformanceSuite, ids
from ragtune.testing.store_bulk import BulkLoadTest
from ragtune.testing.sync_state import SyncStateTest


class TestLanceStore(StoreConformanceSuite, SyncStateTest, ExportTest, BulkLoadTest):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Store:
        return LanceStore(tmp_path / "lance")

    # -- Lance only ---------------------------------------------------------------------------------------------
    def test_reopened_store_sees_the_same_data(self, filled_store: Store, tmp_path: Path) -> None:
        reopened = LanceStore(tmp_path / "lance")
        assert reopened.count() == filled_store.count() and reopened.version() == filled_store.version()
        assert ids(reopened.dense_search(self.vector("d1-00000"), LEGAL, 1)) == ["d1-00000"]

    def test_indexes_are_created_for_every_searched_column(self, filled_store: Store) -> None:
        assert isinstance(filled_store, LanceStore)
        indexed = {tuple(ix.columns) for ix in filled_store.table.list_indices()}
        assert {("search_text",), ("acl",), ("chunk_id",), ("vector",)} <= indexed

    def test_acl_filter_quotes_tokens(self) -> None:
        where = acl_filter(Principal("ann", frozenset({"legal"})))
        assert where == "array_has_any(acl, ['group:legal', 'public', 'user:ann'])"


class TestLanceStoreApproximate(StoreConformanceSuite, BulkLoadTest):
    """The same contract with the large-table path forced: an IVF-PQ vector index from the first row and every
    dense search through it (``exact_max_readable=0``), as on a store above ``ANN_MIN_ROWS`` chunks."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Store:
        return LanceStore(tmp_path / "lance", ann_min_rows=1, exact_max_readable=0)

