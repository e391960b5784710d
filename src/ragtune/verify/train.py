"""Training the groundedness checker: ``ragtune verify train`` and ``benchmarks/groundedness.py`` both call
:func:`train_groundedness`, so the benchmark measures the checker users get.

The pairs (packaged BEGIN and SciFact by default, see :mod:`ragtune.verify.data`) are split by
:func:`~ragtune.verify.data.split_pairs`: a test split of every source (never trained on, never used for a
choice), a BEGIN validation split (the lexical combiner and the threshold are fitted there) and the rest, which the
cross-encoder is fine-tuned on. The model card records the test split's figures for the checker, the
cross-encoder alone and the untrained lexical scorer.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.errors import DataError
from ragtune.text import term_overlap
from ragtune.tuning.base import Progress
from ragtune.tuning.registry import ModelCard, Registry, new_card
from ragtune.verify.data import (
    SUPPORTED,
    TEST_FRACTION,
    UNSUPPORTED,
    VALIDATION_FRACTION,
    LabelledPair,
    describe,
    load_training_pairs,
    packaged_data_dir,
    split_pairs,
)
from ragtune.verify.default import DEFAULT_MODEL, lexical_threshold, overlap_scores
from ragtune.verify.evaluate import metrics
from ragtune.verify.groundedness import Combiner, GroundednessChecker
from ragtune.verify.pairs import best_window, pair_text

DEFAULT_PARAMS: dict[str, Any] = {
    "epochs": 2.0,
    "batch_size": 16,
    "learning_rate": 1e-4,
    "head_learning_rate": 3e-3,
    "max_length": 128,
    "freeze_embeddings": True,
    "threads": 2,
}
"""Fine-tuning settings of :func:`train_groundedness` (see docs/groundedness.md for how they were chosen)."""


@dataclass
class GroundednessTrainResult:
    """What :func:`train_groundedness` produced; ``test``: figures per source family on the test split."""

    card: ModelCard
    checker: GroundednessChecker
    validation: dict[str, Any]
    train_counts: dict[str, dict[str, int]]
    validation_counts: dict[str, dict[str, int]]
    seconds: float
    test: dict[str, dict[str, Any]]
    test_counts: dict[str, dict[str, int]]


def training_texts(pairs: Sequence[LabelledPair], max_length: int) -> tuple[list[str], list[str]]:
    """Classifier texts and labels: each pair with the evidence window that shares most words with it."""
    texts = [pair_text(p.sentence, best_window(p.sentence, p.evidence, max_length)) for p in pairs]
    return texts, [p.label for p in pairs]


def cap_pairs(pairs: Sequence[LabelledPair], max_pairs: int | None, seed: int = 0,
              keep_prefix: str = "begin") -> list[LabelledPair]:
    """At most ``max_pairs`` pairs: those of sources starting with ``keep_prefix`` first, then a seeded
    sample of the rest."""
    pairs = list(pairs)
    if max_pairs is None or len(pairs) <= max_pairs:
        return pairs
    kept = [p for p in pairs if p.source.startswith(keep_prefix)][:max_pairs]
    rest = [p for p in pairs if not p.source.startswith(keep_prefix)]
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(rest), size=min(len(rest), max_pairs - len(kept)), replace=False).tolist())
    return kept + [rest[i] for i in pick]


def fit_checker(train: Sequence[LabelledPair], validation: Sequence[LabelledPair] = (),
                params: dict[str, Any] | None = None, seed: int = 0, progress: Progress | None = None,
                name: str = "", combine: bool = True) -> tuple[GroundednessChecker, dict[str, Any]]:
    """Fine-tune and calibrate a checker on ``train``. On ``validation`` (when it has both labels), fit the
    combiner with lexical overlap (``combine``) and choose the threshold (best balanced accuracy; else 0.5).
    Returns the checker and its validation metrics (``cross_encoder``: those of the model alone)."""
    from ragtune.tuning.finetune import FineTuneClassifier

    settings = {**DEFAULT_PARAMS, **(params or {})}
    clf = FineTuneClassifier(random_state=seed, **settings)
    texts, labels = training_texts(train, clf.max_length)
    if len(set(labels)) < 2:
        raise DataError(f"the training pairs need supported and unsupported examples; got {describe(train)}")
    clf.fit(texts, labels, progress=progress)
    checker = GroundednessChecker(clf, 0.5, name)
    found: dict[str, Any] = {}
    y = np.array([p.supported for p in validation], dtype=bool)
    if len(y) and y.any() and not y.all():
        pairs = [(p.sentence, p.evidence) for p in validation]
        p_model = checker.model_probability(pairs)
        scores = p_model
        found["cross_encoder"] = metrics(y, p_model)
        if combine:
            overlap = np.array([term_overlap(s, e) for s, e in pairs])
            checker.combiner = Combiner.fit(p_model, overlap, y)
            scores = checker.combiner.apply(p_model, overlap)
        found.update(metrics(y, scores))
        found["balanced_accuracy_at_0.5"] = metrics(y, scores, 0.5)["balanced_accuracy"]
        checker.threshold = found["threshold"]
    return checker, found


def score_test_split(checker: GroundednessChecker, test: Sequence[LabelledPair], lexical_at: float | None,
                 cross_encoder_at: float) -> dict[str, dict[str, Any]]:
    """Per source family (``begin``, ``scifact``, ...) with both labels on the test split: the metrics of the
    checker (at its threshold), the cross-encoder alone and lexical overlap (at the thresholds given)."""
    out: dict[str, dict[str, Any]] = {}
    for family in sorted({p.source.split("/")[0] for p in test}):
        part = [p for p in test if p.source.split("/")[0] == family]
        y = np.array([p.supported for p in part], dtype=bool)
        if y.all() or not y.any():
            continue
        pairs = [(p.sentence, p.evidence) for p in part]
        p_model = checker.model_probability(pairs)
        scores = p_model if checker.combiner is None else checker.combiner.apply(p_model, overlap_scores(pairs))
        out[family] = {"checker": metrics(y, scores, checker.threshold),
                       "cross_encoder": metrics(y, p_model, cross_encoder_at)}
        if lexical_at is not None:
            out[family]["lexical"] = metrics(y, overlap_scores(pairs), lexical_at)
    return out


def pairs_sha256(pairs: Sequence[LabelledPair]) -> str:
    """A digest of the training pairs (for the model card)."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(f"{p.sentence}\0{p.evidence}\0{p.label}\0".encode())
    return h.hexdigest()


