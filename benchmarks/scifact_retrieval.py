"""SciFact retrieval quality and search latency through ragtune's real pipeline.

Each SciFact abstract becomes one Markdown file (front matter ``title`` + ``acl: public``, body = abstract)
under ``.bench/scifact/docs``; the folder is ingested with :class:`~ragtune.ingest.sync.Syncer` into
``.bench/scifact/index`` (built once, then only re-synced: unchanged files are skipped) and every query of
the split is searched with :class:`~ragtune.retrieval.hybrid.HybridRetriever` as a plain principal.

Scores are at document level: a document ranks at its best chunk (doc id = file stem = SciFact ``_id``).
Three configurations are scored: BM25 only, dense only, and the default hybrid (HybridRetriever's own
fusion defaults), each with 200 candidates per side so at least 100 distinct documents are ranked. Latency is
the wall time of ``retrieve()`` with HybridRetriever's defaults unchanged (no answer step), median and p95
over all queries, plus the median of each stage.

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/scifact_retrieval.py \\
        [--split test|train] [--limit N]
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LANCE_LOG", "error")

from _common import (  # noqa: E402
    SciFactDoc,
    cache_dir,
    clear_embedding_cache,
    dedupe,
    emit,
    load_scifact_corpus,
    load_scifact_qrels,
    load_scifact_queries,
    machine,
    median,
    ndcg_at_k,
    percentile,
    recall_at_k,
    write_corpus,
    write_row,
)

from ragtune.core import Acl, Chunk, Hit, Principal  # noqa: E402
from ragtune.ingest import chunking, parsers  # noqa: E402
from ragtune.ingest.sync import Syncer, SyncReport  # noqa: E402
from ragtune.models.embedder import MiniLMEmbedder  # noqa: E402
from ragtune.retrieval.hybrid import HybridRetriever  # noqa: E402
from ragtune.store.lance import LanceStore  # noqa: E402

CANDIDATES = 200  # chunks per side: enough for 100 distinct documents after collapsing chunks
SECTION = "SciFact retrieval quality (document level)"
LATENCY_SECTION = "SciFact search latency"
COMMAND = "RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/scifact_retrieval.py"
# Published and peer anchors (../shared/data/README.md), for the notes column.
ANCHOR_BM25 = "published BM25 0.665 (BEIR) – 0.679 (Anserini)"
ANCHOR_DENSE = "all-MiniLM-L6-v2 ≈0.645 (MTEB)"
ANCHOR_HYBRID = "peers, same embedder, same run: section Peers side by side: hybrid retrieval"
GOAL_NDCG, GOAL_RECALL, GOAL_P50_MS = 0.72, 0.95, 25.0


# --- corpus files and index ----------------------------------------------------------------------------


def pipeline_fingerprint(syncer: Syncer, embedder: MiniLMEmbedder) -> dict[str, Any]:
    """What the stored chunks depend on besides the files: chunking settings and the code that shapes them."""
    code = hashlib.sha256()
    search_text = vars(Chunk)["search_text"].fget  # the property's function (mypy types the attribute as its value)
    for obj in (chunking, parsers.parse_markdown, parsers.split_front_matter, search_text):
        code.update(inspect.getsource(obj).encode("utf-8"))
    return {
        "max_tokens": syncer.max_tokens,
        "overlap_tokens": syncer.overlap_tokens,
        "embedder": embedder.name,
        "code": code.hexdigest()[:16],
    }


class PrintProgress:
    """Prints ingestion progress to stderr every few hundred files (for long runs polled from a log)."""

    def __init__(self, every: int = 500) -> None:
        self.every = every
        self.total = 0
        self.files = 0
        self.chunks = 0
        self.t0 = time.perf_counter()

    def start(self, total_files: int) -> None:
        """Remember the number of files."""
        self.total = total_files
        self.t0 = time.perf_counter()

    def file_done(self, path: Path, status: str) -> None:
        """Count a file; print a line now and then."""
        self.files += 1
        if self.files % self.every == 0 or self.files == self.total:
            print(f"  sync: {self.files}/{self.total} files, {self.chunks} chunks embedded, "
                  f"{time.perf_counter() - self.t0:.0f}s", file=sys.stderr, flush=True)

    def chunks_embedded(self, n: int) -> None:
        """Count embedded chunks."""
        self.chunks += n


@dataclass
class IndexInfo:
    """The ingested index and how it got there."""

    store: LanceStore
    report: SyncReport
    rebuilt: bool
    documents: int
    chunks: int
    fingerprint: dict[str, Any] = field(default_factory=dict)


def ensure_index(
    root: Path, docs: Sequence[SciFactDoc], embedder: MiniLMEmbedder, rebuild: bool = False,
    max_tokens: int = 256, overlap_tokens: int = 32,
) -> IndexInfo:
    """Write the corpus files and sync them into ``root/index``; rebuild when the chunking inputs changed."""
    docs_dir, index_dir = root / "docs", root / "index"
    corpus_sha = write_corpus(docs_dir, docs)
    manifest_path = root / "index.json"
    store = LanceStore(index_dir)
    syncer = Syncer(store, embedder, max_tokens=max_tokens, overlap_tokens=overlap_tokens)
    fingerprint = {**pipeline_fingerprint(syncer, embedder), "corpus": corpus_sha[:16]}
    old = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    stale = old is not None and {k: v for k, v in old.items() if k != "corpus"} != {
        k: v for k, v in fingerprint.items() if k != "corpus"
    }
    rebuilt = rebuild or stale or old is None or not index_dir.exists()
    if rebuilt:
        if index_dir.exists():
            print(f"rebuilding {index_dir} (--rebuild, or chunking settings or code changed)", file=sys.stderr)
            shutil.rmtree(index_dir)
        store = LanceStore(index_dir)
        syncer = Syncer(store, embedder, max_tokens=max_tokens, overlap_tokens=overlap_tokens)
    # Written before syncing: a sync that is killed resumes (incrementally) on the next run.
    manifest_path.write_text(json.dumps(fingerprint, indent=2))
    # The Syncer is incremental: on an unchanged corpus this only hashes the files (a second or two).
    report = syncer.sync(docs_dir, default_acl=Acl(public=True), progress=PrintProgress())
    if report.failed or report.no_acl:
        raise SystemExit(f"ingestion problems: failed={report.failed[:3]} no_acl={report.no_acl[:3]}")
    records = store.documents()
    return IndexInfo(store, report, rebuilt, len(records), store.count(), fingerprint)


# --- evaluation ----------------------------------------------------------------------------------------


def doc_ranking(hits: Sequence[Hit]) -> list[str]:
    """Documents in the order of their best chunk; a document's id is its file stem (the SciFact _id)."""
    return dedupe(Path(h.chunk.source_path).stem for h in hits)


