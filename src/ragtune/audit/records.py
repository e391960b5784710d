"""Audit records of answers and pipeline runs: who asked what, which chunks were used, how it ended.

A record names chunks by id and their documents by content hash (the document version), never by text:
no chunk text, snippet, answer text or unsupported sentence is ever copied into the log. The question is
kept as text or only as its SHA-256, by the ``audit.questions`` setting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, get_args

from ragtune.core import Answer, Chunk, Principal

if TYPE_CHECKING:
    from ragtune.pipelines.runner import PipelineResult

Outcome = Literal["answered", "abstained", "refused", "error"]
QuestionMode = Literal["text", "hash"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)


def question_sha256(question: str) -> str:
    """The hex SHA-256 of the question's UTF-8 bytes (what ``questions: hash`` stores)."""
    return hashlib.sha256(question.encode("utf-8", "surrogatepass")).hexdigest()


def outcome_of(answer: Answer | None) -> Outcome:
    """``abstained`` or ``answered`` from the answer; ``error`` when there is none."""
    if answer is None:
        return "error"
    return "abstained" if answer.abstained else "answered"


def _chunk_ref(chunk: Chunk) -> dict[str, str]:
    return {"chunk_id": chunk.chunk_id, "doc_hash": chunk.doc_hash}


def _base(
    *, kind: str, principal: Principal, role: str | None, route: str, request_id: str, question: str,
    answer: Answer | None, index_version: int | str | None, model_versions: Mapping[str, str],
    outcome: Outcome | None, latency_ms: float | None, store_questions: QuestionMode, error: BaseException | None,
) -> dict[str, Any]:
    if store_questions not in ("text", "hash"):
        raise ValueError(f"store_questions must be 'text' or 'hash', not {store_questions!r}")
    outcome = outcome if outcome is not None else outcome_of(answer)
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
    if latency_ms is None and answer is not None:
        latency_ms = answer.latency_ms.get("total")
    record: dict[str, Any] = {
        "kind": kind, "principal": principal.user, "groups": sorted(principal.groups), "role": role,
        "route": route, "request_id": request_id,
        "retrieved": [_chunk_ref(h.chunk) for h in answer.hits] if answer is not None else [],
        "cited": [_chunk_ref(c.chunk) for c in answer.citations] if answer is not None else [],
        "index_version": index_version, "model_versions": dict(sorted(model_versions.items())),
        "latency_ms": None if latency_ms is None else round(float(latency_ms), 2), "outcome": outcome,
    }
    if store_questions == "text":
        record["question"] = question
    else:
        record["question_sha256"] = question_sha256(question)
    if error is not None:
        record["error"] = type(error).__name__  # the class only: a message may quote a document
    return record


def answer_record(
    *,
    principal: Principal,
    role: str | None,
    route: str,
    request_id: str,
    question: str,
    answer: Answer | None,
    index_version: int | str | None,
    model_versions: Mapping[str, str],
    outcome: Outcome | None = None,
    latency_ms: float | None = None,
    store_questions: QuestionMode = "hash",
    error: BaseException | None = None,
) -> dict[str, Any]:
    """The audit record of one answer (``ragtune ask``, the service's ask route), ready for ``AuditLog.append``.

    ``retrieved`` lists ``answer.hits`` and ``cited`` the citations, each as ``{chunk_id, doc_hash}``.
    ``outcome`` defaults to ``answered``/``abstained`` from the answer (``error`` without one); ``latency_ms``
    to the answer's ``total``. ``index_version`` is the store's version (``Store.version()``), and
    ``model_versions`` names each model used, e.g. ``{"embedder": fingerprint, "generator": "extractive"}``.
    With ``error``, only its class name is kept.
    """
    return _base(kind="answer", principal=principal, role=role, route=route, request_id=request_id,
                 question=question, answer=answer, index_version=index_version, model_versions=model_versions,
                 outcome=outcome, latency_ms=latency_ms, store_questions=store_questions, error=error)


def pipeline_record(
    *,
    result: PipelineResult,
    principal: Principal,
    role: str | None,
    route: str,
    request_id: str,
    index_version: int | str | None,
    model_versions: Mapping[str, str],
    outcome: Outcome | None = None,
    latency_ms: float | None = None,
    store_questions: QuestionMode = "hash",
    error: BaseException | None = None,
) -> dict[str, Any]:
    """The audit record of one pipeline run (``ragtune run``): the answer's fields plus the pipeline's name,
    each classifier's label, model and probability, the queue its rules chose and the groundedness score.

    The input is stored like a question (text or hash); unsupported sentences only as a count. A run with
    no answer step is ``answered`` unless ``outcome`` says otherwise; ``latency_ms`` defaults to the run's
    ``total``.
    """
    if latency_ms is None:
        latency_ms = result.latency_ms.get("total")
    if outcome is None and result.answer is None:
        outcome = "answered" if error is None else "error"
    record = _base(kind="pipeline", principal=principal, role=role, route=route, request_id=request_id,
                   question=result.input, answer=result.answer, index_version=index_version,
                   model_versions=model_versions, outcome=outcome, latency_ms=latency_ms,
                   store_questions=store_questions, error=error)
    record["pipeline"] = result.pipeline
    record["labels"] = {name: {"model": lab.model, "label": lab.label, "probability": round(lab.probability, 4)}
                        for name, lab in sorted(result.labels.items())}
    record["queue"] = result.route
    record["groundedness"] = None if result.groundedness is None else round(result.groundedness, 4)
    record["unsupported_sentences"] = len(result.unsupported_sentences)
    return record
