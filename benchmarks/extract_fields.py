"""Field extraction (``ragtune extract``) on 32 hand-labelled policies: per-field precision and recall, by set.

The sets: the 20 demo policies (PolicyQA, labels ``examples/data/policies/fields.jsonl``) and the 12 hand-written
ones (``examples/data/policies-written/fields.jsonl``); the table gives each set's figures and both together.

Each demo policy is read by the span reader of ``policyqa_reader.py``'s fold that **held it out** (trained on the
other 16 policies' PolicyQA questions, never its own), as a user of that website's group in the copilot project
(``.bench/copilot``). The written policies were never trained on by any fold, so they are all read by the fold-0
reader (``policyqa-reader-fold0``), as a user with no groups (``corpus/_acl.yaml`` makes them public), in a
project of their own (``.bench/extract-written``, re-synced on every run). Every document goes
through ``extract_fields`` with the fields of ``examples/extract/fields.yaml`` and the reader's calibrated
threshold. Run ``policyqa_reader.py`` first; demo policies whose fold has no model are left out (the written set
needs fold 0) and the intro says how many were scored.

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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
os.environ.setdefault("LANCE_LOG", "error")

from _common import DOCS_FILE, REPO_ROOT, cache_dir, command_line, data_dir, emit, machine, write_row  # noqa: E402
from build_demo_corpus import load_policies  # noqa: E402
from compliance_copilot import build_project, group_of, token_f1  # noqa: E402
from policyqa_reader import FOLDS  # noqa: E402

from ragtune.config import init_project  # noqa: E402
from ragtune.core import Principal  # noqa: E402
from ragtune.extract.fields import FieldSpec, load_fields  # noqa: E402
from ragtune.extract.run import extract_fields  # noqa: E402
from ragtune.project import Project  # noqa: E402
from ragtune.tuning.reader.served import SpanReader  # noqa: E402
from ragtune.tuning.registry import Registry  # noqa: E402

SECTION = "Field extraction on 32 policies (demo: held-out readers; written: fold 0)"
OLD_SECTION = "Field extraction on the demo policies (held-out readers)"  # this table's previous form (5 columns)
MATCH_F1 = 0.5
DEMO = REPO_ROOT / "examples" / "data" / "policies"
WRITTEN = REPO_ROOT / "examples" / "data" / "policies-written"
WRITTEN_READER = "policyqa-reader-fold0"
SETS = ("demo", "written")

Labels = dict[str, tuple[dict[str, Any], dict[str, list[str]]]]
Counts = dict[str, Counter[str]]


def load_labels(path: Path) -> tuple[Labels, list[str]]:
    """``fields.jsonl``: website → (fields, also), and the document paths (relative to the set's folder) in order."""
    labels: Labels = {}
    paths = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            row = json.loads(line)
            labels[row["website"]] = (row["fields"], row.get("also", {}))
            paths.append(row["path"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SystemExit(f"{path}:{n}: not a label line ({exc})") from exc
    return labels, paths


def open_written_project(root: Path, corpus: Path, documents: Sequence[str]) -> Project:
    """A project of its own whose one root is the written set's ``corpus/`` (public by its ``_acl.yaml``), made
    once and re-synced on every run (an edited policy is re-indexed), as ``compliance_copilot.build_project`` does."""
    missing = [str(corpus / d) for d in (*documents, "_acl.yaml") if not (corpus / d).is_file()]
    if missing:
        raise SystemExit(f"the written set lacks {', '.join(missing)}")
    if not (root / "project" / "ragtune.yaml").is_file():
        init_project(root / "project")
    project = Project.open(root / "project")
    project.ingest(corpus)
    return project


def score(counts: Counts, fields: Sequence[FieldSpec], cells: dict[str, Any],
          gold: dict[str, Any], also: dict[str, list[str]]) -> dict[str, str | None]:
    """Add one document's filled values to ``counts``; return them by field (``None`` for empty)."""
    filled: dict[str, str | None] = {}
    for f in fields:
        value = cells[f.name].value
        truth = [t for t in (gold.get(f.name), *also.get(f.name, [])) if t]
        c = counts[f.name]
        c["labelled"] += bool(truth)
        if value is not None:
            c["filled"] += 1
            c["correct"] += bool(truth) and max(token_f1(value.value, t) for t in truth) >= MATCH_F1
        filled[f.name] = value.value if value is not None else None
    return filled


def drop_section(title: str, path: Path = DOCS_FILE) -> None:
    """Remove ``## title`` and its body from the benchmarks page (a table this script no longer writes)."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip() == f"## {title}"), None)
    if start is None:
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    while start > 0 and not lines[start - 1].strip():
        start -= 1
    path.write_text("\n".join(lines[:start] + lines[end:]).rstrip("\n") + "\n", encoding="utf-8")


def pr(c: Counter[str]) -> str:
    """``precision | recall`` cells (``–`` when nothing was filled or labelled)."""
    p = f"{100 * c['correct'] / c['filled']:.0f} %" if c["filled"] else "–"
    r = f"{100 * c['correct'] / c['labelled']:.0f} %" if c["labelled"] else "–"
    return f"{p} | {r}"


def main(argv: Sequence[str] | None = None) -> int:
    """Extract every policy's fields with a reader that never saw it, score against the labels, record."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Demo policies: their held-out fold's reader; written policies: fold 0. "
                                        "Needs the fold readers of benchmarks/policyqa_reader.py.")
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args(argv)
    fields = load_fields(REPO_ROOT / "examples" / "extract" / "fields.yaml")
    demo_labels, _ = load_labels(DEMO / "fields.jsonl")
    written_labels, written_paths = load_labels(WRITTEN / "fields.jsonl")
    root = cache_dir("copilot")
    policies = sorted(load_policies(data_dir() / "policyqa" / "dev.json"), key=lambda p: p.website)
    project = build_project(root, policies)
    registry = Registry(project.settings.models_dir)
    counts: dict[str, Counts] = {s: {f.name: Counter() for f in fields} for s in SETS}
    scored, seconds = Counter[str](), 0.0
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
        scored["demo"] += 1
        filled = score(counts["demo"], fields, row.cells, *demo_labels[policy.website])
        emit("extract_fields.policy", set="demo", website=policy.website, reader=reader.spec, filled=filled)
    if registry.versions(WRITTEN_READER):
        written_root = cache_dir("extract-written")
        written = open_written_project(written_root, WRITTEN / "corpus", written_paths)
        reader = SpanReader(registry.root, WRITTEN_READER, threads=written.settings.embedder.threads)
        for path in written_paths:
            t0 = time.perf_counter()
            extraction = extract_fields(written, WRITTEN / "corpus" / path, fields,
                                        Principal("bench", frozenset()), reader)
            seconds += time.perf_counter() - t0
            [row] = extraction.rows
            website = path.removesuffix(".md")
            scored["written"] += 1
            filled = score(counts["written"], fields, row.cells, *written_labels[website])
            emit("extract_fields.policy", set="written", website=website, reader=reader.spec, filled=filled)
    else:
        print(f"no {WRITTEN_READER} in .bench/copilot: the written policies are not scored", file=sys.stderr)
    if not scored["demo"]:
        raise SystemExit("no fold reader in .bench/copilot: run benchmarks/policyqa_reader.py first")
    totals = {s: sum(counts[s].values(), Counter()) for s in SETS}
    total = totals["demo"] + totals["written"]
    result = {"policies": dict(scored), "seconds_per_policy": round(seconds / sum(scored.values()), 1),
              "fields": {s: {k: dict(v) for k, v in counts[s].items()} for s in SETS},
              "total": {**{s: dict(totals[s]) for s in SETS}, "all": dict(total)}}
    emit("extract_fields", **result)
    if args.no_docs:
        return 0

    header = ["field", "demo precision", "demo recall", "written precision", "written recall", "all precision",
              "all recall", "labelled (demo + written)"]
    intro = (f"{scored['demo']} of the 20 demo policies (PolicyQA; those whose `policyqa_reader.py` fold model "
             f"exists), each read by the fold's span reader that never saw it, and {scored['written']} of the 12 "
             f"hand-written policies (`examples/data/policies-written`, never trained on by any fold), read by "
             f"`{WRITTEN_READER}`. Fields of `examples/extract/fields.yaml`, each reader's calibrated threshold; "
             f"labels `fields.jsonl` of each set (read by hand). Correct: token-F1 ≥ {MATCH_F1} with the label or "
             f"an alternative. {result['seconds_per_policy']} s per policy. Machine: {machine()}.")
    drop_section(OLD_SECTION)

    def cells(demo: Counter[str], written: Counter[str]) -> str:
        return f"{pr(demo)} | {pr(written)} | {pr(demo + written)} | {demo['labelled']} + {written['labelled']}"

    for f in fields:
        write_row(SECTION, f.name, f"| {f.name} | {cells(counts['demo'][f.name], counts['written'][f.name])} |",
                  header=header, command=command_line(), intro=intro)
    write_row(SECTION, "all fields", f"| all fields | {cells(totals['demo'], totals['written'])} |", header=header,
              command=command_line(), intro=intro)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
