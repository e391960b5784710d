"""The :class:`~ragtune.store.base.Store` conformance suite, as pytest mixins (Haystack's
``haystack/testing/document_store.py`` is the model). A backend passes it unchanged::

    from ragtune.testing.store import StoreConformanceSuite

    class TestMyStore(StoreConformanceSuite):
        @pytest.fixture
        def store(self, tmp_path):
            return MyStore(tmp_path)  # empty, accepting vectors of length ``vector_dim`` (384)

Each mixin (``DocumentsTest``, ``SearchAclTest``, ``ReplaceAtomicTest``, ``SetAclTest``, ``DeleteTest``,
``VersionTest``) can also be used alone. Vectors are seeded random unit vectors, one per chunk id, so the suite
needs no embedding model: a query with a chunk's own vector finds that chunk at similarity 1 and the others near
0. Lexical cases search for words that occur in the texts, so any BM25 backend finds them. Needs pytest.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from ragtune.core import Acl, Chunk, Principal
from ragtune.store.base import Store

TEXTS: dict[str, list[str]] = {
    "d1": ["Backups run nightly and are stored in two regions.", "Backups are deleted after 90 days."],
    "d2": ["Employees get 25 days of paid vacation per year."],
    "d3": ["The merger with Initech closes next spring."],
    # Long, with "backups" once: it ranks below d1's chunks, which carol cannot read (see the pre-filter cases).
    "d4": ["Salary bands for every engineering level are reviewed each spring by the compensation committee, "
           "and the payroll spreadsheet backups are encrypted at rest."],
}
ACLS: dict[str, Acl] = {
    "d1": Acl(groups=frozenset({"legal"})),
    "d2": Acl(public=True),
    "d3": Acl(),  # nobody
    "d4": Acl(users=frozenset({"carol"}), groups=frozenset({"hr"})),
}
LEGAL = Principal("ann", frozenset({"legal"}))
OUTSIDER = Principal("bob")
CAROL = Principal("carol")
# Reads every document but d3, whose empty ACL no principal can match.
EVERYONE = Principal("root", frozenset({"legal", "hr", "admin", "public"}))
SYNCED_AT = 5.0


def make_chunks(doc_id: str, texts: Sequence[str], acl: Acl, doc_hash: str = "h1") -> list[Chunk]:
    """One chunk per text, ids ``<doc_id>-00000``, ``-00001``...; every field set so round trips are checked."""
    return [
        Chunk(
            chunk_id=f"{doc_id}-{i:05d}", doc_id=doc_id, source_path=f"/src/{doc_id}.md", title=doc_id.upper(),
            section_path=("Top", "Sub"), page=None if i else 1, char_start=i * 100, char_end=i * 100 + len(t),
            text=t, content_hash=f"c{i}", doc_hash=doc_hash, mtime=1.0, acl=tuple(acl.tokens()), ordinal=i,
        )
        for i, t in enumerate(texts)
    ]


def unit_vector(key: str, dim: int) -> np.ndarray:
    """A random unit vector seeded by ``key``: the same key always gives the same vector."""
    v = np.random.default_rng(zlib.crc32(key.encode("utf-8"))).standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def corpus_chunks() -> list[Chunk]:
    """Every chunk of the suite's corpus (:data:`TEXTS` with :data:`ACLS`)."""
    return [c for doc_id, texts in TEXTS.items() for c in make_chunks(doc_id, texts, ACLS[doc_id])]


def ids(hits: Sequence[tuple[str, float]]) -> list[str]:
    """The chunk ids of search hits, in order."""
    return [cid for cid, _ in hits]


def docs_of(hits: Sequence[tuple[str, float]]) -> set[str]:
    """The document ids of search hits (the suite's chunk ids are ``<doc_id>-<n>``)."""
    return {cid.rsplit("-", 1)[0] for cid, _ in hits}


