"""``ragtune extract``: fill a table of fields from ingested documents with a span reader.

Register in ``ragtune/cli.py`` with ``app.command("extract")(extract)``. Options only: the work is in
``extract.fields``, ``extract.run`` and ``extract.output``; the reader (onnxruntime) loads inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ragtune.cli_common import GroupsOpt, ProjectOpt, UserOpt, _principal, _warn_near_misses, err, out
from ragtune.errors import ConfigError


def extract(
    docs: Annotated[Path, typer.Argument(help="An ingested folder or file: its indexed documents are read.")],
    fields: Annotated[Path, typer.Option("--fields", "-f", help="YAML file of the fields to fill: "
                                         "`fields: [{name, question | questions: [...], type?, values?, "
                                         "min_score?}]`.")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="The table to write: .csv (one row per document) or "
                                           ".jsonl (one object per document).")],
    user: UserOpt,
    groups: GroupsOpt = "",
    fmt: Annotated[str | None, typer.Option("--format", help="csv or jsonl, whatever --out's suffix.")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="The review page (default: --out with .html).")] = None,
    reader: Annotated[str | None, typer.Option("--reader", help="Span reader NAME or NAME@VERSION (default: "
                                               "answer.reader in ragtune.yaml).")] = None,
    min_score: Annotated[float | None, typer.Option("--min-score", help="Score a value needs (default: the "
                                                    "reader's calibrated threshold; a field's own min_score wins).")
                         ] = None,
    candidates: Annotated[int, typer.Option("--candidates", min=1, max=100, help="Spans the reader proposes per "
                                            "question for a typed field; the best that validates is taken.")] = 10,
    project: ProjectOpt = None,
) -> None:
    """Fill a table of fields from every document under DOCS that USER may read, with a span reader.

    Each field is a name, a question (or several phrasings) and an optional type: `date`, `duration`, `money`,
    `enum` (with `values: [...]`), `email`, `url` or `text` (any span). For each document the reader reads every
    phrasing against the document's chunks; the best span the type accepts is the value, with its score and
    citation (path · section · page · character offsets), or empty when it scores below the threshold.

    Only documents USER may read are read (the ACL filter is in the store query); the others are counted, never
    named. Writes the table (CSV or JSONL) and an HTML review page of every value in its highlighted source
    sentence, each through a temporary file, so a failed run leaves no half table. Train the reader first with
    `ragtune tune reader DATA --name NAME`; DOCS must have been ingested (`ragtune ingest DOCS`).
    """
    from ragtune.extract.fields import load_fields
    from ragtune.extract.output import output_format, write_outputs
    from ragtune.extract.run import extract_fields
    from ragtune.project import Project

    specs = load_fields(fields)
    table_format = output_format(out_path, fmt)
    html_path = html if html is not None else out_path.with_suffix(".html")
    if html_path.resolve() == out_path.resolve():
        raise ConfigError(f"--html {html_path} is the table's own path: give another --html file")
    principal = _principal(user, groups)
    proj = Project.open(project)
    name = (reader or proj.settings.answer.reader).strip()
    if not name:
        raise ConfigError("no span reader: pass --reader NAME, or set answer.reader in ragtune.yaml; train one with "
                          "`ragtune tune reader DATA --name NAME`")
    from ragtune.tuning.reader.served import SpanReader

    span_reader = SpanReader(proj.settings.models_dir, name, threads=proj.settings.embedder.threads)
    if proj.settings.index_dir.is_dir():
        _warn_near_misses(principal, proj.store.acl_tokens())
    with Progress(TextColumn("extracting"), BarColumn(), MofNCompleteColumn(), TextColumn("documents"),
                  TimeElapsedColumn(), console=err, disable=not err.is_terminal) as bar:
        task = bar.add_task("extracting", total=None)
        result = extract_fields(proj, docs, specs, principal, span_reader, min_score=min_score,
                                candidates=candidates,
                                progress=lambda done, total: bar.update(task, completed=done, total=total))
    written = write_outputs(result, out_path, table_format, html_path)
    n = len(result.rows)
    out.print(f"[bold]{n}[/bold] document(s) read with {escape(result.reader)}", highlight=False)
    for field_name, count in result.filled().items():
        out.print(f"  {escape(field_name)}: {count} of {n} filled", highlight=False)
    if result.skipped:
        out.print(f"{result.skipped} document(s) you may not read were skipped", highlight=False)
    out.print("wrote " + ", ".join(escape(str(p)) for p in written), highlight=False)
