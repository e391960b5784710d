"""Peers side by side: ragtune, LlamaIndex and Haystack 2.x hybrid retrieval in one run, on the same queries.

The three systems index the same documents with the same packaged all-MiniLM-L6-v2 and answer every query in
turn, the order rotated per query (so each runs first, second and third equally often under the same load):

- **ragtune**: the index and ``HybridRetriever`` of ``scifact_retrieval.py`` (``ensure_index``: Markdown files
  with the title in the front matter and public ACLs, ``Syncer`` 256-token chunks; fusion at its defaults),
  built fresh into ``.bench/peers/<corpus>/``; a document ranks at its best chunk;
- **LlamaIndex** (``benchmarks/peers/worker_llamaindex.py``): BM25Retriever + vector retriever fused by
  QueryFusionRetriever (reciprocal rank);
- **Haystack** (``benchmarks/peers/worker_haystack.py``): InMemoryBM25Retriever + InMemoryEmbeddingRetriever
  joined by DocumentJoiner (reciprocal rank fusion).

Every system gets 200 candidates per side and returns at least 100 documents. The peers index one document per
corpus item, its text ``title\\ntext`` (the text ragtune embeds and BM25-indexes for an unsplit chunk). Latency
is measured around the retrieve call only (inside each worker for the peers), query embedding included.

Corpora: SciFact test (300 claims, 5,183 abstracts; nDCG@10, recall@100) and PolicyQA dev without ACLs (all
20 policies searchable by everyone, each of the 574 paragraphs one document; the 2,403 distinct questions with a
whole-word answer; recall@5 of the question's gold paragraphs, and whether a top-5 paragraph is from its policy).

The peers run in their own environment (``bash benchmarks/peers/setup.sh``). ``--quick`` (30 queries, about
300 documents) checks everything fast and writes no docs row.

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/peers_retrieval.py [--corpus scifact|policyqa|both]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
os.environ.setdefault("LANCE_LOG", "error")

import _peers  # noqa: E402
from _common import (  # noqa: E402
    DOCS_FILE,
    SciFactDoc,
    cache_dir,
    clear_embedding_cache,
    command_line,
    data_dir,
    emit,
    load_scifact_corpus,
    load_scifact_qrels,
    load_scifact_queries,
    machine,
    ndcg_at_k,
    recall_at_k,
    write_row,
)
from build_demo_corpus import is_whole_words  # noqa: E402
from scifact_retrieval import doc_ranking, ensure_index  # noqa: E402

from ragtune.core import Principal  # noqa: E402
from ragtune.models.embedder import MiniLMEmbedder, minilm_model_dir  # noqa: E402
from ragtune.retrieval.hybrid import HybridRetriever  # noqa: E402

CANDIDATES = 200  # per side, every system: enough for 100 distinct documents
TOP_DOCS = 100
THREADS = 2  # default embedder threads of every system (ragtune's onnxruntime, the peers' torch)
WARM_UP = 5
PEERS = {"LlamaIndex": "worker_llamaindex.py", "Haystack": "worker_haystack.py"}
SYSTEMS = ("ragtune", *PEERS)
SECTION = "Peers side by side: hybrid retrieval (one run, same queries)"
HEADER = ["system, corpus", "queries", "documents", "nDCG@10", "recall@100", "recall@5 paragraph",
          "recall@5 policy", "p50 ms", "p95 ms", "p50 / ragtune p50", "index s", "versions", "load avg"]


@dataclass
class Corpus:
    """Documents (id, title, text), queries (id, text) and each query's gold documents."""

    name: str
    docs: list[SciFactDoc]
    queries: list[tuple[str, str]]
    gold: dict[str, dict[str, int]]
    policy: dict[str, str] = field(default_factory=dict)  # PolicyQA: query id -> website


def scifact_corpus(quick: bool) -> Corpus:
    """SciFact test; quick: the first 30 queries over their relevant abstracts plus others up to 300."""
    qrels, texts = load_scifact_qrels("test"), load_scifact_queries()
    qids = sorted(qrels, key=lambda q: (len(q), q))
    docs = load_scifact_corpus()
    if quick:
        qids = qids[:30]
        needed = {d for q in qids for d in qrels[q]}
        kept = [d for d in docs if d.doc_id in needed]
        docs = kept + [d for d in docs if d.doc_id not in needed][: max(0, 300 - len(kept))]
    return Corpus("SciFact test", docs, [(q, texts[q]) for q in qids], {q: qrels[q] for q in qids})


