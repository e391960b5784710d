"""The label audit run before training: balance, duplicates, conflicts, leakage and suspected label errors.

Blocking problems stop training with a clear message; everything else is a warning the user should read.
Suspected label errors follow confident learning in spirit: an example is suspect when a cross-validated
classifier gives its own label a low probability while confidently preferring another label.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragtune.models.embedder import Embedder
from ragtune.tuning.data import LabelledData


def normalize(text: str) -> str:
    """Case- and whitespace-insensitive form used to find exact duplicates."""
    return re.sub(r"\s+", " ", text.strip().lower())


@dataclass
class AuditReport:
    """Findings of a label audit."""

    examples: int
    class_counts: dict[str, int]
    imbalance_ratio: float
    small_classes: list[str]
    exact_duplicates: list[list[int]] = field(default_factory=list)
    near_duplicates: list[tuple[int, int, float]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    leakage_exact: list[tuple[int, int]] = field(default_factory=list)
    leakage_near: list[tuple[int, int, float]] = field(default_factory=list)
    suspected_label_errors: list[dict[str, Any]] = field(default_factory=list)
    blocking: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_markdown(self, texts: Sequence[str] | None = None, limit: int = 10) -> str:
        """The audit as a Markdown section."""
        lines = ["## Label audit", "", f"{self.examples} examples, {len(self.class_counts)} classes, "
                 f"imbalance ratio (largest/smallest class) {self.imbalance_ratio:.1f}.", ""]
        for title, items in (("Blocking problems", self.blocking), ("Warnings", self.warnings)):
            if items:
                lines += [f"**{title}**", ""] + [f"- {w}" for w in items] + [""]
        lines += ["| class | examples |", "|---|---|"]
        lines += [f"| {c} | {n} |" for c, n in sorted(self.class_counts.items(), key=lambda kv: -kv[1])]
        if self.suspected_label_errors and texts is not None:
            lines += ["", "**Suspected label errors** (cross-validated probability of the given label)", "",
                      "| row | text | label | p(label) | suggested | p |", "|---|---|---|---|---|---|"]
            for s in self.suspected_label_errors[:limit]:
                t = texts[s["index"]].replace("|", "/")[:80]
                lines.append(f"| {s['index']} | {t} | {s['label']} | {s['p_label']:.2f} | {s['suggested']} | "
                             f"{s['p_suggested']:.2f} |")
        if self.conflicts and texts is not None:
            lines += ["", "**Conflicting labels for the same text**", ""]
            for c in self.conflicts[:limit]:
                lines.append(f"- “{texts[c['indices'][0]][:80]}”: {', '.join(sorted(c['labels']))}")
        return "\n".join(lines) + "\n"


def _near_pairs(a: np.ndarray, b: np.ndarray | None, threshold: float, block: int = 1024
                ) -> list[tuple[int, int, float]]:
    """Pairs (i, j, cosine) with cosine >= threshold; within ``a`` (i < j) or between ``a`` and ``b``."""
    other = a if b is None else b
    pairs: list[tuple[int, int, float]] = []
    for start in range(0, len(a), block):
        sims = a[start : start + block] @ other.T
        rows, cols = np.nonzero(sims >= threshold)
        for r, c in zip(rows, cols, strict=True):
            i = start + int(r)
            if b is None and c <= i:
                continue
            pairs.append((i, int(c), float(sims[r, c])))
    return pairs


def audit_labels(
    train: LabelledData,
    embedder: Embedder | None = None,
    test: LabelledData | None = None,
    min_per_class: int = 8,
    near_duplicate_threshold: float = 0.95,
    suspect_p_label: float = 0.1,
    suspect_p_other: float = 0.6,
    embeddings: np.ndarray | None = None,
) -> AuditReport:
    """Audit ``train`` (and its overlap with ``test``); embeddings enable near-duplicate and noise checks."""
    counts = Counter(train.labels)
    report = AuditReport(
        examples=len(train),
        class_counts=dict(counts),
        imbalance_ratio=(max(counts.values()) / min(counts.values())) if counts else 0.0,
        small_classes=sorted(c for c, n in counts.items() if n < min_per_class),
    )
    if len(counts) < 2:
        report.blocking.append(f"only one class ({next(iter(counts), 'none')}): a classifier needs two or more")
    if report.small_classes:
        report.warnings.append(
            f"{len(report.small_classes)} class(es) have fewer than {min_per_class} examples and may not be "
            f"learned: {', '.join(report.small_classes[:10])}"
        )
    if report.imbalance_ratio > 10:
        report.warnings.append(f"classes are imbalanced (ratio {report.imbalance_ratio:.0f}:1); "
                               "watch per-class recall, not only accuracy")

    groups: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(train.texts):
        groups[normalize(t)].append(i)
    for idx in groups.values():
        if len(idx) > 1:
            labels = {train.labels[i] for i in idx}
            if len(labels) > 1:
                report.conflicts.append({"indices": idx, "labels": sorted(labels)})
            else:
                report.exact_duplicates.append(idx)
    if report.exact_duplicates:
        extra = sum(len(g) - 1 for g in report.exact_duplicates)
        report.warnings.append(f"{extra} exact duplicate example(s) in {len(report.exact_duplicates)} group(s)")
    if report.conflicts:
        report.warnings.append(f"{len(report.conflicts)} text(s) appear with conflicting labels")
    if test is not None:
        test_norm = {normalize(t): j for j, t in enumerate(test.texts)}
        report.leakage_exact = [(i, test_norm[normalize(t)]) for i, t in enumerate(train.texts)
                                if normalize(t) in test_norm]
        if report.leakage_exact:
            report.warnings.append(f"{len(report.leakage_exact)} training example(s) also appear in the test set "
                                   "(leakage: test scores will be optimistic)")

    if embedder is not None or embeddings is not None:
        x = embeddings if embeddings is not None else embedder.embed(train.texts)  # type: ignore[union-attr]
        exact = {(g[a], g[b]) for g in groups.values() for a in range(len(g)) for b in range(a + 1, len(g))}
        report.near_duplicates = [p for p in _near_pairs(x, None, near_duplicate_threshold)
                                  if (p[0], p[1]) not in exact]
        if report.near_duplicates:
            report.warnings.append(f"{len(report.near_duplicates)} near-duplicate pair(s) "
                                   f"(cosine ≥ {near_duplicate_threshold})")
        if test is not None and embedder is not None:
            xt = embedder.embed(test.texts)
            leaked = {(i, j) for i, j in report.leakage_exact}
            report.leakage_near = [p for p in _near_pairs(x, xt, near_duplicate_threshold)
                                   if (p[0], p[1]) not in leaked]
            if report.leakage_near:
                report.warnings.append(f"{len(report.leakage_near)} train/test near-duplicate pair(s)")
        report.suspected_label_errors = _suspects(x, train.labels, suspect_p_label, suspect_p_other)
        if report.suspected_label_errors:
            report.warnings.append(f"{len(report.suspected_label_errors)} suspected label error(s): the model, "
                                   "trained without them, confidently predicts another label")
    return report


def _suspects(x: np.ndarray, labels: list[str], p_label: float, p_other: float) -> list[dict[str, Any]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    classes = sorted(set(labels))
    counts = Counter(labels)
    folds = min(5, min(counts.values()))
    if len(classes) < 2 or folds < 2:
        return []
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[label] for label in labels])
    probs = cross_val_predict(LogisticRegression(C=10.0, max_iter=2000), x, y, method="predict_proba",
                              cv=StratifiedKFold(folds, shuffle=True, random_state=0))
    out = []
    for i in range(len(y)):
        best = int(probs[i].argmax())
        if best != y[i] and probs[i, y[i]] < p_label and probs[i, best] >= p_other:
            out.append({"index": i, "label": labels[i], "p_label": float(probs[i, y[i]]),
                        "suggested": classes[best], "p_suggested": float(probs[i, best])})
    return sorted(out, key=lambda s: s["p_label"])
