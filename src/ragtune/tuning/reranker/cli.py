"""``ragtune tune reranker``: train a cross-encoder on the project's corpus and register it as a reranker.

Registered in ``ragtune/cli.py`` with ``tune_app.command("reranker")(tune_reranker)``; heavy libraries load
inside the command.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import typer
from rich.markup import escape

from ragtune.cli_common import ProjectOpt, err, out
from ragtune.project import Project
from ragtune.tuning.retriever.options import (
    CorpusPairsOpt,
    EpochsOpt,
    FeedbackOpt,
    HoldoutOpt,
    MaxPairsOpt,
    QrelsOpt,
    QueriesOpt,
    SeedOpt,
    TimeBudgetOpt,
    check_sources,
    fmt_metric,
    stopped_note,
)


def tune_reranker(
    name: Annotated[str, typer.Option("--name", "-n", help="Registry name of the reranker (a new version each "
                                                           "run).")] = "reranker",
    layers: Annotated[int, typer.Option(min=1, max=6, help="Transformer layers kept from MiniLM's six: each one "
                                                           "adds about as much latency per candidate as the "
                                                           "first.")] = 2,
    max_length: Annotated[int, typer.Option("--max-length", min=32, max=512, help="Tokens per (query, passage) "
                                                                                  "pair, in training and "
                                                                                  "serving.")] = 128,
    group_size: Annotated[int, typer.Option("--group-size", min=2, max=64, help="Texts each query is ranked "
                                                                                "among in training: its positive, "
                                                                                "hard negatives, others of its "
                                                                                "ACL.")] = 8,
    max_pairs: MaxPairsOpt = 5000,
    time_budget: TimeBudgetOpt = None,
    epochs: EpochsOpt = 1.0,
    learning_rate: Annotated[float, typer.Option("--learning-rate", min=1e-7, help="AdamW learning "
                                                 "rate.")] = 1e-4,
    holdout: HoldoutOpt = 0.1,
    seed: SeedOpt = 0,
    queries: QueriesOpt = None,
    qrels: QrelsOpt = None,
    feedback: FeedbackOpt = False,
    corpus_pairs: CorpusPairsOpt = True,
    project: ProjectOpt = None,
) -> None:
    """Train a cross-encoder reranker on this corpus and register it as a reranker model.

    The training pairs are those of `ragtune tune retriever`, from the same options: from the index with no
    labels (a heading with its section, a sentence with the rest of its chunk), from labelled queries
    (--queries/--qrels) and from the web UI's feedback (--feedback), with hard negatives from BM25 and dense
    search within exactly the same ACL. Each query is ranked against its positive, its hard negatives and
    other passages of its ACL (never another ACL's, never another gold passage of the same query). The
    model is the first --layers layers of the packaged all-MiniLM-L6-v2 reading query and passage together,
    scored by the cosine of the two parts' mean token states (times a learned scale), exported to ONNX.
    Held-out documents check it against the embedder's own ranking. Serve it with `rerank.kind:
    registry:NAME` in ragtune.yaml: the fused hits (rerank.candidates) are scored, and the stage is skipped
    when BM25 and dense search agree on the first hit (rerank.skip_when_agree).
    """
    from ragtune.tuning.reranker.train import train_reranker
    from ragtune.tuning.retriever.cli import _bar, _check_index, _progress
    from ragtune.tuning.retriever.sources import assemble_pairs, describe_counts, describe_sources

    check_sources(queries, qrels, feedback, corpus_pairs)
    proj = Project.open(project)
    _check_index(proj)
    embedder = proj.embedder

    def base_score(query: str, texts: list[str]) -> np.ndarray:
        vectors = embedder.embed([query, *texts])
        return np.asarray(vectors[1:] @ vectors[0])

    with _bar() as bar:
        progress = _progress(bar)
        pairs = assemble_pairs(proj, queries=queries, qrels=qrels, feedback=feedback, corpus_pairs=corpus_pairs,
                               max_pairs=max_pairs, seed=seed, progress=progress)
        for line in describe_counts(pairs.counts):
            err.print(line, markup=False, highlight=False)
        sources = describe_sources(proj, queries, qrels, feedback)
        result = train_reranker(
            proj.registry, name, pairs, base_score=base_score, layers=layers, max_length=max_length,
            group_size=group_size, epochs=epochs, learning_rate=learning_rate, time_budget=time_budget,
            threads=proj.settings.embedder.threads, seed=seed, holdout=holdout,
            data_source=sources, progress=progress)
    card, m = result.card, result.card.metrics
    stopped = stopped_note(card.notes)
    out.print(f"[green]registered {escape(name)} v{card.version}[/green] (reranker, {layers} layers): "
              f"{m['steps']} of {m['planned_steps']} steps on {m['train_pairs']} pairs in {m['train_seconds']} s"
              f"{stopped}")
    if m["heldout_queries"]:
        held = ("labelled queries never trained on" if card.notes.get("holdout_unit") == "query"
                else "queries from documents never trained on")
        out.print(f"held-out MRR ({m['heldout_queries']} {held}): embedder "
                  f"{fmt_metric(m['heldout_mrr_base'])} → reranker {fmt_metric(m['heldout_mrr_reranker'])}")
    else:
        out.print("held-out check: skipped (fewer than 5 documents, or --holdout 0)")
    out.print(f"report: {escape(str(result.folder / 'report.md'))}")
    out.print(f"next: set rerank.kind: registry:{escape(name)}@{card.version} in ragtune.yaml")
