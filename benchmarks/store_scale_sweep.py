"""Store scale, exploration: the vector-search settings behind the stores' defaults, on store_scale.py's corpus.

Not a headline figure (``store_scale.py`` measures the defaults and writes the rows of docs/benchmarks.md); this
script prints one ``BENCH`` line per variant so a choice of defaults can be checked or redone:

- ``--store lance``: the IVF-PQ search of a LanceDB table of ``--chunks`` chunks (built once, kept in
  ``.bench/scale/lance-sweep-N``), each variant ``[nprobes, refine_factor, prefilter]`` run directly through
  LanceDB's query API (``nprobes`` 0: exact search), under the unfiltered and the 2 % principal;
- ``--store postgres``: a throwaway cluster loaded through ``bulk_load()`` with the HNSW build parameters of the
  first ``--builds`` pair ``[m, ef_construction]``, then each further pair rebuilt; each build searched through
  ``PostgresStore.dense_search`` at each ``--ef`` value.

Recall@10 against exact search over the principal's readable vectors, p50 / p95 over ``--queries`` SciFact test
claims (the first 5 not timed).

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/store_scale_sweep.py --store lance \\
        --variants '[[32,10,true],[32,10,false],[32,150,false]]'
    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/store_scale_sweep.py --store postgres \\
        --ef '[200,400,1000]' --builds '[[16,64],[24,100]]'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import store_scale as scale  # noqa: E402  (sets up the paths, the tests' pg_cluster among them)
from _common import cache_dir, emit, load_scifact_qrels, load_scifact_queries, percentile  # noqa: E402

from ragtune.core import Chunk, Principal  # noqa: E402

Batches = Iterator[tuple[list[str], list[Chunk], np.ndarray]]
Texts = Sequence[tuple[str, list[str]]]

PRINCIPALS = dict(list(scale.PRINCIPALS.items())[:2])  # unfiltered and 2 %: where recall is lost


def measure(search: Callable[[np.ndarray, Principal], list[str]], queries: np.ndarray,
            truths: dict[str, list[set[int]]]) -> dict[str, dict[str, float]]:
    """p50 / p95 ms and recall@10 of ``search`` for each principal."""
    out = {}
    for name, principal in PRINCIPALS.items():
        times, recalls = [], []
        for i, q in enumerate(queries):
            t0 = time.perf_counter()
            hits = search(q, principal)
            times.append(1000 * (time.perf_counter() - t0))
            recalls.append(len({scale.row_of(c) for c in hits} & truths[name][i]) / scale.K)
        out[name] = {"p50_ms": round(percentile(times[5:], 50), 1), "p95_ms": round(percentile(times[5:], 95), 1),
                     "recall10": round(float(np.mean(recalls)), 3)}
    return out


def lance_search(table: Any, acl_filter: Callable[[Principal], str], nprobes: int, refine: int,
                 prefilter: bool) -> Callable[[np.ndarray, Principal], list[str]]:
    """Top-k chunk ids through LanceDB's query API with these settings (``nprobes`` 0: exact)."""
    def search(q: np.ndarray, principal: Principal) -> list[str]:
        query = (table.search(q, query_type="vector").distance_type("cosine")
                 .where(acl_filter(principal), prefilter=prefilter))
        query = query.nprobes(nprobes).refine_factor(refine) if nprobes else query.bypass_vector_index()
        return list(query.select(["chunk_id"]).limit(scale.K).to_arrow()["chunk_id"].to_pylist())

    return search


def sweep_lance(n: int, batches: Callable[[], Batches], queries: np.ndarray, truths: dict[str, list[set[int]]],
                variants: list[list[Any]]) -> None:
    from ragtune.store.lance import LanceStore, acl_filter

    path = cache_dir("scale") / f"lance-sweep-{n}"
    fresh = not path.exists()
    store = LanceStore(path)
    if fresh:
        with store.bulk_load():
            for doc_ids, chunks, vectors in batches():
                store.replace_documents(doc_ids, chunks, vectors, 1.0)
    for nprobes, refine, prefilter in variants:
        search = lance_search(store.table, acl_filter, int(nprobes), int(refine), bool(prefilter))
        for name, row in measure(search, queries, truths).items():
            emit("store_scale_sweep", store="lance", filter=name, nprobes=nprobes, refine=refine,
                 prefilter=prefilter, **row)


def sweep_postgres(n: int, texts: Texts, base: np.ndarray, queries: np.ndarray,
                   truths: dict[str, list[set[int]]], efs: list[int], builds: list[list[int]]) -> None:
    from store.pg_cluster import start_cluster

    from ragtune.store import pg_bulk
    from ragtune.store.postgres import PostgresStore

    def hnsw(m: int, efc: int) -> str:
        return ("CREATE INDEX IF NOT EXISTS chunks_embedding ON {s}.chunks USING hnsw (embedding vector_cosine_ops) "
                f"WITH (m = {int(m)}, ef_construction = {int(efc)})")

    pg_bulk.DEFERRED_INDEXES["chunks_embedding"] = hnsw(*builds[0])
    cluster = start_cluster()
    try:
        store = PostgresStore(cluster.dsn, schema="scale", pool_size=2)
        _, _, index_s = scale.build(store, n, texts, base, 0.5, 0)
        for at, (m, efc) in enumerate(builds):
            if at:
                t0 = time.perf_counter()
                with cluster.admin() as conn:
                    conn.execute(f"SET maintenance_work_mem = '{store.index_build_memory}'")
                    conn.execute("DROP INDEX scale.chunks_embedding")
                    conn.execute(hnsw(m, efc).format(s="scale"))
                index_s = time.perf_counter() - t0
            for ef in efs:
                store.ef_search = ef

                def search(q: np.ndarray, principal: Principal) -> list[str]:
                    return [c for c, _ in store.dense_search(q, principal, scale.K)]

                for name, row in measure(search, queries, truths).items():
                    emit("store_scale_sweep", store="postgres", filter=name, m=m, ef_construction=efc, ef_search=ef,
                         build_s=round(index_s), exact_fallbacks=store.dense_exact_fallbacks, **row)
        store.close()
    finally:
        cluster.stop()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", choices=["lance", "postgres"], required=True)
    ap.add_argument("--chunks", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--variants", default="[[32,10,true],[32,150,false]]", help="lance: [nprobes, refine, prefilter]")
    ap.add_argument("--ef", default="[400]", help="postgres: ef_search values")
    ap.add_argument("--builds", default="[[32,200]]", help="postgres: [m, ef_construction] pairs, the first loaded")
    args = ap.parse_args(argv)
    from ragtune.models.embedder import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    embedder.warm_up()
    texts, base = scale.bases(embedder)
    claims = load_scifact_queries()
    qids = sorted(load_scifact_qrels("test"), key=int)[: args.queries]
    queries = embedder.embed([claims[q] for q in qids]).astype(np.float32)
    vectors = np.concatenate([v for _, _, v in scale.corpus_batches(args.chunks, texts, base, 0.5, 0)])
    docs = args.chunks // scale.PER_DOC
    truths = {name: scale.exact_top_k(vectors, queries,
                                      np.flatnonzero(np.repeat(scale.readable_docs(name, docs), scale.PER_DOC)),
                                      scale.K) for name in PRINCIPALS}
    del vectors
    if args.store == "lance":
        sweep_lance(args.chunks, lambda: scale.corpus_batches(args.chunks, texts, base, 0.5, 0), queries, truths,
                    json.loads(args.variants))
    else:
        sweep_postgres(args.chunks, texts, base, queries, truths, json.loads(args.ef), json.loads(args.builds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
