"""PostgresStore against the Store and SyncState conformance suites and the ACL-leakage property, unchanged, on a
real throwaway PostgreSQL + pgvector cluster (tests/store/pg_cluster.py), plus PostgreSQL-only cases: several
processes on one database, migrations, recall of HNSW under a selective ACL filter (and dense statements never
prepared), BM25 parity with the embedded store, the DSN's password kept out of every message, the settings that
select the store, clearing the sync log, and an unfinished migration's message. The lexical design itself (the
analysis, the trigger-kept statistics, pruning, migration 2) is tested in test_pg_lexical.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psycopg
import pytest

from ragtune.config import CONFIG_NAME, init_project, load_settings
from ragtune.core import Acl, Chunk, Principal
from ragtune.errors import ConfigError, LockedError
from ragtune.project import Project
from ragtune.store.base import Store
from ragtune.store.lance import LanceStore
from ragtune.store.pg_schema import MIGRATIONS, applied_versions, migrate
from ragtune.store.postgres import PostgresStore
from ragtune.testing.store import (
    ACLS,
    CAROL,
    EVERYONE,
    LEGAL,
    OUTSIDER,
    TEXTS,
    ExportTest,
    StoreConformanceSuite,
    ids,
    make_chunks,
    unit_vector,
)
from ragtune.testing.store_bulk import BulkLoadTest
from ragtune.testing.store_properties import AclLeakagePropertyTest
from ragtune.testing.sync_state import SyncStateTest
from store.pg_cluster import PgCluster

MakeStore = Callable[..., PostgresStore]


class TestPostgresStore(StoreConformanceSuite, SyncStateTest, ExportTest, BulkLoadTest):
    """The shipped suites, unchanged."""

    @pytest.fixture
    def store(self, pg_store: PostgresStore) -> Store:
        return pg_store


class TestPostgresStoreAclLeakage(AclLeakagePropertyTest):
    """The store-level leakage property shipped in ``ragtune.testing.store_properties``, on PostgresStore."""

    @pytest.fixture
    def store(self, pg_store: PostgresStore) -> Store:
        return pg_store


def fill(store: Store, dim: int = 384) -> None:
    """The conformance suite's corpus, with its vectors."""
    for doc_id, texts in TEXTS.items():
        chunks = make_chunks(doc_id, texts, ACLS[doc_id])
        store.replace_documents([doc_id], chunks, np.stack([unit_vector(c.chunk_id, dim) for c in chunks]), 5.0)
    store.optimize()


# -- several processes on one database --------------------------------------------------------------------------
def test_two_stores_on_one_schema_see_each_others_writes(make_pg_store: MakeStore) -> None:
    a, b = make_pg_store(), make_pg_store()  # two "processes": separate pools on the same schema
    v0 = b.version()
    fill(a)
    assert b.count() == a.count() == 5 and b.version() == a.version() != v0
    assert ids(b.dense_search(unit_vector("d1-00000", 384), LEGAL, 1)) == ["d1-00000"]
    assert ids(b.lexical_search("backups", CAROL, 5)) == ["d4-00000"]
    v1 = a.version()
    b.set_acl("d1", ["public"], synced_at=7.0)  # written through one, read through the other at once
    assert a.version() != v1
    assert set(a.get_chunks(["d1-00000", "d1-00001"], OUTSIDER)) == {"d1-00000", "d1-00001"}
    b.state.set_roots({"/corpus": ["public"]})
    assert a.state.roots() == {"/corpus": ["public"]}
    with a.state.write_lock("ingest A"), pytest.raises(LockedError, match="ingest A"), b.state.write_lock("B"):
        pass  # pragma: no cover - never entered


