"""The tuning commands: ``train`` and ``classify`` (plain Typer commands) and the ``models`` group
(``list``, ``show``, ``promote``, ``delete``).

Register in ``ragtune/cli.py`` with ``app.command()(train)``, ``app.command()(classify)`` and
``app.add_typer(models_app, name="models")``.
"""

from __future__ import annotations

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

models_app = typer.Typer(help="List, inspect, promote and delete trained classifiers in the project's registry. "
                               "A model name resolves to its promoted version when one is set "
                               "(`ragtune models promote NAME VERSION`), else to its latest.",
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
    from ragtune.tuning.render import audit_view

    if data.encoding != "utf-8":
        err.print(f"note: {Path(data.source.split('#')[0]).name} is not UTF-8; read it as "
                  f"{encoding_name(data.encoding)}", markup=False, highlight=False)
    out.print(audit_view(audit, limit=5))


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
    test: Annotated[Path | None, typer.Option(help="Test file (same columns); default: hold out --test-size. "
                                                   "The audit reports its overlap with the training file.")] = None,
    test_size: Annotated[float, typer.Option(min=0.05, max=0.5, help="Share held out for testing, stratified by "
                                                                     "label, by duplicate group: copies of a text "
                                                                     "(exact or near) stay on one side.")] = 0.2,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Abstain below this calibrated probability "
                                                                   "(classify answers needs_review).")] = 0.5,
    seed: Annotated[int, typer.Option(help="Random seed for splits and training.")] = 0,
    project: ProjectOpt = None,
) -> None:
    """Train a calibrated classifier from labelled examples and register a new version.

    A label audit of the whole file runs first (duplicates, conflicting labels, leakage into --test, suspected
    label errors, each with the file's line numbers; blocking problems stop it). Without --test, the test set
    is held out by duplicate group: copies of a text (exact or near duplicates) stay on one side. Then fit,
    evaluation, the top confusions with example texts, and a report (Markdown + HTML) next to the model. A
    promoted name keeps serving its promoted version until the new one is promoted.
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
    from ragtune.tuning.render import confusions_view

    m = result.metrics
    out.print(
        f"[green]registered {name} v{result.card.version}[/green] ({result.method}): accuracy {m['accuracy']:.4f}, "
        f"macro-F1 {m['macro_f1']:.4f}, ECE {m['ece']:.4f}, abstain rate {m['abstain_rate']:.3f} at "
        f"{m['threshold']:.2f}"
    )
    out.print(confusions_view(m.get("top_confusions", [])))
    promoted = proj.registry.promoted(name)
    if promoted is not None and promoted != result.card.version:
        out.print(f"[yellow]{name} still resolves to its promoted v{promoted}[/yellow]; use the new one with "
                  f"`ragtune models promote {name} {result.card.version}`")
    out.print("report:", Text(str(result.report_html)))


def classify(
    text: Annotated[str | None, typer.Argument(help="Text to classify (or use --input).")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model name.")] = "",
    version: Annotated[int | None, typer.Option(help="Model version (default: the promoted version, else the "
                                                     "latest).")] = None,
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


def _version_cell(promoted: int | None, version: int, latest: int) -> str:
    """``3``, or ``1 promoted, latest 3`` when the name is pinned to an older version."""
    if promoted != version:
        return str(version)
    return f"{version} promoted" + (f", latest {latest}" if latest != version else "")


def _metric(metrics: dict[str, Any], key: str) -> str:
    """A classifier metric to four places, or a dash for a model that has none (an embedder)."""
    value = metrics.get(key)
    return f"{value:.4f}" if isinstance(value, int | float) else "–"


@models_app.command("list")
def models_list(json_out: JsonOpt = False, project: ProjectOpt = None) -> None:
    """Every model with the version its name resolves to (its promoted version, else its latest), method,
    accuracy and creation time."""
    from ragtune.tuning.render import local_time

    registry = Project.open(project).registry
    rows = []
    for card in registry.list():
        try:
            promoted = registry.promoted(card.name)
        except RagtuneError:
            promoted = None
        rows.append((card, promoted, registry.versions(card.name)[-1]))
    if json_out:
        out.print_json(json.dumps([{**asdict(c), "promoted": p, "latest": latest} for c, p, latest in rows]))
        return
    if not rows:
        out.print("no models yet: train one with `ragtune train DATA --name NAME`")
        return
    t = Table(show_header=True)
    for col in ("name", "version", "method", "classes", "accuracy", "macro-F1", "created"):
        t.add_column(col)
    for c, promoted, latest in rows:
        t.add_row(Text(c.name), _version_cell(promoted, c.version, latest), c.method, str(len(c.classes)),
                  _metric(c.metrics, "accuracy"), _metric(c.metrics, "macro_f1"),
                  local_time(c.created)[:16].replace("T", " "))
    out.print(t)


@models_app.command("show")
def models_show(name: Annotated[str, typer.Argument(help="Model name.")],
                version: Annotated[int | None, typer.Option(help="Version (default: the promoted one, else the "
                                                                 "latest).")] = None,
                json_out: Annotated[bool, typer.Option("--json", help="Print the raw card as JSON (created as a "
                                                       "Unix timestamp, plus created_local).")] = False,
                project: ProjectOpt = None) -> None:
    """The model card: version and whether it is promoted, method, creation time, classes, data, test metrics,
    calibration, settings, folder and report."""
    from ragtune.tuning.render import card_view, local_time
    from ragtune.tuning.report import calibration_line

    reg = Project.open(project).registry
    card = reg.card(name, version)
    folder = reg.path(name, card.version)
    promoted, latest = reg.promoted(name), reg.versions(name)[-1]
    if json_out:
        out.print_json(json.dumps({**asdict(card), "created_local": local_time(card.created), "promoted": promoted,
                                   "latest": latest, "path": str(folder), "report": str(folder / "report.html")},
                                  default=str))
        return
    data = asdict(card)
    view = card_view(data, promoted, latest, calibration_line(data))
    view.add_row("folder", Text(str(folder)))
    view.add_row("report", Text(str(folder / "report.html")))
    out.print(view)


@models_app.command("promote")
def models_promote(name: Annotated[str, typer.Argument(help="Model name.")],
                   version: Annotated[int | None, typer.Argument(help="The version NAME is to resolve to.")] = None,
                   clear: Annotated[bool, typer.Option("--clear", help="Drop the promotion: NAME follows its latest "
                                                       "version again.")] = False,
                   project: ProjectOpt = None) -> None:
    """Make NAME resolve to VERSION (`classify -m NAME`, pipelines without `version:`), whatever is trained later.

    Use it as the production pointer: train new versions, check them with `--version N`, then promote one. A
    pipeline step can also pin a version of its own (`classify: {model: NAME, version: 3}`).
    """
    registry = Project.open(project).registry
    if clear == (version is not None):
        raise RagtuneError("give a VERSION to promote, or --clear to follow the latest version again "
                           f"(e.g. `ragtune models promote {name} 2`)")
    before = registry.promote(name, None if clear else version)
    latest = registry.versions(name)[-1]
    was = f" (was v{before})" if before is not None else ""
    if clear:
        out.print(f"{name} follows its latest version again: v{latest}{was}", markup=False)
    else:
        out.print(f"{name} now resolves to v{version}{was}; latest is v{latest}", markup=False)


@models_app.command("delete")
def models_delete(name: Annotated[str, typer.Argument(help="Model name.")],
                  version: Annotated[int | None, typer.Option(help="Only this version (default: all).")] = None,
                  yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking (needed when not "
                                                    "at a terminal).")] = False,
                  project: ProjectOpt = None) -> None:
    """Delete a model (every version, or one). Asks first unless --yes is given, and warns when the version is
    the promoted one (NAME then follows its latest version)."""
    registry = Project.open(project).registry
    registry.card(name, version)  # a missing model or version is an error before anything is asked
    promoted = registry.promoted(name)
    what = (f"version {version} of {name}" if version is not None
            else f"every version of {name} (latest v{registry.versions(name)[-1]})")
    warning = ""
    if promoted is not None and version == promoted:
        left = [v for v in registry.versions(name) if v != version]
        then = f"follow its latest version, v{left[-1]}" if left else "no longer exist"
        warning = f"v{version} is the promoted version of {name}: `{name}` will {then}"
    if not yes:
        if not sys.stdin.isatty():
            raise RagtuneError(f"deleting {what} needs confirmation: pass --yes" + (f" ({warning})" if warning else ""))
        if warning:
            err.print(f"warning: {warning}", markup=False)
        if not typer.confirm(f"delete {what}?", default=False):
            raise typer.Exit(1)
    gone = registry.delete(name, version)
    out.print(f"deleted {name} version(s) {', '.join(map(str, gone))}" + (f"; {warning}" if warning else ""),
              markup=False)
