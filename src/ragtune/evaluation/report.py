"""The ``ragtune eval`` reports: report.md plus a self-contained report.html (``ragtune.reporting``) with plots.

Retrieval: aggregates per configuration, the paired bootstrap intervals against the first configuration,
latency, a recall@k curve per configuration, and the per-query table. Latency: p50/p95/p99 per stage, the
machine's load, and a histogram per stage. Answers: the aggregate, a token-F1 histogram, p50/p95 per
stage, the per-question table and any leak. Every text that came from the user's files is escaped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragtune.reporting import write_markdown_and_html
from ragtune.tuning.audit import md_text


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_recall_curves(run: dict[str, Any], path: Path) -> None:
    """recall@k against k (log scale), one line per configuration."""
    plt = _pyplot()
    ks = run["k_values"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in run["configs"]:
        agg = run["results"][name]["aggregate"]
        ax.plot(ks, [agg[f"recall@{k}"] for k in ks], "o-", label=name)
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("k (documents)")
    ax.set_ylabel("mean recall@k")
    ax.set_title(f"Recall@k over {run['queries']} queries")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _ci(d: dict[str, Any]) -> str:
    mark = " *" if d["significant"] else ""
    return f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]{mark}"


def retrieval_markdown(run: dict[str, Any]) -> str:
    """The retrieval report as Markdown (images linked by name: recall_at_k.png)."""
    ks = run["k_values"]
    who = ("every ACL token of the index (--all-documents)" if run["principal"].get("all_documents")
           else f"user {md_text(run['principal']['user'])}, groups "
                f"{md_text(', '.join(run['principal']['groups']) or '(none)')}")
    lines = [
        "# Retrieval evaluation", "",
        f"{run['queries']} judged queries, searched as {who}. Index version {run['index_version']}, embedder "
        f"`{run['embedder_fingerprint']}`, settings fingerprint `{run['settings_fingerprint']}`, ragtune "
        f"{run['ragtune_version']}, {run['created']}, {run['machine']['cpu_count']} CPUs "
        f"(load {run['machine']['load_avg_start'][0]} → {run['machine']['load_avg'][0]}).", "",
        "## Quality", "",
        "| configuration | nDCG@10 | MRR@10 | " + " | ".join(f"recall@{k}" for k in ks) + " |",
        "|---" * (3 + len(ks)) + "|",
    ]
    for name in run["configs"]:
        a = run["results"][name]["aggregate"]
        lines.append(f"| {name} | {a['ndcg@10']:.4f} | {a['mrr@10']:.4f} | "
                     + " | ".join(f"{a[f'recall@{k}']:.4f}" for k in ks) + " |")
    lines += ["", "![recall@k per configuration](recall_at_k.png)", ""]
    if run["differences"]:
        b = run["bootstrap"]
        lines += [f"## Differences to {run['baseline']}", "",
                  f"Mean per-query difference (configuration − {run['baseline']}) with its paired bootstrap "
                  f"{b['confidence']:.0%} interval ({b['resamples']} resamples, seed {b['seed']}); * marks an "
                  "interval that excludes 0.", "",
                  "| configuration | " + " | ".join(b["metrics"]) + " |", "|---" * (1 + len(b["metrics"])) + "|"]
        for name, diffs in run["differences"].items():
            lines.append(f"| {name} | " + " | ".join(_ci(diffs[m]) for m in b["metrics"]) + " |")
        lines.append("")
    lines += ["## Search latency (ms)", "", "Wall time of one search, embedding included (cache bypassed).", "",
              "| configuration | p50 | p95 | mean | stage p50s |", "|---|---|---|---|---|"]
    for name in run["configs"]:
        lat = run["results"][name]["latency_ms"]
        st = ", ".join(f"{s} {v:.2f}" for s, v in lat["stages_p50"].items())
        lines.append(f"| {name} | {lat['p50']:.2f} | {lat['p95']:.2f} | {lat['mean']:.2f} | {st} |")
    lines += ["", "## Per query", "", "nDCG@10 per configuration and its top document.", "",
              "| query | " + " | ".join(run["configs"]) + " | top document (" + run["configs"][-1] + ") |",
              "|---" * (2 + len(run["configs"])) + "|"]
    last = run["results"][run["configs"][-1]]
    for qid in sorted(last["per_query"]):
        cells = [f"{run['results'][n]['per_query'][qid]['ndcg@10']:.3f}" for n in run["configs"]]
        top = (last["rankings"].get(qid) or ["(none)"])[0]
        lines.append(f"| {md_text(qid)} | " + " | ".join(cells) + f" | {md_text(top)} |")
    return "\n".join(lines) + "\n"


def write_retrieval_report(folder: Path, run: dict[str, Any]) -> tuple[Path, Path]:
    """Write report.md, report.html and recall_at_k.png into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    plot_recall_curves(run, folder / "recall_at_k.png")
    return write_markdown_and_html(folder, "Retrieval evaluation", retrieval_markdown(run), ("recall_at_k.png",))


