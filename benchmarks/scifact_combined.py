"""SciFact test: the bi-encoder adapted with the train qrels *and* the trained reranker, together.

Issue 17 asks for each adaptation with and without the reranker. ``retriever_adaptation.py --qrels-train``
measured the adapted bi-encoder alone and ``scifact_reranker.py --qrels-train`` the reranker over the base index;
this script serves both at once, reusing what those two runs left (no training here):

- the index they re-embedded with the newest ``scifact-adapted-qrels`` model (``.bench/retriever_adaptation/
  adapted-qrels/index``, searched with that model through ``TunedEmbedder``);
- the newest ``scifact-reranker`` version (``.bench/scifact_reranker/models``), with ``rerank`` settings at
  their defaults (10 candidates, fused weight 1, skip when BM25 and dense agree: what ``scifact_reranker.py``
  chose on held-out train queries).

Quality (nDCG@10, recall@100; 200 candidates per side) through ``HybridRetriever`` with and without the
reranker, and p50/p95 of the default retriever (top 8) for both, alternating per query.

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/scifact_combined.py [--no-docs]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LANCE_LOG", "error")

from _common import (  # noqa: E402
    cache_dir,
    command_line,
    emit,
    load_scifact_qrels,
    load_scifact_queries,
    machine,
    percentile,
    write_row,
)
from retriever_adaptation import MODEL_NAME_QRELS, THREADS  # noqa: E402
from scifact_reranker import MODEL_NAME as RERANKER  # noqa: E402
from scifact_retrieval import CANDIDATES, run_queries, warm  # noqa: E402

from ragtune.config import RerankSettings  # noqa: E402
from ragtune.core import Principal  # noqa: E402
from ragtune.retrieval.hybrid import HybridRetriever  # noqa: E402
from ragtune.store.lance import LanceStore  # noqa: E402
from ragtune.tuning.registry import Registry  # noqa: E402
from ragtune.tuning.reranker.served import CrossEncoderReranker  # noqa: E402
from ragtune.tuning.retriever.tuned import TunedEmbedder  # noqa: E402

SECTION = "Adapted bi-encoder and reranker together (SciFact test)"


def main(argv: Sequence[str] | None = None) -> int:
    """Score the adapted index with and without the reranker, time both, record."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args(argv)
    work = cache_dir("retriever_adaptation")
    index = work / "adapted-qrels" / "index"
    if not index.is_dir():
        raise SystemExit(f"{index}: run benchmarks/retriever_adaptation.py --qrels-train first")
    models = cache_dir("scifact_reranker", "models")
    if not Registry(models).versions(RERANKER):
        raise SystemExit(f"{models}: run benchmarks/scifact_reranker.py --qrels-train first")
    embedder_version = Registry(work / "models").resolve(MODEL_NAME_QRELS)
    reranker_version = Registry(models).resolve(RERANKER)
    embedder = TunedEmbedder(work / "models", f"registry:{MODEL_NAME_QRELS}@{embedder_version}", batch_size=32,
                             threads=THREADS)
    store = LanceStore(index)
    served = CrossEncoderReranker(models, f"registry:{RERANKER}@{reranker_version}", threads=THREADS)
    d = RerankSettings()
    rerank = {"reranker": served, "rerank_candidates": d.candidates, "rerank_fused_weight": d.fused_weight,
              "rerank_skip_when_agree": d.skip_when_agree}
    queries, qrels = load_scifact_queries(), load_scifact_qrels("test")
    test = [(q, queries[q]) for q in sorted(qrels, key=lambda q: (len(q), q))]
    principal = Principal("bench")
    deep = {"top_k": 2 * CANDIDATES, "lexical_k": CANDIDATES, "dense_k": CANDIDATES}
    plain_q = run_queries("adapted", HybridRetriever(store, embedder, **deep), test, qrels, principal).summary()
    rr_q = run_queries("adapted+rr", HybridRetriever(store, embedder, **deep, **rerank), test, qrels,
                       principal).summary()
    plain, reranked = HybridRetriever(store, embedder), HybridRetriever(store, embedder, **rerank)
    warm(plain, principal, [t for _, t in test[:5]])
    warm(reranked, principal, [t for _, t in test[:5]])
    lat: dict[str, list[float]] = {"plain": [], "reranked": []}
    for i, (_, text) in enumerate(test):
        for name in ("plain", "reranked") if i % 2 == 0 else ("reranked", "plain"):
            t = time.perf_counter()
            (plain if name == "plain" else reranked).retrieve(text, principal)
            lat[name].append((time.perf_counter() - t) * 1000)
    result = {"embedder": f"{MODEL_NAME_QRELS}@{embedder_version}", "reranker": f"{RERANKER}@{reranker_version}",
              "adapted": {k: plain_q[k] for k in ("ndcg@10", "recall@100")},
              "adapted_reranked": {k: rr_q[k] for k in ("ndcg@10", "recall@100")},
              "p50_ms": {k: round(median(v), 1) for k, v in lat.items()},
              "p95_ms": {k: round(percentile(v, 95), 1) for k, v in lat.items()},
              "load_avg": round(os.getloadavg()[0], 2)}
    emit("scifact_combined", **result)
    if not args.no_docs:
        header = ["configuration", "nDCG@10", "recall@100", "search p50 / p95 ms"]
        intro = (f"SciFact test (300 queries). Embedder `{result['embedder']}` (trained on the 809 train qrels + "
                 f"corpus pairs, its re-embedded index), reranker `{result['reranker']}` with the rerank defaults "
                 f"(10 candidates, fused weight 1, skip when BM25 and dense agree). No training in this run; "
                 f"latency of the default retriever (top 8), alternating per query, load {result['load_avg']}. "
                 f"Goal (issue 17): nDCG@10 ≥ 0.75, p50 ≤ 150 ms with the reranker. Machine: {machine()}.")
        for key, q, name in (("adapted bi-encoder", result["adapted"], "plain"),
                             ("adapted bi-encoder + reranker", result["adapted_reranked"], "reranked")):
            write_row(SECTION, key, f"| {key} | {q['ndcg@10']:.4f} | {q['recall@100']:.4f} | "
                      f"{result['p50_ms'][name]:.0f} / {result['p95_ms'][name]:.0f} |", header=header,
                      command=command_line(), intro=intro)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
