"""What the CLI prints (issue 19): tables that fit 80 columns, the latency a person feels, and a warning when a
principal's name matches an ACL only in another letter case (matching stays exact: fail closed)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.cli_common import case_near_misses, process_age_ms

runner = CliRunner()
PARKING_Q = "Is bicycle parking in the basement garage free on weekends?"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("out")
    root = base / "docs"
    write(root / "legal" / "_acl.yaml", "acl: {groups: [legal]}\n")
    write(root / "legal" / "retention.md", "---\ntitle: Retention policy\n---\n# Retention\n\n"
          "Customer records are kept for seven years after the account closes.\n\n## Backups\n\n"
          "Backups run nightly and are stored in two regions. Backups are deleted after 90 days.\n")
    write(root / "handbook.md", "---\nacl: public\n---\n# Employee handbook\n\n"
          "Employees get 25 days of paid vacation per year. Remote work is allowed two days a week.\n")
    write(root / "hr" / "salaries.md", "---\nacl: {users: [carol], groups: [hr]}\n---\n# Salary bands\n\n"
          "Engineers earn between 90,000 and 150,000 euros depending on level.\n")
    write(root / "facilities" / "parking.md", "---\nacl: {groups: [staff]}\n---\n# Bicycle parking\n\n"
          "Bicycle parking in the basement garage is free for staff on weekends.\n")
    proj = base / "proj"
    assert runner.invoke(app, ["init", str(proj)]).exit_code == 0
    result = runner.invoke(app, ["ingest", str(root), "-p", str(proj)])
    assert result.exit_code == 0, result.output
    return proj


def _cli(*args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "ragtune"
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=300)


def table_rows(output: str) -> list[list[str]]:
    """The body rows of the first Rich table in ``output``: each row's lines (a row starts with a non-empty
    first cell)."""
    lines = output.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("┡")) + 1
    rows: list[list[str]] = []
    for ln in lines[start:]:
        if ln.startswith("└"):
            break
        first_cell = ln.split("│")[1].strip()
        if first_cell or not rows:
            rows.append([ln])
        else:
            rows[-1].append(ln)
    return rows


# --- 80 columns ---------------------------------------------------------------------------------------------


def test_search_at_80_columns_is_two_lines_per_hit_with_file_and_rank(project: Path) -> None:
    r = _cli("search", "backups kept regions", "-u", "ann", "-g", "legal", "-p", str(project))
    assert r.returncode == 0, r.stderr
    assert all(len(ln) <= 80 for ln in r.stdout.splitlines())
    rows = table_rows(r.stdout)
    assert len(rows) >= 3 and all(len(row) <= 2 for row in rows)
    assert [row[0].split("│")[1].strip() for row in rows] == [str(i) for i in range(1, len(rows) + 1)]
    assert "retention.md" in rows[0][0] and "Backups" in rows[0][0]  # file name and section on the first line


def test_sources_at_80_columns_is_one_or_two_lines_per_document(project: Path) -> None:
    r = _cli("sources", "-p", str(project))
    assert r.returncode == 0, r.stderr
    assert all(len(ln) <= 80 for ln in r.stdout.splitlines())
    rows = table_rows(r.stdout)
    assert len(rows) == 4 and all(len(row) <= 2 for row in rows)
    names = [row[0].split("│")[1].strip() for row in rows]
    assert names == ["facilities/parking.md", "handbook.md", "hr/salaries.md", "legal/retention.md"]
    root = str((project.parent / "docs").resolve())
    assert f"in {root}" in r.stdout  # the folder the relative paths start from


def test_sources_at_120_columns_adds_the_synced_column(project: Path) -> None:
    result = _cli("sources", "-p", str(project), columns=120)
    assert "synced" in result.stdout and "synced" not in _cli("sources", "-p", str(project)).stdout


# --- the latency a person feels -----------------------------------------------------------------------------


def test_a_cold_ask_reports_startup_index_and_model_load_and_they_add_up_to_wall(project: Path) -> None:
    r = _cli("ask", "How long are backups kept?", "-u", "ann", "-g", "legal", "--json", "-p", str(project))
    assert r.returncode == 0, r.stderr
    lat = json.loads(r.stdout)["latency_ms"]
    assert list(lat)[:3] == ["startup", "open_index", "model_load"] and list(lat)[-2:] == ["total", "wall"]
    assert all(lat[k] > 0 for k in ("startup", "open_index", "model_load", "total", "wall"))
    assert lat["model_load"] > 50  # a new process loads the embedder: this is not a query stage
    parts = lat["startup"] + lat["open_index"] + lat["model_load"] + lat["total"]
    assert parts <= lat["wall"] + 15  # 10 ms resolution of the start time
    assert lat["wall"] - parts < 0.5 * lat["wall"]  # what is left (settings, imports) is the smaller part


def test_the_latency_table_shows_startup_model_load_and_wall_in_80_columns(project: Path) -> None:
    r = _cli("ask", "How long are backups kept?", "-u", "ann", "-g", "legal", "-p", str(project))
    assert r.returncode == 0, r.stderr
    table = r.stdout[r.stdout.index("latency (ms)"):]
    for key in ("startup", "open_index", "model_load", "embed_query", "total", "wall"):
        assert key in table
    assert all(len(ln) <= 80 for ln in table.splitlines())
    values = [float(v) for v in re.findall(r"\b\d+\.\d\b", table)]
    assert len(values) >= 10 and all(v >= 0 for v in values)


def test_process_age_counts_from_the_process_start() -> None:
    code = "import time; time.sleep(0.3); from ragtune.cli_common import process_age_ms; print(process_age_ms())"
    age = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout)
    assert 300 <= age < 30_000
    now = process_age_ms()
    assert now is not None and now > 0


# --- principals: case near misses ---------------------------------------------------------------------------


def test_near_miss_rule() -> None:
    from ragtune.core import Principal

    index = {"public", "group:staff", "group:STAFF", "group:legal", "user:Carol"}
    got = case_near_misses(Principal("carol", frozenset({"Staff", "legal", "nowhere"})), index)
    assert got == ["user 'carol' matches no ACL in this index; did you mean 'Carol'? Names are case-sensitive.",
                   "group 'Staff' matches no ACL in this index; did you mean 'STAFF' or 'staff'? Names are "
                   "case-sensitive."]
    assert case_near_misses(Principal("Carol", frozenset({"staff"})), index) == []  # exact matches: silent


def test_wrong_case_group_warns_and_still_abstains(project: Path) -> None:
    wrong = runner.invoke(app, ["ask", PARKING_Q, "-u", "bob", "-g", "Staff", "--json", "-p", str(project)])
    assert wrong.exit_code == 0, wrong.output
    assert "group 'Staff' matches no ACL in this index; did you mean 'staff'? Names are case-sensitive." \
        in wrong.stderr
    got = json.loads(wrong.stdout)
    assert got["abstained"] and not any(c["path"].endswith("parking.md") for c in got["citations"])  # fail closed

    right = runner.invoke(app, ["ask", PARKING_Q, "-u", "bob", "-g", "staff", "--json", "-p", str(project)])
    assert right.exit_code == 0 and "matches no ACL" not in right.stderr
    assert json.loads(right.stdout)["citations"][0]["path"].endswith("parking.md")


def test_search_and_sources_warn_about_a_wrong_case_name_too(project: Path) -> None:
    search = runner.invoke(app, ["search", "bicycle parking", "-u", "Carol", "--json", "-p", str(project)])
    assert search.exit_code == 0 and "user 'Carol' matches no ACL in this index; did you mean 'carol'?" \
        in search.stderr
    assert not any(h["path"].endswith("salaries.md") for h in json.loads(search.stdout)["hits"])
    listed = runner.invoke(app, ["sources", "-u", "ann", "-g", "LEGAL", "--json", "-p", str(project)])
    assert "group 'LEGAL' matches no ACL" in listed.stderr
    assert [Path(d["source_path"]).name for d in json.loads(listed.stdout)] == ["handbook.md"]