def plot_stage_histograms(record: dict[str, Any], path: Path) -> None:
    """One histogram of per-query milliseconds per stage."""
    plt = _pyplot()
    stages = list(record["samples_ms"])
    cols = min(3, len(stages))
    rows = -(-len(stages) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, stage in zip(axes.flat, stages, strict=False):
        values = record["samples_ms"][stage]
        ax.hist(values, bins=min(30, max(5, len(values) // 4)), color="#4878a8")
        p = record["stages"][stage]
        ax.axvline(p["p50"], color="black", linestyle="--", linewidth=1)
        ax.set_title(f"{stage}: p50 {p['p50']:.2f}, p95 {p['p95']:.2f} ms", fontsize=9)
        ax.set_xlabel("ms")
    for ax in list(axes.flat)[len(stages):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def latency_markdown(record: dict[str, Any]) -> str:
    """The latency report as Markdown (images linked by name: stage_histograms.png)."""
    m = record["machine"]
    lines = ["# Latency per stage", "",
             f"{record['queries']} queries, {m['cpu_count']} CPUs, load average (1/5/15 min) "
             f"{m['load_avg_start']} at start and {m['load_avg_end']} at the end; ragtune "
             f"{record['ragtune_version']}, {record['created']}.", "",
             "| stage | p50 ms | p95 ms | p99 ms | mean ms | max ms |", "|---|---|---|---|---|---|"]
    for stage, p in record["stages"].items():
        lines.append(f"| {stage} | {p['p50']:.2f} | {p['p95']:.2f} | {p['p99']:.2f} | {p['mean']:.2f} "
                     f"| {p['max']:.2f} |")
    lines += ["", "![per-stage histograms](stage_histograms.png)", ""]
    return "\n".join(lines)


def write_latency_report(folder: Path, record: dict[str, Any]) -> tuple[Path, Path]:
    """Write report.md, report.html and stage_histograms.png into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    plot_stage_histograms(record, folder / "stage_histograms.png")
    return write_markdown_and_html(folder, "Latency per stage", latency_markdown(record), ("stage_histograms.png",))


def plot_answers(record: dict[str, Any], folder: Path) -> tuple[str, ...]:
    """f1_histogram.png (token F1 of the questions that have one) and latency_stages.png (p50/p95 per stage)."""
    plt = _pyplot()
    f1 = [r["f1"] for r in record["per_question"] if r["f1"] is not None]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(f1, bins=[i / 10 for i in range(11)], color="#4878a8", edgecolor="white")
    ax.set_xlim(0, 1)
    ax.set_xlabel("token F1")
    ax.set_ylabel("questions")
    ax.set_title(f"Token F1 of {len(f1)} questions" if f1 else "Token F1: no question has gold answers")
    fig.tight_layout()
    fig.savefig(folder / "f1_histogram.png", dpi=100)
    plt.close(fig)
    stages = record["latency_ms"]
    fig, ax = plt.subplots(figsize=(7, 0.4 * max(3, len(stages)) + 1))
    names = list(stages)
    ys = range(len(names))
    ax.barh([y - 0.2 for y in ys], [stages[s]["p50"] for s in names], height=0.4, label="p50", color="#4878a8")
    ax.barh([y + 0.2 for y in ys], [stages[s]["p95"] for s in names], height=0.4, label="p95", color="#d08040")
    ax.set_yticks(list(ys), names)
    ax.invert_yaxis()
    ax.set_xlabel("ms")
    ax.set_title("Latency per stage")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(folder / "latency_stages.png", dpi=100)
    plt.close(fig)
    return "f1_histogram.png", "latency_stages.png"


def figure(value: float | None, digits: int = 3) -> str:
    """A metric for a table cell: ``digits`` decimals, or ``–`` where it does not apply (None)."""
    return "–" if value is None else f"{value:.{digits}f}"


def answers_markdown(record: dict[str, Any]) -> str:
    """The answers report as Markdown (every question, answer and file name escaped with ``md_text``)."""
    a, s, c = record["aggregate"], record["settings"], record["checker"]
    p = record["principal"]
    who = ("every ACL token of the index (--all-documents)" if p.get("all_documents")
           else f"user {md_text(p['user'])}, groups {md_text(', '.join(p['groups']) or '(none)')}")
    lines = [
        "# Answer evaluation", "",
        f"{a['questions']} questions of {md_text(record['inputs']['questions'])} ({record['inputs']['format']}), "
        f"asked as {who}; answerer `{s['answer_kind']}`, answer fingerprint `{s['answer_fingerprint']}`, index "
        f"version {record['index_version']}, groundedness checker {md_text(c['name'])} (threshold "
        f"{c['threshold']:.3f}); ragtune {record['ragtune_version']}, {record['created']}.", "",
        "## Aggregate", "",
        "| metric | value | over |", "|---|---|---|",
        f"| exact match | {figure(a['em'])} | {a['em_f1_questions']} questions with gold answers or to abstain on |",
        f"| token F1 | {figure(a['f1'])} | the same |",
        f"| abstention rate | {figure(a['abstention_rate'])} | {a['questions']} questions "
        f"({a['must_abstain_abstained']} of {a['must_abstain']} that must abstain did; "
        f"{a['answerable_abstained']} answerable ones did too) |",
        f"| citation precision | {figure(a['citation_precision'])} | answered questions with citations |",
        f"| citation recall | {figure(a['citation_recall'])} | {a['citation_recall_questions']} questions with a "
        "readable gold document |",
        f"| groundedness | {figure(a['groundedness'])} | answered questions (share of supported sentences) |",
        f"| hallucination rate | {figure(a['hallucination_rate'])} | the same (share of unsupported sentences); "
        f"answers with one: {figure(a['hallucinated_answers'])} |",
        f"| leaked | {a['leaked']} | questions citing or quoting a document the principal may not read (goal 0) |",
        f"| unreadable gold answered | {a['unreadable_gold_answered']} | of {a['unreadable_gold']} questions whose "
        "gold document the principal may not read (goal 0) |", "",
        "![token F1 per question](f1_histogram.png)", "",
        "## Latency per stage (ms)", "", "| stage | p50 | p95 | n |", "|---|---|---|---|",
        *(f"| {st} | {v['p50']:.2f} | {v['p95']:.2f} | {v['n']} |" for st, v in record["latency_ms"].items()), "",
        "![latency per stage](latency_stages.png)", "",
        "## Per question", "",
        "| id | question | expected | answer | EM | F1 | cit. P | cit. R | grounded | leaked |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record["per_question"]:
        shown = "(abstained)" if r["abstained"] else r["answer"]
        lines.append(f"| {md_text(r['id'])} | {md_text(r['question'])} | {r['expected']} | {md_text(shown)} | "
                     f"{figure(r['em'], 0)} | {figure(r['f1'], 2)} | {figure(r['citation_precision'], 2)} | "
                     f"{figure(r['citation_recall'], 0)} | {figure(r['groundedness'], 2)} | {r['leaked']} |")
    leaks = [(r["id"], leak) for r in record["per_question"] for leak in r["leaks"]]
    if leaks:
        lines += ["", "## Leaks", ""] + [f"- {md_text(qid)}: {md_text(leak['why'])}" for qid, leak in leaks]
    return "\n".join(lines) + "\n"


def write_answers_report(folder: Path, record: dict[str, Any]) -> tuple[Path, Path]:
    """Write report.md, report.html, f1_histogram.png and latency_stages.png into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    images = plot_answers(record, folder)
    return write_markdown_and_html(folder, "Answer evaluation", answers_markdown(record), images)
