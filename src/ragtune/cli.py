"""The ``ragtune`` command. Errors a user can cause print as one line on stderr and exit with status 1."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
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


models_app = typer.Typer(help="List, inspect and delete trained classifiers in the project's registry.",
                          no_args_is_help=True)
app.add_typer(models_app, name="models")


class _RichTrainProgress:
    """One bar per training phase (embed, fit, train ...), showing the latest loss."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def __call__(self, phase: str, step: int, total: int, metrics: dict[str, float]) -> None:
        if phase not in self.tasks:
            self.tasks[phase] = self.progress.add_task(phase, total=total, chunks="", rate="")
        info = " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        self.progress.update(self.tasks[phase], completed=step, total=total, rate=info)


def _train_progress() -> Progress:
    return Progress(
        TextColumn("{task.description:10s}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err,
        disable=not err.is_terminal and not sys.stderr.isatty(),
    )


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="Labelled examples: CSV, TSV or JSONL.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Model name in the registry (a new version each run).")],
    text_col: Annotated[str, typer.Option(help="Column holding the text.")] = "text",
    label_col: Annotated[str, typer.Option(help="Column holding the label.")] = "label",
    method: Annotated[str, typer.Option(help="auto | head | setfit | finetune | ensemble. auto picks from "
                                             "examples per class and says why; ensemble averages several "
                                             "models (default: two finetune seeds + head), more accurate and "
                                             "slower.")] = "auto",
    params: Annotated[str, typer.Option(help='Method settings as JSON, e.g. \'{"epochs": 5}\' for finetune or '
                                             '\'{"members": [{"method": "finetune", "head": "cosine"}, '
                                             '{"method": "head"}]}\' for ensemble.')] = "{}",
    label_names: Annotated[bool, typer.Option("--label-names", help="Also train on each label's name as an "
                                              "example (card_arrival -> 'card arrival'); helps with few "
                                              "examples per class when names are meaningful.")] = False,
    test: Annotated[Path | None, typer.Option(help="Test file (same columns); default: hold out --test-size.")] = None,
    test_size: Annotated[float, typer.Option(min=0.05, max=0.5, help="Share held out for testing.")] = 0.2,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Abstain below this calibrated probability "
                                                                   "(classify answers needs_review).")] = 0.5,
    seed: Annotated[int, typer.Option(help="Random seed for splits and training.")] = 0,
    project: ProjectOpt = None,
) -> None:
    """Train a calibrated classifier from labelled examples and register a new version.

    A label audit runs first (blocking problems stop it); then fit, evaluation on held-out data, and a
    report (Markdown + HTML) next to the model.
    """
    from ragtune.tuning.data import encoding_name
    from ragtune.tuning.train import PlainProgress, train_classifier

    proj = Project.open(project)
    try:
        settings = json.loads(params)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--params is not valid JSON ({exc.msg} at character {exc.pos}): {params}") from exc
    if not isinstance(settings, dict):
        raise ConfigError(f"--params must be a JSON object of settings, got: {params}")

    def show_audit(audit: Any, data: Any) -> None:
        if data.encoding != "utf-8":
            err.print(f"note: {Path(data.source.split('#')[0]).name} is not UTF-8; read it as "
                      f"{encoding_name(data.encoding)}", markup=False, highlight=False)
        out.print(audit.to_markdown(data.texts, limit=5), markup=False, highlight=False)

    def show_method(m: str, reason: str) -> None:
        out.print(f"[bold]method: {m}[/bold] — {reason}")

    with _train_progress() as bar:
        # Piped or logged (no bar): a plain line per phase and every 10 s, so a long run is never silent.
        progress = PlainProgress(lambda line: err.print(line, markup=False, highlight=False)) if bar.disable \
            else _RichTrainProgress(bar)
        result = train_classifier(
            proj.settings.models_dir, data, name, text_col=text_col, label_col=label_col, method=method,
            test_path=test, test_size=test_size, seed=seed, params={**settings, "threshold": threshold},
            label_names=label_names,
            progress=progress, on_audit=show_audit, on_method=show_method,
        )
    m = result.metrics
    out.print(
        f"[green]registered {name} v{result.card.version}[/green] ({result.method}): accuracy {m['accuracy']:.4f}, "
        f"macro-F1 {m['macro_f1']:.4f}, ECE {m['ece']:.4f}, abstain rate {m['abstain_rate']:.3f} at "
        f"{m['threshold']:.2f}\nreport: {result.report_html}"
    )