class StoreTestBase:
    """The fixtures and helpers every mixin uses. Override ``store``; set ``vector_dim`` if not 384."""

    vector_dim: ClassVar[int] = 384

    @pytest.fixture
    def store(self, tmp_path: Path) -> Store:
        """An empty store of the backend under test: override this fixture in the backend's test class."""
        raise NotImplementedError(f"{type(self).__name__} must override the `store` fixture to return an empty "
                                  "Store of the backend under test")

    @pytest.fixture
    def filled_store(self, store: Store) -> Store:
        """The store holding the suite's corpus, optimized."""
        for doc_id, texts in TEXTS.items():
            self.write(store, [doc_id], make_chunks(doc_id, texts, ACLS[doc_id]))
        store.optimize()
        return store

    def vector(self, chunk_id: str) -> np.ndarray:
        """The vector the suite stores for ``chunk_id``."""
        return unit_vector(chunk_id, self.vector_dim)

    def vectors(self, chunks: Sequence[Chunk]) -> np.ndarray:
        """The suite's vectors for ``chunks``, one row each."""
        return np.stack([self.vector(c.chunk_id) for c in chunks]) if chunks else np.zeros(
            (0, self.vector_dim), dtype=np.float32)

    def write(self, store: Store, doc_ids: Sequence[str], chunks: Sequence[Chunk],
              synced_at: float = SYNCED_AT) -> None:
        """``replace_documents`` with the suite's vectors."""
        store.replace_documents(doc_ids, chunks, self.vectors(chunks), synced_at=synced_at)

    @staticmethod
    def snapshot(store: Store) -> list[tuple[str, str, str, tuple[str, ...]]]:
        """Every chunk's identity, sorted: compare before and after a refused write."""
        return sorted((r.chunk_id, r.doc_id, r.doc_hash, r.acl) for r in store.chunk_index())


class DocumentsTest(StoreTestBase):
    """The manifest, counts, the chunk index, the ACL tokens and ``get_chunks`` round trips."""

    def test_implements_the_store_protocol(self, store: Store) -> None:
        assert isinstance(store, Store)

    def test_an_empty_store_is_empty(self, store: Store) -> None:
        assert store.count() == 0 and store.documents() == [] and store.chunk_index() == []
        assert store.acl_tokens() == set()
        assert store.readable_texts(EVERYONE) == []
        assert store.lexical_search("backups", EVERYONE, 10) == []
        assert store.lexical_search("backups", EVERYONE, 10, isolated=True) == []
        assert store.dense_search(self.vector("d1-00000"), EVERYONE, 10) == []
        assert store.get_chunks(["d1-00000"], EVERYONE) == {}
        assert isinstance(store.version(), int)

    def test_documents_are_derived_from_chunks(self, filled_store: Store) -> None:
        docs = {d.doc_id: d for d in filled_store.documents()}
        assert set(docs) == set(TEXTS) and len(filled_store.documents()) == len(TEXTS)
        d1 = docs["d1"]
        assert (d1.chunks, d1.acl, d1.synced_at, d1.doc_hash) == (2, ("group:legal",), SYNCED_AT, "h1")
        assert (d1.source_path, d1.title, d1.mtime) == ("/src/d1.md", "D1", 1.0)
        assert docs["d3"].acl == () and docs["d4"].acl == ("group:hr", "user:carol")
        assert filled_store.count() == sum(len(t) for t in TEXTS.values())

    def test_chunk_index_lists_every_chunk_once(self, filled_store: Store) -> None:
        rows = filled_store.chunk_index()
        expected = {c.chunk_id: c for c in corpus_chunks()}
        assert sorted(r.chunk_id for r in rows) == sorted(expected)
        for r in rows:
            c = expected[r.chunk_id]
            assert (r.doc_id, r.source_path, r.doc_hash, r.acl) == (c.doc_id, c.source_path, c.doc_hash, c.acl)

    def test_acl_tokens_are_the_distinct_tokens_of_every_chunk(self, filled_store: Store) -> None:
        assert filled_store.acl_tokens() == {"group:legal", "public", "group:hr", "user:carol"}  # d3 has none
        filled_store.set_acl("d2", ["group:Staff"], SYNCED_AT)
        assert "public" not in filled_store.acl_tokens() and "group:Staff" in filled_store.acl_tokens()

    def test_get_chunks_round_trips_every_field(self, filled_store: Store) -> None:
        readable = [c for c in corpus_chunks() if EVERYONE.can_read(c.acl)]
        got = filled_store.get_chunks([c.chunk_id for c in readable], EVERYONE)
        assert got == {c.chunk_id: c for c in readable}

    def test_get_chunks_filters_by_acl_and_ignores_unknown_ids(self, filled_store: Store) -> None:
        got = filled_store.get_chunks(["d1-00000", "d1-00001", "d2-00000", "d4-00000", "nope-00000"], OUTSIDER)
        assert set(got) == {"d2-00000"}
        assert set(filled_store.get_chunks(["d4-00000", "d1-00000"], CAROL)) == {"d4-00000"}
        assert filled_store.get_chunks([], EVERYONE) == {}