def test_concurrent_writes_of_one_document_never_mix(pg_cluster: PgCluster, make_pg_store: MakeStore,
                                                     pg_schema: str) -> None:
    """A write waits for one in flight and then sees its rows, so a document is one write's chunks, not both's."""
    store = make_pg_store()
    fill(store)
    with pg_cluster.admin() as other:  # another process's write of d1, held open
        other.execute("BEGIN")
        other.execute(f"SELECT version FROM {pg_schema}.store_version FOR UPDATE")
        other.execute(f"""INSERT INTO {pg_schema}.chunks (chunk_id, doc_id, source_path, title, section_path, page,
            char_start, char_end, ordinal, text, search_text, content_hash, doc_hash, mtime, synced_at, acl, embedding)
            VALUES ('d1-00007', 'd1', '/src/d1.md', 'D1', '{{}}', NULL, 0, 5, 7, 'Other.', 'Other.', '', 'h9', 1, 1,
                    '{{group:legal}}', array_fill(0.1, ARRAY[384])::vector)""")
        new = make_chunks("d1", ["Backups are kept for one year."], ACLS["d1"], doc_hash="h2")
        writer = threading.Thread(target=lambda: store.replace_documents(
            ["d1"], new, np.stack([unit_vector(c.chunk_id, 384) for c in new]), 6.0))
        writer.start()
        writer.join(0.5)
        assert writer.is_alive()  # queued behind the open write
        other.execute("COMMIT")
        writer.join(10)
    assert not writer.is_alive()
    assert sorted(r.chunk_id for r in store.chunk_index() if r.doc_id == "d1") == ["d1-00000"]


