"""The ``ragtune`` command. Errors a user can cause print as one line on stderr and exit with status 1."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ragtune.advisor.cli import advise_guide
from ragtune.answer.reader import span_json
from ragtune.audit.cli import audit_app
from ragtune.audit.trail import audit_trail
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
    _warn_near_misses,
    cited_place,
    err,
    out,
    process_age_ms,
    token_stream,
)
from ragtune.config import GeneratorSettings, init_project, load_settings
from ragtune.core import Answer, Hit, Principal
from ragtune.errors import ConfigError, RagtuneError
from ragtune.evaluation.cli import eval_app
from ragtune.extract.cli import extract
from ragtune.index_cli import check, migrate, roots_app, sources
from ragtune.ingest.acl import parse_acl_option
from ragtune.ingest.sync import SyncReport
from ragtune.project import Project
from ragtune.server.cli import serve
from ragtune.service.keys_cli import keys_app
from ragtune.tuning.cli import classify, models_app, train
from ragtune.tuning.generator.cli import tune_generator
from ragtune.tuning.reader.cli import tune_reader
from ragtune.tuning.reranker.cli import tune_reranker
from ragtune.tuning.retriever.cli import reindex, tune_app
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
    from ragtune.security.egress_cli import guard_command  # egress allowlist, docs/deployment.md

    guard_command(sys.argv[1:])  # Click has consumed the command's own arguments by now


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")] = Path("."),
) -> None:
    """Create a project: a commented ragtune.yaml (store path, embedder, chunking, retrieval, answer)."""
    path = init_project(directory)
    out.print(f"created {path}\nnext: ragtune ingest PATH --project {directory}")


RayOpt = Annotated[
    str | None,
    typer.Option(
        "--ray", metavar="auto|ADDRESS",
        help="Parse, chunk and embed on a Ray cluster (docs/ray.md): `auto` connects to $RAY_ADDRESS or starts a "
        "local Ray on 127.0.0.1; ADDRESS is the head's HOST:PORT or ray://HOST:10001. This process still reads "
        "the files, resolves every ACL and writes the index; the result equals a local ingest.",
    ),
]


def _print_nodes(report: SyncReport) -> None:
    """Where a Ray sync ran: node ids (their first 12 hex digits) per stage."""
    for stage, verb in (("parse", "parsed"), ("embed", "embedded")):
        nodes = report.nodes.get(stage)
        if nodes:
            out.print(f"  ray: {verb} on {len(nodes)} node(s): {', '.join(n[:12] for n in nodes)}",
                      markup=False, highlight=False)


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
    ray: RayOpt = None,
) -> None:
    """Ingest a folder incrementally (only new or changed files are embedded).

    Deleted files are removed and changed ACLs applied, effective when the command returns. A file's ACL
    comes from its real location: front matter `acl:`, else the nearest `_acl.yaml` at or above its folder,
    else --acl. A path inside an ingested folder syncs that part of it. Links out of the ingested folders are
    skipped (ingest.follow_external_links). Unsupported formats are skipped; corrupt, empty, oversized or
    unreadable files and bad ACLs are reported by name and the command exits with status 3 (a document
    whose ACL cannot be parsed is made readable by nobody). One ingest or sync runs per project at a time.

    On a terminal, a bar on stderr shows chunks embedded out of the chunks to embed (chunks/s, ETA) and files
    handled out of files found: files are read and chunked first, so the total is known before embedding.

    With --ray, parsing, chunking and embedding run as Ray tasks and actors (one embedder per worker process);
    the bar, the report and the exit status are the same, plus a line naming the nodes that did the work. An
    unreachable cluster fails before the index is touched; a dead worker's share goes to the others, and if all
    are lost the command fails with only complete batches written, and the same command resumes.
    """
    proj = Project.open(project)
    default_acl = parse_acl_option(acl) if acl else None
    with _progress() as bar:
        report = proj.ingest(path, default_acl, _RichSyncProgress(bar), ray=ray)
    _print_report(report, Path(os.path.realpath(path)))
    _print_nodes(report)
    _exit_if_failed([report])


@app.command()
def sync(project: ProjectOpt = None, ray: RayOpt = None) -> None:
    """Re-sync every folder ingested before (changes, deletions and ACL changes take effect now).

    A folder that has vanished is reported and its documents removed (ingest.keep_missing_roots keeps them);
    the other folders are synced all the same. Exit status 3 when any file or folder failed. Progress: as for
    `ingest`, per folder; --ray as for `ingest`.
    """
    proj = Project.open(project)
    with _progress() as bar:
        results = proj.sync(_RichSyncProgress(bar), ray=ray)
    for root, report in results:
        _print_report(report, root)
        _print_nodes(report)
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
        "span": span_json(a),
        "latency_ms": {k: round(v, 2) for k, v in a.latency_ms.items()},
    }


def _latency_table(lat: dict[str, float], width: int | None = None) -> Table:
    """Stage latencies as rows of names over values, as many stages to a row as fit ``width`` (the console's)."""
    cells = [(k, f"{v:.1f}") for k, v in lat.items()]
    cell = max((max(len(k), len(v)) for k, v in cells), default=1)
    fit = max(1, ((width or out.width) - 1) // (cell + 3))  # 3: a column's padding and rule
    rows = -(-len(cells) // fit)
    per_row = -(-len(cells) // rows) if cells else 1  # as even as the rows allow: 11 stages are 4 + 4 + 3
    t = Table(title="latency (ms)", show_header=False)
    for _ in range(min(per_row, len(cells))):
        t.add_column(justify="right", min_width=cell)
    for i in range(0, len(cells), per_row):
        row = cells[i:i + per_row]
        t.add_row(*(Text(k, style="bold") for k, _ in row), end_section=False)
        t.add_row(*(v for _, v in row), end_section=i + per_row < len(cells))
    return t


def _with_process_times(lat: dict[str, float], startup_ms: float | None) -> dict[str, float]:
    """Add ``startup`` (process start to command start) first and ``wall`` (process start to now) last."""
    wall_ms = process_age_ms()
    return {**({"startup": startup_ms} if startup_ms is not None else {}), **lat,
            **({"wall": wall_ms} if wall_ms is not None else {})}


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    user: UserOpt,
    groups: GroupsOpt = "",
    generator: Annotated[
        str | None,
        typer.Option("--generator", help="Override generator.kind: extractive (quote sources), llamacpp (the "
                     "local SmolLM2 model), openai (the OpenAI-compatible endpoint in ragtune.yaml) or tuned (the "
                     "fine-tuned generator generator.model names)."),
    ] = None,
    json_out: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Answer from the chunks USER may read, with numbered citations and a latency breakdown.

    Abstains ("no accessible source supports an answer") when nothing readable is relevant enough. With a
    generator, the answer streams on the terminal as it is written, then is replaced by the checked answer:
    a citation that names no source, or a source USER may not read, is removed and the answer is flagged.
    Piped output gets only the checked answer.

    Latency (ms): `startup` (process start to this command), `open_index`, `model_load` (embedder and
    generator), each retrieval stage, `answer`, `total` (retrieval + answer) and `wall` (process start to
    the answer: what you waited). A user or group that matches no ACL in the index but does in another letter
    case is warned about on stderr; names are case-sensitive.
    """
    startup_ms = process_age_ms()
    principal = _principal(user, groups)
    settings = load_settings(project)
    if generator is not None:
        try:
            settings = settings.model_copy(update={"generator": GeneratorSettings(
                **{**settings.generator.model_dump(), "kind": generator})})
        except ValidationError as exc:
            raise ConfigError(f"--generator {generator!r}: choose extractive, llamacpp or openai") from exc
    proj = Project(settings)
    streaming = not json_out and settings.generator.kind != "extractive"
    with audit_trail(proj, route="cli:ask", principal=principal, question=question) as trail, \
            token_stream(streaming, [out, err]) as on_token:
        answer = proj.ask(question, principal, on_token=on_token)
        trail.answered(answer)
    answer = replace(answer, latency_ms=_with_process_times(answer.latency_ms, startup_ms))
    _warn_near_misses(principal, proj.store.acl_tokens())  # after the timings: the index is open by now
    if json_out:
        out.print_json(json.dumps(_answer_dict(answer, principal)))
        return
    if answer.span is not None:
        out.print(f"Answer: {answer.span.text}", style="bold", markup=False, highlight=False)
        out.print(answer.text, markup=False, highlight=False)
    else:
        out.print(answer.text, style="bold", markup=False, highlight=False)
    out.print()
    for flag in answer.flags:
        err.print(f"[yellow]warning:[/yellow] {escape(flag)}")
    if answer.citations:
        out.print("Sources:")
        for c in answer.citations:
            out.print(f"  [{c.number}] {c.chunk.source_path} — {cited_place(c.chunk)}", markup=False,
                      highlight=False)
            out.print(f"      “{c.snippet[:200]}”", markup=False, highlight=False)
    out.print(_latency_table(answer.latency_ms))


def _hits_table(hits: list[Hit], width: int) -> Table:
    """One hit per two lines: its scores, then file name and section over the start of its text, both cut to
    ``width`` with an ellipsis rather than wrapped."""
    header = ("#", "fused", "bm25", "dense")
    rows = [(str(i), f"{h.score:.4f}", "-" if h.lexical_score is None else f"{h.lexical_score:.2f}",
             "-" if h.dense_score is None else f"{h.dense_score:.3f}") for i, h in enumerate(hits, start=1)]
    fixed = sum(max(len(name), *(len(r[j]) for r in rows)) for j, name in enumerate(header)) if rows else 20
    t = Table(show_header=True)
    for name in header:
        t.add_column(name, justify="right", no_wrap=True)
    # 16: the borders and padding of five columns; the rest is the text column's.
    t.add_column("source — section / text", no_wrap=True, overflow="ellipsis", max_width=max(20, width - fixed - 16))
    for row, h in zip(rows, hits, strict=True):
        where = Text(Path(h.chunk.source_path).name, style="bold")
        if h.chunk.section:
            where.append(f" — {h.chunk.section}", style="")
        where.append("\n" + " ".join(h.chunk.text.split())[:400], style="dim")
        t.add_row(*row, where)
    return t


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="The search query.")],
    user: UserOpt,
    groups: GroupsOpt = "",
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Number of hits.")] = 8,
    json_out: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Rank the chunks USER may read for QUERY, with their fused, lexical (BM25) and dense (cosine) scores.

    Each hit is two lines: file name and section, then the start of the chunk's text, cut to the terminal's
    width (`--json` has every field in full).
    """
    principal = _principal(user, groups)
    proj = Project.open(project)
    _warn_near_misses(principal, proj.store.acl_tokens())
    result = proj.search(query, principal, top_k)
    if json_out:
        out.print_json(json.dumps({"query": query, "hits": [_hit_dict(h) for h in result.hits],
                                   "latency_ms": result.latency_ms}))
        return
    if result.hits:
        out.print(_hits_table(result.hits, out.width))
    else:
        err.print(f"no chunk readable by {escape(principal.user)} matches; nothing to show")
    out.print(_latency_table(result.latency_ms))


app.command()(train)
app.command()(classify)
app.add_typer(models_app, name="models")
tune_app.command("reranker")(tune_reranker)
tune_app.command("reader")(tune_reader)
tune_app.command("generator")(tune_generator)
app.add_typer(tune_app, name="tune")
app.command("reindex")(reindex)


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
    proj = Project.open(project)
    principal = _principal(user, groups)
    if proj.settings.index_dir.is_dir():  # a classify-only pipeline may run where nothing was ingested
        _warn_near_misses(principal, proj.store.acl_tokens())
    with audit_trail(proj, route="cli:run", principal=principal, question=text) as trail:
        runner = PipelineRunner(spec, proj)
        runner.warm_up()  # model loading is start-up, not step latency
        result = runner.run(text, principal)
        trail.ran(result)
    if json_out:
        out.print_json(json.dumps(result.to_dict()))
        return
    for name, label in result.labels.items():
        out.print(f"{escape(name)}: [bold]{escape(label.label)}[/bold] ({label.probability:.2f})", highlight=False)
    for name, value in result.generated.items():
        out.print(f"{escape(name)}: {escape(json.dumps(value, ensure_ascii=False))}", highlight=False)
    if result.route is not None:
        out.print(f"route: [bold]{escape(result.route)}[/bold]", highlight=False)
    if result.answer is not None:
        out.print()
        out.print(result.answer.text, style="bold", markup=False, highlight=False)
        for c in result.answer.citations:
            out.print(f"  [{c.number}] {c.chunk.source_path} — {cited_place(c.chunk)}", markup=False,
                      highlight=False)
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
app.command("migrate")(migrate)
app.command("advise")(advise_guide)
app.add_typer(verify_app, name="verify")
app.add_typer(eval_app, name="eval")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.command("serve")(serve)
app.command("extract")(extract)


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
