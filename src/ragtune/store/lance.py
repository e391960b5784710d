"""The embedded default store: one LanceDB table in the project folder. Nothing else imports lancedb.

Each row is a chunk with its vector, its BM25-indexed search text and its ACL tokens. Both searches put the
ACL filter in the query itself (``prefilter=True``), so ranking and top-k only ever see readable chunks.
Replacing a document's chunks is one ``merge_insert`` commit, so a killed ingestion never leaves a document
half-written: it is either the old version or the new one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ragtune.core import Chunk, Principal
from ragtune.store import lance_vectors
from ragtune.store.base import ChunkRow, DocRecord, check_replacement
from ragtune.store.isolated_bm25 import DEFAULT_CACHE_SIZE, IsolatedBM25, IsolatedIndexCache, V
from ragtune.store.state import FolderSyncState

TABLE = "chunks"
# Lance logs deprecation notices per query at WARN; keep them out of users' terminals unless asked for.
os.environ.setdefault("LANCE_LOG", "error")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _in_list(values: Sequence[str]) -> str:
    return "(" + ", ".join(_quote(v) for v in values) + ")"


def acl_filter(principal: Principal) -> str:
    """SQL predicate matching chunks whose ACL shares a token with the principal; empty ACLs never match."""
    return "array_has_any(acl, [" + ", ".join(_quote(t) for t in principal.tokens()) + "])"


class LanceStore:
    """LanceDB-backed :class:`~ragtune.store.base.Store`.

    Dense search is exact below ``ann_min_rows`` chunks and for principals who may read at most
    ``exact_max_readable``; approximate (IVF-PQ) otherwise (:mod:`ragtune.store.lance_vectors`).
    """

    def __init__(self, path: Path, dim: int = 384, isolation_cache_size: int = DEFAULT_CACHE_SIZE,
                 ann_min_rows: int = lance_vectors.ANN_MIN_ROWS,
                 exact_max_readable: int = lance_vectors.EXACT_MAX_READABLE) -> None:
        self.path = Path(path)
        self.dim = dim
        self.ann_min_rows = ann_min_rows
        self.exact_max_readable = exact_max_readable
        self._readable: IsolatedIndexCache[int] = IsolatedIndexCache(256)  # readable chunks per token set
        self._approximate = False  # whether the vector index (as of the last index check) is IVF-PQ
        # Per-principal BM25 indexes of the lexical isolation mode, keyed by (table version, ACL tokens).
        self.isolated_indexes: IsolatedIndexCache[IsolatedBM25] = IsolatedIndexCache(isolation_cache_size)
        self._table: Any = None
        self._checked: tuple[int, int] | None = None  # (table version, row count) when indexes were last checked
        self._index_lock = threading.Lock()  # searches may run in parallel threads

    def _schema(self) -> pa.Schema:
        return pa.schema(
            [
                pa.field("chunk_id", pa.string(), nullable=False),
                pa.field("doc_id", pa.string(), nullable=False),
                pa.field("source_path", pa.string()),
                pa.field("title", pa.string()),
                pa.field("section_path", pa.list_(pa.string())),
                pa.field("page", pa.int32()),
                pa.field("char_start", pa.int64()),
                pa.field("char_end", pa.int64()),
                pa.field("ordinal", pa.int32()),
                pa.field("text", pa.string()),
                pa.field("search_text", pa.string()),
                pa.field("content_hash", pa.string()),
                pa.field("doc_hash", pa.string()),
                pa.field("mtime", pa.float64()),
                pa.field("synced_at", pa.float64()),
                pa.field("acl", pa.list_(pa.string())),
                pa.field("vector", pa.list_(pa.float32(), self.dim)),
            ]
        )

    @property
    def table(self) -> Any:
        """The LanceDB table, opened (or created empty) on first use."""
        if self._table is None:
            from datetime import timedelta

            import lancedb

            self.path.mkdir(parents=True, exist_ok=True)
            # Strong consistency: every read sees the latest committed version, so a server that opened the
            # index before a sync in another process never serves chunks under their old ACLs.
            db = lancedb.connect(str(self.path), read_consistency_interval=timedelta(0))
            try:
                self._table = db.open_table(TABLE)
            except ValueError:
                self._table = db.create_table(TABLE, schema=self._schema(), exist_ok=True)
        return self._table

    def _rows(self, chunks: Sequence[Chunk], vectors: np.ndarray, synced_at: float) -> pa.Table:
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        vec = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1)
        return pa.table(
            {
                "chunk_id": [c.chunk_id for c in chunks],
                "doc_id": [c.doc_id for c in chunks],
                "source_path": [c.source_path for c in chunks],
                "title": [c.title for c in chunks],
                "section_path": [list(c.section_path) for c in chunks],
                "page": pa.array([c.page for c in chunks], pa.int32()),
                "char_start": [c.char_start for c in chunks],
                "char_end": [c.char_end for c in chunks],
                "ordinal": pa.array([c.ordinal for c in chunks], pa.int32()),
                "text": [c.text for c in chunks],
                "search_text": [c.search_text for c in chunks],
                "content_hash": [c.content_hash for c in chunks],
                "doc_hash": [c.doc_hash for c in chunks],
                "mtime": [c.mtime for c in chunks],
                "synced_at": [synced_at] * len(chunks),
                "acl": [list(c.acl) for c in chunks],
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vec, pa.float32()), self.dim),
            },
            schema=self._schema(),
        )

    def replace_documents(
        self, doc_ids: Sequence[str], chunks: Sequence[Chunk], vectors: np.ndarray, synced_at: float
    ) -> None:
        """Atomically make ``chunks`` the only chunks of ``doc_ids``."""
        check_replacement(doc_ids, chunks)
        if not doc_ids:
            return
        (
            self.table.merge_insert("chunk_id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete("doc_id IN " + _in_list(doc_ids))
            .execute(self._rows(chunks, vectors, synced_at))
        )

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        """Remove every chunk of these documents (one commit)."""
        if doc_ids:
            self.table.delete("doc_id IN " + _in_list(doc_ids))

    def set_acl(self, doc_id: str, acl: Sequence[str], synced_at: float) -> None:
        """Re-permission one document in one commit, keeping its vectors."""
        rows = self.table.search().where("doc_id = " + _quote(doc_id)).limit(None).to_arrow()
        if rows.num_rows == 0:
            return
        rows = rows.set_column(rows.schema.get_field_index("acl"), "acl", pa.array([list(acl)] * rows.num_rows,
                                                                               pa.list_(pa.string())))
        rows = rows.set_column(rows.schema.get_field_index("synced_at"), "synced_at",
                               pa.array([synced_at] * rows.num_rows, pa.float64()))
        self.table.merge_insert("chunk_id").when_matched_update_all().execute(rows.select(self._schema().names))

    def documents(self) -> list[DocRecord]:
        """One record per document, derived from its chunks."""
        cols = ["doc_id", "source_path", "title", "doc_hash", "acl", "mtime", "synced_at"]
        if self.count() == 0:
            return []
        data = self.table.search().select(cols).limit(None).to_arrow().to_pylist()
        docs: dict[str, dict[str, Any]] = {}
        for row in data:
            d = docs.setdefault(row["doc_id"], {**row, "chunks": 0})
            d["chunks"] += 1
        return sorted(
            (
                DocRecord(
                    doc_id=d["doc_id"], source_path=d["source_path"], title=d["title"], doc_hash=d["doc_hash"],
                    acl=tuple(d["acl"] or ()), mtime=d["mtime"], synced_at=d["synced_at"], chunks=d["chunks"],
                )
                for d in docs.values()
            ),
            key=lambda r: r.source_path,
        )

    @staticmethod
    def _to_chunk(row: dict[str, Any]) -> Chunk:
        return Chunk(
            chunk_id=row["chunk_id"], doc_id=row["doc_id"], source_path=row["source_path"], title=row["title"],
            section_path=tuple(row["section_path"] or ()), page=row["page"], char_start=row["char_start"],
            char_end=row["char_end"], text=row["text"], content_hash=row["content_hash"],
            doc_hash=row["doc_hash"], mtime=row["mtime"], acl=tuple(row["acl"] or ()), ordinal=row["ordinal"],
        )

    _COLUMNS = [
        "chunk_id", "doc_id", "source_path", "title", "section_path", "page", "char_start", "char_end",
        "ordinal", "text", "content_hash", "doc_hash", "mtime", "acl",
    ]

    def lexical_search(
        self, query: str, principal: Principal, k: int, *, isolated: bool = False
    ) -> list[tuple[str, float]]:
        """BM25 over the search text of chunks the principal may read (ACL pre-filter in the query).

        By default the full-text index scores with term statistics over every chunk, readable or not (a
        documented side channel). ``isolated=True`` scores with statistics over the principal's readable
        chunks only (:mod:`ragtune.store.isolated_bm25`), from an index cached per table version and token set.
        """
        if not query.strip() or self._ensure_indexes() == 0:
            return []
        if isolated:
            return self._isolated_index(principal).search(query, k)
        from lancedb.query import MatchQuery

        rows = (
            self.table.search(MatchQuery(query, "search_text"), query_type="fts")  # type: ignore[call-arg]
            .where(acl_filter(principal), prefilter=True)
            .select(["chunk_id", "_score"])
            .limit(k)
            .to_arrow()
        )
        return list(zip(rows["chunk_id"].to_pylist(), rows["_score"].to_pylist(), strict=True))

    def _isolated_index(self, principal: Principal) -> IsolatedBM25:
        def build() -> IsolatedBM25:
            pairs = self.readable_texts(principal)
            return IsolatedBM25([cid for cid, _ in pairs], [text for _, text in pairs])

        return self._per_principal(self.isolated_indexes, principal, build)

    def _per_principal(self, cache: IsolatedIndexCache[V], principal: Principal, build: Callable[[], V]) -> V:
        """``cache``'s value for the principal's tokens at the current table version, built when missing."""
        version = self.version()
        key = cache.key(version, principal.tokens())
        value = cache.get(key)
        if value is None:
            value = build()
            # A write between reading the version and the rows would file newer rows under an older version.
            if self.version() == version:
                cache.put(key, value)
        return value

    def readable_texts(self, principal: Principal) -> list[tuple[str, str]]:
        """(chunk id, search text) of every chunk the principal may read, by id (ACL filter in the query)."""
        if self.count() == 0:
            return []
        rows = (
            self.table.search()
            .where(acl_filter(principal))
            .select(["chunk_id", "search_text"])
            .limit(None)
            .to_arrow()
        )
        pairs = zip(rows["chunk_id"].to_pylist(), rows["search_text"].to_pylist(), strict=True)
        return sorted((cid, text or "") for cid, text in pairs)

    def dense_search(self, vector: np.ndarray, principal: Principal, k: int) -> list[tuple[str, float]]:
        """Cosine search over chunks the principal may read (ACL pre-filter in the query): exact, or through the
        IVF-PQ index on a large table unless the principal reads few chunks (then exact again)."""
        total = self._ensure_indexes()
        if k <= 0 or total == 0:
            return []
        where = acl_filter(principal)
        approximate, share = self._approximate, 0.0
        if approximate:
            readable = self._per_principal(self._readable, principal, lambda: int(self.table.count_rows(where)))
            approximate, share = readable > self.exact_max_readable, readable / total
        rows = lance_vectors.dense_rows(self.table, vector, where, k, approximate=approximate, share=share)
        if approximate and rows.num_rows < k and share >= lance_vectors.POSTFILTER_MIN_SHARE:
            # Filtered after the search, too few candidates were readable: filter first.
            rows = lance_vectors.dense_rows(self.table, vector, where, k, approximate=True)
        if approximate and rows.num_rows < k:  # the probed partitions held too few readable chunks
            rows = lance_vectors.dense_rows(self.table, vector, where, k, approximate=False)
        return [(cid, 1.0 - d) for cid, d in zip(rows["chunk_id"].to_pylist(), rows["_distance"].to_pylist(),
                                                  strict=True)]

    def get_chunks(self, chunk_ids: Sequence[str], principal: Principal) -> dict[str, Chunk]:
        """The chunks with these ids that the principal may read (the ACL filter is in this query too)."""
        if not chunk_ids:
            return {}
        rows = (
            self.table.search()
            .where(f"chunk_id IN {_in_list(chunk_ids)} AND {acl_filter(principal)}")
            .select(self._COLUMNS)
            .limit(len(chunk_ids))
            .to_list()
        )
        return {r["chunk_id"]: self._to_chunk(r) for r in rows}

    def iter_chunks(self, batch_size: int = 1000) -> Iterator[tuple[list[Chunk], np.ndarray]]:
        """Every stored chunk with its vector (float32, one row each), ``batch_size`` chunks at a time, ordered by
        (doc_id, ordinal, chunk_id) compared as code points; chunks nobody may read included (an admin export).

        Reads one table version (a handle checked out at the version current when iteration starts), so writes
        made meanwhile are not seen: the key columns are sorted once, then each batch is fetched by id.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.count() == 0:
            return
        import lancedb

        snapshot = lancedb.connect(str(self.path)).open_table(TABLE)
        snapshot.checkout(self.version())
        keys = snapshot.search().select(["chunk_id", "doc_id", "ordinal"]).limit(None).to_arrow()
        order = sorted(zip(keys["doc_id"].to_pylist(), keys["ordinal"].to_pylist(), keys["chunk_id"].to_pylist(),
                           strict=True))
        for start in range(0, len(order), batch_size):
            wanted = [cid for _, _, cid in order[start : start + batch_size]]
            rows = (snapshot.search().where("chunk_id IN " + _in_list(wanted))
                    .select([*self._COLUMNS, "vector"]).limit(len(wanted)).to_arrow())
            dim = rows.schema.field("vector").type.list_size
            matrix = np.asarray(rows["vector"].combine_chunks().flatten(), dtype=np.float32).reshape(-1, dim)
            at = {cid: i for i, cid in enumerate(rows["chunk_id"].to_pylist())}
            missing = [cid for cid in wanted if cid not in at]
            if missing:  # pragma: no cover - a checked-out version is immutable
                raise RuntimeError(f"chunks {missing[:3]} vanished from table version {snapshot.version}")
            records = rows.select(self._COLUMNS).to_pylist()
            positions = [at[cid] for cid in wanted]
            yield [self._to_chunk(records[i]) for i in positions], matrix[positions]

    def _ensure_indexes(self) -> int:
        """Create missing indexes; return the row count. Checked once per table version, not per query."""
        version = self.version()
        if self._checked is not None and self._checked[0] == version:
            return self._checked[1]
        with self._index_lock:
            return self._create_missing_indexes()

    def _create_missing_indexes(self) -> int:
        version = self.version()
        if self._checked is not None and self._checked[0] == version:
            return self._checked[1]
        rows = self.count()
        if rows:
            from lancedb.index import FTS, BTree, LabelList

            have = {tuple(ix.columns) for ix in self.table.list_indices()}
            wanted = {
                "search_text": FTS(stem=True, remove_stop_words=True),
                # Makes the ACL pre-filter (array_has_any) an index lookup instead of a scan.
                "acl": LabelList(),
                # Makes the fetch of the final hits by id a lookup.
                "chunk_id": BTree(),
            }
            for column, config in wanted.items():
                if (column,) not in have:
                    self.table.create_index(column, config=config)
            if ("vector",) not in have:  # exact (one partition) or IVF-PQ by size: lance_vectors.py
                config = lance_vectors.vector_index_config(rows, self.dim, self.ann_min_rows)
                self.table.create_index("vector", config=config)
            self._approximate = lance_vectors.is_approximate(lance_vectors.vector_index_of(self.table))
            version = self.version()
        self._checked = (version, rows)
        return rows

    @property
    def state(self) -> FolderSyncState:
        """Roots, sync log and metadata as files beside the table, and the write lock."""
        return FolderSyncState(self.path)

    def chunk_index(self) -> list[ChunkRow]:
        """Every chunk's id, document, path, document hash and ACL."""
        if self.count() == 0:
            return []
        cols = ["chunk_id", "doc_id", "source_path", "doc_hash", "acl"]
        rows = self.table.search().select(cols).limit(None).to_arrow().to_pylist()
        return [ChunkRow(r["chunk_id"], r["doc_id"], r["source_path"], r["doc_hash"], tuple(r["acl"] or ()))
                for r in rows]

    def count(self) -> int:
        """Number of stored chunks."""
        return int(self.table.count_rows())

    def acl_tokens(self) -> set[str]:
        """Every distinct ACL token on a stored chunk (one scan of the ``acl`` column)."""
        if self.count() == 0:
            return set()
        import pyarrow.compute as pc

        acl = self.table.search().select(["acl"]).limit(None).to_arrow()["acl"]
        return {t for t in pc.unique(pc.list_flatten(acl)).to_pylist() if t is not None}

    def version(self) -> int:
        """The table version; every commit bumps it."""
        return int(self.table.version)

    def optimize(self) -> None:
        """Build missing indexes, fold new rows into them, switch the vector index between exact and IVF-PQ
        when the table crossed ``ann_min_rows``; prune old versions."""
        rows = self._ensure_indexes()
        if rows == 0:
            return
        from datetime import timedelta

        if lance_vectors.wrong_vector_index(lance_vectors.vector_index_of(self.table), rows, self.ann_min_rows):
            config = lance_vectors.vector_index_config(rows, self.dim, self.ann_min_rows)
            self.table.create_index("vector", config=config, replace=True)
            self._ensure_indexes()
        self.table.optimize(cleanup_older_than=timedelta(days=1))

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        """Writes inside are appended as they are anyway (indexes are built by :meth:`optimize`); a normal exit
        runs ``optimize()``."""
        yield
        self.optimize()


def open_store(path: Path, dim: int = 384) -> LanceStore:
    """Open (or create) the store at ``path``."""
    return LanceStore(path, dim=dim)


__all__ = ["LanceStore", "acl_filter", "open_store"]
