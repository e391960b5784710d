"""Temperature scaling (Guo et al., 2017) and calibration metrics."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true classes."""
    p = softmax(logits, temperature)[np.arange(len(y)), y]
    return float(-np.mean(np.log(np.clip(p, 1e-12, 1.0))))


def fit_temperature(logits: np.ndarray, y: np.ndarray, low: float = 0.05, high: float = 20.0) -> float:
    """The temperature in [low, high] minimising validation NLL.

    Raise ``low`` on calibration sets the model gets entirely right: there NLL keeps falling as T -> 0 and
    would make the model certain of everything, out-of-domain inputs included.
    """
    if len(y) == 0:
        return 1.0
    res = minimize_scalar(lambda lt: nll(logits, y, float(np.exp(lt))), bounds=(np.log(low), np.log(high)),
                          method="bounded")
    return float(np.exp(res.x))


def reliability_bins(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> list[tuple[float, float, int]]:
    """Per confidence bin: (mean confidence, accuracy, count) of the top-1 predictions."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (conf > lo) & (conf <= hi)
        n = int(mask.sum())
        out.append((float(conf[mask].mean()) if n else (lo + hi) / 2, float(correct[mask].mean()) if n else 0.0, n))
    return out


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """ECE: the count-weighted mean |accuracy - confidence| over confidence bins."""
    total = len(y)
    if total == 0:
        return 0.0
    return float(sum(n * abs(acc - conf) for conf, acc, n in reliability_bins(probs, y, n_bins)) / total)
