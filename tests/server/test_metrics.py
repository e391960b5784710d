"""The server's observability end to end (issue 18): GET /metrics on the real server counts requests by route
template and status, times every stage, counts abstentions, shows the index; X-Request-ID is echoed and is in
the JSON access log; no document text reaches metrics or logs."""

from __future__ import annotations

import io
import json
import time
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from .conftest import Server

QUESTION = "How long are backups kept?"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(server: Server) -> tuple[str, Samples]:
    with server.client() as c:  # no credential: scrapers rarely send one
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return r.text, {(s.name, tuple(sorted(s.labels.items()))): s.value
                    for fam in text_string_to_metric_families(r.text) for s in fam.samples}


def requests(s: Samples, route: str, method: str, status: int) -> float:
    return s.get(("ragtune_requests_total", (("method", method), ("route", route), ("status", str(status)))), 0.0)


def test_metrics_count_requests_stages_and_abstentions(server: Server) -> None:
    _, before = scrape(server)
    with server.client("ops") as c:
        assert not c.post("/v1/ask", json={"question": QUESTION}).json()["abstained"]
    with server.client("hr") as c:
        assert c.post("/v1/ask", json={"question": QUESTION}).json()["abstained"]
    with server.client() as c:
        assert c.post("/v1/ask", json={"question": QUESTION}).status_code == 401
        assert c.get("/no/such/path/12345").status_code == 404
    text, after = scrape(server)
    assert requests(after, "/v1/ask", "POST", 200) - requests(before, "/v1/ask", "POST", 200) == 2
    assert requests(after, "/v1/ask", "POST", 401) - requests(before, "/v1/ask", "POST", 401) == 1
    assert requests(after, "unmatched", "GET", 404) - requests(before, "unmatched", "GET", 404) == 1
    assert "12345" not in text  # route labels are templates, never raw paths
    for stage in ("embed_query", "lexical", "dense", "fuse", "fetch", "answer"):
        key = ("ragtune_stage_duration_seconds_count", (("stage", stage),))
        assert after[key] - before.get(key, 0) >= 2, stage
    assert after[("ragtune_abstentions_total", ())] - before[("ragtune_abstentions_total", ())] >= 1
    assert after[("ragtune_answers_total", ())] - before[("ragtune_answers_total", ())] >= 2
    assert after[("ragtune_request_duration_seconds_count", (("route", "/v1/ask"),))] >= 3
    assert after[("ragtune_index_chunks", ())] == server.project.store.count() > 0
    assert ("ragtune_index_version", ()) in after
    assert "ninety" not in text and "sixteen" not in text and "hana" not in text


def test_request_id_is_echoed_and_logged_as_json(server: Server, json_log: io.StringIO) -> None:
    with server.client("ops") as c:
        r = c.post("/v1/ask", json={"question": QUESTION}, headers={"X-Request-ID": "trace-me-7"})
        fresh = c.get("/v1/whoami")
        forged = c.get("/v1/whoami", headers={"X-Request-ID": "bad id \"x\": {}"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-me-7"
    assert len(fresh.headers["x-request-id"]) == 32 and forged.headers["x-request-id"] != "bad id \"x\": {}"
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    mine = [rec for rec in lines if rec["request_id"] == "trace-me-7"]
    assert any(rec["route"] == "/v1/ask" and rec["status"] == 200 and rec["duration_ms"] > 0 for rec in mine)
    assert any(rec.get("request_id") == fresh.headers["x-request-id"] for rec in lines)
    assert "ninety" not in json_log.getvalue() and QUESTION not in json_log.getvalue()


def test_a_request_is_one_trace_from_the_middleware_to_every_stage(server: Server) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from ragtune.config import ObservabilitySettings
    from ragtune.observability import tracing

    exporter = InMemorySpanExporter()
    tracing.configure_tracing(ObservabilitySettings(), exporter=exporter)
    def root_span() -> Any:
        return next((s for s in exporter.get_finished_spans() if s.name == "request"
                     and (s.attributes or {}).get("ragtune.request_id") == "span-1"), None)

    try:
        with server.client("ops") as c:
            assert c.post("/v1/ask", json={"question": QUESTION}, headers={"X-Request-ID": "span-1"}).is_success
        # The request span ends when the middleware returns, just after the last byte is sent: the client can
        # have the response a moment before the server thread has finished the span.
        deadline = time.monotonic() + 10
        while root_span() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        tracing.shutdown_tracing()
    spans = exporter.get_finished_spans()
    root = root_span()
    assert root is not None, [s.name for s in spans]
    attrs = dict(root.attributes or {})
    assert attrs["ragtune.route"] == "/v1/ask" and attrs["ragtune.status"] == 200
    trace = [s for s in spans if s.context.trace_id == root.context.trace_id]
    by_name = {s.name: s for s in trace}
    assert {"retrieve", "embed", "lexical", "dense", "fuse", "fetch", "answer"} <= set(by_name)
    for child in ("retrieve", "answer"):  # the route ran in the threadpool and still has the request as parent
        parent = by_name[child].parent
        assert parent is not None and parent.span_id == root.context.span_id
    blob = json.dumps([dict(s.attributes or {}) for s in trace], default=str)
    assert "ninety" not in blob and "kept for" not in blob and QUESTION not in blob
