"""``head``: frozen packaged MiniLM embeddings + multinomial logistic regression. The fast baseline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
from sklearn.linear_model import LogisticRegression

from ragtune.models.embedder import MiniLMEmbedder
from ragtune.tuning.base import Progress, TextClassifier

HEAD_FILE = "head.npz"


class LogisticHead:
    """A logistic-regression head over sentence embeddings: fitting, logits and its own file.

    Shared by every classifier whose last stage is ``LogisticRegression`` on embeddings (head, setfit).
    """

    C: float
    max_iter: int
    random_state: int
    model_: LogisticRegression

    def _fit_head(self, x: np.ndarray, y: np.ndarray, progress: Progress | None) -> None:
        if progress:
            progress("fit", 0, 1, {})
        self.model_ = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.random_state)
        self.model_.fit(x, y)
        if progress:
            progress("fit", 1, 1, {})

    def logits_from_embeddings(self, x: np.ndarray) -> np.ndarray:
        """Class logits for embeddings (columns follow ``classes_``)."""
        z = x @ self.model_.coef_.T + self.model_.intercept_
        if z.shape[1] == 1:  # binary: scikit-learn keeps one column for the positive class
            z = np.hstack([np.zeros_like(z), z])
        return np.asarray(z)

    def _save_head(self, folder: Path) -> None:
        np.savez(folder / HEAD_FILE, coef=self.model_.coef_, intercept=self.model_.intercept_,
                 classes=self.model_.classes_)

    def _load_head(self, folder: Path) -> None:
        data = np.load(folder / HEAD_FILE)
        self.model_ = LogisticRegression(C=self.C)
        self.model_.coef_ = data["coef"]
        self.model_.intercept_ = data["intercept"]
        self.model_.classes_ = data["classes"]


class HeadClassifier(LogisticHead, TextClassifier):
    """Logistic regression on frozen all-MiniLM-L6-v2 sentence embeddings."""

    method: ClassVar[str] = "head"
    cross_fit_max: ClassVar[int] = 3000  # embeddings are cached, so each extra fit is a logistic regression

    def __init__(
        self,
        C: float = 10.0,  # noqa: N803 - scikit-learn's name
        max_iter: int = 3000,
        batch_size: int = 64,
        threads: int = 2,
        calibration_fraction: float = 0.1,
        threshold: float = 0.5,
        random_state: int = 0,
    ) -> None:
        self.C = C
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.threads = threads
        self.calibration_fraction = calibration_fraction
        self.threshold = threshold
        self.random_state = random_state

    def _embedder(self) -> MiniLMEmbedder:
        return MiniLMEmbedder(batch_size=self.batch_size, threads=self.threads)

    def embed(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """Sentence embeddings, in batches, reporting progress."""
        emb = self._embedder()
        out = []
        step = max(self.batch_size * 8, 1)
        for start in range(0, len(texts), step):
            out.append(emb.embed(list(texts[start : start + step])))
            if progress:
                progress("embed", min(start + step, len(texts)), len(texts), {})
        return np.vstack(out) if out else np.zeros((0, emb.dim), dtype=np.float32)

    def _fit_model(self, texts: list[str], y: np.ndarray, progress: Progress | None) -> None:
        self._fit_head(self.embed(texts, progress), y, progress)

    def _logits(self, texts: Sequence[str]) -> np.ndarray:
        return self.logits_from_embeddings(self.embed(texts))

    def _save_model(self, folder: Path) -> None:
        self._save_head(folder)

    def _load_model(self, folder: Path) -> None:
        self._load_head(folder)
