"""The ``ragtune eval`` group: ``retrieval``, ``answers``, ``classify``, ``latency`` and ``compare`` (Typer
``eval_app``).

Register in ``ragtune/cli.py`` with ``app.add_typer(eval_app, name="eval")``. Options only: the work is in
``evaluation.data``, ``answers_data``, ``run_retrieval``, ``answers``, ``latency``, ``compare``, ``classify``
and ``report``; numpy,
matplotlib and the models load inside the commands. A usage mistake exits 2, bad file contents exit 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ragtune.cli_common import JsonOpt, ProjectOpt, _principal, err, out
from ragtune.core import Principal
from ragtune.project import Project

eval_app = typer.Typer(help="Measure ragtune on your own data: retrieval quality of several configurations with "
                            "confidence intervals, answer quality (EM/F1, citations, groundedness, leakage), a "
                            "classifier on any labelled file, per-stage latency, and the difference between two "
                            "runs. Formats and metrics: docs/evaluation.md.",
                       no_args_is_help=True)

QueriesOpt = Annotated[Path | None, typer.Option("--queries", help="BEIR queries: JSONL of {\"_id\", \"text\"}.")]
EvalUserOpt = Annotated[str, typer.Option("--user", "-u", help="Search as this user (case-sensitive). Required "
                                          "unless --all-documents: no user, no access.")]
EvalGroupsOpt = Annotated[str, typer.Option("--groups", "-g", help="Comma-separated groups of --user.")]
AllDocsOpt = Annotated[bool, typer.Option("--all-documents", help="Admin view: search as a principal holding every "
                                          "ACL token of the index (documents readable by nobody stay hidden). "
                                          "Not with --user.")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Folder for the JSON record and report.html/.md "
                                             "(default: `<project>/evals/<command>-<time>`).")]


def _usage(message: str, option: str) -> typer.BadParameter:
    """A usage mistake (exit status 2), shown as ``Invalid value for 'OPTION': message``."""
    return typer.BadParameter(message, param_hint=f"'{option}'")


def _eval_principal(proj: Project, user: str, groups: str, all_documents: bool) -> Principal:
    """--user/--groups, or --all-documents; neither is a usage error (fail closed: nobody reads by default)."""
    from ragtune.cli_common import _warn_near_misses
    from ragtune.evaluation.run_retrieval import IndexWidePrincipal

    if all_documents:
        if user or groups:
            raise _usage("it searches as every ACL token of the index: do not combine it with --user/--groups",
                         "--all-documents")
        return IndexWidePrincipal(proj.store.acl_tokens())
    if not user.strip():
        raise _usage("give --user (and --groups) to search as, or --all-documents for the admin view of every "
                     "readable document (an evaluation never picks a principal for you)", "--user")
    principal = _principal(user, groups)
    _warn_near_misses(principal, proj.store.acl_tokens())
    return principal


def _out_dir(proj: Project, out_dir: Path | None, kind: str) -> Path:
    return out_dir if out_dir is not None else \
        proj.settings.project_dir / "evals" / f"{kind}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def _ints(value: str, option: str, top: int) -> list[int]:
    try:
        ks = sorted({int(x) for x in value.split(",") if x.strip()})
    except ValueError:
        raise _usage(f"{value!r}: give comma-separated whole numbers, e.g. 1,3,5,10,100", option) from None
    if not ks or ks[0] < 1 or ks[-1] > top:
        raise _usage(f"{value!r}: cut-offs must lie between 1 and {top}", option)
    return ks


@contextmanager
def _query_bar(total: int, what: str) -> Iterator[Any]:
    with Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                  disable=not err.is_terminal) as bar:
        task = bar.add_task(what, total=total)
        yield lambda: bar.advance(task)


def _write_json(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2), encoding="utf-8")


def _ci_cell(d: dict[str, Any]) -> Text:
    return Text(f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" + (" *" if d["significant"] else ""))


def _retrieval_tables(run: dict[str, Any]) -> tuple[Table, Table]:
    """Quality per configuration; then each one's differences to the baseline (paired 95 % CI) and latency."""
    ks = run["k_values"]
    quality = Table(title=f"retrieval quality, {run['queries']} queries")
    for col in ("config", "nDCG@10", "MRR@10", *(f"R@{k}" for k in ks)):
        quality.add_column(col, justify="left" if col == "config" else "right", no_wrap=True)
    metrics = run["bootstrap"]["metrics"]
    versus = Table(title=Text(f"vs {run['baseline']}: mean difference [paired bootstrap 95 % CI], * excludes 0; "
                              "search latency"))
    for col in ("config", *(f"Δ {m}" for m in metrics), "p50/p95 ms"):
        versus.add_column(col, justify="left" if col == "config" else "right", no_wrap=True)
    for name in run["configs"]:
        r = run["results"][name]
        a, lat = r["aggregate"], r["latency_ms"]
        quality.add_row(Text(name), f"{a['ndcg@10']:.4f}", f"{a['mrr@10']:.4f}",
                        *(f"{a[f'recall@{k}']:.3f}" for k in ks))
        diffs = run["differences"].get(name)
        versus.add_row(Text(name), *((_ci_cell(diffs[m]) if diffs else Text("–")) for m in metrics),
                       f"{lat['p50']:.1f}/{lat['p95']:.1f}")
    return quality, versus


