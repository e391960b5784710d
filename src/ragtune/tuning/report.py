"""Evaluation reports: Markdown plus a self-contained HTML file (plots embedded as PNG data URIs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragtune.reporting import write_markdown_and_html
from ragtune.tuning.audit import AuditReport, excerpt, md_text


def _plot_confusion(metrics: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cm = np.array(metrics["confusion_matrix"], dtype=float)
    classes = metrics["classes"]
    n = len(classes)
    size = min(4 + n * 0.25, 24)
    fig, ax = plt.subplots(figsize=(size, size))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=90, fontsize=max(4, 10 - n // 10))
    ax.set_yticks(range(n), classes, fontsize=max(4, 10 - n // 10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center",
                            color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_title("Confusion matrix (counts; colour = row share)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_reliability(metrics: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = [b for b in metrics["reliability"] if b[2] > 0]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    if bins:
        ax.plot([b[0] for b in bins], [b[1] for b in bins], "o-", label="model")
    ax.set_xlabel("confidence (calibrated top-1 probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability diagram — ECE {metrics['ece']:.3f}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _cell(text: str) -> str:
    """Text for a Markdown table cell: one line of at most 120 characters, shown literally."""
    return md_text(excerpt(text, 120))


def confusions_markdown(metrics: dict[str, Any]) -> list[str]:
    """The top confusions as a Markdown section: true and predicted label, count and example texts."""
    rows = metrics.get("top_confusions") or []
    lines = ["## Top confusions", ""]
    if not rows:
        return lines + ["No test example was misclassified.", ""]
    lines += ["The most frequent errors on the test set, with examples of the texts behind them.", "",
              "| true label | predicted | count | example texts |", "|---|---|---|---|"]
    for c in rows:
        texts = " · ".join(f"“{_cell(t)}”" for t in c["examples"])
        lines.append(f"| {_cell(c['true'])} | {_cell(c['predicted'])} | {c['count']} | {texts} |")
    return lines + [""]


def calibration_line(card: dict[str, Any]) -> str | None:
    """Where the temperature was fitted, e.g. ``fitted on 127 held-out training examples`` (None: not fitted)."""
    cal = card.get("notes", {}).get("calibration", {})
    n = int(cal.get("examples", 0))
    if not n:
        return None
    if n == card.get("notes", {}).get("train_examples"):
        return f"fitted on out-of-fold predictions for all {n} training examples"
    return f"fitted on {n} held-out training examples"


def write_report(folder: Path, title: str, card: dict[str, Any], metrics: dict[str, Any],
                 audit: AuditReport) -> tuple[Path, Path]:
    """Write report.md, report.html, confusion.png and reliability.png into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    _plot_confusion(metrics, folder / "confusion.png")
    _plot_reliability(metrics, folder / "reliability.png")
    cal = card.get("notes", {}).get("calibration", {})
    lines = [
        f"# {title}", "",
        f"Method **{card['method']}**, version {card['version']}, trained on {md_text(card['data_source'])} "
        f"(sha256 {card['data_sha256'][:12]}), {metrics['examples']} test examples.", "",
        "| metric | value |", "|---|---|",
        f"| accuracy | {metrics['accuracy']:.4f} |",
        f"| macro-F1 | {metrics['macro_f1']:.4f} |",
        f"| expected calibration error (test) | {metrics['ece']:.4f} |",
        f"| abstain threshold | {metrics['threshold']:.2f} |",
        f"| abstain rate at threshold | {metrics['abstain_rate']:.3f} |",
        f"| accuracy of accepted predictions | {metrics['accuracy_when_accepted']:.4f} |",
    ]
    fitted = calibration_line(card)
    if fitted:
        lines.append(f"| temperature ({fitted}) | {cal.get('temperature', 1.0):.3f} |")
        lines.append(f"| ECE on that split before → after calibration | {cal.get('ece_before', 0):.4f} → "
                     f"{cal.get('ece_after', 0):.4f} |")
    lines += ["", "## Per class", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for c, m in metrics["per_class"].items():
        lines.append(f"| {md_text(c)} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    lines += ["", *confusions_markdown(metrics), "## Confusion matrix", "", "![confusion matrix](confusion.png)", "",
              "## Calibration", "", "![reliability diagram](reliability.png)", "", audit.to_markdown()]
    return write_markdown_and_html(folder, title, "\n".join(lines), ("confusion.png", "reliability.png"))
