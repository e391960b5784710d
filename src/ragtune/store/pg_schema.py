"""The PostgreSQL store's schema, created and changed only by numbered migrations.

Each migration runs once per schema, in its own transaction, and is recorded in ``schema_version``. The whole
run holds a session advisory lock derived from the schema name, so two processes opening the store at once
(a CLI and a server worker) never apply one twice: the second waits, then finds nothing left to do. A schema
migrated by a newer ragtune (a version this code does not know) is refused rather than written to.

Version 1 (see :func:`_v1`): ``chunks`` (every :class:`~ragtune.core.Chunk` field, the search text, its
``tsvector`` and length, the vector), its indexes, the version counter, the lexical statistics the triggers keep,
and the sync state (roots, sync log, metadata, the write lock's holder).

Version 2 (:func:`_v2`): the generated ``to_tsvector('english')`` columns replaced by ``terms`` and ``doc_len``,
which the store fills with the embedded store's own analysis (:mod:`ragtune.store.pg_lexical`); document
frequencies (``lexical_df``) and per-ACL N and lengths (``lexical_acl_stats``) kept by the triggers beside
``lexical_stats``. An existing v1 index is upgraded in place: every chunk's terms are analysed again, the
statistics recounted and the HNSW index rebuilt, in the migration's one transaction (about 7 s for 10,000
chunks on 2 CPUs; searches and writes wait for it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg import Connection, errors, sql

from ragtune.errors import ConfigError
from ragtune.store.pg_bulk import DEFERRED_INDEXES

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


def _v2(conn: Connection[Any], s: sql.Identifier, dim: int) -> None:
    """Lance's analysis instead of ``to_tsvector('english')``, and document frequencies kept in a table."""
    from ragtune.store import pg_lexical

    def run(*statements: str) -> None:
        for statement in statements:
            conn.execute(sql.SQL(statement).format(s=s))

    run(*(f"DROP TRIGGER chunks_stats_{t} ON {{s}}.chunks" for t in ("insert", "delete", "update_old", "update_new")),
        "DROP FUNCTION {s}.lexical_stats_add()", "DROP FUNCTION {s}.lexical_stats_remove()",
        # The generated columns go (their GIN index with them); Python fills the new ones (pg_lexical).
        "ALTER TABLE {s}.chunks DROP COLUMN tsv, DROP COLUMN doc_len",
        "DROP FUNCTION {s}.tsv_length(tsvector)",
        """ALTER TABLE {s}.chunks ADD COLUMN terms tsvector NOT NULL DEFAULT '',
                                  ADD COLUMN doc_len integer NOT NULL DEFAULT 0""",
        # Kept in the row (compressed if need be) while text, search_text and the vector move to TOAST: every
        # lexical candidate reads its terms, and a TOAST fetch per candidate tripled the search's cost.
        "ALTER TABLE {s}.chunks ALTER COLUMN terms SET STORAGE MAIN",
        "ALTER TABLE {s}.lexical_stats ADD COLUMN analyzer text NOT NULL DEFAULT ''",
        # One row per distinct term of the stored chunks: how many chunks hold it (global BM25's df).
        "CREATE TABLE {s}.lexical_df (term text PRIMARY KEY, df bigint NOT NULL)",
        # N and the total length per distinct ACL: isolated BM25 sums the rows the principal's tokens overlap.
        """CREATE TABLE {s}.lexical_acl_stats (acl text[] PRIMARY KEY, n bigint NOT NULL,
                                                total_len bigint NOT NULL)""",
        "CREATE INDEX lexical_acl_stats_acl ON {s}.lexical_acl_stats USING gin (acl)")
    populated = conn.execute(sql.SQL("SELECT EXISTS (SELECT FROM {s}.chunks)").format(s=s)).fetchone()
    if populated and populated[0]:
        # Every row is rewritten: updating it in place would insert each into the HNSW graph again (about a
        # millisecond a row) and leave the old entries behind; building the graph once afresh is cheaper.
        run("DROP INDEX IF EXISTS {s}.chunks_embedding")  # (absent if dropped for a bulk load: built here)
        pg_lexical.rebuild(conn, s)
        run(DEFERRED_INDEXES["chunks_embedding"])
    else:
        pg_lexical.recount(conn, s)
    run(DEFERRED_INDEXES["chunks_terms"], *_V2_TRIGGERS)  # (no pending list: see pg_bulk)