@dataclass
class RunResult:
    """Per-query scores and timings of one retriever configuration."""

    name: str
    ndcg10: list[float] = field(default_factory=list)
    recall100: list[float] = field(default_factory=list)
    distinct_docs: list[int] = field(default_factory=list)
    wall_ms: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)
    rankings: dict[str, list[str]] = field(default_factory=dict)
    fusion: str = ""

    def summary(self) -> dict[str, Any]:
        """Mean quality over queries and latency percentiles."""
        n = len(self.ndcg10)
        out: dict[str, Any] = {"queries": n}
        if n:
            out["ndcg@10"] = round(sum(self.ndcg10) / n, 4)
            out["recall@100"] = round(sum(self.recall100) / n, 4)
            out["min_distinct_docs"] = min(self.distinct_docs)
        out["p50_ms"] = round(median(self.wall_ms), 2)
        out["p95_ms"] = round(percentile(self.wall_ms, 95), 2)
        out["stage_p50_ms"] = {k: round(median(v), 2) for k, v in self.stages.items()}
        return out


def run_queries(
    name: str, retriever: HybridRetriever, queries: Sequence[tuple[str, str]],
    qrels: dict[str, dict[str, int]], principal: Principal, top_k: int | None = None,
) -> RunResult:
    """Search every query once; score it when ``qrels`` has it; time ``retrieve()`` and each stage."""
    result = RunResult(name, fusion=(
        f"RRF k {retriever.rrf_k}, weights {retriever.lexical_weight:g}/{retriever.dense_weight:g}"))
    for qid, text in queries:
        t0 = time.perf_counter()
        retrieval = retriever.retrieve(text, principal, top_k=top_k)
        result.wall_ms.append((time.perf_counter() - t0) * 1000)
        for stage, ms in retrieval.latency_ms.items():
            result.stages.setdefault(stage, []).append(ms)
        ranked = doc_ranking(retrieval.hits)
        result.rankings[qid] = ranked
        if qid in qrels:
            result.ndcg10.append(ndcg_at_k(ranked, qrels[qid], 10))
            result.recall100.append(recall_at_k(ranked, qrels[qid], 100))
            result.distinct_docs.append(len(ranked))
    return result


