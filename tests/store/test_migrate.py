"""``ragtune migrate``: an index copied between the embedded LanceDB store and PostgreSQL (a real throwaway cluster,
tests/store/pg_cluster.py) without re-embedding, a real small project ingested with the packaged embedder."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from helpers import run_main, write

from ragtune.config import CONFIG_NAME, init_project
from ragtune.core import Acl, Chunk, Principal
from ragtune.errors import ConfigError, DataError
from ragtune.models.embedder import MiniLMEmbedder
from ragtune.project import Project
from ragtune.store.base import Store
from ragtune.store.lance import LanceStore
from ragtune.store.migrate import (
    MIGRATION_KEY,
    MigrationReport,
    migrate_store,
    open_target,
    parse_target,
    store_identity,
)
from ragtune.store.postgres import PostgresStore
from ragtune.testing.store import ACLS, EVERYONE, TEXTS, make_chunks, unit_vector
from store.pg_cluster import APP_DB, APP_ROLE, PgCluster

MakeStore = Callable[..., PostgresStore]
SECRET = "S3cret-pw-9f2"
QUERIES = ["paid vacation days", "salary bands compensation committee", "backups regions nightly",
           "customer records retention", "merger with Initech"]
PRINCIPALS = [Principal("ann"), Principal("hana", frozenset({"hr"})), Principal("lee", frozenset({"legal"}))]


@dataclass
class Copied:
    """The module's project copied into a PostgreSQL schema."""

    schema: str
    store: PostgresStore
    report: MigrationReport


def _project_docs(root: Path) -> None:
    write(root / "handbook.md", "---\nacl: public\n---\n# Employee handbook\n\n"
          "Employees get 25 days of paid vacation per year. Remote work is allowed two days a week.\n")
    write(root / "security.md", "---\nacl: public\n---\n# Security\n\n"
          "Backups run nightly and are stored in two regions.\n")
    write(root / "hr" / "salaries.md", "---\nacl: {groups: [hr]}\n---\n# Salary bands\n\n"
          "Salary bands for engineers are reviewed each spring by the compensation committee.\n")
    # Five sections, five chunks; texts of different lengths, so no two chunks tie in BM25 (ties may break
    # differently in the two stores).
    parts = ["## Customers\n\nCustomer records are kept for seven years after the account closes.",
             "## Invoices\n\nInvoices are archived for ten years in the finance system of the headquarters.",
             "## Tickets\n\nSupport tickets are deleted after two years.",
             "## Contracts\n\nEmployment contracts of former staff are retained for five years by the legal "
             "department in a locked archive room.",
             "## Consent\n\nMarketing consent is renewed yearly."]
    write(root / "legal" / "retention.md", "---\nacl: {groups: [legal]}\n---\n# Retention\n\n"
          + "\n\n".join(parts) + "\n")
    write(root / "memo.txt", "The memo describes the merger with Initech next spring.\n")  # no ACL: nobody


@pytest.fixture(scope="module")
def lance_project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A real project on the embedded store: 5 documents (one of 5 chunks, one readable by nobody)."""
    base = tmp_path_factory.mktemp("migrate")
    _project_docs(base / "docs")
    init_project(base / "lance")
    project = Project.open(base / "lance")
    project.ingest(base / "docs")
    assert project.store.count() >= 9 and project.store.state.sync_log()
    return project


@pytest.fixture(scope="module")
def copied(pg_cluster: PgCluster, lance_project: Project) -> Iterator[Copied]:
    """``lance_project`` migrated into a fresh schema (3 chunks a batch: documents span batches)."""
    schema = "m_" + uuid.uuid4().hex[:12]
    store = PostgresStore(pg_cluster.dsn, schema=schema, pool_size=2)
    try:
        report = migrate_store(lance_project.store, store, source_name="lance", target_name="pg", batch_size=3,
                               verify_sample=50)
        yield Copied(schema, store, report)
    finally:
        store.close()
        pg_cluster.drop_schema(schema)


def exported(store: Store) -> tuple[list[Chunk], np.ndarray]:
    chunks: list[Chunk] = []
    vectors: list[np.ndarray] = []
    for batch, matrix in store.iter_chunks(batch_size=4):
        chunks.extend(batch)
        vectors.append(matrix)
    return chunks, np.concatenate(vectors)


def state_of(store: Store) -> tuple[object, ...]:
    """Everything but the chunks' vectors: manifest, chunk index, roots, sync log, metadata (the marker aside)."""
    meta = {k: v for k, v in store.state.meta().items() if k != MIGRATION_KEY and v is not None}
    return (store.documents(), sorted(store.chunk_index(), key=lambda r: r.chunk_id), store.state.roots(),
            store.state.sync_log(), meta)


