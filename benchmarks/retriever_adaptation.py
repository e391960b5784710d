"""SciFact test retrieval with the base embedder and with a bi-encoder adapted to the corpus (alone, or with labels).

Protocol, all through ragtune's own code:

1. The SciFact index of ``scifact_retrieval.py`` (its ``ensure_index``: 256-token chunks, 32 overlap, public ACL;
   by default its own cache ``.bench/scifact``, which it keeps current; ``--own-index`` builds a separate one
   under ``.bench/retriever_adaptation/base``). Only the build/sync time is measured there.
2. The base embedder is scored on SciFact **test**: hybrid nDCG@10 and recall@100 (HybridRetriever's default
   fusion, 200 candidates per side), dense-only nDCG@10, and the p50/p95 of the default HybridRetriever
   (all defaults), exactly as ``scifact_retrieval.py`` measures them. The same hybrid on **train** is reported too.
3. The model is trained with ``generate_pairs`` + ``train_biencoder`` (what ``ragtune tune retriever`` calls),
   with every setting at the command's default (read from its signature) except ``--time-budget`` and, if
   given, ``--max-pairs``. No SciFact query or qrel is used: pairs come from the indexed chunks.
   ``--qrels-train``: SciFact's ``qrels/train.tsv`` + ``queries.jsonl`` are added through ``labelled_pairs``
   (``collect_pairs``, what ``ragtune tune retriever --queries --qrels`` runs: labelled pairs first, corpus pairs
   fill ``--max-pairs``); the held-out check then holds out train queries. Test queries and qrels are never used
   in training. Its rows go to their own sections (``SECTION_QRELS``), beside a base row of the same run.
4. A copy of the index (``.bench/retriever_adaptation/adapted``) is re-embedded with ``reembed_index`` (what
   ``ragtune reindex`` calls) and scored exactly as in step 2.

Nothing is chosen on test: there is no parameter search; test is reported once per run.

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/retriever_adaptation.py \\
        [--time-budget 900] [--max-pairs N] [--quick] [--no-docs] [--own-index] [--qrels-train]
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import os
import resource
import shutil
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
from scifact_retrieval import CANDIDATES, ensure_index, run_queries, warm  # noqa: E402

from ragtune.core import Principal  # noqa: E402
from ragtune.index_reembed import reembed_index  # noqa: E402
from ragtune.models.embedder import Embedder, MiniLMEmbedder  # noqa: E402
from ragtune.retrieval.hybrid import HybridRetriever  # noqa: E402
from ragtune.store.lance import LanceStore  # noqa: E402
from ragtune.tuning.registry import Registry  # noqa: E402
from ragtune.tuning.retriever.biencoder import RECALL_K, train_biencoder  # noqa: E402
from ragtune.tuning.retriever.cli import reindex as reindex_command  # noqa: E402
from ragtune.tuning.retriever.cli import training_defaults, tune_retriever  # noqa: E402
from ragtune.tuning.retriever.pairs import PairSet, generate_pairs  # noqa: E402
from ragtune.tuning.retriever.sources import collect_pairs  # noqa: E402
from ragtune.tuning.retriever.tuned import TunedEmbedder  # noqa: E402

SECTION = "Retrieval adapted to the corpus (SciFact test)"
COST_SECTION = "Retrieval adapted to the corpus: training and re-index cost (SciFact)"
SECTION_QRELS = "Retrieval adapted with SciFact's train qrels (SciFact test)"
COST_SECTION_QRELS = "Retrieval adapted with SciFact's train qrels: training and re-index cost"
GOAL_NDCG, GOAL_P50_MS = 0.75, 30.0
THREADS = 2  # embedder.threads default: what `tune retriever` trains with and the embedder serves with
QUICK_BUDGET, QUICK_PAIRS = 60.0, 500
MODEL_NAME = "scifact-adapted"
MODEL_NAME_QRELS = "scifact-adapted-qrels"


def training_pairs(store: LanceStore, embedder: Embedder, *, qrels_train: bool, max_pairs: int, seed: int,
                   corpus_pairs: bool = True, progress: Progress | None = None) -> PairSet:
    """The training pairs: from the corpus alone (``generate_pairs``), or with ``qrels_train`` SciFact's train
    queries and qrels first and corpus pairs filling ``max_pairs`` (``collect_pairs``, as the CLI; none with
    ``corpus_pairs=False``, as ``--no-corpus-pairs``)."""
    if not qrels_train:
        return generate_pairs(store, embedder, max_pairs=max_pairs, seed=seed, progress=progress)
    return collect_pairs(store, embedder, queries=scifact_dir() / "queries.jsonl",
                         qrels=scifact_dir() / "qrels" / "train.tsv", max_pairs=max_pairs, seed=seed,
                         corpus_pairs=corpus_pairs, progress=progress)


def cli_defaults() -> dict[str, Any]:
    """The defaults of `ragtune tune retriever` and `ragtune reindex`, read from the commands themselves."""
    tune = {k: p.default for k, p in inspect.signature(tune_retriever).parameters.items()}
    reindex = {k: p.default for k, p in inspect.signature(reindex_command).parameters.items()}
    return {"max_pairs": tune["max_pairs"], "batch_size": tune["batch_size"],
            "learning_rate": tune["learning_rate"], "holdout": tune["holdout"], "seed": tune["seed"],
            "reindex_batch_size": reindex["batch_size"]}


class Progress:
    """Prints a phase's progress to stderr at most every 30 s (and when a phase starts or ends)."""

    def __init__(self, every: float = 30.0) -> None:
        self.every, self.last, self.phase = every, 0.0, ""

    def __call__(self, phase: str, done: int, total: int, extra: dict[str, float] | None = None) -> None:
        """One progress report: (phase, done, total, extra figures)."""
        now = time.monotonic()
        if phase != self.phase or done >= total or now - self.last >= self.every:
            figures = "".join(f", {k} {v:.4f}" for k, v in (extra or {}).items())
            print(f"  {phase}: {done}/{total}{figures}", file=sys.stderr, flush=True)
            self.last, self.phase = now, phase


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def score(label: str, store: LanceStore, embedder: Embedder, queries: dict[str, str],
          qrels: dict[str, dict[str, dict[str, int]]], fusion: dict[str, Any] | None = None) -> dict[str, Any]:
    """Hybrid (default fusion, or ``fusion``'s rrf_k / dense_weight; 200/side) and dense-only quality on test,
    hybrid on train, latency of the default retriever (with ``fusion``)."""
    principal = Principal("bench")
    fusion = fusion or {}
    hybrid = HybridRetriever(store, embedder, top_k=2 * CANDIDATES, lexical_k=CANDIDATES, dense_k=CANDIDATES,
                             **fusion)
    dense = HybridRetriever(store, embedder, top_k=CANDIDATES, lexical_k=CANDIDATES, dense_k=CANDIDATES,
                            lexical_weight=0.0, dense_weight=1.0)
    default = HybridRetriever(store, embedder, **fusion)

    def listed(split: str) -> list[tuple[str, str]]:
        return [(q, queries[q]) for q in sorted(qrels[split], key=lambda q: (len(q), q))]

    test, train = listed("test"), listed("train")
    warm(default, principal, [t for _, t in test[:5]])
    out: dict[str, Any] = {"fusion": f"RRF k {hybrid.rrf_k}, weights {hybrid.lexical_weight:g}/"
                                     f"{hybrid.dense_weight:g}"}
    for name, retriever, split in (("hybrid", hybrid, "test"), ("dense", dense, "test"),
                                   ("hybrid_train", hybrid, "train")):
        clear_embedding_cache()
        s = run_queries(name, retriever, test if split == "test" else train, qrels[split], principal).summary()
        out[name] = {k: s[k] for k in ("queries", "ndcg@10", "recall@100")}
    clear_embedding_cache()
    lat = run_queries("default", default, test, {}, principal).summary()
    out["latency"] = {"queries": len(test), "p50_ms": lat["p50_ms"], "p95_ms": lat["p95_ms"],
                      "stage_p50_ms": lat["stage_p50_ms"], "load_avg": round(os.getloadavg()[0], 2)}
    emit(f"retriever_adaptation.{label}", **out)
    return out