def paired_threads(
    retriever: HybridRetriever, queries: Sequence[tuple[str, str]], principal: Principal,
    threads: Sequence[int] = (2, 1),
) -> dict[int, RunResult]:
    """Each query once per embedder thread count, alternating the order, so both see the same load.

    Each thread count gets its own embedder (and so its own runtime session) over the same store.
    Diagnostic only: the headline latency uses the defaults.
    """
    runs = {}
    for n in threads:
        embedder = MiniLMEmbedder(batch_size=32, threads=n)
        embedder.warm_up()
        runs[n] = HybridRetriever(retriever.store, embedder, top_k=retriever.top_k, lexical_k=retriever.lexical_k,
                                  dense_k=retriever.dense_k, rrf_k=retriever.rrf_k)
    out = {n: RunResult(f"threads={n}") for n in threads}
    for i, (_, text) in enumerate(queries):
        for n in threads if i % 2 == 0 else tuple(reversed(threads)):
            clear_embedding_cache()
            t0 = time.perf_counter()
            retrieval = runs[n].retrieve(text, principal)
            out[n].wall_ms.append((time.perf_counter() - t0) * 1000)
            for stage, ms in retrieval.latency_ms.items():
                out[n].stages.setdefault(stage, []).append(ms)
    return out


def warm(retriever: HybridRetriever, principal: Principal, texts: Sequence[str]) -> None:
    """Load the model, open the table and touch the indexes so timed queries are steady-state."""
    for text in texts:
        retriever.retrieve(text, principal)


# --- main ----------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Build or reuse the index, score three configurations, time the default, print and record results."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=["test", "train"], default="test")
    ap.add_argument("--limit", type=int, default=None, help="only the first N queries (no docs row written)")
    ap.add_argument("--rebuild", action="store_true", help="re-ingest from scratch")
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args(argv)

    corpus = load_scifact_corpus()
    queries_all = load_scifact_queries()
    qrels = load_scifact_qrels(args.split)
    qids = sorted(qrels, key=lambda q: (len(q), q))
    if args.limit:
        qids = qids[: args.limit]
    queries = [(q, queries_all[q]) for q in qids]
    principal = Principal("bench")

    embedder = MiniLMEmbedder(batch_size=32, threads=2)
    t0 = time.perf_counter()
    info = ensure_index(cache_dir("scifact"), corpus, embedder, rebuild=args.rebuild)
    sync_s = time.perf_counter() - t0
    emit(
        "scifact.index", documents=info.documents, chunks=info.chunks, rebuilt=info.rebuilt,
        sync_seconds=round(sync_s, 2), chunks_embedded=info.report.chunks_embedded,
        unchanged=info.report.unchanged, **info.fingerprint,
    )
    store = info.store

    default = HybridRetriever(store, embedder)
    configs = {
        "bm25": HybridRetriever(store, embedder, top_k=CANDIDATES, lexical_k=CANDIDATES, dense_k=CANDIDATES,
                                lexical_weight=1.0, dense_weight=0.0),
        "dense": HybridRetriever(store, embedder, top_k=CANDIDATES, lexical_k=CANDIDATES, dense_k=CANDIDATES,
                                 lexical_weight=0.0, dense_weight=1.0),
        # Fusion settings are HybridRetriever's defaults; only the candidate depth is raised for recall@100.
        "hybrid": HybridRetriever(store, embedder, top_k=2 * CANDIDATES, lexical_k=CANDIDATES,
                                  dense_k=CANDIDATES),
    }
    warm(default, principal, [t for _, t in queries[:5]])

    results: dict[str, RunResult] = {}
    for name, retriever in configs.items():
        clear_embedding_cache()  # each pass embeds its queries afresh, so its latency is honest
        results[name] = run_queries(name, retriever, queries, qrels, principal)
        emit(f"scifact.{name}", split=args.split, rrf_k=retriever.rrf_k,
             weights=[retriever.lexical_weight, retriever.dense_weight], candidates=CANDIDATES,
             **results[name].summary())
    clear_embedding_cache()
    latency = run_queries("default", default, queries, {}, principal)
    lat = latency.summary()
    lat.pop("queries", None)
    lat["load_avg"] = round(os.getloadavg()[0], 2)  # 1-minute load: other processes on the same cores
    emit("scifact.latency", split=args.split, queries=len(queries), top_k=default.top_k,
         lexical_k=default.lexical_k, dense_k=default.dense_k, rrf_k=default.rrf_k, **lat)
    paired: dict[int, dict[str, Any]] = {}
    for n, res in paired_threads(default, queries, principal).items():
        paired[n] = {k: v for k, v in res.summary().items() if k != "queries"}
        paired[n]["load_avg"] = round(os.getloadavg()[0], 2)
        emit("scifact.latency_paired", split=args.split, queries=len(queries), embed_threads=n, **paired[n])

    if args.limit or args.no_docs:
        print("(partial run: docs/benchmarks.md not written)", file=sys.stderr)
        return 0
    record(args.split, len(queries), info, results, lat, paired)
    return 0


