"""The web UI's working pages: documents (list, upload, sync and their jobs), pipelines, classify, the model
registry, the advisor and the metrics, each in its own module and each running as the logged-in principal with
the same permission table as the REST API.

``router(service)`` includes them all; this module also holds what they share: :func:`ui_errors` (an API or
ragtune error becomes a message next to the form) and :func:`respond` (a fragment for htmx, which would not swap
in a 4xx, else the whole page with the status).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ragtune.errors import ModelNotFoundError, RagtuneError
from ragtune.server.deps import ApiError
from ragtune.server.ui.render import page
from ragtune.server.ui.session import UiError

if TYPE_CHECKING:
    from fastapi import APIRouter, Request
    from fastapi.responses import HTMLResponse

    from ragtune.server.deps import Service
    from ragtune.server.ui.session import UiContext


class FormError(Exception):
    """A form that cannot be run as sent: shown next to the form (status ``status`` for a whole page)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message, self.status = message, status


def is_htmx(request: Request) -> bool:
    """Whether htmx sent the request (it wants a fragment, not a whole page)."""
    return request.headers.get("hx-request") == "true"


@contextmanager
def ui_errors() -> Iterator[None]:
    """Turn the API's and the library's errors inside the block into :class:`FormError` (the form is shown
    again with the message) — except 503 (not ready), which is a whole error page."""
    try:
        yield
    except ApiError as exc:
        if exc.status == 503:
            raise UiError(503, "Not ready", exc.message) from exc
        raise FormError(exc.message, exc.status) from exc
    except ModelNotFoundError as exc:
        raise FormError(str(exc), 404) from exc
    except RagtuneError as exc:
        raise FormError(str(exc), 400) from exc


def respond(request: Request, ctx: UiContext, whole: str, fragment: str, status: int = 200,
            **values: Any) -> HTMLResponse:
    """The result of a form: for htmx the ``fragment`` template (200 even for a form error, so htmx swaps the
    message in), else the ``whole`` page (which includes the fragment) with ``status``."""
    if is_htmx(request):
        return page(fragment, ctx, **values)
    return page(whole, ctx, status=status, **values)


def router(service: Service) -> APIRouter:
    """Documents, jobs, pipelines, classify, models, advisor and metrics pages."""
    from fastapi import APIRouter

    from ragtune.server.ui import pages_advisor, pages_documents, pages_metrics, pages_ops

    r = APIRouter(include_in_schema=False)
    for module in (pages_documents, pages_ops, pages_advisor, pages_metrics):
        r.include_router(module.router(service))
    return r
