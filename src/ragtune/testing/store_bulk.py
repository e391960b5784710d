"""``Store.bulk_load``'s conformance cases, as a pytest mixin beside :mod:`ragtune.testing.store`::

    from ragtune.testing.store import StoreConformanceSuite
    from ragtune.testing.store_bulk import BulkLoadTest

    class TestMyStore(StoreConformanceSuite, BulkLoadTest):
        ...

A bulk load may defer index upkeep, never correctness: searches inside it, after it, and after one that failed
must return what the same writes followed by ``optimize()`` return, and filter by ACL as always.
"""

from __future__ import annotations

import pytest

from ragtune.store.base import Store
from ragtune.testing.store import ACLS, EVERYONE, LEGAL, OUTSIDER, TEXTS, StoreTestBase, ids, make_chunks


class BulkLoadTest(StoreTestBase):
    """``bulk_load()``: the same results as plain writes, ACLs inside, nothing lost on an error inside."""

    def load(self, store: Store) -> None:
        """Write the suite's corpus, one document a call."""
        for doc_id, texts in TEXTS.items():
            self.write(store, [doc_id], make_chunks(doc_id, texts, ACLS[doc_id]))

    def results(self, store: Store) -> list[list[str]]:
        """What a few searches return, as comparable values (ids sorted where scores tie)."""
        return [
            sorted(ids(store.lexical_search("backups", EVERYONE, 10))),
            sorted(ids(store.lexical_search("backups", LEGAL, 10, isolated=True))),
            ids(store.dense_search(self.vector("d4-00000"), EVERYONE, 3))[:1],
            ids(store.dense_search(self.vector("d1-00001"), LEGAL, 10))[:1],
            sorted(r.chunk_id for r in store.chunk_index()),
        ]

    def test_a_bulk_load_gives_what_plain_writes_give(self, store: Store) -> None:
        with store.bulk_load():
            self.load(store)
        bulk = self.results(store)
        assert bulk[0] == ["d1-00000", "d1-00001", "d4-00000"]
        assert bulk[3] == ["d1-00001"]
        # The same writes again, without the bulk load, after deleting everything.
        store.delete_documents(list(TEXTS))
        self.load(store)
        store.optimize()
        assert self.results(store) == bulk

    def test_searches_inside_a_bulk_load_are_correct_and_filtered(self, store: Store) -> None:
        with store.bulk_load():
            self.load(store)
            assert sorted(ids(store.lexical_search("backups", EVERYONE, 10))) == ["d1-00000", "d1-00001",
                                                                                 "d4-00000"]
            assert store.lexical_search("backups", OUTSIDER, 10) == []
            assert ids(store.dense_search(self.vector("d1-00000"), LEGAL, 1)) == ["d1-00000"]
            assert "d1-00000" not in ids(store.dense_search(self.vector("d1-00000"), OUTSIDER, 10))
            assert ids(store.dense_search(self.vector("d3-00000"), EVERYONE, 10)).count("d3-00000") == 0

    def test_an_error_inside_keeps_the_writes_and_optimize_completes(self, store: Store) -> None:
        with pytest.raises(RuntimeError, match="the source failed"), store.bulk_load():
            self.load(store)
            raise RuntimeError("the source failed")
        assert store.count() == sum(len(t) for t in TEXTS.values())
        inside = self.results(store)
        store.optimize()
        assert self.results(store) == inside
        assert inside[0] == ["d1-00000", "d1-00001", "d4-00000"]

    def test_a_bulk_load_into_a_filled_store_keeps_its_chunks(self, filled_store: Store) -> None:
        before = self.results(filled_store)
        with filled_store.bulk_load():
            self.write(filled_store, ["d5"], make_chunks("d5", ["Offsite backups are tested monthly."], ACLS["d2"]))
        assert ids(filled_store.dense_search(self.vector("d5-00000"), OUTSIDER, 1)) == ["d5-00000"]
        after = self.results(filled_store)
        assert after[0] == sorted([*before[0], "d5-00000"])
        assert after[4] == sorted([*before[4], "d5-00000"])


__all__ = ["BulkLoadTest"]
