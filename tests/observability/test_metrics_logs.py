"""Prometheus metrics per app (own registry, fed by library code in the active context) and JSON log lines
with the request id (issue 18)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from helpers import write
from prometheus_client.parser import text_string_to_metric_families

from ragtune.core import Acl, Principal
from ragtune.models.embedder import MiniLMEmbedder
from ragtune.observability import logs
from ragtune.observability.metrics import (
    Metrics,
    record_cache,
    record_ingestion_failure,
    record_verification,
    reset_current,
)
from ragtune.project import Project


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = m.render()[0].decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


@pytest.fixture(scope="module")
def project(embedder: MiniLMEmbedder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    docs = tmp_path_factory.mktemp("docs")
    write(docs / "backups.md", "# Backups\n\nBackups are kept for ninety days in two regions.\n")
    with Project.temporary(embedder=embedder) as p:
        p.ingest(docs, Acl(groups=frozenset({"ops"})))
        yield p


def test_library_code_reports_to_the_active_metrics_only(project: Project) -> None:
    mine = Metrics(lambda: (project.store.count(), project.store.version()), default=False)
    other = Metrics(default=False)
    token = mine.activate()
    try:
        answered = project.ask("How long are backups kept?", Principal("otto", frozenset({"ops"})))
        abstained = project.ask("How long are backups kept?", Principal("hana", frozenset({"hr"})))
        record_cache(True)
        record_cache(False)
        record_cache(False)
        record_verification(unsupported=True)
        record_verification(unsupported=False)
        record_ingestion_failure(2)
    finally:
        reset_current(token)
    assert not answered.abstained and abstained.abstained
    s = samples(mine)
    assert s[("ragtune_answers_total", ())] == 2 and s[("ragtune_abstentions_total", ())] == 1
    for stage in ("embed_query", "lexical", "dense", "fuse", "fetch", "answer"):
        assert s[("ragtune_stage_duration_seconds_count", (("stage", stage),))] == 2, stage
    assert s[("ragtune_cache_lookups_total", (("result", "hit"),))] == 1
    assert s[("ragtune_cache_lookups_total", (("result", "miss"),))] == 2
    assert s[("ragtune_verified_answers_total", ())] == 2 and s[("ragtune_hallucinations_total", ())] == 1
    assert s[("ragtune_ingestion_failures_total", ())] == 2
    assert s[("ragtune_index_chunks", ())] == project.store.count() > 0
    assert s[("ragtune_index_version", ())] == project.store.version()
    assert samples(other)[("ragtune_answers_total", ())] == 0  # a second app's registry saw none of it
    assert "ninety" not in mine.render()[0].decode()


def test_json_lines_carry_the_request_id_and_extra_fields(json_log: io.StringIO) -> None:
    token = logs.request_id.set("req-42")
    try:
        logging.getLogger("ragtune.server.access").info("request", extra={"route": "/v1/ask", "status": 200})
    finally:
        logs.request_id.reset(token)
    logging.getLogger("ragtune.x").warning("outside a request")
    first, second = (json.loads(line) for line in json_log.getvalue().splitlines())
    assert first["request_id"] == "req-42" and first["route"] == "/v1/ask" and first["status"] == 200
    assert first["level"] == "info" and first["logger"] == "ragtune.server.access" and first["message"] == "request"
    assert second["request_id"] is None and second["level"] == "warning"


def test_text_format_leaves_logging_alone() -> None:
    assert logs.configure_logging("text") is None


def test_request_ids_from_headers_are_tokens_only() -> None:
    assert logs.new_request_id("abc-123.x:y") == "abc-123.x:y"
    forged = logs.new_request_id('x"}\n{"level": "error"')  # would forge a second log line
    assert forged != 'x"}\n{"level": "error"' and len(forged) == 32 and forged.isalnum()
    assert logs.new_request_id("a" * 129) != "a" * 129
    assert logs.new_request_id(None) != logs.new_request_id(None)
