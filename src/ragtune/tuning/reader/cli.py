"""``ragtune tune reader``: fine-tune an extractive span reader on labelled questions and register it.

Registered in ``ragtune/cli.py`` with ``tune_app.command("reader")(tune_reader)``; heavy libraries load inside
the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ragtune.cli_common import ProjectOpt, err, out
from ragtune.errors import DataError
from ragtune.project import Project
from ragtune.tuning.retriever.options import (
    EpochsOpt,
    HoldoutOpt,
    SeedOpt,
    TimeBudgetOpt,
    fmt_metric,
    stopped_note,
)


def tune_reader(
    data: Annotated[Path, typer.Argument(help="Training questions: SQuAD JSON (.json, v1.1 or v2.0) or JSONL "
                                              "(.jsonl) of {\"question\", \"passage\", \"answer\": text or null}.",
                                         show_default=False)],
    name: Annotated[str, typer.Option("--name", "-n", help="Registry name of the reader (a new version each "
                                                           "run).")] = "reader",
    validation: Annotated[Path | None, typer.Option("--validation", help="A separate held-out file (same "
                                                    "formats): measured and used to calibrate the no-answer "
                                                    "threshold instead of a --holdout share of DATA.")] = None,
    layers: Annotated[int, typer.Option(min=1, max=6, help="Transformer layers kept from MiniLM's six: fewer read "
                                                           "faster and learn less.")] = 6,
    max_length: Annotated[int, typer.Option("--max-length", min=32, max=512, help="Tokens per window (question "
                                            "+ a part of the passage), in training and serving.")] = 256,
    stride: Annotated[int, typer.Option(min=0, max=256, help="Tokens two windows of a long passage "
                                                             "share.")] = 64,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Windows per step.")] = 16,
    epochs: EpochsOpt = 1.0,
    learning_rate: Annotated[float, typer.Option("--learning-rate", min=1e-7, help=(
        "AdamW learning rate (3e-4 was chosen on PolicyQA training policies: docs/benchmarks.md)."))] = 3e-4,
    time_budget: TimeBudgetOpt = None,
    holdout: HoldoutOpt = 0.1,
    seed: SeedOpt = 0,
    project: ProjectOpt = None,
) -> None:
    """Fine-tune a span reader on DATA and register it: question + passage → the answer's exact span, or none.

    DATA is SQuAD JSON (data[].title, paragraphs[].context, qas[].question/id/answers/is_impossible) or
    JSONL with one {"question", "passage" (or "context"), "answer": text as written in the passage, or null
    when the passage does not answer it} per line, optional "answer_start" (else the first occurrence) and
    "group" (or "document": what is held out together). The data is audited first: answers not found in
    their passage (dropped), duplicate and conflicting questions, overlap with --validation, the no-answer
    share. The model is the first --layers layers of the packaged all-MiniLM-L6-v2 with a start/end head,
    reading question and passage together in --max-length windows; a --holdout share of the groups (a SQuAD
    article, a JSONL group, else a passage), never trained on, measures exact match and F1 and calibrates
    the no-answer threshold (the one maximising F1). Exported to ONNX and served on onnxruntime: set
    answer.kind: reader and answer.reader: NAME@VERSION in ragtune.yaml.
    """
    from ragtune.tuning.reader.data import audit_examples, load_reader_examples
    from ragtune.tuning.reader.train import train_reader
    from ragtune.tuning.retriever.cli import _bar, _progress

    proj = Project.open(project)
    examples = load_reader_examples(data)
    held = load_reader_examples(validation) if validation is not None else None
    audit = audit_examples(examples, held)
    for line in audit.lines():
        style = "red" if line.startswith("cannot train") else "yellow" if line.startswith("warning") else ""
        err.print(f"[{style}]{escape(line)}[/{style}]" if style else escape(line), highlight=False)
    if audit.blocking:
        raise DataError(f"{data}: cannot train the reader: " + "; ".join(audit.blocking))
    with _bar() as bar:
        result = train_reader(
            proj.registry, name, examples, validation=held, layers=layers, max_length=max_length, stride=stride,
            batch_size=batch_size, epochs=epochs, learning_rate=learning_rate, time_budget=time_budget,
            threads=proj.settings.embedder.threads, seed=seed, holdout=holdout,
            data_source=str(data) + (f" (validation {validation})" if validation is not None else ""),
            progress=_progress(bar), audit=audit)
    card, m = result.card, result.card.metrics
    stopped = stopped_note(card.notes)
    out.print(f"[green]registered {escape(name)} v{card.version}[/green] (reader, {layers} layers): "
              f"{m['steps']} of {m['planned_steps']} steps on {m['train_examples']} examples "
              f"({m['train_windows']} windows) in {m['train_seconds']} s{stopped}")
    if m["heldout_examples"]:
        held_what = "the validation file" if validation is not None else "groups never trained on"
        out.print(f"held-out ({m['heldout_examples']} examples from {held_what}): EM {fmt_metric(m['heldout_em'])}, "
                  f"F1 {fmt_metric(m['heldout_f1'])}; threshold {card.params['threshold']:.3f}: answered share "
                  f"{fmt_metric(m['heldout_answered_share'])}, F1 on answered {fmt_metric(m['heldout_f1_answered'])}")
    else:
        out.print("held-out check: skipped (one group only, or --holdout 0); the threshold is 0, not calibrated")
    out.print(f"report: {escape(str(result.folder / 'report.md'))}")
    out.print(f"next: set answer.kind: reader and answer.reader: {escape(name)}@{card.version} in ragtune.yaml")