def test_a_killed_process_releases_the_write_lock(pg_cluster: PgCluster, make_pg_store: MakeStore,
                                                  pg_schema: str) -> None:
    store = make_pg_store()
    code = textwrap.dedent(f"""
        import sys, time
        from ragtune.store.postgres import PostgresStore
        store = PostgresStore({pg_cluster.dsn!r}, schema={pg_schema!r}, pool_size=1)
        with store.state.write_lock("sync in another process"):
            print("locked", flush=True)
            time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError, match="sync in another process"), store.state.write_lock("here"):
            pass  # pragma: no cover - never entered
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 10
    while True:  # the server notices the dropped connection and releases its advisory lock
        try:
            with store.state.write_lock("after the kill"):
                break
        except LockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- migrations ---------------------------------------------------------------------------------------------------
def test_migrations_run_once_and_again_are_a_no_op(pg_cluster: PgCluster, make_pg_store: MakeStore,
                                                   pg_schema: str) -> None:
    first = make_pg_store()
    assert first.migrations_applied == [m.version for m in MIGRATIONS]
    fill(first)
    again = make_pg_store()
    assert again.migrations_applied == [] and again.count() == 5
    with psycopg.connect(pg_cluster.dsn, autocommit=True) as conn:
        assert migrate(conn, pg_schema, 384) == []
        assert applied_versions(conn, pg_schema) == [m.version for m in MIGRATIONS]
    assert again.version() == first.version()


def test_concurrent_first_opens_migrate_exactly_once(pg_cluster: PgCluster, pg_schema: str) -> None:
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            with PostgresStore(pg_cluster.dsn, schema=pg_schema, pool_size=1) as store:
                results.append(store.migrations_applied)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results) == [[], [], [], [m.version for m in MIGRATIONS]]


def test_a_schema_of_another_dimension_or_a_newer_ragtune_is_refused(
        pg_cluster: PgCluster, make_pg_store: MakeStore, pg_schema: str) -> None:
    make_pg_store()
    with pytest.raises(ConfigError, match="384-dimensional vectors but the embedder makes 768"):
        make_pg_store(dim=768)
    with pg_cluster.admin() as conn:
        conn.execute(f"INSERT INTO {pg_schema}.schema_version (version, description) VALUES (999, 'future')")
    with pytest.raises(ConfigError, match="newer ragtune"):
        make_pg_store()


def test_an_up_to_date_schema_opens_read_only_as_on_a_replica(pg_cluster: PgCluster, make_pg_store: MakeStore) -> None:
    fill(make_pg_store())
    replica = make_pg_store(pg_cluster.dsn + "?options=-c%20default_transaction_read_only%3Don")
    assert replica.migrations_applied == [] and replica.count() == 5
    assert ids(replica.lexical_search("backups", CAROL, 1)) == ["d4-00000"]
    assert ids(replica.dense_search(unit_vector("d1-00000", 384), LEGAL, 1)) == ["d1-00000"]
    with pytest.raises(ConfigError, match="read-only"):
        replica.delete_documents(["d1"])
    assert replica.count() == 5


# -- dense recall under a selective ACL filter ------------------------------------------------------------------
def _haystack(store: PostgresStore, n: int, dim: int) -> np.ndarray:
    """``n`` chunks with random vectors; only chunk 0 is readable by alice, the rest by group:other."""
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    chunks = [Chunk(chunk_id=f"h-{i:05d}", doc_id="h", source_path="/h.md", title="H", section_path=(), page=None,
                    char_start=0, char_end=4, text=f"hay {i}", content_hash="", doc_hash="h", mtime=0.0,
                    acl=("user:alice",) if i == 0 else ("group:other",), ordinal=i) for i in range(n)]
    store.replace_documents(["h"], chunks, vectors, synced_at=0.0)
    store.optimize()
    return vectors


def test_a_selective_acl_filter_keeps_recall_through_the_hnsw_index(pg_cluster: PgCluster,
                                                                     make_pg_store: MakeStore) -> None:
    # The planner may answer a selective filter exactly by itself (ACL index, then sort); disable those paths
    # so the HNSW walk must find alice's one chunk among 2,000 — the farthest one from the query.
    forced = pg_cluster.dsn + "?options=" + "-c%20enable_seqscan%3Doff%20-c%20enable_bitmapscan%3Doff"
    store = make_pg_store(forced, dim=32, ef_search=40)
    vectors = _haystack(store, 2000, 32)
    alice = Principal("alice")
    query = -vectors[0]
    plan = store.explain_dense_search(query, alice, 5)
    assert "chunks_embedding" in plan, plan  # the HNSW index served the query
    hits = store.dense_search(query, alice, 5)
    assert ids(hits) == ["h-00000"] and hits[0][1] == pytest.approx(-1.0, abs=1e-4)
    assert store.dense_exact_fallbacks == 0  # found by the iterative scan itself

    # Without iterative scans the walk stops after ef_search candidates, none readable: the exact path answers.
    store.iterative_scan = False
    assert ids(store.dense_search(query, alice, 5)) == ["h-00000"] and store.dense_exact_fallbacks == 1

    # The default planner, ACL index and all: readable hits only, best first.
    other = make_pg_store(dim=32)
    assert ids(other.dense_search(query, alice, 5)) == ["h-00000"]
    hits = other.dense_search(vectors[5], Principal("bob", frozenset({"other"})), 10)
    assert hits[0][0] == "h-00005" and all(a[1] >= b[1] for a, b in zip(hits, hits[1:], strict=False))
    assert len(hits) == 10 and "h-00000" not in ids(hits)


def test_dense_searches_are_never_prepared(make_pg_store: MakeStore) -> None:
    """A prepared dense statement's generic plan ignores the query vector and LIMIT (it scanned every chunk,
    8x slower on SciFact): psycopg's prepare-after-five must not apply to it; lexical statements stay prepared."""
    store = make_pg_store(pool_size=1)  # one connection: every statement below runs on it
    fill(store)
    for _ in range(8):
        assert ids(store.dense_search(unit_vector("d1-00000", 384), LEGAL, 1)) == ["d1-00000"]
        assert ids(store.lexical_search("backups", CAROL, 1)) == ["d4-00000"]
    with store._conn("test") as conn:
        prepared = [str(r[0]) for r in conn.execute("SELECT statement FROM pg_prepared_statements").fetchall()]
    assert prepared and not [p for p in prepared if "<=>" in p], prepared
    assert [p for p in prepared if "lexical_df" in p], prepared