@app.command()
def classify(
    text: Annotated[str | None, typer.Argument(help="Text to classify (or use --input).")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model name.")] = "",
    version: Annotated[int | None, typer.Option(help="Model version (default: latest).")] = None,
    input_file: Annotated[Path | None, typer.Option("--input", help="CSV/JSONL of texts to classify.")] = None,
    output: Annotated[Path | None, typer.Option(help="Where to write the batch CSV (input columns + "
                                                      "predicted_label, probability).")] = None,
    text_col: Annotated[str, typer.Option(help="Text column of --input.")] = "text",
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Show the k most probable labels.")] = 1,
    threshold: Annotated[float | None, typer.Option(help="Override the model's abstain threshold.")] = None,
    json_out: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Classify one text, or a file in batch. Below the abstain threshold the label is needs_review."""
    from ragtune.tuning.classify import classify_file, classify_texts
    from ragtune.tuning.registry import Registry

    if not model:
        raise RagtuneError("--model is required: the name of a trained model (see `ragtune models list`)")
    proj = Project.open(project)
    clf = Registry(proj.settings.models_dir).load(model, version)
    if input_file is not None:
        if output is None:
            raise RagtuneError("--output is required with --input (the CSV to write)")
        with _train_progress() as bar:
            n = classify_file(clf, input_file, output, text_col, threshold, _RichTrainProgress(bar))
        out.print(f"classified {n} rows → {output}")
        return
    if not text or not text.strip():
        raise RagtuneError("give a text to classify, or --input FILE --output OUT.csv")
    result = classify_texts(clf, [text], top_k, threshold)[0]
    if json_out:
        out.print_json(json.dumps(result))
        return
    out.print(f"[bold]{escape(str(result['label']))}[/bold] ({result['probability']:.3f})")
    if top_k > 1:
        for alt in result["top_k"]:
            out.print(f"  {alt['label']:30s} {alt['probability']:.3f}", markup=False)


@models_app.command("list")
def models_list(json_out: JsonOpt = False, project: ProjectOpt = None) -> None:
    """Every model with its latest version, method, accuracy and creation time."""
    from ragtune.tuning.registry import Registry

    cards = Registry(Project.open(project).settings.models_dir).list()
    if json_out:
        out.print_json(json.dumps([asdict(c) for c in cards]))
        return
    if not cards:
        out.print("no models yet: train one with `ragtune train DATA --name NAME`")
        return
    t = Table(show_header=True)
    for col in ("name", "version", "method", "classes", "accuracy", "macro-F1", "created"):
        t.add_column(col)
    for c in cards:
        created = dt.datetime.fromtimestamp(c.created).strftime("%Y-%m-%d %H:%M")
        t.add_row(Text(c.name), str(c.version), c.method, str(len(c.classes)), f"{c.metrics.get('accuracy', 0):.4f}",
                  f"{c.metrics.get('macro_f1', 0):.4f}", created)
    out.print(t)


@models_app.command("show")
def models_show(name: Annotated[str, typer.Argument(help="Model name.")],
                version: Annotated[int | None, typer.Option(help="Version (default: latest).")] = None,
                project: ProjectOpt = None) -> None:
    """The model card: method, data hash, label map, metrics, parameters, report path."""
    from ragtune.tuning.registry import Registry

    reg = Registry(Project.open(project).settings.models_dir)
    card = reg.card(name, version)
    out.print_json(json.dumps({**asdict(card), "path": str(reg.path(name, card.version)),
                               "report": str(reg.path(name, card.version) / "report.html")}))


@models_app.command("delete")
def models_delete(name: Annotated[str, typer.Argument(help="Model name.")],
                  version: Annotated[int | None, typer.Option(help="Only this version (default: all).")] = None,
                  project: ProjectOpt = None) -> None:
    """Delete a model (every version, or one)."""
    from ragtune.tuning.registry import Registry

    gone = Registry(Project.open(project).settings.models_dir).delete(name, version)
    out.print(f"deleted {name} version(s) {', '.join(map(str, gone))}", markup=False)


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