def record(
    split: str, n: int, info: IndexInfo, results: dict[str, RunResult], lat: dict[str, Any],
    paired: dict[int, dict[str, Any]] | None = None,
) -> None:
    """Insert or replace this split's rows in docs/benchmarks.md."""
    header = ["configuration", "split", "queries", "chunks", "nDCG@10", "recall@100", "goal", "notes"]
    intro = (
        "SciFact abstracts written as Markdown files, ingested with `Syncer` (256-token chunks, 32 "
        "overlap, title prepended to each chunk's search text), searched with `HybridRetriever` as a plain "
        f"principal; a document ranks at its best chunk; {CANDIDATES} candidate chunks per side. Fusion of "
        f"the hybrid row is HybridRetriever's default. Machine: {machine()}, embedder threads 2. Tuning is "
        "done on the train split only; test is reported, never tuned on. Train rows: add `--split train` "
        "to the command."
    )
    notes = {"bm25": ANCHOR_BM25, "dense": ANCHOR_DENSE, "hybrid": ANCHOR_HYBRID}
    fusion = results["hybrid"].fusion
    labels = {
        "bm25": "BM25 only (LanceDB FTS)",
        "dense": "dense only (all-MiniLM-L6-v2)",
        "hybrid": f"ragtune default hybrid ({fusion})",
    }
    for name, res in results.items():
        s = res.summary()
        if name == "hybrid":
            ok = s["ndcg@10"] >= GOAL_NDCG and s["recall@100"] >= GOAL_RECALL
            goal = f"≥ {GOAL_NDCG} / ≥ {GOAL_RECALL}: {'met' if ok else 'NOT met'}"
        else:
            goal = "–"
        key = f"{labels[name]}, {split}"
        write_row(
            SECTION, key,
            f"| {key} | {split} | {s['queries']} | {info.chunks} | {s['ndcg@10']:.3f} "
            f"| {s['recall@100']:.3f} | {goal} | {notes[name]} |",
            header=header, command=COMMAND, intro=intro,
        )
    lheader = ["configuration", "queries", "p50 ms", "p95 ms", "goal p50", "embed query", "BM25", "dense",
               "fuse", "fetch", "load avg"]
    lintro = (
        "Wall time of `HybridRetriever.retrieve()` with all its defaults (top_k 8, 100 + 100 candidates), no "
        "answer step, after 5 warm-up queries; stage columns are per-stage medians in ms; load avg is the "
        "machine's 1-minute load when the pass ended (above the core count, other work shared the CPU). "
        "The two *paired* rows run each query twice, with 2 and with 1 embedder thread for the query "
        "embedding, in alternating order, so both see the same machine load. "
        f"Machine: {machine()}, embedder threads 2. Train rows: add `--split train`."
    )
    rows = [(f"default hybrid, SciFact {split}", lat, True)]
    for threads, p in sorted((paired or {}).items(), reverse=True):
        rows.append((f"paired: query embedding {threads} thread{'s' if threads > 1 else ''}, SciFact {split}",
                     p, False))
    for key, r, headline in rows:
        st = r["stage_p50_ms"]
        goal = f"≤ {GOAL_P50_MS:.0f}: {'met' if r['p50_ms'] <= GOAL_P50_MS else 'NOT met'}" if headline else "–"
        write_row(
            LATENCY_SECTION, key,
            f"| {key} | {n} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {goal} "
            f"| {st.get('embed_query', 0):.1f} | {st.get('lexical', 0):.1f} | {st.get('dense', 0):.1f} "
            f"| {st.get('fuse', 0):.2f} | {st.get('fetch', 0):.1f} | {r['load_avg']:.1f} |",
            header=lheader, command=COMMAND, intro=lintro,
        )


if __name__ == "__main__":
    raise SystemExit(main())
