"""Serving a classifier: single texts with top-k, and batch files with progress."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.errors import DataError
from ragtune.tuning.base import NEEDS_REVIEW, Progress, TextClassifier
from ragtune.tuning.data import read_records


def classify_texts(clf: TextClassifier, texts: Sequence[str], top_k: int = 1,
                   threshold: float | None = None) -> list[dict[str, Any]]:
    """Per text: label (or needs_review below the threshold), its probability and the top-k labels."""
    probs = clf.predict_proba(list(texts))
    t = clf.threshold if threshold is None else threshold
    out = []
    for row in probs:
        order = np.argsort(-row)[:top_k]
        best = int(order[0])
        out.append({
            "label": str(clf.classes_[best]) if row[best] >= t else NEEDS_REVIEW,
            "probability": float(row[best]),
            "top_k": [{"label": str(clf.classes_[j]), "probability": float(row[j])} for j in order],
        })
    return out


def classify_file(clf: TextClassifier, input_path: Path, output_path: Path, text_col: str = "text",
                  threshold: float | None = None, progress: Progress | None = None, batch: int = 256) -> int:
    """Classify every row of a CSV/JSONL; the output CSV keeps all input columns and adds
    ``predicted_label`` and ``probability``. Written to a temporary file and renamed, so a crash leaves no
    half-written output."""
    rows, columns = read_records(input_path)
    if text_col not in columns:
        raise DataError(f"{input_path}: no column '{text_col}'; columns are {', '.join(columns)} (use --text-col)")
    empty = [i for i, r in enumerate(rows) if not str(r.get(text_col) or "").strip()]
    results: list[dict[str, Any]] = [{"label": "", "probability": 0.0}] * len(rows)
    todo = [i for i in range(len(rows)) if i not in set(empty)]
    for start in range(0, len(todo), batch):
        ix = todo[start : start + batch]
        for i, res in zip(ix, classify_texts(clf, [str(rows[i][text_col]) for i in ix], 1, threshold), strict=True):
            results[i] = res
        if progress:
            progress("classify", min(start + batch, len(todo)), len(todo), {})
    tmp = output_path.with_suffix(output_path.suffix + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=[*columns, "predicted_label", "probability"], extrasaction="ignore")
        writer.writeheader()
        for r, res in zip(rows, results, strict=True):
            writer.writerow({**r, "predicted_label": res["label"], "probability": f"{res['probability']:.4f}"})
    tmp.replace(output_path)
    return len(rows)
