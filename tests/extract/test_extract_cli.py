"""``ragtune extract`` end to end: a tiny project (public documents, one only group hr may read, one nobody may
read), a tiny span reader trained once for the module on a regular synthetic task, and the CLI writing the CSV,
JSONL and HTML review page. Permission integrity first: nothing of a document the user may not read appears in
any output."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import write
from policy_synth import FILLER, contact, effective, policy, retention, synthetic_examples
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.config import init_project
from ragtune.errors import ConfigError, DataError, RagtuneError
from ragtune.project import Project
from ragtune.tuning.reader.train import train_reader

runner = CliRunner()

FIELDS = """\
fields:
  - name: retention
    questions:
      - How long is data retained?
      - How long do you keep my information?
    type: duration
  - name: contact
    question: What email address can I contact about privacy?
    type: email
  - name: effective
    question: When does this policy take effect?
    type: date
"""
HIDDEN = ("777 days", "secret@hidden.example", "payroll-secret", "Hidden payroll", "555 weeks", "nobody@locked.example",
          "locked-memo")


SCRIPTED = "Questions about privacy go to privacy@beta.example <script>alert('x')</script> for an answer."


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ingested project holding the tiny reader ``tiny`` (two layers, nine steps of 16: ~10 s on 2 cores)."""
    tmp = tmp_path_factory.mktemp("extract")
    docs = tmp / "docs"
    write(docs / "alpha.md", policy("Alpha policy", "public", FILLER[0], retention(45, "days"), FILLER[1],
                                    contact("alpha"), effective("May 5, 2019")))
    write(docs / "beta.md", policy("Beta policy", "public", FILLER[2], SCRIPTED, retention(90, "days")))
    write(docs / "=cmd.md", policy("Formula policy", "public", FILLER[3], retention(30, "days"), contact("cmd")))
    write(docs / "hr" / "payroll-secret.md", policy("Hidden payroll", "{groups: [hr]}", FILLER[4],
                                                    retention(777, "days"), contact("secret").replace(
                                                        "privacy@secret", "secret@hidden")))
    write(docs / "locked-memo.md", policy("Locked memo", None, "Data is retained for 555 weeks.",
                                          "Questions about privacy go to nobody@locked.example for an answer."))
    init_project(tmp / "project")
    proj = Project.open(tmp / "project")
    proj.ingest(docs)
    train_reader(proj.registry, "tiny", synthetic_examples(60), layers=2, max_length=96, stride=32, batch_size=16,
                 epochs=1.0, learning_rate=5e-4, holdout=0.2, seed=0)
    write(tmp / "fields.yaml", FIELDS)
    return tmp


def extract(project: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, ["extract", str(project / "docs"), "--fields", str(project / "fields.yaml"),
                               "-p", str(project / "project"), *args], env=env, catch_exceptions=True)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def alice(project: Path) -> dict[str, Any]:
    """alice (group staff) extracts to CSV and JSONL; --min-score 0 so values do not hang on a tiny model's
    calibrated threshold (the validators pick the span)."""
    out = project / "alice"
    csv_run = extract(project, "--out", str(out / "table.csv"), "--user", "alice", "--groups", "staff",
                      "--reader", "tiny", "--min-score", "0")
    jsonl_run = extract(project, "--out", str(out / "table.jsonl"), "--html", str(out / "other.html"),
                        "--user", "alice", "--groups", "staff", "--reader", "tiny", "--min-score", "0")
    return {"out": out, "csv": csv_run, "jsonl": jsonl_run}


def test_csv_holds_the_right_values_scores_and_citations(alice: dict[str, Any]) -> None:
    assert alice["csv"].exit_code == 0, alice["csv"].output
    rows = read_csv(alice["out"] / "table.csv")
    assert list(rows[0]) == ["path", "retention", "retention_score", "retention_citation", "contact", "contact_score",
                             "contact_citation", "effective", "effective_score", "effective_citation"]
    by_path = {r["path"]: r for r in rows}
    assert set(by_path) == {"'=cmd.md", "alpha.md", "beta.md"}
    assert {p: r["retention"] for p, r in by_path.items()} == {"'=cmd.md": "30 days", "alpha.md": "45 days",
                                                               "beta.md": "90 days"}
    assert {p: r["contact"] for p, r in by_path.items()} == {"'=cmd.md": "privacy@cmd.example",
                                                             "alpha.md": "privacy@alpha.example",
                                                             "beta.md": "privacy@beta.example"}
    alpha = by_path["alpha.md"]
    assert alpha["effective"] == "May 5, 2019"
    assert by_path["beta.md"]["effective"] == "" and by_path["beta.md"]["effective_score"] == ""  # no date in it
    assert float(alpha["retention_score"]) > 0
    # path · section · offsets, which point at the value in the document's text.
    text = (alice["out"].parent / "docs" / "alpha.md").read_text(encoding="utf-8")
    cite = alpha["retention_citation"].split(" · ")
    assert cite[0] == "alpha.md" and cite[1] == "Alpha policy" and cite[-1].startswith("chars ")
    start, end = map(int, cite[-1].removeprefix("chars ").split("-"))
    assert end - start == len("45 days")
    body = text[text.index("# Alpha policy"):]  # offsets are into the parsed text (front matter removed)
    assert body[start:end] == "45 days"


