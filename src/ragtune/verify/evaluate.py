"""Evaluating support scorers on labelled pairs: AUROC, balanced accuracy, and choosing a threshold."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ragtune.errors import DataError
from ragtune.evaluation.base import Evaluator
from ragtune.verify.data import LabelledPair


@runtime_checkable
class PairScorer(Protocol):
    """Anything that scores (sentence, evidence) pairs, higher meaning better supported."""

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """One score per pair."""
        ...


def choose_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    """The threshold (``supported`` when score >= it) with the best balanced accuracy on ``y``; among equally
    good ones, the midpoint of the longest run of them (the first on ties), so it does not sit on a training
    example's score."""
    y = np.asarray(y, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if y.all() or not y.any():
        raise DataError("choosing a threshold needs both supported and unsupported examples")
    values = np.unique(scores)
    candidates = np.concatenate([[values[0]], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-9]])
    bal = balanced_accuracies(y, scores, candidates)
    best = np.flatnonzero(bal >= bal.max() - 1e-12)
    # Runs of consecutive best candidates; between two runs lie worse thresholds, so stay inside the longest one.
    runs = np.split(best, np.flatnonzero(np.diff(best) > 1) + 1)
    run = max(runs, key=len)
    return float((candidates[run[0]] + candidates[run[-1]]) / 2)


def balanced_accuracies(y: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Balanced accuracy of "supported when score >= t" for every ``t`` (scikit-learn's definition, in one pass)."""
    y = np.asarray(y, dtype=bool)
    positive, negative = np.sort(scores[y]), np.sort(scores[~y])
    t = np.asarray(thresholds, dtype=np.float64)
    tpr = (len(positive) - np.searchsorted(positive, t, side="left")) / len(positive)
    tnr = np.searchsorted(negative, t, side="left") / len(negative)
    return np.asarray((tpr + tnr) / 2)


class GroundednessEvaluator(Evaluator):
    """Scores labelled pairs with a scorer; returns AUROC and balanced accuracy (``primary_metric``: auroc).

    Balanced accuracy needs a threshold: pass one chosen elsewhere (never on these pairs when they are the
    test set), or leave it None to report the best threshold on these pairs (for validation sets). ``name``
    labels the pairs in messages; keys are never prefixed (the model card reads them bare).
    """

    primary_metric = "auroc"
    greater_is_better = True

    def __init__(self, pairs: Sequence[LabelledPair], name: str = "") -> None:
        self.pairs = list(pairs)
        self.name = name
        self.y = np.array([p.supported for p in self.pairs], dtype=bool)
        if self.y.all() or not self.y.any():
            raise DataError(f"evaluation pairs{' ' + name if name else ''} need both supported and unsupported "
                            f"examples ({int(self.y.sum())} of {len(self.y)} supported)")

    def scores(self, scorer: PairScorer) -> np.ndarray:
        """The scorer's score for every pair."""
        return np.asarray(scorer.score([(p.sentence, p.evidence) for p in self.pairs]), dtype=np.float64)

    def __call__(self, scorer: PairScorer, threshold: float | None = None,
                 scores: np.ndarray | None = None) -> dict[str, Any]:
        """Metrics of ``scorer`` (or of precomputed ``scores``) on the pairs."""
        s = self.scores(scorer) if scores is None else np.asarray(scores, dtype=np.float64)
        return metrics(self.y, s, threshold)


def metrics(y: np.ndarray, scores: np.ndarray, threshold: float | None = None) -> dict[str, Any]:
    """AUROC, balanced accuracy at ``threshold`` (None: the best one on these labels) and counts."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    y = np.asarray(y, dtype=bool)
    t = choose_threshold(y, scores) if threshold is None else float(threshold)
    predicted = scores >= t
    return {
        "auroc": float(roc_auc_score(y, scores)),
        "balanced_accuracy": float(balanced_accuracy_score(y, predicted)),
        "threshold": t,
        "threshold_chosen_here": threshold is None,
        "unsupported_recall": float(np.mean(~predicted[~y])),
        "supported_recall": float(np.mean(predicted[y])),
        "examples": int(len(y)),
        "supported": int(y.sum()),
        "primary_metric": GroundednessEvaluator.primary_metric,
    }
