"""Training end to end: load, audit the whole file, split by duplicate group, choose a method, fit, evaluate,
register, report."""

from __future__ import annotations

import inspect
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.errors import ConfigError, DataError
from ragtune.models.embedder import Embedder, make_embedder
from ragtune.tuning.audit import AuditReport, audit_labels
from ragtune.tuning.base import Progress, TextClassifier, build_classifier, classifier_class
from ragtune.tuning.data import LabelledData, LoadProgress, load_labelled
from ragtune.tuning.evaluate import ClassificationEvaluator
from ragtune.tuning.groups import duplicate_groups, group_split
from ragtune.tuning.registry import ModelCard, Registry, check_name, new_card
from ragtune.tuning.report import write_report

FEW_SHOT_PER_CLASS = 32
LARGE_DATA = 3000
AUTO_METHODS = ("head", "finetune")  # what choose_method can return


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


def check_splittable(data: LabelledData) -> None:
    """A held-out split needs two or more classes, each with at least 2 examples (one to train on, one to
    test); raise :class:`DataError` naming the classes that have fewer."""
    counts = Counter(data.labels)
    if len(counts) < 2:
        raise DataError(f"cannot train: only one class ({next(iter(counts), 'none')}) in {data.source}: a "
                        "classifier needs two or more")
    few = sorted(c for c, n in counts.items() if n < 2)
    if few:
        shown = ", ".join(few[:10]) + (f" and {len(few) - 10} more" if len(few) > 10 else "")
        raise DataError(f"{data.source}: each class needs at least 2 examples to hold out a test set (one to "
                        f"train on, one to test); {len(few)} of {len(counts)} classes have only 1: {shown}; add "
                        "examples, remove those classes, or pass --test FILE")


def split_data(data: LabelledData, test_size: float, seed: int, groups: list[int] | None = None
               ) -> tuple[LabelledData, LabelledData]:
    """Train/test split stratified by label that keeps each duplicate group on one side (``groups``: from
    :func:`ragtune.tuning.groups.duplicate_groups`; default: exact duplicates only), so copies of a text never
    make the test score optimistic. Test labels are always seen in training. ``train_classifier`` refuses
    classes with a single example first (:func:`check_splittable`)."""
    groups = duplicate_groups(data.texts) if groups is None else groups
    try:
        tr, te = group_split(data.labels, groups, test_size, seed)
    except DataError as exc:
        raise DataError(f"{data.source}: {exc}; add examples or pass --test FILE") from exc
    return data.subset(tr.tolist(), "train"), data.subset(te.tolist(), "test")


def _check_test_labels(train: LabelledData, test: LabelledData) -> None:
    unknown = sorted(set(test.labels) - set(train.labels))
    if unknown:
        n = sum(label in unknown for label in test.labels)
        raise DataError(f"the test data has {n} example(s) with label(s) never seen in training: "
                        f"{', '.join(unknown[:10])}; remove them or add training examples")


def _settings(method: str) -> list[str]:
    """The settings (constructor parameters) of a method."""
    return [p for p in inspect.signature(classifier_class(method).__init__).parameters if p != "self"]


def check_method(method: str, params: dict[str, Any]) -> TextClassifier | None:
    """Refuse an unknown method or setting before any data is read: the classifier for ``method`` (None for
    ``auto``, whose method depends on the data; then every setting must belong to a method auto can pick)."""
    if method != "auto":
        clf = build_classifier(method, params)
        specs = clf.member_specs() if hasattr(clf, "member_specs") else []  # an ensemble: check its members
        for spec in specs:
            build_classifier(spec["method"], {k: v for k, v in spec.items() if k != "method"})
        return clf
    known = {m: _settings(m) for m in AUTO_METHODS}
    unknown = sorted(k for k in params if not any(k in valid for valid in known.values()))
    if unknown:
        raise ConfigError(f"--method auto picks {' or '.join(AUTO_METHODS)}, and neither has setting(s) "
                          f"{', '.join(map(repr, unknown))}; "
                          + "; ".join(f"{m}'s settings are: {', '.join(v)}" for m, v in known.items()))
    return None


def load_progress(progress: Progress | None, path: Path) -> LoadProgress | None:
    """A data-loading callback that reports to a training ``Progress``: phase ``load <file>``, megabytes read
    of the file's size, and the rows read so far as the ``rows`` metric."""
    if progress is None:
        return None
    phase = f"load {Path(path).name}"

    def report(rows: int, done: int, size: int) -> None:
        total = max(1, math.ceil(size / 1e6))
        progress(phase, min(total, math.ceil(done / 1e6)), total, {"rows": float(rows)})

    return report


def _count(n: float) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e4 else f"{n:.0f}"