def test_csv_injection_is_neutralised(alice: dict[str, Any]) -> None:
    rows = read_csv(alice["out"] / "table.csv")
    cmd = next(r for r in rows if "cmd" in r["path"])
    assert cmd["path"] == "'=cmd.md" and cmd["retention_citation"].startswith("'=cmd.md · ")
    for row in rows:
        assert not any(v.startswith(("=", "+", "-", "@")) for v in row.values()), row


def test_jsonl_holds_every_part_of_the_citation(alice: dict[str, Any]) -> None:
    assert alice["jsonl"].exit_code == 0, alice["jsonl"].output
    records = [json.loads(line) for line in (alice["out"] / "table.jsonl").read_text().splitlines()]
    assert [r["path"] for r in records] == ["=cmd.md", "alpha.md", "beta.md"]  # JSON needs no formula guard
    alpha = records[1]["fields"]
    ret = alpha["retention"]
    assert ret["value"] == "45 days" and ret["span"] == "45 days" and ret["path"] == "alpha.md"
    assert ret["section"] == "Alpha policy" and ret["page"] is None and ret["chunk_id"]
    assert ret["sentence"] == "Data is retained for 45 days." and ret["threshold"] == 0.0
    assert ret["char_end"] - ret["char_start"] == 7
    assert alpha["contact"]["sentence"] == contact("alpha")
    empty = records[2]["fields"]["effective"]
    assert empty["value"] is None and empty["score"] is None and empty["best_score"] is None
    assert (alice["out"] / "other.html").is_file()  # --html names the review page


def test_the_review_page_marks_each_value_and_escapes_document_text(alice: dict[str, Any]) -> None:
    page = (alice["out"] / "table.html").read_text(encoding="utf-8")  # the default: beside --out
    assert "<script" not in page
    assert ("Questions about privacy go to <mark>privacy@beta.example</mark> &lt;script&gt;alert(&#x27;x&#x27;)"
            "&lt;/script&gt; for an answer.") in page
    assert "Data is retained for <mark>45 days</mark>." in page
    assert "Questions about privacy go to <mark>privacy@alpha.example</mark> for an answer." in page
    assert "This policy is effective as of <mark>May 5, 2019</mark>." in page
    assert "default-src &#x27;none&#x27;" not in page and "default-src 'none'" in page  # the CSP header is live
    assert "2 document(s) you may not read were skipped" in page


def test_a_document_the_user_may_not_read_appears_nowhere(alice: dict[str, Any]) -> None:
    outputs = [p.read_text(encoding="utf-8") for p in sorted(alice["out"].iterdir())]
    assert len(outputs) == 4  # table.csv, table.html, table.jsonl, other.html
    for shown in [*outputs, alice["csv"].output, alice["jsonl"].output]:
        for secret in HIDDEN:
            assert secret not in shown
    assert "2 document(s) you may not read were skipped" in alice["csv"].output
    assert "3 document(s) read" in alice["csv"].output and "retention: 3 of 3 filled" in alice["csv"].output


def test_a_principal_who_may_read_it_gets_its_values(project: Path) -> None:
    """The control for the test above: the hidden values are there to be found by group hr."""
    out = project / "hr" / "table.csv"
    result = extract(project, "--out", str(out), "--user", "dana", "--groups", "hr", "--reader", "tiny",
                     "--min-score", "0")
    assert result.exit_code == 0, result.output
    rows = {r["path"]: r for r in read_csv(out)}
    assert rows["hr/payroll-secret.md"]["retention"] == "777 days"
    assert rows["hr/payroll-secret.md"]["contact"] == "secret@hidden.example"
    assert "locked-memo.md" not in rows and "1 document(s) you may not read were skipped" in result.output


