"""Where a retriever's (or reranker's) training pairs come from, assembled in one place.

Three sources, any combination: **corpus** pairs generated from the index with no labels (:mod:`.pairs`),
**labelled** queries (:mod:`.labelled`: BEIR queries + qrels, or question → gold document JSONL) and the web UI's
**feedback** (:mod:`.feedback`). Every source keeps a pair inside one ACL. ``max_pairs`` caps the total:
labelled and feedback pairs are kept first (a seeded sample if they alone exceed it), corpus pairs fill the rest.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ragtune.errors import DataError
from ragtune.models.embedder import Embedder
from ragtune.store.base import Store
from ragtune.tuning.retriever.corpus import read_corpus
from ragtune.tuning.retriever.feedback import feedback_pairs
from ragtune.tuning.retriever.labelled import labelled_pairs
from ragtune.tuning.retriever.pairs import PairSet, Progress, TrainingPair, generate_pairs

if TYPE_CHECKING:
    from ragtune.project import Project
    from ragtune.server.ui.store import UiStore


def assemble_pairs(proj: Project, *, queries: Path | None = None, qrels: Path | None = None,
                   feedback: bool = False, corpus_pairs: bool = True, max_pairs: int = 5000, negatives: int = 4,
                   seed: int = 0, progress: Progress | None = None) -> PairSet:
    """The training pairs of ``proj``'s index from the sources asked for (what ``tune retriever`` trains on).

    ``queries`` (+ ``qrels``, else ``queries`` is a question → gold JSONL): labelled pairs; ``feedback``: pairs
    from the web UI's thumbs-up (``proj.ui_store``); ``corpus_pairs``: pairs generated from the index. Labelled
    and feedback pairs carry up to ``negatives`` hard negatives (``negative`` + ``extra_negatives``); corpus
    pairs one. The counts of every source are merged (their keys are distinct) and ``pairs`` is the total.
    Asking for no source, ``qrels`` without ``queries``, or a source giving nothing usable is a
    :class:`DataError`."""
    if qrels is not None and queries is None:
        raise DataError("--qrels needs --queries: the BEIR queries.jsonl the qrels judge")
    if not corpus_pairs and queries is None and not feedback:
        raise DataError("--no-corpus-pairs leaves nothing to train on: give --queries (with --qrels) or --feedback")
    return collect_pairs(proj.store, proj.embedder, queries=queries, qrels=qrels,
                         ui_store=proj.ui_store if feedback else None, roots=proj.roots(), corpus_pairs=corpus_pairs,
                         max_pairs=max_pairs, negatives=negatives, seed=seed, progress=progress)


def collect_pairs(store: Store, embedder: Embedder, *, queries: Path | None = None, qrels: Path | None = None,
                  ui_store: UiStore | None = None, roots: Iterable[Path] | None = None, corpus_pairs: bool = True,
                  max_pairs: int = 5000, negatives: int = 4, seed: int = 0,
                  progress: Progress | None = None) -> PairSet:
    """:func:`assemble_pairs` on a bare store (benchmarks): feedback from ``ui_store`` when given, corpus ids as
    paths relative to ``roots`` (default: the store's)."""
    corpus = read_corpus(store)
    labels: list[TrainingPair] = []
    counts: dict[str, int] = {}
    if queries is not None:
        got = labelled_pairs(store, embedder, queries, qrels, negatives=negatives, seed=seed, progress=progress,
                             corpus=corpus, roots=roots)
        labels += got.pairs
        counts.update(got.counts)
    if ui_store is not None:
        got = feedback_pairs(store, embedder, ui_store, negatives=negatives, seed=seed, progress=progress,
                             corpus=corpus)
        labels += got.pairs
        counts.update(got.counts)
    counts["labels_capped"] = max(0, len(labels) - max_pairs)
    if counts["labels_capped"]:
        labels = random.Random(seed).sample(labels, max_pairs)
    pairs = list(labels)
    if corpus_pairs and len(labels) < max_pairs:
        generated = generate_pairs(store, embedder, max_pairs=max_pairs - len(labels), seed=seed,
                                   progress=progress, corpus=corpus)
        pairs += generated.pairs
        counts.update(generated.counts)
        counts["corpus_pairs"] = len(generated.pairs)
    counts["pairs"] = len(pairs)
    return PairSet(pairs, counts)


def describe_counts(counts: dict[str, int]) -> list[str]:
    """One plain line per source that was used, from :func:`assemble_pairs`'s counts (what the CLI prints)."""
    c = counts
    labelled = "labelled_queries" in c or "feedback_verdicts" in c
    lines = []
    if "labelled_queries" in c:
        lines.append(f"labelled pairs: {c.get('labelled_pairs', 0)} from {c['labelled_queries']} judged queries; "
                     f"hard negatives {c.get('labelled_negatives_bm25', 0)} BM25, "
                     f"{c.get('labelled_negatives_dense', 0)} dense (+{c.get('labelled_extra_negatives', 0)} more), "
                     f"{c.get('labelled_without_negative', 0)} none; skipped: {c['gold_not_indexed']} gold "
                     f"documents not in the index, {c['gold_unreadable']} readable by nobody, "
                     f"{c.get('qrels_queries_missing', 0)} qrels queries not in the query file")
    if "feedback_verdicts" in c:
        lines.append(f"feedback pairs: {c.get('feedback_pairs', 0)} from {c['feedback_up']} thumbs-up of "
                     f"{c['feedback_verdicts']} verdicts; hard negatives {c.get('feedback_negatives_bm25', 0)} BM25, "
                     f"{c.get('feedback_negatives_dense', 0)} dense (+{c.get('feedback_extra_negatives', 0)} more), "
                     f"{c.get('feedback_without_negative', 0)} none; skipped: {c['feedback_unknown_asker']} unknown "
                     f"asker, {c['feedback_no_citation']} without citations, {c['feedback_chunk_gone']} cited chunks "
                     f"no longer indexed, {c['feedback_no_longer_readable']} the asker may no longer read")
    if c.get("labels_capped"):
        lines.append(f"{c['labels_capped']} labelled/feedback pairs over --max-pairs left out")
    if "corpus_pairs" in c:
        name = "corpus pairs" if labelled else "pairs"
        lines.append(f"{name}: {c['corpus_pairs']} ({c.get('heading_pairs', 0)} heading, "
                     f"{c.get('sentence_pairs', 0)} sentence) from {c['chunks']} chunks; hard negatives "
                     f"{c.get('negatives_bm25', 0)} BM25, {c.get('negatives_dense', 0)} dense, "
                     f"{c['without_negative']} none; skipped: {c['chunks_without_pair']} chunks too short, "
                     f"{c['unreadable_chunks']} readable by nobody, {c['capped']} over --max-pairs")
    elif labelled:
        lines.append("corpus pairs: none (--no-corpus-pairs, or --max-pairs filled by labelled pairs)")
    if labelled:
        lines.append(f"pairs: {c['pairs']} in all")
    return lines


def describe_sources(proj: Project, queries: Path | None, qrels: Path | None, feedback: bool) -> str:
    """Where a model's pairs came from, for its card: the index, the labelled files, the feedback store."""
    sources = [f"{proj.settings.index_dir} ({proj.store.count()} chunks)"]
    sources += [f"labelled {queries}" + (f" + {qrels}" if qrels else "")] if queries else []
    sources += [f"feedback {proj.ui_store.path}"] if feedback else []
    return ", ".join(sources)
