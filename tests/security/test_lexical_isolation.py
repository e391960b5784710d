"""BM25 term statistics as a side channel, and the isolation mode that closes it.

The store's full-text index keeps one set of term statistics over every chunk. The ACL pre-filter keeps
hidden chunks out of the results but not out of N, the document frequencies and the average length, so a
public document's score for a term falls when hidden documents contain that term. With
``lexical_search(..., isolated=True)`` the statistics cover only the principal's readable chunks.

Real LanceStores throughout; the dense column holds random unit vectors (no model is needed here).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragtune.core import Chunk, Principal
from ragtune.retrieval.hybrid import HybridRetriever
from ragtune.store.base import Store
from ragtune.store.isolated_bm25 import STOP_WORDS, IsolatedBM25, IsolatedIndexCache, analyze
from ragtune.store.lance import LanceStore

PUBLIC_DOC = "Payroll notes: the restructuring committee meets monthly and the cafeteria menu changes weekly."
HIDDEN_DOCS = [f"Confidential draft {i}: the restructuring will cut {10 + i} roles in unit {i}." for i in range(10)]
HR = Principal("hank", frozenset({"hr"}))
PUBLIC = Principal("pat")


def unit_vectors(n: int, seed: int = 0, dim: int = 384) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def chunk(doc_id: str, text: str, acl: Sequence[str], ordinal: int = 0) -> Chunk:
    return Chunk(
        chunk_id=f"{doc_id}-{ordinal:05d}", doc_id=doc_id, source_path=f"/src/{doc_id}.md", title="",
        section_path=(), page=None, char_start=0, char_end=len(text), text=text, content_hash="",
        doc_hash=f"h-{doc_id}", mtime=0.0, acl=tuple(acl), ordinal=ordinal,
    )


def write(store: LanceStore, chunks: Sequence[Chunk], seed: int = 0) -> None:
    """Replace the documents of ``chunks`` in one commit (random unit vectors) and fold them into the indexes."""
    if chunks:
        store.replace_documents(sorted({c.doc_id for c in chunks}), chunks, unit_vectors(len(chunks), seed),
                                synced_at=0.0)
    store.optimize()


@pytest.fixture
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ragtune-iso-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def corpus(with_hidden: bool) -> list[Chunk]:
    chunks = [chunk("pub", PUBLIC_DOC, ["public"])]
    if with_hidden:
        chunks += [chunk(f"hr{i}", t, ["group:hr"]) for i, t in enumerate(HIDDEN_DOCS)]
    return chunks


def store_with(folder: Path, name: str, chunks: Sequence[Chunk], **kwargs: int) -> LanceStore:
    store = LanceStore(folder / name, **kwargs)
    write(store, chunks)
    return store


# --- (1) the default mode: a documented residual risk ----------------------------------------------------


def test_default_mode_leaks_hidden_term_statistics_known_residual_risk(folder: Path) -> None:
    """KNOWN RESIDUAL RISK of the default (``retrieval.lexical_isolation: false``): the public document's BM25
    score for "restructuring" falls sharply when ten hr-only chunks contain the word, although the public
    principal sees none of them; the score for "cafeteria", which they lack, barely moves. Comparing the two
    tells the principal that hidden documents mention restructuring. If this test starts failing, Lance has
    changed how it scores pre-filtered searches: re-check the risk and update docs/architecture.md."""
    alone = store_with(folder, "alone", corpus(with_hidden=False))
    mixed = store_with(folder, "mixed", corpus(with_hidden=True))
    (pid, alone_hidden_term), = alone.lexical_search("restructuring", PUBLIC, 10)
    (_, alone_other_term), = alone.lexical_search("cafeteria", PUBLIC, 10)
    # The ACL pre-filter works: the public principal gets the public chunk only ...
    assert [cid for cid, _ in mixed.lexical_search("restructuring", PUBLIC, 10)] == [pid]
    (_, mixed_hidden_term), = mixed.lexical_search("restructuring", PUBLIC, 10)
    (_, mixed_other_term), = mixed.lexical_search("cafeteria", PUBLIC, 10)
    # ... but its score carries the hidden chunks' statistics.
    assert mixed_hidden_term < 0.25 * alone_hidden_term
    assert mixed_other_term > 0.5 * alone_other_term
    assert mixed_other_term > 10 * mixed_hidden_term  # the tell: equal in the public text, 10x apart in scores


# --- (2) isolation: hidden chunks change nothing ---------------------------------------------------------


@pytest.mark.parametrize("query", ["restructuring", "cafeteria", "restructuring cafeteria menu", "roles"])
def test_isolated_results_do_not_depend_on_hidden_chunks(folder: Path, query: str) -> None:
    alone = store_with(folder, "alone", corpus(with_hidden=False))
    mixed = store_with(folder, "mixed", corpus(with_hidden=True))
    expected = alone.lexical_search(query, PUBLIC, 10, isolated=True)
    got = mixed.lexical_search(query, PUBLIC, 10, isolated=True)
    assert got == expected  # ids and scores, exactly
    assert all(cid == "pub-00000" for cid, _ in got)
    # The hr principal's isolated statistics do include the hr chunks.
    hr_hits = mixed.lexical_search(query, HR, 20, isolated=True)
    if query != "cafeteria":
        assert any(cid.startswith("hr") for cid, _ in hr_hits)


def test_isolated_scores_match_the_index_over_the_readable_chunks(folder: Path) -> None:
    """On a store holding only what the principal may read, isolation reproduces the full-text index's scores."""
    alone = store_with(folder, "alone", corpus(with_hidden=False))
    mixed = store_with(folder, "mixed", corpus(with_hidden=True))
    for query in ["restructuring", "cafeteria", "the restructuring committee", "weekly weekly menu"]:
        lance = dict(alone.lexical_search(query, PUBLIC, 10))
        isolated = dict(mixed.lexical_search(query, PUBLIC, 10, isolated=True))
        assert isolated.keys() == lance.keys()
        for cid, score in isolated.items():
            assert score == pytest.approx(lance[cid], rel=1e-5)


