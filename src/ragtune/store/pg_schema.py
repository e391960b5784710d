"""The PostgreSQL store's schema, created and changed only by numbered migrations.

Each migration runs once per schema, in its own transaction, and is recorded in ``schema_version``. The whole
run holds a session advisory lock derived from the schema name, so two processes opening the store at once
(a CLI and a server worker) never apply one twice: the second waits, then finds nothing left to do. A schema
migrated by a newer ragtune (a version this code does not know) is refused rather than written to.

Version 1 (see :func:`_v1`): ``chunks`` (every :class:`~ragtune.core.Chunk` field, the search text, its
``tsvector`` and length, the vector), its indexes, the version counter, the lexical statistics the triggers keep,
and the sync state (roots, sync log, metadata, the write lock's holder).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg import Connection, errors, sql

from ragtune.errors import ConfigError

MIN_ITERATIVE_SCAN = (0, 8)  # pgvector's hnsw.iterative_scan appeared in 0.8.0


def lock_key(schema: str, purpose: str) -> int:
    """A stable signed 64-bit advisory-lock key for one purpose (``migrate``, ``write``) on one schema."""
    digest = hashlib.sha256(f"ragtune:{purpose}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class Migration:
    """One schema change: its number, what it does, and the function applying it inside a transaction."""

    version: int
    description: str
    apply: Callable[[Connection[Any], sql.Identifier, int], None]


def _v1(conn: Connection[Any], s: sql.Identifier, dim: int) -> None:
    statements = [
        # Terms and positions of a tsvector: the BM25 document length (stop words excluded, as in the Lance index).
        """CREATE FUNCTION {s}.tsv_length(tsvector) RETURNS integer LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
           AS 'SELECT coalesce(sum(cardinality(positions)), 0)::integer FROM unnest($1)'""",
        """CREATE TABLE {s}.chunks (
            chunk_id text PRIMARY KEY,
            doc_id text NOT NULL,
            source_path text NOT NULL,
            title text NOT NULL,
            section_path text[] NOT NULL,
            page integer,
            char_start bigint NOT NULL,
            char_end bigint NOT NULL,
            ordinal integer NOT NULL,
            text text NOT NULL,
            search_text text NOT NULL,
            content_hash text NOT NULL,
            doc_hash text NOT NULL,
            mtime double precision NOT NULL,
            synced_at double precision NOT NULL,
            acl text[] NOT NULL,
            embedding vector({dim}) NOT NULL,
            tsv tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, search_text)) STORED,
            doc_len integer GENERATED ALWAYS AS ({s}.tsv_length(to_tsvector('english'::regconfig, search_text)))
                STORED
        )""",
        "CREATE INDEX chunks_doc_id ON {s}.chunks (doc_id)",
        # The ACL filter (acl && principal's tokens) is an index lookup.
        "CREATE INDEX chunks_acl ON {s}.chunks USING gin (acl)",
        # Lexical candidates (tsv @@ query) and per-term document frequencies.
        "CREATE INDEX chunks_tsv ON {s}.chunks USING gin (tsv)",
        # Dense search: approximate, kept exact enough under ACL filters by iterative scans (see postgres.py).
        "CREATE INDEX chunks_embedding ON {s}.chunks USING hnsw (embedding vector_cosine_ops)",
        # One row: bumped in the transaction of every write, so caches and other processes see each change.
        """CREATE TABLE {s}.store_version (only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
                                            version bigint NOT NULL)""",
        "INSERT INTO {s}.store_version VALUES (true, 0)",
        # N and the summed length of the chunks with at least one term (global BM25), kept by triggers.
        """CREATE TABLE {s}.lexical_stats (only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
                                            n bigint NOT NULL, total_len bigint NOT NULL)""",
        "INSERT INTO {s}.lexical_stats VALUES (true, 0, 0)",
        """CREATE FUNCTION {s}.lexical_stats_add() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF NOT EXISTS (SELECT FROM new_rows) THEN RETURN NULL; END IF;
             UPDATE {s}.lexical_stats SET
               n = n + (SELECT count(*) FROM new_rows WHERE doc_len > 0),
               total_len = total_len + (SELECT coalesce(sum(doc_len), 0) FROM new_rows);
             RETURN NULL;
           END $$""",
        """CREATE FUNCTION {s}.lexical_stats_remove() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF NOT EXISTS (SELECT FROM old_rows) THEN RETURN NULL; END IF;
             UPDATE {s}.lexical_stats SET
               n = n - (SELECT count(*) FROM old_rows WHERE doc_len > 0),
               total_len = total_len - (SELECT coalesce(sum(doc_len), 0) FROM old_rows);
             RETURN NULL;
           END $$""",
        """CREATE TRIGGER chunks_stats_insert AFTER INSERT ON {s}.chunks REFERENCING NEW TABLE AS new_rows
           FOR EACH STATEMENT EXECUTE FUNCTION {s}.lexical_stats_add()""",
        """CREATE TRIGGER chunks_stats_delete AFTER DELETE ON {s}.chunks REFERENCING OLD TABLE AS old_rows
           FOR EACH STATEMENT EXECUTE FUNCTION {s}.lexical_stats_remove()""",
        # An UPDATE may change search_text (ON CONFLICT DO UPDATE): take the old rows out, put the new ones in.
        """CREATE TRIGGER chunks_stats_update_old AFTER UPDATE ON {s}.chunks REFERENCING OLD TABLE AS old_rows
           FOR EACH STATEMENT EXECUTE FUNCTION {s}.lexical_stats_remove()""",
        """CREATE TRIGGER chunks_stats_update_new AFTER UPDATE ON {s}.chunks REFERENCING NEW TABLE AS new_rows
           FOR EACH STATEMENT EXECUTE FUNCTION {s}.lexical_stats_add()""",
        # Sync state (SyncState): the ingested roots, the sync log, small metadata, the write lock's holder.
        "CREATE TABLE {s}.roots (root text PRIMARY KEY, acl text[] NOT NULL)",
        """CREATE TABLE {s}.sync_log (id bigserial PRIMARY KEY, time double precision NOT NULL,
                                       entry jsonb NOT NULL)""",
        "CREATE TABLE {s}.meta (key text PRIMARY KEY, value jsonb NOT NULL)",
        """CREATE TABLE {s}.write_lock_holder (only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
                                                what text NOT NULL, since timestamptz NOT NULL DEFAULT now())""",
    ]
    for statement in statements:
        conn.execute(sql.SQL(statement).format(s=s, dim=sql.Literal(dim)))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "chunks with vector, tsvector and ACL indexes; version counter; lexical stats; sync state", _v1),
)


def extension_info(conn: Connection[Any]) -> tuple[str, tuple[int, ...]]:
    """(schema, version) of the installed ``vector`` extension, creating it first when this role may."""
    query = ("SELECT n.nspname, e.extversion FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
             "WHERE e.extname = 'vector'")
    row = conn.execute(query).fetchone()
    if row is None:
        try:
            with conn.transaction():
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except (errors.InsufficientPrivilege, errors.FeatureNotSupported, errors.UndefinedFile) as exc:
            raise ConfigError(
                "the PostgreSQL database has no pgvector extension and this role cannot create it "
                f"({type(exc).__name__}): have an administrator run `CREATE EXTENSION vector;` in it "
                "(pgvector 0.8 or later; on Debian: scripts/setup_postgres.sh)") from None
        row = conn.execute(query).fetchone()
        assert row is not None
    version = tuple(int(p) for p in str(row[1]).split(".")[:3] if p.isdigit())
    return str(row[0]), version


def set_search_path(conn: Connection[Any], schema: str, ext_schema: str) -> None:
    """Resolve names in the store's schema, then in the extension's (the ``vector`` type and its operators)."""
    conn.execute(sql.SQL("SET search_path TO {}, {}").format(sql.Identifier(schema), sql.Identifier(ext_schema)))


def applied_versions(conn: Connection[Any], schema: str) -> list[int]:
    """The migrations recorded in ``schema``, oldest first (empty when the schema has none yet)."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                          [sql.Identifier(schema, "schema_version").as_string(conn)]).fetchone()
    if not exists or not exists[0]:
        return []
    rows = conn.execute(sql.SQL("SELECT version FROM {} ORDER BY version").format(
        sql.Identifier(schema, "schema_version"))).fetchall()
    return [int(r[0]) for r in rows]


