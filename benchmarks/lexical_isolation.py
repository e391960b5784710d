"""The cost of lexical isolation: BM25 latency with index-wide statistics (default) vs per-principal ones.

SciFact abstracts (title + abstract = one chunk, chunk id = SciFact ``_id``) are written straight into a fresh
:class:`~ragtune.store.lance.LanceStore` under ``.bench/lexical_isolation/`` with random unit vectors (the
dense column is not searched here, so nothing is embedded), in three ACL partitions by position: ``public``,
``group:hr``, ``group:legal``. Three principals read one, two and all three partitions.

For every SciFact test query and principal, ``lexical_search(k=100)`` (HybridRetriever's ``lexical_k``) is
timed in both modes over several interleaved rounds; a query's latency is its median over the rounds, and
the table gives p50 / p95 over queries. "Cold" is the first isolated query of a principal on a store version:
listing its readable chunks (ACL filter in the query), analysing them and building the BM25 index (median of
the rounds, cache cleared before each). "Same top-10" is the share of queries whose isolated top 10 equals
the default's: 100 % would mean the hidden chunks never change a ranking; for the principal who reads
everything it checks that isolation scores as the full-text index does.

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/lexical_isolation.py [--sizes 2000,full]
        [--rounds 3] [--limit-queries N] [--no-docs]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LANCE_LOG", "error")

from _common import (  # noqa: E402
    SciFactDoc,
    cache_dir,
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
from ragtune.store.isolated_bm25 import IsolatedBM25  # noqa: E402
from ragtune.store.lance import LanceStore  # noqa: E402

SECTION = "Lexical isolation cost (SciFact, BM25 only)"
COMMAND = "RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/lexical_isolation.py"
K = 100
PARTITIONS = ["public", "group:hr", "group:legal"]
PRINCIPALS = {
    "public only (1/3)": Principal("pat"),
    "public + hr (2/3)": Principal("hank", frozenset({"hr"})),
    "all partitions": Principal("ada", frozenset({"hr", "legal"})),
}


def build_store(folder: Path, docs: Sequence[SciFactDoc], seed: int = 0) -> LanceStore:
    """A fresh store with one chunk per abstract, ACL by position, random unit vectors; indexes built."""
    if folder.exists():
        shutil.rmtree(folder)
    chunks = [
        Chunk(chunk_id=d.doc_id, doc_id=d.doc_id, source_path=f"/scifact/{d.doc_id}.md", title=d.title,
              section_path=(), page=None, char_start=0, char_end=len(d.text), text=d.text, content_hash="",
              doc_hash=d.doc_id, mtime=0.0, acl=(PARTITIONS[i % len(PARTITIONS)],), ordinal=0)
        for i, d in enumerate(docs)
    ]
    vectors = np.random.default_rng(seed).normal(size=(len(chunks), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = LanceStore(folder)
    for start in range(0, len(chunks), 2000):  # a few commits, as a sync writes batches
        batch = chunks[start : start + 2000]
        store.replace_documents([c.doc_id for c in batch], batch, vectors[start : start + 2000], synced_at=0.0)
    store.optimize()
    return store


def index_mib(index: IsolatedBM25) -> float:
    """The BM25 matrix's arrays (data, indices, indptr) in MiB; the vocabulary dict comes on top."""
    model = index._model  # a benchmark may look inside
    if model is None:
        return 0.0
    return sum(np.asarray(model.scores[k]).nbytes for k in ("data", "indices", "indptr")) / 2**20


T = TypeVar("T")


def timed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, (time.perf_counter() - t) * 1000


@dataclass
class Row:
    """One corpus size and principal: latencies in ms."""

    corpus: str
    principal: str
    chunks: int
    readable: int
    default_p50_ms: float
    default_p95_ms: float
    isolated_p50_ms: float
    isolated_p95_ms: float
    cold_ms: float
    cold_fetch_ms: float
    cold_build_ms: float
    index_mib: float
    same_top10: float
    queries: int


