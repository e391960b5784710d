"""The ``ragtune`` command. Errors a user can cause print as one line on stderr and exit with status 1."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ragtune.advisor.cli import advise_guide
from ragtune.cli_common import (
    GroupsOpt,
    JsonOpt,
    ProjectOpt,
    UserOpt,
    _exit_if_failed,
    _principal,
    _print_report,
    _progress,
    _RichSyncProgress,
    err,
    out,
)
from ragtune.config import GeneratorSettings, init_project, load_settings
from ragtune.core import Answer, Hit, Principal
from ragtune.errors import ConfigError, RagtuneError
from ragtune.index_cli import check, roots_app, sources
from ragtune.ingest.acl import parse_acl_option
from ragtune.project import Project
from ragtune.tuning.cli import classify, models_app, train
from ragtune.verify.cli import verify_app

app = typer.Typer(
    name="ragtune",
    help="RAG with per-document permissions and citations, calibrated fine-tuned classifiers, hybrid pipelines "
    "and an advisor that recommends the architecture from evidence.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs re-wrap to the terminal width
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"ragtune {version('ragtune')}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    show_version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Print ragtune's version and exit.")] = False,
) -> None:
    """RAG with per-document permissions and citations, calibrated fine-tuned classifiers, hybrid pipelines and
    an advisor that recommends the architecture from evidence."""


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")] = Path("."),
) -> None:
    """Create a project: a commented ragtune.yaml (store path, embedder, chunking, retrieval, answer)."""
    path = init_project(directory)
    out.print(f"created {path}\nnext: ragtune ingest PATH --project {directory}")


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="Folder (or file) of md, txt, html, pdf, docx, csv, jsonl files.")],
    acl: Annotated[
        str | None,
        typer.Option(
            help="ACL for files with none of their own: 'public' or user:NAME,group:NAME,... "
            "(front matter `acl:` and _acl.yaml files take precedence)."
        ),
    ] = None,
    project: ProjectOpt = None,
) -> None:
    """Ingest a folder incrementally (only new or changed files are embedded).

    Deleted files are removed and changed ACLs applied, effective when the command returns. A file's ACL
    comes from its real location: front matter `acl:`, else the nearest `_acl.yaml` at or above its folder,
    else --acl. A path inside an ingested folder syncs that part of it. Links out of the ingested folders are
    skipped (ingest.follow_external_links). Unsupported formats are skipped; corrupt, empty, oversized or
    unreadable files and bad ACLs are reported by name and the command exits with status 3 (a document
    whose ACL cannot be parsed is made readable by nobody). One ingest or sync runs per project at a time.
    """
    proj = Project.open(project)
    default_acl = parse_acl_option(acl) if acl else None
    with _progress() as bar:
        report = proj.ingest(path, default_acl, _RichSyncProgress(bar))
    _print_report(report, Path(os.path.realpath(path)))
    _exit_if_failed([report])


@app.command()
def sync(project: ProjectOpt = None) -> None:
    """Re-sync every folder ingested before (changes, deletions and ACL changes take effect now).

    A folder that has vanished is reported and its documents removed (ingest.keep_missing_roots keeps them);
    the other folders are synced all the same. Exit status 3 when any file or folder failed.
    """
    proj = Project.open(project)
    with _progress() as bar:
        results = proj.sync(_RichSyncProgress(bar))
    for root, report in results:
        _print_report(report, root)
    _exit_if_failed([r for _, r in results])


def _hit_dict(h: Hit) -> dict[str, Any]:
    c = h.chunk
    return {
        "chunk_id": c.chunk_id, "doc_id": c.doc_id, "path": c.source_path, "title": c.title,
        "section": c.section, "page": c.page, "char_start": c.char_start, "char_end": c.char_end,
        "score": h.score, "lexical_score": h.lexical_score, "dense_score": h.dense_score,
        "lexical_rank": h.lexical_rank, "dense_rank": h.dense_rank, "text": c.text,
    }


def _answer_dict(a: Answer, principal: Principal) -> dict[str, Any]:
    return {
        "question": a.question,
        "user": principal.user,
        "groups": sorted(principal.groups),
        "answer": a.text,
        "abstained": a.abstained,
        "flags": list(a.flags),
        "citations": [
            {"number": c.number, "path": c.chunk.source_path, "title": c.chunk.title, "section": c.chunk.section,
             "page": c.chunk.page, "chunk_id": c.chunk.chunk_id, "char_start": c.chunk.char_start,
             "char_end": c.chunk.char_end, "snippet": c.snippet}
            for c in a.citations
        ],
        "latency_ms": {k: round(v, 2) for k, v in a.latency_ms.items()},
    }


def _latency_table(lat: dict[str, float]) -> Table:
    t = Table(title="latency (ms)", show_header=True)
    for k in lat:
        t.add_column(k, justify="right")
    t.add_row(*(f"{v:.1f}" for v in lat.values()))
    return t


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    user: UserOpt,
    groups: GroupsOpt = "",
    generator: Annotated[
        str | None,
        typer.Option("--generator", help="Override generator.kind: extractive (quote sources), llamacpp (the "
                     "local SmolLM2 model) or openai (the OpenAI-compatible endpoint in ragtune.yaml)."),
    ] = None,
    json_out: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Answer from the chunks USER may read, with numbered citations and a latency breakdown.

    Abstains ("no accessible source supports an answer") when nothing readable is relevant enough. With a
    generator, the answer streams as it is written; then its citations are checked: a citation that names no
    source, or a source USER may not read, is removed and the answer is flagged.
    """
    principal = _principal(user, groups)
    settings = load_settings(project)
    if generator is not None:
        try:
            settings = settings.model_copy(update={"generator": GeneratorSettings(
                **{**settings.generator.model_dump(), "kind": generator})})
        except ValidationError as exc:
            raise ConfigError(f"--generator {generator!r}: choose extractive, llamacpp or openai") from exc
    streaming = not json_out and settings.generator.kind != "extractive"
    if streaming:
        err.print("[dim]generating…[/dim]")

    def show(token: str) -> None:
        err.print(token, end="", style="dim", highlight=False, markup=False)

    answer = Project(settings).ask(question, principal, on_token=show if streaming else None)
    if streaming:
        err.print()
    if json_out:
        out.print_json(json.dumps(_answer_dict(answer, principal)))
        return
    out.print(answer.text, style="bold", markup=False, highlight=False)
    out.print()
    for flag in answer.flags:
        err.print(f"[yellow]warning:[/yellow] {escape(flag)}")
    if answer.citations:
        out.print("Sources:")
        for c in answer.citations:
            where = c.chunk.section or c.chunk.title
            page = f", page {c.chunk.page}" if c.chunk.page else ""
            out.print(f"  [{c.number}] {c.chunk.source_path} — {where}{page}", markup=False, highlight=False)
            out.print(f"      “{c.snippet[:200]}”", markup=False, highlight=False)
    out.print(_latency_table(answer.latency_ms))


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="The search query.")],
    user: UserOpt,
    groups: GroupsOpt = "",
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Number of hits.")] = 8,
    json_out: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Rank the chunks USER may read for QUERY, with their lexical (BM25), dense (cosine) and fused scores."""
    principal = _principal(user, groups)
    result = Project.open(project).search(query, principal, top_k)
    if json_out:
        out.print_json(json.dumps({"query": query, "hits": [_hit_dict(h) for h in result.hits],
                                   "latency_ms": result.latency_ms}))
        return
    t = Table(show_header=True)
    for col in ("#", "fused", "bm25", "dense", "source", "section", "text"):
        t.add_column(col)
    if not result.hits:
        err.print(f"no chunk readable by {escape(principal.user)} matches; nothing to show")
    for i, h in enumerate(result.hits, start=1):
        t.add_row(
            str(i), f"{h.score:.4f}",
            "-" if h.lexical_score is None else f"{h.lexical_score:.2f}",
            "-" if h.dense_score is None else f"{h.dense_score:.3f}",
            Text(Path(h.chunk.source_path).name), Text(h.chunk.section), Text(h.chunk.text[:80].replace("\n", " ")),
        )
    out.print(t)
    out.print(_latency_table(result.latency_ms))


app.command()(train)
app.command()(classify)
app.add_typer(models_app, name="models")


@app.command("run")
def run_pipeline(
    pipeline: Annotated[str, typer.Argument(help="A built-in pipeline (compliance-copilot, support-triage) or a "
                                                 "pipeline YAML file.")],
    text: Annotated[str, typer.Argument(help="The input: a question or a customer message.")],
    user: UserOpt,
    groups: GroupsOpt = "",
    json_out: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Run a hybrid pipeline on TEXT as USER: retrieval, answers, classifiers and routing rules in one result.

    The result has the answer with citations (only chunks USER may read), each classifier's label and
    calibrated probability, the queue chosen by the routing rules, the groundedness score when the pipeline
    verifies, and the latency of every step. Pipeline format: docs/pipelines.md.
    """
    from ragtune.pipelines.runner import PipelineRunner
    from ragtune.pipelines.spec import load_pipeline

    spec = load_pipeline(pipeline)
    runner = PipelineRunner(spec, Project.open(project))
    runner.warm_up()  # model loading is start-up, not step latency
    result = runner.run(text, _principal(user, groups))
    if json_out:
        out.print_json(json.dumps(result.to_dict()))
        return
    for name, label in result.labels.items():
        out.print(f"{escape(name)}: [bold]{escape(label.label)}[/bold] ({label.probability:.2f})", highlight=False)
    if result.route is not None:
        out.print(f"route: [bold]{escape(result.route)}[/bold]", highlight=False)
    if result.answer is not None:
        out.print()
        out.print(result.answer.text, style="bold", markup=False, highlight=False)
        for c in result.answer.citations:
            out.print(f"  [{c.number}] {c.chunk.source_path} — {c.chunk.section or c.chunk.title}", markup=False)
        for flag in result.answer.flags:
            err.print(f"[yellow]warning:[/yellow] {escape(flag)}")
    if result.groundedness is not None:
        out.print(f"groundedness: {result.groundedness:.2f}"
                  + (f" (unsupported: {len(result.unsupported_sentences)} sentence(s))"
                     if result.unsupported_sentences else ""))
    out.print(_latency_table(result.latency_ms))


app.command()(sources)
app.add_typer(roots_app, name="roots")
app.command()(check)
app.command("advise")(advise_guide)
app.add_typer(verify_app, name="verify")


def main() -> None:
    """Console entry point: run the app, turning user errors into one line and exit status 1."""
    try:
        app()
    except RagtuneError as exc:
        from ragtune.security.redact import redact

        # Redact: a message may quote a URL or a server's reply; escape: it may quote a path or a document.
        err.print(f"[red]error:[/red] {escape(redact(str(exc)))}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