# -- BM25 ---------------------------------------------------------------------------------------------------------
QUERIES = ["backups", "backups backups", "spring", "vacation days", "Initech merger", "paid vacation spring"]


def test_bm25_scores_match_the_embedded_store_in_both_modes(pg_store: PostgresStore, tmp_path: Path) -> None:
    lance = LanceStore(tmp_path / "lance")
    fill(lance)
    fill(pg_store)
    for principal in (EVERYONE, LEGAL, CAROL, OUTSIDER):
        for query in QUERIES:
            for isolated in (False, True):
                want = lance.lexical_search(query, principal, 10, isolated=isolated)
                got = pg_store.lexical_search(query, principal, 10, isolated=isolated)
                assert ids(got) == ids(want), (query, principal, isolated)
                assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-5)
    # And they differ where they should: d3 (readable by nobody) says "spring" too, which only the global
    # statistics count.
    everyone = pg_store.lexical_search("spring", EVERYONE, 1)[0][1]
    assert everyone < pg_store.lexical_search("spring", EVERYONE, 1, isolated=True)[0][1]


def test_global_statistics_follow_every_write(pg_store: PostgresStore) -> None:
    fill(pg_store)
    before = pg_store.lexical_search("vacation", OUTSIDER, 1)
    hidden = make_chunks("h1", [f"Vacation rule {i}." for i in range(6)], Acl(groups=frozenset({"legal"})))
    pg_store.replace_documents(["h1"], hidden, np.stack([unit_vector(c.chunk_id, 384) for c in hidden]), 6.0)
    lowered = pg_store.lexical_search("vacation", OUTSIDER, 1)
    assert ids(lowered) == ids(before) and lowered[0][1] < before[0][1]  # hidden chunks share the term
    pg_store.set_acl("h1", ["group:hr"], 7.0)  # an update leaves the statistics as they are
    after_acl = pg_store.lexical_search("vacation", OUTSIDER, 1)
    assert ids(after_acl) == ids(lowered) and after_acl[0][1] == pytest.approx(lowered[0][1])
    pg_store.delete_documents(["h1"])
    assert pg_store.lexical_search("vacation", OUTSIDER, 1)[0][1] == pytest.approx(before[0][1])


# -- the password never shows ------------------------------------------------------------------------------------
def _all_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc)


