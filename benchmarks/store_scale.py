"""Store scale: a million synthetic chunks with 50 ACL groups on each store, searched with and without filters.

Issue 15's scale measure, through the stores' own API (``replace_documents``, ``optimize``, ``dense_search``,
``lexical_search``) so it measures what ``ragtune ingest`` writes and ``ask`` reads:

1. **Corpus.** ``--chunks`` chunks (default 1,000,000) in documents of 20. Chunk *i* copies one of the SciFact
   abstracts (chosen at random): its title, a random sentence of it, and the chunk's own number, and its vector is
   that abstract's real all-MiniLM-L6-v2 embedding (title and first sentence, embedded once and cached) plus
   Gaussian noise (``--noise``, relative to the unit vector; 0.5 puts copies of one abstract at cosine ~0.8 from
   each other), normalised. So no million-chunk embedding run is needed and neighbours are neither random nor
   all identical.
2. **ACLs.** Document *d* is readable by ``group:g{d mod 50}`` (2 % of the chunks each); every 1,000th document
   also by ``user:needle`` (0.1 %). Three principals: all 50 groups (no effective filter), ``g7`` (2 %), the
   needle user (0.1 %).
3. **Build.** Batches of 500 documents through ``replace_documents`` inside ``bulk_load()``, then the load's end
   (PostgreSQL builds its HNSW and term indexes there; both stores then ``optimize``): time of each,
   and the store's size on disk (LanceDB: the folder; PostgreSQL: ``pg_total_relation_size`` of its tables).
4. **Search.** The 300 SciFact test claims, embedded for real, as query vectors (and texts, for BM25): dense
   top-10 p50 / p95 (the median over ``--rounds`` rounds of each round's percentile, after 5 warm-up queries),
   recall@10 against exact search over the same principal's readable vectors (numpy, in this process), and BM25
   top-10 p50 / p95.

Goal (issue 15): recall@10 ≥ 0.95 at p95 ≤ 50 ms on both stores, for every filter.

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/store_scale.py [--chunks 1000000]
        [--stores lance,postgres] [--quick] [--no-docs]

``--quick``: 20,000 chunks, 30 queries, 1 round, nothing written to docs/benchmarks.md (a check that it runs).
PostgreSQL runs in a throwaway cluster started by ``tests/store/pg_cluster.py`` (127.0.0.1, deleted afterwards).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # tests/store/pg_cluster.py: the throwaway cluster
os.environ.setdefault("LANCE_LOG", "error")

from _common import (  # noqa: E402
    cache_dir,
    command_line,
    emit,
    load_scifact_corpus,
    load_scifact_qrels,
    load_scifact_queries,
    machine,
    median,
    percentile,
    write_row,
)

from ragtune.core import Chunk, Principal  # noqa: E402
from ragtune.store import pg_bulk  # noqa: E402
from ragtune.store.base import Store  # noqa: E402

SEARCH_SECTION = "Store scale: filtered search (synthetic SciFact chunks, 50 ACL groups)"
BUILD_SECTION = "Store scale: build (synthetic SciFact chunks, 50 ACL groups)"
GROUPS, PER_DOC, NEEDLE_EVERY, BATCH_DOCS, K = 50, 20, 1000, 500, 10
GOAL_RECALL, GOAL_P95_MS = 0.95, 50.0
PRINCIPALS = {
    "none (all 50 groups)": Principal("root", frozenset(f"g{i}" for i in range(GROUPS))),
    "2 % (one group)": Principal("ann", frozenset({"g7"})),
    "0.1 % (one user)": Principal("needle"),
}


def readable_docs(name: str, docs: int) -> np.ndarray:
    """Which documents the principal ``name`` (a key of :data:`PRINCIPALS`) may read."""
    d = np.arange(docs)
    if name.startswith("none"):
        return np.ones(docs, dtype=bool)
    if name.startswith("2 %"):
        return d % GROUPS == 7
    return d % NEEDLE_EVERY == 0


def bases(embedder: Any) -> tuple[list[tuple[str, list[str]]], np.ndarray]:
    """(title, sentences) of every SciFact abstract and its embedding (title + first sentence), cached."""
    corpus = load_scifact_corpus()
    texts = [(d.title, [s for s in re.split(r"(?<=[.!?])\s+", d.text) if s] or [d.title]) for d in corpus]
    path = cache_dir("scale") / f"bases-{hashlib.sha256(embedder.fingerprint.encode()).hexdigest()[:12]}.npy"
    if path.is_file():
        vectors = np.load(path)
        if len(vectors) == len(texts):
            return texts, vectors
    vectors = embedder.embed([f"{t}. {s[0]}" for t, s in texts]).astype(np.float32)
    np.save(path, vectors)
    return texts, vectors


def corpus_batches(n_chunks: int, texts: Sequence[tuple[str, list[str]]], base: np.ndarray, noise: float,
                   seed: int) -> Iterator[tuple[list[str], list[Chunk], np.ndarray]]:
    """(doc ids, chunks, vectors) of :data:`BATCH_DOCS` documents at a time, the same for the same seed."""
    docs = n_chunks // PER_DOC
    for start in range(0, docs, BATCH_DOCS):
        rng = np.random.default_rng([seed, start])
        stop = min(docs, start + BATCH_DOCS)
        n = (stop - start) * PER_DOC
        which = rng.integers(0, len(texts), n)
        v = base[which] + noise * rng.standard_normal((n, base.shape[1])).astype(np.float32) / np.sqrt(base.shape[1])
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        doc_ids, chunks = [], []
        for d in range(start, stop):
            doc_id = f"s{d:07d}"
            doc_ids.append(doc_id)
            acl = [f"group:g{d % GROUPS}"] + (["user:needle"] if d % NEEDLE_EVERY == 0 else [])
            for j in range(PER_DOC):
                i = (d - start) * PER_DOC + j
                title, sentences = texts[which[i]]
                text = f"{sentences[int(rng.integers(len(sentences)))]} (part {d * PER_DOC + j})"
                chunks.append(Chunk(chunk_id=f"{doc_id}-{j:02d}", doc_id=doc_id, source_path=f"/scale/{doc_id}.md",
                                    title=title, section_path=(), page=None, char_start=0, char_end=len(text),
                                    text=text, content_hash=f"c{d}-{j}", doc_hash=f"h{d}", mtime=0.0,
                                    acl=tuple(sorted(acl)), ordinal=j))
        yield doc_ids, chunks, v.astype(np.float32)


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, rows: np.ndarray, k: int) -> list[set[int]]:
    """The exact top-``k`` row numbers among ``rows`` for each query (cosine: the vectors are unit length)."""
    best = [np.empty(0, dtype=np.int64) for _ in queries]
    scores = [np.empty(0, dtype=np.float32) for _ in queries]
    for start in range(0, len(rows), 200_000):
        block = rows[start:start + 200_000]
        sims = queries @ vectors[block].T
        for q in range(len(queries)):
            top = np.argpartition(-sims[q], min(k, len(block) - 1))[:k] if len(block) > k else np.arange(len(block))
            cand = np.concatenate([best[q], block[top]])
            cs = np.concatenate([scores[q], sims[q][top]])
            keep = np.argsort(-cs)[:k]
            best[q], scores[q] = cand[keep], cs[keep]
    return [set(b.tolist()) for b in best]


def row_of(chunk_id: str) -> int:
    """The row number of a chunk id ``sDDDDDDD-JJ``."""
    return int(chunk_id[1:8]) * PER_DOC + int(chunk_id[9:])


def build(store: Store, n_chunks: int, texts: Sequence[tuple[str, list[str]]], base: np.ndarray, noise: float,
          seed: int) -> tuple[np.ndarray, float, float]:
    """Write the corpus into ``store`` inside ``bulk_load()`` (as ``ingest`` and ``migrate`` do into an empty
    store) and index it: (every vector in row order, write s, s of the load's end: index builds and optimize)."""
    out = np.empty((n_chunks // PER_DOC * PER_DOC, base.shape[1]), dtype=np.float32)
    t0, at = time.perf_counter(), 0
    with store.bulk_load():
        for doc_ids, chunks, vectors in corpus_batches(n_chunks, texts, base, noise, seed):
            store.replace_documents(doc_ids, chunks, vectors, 1.0)
            out[at:at + len(vectors)] = vectors
            at += len(vectors)
            if at % 100_000 < BATCH_DOCS * PER_DOC:
                print(f"  write: {at:,}/{len(out):,} chunks, {time.perf_counter() - t0:.0f} s", file=sys.stderr,
                      flush=True)
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()  # the rest is the load's end
    return out, write_s, time.perf_counter() - t0


def search(store: Store, principal: Principal, queries: np.ndarray, texts: Sequence[str], truth: list[set[int]],
           rounds: int) -> dict[str, float]:
    """Dense p50/p95 (median over rounds), recall@10 against ``truth``, BM25 p50/p95."""
    for q in queries[:5]:
        store.dense_search(q, principal, K)
    p50s, p95s, recalls = [], [], []
    for r in range(rounds):
        times = []
        for i, q in enumerate(queries):
            t0 = time.perf_counter()
            hits = store.dense_search(q, principal, K)
            times.append(1000 * (time.perf_counter() - t0))
            if r == 0:
                recalls.append(len({row_of(c) for c, _ in hits} & truth[i]) / max(1, min(K, len(truth[i]))))
        p50s.append(percentile(times, 50))
        p95s.append(percentile(times, 95))
    lexical = []
    for text in texts:
        t0 = time.perf_counter()
        store.lexical_search(text, principal, K)
        lexical.append(1000 * (time.perf_counter() - t0))
    return {"dense_p50_ms": round(median(p50s), 2), "dense_p95_ms": round(median(p95s), 2),
            "recall10": round(float(np.mean(recalls)), 4), "bm25_p50_ms": round(percentile(lexical, 50), 2),
            "bm25_p95_ms": round(percentile(lexical, 95), 2)}


def lance_size(path: Path) -> int:
    """Bytes under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    """Build the scale corpus in each store, search it under three filters, record."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=1_000_000)
    ap.add_argument("--stores", default="lance,postgres", help="comma-separated: lance, postgres")
    ap.add_argument("--noise", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--quick", action="store_true", help="20,000 chunks, 30 queries, 1 round, no docs")
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args(argv)
    from ragtune.models.embedder import MiniLMEmbedder

    n_chunks = 20_000 if args.quick else args.chunks
    rounds = 1 if args.quick else args.rounds
    embedder = MiniLMEmbedder(batch_size=32, threads=2)
    texts, base = bases(embedder)
    claims = load_scifact_queries()
    qids = sorted(load_scifact_qrels("test"), key=int)[: 30 if args.quick else None]
    query_texts = [claims[q] for q in qids]
    queries = embedder.embed(query_texts).astype(np.float32)
    docs = n_chunks // PER_DOC
    results: dict[str, dict[str, Any]] = {}
    for kind in [s.strip() for s in args.stores.split(",") if s.strip()]:
        with open_store(kind, cache_dir("scale") / f"lance-{n_chunks}") as (store, size_of):
            vectors, write_s, index_s = build(store, n_chunks, texts, base, args.noise, args.seed)
            built = {"write_s": round(write_s, 1), "index_s": round(index_s, 1), "disk_mb": round(size_of() / 2**20)}
            emit("store_scale.build", store=kind, chunks=len(vectors), **built)
            rows: dict[str, dict[str, float]] = {}
            for name, principal in PRINCIPALS.items():
                readable = np.flatnonzero(np.repeat(readable_docs(name, docs), PER_DOC))
                truth = exact_top_k(vectors, queries, readable, K)
                rows[name] = {"readable": len(readable), **search(store, principal, queries, query_texts, truth,
                                                                  rounds)}
                emit("store_scale.search", store=kind, filter=name, **rows[name])
            results[kind] = {"build": built, "search": rows, "chunks": len(vectors)}
    if not (args.quick or args.no_docs):
        record(results, len(queries), rounds, args.noise)
    return 0


class open_store:  # noqa: N801 - used as a context manager, named like one
    """The store of ``kind`` for the run, fresh (an earlier run's folder or schema is dropped), and its size."""

    def __init__(self, kind: str, lance_path: Path) -> None:
        if kind not in ("lance", "postgres"):
            raise SystemExit(f"unknown store {kind!r}: lance or postgres")
        self.kind, self.lance_path = kind, lance_path
        self.cluster: Any = None
        self.store: Any = None

    def __enter__(self) -> tuple[Store, Any]:
        if self.kind == "lance":
            from ragtune.store.lance import LanceStore

            shutil.rmtree(self.lance_path, ignore_errors=True)
            self.store = LanceStore(self.lance_path)
            return self.store, lambda: lance_size(self.lance_path)
        from store.pg_cluster import ClusterError, start_cluster

        from ragtune.store.postgres import PostgresStore

        try:
            self.cluster = start_cluster()
        except ClusterError as exc:
            raise SystemExit(f"no PostgreSQL cluster: {exc}") from None
        self.store = PostgresStore(self.cluster.dsn, schema="scale", pool_size=2)
        return self.store, self._pg_size

    def _pg_size(self) -> int:
        with self.cluster.admin() as conn:
            row = conn.execute("SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN "
                               "pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'scale' "
                               "AND c.relkind = 'r'").fetchone()
            hnsw = conn.execute("SELECT pg_relation_size('scale.chunks_embedding')").fetchone()
        # The on-disk graph is about what its build held in maintenance_work_mem (index_build_memory).
        print(f"  HNSW index: {int(hnsw[0]) / 2**20:,.0f} MB" if hnsw else "", file=sys.stderr, flush=True)
        return int(row[0]) if row else 0

    def __exit__(self, *exc: object) -> None:
        if self.kind == "lance":
            shutil.rmtree(self.lance_path, ignore_errors=True)
            return
        try:
            self.store.close()
        finally:
            self.cluster.stop()


def record(results: dict[str, dict[str, Any]], n_queries: int, rounds: int, noise: float) -> None:
    """Two tables in docs/benchmarks.md: search under each filter, and build cost."""
    chunks = next(iter(results.values()))["chunks"]
    names = {"lance": "LanceDB (embedded)", "postgres": "PostgreSQL + pgvector"}
    intro = (f"{chunks:,} chunks in documents of {PER_DOC}: SciFact titles and sentences by template, vectors the "
             f"abstracts' real all-MiniLM-L6-v2 embeddings plus noise {noise:g}, normalised; document d readable by "
             f"group g(d mod {GROUPS}), every {NEEDLE_EVERY:,}th also by one user. {n_queries} SciFact test claims "
             f"(real embeddings) as queries, top-{K}; dense p50 / p95 the median over {rounds} rounds; recall@10 "
             f"against exact search over the principal's readable vectors. Goal: recall@10 ≥ {GOAL_RECALL:g} at "
             f"p95 ≤ {GOAL_P95_MS:g} ms on both stores. Machine: {machine()}; "
             f"load {os.getloadavg()[0]:.2f} at the end.")
    header = ["store · filter", "readable chunks", "dense p50 / p95 ms", "dense recall@10", "BM25 p50 / p95 ms"]
    for kind, r in results.items():
        for name, s in r["search"].items():
            key = f"{names[kind]} · {name}"
            write_row(SEARCH_SECTION, key, f"| {key} | {s['readable']:,} | {s['dense_p50_ms']:.1f} / "
                      f"{s['dense_p95_ms']:.1f} | {s['recall10']:.3f} | {s['bm25_p50_ms']:.1f} / "
                      f"{s['bm25_p95_ms']:.1f} |", header=header, command=command_line(), intro=intro)
    build_intro = (f"{chunks:,} chunks written through `replace_documents` in batches of {BATCH_DOCS * PER_DOC:,} "
                   f"inside `bulk_load()` into an empty store; \"index s\" is the load's end (LanceDB: `optimize` "
                   f"builds the full-text, ACL, id and IVF-PQ vector indexes; PostgreSQL: the HNSW and term GIN "
                   f"indexes built once over the loaded table with maintenance_work_mem "
                   f"{pg_bulk.DEFAULT_BUILD_MEMORY}, then ANALYZE; its ACL GIN and B-tree indexes are kept current "
                   f"by every write). Machine: {machine()}.")
    for kind, r in results.items():
        b = r["build"]
        write_row(BUILD_SECTION, names[kind], f"| {names[kind]} | {r['chunks']:,} | {b['write_s']:.0f} | "
                  f"{b['index_s']:.0f} | {b['disk_mb']:,} |",
                  header=["store", "chunks", "write s", "index s", "disk MB"], command=command_line(),
                  intro=build_intro)


if __name__ == "__main__":
    raise SystemExit(main())
