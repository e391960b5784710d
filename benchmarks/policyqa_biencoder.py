"""PolicyQA dev, the copilot setting: recall@5 with a bi-encoder adapted on other policies' questions.

The same protocol as ``policyqa_reranker.py`` (its folds, questions files and hit rule), with the embedder
adapted instead of (and then beside) the reranker:

1. The copilot project of ``compliance_copilot.py`` (cache ``.bench/copilot``): one Markdown document per dev
   policy, readable only by that website's group.
2. Five folds by policy (the reranker benchmark's): fold *i* tests policies *i*, *i*+5, *i*+10, *i*+15.
3. For each fold, the questions of the other 16 policies become labelled pairs with their answer texts
   (``collect_pairs(..., corpus_pairs=False)``, what ``ragtune tune retriever --queries FILE --no-corpus-pairs``
   runs): the positive is the chunk holding the answer, the negatives the same policy's other passages. Every
   training batch holds one ACL (one policy), so the in-batch negatives are that policy's passages too.
   ``train_biencoder`` with the command's defaults except ``--epochs``.
4. A copy of the project's index is re-embedded with the fold's model (``reembed_index``, what ``ragtune
   reindex`` runs); each test question is searched as its website's user, top 5, with the project's retrieval
   settings: base hybrid, adapted hybrid, and (when ``policyqa_reranker.py`` trained the fold's reranker) the
   adapted hybrid with that reranker at the rerank defaults. A hit: a top-5 chunk holds a gold span.

Nothing of a fold's test policies is trained on or chosen on.

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/policyqa_biencoder.py [--epochs 1] [--reuse] [--quick]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
os.environ.setdefault("LANCE_LOG", "error")

from _common import cache_dir, command_line, data_dir, emit, machine, median, write_row  # noqa: E402
from build_demo_corpus import load_policies  # noqa: E402
from compliance_copilot import build_project  # noqa: E402
from policyqa_reranker import FOLDS, GOAL, fold_pairs, found, progress  # noqa: E402
from retriever_adaptation import cli_defaults, copy_index  # noqa: E402
from scifact_reranker import CachedScores  # noqa: E402

from ragtune.index_reembed import reembed_index  # noqa: E402
from ragtune.models.embedder import Embedder  # noqa: E402
from ragtune.project import Project  # noqa: E402
from ragtune.retrieval.hybrid import HybridRetriever  # noqa: E402
from ragtune.store.base import Store  # noqa: E402
from ragtune.store.lance import LanceStore  # noqa: E402
from ragtune.tuning.registry import Registry  # noqa: E402
from ragtune.tuning.reranker.served import CrossEncoderReranker  # noqa: E402
from ragtune.tuning.retriever.biencoder import train_biencoder  # noqa: E402
from ragtune.tuning.retriever.tuned import TunedEmbedder  # noqa: E402

SECTION = "Bi-encoder adapted on other policies (PolicyQA dev, copilot setting)"


def retriever(project: Project, store: Store, embedder: Embedder, reranker: Any = None) -> HybridRetriever:
    """The project's retrieval settings over ``store`` / ``embedder``; ``reranker`` at the rerank defaults."""
    r, rr = project.settings.retrieval, project.settings.rerank
    return HybridRetriever(store, embedder, top_k=5, lexical_k=r.lexical_k, dense_k=r.dense_k, rrf_k=r.rrf_k,
                           lexical_weight=r.lexical_weight, dense_weight=r.dense_weight,
                           lexical_isolation=r.lexical_isolation, reranker=reranker,
                           rerank_candidates=rr.candidates if reranker else 50,
                           rerank_fused_weight=rr.fused_weight, rerank_skip_when_agree=rr.skip_when_agree)


