"""The advisor's evidence report: Markdown and a self-contained HTML file with the bake-off plots."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragtune.advisor.bakeoff import LabelBakeoff, QABakeoff
from ragtune.advisor.corpus import CorpusAudit
from ragtune.advisor.evidence import EvidenceDecision
from ragtune.reporting import write_markdown_and_html
from ragtune.tuning.audit import AuditReport

PLOT = "bakeoff.png"


@dataclass
class Evidence:
    """Everything Layer 2 measured, and the decision drawn from it."""

    decision: EvidenceDecision
    corpus: CorpusAudit | None = None
    qa: QABakeoff | None = None
    labels: LabelBakeoff | None = None
    label_audit: AuditReport | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the label audit as its summary counts)."""
        out: dict[str, Any] = {"recommendation": self.decision.winner, "reasons": self.decision.reasons,
                               "warnings": self.decision.warnings}
        for name in ("corpus", "qa", "labels"):
            value = getattr(self, name)
            out[name] = asdict(value) if value is not None else None
        if self.label_audit is not None:
            a = self.label_audit
            out["label_audit"] = {"examples": a.examples, "classes": len(a.class_counts),
                                  "imbalance_ratio": a.imbalance_ratio, "small_classes": a.small_classes,
                                  "conflicts": len(a.conflicts), "exact_duplicate_groups": len(a.exact_duplicates),
                                  "suspected_label_errors": len(a.suspected_label_errors),
                                  "warnings": a.warnings, "blocking": a.blocking}
        return out


def _plot(labels: LabelBakeoff, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.name for r in labels.results]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax1.bar(names, [100 * r.accuracy for r in labels.results], color="#4c72b0")
    ax1.axhline(100 * labels.majority_accuracy, color="#999", linestyle="--", label="majority class")
    ax1.set_ylabel("accuracy %")
    ax1.set_ylim(0, 100)
    ax1.legend(loc="lower right", fontsize=8)
    ax2.bar(names, [r.latency_ms for r in labels.results], color="#dd8452")
    ax2.set_ylabel("ms per item (median)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _adaptation_markdown(q: QABakeoff) -> list[str]:
    """recall@k without and with each adaptation model (a table), and what was not measured (notes)."""
    if q.recall_at_k is None or not (q.adapted or q.adaptation_notes):
        return []
    lines = ["", "### Retrieval with your adaptation models", ""]
    if q.adapted:
        base_ms = f"{q.retrieval_p50_ms:.0f} ms" if q.retrieval_p50_ms is not None else "–"
        lines += [f"| retrieval | recall@{q.k} | questions with a gold source | retrieval p50 |", "|---|---|---|---|",
                  f"| without adaptation | {100 * q.recall_at_k:.1f} % | {q.adapted[0].questions} | {base_ms} |"]
        for a in q.adapted:
            same = "" if a.base_recall_at_k == q.recall_at_k else \
                f" (without it on the same questions: {100 * a.base_recall_at_k:.1f} %)"
            lines.append(f"| {a.label} (`{a.setting}`) | {100 * a.recall_at_k:.1f} %{same} | {a.questions} | "
                         f"{a.latency_p50_ms:.0f} ms |")
    lines += [f"\n> {n}" for n in q.adaptation_notes]
    return lines


def write_evidence_report(folder: Path, evidence: Evidence, guide_markdown: str | None = None,
                          next_steps_markdown: str | None = None) -> tuple[Path, Path]:
    """Write report.md, report.html, evidence.json (and bakeoff.png with a labelled bake-off) to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    d = evidence.decision
    lines = ["# ragtune advisor report", "", f"**Recommendation: {d.winner}**", "", "Because:", ""]
    lines += [f"- {r}" for r in d.reasons]
    if d.warnings:
        lines += ["", "Watch out:", ""] + [f"- {w}" for w in d.warnings]
    if evidence.qa is not None:
        q = evidence.qa
        recall = f"{100 * q.recall_at_k:.1f} %" if q.recall_at_k is not None else "– (no gold sources given)"
        lines += ["", "## Question answering (RAG) on your documents", "",
                  "| measure | value |", "|---|---|",
                  f"| documents / chunks indexed | {q.documents} / {q.chunks} |",
                  f"| questions asked | {q.questions} |",
                  f"| recall@{q.k} of the gold source | {recall} |",
                  f"| answered with citations (not abstained) | {100 * q.answered_rate:.1f} % |",
                  f"| latency p50 / p95 | {q.latency_p50_ms:.0f} / {q.latency_p95_ms:.0f} ms |",
                  f"| time used / budget | {q.elapsed_s:.0f} / {q.budget_s:.0f} s |"]
        lines += [f"\n> {n}" for n in q.notes]
        lines += _adaptation_markdown(q)
    images: tuple[str, ...] = ()
    if evidence.labels is not None:
        b = evidence.labels
        lines += ["", "## Classification bake-off on your labels", "",
                  f"{b.train_examples} training and {b.test_examples} held-out examples, {b.classes} classes; "
                  f"always predicting the majority class would score {100 * b.majority_accuracy:.1f} %.", "",
                  "| candidate | how | accuracy | macro-F1 | ms per item | USD per 1,000 items | set-up s |",
                  "|---|---|---|---|---|---|---|"]
        for r in b.results:
            lines.append(f"| {r.name} | {r.how} | {100 * r.accuracy:.1f} % | {100 * r.macro_f1:.1f} | "
                         f"{r.latency_ms:.1f} | {r.cost_per_1k_usd:.5f} | {r.fit_seconds:.1f} |")
        lines += ["", "Cost is CPU time per item at an on-demand vCPU-hour price; no LLM is involved in any "
                  "candidate.", f"Time used / budget: {b.elapsed_s:.0f} / {b.budget_s:.0f} s."]
        lines += [f"\n> {n}" for n in b.notes]
        if b.results:
            _plot(b, folder / PLOT)
            images = (PLOT,)
            lines += ["", f"![bake-off]({PLOT})"]
    if evidence.corpus is not None:
        c = evidence.corpus
        lines += ["", "## Corpus audit", "", f"`{c.root}`: {c.documents} documents, {c.total_bytes / 1e6:.1f} MB, "
                  "formats " + ", ".join(f"{k} {v}" for k, v in c.formats.items()) + ".", ""]
        lines += [f"- {f}" for f in c.findings()]
    if evidence.label_audit is not None:
        lines += ["", evidence.label_audit.to_markdown()]
    if guide_markdown:
        lines += ["", "## Your answers to the decision guide", "", guide_markdown]
    if next_steps_markdown:
        lines += ["", "## Next steps", "", next_steps_markdown]
    (folder / "evidence.json").write_text(json.dumps(evidence.to_dict(), indent=2, default=str), encoding="utf-8")
    return write_markdown_and_html(folder, "ragtune advisor report", "\n".join(lines), images)
