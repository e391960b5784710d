"""``ragtune verify``: train the groundedness checker and score a sentence against evidence.

Register in ``ragtune/cli.py`` with ``app.add_typer(verify_app, name="verify")``; the functions are plain
Typer commands, so they can also be registered one by one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ragtune.errors import DataError, RagtuneError
from ragtune.verify.data import TEST_FRACTION, VALIDATION_FRACTION

if TYPE_CHECKING:
    from ragtune.tuning.registry import Registry

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

verify_app = typer.Typer(
    help="The groundedness checker: train it, and check whether evidence supports a sentence.",
    no_args_is_help=True,
)

ProjectOpt = Annotated[
    Path | None,
    typer.Option("--project", "-p", help="Project folder (default: found from the current folder upwards)."),
]


def _registry(project: Path | None) -> Registry:
    from ragtune.project import Project

    return Project.open(project).registry


class _Bar:
    """Training progress as a Rich bar with the latest loss."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def __call__(self, phase: str, step: int, total: int, metrics: dict[str, float]) -> None:
        if phase not in self.tasks:
            self.tasks[phase] = self.progress.add_task(phase, total=total, info="")
        info = " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        self.progress.update(self.tasks[phase], completed=step, total=total, info=info)


@verify_app.command("train")
def train_checker(
    data: Annotated[Path | None, typer.Option(
        "--data", "-d", help="Folder holding BEGIN TSV files (begin/*.tsv) and/or SciFact's original release "
                             "(scifact/original/). Default: the BEGIN and SciFact pairs packaged with ragtune "
                             "(licenses beside them).")] = None,
    name: Annotated[str, typer.Option("--name", "-n", help="Model name in the registry (a new version each "
                                                            "run).")] = "groundedness",
    epochs: Annotated[float | None, typer.Option(min=0.1, help="Training epochs (default: the tuned setting).")
                      ] = None,
    max_length: Annotated[int | None, typer.Option(min=32, max=512, help="Tokens per (sentence, evidence window) "
                                                                        "input (default: the tuned setting).")
                          ] = None,
    max_pairs: Annotated[int | None, typer.Option(min=10, help="Cap the training pairs (BEGIN kept first, SciFact "
                                                               "sampled) to bound training time.")] = None,
    validation: Annotated[float, typer.Option(
        min=0.05, max=0.5, help="Share of the BEGIN knowledge groups (after the test split) held out to fit the "
                                "combiner and threshold on."
    )] = VALIDATION_FRACTION,
    test: Annotated[float, typer.Option(
        min=0.0, max=0.5, help="Share of every source's groups held out from training and every choice, to report "
                               "AUROC on pairs the checker never saw (0: train on everything, no test figures)."
    )] = TEST_FRACTION,
    generic: Annotated[str, typer.Option(help="BEGIN 'Generic' responses: drop (default; they claim nothing) or "
                                              "unsupported.")] = "drop",
    seed: Annotated[int, typer.Option(help="Random seed for sampling, splits and training.")] = 0,
    project: ProjectOpt = None,
) -> None:
    """Fine-tune the groundedness checker (a MiniLM cross-encoder) and register a new version.

    Pairs come from BEGIN (Fully attributable = supported, Not fully attributable = unsupported, Generic
    dropped) and SciFact (SUPPORT rationales = supported; CONTRADICT rationales and other sentences of the
    same abstract = unsupported); both ship with ragtune, so --data is only needed for other data. The
    threshold is chosen on held-out BEGIN knowledge groups, and AUROC is reported on a test split. Takes
    about 12 minutes on 2 CPU cores with the packaged data (docs/benchmarks.md, 'training wall time'). Until
    a checker is trained, verify uses lexical overlap.
    """
    from ragtune.verify.train import train_groundedness

    registry = _registry(project)
    params: dict[str, Any] = {}
    if epochs is not None:
        params["epochs"] = epochs
    if max_length is not None:
        params["max_length"] = max_length
    bar = Progress(TextColumn("{task.description:10s}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=err,
                   disable=not sys.stderr.isatty())
    with bar:
        result = train_groundedness(registry, data, name=name, params=params, validation_fraction=validation,
                                    test_fraction=test, max_pairs=max_pairs, generic=generic, seed=seed,
                                    progress=_Bar(bar))
    v = result.validation
    counts = ", ".join(f"{src} {c['supported']}+/{c['unsupported']}-" for src, c in result.train_counts.items())
    source = "the packaged pairs" if data is None else escape(str(data))
    out.print(f"[green]registered {escape(name)} v{result.card.version}[/green] in {result.seconds:.0f} s; trained "
              f"on {source}: {counts}", highlight=False)
    if v:
        out.print(f"validation ({v['examples']} BEGIN pairs): AUROC {v['auroc']:.3f}, balanced accuracy "
                  f"{v['balanced_accuracy']:.3f} at threshold {v['threshold']:.3f}", highlight=False)
    else:
        out.print("no validation pairs with both labels: threshold left at 0.5", highlight=False)
    for family, figures in result.test.items():
        c = figures["checker"]
        line = (f"test ({c['examples']} {escape(family)} pairs never trained on): AUROC {c['auroc']:.3f}, balanced "
                f"accuracy {c['balanced_accuracy']:.3f}")
        if "lexical" in figures:
            line += f"; lexical overlap AUROC {figures['lexical']['auroc']:.3f}"
        out.print(line, highlight=False)


@verify_app.command("check")
def check(
    sentence: Annotated[str, typer.Argument(help="The sentence (claim) to check.")],
    evidence: Annotated[str | None, typer.Option("--evidence", "-e", help="The evidence text.")] = None,
    evidence_file: Annotated[Path | None, typer.Option("--evidence-file", help="Read the evidence from this "
                                                                               "UTF-8 file.")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Registered checker name. With no checker named "
                                                             "'groundedness' (the default) registered, lexical "
                                                             "overlap scores the pair.")] = "groundedness",
    version: Annotated[int | None, typer.Option(help="Model version (default: latest).")] = None,
    threshold: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Supported at or above this score "
                                                                         "(default: the scorer's own).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Score how well the evidence supports the sentence, and the verdict at the threshold.

    Uses the trained checker (P(supported)) when one is registered; otherwise lexical overlap (the share of
    the sentence's content words found in the evidence), with a threshold chosen on packaged BEGIN data. The
    output names the scorer.
    """
    from ragtune.verify.default import load_checker

    if (evidence is None) == (evidence_file is None):
        raise RagtuneError("give the evidence with exactly one of --evidence TEXT or --evidence-file FILE")
    if evidence_file is not None:
        try:
            evidence = evidence_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read the evidence file {evidence_file}: {exc}") from exc
    assert evidence is not None
    if not sentence.strip() or not evidence.strip():
        raise DataError("the sentence and the evidence must both be non-empty")
    checker = load_checker(_registry(project), model, version)
    t = checker.threshold if threshold is None else threshold
    p = float(checker.score([(sentence, evidence)])[0])
    verdict = "supported" if p >= t else "unsupported"
    if json_out:
        out.print_json(json.dumps({"score": p, "probability": p if checker.trained else None, "threshold": t,
                                   "verdict": verdict, "model": checker.name,
                                   "scorer": "checker" if checker.trained else "lexical"}))
        return
    color = "green" if verdict == "supported" else "red"
    what = "P(supported)" if checker.trained else "overlap"
    out.print(f"[{color}]{verdict}[/{color}] {what} {p:.3f} (threshold {t:.3f}; scorer: {escape(checker.name)})",
              highlight=False)
