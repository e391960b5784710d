"""The PostgreSQL store's BM25 (ragtune.store.pg_lexical, migration 2) on a real throwaway cluster: terms analysed
exactly as the embedded store analyses them (hyphenated words, numbers, accents, Lance's stemmer and stop
list), the document-frequency table and statistics kept by the triggers through every kind of write, the
global-mode plan reading them instead of counting, and a v1 schema with data upgraded in place to score like a
fresh one."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql

from ragtune.core import Acl, Chunk, Principal
from ragtune.store import pg_lexical, pg_schema
from ragtune.store.isolated_bm25 import analyze
from ragtune.store.lance import LanceStore
from ragtune.store.postgres import PostgresStore
from ragtune.testing.store import EVERYONE, ids, make_chunks, unit_vector
from store.pg_cluster import PgCluster

MakeStore = Callable[..., PostgresStore]

PUBLIC, LEGAL_ONLY, HR_ONLY = Acl(public=True), Acl(groups=frozenset({"legal"})), Acl(groups=frozenset({"hr"}))
BOB, ANN = Principal("bob"), Principal("ann", frozenset({"legal"}))

# Text PostgreSQL's own parser and stemmer analyse differently from Lance: hyphenated compounds (kept whole
# besides their parts), letters with digits, numbers with separators, e-mail addresses, URLs and paths, Greek
# letters, accents, words PostgreSQL 15's older Snowball stems alike (university/universe, lateral/later), stop
# words Lance drops only after stemming, underscores and a token of 40 bytes or more.
CORPUS: dict[str, tuple[Acl, list[str]]] = {
    "a": (PUBLIC, ["ADAR1 edits the pre-miRNA before Dicer cleaves pre-miRNA hairpins.",
                   "Pre-treatment with anti-TNF-α antibodies lowered IL-6 in 90,000 patients (p<0.05)."]),
    "b": (PUBLIC, ["The pre stage and the miRNA stage differ; miRNA levels rose 2-fold in vitro.",
                   "Mail ops@example.org or see https://example.org/docs/setup.html and /etc/ragtune/conf.yaml."]),
    "c": (LEGAL_ONLY, ["The university lateral ventricle study, not the universe, came later.",
                       "Café résumés naïvely list Ærø and straße; doesn't it? It's the thesis's aim."]),
    "d": (HR_ONLY, ["pre-miRNA export needs Exportin-5; x_y_z tokens and "
                    "Pneumonoultramicroscopicsilicovolcanoconiosisxxxxxxxxx are odd.",
                    "NF-κB and β-catenin signalling in CD4+ T-cells; T-cells again, and again T-cells."]),
}

QUERIES = ["pre-miRNA", "ADAR1 pre-miRNA processing", "anti-TNF-α", "90,000", "ops@example.org",
           "example.org docs setup", "university", "universe", "later", "lateral", "cafe resume", "Ærø straße",
           "T-cells", "NF-κB β-catenin", "x_y_z", "it's the aim", "miRNA miRNA", "2-fold", "in vitro"]


def fill(store: LanceStore | PostgresStore, corpus: dict[str, tuple[Acl, list[str]]] = CORPUS) -> None:
    for doc_id, (acl, texts) in corpus.items():
        chunks = make_chunks(doc_id, texts, acl)
        store.replace_documents([doc_id], chunks, np.stack([unit_vector(c.chunk_id, 384) for c in chunks]), 5.0)


def _tf(store: PostgresStore, pg_cluster: PgCluster) -> dict[str, Counter[str]]:
    """Each chunk's stored terms with their counts."""
    with pg_cluster.admin() as conn:
        rows: list[tuple[Any, ...]] = conn.execute(sql.SQL(
            "SELECT c.chunk_id, u.lexeme, cardinality(u.positions) FROM {}.chunks c "
            "CROSS JOIN LATERAL unnest(c.terms) u").format(sql.Identifier(store.schema))).fetchall()
        out: dict[str, Counter[str]] = {}
        for cid, lexeme, n in rows:
            out.setdefault(str(cid), Counter())[str(lexeme)] = int(n)
    return out


Stats = tuple[dict[str, int], tuple[int, int], dict[tuple[str, ...], tuple[int, int]]]


def statistics(store: PostgresStore, pg_cluster: PgCluster) -> Stats:
    """As kept by the triggers: (lexical_df, (N, total length) of lexical_stats, lexical_acl_stats)."""
    s = sql.Identifier(store.schema)
    with pg_cluster.admin() as conn:
        df: list[tuple[Any, ...]] = conn.execute(sql.SQL("SELECT term, df FROM {}.lexical_df").format(s)).fetchall()
        row: tuple[Any, ...] | None = conn.execute(
            sql.SQL("SELECT n, total_len FROM {}.lexical_stats").format(s)).fetchone()
        per_acl: list[tuple[Any, ...]] = conn.execute(
            sql.SQL("SELECT acl, n, total_len FROM {}.lexical_acl_stats").format(s)).fetchall()
    assert row is not None
    return ({str(k): int(v) for k, v in df}, (int(row[0]), int(row[1])),
            {tuple(acl): (int(n), int(total)) for acl, n, total in per_acl})


