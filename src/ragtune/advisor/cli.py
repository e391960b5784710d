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

from ragtune.advisor.answers import collect_answers, evidence_run_answers, inferred_answers, parse_answers
from ragtune.advisor.guide import KnowledgeChange, Task, next_steps, recommend
from ragtune.advisor.render import (
    evidence_json,
    guide_answers_markdown,
    next_steps_markdown,
    render,
    render_evidence,
)


def _interactive() -> bool:
    """Whether to ask for missing answers (stdin is a terminal). Tests replace this function."""
    return sys.stdin.isatty()


# Over 60 lines only because Typer declares its 21 options in the signature; the body is 15 lines.
def advise_guide(
    answers: Annotated[Path | None, typer.Option(
        "--answers", metavar="FILE.yaml", help="YAML file of answers (see examples/advisor/); flags override it. "
        "An unknown key stops the command, naming the closest valid key.")
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
    examples: Annotated[Path | None, typer.Option(
        "--examples", metavar="FILE.jsonl", help="Evidence: input/output examples, chat JSONL ({\"messages\": "
        "[...]} per line, the last message the output) or {\"prompt\", \"completion\"}, for the generation "
        "bake-off: prompting, RAG with prompting (with --docs) and a fine-tuned generator on held-out examples.")
    ] = None,
    schema: Annotated[Path | None, typer.Option(
        "--schema", metavar="FILE.json", help="Evidence: a JSON Schema the outputs of --examples must follow; "
        "every candidate decodes constrained to it, and format validity is checked against it.")
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
        "--docs (it needs 2+ syncs spanning 3+ days; less is reported as too little history), and whose "
        "trained reranker and tuned embedder (default: the current project's) are measured beside plain "
        "retrieval: recall@5 of --questions' sources with and without them.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the recommendation as JSON instead of tables.")
    ] = False,
) -> None:
    """Recommend RAG, fine-tuning or a hybrid: from the decision guide, or from evidence on your own data.

    Decision guide: answers come from --answers FILE.yaml, from flags (which override the file), and, in a
    terminal, from prompts for anything still missing (read like the file: any case, yes/no); without a
    terminal every answer must be given. Prints
    the winner, a table of how each answer scored each architecture (strong 2, moderate 1, weak 0; the task
    counts twice; no labelled examples rules out fine-tuning and hybrid; ties go to the simpler system: RAG,
    fine-tuning, hybrid), the common mistakes that apply, the ragtune commands to run next and a pipeline YAML
    to start from.

    Evidence (--docs with --questions, and/or --labels): audits the documents and labels, runs a bake-off of
    the candidates within --budget seconds, and recommends from the measurements; writes a Markdown + HTML
    report to --report-dir. With questions that name their source, recall@5 is also measured with the
    project's newest trained reranker and tuned embedder (`ragtune tune reranker` / `tune retriever`; the
    embedder only if the budget allows a second index), and poor recall points at adapting retrieval before
    fine-tuning a generator. Guide answers given as well are shown beside the evidence. The report says when
    the evidence is thin: too little sync history for a change rate, a small held-out set (with its 95 %
    interval), a simpler system that scored as well.

    Generation (--examples FILE.jsonl [--schema FILE.json] [--docs DIR]): holds out examples by prompt and
    generates them with the packaged SmolLM2 (llama.cpp) three ways: prompting (a few training examples in the
    prompt), RAG with prompting (the 3 chunks retrieved from --docs added; needs --docs) and a LoRA fine-tune
    trained for what is left of --budget. Compares format validity, task accuracy (the first JSON field, else
    ROUGE-L), latency and training cost; the simplest candidate wins unless a more complex one is measurably
    better (paired sign test, p < 0.05). A candidate the budget cannot fit is named as skipped, with the
    --budget that would fit it. See docs/advisor.md.
    """
    flags = {"task": task, "knowledge_change": knowledge_change, "citations": citations,
             "structured_output": structured_output, "examples_per_class": examples_per_class,
             "fast_iteration": fast_iteration, "latency_ms": latency_ms, "regulated": regulated}
    if docs is not None or questions is not None or labels is not None or examples is not None or schema:
        _advise_from_evidence(docs, questions, labels, text_col, label_col, budget, report_dir, project,
                              answers, flags, json_out, examples, schema)
        return
    source = str(answers) if answers is not None else "answers"
    parsed = parse_answers(collect_answers(answers, flags, interactive=_interactive()), source)
    rec = recommend(parsed)
    if report is not None:
        report.write_text(rec.to_markdown(), encoding="utf-8")
    if json_out:
        typer.echo(json.dumps({"answers": parsed.model_dump(mode="json"), **rec.to_dict()}, indent=2))
        return
    render(rec, Console(soft_wrap=False))
    if report is not None:
        typer.echo(f"report: {report}")


def _advise_from_evidence(docs: Path | None, questions: Path | None, labels: Path | None, text_col: str,
                          label_col: str, budget: float, report_dir: Path, project: Path | None,
                          answers_file: Path | None, flags: dict[str, Any], json_out: bool,
                          examples: Path | None = None, schema: Path | None = None) -> None:
    from ragtune.advisor.adaptation import find_current_project
    from ragtune.project import Project

    opened = Project.open(project) if project is not None else None
    # The registry whose reranker and tuned embedder are measured: --project, else the current project if any.
    models = opened if opened is not None else find_current_project()
    # The evidence layer pulls in scikit-learn, scipy and the store: imported here, so `ragtune --help` is fast.
    from ragtune.advisor.report import write_evidence_report
    from ragtune.advisor.run import gather_evidence

    given = evidence_run_answers(answers_file, flags)  # never prompted: an evidence run may be automated
    guide = recommend(given) if given is not None else None
    with Console(stderr=True).status("gathering evidence…") as status:
        evidence = gather_evidence(docs=docs, questions=questions, labels=labels, text_col=text_col,
                                   label_col=label_col, budget_s=budget, project=opened,
                                   tick=lambda msg: status.update(msg), adaptation_project=models,
                                   examples=examples, schema=schema)
    # The next steps follow the measured winner, with the user's own answers where given (else read off the data).
    if evidence.generation is not None and evidence.qa is None and evidence.labels is None:
        from ragtune.advisor.generation import generation_next_steps

        steps, pipeline = generation_next_steps(evidence.decision.winner, evidence.generation,
                                                str(schema) if schema is not None else None)
        steps_md = next_steps_markdown(steps, pipeline, [])
    else:
        steps_md = next_steps_markdown(*next_steps(evidence.decision.winner, given or inferred_answers(evidence)))
    guide_md = guide_answers_markdown(guide, evidence.decision.winner) if guide is not None else None
    md, html = write_evidence_report(report_dir, evidence, guide_md, steps_md)
    if json_out:
        typer.echo(json.dumps(evidence_json(evidence, guide, md, html), indent=2, default=str))
        return
    render_evidence(evidence, guide, html, Console())
