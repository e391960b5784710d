"""SciFact retrieval quality on the PostgreSQL store beside the embedded (LanceDB) store, in the same run.

The SciFact index of ``benchmarks/scifact_retrieval.py`` (its ``ensure_index``: one Markdown file per abstract,
ingested with ``Syncer`` into ``.bench/scifact/index``, built once and then only re-synced) is copied with
``ragtune migrate``'s code (:func:`ragtune.store.migrate.migrate_store`: batches of 1,000 chunks, no
re-embedding, verified with 100 sampled vectors; timed) into a throwaway PostgreSQL + pgvector cluster started
by ``tests/store/pg_cluster.py`` (127.0.0.1, a free port, deleted afterwards). Then every query of the split is
searched on both stores, with exactly the configurations of ``scifact_retrieval.py``'s rows: BM25 only, dense
only, and the default hybrid (HybridRetriever's fusion defaults), 200 candidates per side, scored at document
level (nDCG@10, recall@100). "Same top 10" is the share of queries whose ten best documents are the same, in
the same order, on both stores. Latency is the wall time of ``retrieve()`` with HybridRetriever's defaults
(top_k 8, 100 + 100 candidates), p50 / p95 over the queries after 5 warm-up queries, on each store.

Goal (issue 15): hybrid nDCG@10 on PostgreSQL within 0.01 of the embedded store's.

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/postgres_quality.py [--split test|train]
        [--quick | --queries N] [--no-docs]

``--quick``: the first 30 queries, nothing written to docs/benchmarks.md (a check that it runs).
``--queries N``: the first N queries (a wider sample than ``--quick``), nothing written to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # tests/store/pg_cluster.py: the throwaway cluster
os.environ.setdefault("LANCE_LOG", "error")

from _common import (  # noqa: E402
    cache_dir,
    clear_embedding_cache,
    emit,
    load_scifact_corpus,
    load_scifact_qrels,
    load_scifact_queries,
    machine,
    write_row,
)
from scifact_retrieval import CANDIDATES, RunResult, ensure_index, run_queries, warm  # noqa: E402
from store.pg_cluster import ClusterError, start_cluster  # noqa: E402

from ragtune.core import Principal  # noqa: E402
from ragtune.models.embedder import MiniLMEmbedder  # noqa: E402
from ragtune.retrieval.hybrid import HybridRetriever  # noqa: E402
from ragtune.store.base import Store  # noqa: E402
from ragtune.store.migrate import MigrationReport, migrate_store  # noqa: E402
from ragtune.store.postgres import PostgresStore  # noqa: E402

SECTION = "SciFact on the PostgreSQL store"
COMMAND = "RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/postgres_quality.py"
GOAL_DELTA = 0.01  # hybrid nDCG@10 within this of the embedded store's
QUICK_QUERIES = 30
STORES = ("LanceDB", "PostgreSQL")
LABELS = {"bm25": "BM25 only", "dense": "dense only (all-MiniLM-L6-v2)", "hybrid": "default hybrid"}


def configs(store: Store, embedder: MiniLMEmbedder) -> dict[str, HybridRetriever]:
    """scifact_retrieval.py's three scored configurations, on ``store``."""
    return {
        "bm25": HybridRetriever(store, embedder, top_k=CANDIDATES, lexical_k=CANDIDATES, dense_k=CANDIDATES,
                                lexical_weight=1.0, dense_weight=0.0),
        "dense": HybridRetriever(store, embedder, top_k=CANDIDATES, lexical_k=CANDIDATES, dense_k=CANDIDATES,
                                 lexical_weight=0.0, dense_weight=1.0),
        "hybrid": HybridRetriever(store, embedder, top_k=2 * CANDIDATES, lexical_k=CANDIDATES, dense_k=CANDIDATES),
    }


