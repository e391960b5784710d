"""Choose the bi-encoder adaptation and the fusion weights on a dev split of SciFact **train** (never on test).

SciFact's 809 train queries are split once (seeded): ``--dev`` of them (default 200) are held out as a dev set,
the others are the fit set. For each candidate training setting:

1. labelled pairs from the fit queries only (``collect_pairs``, what ``ragtune tune retriever --queries --qrels``
   runs; with or without corpus pairs), ``train_biencoder`` with the candidate's epochs and time budget;
2. a copy of the SciFact index (``scifact_retrieval.py``'s ``.bench/scifact``) re-embedded with the model
   (``reembed_index``, what ``ragtune reindex`` runs);
3. dev hybrid nDCG@10 for every fusion setting of the grid (RRF k × dense weight), and dense-only nDCG@10.

The base embedder is scored on dev on the same grid. The best (candidate, fusion) by dev hybrid nDCG@10 is
then scored once on test (the model trained on the fit queries), beside the base embedder in the same run.
Rows go to docs/benchmarks.md ("Choosing the adaptation on a SciFact train dev split" and the next section).

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/scifact_dev_select.py [--dev 200] [--only NAME]
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LANCE_LOG", "error")

from _common import (  # noqa: E402
    cache_dir,
    clear_embedding_cache,
    command_line,
    emit,
    load_scifact_corpus,
    load_scifact_qrels,
    load_scifact_queries,
    machine,
    scifact_dir,
    write_row,
)
from retriever_adaptation import THREADS, Progress, cli_defaults, copy_index  # noqa: E402
from scifact_retrieval import CANDIDATES, ensure_index, run_queries  # noqa: E402

from ragtune.core import Principal  # noqa: E402
from ragtune.index_reembed import reembed_index  # noqa: E402
from ragtune.models.embedder import Embedder, MiniLMEmbedder  # noqa: E402
from ragtune.retrieval.hybrid import HybridRetriever  # noqa: E402
from ragtune.store.lance import LanceStore  # noqa: E402
from ragtune.tuning.registry import Registry  # noqa: E402
from ragtune.tuning.retriever.biencoder import train_biencoder  # noqa: E402
from ragtune.tuning.retriever.sources import collect_pairs  # noqa: E402
from ragtune.tuning.retriever.tuned import TunedEmbedder  # noqa: E402

SECTION = "Choosing the adaptation on a SciFact train dev split"
TEST_SECTION = "The adaptation chosen on the dev split, on SciFact test"
# name -> (corpus pairs fill --max-pairs, epochs, learning rate; None: the CLI's). A fixed number of steps, not a
# time budget, so what each candidate learns does not depend on the machine's load; 0.55 epoch of the default
# pairs is the 85 steps the recorded default run (`retriever_adaptation.py --qrels-train --time-budget 600`)
# reached.
CANDIDATES_TRAIN: dict[str, tuple[bool, float, float | None]] = {
    "labels + corpus pairs (the CLI default), 0.55 epoch": (True, 0.55, None),
    "labels only, 3 epochs": (False, 3.0, None),
    "labels only, 5 epochs": (False, 5.0, None),
    "labels only, 3 epochs, lr 6e-5": (False, 3.0, 6e-5),
}
RRF_KS = (20, 60)
DENSE_WEIGHTS = (1.0, 1.5, 2.0)


def split_train(qrels: dict[str, dict[str, int]], dev: int, seed: int) -> tuple[list[str], list[str]]:
    """(fit query ids, dev query ids): a seeded shuffle of the judged train queries."""
    ids = sorted(qrels, key=lambda q: (len(q), q))
    random.Random(seed).shuffle(ids)
    return sorted(ids[dev:]), sorted(ids[:dev])


def write_qrels(path: Path, qrels: dict[str, dict[str, int]], keep: Sequence[str]) -> Path:
    """A BEIR qrels TSV holding only the ``keep`` queries."""
    lines = ["query-id\tcorpus-id\tscore"]
    lines += [f"{q}\t{d}\t{s}" for q in keep for d, s in sorted(qrels[q].items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def dev_grid(store: LanceStore, embedder: Embedder, dev: list[tuple[str, str]],
             qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """Dev nDCG@10: hybrid for each (RRF k, dense weight) of the grid, and dense only."""
    principal = Principal("bench")
    out: dict[str, float] = {}
    for rrf_k in RRF_KS:
        for weight in DENSE_WEIGHTS:
            retriever = HybridRetriever(store, embedder, top_k=2 * CANDIDATES, lexical_k=CANDIDATES,
                                        dense_k=CANDIDATES, rrf_k=rrf_k, dense_weight=weight)
            out[f"k{rrf_k}/w{weight:g}"] = run_queries("dev", retriever, dev, qrels, principal).summary()["ndcg@10"]
    dense = HybridRetriever(store, embedder, top_k=CANDIDATES, lexical_k=CANDIDATES, dense_k=CANDIDATES,
                            lexical_weight=0.0, dense_weight=1.0)
    out["dense"] = run_queries("dev", dense, dev, qrels, principal).summary()["ndcg@10"]
    clear_embedding_cache()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Score the base and each candidate on the dev split; record the grid; print the best."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dev", type=int, default=200, help="train queries held out as the dev set")
    ap.add_argument("--seed", type=int, default=0, help="seed of the fit/dev split and of training")
    ap.add_argument("--only", action="append", default=None, help="candidate name(s) to run (default: all)")
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args(argv)
    defaults = cli_defaults()
    queries = load_scifact_queries()
    train_qrels = load_scifact_qrels("train")
    fit_ids, dev_ids = split_train(train_qrels, args.dev, args.seed)
    dev = [(q, queries[q]) for q in dev_ids]
    work = cache_dir("scifact_dev_select")
    qrels_path = write_qrels(work / "fit.tsv", train_qrels, fit_ids)
    base_root = cache_dir("scifact")
    base_embedder = MiniLMEmbedder(batch_size=32, threads=THREADS)
    info = ensure_index(base_root, load_scifact_corpus(), base_embedder)
    results: dict[str, dict[str, Any]] = {"base all-MiniLM-L6-v2": {"grid": dev_grid(info.store, base_embedder,
                                                                                    dev, train_qrels)}}
    emit("scifact_dev_select.base", **results["base all-MiniLM-L6-v2"])
    registry = Registry(work / "models")
    progress = Progress()
    indexes: dict[str, tuple[LanceStore, Embedder]] = {"base all-MiniLM-L6-v2": (info.store, base_embedder)}
    for c, (name, (corpus_pairs, epochs, lr)) in enumerate(CANDIDATES_TRAIN.items()):
        if args.only and name not in args.only:
            continue
        pairs = collect_pairs(info.store, base_embedder, queries=scifact_dir() / "queries.jsonl", qrels=qrels_path,
                              corpus_pairs=corpus_pairs, max_pairs=defaults["max_pairs"], seed=args.seed,
                              progress=progress)
        t0 = time.perf_counter()
        trained = train_biencoder(
            registry, "dev-select", pairs, epochs=epochs, batch_size=defaults["batch_size"],
            learning_rate=lr or defaults["learning_rate"], threads=THREADS, seed=args.seed,
            holdout=defaults["holdout"], data_source=f"SciFact fit split ({len(fit_ids)} train queries)",
            base_fingerprint=base_embedder.fingerprint, progress=progress)
        train_s = time.perf_counter() - t0
        m = trained.card.metrics
        index_dir = work / f"index-{c}"
        copy_index(base_root / "index", index_dir)
        tuned = TunedEmbedder(work / "models", f"registry:dev-select@{trained.card.version}", batch_size=32,
                              threads=THREADS)
        store = LanceStore(index_dir)
        reembed_index(store, tuned, tuned.spec, index_dir / ".reembed", batch_size=defaults["reindex_batch_size"],
                      progress=lambda phase, done, total: progress(f"reindex {phase}", done, total))
        results[name] = {"grid": dev_grid(store, tuned, dev, train_qrels), "pairs": m["train_pairs"],
                         "steps": f"{m['steps']} of {m['planned_steps']}", "train_s": round(train_s)}
        emit("scifact_dev_select.candidate", candidate=name, **results[name])
        indexes[name] = (store, tuned)
    best = max(((n, f, v) for n, r in results.items() for f, v in r["grid"].items() if f != "dense"),
               key=lambda t: t[2])
    emit("scifact_dev_select.best", candidate=best[0], fusion=best[1], dev_ndcg10=round(best[2], 4))
    test = on_test(indexes, best, queries)
    if not args.no_docs:
        record(results, len(fit_ids), len(dev_ids), best, test)
    return 0


def on_test(indexes: dict[str, tuple[LanceStore, Embedder]], best: tuple[str, str, float],
            queries: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The choice scored once on SciFact test (hybrid nDCG@10, recall@100, default-retriever p50/p95), beside the
    base embedder with the default fusion, in the same run."""
    qrels = load_scifact_qrels("test")
    test = [(q, queries[q]) for q in sorted(qrels, key=lambda q: (len(q), q))]
    principal = Principal("bench")
    rrf_k, weight = (float(x[1:]) for x in best[1].split("/"))
    out: dict[str, dict[str, Any]] = {}
    runs: list[tuple[str, str, dict[str, Any]]] = [
        ("base all-MiniLM-L6-v2, default fusion", "base all-MiniLM-L6-v2", {}),
        (f"{best[0]}, fusion {best[1]}", best[0], {"rrf_k": int(rrf_k), "dense_weight": weight})]
    for label, name, fusion in runs:
        store, embedder = indexes[name]
        hybrid = HybridRetriever(store, embedder, top_k=2 * CANDIDATES, lexical_k=CANDIDATES, dense_k=CANDIDATES,
                                 **fusion)
        s = run_queries("test", hybrid, test, qrels, principal).summary()
        clear_embedding_cache()
        default = HybridRetriever(store, embedder, **fusion)
        for _, text in test[:5]:
            default.retrieve(text, principal)
        lat = run_queries("latency", default, test, {}, principal).summary()
        clear_embedding_cache()
        out[label] = {"ndcg@10": s["ndcg@10"], "recall@100": s["recall@100"], "p50_ms": lat["p50_ms"],
                      "p95_ms": lat["p95_ms"], "load_avg": round(os.getloadavg()[0], 2)}
        emit("scifact_dev_select.test", configuration=label, **out[label])
    return out


