"""``answer.kind: reader`` (issue 13): the exact span a tiny trained reader finds, inside its cited sentence, with
offsets in ``ask --json`` and the pipeline result; abstention below the threshold; and never a span from a chunk
the asker may not read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import write
from policy_synth import FILLER, contact, effective, policy, retention, synthetic_examples
from typer.testing import CliRunner

from ragtune.answer.reader import ReaderAnswerer, sentence_around
from ragtune.cli import app
from ragtune.config import init_project, load_settings
from ragtune.core import Principal
from ragtune.errors import ModelNotFoundError
from ragtune.project import Project
from ragtune.tuning.reader.train import train_reader

runner = CliRunner()
ALICE = Principal("alice", frozenset({"staff"}))
HR = Principal("hana", frozenset({"hr"}))
QUESTION = "How long is data retained?"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two documents: a public policy (45 days) and one only group hr may read (777 days); the reader ``tiny``."""
    tmp = tmp_path_factory.mktemp("reader-answer")
    write(tmp / "docs" / "alpha.md", policy("Alpha policy", "public", FILLER[0], retention(45, "days"), FILLER[1],
                                            contact("alpha"), effective("May 5, 2019")))
    write(tmp / "docs" / "hr" / "payroll.md", policy("Payroll retention", "{groups: [hr]}",
                                                     retention(777, "days"), FILLER[4]))
    init_project(tmp / "project")
    proj = Project.open(tmp / "project")
    proj.ingest(tmp / "docs")
    train_reader(proj.registry, "tiny", synthetic_examples(60), layers=2, max_length=96, stride=32, batch_size=16,
                 epochs=1.0, learning_rate=5e-4, holdout=0.2, seed=0)
    (tmp / "project" / "ragtune.yaml").write_text("answer:\n  kind: reader\n  reader: tiny@1\n  reader_min_score: 0\n",
                                                  encoding="utf-8")
    return tmp / "project"


def open_project(project: Path, **answer: Any) -> Project:
    s = load_settings(project)
    return Project(s.model_copy(update={"answer": s.answer.model_copy(update=answer)}))


def test_the_answer_is_the_span_inside_its_cited_sentence(project: Path) -> None:
    proj = Project.open(project)
    assert isinstance(proj.answerer, ReaderAnswerer)
    answer = proj.ask(QUESTION, ALICE)
    assert not answer.abstained and answer.span is not None
    [citation] = answer.citations
    assert answer.span.text == "45 days" and answer.span.citation == 1
    text = citation.chunk.text
    assert text[answer.span.start:answer.span.end] == "45 days"
    assert answer.text == "Data is retained for 45 days. [1]" and citation.snippet == "Data is retained for 45 days."
    assert answer.latency_ms["answer"] > 0 and "model_load" in answer.latency_ms


def test_a_span_never_comes_from_a_chunk_the_asker_may_not_read(project: Path) -> None:
    proj = Project.open(project)
    for question in (QUESTION, "How long is payroll data retained?"):
        answer = proj.ask(question, ALICE)
        seen = answer.text + " ".join(c.snippet + c.chunk.text for c in answer.citations)
        assert "777" not in seen and (answer.span is None or "777" not in answer.span.text)
        assert not any("777" in h.chunk.text for h in answer.hits)
    # control: the same question as hr retrieves the hidden chunk, and the reader reads it as a candidate
    hr = proj.ask("How long is payroll data retained?", HR)
    assert any("777" in h.chunk.text for h in hr.hits)
    spans = proj.answerer.reader.read("How long is payroll data retained?",  # type: ignore[attr-defined]
                                      [h.chunk.text for h in hr.hits], top_n=5)
    assert "777 days" in {s.text for s in spans}


def test_below_the_threshold_it_abstains(project: Path) -> None:
    answer = open_project(project, reader_min_score=1e6).ask(QUESTION, ALICE)
    assert answer.abstained and answer.span is None and not answer.citations
    # the reader's own calibrated threshold applies when reader_min_score is not set
    calibrated = open_project(project, reader_min_score=None)
    reader_threshold = calibrated.answerer.threshold()  # type: ignore[attr-defined]
    assert reader_threshold == pytest.approx(calibrated.registry.card("tiny", 1).params["threshold"])


def test_ask_json_and_the_pipeline_give_the_span_offsets(project: Path) -> None:
    result = runner.invoke(app, ["ask", QUESTION, "--user", "alice", "--groups", "staff", "--json", "-p",
                                 str(project)])
    assert result.exit_code == 0, result.output
    span = json.loads(result.stdout)["span"]
    assert span["text"] == "45 days" and span["citation"] == 1
    proj = Project.open(project)
    chunk = proj.ask(QUESTION, ALICE).citations[0].chunk
    assert (span["chunk_start"], span["chunk_end"]) == (chunk.text.index("45 days"), chunk.text.index("45 days") + 7)
    assert span["char_start"] == chunk.char_start + span["chunk_start"]
    shown = runner.invoke(app, ["ask", QUESTION, "--user", "alice", "--groups", "staff", "-p", str(project)])
    assert shown.exit_code == 0 and "Answer: 45 days" in shown.stdout
    from ragtune.pipelines.runner import PipelineRunner
    from ragtune.pipelines.spec import load_pipeline

    spec = write(project.parent / "qa.yaml", "name: qa\nsteps:\n  - retrieve: {top_k: 4}\n"
                 "  - answer: {generator: project}\n")
    out = PipelineRunner(load_pipeline(spec), proj).run(QUESTION, ALICE).to_dict()
    assert out["answer"]["span"]["text"] == "45 days"


def test_the_web_ui_marks_the_span_and_escapes_it(project: Path) -> None:
    from dataclasses import replace

    from ragtune.server.ui.chat import answer_view
    from ragtune.server.ui.render import render

    proj = Project.open(project)
    answer = proj.ask(QUESTION, ALICE)
    html = render("answer.html", None, a=answer_view(proj, answer), item_id=None)
    assert "Answer: <mark>45 days</mark>" in html
    assert answer.span is not None
    hostile = replace(answer, span=replace(answer.span, text="<script>x</script>"))
    html = render("answer.html", None, a=answer_view(proj, hostile), item_id=None)
    assert "<script>x" not in html and "&lt;script&gt;x" in html
    plain = answer_view(proj, answer)
    del plain["span"]  # a history item stored before spans existed still renders
    assert "answer-span" not in render("answer.html", None, a=plain, item_id=None)


def test_an_unknown_reader_is_a_clear_error(project: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="tune reader DATA --name nosuch"):
        open_project(project, reader="nosuch").ask(QUESTION, ALICE)


def test_sentence_around_covers_the_span() -> None:
    text = "First one. Data is kept for 30 days. Last one."
    s = text.index("30 days")
    assert text[slice(*sentence_around(text, s, s + 7))] == "Data is kept for 30 days."
    assert sentence_around("no sentence here", 3, 5) == (0, 16)
