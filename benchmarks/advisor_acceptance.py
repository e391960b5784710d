"""The advisor on the shared data: does the evidence lead to the defensible architecture?

Three cases, each run through ``gather_evidence`` (the same code as ``ragtune advise --docs/--labels``);
the inputs are plain files, so nothing tells the advisor which data set it is looking at:

1. banking77's full training set as labels (text, category) — expected: fine-tuning;
2. PolicyQA's 20 dev policies as Markdown files with PolicyQA's questions (question, source) — expected: RAG;
3. the same policies and questions plus the questions' OPP-115 categories as labels — expected: hybrid.

The policies are written by ``examples/build_demo_corpus.py``'s own functions into ``.bench/advisor``.

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/advisor_acceptance.py [--budget 300]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from _common import cache_dir, data_dir, emit, machine, write_row  # noqa: E402
from build_demo_corpus import advisor_questions_csv, load_policies, write_outputs  # noqa: E402

from ragtune.advisor.report import Evidence  # noqa: E402
from ragtune.advisor.run import gather_evidence  # noqa: E402

SECTION = "Advisor acceptance (shared data)"
COMMAND = "RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/advisor_acceptance.py"


def summary(ev: Evidence) -> str:
    """The measurements the decision rests on, in one cell."""
    parts = []
    if ev.labels is not None:
        parts.append(", ".join(f"{r.name} {100 * r.accuracy:.1f} % / {r.latency_ms:.1f} ms"
                               for r in ev.labels.results)
                     + f" (majority {100 * ev.labels.majority_accuracy:.1f} %, {ev.labels.test_examples} held out)")
    if ev.qa is not None:
        recall = f"recall@{ev.qa.k} {100 * ev.qa.recall_at_k:.1f} %, " if ev.qa.recall_at_k is not None else ""
        parts.append(f"QA: {ev.qa.questions} questions, {recall}answered {100 * ev.qa.answered_rate:.1f} %, "
                     f"p50 {ev.qa.latency_p50_ms:.0f} ms")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=300.0, help="time budget of each case, seconds")
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args(argv)
    data = data_dir()
    root = cache_dir("advisor")
    dev = data / "policyqa" / "dev.json"
    policies = load_policies(dev)
    write_outputs(policies, dev, root / "policies")
    qfile = root / "policyqa_questions.csv"
    qfile.write_text(advisor_questions_csv(policies, per_site=10_000), encoding="utf-8")
    with open(qfile, encoding="utf-8", newline="") as fh:
        n_questions = sum(1 for _ in csv.DictReader(fh))
    docs = root / "policies" / "corpus"
    cases = [
        ("banking77 train labels", "fine-tuning",
         dict(labels=data / "banking77" / "train.csv", text_col="text", label_col="category")),
        (f"PolicyQA policies + {n_questions} questions", "rag", dict(docs=docs, questions=qfile)),
        ("PolicyQA policies + questions + categories as labels", "hybrid",
         dict(docs=docs, questions=qfile, labels=qfile, text_col="question", label_col="category")),
    ]
    failures = 0
    for name, expected, kwargs in cases:
        t = time.perf_counter()
        ev = gather_evidence(budget_s=args.budget, **kwargs)  # type: ignore[arg-type]
        took = time.perf_counter() - t
        ok = ev.decision.winner == expected
        failures += not ok
        emit("advisor", case=name, expected=expected, got=ev.decision.winner, seconds=round(took, 1),
             evidence=summary(ev))
        if not args.no_docs:
            write_row(SECTION, name,
                      f"| {name} | {ev.decision.winner} | {expected}: {'yes' if ok else 'NO'} | {summary(ev)} | "
                      f"{took:.0f} s of {args.budget:.0f} |",
                      header=["case", "recommendation", "expected", "evidence (held-out accuracy / ms per item)",
                              "time"],
                      command=COMMAND,
                      intro=("`gather_evidence` (what `ragtune advise --docs/--questions/--labels` runs) on plain "
                             "files made from the shared data; the advisor is never told which data set it sees. "
                             f"Machine: {machine()}."))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
