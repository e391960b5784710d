"""SQuAD's answer metrics and its no-answer threshold: exact match and token F1 after normalisation (lower case,
punctuation and the articles a/an/the removed, spaces collapsed), the best of several gold answers; a no-answer
gold scores 1 only when the reader abstains. The threshold is SQuAD v2's ``best_f1_thresh``: of every cut in
the held-out scores, the one that maximises the mean F1, where answering below it counts as abstaining."""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD's normal form: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the prediction equals a gold answer after normalisation (no gold: when it is empty too)."""
    if not golds:
        return float(not normalize_answer(prediction))
    return float(any(normalize_answer(prediction) == normalize_answer(g) for g in golds))


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """The best token-overlap F1 of the prediction against the gold answers (no gold: 1.0 when it is empty)."""
    if not golds:
        return float(not normalize_answer(prediction))
    pred = normalize_answer(prediction).split()
    best = 0.0
    for gold in golds:
        ref = normalize_answer(gold).split()
        if not pred or not ref:
            best = max(best, float(pred == ref))
            continue
        common = sum((Counter(pred) & Counter(ref)).values())
        if common:
            p, r = common / len(pred), common / len(ref)
            best = max(best, 2 * p * r / (p + r))
    return best


def best_threshold(scores: Sequence[float], answered_f1: Sequence[float], answerable: Sequence[bool]
                   ) -> tuple[float, float]:
    """(threshold, mean F1 at it): answer when ``score >= threshold``. ``answered_f1``: each example's F1 when
    answered (0 for a no-answer gold); abstaining scores 1 on a no-answer gold, 0 on an answerable one. With
    no cut better than abstaining everywhere, the threshold lies above every score."""
    n = len(scores)
    if n == 0:
        return 0.0, math.nan
    total = float(sum(not a for a in answerable))
    best, threshold = total, (max(s for s in scores if math.isfinite(s)) + 1.0
                              if any(math.isfinite(s) for s in scores) else 0.0)
    order = sorted((i for i in range(n) if math.isfinite(scores[i])), key=lambda i: -scores[i])
    for pos, i in enumerate(order):
        total += answered_f1[i] - (0.0 if answerable[i] else 1.0)
        if pos + 1 < len(order) and scores[order[pos + 1]] == scores[i]:
            continue  # a cut only between different scores
        if total > best:
            best, threshold = total, float(scores[i])
    return threshold, best / n


def evaluate(predictions: Sequence[tuple[str, float]], golds: Sequence[Sequence[str]],
             threshold: float | None = None) -> dict[str, float]:
    """Metrics of (best span text, score) per example against its gold answers (empty: no answer): the
    threshold (``None``: calibrated here), EM and F1 at it, F1 over the answered examples, the answered share,
    and F1 on answerable examples when always answering."""
    answerable = [bool(g) for g in golds]
    f1_if = [token_f1(p, g) if g else 0.0 for (p, _), g in zip(predictions, golds, strict=True)]
    em_if = [exact_match(p, g) if g else 0.0 for (p, _), g in zip(predictions, golds, strict=True)]
    scores = [s for _, s in predictions]
    if threshold is None:
        threshold, _ = best_threshold(scores, f1_if, answerable)
    answered = np.array([math.isfinite(s) and s >= threshold for s in scores], dtype=bool)
    abstain = np.array([0.0 if a else 1.0 for a in answerable])
    f1 = np.where(answered, f1_if, abstain)
    em = np.where(answered, em_if, abstain)
    has = np.array(answerable, dtype=bool)
    nan = math.nan
    return {"threshold": float(threshold), "em": float(em.mean()) if len(em) else nan,
            "f1": float(f1.mean()) if len(f1) else nan,
            "f1_answered": float(np.mean(np.array(f1_if)[answered])) if answered.any() else nan,
            "answered_share": float(answered.mean()) if len(answered) else nan,
            "f1_has_answer_always": float(np.mean(np.array(f1_if)[has])) if has.any() else nan,
            "no_answer_abstained": float(np.mean(~answered[~has])) if (~has).any() else nan}
