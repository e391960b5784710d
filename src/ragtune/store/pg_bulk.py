"""Bulk loading the PostgreSQL store: the two costly indexes built once at the end instead of row by row.

Kept current on every write, the HNSW graph (``chunks_embedding``) and the term index (``chunks_terms``, GIN
without a pending list) cost about a millisecond per inserted chunk together, so writing a million chunks
through ``replace_documents`` takes most of an hour. Built once over the loaded table (``CREATE INDEX``, with
``maintenance_work_mem`` large enough for the HNSW graph and the server's parallel maintenance workers) they
cost a fraction of that. :meth:`PostgresStore.bulk_load <ragtune.store.postgres.PostgresStore.bulk_load>` drops
them only when the store is **empty** when the load starts (a first ingestion, a ``migrate`` target, the scale
benchmark): on a store people already search, dropping them would turn every search into a full scan.

Nothing here changes what a search returns: without ``chunks_embedding`` dense search is an exact scan, and
without ``chunks_terms`` BM25 reads every readable chunk's terms; both just cost more. A load that is killed or
fails leaves every committed write in place; ``optimize()`` (which every ingestion ends with) builds whatever
index is missing, and the store warns at open while one is.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from psycopg import Connection, sql

# The indexes a bulk load defers, by name, as migration 2 left them (the migration creates them from here too).
DEFERRED_INDEXES: dict[str, str] = {
    # m 32, ef_construction 200 (pgvector's defaults: 16, 64): on the million-chunk scale corpus, recall@10 at
    # ef_search 400 rose from 0.81 to 0.97 unfiltered and from 0.79 to 0.95 under a 2 % filter (100 queries),
    # and at the default ef_search 1000 it is 0.97 / 0.96 (300 queries); the build took 1,027 s instead of 186
    # (docs/postgres.md).
    "chunks_embedding": "CREATE INDEX IF NOT EXISTS chunks_embedding ON {s}.chunks "
                        "USING hnsw (embedding vector_cosine_ops) WITH (m = 32, ef_construction = 200)",
    # No pending list: with GIN's fastupdate every search scans the entries inserted since the last VACUUM, and
    # 360 such pages after loading SciFact made each search 2.5 times slower.
    "chunks_terms": "CREATE INDEX IF NOT EXISTS chunks_terms ON {s}.chunks USING gin (terms) "
                    "WITH (fastupdate = off)",
}
log = logging.getLogger("ragtune.store.postgres")  # the store's own logger: one place to silence or route it
DEFAULT_BUILD_MEMORY = "2GB"  # maintenance_work_mem for the builds: about 2 kB a 384-d vector in the HNSW graph
_MEMORY = re.compile(r"^\d+\s*(kB|MB|GB|TB)$")


def check_build_memory(value: str) -> str:
    """``value`` if it is a PostgreSQL memory size (``512MB``, ``2GB``), else ``ValueError``."""
    if not _MEMORY.match(value.strip()):
        raise ValueError(f"index build memory {value!r} is not a PostgreSQL memory size such as 512MB or 2GB")
    return value.strip()


def missing_indexes(conn: Connection[Any], schema: str) -> list[str]:
    """The deferred indexes the schema's ``chunks`` table lacks now (a bulk load running, failed or killed)."""
    rows = conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = 'chunks'",
                        [schema]).fetchall()
    present = {r[0] for r in rows}
    return [name for name in DEFERRED_INDEXES if name not in present]


def warn_if_missing(conn: Connection[Any], schema: str) -> None:
    """At open: log a warning naming the deferred indexes the table lacks, if any."""
    if missing := missing_indexes(conn, schema):
        log.warning("PostgreSQL schema %s lacks the index(es) %s: a bulk load is running, failed or was killed. "
                    "Searches are correct but slower until it ends or the store's optimize() builds them (the next "
                    "`ragtune ingest` that changes the index runs it)", schema, ", ".join(missing))


def drop_if_empty(conn: Connection[Any], schema: str) -> bool:
    """Inside the caller's write transaction: drop the deferred indexes if ``chunks`` holds no row. True if so."""
    row = conn.execute(sql.SQL("SELECT EXISTS (SELECT FROM {}.chunks)").format(sql.Identifier(schema))).fetchone()
    if row and row[0]:
        return False
    for name in DEFERRED_INDEXES:
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(schema, name)))
    return True


def build_missing(conn: Connection[Any], schema: str, memory: str) -> list[str]:
    """Create every deferred index the table lacks, with ``memory`` as ``maintenance_work_mem``; their names."""
    missing = missing_indexes(conn, schema)
    if not missing:
        return []
    # SET LOCAL inside one transaction: the pooled connection goes back with the server's own settings.
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL maintenance_work_mem = {}").format(sql.Literal(check_build_memory(memory))))
        for name in missing:
            conn.execute(sql.SQL(DEFERRED_INDEXES[name]).format(s=sql.Identifier(schema)))
    return missing


__all__ = ["DEFAULT_BUILD_MEMORY", "DEFERRED_INDEXES", "build_missing", "check_build_memory", "drop_if_empty",
           "missing_indexes", "warn_if_missing"]
