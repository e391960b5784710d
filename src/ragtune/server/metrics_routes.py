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
from typing import Any

from fastapi import APIRouter, FastAPI, Response

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

    app.add_middleware(Observe, metrics=metrics)


class Observe:
    """Pure ASGI middleware (it runs on every request, in the request's own task, so context variables reach the
    route): the request id (echoed as ``X-Request-ID``), the app's metrics made current, the ``request`` span,
    request counts and durations by route template, and one access log line."""

    def __init__(self, app: Any, metrics: Any) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        incoming = headers.get(b"x-request-id")
        rid = logs.new_request_id(incoming.decode("latin-1") if incoming is not None else None)
        rid_token, metrics_token = logs.request_id.set(rid), self.metrics.activate()
        started, status, method = time.perf_counter(), 500, scope["method"]

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", rid.encode("latin-1"))]}
            await send(message)

        try:
            with tracing.span("request", method=method, request_id=rid) as sp:
                await self.app(scope, receive, send_with_id)
                sp.set(route=_route_of(scope), status=status)
        finally:
            route, seconds = _route_of(scope), time.perf_counter() - started
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(seconds)
            access_log.info("request", extra={"route": route, "method": method, "status": status,
                                              "duration_ms": round(seconds * 1000, 2)})
            reset_current(metrics_token)
            logs.request_id.reset(rid_token)


def _route_of(scope: Any) -> str:
    """The matched route's template (``/v1/models/{name}``), never the raw path; ``unmatched`` otherwise."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else "unmatched"
