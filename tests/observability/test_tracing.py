"""OpenTelemetry spans of every stage (issue 18), recorded by the SDK's in-memory exporter from a real project:
names, parent/child structure, and no question or document text in any attribute unless include_text."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import http_server, write
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ragtune.answer.generative import GenerativeAnswerer
from ragtune.config import ObservabilitySettings
from ragtune.core import Acl, Principal
from ragtune.models.embedder import MiniLMEmbedder
from ragtune.models.generator import LlamaCppGenerator
from ragtune.observability import tracing
from ragtune.pipelines.runner import PipelineRunner
from ragtune.pipelines.spec import load_pipeline
from ragtune.project import Project
from ragtune.retrieval.hybrid import HybridRetriever
from ragtune.retrieval.rerank import NoReranker
from ragtune.tuning.head import HeadClassifier
from ragtune.tuning.registry import new_card

SECRET = "The quartz vault combination rotates every fortnight on Tuesdays."
QUESTION = "How often does the vault combination rotate?"
RETRIEVAL_STAGES = {"embed", "lexical", "dense", "fuse", "fetch"}


@pytest.fixture(scope="module")
def project(embedder: MiniLMEmbedder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    docs = tmp_path_factory.mktemp("docs")
    write(docs / "vault.md", f"# Vault\n\n{SECRET}\n")
    write(docs / "lunch.md", "# Canteen\n\nThe canteen serves soup from noon until two.\n")
    with Project.temporary(embedder=embedder) as p:
        p.ingest(docs, Acl(public=True))
        yield p


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exp = InMemorySpanExporter()
    assert tracing.configure_tracing(ObservabilitySettings(), exporter=exp)
    yield exp
    tracing.shutdown_tracing()


def _by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans}


def _a(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _parent(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _attribute_text(spans: tuple[ReadableSpan, ...]) -> str:
    return json.dumps([dict(s.attributes or {}) for s in spans], default=str).lower()


def test_tracing_is_off_and_free_until_configured() -> None:
    assert not tracing.enabled()
    assert tracing.configure_tracing(ObservabilitySettings()) is False  # no endpoint, no exporter: stays off
    with tracing.span("x", n=1) as sp:
        sp.set(m=2)
    assert tracing.span("a") is tracing.span("b")  # one shared no-op object: nothing allocated per span
    t = time.perf_counter()
    for _ in range(100_000):
        with tracing.span("stage", k=1):
            pass
    assert time.perf_counter() - t < 1.0  # a generous bound: the no-op costs one call and a global read
    code = ("import sys; from ragtune.observability import tracing, metrics; from ragtune.retrieval import hybrid; "
            "print([m for m in sys.modules if m.startswith(('opentelemetry', 'prometheus_client'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_ask_records_every_stage_under_its_parent_without_text(project: Project,
                                                              exporter: InMemorySpanExporter) -> None:
    with tracing.span("ask"):
        answer = project.ask(QUESTION, Principal("ann"))
    assert not answer.abstained and "fortnight" in answer.text
    spans = exporter.get_finished_spans()
    named = _by_name(spans)
    assert RETRIEVAL_STAGES | {"retrieve", "answer", "ask"} <= set(named)
    for stage in RETRIEVAL_STAGES:  # the lexical span ran in a worker thread and still has its parent
        assert _parent(named[stage]) == named["retrieve"].context.span_id, stage
    assert _parent(named["retrieve"]) == _parent(named["answer"]) == named["ask"].context.span_id
    assert len({s.context.trace_id for s in spans}) == 1
    assert _a(named["fetch"])["ragtune.hits"] == len(answer.hits)
    assert _a(named["answer"])["ragtune.abstained"] is False
    assert list(_a(named["answer"])["ragtune.chunk_ids"]) == [c.chunk.chunk_id for c in answer.citations]
    assert _a(named["retrieve"])["ragtune.text_chars"] == len(QUESTION)
    text = _attribute_text(spans)
    for words in ("quartz", "fortnight", "combination", "vault", "rotate"):
        assert words not in text  # neither the document nor the question


def test_include_text_puts_the_question_on_the_retrieve_span(project: Project) -> None:
    exp = InMemorySpanExporter()
    tracing.configure_tracing(ObservabilitySettings(include_text=True), exporter=exp)
    try:
        project.search(QUESTION, Principal("ann"))
    finally:
        tracing.shutdown_tracing()
    assert _a(_by_name(exp.get_finished_spans())["retrieve"])["ragtune.text"] == QUESTION


def test_rerank_stage_is_a_span(project: Project, exporter: InMemorySpanExporter) -> None:
    retriever = HybridRetriever(project.store, project.embedder, reranker=NoReranker())
    r = retriever.retrieve(QUESTION, Principal("ann"))
    named = _by_name(exporter.get_finished_spans())
    assert "rerank" in r.latency_ms and _a(named["rerank"])["ragtune.reranker"] == "none"
    assert _parent(named["rerank"]) == named["retrieve"].context.span_id


def test_pipeline_verify_and_classify_are_spans(project: Project, exporter: InMemorySpanExporter,
                                                tmp_path: Path) -> None:
    texts = ["my card was stolen", "card lost yesterday", "someone took my card", "I lost my bank card",
             "how do I reset my password", "forgot my password", "password reset link", "cannot log in password"]
    labels = ["card"] * 4 + ["login"] * 4
    clf = HeadClassifier(calibration_fraction=0.0).fit(texts, labels)
    project.registry.register("intent", clf, new_card("head", clf, "sha", "inline"))
    spec = write(tmp_path / "p.yaml", "name: p\nsteps:\n  - classify: {model: intent}\n  - retrieve: {}\n"
                                      "  - answer: {}\n  - verify: {}\n")
    result = PipelineRunner(load_pipeline(spec), project).run(QUESTION, Principal("ann"))
    assert result.groundedness is not None
    spans = exporter.get_finished_spans()
    named = _by_name(spans)
    assert {"classify", "verify", "retrieve", "answer"} <= set(named)
    assert _a(named["classify"])["ragtune.model"] == "intent"
    assert _a(named["verify"])["ragtune.unsupported"] == len(result.unsupported_sentences)
    assert "fortnight" not in _attribute_text(spans)


def test_spans_are_exported_over_otlp_http_to_the_configured_endpoint(project: Project) -> None:
    """A real OTLP/HTTP receiver on loopback gets the protobuf export when shutdown flushes the batch."""
    import http.server

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received: list[tuple[str, str, bytes]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server hook's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    with http_server(Receiver) as url:
        try:
            endpoint = f"{url}/v1/traces"
            assert tracing.configure_tracing(ObservabilitySettings(otlp_endpoint=endpoint, service_name="rt-test"))
            project.ask(QUESTION, Principal("ann"))
            tracing.shutdown_tracing()  # flushes the batch processor
        finally:
            tracing.shutdown_tracing()
    assert received and all(path == "/v1/traces" and ctype == "application/x-protobuf"
                            for path, ctype, _ in received)
    names, services = set(), set()
    for _, _, body in received:
        req = ExportTraceServiceRequest.FromString(body)
        for rs in req.resource_spans:
            services |= {a.value.string_value for a in rs.resource.attributes if a.key == "service.name"}
            names |= {s.name for ss in rs.scope_spans for s in ss.spans}
    assert services == {"rt-test"} and RETRIEVAL_STAGES | {"retrieve", "answer"} <= names
    assert not any(b"fortnight" in body or b"quartz" in body for _, _, body in received)


@pytest.mark.slow
def test_a_generated_answer_has_a_generate_span_inside_answer(project: Project, exporter: InMemorySpanExporter,
                                                             local: LlamaCppGenerator) -> None:
    """The packaged SmolLM2 on a real llama.cpp server: `generate` is a child of `answer`, without text."""
    retrieval = project.search(QUESTION, Principal("ann"))
    answer = GenerativeAnswerer(local, project.embedder, max_tokens=40).answer(QUESTION, retrieval, Principal("ann"))
    named = _by_name(exporter.get_finished_spans())
    assert not answer.abstained and "generate" in answer.latency_ms
    assert _parent(named["generate"]) == named["answer"].context.span_id
    assert _a(named["generate"])["ragtune.output_chars"] > 0
    assert "fortnight" not in _attribute_text(exporter.get_finished_spans())