def record(results: dict[str, dict[str, Any]], fit: int, dev: int, best: tuple[str, str, float],
           test: dict[str, dict[str, Any]]) -> None:
    """One row per model: its dev nDCG@10 over the fusion grid; then the choice on test."""
    grid = [f"k{k}/w{w:g}" for k in RRF_KS for w in DENSE_WEIGHTS]
    intro = (
        f"SciFact train split once (seed 0) into a fit set ({fit} queries) and a dev set ({dev} queries); test is "
        "never used here. Each candidate trains a bi-encoder on the fit queries' labelled pairs (`collect_pairs` + "
        "`train_biencoder`, batch 32, lr 3e-5 unless the row says otherwise, 2 threads), re-embeds a copy of "
        "the SciFact index, and is scored "
        "on dev: hybrid nDCG@10 for each RRF k and dense weight (lexical weight 1; `k20/w1` is the default "
        f"fusion), and dense only. Best on dev: **{best[0]}, {best[1]} ({best[2]:.4f})**, reported once on test "
        f"in the next section. Machine: {machine()}."
    )
    header = ["model", *[f"hybrid {g}" for g in grid], "dense", "training pairs", "steps", "train s", "measured"]
    today = datetime.date.today().isoformat()
    for name, r in results.items():
        cells = [f"{r['grid'][g]:.4f}" for g in grid] + [f"{r['grid']['dense']:.4f}"]
        cells += [str(r.get("pairs", "–")), str(r.get("steps", "–")), str(r.get("train_s", "–"))]
        write_row(SECTION, name, f"| {name} | {' | '.join(cells)} | {today} |", header=header,
                  command=command_line(), intro=intro)
    test_intro = (f"The choice of the section above (trained on the {fit} fit queries only), scored once on SciFact "
                  "test (300 queries) beside the base embedder, in the same run: hybrid with 200 candidates per side; "
                  "p50/p95 of the default retriever (top 8) with that fusion. Goal (issue 17): nDCG@10 ≥ 0.75 with "
                  f"p50 ≤ 30 ms. Machine: {machine()}.")
    for label, r in test.items():
        write_row(TEST_SECTION, label,
                  f"| {label} | {r['ndcg@10']:.4f} | {r['recall@100']:.4f} | {r['p50_ms']:.1f} / {r['p95_ms']:.1f} | "
                  f"{r['load_avg']} | {today} |",
                  header=["configuration", "test nDCG@10", "test recall@100", "p50 / p95 ms", "load", "measured"],
                  command=command_line(), intro=test_intro)


if __name__ == "__main__":
    raise SystemExit(main())
