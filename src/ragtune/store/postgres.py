"""The server store: PostgreSQL + pgvector, on the same :class:`~ragtune.store.base.Store` contract as LanceDB.

One table ``chunks`` in the store's schema (default ``ragtune``; created and migrated by
:mod:`ragtune.store.pg_schema`). Both searches put the ACL filter in the SQL itself (``acl && principal's
tokens``, a GIN index lookup), so ranking and ``LIMIT`` only ever see readable chunks; an empty ACL matches
nobody. Dense search walks an HNSW index with pgvector's iterative scans (``hnsw.iterative_scan =
relaxed_order``), which keep walking the graph until ``k`` readable chunks are found, and falls back to an
exact scan of the readable chunks when the walk still comes back short (a very selective filter). Lexical
search is BM25 computed in SQL over terms analysed as the embedded store analyses them
(:mod:`ragtune.store.pg_lexical`). Every write is one transaction that also
bumps the version counter, so a killed ingestion leaves a document either old or new, and every process on
the database (CLI, server workers) sees each write on its next query: nothing is cached in the process.

The DSN may carry a password: no message, log line or ``repr`` of this module quotes it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
from psycopg import Connection, sql
from psycopg_pool import ConnectionPool

from ragtune.core import Chunk, Principal
from ragtune.errors import ConfigError, RagtuneError
from ragtune.store import pg_bulk, pg_lexical
from ragtune.store.base import ChunkRow, DocRecord, check_replacement
from ragtune.store.pg_dsn import DSN_ENV, describe_dsn, parse_dsn, redact_dsn
from ragtune.store.pg_schema import MIN_ITERATIVE_SCAN, extension_info, migrate, set_search_path
from ragtune.store.pg_state import PgSyncState

log = logging.getLogger(__name__)

DEFAULT_SCHEMA = "ragtune"
DEFAULT_POOL_SIZE = 5
DEFAULT_EF_SEARCH = 1000  # the HNSW candidate list per scan step (pgvector's default is 40); capped at 1000
DEFAULT_MAX_SCAN_TUPLES = 20_000  # how far an iterative scan walks before giving up (pgvector's default)

_COLUMNS = ["chunk_id", "doc_id", "source_path", "title", "section_path", "page", "char_start", "char_end",
            "ordinal", "text", "content_hash", "doc_hash", "mtime", "acl"]
_WRITE_COLUMNS = [*_COLUMNS, "search_text", "synced_at", "embedding", "terms", "doc_len"]


def _identifier(name: str, what: str) -> str:
    if not name or len(name) > 63 or not (name[0].isalpha() or name[0] == "_") or not all(
            c.isalnum() or c == "_" for c in name) or not name.isascii():
        raise ConfigError(f"{what} {name!r} is not a valid PostgreSQL name: use up to 63 letters, digits and _, "
                          "starting with a letter")
    return name


class PostgresStore:
    """PostgreSQL + pgvector :class:`~ragtune.store.base.Store` (and its :class:`SyncState`, ``.state``).

    ``dsn``: a libpq connection string or URL. ``schema``: the PostgreSQL schema holding this index (one per
    project; several may share a database). ``pool_size``: connections this process keeps at most (each server
    worker has its own pool; see docs/postgres.md for sizing against ``max_connections``).
    """

    def __init__(self, dsn: str, *, dim: int = 384, schema: str = DEFAULT_SCHEMA,
                 pool_size: int = DEFAULT_POOL_SIZE, ef_search: int = DEFAULT_EF_SEARCH,
                 max_scan_tuples: int = DEFAULT_MAX_SCAN_TUPLES, connect_timeout: float = 10.0,
                 index_build_memory: str = pg_bulk.DEFAULT_BUILD_MEMORY) -> None:
        self.schema = _identifier(schema, "store schema")
        self.index_build_memory = pg_bulk.check_build_memory(index_build_memory)
        self.dim = int(dim)
        self.ef_search = max(1, min(int(ef_search), 1000))
        self.max_scan_tuples = max(1, int(max_scan_tuples))
        self.dense_exact_fallbacks = 0  # dense searches the HNSW walk left short, answered by the exact path
        self._dsn = dsn
        self._where = describe_dsn(dsn)
        params = parse_dsn(dsn)  # a malformed DSN is a ConfigError that never quotes it
        self._kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in params:
            self._kwargs["connect_timeout"] = max(1, round(connect_timeout))
        self._s = sql.Identifier(self.schema)
        with self._errors("open"):
            with psycopg.connect(dsn, **self._kwargs) as conn:
                self.migrations_applied = migrate(conn, self.schema, self.dim)
                self._ext_schema, version = extension_info(conn)
                if stale := pg_lexical.stored_analyzer(conn, self._s, differing=True):
                    log.warning("the lexical terms in PostgreSQL schema %s were made by %s, but this ragtune "
                                "analyses queries with %s: BM25 misses words the two stem differently until "
                                "PostgresStore.rebuild_lexical() runs", self.schema, stale, pg_lexical.analyzer_id())
                pg_bulk.warn_if_missing(conn, self.schema)
            self.iterative_scan = version >= MIN_ITERATIVE_SCAN
            if not self.iterative_scan:
                log.warning("pgvector %s has no iterative index scans (0.8+): filtered dense searches fall back "
                            "to exact scans more often", ".".join(map(str, version)))
            self._pool: ConnectionPool[Any] = ConnectionPool(
                dsn, min_size=1, max_size=max(1, int(pool_size)), kwargs=self._kwargs, configure=self._configure,
                name=f"ragtune-{self.schema}", open=True, timeout=max(connect_timeout, 5.0))
        self._state = PgSyncState(self._pool, self.schema, self._connect)

    def __repr__(self) -> str:
        return f"PostgresStore({self._where!r}, schema={self.schema!r}, dim={self.dim})"

    # -- connections ---------------------------------------------------------------------------------------------
    def _configure(self, conn: Connection[Any]) -> None:
        from pgvector.psycopg import register_vector

        set_search_path(conn, self.schema, self._ext_schema)
        # JIT compiling costs 0.1-1 s per statement; these queries are short, and their cost estimates on a
        # large table would cross jit_above_cost and pay that on every search.
        conn.execute("SET jit = off")
        register_vector(conn)

    def _connect(self) -> Connection[Any]:
        """A new connection outside the pool (the write lock holds one for as long as it is held)."""
        with self._errors("connect"):
            conn = psycopg.connect(self._dsn, **self._kwargs)
            self._configure(conn)
            return conn

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Database errors as one-line :class:`ConfigError`s without the password (nor the chained exception,
        whose text may hold it)."""
        try:
            yield
        except RagtuneError:
            raise
        except psycopg.OperationalError as exc:
            raise ConfigError(f"cannot use the PostgreSQL store at {self._where} ({doing}): "
                              f"{redact_dsn(str(exc).strip(), [self._dsn])}; check store.dsn or {DSN_ENV} and "
                              "that the server is running and reachable") from None
        except psycopg.Error as exc:
            raise ConfigError(f"PostgreSQL store at {self._where}, schema {self.schema} ({doing}): "
                              f"{type(exc).__name__}: {redact_dsn(str(exc).strip(), [self._dsn])}") from None

    @contextmanager
    def _conn(self, doing: str) -> Iterator[Connection[Any]]:
        with self._errors(doing), self._pool.connection() as conn:
            yield conn

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(s=self._s)

    def close(self) -> None:
        """Close the connection pool (the store cannot be used afterwards)."""
        self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes --------------------------------------------------------------------------------------------------
    def _serialize(self, conn: Connection[Any]) -> None:
        """Inside a write's transaction, first: lock the counter row, so concurrent writes run one after another
        and each statement sees the previous write committed (none misses rows an interleaved write inserted)."""
        conn.execute(self._q("SELECT version FROM {s}.store_version FOR UPDATE"))

    def _bump(self, conn: Connection[Any]) -> None:
        conn.execute(self._q("UPDATE {s}.store_version SET version = version + 1"))

    def replace_documents(
        self, doc_ids: Sequence[str], chunks: Sequence[Chunk], vectors: np.ndarray, synced_at: float
    ) -> None:
        """Atomically make ``chunks`` the only chunks of ``doc_ids`` (one transaction: all or nothing)."""
        check_replacement(doc_ids, chunks)
        if not doc_ids:
            return
        vecs = np.asarray(vectors, dtype=np.float32)
        if len(chunks) != len(vecs) or (len(chunks) and vecs.shape[1:] != (self.dim,)):
            raise ValueError(f"{len(chunks)} chunks but vectors of shape {vecs.shape} (expected ({len(chunks)}, "
                             f"{self.dim}))")
        terms = pg_lexical.chunk_terms([c.search_text for c in chunks])  # the embedded store's analysis
        rows = [self._row(c, v, synced_at, t) for c, v, t in zip(chunks, vecs, terms, strict=True)]
        cols = sql.SQL(", ").join(map(sql.Identifier, _WRITE_COLUMNS))
        with self._conn("write") as conn, conn.transaction():
            self._serialize(conn)
            conn.execute(self._q("DELETE FROM {s}.chunks WHERE doc_id = ANY(%s)"), [list(doc_ids)])
            if rows:
                # COPY into a staging table, then one INSERT: the statement-level triggers that keep the BM25
                # statistics run once per write, not once per chunk.
                conn.execute(sql.SQL("CREATE TEMP TABLE ragtune_stage ON COMMIT DROP AS SELECT {cols} FROM "
                                     "{s}.chunks WITH NO DATA").format(cols=cols, s=self._s))
                with conn.cursor() as cur:
                    with cur.copy(sql.SQL("COPY ragtune_stage ({cols}) FROM STDIN").format(cols=cols)) as copy:
                        for row in rows:
                            copy.write_row(row)
                    # A chunk id stored under another document moves to this one (as in the embedded store).
                    cur.execute(sql.SQL("INSERT INTO {s}.chunks ({cols}) SELECT {cols} FROM ragtune_stage "
                                        "ON CONFLICT (chunk_id) DO UPDATE SET {updates}").format(
                        s=self._s, cols=cols,
                        updates=sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
                                                   for c in _WRITE_COLUMNS[1:])))
            self._bump(conn)

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        """Writes inside may leave the HNSW and term indexes to one build at the end (:mod:`~ragtune.store.pg_bulk`):
        only if the store is empty at entry, else nothing changes. A normal exit builds them and runs
        :meth:`optimize`; an error inside leaves every committed write, and the next ``optimize()`` builds them."""
        with self._conn("bulk load") as conn, conn.transaction():
            self._serialize(conn)
            deferred = pg_bulk.drop_if_empty(conn, self.schema)
        yield
        if deferred:
            log.info("building the vector and term indexes of PostgreSQL schema %s", self.schema)
        self.optimize()

    @staticmethod
    def _row(c: Chunk, vector: np.ndarray, synced_at: float, terms: tuple[str, int]) -> tuple[Any, ...]:
        texts = (c.chunk_id, c.doc_id, c.source_path, c.title, c.text, c.content_hash, c.doc_hash,
                 *c.section_path, *c.acl)
        if any("\x00" in t for t in texts):
            raise ValueError(f"chunk {c.chunk_id!r} holds a NUL character, which PostgreSQL text cannot store")
        return (c.chunk_id, c.doc_id, c.source_path, c.title, list(c.section_path), c.page, c.char_start,
                c.char_end, c.ordinal, c.text, c.content_hash, c.doc_hash, float(c.mtime), list(c.acl),
                c.search_text, float(synced_at), vector, *terms)

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        """Remove every chunk of these documents (one transaction)."""
        if not doc_ids:
            return
        with self._conn("delete") as conn, conn.transaction():
            self._serialize(conn)
            cur = conn.execute(self._q("DELETE FROM {s}.chunks WHERE doc_id = ANY(%s)"), [list(doc_ids)])
            if cur.rowcount:
                self._bump(conn)

    def set_acl(self, doc_id: str, acl: Sequence[str], synced_at: float) -> None:
        """Re-permission one document in one transaction, keeping its vectors."""
        with self._conn("set_acl") as conn, conn.transaction():
            self._serialize(conn)
            cur = conn.execute(self._q("UPDATE {s}.chunks SET acl = %s, synced_at = %s WHERE doc_id = %s"),
                               [list(acl), float(synced_at), doc_id])
            if cur.rowcount:
                self._bump(conn)

    # -- reads ---------------------------------------------------------------------------------------------------
    def documents(self) -> list[DocRecord]:
        """One record per document, derived from its chunks (the first chunk's fields)."""
        query = self._q("""
            SELECT DISTINCT ON (doc_id) doc_id, source_path, title, doc_hash, acl, mtime, synced_at,
                   count(*) OVER (PARTITION BY doc_id)
            FROM {s}.chunks ORDER BY doc_id, ordinal, chunk_id COLLATE "C"
            """)
        with self._conn("documents") as conn:
            rows = conn.execute(query).fetchall()
        return sorted((DocRecord(doc_id=r[0], source_path=r[1], title=r[2], doc_hash=r[3], acl=tuple(r[4]),
                                 mtime=r[5], synced_at=r[6], chunks=int(r[7])) for r in rows),
                      key=lambda d: d.source_path)

    def lexical_search(
        self, query: str, principal: Principal, k: int, *, isolated: bool = False
    ) -> list[tuple[str, float]]:
        """BM25 over chunks the principal may read (ACL filter in the query), terms analysed as the embedded
        store analyses them; ``isolated=True``: N, df and the average length over those chunks only
        (:mod:`ragtune.store.pg_lexical`)."""
        if not query.strip() or k <= 0:
            return []
        with self._conn("lexical search") as conn:
            return pg_lexical.search(conn, self._s, query, principal.tokens(), int(k), isolated=isolated)
    def explain_lexical_search(self, query: str, principal: Principal, k: int, *, isolated: bool = False) -> str:
        """PostgreSQL's plan of :meth:`lexical_search` (EXPLAIN ANALYZE, BUFFERS): where its time goes."""
        with self._conn("explain lexical search") as conn:
            return pg_lexical.explain(conn, self._s, query, principal.tokens(), int(k), isolated=isolated)

    def rebuild_lexical(self) -> int:
        """Analyse every chunk's search text again and recount the BM25 statistics, in one write transaction
        (needed only when the stemmer's version changed: the store warns at open). Returns the chunk count."""
        with self._conn("rebuild lexical terms") as conn, conn.transaction():
            self._serialize(conn)
            done = pg_lexical.rebuild(conn, self._s)
            self._bump(conn)
        return done


    def readable_texts(self, principal: Principal) -> list[tuple[str, str]]:
        """(chunk id, search text) of every chunk the principal may read, by id (ACL filter in the query)."""
        with self._conn("readable texts") as conn:
            rows = conn.execute(self._q("SELECT chunk_id, search_text FROM {s}.chunks WHERE acl && %s::text[] "
                                        "ORDER BY chunk_id COLLATE \"C\""), [principal.tokens()]).fetchall()
        return [(str(cid), str(text)) for cid, text in rows]

    _DENSE = """
        WITH hits AS MATERIALIZED (
            SELECT chunk_id, embedding <=> %(q)s AS distance FROM {s}.chunks
            WHERE acl && %(tokens)s::text[] ORDER BY embedding <=> %(q)s LIMIT %(k)s)
        SELECT chunk_id, distance FROM hits ORDER BY distance, chunk_id COLLATE "C"
        """

    def _dense_params(self, vector: np.ndarray, principal: Principal, k: int) -> dict[str, Any]:
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        if q.shape != (self.dim,):
            raise ValueError(f"query vector has {q.size} dimensions; the store holds {self.dim}")
        return {"q": q, "tokens": principal.tokens(), "k": int(k)}

    def _walk_settings(self, conn: Connection[Any], k: int) -> None:
        """Inside a transaction: the HNSW walk's settings for this query only (SET LOCAL)."""
        ef = max(self.ef_search, min(k, 1000))
        conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(ef)))
        if self.iterative_scan:
            # Relaxed order: the walk goes on until k rows pass the ACL filter (or max_scan_tuples), returning
            # nearly sorted rows; the outer ORDER BY of _DENSE sorts them exactly.
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            conn.execute(sql.SQL("SET LOCAL hnsw.max_scan_tuples = {}").format(sql.Literal(self.max_scan_tuples)))

    def dense_search(self, vector: np.ndarray, principal: Principal, k: int) -> list[tuple[str, float]]:
        """Cosine similarity over chunks the principal may read (ACL filter in the query), best first."""
        if k <= 0:
            return []
        params = self._dense_params(vector, principal, k)
        query = self._q(self._DENSE)
        with self._conn("dense search") as conn:
            with conn.transaction():
                self._walk_settings(conn, k)
                # Never prepared: a prepared statement's generic plan (PostgreSQL's choice after five runs) does
                # not know the vector and LIMIT, scanned every chunk and took 32 ms where the HNSW walk takes 4,
                # and would ignore the exact path's SET LOCALs below.
                rows = conn.execute(query, params, prepare=False).fetchall()
            if len(rows) < k:
                # The walk gave up before finding k readable chunks: either fewer exist, or the filter is so
                # selective that scanning the readable ones exactly (ACL index, then sort) is the cheap path.
                with conn.transaction():
                    # No index scan (the HNSW walk is one); sequential and ACL-index bitmap scans allowed even if
                    # the session disabled them.
                    for setting in ("enable_indexscan = off", "enable_seqscan = on", "enable_bitmapscan = on"):
                        conn.execute("SET LOCAL " + setting)
                    exact = conn.execute(query, params, prepare=False).fetchall()
                if len(exact) > len(rows):
                    self.dense_exact_fallbacks += 1
                    rows = exact
        return [(str(cid), 1.0 - float(d)) for cid, d in rows]

    def explain_dense_search(self, vector: np.ndarray, principal: Principal, k: int) -> str:
        """PostgreSQL's plan of the dense search (EXPLAIN ANALYZE, without the exact fallback), to check that
        filtered queries walk the HNSW index (``Index Scan using chunks_embedding``) and how many rows they read."""
        params = self._dense_params(vector, principal, k)
        with self._conn("explain dense search") as conn, conn.transaction():
            self._walk_settings(conn, k)
            rows = conn.execute(sql.SQL("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) ") + self._q(self._DENSE),
                                params).fetchall()
        return "\n".join(str(r[0]) for r in rows)

    def get_chunks(self, chunk_ids: Sequence[str], principal: Principal) -> dict[str, Chunk]:
        """The chunks with these ids that the principal may read (the ACL filter is in this query too)."""
        if not chunk_ids:
            return {}
        query = sql.SQL("SELECT {cols} FROM {s}.chunks WHERE chunk_id = ANY(%s) AND acl && %s::text[]").format(
            cols=sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)), s=self._s)
        with self._conn("get chunks") as conn:
            rows = conn.execute(query, [list(chunk_ids), principal.tokens()]).fetchall()
        out = {}
        for r in rows:
            row = dict(zip(_COLUMNS, r, strict=True))
            out[row["chunk_id"]] = Chunk(**{**row, "section_path": tuple(row["section_path"]),
                                            "acl": tuple(row["acl"])})
        return out

    def iter_chunks(self, batch_size: int = 1000) -> Iterator[tuple[list[Chunk], np.ndarray]]:
        """Every stored chunk with its vector (float32, one row each), ``batch_size`` chunks at a time, ordered by
        (doc_id, ordinal, chunk_id) in byte order (``COLLATE "C"``: code points, as the embedded store sorts);
        chunks nobody may read included (an admin export, no ACL filter).

        One server-side cursor in a ``REPEATABLE READ READ ONLY`` transaction: a consistent snapshot, fetched a
        batch at a time, holding one pooled connection until the iteration ends or is closed.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        cols = [*_COLUMNS, "embedding"]
        query = sql.SQL("SELECT {cols} FROM {s}.chunks ORDER BY doc_id COLLATE \"C\", ordinal, "
                        "chunk_id COLLATE \"C\"").format(cols=sql.SQL(", ").join(map(sql.Identifier, cols)), s=self._s)
        with self._conn("export") as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            with conn.cursor(name="ragtune_export", binary=True) as cur:  # binary: the float4s exactly
                cur.itersize = batch_size
                cur.execute(query)
                while rows := cur.fetchmany(batch_size):
                    chunks = []
                    for r in rows:
                        row = dict(zip(_COLUMNS, r[:-1], strict=True))
                        chunks.append(Chunk(**{**row, "section_path": tuple(row["section_path"]),
                                               "acl": tuple(row["acl"])}))
                    yield chunks, np.stack([np.asarray(r[-1].to_numpy(), dtype=np.float32) for r in rows])

    @property
    def state(self) -> PgSyncState:
        """Roots, sync log and metadata in this schema's tables; the write lock as an advisory lock."""
        return self._state

    def chunk_index(self) -> list[ChunkRow]:
        """Every chunk's id, document, path, document hash and ACL."""
        with self._conn("chunk index") as conn:
            rows = conn.execute(self._q("SELECT chunk_id, doc_id, source_path, doc_hash, acl FROM {s}.chunks "
                                        "ORDER BY chunk_id COLLATE \"C\"")).fetchall()
        return [ChunkRow(r[0], r[1], r[2], r[3], tuple(r[4])) for r in rows]

    def count(self) -> int:
        """Number of stored chunks."""
        with self._conn("count") as conn:
            row = conn.execute(self._q("SELECT count(*) FROM {s}.chunks")).fetchone()
        return int(row[0]) if row else 0

    def acl_tokens(self) -> set[str]:
        """Every distinct ACL token on a stored chunk."""
        with self._conn("acl tokens") as conn:
            rows = conn.execute(self._q("SELECT DISTINCT unnest(acl) FROM {s}.chunks")).fetchall()
        return {str(r[0]) for r in rows}

    def version(self) -> int:
        """The write counter; every write's transaction bumps it."""
        with self._conn("version") as conn:
            row = conn.execute(self._q("SELECT version FROM {s}.store_version")).fetchone()
        return int(row[0]) if row else 0

    def optimize(self) -> None:
        """Refresh the planner's statistics (ANALYZE) and move the ACL index's pending entries into it (a
        search reads those one by one), after building any index a bulk load left out (:meth:`bulk_load`); every
        other index is kept current by every write already."""
        with self._conn("optimize") as conn:
            pg_bulk.build_missing(conn, self.schema, self.index_build_memory)
            conn.execute(self._q("ANALYZE {s}.chunks"))
            conn.execute("SELECT gin_clean_pending_list(%s::regclass)",
                         [sql.Identifier(self.schema, "chunks_acl").as_string(conn)])


__all__ = ["DEFAULT_SCHEMA", "PostgresStore"]
