"""One call site for every audited request: ``with audit_trail(project, ...) as trail: trail.answered(a)``.

The CLI's ``ask`` and ``run`` and the server's routes use it, so each writes the same record to the project's
one log: the index and model versions are read from the project's own components, an exception is recorded
as ``error`` (its class name only) before it propagates, and a refusal (``trail.refused()``) as ``refused``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ragtune.audit.records import Outcome, answer_record, pipeline_record
from ragtune.core import Answer, Principal

if TYPE_CHECKING:
    from ragtune.pipelines.runner import PipelineResult
    from ragtune.project import Project


class Trail:
    """What one audited request ended with; set by the ``with`` body, written when it exits."""

    def __init__(self) -> None:
        self.answer: Answer | None = None
        self.result: PipelineResult | None = None
        self.outcome: Outcome | None = None

    def answered(self, answer: Answer) -> None:
        """The request produced ``answer`` (answered or abstained)."""
        self.answer = answer

    def ran(self, result: PipelineResult) -> None:
        """The request ran a pipeline to ``result``."""
        self.result = result

    def refused(self) -> None:
        """The request was refused (e.g. not allowed for the caller's role)."""
        self.outcome = "refused"


def _versions(project: Project) -> tuple[int | None, dict[str, str]]:
    index_version: int | None = None
    try:
        if project.settings.index_dir.is_dir():
            index_version = project.store.version()
    except Exception:  # noqa: BLE001 - an unreadable index must not stop the record of what happened
        index_version = None
    g = project.settings.generator
    models = {"embedder": project.embedder.fingerprint, "generator": g.kind + (f":{g.model}" if g.model else "")}
    return index_version, models


@contextmanager
def audit_trail(project: Project, *, route: str, principal: Principal, question: str, role: str | None = None,
                request_id: str | None = None) -> Iterator[Trail]:
    """Record one request in the project's audit log (nothing when ``audit.enabled`` is off)."""
    log = project.audit_log
    trail = Trail()
    started = time.perf_counter()
    error: BaseException | None = None
    try:
        yield trail
    except BaseException as exc:
        error = exc
        raise
    finally:
        if log is not None:
            index_version, models = _versions(project)
            common: dict[str, Any] = {
                "principal": principal, "role": role, "route": route, "request_id": request_id or uuid.uuid4().hex,
                "index_version": index_version, "model_versions": models,
                "store_questions": project.settings.audit.questions, "error": error,
                "outcome": "error" if error is not None else trail.outcome,
            }
            if trail.result is not None:
                log.append(pipeline_record(result=trail.result, **common))
            else:
                latency = None if trail.answer is not None else (time.perf_counter() - started) * 1000
                log.append(answer_record(question=question, answer=trail.answer, latency_ms=latency, **common))