def _refuse_newer(done: set[int], schema: str) -> None:
    known = {m.version for m in MIGRATIONS}
    if done - known:
        raise ConfigError(f"PostgreSQL schema {schema!r} was migrated by a newer ragtune (schema version "
                          f"{max(done)}, this one knows up to {max(known)}): upgrade ragtune")


def migrate(conn: Connection[Any], schema: str, dim: int) -> list[int]:
    """Bring ``schema`` up to the latest version; return the migrations applied now (none when up to date).

    ``conn`` must be in autocommit mode; it holds the migration advisory lock while migrations run. A schema
    already up to date is only read (no lock, no DDL), so a read-only replica can open the store too.
    Returns after checking that the stored vectors have ``dim`` dimensions.
    """
    done = set(applied_versions(conn, schema))
    _refuse_newer(done, schema)
    applied = []
    if not {m.version for m in MIGRATIONS} <= done:
        s = sql.Identifier(schema)
        key = lock_key(schema, "migrate")
        conn.execute("SELECT pg_advisory_lock(%s)", [key])
        try:
            ext_schema, _ = extension_info(conn)
            set_search_path(conn, schema, ext_schema)
            with conn.transaction():
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s))
                conn.execute(sql.SQL("""CREATE TABLE IF NOT EXISTS {}.schema_version (
                    version integer PRIMARY KEY, description text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())""").format(s))
            done = set(applied_versions(conn, schema))  # another process may have migrated while we waited
            _refuse_newer(done, schema)
            for m in MIGRATIONS:
                if m.version in done:
                    continue
                with conn.transaction():
                    m.apply(conn, s, dim)
                    conn.execute(sql.SQL("INSERT INTO {}.schema_version (version, description) VALUES (%s, %s)")
                                 .format(s), [m.version, m.description])
                applied.append(m.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [key])
    stored = stored_dim(conn, schema)
    if stored != dim:
        raise ConfigError(f"PostgreSQL schema {schema!r} holds {stored}-dimensional vectors but the embedder makes "
                          f"{dim}: use another store.schema for this embedder")
    return applied


def stored_dim(conn: Connection[Any], schema: str) -> int:
    """The dimension of ``chunks.embedding`` (pgvector keeps it as the column's type modifier)."""
    row = conn.execute("SELECT atttypmod FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'embedding'",
                       [sql.Identifier(schema, "chunks").as_string(conn)]).fetchone()
    if row is None:  # pragma: no cover - migration 1 creates it
        raise ConfigError(f"PostgreSQL schema {schema!r} has no chunks.embedding column; it is not a ragtune store")
    return int(row[0])


__all__ = ["MIGRATIONS", "MIN_ITERATIVE_SCAN", "Migration", "applied_versions", "extension_info", "lock_key",
           "migrate", "set_search_path", "stored_dim"]