def assert_same_index(a: Store, b: Store) -> None:
    chunks_a, vectors_a = exported(a)
    chunks_b, vectors_b = exported(b)
    assert chunks_b == chunks_a  # every field: text, ACL, offsets, hashes, ordinals
    np.testing.assert_allclose(vectors_b, vectors_a, rtol=0, atol=1e-6)
    assert state_of(b) == state_of(a)


def project_on(folder: Path, yaml: str) -> Project:
    init_project(folder)
    (folder / CONFIG_NAME).write_text(yaml)
    return Project.open(folder)


def pg_project(folder: Path, schema: str) -> Project:
    return project_on(folder, f"store:\n  kind: postgres\n  schema: {schema}\n")


def fill(store: Store) -> None:
    for doc_id, texts in TEXTS.items():
        chunks = make_chunks(doc_id, texts, ACLS[doc_id])
        store.replace_documents([doc_id], chunks, np.stack([unit_vector(c.chunk_id, 384) for c in chunks]), 5.0)


# -- the copy ------------------------------------------------------------------------------------------------------
def test_lance_to_postgres_to_lance_gives_the_same_index(lance_project: Project, copied: Copied,
                                                         tmp_path: Path) -> None:
    source = lance_project.store
    n = source.count()
    assert (copied.report.chunks, copied.report.documents, copied.report.roots) == (n, 5, 1)
    assert copied.report.sync_entries == len(source.state.sync_log()) and copied.report.verified_sample == n
    assert_same_index(source, copied.store)
    assert any(c.acl == () for c in exported(copied.store)[0])  # readable by nobody, copied all the same
    assert copied.store.state.meta()["embedder"] == lance_project.embedder.fingerprint
    assert copied.store.state.meta()[MIGRATION_KEY]["state"] == "complete"

    back = LanceStore(tmp_path / "back")
    report = migrate_store(copied.store, back, source_name="pg", target_name="back", batch_size=4, verify_sample=3)
    assert report.chunks == n and report.verified_sample == 3
    assert_same_index(source, back)
    assert back.state.meta()[MIGRATION_KEY]["from"] == "pg"