def run_size(label: str, docs: Sequence[SciFactDoc], queries: Sequence[str], rounds: int) -> list[Row]:
    t0 = time.perf_counter()
    store = build_store(cache_dir("lexical_isolation") / label, docs)
    print(f"[{label}] store of {store.count()} chunks built in {time.perf_counter() - t0:.1f} s", flush=True)
    results = []
    for name, principal in PRINCIPALS.items():
        readable = len(store.readable_texts(principal))
        # Cold: the first isolated query of this principal on this store version (cache cleared each round).
        cold, fetch, build = [], [], []
        for _ in range(rounds):
            store.isolated_indexes.clear()
            _, ms = timed(store.lexical_search, queries[0], principal, K, isolated=True)
            cold.append(ms)
            pairs, f_ms = timed(store.readable_texts, principal)
            index, b_ms = timed(IsolatedBM25, [c for c, _ in pairs], [t for _, t in pairs])
            fetch.append(f_ms)
            build.append(b_ms)
        store.lexical_search(queries[0], principal, K)  # warm the full-text index too
        default_ms: list[list[float]] = [[] for _ in queries]
        isolated_ms: list[list[float]] = [[] for _ in queries]
        same_top10 = 0
        for r in range(rounds):
            for i, q in enumerate(queries):
                d, d_ms = timed(store.lexical_search, q, principal, K)
                iso, i_ms = timed(store.lexical_search, q, principal, K, isolated=True)
                default_ms[i].append(d_ms)
                isolated_ms[i].append(i_ms)
                if r == 0 and [c for c, _ in d[:10]] == [c for c, _ in iso[:10]]:
                    same_top10 += 1
        per_q_default = [median(x) for x in default_ms]
        per_q_isolated = [median(x) for x in isolated_ms]
        row = Row(
            corpus=label, principal=name, chunks=store.count(), readable=readable,
            default_p50_ms=percentile(per_q_default, 50), default_p95_ms=percentile(per_q_default, 95),
            isolated_p50_ms=percentile(per_q_isolated, 50), isolated_p95_ms=percentile(per_q_isolated, 95),
            cold_ms=median(cold), cold_fetch_ms=median(fetch), cold_build_ms=median(build),
            index_mib=index_mib(index), same_top10=same_top10 / len(queries), queries=len(queries),
        )
        emit("lexical_isolation", **{k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(row).items()})
        results.append(row)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="2000,full", help="comma-separated corpus sizes; 'full' = all 5,183")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per query (median per query)")
    ap.add_argument("--limit-queries", type=int, default=None, help="only the first N test queries")
    ap.add_argument("--no-docs", action="store_true", help="print results only; leave docs/benchmarks.md alone")
    args = ap.parse_args(argv)

    all_queries = load_scifact_queries()
    queries = [all_queries[q] for q in load_scifact_qrels("test") if q in all_queries][: args.limit_queries]
    corpus = load_scifact_corpus()
    rows: list[Row] = []
    for size in args.sizes.split(","):
        docs = corpus if size == "full" else corpus[: int(size)]
        rows += run_size(f"{len(docs)}", docs, queries, args.rounds)
    if args.no_docs:
        return 0
    intro = (
        f"One chunk per SciFact abstract written straight into a LanceStore (random vectors: nothing embedded) "
        f"in three ACL partitions by position (public, hr, legal); SciFact's {len(queries)} test queries, "
        f"`lexical_search(k={K})` as each principal, {args.rounds} interleaved rounds (median per query; p50 / "
        f"p95 over queries). *Cold* is a principal's first isolated query on a store version: list its readable "
        f"chunks (ACL filter in the query) + analyse + build the BM25 index, then search (median of "
        f"{args.rounds}; in brackets: list / build). Later queries reuse the cached index. *Same top-10*: "
        f"queries whose isolated top 10 equals the default's (below 100 % for a partial reader: the hidden "
        f"chunks' statistics change its ranking; at 100 % for the full reader isolation scores as the index "
        f"does). Machine: {machine()}."
    )
    header = ["corpus chunks / principal", "readable", "default p50 / p95", "isolated warm p50 / p95",
              "isolated cold (list / build)", "index MiB", "same top-10"]
    for r in rows:
        key = f"{r.chunks} / {r.principal}"
        write_row(
            SECTION, key,
            f"| {key} | {r.readable} | {r.default_p50_ms:.2f} / {r.default_p95_ms:.2f} ms "
            f"| {r.isolated_p50_ms:.2f} / {r.isolated_p95_ms:.2f} ms "
            f"| {r.cold_ms:.0f} ms ({r.cold_fetch_ms:.0f} / {r.cold_build_ms:.0f}) "
            f"| {r.index_mib:.1f} | {100 * r.same_top10:.0f} % |",
            header=header, command=COMMAND, intro=intro,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