def test_readable_texts_lists_only_readable_chunks(folder: Path) -> None:
    chunks = corpus(with_hidden=True) + [chunk("nobody", "restructuring memo for nobody", [])]
    store = store_with(folder, "s", chunks)
    assert [cid for cid, _ in store.readable_texts(PUBLIC)] == ["pub-00000"]
    assert {cid for cid, _ in store.readable_texts(HR)} == {c.chunk_id for c in chunks if c.doc_id != "nobody"}
    everyone = Principal("root", frozenset({"hr", "legal", "admin"}))
    assert "nobody-00000" not in dict(store.readable_texts(everyone))  # an empty ACL matches no principal
    assert dict(store.readable_texts(PUBLIC))["pub-00000"] == chunks[0].search_text
    assert isinstance(store, Store)


def test_isolated_search_edge_cases(folder: Path) -> None:
    empty = LanceStore(folder / "empty")
    assert empty.lexical_search("anything", PUBLIC, 5, isolated=True) == []
    store = store_with(folder, "s", corpus(with_hidden=True))
    assert store.lexical_search("   ", PUBLIC, 5, isolated=True) == []
    assert store.lexical_search("the and of", PUBLIC, 5, isolated=True) == []  # stop words only
    assert store.lexical_search("restructuring", PUBLIC, 0, isolated=True) == []
    assert store.lexical_search("zzzunknownzzz", PUBLIC, 5, isolated=True) == []
    assert len(store.lexical_search("restructuring", HR, 3, isolated=True)) == 3
    # Nothing readable: no index to build, no results.
    stranger = Principal("sam")
    only_hr = store_with(folder, "hr", [chunk("hr0", HIDDEN_DOCS[0], ["group:hr"])])
    assert only_hr.lexical_search("restructuring", stranger, 5, isolated=True) == []


# --- (3) property: isolated results = the results of a store holding only the readable chunks ------------

WORDS = (
    "backup backups running runs salary salaries merger policy policies vacation restructuring layoff "
    "the and of is it don't café Zürich 2024 e.g. payroll budget onboarding"
).split()
USERS = ["ann", "bob"]
GROUPS = ["hr", "legal"]

acl_tokens = st.lists(
    st.sampled_from(["public"] + [f"user:{u}" for u in USERS] + [f"group:{g}" for g in GROUPS]),
    max_size=2, unique=True,
)
texts = st.lists(st.sampled_from(WORDS), min_size=0, max_size=8).map(" ".join)
corpora = st.lists(st.tuples(texts, acl_tokens), min_size=1, max_size=12)
principals = st.builds(Principal, user=st.sampled_from(USERS + ["mallory"]),
                       groups=st.frozensets(st.sampled_from(GROUPS), max_size=2))
queries = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(docs=corpora, principal=principals, query_list=st.lists(queries, min_size=1, max_size=3),
       k=st.integers(1, 12))
