"""Paired bootstrap confidence intervals for the difference of two systems scored on the same queries.

Each resample draws ``len(queries)`` query indices with replacement (numpy's seeded ``default_rng``) and takes
the mean of the per-query differences ``b - a`` on them; the interval is the 2.5th and 97.5th percentile of
those means (for 95 %). Pairing by query removes the between-query variance both systems share, so the
interval is much narrower than one from two independent samples. ``p_value`` is the two-sided share of
resampled means on the other side of 0 (the usual bootstrap approximation), for orientation only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``b - a`` over the paired queries, its bootstrap interval, and how it was computed."""

    mean: float
    low: float
    high: float
    queries: int
    resamples: int
    confidence: float
    seed: int
    p_value: float

    @property
    def significant(self) -> bool:
        """Whether the interval excludes 0."""
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (with ``significant``)."""
        return {**asdict(self), "significant": self.significant}


def paired_bootstrap(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, resamples: int = 1000,
                     seed: int = 0, confidence: float = 0.95) -> PairedDifference:
    """The paired bootstrap interval of ``mean(b) - mean(a)``; ``a[i]`` and ``b[i]`` are the same query.

    Deterministic for a given ``seed``. With no resamples the interval is the point estimate itself."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired scores must be two lists of one length, got {x.shape} and {y.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    n = len(x)
    if n == 0:
        raise ValueError("no paired queries to compare")
    diff = y - x
    mean = float(diff.mean())
    if resamples <= 0:
        return PairedDifference(mean, mean, mean, n, 0, confidence, seed, 1.0 if mean == 0 else 0.0)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // n)  # resample in blocks: bounded memory for large query sets
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        idx = rng.integers(0, n, size=(size, n))
        means[start:start + size] = diff[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    p = 2 * min(float((means <= 0).mean()), float((means >= 0).mean()))
    return PairedDifference(mean, float(low), float(high), n, resamples, confidence, seed, min(1.0, p))
