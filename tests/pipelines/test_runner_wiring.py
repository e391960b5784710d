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
    # Any sentence adding a question term is quoted, so what limits the sources is context_chunks alone.
    text = text.replace("support_margin: 0.05", "support_margin: 1.0")
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


def test_the_advisors_drafted_pipeline_runs_on_a_fresh_project(tmp_path: Path) -> None:
    """Issue 19: a pipeline `ragtune advise` suggests must not fail on a project with no trained models. Its
    verify step then checks with lexical overlap, and the result says so."""
    import json

    from typer.testing import CliRunner

    from ragtune.advisor.guide import recommend
    from ragtune.advisor.questions import GuideAnswers
    from ragtune.cli import app

    answers = GuideAnswers(task="answer-generation", knowledge_change="weekly", citations=True,
                           structured_output=False, examples_per_class=0, fast_iteration=True, latency_ms=3000,
                           regulated=False)
    rec = recommend(answers)  # the advisor's own code path, as `ragtune advise` prints it
    assert rec.winner == "rag" and "- verify:" in rec.pipeline_yaml
    spec_file = write(tmp_path / "pipeline.yaml", rec.pipeline_yaml)
    project = _project(tmp_path, 4)
    assert project.registry.list() == []  # fresh: nothing trained
    folder = str(project.settings.project_dir)
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(spec_file), QUESTION, "--user", "ann", "--json", "-p", folder])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["answer"] is not None and not data["answer"]["abstained"] and data["answer"]["citations"]
    assert data["groundedness"] is not None and 0.0 <= data["groundedness"] <= 1.0
    assert data["groundedness_model"].startswith("lexical overlap (no trained checker")
    assert any(f.startswith("groundedness checked by lexical overlap") for f in data["answer"]["flags"])
    assert data["route"] == ("human-review" if data["unsupported_sentences"] else "automated")
    assert any(key.endswith(".verify") for key in data["latency_ms"])
    # The extractive answer quotes its sources, so lexical overlap finds every sentence supported.
    assert data["unsupported_sentences"] == [] and data["groundedness"] == 1.0
    text = runner.invoke(app, ["run", str(spec_file), QUESTION, "--user", "ann", "-p", folder])
    assert text.exit_code == 0, text.output
    assert "groundedness: 1.00" in text.output and "run `ragtune verify train` for the trained one" in text.output
