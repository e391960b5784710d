"""``ragtune tune retriever`` (in the ``tune`` group, for model kinds beyond classifiers) and ``ragtune reindex``.

Register in ``ragtune/cli.py`` with ``app.add_typer(tune_app, name="tune")`` and
``app.command("reindex")(reindex)``. Heavy libraries load inside the commands.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from rich.markup import escape

from ragtune.cli_common import ProjectOpt, err, out
from ragtune.config import CONFIG_NAME
from ragtune.errors import ConfigError, EmptyCorpusError
from ragtune.project import Project
from ragtune.tuning.retriever.options import (
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

tune_app = typer.Typer(
    help="Train models beyond classifiers from the project's own data (`ragtune train` trains classifiers).",
    no_args_is_help=True,
)


def _bar() -> Any:
    from ragtune.tuning.cli import _train_progress

    return _train_progress()


def _progress(bar: Any) -> Any:
    from ragtune.tuning.cli import _RichTrainProgress
    from ragtune.tuning.train import PlainProgress

    if bar.disable:  # piped or logged: a plain line per phase and every 10 s
        return PlainProgress(lambda line: err.print(line, markup=False, highlight=False))
    return _RichTrainProgress(bar)


def _check_index(proj: Project) -> None:
    """The index must hold chunks embedded by the configured embedder (its vectors serve the dense mining)."""
    if proj.store.count() == 0:
        raise EmptyCorpusError("the index is empty: run `ragtune ingest PATH` first; the retriever is trained "
                               "from the indexed chunks")
    stored, current = proj.store.state.meta().get("embedder"), proj.embedder.fingerprint
    if stored is not None and stored != current:
        raise ConfigError(f"the index was embedded with {stored} but the project's embedder is {current}: set "
                          "embedder.model back in ragtune.yaml (or finish `ragtune reindex`) before tuning")


LABELS_ONLY_EPOCHS = 3.0
CORPUS_EPOCHS = 1.0


def training_defaults(labelled: bool, corpus_pairs: bool | None, epochs: float | None) -> tuple[bool, float]:
    """(corpus pairs, epochs) of a `tune retriever` run: what was passed, else labels only for 3 epochs when
    labelled queries are given and corpus pairs for 1 epoch when not (chosen on a dev split of SciFact train by
    ``benchmarks/scifact_dev_select.py``: labels only, 3 epochs, beat labels + corpus pairs there)."""
    corpus = (not labelled) if corpus_pairs is None else corpus_pairs
    return corpus, epochs if epochs is not None else (CORPUS_EPOCHS if corpus else LABELS_ONLY_EPOCHS)


@tune_app.command("retriever")
def tune_retriever(
    name: Annotated[str, typer.Option("--name", "-n", help="Registry name of the tuned embedder (a new version "
                                                           "each run).")] = "retriever",
    max_pairs: MaxPairsOpt = 5000,
    time_budget: TimeBudgetOpt = None,
    epochs: Annotated[float | None, typer.Option(min=0.01, help="Passes over the training pairs (default: "
                                                 f"{LABELS_ONLY_EPOCHS:g} on labels only, {CORPUS_EPOCHS:g} with "
                                                 "corpus pairs).", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=2, help="Pairs per step (each batch is one ACL; "
                                                                        "larger gives more in-batch "
                                                                        "negatives).")] = 32,
    learning_rate: Annotated[float, typer.Option("--learning-rate", min=1e-7, help="AdamW learning rate.")] = 3e-5,
    holdout: HoldoutOpt = 0.1,
    seed: SeedOpt = 0,
    queries: QueriesOpt = None,
    qrels: QrelsOpt = None,
    feedback: FeedbackOpt = False,
    corpus_pairs: Annotated[bool | None, typer.Option(
        "--corpus-pairs/--no-corpus-pairs", help="Add the pairs generated from the index (no labels) to the "
        "labelled and feedback ones (default: labels only when --queries are given, else corpus pairs).",
        show_default=False)] = None,
    project: ProjectOpt = None,
) -> None:
    """Adapt the embedder to this corpus, with no labels or with labelled queries and feedback, and register it
    as an embedder model.

    With no options the training pairs come from the index itself: each heading (or title) with the text under
    it, and one sentence of a chunk with the rest of that chunk, each with a hard negative mined with BM25 or
    dense search among chunks with exactly the same ACL (never from the positive's own document).

    --queries/--qrels add labelled pairs: each query with the chunk of each gold document that best matches it
    (gold documents not in the index, or readable by nobody, are skipped and counted), with up to 4 hard
    negatives from the BM25 and dense top of exactly that chunk's ACL, never from a gold document of the query.
    --feedback adds the web UI's thumbs-up answers the same way (question → each cited chunk), only for chunks
    the person who gave the feedback may still read. Labelled and feedback pairs are kept first under
    --max-pairs. With --queries the default is labels only for 3 epochs (chosen on a dev split of SciFact train:
    it beat labels + corpus pairs, see docs/benchmarks.md); --corpus-pairs fills the rest of --max-pairs with
    corpus pairs. With 5 or more labelled queries the held-out check holds out queries, so its recall is on
    queries never trained on.

    Every training batch holds one ACL, so no chunk is ever paired or contrasted with a chunk other readers may
    not see, and no query or document twice — except that questions labelled with their answer text may share a
    batch with other passages of their document (never one holding their answer). The packaged all-MiniLM-L6-v2
    is fine-tuned (MultipleNegativesRankingLoss) on the CPU with embedder.threads threads; held-out recall@10
    is reported for the base and the adapted model. Serve it with `ragtune reindex --embedder registry:NAME`.
    """
    from ragtune.tuning.retriever.biencoder import RECALL_K, train_biencoder
    from ragtune.tuning.retriever.pairs import holdout_unit
    from ragtune.tuning.retriever.sources import assemble_pairs, describe_counts, describe_sources

    corpus_pairs, epochs = training_defaults(queries is not None, corpus_pairs, epochs)
    check_sources(queries, qrels, feedback, corpus_pairs)
    proj = Project.open(project)
    _check_index(proj)
    with _bar() as bar:
        progress = _progress(bar)
        pairs = assemble_pairs(proj, queries=queries, qrels=qrels, feedback=feedback, corpus_pairs=corpus_pairs,
                               max_pairs=max_pairs, seed=seed, progress=progress)
        for line in describe_counts(pairs.counts):
            err.print(line, markup=False, highlight=False)
        sources = describe_sources(proj, queries, qrels, feedback)
        result = train_biencoder(
            proj.registry, name, pairs, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
            time_budget=time_budget, threads=proj.settings.embedder.threads, seed=seed, holdout=holdout,
            data_source=sources, base_fingerprint=proj.embedder.fingerprint, progress=progress)
    card, m = result.card, result.card.metrics
    stopped = stopped_note(card.notes)
    out.print(f"[green]registered {escape(name)} v{card.version}[/green] (embedder): {m['steps']} of "
              f"{m['planned_steps']} steps on {m['train_pairs']} pairs in {m['train_seconds']} s{stopped}")
    held = ("labelled queries never trained on" if holdout_unit(pairs.pairs) == "query"
            else "queries from documents never trained on")
    if m["heldout_queries"]:
        out.print(f"held-out recall@{RECALL_K} ({m['heldout_queries']} {held}): "
                  f"base {fmt_metric(m[f'heldout_recall@{RECALL_K}_base'])} → adapted "
                  f"{fmt_metric(m[f'heldout_recall@{RECALL_K}_adapted'])}; mean rank "
                  f"{fmt_metric(m['heldout_mean_rank_base'])} → {fmt_metric(m['heldout_mean_rank_adapted'])}")
    else:
        out.print("held-out check: skipped (fewer than 5 documents or labelled queries, or --holdout 0)")
    out.print(f"report: {escape(str(result.folder / 'report.md'))}")
    out.print(f"next: ragtune reindex --embedder registry:{escape(name)}@{card.version}"
              + (f" --project {escape(str(project))}" if project else ""))


def reindex(
    embedder: Annotated[str, typer.Option("--embedder", "-e", help="The embedder to re-embed with: "
                                                                   "registry:NAME[@VERSION] (from `ragtune tune "
                                                                   "retriever`) or minilm.")],
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Chunks embedded per staged batch (what "
                                                                        "a killed run loses at most).")] = 256,
    project: ProjectOpt = None,
) -> None:
    """Re-embed every stored chunk with another embedder, then make it the project's embedder.

    Resumable: new vectors are staged in batches beside the index (searches keep using the old embedder
    meanwhile), so a killed run continues where it stopped. The index then switches in one commit and records
    the new embedder; if that is interrupted, searches are refused until `reindex` is run again. Finally
    embedder.model is set in ragtune.yaml (pinned to the version, e.g. registry:NAME@2). Holds the index write
    lock. Documents nobody may read are dropped and come back, re-embedded, at the next `ragtune sync`.
    Restart a running `ragtune serve` afterwards: it keeps its loaded embedder.
    """
    from ragtune.index_reembed import reembed_index, set_embedder_model

    proj = Project.open(project)
    settings = proj.settings
    target = Project(settings.model_copy(update={"embedder": settings.embedder.model_copy(update={"model": embedder})}))
    model = target.embedder
    spec = str(getattr(model, "spec", embedder))  # a registry name pinned to the version it resolved to
    with _bar() as bar:
        progress = _progress(bar)
        report = reembed_index(target.store, model, spec, settings.index_dir / ".reembed", batch_size=batch_size,
                               progress=lambda phase, done, total: progress(phase, done, total, {}))
    if report.already:
        out.print(f"the index is already embedded with {escape(report.fingerprint)} ({report.chunks} chunks)")
    else:
        resumed = f", {report.reused} reused from an interrupted run" if report.reused else ""
        out.print(f"[green]re-embedded {report.chunks} chunks[/green] with {escape(report.fingerprint)} "
                  f"({report.embedded} embedded now{resumed}) in {report.seconds:.1f} s")
        if report.dropped_unreadable_docs:
            out.print(f"{report.dropped_unreadable_docs} document(s) readable by nobody were dropped; "
                      "`ragtune sync` brings them back")
    config = settings.project_dir / CONFIG_NAME
    line = f'embedder:\n  model: "{spec}"'
    if os.environ.get("RAGTUNE_EMBEDDER__MODEL", spec) != spec:
        err.print(f"warning: RAGTUNE_EMBEDDER__MODEL overrides ragtune.yaml; set it to {spec}", markup=False)
    if settings.embedder.model == spec and not os.environ.get("RAGTUNE_EMBEDDER__MODEL"):
        return
    if config.is_file() and set_embedder_model(config, spec):
        out.print(f"set embedder.model: {escape(spec)} in {escape(str(config))}")
    else:
        out.print(f"add this to {escape(str(config))}:\n{escape(line)}")