def expected_statistics(chunks: list[Chunk]) -> Stats:
    """What the statistics must be for these stored chunks, from the embedded store's analysis in Python."""
    terms = [analyze(c.search_text) for c in chunks]
    df = Counter(t for ts in terms for t in set(ts))
    per_acl: dict[tuple[str, ...], tuple[int, int]] = {}
    for c, ts in zip(chunks, terms, strict=True):
        if ts:
            n, total = per_acl.get(c.acl, (0, 0))
            per_acl[c.acl] = (n + 1, total + len(ts))
    return dict(df), (sum(1 for ts in terms if ts), sum(len(ts) for ts in terms)), per_acl


def stored_chunks(store: PostgresStore) -> list[Chunk]:
    return [c for batch, _ in store.iter_chunks() for c in batch]


# -- analysis ------------------------------------------------------------------------------------------------------
def test_terms_are_the_embedded_store_analysis_with_tf_in_positions() -> None:
    assert pg_lexical.terms_tsvector(["pre", "mirna", "pre"]) == "'mirna':1 'pre':1,2"
    assert pg_lexical.terms_tsvector(["it's"]) == "'it''s':1"  # quoted as tsvector input wants
    [(tsv, n)] = pg_lexical.chunk_terms(["word " * 300])
    assert n == 300 and tsv.count(",") == pg_lexical.MAX_POSITIONS - 1  # tf counted up to PostgreSQL's limit
    params = pg_lexical.bm25_params("The pre-miRNA, pre-miRNA!", ["public"], 5)
    assert params is not None and params["terms"] == ["mirna", "pre"] and params["qtf"] == [2.0, 2.0]
    assert pg_lexical.bm25_params("the and of", ["public"], 5) is None  # stop words only: nothing to search


def test_stored_terms_equal_the_embedded_analysis(pg_store: PostgresStore, pg_cluster: PgCluster) -> None:
    fill(pg_store)
    stored = _tf(pg_store, pg_cluster)
    for chunk in stored_chunks(pg_store):
        assert stored.get(chunk.chunk_id, Counter()) == Counter(analyze(chunk.search_text)), chunk.text
    assert "pre-mirna" not in {t for c in stored.values() for t in c}  # no compound lexeme besides the parts


def test_bm25_ranks_and_scores_as_the_embedded_store_on_hard_tokens(pg_store: PostgresStore,
                                                                      tmp_path: Path) -> None:
    lance = LanceStore(tmp_path / "lance")
    fill(lance)
    fill(pg_store)
    for principal in (EVERYONE, BOB, ANN):
        for query in QUERIES:
            for isolated in (False, True):
                want = lance.lexical_search(query, principal, 10, isolated=isolated)
                got = pg_store.lexical_search(query, principal, 10, isolated=isolated)
                assert ids(got) == ids(want), (query, principal.user, isolated)
                assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-5), query
    # The hyphenated term: PostgreSQL's parser used to add a "pre-mirna" lexeme, raising a-00000's tf and length.
    assert pg_store.lexical_search("pre-miRNA", EVERYONE, 1)[0][0] == "a-00000"
    assert ids(pg_store.lexical_search("universe", EVERYONE, 5)) == ["c-00000"]  # and not via "university"


# -- statistics kept by the triggers ----------------------------------------------------------------------------
def test_df_and_stats_follow_insert_update_delete_and_acl_changes(pg_store: PostgresStore,
                                                                  pg_cluster: PgCluster) -> None:
    def check() -> None:
        assert statistics(pg_store, pg_cluster) == expected_statistics(stored_chunks(pg_store))

    assert statistics(pg_store, pg_cluster) == ({}, (0, 0), {})
    fill(pg_store)
    check()
    df_before, _, _ = statistics(pg_store, pg_cluster)
    assert df_before["mirna"] == 3 and df_before["cell"] == 1

    new = make_chunks("a", ["Completely new words: zebrafish telomeres."], PUBLIC, doc_hash="h2")
    pg_store.replace_documents(["a"], new, np.stack([unit_vector(c.chunk_id, 384) for c in new]), 6.0)
    check()
    df, _, _ = statistics(pg_store, pg_cluster)
    assert df["zebrafish"] == 1 and df["mirna"] == 2 and "adar1" not in df  # gone with its only chunk

    # A chunk id stored under another document moves (INSERT ... ON CONFLICT DO UPDATE: the UPDATE trigger).
    moved = [replace(make_chunks("e", ["Telomeres shorten; zebrafish regrow fins."], PUBLIC)[0], chunk_id="b-00000")]
    pg_store.replace_documents(["e"], moved, unit_vector("b-00000", 384)[None, :], 7.0)
    check()

    df, stats, per_acl = statistics(pg_store, pg_cluster)
    pg_store.set_acl("c", ["group:hr"], 8.0)  # an ACL change moves c's N and length to its new ACL, nothing else
    check()
    assert statistics(pg_store, pg_cluster)[:2] == (df, stats) and ("group:legal",) not in statistics(
        pg_store, pg_cluster)[2] and per_acl[("group:legal",)] != (0, 0)

    pg_store.delete_documents(["c", "d"])
    check()
    pg_store.delete_documents([d.doc_id for d in pg_store.documents()])
    assert statistics(pg_store, pg_cluster) == ({}, (0, 0), {})


