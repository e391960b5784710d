"""`ragtune audit verify|export|head` on a real project, and exports that filter by time and read back exactly."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragtune.audit.cli import audit_app
from ragtune.audit.export import parse_time, read_export, read_records, select, write_export
from ragtune.audit.log import AuditLog, log_path
from ragtune.config import init_project, load_settings
from ragtune.errors import ConfigError, DataError

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
runner = CliRunner()


class StepClock:
    """Each record one day after the last, from T0."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> datetime:
        self.n += 1
        return T0 + timedelta(days=self.n - 1)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    init_project(tmp_path / "p")
    log = AuditLog(log_path(load_settings(tmp_path / "p")), clock=StepClock())
    odd = ["42", "", "null", "=HYPERLINK(\"http://x\")", "-2+3", "@SUM(A1)", "plain, with \"quotes\"\nand a newline"]
    for i in range(5):
        log.append({"principal": f"u{i}", "route": "cli:ask", "outcome": "answered", "latency_ms": 1.5 + i,
                    "retrieved": [{"chunk_id": f"c{i}", "doc_hash": "ab"}], "role": None, "question": odd[i],
                    "question_extra": odd[5 + i % 2]})
    return tmp_path / "p"


def test_default_log_path_is_in_the_project(project: Path) -> None:
    path = project / "audit" / "audit.jsonl"
    assert path.is_file() and stat.S_IMODE((project / "audit").stat().st_mode) == 0o700


def test_verify_ok_then_tampered_names_the_first_bad_record(project: Path) -> None:
    ok = runner.invoke(audit_app, ["verify", "-p", str(project)])
    assert ok.exit_code == 0 and "ok" in ok.stdout and "5 records" in ok.stdout
    path = project / "audit" / "audit.jsonl"
    rows = path.read_bytes().splitlines()
    rows[1] = rows[1].replace(b'"u1"', b'"[bold]x[/bold]"')
    path.write_bytes(b"\n".join(rows) + b"\n")
    bad = runner.invoke(audit_app, ["verify", "-p", str(project)])
    assert bad.exit_code == 1
    assert "edited at line 2" in bad.stderr
    as_json = runner.invoke(audit_app, ["verify", "--json", "-p", str(project)])
    report = json.loads(as_json.stdout)
    assert as_json.exit_code == 1 and report["ok"] is False
    first = report["first_problem"]
    assert first == {"kind": "edited", "line": 2, "seq": 2, "message": report["problems"][0]["message"]}


def test_head_prints_an_anchor_that_verify_accepts(project: Path) -> None:
    head = runner.invoke(audit_app, ["head", "-p", str(project)])
    assert head.exit_code == 0
    anchor = head.stdout.strip()
    assert anchor.startswith("5:") and len(anchor) == 66
    assert runner.invoke(audit_app, ["verify", "--anchor", anchor, "-p", str(project)]).exit_code == 0
    wrong = anchor[:-1] + ("0" if anchor[-1] != "0" else "1")
    res = runner.invoke(audit_app, ["verify", "--anchor", wrong, "-p", str(project)])
    assert res.exit_code == 1 and "rewritten" in res.stderr


def test_export_filters_by_time_in_both_formats_and_round_trips(project: Path, tmp_path: Path) -> None:
    originals = list(read_records(project / "audit" / "audit.jsonl"))
    for fmt in ("jsonl", "csv"):
        out = tmp_path / f"x.{fmt}"
        res = runner.invoke(audit_app, ["export", "--since", "2024-05-02", "--until", "2024-05-04T14:00:00+01:00",
                                        "--format", fmt, "--output", str(out), "-p", str(project)])
        assert res.exit_code == 0, res.output
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        back = read_export(out.read_text(encoding="utf-8"), fmt)
        assert [r["seq"] for r in back] == [2, 3, 4]
        assert back == originals[1:4]  # every field, type and odd string exactly as logged


def test_csv_cells_cannot_run_as_spreadsheet_formulas(project: Path) -> None:
    res = runner.invoke(audit_app, ["export", "--format", "csv", "-p", str(project)])
    assert res.exit_code == 0
    import csv
    import io

    cells = [c for row in csv.reader(io.StringIO(res.stdout)) for c in row]
    assert not any(c.startswith(("=", "+", "-", "@")) for c in cells)
    assert json.dumps('=HYPERLINK("http://x")') in cells  # JSON-quoted: a spreadsheet shows it as text
    assert "cli:ask" in cells and "u0" in cells  # ordinary strings stay readable


def test_export_to_stdout_as_jsonl_with_a_relative_age(project: Path) -> None:
    res = runner.invoke(audit_app, ["export", "--since", "3650d", "-p", str(project)])
    assert res.exit_code == 0
    assert [json.loads(x)["seq"] for x in res.stdout.splitlines()] == [1, 2, 3, 4, 5]


def test_bad_time_and_format_are_clear_errors(project: Path) -> None:
    res = runner.invoke(audit_app, ["export", "--since", "last tuesday", "-p", str(project)])
    assert isinstance(res.exception, DataError) and "--since 'last tuesday' is not a time" in str(res.exception)
    res = runner.invoke(audit_app, ["export", "--format", "xml", "-p", str(project)])
    assert isinstance(res.exception, DataError) and "choose jsonl or csv" in str(res.exception)
    res = runner.invoke(audit_app, ["export", "--since", "1d", "--until", "2d", "-p", str(project)])
    assert isinstance(res.exception, DataError) and "must be after" in str(res.exception)


def test_export_warns_when_the_log_does_not_verify(project: Path) -> None:
    path = project / "audit" / "audit.jsonl"
    path.write_bytes(b"\n".join(path.read_bytes().splitlines()[:2]) + b"\n")
    res = runner.invoke(audit_app, ["export", "-p", str(project)])
    assert res.exit_code == 0 and "does not verify (truncated" in res.stderr
    assert len(res.stdout.splitlines()) == 2


def test_relative_ages_and_plain_dates() -> None:
    now = datetime(2024, 6, 1, tzinfo=UTC)
    assert parse_time("7d", option="--since", now=now) == now - timedelta(days=7)
    assert parse_time("12h", option="--since", now=now) == now - timedelta(hours=12)
    assert parse_time("2024-05-01", option="--since") == datetime(2024, 5, 1, tzinfo=UTC)
    recs = [{"seq": 1, "time": "2024-05-01T00:00:00.000000Z"}, {"seq": 2, "time": "2024-05-03T00:00:00.000000Z"}]
    assert select(recs, datetime(2024, 5, 2, tzinfo=UTC), None) == [recs[1]]


def test_csv_of_no_records_is_a_header_only() -> None:
    import io

    buf = io.StringIO()
    write_export([], "csv", buf)
    assert read_export(buf.getvalue(), "csv") == []


def test_audit_settings_from_the_file(tmp_path: Path) -> None:
    init_project(tmp_path / "p")
    settings = load_settings(tmp_path / "p")
    assert (settings.audit.enabled, settings.audit.questions) == (True, "hash")  # the template's own block
    assert log_path(settings) == tmp_path / "p" / "audit" / "audit.jsonl"
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "ragtune.yaml").write_text("audit:\n  questions: plain\n")
    with pytest.raises(ConfigError, match="audit.questions"):
        load_settings(tmp_path / "q")