def main(argv: Sequence[str] | None = None) -> int:
    """Train one bi-encoder per fold, re-embed, score its test policies, record."""
    defaults = cli_defaults()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=float, default=1.0, help="training epochs over each fold's pairs")
    ap.add_argument("--time-budget", type=float, default=None,
                    help="seconds of training steps per fold (`tune retriever --time-budget`; default: none)")
    ap.add_argument("--reuse", action="store_true", help="score each fold's newest trained model (no training)")
    ap.add_argument("--quick", action="store_true", help="check the script: 1 fold, 3 steps, 60 questions")
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args(argv)
    root = cache_dir("copilot")
    policies = sorted(load_policies(data_dir() / "policyqa" / "dev.json"), key=lambda p: p.website)
    project = build_project(root, policies)
    registry = Registry(project.settings.models_dir)
    threads = project.settings.embedder.threads
    work = cache_dir("policyqa_biencoder")
    folds = [policies[i::FOLDS] for i in range(FOLDS)]
    totals = {"base": 0, "adapted": 0, "both": 0, "questions": 0, "both_questions": 0}
    per_fold: list[dict[str, Any]] = []
    for i, test in enumerate(folds[:1] if args.quick else folds):
        train = [p for p in policies if p not in test]
        name = f"policyqa-biencoder-fold{i}"
        pairs = fold_pairs(project, train, defaults["max_pairs"], defaults["seed"])
        if args.reuse and registry.versions(name):
            card = registry.card(name)
        else:
            card = train_biencoder(
                registry, name, pairs, epochs=0.03 if args.quick else args.epochs, batch_size=defaults["batch_size"],
                learning_rate=defaults["learning_rate"], threads=threads, seed=defaults["seed"],
                time_budget=args.time_budget, holdout=defaults["holdout"],
                data_source=f"PolicyQA dev questions of {len(train)} policies",
                base_fingerprint=project.embedder.fingerprint, progress=progress).card
        tuned = TunedEmbedder(registry.root, f"registry:{name}@{card.version}", batch_size=32, threads=threads)
        index_dir = work / "index"
        copy_index(project.settings.index_dir, index_dir)
        store = LanceStore(index_dir)
        t0 = time.perf_counter()
        reembed_index(store, tuned, tuned.spec, index_dir / ".reembed", batch_size=defaults["reindex_batch_size"])
        reindex_s = time.perf_counter() - t0
        reranker_name = f"policyqa-fold{i}"
        reranker = (CachedScores(CrossEncoderReranker(registry.root, f"registry:{reranker_name}", threads=threads))
                    if registry.versions(reranker_name) else None)
        items = [(p, q) for p in test for q in p.questions][: 60 if args.quick else None]
        runs = {"base": retriever(project, project.store, project.embedder),
                "adapted": retriever(project, store, tuned)}
        if reranker is not None:
            runs["both"] = retriever(project, store, tuned, reranker)
        hits = {k: sum(found(r, p, q.question, q.answers) for p, q in items) for k, r in runs.items()}
        m = card.metrics
        fold = {"fold": i, "test_policies": [p.website for p in test], "questions": len(items),
                **{f"recall5_{k}": round(v / len(items), 4) for k, v in hits.items()},
                "pairs": m["train_pairs"], "steps": m["steps"], "planned_steps": m["planned_steps"],
                "train_s": m["train_seconds"],
                "reindex_s": round(reindex_s, 1), "model": f"{name}@{card.version}",
                "heldout_recall_base": m["heldout_recall@10_base"],
                "heldout_recall_adapted": m["heldout_recall@10_adapted"], "load_avg": round(os.getloadavg()[0], 2)}
        emit("policyqa_biencoder.fold", **fold)
        per_fold.append(fold)
        totals["questions"] += len(items)
        for k, v in hits.items():
            totals[k] += v
        if "both" in hits:
            totals["both_questions"] += len(items)
    n = totals["questions"]
    result = {"questions": n, "recall5_base": round(totals["base"] / n, 4),
              "recall5_adapted": round(totals["adapted"] / n, 4),
              "recall5_both": round(totals["both"] / totals["both_questions"], 4) if totals["both_questions"] == n
              else None,
              "train_s_median": round(median([f["train_s"] for f in per_fold]), 1),
              "reindex_s_median": round(median([f["reindex_s"] for f in per_fold]), 1),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
              "epochs": args.epochs, "time_budget": args.time_budget}
    emit("policyqa_biencoder", **result)
    if not (args.quick or args.no_docs):
        record(result, per_fold)
    return 0


def record(r: dict[str, Any], folds: list[dict[str, Any]]) -> None:
    """One row per fold and one for all questions, in docs/benchmarks.md."""
    header = ["test policies", "questions", "recall@5 hybrid", "adapted hybrid", "adapted + fold reranker",
              "pairs, steps of planned, training s", "re-index s", "held-out recall@10 base → adapted"]
    intro = (f"PolicyQA dev, the copilot setting (each question asked by a user who may read only its policy), the "
             f"five folds of the reranker section: a bi-encoder adapted on the questions of 16 policies (labelled "
             f"pairs with their answer texts, no corpus pairs, `tune retriever` defaults, {r['epochs']:g} epoch"
             + (f", at most {r['time_budget']:g} s of training steps" if r["time_budget"] else "") + ") "
             f"re-embeds a copy of the index; the other 4 policies' questions are searched with the project's "
             f"retrieval settings. *Adapted + fold reranker*: the same, reranked by the fold's model of the section "
             f"above at the rerank defaults. Hit: a top-5 chunk holds a gold span. Goal (issue 17): recall@5 ≥ "
             f"{100 * GOAL:.0f} %. Peak RSS {r['peak_rss_mb']} MB. Machine: {machine()}.")

    def pct(x: float | None) -> str:
        return "–" if x is None else f"{100 * x:.1f} %"

    for f in folds:
        names = ", ".join(f["test_policies"])
        write_row(SECTION, names,
                  f"| {names} | {f['questions']} | {pct(f['recall5_base'])} | {pct(f['recall5_adapted'])} | "
                  f"{pct(f.get('recall5_both'))} | {f['pairs']}, {f['steps']} of {f['planned_steps']}, "
                  f"{f['train_s']:.0f} s | "
                  f"{f['reindex_s']:.0f} | {f['heldout_recall_base']:.3f} → {f['heldout_recall_adapted']:.3f} |",
                  header=header, command=command_line(), intro=intro)
    write_row(SECTION, "all 20 policies",
              f"| all 20 policies | {r['questions']} | **{pct(r['recall5_base'])}** | **{pct(r['recall5_adapted'])}**"
              f" | **{pct(r['recall5_both'])}** | median {r['train_s_median']:.0f} s per fold | "
              f"median {r['reindex_s_median']:.0f} | – |", header=header, command=command_line(), intro=intro)


if __name__ == "__main__":
    raise SystemExit(main())