@eval_app.command("retrieval")
def eval_retrieval(
    queries: QueriesOpt = None,
    qrels: Annotated[Path | None, typer.Option("--qrels", help="BEIR qrels TSV: a header line, then `query-id "
                                               "corpus-id score`. A corpus-id is a file stem or a path relative to "
                                               "its ingested folder.")] = None,
    questions: Annotated[Path | None, typer.Option("--questions", help="Instead of --queries/--qrels: JSONL of "
                                                   "{\"question\", \"gold\": doc id or path (or a list)}.")] = None,
    configs: Annotated[str | None, typer.Option("--configs", help="Comma-separated: bm25, dense, hybrid, reranked "
                                                "(default: the first three, plus reranked with a reranker). The "
                                                "first is the baseline of the differences.")] = None,
    k: Annotated[str, typer.Option("--k", help="Cut-offs for recall@k (nDCG and MRR are @10).")] = "1,3,5,10,100",
    user: EvalUserOpt = "",
    groups: EvalGroupsOpt = "",
    all_documents: AllDocsOpt = False,
    out_dir: OutOpt = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples for the intervals "
                                           "(0: none).")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap (same seed, same intervals).")] = 0,
    project: ProjectOpt = None,
) -> None:
    """Score several retriever configurations on your queries and relevance judgements, in one run.

    Every query is searched by each configuration as --user (documents the user may not read never appear:
    a gold document they cannot read scores as missed). A document ranks at its best chunk. Prints nDCG@10,
    MRR@10 and recall@k per configuration, the paired bootstrap 95 % interval of each one's difference to the
    first on nDCG@10 and recall at the largest k (* marks an interval excluding 0), and search latency p50/p95;
    writes run.json (per-query scores, settings and embedder fingerprints, index version, machine) and
    report.html / report.md with a recall@k curve. Compare two runs with `ragtune eval compare`.
    """
    from ragtune.evaluation import data
    from ragtune.evaluation.report import write_retrieval_report
    from ragtune.evaluation.run_retrieval import default_configs, run_retrieval_eval

    if questions is not None and (queries is not None or qrels is not None):
        raise _usage("give either --questions, or --queries with --qrels, not both", "--questions")
    if questions is None and (queries is None or qrels is None):
        raise _usage("give --queries Q.jsonl with --qrels QRELS.tsv (BEIR layout), or --questions FILE.jsonl",
                     "--queries/--qrels")
    ks = _ints(k, "--k", 500)
    proj = Project.open(project)
    names = [c.strip() for c in configs.split(",") if c.strip()] if configs else default_configs(proj)
    allowed = default_configs(proj)
    bad = [c for c in names if c not in allowed]
    if bad or not names or len(set(names)) != len(names):
        raise _usage(f"{configs!r}: choose distinct names from {', '.join(allowed)}"
                     + (" (reranked needs rerank.kind set)" if "reranked" in bad else ""), "--configs")
    principal = _eval_principal(proj, user, groups, all_documents)
    if questions is not None:
        query_list, judgements = data.load_questions(questions)
    else:
        assert queries is not None and qrels is not None
        query_list, judgements = data.load_queries(queries), data.load_qrels(qrels)
    documents = data.document_map(proj.sources(), proj.roots())
    resolved = data.resolve_qrels(query_list, judgements, documents)
    if resolved.missing_queries:
        shown = ", ".join(resolved.missing_queries[:5])
        err.print(f"[yellow]warning:[/yellow] {len(resolved.missing_queries)} query id(s) of the qrels are not in "
                  f"the query file and were skipped: {escape(shown)}", highlight=False)
    if resolved.unjudged_queries:
        err.print(f"note: {resolved.unjudged_queries} query(ies) have no relevant document in the qrels and are "
                  "not scored", highlight=False)
    with _query_bar(len(resolved.queries), "searching") as tick:
        run = run_retrieval_eval(proj, resolved.queries, resolved.qrels, principal, documents, configs=names,
                                 k_values=ks, resamples=bootstrap, seed=seed, on_query=tick)
    run["inputs"] = {"queries": str(queries or questions), "qrels": str(qrels) if qrels else None,
                     "missing_queries": len(resolved.missing_queries), "unjudged_queries": resolved.unjudged_queries}
    folder = _out_dir(proj, out_dir, "retrieval")
    _write_json(folder / "run.json", run)
    _, html = write_retrieval_report(folder, run)
    for table in _retrieval_tables(run):
        out.print(table)
    out.print("run:", Text(str(folder / "run.json")), "report:", Text(str(html)))


