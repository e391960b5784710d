"""The pipeline runner gets its components from Project: settings reach every step (issue 11)."""

from __future__ import annotations

from pathlib import Path

from helpers import write

from ragtune.config import init_project
from ragtune.core import Acl, Principal
from ragtune.pipelines.runner import PipelineRunner
from ragtune.pipelines.spec import load_pipeline
from ragtune.project import Project

QUESTION = "How long are backups kept and where are they stored?"


def _project(tmp_path: Path, context_chunks: int) -> Project:
    docs = tmp_path / "docs"
    write(docs / "a.md", "# Backups\n\nBackups are kept for ninety days in the backup vault.\n")
    write(docs / "b.md", "# Storage\n\nBackups are stored in two regions, Frankfurt and Dublin.\n")
    write(docs / "c.md", "# Retention\n\nBackup retention is reviewed each year by the backup team.\n")
    folder = tmp_path / f"proj{context_chunks}"
    init_project(folder)
    text = (folder / "ragtune.yaml").read_text().replace("context_chunks: 4", f"context_chunks: {context_chunks}")
    (folder / "ragtune.yaml").write_text(text)
    project = Project.open(folder)
    project.ingest(docs, Acl(public=True))
    return project


def test_run_honours_answer_context_chunks(tmp_path: Path) -> None:
    spec = tmp_path / "qa.yaml"
    spec.write_text("name: qa\nsteps:\n  - retrieve: {top_k: 3}\n  - answer: {}\n", encoding="utf-8")
    cited = {}
    for n in (1, 4):
        project = _project(tmp_path, n)
        assert project.settings.answer.context_chunks == n
        result = PipelineRunner(load_pipeline(spec), project).run(QUESTION, Principal("ann"))
        assert result.answer is not None and not result.answer.abstained
        cited[n] = {c.chunk.chunk_id for c in result.answer.citations}
        top = project.search(QUESTION, Principal("ann")).hits[0].chunk.chunk_id
        if n == 1:
            assert cited[1] == {top}
    assert len(cited[4]) > 1  # with more context the same question quotes more than one source