def same_top10(a: RunResult, b: RunResult) -> float:
    """Share of queries whose ten best documents are identical (and identically ordered) in both runs."""
    qids = [q for q in a.rankings if q in b.rankings]
    return sum(a.rankings[q][:10] == b.rankings[q][:10] for q in qids) / max(len(qids), 1)


def evaluate(stores: dict[str, Store], embedder: MiniLMEmbedder, queries: Sequence[tuple[str, str]],
             qrels: dict[str, dict[str, int]], principal: Principal, split: str
             ) -> tuple[dict[str, dict[str, RunResult]], dict[str, dict[str, Any]]]:
    """Each configuration on each store, then the default retriever's latency on each store."""
    results: dict[str, dict[str, RunResult]] = {name: {} for name in LABELS}
    latency: dict[str, dict[str, Any]] = {}
    for store_name, store in stores.items():
        default = HybridRetriever(store, embedder)
        warm(default, principal, [t for _, t in queries[:5]])
        for name, retriever in configs(store, embedder).items():
            clear_embedding_cache()
            results[name][store_name] = res = run_queries(name, retriever, queries, qrels, principal)
            emit(f"postgres_quality.{name}", store=store_name, split=split, **res.summary())
        clear_embedding_cache()
        lat = run_queries("default", default, queries, {}, principal).summary()
        lat.pop("queries", None)
        lat["load_avg"] = round(os.getloadavg()[0], 2)
        latency[store_name] = lat
        emit("postgres_quality.latency", store=store_name, split=split, queries=len(queries), **lat)
    return results, latency


