"""The text-classifier contract: scikit-learn's estimator API plus calibration, abstention and save/load.

Subclasses implement ``_fit_model(texts, y, progress)``, ``_logits(texts)``, ``_save_model(folder)`` and
``_load_model(folder)``. The base class holds out a stratified calibration split, fits the temperature on it,
and turns logits into calibrated probabilities. Fitted attributes end in ``_``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedKFold, train_test_split

from ragtune.errors import ConfigError, DataError, ModelNotFoundError
from ragtune.tuning.calibration import expected_calibration_error, fit_temperature, softmax

NEEDS_REVIEW = "needs_review"
META_FILE = "classifier.json"
Progress = Callable[[str, int, int, dict[str, float]], None]
"""Progress callback: (phase, step, total_steps, metrics such as loss)."""

_REGISTRY: dict[str, type[TextClassifier]] = {}


class TextClassifier(ClassifierMixin, BaseEstimator):
    """Base of every ragtune classifier (``method`` names it: head, setfit, finetune, ensemble)."""

    method: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("method"):  # only a class that names its own method: a subclass of HeadClassifier
            _REGISTRY[cls.method] = cls  # (e.g. in a test) must not take over "head" for everyone

    # Subclasses define __init__ with their parameters; these two are common to all.
    calibration_fraction: float = 0.1
    # Up to this many examples, calibration uses out-of-fold logits (k-fold, then one fit on everything)
    # instead of a held-out split; only for models cheap enough to fit six times.
    cross_fit_max: ClassVar[int] = 0
    threshold: float = 0.5
    random_state: int = 0

    # -- to implement -------------------------------------------------------------------------------------
    def _fit_model(self, texts: list[str], y: np.ndarray, progress: Progress | None) -> None:
        raise NotImplementedError

    def _logits(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def _save_model(self, folder: Path) -> None:
        raise NotImplementedError

    def _load_model(self, folder: Path) -> None:
        raise NotImplementedError

    # -- the contract ---------------------------------------------------------------------------------------
    def fit(self, texts: Sequence[str], labels: Sequence[str], progress: Progress | None = None) -> TextClassifier:
        """Fit on ``texts``/``labels`` and calibrate: on out-of-fold logits for small data and cheap models
        (``cross_fit_max``), else on a held-out ``calibration_fraction`` of the data."""
        texts, labels = list(texts), [str(label) for label in labels]
        if len(texts) != len(labels):
            raise DataError(f"{len(texts)} texts but {len(labels)} labels")
        if any(not t.strip() for t in texts):
            raise DataError("empty text in the training data")
        self.classes_ = np.array(sorted(set(labels)))
        if len(self.classes_) < 2:
            raise DataError(f"only one class ({self.classes_[0] if len(self.classes_) else 'none'}): a "
                            "classifier needs at least two labels")
        index = {c: i for i, c in enumerate(self.classes_)}
        y = np.array([index[label] for label in labels])
        counts = np.bincount(y)
        n_cal = int(round(len(y) * self.calibration_fraction))
        self.temperature_ = 1.0
        self.calibration_: dict[str, float] = {"examples": 0}
        cal_logits, cal_y = np.zeros((0, len(self.classes_))), np.zeros(0, dtype=int)
        if self.calibration_fraction > 0 and len(y) <= self.cross_fit_max and counts.min() >= 2:
            # Small data and a cheap model: calibrate on out-of-fold logits, then train on every example
            # (a held-out split would cost 10 % of an already small training set).
            folds = StratifiedKFold(n_splits=min(5, int(counts.min())), shuffle=True,
                                    random_state=self.random_state)
            cal_logits = np.zeros((len(y), len(self.classes_)))
            for k, (tr, cal) in enumerate(folds.split(np.zeros(len(y)), y)):
                if progress:
                    progress("calibrate", k, folds.get_n_splits(), {})
                self._fit_model([texts[i] for i in tr], y[tr], None)
                cal_logits[cal] = self._logits([texts[i] for i in cal])
            cal_y = y
            self._fit_model(texts, y, progress)
        elif self.calibration_fraction > 0 and counts.min() >= 2 and n_cal >= len(self.classes_):
            tr, cal = train_test_split(np.arange(len(y)), test_size=n_cal, stratify=y,
                                       random_state=self.random_state)
            self._fit_model([texts[i] for i in tr], y[tr], progress)
            cal_logits, cal_y = self._logits([texts[i] for i in cal]), y[cal]
        else:  # too few examples to spare a calibration split: temperature stays 1
            self._fit_model(texts, y, progress)
        if len(cal_y):
            # With every held-out example right, NLL keeps falling as T -> 0: sharpen at most 2x then, so the
            # model does not become certain of everything, out-of-domain inputs included.
            all_right = bool((cal_logits.argmax(axis=1) == cal_y).all())
            self.temperature_ = fit_temperature(cal_logits, cal_y, low=0.5 if all_right else 0.05)
            self.calibration_.update(
                examples=len(cal_y),  # a count (an int in card.json, not 127.0)
                ece_before=expected_calibration_error(softmax(cal_logits), cal_y),
                ece_after=expected_calibration_error(softmax(cal_logits, self.temperature_), cal_y),
                temperature=self.temperature_,
            )
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise DataError(f"this {type(self).__name__} is not fitted yet: call fit() or load()")

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated class probabilities, columns in the order of ``classes_``."""
        self._check_fitted()
        if len(texts) == 0:
            return np.zeros((0, len(self.classes_)))
        return softmax(self._logits(list(texts)), self.temperature_)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """The most probable label of each text."""
        self._check_fitted()  # before self.classes_ is read, so an unfitted model raises DataError, not AttributeError
        return self.classes_[self.predict_proba(texts).argmax(axis=1)]

    def predict_or_review(self, texts: Sequence[str], threshold: float | None = None) -> list[tuple[str, float]]:
        """(label, probability) per text; ``needs_review`` where the top probability is below the threshold."""
        probs = self.predict_proba(texts)
        t = self.threshold if threshold is None else threshold
        out = []
        for row in probs:
            j = int(row.argmax())
            out.append((str(self.classes_[j]) if row[j] >= t else NEEDS_REVIEW, float(row[j])))
        return out

    def save(self, folder: Path | str) -> Path:
        """Write the fitted model and its metadata to ``folder``."""
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._save_model(folder)
        meta = {
            "method": self.method,
            "params": self.get_params(),
            "classes": [str(c) for c in self.classes_],
            "temperature": self.temperature_,
            "calibration": self.calibration_,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return folder

    @staticmethod
    def load(folder: Path | str) -> TextClassifier:
        """Load any saved ragtune classifier (the method is read from its metadata); never uses the network."""
        folder = Path(folder)
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise ModelNotFoundError(f"{folder} holds no saved classifier ({META_FILE} missing)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        try:
            cls = classifier_class(meta["method"])
        except DataError as exc:
            raise ModelNotFoundError(f"{folder}: {exc}") from exc
        clf = cls(**meta["params"])
        clf.classes_ = np.array(meta["classes"])
        clf.temperature_ = float(meta["temperature"])
        clf.calibration_ = meta.get("calibration", {})
        clf._load_model(folder)
        return clf


METHOD_MODULES = {
    "head": "ragtune.tuning.head",
    "setfit": "ragtune.tuning.setfit_model",
    "finetune": "ragtune.tuning.finetune",
    "ensemble": "ragtune.tuning.ensemble",
}


def classifier_class(method: str) -> type[TextClassifier]:
    """The classifier class for a method name (its module is imported on demand)."""
    import importlib

    if method not in METHOD_MODULES:
        raise DataError(f"unknown method {method!r}; choose one of: auto, {', '.join(METHOD_MODULES)}")
    if method not in _REGISTRY:
        importlib.import_module(METHOD_MODULES[method])
    return _REGISTRY[method]


def build_classifier(method: str, params: dict[str, Any]) -> TextClassifier:
    """A new ``method`` classifier with ``params``; an unknown setting is a :class:`ConfigError` naming the
    valid ones."""
    import inspect

    cls = classifier_class(method)
    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(f"{method} has no setting {', '.join(map(repr, unknown))}; its settings are: "
                          f"{', '.join(valid)}")
    return cls(**params)