def test_thresholds_and_the_default_reader(project: Path) -> None:
    """No --reader: answer.reader; no --min-score: the reader's calibrated threshold; a field's own min_score
    beats both."""
    strict = write(project / "strict.yaml", FIELDS.replace("    type: email\n",
                                                           "    type: email\n    min_score: 1000\n")
                   + "  - name: unit\n    question: How long is data retained?\n    type: enum\n"
                   "    values: [Days, Months, Years]\n")
    out = project / "default" / "table.jsonl"
    result = runner.invoke(app, ["extract", str(project / "docs" / "alpha.md"), "--fields", str(strict), "--out",
                                 str(out), "--user", "alice", "--min-score", "-1000", "-p",
                                 str(project / "project")], env={"RAGTUNE_ANSWER__READER": "tiny"})
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["path"] == "alpha.md"  # DOCS may be one ingested file
    assert record["fields"]["retention"]["value"] == "45 days" and record["fields"]["retention"]["threshold"] == -1000
    assert record["fields"]["contact"]["value"] is None and record["fields"]["contact"]["threshold"] == 1000
    assert record["fields"]["contact"]["best_score"] is not None  # a candidate validated, but fell short
    assert record["fields"]["unit"]["value"] == "Days" and record["fields"]["unit"]["span"] == "45 days"
    calibrated = runner.invoke(app, ["extract", str(project / "docs" / "alpha.md"), "--fields", str(strict), "--out",
                                     str(out), "--user", "alice", "--reader", "tiny", "-p", str(project / "project")])
    assert calibrated.exit_code == 0, calibrated.output
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    from ragtune.tuning.reader.served import SpanReader

    reader = SpanReader(Project.open(project / "project").settings.models_dir, "tiny")
    assert record["fields"]["retention"]["threshold"] == round(reader.threshold, 4)


@pytest.mark.parametrize(("args", "error", "message"), [
    (("--fields", "bad.yaml"), DataError, "bad.yaml:4: field 'retention': type 'colour' is not one of"),
    (("--fields", "dup.yaml"), DataError, "field 'a': the name is used twice"),
    (("--out", "table.txt"), DataError, "name a .csv or .jsonl file"),
    (("--format", "xml"), DataError, "--format 'xml': choose csv or jsonl"),
    (("--reader", ""), ConfigError, "ragtune tune reader DATA --name NAME"),
    (("--reader", "missing"), RagtuneError, "missing"),
    (("DOCS", "elsewhere"), RagtuneError, "run `ragtune ingest"),
])
def test_bad_input_exits_1_with_one_clear_message(project: Path, args: tuple[str, ...], error: type[Exception],
                                                   message: str) -> None:
    write(project / "bad.yaml", "fields:\n  - name: retention\n    question: How long?\n    type: colour\n")
    write(project / "dup.yaml", "fields:\n  - name: a\n    question: Q?\n  - name: a\n    question: R?\n")
    (project / "elsewhere").mkdir(exist_ok=True)
    opts = {"--fields": str(project / "fields.yaml"), "--out": str(project / "bad" / "t.csv"), "--reader": "tiny"}
    docs = str(project / "docs")
    pairs = list(zip(args[::2], args[1::2], strict=True))
    for key, value in pairs:
        if key == "DOCS":
            docs = str(project / value)
        elif key in ("--fields", "--out"):
            opts[key] = str(project / value)
        else:
            opts[key] = value
    argv = ["extract", docs, "--user", "alice", "-p", str(project / "project")]
    for key, value in opts.items():
        argv += [key, value]
    result = runner.invoke(app, argv, env={"RAGTUNE_ANSWER__READER": ""}, catch_exceptions=True)
    assert result.exit_code == 1 and isinstance(result.exception, error), result.output
    assert message in str(result.exception)
    assert not (project / "bad").exists()  # nothing written


def test_the_console_script_prints_one_line(project: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from ragtune.cli import main

    write(project / "bad.yaml", "fields:\n  - name: retention\n    question: How long?\n    type: colour\n")
    monkeypatch.setattr(sys, "argv", ["ragtune", "extract", str(project / "docs"), "--fields",
                                      str(project / "bad.yaml"), "--out", str(project / "x.csv"), "--user", "a"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "type 'colour' is not one of" in lines[0]
