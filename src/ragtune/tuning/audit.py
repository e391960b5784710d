"""The label audit run before training: balance, duplicates, conflicts, leakage and suspected label errors.

The audit covers the whole labelled file (before any train/test split, so a text labelled twice across the
split is a conflict like any other) and names examples by their line in the file. Blocking problems stop
training with a clear message; everything else is a warning the user should read. Suspected label errors follow
confident learning in spirit: an example is suspect when a cross-validated classifier gives its own label a low
probability while confidently preferring another label.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragtune.models.embedder import Embedder
from ragtune.tuning.data import LabelledData
from ragtune.tuning.groups import NEAR_DUPLICATE, near_pairs, normalize

__all__ = ["AuditReport", "audit_labels", "excerpt", "md_text", "normalize"]


def excerpt(text: str, most: int = 80) -> str:
    """One line of at most ``most`` characters of ``text`` (… when cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= most else flat[: most - 1] + "…"


def md_text(text: str) -> str:
    """``text`` for a Markdown table cell or list item, shown literally: Markdown and HTML characters
    backslash-escaped (CommonMark), so a training text never becomes markup or raw HTML in report.html."""
    return re.sub(r"([\\`*_\[\]<>|#!~&])", r"\\\1", text.replace("\n", " "))


def _lines(lines: list[int]) -> str:
    shown = ", ".join(map(str, lines[:4])) + (", …" if len(lines) > 4 else "")
    return f"line{'s' if len(lines) > 1 else ''} {shown}"


@dataclass
class AuditReport:
    """Findings of a label audit. Each finding names its examples by ``index`` (position in the data) and by
    ``line`` (in ``source``; for leakage ``test_line`` in ``test_source``) and quotes an excerpt of the text."""

    examples: int
    class_counts: dict[str, int]
    imbalance_ratio: float
    small_classes: list[str]
    source: str = ""
    test_source: str = ""
    exact_duplicates: list[dict[str, Any]] = field(default_factory=list)
    near_duplicates: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    leakage_exact: list[dict[str, Any]] = field(default_factory=list)
    leakage_near: list[dict[str, Any]] = field(default_factory=list)
    suspected_label_errors: list[dict[str, Any]] = field(default_factory=list)
    blocking: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One sentence: examples, classes and the imbalance ratio."""
        return (f"{self.examples} examples, {len(self.class_counts)} classes, imbalance ratio (largest/smallest "
                f"class) {self.imbalance_ratio:.1f}.")

    def tables(self, limit: int = 10, max_classes: int | None = None) -> list[tuple[str, list[str], list[list[str]]]]:
        """The findings as (title, column names, rows of plain text), for Markdown or a terminal table: at most
        ``limit`` rows per finding and ``max_classes`` classes (the largest; default all)."""
        ranked = sorted(self.class_counts.items(), key=lambda kv: (-kv[1], kv[0]))
        shown = ranked if max_classes is None else ranked[:max_classes]
        rows = [[c, str(n)] for c, n in shown]
        if len(shown) < len(ranked):
            rows.append([f"… {len(ranked) - len(shown)} more", str(sum(n for _, n in ranked[len(shown):]))])
        out: list[tuple[str, list[str], list[list[str]]]] = [("Classes", ["class", "examples"], rows)]
        if self.conflicts:
            out.append(("Conflicting labels for the same text", ["lines", "labels", "text"],
                        [[", ".join(map(str, c["lines"][:6])),
                          ", ".join(f"{lab} (line {ln})" for ln, lab in zip(c["lines"][:6], c["line_labels"][:6],
                                                                              strict=True)), c["text"]]
                         for c in self.conflicts[:limit]]))
        if self.suspected_label_errors:
            out.append(("Suspected label errors (cross-validated probability of the given label)",
                        ["line", "text", "label", "p(label)", "suggested", "p"],
                        [[str(s["line"]), s["text"], s["label"], f"{s['p_label']:.2f}", s["suggested"],
                          f"{s['p_suggested']:.2f}"] for s in self.suspected_label_errors[:limit]]))
        if self.leakage_exact or self.leakage_near:
            test_name = self.test_source or "test"
            rows = [[str(p["line"]), str(p["test_line"]), f"{p.get('cosine', 1.0):.2f}",
                     p["label"] + ("" if p["label"] == p["test_label"] else f" / {p['test_label']}"), p["text"]]
                    for p in (self.leakage_exact + self.leakage_near)[:limit]]
            out.append((f"Training examples also in {test_name} (leakage)",
                        ["line", "test line", "cosine", "label(s)", "text"], rows))
        if self.exact_duplicates:
            out.append(("Exact duplicates (same label)", ["lines", "label", "text"],
                        [[", ".join(map(str, d["lines"][:6])) + (", …" if len(d["lines"]) > 6 else ""),
                          d["label"], d["text"]] for d in self.exact_duplicates[:limit]]))
        if self.near_duplicates:
            out.append((f"Near duplicates (cosine ≥ {NEAR_DUPLICATE})", ["lines", "cosine", "labels", "text"],
                        [[", ".join(map(str, d["lines"])), f"{d['cosine']:.3f}", " / ".join(dict.fromkeys(
                            d["labels"])), d["text"]] for d in self.near_duplicates[:limit]]))
        return out

    def to_markdown(self, limit: int = 10) -> str:
        """The audit as a Markdown section (for report.md; the terminal gets Rich tables instead)."""
        where = f" of {md_text(self.source)}" if self.source else ""
        lines = ["## Label audit", "", f"Audit of every example{where} (lines are the file's lines). "
                 + self.summary(), ""]
        for title, items in (("Blocking problems", self.blocking), ("Warnings", self.warnings)):
            if items:
                lines += [f"**{title}**", ""] + [f"- {md_text(w)}" for w in items] + [""]
        for title, columns, rows in self.tables(limit):
            lines += [f"**{md_text(title)}**", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            lines += ["| " + " | ".join(md_text(cell) for cell in row) + " |" for row in rows] + [""]
        return "\n".join(lines)


def audit_labels(
    data: LabelledData,
    embedder: Embedder | None = None,
    test: LabelledData | None = None,
    min_per_class: int = 8,
    near_duplicate_threshold: float = NEAR_DUPLICATE,
    suspect_p_label: float = 0.1,
    suspect_p_other: float = 0.6,
    embeddings: np.ndarray | None = None,
) -> AuditReport:
    """Audit every example of ``data`` (the whole labelled file, before any split) and its overlap with a
    separate ``test`` file; embeddings (``embeddings`` of ``data``'s texts, or an ``embedder``) enable the
    near-duplicate and label-noise checks, and with an ``embedder`` near-duplicate leakage into ``test``."""
    counts = Counter(data.labels)
    report = AuditReport(
        examples=len(data),
        class_counts=dict(counts),
        imbalance_ratio=(max(counts.values()) / min(counts.values())) if counts else 0.0,
        small_classes=sorted(c for c, n in counts.items() if n < min_per_class),
        source=data.source,
        test_source=test.source if test is not None else "",
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
    groups = _exact_groups(data, report)
    if test is not None:
        _exact_leakage(data, test, report)
    if embedder is not None or embeddings is not None:
        x = embeddings if embeddings is not None else embedder.embed(data.texts)  # type: ignore[union-attr]
        exact = {(g[a], g[b]) for g in groups.values() for a in range(len(g)) for b in range(a + 1, len(g))}
        report.near_duplicates = [
            {"indices": [i, j], "lines": [data.line(i), data.line(j)], "cosine": c,
             "labels": [data.labels[i], data.labels[j]], "text": excerpt(data.texts[i])}
            for i, j, c in near_pairs(x, None, near_duplicate_threshold) if (i, j) not in exact
        ]
        if report.near_duplicates:
            report.warnings.append(f"{len(report.near_duplicates)} near-duplicate pair(s) (cosine ≥ "
                                   f"{near_duplicate_threshold}), first at "
                                   f"{_lines(report.near_duplicates[0]['lines'])}")
        if test is not None and embedder is not None:
            xt = embedder.embed(test.texts)
            leaked = {(p["index"], p["test_index"]) for p in report.leakage_exact}
            report.leakage_near = [_leak(data, test, i, j) | {"cosine": c}
                                   for i, j, c in near_pairs(x, xt, near_duplicate_threshold) if (i, j) not in leaked]
            if report.leakage_near:
                report.warnings.append(f"{len(report.leakage_near)} near-duplicate pair(s) between the training "
                                       f"and test files, first at line {report.leakage_near[0]['line']} / test line "
                                       f"{report.leakage_near[0]['test_line']}")
        report.suspected_label_errors = [
            s | {"line": data.line(s["index"]), "text": excerpt(data.texts[s["index"]])}
            for s in _suspects(x, data.labels, suspect_p_label, suspect_p_other)
        ]
        if report.suspected_label_errors:
            report.warnings.append(f"{len(report.suspected_label_errors)} suspected label error(s): the model, "
                                   "trained without them, confidently predicts another label")
    return report


def _exact_groups(data: LabelledData, report: AuditReport) -> dict[str, list[int]]:
    """Texts equal after normalisation: exact duplicates (one label) and conflicts (several)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(data.texts):
        groups[normalize(t)].append(i)
    for idx in groups.values():
        if len(idx) < 2:
            continue
        labels = [data.labels[i] for i in idx]
        entry: dict[str, Any] = {"indices": idx, "lines": [data.line(i) for i in idx],
                                 "text": excerpt(data.texts[idx[0]])}
        if len(set(labels)) > 1:
            report.conflicts.append(entry | {"labels": sorted(set(labels)), "line_labels": labels})
        else:
            report.exact_duplicates.append(entry | {"label": labels[0]})
    if report.exact_duplicates:
        extra = sum(len(g["indices"]) - 1 for g in report.exact_duplicates)
        report.warnings.append(f"{extra} exact duplicate example(s) in {len(report.exact_duplicates)} group(s), "
                               f"first at {_lines(report.exact_duplicates[0]['lines'])}")
    if report.conflicts:
        report.warnings.append(f"{len(report.conflicts)} text(s) appear with conflicting labels, first at "
                               f"{_lines(report.conflicts[0]['lines'])}")
    return groups


def _leak(data: LabelledData, test: LabelledData, i: int, j: int) -> dict[str, Any]:
    return {"index": i, "line": data.line(i), "test_index": j, "test_line": test.line(j),
            "label": data.labels[i], "test_label": test.labels[j], "text": excerpt(data.texts[i])}


def _exact_leakage(data: LabelledData, test: LabelledData, report: AuditReport) -> None:
    test_norm: dict[str, int] = {}
    for j, t in enumerate(test.texts):
        test_norm.setdefault(normalize(t), j)
    report.leakage_exact = [_leak(data, test, i, test_norm[normalize(t)]) for i, t in enumerate(data.texts)
                            if normalize(t) in test_norm]
    if report.leakage_exact:
        first = report.leakage_exact[0]
        differ = sum(p["label"] != p["test_label"] for p in report.leakage_exact)
        report.warnings.append(
            f"{len(report.leakage_exact)} training example(s) also appear in the test file (leakage: test scores "
            f"will be optimistic), first at line {first['line']} / test line {first['test_line']}"
            + (f"; {differ} of them with a different label there" if differ else ""))


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
