"""``ragtune tune generator``: fine-tune a local chat model on the project's examples and register it.

Registered in ``ragtune/cli.py`` with ``tune_app.command("generator")(tune_generator)``; heavy libraries load
inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ragtune.cli_common import ProjectOpt, err, out
from ragtune.errors import DataError
from ragtune.project import Project
from ragtune.tuning.retriever.options import EpochsOpt, SeedOpt, TimeBudgetOpt, fmt_metric, stopped_note

SHOWN = ("validity", "exact_match", "rouge_l", "latency_p50_ms", "tokens_per_s")


def tune_generator(
    data: Annotated[Path, typer.Argument(help="Training examples, JSONL: {\"messages\": [...]} per line (OpenAI's "
                                              "fine-tuning chat format; the last message is the assistant reply to "
                                              "learn) or {\"prompt\", \"completion\"[, \"system\"]}.",
                                         show_default=False)],
    name: Annotated[str, typer.Option("--name", "-n", help="Registry name of the tuned generator (a new version "
                                                           "each run).")] = "generator",
    schema: Annotated[Path | None, typer.Option("--schema", help="JSON Schema the replies must follow: targets "
                                                "that do not validate are left out of training, and outputs are "
                                                "measured (and served) with and without decoding constrained to "
                                                "it.")] = None,
    method: Annotated[str, typer.Option("--method", help="lora: a small adapter on the base model (default); "
                                        "full: all weights (slower, a whole model file).")] = "lora",
    merge: Annotated[bool, typer.Option("--merge", help="With --method lora: merge the adapter into the base "
                                        "and write one whole f16 model file, which llama.cpp serves about as "
                                        "fast as a full fine-tune (an adapter applied at run time decodes "
                                        "slower); the adapter is kept in peft's format beside it.")] = False,
    gguf_type: Annotated[str, typer.Option("--gguf-type", help="Matrix type of a whole model file (--merge or "
                                           "--method full): f16, q8_0 (half the size, faster on a CPU; 8-bit "
                                           "blocks) or f32.")] = "f16",
    base: Annotated[Path | None, typer.Option("--base", help="The base model: a GGUF file or a folder holding one "
                                              "(default: the packaged SmolLM2-135M-Instruct).")] = None,
    validation: Annotated[Path | None, typer.Option("--validation", help="A separate held-out file (same "
                                                    "format, no prompt in common with DATA) instead of a "
                                                    "--holdout share of DATA.")] = None,
    epochs: EpochsOpt = 1.0,
    learning_rate: Annotated[float | None, typer.Option("--learning-rate", min=1e-7, help="AdamW learning rate "
                                                        "(default 2e-4 for lora, 2e-5 for full).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Examples per step.")] = 8,
    max_length: Annotated[int, typer.Option("--max-length", min=16, max=8192, help="Tokens per example (prompt "
                                            "and reply); longer ones are cut.")] = 256,
    lora_rank: Annotated[int, typer.Option("--lora-rank", min=1, max=256, help="LoRA rank.")] = 16,
    holdout: Annotated[float, typer.Option(min=0.0, max=0.5, help="Share of the distinct prompts held out for "
                                                                  "the before/after comparison.")] = 0.1,
    shots: Annotated[int, typer.Option(min=0, max=32, help="Training examples shown to the base model in its "
                                                           "prompt, for the comparison.")] = 5,
    eval_limit: Annotated[int, typer.Option("--eval-limit", min=1, help="At most this many held-out examples "
                                            "are generated per configuration.")] = 100,
    time_budget: TimeBudgetOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Go on from the last checkpoint of an interrupted run "
                                                          "with the same data and settings.")] = False,
    seed: SeedOpt = 0,
    project: ProjectOpt = None,
) -> None:
    """Fine-tune a local chat model on DATA, compare it with the base model prompted with examples, and register it.

    The data is audited first (duplicates, conflicting replies to the same prompt, replies that do not validate
    against --schema, length outliers, prompts shared with --validation). Training is supervised fine-tuning
    on the replies' tokens (trl), LoRA by default, with a progress bar, a checkpoint every 50 steps (an
    interrupted run goes on with --resume) and an optional --time-budget. The tuned weights are written as
    GGUF and served by llama.cpp: a LoRA as an adapter on the base, or with --merge merged into one whole model
    (faster to serve, a larger file). In the same run, the held-out examples are generated by the base model with
    a --shots-example prompt and by the tuned model, each with and without --schema-constrained decoding:
    format validity, exact match, per-field accuracy, ROUGE-L, latency and tokens/s, in report.md and
    report.html beside the model. Serve it with generator.kind: tuned and generator.model: NAME@VERSION.
    """
    from ragtune.tuning.generator.audit import audit_examples
    from ragtune.tuning.generator.data import load_gen_examples, load_schema
    from ragtune.tuning.generator.train import train_generator
    from ragtune.tuning.retriever.cli import _bar, _progress

    proj = Project.open(project)
    examples = load_gen_examples(data)
    held = load_gen_examples(validation) if validation is not None else None
    output_schema = load_schema(schema) if schema is not None else None
    audit = audit_examples(examples, held, output_schema)
    for line in audit.lines():
        style = "red" if line.startswith("cannot train") else "yellow" if line.startswith("warning") else ""
        err.print(f"[{style}]{escape(line)}[/{style}]" if style else escape(line), highlight=False)
    if audit.blocking:
        raise DataError(f"{data}: cannot train the generator: " + "; ".join(audit.blocking))
    try:
        with _bar() as bar:
            result = train_generator(
                proj.registry, name, examples, validation=held, schema=output_schema, method=method, merge=merge,
                gguf_type=gguf_type, base=base, epochs=epochs, learning_rate=learning_rate, batch_size=batch_size,
                max_length=max_length, lora_rank=lora_rank, lora_alpha=2 * lora_rank, time_budget=time_budget,
                holdout=holdout, seed=seed, threads=proj.settings.embedder.threads, resume=resume, shots=shots,
                eval_limit=eval_limit, progress=_progress(bar), audit=audit,
                data_source=str(data) + (f" (validation {validation})" if validation is not None else ""))
    except KeyboardInterrupt:
        checkpoints = proj.registry.root / ".checkpoints" / name
        err.print(f"[yellow]interrupted: nothing registered; the last checkpoint (every 50 steps) is kept in "
                  f"{escape(str(checkpoints))}: run the same command with --resume to go on from it[/yellow]")
        raise typer.Exit(130) from None
    card, m = result.card, result.card.metrics
    how = f"{method}, merged" if merge else method
    out.print(f"[green]registered {escape(name)} v{card.version}[/green] ({escape(how)} on "
              f"{escape(card.params['base'])}): {m['steps']} of {m['planned_steps']} steps on "
              f"{m['train_examples']} examples in {m['train_seconds']} s{stopped_note(card.notes)}")
    if result.rows:
        out.print(comparison_table(result.rows, int(result.rows[0].get("n", m["heldout_examples"]))))
    else:
        out.print("before/after comparison: skipped (fewer than 5 distinct prompts, or --holdout 0)")
    out.print(f"report: {escape(str(result.folder / 'report.html'))}")
    out.print(f"next: set generator.kind: tuned and generator.model: {escape(name)}@{card.version} in ragtune.yaml")


def comparison_table(rows: list[dict[str, object]], held: int) -> Table:
    """The before/after rows as a terminal table: one row per configuration, the shared metrics and fields."""
    fields = sorted({k for r in rows for k in r if k.startswith("field:")})
    table = Table(title=f"held-out comparison ({held} examples)", title_justify="left")
    table.add_column("configuration")
    for column in (*SHOWN[:3], *fields, *SHOWN[3:]):
        table.add_column(column.replace("_", " "), justify="right")
    for r in rows:
        cells = []
        for column in (*SHOWN[:3], *fields, *SHOWN[3:]):
            value = r.get(column)
            cells.append(f"{value:.1f}" if column in SHOWN[3:] and isinstance(value, float)
                         else fmt_metric(value) if isinstance(value, float) else "")
        table.add_row(escape(str(r["config"])), *cells)
    return table
