"""``ragtune advise``: the decision guide from prompts, flags or a YAML answers file.

Register it on an app with ``app.command("advise")(advise_guide)``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.prompt import Confirm, IntPrompt, Prompt

from ragtune.advisor.guide import (
    QUESTIONS,
    GuideAnswers,
    KnowledgeChange,
    Task,
    next_steps,
    parse_answers,
    read_answers_file,
    recommend,
    render,
)
from ragtune.advisor.report import Evidence, write_evidence_report
from ragtune.advisor.run import gather_evidence
from ragtune.errors import ConfigError

_FLAGS = {
    "task": "--task", "knowledge_change": "--knowledge-change", "citations": "--citations/--no-citations",
    "structured_output": "--structured-output/--no-structured-output", "examples_per_class": "--examples-per-class",
    "fast_iteration": "--fast-iteration/--no-fast-iteration", "latency_ms": "--latency-ms",
    "regulated": "--regulated/--no-regulated",
}


def _interactive() -> bool:
    """Whether to ask for missing answers (stdin is a terminal). Tests replace this function."""
    return sys.stdin.isatty()


def _ask(key: str) -> Any:
    """Prompt for one answer until it is valid. Prompts go to stderr and nothing is echoed to stdout, so
    ``--json`` output stays clean."""
    q = next(q for q in QUESTIONS if q.key == key)
    console = Console(stderr=True)
    if key in ("task", "knowledge_change"):
        kind = Task if key == "task" else KnowledgeChange
        return Prompt.ask(q.text, choices=[k.value for k in kind], console=console)
    if key in ("examples_per_class", "latency_ms"):
        text = q.text + (" (0 = none)" if key == "examples_per_class" else " (0 = no strict budget)")
        while True:
            value = IntPrompt.ask(text, console=console)
            if value >= 0:
                return value
            console.print("[prompt.invalid]give a whole number of 0 or more")
    return Confirm.ask(q.text, console=console)


def collect_answers(answers_file: Path | None, flags: dict[str, Any]) -> dict[str, Any]:
    """Merge the answers file, then flags (which win), then prompts for the rest when interactive."""
    data: dict[str, Any] = {}
    if answers_file is not None:
        data.update({str(k).replace("-", "_"): v for k, v in read_answers_file(answers_file).items()})
    data.update({k: v for k, v in flags.items() if v is not None})
    missing = [q.key for q in QUESTIONS if q.key not in data]
    if missing and not _interactive():
        raise ConfigError(
            f"missing answer(s): {', '.join(missing)}; give them as flags ("
            + ", ".join(_FLAGS[k] for k in missing)
            + ") or in --answers FILE.yaml (see examples/advisor/), or run in a terminal to be asked")
    for key in missing:
        data[key] = _ask(key)
    return data


def advise_guide(
    answers: Annotated[Path | None, typer.Option(
        "--answers", metavar="FILE.yaml", help="YAML file of answers (see examples/advisor/); flags override it.")
    ] = None,
    task: Annotated[Task | None, typer.Option(
        "--task", case_sensitive=False, help="The business task: answer generation, classification (incl. "
        "routing), answers plus a label (answer-and-classification), extraction, summarization or an agent.")
    ] = None,
    knowledge_change: Annotated[KnowledgeChange | None, typer.Option(
        "--knowledge-change", case_sensitive=False, help="How often the knowledge the task relies on changes.")
    ] = None,
    citations: Annotated[bool | None, typer.Option(
        "--citations/--no-citations", help="Whether answers must cite their sources (source traceability).")
    ] = None,
    structured_output: Annotated[bool | None, typer.Option(
        "--structured-output/--no-structured-output", help="Whether a consistent style or structured output "
        "(a schema, a label set, a house tone) is required.")
    ] = None,
    examples_per_class: Annotated[int | None, typer.Option(
        "--examples-per-class", min=0, metavar="N", help="Labelled examples you have per class (0 = none).")
    ] = None,
    fast_iteration: Annotated[bool | None, typer.Option(
        "--fast-iteration/--no-fast-iteration", help="Whether changes must reach users within hours rather than "
        "after a training run.")
    ] = None,
    latency_ms: Annotated[int | None, typer.Option(
        "--latency-ms", min=0, metavar="N", help="Latency budget per request in milliseconds (0 = no strict "
        "budget).")
    ] = None,
    regulated: Annotated[bool | None, typer.Option(
        "--regulated/--no-regulated", help="Whether regulatory constraints apply (audit trails, data deletion, "
        "model risk management).")
    ] = None,
    report: Annotated[Path | None, typer.Option(
        "--report", metavar="FILE.md", help="Also write the recommendation as Markdown to this file.")
    ] = None,
    docs: Annotated[Path | None, typer.Option(
        "--docs", metavar="PATH", help="Evidence: the documents a RAG system would search (audited; with "
        "--questions, ingested into a private temporary index and asked).")
    ] = None,
    questions: Annotated[Path | None, typer.Option(
        "--questions", metavar="FILE", help="Evidence: questions to ask the documents: .txt (one per line) or "
        ".csv with a `question` column and an optional `source` column (the file that answers it).")
    ] = None,
    labels: Annotated[Path | None, typer.Option(
        "--labels", metavar="FILE", help="Evidence: labelled examples (CSV/TSV/JSONL) for the classification "
        "bake-off and the label audit.")
    ] = None,
    text_col: Annotated[str, typer.Option("--text-col", help="Text column of --labels.")] = "text",
    label_col: Annotated[str, typer.Option("--label-col", help="Label column of --labels.")] = "label",
    budget: Annotated[float, typer.Option(
        "--budget", metavar="SECONDS", help="Time budget of the bake-offs; they stop adding work when it runs "
        "out and say what they skipped.")
    ] = 180.0,
    report_dir: Annotated[Path, typer.Option(
        "--report-dir", metavar="DIR", help="Evidence: where report.md, report.html, evidence.json and the "
        "bake-off plot are written.")
    ] = Path("advisor-report"),
    project: Annotated[Path | None, typer.Option(
        "--project", "-p", help="An ingested ragtune project whose sync log gives the measured change rate of "
        "--docs.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the recommendation as JSON instead of tables.")
    ] = False,
) -> None:
    """Recommend RAG, fine-tuning or a hybrid: from the decision guide, or from evidence on your own data.

    Decision guide: answers come from --answers FILE.yaml, from flags (which override the file), and, in a
    terminal, from prompts for anything still missing; without a terminal every answer must be given. Prints
    the winner, a table of how each answer scored each architecture (strong 2, moderate 1, weak 0; the task
    counts twice; no labelled examples rules out fine-tuning and hybrid; ties go to the simpler system: RAG,
    fine-tuning, hybrid), the common mistakes that apply, the ragtune commands to run next and a pipeline YAML
    to start from.

    Evidence (--docs with --questions, and/or --labels): audits the documents and labels, runs a bake-off of
    the candidates within --budget seconds, and recommends from the measurements; writes a Markdown + HTML
    report to --report-dir. Guide answers given as well are shown beside the evidence. See docs/advisor.md.
    """
    flags = {"task": task, "knowledge_change": knowledge_change, "citations": citations,
             "structured_output": structured_output, "examples_per_class": examples_per_class,
             "fast_iteration": fast_iteration, "latency_ms": latency_ms, "regulated": regulated}
    if docs is not None or questions is not None or labels is not None:
        _advise_from_evidence(docs, questions, labels, text_col, label_col, budget, report_dir, project,
                              answers, flags, json_out)
        return
    source = str(answers) if answers is not None else "answers"
    parsed = parse_answers(collect_answers(answers, flags), source)
    rec = recommend(parsed)
    if report is not None:
        report.write_text(rec.to_markdown(), encoding="utf-8")
    if json_out:
        typer.echo(json.dumps({"answers": parsed.model_dump(mode="json"), **rec.to_dict()}, indent=2))
        return
    render(rec, Console(soft_wrap=False))
    if report is not None:
        typer.echo(f"report: {report}")


def _inferred_answers(evidence: Evidence) -> GuideAnswers:
    """Guide answers read off the data, for the next steps and the starting pipeline of an evidence run."""
    if evidence.labels is not None and evidence.qa is not None:
        task = Task.ANSWER_AND_CLASSIFICATION
    elif evidence.labels is not None:
        task = Task.CLASSIFICATION
    else:
        task = Task.ANSWER_GENERATION
    weekly = evidence.corpus is not None and evidence.corpus.knowledge_changes_weekly
    per_class = min(evidence.label_audit.class_counts.values()) if evidence.label_audit is not None else 0
    return parse_answers({
        "task": task, "knowledge_change": KnowledgeChange.WEEKLY if weekly else KnowledgeChange.MONTHLY,
        "citations": evidence.qa is not None, "structured_output": False, "examples_per_class": per_class,
        "fast_iteration": False, "latency_ms": 0, "regulated": False,
    }, "the data")


def _advise_from_evidence(docs: Path | None, questions: Path | None, labels: Path | None, text_col: str,
                          label_col: str, budget: float, report_dir: Path, project: Path | None,
                          answers_file: Path | None, flags: dict[str, Any], json_out: bool) -> None:
    err = Console(stderr=True)
    index_dir = None
    if project is not None:
        from ragtune.config import load_settings

        index_dir = load_settings(project).index_dir
    guide = None
    given = {k: v for k, v in flags.items() if v is not None}
    if answers_file is not None or given:  # never prompt in an evidence run: it may be automated
        data = dict(read_answers_file(answers_file)) if answers_file is not None else {}
        data.update(given)
        missing = [q.key for q in QUESTIONS if q.key not in data]
        if missing:
            raise ConfigError(f"guide answers are incomplete (missing: {', '.join(missing)}); give all of them "
                              "with the evidence options, or none")
        guide = recommend(parse_answers(data, str(answers_file or "flags")))
    with err.status("gathering evidence…") as status:
        evidence = gather_evidence(docs=docs, questions=questions, labels=labels, text_col=text_col,
                                   label_col=label_col, budget_s=budget, index_dir=index_dir,
                                   tick=lambda msg: status.update(msg))
    winner = evidence.decision.winner
    steps, pipeline, notes = next_steps(winner, _inferred_answers(evidence))
    steps_md = "\n".join(f"1. `{s.command}` — {s.why}" for s in steps) + "\n\nA pipeline to start from:\n\n" \
        + "```yaml\n" + pipeline + "```" + "".join(f"\n\n> {n}" for n in notes)
    md, html = write_evidence_report(report_dir, evidence, guide.to_markdown() if guide else None, steps_md)
    if json_out:
        out = evidence.to_dict()
        out["guide"] = guide.to_dict() if guide else None
        out["report"] = {"markdown": str(md), "html": str(html)}
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    console = Console()
    console.print(f"Recommendation from the evidence: [bold]{winner}[/bold]")
    for r in evidence.decision.reasons:
        console.print(f"  • {escape(r)}", highlight=False)
    for w in evidence.decision.warnings:
        console.print(f"  [yellow]![/yellow] {escape(w)}", highlight=False)
    if guide is not None and guide.winner != winner:
        console.print(f"The decision guide's answers point to [bold]{guide.winner}[/bold]; the measurements on "
                      f"your data point to [bold]{winner}[/bold]. The report shows both.")
    console.print(f"report: {escape(str(html))} (and report.md, evidence.json)")