def _statements(plan: str) -> list[str]:
    return [part for part in plan.split("-- statement ")[1:]]


def test_both_modes_read_kept_statistics_and_scan_chunks_once(make_pg_store: MakeStore,
                                                              pg_cluster: PgCluster) -> None:
    # Sequential scans off, so the tiny table is read the way a large one is.
    store = make_pg_store(pg_cluster.dsn + "?options=-c%20enable_seqscan%3Doff")
    fill(store)
    store.optimize()
    stats, *passes = _statements(store.explain_lexical_search("ADAR1 pre-miRNA processing", EVERYONE, 5))
    # Global: N, the lengths and df read from the trigger-kept tables, no count over chunks...
    assert "lexical_df_pkey" in stats and "lexical_stats" in stats and " on chunks " not in stats, stats
    # ...then each scoring pass reads the candidates once, through the GIN index.
    assert 1 <= len(passes) <= 2 and all(p.count(" on chunks ") == 1 and "chunks_terms" in p for p in passes)
    # Isolated: N and lengths summed over the principal's ACLs' rows, df among the candidates: one read too.
    [isolated] = _statements(store.explain_lexical_search("ADAR1 pre-miRNA processing", EVERYONE, 5,
                                                          isolated=True))
    assert isolated.count(" on chunks ") == 1 and "lexical_acl_stats" in isolated, isolated


