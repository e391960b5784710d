"""`ragtune eval retrieval`, `latency` and `compare` end to end on a tiny ingested project (real MiniLM, LanceDB)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import pytrec_eval
from helpers import write
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.config import init_project
from ragtune.core import Acl
from ragtune.errors import DataError
from ragtune.project import Project

runner = CliRunner()

QUERIES = [
    ("vac", "how many days of paid vacation do employees get"),
    ("pwd", "how often must passwords be rotated"),
    ("sal", "salary bands for engineers"),
    ("inv", "when are supplier invoices paid"),
    ("bak", "how long are database backups retained"),
]
# Corpus ids by stem, by relative path, and relative path without its suffix; "backups" alone is ambiguous.
QRELS = [("vac", "handbook", 1), ("pwd", "passwords", 1), ("sal", "salaries", 1), ("inv", "finance/invoices", 1),
         ("bak", "security/backups.md", 2), ("bak", "notes/backups.md", 0)]
LABELS = {"handbook": "handbook.md", "passwords": "security/passwords.md", "salaries": "hr/salaries.md",
          "finance/invoices": "finance/invoices.txt", "security/backups.md": "security/backups.md",
          "notes/backups.md": "notes/backups.md"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("eval")
    docs = base / "docs"
    write(docs / "handbook.md", "# Employee handbook\n\nEmployees get 25 days of paid vacation per year.\n")
    write(docs / "security" / "passwords.md", "# Passwords\n\nPasswords must be rotated every 90 days.\n")
    write(docs / "security" / "backups.md", "# Backups\n\nDatabase backups are retained for 35 days.\n")
    write(docs / "notes" / "backups.md", "# Notes on backups\n\nThe team met to discuss the backup tool.\n")
    write(docs / "finance" / "invoices.txt", "Supplier invoices are paid within 30 days of receipt.\n")
    write(docs / "hr" / "salaries.md", "---\nacl: {groups: [hr]}\n---\n# Salary bands\n\n"
          "Engineers earn between 90,000 and 150,000 euros depending on their salary band.\n")
    proj = base / "proj"
    init_project(proj)
    Project.open(proj).ingest(docs, Acl(public=True))
    write(base / "queries.jsonl", "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES))
    write(base / "qrels.tsv", "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in QRELS))
    return base


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=True)


def retrieval(base: Path, out: str, *extra: str) -> dict[str, Any]:
    result = invoke("eval", "retrieval", "--queries", str(base / "queries.jsonl"), "--qrels", str(base / "qrels.tsv"),
                    "-p", str(base / "proj"), "--out", str(base / out), "--bootstrap", "200", *extra)
    assert result.exit_code == 0, result.output + repr(result.exception)
    run: dict[str, Any] = json.loads((base / out / "run.json").read_text())
    return run


def test_eval_retrieval_scores_three_configurations_and_writes_the_run_and_report(project: Path) -> None:
    run = retrieval(project, "alice", "--user", "alice")
    assert run["configs"] == ["bm25", "dense", "hybrid"] and run["baseline"] == "bm25"
    for key in ("settings_fingerprint", "embedder_fingerprint", "index_version", "machine", "created", "k_values",
                "bootstrap", "ragtune_version"):
        assert run[key] not in (None, "", {}), key
    assert run["k_values"] == [1, 3, 5, 10, 100] and run["principal"] == {"user": "alice", "groups": []}
    assert run["machine"]["cpu_count"] >= 1 and len(run["machine"]["load_avg"]) == 3
    assert run["queries"] == 5  # every query has a relevant document; the grade-0 judgement is not one
    qrels = {q: {LABELS[d]: s for qq, d, s in QRELS if qq == q} for q, _, _ in QRELS}
    for name in run["configs"]:
        r = run["results"][name]
        assert set(r["per_query"]) == {q for q, _ in QUERIES}
        assert r["latency_ms"]["p50"] > 0 and r["latency_ms"]["p95"] >= r["latency_ms"]["p50"]
        assert "embed_query" in r["latency_ms"]["stages_p50"]
        # The corpus has 6 documents, so run.json keeps whole rankings: score them with trec_eval's code.
        scored = {q: {d: float(100 - i) for i, d in enumerate(ranked)} for q, ranked in r["rankings"].items()}
        ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.5", "recip_rank"}).evaluate(scored)
        for q, m in r["per_query"].items():
            assert m["ndcg@10"] == pytest.approx(ref[q]["ndcg_cut_10"]), (name, q)
            assert m["recall@5"] == pytest.approx(ref[q]["recall_5"]), (name, q)
            assert m["mrr@10"] == pytest.approx(ref[q]["recip_rank"]), (name, q)
        mean = sum(m["ndcg@10"] for m in r["per_query"].values()) / 5
        assert r["aggregate"]["ndcg@10"] == pytest.approx(mean, abs=1e-6)
    hybrid = run["results"]["hybrid"]
    assert hybrid["rankings"]["vac"][0] == "handbook.md" and hybrid["per_query"]["vac"]["mrr@10"] == 1.0
    assert set(run["differences"]) == {"dense", "hybrid"}
    for diffs in run["differences"].values():
        for m in ("ndcg@10", "recall@100"):
            d = diffs[m]
            assert d["low"] <= d["mean"] <= d["high"] and d["queries"] == 5 and d["resamples"] == 200
    report = (project / "alice" / "report.html").read_text()
    assert "data:image/png;base64," in report and "Differences to bm25" in report and "nDCG@10" in report
    assert (project / "alice" / "report.md").is_file() and (project / "alice" / "recall_at_k.png").is_file()


def test_eval_retrieval_honours_acls(project: Path) -> None:
    alice = retrieval(project, "acl-alice", "--user", "alice")
    for name in alice["configs"]:
        r = alice["results"][name]
        assert r["per_query"]["sal"]["recall@100"] == 0.0  # the gold document is hers to miss, not to see
        assert all("hr/salaries.md" not in ranked for ranked in r["rankings"].values()), name
    carol = retrieval(project, "acl-carol", "--user", "carol", "--groups", "hr")
    assert carol["results"]["hybrid"]["per_query"]["sal"]["recall@100"] == 1.0
    assert carol["results"]["bm25"]["rankings"]["sal"][0] == "hr/salaries.md"
    admin = retrieval(project, "acl-admin", "--all-documents")
    assert admin["principal"] == {"all_documents": True}
    assert admin["results"]["hybrid"]["per_query"]["sal"]["recall@100"] == 1.0


def test_eval_compare_pairs_two_runs_by_query(project: Path) -> None:
    a, b = project / "cmp-a", project / "cmp-b"
    retrieval(project, "cmp-a", "--user", "alice", "--configs", "bm25,hybrid")
    retrieval(project, "cmp-b", "--user", "carol", "--groups", "hr", "--configs", "hybrid,dense")
    result = invoke("eval", "compare", str(a / "run.json"), str(b), "--json", "--bootstrap", "300")
    assert result.exit_code == 0, result.output
    cmp = json.loads(result.stdout)
    assert list(cmp["configs"]) == ["hybrid"]  # the configurations both runs have
    ndcg = cmp["configs"]["hybrid"]["metrics"]["ndcg@10"]
    ra, rb = (json.loads((p / "run.json").read_text())["results"]["hybrid"]["per_query"] for p in (a, b))
    assert ndcg["mean"] == pytest.approx(sum(rb[q]["ndcg@10"] - ra[q]["ndcg@10"] for q in ra) / 5)
    assert ndcg["mean"] > 0 and ndcg["low"] <= ndcg["mean"] <= ndcg["high"]  # carol can read the salary bands
    assert cmp["configs"]["hybrid"]["shared_queries"] == 5
    table = invoke("eval", "compare", str(a), str(b))
    assert table.exit_code == 0 and "ndcg@10" in table.stdout and "recall@100" in table.stdout


def test_eval_compare_refuses_runs_that_share_no_query(project: Path) -> None:
    write(project / "other.jsonl", json.dumps({"question": "vacation days", "gold": "handbook"}) + "\n")
    result = invoke("eval", "retrieval", "--questions", str(project / "other.jsonl"), "--user", "alice",
                    "-p", str(project / "proj"), "--out", str(project / "other"), "--configs", "hybrid")
    assert result.exit_code == 0, result.output
    retrieval(project, "base", "--user", "alice", "--configs", "hybrid")
    refused = invoke("eval", "compare", str(project / "base"), str(project / "other"))
    assert refused.exit_code == 1 and isinstance(refused.exception, DataError)
    assert "share no query id" in str(refused.exception) and "same query set" in str(refused.exception)


def test_eval_latency_reports_every_stage(project: Path) -> None:
    out = project / "latency"
    result = invoke("eval", "latency", "--queries", str(project / "queries.jsonl"), "--n", "4", "--answers",
                    "--user", "alice", "-p", str(project / "proj"), "--out", str(out))
    assert result.exit_code == 0, result.output + repr(result.exception)
    record = json.loads((out / "latency.json").read_text())
    assert record["queries"] == 4
    assert set(record["stages"]) == {"embed_query", "dense", "lexical", "fuse", "fetch", "answer", "total"}
    for p in record["stages"].values():
        assert p["n"] == 4 and 0 <= p["p50"] <= p["p95"] <= p["p99"] <= p["max"]
    assert record["not_measured"] == {"rerank": "no reranker is configured (rerank.kind)"}
    m = record["machine"]
    assert m["cpu_count"] >= 1 and len(m["load_avg_start"]) == 3 and len(m["load_avg_end"]) == 3
    assert "data:image/png;base64," in (out / "report.html").read_text()
    assert "embed_query" in result.stdout and "p99" in result.stdout


def bad(project: Path, *args: str) -> Any:
    return invoke("eval", "retrieval", "-p", str(project / "proj"), "--out", str(project / "bad"), *args)


def test_usage_mistakes_exit_2(project: Path) -> None:
    q, r = str(project / "queries.jsonl"), str(project / "qrels.tsv")
    cases = [
        ((("--queries", q, "--qrels", r)), "give --user"),  # fail closed: no principal, no run
        (("--queries", q, "--qrels", r, "--user", "a", "--all-documents"), "do not combine"),
        (("--queries", q, "--user", "a"), "give --queries Q.jsonl with --qrels QRELS.tsv"),
        (("--queries", q, "--qrels", r, "--user", "a", "--configs", "bm25,reranked"), "reranked needs rerank.kind"),
        (("--queries", q, "--qrels", r, "--user", "a", "--k", "1,x"), "comma-separated whole numbers"),
    ]
    for args, message in cases:
        result = bad(project, *args)
        assert result.exit_code == 2, (args, result.output)
        shown = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())  # the error box, unwrapped
        assert message in shown, (args, shown)


def test_bad_files_exit_1_with_a_clear_message(project: Path) -> None:
    q, r = project / "queries.jsonl", project / "qrels.tsv"
    unknown = write(project / "unknown.tsv", "q\tc\ts\nvac\thandbook\t1\nvac\tnope\t1\npwd\tgone/file.md\t1\n")
    empty = write(project / "empty.jsonl", "\n")
    broken = write(project / "broken.jsonl", '{"_id": "vac", "text": "x"}\n{"_id": "pwd", "text"\n')
    ambiguous = write(project / "ambiguous.tsv", "q\tc\ts\nbak\tbackups\t1\n")
    cases = [
        (("--queries", str(q), "--qrels", str(unknown)), "the qrels name 2 document(s) not in the index: "
                                                          "'gone/file.md', 'nope'"),
        (("--queries", str(empty), "--qrels", str(r)), "no queries in the file"),
        (("--queries", str(broken), "--qrels", str(r)), "broken.jsonl:2: not valid JSON"),
        (("--queries", str(q), "--qrels", str(ambiguous)), "'backups' is ambiguous"),
    ]
    for args, message in cases:
        result = bad(project, *args, "--user", "alice")
        assert result.exit_code == 1 and isinstance(result.exception, DataError), (args, result.output)
        assert message in str(result.exception), (args, str(result.exception))


def test_qrels_queries_absent_from_the_query_file_are_warned_about_and_counted(project: Path) -> None:
    extra = write(project / "extra.tsv", (project / "qrels.tsv").read_text() + "zz1\thandbook\t1\nzz2\thandbook\t1\n")
    result = invoke("eval", "retrieval", "--queries", str(project / "queries.jsonl"), "--qrels", str(extra),
                    "--user", "alice", "-p", str(project / "proj"), "--out", str(project / "extra"),
                    "--configs", "bm25", "--bootstrap", "0")
    assert result.exit_code == 0, result.output
    assert "2 query id(s) of the qrels are not in the query file" in result.output and "zz1, zz2" in result.output
    run = json.loads((project / "extra" / "run.json").read_text())
    assert run["inputs"]["missing_queries"] == 2 and run["queries"] == 5 and run["differences"] == {}
