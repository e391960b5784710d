"""The training-data options shared by ``ragtune tune retriever`` and ``ragtune tune reranker`` (and the ones
``tune reader`` takes too), one copy each, and how the three commands print a metric and a stopped run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

QueriesOpt = Annotated[Path | None, typer.Option(
    "--queries", help="Labelled queries to train on: BEIR queries.jsonl ({\"_id\", \"text\"} per line) with "
    "--qrels, or alone a JSONL of {\"question\", \"gold\"} (gold: a document's file stem or path relative to its "
    "ingested folder, or a list; optional \"answer\": the answer text, so the chunk holding it is the positive); "
    "the formats of `ragtune eval retrieval`.")]
QrelsOpt = Annotated[Path | None, typer.Option(
    "--qrels", help="BEIR qrels TSV for --queries: query-id, corpus-id, score (score > 0 = relevant).")]
FeedbackOpt = Annotated[bool, typer.Option(
    "--feedback", help="Also train on the web UI's feedback: each thumbs-up makes the question and each cited "
    "chunk a pair, if the person who gave it may still read that chunk.")]
CorpusPairsOpt = Annotated[bool, typer.Option(
    "--corpus-pairs/--no-corpus-pairs", help="Add the pairs generated from the index (no labels) to the "
    "labelled and feedback ones; --no-corpus-pairs trains on labels only.")]


def check_sources(queries: Path | None, qrels: Path | None, feedback: bool, corpus_pairs: bool) -> None:
    """Usage errors (exit 2) for a combination of the options above that cannot train."""
    if qrels is not None and queries is None:
        raise typer.BadParameter("--qrels needs --queries (the BEIR queries.jsonl the qrels judge)",
                                 param_hint="'--qrels'")
    if not corpus_pairs and queries is None and not feedback:
        raise typer.BadParameter("--no-corpus-pairs leaves nothing to train on: add --queries (with --qrels) or "
                                 "--feedback", param_hint="'--no-corpus-pairs'")

MaxPairsOpt = Annotated[int, typer.Option(
    "--max-pairs", min=2, help="At most this many training pairs (a deterministic sample for --seed).")]
TimeBudgetOpt = Annotated[float | None, typer.Option(
    "--time-budget", min=1, help="Stop training after the step that passes this many seconds; the model is still "
    "saved (the card says it was stopped).")]
EpochsOpt = Annotated[float, typer.Option(min=0.01, help="Passes over the training pairs.")]
HoldoutOpt = Annotated[float, typer.Option(
    min=0.0, max=0.5, help="Share held out for the before/after check: of the labelled queries when there are 5 "
    "or more (--queries, --feedback), else of the documents.")]
SeedOpt = Annotated[int, typer.Option(help="Seed for the pair sample, split and training.")]


def fmt_metric(value: float | None) -> str:
    """A held-out figure as the tune commands print it: three decimals, ``n/a`` when there is none."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def stopped_note(notes: dict[str, Any]) -> str:
    """`` — stopped by --time-budget`` when the card's notes say the time budget stopped the run, else ``""``."""
    return " — stopped by --time-budget" if notes.get("stopped") == "time budget" else ""
