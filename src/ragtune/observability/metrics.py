"""Prometheus metrics of one server: requests, stage latencies, abstentions, hallucinations, cache, index.

Each :class:`Metrics` has its own ``CollectorRegistry`` (never the process-global one, so two apps in one
process, e.g. tests, never collide). Library code reports through the module functions (``record_stages``,
``record_answer``, ``record_verification``, ``record_cache``, ``record_ingestion_failure``); they go to the
metrics of the request being served (a context variable the server's middleware sets), else to the last
metrics made with ``default=True`` (work outside a request, such as a stream's worker thread), else nowhere —
so the CLI pays nothing. No label ever holds user or document text: routes are templates, stages are names.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Mapping
from typing import Any

# Seconds; stages run from well under a millisecond (fuse) to seconds (a generator).
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_current: contextvars.ContextVar[Metrics | None] = contextvars.ContextVar("ragtune_metrics", default=None)
_default: Metrics | None = None


class Metrics:
    """The metrics of one app, in its own registry; ``index`` (chunk count, version) is read at scrape time."""

    def __init__(self, index: Callable[[], tuple[int, int] | None] | None = None, *, default: bool = True) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        global _default
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("ragtune_requests", "HTTP requests by route template, method and status",
                                ["route", "method", "status"], registry=r)
        self.request_seconds = Histogram("ragtune_request_duration_seconds", "HTTP request duration by route",
                                         ["route"], buckets=STAGE_BUCKETS, registry=r)
        self.stage_seconds = Histogram("ragtune_stage_duration_seconds", "Duration of each retrieval/answer stage",
                                       ["stage"], buckets=STAGE_BUCKETS, registry=r)
        self.answers = Counter("ragtune_answers", "Answers given or abstained from", registry=r)
        self.abstentions = Counter("ragtune_abstentions", "Answers that abstained", registry=r)
        self.verified = Counter("ragtune_verified_answers", "Answers the groundedness checker ran on", registry=r)
        self.hallucinations = Counter("ragtune_hallucinations", "Checked answers with an unsupported sentence",
                                      registry=r)
        self.cache = Counter("ragtune_cache_lookups", "Answer cache lookups by result (hit, miss)", ["result"],
                             registry=r)
        self.ingestion_failures = Counter("ragtune_ingestion_failures", "Files that failed to ingest", registry=r)
        if index is not None:
            r.register(_IndexCollector(index))
        if default:
            _default = self

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of this registry, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def activate(self) -> contextvars.Token[Metrics | None]:
        """Make these the metrics library code reports to in the current context (reset with the token)."""
        return _current.set(self)


class _IndexCollector:
    """Gauges of the index read when scraped: chunks stored and the table version."""

    def __init__(self, read: Callable[[], tuple[int, int] | None]) -> None:
        self.read = read

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        stats = self.read()
        if stats is None:
            return
        yield GaugeMetricFamily("ragtune_index_chunks", "Chunks in the index", value=stats[0])
        yield GaugeMetricFamily("ragtune_index_version", "Version of the index table", value=stats[1])


def reset_current(token: contextvars.Token[Metrics | None]) -> None:
    """Undo :meth:`Metrics.activate`."""
    _current.reset(token)


def _sink() -> Metrics | None:
    return _current.get() or _default


def record_stages(latency_ms: Mapping[str, float]) -> None:
    """Observe each stage's latency (milliseconds, as in ``latency_ms`` dicts) in the stage histogram."""
    m = _sink()
    if m is not None:
        for stage, ms in latency_ms.items():
            m.stage_seconds.labels(stage).observe(ms / 1000)


def record_answer(abstained: bool) -> None:
    """Count one answer, and whether it abstained."""
    m = _sink()
    if m is not None:
        m.answers.inc()
        if abstained:
            m.abstentions.inc()


def record_verification(unsupported: bool) -> None:
    """Count one answer checked for groundedness, and whether it had an unsupported sentence."""
    m = _sink()
    if m is not None:
        m.verified.inc()
        if unsupported:
            m.hallucinations.inc()


def record_cache(hit: bool) -> None:
    """Count one answer-cache lookup (the hit ratio is hits / all lookups)."""
    m = _sink()
    if m is not None:
        m.cache.labels("hit" if hit else "miss").inc()


def record_ingestion_failure(count: int = 1) -> None:
    """Count files that failed to ingest."""
    m = _sink()
    if m is not None and count > 0:
        m.ingestion_failures.inc(count)
