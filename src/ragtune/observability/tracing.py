"""OpenTelemetry spans for every stage, behind a facade that costs next to nothing when tracing is off.

``span("dense", k=100)`` is a context manager. Until :func:`configure_tracing` installs a tracer (an
``observability.otlp_endpoint`` is set, or a test hands in an exporter) it returns one shared no-op object:
no OpenTelemetry import, no allocation. Attributes are counts, ids and latencies; text (a question, a
document) is passed as ``text=`` and recorded only when ``observability.include_text`` is true — otherwise
only its length is.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from ragtune.config import ObservabilitySettings

T = TypeVar("T")
_tracer: Any = None
_provider: TracerProvider | None = None
_include_text = False


class _NoSpan:
    """What :func:`span` returns while tracing is off: enters, sets and exits doing nothing."""

    __slots__ = ()

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set(self, **attrs: Any) -> None:
        """Ignored: tracing is off."""


_NO_SPAN = _NoSpan()


class _Span:
    """One OpenTelemetry span, current while the ``with`` block runs; exceptions are recorded on it."""

    __slots__ = ("_cm", "_span", "_name", "_attrs")

    def __init__(self, name: str, attrs: dict[str, Any]) -> None:
        self._name, self._attrs = name, attrs
        self._cm: Any = None
        self._span: Any = None

    def __enter__(self) -> _Span:
        self._cm = _tracer.start_as_current_span(self._name, attributes=self._attrs)
        self._span = self._cm.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._cm.__exit__(exc_type, exc, tb)

    def set(self, **attrs: Any) -> None:
        """Add attributes (counts, ids, latencies) once they are known."""
        self._span.set_attributes(_clean(attrs))


def _clean(attrs: dict[str, Any]) -> dict[str, Any]:
    return {f"ragtune.{k}": v for k, v in attrs.items() if v is not None}


def span(name: str, text: str | None = None, **attrs: Any) -> _Span | _NoSpan:
    """A span named ``name`` around a ``with`` block (a no-op while tracing is off).

    ``attrs`` must be counts, ids or latencies, never user or document text; ``text`` is kept (as
    ``ragtune.text``) only when ``observability.include_text`` is on, else only ``ragtune.text_chars``.
    """
    if _tracer is None:
        return _NO_SPAN
    if text is not None:
        attrs["text" if _include_text else "text_chars"] = text if _include_text else len(text)
    return _Span(name, _clean(attrs))


def enabled() -> bool:
    """Whether spans are being recorded."""
    return _tracer is not None


def in_context(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` bound to the caller's context, so spans it opens in a worker thread keep their parent."""
    if _tracer is None:
        return fn
    ctx = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> T:
        return ctx.run(fn, *args, **kwargs)
    return run


def configure_tracing(settings: ObservabilitySettings, exporter: SpanExporter | None = None) -> bool:
    """Start recording spans: to ``exporter`` when given (synchronously: tests), else over OTLP/HTTP to
    ``settings.otlp_endpoint`` (batched, in the background). Without either, tracing stays off.

    Returns whether tracing is on. The provider is this module's own (the global OpenTelemetry one is left
    alone), so a process can reconfigure it; :func:`shutdown_tracing` flushes and turns it off.
    """
    global _tracer, _provider, _include_text
    if exporter is None and not settings.otlp_endpoint:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    shutdown_tracing()
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
    _provider, _include_text = provider, settings.include_text
    _tracer = provider.get_tracer("ragtune")
    return True


def shutdown_tracing() -> None:
    """Flush pending spans and turn tracing off."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer, _provider = None, None
