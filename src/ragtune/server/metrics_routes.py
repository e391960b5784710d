"""``GET /metrics`` (Prometheus) and the middleware that observes every request.

``create_app`` includes :func:`router` and calls :func:`install` (docs/observability.md). ``/metrics`` needs no
credential, as scrapers rarely send one: it exposes counts and latencies by route template and stage, the
index's size and version — no user, question, document or per-caller data. Block it at the proxy if even
that must stay private. The middleware sets the request id (``X-Request-ID`` in, else a new one; echoed in
the response), makes the app's metrics current for the request, opens its span, and logs one access line.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.

import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response

from ragtune.observability import logs, tracing
from ragtune.observability.metrics import Metrics, reset_current
from ragtune.server.deps import Service

access_log = logging.getLogger("ragtune.server.access")
_METRICS: "weakref.WeakKeyDictionary[Service, Metrics]" = weakref.WeakKeyDictionary()


def metrics_of(service: Service) -> Metrics:
    """The metrics of ``service``'s app (one registry per service, made on first use)."""
    if service not in _METRICS:
        def index() -> tuple[int, int] | None:
            if not service.ready.is_set():
                return None  # never open the index from a scrape while the server is still loading
            try:
                store = service.project.store
                return store.count(), store.version()
            except Exception:  # noqa: BLE001 - a scrape must not fail because the index is being rewritten
                return None
        _METRICS[service] = Metrics(index)
    return _METRICS[service]


def router(service: Service) -> APIRouter:
    """``GET /metrics``: the Prometheus text exposition of this app's metrics (no credential)."""
    r = APIRouter()
    metrics = metrics_of(service)

    @r.get("/metrics", tags=["operations"], response_class=Response,
           responses={200: {"content": {"text/plain": {}}}})
    def prometheus_metrics() -> Response:
        """Requests by route and status, stage latency histograms, answers, abstentions, hallucinations,
        cache lookups, ingestion failures, index chunks and version. Needs no credential; holds no user data."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)
    return r


def install(app: FastAPI, service: Service) -> None:
    """Add the request middleware to ``app`` and start tracing and JSON logs as ``observability`` says."""
    settings = service.project.settings.observability
    tracing.configure_tracing(settings)
    logs.configure_logging(settings.log_format)
    metrics = metrics_of(service)

    @app.middleware("http")
    async def _observe(request: Request, call_next: Callable[[Request], Any]) -> Any:
        rid = logs.new_request_id(request.headers.get("x-request-id"))
        rid_token, metrics_token = logs.request_id.set(rid), metrics.activate()
        started, status = time.perf_counter(), 500
        try:
            with tracing.span("request", method=request.method, request_id=rid) as sp:
                response = await call_next(request)
                status = response.status_code
                sp.set(route=_route(request), status=status)
            response.headers["X-Request-ID"] = rid
            return response
        finally:
            route, seconds = _route(request), time.perf_counter() - started
            metrics.requests.labels(route, request.method, str(status)).inc()
            metrics.request_seconds.labels(route).observe(seconds)
            access_log.info("request", extra={"route": route, "method": request.method, "status": status,
                                              "duration_ms": round(seconds * 1000, 2)})
            reset_current(metrics_token)
            logs.request_id.reset(rid_token)


def _route(request: Request) -> str:
    """The matched route's template (``/v1/models/{name}``), never the raw path; ``unmatched`` otherwise."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
