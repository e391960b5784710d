"""Evaluation reports: Markdown plus a self-contained HTML file (plots embedded as PNG data URIs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragtune.reporting import write_markdown_and_html
from ragtune.tuning.audit import AuditReport


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


def write_report(folder: Path, title: str, card: dict[str, Any], metrics: dict[str, Any],
                 audit: AuditReport, train_texts: list[str]) -> tuple[Path, Path]:
    """Write report.md, report.html, confusion.png and reliability.png into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    _plot_confusion(metrics, folder / "confusion.png")
    _plot_reliability(metrics, folder / "reliability.png")
    cal = card.get("notes", {}).get("calibration", {})
    lines = [
        f"# {title}", "",
        f"Method **{card['method']}**, version {card['version']}, trained on `{card['data_source']}` "
        f"(sha256 {card['data_sha256'][:12]}), {metrics['examples']} test examples.", "",
        "| metric | value |", "|---|---|",
        f"| accuracy | {metrics['accuracy']:.4f} |",
        f"| macro-F1 | {metrics['macro_f1']:.4f} |",
        f"| expected calibration error (test) | {metrics['ece']:.4f} |",
        f"| abstain threshold | {metrics['threshold']:.2f} |",
        f"| abstain rate at threshold | {metrics['abstain_rate']:.3f} |",
        f"| accuracy of accepted predictions | {metrics['accuracy_when_accepted']:.4f} |",
    ]
    if cal.get("examples"):
        lines.append(f"| temperature (fitted on {cal['examples']} held-out training examples) | "
                     f"{cal.get('temperature', 1.0):.3f} |")
        lines.append(f"| ECE on that split before → after calibration | {cal.get('ece_before', 0):.4f} → "
                     f"{cal.get('ece_after', 0):.4f} |")
    lines += ["", "## Per class", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for c, m in metrics["per_class"].items():
        lines.append(f"| {c} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    lines += ["", "## Confusion matrix", "", "![confusion matrix](confusion.png)", "",
              "## Calibration", "", "![reliability diagram](reliability.png)", "", audit.to_markdown(train_texts)]
    return write_markdown_and_html(folder, title, "\n".join(lines), ("confusion.png", "reliability.png"))