class SearchAclTest(StoreTestBase):
    """Both searches and ``readable_texts`` filter by ACL inside the query, before ranking and top-k."""

    def test_lexical_search_respects_acl(self, filled_store: Store) -> None:
        assert docs_of(filled_store.lexical_search("backups", LEGAL, 10)) == {"d1"}
        assert docs_of(filled_store.lexical_search("backups", CAROL, 10)) == {"d4"}
        assert filled_store.lexical_search("backups", OUTSIDER, 10) == []
        hits = filled_store.lexical_search("backups", EVERYONE, 10)
        assert all(a[1] >= b[1] for a, b in zip(hits, hits[1:], strict=False))  # best first

    def test_lexical_acl_filter_is_inside_the_query_not_after_top_k(self, filled_store: Store) -> None:
        # d1's short chunks outrank d4's long one; a post-filter would take d1's best, drop it and return nothing.
        assert ids(filled_store.lexical_search("backups", CAROL, 1)) == ["d4-00000"]
        assert ids(filled_store.lexical_search("backups", CAROL, 1, isolated=True)) == ["d4-00000"]

    def test_dense_search_respects_acl_best_first(self, filled_store: Store) -> None:
        q = self.vector("d1-00000")
        assert ids(filled_store.dense_search(q, OUTSIDER, 10)) == ["d2-00000"]
        hits = filled_store.dense_search(q, LEGAL, 10)
        assert set(ids(hits)) == {"d1-00000", "d1-00001", "d2-00000"}
        assert hits[0][0] == "d1-00000" and hits[0][1] == pytest.approx(1.0, abs=1e-3)
        assert all(a[1] >= b[1] for a, b in zip(hits, hits[1:], strict=False))

    def test_dense_acl_filter_is_inside_the_query_not_after_top_k(self, filled_store: Store) -> None:
        # With k=1 a post-filter would return the best unreadable chunk and then drop it, leaving nothing.
        assert ids(filled_store.dense_search(self.vector("d1-00000"), OUTSIDER, 1)) == ["d2-00000"]
        nearest = max(("d2-00000", "d4-00000"), key=lambda cid: float(self.vector(cid) @ self.vector("d1-00000")))
        assert ids(filled_store.dense_search(self.vector("d1-00000"), CAROL, 1)) == [nearest]

    def test_dense_scores_are_cosine_similarities(self, filled_store: Store) -> None:
        q = self.vector("d2-00000") + 0.5 * self.vector("d4-00000")  # not unit length: cosine, not dot product
        hits = filled_store.dense_search(q, EVERYONE, 10)
        expected = {c.chunk_id: float(self.vector(c.chunk_id) @ q) / float(np.linalg.norm(q))
                    for c in corpus_chunks() if EVERYONE.can_read(c.acl)}
        assert ids(hits) == sorted(expected, key=lambda cid: -expected[cid])
        assert [s for _, s in hits] == pytest.approx([expected[cid] for cid, _ in hits], abs=1e-3)

    def test_empty_acl_is_readable_by_nobody(self, filled_store: Store) -> None:
        assert filled_store.lexical_search("Initech merger", EVERYONE, 10) == []
        assert filled_store.lexical_search("Initech merger", EVERYONE, 10, isolated=True) == []
        assert "d3-00000" not in ids(filled_store.dense_search(self.vector("d3-00000"), EVERYONE, 10))
        assert filled_store.get_chunks(["d3-00000"], EVERYONE) == {}
        assert "d3-00000" not in {cid for cid, _ in filled_store.readable_texts(EVERYONE)}

    def test_k_larger_than_the_row_count_returns_every_readable_match_once(self, filled_store: Store) -> None:
        readable = sorted(c.chunk_id for c in corpus_chunks() if EVERYONE.can_read(c.acl))
        assert sorted(ids(filled_store.dense_search(self.vector("d2-00000"), EVERYONE, 50))) == readable
        for isolated in (False, True):
            hits = ids(filled_store.lexical_search("backups", EVERYONE, 50, isolated=isolated))
            assert sorted(hits) == ["d1-00000", "d1-00001", "d4-00000"]

    def test_readable_texts_returns_exactly_the_readable_chunks(self, filled_store: Store) -> None:
        for principal in (LEGAL, OUTSIDER, CAROL, EVERYONE):
            expected = sorted((c.chunk_id, c.search_text) for c in corpus_chunks() if principal.can_read(c.acl))
            assert sorted(filled_store.readable_texts(principal)) == expected

    def test_isolated_lexical_search_returns_only_readable_chunks(self, filled_store: Store) -> None:
        for principal in (LEGAL, OUTSIDER, CAROL, EVERYONE):
            readable = {c.chunk_id for c in corpus_chunks() if principal.can_read(c.acl)}
            for query in ("backups", "vacation", "Initech merger", "spring"):
                hits = ids(filled_store.lexical_search(query, principal, 10, isolated=True))
                assert set(hits) <= readable and len(hits) == len(set(hits))
        assert docs_of(filled_store.lexical_search("backups", LEGAL, 10, isolated=True)) == {"d1"}

    def test_isolated_scores_do_not_depend_on_unreadable_chunks(self, filled_store: Store) -> None:
        before = filled_store.lexical_search("vacation days", OUTSIDER, 10, isolated=True)
        hidden = make_chunks("h1", [f"Vacation days rule number {i}." for i in range(6)], ACLS["d1"])
        self.write(filled_store, ["h1"], hidden)
        after = filled_store.lexical_search("vacation days", OUTSIDER, 10, isolated=True)
        assert ids(after) == ids(before) == ["d2-00000"]
        assert [s for _, s in after] == pytest.approx([s for _, s in before])


