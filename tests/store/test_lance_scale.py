"""LanceStore's large-table path at a small scale: thresholds lowered so 3,000 chunks cross them.

The vector index switches from exact to IVF-PQ when ``optimize`` finds the table at ``ann_min_rows`` chunks and
back when it shrinks below; a principal reading few chunks is searched exactly (the same top-k as numpy over
their readable vectors), a broad one approximately but close to exact; nothing outside a principal's rights
comes back on either path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragtune.core import Acl, Principal
from ragtune.store import lance_vectors
from ragtune.store.lance import LanceStore
from ragtune.testing.store import make_chunks

DIM, DOCS, PER_DOC, GROUPS = 32, 150, 20, 10  # 3,000 chunks; each group reads 10 %, the needle user 1 %
NEEDLE = Principal("needle")
EVERYONE = Principal("root", frozenset(f"g{i}" for i in range(GROUPS)))


def _vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """Clustered unit vectors (20 centres plus noise), so neighbours are not all equally far."""
    centres = rng.standard_normal((20, DIM))
    v = centres[rng.integers(0, 20, n)] + 0.6 * rng.standard_normal((n, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _acl(doc: int) -> Acl:
    return Acl(groups=frozenset({f"g{doc % GROUPS}"}), users=frozenset({"needle"}) if doc % 100 == 0 else frozenset())


def _fill(store: LanceStore, docs: range, vectors: np.ndarray) -> None:
    for doc in docs:
        chunks = make_chunks(f"d{doc:04d}", [f"chunk {j} of document {doc}" for j in range(PER_DOC)], _acl(doc))
        store.replace_documents([f"d{doc:04d}"], chunks, vectors[doc * PER_DOC:(doc + 1) * PER_DOC], 1.0)
    store.optimize()


def _exact(vectors: np.ndarray, query: np.ndarray, readable: np.ndarray, k: int) -> list[str]:
    sims = np.where(readable, vectors @ query, -np.inf)
    top = np.argsort(-sims, kind="stable")[:k]
    return [f"d{i // PER_DOC:04d}-{i % PER_DOC:05d}" for i in top if readable[i]]


def _readable(principal: Principal) -> np.ndarray:
    tokens = set(principal.tokens())
    return np.repeat([bool(set(_acl(d).tokens()) & tokens) for d in range(DOCS)], PER_DOC)


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[LanceStore, np.ndarray]:
    vectors = _vectors(np.random.default_rng(7), DOCS * PER_DOC)
    store = LanceStore(tmp_path_factory.mktemp("scale") / "lance", dim=DIM, ann_min_rows=2_000,
                       exact_max_readable=100)
    _fill(store, range(DOCS), vectors)
    return store, vectors


def test_optimize_switches_to_ivf_pq_at_the_threshold(filled: tuple[LanceStore, np.ndarray]) -> None:
    store, _ = filled
    assert store.count() == DOCS * PER_DOC
    assert lance_vectors.is_approximate(lance_vectors.vector_index_of(store.table))


def test_a_principal_reading_few_chunks_gets_the_exact_top_k(filled: tuple[LanceStore, np.ndarray]) -> None:
    store, vectors = filled
    readable = _readable(NEEDLE)
    assert readable.sum() == 2 * PER_DOC  # 40 chunks: below exact_max_readable, so the exact path
    for q in np.random.default_rng(1).choice(len(vectors), 15, replace=False):
        got = [cid for cid, _ in store.dense_search(vectors[q], NEEDLE, 10)]
        assert got == _exact(vectors, vectors[q], readable, 10)


def test_a_broad_principal_is_searched_approximately_close_to_exact(
        filled: tuple[LanceStore, np.ndarray]) -> None:
    store, vectors = filled
    readable = _readable(EVERYONE)
    assert readable.all()
    recalls = []
    for q in np.random.default_rng(2).choice(len(vectors), 30, replace=False):
        query = vectors[q] + 0.05 * np.random.default_rng(int(q)).standard_normal(DIM).astype(np.float32)
        got = [cid for cid, _ in store.dense_search(query, EVERYONE, 10)]
        assert len(got) == 10
        recalls.append(len(set(got) & set(_exact(vectors, query, readable, 10))) / 10)
    assert float(np.mean(recalls)) >= 0.9, recalls


def test_no_path_returns_a_chunk_outside_the_principals_rights(filled: tuple[LanceStore, np.ndarray]) -> None:
    store, vectors = filled
    one_group = Principal("ann", frozenset({"g3"}))  # 300 chunks: above exact_max_readable, the IVF-PQ path
    assert _readable(one_group).sum() > store.exact_max_readable
    # 60 %: at least POSTFILTER_MIN_SHARE, so the ACL filter is applied to the search's candidates.
    most = Principal("mo", frozenset(f"g{i}" for i in range(6)))
    assert _readable(most).mean() >= lance_vectors.POSTFILTER_MIN_SHARE
    for principal in (NEEDLE, one_group, most, Principal("nobody")):
        mask = _readable(principal)
        readable = {f"d{i // PER_DOC:04d}-{i % PER_DOC:05d}" for i in np.flatnonzero(mask)}
        hits = store.dense_search(vectors[5], principal, 50)
        assert {cid for cid, _ in hits} <= readable
        assert len(hits) == min(50, len(readable))


def test_a_principal_reading_most_chunks_gets_k_readable_hits_near_unreadable_ones(
        filled: tuple[LanceStore, np.ndarray]) -> None:
    """Filtered after the search, the candidates near an unreadable chunk are mostly unreadable: the store
    must still return k readable chunks (searching again with the filter first when too few survive)."""
    store, vectors = filled
    most = Principal("mo", frozenset(f"g{i}" for i in range(5)))  # 50 %: the post-filter path
    readable = _readable(most)
    recalls = []
    for q in np.flatnonzero(~readable)[::97][:15]:  # queries at chunks the principal may not read
        hits = [cid for cid, _ in store.dense_search(vectors[q], most, 10)]
        assert len(hits) == 10 and set(hits) <= set(_exact(vectors, vectors[q], readable, len(vectors)))
        recalls.append(len(set(hits) & set(_exact(vectors, vectors[q], readable, 10))) / 10)
    assert float(np.mean(recalls)) >= 0.8, recalls


def test_shrinking_below_the_threshold_brings_the_exact_index_back(tmp_path: Path) -> None:
    vectors = _vectors(np.random.default_rng(3), 30 * PER_DOC)
    store = LanceStore(tmp_path / "lance", dim=DIM, ann_min_rows=500, exact_max_readable=0)
    _fill(store, range(30), vectors)  # 600 chunks: IVF-PQ
    assert lance_vectors.is_approximate(lance_vectors.vector_index_of(store.table))
    store.delete_documents([f"d{d:04d}" for d in range(10)])
    store.optimize()  # 400 chunks: exact again, and searched exactly
    assert not lance_vectors.is_approximate(lance_vectors.vector_index_of(store.table))
    readable = _readable(EVERYONE)[: 30 * PER_DOC].copy()
    readable[: 10 * PER_DOC] = False
    assert [cid for cid, _ in store.dense_search(vectors[300], EVERYONE, 10)] == \
        _exact(vectors, vectors[300], readable, 10)


def test_index_choice_by_size() -> None:
    assert type(lance_vectors.vector_index_config(99_999, 384)).__name__ == "IvfFlat"
    config = lance_vectors.vector_index_config(1_000_000, 384)
    assert type(config).__name__ == "IvfPq"
    assert (config.num_partitions, config.num_sub_vectors) == (1000, 48)
    assert lance_vectors.wrong_vector_index(None, 10)
