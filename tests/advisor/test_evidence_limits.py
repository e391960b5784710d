"""What the evidence report says about its own limits, and how it shows the guide (issue 19, bug 4): the change
rate needs history, a small held-out set gets its interval, a simpler system that scored as well is named, and
an evidence run with guide answers shows them once, with one set of next steps."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import pytest
from helpers import write
from scipy.stats import binomtest
from typer.testing import CliRunner

from ragtune.advisor.bakeoff import CandidateResult, LabelBakeoff, QABakeoff
from ragtune.advisor.corpus import TOO_LITTLE_HISTORY, audit_corpus, change_rate
from ragtune.advisor.evidence import decide, wilson_interval
from ragtune.advisor.report import Evidence
from ragtune.ingest.sync import SyncReport, record_sync
from ragtune.store.state import FolderSyncState

DAY = 86_400.0
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
QA = QABakeoff(documents=20, chunks=400, questions=50, k=5, recall_at_k=0.8, answered_rate=0.9,
               latency_p50_ms=30, latency_p95_ms=40, budget_s=60)


def docs(root: Path, n: int = 4) -> Path:
    for i in range(n):
        write(root / f"d{i}.md", f"---\nacl: public\n---\n# Doc {i}\n\nPolicy number {i} says something.\n")
    return root


# --- how often documents change ----------------------------------------------------------------------------


def test_files_written_minutes_ago_say_nothing_about_the_change_rate(tmp_path: Path) -> None:
    audit = audit_corpus(docs(tmp_path / "docs"))
    assert audit.modified_last_7d == 1.0  # every file is new ...
    assert not audit.change_rate_known and not audit.knowledge_changes_weekly  # ... which is no history at all
    text = " ".join(audit.findings())
    assert TOO_LITTLE_HISTORY in text and "modification times spread over 0.0 days (needs 30+)" in text
    decision = decide(corpus=audit, qa=QA)
    assert not any("weekly" in r for r in decision.reasons)
    assert any(w.startswith(TOO_LITTLE_HISTORY) for w in decision.warnings)


def test_modification_times_spread_over_months_do_tell(tmp_path: Path) -> None:
    root = docs(tmp_path / "docs")
    now = time.time()
    for i, path in enumerate(sorted(root.glob("*.md"))):  # 0, 40, 80, 120 days old
        os.utime(path, (now - 40 * i * DAY, now - 40 * i * DAY))
    audit = audit_corpus(root, now=now)
    assert audit.mtime_spread_days == pytest.approx(120, abs=0.01)
    assert audit.change_rate_known and audit.knowledge_changes_weekly  # one of four changed this week
    assert "25 % of documents modified in the last 7 days" in " ".join(audit.findings())
    assert any("change weekly" in r for r in decide(corpus=audit, qa=QA).reasons)


def test_a_short_sync_log_is_reported_as_such_not_as_no_sync_history(tmp_path: Path) -> None:
    root = docs(tmp_path / "docs")
    state = FolderSyncState(tmp_path / "index")
    t = time.time()
    record_sync(state, root, SyncReport(ingested=4), when=t - 600)  # the issue: ingest, then sync minutes later
    record_sync(state, root, SyncReport(updated=1, unchanged=3), when=t)
    audit = audit_corpus(root, state.sync_log())
    assert audit.syncs == 2 and audit.changed_per_week is None
    text = " ".join(audit.findings())
    assert "no sync history" not in text and "no sync log" not in text
    assert f"{TOO_LITTLE_HISTORY} (2 syncs over 0.0 days (needs 2+ over 3+ days" in text
    assert json.loads(json.dumps(Evidence(decide(corpus=audit, qa=QA), corpus=audit).to_dict()))["corpus"][
        "syncs"] == 2


def test_the_sync_log_must_span_a_few_days(tmp_path: Path) -> None:
    state = FolderSyncState(tmp_path)
    root = tmp_path / "docs"
    record_sync(state, root, SyncReport(ingested=100), when=0.0)
    record_sync(state, root, SyncReport(updated=10, unchanged=90), when=DAY)  # a day: too short to tell
    assert change_rate(state.sync_log(), 100) == (2, None)
    record_sync(state, root, SyncReport(updated=4, unchanged=96), when=7 * DAY)
    assert change_rate(state.sync_log(), 100) == (3, pytest.approx(14 / 100))  # 14 changes over one week


# --- small held-out sets and simpler systems ---------------------------------------------------------------


@pytest.mark.parametrize(("k", "n"), [(6, 7), (0, 7), (7, 7), (45, 50), (900, 1000)])
def test_wilson_interval_matches_scipy(k: int, n: int) -> None:
    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((ref.low, ref.high), abs=1e-9)


def candidate(name: str, right: list[bool], ms: float, usd: float) -> CandidateResult:
    acc = sum(right) / len(right)
    return CandidateResult(name, "", acc, acc, ms, usd, 1.0, correct=right)


def tiny_bakeoff() -> LabelBakeoff:
    """The issue's case: 7 held-out items; retrieval got one more right than the classifier."""
    b = LabelBakeoff(train_examples=28, test_examples=7, classes=4, majority_accuracy=0.29, budget_s=60)
    b.results = [candidate("fine-tuning", [True] * 5 + [False] * 2, 5.0, 0.0001),
                 candidate("rag", [True] * 6 + [False], 20.0, 0.0003),
                 candidate("hybrid", [True] * 5 + [False] * 2, 7.0, 0.0002)]
    return b


