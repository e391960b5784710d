"""The Store conformance suite: every backend must pass it unchanged (add factories to STORES)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ragtune.core import Acl, Chunk, Principal
from ragtune.models.embedder import MiniLMEmbedder
from ragtune.store.base import Store
from ragtune.store.lance import LanceStore

STORES: dict[str, Callable[[Path], Store]] = {
    "lance": lambda p: LanceStore(p / "lance"),
}

TEXTS = {
    "d1": ["Backups run nightly and are stored in two regions.", "Backups are deleted after 90 days."],
    "d2": ["Employees get 25 days of paid vacation per year."],
    "d3": ["The merger with Initech closes next spring."],
}
ACLS = {"d1": Acl(groups=frozenset({"legal"})), "d2": Acl(public=True), "d3": Acl()}


def make_chunks(doc_id: str, texts: list[str], acl: Acl, doc_hash: str = "h1") -> list[Chunk]:
    return [
        Chunk(
            chunk_id=f"{doc_id}-{i:05d}", doc_id=doc_id, source_path=f"/src/{doc_id}.md", title=doc_id.upper(),
            section_path=("Top", "Sub"), page=None if i else 1, char_start=i * 100, char_end=i * 100 + len(t),
            text=t, content_hash=f"c{i}", doc_hash=doc_hash, mtime=1.0, acl=tuple(acl.tokens()), ordinal=i,
        )
        for i, t in enumerate(texts)
    ]


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path, embedder: MiniLMEmbedder) -> Store:
    s = STORES[request.param](tmp_path)
    for doc_id, texts in TEXTS.items():
        chunks = make_chunks(doc_id, texts, ACLS[doc_id])
        s.replace_documents([doc_id], chunks, embedder.embed([c.search_text for c in chunks]), synced_at=5.0)
    s.optimize()
    return s


LEGAL = Principal("ann", frozenset({"legal"}))
OUTSIDER = Principal("bob")


def test_documents_are_derived_from_chunks(store: Store) -> None:
    docs = {d.doc_id: d for d in store.documents()}
    assert set(docs) == {"d1", "d2", "d3"}
    assert docs["d1"].chunks == 2 and docs["d1"].acl == ("group:legal",) and docs["d1"].synced_at == 5.0
    assert docs["d3"].acl == ()
    assert store.count() == 4


def test_lexical_and_dense_respect_acl(store: Store, embedder: MiniLMEmbedder) -> None:
    q = "how long are backups kept"
    qv = embedder.embed([q])[0]
    assert {cid.split("-")[0] for cid, _ in store.lexical_search("backups", LEGAL, 10)} == {"d1"}
    assert store.lexical_search("backups", OUTSIDER, 10) == []
    assert {cid.split("-")[0] for cid, _ in store.dense_search(qv, OUTSIDER, 10)} == {"d2"}
    assert {cid.split("-")[0] for cid, _ in store.dense_search(qv, LEGAL, 10)} == {"d1", "d2"}
    # Dense results are best first and the best is the backups chunk.
    hits = store.dense_search(qv, LEGAL, 10)
    assert hits[0][0].startswith("d1") and hits[0][1] >= hits[-1][1]


def test_empty_acl_is_readable_by_nobody(store: Store, embedder: MiniLMEmbedder) -> None:
    everyone = Principal("root", frozenset({"legal", "hr", "admin", "public"}))
    assert store.lexical_search("Initech merger", everyone, 10) == []
    found = store.dense_search(embedder.embed(["Initech merger"])[0], everyone, 10)
    assert all(not cid.startswith("d3") for cid, _ in found)
    assert store.get_chunks(["d3-00000"], everyone) == {}


def test_acl_filter_is_inside_the_query_not_after_top_k(store: Store, embedder: MiniLMEmbedder) -> None:
    # With k=1 a post-filter would return the best unreadable chunk and then drop it, leaving nothing.
    qv = embedder.embed(["backups stored in two regions"])[0]
    got = store.dense_search(qv, OUTSIDER, 1)
    assert [cid for cid, _ in got] == ["d2-00000"]


def test_get_chunks_round_trips_fields_and_filters(store: Store) -> None:
    got = store.get_chunks(["d1-00000", "d1-00001", "d2-00000"], OUTSIDER)
    assert set(got) == {"d2-00000"}
    c = store.get_chunks(["d1-00000"], LEGAL)["d1-00000"]
    assert (c.section_path, c.page, c.title, c.char_start, c.acl) == (("Top", "Sub"), 1, "D1", 0, ("group:legal",))
    assert c.text == TEXTS["d1"][0]


def test_replace_is_atomic_per_document_and_drops_stale_chunks(store: Store, embedder: MiniLMEmbedder) -> None:
    v0 = store.version()
    new = make_chunks("d1", ["Backups are kept for one year."], ACLS["d1"], doc_hash="h2")
    store.replace_documents(["d1"], new, embedder.embed([c.text for c in new]), synced_at=6.0)
    assert store.version() != v0
    docs = {d.doc_id: d for d in store.documents()}
    assert docs["d1"].chunks == 1 and docs["d1"].doc_hash == "h2"
    assert store.get_chunks(["d1-00001"], LEGAL) == {}
    assert docs["d2"].chunks == 1  # other documents untouched


def test_set_acl_takes_effect_without_reembedding(store: Store) -> None:
    store.set_acl("d1", ["public"], synced_at=7.0)
    assert {cid.split("-")[0] for cid, _ in store.lexical_search("backups", OUTSIDER, 10)} == {"d1"}
    store.set_acl("d1", [], synced_at=8.0)
    assert store.lexical_search("backups", LEGAL, 10) == []


def test_delete_documents(store: Store) -> None:
    store.delete_documents(["d1"])
    assert {d.doc_id for d in store.documents()} == {"d2", "d3"}
    assert store.lexical_search("backups", LEGAL, 10) == []


def test_vector_count_mismatch_is_refused(store: Store) -> None:
    chunks = make_chunks("d9", ["x y z"], Acl(public=True))
    with pytest.raises(ValueError):
        store.replace_documents(["d9"], chunks, np.zeros((2, 384), dtype=np.float32), synced_at=1.0)