# The triggers of migration 2: every statement changing chunks applies its net change of N, the total length,
# each term's df and each ACL's N and length in its own transaction (statement-level, with transition tables:
# once per write, not once per row).
# Follows "WITH delta AS (SELECT acl, n, total_len ...)"; an ACL's row goes when its last chunk does.
_ACL_UPSERT = """, up AS (
           INSERT INTO {s}.lexical_acl_stats AS a (acl, n, total_len) SELECT acl, n, total_len FROM delta
           WHERE n <> 0 OR total_len <> 0
           ON CONFLICT (acl) DO UPDATE SET n = a.n + EXCLUDED.n, total_len = a.total_len + EXCLUDED.total_len
           RETURNING a.n)
         SELECT count(*) FILTER (WHERE n <= 0) INTO emptied FROM up;
         IF emptied > 0 THEN DELETE FROM {s}.lexical_acl_stats WHERE n <= 0; END IF"""

_V2_TRIGGERS = (
    """CREATE FUNCTION {s}.lexical_apply(delta_terms text[], delta_df bigint[], delta_n bigint, delta_len bigint)
       RETURNS void LANGUAGE plpgsql AS $$
       BEGIN
         IF delta_n <> 0 OR delta_len <> 0 THEN
           UPDATE {s}.lexical_stats SET n = n + delta_n, total_len = total_len + delta_len;
         END IF;
         IF cardinality(delta_terms) > 0 THEN
           INSERT INTO {s}.lexical_df AS d (term, df) SELECT * FROM unnest(delta_terms, delta_df)
             ON CONFLICT (term) DO UPDATE SET df = d.df + EXCLUDED.df;
           DELETE FROM {s}.lexical_df WHERE term = ANY(delta_terms) AND df <= 0;
         END IF;
       END $$""",
    """CREATE FUNCTION {s}.lexical_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
       DECLARE t text[]; d bigint[]; emptied bigint;
       BEGIN
         SELECT array_agg(term ORDER BY term), array_agg(df ORDER BY term) INTO t, d
           FROM (SELECT u.lexeme AS term, count(*) AS df FROM new_rows r CROSS JOIN LATERAL unnest(r.terms) u
                 GROUP BY u.lexeme) x;
         PERFORM {s}.lexical_apply(coalesce(t, '{{}}'), coalesce(d, '{{}}'),
           (SELECT count(*) FROM new_rows WHERE doc_len > 0), (SELECT coalesce(sum(doc_len), 0) FROM new_rows));
         WITH delta AS (SELECT acl, count(*) FILTER (WHERE doc_len > 0) AS n, sum(doc_len) AS total_len
                        FROM new_rows GROUP BY acl) """ + _ACL_UPSERT + """;
         RETURN NULL;
       END $$""",
    """CREATE FUNCTION {s}.lexical_on_delete() RETURNS trigger LANGUAGE plpgsql AS $$
       DECLARE t text[]; d bigint[]; emptied bigint;
       BEGIN
         SELECT array_agg(term ORDER BY term), array_agg(-df ORDER BY term) INTO t, d
           FROM (SELECT u.lexeme AS term, count(*) AS df FROM old_rows r CROSS JOIN LATERAL unnest(r.terms) u
                 GROUP BY u.lexeme) x;
         PERFORM {s}.lexical_apply(coalesce(t, '{{}}'), coalesce(d, '{{}}'),
           -(SELECT count(*) FROM old_rows WHERE doc_len > 0), -(SELECT coalesce(sum(doc_len), 0) FROM old_rows));
         WITH delta AS (SELECT acl, -count(*) FILTER (WHERE doc_len > 0) AS n, -sum(doc_len) AS total_len
                        FROM old_rows GROUP BY acl) """ + _ACL_UPSERT + """;
         RETURN NULL;
       END $$""",
    # An UPDATE counts only the rows whose terms, length or ACL changed (an ACL change moves the chunk's N and
    # length from its old ACL's row to the new one's, and costs a join, not a recount).
    """CREATE FUNCTION {s}.lexical_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
       DECLARE t text[]; d bigint[]; dn bigint; dl bigint; emptied bigint;
       BEGIN
         SELECT coalesce(sum(x.sign) FILTER (WHERE x.doc_len > 0), 0), coalesce(sum(x.sign * x.doc_len), 0)
           INTO dn, dl
           FROM old_rows o FULL JOIN new_rows n ON n.chunk_id = o.chunk_id
           CROSS JOIN LATERAL (VALUES (o.doc_len, -1), (n.doc_len, 1)) AS x(doc_len, sign)
           WHERE o.doc_len IS DISTINCT FROM n.doc_len AND x.doc_len IS NOT NULL;
         SELECT array_agg(term ORDER BY term), array_agg(df ORDER BY term) INTO t, d
           FROM (SELECT u.lexeme AS term, sum(x.sign) AS df
                 FROM old_rows o FULL JOIN new_rows n ON n.chunk_id = o.chunk_id
                 CROSS JOIN LATERAL (VALUES (o.terms, -1), (n.terms, 1)) AS x(terms, sign)
                 CROSS JOIN LATERAL unnest(x.terms) u
                 WHERE o.terms IS DISTINCT FROM n.terms
                 GROUP BY u.lexeme HAVING sum(x.sign) <> 0) y;
         PERFORM {s}.lexical_apply(coalesce(t, '{{}}'), coalesce(d, '{{}}'), dn, dl);
         WITH delta AS (
           SELECT x.acl, coalesce(sum(x.sign) FILTER (WHERE x.doc_len > 0), 0) AS n,
                  sum(x.sign * x.doc_len) AS total_len
           FROM old_rows o FULL JOIN new_rows n ON n.chunk_id = o.chunk_id
           CROSS JOIN LATERAL (VALUES (o.acl, o.doc_len, -1), (n.acl, n.doc_len, 1)) AS x(acl, doc_len, sign)
           WHERE (o.acl IS DISTINCT FROM n.acl OR o.doc_len IS DISTINCT FROM n.doc_len) AND x.acl IS NOT NULL
           GROUP BY x.acl) """ + _ACL_UPSERT + """;
         RETURN NULL;
       END $$""",
    """CREATE FUNCTION {s}.lexical_on_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         DELETE FROM {s}.lexical_df;
         DELETE FROM {s}.lexical_acl_stats;
         UPDATE {s}.lexical_stats SET n = 0, total_len = 0;
         RETURN NULL;
       END $$""",
    """CREATE TRIGGER chunks_lexical_insert AFTER INSERT ON {s}.chunks REFERENCING NEW TABLE AS new_rows
       FOR EACH STATEMENT EXECUTE FUNCTION {s}.lexical_on_insert()""",
    """CREATE TRIGGER chunks_lexical_delete AFTER DELETE ON {s}.chunks REFERENCING OLD TABLE AS old_rows
       FOR EACH STATEMENT EXECUTE FUNCTION {s}.lexical_on_delete()""",
    """CREATE TRIGGER chunks_lexical_update AFTER UPDATE ON {s}.chunks
       REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
       FOR EACH STATEMENT EXECUTE FUNCTION {s}.lexical_on_update()""",
    """CREATE TRIGGER chunks_lexical_truncate AFTER TRUNCATE ON {s}.chunks
       FOR EACH STATEMENT EXECUTE FUNCTION {s}.lexical_on_truncate()""",
)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "chunks with vector, tsvector and ACL indexes; version counter; lexical stats; sync state", _v1),
    Migration(2, "terms analysed as the embedded store does; document frequencies kept in lexical_df", _v2),
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