def test_a_project_switched_to_postgres_searches_like_the_lance_one(
        lance_project: Project, copied: Copied, pg_cluster: PgCluster, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGTUNE_STORE_DSN", pg_cluster.dsn)
    on_pg = pg_project(tmp_path / "pg", copied.schema)
    try:
        assert isinstance(on_pg.store, PostgresStore)
        for principal in PRINCIPALS:
            for query in QUERIES:
                want = lance_project.search(query, principal).hits
                got = on_pg.search(query, principal).hits
                assert [h.chunk for h in got] == [h.chunk for h in want], (query, principal)
                assert [h.dense_score for h in got] == pytest.approx([h.dense_score for h in want], abs=1e-5)
                assert [h.lexical_rank for h in got] == [h.lexical_rank for h in want]
        # The ACL filter on the new store: the hr document only for hr, nothing of it for anyone else.
        salary = "salary bands compensation committee"
        assert "salaries.md" in on_pg.search(salary, PRINCIPALS[1]).hits[0].chunk.source_path
        for principal in (PRINCIPALS[0], PRINCIPALS[2]):
            assert not [h for h in on_pg.search(salary, principal).hits if "salaries" in h.chunk.source_path]
        assert not [h for h in on_pg.search("merger with Initech", EVERYONE).hits if "memo" in h.chunk.source_path]
    finally:
        on_pg.store.close()  # type: ignore[attr-defined]


def test_the_wrong_embedder_is_still_refused_after_a_migration(copied: Copied, pg_cluster: PgCluster,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGTUNE_STORE_DSN", pg_cluster.dsn)
    monkeypatch.setenv("RAGTUNE_EMBEDDER__RUNTIME", "torch")  # another fingerprint, same model and width
    other = pg_project(tmp_path / "pg", copied.schema)
    try:
        with pytest.raises(ConfigError, match="built with embedder .*/onnx/384.* the project now uses"):
            other.search("paid vacation days", PRINCIPALS[0])
        with pytest.raises(ConfigError, match="built with embedder"):
            other.sync()
    finally:
        other.store.close()  # type: ignore[attr-defined]


def test_a_non_empty_target_is_refused_unless_replace(lance_project: Project, make_pg_store: MakeStore) -> None:
    target = make_pg_store()
    fill(target)
    target.state.set_roots({"/elsewhere": ["public"]})
    target.state.append_sync({"time": 1.0, "root": "/elsewhere"})
    target.state.set_meta("embedder", "another-model/384")
    before = (target.version(), state_of(target))
    with pytest.raises(ConfigError, match=r"not empty \(5 chunks, 1 ingested roots, a sync log, metadata embedder"
                                          r"\): pass --replace"):
        migrate_store(lance_project.store, target, source_name="lance", target_name="pg")
    assert (target.version(), state_of(target)) == before  # untouched
    assert MIGRATION_KEY not in target.state.meta()

    migrate_store(lance_project.store, target, source_name="lance", target_name="pg", replace=True)
    assert_same_index(lance_project.store, target)  # the old chunks, root, log entry and fingerprint are gone
    with pytest.raises(ConfigError, match="not empty"):
        migrate_store(lance_project.store, target, source_name="lance", target_name="pg")


def test_a_failed_copy_is_marked_incomplete_and_a_rerun_with_replace_fixes_it(
        make_pg_store: MakeStore, pg_cluster: PgCluster, pg_schema: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    source = LanceStore(tmp_path / "src")
    fill(source)
    source.state.set_meta("embedder", MiniLMEmbedder().fingerprint)
    # LanceDB stores a NUL character, PostgreSQL text cannot: the last document (ids sort last) fails the copy.
    [bad] = make_chunks("zz", ["Backups \x00 of the broken file."], Acl(public=True))
    source.replace_documents(["zz"], [bad], unit_vector(bad.chunk_id, 384)[None, :], 5.0)
    target = make_pg_store()
    with pytest.raises(DataError, match="NUL character.*marked incomplete.*--replace") as failed:
        migrate_store(source, target, source_name="src", target_name="pg", batch_size=2)
    assert "Backups" not in str(failed.value)
    assert 0 < target.count() < source.count()  # earlier batches were written...
    assert target.state.meta()[MIGRATION_KEY]["state"] == "incomplete"  # ...and the target says it is unfinished

    monkeypatch.setenv("RAGTUNE_STORE_DSN", pg_cluster.dsn)
    on_target = pg_project(tmp_path / "p", pg_schema)
    try:
        with pytest.raises(ConfigError, match="unfinished `ragtune migrate`"):  # refused, not half-answered
            on_target.search("backups", EVERYONE)
        with pytest.raises(ConfigError, match="unfinished migration.*--replace"):
            migrate_store(source, target, source_name="src", target_name="pg")
        source.delete_documents(["zz"])
        migrate_store(source, target, source_name="src", target_name="pg", batch_size=2, replace=True)
        assert_same_index(source, target)
        assert target.state.meta()[MIGRATION_KEY]["state"] == "complete"
        fresh = pg_project(tmp_path / "p2", pg_schema)
        assert fresh.search("backups", EVERYONE).hits  # searched, no longer refused
        fresh.store.close()  # type: ignore[attr-defined]
    finally:
        on_target.store.close()  # type: ignore[attr-defined]


# -- targets and the command ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", [f"postgresql://app:{SECRET}@db.internal/rag",
                                 f"postgres://app:{SECRET}@127.0.0.1:5432/rag?sslmode=require",
                                 f"postgresql://app@db.internal/rag?password={SECRET}"])
def test_a_password_in_to_is_refused_and_never_echoed(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="RAGTUNE_STORE_DSN") as refused:
        parse_target(url)
    assert SECRET not in str(refused.value)
    init_project(tmp_path / "p")
    code, output = run_main(monkeypatch, capsys, "migrate", "--to", url, "--project", str(tmp_path / "p"))
    assert code == 1 and "never give the database password on the command line" in output
    assert "RAGTUNE_STORE_DSN" in output and SECRET not in output


def test_targets_are_checked_before_anything_is_written(tmp_path: Path) -> None:
    for bad, message in [(f"host=db password={SECRET}", "--to must be"), ("lance:", "needs a folder"),
                         ("mysql://db/rag", "--to must be")]:
        with pytest.raises(ConfigError, match=message) as refused:
            parse_target(bad)
        assert SECRET not in str(refused.value)
    with pytest.raises(ConfigError, match="--schema is for a PostgreSQL target"):
        parse_target("lance:x", schema="other")
    target = parse_target("postgresql://app@db.internal:5432/rag", schema="copy")
    assert (target.kind, target.schema) == ("postgres", "copy") and "dsn: postgresql://app@db" in \
        target.settings_snippet()
    write(tmp_path / "notes" / "todo.txt", "mine\n")
    with pytest.raises(ConfigError, match="holds other files"):
        open_target(parse_target(f"lance:{tmp_path / 'notes'}"), 384)
    with pytest.raises(ConfigError, match="that is a file"):
        open_target(parse_target(f"lance:{tmp_path / 'notes' / 'todo.txt'}"), 384)
    source = LanceStore(tmp_path / "index")
    fill(source)
    same = open_target(parse_target(f"lance:{tmp_path / 'index'}"), 384)
    assert store_identity(same) == store_identity(source)
    with pytest.raises(ConfigError, match="the project's own index"):
        migrate_store(source, same, source_name="a", target_name="b")


def test_the_command_migrates_both_ways_and_prints_the_switch(
        lance_project: Project, pg_cluster: PgCluster, pg_schema: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("RAGTUNE_STORE_DSN", raising=False)
    monkeypatch.setenv("RAGTUNE_SECRETS_FILE", str(tmp_path / "none.yaml"))
    # Lance -> PostgreSQL: a URL without the password, which libpq takes from PGPASSWORD.
    monkeypatch.setenv("PGPASSWORD", pg_cluster.password)
    url = f"postgresql://{APP_ROLE}@127.0.0.1:{pg_cluster.port}/{APP_DB}"
    code, output = run_main(monkeypatch, capsys, "migrate", "--to", url, "--schema", pg_schema, "--batch-size",
                            "2", "--project", str(lance_project.settings.project_dir))
    assert code == 0, output
    n = lance_project.store.count()
    assert f"copied {n} chunks" in output and "verified" in output
    assert f"kind: postgres\n  schema: {pg_schema}\n  dsn: {url}" in output
    assert pg_cluster.password not in output
    monkeypatch.delenv("PGPASSWORD")

    # PostgreSQL -> Lance, from a project on the new store (the DSN with its password in the environment).
    monkeypatch.setenv("RAGTUNE_STORE_DSN", pg_cluster.dsn)
    pg_dir = tmp_path / "pg"
    pg_project(pg_dir, pg_schema).store.close()  # type: ignore[attr-defined]
    back = tmp_path / "back-index"
    code, output = run_main(monkeypatch, capsys, "migrate", "--to", f"lance:{back}", "--project", str(pg_dir))
    assert code == 0, output
    assert f"store_path: {back}\nstore:\n  kind: lance" in output and pg_cluster.password not in output
    code, output = run_main(monkeypatch, capsys, "migrate", "--to", f"lance:{back}", "--project", str(pg_dir))
    assert code == 1 and "is not empty" in output and "--replace" in output
    switched = project_on(tmp_path / "switched", f"store_path: {back}\n")
    query, principal = QUERIES[1], PRINCIPALS[1]
    assert [h.chunk for h in switched.search(query, principal).hits] == [
        h.chunk for h in lance_project.search(query, principal).hits]


def test_stray_field_changes_are_caught_by_the_verification(lance_project: Project, tmp_path: Path) -> None:
    from ragtune.store.migrate import verify_copy

    target = LanceStore(tmp_path / "copy")
    migrate_store(lance_project.store, target, source_name="lance", target_name="copy", verify_sample=0)
    chunks, vectors = exported(lance_project.store)
    sample = {c.chunk_id: (c, v) for c, v in zip(chunks, vectors, strict=True)}
    verify_copy(lance_project.store, target, sample)  # equal
    first = chunks[0]
    target.replace_documents([first.doc_id], [replace(c, acl=("group:changed",)) if c == first else c for c in chunks
                                              if c.doc_id == first.doc_id],
                             np.stack([v for c, v in zip(chunks, vectors, strict=True) if c.doc_id == first.doc_id]),
                             {d.doc_id: d.synced_at for d in lance_project.store.documents()}[first.doc_id])
    with pytest.raises(DataError, match=f"chunk index differs.*sampled chunk {first.chunk_id} differs in acl"):
        verify_copy(lance_project.store, target, sample)
    target.replace_documents([first.doc_id], [c for c in chunks if c.doc_id == first.doc_id],
                             np.stack([v + (1e-3 if c == first else 0) for c, v in zip(chunks, vectors, strict=True)
                                       if c.doc_id == first.doc_id]), 0.0)
    with pytest.raises(DataError, match=f"documents differ.*{first.chunk_id}'s vector differs"):
        verify_copy(lance_project.store, target, sample)