def paragraph_id(website: str, position: int) -> str:
    """A paragraph's document id (and file stem): ``<website>__p<NNN>`` in policy order."""
    return f"{website}__p{position:03d}"


def policyqa_corpus(dev_json: Path, quick: bool) -> Corpus:
    """PolicyQA dev, ACL-free: each paragraph a document; each distinct (website, question) with a whole-word
    answer a query whose gold documents are the paragraphs it is annotated on. Quick: 3 policies, 30 queries."""
    raw = json.loads(dev_json.read_text(encoding="utf-8"))
    articles = raw["data"][:3] if quick else raw["data"]
    docs: list[SciFactDoc] = []
    gold: dict[tuple[str, str], dict[str, int]] = {}
    for article in articles:
        website = article["title"].strip()
        for pos, para in enumerate(sorted(article["paragraphs"], key=lambda p: int(p.get("index", 0)))):
            pid = paragraph_id(website, pos)
            docs.append(SciFactDoc(pid, f"{website} privacy policy", " ".join(para["context"].split())))
            for qa in para["qas"]:
                if any(is_whole_words(para["context"], a) for a in qa["answers"]):
                    gold.setdefault((website, " ".join(qa["question"].split())), {})[pid] = 1
    items = list(gold.items())
    if quick:
        items = items[:: max(1, len(items) // 30)][:30]
    queries = [(f"q{i}", question) for i, ((_, question), _) in enumerate(items)]
    return Corpus("PolicyQA dev (no ACLs)", docs, queries, {f"q{i}": g for i, (_, g) in enumerate(items)},
                  {f"q{i}": site for i, ((site, _), _) in enumerate(items)})


def score(corpus: Corpus, qid: str, ranked: Sequence[str]) -> dict[str, float]:
    """The corpus's measures for one query's ranking."""
    if corpus.policy:
        return {"recall@5 paragraph": _peers.recall_at_5(ranked, corpus.gold[qid]),
                "recall@5 policy": _peers.policy_recall_at_5(
                    ranked, corpus.policy[qid], {i: i.split("__p")[0] for i in ranked})}
    return {"nDCG@10": ndcg_at_k(ranked, corpus.gold[qid], 10), "recall@100": recall_at_k(ranked, corpus.gold[qid],
                                                                                        TOP_DOCS)}


@dataclass
class SystemRun:
    """Per-query rankings, scores and milliseconds of one system."""

    name: str
    index_s: float = float("nan")
    versions: dict[str, str] = field(default_factory=dict)
    ms: list[float] = field(default_factory=list)
    scores: dict[str, list[float]] = field(default_factory=dict)
    min_docs: int = 10**9
    settings: dict[str, object] = field(default_factory=dict)

    def add(self, measures: dict[str, float], ranked: Sequence[str], ms: float) -> None:
        """Record one query."""
        self.ms.append(ms)
        self.min_docs = min(self.min_docs, len(ranked))
        for k, v in measures.items():
            self.scores.setdefault(k, []).append(v)

    def means(self) -> dict[str, float]:
        """Each measure's mean over the queries."""
        return {k: sum(v) / len(v) for k, v in self.scores.items()}


def run_corpus(corpus: Corpus, python: Path, quick: bool, reuse: bool, threads: int = THREADS
               ) -> dict[str, SystemRun]:
    """Index with every system, then the queries interleaved (order rotated per query)."""
    runs = {name: SystemRun(name) for name in SYSTEMS}
    slug = corpus.name.split()[0].lower() + ("-quick" if quick else "")
    root = cache_dir("peers", slug)
    principal = Principal("bench")
    _peers.progress(f"{corpus.name}: {len(corpus.docs)} documents, {len(corpus.queries)} queries")

    embedder = MiniLMEmbedder(batch_size=32, threads=threads)
    t0 = time.perf_counter()
    info = ensure_index(root, corpus.docs, embedder, rebuild=not reuse)
    runs["ragtune"].index_s = time.perf_counter() - t0 if info.rebuilt else float("nan")
    runs["ragtune"].versions = _peers.versions("ragtune", "onnxruntime", "lancedb")
    retriever = HybridRetriever(info.store, embedder, top_k=2 * CANDIDATES, lexical_k=CANDIDATES,
                                dense_k=CANDIDATES)
    runs["ragtune"].settings = {"max_tokens": info.fingerprint["max_tokens"],
                                "overlap": info.fingerprint["overlap_tokens"], "rrf_k": retriever.rrf_k,
                                "weights": f"{retriever.lexical_weight:g}/{retriever.dense_weight:g}"}
    docs_file = root / "peer_docs.jsonl"
    _peers.write_docs_jsonl(docs_file, ((d.doc_id, f"{d.title}\n{d.text}" if d.title else d.text)
                                        for d in corpus.docs))
    workers: dict[str, _peers.Worker] = {}
    try:
        for name, script in PEERS.items():  # one at a time: indexing does not share the CPU
            _peers.progress(f"  {name}: indexing")
            workers[name] = _peers.Worker(f"{name.lower()}-{slug}", script, python)
            init = workers[name].request("init", model_dir=str(minilm_model_dir()), threads=threads,
                                         candidates=CANDIDATES, top_k=TOP_DOCS)
            runs[name].versions = init["versions"]
            runs[name].index_s = float(workers[name].request("index", path=str(docs_file))["seconds"])

        def search(name: str, text: str) -> tuple[list[str], float]:
            if name == "ragtune":
                clear_embedding_cache()  # every query embedded afresh, as the peers do
                t = time.perf_counter()
                hits = retriever.retrieve(text, principal).hits
                ms = (time.perf_counter() - t) * 1000
                return doc_ranking(hits), ms
            reply = workers[name].request("search", text=text)
            return list(reply["ids"]), float(reply["ms"])

        for _, text in corpus.queries[:WARM_UP]:  # model loaded, indexes touched: timed queries are steady
            for name in SYSTEMS:
                search(name, text)
        for i, (qid, text) in enumerate(corpus.queries):
            for name in _peers.rotated(SYSTEMS, i):
                ranked, ms = search(name, text)
                runs[name].add(score(corpus, qid, ranked[:TOP_DOCS]), ranked, ms)
            if (i + 1) % 50 == 0:
                _peers.progress(f"  {i + 1}/{len(corpus.queries)} queries")
    finally:
        for w in workers.values():
            w.close()
    return runs


def report(corpus: Corpus, runs: dict[str, SystemRun], docs_path: Path | None, threads: int = THREADS) -> None:
    """Emit one BENCH line per system; write the rows when ``docs_path`` is given."""
    load = _peers.load_avg()
    base = runs["ragtune"].ms
    intro = INTRO.format(threads=threads, warm_up=WARM_UP, candidates=CANDIDATES, top=TOP_DOCS,
                         **runs["ragtune"].settings)
    for name, run in runs.items():
        lat = _peers.latency(run.ms)
        ratio = _peers.p50_ratio(run.ms, base)
        emit("peers.retrieval", system=name, corpus=corpus.name, queries=len(run.ms), documents=len(corpus.docs),
             **{k: round(v, 4) for k, v in run.means().items()}, p50_ms=round(lat["p50_ms"], 2),
             p95_ms=round(lat["p95_ms"], 2), p50_ratio=round(ratio, 3), index_s=round(run.index_s, 1),
             min_docs=run.min_docs, threads=threads, versions=run.versions, load_avg=load)
        if docs_path is None:
            continue
        m = run.means()

        def cell(key: str, pct: bool = False, m: dict[str, float] = m) -> str:
            if key not in m:
                return "–"
            return f"{100 * m[key]:.1f} %" if pct else f"{m[key]:.3f}"

        index_s = f"{run.index_s:.0f}" if run.index_s == run.index_s else "cached"
        key = f"{name}, {corpus.name}"
        write_row(
            SECTION, key,
            f"| {key} | {len(run.ms)} | {len(corpus.docs)} | {cell('nDCG@10')} | {cell('recall@100')} "
            f"| {cell('recall@5 paragraph', True)} | {cell('recall@5 policy', True)} | {lat['p50_ms']:.1f} "
            f"| {lat['p95_ms']:.1f} | {ratio:.2f} | {index_s} | {_peers.version_text(run.versions)} | {load:.1f} |",
            header=HEADER, command=command_line(), intro=intro + f" Machine: {machine()}.",
            path=docs_path,
        )


INTRO = (
    "ragtune, LlamaIndex and Haystack in one run of `benchmarks/peers_retrieval.py`: the same documents, the same "
    "packaged all-MiniLM-L6-v2 (ragtune on onnxruntime, the peers on sentence-transformers/torch, {threads} "
    "embedder threads each), the same queries, each query put to the three systems in an order rotated per "
    "query, after {warm_up} warm-up queries. ragtune: `scifact_retrieval.py`'s index and `HybridRetriever` "
    "({max_tokens}-token chunks with {overlap} overlap, title on each chunk, RRF k {rrf_k}, weights {weights}: "
    "its defaults; a document ranks at its best chunk), built fresh. LlamaIndex: `BM25Retriever` (bm25s, English "
    "stemmer and stop words) + `VectorStoreIndex` retriever, `QueryFusionRetriever(mode=\"reciprocal_rerank\", "
    "num_queries=1, use_async=False)` (its RRF constant k is 60). Haystack: `InMemoryBM25Retriever` (BM25L, the "
    "store's default) + `InMemoryEmbeddingRetriever`, `DocumentJoiner(join_mode=\"reciprocal_rank_fusion\")`. "
    "The peers index one unsplit document per item (title, newline, text: what ragtune embeds for an unsplit "
    "chunk; the embedder truncates at its window, BM25 sees it all); ragtune splits the longer ones into chunks. "
    "{candidates} candidates per side for every system, {top} documents scored. Latency: the retrieve call only "
    "(inside each peer's worker process), query embedding included; the ratio is each system's p50 over "
    "ragtune's in the same run. PolicyQA dev is searched without ACLs (every policy, each paragraph a document); "
    "its queries are the distinct (policy, question) pairs with a whole-word answer; recall@5 paragraph: the "
    "share of the question's gold paragraphs in the top 5; policy: a top-5 paragraph is from the question's "
    "policy. Index s: the whole indexing, loading the model and embedding included; load avg: the 1-minute "
    "load at the end of the corpus's run. Peers' environment: `bash benchmarks/peers/setup.sh` (versions "
    "pinned in `benchmarks/peers/requirements.txt`)."
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen corpora, print BENCH lines, record the rows."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Set up the peers first: bash benchmarks/peers/setup.sh")
    ap.add_argument("--corpus", choices=["scifact", "policyqa", "both"], default="both")
    ap.add_argument("--quick", action="store_true",
                    help="30 queries, about 300 documents: a fast check (writes no docs row)")
    ap.add_argument("--peers-venv", type=Path, default=None,
                    help="the peers' virtual environment (default $RAGTUNE_PEERS_VENV or .bench/peers-venv)")
    ap.add_argument("--reuse-index", action="store_true",
                    help="re-sync ragtune's existing index instead of rebuilding it (no index time reported)")
    ap.add_argument("--docs-file", type=Path, default=None,
                    help=f"write the rows to this file instead of {DOCS_FILE.name} (also with --quick)")
    ap.add_argument("--threads", type=int, default=THREADS,
                    help="embedder threads of every system (default 2; on a busy machine 1 is steadier)")
    ap.add_argument("--no-docs", action="store_true", help="write no docs rows")
    args = ap.parse_args(argv)
    python = _peers.peers_python(args.peers_venv)
    _peers.warn_if_busy(args.threads)
    corpora = []
    if args.corpus in ("scifact", "both"):
        corpora.append(scifact_corpus(args.quick))
    if args.corpus in ("policyqa", "both"):
        corpora.append(policyqa_corpus(data_dir() / "policyqa" / "dev.json", args.quick))
    docs_path = None if args.no_docs or (args.quick and args.docs_file is None) else (args.docs_file or DOCS_FILE)
    for corpus in corpora:
        report(corpus, run_corpus(corpus, python, args.quick, args.reuse_index, args.threads), docs_path, args.threads)
    if docs_path is None:
        print("(quick or --no-docs: docs/benchmarks.md not written)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