def test_isolated_equals_a_store_of_only_the_readable_chunks(
    folder: Path, docs: list[tuple[str, list[str]]], principal: Principal, query_list: list[str], k: int,
) -> None:
    sub = folder / hashlib.sha256(repr((docs, principal, query_list, k)).encode()).hexdigest()[:16]
    try:
        chunks = [chunk(f"d{i}", text, acl) for i, (text, acl) in enumerate(docs)]
        readable = [c for c in chunks if principal.can_read(c.acl)]
        full = store_with(sub, "full", chunks)
        only = store_with(sub, "only", readable)
        n = len(chunks)
        for query in query_list:
            got = full.lexical_search(query, principal, k, isolated=True)
            # Same data, same answer: ids, scores and order (ties by chunk id) are identical.
            assert got == only.lexical_search(query, principal, k, isolated=True)
            assert {cid for cid, _ in got} <= {c.chunk_id for c in readable}
            assert len(got) <= k
            # And it is what the full-text index itself returns when it holds only the readable chunks.
            all_isolated = dict(full.lexical_search(query, principal, n, isolated=True))
            lance = dict(only.lexical_search(query, principal, n))
            assert all_isolated.keys() == lance.keys()
            for cid, score in all_isolated.items():
                assert score == pytest.approx(lance[cid], rel=1e-4)
            assert [s for _, s in got] == sorted((s for s in all_isolated.values()), reverse=True)[: len(got)]
    finally:
        shutil.rmtree(sub, ignore_errors=True)


def test_analysis_matches_the_full_text_index() -> None:
    """The spots where a naive tokenizer would differ from Lance's (all measured against lancedb 0.40)."""
    assert analyze("The running dogs were running quickly") == ["run", "dog", "run", "quick"]
    assert analyze("don't e.g. x_y") == ["e", "g", "x"]  # apostrophes split; "don", "t", "y" are stop words
    assert analyze("Café naïve résumé Zürich") == ["cafe", "naiv", "resume", "zurich"]  # stem, then fold
    # Stemmed first, then matched: mostly -> most, others -> other, onli -> on are dropped; only -> onli is not.
    assert analyze("mostly others onli only") == ["onli"]
    assert analyze("x" * 39 + " " + "x" * 40 + " " + "é" * 20) == ["x" * 39]  # 40 bytes or more: dropped
    assert {"don", "t", "were", "the"} <= STOP_WORDS
    assert analyze("because being") == ["becaus"]  # "becaus" is not in the list, "be" is


# --- (4) the per-principal cache ----------------------------------------------------------------------------


def test_cache_is_keyed_by_the_principals_token_set(folder: Path) -> None:
    store = store_with(folder, "s", corpus(with_hidden=True))
    cache = store.isolated_indexes
    hr_hits = store.lexical_search("restructuring", HR, 20, isolated=True)
    assert len(hr_hits) == 11 and cache.misses == 1
    public_hits = store.lexical_search("restructuring", PUBLIC, 20, isolated=True)
    # The hr principal's index did not serve the public one: a second build, its own statistics.
    assert cache.misses == 2 and [cid for cid, _ in public_hits] == ["pub-00000"]
    alone = store_with(folder, "alone", corpus(with_hidden=False))
    assert public_hits == alone.lexical_search("restructuring", PUBLIC, 20, isolated=True)
    keys = cache.cached_keys()
    assert len(keys) == 2 and {k[1] for k in keys} == {tuple(HR.tokens()), tuple(PUBLIC.tokens())}
    # Same token set: served from the cache. Another user with the same groups has another token set.
    store.lexical_search("cafeteria", HR, 20, isolated=True)
    assert cache.misses == 2 and cache.hits >= 1
    store.lexical_search("restructuring", Principal("hilda", frozenset({"hr"})), 20, isolated=True)
    assert cache.misses == 3
    # A principal whose groups add nothing readable still gets its own index (the key is the token set).
    assert IsolatedIndexCache.key(1, HR.tokens()) != IsolatedIndexCache.key(1, PUBLIC.tokens())
    assert IsolatedIndexCache.key(1, ["b", "a", "a"]) == IsolatedIndexCache.key(1, ["a", "b"])


def test_cache_is_invalidated_by_every_write(folder: Path) -> None:
    store = store_with(folder, "s", corpus(with_hidden=True))
    before = store.lexical_search("restructuring", PUBLIC, 20, isolated=True)
    v0 = store.version()
    # A new public document with the term: new version, new index, new statistics.
    write(store, [chunk("pub2", "Restructuring FAQ for everyone.", ["public"])], seed=1)
    assert store.version() != v0
    after = store.lexical_search("restructuring", PUBLIC, 20, isolated=True)
    assert {cid for cid, _ in after} == {"pub-00000", "pub2-00000"}
    assert dict(after)["pub-00000"] != dict(before)["pub-00000"]
    # Re-permissioning a hidden document makes it readable at once.
    store.set_acl("hr0", ["public"], synced_at=1.0)
    assert "hr0-00000" in dict(store.lexical_search("restructuring", PUBLIC, 20, isolated=True))
    # Taking the access back removes it at once, too.
    store.set_acl("hr0", ["group:hr"], synced_at=2.0)
    assert "hr0-00000" not in dict(store.lexical_search("restructuring", PUBLIC, 20, isolated=True))
    store.delete_documents(["pub2"])
    assert store.lexical_search("restructuring", PUBLIC, 20, isolated=True) == before
    # Indexes of older versions are dropped, not left to age out of the LRU.
    assert [k[0] for k in store.isolated_indexes.cached_keys()] == [store.version()]
    assert store.isolated_indexes.misses == 5