class PlainProgress:
    """A ``Progress`` for a log rather than a terminal: one plain line when a phase starts or ends, and at most
    one every ``interval`` seconds in between (e.g. ``load data.csv: 1.2M rows, 105/201 MB``)."""

    def __init__(self, write: Callable[[str], None], interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.write, self.interval, self.clock = write, interval, clock
        self.phase: str | None = None
        self.last = 0.0

    def __call__(self, phase: str, step: int, total: int, metrics: dict[str, float]) -> None:
        now = self.clock()
        done = total > 0 and step >= total
        if phase == self.phase and not done and now - self.last < self.interval:
            return
        if phase == self.phase and done and self.last < 0:  # this phase's end is already reported
            return
        self.phase, self.last = phase, -1.0 if done else now
        if phase.startswith("load "):
            self.write(f"{phase}: {_count(metrics.get('rows', 0))} rows, {step}/{total} MB"
                       + (" (done)" if done else ""))
            return
        info = "".join(f", {k} {v:.4g}" for k, v in metrics.items())
        self.write(f"{phase}: {step}/{total}{info}")


def train_classifier(
    registry: Registry,
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
    embedder: Embedder | None = None,
) -> TrainResult:
    """Train, evaluate and register a classifier; blocking audit findings raise :class:`DataError`.

    The model name, the method and its settings are checked before any data is read; the data (each class
    with 2 or more examples when the test set is held out of it) before the audit. The audit covers the whole
    ``data_path`` file (and its overlap with ``test_path``), with the file's line numbers; a held-out test set
    is split by duplicate group (exact and near duplicates, :func:`split_data`). ``progress`` also hears of
    loading (``load <file>``: megabytes read, ``rows``) and of the audit.

    ``label_names`` adds one training example per class whose text is the label's name (after the audit and the
    test split, so it never reaches the test data)."""
    # Everything that needs no data is checked first, so a typo never costs a load, an audit and a fit.
    check_name(name)
    settings = {"random_state": seed, **(params or {})}
    clf = check_method(method, settings)
    for path in (data_path, test_path):
        if path is not None and not Path(path).is_file():
            raise DataError(f"{path}: no such file")
    data = load_labelled(data_path, text_col, label_col, progress=load_progress(progress, data_path))
    test_file: LabelledData | None = None
    if test_path is not None:
        test_file = load_labelled(test_path, text_col, label_col, progress=load_progress(progress, test_path))
        if len(set(data.labels)) < 2:
            raise DataError(f"cannot train: only one class ({data.labels[0]}) in {data.source}: a classifier "
                            "needs two or more")
        _check_test_labels(data, test_file)
    else:
        check_splittable(data)
    embedder = embedder if embedder is not None else make_embedder("minilm")
    if progress:
        progress("audit", 0, 1, {})
    x = embedder.embed(data.texts)  # once: the audit's near duplicates and the split's groups
    if test_file is not None:
        train, test = data, test_file
    else:
        train, test = split_data(data, test_size, seed, duplicate_groups(data.texts, x))
    reason = "chosen by you"
    if clf is None:
        method, reason = choose_method(train.labels)
        try:
            clf = build_classifier(method, settings)
        except ConfigError as exc:
            raise ConfigError(f"--method auto chose {method} ({reason.split(':')[0]}): {exc}; pass --method "
                              "to choose the method these settings are for") from exc
    audit = audit_labels(data, embedder, test_file, embeddings=x)
    if progress:
        progress("audit", 1, 1, {})
    if on_audit:
        on_audit(audit, data)
    if audit.blocking:
        raise DataError("cannot train: " + "; ".join(audit.blocking))
    if on_method:
        on_method(method, reason)
    fit_data = train.with_label_names() if label_names else train
    clf.fit(fit_data.texts, fit_data.labels, progress=progress)
    metrics = ClassificationEvaluator(test.texts, test.labels)(clf)
    card = new_card(method, clf, data.sha256, str(data_path))
    card.metrics = {k: metrics[k] for k in ("accuracy", "macro_f1", "ece", "abstain_rate", "threshold",
                                             "examples", "primary_metric")}
    card.notes = {"reason": reason, "calibration": clf.calibration_, "train_examples": len(fit_data),
                  "label_names": label_names, "test_source": test.source,
                  "split": f"the test file {test.source}" if test_file is not None else
                  f"held out {len(test)} of {len(data)} examples by duplicate group (copies of a text, exact or "
                  "near, stay on one side)"}
    card = registry.register(name, clf, card)
    folder = registry.path(name, card.version)
    (folder / "audit.json").write_text(json.dumps(asdict(audit), indent=2, default=str), encoding="utf-8")
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    md, html = write_report(folder, f"Model {name} v{card.version}", asdict(card), metrics, audit)
    return TrainResult(card, metrics, audit, method, reason, md, html)