def test_the_dsn_password_never_appears_in_an_error(pg_cluster: PgCluster, pg_schema: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    secret = "Sup3r-s3cret-pw"
    wrong = f"postgresql://ragtune_app:{secret}@127.0.0.1:{pg_cluster.port}/ragtune_test"
    with pytest.raises(ConfigError) as wrong_password:
        PostgresStore(wrong, schema=pg_schema, connect_timeout=5)
    assert "password authentication failed" in str(wrong_password.value)
    closed = f"postgresql://ragtune_app:{secret}@127.0.0.1:1/ragtune_test"
    with pytest.raises(ConfigError) as unreachable:
        PostgresStore(closed, schema=pg_schema, connect_timeout=5)
    with pytest.raises(ConfigError) as malformed:
        PostgresStore(f"host=127.0.0.1 password={secret} dbname", schema=pg_schema)
    for exc in (wrong_password.value, unreachable.value, malformed.value):
        assert secret not in _all_text(exc)
    assert secret not in caplog.text
    with PostgresStore(pg_cluster.dsn, schema=pg_schema) as store:
        assert pg_cluster.password not in repr(store)


# -- settings and wiring -----------------------------------------------------------------------------------------
def test_a_password_in_ragtune_yaml_is_refused(tmp_path: Path) -> None:
    (tmp_path / CONFIG_NAME).write_text("store:\n  kind: postgres\n  dsn: postgresql://app:hunter2@db/rag\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(tmp_path)
    assert "RAGTUNE_STORE_DSN" in str(refused.value) and CONFIG_NAME in str(refused.value)
    assert "hunter2" not in _all_text(refused.value)


def test_project_builds_the_postgres_store_from_settings_and_the_environment(
        pg_cluster: PgCluster, pg_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / CONFIG_NAME).write_text(
        f"store:\n  kind: postgres\n  dsn: postgresql://nobody@127.0.0.1:1/none\n  schema: {pg_schema}\n"
        "  ef_search: 123\n  index_build_memory: 512MB\n")
    monkeypatch.setenv("RAGTUNE_STORE_DSN", pg_cluster.dsn)  # wins over store.dsn, and may hold the password
    project = Project.open(tmp_path)
    store = project.store
    assert isinstance(store, PostgresStore)
    try:
        assert store.schema == pg_schema and store.count() == 0
        assert (store.ef_search, store.index_build_memory) == (123, "512MB")
        fill(store)
        assert ids(project.store.lexical_search("backups", CAROL, 1)) == ["d4-00000"]
    finally:
        store.close()


def test_postgres_without_any_dsn_names_where_to_put_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / CONFIG_NAME).write_text("store:\n  kind: postgres\n")
    monkeypatch.delenv("RAGTUNE_STORE_DSN", raising=False)
    monkeypatch.setenv("RAGTUNE_SECRETS_FILE", str(tmp_path / "no-secrets.yaml"))
    with pytest.raises(ConfigError, match="RAGTUNE_STORE_DSN"):
        _ = Project.open(tmp_path).store


def test_the_dsn_can_come_from_the_secrets_file(pg_cluster: PgCluster, pg_schema: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(f"store_dsn: {pg_cluster.dsn}\n")
    secrets.chmod(0o600)
    (tmp_path / CONFIG_NAME).write_text(f"store:\n  kind: postgres\n  schema: {pg_schema}\n")
    monkeypatch.delenv("RAGTUNE_STORE_DSN", raising=False)
    monkeypatch.setenv("RAGTUNE_SECRETS_FILE", str(secrets))
    store = Project.open(tmp_path).store
    assert isinstance(store, PostgresStore)
    try:
        assert store.count() == 0
    finally:
        store.close()
    secrets.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        _ = Project.open(tmp_path).store


# -- clearing the sync log; an unfinished migration's message ------------------------------------------------------
def test_both_sync_states_clear_their_sync_log(pg_store: PostgresStore, tmp_path: Path) -> None:
    lance = LanceStore(tmp_path / "lance")
    for state in (pg_store.state, lance.state):
        state.clear_sync_log()  # nothing to clear: fine
        state.append_sync({"time": 1.0, "root": "/a"})
        state.append_sync({"time": 2.0, "root": "/b"})
        state.set_roots({"/a": ["public"]})
        state.set_meta("embedder", "e1")
        state.clear_sync_log()
        assert state.sync_log() == []
        assert state.roots() == {"/a": ["public"]} and state.meta()["embedder"] == "e1"  # nothing else goes
        state.append_sync({"time": 3.0, "root": "/c"})
        assert state.sync_log() == [{"time": 3.0, "root": "/c"}]


def test_an_unfinished_migration_is_refused_with_the_migrate_advice(tmp_path: Path) -> None:
    from ragtune.store.migrate import EMBEDDER_KEY, MIGRATION_KEY, UNFINISHED

    init_project(tmp_path)
    project = Project.open(tmp_path)
    fill(project.store)
    project.store.state.set_meta(MIGRATION_KEY, {"state": "incomplete", "from": "src", "started": 1.0})
    project.store.state.set_meta(EMBEDDER_KEY, UNFINISHED)
    with pytest.raises(ConfigError) as refused:
        project.search("backups", EVERYONE)
    assert "unfinished `ragtune migrate`" in str(refused.value) and "--replace" in str(refused.value)
    assert "reindex" not in str(refused.value)
    project.store.state.set_meta(EMBEDDER_KEY, "another-model@1")  # a real mismatch keeps the reindex advice
    with pytest.raises(ConfigError, match="ragtune reindex"):
        Project.open(tmp_path).search("backups", EVERYONE)