def test_cache_is_bounded_lru(folder: Path) -> None:
    store = store_with(folder, "s", corpus(with_hidden=True), isolation_cache_size=2)
    a, b, c = Principal("a"), Principal("b", frozenset({"hr"})), Principal("c")
    for p in (a, b, a, c):  # a is used again before c arrives, so b is the least recently used
        store.lexical_search("restructuring", p, 5, isolated=True)
    held = {k[1] for k in store.isolated_indexes.cached_keys()}
    assert held == {tuple(a.tokens()), tuple(c.tokens())}
    off = store_with(folder, "off", corpus(with_hidden=True), isolation_cache_size=0)
    off.lexical_search("restructuring", a, 5, isolated=True)
    off.lexical_search("restructuring", a, 5, isolated=True)
    assert len(off.isolated_indexes) == 0 and off.isolated_indexes.misses == 2


def test_cache_keeps_only_the_newest_version() -> None:
    cache: IsolatedIndexCache[IsolatedBM25] = IsolatedIndexCache(4)
    index = IsolatedBM25(["a"], ["words"])
    cache.put(cache.key(2, ["public"]), index)
    cache.put(cache.key(2, ["group:hr", "public"]), index)
    cache.put(cache.key(1, ["public"]), index)  # built from an older version than one already held: not kept
    assert cache.cached_keys() == [(2, ("public",)), (2, ("group:hr", "public"))]
    cache.put(cache.key(3, ["public"]), index)
    assert cache.cached_keys() == [(3, ("public",))]
    assert cache.get(cache.key(2, ["public"])) is None and cache.get(cache.key(3, ["public"])) is index


def test_index_ties_are_ordered_by_chunk_id() -> None:
    index = IsolatedBM25(["c", "a", "b", "empty"], ["same words", "same words", "same words", "the of"])
    assert len(index) == 3  # a chunk without terms counts in neither N nor the average length
    assert [cid for cid, _ in index.search("words", 2)] == ["a", "b"]
    assert index.search("words", 5)[0][1] == index.search("words", 5)[2][1]


# --- (5) the retriever hides raw lexical scores in isolation mode -----------------------------------------


class RandomEmbedder:
    """Deterministic random unit vectors per text: enough for fusion, no model needed."""

    name, dim, window = "random", 384, 256
    fingerprint = "random-sha256-384"

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        seeds = [int.from_bytes(hashlib.sha256(t.encode()).digest()[:4], "little") for t in texts]
        return np.stack([unit_vectors(1, seed)[0] for seed in seeds])

    def warm_up(self) -> None:
        pass


def test_hybrid_retriever_hides_lexical_scores_in_isolation_mode(folder: Path) -> None:
    chunks = corpus(with_hidden=True) + [
        chunk("pub2", "Restructuring timeline published for all staff.", ["public"]),
        chunk("pub3", "Weekly menu of the cafeteria.", ["public"]),
    ]
    store = store_with(folder, "s", chunks)
    embedder = RandomEmbedder()
    default = HybridRetriever(store, embedder, top_k=5).retrieve("restructuring", PUBLIC)
    assert any(h.lexical_score is not None for h in default.hits)

    isolated = HybridRetriever(store, embedder, top_k=5, lexical_isolation=True).retrieve("restructuring", PUBLIC)
    assert {h.chunk.chunk_id for h in isolated.hits} <= {"pub-00000", "pub2-00000", "pub3-00000"}
    assert all(h.lexical_score is None for h in isolated.hits)
    assert {h.chunk.chunk_id for h in isolated.hits if h.lexical_rank is not None} == {"pub-00000", "pub2-00000"}
    assert all(h.dense_score is not None for h in isolated.hits)
    # BM25 alone: the hits come in the isolated order.
    lexical_only = HybridRetriever(store, embedder, top_k=5, dense_weight=0.0, lexical_isolation=True)
    hits = lexical_only.retrieve("restructuring timeline", PUBLIC).hits
    expected = [cid for cid, _ in store.lexical_search("restructuring timeline", PUBLIC, 100, isolated=True)]
    assert [h.chunk.chunk_id for h in hits] == expected[:5]
    assert [h.lexical_rank for h in hits] == list(range(1, len(hits) + 1))
    assert store.isolated_indexes.misses == 1  # both isolated retrievers used the one public index
