"""Classification evaluation, sentence-transformers style: a dict of metrics and a named primary metric."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from ragtune.evaluation.base import Evaluator
from ragtune.tuning.base import TextClassifier
from ragtune.tuning.calibration import expected_calibration_error, reliability_bins


class ClassificationEvaluator(Evaluator):
    """Accuracy, macro-F1, per-class P/R/F1, confusion matrix, the top confusions with example texts, ECE,
    reliability bins and abstain rate.

    Keys are never prefixed: the training report and the model card read them bare.
    """

    primary_metric = "macro_f1"
    greater_is_better = True

    def __init__(self, texts: Sequence[str], labels: Sequence[str], threshold: float | None = None) -> None:
        self.texts = list(texts)
        self.labels = [str(label) for label in labels]
        self.threshold = threshold

    def __call__(self, clf: TextClassifier) -> dict[str, Any]:
        """Evaluate ``clf``; labels unknown to the model count as errors and are listed."""
        classes = [str(c) for c in clf.classes_]
        index = {c: i for i, c in enumerate(classes)}
        probs = clf.predict_proba(self.texts)
        pred = probs.argmax(axis=1)
        unknown = sorted({label for label in self.labels if label not in index})
        y = np.array([index.get(label, -1) for label in self.labels])
        known = y >= 0
        threshold = clf.threshold if self.threshold is None else self.threshold
        conf = probs.max(axis=1)
        accepted = conf >= threshold
        p, r, f, support = precision_recall_fscore_support(y, pred, labels=range(len(classes)), zero_division=0)
        return {
            "primary_metric": self.primary_metric,
            "examples": len(self.labels),
            "accuracy": float(accuracy_score(y, pred)),
            "macro_f1": float(f1_score(y, pred, labels=range(len(classes)), average="macro", zero_division=0)),
            "per_class": {
                c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
                for i, c in enumerate(classes)
            },
            "confusion_matrix": confusion_matrix(y[known], pred[known], labels=range(len(classes))).tolist(),
            "classes": classes,
            "ece": expected_calibration_error(probs[known], y[known]) if known.any() else 0.0,
            "reliability": reliability_bins(probs[known], y[known]) if known.any() else [],
            "threshold": threshold,
            "abstain_rate": float(1.0 - accepted.mean()) if len(accepted) else 0.0,
            "accuracy_when_accepted": float((pred[accepted] == y[accepted]).mean()) if accepted.any() else 0.0,
            "unknown_labels": unknown,
            "top_confusions": top_confusions(self.texts, self.labels, [classes[j] for j in pred]),
        }


def top_confusions(texts: Sequence[str], labels: Sequence[str], predicted: Sequence[str], top: int = 10,
                   examples: int = 2) -> list[dict[str, Any]]:
    """The most frequent (true label, predicted label) errors, most frequent first, each with ``count`` and up
    to ``examples`` of its texts (error analysis: what the model mixes up, and on which inputs)."""
    pairs: dict[tuple[str, str], list[str]] = {}
    for text, true, pred in zip(texts, labels, predicted, strict=True):
        if true != pred:
            pairs.setdefault((true, pred), []).append(text)
    ranked = sorted(pairs.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return [{"true": t, "predicted": p, "count": len(items), "examples": items[:examples]}
            for (t, p), items in ranked[:top]]