class ReplaceAtomicTest(StoreTestBase):
    """``replace_documents`` makes the given chunks the only chunks of the documents, or refuses and writes
    nothing."""

    def test_replace_drops_stale_chunks_and_leaves_other_documents(self, filled_store: Store) -> None:
        v0 = filled_store.version()
        new = make_chunks("d1", ["Backups are kept for one year."], ACLS["d1"], doc_hash="h2")
        self.write(filled_store, ["d1"], new, synced_at=6.0)
        assert filled_store.version() != v0
        docs = {d.doc_id: d for d in filled_store.documents()}
        assert (docs["d1"].chunks, docs["d1"].doc_hash, docs["d1"].synced_at) == (1, "h2", 6.0)
        assert filled_store.get_chunks(["d1-00001"], LEGAL) == {}
        assert filled_store.get_chunks(["d1-00000"], LEGAL)["d1-00000"].text == "Backups are kept for one year."
        assert docs["d2"].chunks == 1 and docs["d2"].synced_at == SYNCED_AT  # other documents untouched
        assert filled_store.count() == sum(len(t) for t in TEXTS.values()) - 1

    def test_new_chunks_are_found_before_and_after_optimize(self, filled_store: Store) -> None:
        new = make_chunks("d5", ["Zebras graze near the north office."], ACLS["d2"])
        self.write(filled_store, ["d5"], new)
        for _ in range(2):  # before optimize, then after
            assert ids(filled_store.lexical_search("zebras", OUTSIDER, 5)) == ["d5-00000"]
            assert ids(filled_store.lexical_search("zebras", OUTSIDER, 5, isolated=True)) == ["d5-00000"]
            assert ids(filled_store.dense_search(self.vector("d5-00000"), OUTSIDER, 1)) == ["d5-00000"]
            filled_store.optimize()

    def test_replace_several_documents_in_one_call(self, filled_store: Store) -> None:
        new = (make_chunks("d1", ["One.", "Two.", "Three."], ACLS["d1"], doc_hash="h2")
               + make_chunks("d2", ["Vacation is 30 days."], ACLS["d2"], doc_hash="h2"))
        self.write(filled_store, ["d1", "d2"], new, synced_at=6.0)
        docs = {d.doc_id: d for d in filled_store.documents()}
        assert (docs["d1"].chunks, docs["d2"].chunks, docs["d2"].doc_hash) == (3, 1, "h2")
        assert docs["d4"].doc_hash == "h1"

    def test_replace_with_no_chunks_removes_the_document(self, filled_store: Store) -> None:
        self.write(filled_store, ["d1"], [])
        assert "d1" not in {d.doc_id for d in filled_store.documents()}
        assert filled_store.lexical_search("backups", LEGAL, 10) == []

    def test_replace_nothing_is_a_no_op(self, filled_store: Store) -> None:
        before = self.snapshot(filled_store)
        self.write(filled_store, [], [])
        assert self.snapshot(filled_store) == before

    def test_chunks_of_a_document_not_being_replaced_are_refused(self, filled_store: Store) -> None:
        before = self.snapshot(filled_store)
        stray = make_chunks("d1", ["New d1."], ACLS["d1"], "h2") + make_chunks("d2", ["Stray."], ACLS["d2"], "h2")
        with pytest.raises(ValueError):
            self.write(filled_store, ["d1"], stray)
        assert self.snapshot(filled_store) == before

    def test_chunks_with_no_document_being_replaced_are_refused(self, filled_store: Store) -> None:
        before = self.snapshot(filled_store)
        with pytest.raises(ValueError):
            self.write(filled_store, [], make_chunks("d9", ["Stray."], ACLS["d2"]))
        assert self.snapshot(filled_store) == before

    def test_duplicate_chunk_ids_in_one_write_are_refused(self, filled_store: Store) -> None:
        before = self.snapshot(filled_store)
        chunk = make_chunks("d9", ["Twice."], ACLS["d2"])[0]
        with pytest.raises(ValueError):
            self.write(filled_store, ["d9"], [chunk, chunk])
        assert self.snapshot(filled_store) == before

    def test_vector_count_mismatch_is_refused(self, filled_store: Store) -> None:
        before = self.snapshot(filled_store)
        chunks = make_chunks("d9", ["x y z"], ACLS["d2"])
        with pytest.raises(ValueError):
            filled_store.replace_documents(["d9"], chunks, np.zeros((2, self.vector_dim), np.float32), synced_at=1.0)
        assert self.snapshot(filled_store) == before