def test_a_tiny_held_out_set_is_called_out_with_its_interval() -> None:
    d = decide(labels=tiny_bakeoff())
    small = next(w for w in d.warnings if w.startswith("small held-out set"))
    assert "rag 85.7 % (95 % interval 49–97 %) on 7" in small  # Wilson 95 % for 6 of 7
    assert "fine-tuning 71.4 % (95 % interval 36–92 %) on 7" in small and "interval is wide" in small
    big = LabelBakeoff(train_examples=800, test_examples=200, classes=4, majority_accuracy=0.3, budget_s=60)
    big.results = [candidate("fine-tuning", [True] * 180 + [False] * 20, 5.0, 0.0001),
                   candidate("rag", [True] * 150 + [False] * 50, 20.0, 0.0003)]
    assert not any("small held-out" in w for w in decide(labels=big).warnings)
    few = QABakeoff(documents=3, chunks=9, questions=8, k=5, recall_at_k=None, answered_rate=0.75,
                    latency_p50_ms=30, latency_p95_ms=40, budget_s=60)
    assert any("only 8 questions were asked: answered with citations 75.0 % (95 % interval 41–93 %)" in w
               for w in decide(qa=few).warnings)


def test_a_simpler_system_that_scored_higher_is_named() -> None:
    d = decide(labels=tiny_bakeoff())
    assert d.winner == "fine-tuning"  # within noise of retrieval and cheaper per item
    note = next(w for w in d.warnings if w.startswith("a simpler system"))
    assert "scored higher than fine-tuning: retrieval of labelled examples (rag) 85.7 %" in note
    assert "chosen for its lower cost per item" in note
    clear = LabelBakeoff(train_examples=800, test_examples=200, classes=4, majority_accuracy=0.3, budget_s=60)
    clear.results = [candidate("fine-tuning", [True] * 190 + [False] * 10, 5.0, 0.0001),
                     candidate("rag", [True] * 150 + [False] * 50, 20.0, 0.0003)]
    assert not any("simpler system" in w for w in decide(labels=clear).warnings)  # measurably better: silent


def test_a_hybrid_whose_label_half_retrieval_matches_says_so() -> None:
    b = LabelBakeoff(train_examples=800, test_examples=100, classes=4, majority_accuracy=0.3, budget_s=60)
    b.results = [candidate("fine-tuning", [True] * 80 + [False] * 20, 5.0, 0.0001),
                 candidate("rag", [True] * 79 + [False] * 21, 20.0, 0.0003)]
    d = decide(qa=QA, labels=b)
    assert d.winner == "hybrid"
    assert any(w.startswith("a simpler system scored within noise of the label half of the hybrid") and
               "vote over the same retrieval index" in w for w in d.warnings)


# --- the report with guide answers (real bake-off on a tiny labelled set) ----------------------------------


def test_advise_with_answers_shows_them_once_with_one_set_of_next_steps(tmp_path: Path) -> None:
    from ragtune.cli import app

    with open(EXAMPLES / "data" / "banking77" / "train.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    keep = sorted({r["category"] for r in rows})[:4]
    picked = [r for c in keep for r in [r for r in rows if r["category"] == c][:9]]  # 36 items: 7 held out
    labels = tmp_path / "labels.csv"
    with open(labels, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, ["text", "category"])
        writer.writeheader()
        writer.writerows(picked)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["advise", "--labels", str(labels), "--label-col", "category", "--budget",
                                      "60", "--report-dir", str(out), "--answers",
                                      str(EXAMPLES / "advisor" / "support-triage.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["guide"]["recommendation"] == "fine-tuning" and data["labels"]["test_examples"] == 7
    md = (out / "report.md").read_text(encoding="utf-8")
    section = md.split("## Your answers to the decision guide", 1)[1].split("\n## ", 1)[0]
    assert "Recommendation: **fine-tuning" in section and "| | Question | Answer |" in section  # not empty
    assert "How many labelled examples per class" in section  # the table of the answers
    assert md.count("## Next steps") == 1 and md.count("Next steps") == 1 and md.count("```yaml") == 1
    assert "small held-out set" in md and "95 % interval" in md
