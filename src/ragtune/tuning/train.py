"""Training end to end: load, audit, split, choose a method, fit, evaluate, register, report."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from ragtune.errors import DataError
from ragtune.models.embedder import MiniLMEmbedder
from ragtune.tuning.audit import AuditReport, audit_labels
from ragtune.tuning.base import Progress, build_classifier
from ragtune.tuning.data import LabelledData, load_labelled
from ragtune.tuning.evaluate import ClassificationEvaluator
from ragtune.tuning.registry import ModelCard, Registry, new_card
from ragtune.tuning.report import write_report

FEW_SHOT_PER_CLASS = 32
LARGE_DATA = 3000


def choose_method(labels: list[str]) -> tuple[str, str]:
    """``auto``: pick a method from the examples per class, and say why."""
    per_class = float(np.median(list(Counter(labels).values())))
    if per_class < FEW_SHOT_PER_CLASS:
        return "head", (f"median {per_class:.0f} examples per class (< {FEW_SHOT_PER_CLASS}): few-shot; frozen "
                        "embeddings + logistic regression trains in seconds and beat setfit at 10 per class on "
                        "banking77 (docs/benchmarks.md); --method ensemble is more accurate and far slower")
    if len(labels) < LARGE_DATA:
        return "head", (f"median {per_class:.0f} examples per class but only {len(labels)} in all "
                        f"(< {LARGE_DATA}): frozen embeddings + logistic regression is as good and much faster")
    return "finetune", (f"{len(labels)} examples, median {per_class:.0f} per class: enough to fine-tune the "
                        "whole encoder, the most accurate method (and the slowest to train)")


@dataclass
class TrainResult:
    """What ``train_classifier`` produced."""

    card: ModelCard
    metrics: dict[str, Any]
    audit: AuditReport
    method: str
    reason: str
    report_md: Path
    report_html: Path


def split_data(data: LabelledData, test_size: float, seed: int) -> tuple[LabelledData, LabelledData]:
    """Stratified train/test split (plain split when some class has a single example)."""
    counts = Counter(data.labels)
    stratify = data.labels if min(counts.values()) >= 2 else None
    idx = np.arange(len(data))
    n_test = max(int(round(len(data) * test_size)), len(counts) if stratify else 1)
    if n_test >= len(data):
        raise DataError(f"{data.source}: {len(data)} examples are too few to hold out a test set; add more "
                        "or pass --test FILE")
    tr, te = train_test_split(idx, test_size=n_test, stratify=stratify, random_state=seed)

    def subset(ix: np.ndarray, part: str) -> LabelledData:
        return LabelledData([data.texts[i] for i in ix], [data.labels[i] for i in ix],
                            f"{data.source}#{part}", data.sha256)

    return subset(tr, "train"), subset(te, "test")


def train_classifier(
    models_root: Path,
    data_path: Path,
    name: str,
    text_col: str = "text",
    label_col: str = "label",
    method: str = "auto",
    test_path: Path | None = None,
    test_size: float = 0.2,
    seed: int = 0,
    params: dict[str, Any] | None = None,
    label_names: bool = False,
    progress: Progress | None = None,
    on_audit: Callable[[AuditReport, LabelledData], None] | None = None,
    on_method: Callable[[str, str], None] | None = None,
) -> TrainResult:
    """Train, evaluate and register a classifier; blocking audit findings raise :class:`DataError`.

    ``label_names`` adds one training example per class whose text is the label's name (after the audit and the
    test split, so it never reaches the test data)."""
    registry = Registry(models_root)
    data = load_labelled(data_path, text_col, label_col)
    if test_path is not None:
        train, test = data, load_labelled(test_path, text_col, label_col)
    else:
        if len(set(data.labels)) < 2:
            train, test = data, data  # the audit below reports the real problem
        else:
            train, test = split_data(data, test_size, seed)
    embedder = MiniLMEmbedder()
    audit = audit_labels(train, embedder, test if test_path is not None else None)
    if on_audit:
        on_audit(audit, train)
    if audit.blocking:
        raise DataError("cannot train: " + "; ".join(audit.blocking))
    unknown = sorted(set(test.labels) - set(train.labels))
    if unknown:
        n = sum(label in unknown for label in test.labels)
        raise DataError(f"the test data has {n} example(s) with label(s) never seen in training: "
                        f"{', '.join(unknown[:10])}; remove them or add training examples")
    reason = "chosen by you"
    if method == "auto":
        method, reason = choose_method(train.labels)
    if on_method:
        on_method(method, reason)
    clf = build_classifier(method, {"random_state": seed, **(params or {})})
    fit_data = train.with_label_names() if label_names else train
    clf.fit(fit_data.texts, fit_data.labels, progress=progress)
    metrics = ClassificationEvaluator(test.texts, test.labels)(clf)
    card = new_card(method, clf, data.sha256, str(data_path))
    card.metrics = {k: metrics[k] for k in ("accuracy", "macro_f1", "ece", "abstain_rate", "threshold",
                                             "examples", "primary_metric")}
    card.notes = {"reason": reason, "calibration": clf.calibration_, "train_examples": len(fit_data),
                  "label_names": label_names,
                  "test_source": test.source}
    card = registry.register(name, clf, card)
    folder = registry.path(name, card.version)
    (folder / "audit.json").write_text(json.dumps(asdict(audit), indent=2, default=str), encoding="utf-8")
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    md, html = write_report(folder, f"Model {name} v{card.version}", asdict(card), metrics, audit, train.texts)
    return TrainResult(card, metrics, audit, method, reason, md, html)
