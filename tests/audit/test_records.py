"""Audit records name chunks and document versions but never hold document text, answers or (by default) questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.audit.log import AuditLog
from ragtune.audit.records import answer_record, pipeline_record, question_sha256
from ragtune.config import Settings
from ragtune.core import Answer, Chunk, Citation, Hit, Principal
from ragtune.models.embedder import MiniLMEmbedder
from ragtune.pipelines.runner import LabelResult, PipelineResult
from ragtune.project import Project

SECRET_TEXT = "The zebracorn merger closes on 31 March for 4.2 billion"
SNIPPET = "zebracorn merger closes"
ANSWER_TEXT = "It closes on 31 March [1]."
QUESTION = "When does the quokkafish merger close?"
ALICE = Principal("alice", frozenset({"legal"}))


def chunk(i: int, text: str) -> Chunk:
    return Chunk(chunk_id=f"doc{i}#0", doc_id=f"doc{i}", source_path=f"/corpus/legal/doc{i}.md", title=f"Doc {i}",
                 section_path=("Mergers",), page=None, char_start=0, char_end=len(text), text=text,
                 content_hash=f"c{i}" * 8, doc_hash=f"d{i}" * 8, mtime=0.0, acl=("group:legal",))


def make_answer(abstained: bool = False) -> Answer:
    c1, c2 = chunk(1, SECRET_TEXT), chunk(2, "Quarterly zebracorn revenue grew 7 percent in the north region")
    return Answer(question=QUESTION, text=ANSWER_TEXT, citations=() if abstained else (Citation(1, c1, SNIPPET),),
                  abstained=abstained, latency_ms={"dense": 3.0, "total": 12.345},
                  hits=(Hit(c1, 0.9), Hit(c2, 0.5)), flags=())


def record(**kw: object) -> dict:
    args: dict = dict(principal=ALICE, role="reader", route="cli:ask", request_id="req-1", question=QUESTION,
                      answer=make_answer(), index_version=7, model_versions={"embedder": "minilm@x/onnx/384"})
    return answer_record(**(args | kw))


def test_answer_record_names_chunks_and_document_versions() -> None:
    rec = record()
    assert rec["retrieved"] == [{"chunk_id": "doc1#0", "doc_hash": "d1" * 8},
                                {"chunk_id": "doc2#0", "doc_hash": "d2" * 8}]
    assert rec["cited"] == [{"chunk_id": "doc1#0", "doc_hash": "d1" * 8}]
    assert (rec["principal"], rec["groups"], rec["role"], rec["route"], rec["request_id"]) == \
        ("alice", ["legal"], "reader", "cli:ask", "req-1")
    assert (rec["index_version"], rec["model_versions"], rec["latency_ms"], rec["outcome"]) == \
        (7, {"embedder": "minilm@x/onnx/384"}, 12.35, "answered")
    assert record(answer=make_answer(abstained=True))["outcome"] == "abstained"
    assert record(outcome="refused")["outcome"] == "refused"


def test_questions_are_hashed_by_default_and_kept_as_text_when_set() -> None:
    hashed = record()
    assert "question" not in hashed and hashed["question_sha256"] == question_sha256(QUESTION)
    assert QUESTION not in json.dumps(hashed)
    assert record(store_questions="text")["question"] == QUESTION
    assert Settings().audit.questions == "hash"  # fail-safe default


def test_log_bytes_never_hold_chunk_text_snippets_answers_or_hashed_questions(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append(record())
    log.append(record(answer=None, outcome="error", error=RuntimeError(f"failed near: {SECRET_TEXT}")))
    data = log.path.read_bytes() + log.head_path.read_bytes()
    for leak in (SECRET_TEXT, "zebracorn", SNIPPET, ANSWER_TEXT, "quokkafish", "north region", "/corpus/"):
        assert leak.encode() not in data, leak
    assert b'"error":"RuntimeError"' in data  # the error's class only: its message quoted the document


def test_pipeline_record_keeps_labels_and_counts_but_no_text(tmp_path: Path) -> None:
    result = PipelineResult(pipeline="compliance-copilot", input=QUESTION, user="alice", answer=make_answer(),
                            labels={"topic": LabelResult("topics", "mergers", 0.91234, top_k=[])}, route="legal",
                            groundedness=0.5, unsupported_sentences=[SECRET_TEXT], latency_ms={"total": 20.0})
    rec = pipeline_record(result=result, principal=ALICE, role=None, route="cli:run", request_id="r2",
                          index_version=3, model_versions={})
    assert rec["pipeline"] == "compliance-copilot" and rec["queue"] == "legal"
    assert rec["labels"] == {"topic": {"model": "topics", "label": "mergers", "probability": 0.9123}}
    assert rec["unsupported_sentences"] == 1 and rec["latency_ms"] == 20.0 and rec["outcome"] == "answered"
    assert rec["cited"] == [{"chunk_id": "doc1#0", "doc_hash": "d1" * 8}]
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append(rec)
    assert b"zebracorn" not in log.path.read_bytes() and b"quokkafish" not in log.path.read_bytes()


def test_bad_outcome_or_question_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="outcome must be one of"):
        record(outcome="maybe")
    with pytest.raises(ValueError, match="store_questions"):
        record(store_questions="plain")


def test_a_real_answer_from_a_real_index_leaks_nothing(tmp_path: Path, corpus: Path, embedder: MiniLMEmbedder
                                                       ) -> None:
    """End to end: the extractive answer quotes the document; the record of it must not."""
    with Project.temporary(embedder=embedder) as project:
        project.ingest(corpus)
        answer = project.ask("How many days of paid vacation do employees get?", Principal("bob"))
        assert not answer.abstained and "25 days" in answer.text
        rec = answer_record(principal=Principal("bob"), role=None, route="cli:ask", request_id="r",
                            question=answer.question, answer=answer, index_version=project.store.version(),
                            model_versions={"embedder": embedder.fingerprint})
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append(rec)
    data = log.path.read_bytes()
    assert rec["cited"] and all(ref["chunk_id"].encode() in data for ref in rec["cited"])
    for leak in ("25 days", "paid vacation", "Remote work", answer.text[:40], "handbook.md"):
        assert leak.encode() not in data, leak
    assert isinstance(rec["index_version"], int)
