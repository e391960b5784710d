"""Duplicate groups and the train/test split that keeps each group on one side.

A data set with copies of the same question (exact, or near: cosine of their embeddings at or above
:data:`NEAR_DUPLICATE`) gives an optimistic held-out score when a random split puts one copy in training and
another in the test set. :func:`duplicate_groups` joins exact and near duplicates into groups, and
:func:`group_split` holds out whole groups with scikit-learn's ``StratifiedGroupKFold``. The label audit finds
duplicates with the same two rules (:func:`normalize`, :func:`near_pairs`); ``ragtune train`` and the advisor's
label bake-off split with :func:`group_split`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence

import numpy as np

from ragtune.errors import DataError

NEAR_DUPLICATE = 0.95  # cosine of two texts' embeddings at or above which they are near duplicates


def normalize(text: str) -> str:
    """Case- and whitespace-insensitive form used to find exact duplicates."""
    return re.sub(r"\s+", " ", text.strip().lower())


def near_pairs(a: np.ndarray, b: np.ndarray | None, threshold: float = NEAR_DUPLICATE, block: int = 1024
               ) -> list[tuple[int, int, float]]:
    """Pairs (i, j, cosine) with cosine >= threshold; within ``a`` (i < j) or between ``a`` and ``b``.

    Rows must be unit-normalised embeddings."""
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


def duplicate_groups(texts: Sequence[str], embeddings: np.ndarray | None = None,
                     threshold: float = NEAR_DUPLICATE) -> list[int]:
    """A group id per text: texts equal after :func:`normalize`, and (with ``embeddings``) texts whose cosine is
    at least ``threshold``, share one, transitively. Ids are 0, 1, ... in order of each group's first text."""
    parent = list(range(len(texts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    first: dict[str, int] = {}
    for i, t in enumerate(texts):
        union(first.setdefault(normalize(t), i), i)
    if embeddings is not None:
        if len(embeddings) != len(texts):
            raise ValueError(f"{len(embeddings)} embeddings for {len(texts)} texts")
        for i, j, _ in near_pairs(np.asarray(embeddings), None, threshold):
            union(i, j)
    ids: dict[int, int] = {}
    return [ids.setdefault(find(i), len(ids)) for i in range(len(texts))]


def _folds(test_size: float, most: int) -> tuple[int, int]:
    """(m, k): hold out m of k folds, m/k closest to ``test_size`` (within 0.005, the fewest folds win)."""
    best: tuple[float, int, int] | None = None
    for k in range(2, max(2, min(20, most)) + 1):
        for m in range(1, k):
            error = abs(m / k - test_size)
            if best is None or error < best[0] - 0.005:
                best = (error, m, k)
    assert best is not None
    return best[1], best[2]


def group_split(labels: Sequence[str], groups: Sequence[int], test_size: float, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): about ``test_size`` of the examples held out, stratified by label, every group
    wholly on one side (``StratifiedGroupKFold``; ``test_size`` is met as m of k folds).

    A test example whose label would then be missing from training moves to training with its group (a class
    whose examples are all copies of one text cannot be tested without leaking). Raises :class:`DataError` when
    nothing can be held out (the caller says what to do)."""
    from sklearn.model_selection import StratifiedGroupKFold

    y = np.asarray([str(label) for label in labels])
    g = np.asarray(groups)
    if len(y) != len(g):
        raise ValueError(f"{len(g)} group ids for {len(y)} labels")
    n_groups = len(set(g.tolist()))
    largest = max(np.unique(y, return_counts=True)[1], default=0)
    m, k = _folds(test_size, min(n_groups, int(largest)))
    if n_groups < 2 or k > n_groups:
        raise DataError(f"{len(y)} examples in {n_groups} distinct text(s) (duplicates count once) are too few "
                        "to hold out a test set")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a class smaller than k: handled below, by moving it to training
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        folds = [test for _, test in splitter.split(np.zeros(len(y)), y, g)]
    in_test = np.zeros(len(y), dtype=bool)
    for fold in folds[:m]:
        in_test[fold] = True
    while True:
        missing = set(y[in_test].tolist()) - set(y[~in_test].tolist())
        if not missing:
            break
        moved = np.isin(g, g[in_test & np.isin(y, list(missing))])
        in_test &= ~moved
    train_idx, test_idx = np.flatnonzero(~in_test), np.flatnonzero(in_test)
    if not len(test_idx) or not len(train_idx):
        raise DataError(f"no test set can be held out of {len(y)} examples in {n_groups} distinct text(s) "
                        "without copies of one text on both sides")
    return train_idx, test_idx
