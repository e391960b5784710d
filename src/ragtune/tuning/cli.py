"""The tuning commands: ``train`` and ``classify`` (plain Typer commands) and the ``models`` group.

Register in ``ragtune/cli.py`` with ``app.command()(train)``, ``app.command()(classify)`` and
``app.add_typer(models_app, name="models")``.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
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

from ragtune.cli_common import JsonOpt, ProjectOpt, err, out
from ragtune.errors import ConfigError, RagtuneError
from ragtune.project import Project

models_app = typer.Typer(help="List, inspect and delete trained classifiers in the project's registry.",
                          no_args_is_help=True)



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


def _method_params(params: str) -> dict[str, Any]:
    """``--params``: a JSON object of method settings."""
    try:
        settings = json.loads(params)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--params is not valid JSON ({exc.msg} at character {exc.pos}): {params}") from exc
    if not isinstance(settings, dict):
        raise ConfigError(f"--params must be a JSON object of settings, got: {params}")
    return settings


def _show_audit(audit: Any, data: Any) -> None:
    from ragtune.tuning.data import encoding_name

    if data.encoding != "utf-8":
        err.print(f"note: {Path(data.source.split('#')[0]).name} is not UTF-8; read it as "
                  f"{encoding_name(data.encoding)}", markup=False, highlight=False)
    out.print(audit.to_markdown(data.texts, limit=5), markup=False, highlight=False)


def _show_method(m: str, reason: str) -> None:
    out.print(f"[bold]method: {m}[/bold] — {reason}")


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
    from ragtune.tuning.train import PlainProgress, train_classifier

    proj = Project.open(project)
    settings = _method_params(params)
    with _train_progress() as bar:
        # Piped or logged (no bar): a plain line per phase and every 10 s, so a long run is never silent.
        progress = PlainProgress(lambda line: err.print(line, markup=False, highlight=False)) if bar.disable \
            else _RichTrainProgress(bar)
        result = train_classifier(
            proj.registry, data, name, text_col=text_col, label_col=label_col, method=method,
            test_path=test, test_size=test_size, seed=seed, params={**settings, "threshold": threshold},
            label_names=label_names,
            progress=progress, on_audit=_show_audit, on_method=_show_method, embedder=proj.embedder,
        )
    m = result.metrics
    out.print(
        f"[green]registered {name} v{result.card.version}[/green] ({result.method}): accuracy {m['accuracy']:.4f}, "
        f"macro-F1 {m['macro_f1']:.4f}, ECE {m['ece']:.4f}, abstain rate {m['abstain_rate']:.3f} at "
        f"{m['threshold']:.2f}\nreport: {result.report_html}"
    )


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

    if not model:
        raise RagtuneError("--model is required: the name of a trained model (see `ragtune models list`)")
    proj = Project.open(project)
    clf = proj.classifier(model, version)
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

    cards = Project.open(project).registry.list()
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

    reg = Project.open(project).registry
    card = reg.card(name, version)
    out.print_json(json.dumps({**asdict(card), "path": str(reg.path(name, card.version)),
                               "report": str(reg.path(name, card.version) / "report.html")}))


@models_app.command("delete")
def models_delete(name: Annotated[str, typer.Argument(help="Model name.")],
                  version: Annotated[int | None, typer.Option(help="Only this version (default: all).")] = None,
                  yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking (needed when not "
                                                    "at a terminal).")] = False,
                  project: ProjectOpt = None) -> None:
    """Delete a model (every version, or one). Asks first unless --yes is given."""
    registry = Project.open(project).registry
    card = registry.card(name, version)  # a missing model or version is an error before anything is asked
    what = (f"version {version} of {name}" if version is not None
            else f"every version of {name} (latest v{card.version})")
    if not yes:
        if not sys.stdin.isatty():
            raise RagtuneError(f"deleting {what} needs confirmation: pass --yes")
        if not typer.confirm(f"delete {what}?", default=False):
            raise typer.Exit(1)
    gone = registry.delete(name, version)
    out.print(f"deleted {name} version(s) {', '.join(map(str, gone))}", markup=False)