class SetAclTest(StoreTestBase):
    """``set_acl`` re-permissions every chunk of a document everywhere, keeping its vectors."""

    def test_set_acl_takes_effect_everywhere_without_reembedding(self, filled_store: Store) -> None:
        filled_store.set_acl("d1", ["public"], synced_at=7.0)
        assert docs_of(filled_store.lexical_search("backups", OUTSIDER, 10)) == {"d1"}
        assert docs_of(filled_store.lexical_search("backups", OUTSIDER, 10, isolated=True)) == {"d1"}
        hits = filled_store.dense_search(self.vector("d1-00000"), OUTSIDER, 1)
        assert ids(hits) == ["d1-00000"] and hits[0][1] == pytest.approx(1.0, abs=1e-3)  # vector kept
        assert filled_store.get_chunks(["d1-00001"], OUTSIDER)["d1-00001"].acl == ("public",)
        assert {"d1-00000", "d1-00001"} <= {cid for cid, _ in filled_store.readable_texts(OUTSIDER)}
        docs = {d.doc_id: d for d in filled_store.documents()}
        assert (docs["d1"].acl, docs["d1"].synced_at, docs["d1"].chunks) == (("public",), 7.0, 2)
        assert {r.acl for r in filled_store.chunk_index() if r.doc_id == "d1"} == {("public",)}

    def test_set_acl_to_nobody_locks_everyone_out(self, filled_store: Store) -> None:
        filled_store.set_acl("d1", [], synced_at=8.0)
        assert filled_store.lexical_search("backups", LEGAL, 10) == []
        assert filled_store.lexical_search("backups", LEGAL, 10, isolated=True) == []
        assert not {"d1-00000", "d1-00001"} & set(ids(filled_store.dense_search(self.vector("d1-00000"), LEGAL, 10)))
        assert filled_store.get_chunks(["d1-00000"], LEGAL) == {}
        assert [cid for cid, _ in filled_store.readable_texts(LEGAL)] == ["d2-00000"]

    def test_set_acl_of_an_unknown_document_is_a_no_op(self, filled_store: Store) -> None:
        before = self.snapshot(filled_store)
        filled_store.set_acl("nope", ["public"], synced_at=9.0)
        assert self.snapshot(filled_store) == before


