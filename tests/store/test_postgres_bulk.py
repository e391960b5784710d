"""PostgresStore.bulk_load: the HNSW and term indexes are dropped for a load into an empty store and built once
at its end; a store people search keeps them; an interrupted load is reported at open and completed by
optimize(). The contract itself (same results, ACLs inside) is ``ragtune.testing.store_bulk``'s, run in
test_postgres_conformance.py."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import psycopg
import pytest

from ragtune.core import Principal
from ragtune.ingest.sync import Syncer, doc_id_for
from ragtune.models.embedder import MiniLMEmbedder
from ragtune.store.pg_bulk import DEFERRED_INDEXES, missing_indexes
from ragtune.store.postgres import PostgresStore
from ragtune.testing.store import ACLS, EVERYONE, TEXTS, ids, make_chunks, unit_vector
from store.pg_cluster import PgCluster

MakeStore = Callable[..., PostgresStore]


def write(store: PostgresStore, doc_id: str) -> None:
    chunks = make_chunks(doc_id, TEXTS[doc_id], ACLS[doc_id])
    store.replace_documents([doc_id], chunks, np.stack([unit_vector(c.chunk_id, 384) for c in chunks]), 5.0)


def missing(cluster: PgCluster, schema: str) -> list[str]:
    with psycopg.connect(cluster.dsn) as conn:
        return missing_indexes(conn, schema)


def test_an_empty_store_loads_without_the_indexes_and_has_them_after(
        make_pg_store: MakeStore, pg_cluster: PgCluster, pg_schema: str) -> None:
    store = make_pg_store()
    assert missing(pg_cluster, pg_schema) == []
    with store.bulk_load():
        assert missing(pg_cluster, pg_schema) == list(DEFERRED_INDEXES)
        for doc_id in TEXTS:
            write(store, doc_id)
    assert missing(pg_cluster, pg_schema) == []
    assert ids(store.dense_search(unit_vector("d2-00000", 384), EVERYONE, 1)) == ["d2-00000"]


def test_a_store_with_chunks_keeps_its_indexes(make_pg_store: MakeStore, pg_cluster: PgCluster,
                                               pg_schema: str) -> None:
    store = make_pg_store()
    write(store, "d1")
    with store.bulk_load():
        assert missing(pg_cluster, pg_schema) == []
        write(store, "d2")
    assert missing(pg_cluster, pg_schema) == []


def test_an_interrupted_load_warns_at_open_and_optimize_builds_the_indexes(
        make_pg_store: MakeStore, pg_cluster: PgCluster, pg_schema: str, caplog: pytest.LogCaptureFixture) -> None:
    store = make_pg_store()
    with pytest.raises(KeyboardInterrupt), store.bulk_load():
        write(store, "d1")
        raise KeyboardInterrupt
    assert missing(pg_cluster, pg_schema) == list(DEFERRED_INDEXES)
    with caplog.at_level(logging.WARNING, logger="ragtune"):
        reopened = make_pg_store()
    assert "lacks the index(es) chunks_embedding, chunks_terms" in caplog.text
    assert sorted(ids(reopened.lexical_search("backups", EVERYONE, 10))) == ["d1-00000", "d1-00001"]
    reopened.optimize()
    assert missing(pg_cluster, pg_schema) == []
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ragtune"):
        make_pg_store()
    assert "lacks the index" not in caplog.text


def test_a_bad_build_memory_is_refused(make_pg_store: MakeStore) -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL memory size"):
        make_pg_store(index_build_memory="lots; DROP TABLE chunks")
    store = make_pg_store(index_build_memory="64MB")
    assert store.index_build_memory == "64MB"


class FailingEmbedder:
    """The real embedder's name and size, failing on every call (a model or machine that gives out)."""

    def __init__(self, inner: MiniLMEmbedder) -> None:
        self.name, self.dim, self.window, self.fingerprint = inner.name, inner.dim, inner.window, inner.fingerprint
        self.inner = inner

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise RuntimeError("the embedder gave out")

    def warm_up(self) -> None:
        pass


@pytest.mark.integration
def test_a_first_ingestion_is_a_bulk_load_and_a_failed_one_is_completed_by_the_next(
        pg_store: PostgresStore, pg_cluster: PgCluster, pg_schema: str, embedder: MiniLMEmbedder,
        corpus: Path) -> None:
    with pytest.raises(RuntimeError, match="gave out"):
        Syncer(pg_store, FailingEmbedder(embedder)).sync(corpus)
    assert missing(pg_cluster, pg_schema) == list(DEFERRED_INDEXES)
    report = Syncer(pg_store, embedder).sync(corpus)
    assert report.changed and pg_store.count() > 0
    assert missing(pg_cluster, pg_schema) == []
    retention = doc_id_for(corpus / "legal" / "retention.md")
    assert ids(pg_store.lexical_search("backups", Principal("ann", frozenset({"legal"})), 5))[0].startswith(retention)
    assert not any(cid.startswith(retention) for cid in ids(pg_store.lexical_search("backups", Principal("bob"), 5)))
