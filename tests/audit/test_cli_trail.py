"""`ragtune ask` and `ragtune run` write to the project's one audit log: answered, abstained and failed requests,
with chunk ids and versions but no document text; the chain verifies afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import write
from typer.testing import CliRunner

from ragtune.audit.export import read_records
from ragtune.audit.log import log_path
from ragtune.audit.verify import verify
from ragtune.cli import app
from ragtune.cli_common import cited_place
from ragtune.config import init_project, load_settings
from ragtune.core import Chunk

runner = CliRunner()
SECRET_LINE = "Backups are kept for ninety days in the Zanzibar vault."


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trail")
    write(root / "docs" / "ops" / "_acl.yaml", "acl: {groups: [ops]}\n")
    write(root / "docs" / "ops" / "backups.md", f"# Backups\n\n{SECRET_LINE}\n")
    init_project(root / "p")
    result = runner.invoke(app, ["ingest", str(root / "docs"), "-p", str(root / "p")])
    assert result.exit_code == 0, result.output
    return root / "p"


def test_ask_and_run_append_verifiable_records_without_text(project: Path) -> None:
    p = str(project)
    assert runner.invoke(app, ["ask", "How long are backups kept?", "-u", "ann", "-g", "ops", "-p", p]).exit_code == 0
    assert runner.invoke(app, ["ask", "How long are backups kept?", "-u", "bob", "-p", p]).exit_code == 0
    spec = write(project.parent / "qa.yaml", "name: qa\nsteps:\n  - retrieve: {top_k: 3}\n  - answer: {}\n")
    assert runner.invoke(app, ["run", str(spec), "How long are backups kept?", "-u", "ann", "-g", "ops",
                               "-p", p]).exit_code == 0
    # compliance-copilot classifies with a model this project never trained: the failed run is recorded too.
    assert runner.invoke(app, ["run", "compliance-copilot", "How long?", "-u", "ann", "-p", p]).exit_code != 0
    log = log_path(load_settings(project))
    records = list(read_records(log))
    assert [(r["route"], r["principal"], r["outcome"]) for r in records][:2] == [
        ("cli:ask", "ann", "answered"), ("cli:ask", "bob", "abstained")]
    assert records[0]["cited"][0] in records[0]["retrieved"]  # chunk id and document version
    assert records[1]["cited"] == [] and records[1]["groups"] == []
    assert all(isinstance(r["index_version"], int) and r["model_versions"]["embedder"] for r in records)
    assert [(r["route"], r["outcome"], r.get("pipeline")) for r in records[2:]] == [
        ("cli:run", "answered", "qa"), ("cli:run", "error", None)]
    assert records[2]["cited"] and records[3]["error"] == "ModelNotFoundError"
    assert "question_sha256" in records[0] and "question" not in records[0]  # hashed by default
    assert b"Zanzibar" not in log.read_bytes()
    assert verify(log).ok


def test_a_failed_ask_is_recorded_as_an_error(tmp_path: Path) -> None:
    init_project(tmp_path / "empty")
    result = runner.invoke(app, ["ask", "Anything?", "-u", "ann", "-p", str(tmp_path / "empty")])
    assert result.exit_code != 0
    (record,) = read_records(log_path(load_settings(tmp_path / "empty")))
    assert record["outcome"] == "error" and record["error"] == "EmptyCorpusError"


def test_a_pdf_citation_names_its_page_once() -> None:
    base = dict(chunk_id="c", doc_id="d", source_path="/x.pdf", title="Data retention", char_start=0, char_end=1,
                text="t", content_hash="", doc_hash="", mtime=0.0, acl=("public",))
    assert cited_place(Chunk(**base, section_path=("Page 1",), page=1)) == "Page 1"  # type: ignore[arg-type]
    assert cited_place(Chunk(**base, section_path=("Backups",), page=3)) == "Backups, page 3"  # type: ignore[arg-type]
    assert cited_place(Chunk(**base, section_path=(), page=None)) == "Data retention"  # type: ignore[arg-type]
