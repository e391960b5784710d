"""SciFact test retrieval with a cross-encoder reranker trained on the corpus (``ragtune tune reranker``).

Protocol, all through ragtune's own code:

1. The SciFact index of ``scifact_retrieval.py`` (its ``ensure_index`` and cache ``.bench/scifact``).
2. Training pairs: ``generate_pairs`` from the indexed chunks (no labels), plus, with ``--qrels-train``, SciFact's
   train qrels through ``labelled_pairs`` (queries of the selection split below are left out of training).
3. ``train_reranker`` (what ``ragtune tune reranker`` calls) with ``--layers``, ``--max-length`` and
   ``--time-budget``; every other setting at the command's default.
4. **Selection on train queries only** (a fixed sample of SciFact train queries never trained on): every
   combination of ``rerank.candidates`` × ``rerank.fused_weight`` × ``rerank.skip_when_agree`` is scored
   (nDCG@10) through ``HybridRetriever``; reranker scores are cached per (query, chunk), so each pair is scored once.
5. SciFact **test**, once: the base hybrid and the chosen reranked configuration, nDCG@10 and recall@100
   (200 candidates per side, as in ``scifact_retrieval.py``), and p50/p95 of the default retriever (top 8) with
   and without the reranker, alternating per query so both see the same load.

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/scifact_reranker.py \\
        [--time-budget 900] [--layers 2] [--max-length 128] [--qrels-train] [--quick] [--no-docs]
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import itertools
import os
import random
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import median
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LANCE_LOG", "error")

from _common import (  # noqa: E402
    cache_dir,
    command_line,
    emit,
    load_scifact_corpus,
    load_scifact_qrels,
    load_scifact_queries,
    machine,
    percentile,
    write_row,
)
from scifact_retrieval import CANDIDATES, ensure_index, run_queries, warm  # noqa: E402

from ragtune.core import Principal  # noqa: E402
from ragtune.models.embedder import MiniLMEmbedder  # noqa: E402
from ragtune.retrieval.hybrid import HybridRetriever  # noqa: E402
from ragtune.tuning.registry import Registry  # noqa: E402
from ragtune.tuning.reranker.cli import tune_reranker  # noqa: E402
from ragtune.tuning.reranker.served import CrossEncoderReranker  # noqa: E402
from ragtune.tuning.reranker.train import train_reranker  # noqa: E402
from ragtune.tuning.retriever.pairs import PairSet  # noqa: E402
from ragtune.tuning.retriever.sources import collect_pairs  # noqa: E402

SECTION = "Cross-encoder reranker trained on the corpus (SciFact test)"
GOAL_NDCG, GOAL_P50_MS = 0.75, 150.0
THREADS = 2
SELECT_QUERIES = 200  # train queries held out of training, for choosing the serving settings
GRID = {"candidates": (10, 20, 30), "fused_weight": (0.0, 0.5, 1.0, 2.0), "skip_when_agree": (False, True)}
MODEL_NAME = "scifact-reranker"


class CachedScores:
    """The trained reranker, each (query, chunk) scored once however many configurations ask for it."""

    def __init__(self, inner: CrossEncoderReranker) -> None:
        self.inner, self.name = inner, inner.name
        self.cache: dict[tuple[str, str], float] = {}

    def warm_up(self) -> None:
        """Open the ONNX session."""
        self.inner.warm_up()

    def rerank(self, query: str, candidates: Sequence[tuple[str, str]]) -> list[tuple[str, float]]:
        """Score what is not cached yet, then order as the served reranker does."""
        todo = [(cid, text) for cid, text in candidates if (query, cid) not in self.cache]
        if todo:
            for (cid, _), s in zip(todo, self.inner.score(query, [t for _, t in todo]), strict=True):
                self.cache[(query, cid)] = float(s)
        order = sorted(range(len(candidates)), key=lambda i: (-self.cache[(query, candidates[i][0])], i))
        return [(candidates[i][0], self.cache[(query, candidates[i][0])]) for i in order]


def cli_defaults() -> dict[str, Any]:
    """The defaults of `ragtune tune reranker`, read from the command itself."""
    return {k: p.default for k, p in inspect.signature(tune_reranker).parameters.items()}


def progress(phase: str, done: int, total: int, extra: dict[str, float] | None = None) -> None:
    """A progress line every 50 steps."""
    if done == total or done % 50 == 0:
        figures = "".join(f", {k} {v:.4f}" for k, v in (extra or {}).items())
        print(f"  {phase}: {done}/{total}{figures}", file=sys.stderr, flush=True)


def training_pairs(store: Any, embedder: MiniLMEmbedder, qrels_train: bool, held: set[str], max_pairs: int,
                   seed: int) -> PairSet:
    """What ``tune reranker`` assembles: corpus pairs, plus (when asked) the train qrels without the selection
    queries, through ``collect_pairs`` (labelled pairs first under ``max_pairs``)."""
    if not qrels_train:
        return collect_pairs(store, embedder, max_pairs=max_pairs, seed=seed, progress=progress)
    import json
    import tempfile

    data = Path(os.environ.get("RAGTUNE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    with tempfile.TemporaryDirectory() as tmp:
        lines = (data / "scifact" / "qrels" / "train.tsv").read_text(encoding="utf-8").splitlines()
        kept = [lines[0]] + [r for r in lines[1:] if r.split("\t")[0] not in held]
        (Path(tmp) / "qrels.tsv").write_text("\n".join(kept) + "\n", encoding="utf-8")
        queries = Path(tmp) / "queries.jsonl"
        queries.write_text("".join(json.dumps({"_id": q, "text": t}) + "\n"
                                   for q, t in load_scifact_queries().items() if q not in held), encoding="utf-8")
        return collect_pairs(store, embedder, queries=queries, qrels=Path(tmp) / "qrels.tsv", max_pairs=max_pairs,
                             seed=seed, progress=progress)


def main(argv: Sequence[str] | None = None) -> int:
    """Train, choose the serving settings on train queries, score test once, record."""
    defaults = cli_defaults()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-budget", type=float, default=900.0, help="training seconds")
    ap.add_argument("--layers", type=int, default=defaults["layers"])
    ap.add_argument("--max-length", type=int, default=defaults["max_length"])
    ap.add_argument("--qrels-train", action="store_true", help="add SciFact's train qrels to the training pairs")
    ap.add_argument("--reuse", type=int, default=None, metavar="VERSION",
                    help="score an already trained version of the benchmark's model instead of training (its "
                         "training figures come from its card; the pairs are not regenerated)")
    ap.add_argument("--quick", action="store_true", help="check the script: 60 s budget, 40 queries, no docs")
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args(argv)
    budget = 60.0 if args.quick else args.time_budget
    corpus, queries = load_scifact_corpus(), load_scifact_queries()
    qrels = {split: load_scifact_qrels(split) for split in ("test", "train")}
    embedder = MiniLMEmbedder(batch_size=32, threads=THREADS)
    info = ensure_index(cache_dir("scifact"), corpus, embedder)
    principal = Principal("bench")
    train_ids = sorted(qrels["train"])
    random.Random(0).shuffle(train_ids)
    select = train_ids[: 40 if args.quick else SELECT_QUERIES]
    test = [(q, queries[q]) for q in sorted(qrels["test"], key=lambda q: (len(q), q))]
    if args.quick:
        test = test[:40]

    registry = Registry(cache_dir("scifact_reranker", "models"))
    if args.reuse is not None:
        card = registry.card(MODEL_NAME, args.reuse)
        pair_counts, pairs_s, train_s, peak_mb = card.notes["pairs"], None, None, None
    else:
        t0 = time.perf_counter()
        pairs = training_pairs(info.store, embedder, args.qrels_train, set(select),
                               500 if args.quick else defaults["max_pairs"], defaults["seed"])
        pairs_s = time.perf_counter() - t0

        def base_score(query: str, texts: list[str]) -> Any:
            v = embedder.embed([query, *texts])
            return v[1:] @ v[0]

        t0 = time.perf_counter()
        trained = train_reranker(
            registry, MODEL_NAME, pairs, base_score=base_score, layers=args.layers, max_length=args.max_length,
            group_size=defaults["group_size"], epochs=defaults["epochs"], learning_rate=defaults["learning_rate"],
            time_budget=budget, threads=THREADS, seed=defaults["seed"], holdout=defaults["holdout"],
            data_source=f"SciFact index ({info.chunks} chunks)", progress=progress)
        train_s = time.perf_counter() - t0
        card, pair_counts = trained.card, pairs.counts
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    m = card.metrics
    served = CrossEncoderReranker(registry.root, f"registry:{MODEL_NAME}@{card.version}", threads=THREADS)
    cached = CachedScores(served)

    def retriever(top_k: int, **rerank: Any) -> HybridRetriever:
        on = bool(rerank)
        return HybridRetriever(info.store, embedder, top_k=top_k, lexical_k=CANDIDATES, dense_k=CANDIDATES,
                               reranker=cached if on else None,
                               rerank_candidates=rerank.get("candidates", 20),
                               rerank_fused_weight=rerank.get("fused_weight", 0.0),
                               rerank_skip_when_agree=rerank.get("skip_when_agree", False))

    # Selection on train queries never trained on.
    sel = [(q, queries[q]) for q in select]
    base_sel = run_queries("base", retriever(2 * CANDIDATES), sel, qrels["train"], principal).summary()
    grid = []
    for cand, fw, skip in itertools.product(*GRID.values()):
        s = run_queries("rr", retriever(2 * CANDIDATES, candidates=cand, fused_weight=fw, skip_when_agree=skip),
                        sel, qrels["train"], principal).summary()
        grid.append({"candidates": cand, "fused_weight": fw, "skip_when_agree": skip, "ndcg@10": s["ndcg@10"]})
    # best nDCG@10; among ties within 0.002 the fewest candidates (the cheapest), then skipping
    top = max(g["ndcg@10"] for g in grid)
    chosen = min((g for g in grid if g["ndcg@10"] >= top - 0.002),
                 key=lambda g: (g["candidates"], not g["skip_when_agree"], -g["ndcg@10"]))
    emit("scifact_reranker.selection", base_ndcg10=base_sel["ndcg@10"], grid=grid, chosen=chosen)
    setting = {k: chosen[k] for k in GRID}

    # Test, once.
    base = run_queries("base", retriever(2 * CANDIDATES), test, qrels["test"], principal).summary()
    rr = run_queries("reranked", retriever(2 * CANDIDATES, **setting), test, qrels["test"], principal).summary()
    reranked = HybridRetriever(info.store, embedder, reranker=served,
                                                   rerank_candidates=setting["candidates"],
                                                   rerank_fused_weight=setting["fused_weight"],
                                                   rerank_skip_when_agree=setting["skip_when_agree"])
    plain = HybridRetriever(info.store, embedder)
    warm(plain, principal, [t for _, t in test[:5]])
    warm(reranked, principal, [t for _, t in test[:5]])
    lat: dict[str, list[float]] = {"plain": [], "reranked": []}
    skipped = 0
    for i, (_, text) in enumerate(test):
        for name in ("plain", "reranked") if i % 2 == 0 else ("reranked", "plain"):
            t = time.perf_counter()
            r = (plain if name == "plain" else reranked).retrieve(text, principal)
            lat[name].append((time.perf_counter() - t) * 1000)
            if name == "reranked":
                skipped += all(h.rerank_score is None for h in r.hits)
    result = {
        "model": f"{MODEL_NAME}@{card.version}", "layers": card.params["layers"],
        "max_length": card.params["max_length"], "qrels_train": "labelled_pairs" in pair_counts, "pairs": pair_counts,
        "pair_generation_s": None if pairs_s is None else round(pairs_s, 1),
        "train_wall_s": None if train_s is None else round(train_s, 1), "train_steps_s": m["train_seconds"],
        "steps": m["steps"], "planned_steps": m["planned_steps"], "stopped": card.notes["stopped"],
        "peak_rss_mb": None if peak_mb is None else round(peak_mb), "heldout_mrr_base": m["heldout_mrr_base"],
        "heldout_mrr_reranker": m["heldout_mrr_reranker"], "setting": setting,
        "test_base": {k: base[k] for k in ("ndcg@10", "recall@100")},
        "test_reranked": {k: rr[k] for k in ("ndcg@10", "recall@100")},
        "p50_ms": {k: round(median(v), 1) for k, v in lat.items()},
        "p95_ms": {k: round(percentile(v, 95), 1) for k, v in lat.items()},
        "skipped_share": round(skipped / len(test), 3), "load_avg": round(os.getloadavg()[0], 2),
    }
    emit("scifact_reranker.test", **result)
    if not (args.quick or args.no_docs):
        record(result)
    return 0


def record(r: dict[str, Any]) -> None:
    """This run's row in docs/benchmarks.md (keyed by the training data and the model size)."""
    data = "corpus + train qrels" if r["qrels_train"] else "corpus only"
    key = f"{data}, {r['layers']} layers, {r['max_length']} tok"
    s = r["setting"]
    row = (f"| {key} | {r['test_base']['ndcg@10']:.4f} / {r['test_base']['recall@100']:.4f} | "
           f"{r['test_reranked']['ndcg@10']:.4f} / {r['test_reranked']['recall@100']:.4f} | "
           f"{s['candidates']}, weight {s['fused_weight']:g}, skip {'on' if s['skip_when_agree'] else 'off'} | "
           f"{r['p50_ms']['plain']:.0f} / {r['p95_ms']['plain']:.0f} | {r['p50_ms']['reranked']:.0f} / "
           f"{r['p95_ms']['reranked']:.0f} | {r['skipped_share']:.0%} | {r['steps']}/{r['planned_steps']} steps, "
           f"{r['train_steps_s']:.0f} s of steps, peak RSS "
           f"{'not measured (--reuse)' if r['peak_rss_mb'] is None else str(r['peak_rss_mb']) + ' MB'} | "
           f"{datetime.date.today()}, {machine()} |")
    write_row(
        SECTION, key, row,
        header=["training data, model", "hybrid nDCG@10 / R@100", "reranked nDCG@10 / R@100",
                "chosen on train: candidates, fused weight, skip", "p50 / p95 ms", "reranked p50 / p95 ms",
                "skipped", "training", "run"],
        command=command_line(),
        intro=(f"Goal: nDCG@10 ≥ {GOAL_NDCG} with search p50 ≤ {GOAL_P50_MS:g} ms with the reranker. Serving "
               f"settings chosen on {SELECT_QUERIES} SciFact train queries never trained on; test scored once. "
               "Latency of the default retriever (top 8), with and without the reranker, alternating per query. "
               "With `--reuse N` the model is version N trained by an earlier run of the command without it; its "
               "training figures come from its card."),
    )


if __name__ == "__main__":
    raise SystemExit(main())
