"""``ensemble``: several ragtune classifiers trained on the same data, their log-probabilities averaged.

Members differ in method or seed, so their errors differ and the average is right more often than any one of
them: on a validation split of banking77's training set, two fine-tuned encoders and the frozen ``head`` scored up
to 93.45 % against 92.1-92.9 % for single fine-tuned encoders (docs/benchmarks.md, "banking77 validation sweep").
The price is paid at inference: every member runs on every text. The ensemble is calibrated as a whole (one
temperature on the averaged log-probabilities); its members train without a calibration split of their own.

A saved ensemble holds each member in ``members/<i>/`` as that member saves itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ragtune.errors import ConfigError, ModelNotFoundError
from ragtune.tuning.base import Progress, TextClassifier, build_classifier

MEMBERS_DIR = "members"
DEFAULT_MEMBERS: tuple[dict[str, Any], ...] = (
    {"method": "finetune", "random_state": 0},
    {"method": "finetune", "random_state": 1},
    {"method": "head"},
)
FLOOR = -30.0  # log-probability of a class a member never saw in training


class EnsembleClassifier(TextClassifier):
    """Average of member classifiers' log-probabilities, then one calibrated temperature.

    ``members`` is a list of ``{"method": ..., **parameters}`` (default: two ``finetune`` seeds and ``head``).
    A member without ``random_state`` gets the ensemble's ``random_state`` plus its position, so two members with
    the same settings still differ.
    """

    method: ClassVar[str] = "ensemble"

    def __init__(
        self,
        members: Sequence[dict[str, Any]] | None = None,
        calibration_fraction: float = 0.1,
        threshold: float = 0.5,
        random_state: int = 0,
    ) -> None:
        self.members = members
        self.calibration_fraction = calibration_fraction
        self.threshold = threshold
        self.random_state = random_state

    def member_specs(self) -> list[dict[str, Any]]:
        """The members' method and parameters, defaults filled in."""
        specs = [dict(spec) for spec in (self.members if self.members is not None else DEFAULT_MEMBERS)]
        if not specs:
            raise ConfigError("an ensemble needs at least one member, e.g. [{\"method\": \"head\"}]")
        for i, spec in enumerate(specs):
            if spec.get("method") in (None, "ensemble", "auto"):
                raise ConfigError(f"ensemble member {i}: give its method (head, setfit or finetune), got {spec}")
            spec.setdefault("random_state", self.random_state + i)
        return specs

    def _fit_model(self, texts: list[str], y: np.ndarray, progress: Progress | None) -> None:
        labels = [str(label) for label in self.classes_[y]]
        specs = self.member_specs()
        self.members_: list[TextClassifier] = []
        for i, spec in enumerate(specs):
            params = {k: v for k, v in spec.items() if k != "method"}
            member = build_classifier(spec["method"], {**params, "calibration_fraction": 0.0})
            member.fit(texts, labels, progress=_prefixed(progress, f"member {i + 1}/{len(specs)}: "))
            self.members_.append(member)

    def _logits(self, texts: Sequence[str]) -> np.ndarray:
        total = np.zeros((len(texts), len(self.classes_)))
        for member in self.members_:
            total += self._aligned(member, member.predict_proba(texts))
        return total / len(self.members_)

    def _aligned(self, member: TextClassifier, probs: np.ndarray) -> np.ndarray:
        """A member's log-probabilities in the ensemble's class order."""
        out = np.full((len(probs), len(self.classes_)), FLOOR)
        column = {str(c): j for j, c in enumerate(self.classes_)}
        for k, c in enumerate(member.classes_):
            out[:, column[str(c)]] = np.log(np.clip(probs[:, k], np.exp(FLOOR), None))
        return out

    def _save_model(self, folder: Path) -> None:
        for i, member in enumerate(self.members_):
            member.save(folder / MEMBERS_DIR / str(i))

    def _load_model(self, folder: Path) -> None:
        n = len(self.member_specs())
        paths = [folder / MEMBERS_DIR / str(i) for i in range(n)]
        missing = [str(p) for p in paths if not p.is_dir()]
        if missing:
            raise ModelNotFoundError(f"{folder}: ensemble member folder(s) missing: {', '.join(missing)}")
        self.members_ = [TextClassifier.load(p) for p in paths]


def _prefixed(progress: Progress | None, prefix: str) -> Progress | None:
    if progress is None:
        return None

    def report(phase: str, step: int, total: int, metrics: dict[str, float]) -> None:
        progress(prefix + phase, step, total, metrics)

    return report
