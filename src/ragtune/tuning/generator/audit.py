"""The audit of generator training data, run before any model loads.

Findings: duplicate examples (same prompt, same target), conflicting targets for the same prompt, targets that do
not validate against the output schema (dropped from training: a model taught invalid outputs writes them),
length outliers (prompts or targets far longer than the rest: truncated in training, or a sign of pasted
junk), and prompts in both the training and the validation data (leakage: held-out scores would be optimistic).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragtune.tuning.audit import excerpt
from ragtune.tuning.generator.data import GenExample, validate_output

#: a length is an outlier above the third quartile plus this many interquartile ranges (and above 2× the median)
OUTLIER_IQR = 3.0


@dataclass
class GenAudit:
    """Findings about generator data. Each finding names examples by ``where`` (``file:line``)."""

    examples: int
    prompts: int
    source: str = ""
    schema: bool = False
    validation_source: str = ""
    validation_examples: int = 0
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[dict[str, str]] = field(default_factory=list)
    validation_invalid: list[dict[str, str]] = field(default_factory=list)
    long_prompts: list[str] = field(default_factory=list)
    long_targets: list[str] = field(default_factory=list)
    leakage: list[dict[str, str]] = field(default_factory=list)
    blocking: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, Any]:
        """The audit as numbers (for the model card's notes)."""
        return {"examples": self.examples, "prompts": self.prompts, "validation_examples": self.validation_examples,
                "duplicates": sum(len(d["where"]) - 1 for d in self.duplicates), "conflicts": len(self.conflicts),
                "invalid_targets": len(self.invalid), "validation_invalid_targets": len(self.validation_invalid),
                "long_prompts": len(self.long_prompts), "long_targets": len(self.long_targets),
                "leakage": len(self.leakage)}

    def lines(self) -> list[str]:
        """The audit as plain lines for the terminal or a report: a summary, blocking problems, then warnings."""
        checked = ", targets checked against the schema" if self.schema else ""
        out = [f"{self.examples} examples with {self.prompts} distinct prompts{checked}"
               + (f"; {self.validation_examples} validation examples" if self.validation_source else "")]
        out += [f"cannot train: {b}" for b in self.blocking]
        out += [f"warning: {w}" for w in self.warnings]
        return out


def _outliers(lengths: list[int], where: list[str]) -> list[str]:
    if len(lengths) < 8:
        return []
    q1, median, q3 = np.percentile(lengths, [25, 50, 75])
    limit = max(q3 + OUTLIER_IQR * (q3 - q1), 2 * median)
    return [w for n, w in zip(lengths, where, strict=True) if n > limit]


def _invalid(examples: Sequence[GenExample], schema: dict[str, Any] | None) -> list[dict[str, str]]:
    if schema is None:
        return []
    found = []
    for e in examples:
        why = validate_output(e.target, schema)
        if why is not None:
            found.append({"where": e.where, "why": why})
    return found


def audit_examples(train: Sequence[GenExample], validation: Sequence[GenExample] | None = None,
                   schema: dict[str, Any] | None = None) -> GenAudit:
    """Audit the training examples (and the validation examples' overlap with them) against ``schema``."""
    report = GenAudit(examples=len(train), prompts=len({e.prompt_key() for e in train}),
                      source=str(getattr(train, "source", "")), schema=schema is not None,
                      validation_source=str(getattr(validation, "source", "validation")) if validation is not None
                      else "", validation_examples=len(validation) if validation is not None else 0)
    by_prompt: dict[str, list[GenExample]] = defaultdict(list)
    for e in train:
        by_prompt[e.prompt_key()].append(e)
    for same in by_prompt.values():
        if len(same) < 2:
            continue
        targets = {" ".join(e.target.split()) for e in same}
        entry: dict[str, Any] = {"where": [e.where for e in same], "prompt": excerpt(same[0].user_text)}
        if len(targets) > 1:
            report.conflicts.append(entry | {"targets": [excerpt(t, 60) for t in sorted(targets)]})
        else:
            report.duplicates.append(entry)
    report.invalid = _invalid(train, schema)
    report.validation_invalid = _invalid(validation or [], schema)
    report.long_prompts = _outliers([sum(len(c) for _, c in e.prompt) for e in train], [e.where for e in train])
    report.long_targets = _outliers([len(e.target) for e in train], [e.where for e in train])
    if validation is not None:
        report.leakage = [{"where": hit[0].where, "validation_where": v.where, "prompt": excerpt(v.user_text)}
                          for v in validation if (hit := by_prompt.get(v.prompt_key()))]
    _judge(report, validation)
    return report


def _judge(report: GenAudit, validation: Sequence[GenExample] | None) -> None:
    if report.examples == 0:
        report.blocking.append(f"no examples in {report.source or 'the data'}")
    elif len(report.invalid) == report.examples:
        first = report.invalid[0]
        report.blocking.append(f"no target validates against the schema (first at {first['where']}: {first['why']}):"
                               " fix the data or the schema")
    if validation is not None and not validation:
        report.blocking.append(f"no examples in the validation file {report.validation_source}")
    if report.invalid and len(report.invalid) < report.examples:
        first = report.invalid[0]
        report.warnings.append(f"{len(report.invalid)} target(s) do not validate against the schema and are left out "
                               f"of training, first at {first['where']}: {first['why']}")
    if report.validation_invalid:
        first = report.validation_invalid[0]
        report.warnings.append(f"{len(report.validation_invalid)} validation target(s) do not validate against the "
                               f"schema (scored as references all the same), first at {first['where']}: "
                               f"{first['why']}")
    if report.duplicates:
        extra = sum(len(d["where"]) - 1 for d in report.duplicates)
        report.warnings.append(f"{extra} duplicate example(s) (same prompt, same target) in "
                               f"{len(report.duplicates)} group(s), first at "
                               f"{', '.join(report.duplicates[0]['where'][:3])}")
    if report.conflicts:
        c = report.conflicts[0]
        report.warnings.append(f"{len(report.conflicts)} prompt(s) with conflicting targets, first at "
                               f"{', '.join(c['where'][:3])}: {' vs '.join(c['targets'][:3])}")
    for what, found in (("prompt", report.long_prompts), ("target", report.long_targets)):
        if found:
            report.warnings.append(f"{len(found)} {what}(s) far longer than the rest (length outliers, truncated to "
                                   f"--max-length tokens in training), first at {found[0]}")
    if report.leakage:
        leak = report.leakage[0]
        report.warnings.append(f"{len(report.leakage)} validation prompt(s) also in the training data (leakage: "
                               f"held-out scores will be optimistic), first at {leak['where']} / "
                               f"{leak['validation_where']}")