def copy_index(source: Path, target: Path) -> None:
    """A fresh copy of an index folder (the adapted one is re-embedded in place; the base stays as it is)."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".reembed", ".write.lock"))


def main(argv: Sequence[str] | None = None) -> int:
    """Build or reuse the index, score the base, train from the corpus, reindex a copy, score it, record."""
    defaults = cli_defaults()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-budget", type=float, default=None,
                    help=f"training seconds (`tune retriever --time-budget`; default 900, {QUICK_BUDGET:g} "
                         "with --quick)")
    ap.add_argument("--max-pairs", type=int, default=None,
                    help=f"training pairs (default: the CLI's {defaults['max_pairs']}; {QUICK_PAIRS} with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="check the script: tiny time budget and pair count; docs/benchmarks.md is not written")
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    ap.add_argument("--own-index", action="store_true",
                    help="build the base index under .bench/retriever_adaptation/base instead of reusing "
                         "scifact_retrieval.py's .bench/scifact (same ensure_index, same settings)")
    ap.add_argument("--qrels-train", action="store_true",
                    help="also train on SciFact's train queries + qrels/train.tsv (labelled_pairs; corpus pairs "
                         "fill --max-pairs); rows go to their own section")
    ap.add_argument("--corpus-pairs", action="store_true",
                    help="with --qrels-train: corpus pairs fill --max-pairs after the labelled ones (`tune retriever "
                         "--corpus-pairs`; the CLI's default with labels is labels only)")
    ap.add_argument("--epochs", type=float, default=None,
                    help="training epochs (default: the CLI's, 3 on labels only, 1 with corpus pairs)")
    ap.add_argument("--rrf-k", type=int, default=None,
                    help="the adapted model's fusion RRF k (chosen on train by scifact_dev_select.py)")
    ap.add_argument("--dense-weight", type=float, default=None,
                    help="the adapted model's fusion dense weight (chosen on train by scifact_dev_select.py)")
    args = ap.parse_args(argv)
    fusion = {k: v for k, v in (("rrf_k", args.rrf_k), ("dense_weight", args.dense_weight)) if v is not None}
    corpus_pairs, epochs = training_defaults(args.qrels_train, True if args.corpus_pairs else None, args.epochs)
    model_name = MODEL_NAME_QRELS if args.qrels_train else MODEL_NAME
    budget = args.time_budget if args.time_budget is not None else (QUICK_BUDGET if args.quick else 900.0)
    max_pairs = args.max_pairs if args.max_pairs is not None else (QUICK_PAIRS if args.quick
                                                                   else defaults["max_pairs"])
    started = time.monotonic()

    corpus = load_scifact_corpus()
    queries = load_scifact_queries()
    qrels = {split: load_scifact_qrels(split) for split in ("test", "train")}
    work = cache_dir("retriever_adaptation")
    base_root = cache_dir("retriever_adaptation", "base") if args.own_index else cache_dir("scifact")

    # 1. The base index (nothing measured but its build / sync time).
    base_embedder = MiniLMEmbedder(batch_size=32, threads=THREADS)
    t0 = time.perf_counter()
    info = ensure_index(base_root, corpus, base_embedder)
    build_s = time.perf_counter() - t0
    emit("retriever_adaptation.index", root=str(base_root), documents=info.documents,
         chunks=info.chunks, rebuilt=info.rebuilt, seconds=round(build_s, 1),
         chunks_embedded=info.report.chunks_embedded, **info.fingerprint)

    # 2. The base embedder.
    base = score("base", info.store, base_embedder, queries, qrels)

    # 3. Train from the corpus alone, with the command's own functions and defaults.
    progress = Progress()
    rss_before = peak_rss_mb()
    t0 = time.perf_counter()
    pairs = training_pairs(info.store, base_embedder, qrels_train=args.qrels_train, max_pairs=max_pairs,
                           seed=defaults["seed"], corpus_pairs=corpus_pairs, progress=progress)
    pairs_s = time.perf_counter() - t0
    registry = Registry(work / "models")
    t0 = time.perf_counter()
    trained = train_biencoder(
        registry, model_name, pairs, epochs=epochs, batch_size=defaults["batch_size"],
        learning_rate=defaults["learning_rate"], time_budget=budget, threads=THREADS, seed=defaults["seed"],
        holdout=defaults["holdout"],
        data_source=f"SciFact index ({info.chunks} chunks)" + (" + qrels/train.tsv" if args.qrels_train else ""),
        base_fingerprint=base_embedder.fingerprint, progress=progress)
    train_s = time.perf_counter() - t0
    card, m = trained.card, trained.card.metrics
    training = {
        "model": f"{model_name}@{card.version}", "time_budget_s": budget, "max_pairs": max_pairs,
        "pairs": pairs.counts, "pair_generation_s": round(pairs_s, 1), "train_wall_s": round(train_s, 1),
        "train_steps_s": m["train_seconds"], "steps": m["steps"], "planned_steps": m["planned_steps"],
        "stopped": card.notes["stopped"], "train_pairs": m["train_pairs"], "final_loss": round(m["final_loss"], 4),
        "heldout_queries": m["heldout_queries"],
        "heldout_recall_base": round(m[f"heldout_recall@{RECALL_K}_base"], 4),
        "heldout_recall_adapted": round(m[f"heldout_recall@{RECALL_K}_adapted"], 4),
        "peak_rss_mb_before": round(rss_before), "peak_rss_mb": round(peak_rss_mb()),
        "settings": {k: v for k, v in card.params.items()},
    }
    emit("retriever_adaptation.train", **training)

    # 4. Re-embed a copy of the index with the adapted model, then score it the same way.
    adapted_dir = work / ("adapted-qrels" if args.qrels_train else "adapted") / "index"
    copy_index(base_root / "index", adapted_dir)
    tuned = TunedEmbedder(work / "models", f"registry:{model_name}@{card.version}", batch_size=32, threads=THREADS)
    adapted_store = LanceStore(adapted_dir)
    t0 = time.perf_counter()
    report = reembed_index(adapted_store, tuned, tuned.spec, adapted_dir / ".reembed",
                           batch_size=defaults["reindex_batch_size"],
                           progress=lambda phase, done, total: progress(f"reindex {phase}", done, total))
    reindex_s = time.perf_counter() - t0
    reindex = {"chunks": report.chunks, "embedded": report.embedded, "wall_s": round(reindex_s, 1),
               "fingerprint": report.fingerprint, "runtime": tuned.runtime,
               "batch_size": defaults["reindex_batch_size"]}
    emit("retriever_adaptation.reindex", **reindex)
    adapted = score("adapted", adapted_store, tuned, queries, qrels, fusion)
    total_s = time.monotonic() - started
    goal_met = adapted["hybrid"]["ndcg@10"] >= GOAL_NDCG
    emit("retriever_adaptation.summary", base_ndcg10=base["hybrid"]["ndcg@10"],
         adapted_ndcg10=adapted["hybrid"]["ndcg@10"],
         delta_ndcg10=round(adapted["hybrid"]["ndcg@10"] - base["hybrid"]["ndcg@10"], 4),
         goal_ndcg10=GOAL_NDCG, goal_met=goal_met, total_wall_s=round(total_s, 1))

    if args.quick or args.no_docs:
        print("(--quick or --no-docs: docs/benchmarks.md not written)", file=sys.stderr)
        return 0
    variant = ", ".join(v for v in (
        "+ corpus pairs" if args.qrels_train and args.corpus_pairs else "",
        f"{epochs:g} epochs" if args.epochs is not None else "",
        f"fusion RRF k {fusion.get('rrf_k', 20)}, dense weight {fusion.get('dense_weight', 1.0):g}" if fusion else "",
    ) if v)
    record(info.chunks, base, adapted, training, reindex, base_root.name,
           train_queries=len(qrels["train"]) if args.qrels_train else None, variant=variant)
    return 0


def qrels_intro(chunks: int, base_cache: str, train_queries: int) -> str:
    """The description of the ``--qrels-train`` section."""
    return (
        "SciFact test (300 queries, `qrels/test.tsv`), measured exactly as in the section \"Retrieval adapted to "
        f"the corpus (SciFact test)\" (same index: {chunks} chunks, cache `.bench/{base_cache}`; same hybrid, "
        "dense and latency runs). The adapted model is trained on SciFact's **train** split: its "
        f"{train_queries} train queries with `qrels/train.tsv` through `labelled_pairs` (each query → the best "
        "chunk of each gold abstract, up to 4 hard negatives from the BM25 / dense top, never a gold abstract; "
        "`collect_pairs`, what `ragtune tune retriever --queries --qrels` runs), then `train_biencoder`: labels "
        "only for 3 epochs, the command's default with labelled queries since `scifact_dev_select.py` chose it "
        "on a dev split of the train queries (a row marked \"+ corpus pairs\" adds pairs generated from the corpus "
        "filling `--max-pairs`, 1 epoch, the default before). No test query or qrel is used in training "
        "or to choose anything; every setting is the command's default except the time budget, and except what a "
        "row's label names in parentheses (chosen on a dev split of the train queries by `scifact_dev_select.py`). "
        "The \"train hybrid nDCG@10\" column is then on queries trained on (a fit check, not a generalisation "
        f"figure). Goal (issue 17): test hybrid nDCG@10 ≥ {GOAL_NDCG} with search p50 ≤ {GOAL_P50_MS:.0f} ms. Machine: "
        f"{machine()}, embedder threads {THREADS}."
    )


def record(chunks: int, base: dict[str, Any], adapted: dict[str, Any], training: dict[str, Any],
           reindex: dict[str, Any], base_cache: str, train_queries: int | None = None, variant: str = "") -> None:
    """Insert or replace this benchmark's rows in docs/benchmarks.md (``train_queries``: a ``--qrels-train``
    run, written to its own sections; ``variant``: the settings that differ from the command's defaults, which
    name the adapted row and the cost rows, so a variant does not replace the default's rows)."""
    suffix = f" ({variant})" if variant else ""
    today = datetime.date.today().isoformat()
    command = command_line()
    qrels_run = train_queries is not None
    section, cost_section = (SECTION_QRELS, COST_SECTION_QRELS) if qrels_run else (SECTION, COST_SECTION)
    adapted_label = (f"adapted with the {train_queries} train qrels" if qrels_run
                     else "adapted from the corpus alone") + suffix
    intro = qrels_intro(chunks, base_cache, train_queries or 0) if qrels_run else (
        "SciFact test (300 queries, `qrels/test.tsv`), document level, through ragtune's pipeline: the index of "
        f"`scifact_retrieval.py` (256-token chunks, 32 overlap, public ACL, {chunks} chunks; cache `.bench/"
        f"{base_cache}`), searched as a plain principal. Hybrid = HybridRetriever's default fusion with {CANDIDATES} "
        "candidates per side (for recall@100); dense = dense only, same depth; p50/p95 = `retrieve()` with all "
        "HybridRetriever defaults after 5 warm-up queries. The adapted model is trained **from the corpus "
        "alone**: `generate_pairs` + `train_biencoder` (what `ragtune tune retriever` runs) on pairs made from "
        "the indexed chunks (title → abstract text, a sentence → the rest of its chunk), hard negatives mined "
        "with BM25 / dense search; no SciFact query or qrel is used in training. A copy of the index is then "
        "re-embedded with `reembed_index` (what `ragtune reindex` runs). Train-split rule: nothing is chosen on "
        "test; every training setting is the command's default except the time budget (shown), and the same "
        "hybrid on SciFact train (809 queries) is reported beside test. Goal (issue 17): test hybrid nDCG@10 ≥ "
        f"{GOAL_NDCG} with search p50 ≤ {GOAL_P50_MS:.0f} ms. Machine: {machine()}, embedder threads {THREADS}."
    )
    header = ["model", "queries", "hybrid nDCG@10", "hybrid recall@100", "dense nDCG@10", "train hybrid nDCG@10",
              "p50 ms", "p95 ms", f"goal nDCG@10 ≥ {GOAL_NDCG}", f"goal p50 ≤ {GOAL_P50_MS:.0f} ms", "notes",
              "measured"]
    notes = {"base": f"packaged all-MiniLM-L6-v2 ({base['fusion']})",
             "adapted": f"{training['model']}: {training['steps']} of {training['planned_steps']} steps "
                        f"({training['stopped']}), time budget {training['time_budget_s']:g} s, "
                        f"{training['train_pairs']} training pairs"}
    for key, label, r in (("base", "base all-MiniLM-L6-v2", base), ("adapted", adapted_label, adapted)):
        h, d, t, lat = r["hybrid"], r["dense"], r["hybrid_train"], r["latency"]
        g_ndcg = "met" if h["ndcg@10"] >= GOAL_NDCG else "NOT met"
        g_p50 = "met" if lat["p50_ms"] <= GOAL_P50_MS else "NOT met"
        write_row(section, label,
                  f"| {label} | {h['queries']} | {h['ndcg@10']:.3f} | {h['recall@100']:.3f} | {d['ndcg@10']:.3f} "
                  f"| {t['ndcg@10']:.3f} | {lat['p50_ms']:.1f} | {lat['p95_ms']:.1f} | {g_ndcg} | {g_p50} "
                  f"| {notes[key]} | {today} |",
                  header=header, command=command, intro=intro)
    made = ("making the labelled pairs from the train qrels and the corpus pairs" if qrels_run
            else "generating the pairs from the index")
    held = ("train queries never trained on (held out by query), each" if qrels_run
            else "documents never trained on, each generated")
    cost_intro = (
        f"The run above: {made} (with hard-negative mining), training "
        f"(`train_biencoder`, {THREADS} threads, CPU; includes the held-out check before and after), and "
        "re-embedding the whole index with the adapted model (`reembed_index`, ONNX when available). Peak RSS "
        "is the whole benchmark process's `ru_maxrss` when training ended (it also holds the index and the "
        f"base ONNX model). Held-out recall@10: the card's check on {held} query ranked against every held-out "
        f"positive. Machine: {machine()}."
    )
    p = training["pairs"]
    corpus_n = p.get("corpus_pairs", p.get("pairs", 0))  # a --qrels-train run counts both sources
    rows = []
    if qrels_run:
        rows.append(("labelled pairs (train qrels)", f"{p.get('labelled_pairs', 0)}",
                     f"from {p.get('labelled_queries', 0)} judged train queries; hard negatives "
                     f"{p.get('labelled_negatives_bm25', 0)} BM25, {p.get('labelled_negatives_dense', 0)} dense "
                     f"(+{p.get('labelled_extra_negatives', 0)} more), {p.get('labelled_without_negative', 0)} "
                     f"none; {p.get('gold_not_indexed', 0)} gold not indexed, {p.get('gold_unreadable', 0)} "
                     f"unreadable; {p.get('labels_capped', 0)} over --max-pairs"))
    rows += [
        ("pairs from the corpus", f"{corpus_n} ({p.get('heading_pairs', 0)} title/heading, "
         f"{p.get('sentence_pairs', 0)} sentence)", f"from {p.get('chunks', 0)} chunks; hard negatives "
         f"{p.get('negatives_bm25', 0)} BM25, {p.get('negatives_dense', 0)} dense, {p.get('without_negative', 0)} "
         f"none; {p.get('capped', 0)} over --max-pairs {training['max_pairs']}; {training['pair_generation_s']:.0f} s"),
        ("training wall time", f"{training['train_wall_s']:.0f} s",
         f"{training['steps']} of {training['planned_steps']} steps ({training['stopped']}; time budget "
         f"{training['time_budget_s']:g} s, {training['train_steps_s']} s in steps), {training['train_pairs']} "
         f"pairs, final loss {training['final_loss']:.3f}"),
        ("peak RSS", f"{training['peak_rss_mb']} MB", f"{training['peak_rss_mb_before']} MB before training"),
        (f"held-out recall@{RECALL_K} (card)", f"{training['heldout_recall_base']:.3f} → "
         f"{training['heldout_recall_adapted']:.3f}", f"{training['heldout_queries']} held-out queries, base → "
         "adapted"),
        ("re-index wall time", f"{reindex['wall_s']:.0f} s", f"{reindex['chunks']} chunks, {reindex['runtime']}, "
         f"batch {reindex['batch_size']}"),
    ]
    for key, value, note in rows:
        write_row(cost_section, key + suffix, f"| {key}{suffix} | {value} | {note} | {today} |",
                  header=["measure", "value", "notes", "measured"], command=command, intro=cost_intro)


if __name__ == "__main__":
    raise SystemExit(main())