def train_groundedness(
    registry: Registry,
    data: Path | str | None = None,
    name: str = DEFAULT_MODEL,
    params: dict[str, Any] | None = None,
    validation_fraction: float = VALIDATION_FRACTION,
    test_fraction: float = TEST_FRACTION,
    max_pairs: int | None = None,
    generic: str = "drop",
    negatives_per_rationale: int = 1,
    combine: bool = True,
    seed: int = 0,
    progress: Progress | None = None,
) -> GroundednessTrainResult:
    """Build pairs from ``data`` (BEGIN TSVs and/or SciFact; None: the packaged pairs), split them
    (:func:`~ragtune.verify.data.split_pairs`), fine-tune and calibrate on the training split, fit the lexical
    combiner (``combine``) and the threshold on the validation split, score the test split, and register the
    checker as ``name``. ``max_pairs`` caps the training pairs (BEGIN first, then a sample of SciFact)."""
    folder = packaged_data_dir() if data is None else Path(data)
    pairs = load_training_pairs(folder, generic, negatives_per_rationale, seed)
    splits = split_pairs(pairs, validation_fraction, test_fraction, seed)
    train = cap_pairs(splits.train, max_pairs, seed)
    t0 = time.perf_counter()
    checker, found = fit_checker(train, splits.validation, params, seed, progress, name, combine)
    seconds = time.perf_counter() - t0
    # The lexical scorer's threshold, chosen as the default one is: on the BEGIN pairs outside the test split.
    tested = {id(p) for p in splits.test}
    chosen_on = [p for p in pairs if id(p) not in tested and p.source.startswith("begin")]
    labels = {p.supported for p in chosen_on}
    lexical_at = lexical_threshold(chosen_on) if len(labels) == 2 else None
    test = score_test_split(checker, splits.test, lexical_at, found.get("cross_encoder", {}).get("threshold", 0.5))
    clf = checker.classifier
    card = new_card("finetune", clf, pairs_sha256(train), "packaged" if data is None else str(data))
    card.metrics = {k: found[k] for k in ("auroc", "balanced_accuracy", "threshold", "examples", "primary_metric")
                    if k in found}
    if "begin" in test:
        card.metrics["test_auroc"] = test["begin"]["checker"]["auroc"]
    card.notes = {
        "kind": "groundedness",
        "threshold": checker.threshold,
        "combiner": asdict(checker.combiner) if checker.combiner is not None else None,
        "labels": {"Fully attributable": SUPPORTED, "Not fully attributable": UNSUPPORTED,
                   "Generic": "dropped" if generic == "drop" else UNSUPPORTED,
                   "SciFact SUPPORT": SUPPORTED, "SciFact CONTRADICT": UNSUPPORTED,
                   "SciFact non-rationale sentence": UNSUPPORTED},
        "train_pairs": describe(train),
        "validation_pairs": describe(splits.validation),
        "test_pairs": describe(splits.test),
        "validation": found,
        "test": test,
        "lexical_threshold": lexical_at,
        "split": {"validation_fraction": validation_fraction, "test_fraction": test_fraction, "seed": seed},
        "calibration": clf.calibration_,
        "train_seconds": seconds,
    }
    card = registry.register(name, clf, card)
    checker.name = f"{name} v{card.version}"
    return GroundednessTrainResult(card, checker, found, describe(train), describe(splits.validation), seconds,
                                   test, describe(splits.test))