class DeleteTest(StoreTestBase):
    """``delete_documents`` removes every chunk of the documents from every query."""

    def test_delete_documents_removes_every_chunk(self, filled_store: Store) -> None:
        filled_store.delete_documents(["d1", "d4"])
        assert {d.doc_id for d in filled_store.documents()} == {"d2", "d3"}
        assert filled_store.count() == 2 and {r.doc_id for r in filled_store.chunk_index()} == {"d2", "d3"}
        assert filled_store.lexical_search("backups", EVERYONE, 10) == []
        assert filled_store.lexical_search("backups", EVERYONE, 10, isolated=True) == []
        assert ids(filled_store.dense_search(self.vector("d1-00000"), EVERYONE, 10)) == ["d2-00000"]
        assert filled_store.get_chunks(["d1-00000", "d4-00000"], EVERYONE) == {}

    def test_deleting_an_unknown_id_is_a_no_op(self, filled_store: Store) -> None:
        before = self.snapshot(filled_store)
        filled_store.delete_documents(["nope"])
        filled_store.delete_documents([])
        assert self.snapshot(filled_store) == before

    def test_deleting_from_an_empty_store_is_a_no_op(self, store: Store) -> None:
        store.delete_documents(["nope"])
        assert store.count() == 0


class VersionTest(StoreTestBase):
    """``version()`` changes with every change of the stored data (caches key on it), and only then."""

    def test_version_changes_after_replace(self, filled_store: Store) -> None:
        v0 = filled_store.version()
        self.write(filled_store, ["d2"], make_chunks("d2", ["Vacation is 30 days."], ACLS["d2"], "h2"))
        assert filled_store.version() != v0

    def test_version_changes_after_set_acl(self, filled_store: Store) -> None:
        v0 = filled_store.version()
        filled_store.set_acl("d1", ["public"], synced_at=7.0)
        assert filled_store.version() != v0

    def test_version_changes_after_delete_documents(self, filled_store: Store) -> None:
        v0 = filled_store.version()
        filled_store.delete_documents(["d1"])
        assert filled_store.version() != v0

    def test_reads_do_not_change_the_version(self, filled_store: Store) -> None:
        v0 = filled_store.version()
        filled_store.lexical_search("backups", LEGAL, 5)
        filled_store.lexical_search("backups", LEGAL, 5, isolated=True)
        filled_store.dense_search(self.vector("d1-00000"), LEGAL, 5)
        filled_store.get_chunks(["d1-00000"], LEGAL)
        filled_store.readable_texts(LEGAL)
        filled_store.documents()
        filled_store.chunk_index()
        assert filled_store.version() == v0

    def test_optimize_keeps_search_results(self, filled_store: Store) -> None:
        self.write(filled_store, ["d5"], make_chunks("d5", ["More backups notes."], ACLS["d2"]))
        before = (sorted(ids(filled_store.lexical_search("backups", EVERYONE, 10))),
                  ids(filled_store.dense_search(self.vector("d5-00000"), EVERYONE, 10))[:1])
        filled_store.optimize()
        after = (sorted(ids(filled_store.lexical_search("backups", EVERYONE, 10))),
                 ids(filled_store.dense_search(self.vector("d5-00000"), EVERYONE, 10))[:1])
        assert after == before


class StoreConformanceSuite(DocumentsTest, SearchAclTest, ReplaceAtomicTest, SetAclTest, DeleteTest, VersionTest):
    """Every conformance mixin; the ACL-leakage property is in :mod:`ragtune.testing.store_properties`."""



