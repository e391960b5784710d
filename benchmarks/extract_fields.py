"""Field extraction (``ragtune extract``) on the 20 demo policies, per-field precision and recall against the
hand-labelled values in ``examples/data/policies/fields.jsonl``.

Each policy is read by the span reader of ``policyqa_reader.py``'s fold that **held it out** (trained on the other
16 policies' PolicyQA questions, never its own), through ``extract_fields`` with the fields of
``examples/extract/fields.yaml`` and each reader's calibrated threshold, as a user of that website's group in the
copilot project (``.bench/copilot``). Run ``policyqa_reader.py`` first; policies whose fold has no model are left
out and the row says how many were scored.

A filled value is **correct** when its token-F1 (SQuAD normalisation) with the labelled value, or one of its
``also`` alternatives, is at least 0.5. Precision: correct / filled; recall: correct / labelled (non-empty).

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/extract_fields.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
os.environ.setdefault("LANCE_LOG", "error")

from _common import REPO_ROOT, cache_dir, command_line, data_dir, emit, machine, write_row  # noqa: E402
from build_demo_corpus import load_policies  # noqa: E402
from compliance_copilot import build_project, group_of, token_f1  # noqa: E402
from policyqa_reader import FOLDS  # noqa: E402

from ragtune.core import Principal  # noqa: E402
from ragtune.extract.fields import load_fields  # noqa: E402
from ragtune.extract.run import extract_fields  # noqa: E402
from ragtune.tuning.reader.served import SpanReader  # noqa: E402
from ragtune.tuning.registry import Registry  # noqa: E402

SECTION = "Field extraction on the demo policies (held-out readers)"
MATCH_F1 = 0.5


def main(argv: Sequence[str] | None = None) -> int:
    """Extract every policy's fields with the reader that never saw it, score against the labels, record."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args(argv)
    fields = load_fields(REPO_ROOT / "examples" / "extract" / "fields.yaml")
    labels = {}
    labelled = REPO_ROOT / "examples" / "data" / "policies" / "fields.jsonl"
    for line in labelled.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        labels[row["website"]] = (row["fields"], row.get("also", {}))
    root = cache_dir("copilot")
    policies = sorted(load_policies(data_dir() / "policyqa" / "dev.json"), key=lambda p: p.website)
    project = build_project(root, policies)
    registry = Registry(project.settings.models_dir)
    counts: dict[str, Counter[str]] = {f.name: Counter() for f in fields}
    scored, seconds = 0, 0.0
    for j, policy in enumerate(policies):
        name = f"policyqa-reader-fold{j % FOLDS}"
        if not registry.versions(name):
            continue
        reader = SpanReader(registry.root, name, threads=project.settings.embedder.threads)
        t0 = time.perf_counter()
        extraction = extract_fields(project, root / "docs" / f"{policy.website}.md", fields,
                                    Principal("bench", frozenset({group_of(policy)})), reader)
        seconds += time.perf_counter() - t0
        [row] = extraction.rows
        gold, also = labels[policy.website]
        scored += 1
        for f in fields:
            value = row.cells[f.name].value
            truth = [t for t in (gold.get(f.name), *also.get(f.name, [])) if t]
            c = counts[f.name]
            c["labelled"] += bool(truth)
            if value is not None:
                c["filled"] += 1
                c["correct"] += bool(truth) and max(token_f1(value.value, t) for t in truth) >= MATCH_F1
        emit("extract_fields.policy", website=policy.website, reader=reader.spec,
             filled={f.name: (row.cells[f.name].value.value if row.cells[f.name].value else None) for f in fields})
    if not scored:
        raise SystemExit("no fold reader in .bench/copilot: run benchmarks/policyqa_reader.py first")
    total = sum(counts.values(), Counter())
    result = {"policies": scored, "seconds_per_policy": round(seconds / scored, 1),
              "fields": {k: dict(v) for k, v in counts.items()}, "total": dict(total)}
    emit("extract_fields", **result)
    if args.no_docs:
        return 0

    def pr(c: Counter[str]) -> str:
        p = f"{100 * c['correct'] / c['filled']:.0f} %" if c["filled"] else "–"
        r = f"{100 * c['correct'] / c['labelled']:.0f} %" if c["labelled"] else "–"
        return f"{p} | {r} | {c['filled']} | {c['labelled']}"

    header = ["field", "precision", "recall", "filled", "labelled"]
    intro = (f"{scored} of the 20 demo policies (those whose `policyqa_reader.py` fold model exists), each read by "
             f"the fold's span reader that never saw it, fields of `examples/extract/fields.yaml`, each reader's "
             f"calibrated threshold; labels `examples/data/policies/fields.jsonl` (read by hand). Correct: token-F1 "
             f"≥ {MATCH_F1} with the label or an alternative. {result['seconds_per_policy']} s per policy. "
             f"Machine: {machine()}.")
    for f in fields:
        write_row(SECTION, f.name, f"| {f.name} | {pr(counts[f.name])} |", header=header, command=command_line(),
                  intro=intro)
    write_row(SECTION, "all fields", f"| all fields | {pr(total)} |", header=header, command=command_line(),
              intro=intro)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
