"""``ragtune eval classify``: a registered classifier's report on any labelled file.

The same evaluator and report as training (``tuning.evaluate.ClassificationEvaluator``,
``tuning.report.write_report``): accuracy, macro-F1, per-class figures, top confusions with examples, the
confusion matrix and the reliability diagram, plus the file's label audit (exact duplicates and conflicting
labels, by file line; no embeddings). Labels the model does not know count as errors and are listed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ragtune.project import Project


@dataclass
class ClassifyEvaluation:
    """What ``evaluate_classifier_file`` wrote and measured."""

    metrics: dict[str, Any]
    json_path: Path
    report_md: Path
    report_html: Path
    name: str
    version: int


def evaluate_classifier_file(project: Project, model: str, data_path: Path, out: Path, *,
                             version: int | None = None, text_col: str = "text",
                             label_col: str = "label") -> ClassifyEvaluation:
    """Score model ``model`` (``version``, else the promoted, else the latest) on ``data_path``; write
    ``metrics.json``, ``report.md`` and ``report.html`` (with its plots) into ``out``."""
    from ragtune.errors import DataError
    from ragtune.tuning.audit import audit_labels
    from ragtune.tuning.data import load_labelled
    from ragtune.tuning.evaluate import ClassificationEvaluator
    from ragtune.tuning.report import write_report

    registry = project.registry
    resolved = registry.resolve(model, version)  # an unknown model or version is an error before any load
    if not Path(data_path).is_file():
        raise DataError(f"{data_path}: no such file")
    data = load_labelled(data_path, text_col, label_col)
    clf = project.classifier(model, resolved)
    metrics = ClassificationEvaluator(data.texts, data.labels)(clf)
    audit = audit_labels(data)
    card = asdict(registry.card(model, resolved))
    out.mkdir(parents=True, exist_ok=True)
    record = {"kind": "classify", "model": model, "version": resolved, "data": str(data_path),
              "data_sha256": data.sha256, "text_col": text_col, "label_col": label_col,
              "created": datetime.now(UTC).isoformat(timespec="seconds"), "metrics": metrics,
              "audit": asdict(audit)}
    json_path = out / "metrics.json"
    json_path.write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    md, html = write_report(out, f"Model {model} v{resolved} on {Path(data_path).name}", card, metrics, audit)
    return ClassifyEvaluation(metrics, json_path, md, html, model, resolved)