def test_maxscore_pruning_returns_exactly_the_unpruned_top_k(pg_store: PostgresStore,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # 90 chunks over 12 made-up words of falling frequency (word j in every (j + 1)-th chunk, repeated by
    # chunk), so common words make most chunks candidates and rare ones make the first pass small.
    words = [f"kq{j}" for j in range(12)]
    texts = [" ".join([w for j, w in enumerate(words) if i % (j + 1) == 0 for _ in range(1 + (i + j) % 3)]
                      + ["filler"] * (i % 7)) for i in range(90)]
    chunks = make_chunks("z", texts, PUBLIC)
    pg_store.replace_documents(["z"], chunks, np.stack([unit_vector(c.chunk_id, 384) for c in chunks]), 5.0)
    queries = [" ".join(words[j] for j in combo) for combo in
               [(0, 11), (0, 1, 10), (1, 2, 3, 9), (0, 5, 7, 11), (2, 4, 6, 8, 10), (0, 1, 2, 3), (3, 11, 11)]]
    candidates: list[str] = []
    scoring = pg_lexical._run

    def spy(conn: psycopg.Connection[Any], statement: sql.Composed, params: dict[str, Any],
            plans: list[str] | None) -> list[tuple[Any, ...]]:
        if "weights" in params:
            candidates.append(params["tsq"])
        return scoring(conn, statement, params, plans)

    monkeypatch.setattr(pg_lexical, "_run", spy)
    passes: Counter[tuple[int, bool]] = Counter()
    for query in queries:
        for k in (1, 3, 5, 10):
            candidates.clear()
            pruned = pg_store.lexical_search(query, BOB, k)
            passes[len(candidates), candidates[-1].count("|") + 1 < len(set(query.split()))] += 1
            monkeypatch.setattr(pg_lexical, "SEED_FACTOR", 10**9)  # the first pass takes every term: no pruning
            assert pg_store.lexical_search(query, BOB, k) == pruned, (query, k)
            monkeypatch.setattr(pg_lexical, "SEED_FACTOR", 2)
    # Both shortcuts were taken: answered by the first pass over fewer terms, and a second pass over fewer terms.
    assert passes[1, True] and passes[2, True], passes


# -- migration 2: a v1 schema with data ----------------------------------------------------------------------
_V1_COLUMNS = ["chunk_id", "doc_id", "source_path", "title", "section_path", "page", "char_start", "char_end",
               "ordinal", "text", "search_text", "content_hash", "doc_hash", "mtime", "synced_at", "acl", "embedding"]


def _make_v1(pg_cluster: PgCluster, schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A schema at version 1 holding CORPUS, written as ragtune v1 wrote it (its triggers kept the stats)."""
    with monkeypatch.context() as patch:
        patch.setattr(pg_schema, "MIGRATIONS", pg_schema.MIGRATIONS[:1])
        with psycopg.connect(pg_cluster.dsn, autocommit=True) as conn:
            assert pg_schema.migrate(conn, schema, 384) == [1]
    rows = []
    for doc_id, (acl, texts) in CORPUS.items():
        for c in make_chunks(doc_id, texts, acl):
            rows.append((c.chunk_id, c.doc_id, c.source_path, c.title, list(c.section_path), c.page, c.char_start,
                         c.char_end, c.ordinal, c.text, c.search_text, c.content_hash, c.doc_hash, c.mtime, 5.0,
                         list(c.acl), str(unit_vector(c.chunk_id, 384).tolist())))
    with pg_cluster.admin() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema)))
        cur.executemany(sql.SQL("INSERT INTO {}.chunks ({}) VALUES ({}, %s::vector)").format(
            sql.Identifier(schema), sql.SQL(", ").join(map(sql.Identifier, _V1_COLUMNS)),
            sql.SQL(", ").join(sql.Placeholder() * (len(_V1_COLUMNS) - 1))), rows)


def test_a_v1_schema_with_data_upgrades_in_place_and_scores_like_a_fresh_one(
        pg_cluster: PgCluster, make_pg_store: MakeStore, pg_schema: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _make_v1(pg_cluster, pg_schema, monkeypatch)
    with pg_cluster.admin() as conn:  # v1: PostgreSQL's english parser made a "pre-mirna" lexeme
        v1_lexemes: tuple[Any, ...] | None = conn.execute(sql.SQL(
            "SELECT tsv::text FROM {}.chunks WHERE chunk_id = 'a-00000'").format(sql.Identifier(pg_schema))).fetchone()
    assert v1_lexemes is not None and "'pre-mirna'" in v1_lexemes[0]

    upgraded = make_pg_store()
    assert upgraded.migrations_applied == [2] and upgraded.count() == 8
    fresh = make_pg_store(schema=pg_schema + "_fresh")
    try:
        fill(fresh)
        assert upgraded.chunk_index() == fresh.chunk_index()
        assert statistics(upgraded, pg_cluster) == statistics(fresh, pg_cluster)
        for principal in (EVERYONE, BOB, ANN):
            for query in QUERIES:
                for isolated in (False, True):
                    want = fresh.lexical_search(query, principal, 10, isolated=isolated)
                    got = upgraded.lexical_search(query, principal, 10, isolated=isolated)
                    assert ids(got) == ids(want) and [s for _, s in got] == pytest.approx([s for _, s in want])
        # The HNSW index was rebuilt, the triggers are v2's: dense search and a later write work as on a fresh one.
        assert ids(upgraded.dense_search(unit_vector("b-00001", 384), EVERYONE, 1)) == ["b-00001"]
        pg_store_write = make_chunks("b", ["Only zebrafish now."], PUBLIC, doc_hash="h2")
        for store in (upgraded, fresh):
            store.replace_documents(["b"], pg_store_write, unit_vector("b-00000", 384)[None, :], 9.0)
        assert statistics(upgraded, pg_cluster) == statistics(fresh, pg_cluster)
    finally:
        pg_cluster.drop_schema(pg_schema + "_fresh")
    assert make_pg_store().migrations_applied == []  # and it is done once


def test_a_stemmer_change_is_reported_and_rebuild_lexical_redoes_the_terms(
        make_pg_store: MakeStore, pg_cluster: PgCluster, pg_schema: str, caplog: pytest.LogCaptureFixture) -> None:
    store = make_pg_store()
    fill(store)
    want = statistics(store, pg_cluster)
    with pg_cluster.admin() as conn:  # as if written by another stemmer version
        conn.execute(sql.SQL("UPDATE {s}.lexical_stats SET analyzer = 'lance-simple-snowball-english/old'; "
                             "UPDATE {s}.chunks SET terms = '''stale'':1' WHERE chunk_id = 'a-00000'").format(
            s=sql.Identifier(pg_schema)))
    with caplog.at_level(logging.WARNING, logger="ragtune.store.postgres"):
        reopened = make_pg_store()
    assert "english/old" in caplog.text and "rebuild_lexical" in caplog.text
    version = reopened.version()
    assert reopened.rebuild_lexical() == 8 and reopened.version() == version + 1
    assert statistics(reopened, pg_cluster) == want
    assert ids(reopened.lexical_search("ADAR1", EVERYONE, 3)) == ["a-00000"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ragtune.store.postgres"):
        make_pg_store()
    assert "rebuild_lexical" not in caplog.text