def _answers_tables(record: dict[str, Any]) -> tuple[Table, Table, Table]:
    """The aggregate, latency per stage, and one row per question (text shown literally, never as markup)."""
    from ragtune.evaluation.answers import shorten
    from ragtune.evaluation.report import figure

    a = record["aggregate"]
    agg = Table(title=f"answers, {a['questions']} questions ({record['settings']['answer_kind']} answerer)")
    agg.add_column("metric")
    agg.add_column("value", justify="right")
    for label, value in (("exact match", figure(a["em"])), ("token F1", figure(a["f1"])),
                         ("abstention rate", figure(a["abstention_rate"])),
                         ("must abstain: abstained", f"{a['must_abstain_abstained']}/{a['must_abstain']}"),
                         ("citation precision", figure(a["citation_precision"])),
                         ("citation recall", figure(a["citation_recall"])),
                         ("groundedness", figure(a["groundedness"])),
                         ("hallucination rate", figure(a["hallucination_rate"])),
                         ("leaked (goal 0)", str(a["leaked"])),
                         ("unreadable gold answered (goal 0)",
                          f"{a['unreadable_gold_answered']}/{a['unreadable_gold']}")):
        agg.add_row(label, value)
    lat = Table(title="latency per stage (ms)")
    for col in ("stage", "p50", "p95"):
        lat.add_column(col, justify="left" if col == "stage" else "right")
    for stage, p in record["latency_ms"].items():
        lat.add_row(stage, f"{p['p50']:.2f}", f"{p['p95']:.2f}")
    rows = Table(title="per question")
    for col in ("id", "question", "answer", "EM", "F1", "cit. P", "grounded", "leaked"):
        rows.add_column(col, justify="left" if col in ("id", "question", "answer") else "right",
                        overflow="fold" if col in ("question", "answer") else "ellipsis")
    for r in record["per_question"]:
        rows.add_row(Text(shorten(r["id"], 24)), Text(shorten(r["question"], 60)),
                     Text("(abstained)" if r["abstained"] else shorten(r["answer"], 60)), figure(r["em"], 0),
                     figure(r["f1"], 2), figure(r["citation_precision"], 2), figure(r["groundedness"], 2),
                     Text(str(r["leaked"]), style="bold red" if r["leaked"] else ""))
    return agg, lat, rows


