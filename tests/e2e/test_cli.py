"""The `ragtune` command end to end on a small real corpus: two users, different answers and citations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import write
from typer.testing import CliRunner

from ragtune.cli import app

runner = CliRunner()


def run(*args: str) -> Any:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "--json" in args else {}


@pytest.fixture
def project(tmp_path: Path, corpus: Path) -> Path:
    proj = tmp_path / "proj"
    result = runner.invoke(app, ["init", str(proj)])
    assert result.exit_code == 0 and (proj / "ragtune.yaml").is_file()
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.7 garbage")
    result = runner.invoke(app, ["ingest", str(corpus), "--project", str(proj)])
    assert result.exit_code == 3, result.output  # a failed file: the command says so in its exit status
    assert "5 ingested" in result.output and "1 failed" in result.output and "broken.pdf" in result.output
    assert "1 document(s) have no ACL" in result.output and "orphan.txt" in result.output
    return proj


def test_two_users_get_answers_and_citations_matching_their_rights(project: Path) -> None:
    q = "How long are customer records kept?"
    ann = run("ask", q, "--user", "ann", "--groups", "legal,staff", "--json", "--project", str(project))
    bob = run("ask", q, "--user", "bob", "--json", "--project", str(project))
    assert isinstance(ann, dict) and isinstance(bob, dict)
    assert not ann["abstained"] and "seven years" in ann["answer"] and "[1]" in ann["answer"]
    assert any(c["path"].endswith("retention.md") and c["section"].startswith("Retention") for c in ann["citations"])
    assert all(not c["path"].endswith(("retention.md", "salaries.md", "orphan.txt")) for c in bob["citations"])
    assert "seven years" not in bob["answer"]
    for stage in ("embed_query", "lexical", "dense", "fuse", "answer"):
        assert ann["latency_ms"][stage] >= 0


def test_unrelated_question_abstains(project: Path) -> None:
    got = run("ask", "What is the airspeed velocity of an unladen swallow?", "-u", "ann", "-g", "legal",
              "--json", "-p", str(project))
    assert isinstance(got, dict) and got["abstained"] and got["citations"] == []


def test_search_shows_stage_scores_and_respects_acl(project: Path) -> None:
    got = run("search", "salary bands engineers", "-u", "carol", "--json", "-p", str(project))
    assert isinstance(got, dict)
    top = got["hits"][0]
    assert top["path"].endswith("salaries.md") and top["lexical_score"] > 0 and top["dense_score"] > 0
    other = run("search", "salary bands engineers", "-u", "dave", "--json", "-p", str(project))
    assert isinstance(other, dict)
    assert all(not h["path"].endswith("salaries.md") for h in other["hits"])


def test_sources_and_sync(project: Path, corpus: Path) -> None:
    docs = run("sources", "--json", "-p", str(project))
    assert isinstance(docs, list)
    by_name = {Path(d["source_path"]).name: d for d in docs}
    assert by_name["orphan.txt"]["acl"] == [] and by_name["retention.md"]["chunks"] == 2
    (corpus / "handbook.md").unlink()
    write(corpus / "new.md", "---\nacl: public\n---\n# Parking\n\nParking is free for staff on weekends.\n")
    result = runner.invoke(app, ["sync", "-p", str(project)])
    assert result.exit_code == 3 and "1 ingested" in result.output and "1 deleted" in result.output  # broken.pdf
    (corpus / "broken.pdf").unlink()
    assert runner.invoke(app, ["sync", "-p", str(project)]).exit_code == 0
    got = run("ask", "Is parking free on weekends?", "-u", "bob", "--json", "-p", str(project))
    assert isinstance(got, dict) and got["citations"][0]["path"].endswith("new.md")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "ragtune"
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


def test_user_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    r = _cli("ask", "anything", "--user", "ann", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "no ragtune.yaml found" in r.stderr and "ragtune init" in r.stderr

    write(tmp_path / "ragtune.yaml", "retrieval:\n  top_k: -3\n")
    r = _cli("search", "x", "-u", "ann", cwd=tmp_path)
    assert r.returncode == 1 and "retrieval.top_k" in r.stderr and "Traceback" not in r.stderr

    (tmp_path / "ragtune.yaml").unlink()
    assert _cli("init", cwd=tmp_path).returncode == 0
    r = _cli("ask", "anything", "--user", "ann", cwd=tmp_path)
    assert r.returncode == 1 and "index is empty" in r.stderr
    r = _cli("ingest", "no/such/folder", cwd=tmp_path)
    assert r.returncode == 1 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    r = _cli("ingest", ".", "--acl", "team:x", cwd=tmp_path)
    assert r.returncode == 1 and "--acl" in r.stderr
    r = _cli("ask", "q", cwd=tmp_path)
    assert r.returncode != 0 and "--user" in r.stderr  # no user, no access
