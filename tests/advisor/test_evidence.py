"""Layer 2 of the advisor: corpus audit, bake-offs on real data, and the evidence-based decision."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import write

from ragtune.advisor.bakeoff import (
    CandidateResult,
    LabelBakeoff,
    QABakeoff,
    bakeoff_labels,
    bakeoff_questions,
    load_questions,
)
from ragtune.advisor.corpus import audit_corpus, change_rate
from ragtune.advisor.evidence import decide, measurably_better
from ragtune.errors import DataError, RagtuneError
from ragtune.ingest.sync import SyncReport, record_sync
from ragtune.models.embedder import MiniLMEmbedder
from ragtune.store.state import FolderSyncState
from ragtune.tuning.data import load_labelled

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"
POLICIES = EXAMPLES / "policies"


# --- corpus audit ------------------------------------------------------------------------------------------


def test_corpus_audit_of_the_sample_policies() -> None:
    audit = audit_corpus(POLICIES / "corpus")
    assert audit.documents == 20 and audit.formats == {"md": 20}
    assert audit.no_acl == [] and audit.failed == [] and audit.duplicate_groups == []
    assert audit.with_headings == 20  # every policy has ## category sections
    assert audit.total_bytes > 100_000 and audit.median_age_days is not None


def test_corpus_audit_finds_missing_acls_duplicates_tables_and_broken_files(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    write(root / "a.md", "---\nacl: public\n---\n# A\n\nSame words here.\n")
    write(root / "copy" / "b.md", "---\nacl: public\n---\n# A\n\nSame   words here.\n")
    write(root / "open.md", "# Open\n\nNo ACL anywhere.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    (root / "bad.pdf").write_bytes(b"%PDF-1.4 not really")
    audit = audit_corpus(root)
    assert audit.documents == 3 and len(audit.failed) == 1 and audit.failed[0][0].endswith("bad.pdf")
    assert [Path(p).name for p in audit.no_acl] == ["open.md"]
    assert [sorted(Path(p).name for p in g) for g in audit.duplicate_groups] == [["a.md", "b.md"]]
    assert audit.with_tables == 1
    assert audit.modified_last_7d == 1.0  # files written just now ...
    assert not audit.knowledge_changes_weekly  # ... say nothing about how often they change (issue 19, bug 4)
    text = " ".join(audit.findings())
    assert "1 of 3 documents have no ACL" in text and "cannot be parsed" in text


def test_corpus_audit_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(RagtuneError, match="does not exist"):
        audit_corpus(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RagtuneError, match="holds no documents"):
        audit_corpus(tmp_path / "empty")


def test_change_rate_comes_from_the_sync_log(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    day = 86_400.0
    state = FolderSyncState(tmp_path)
    assert change_rate(state.sync_log(), 100) == (0, None)
    record_sync(state, root, SyncReport(ingested=100), when=0.0)  # the initial load is not change
    record_sync(state, root, SyncReport(updated=3, unchanged=97), when=7 * day)
    record_sync(state, root, SyncReport(ingested=1, deleted=1, unchanged=98), when=14 * day)
    syncs, rate = change_rate(state.sync_log(), 100)
    assert syncs == 3 and rate == pytest.approx(5 / 2 / 100)
    with open(tmp_path / "sync_log.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"time": 1')  # a torn last line (killed mid-write) is ignored
    assert change_rate(state.sync_log(), 100)[0] == 3


# --- bake-offs on real data --------------------------------------------------------------------------------


def test_label_bakeoff_measures_three_candidates_on_banking77(embedder: MiniLMEmbedder) -> None:
    data = load_labelled(EXAMPLES / "banking77" / "train.csv", "text", "category")
    b = bakeoff_labels(data.texts, data.labels, budget_s=120, embedder=embedder)
    assert {r.name for r in b.results} == {"rag", "fine-tuning", "hybrid"}
    assert b.classes == 8 and b.test_examples + b.train_examples == len(data.texts)
    assert b.majority_accuracy < 0.2
    for r in b.results:
        assert r.accuracy > 0.6, r  # chance is 1/8; real learning and real retrieval
        assert 0 < r.latency_ms < 2000 and r.cost_per_1k_usd > 0
    assert b.elapsed_s < 120


def test_label_bakeoff_stops_adding_work_at_its_budget(embedder: MiniLMEmbedder) -> None:
    data = load_labelled(EXAMPLES / "banking77" / "train.csv", "text", "category")
    t = time.perf_counter()
    b = bakeoff_labels(data.texts, data.labels, budget_s=0.01, embedder=embedder)
    assert time.perf_counter() - t < 60
    assert b.result("fine-tuning") is not None and b.result("rag") is None
    assert any("budget ran out" in n for n in b.notes)


def test_label_bakeoff_rejects_unusable_labels() -> None:
    with pytest.raises(DataError, match="only one class"):
        bakeoff_labels(["a", "b", "c"], ["x", "x", "x"])
    with pytest.raises(DataError, match="too few"):
        bakeoff_labels(["a", "b", "c", "d"], ["x", "x", "y", "y"])


def test_question_bakeoff_on_policies_sees_every_document(tmp_path: Path, embedder: MiniLMEmbedder) -> None:
    docs = tmp_path / "docs"
    for folder in ("public", "retail"):  # retail is readable by the retail group only: the sandbox reads it
        shutil.copytree(POLICIES / "corpus" / folder, docs / folder,
                        ignore=shutil.ignore_patterns("[m-z]*.md"))
    present = {p.name for p in docs.rglob("*.md")}
    questions = [q for q in load_questions(POLICIES / "advisor_questions.csv") if q.source in present][:30]
    assert len(questions) == 30
    qa = bakeoff_questions(docs, questions, budget_s=120, embedder=embedder)
    assert qa.documents == len(list(docs.rglob("*.md"))) >= 4
    assert qa.questions == 30 and qa.answered_rate > 0.5
    assert qa.recall_at_k is not None and qa.recall_at_k > 0.3  # 4+ documents: well above a random pick's 1/k
    assert 0 < qa.latency_p50_ms <= qa.latency_p95_ms


def test_questions_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_questions(tmp_path / "q.csv")
    write(tmp_path / "q.csv", "text,source\nhello,a.md\n")
    with pytest.raises(DataError, match="no 'question' column"):
        load_questions(tmp_path / "q.csv")
    write(tmp_path / "q.txt", "First question?\n\n  Second?  \n")
    assert [q.text for q in load_questions(tmp_path / "q.txt")] == ["First question?", "Second?"]


# --- the decision ------------------------------------------------------------------------------------------


def labels_result(tuned: float, rag: float, hybrid: float, majority: float = 0.1) -> LabelBakeoff:
    b = LabelBakeoff(train_examples=800, test_examples=200, classes=10, majority_accuracy=majority, budget_s=60)
    b.results = [CandidateResult("fine-tuning", "", tuned, tuned, 5.0, 0.0001, 1.0),
                 CandidateResult("rag", "", rag, rag, 20.0, 0.0003, 1.0),
                 CandidateResult("hybrid", "", hybrid, hybrid, 7.0, 0.0002, 2.0)]
    return b


QA = QABakeoff(documents=20, chunks=400, questions=50, k=5, recall_at_k=0.8, answered_rate=0.9,
               latency_p50_ms=30, latency_p95_ms=40, budget_s=60)


def test_labels_only_prefer_the_simpler_system_unless_beaten_by_the_margin() -> None:
    assert decide(labels=labels_result(0.93, 0.88, 0.935)).winner == "fine-tuning"  # hybrid +0.5 pt: not enough
    assert decide(labels=labels_result(0.90, 0.88, 0.93)).winner == "hybrid"
    assert decide(labels=labels_result(0.85, 0.90, 0.905)).winner == "rag"
    tie = decide(labels=labels_result(0.900, 0.905, 0.90))  # within the margin: the cheaper per item wins
    assert tie.winner == "fine-tuning"


def test_documents_with_questions_mean_rag_and_learnable_labels_add_the_tuned_half() -> None:
    assert decide(qa=QA).winner == "rag"
    both = decide(qa=QA, labels=labels_result(0.75, 0.6, 0.7, majority=0.2))
    assert both.winner == "hybrid" and any("learnable" in r for r in both.reasons)
    unlearnable = decide(qa=QA, labels=labels_result(0.25, 0.2, 0.22, majority=0.2))
    assert unlearnable.winner == "rag" and any("not learnable" in r for r in unlearnable.reasons)


def test_decision_warns_about_the_common_mistakes() -> None:
    poor = QABakeoff(documents=5, chunks=50, questions=10, k=5, recall_at_k=0.2, answered_rate=0.5,
                     latency_p50_ms=900, latency_p95_ms=1500, budget_s=60)
    text = " ".join(decide(qa=poor).warnings)
    assert "does not compensate for bad retrieval" in text and "p95 1500 ms" in text
    text = " ".join(decide(labels=labels_result(0.9, 0.8, 0.9)).warnings)
    assert "classification" in text
    with pytest.raises(ValueError):
        decide()


def test_a_more_complex_system_must_be_significantly_better_on_the_same_items() -> None:
    def cand(name: str, right: list[bool]) -> CandidateResult:
        acc = sum(right) / len(right)
        return CandidateResult(name, "", acc, acc, 1.0, 0.001, 1.0, correct=right)

    base = [True] * 360 + [False] * 40  # 90 %
    # +2 points, but from 16 vs 8 discordant items: p ≈ 0.08, not significant
    close = [True] * 344 + [False] * 16 + [True] * 24 + [False] * 16
    far = [True] * 360 + [True] * 30 + [False] * 10  # every discordant item favours it: 30 vs 0
    assert not measurably_better(cand("h", close), cand("t", base), 0.01)
    assert measurably_better(cand("h", far), cand("t", base), 0.01)
    assert not measurably_better(cand("t", base), cand("h", far), 0.01)
    assert not measurably_better(cand("h", far), cand("t", base), 0.10)  # significant but below the margin


# --- ragtune advise with evidence ----------------------------------------------------------------------------


def test_advise_with_labels_writes_the_evidence_report(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ragtune.cli import app

    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["advise", "--labels", str(EXAMPLES / "banking77" / "train.csv"),
                                      "--label-col", "category", "--budget", "60", "--report-dir", str(out),
                                      "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["recommendation"] in {"rag", "fine-tuning", "hybrid"}
    assert {r["name"] for r in data["labels"]["results"]} == {"rag", "fine-tuning", "hybrid"}
    assert data["guide"] is None and data["label_audit"]["classes"] == 8
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and "Classification bake-off" in html
    assert "ragtune train" in (out / "report.md").read_text(encoding="utf-8")  # next steps for the winner


def test_advise_evidence_input_errors_are_one_line(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", "from ragtune.cli import main; main()", "advise", *args],
                              capture_output=True, text=True, cwd=tmp_path, timeout=120)

    docs_only = run("--docs", str(POLICIES / "corpus"))
    assert docs_only.returncode == 1 and "needs --docs with --questions" in docs_only.stderr
    assert "Traceback" not in docs_only.stderr
    partial = run("--labels", str(EXAMPLES / "banking77" / "train.csv"), "--label-col", "category", "--task",
                  "classification")
    assert partial.returncode == 1 and "guide answers are incomplete" in partial.stderr
    missing_col = run("--labels", str(EXAMPLES / "banking77" / "train.csv"))
    assert missing_col.returncode == 1 and "label" in missing_col.stderr and "Traceback" not in missing_col.stderr