class ExportTest(StoreTestBase):
    """``iter_chunks``: the admin export ``ragtune migrate`` copies from. Every chunk (readable by nobody
    included) with its vector and ACL, in batches, ordered by (doc_id, ordinal, chunk_id) as code points."""

    @staticmethod
    def exported(store: Store, batch_size: int = 1000) -> tuple[list[Chunk], np.ndarray, list[int]]:
        """Every exported chunk, the vectors stacked, and the batch sizes."""
        chunks: list[Chunk] = []
        vectors: list[np.ndarray] = []
        sizes: list[int] = []
        for batch, matrix in store.iter_chunks(batch_size=batch_size):
            assert isinstance(matrix, np.ndarray) and matrix.dtype == np.float32
            assert matrix.ndim == 2 and matrix.shape[0] == len(batch) > 0
            chunks.extend(batch)
            vectors.append(matrix)
            sizes.append(len(batch))
        return chunks, (np.concatenate(vectors) if vectors else np.zeros((0, 0), np.float32)), sizes

    @staticmethod
    def export_order(chunks: Sequence[Chunk]) -> list[Chunk]:
        """``chunks`` in the export's order."""
        return sorted(chunks, key=lambda c: (c.doc_id, c.ordinal, c.chunk_id))

    def test_an_empty_store_exports_nothing(self, store: Store) -> None:
        assert list(store.iter_chunks()) == []

    def test_every_chunk_comes_back_with_its_vector_and_acl(self, filled_store: Store) -> None:
        chunks, vectors, sizes = self.exported(filled_store, batch_size=2)
        assert sizes == [2, 2, 1]
        # Every field, the ACL included; d3 (readable by nobody, empty ACL) too: an export is not a query.
        assert chunks == self.export_order(corpus_chunks())
        assert [c.acl for c in chunks if c.doc_id == "d3"] == [()]
        assert vectors.shape == (len(chunks), self.vector_dim)
        for chunk, vector in zip(chunks, vectors, strict=True):
            np.testing.assert_allclose(vector, self.vector(chunk.chunk_id), rtol=0, atol=1e-6)

    def test_the_order_is_document_then_ordinal_then_id_as_code_points(self, store: Store) -> None:
        from dataclasses import replace

        acl = ACLS["d2"]
        # Doc ids whose code-point order differs from a locale's ("B" < "a" < "a-2" < "b" < "é"); ordinals that
        # sort differently as text (9 before 10) and as ids; two chunks sharing an ordinal (then by id).
        spec = {
            "b": [("b-z", 0), ("b-y", 0), ("b-a", 1)],
            "a": [("a-1", 10), ("a-2", 9)],
            "é": [("é-0", 0)],
            "B": [("B-0", 0)],
            "a-2": [("a-2-0", 0)],
        }
        written: list[Chunk] = []
        for doc_id, parts in spec.items():
            base = make_chunks(doc_id, [f"Text {cid}." for cid, _ in parts], acl)
            chunks = [replace(c, chunk_id=cid, ordinal=ordinal) for c, (cid, ordinal) in zip(base, parts, strict=True)]
            self.write(store, [doc_id], chunks)
            written.extend(chunks)
        chunks, _, sizes = self.exported(store, batch_size=3)
        assert [c.chunk_id for c in chunks] == ["B-0", "a-2", "a-1", "a-2-0", "b-y", "b-z", "b-a", "é-0"]
        assert chunks == self.export_order(written) and sizes == [3, 3, 2]
        assert self.exported(store, batch_size=3)[0] == chunks  # stable

    def test_the_export_follows_writes(self, filled_store: Store) -> None:
        filled_store.delete_documents(["d1"])
        filled_store.set_acl("d2", ["group:staff"], synced_at=7.0)
        self.write(filled_store, ["d4"], make_chunks("d4", ["New salary text.", "Second part."], ACLS["d4"], "h2"))
        chunks, vectors, _ = self.exported(filled_store)
        assert {c.doc_id for c in chunks} == {"d2", "d3", "d4"}
        assert [c.acl for c in chunks if c.doc_id == "d2"] == [("group:staff",)]
        assert [(c.text, c.doc_hash) for c in chunks if c.doc_id == "d4"] == [("New salary text.", "h2"),
                                                                               ("Second part.", "h2")]
        np.testing.assert_allclose(vectors[-1], self.vector("d4-00001"), rtol=0, atol=1e-6)

    def test_a_batch_size_below_one_is_refused(self, filled_store: Store) -> None:
        with pytest.raises(ValueError):
            list(filled_store.iter_chunks(batch_size=0))

    def test_stopping_an_export_early_leaves_the_store_usable(self, filled_store: Store) -> None:
        export = filled_store.iter_chunks(batch_size=1)
        first, _ = next(export)
        getattr(export, "close", lambda: None)()  # a generator's close(): what a consumer that stops does
        assert first[0].chunk_id == "d1-00000"
        filled_store.delete_documents(["d2"])
        assert [c.doc_id for c in self.exported(filled_store)[0]] == ["d1", "d1", "d3", "d4"]

__all__ = [
    "ACLS", "CAROL", "EVERYONE", "LEGAL", "OUTSIDER", "TEXTS", "DeleteTest", "DocumentsTest", "ExportTest",
    "ReplaceAtomicTest", "SearchAclTest", "SetAclTest", "StoreConformanceSuite", "StoreTestBase", "VersionTest",
    "corpus_chunks", "docs_of", "ids", "make_chunks", "unit_vector",
]