def main(argv: Sequence[str] | None = None) -> int:
    """Build or reuse the SciFact index, migrate it into a throwaway PostgreSQL, score both, record the rows."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=["test", "train"], default="test")
    ap.add_argument("--quick", action="store_true", help=f"only the first {QUICK_QUERIES} queries; no docs row")
    ap.add_argument("--queries", type=int, metavar="N", help="only the first N queries; no docs row")
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.queries is not None and args.queries < 1:
        ap.error("--queries must be at least 1")
    limit = QUICK_QUERIES if args.quick else args.queries

    qrels = load_scifact_qrels(args.split)
    queries_all = load_scifact_queries()
    qids = sorted(qrels, key=lambda q: (len(q), q))[:limit]
    queries = [(q, queries_all[q]) for q in qids]
    principal = Principal("bench")
    embedder = MiniLMEmbedder(batch_size=32, threads=2)
    info = ensure_index(cache_dir("scifact"), load_scifact_corpus(), embedder)
    emit("postgres_quality.index", documents=info.documents, chunks=info.chunks, rebuilt=info.rebuilt)

    try:
        cluster = start_cluster()
    except ClusterError as exc:
        raise SystemExit(f"no PostgreSQL cluster: {exc}") from None
    try:
        with PostgresStore(cluster.dsn, schema="scifact", pool_size=4) as pg:
            migration = migrate_store(info.store, pg, source_name=f"LanceDB {info.store.path}",
                                      target_name="PostgreSQL (throwaway cluster)", batch_size=1000,
                                      verify_sample=100)
            emit("postgres_quality.migration", chunks=migration.chunks, documents=migration.documents,
                 seconds=round(migration.seconds, 2), copy_seconds=round(migration.copy_seconds, 2),
                 optimize_seconds=round(migration.optimize_seconds, 2),
                 verify_seconds=round(migration.verify_seconds, 2), verified_sample=migration.verified_sample)
            results, latency = evaluate({"LanceDB": info.store, "PostgreSQL": pg}, embedder, queries, qrels,
                                        principal, args.split)
            exact = pg.dense_exact_fallbacks
    finally:
        cluster.stop()
    for name, by_store in results.items():
        a, b = (by_store[s].summary() for s in STORES)
        emit(f"postgres_quality.{name}.delta", ndcg10_delta=round(b["ndcg@10"] - a["ndcg@10"], 4),
             recall100_delta=round(b["recall@100"] - a["recall@100"], 4),
             same_top10=round(same_top10(by_store["LanceDB"], by_store["PostgreSQL"]), 3))
    emit("postgres_quality.dense_exact_fallbacks", count=exact)
    if limit is not None or args.no_docs:
        print("(--quick, --queries or --no-docs run: docs/benchmarks.md not written)", file=sys.stderr)
        return 0
    record(args.split, len(queries), info.chunks, results, latency, migration)
    return 0


def record(split: str, n: int, chunks: int, results: dict[str, dict[str, RunResult]],
           latency: dict[str, dict[str, Any]], migration: MigrationReport) -> None:
    """Insert or replace this split's rows in docs/benchmarks.md."""
    header = ["configuration", "store", "queries", "chunks", "nDCG@10", "recall@100", "same top 10", "p50 ms",
              "p95 ms", "goal"]
    rate = migration.chunks / max(migration.copy_seconds, 1e-9)
    intro = (
        "The SciFact index of the previous sections (`scifact_retrieval.py`'s `ensure_index`) copied into a "
        "throwaway PostgreSQL 15 + pgvector cluster on the same machine with `ragtune migrate`'s code "
        f"(`migrate_store`, batches of 1,000 chunks, no re-embedding): {migration.chunks:,} chunks of "
        f"{migration.documents:,} documents in {migration.seconds:.1f} s (copy {migration.copy_seconds:.1f} s, "
        f"{rate:.0f} chunks/s, HNSW and GIN indexes built as rows arrive; ANALYZE {migration.optimize_seconds:.1f} "
        f"s; verification {migration.verify_seconds:.1f} s, {migration.verified_sample} sampled vectors). Both "
        "stores are then searched in the same run with `scifact_retrieval.py`'s configurations (BM25 only, dense "
        f"only, default hybrid; {CANDIDATES} candidates per side; document level) as a plain principal. "
        "PostgreSQL: BM25 in SQL over terms analysed as the embedded store analyses them (statistics kept by "
        "triggers, MaxScore pruning), dense search on HNSW (ef_search 200, "
        "iterative scans). *Same top 10*: share of queries whose ten best documents are identical and identically "
        "ordered on both stores. p50/p95: `retrieve()` with HybridRetriever's defaults (top_k 8, 100 + 100 "
        f"candidates), after 5 warm-up queries. Goal (issue 15): hybrid nDCG@10 within {GOAL_DELTA} of the "
        f"embedded store's. Machine: {machine()}, embedder threads 2."
    )
    for name, by_store in results.items():
        base = by_store["LanceDB"].summary()
        for store_name in STORES:
            s = by_store[store_name].summary()
            same = "–" if store_name == "LanceDB" else f"{same_top10(by_store['LanceDB'], by_store[store_name]):.0%}"
            goal = "–"
            if name == "hybrid" and store_name == "PostgreSQL":
                delta = s["ndcg@10"] - base["ndcg@10"]
                goal = f"within {GOAL_DELTA} ({delta:+.4f}): {'met' if abs(delta) <= GOAL_DELTA else 'NOT met'}"
            key = f"{LABELS[name]}, {store_name}, {split}"
            write_row(SECTION, key, f"| {key} | {store_name} | {s['queries']} | {chunks} | {s['ndcg@10']:.3f} "
                      f"| {s['recall@100']:.3f} | {same} | – | – | {goal} |",
                      header=header, command=COMMAND, intro=intro)
    for store_name in STORES:
        lat = latency[store_name]
        key = f"default retriever latency, {store_name}, {split}"
        write_row(SECTION, key, f"| {key} | {store_name} | {n} | {chunks} | – | – | – | {lat['p50_ms']:.1f} "
                  f"| {lat['p95_ms']:.1f} | – |", header=header, command=COMMAND, intro=intro)


if __name__ == "__main__":
    raise SystemExit(main())