@eval_app.command("answers")
def eval_answers(
    questions: Annotated[Path | None, typer.Option("--questions", help="SQuAD JSON (v1.1/v2.0; is_impossible: must "
                                                   "abstain) or JSONL of {\"question\", \"answers\": [texts] or "
                                                   "\"answer\": text or null (must abstain), \"gold\": doc id(s), "
                                                   "\"id\"}.")] = None,
    user: EvalUserOpt = "",
    groups: EvalGroupsOpt = "",
    all_documents: AllDocsOpt = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Ask only the first N questions.")] = None,
    checker: Annotated[str, typer.Option("--checker", help="Groundedness checker (registry name) that judges "
                                         "citations and sentences; with none registered under the default, "
                                         "lexical overlap.")] = "groundedness",
    out_dir: OutOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the aggregate and latency as JSON instead of "
                                           "tables.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Ask every question with `Project.ask` as --user and score the answers (any answer.kind).

    Per question and overall: SQuAD exact match and token F1 (a question that must be abstained on scores 1
    only when the project abstains), abstention rate, citation precision (cited chunks that support their
    sentence, by the groundedness checker), citation recall (a gold document cited), groundedness and
    hallucination rate (answer sentences supported or not by what they cite), leaked (answers citing or
    quoting a document --user may not read, checked against the store; goal 0), unreadable gold answered
    (goal 0), and latency p50/p95 per stage. Writes answers.json and report.html / report.md (F1 histogram,
    latency per stage). Compare two runs with `ragtune eval compare`.
    """
    from ragtune.evaluation.answers import run_answers_eval
    from ragtune.evaluation.answers_data import load_answer_questions
    from ragtune.evaluation.report import write_answers_report

    if questions is None:
        raise _usage("give --questions FILE (SQuAD JSON, or JSONL of question with answers and/or gold)",
                     "--questions")
    proj = Project.open(project)
    principal = _eval_principal(proj, user, groups, all_documents)
    qfile = load_answer_questions(questions)
    total = min(limit, len(qfile.questions)) if limit else len(qfile.questions)
    with _query_bar(total, "answering") as tick:
        record = run_answers_eval(proj, qfile, principal, checker=checker, limit=limit, on_question=tick)
    folder = _out_dir(proj, out_dir, "answers")
    _write_json(folder / "answers.json", record)
    _, html = write_answers_report(folder, record)
    if json_out:
        out.print_json(json.dumps({"aggregate": record["aggregate"], "latency_ms": record["latency_ms"],
                                   "answers": str(folder / "answers.json"), "report": str(html)}))
        return
    for table in _answers_tables(record):
        out.print(table)
    out.print("answers:", Text(str(folder / "answers.json")), "report:", Text(str(html)))


@eval_app.command("classify")
def eval_classify(
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model name.")],
    data_file: Annotated[Path, typer.Option("--data", help="Labelled CSV, TSV or JSONL to evaluate on.")],
    version: Annotated[int | None, typer.Option(help="Model version (default: the promoted, else the latest).")] = None,
    text_col: Annotated[str, typer.Option(help="Column holding the text.")] = "text",
    label_col: Annotated[str, typer.Option(help="Column holding the label.")] = "label",
    out_dir: OutOpt = None,
    project: ProjectOpt = None,
) -> None:
    """The classifier report on any labelled file: accuracy, macro-F1, per class, top confusions, calibration.

    The same report as training (confusion matrix, reliability diagram, the file's duplicates and conflicting
    labels by line), written with metrics.json into --out. Labels the model does not know count as errors.
    """
    from ragtune.evaluation.classify import evaluate_classifier_file

    proj = Project.open(project)
    folder = _out_dir(proj, out_dir, "classify")
    result = evaluate_classifier_file(proj, model, data_file, folder, version=version, text_col=text_col,
                                      label_col=label_col)
    m = result.metrics
    if m["unknown_labels"]:
        err.print(f"[yellow]warning:[/yellow] {len(m['unknown_labels'])} label(s) the model does not know count as "
                  f"errors: {escape(', '.join(m['unknown_labels'][:5]))}", highlight=False)
    out.print(f"{escape(model)} v{result.version} on {m['examples']} examples: accuracy {m['accuracy']:.4f}, "
              f"macro-F1 {m['macro_f1']:.4f}, ECE {m['ece']:.4f}, abstain rate {m['abstain_rate']:.3f} at "
              f"{m['threshold']:.2f}", highlight=False)
    out.print("metrics:", Text(str(result.json_path)), "report:", Text(str(result.report_html)))


@eval_app.command("latency")
def eval_latency(
    queries: QueriesOpt = None,
    n: Annotated[int, typer.Option("--n", min=1, help="Time the first N queries of the file.")] = 200,
    answers: Annotated[bool, typer.Option("--answers", help="Answer each query too (the `answer` stage).")] = False,
    user: EvalUserOpt = "",
    groups: EvalGroupsOpt = "",
    all_documents: AllDocsOpt = False,
    out_dir: OutOpt = None,
    project: ProjectOpt = None,
) -> None:
    """Per-stage latency distribution (p50/p95/p99) of the project's retriever on your queries.

    Stages: embed_query, dense, lexical, fuse, rerank (with a reranker), fetch, answer (with --answers) and
    total. Each query is embedded afresh (the embedding cache is bypassed) after 3 untimed warm-up queries.
    The load average and CPU count at start and end are recorded: a load above the CPU count means other work
    shared the CPUs. Writes latency.json and report.html / report.md with a histogram per stage.
    """
    from ragtune.evaluation.data import load_queries
    from ragtune.evaluation.latency import measure_latency
    from ragtune.evaluation.report import write_latency_report

    if queries is None:
        raise _usage("give --queries Q.jsonl (BEIR layout: one {\"_id\", \"text\"} per line)", "--queries")
    proj = Project.open(project)
    principal = _eval_principal(proj, user, groups, all_documents)
    query_list = load_queries(queries)
    with _query_bar(min(n, len(query_list)), "timing") as tick:
        record = measure_latency(proj, query_list, principal, n=n, answers=answers, on_query=tick)
    folder = _out_dir(proj, out_dir, "latency")
    _write_json(folder / "latency.json", record)
    _, html = write_latency_report(folder, record)
    t = Table(title=f"latency per stage (ms), {record['queries']} queries, load "
                    f"{record['machine']['load_avg_start'][0]} → {record['machine']['load_avg_end'][0]} on "
                    f"{record['machine']['cpu_count']} CPUs")
    for col in ("stage", "p50", "p95", "p99", "mean", "max"):
        t.add_column(col, justify="left" if col == "stage" else "right")
    for stage, p in record["stages"].items():
        t.add_row(stage, *(f"{p[c]:.2f}" for c in ("p50", "p95", "p99", "mean", "max")))
    out.print(t)
    for stage, why in record["not_measured"].items():
        err.print(f"note: {stage} not measured: {why}", highlight=False)
    out.print("record:", Text(str(folder / "latency.json")), "report:", Text(str(html)))


@eval_app.command("compare")
def eval_compare(
    run_a: Annotated[Path, typer.Argument(help="run.json or answers.json (or its folder) of the baseline, A.")],
    run_b: Annotated[Path, typer.Argument(help="run.json or answers.json (or its folder) of the candidate, B.")],
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Paired differences B − A of two `eval retrieval` runs (or two `eval answers` runs), per metric, with 95 %
    intervals.

    Retrieval runs pair by configuration and query id; answers runs by question id, on EM, F1, abstained,
    citation precision and citation recall (each over the questions both runs have a value for). Only queries
    both runs scored count (n), and runs sharing no query are refused. Use it before and after a change of
    chunking, models or settings; what changed between the runs (settings and answer fingerprints, embedder,
    index version, checker) is listed.
    """
    from ragtune.evaluation.compare import compare_runs, load_run, shown_metrics

    result = compare_runs(load_run(run_a), load_run(run_b), bootstrap, seed)
    if json_out:
        out.print_json(json.dumps(result))
        return
    for key, (a, b) in result["changed"].items():
        out.print(f"{key}: {escape(str(a))} → {escape(str(b))}", highlight=False)
    t = Table(title=Text("B − A: mean difference [paired bootstrap 95 % CI], * excludes 0; n: shared queries"))
    for col in ("config", "metric", "A", "B", "B − A [95 % CI]", "n"):
        t.add_column(col, justify="left" if col in ("config", "metric") else "right", no_wrap=True)
    for name, c in result["configs"].items():
        for m in shown_metrics(c["metrics"]):
            r = c["metrics"][m]
            t.add_row(Text(name), m, f"{r['a']:.4f}", f"{r['b']:.4f}", _ci_cell(r), str(r["queries"]))
        if c["only_a"] or c["only_b"]:
            err.print(f"note: {name}: {c['shared_queries']} shared queries compared; {c['only_a']} only in A and "
                      f"{c['only_b']} only in B left out", highlight=False)
    out.print(t)
