"""Pages from the UI's Jinja2 templates (every value escaped), with the headers every UI response carries.

The Content-Security-Policy allows scripts, styles and frames from the server itself only: no inline script or
style, no ``eval``, so text from a document or a user can never run, whatever a template does with it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from fastapi.responses import HTMLResponse

if TYPE_CHECKING:
    from jinja2 import Environment

    from ragtune.server.ui.session import UiContext

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "same-origin", "X-Frame-Options": "SAMEORIGIN", "Cache-Control": "no-store"}


def when(t: float | None) -> str:
    """A UTC time as ``2026-12-01 16:04`` (or a dash)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M") if t else "–"


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The template environment: the package's templates, autoescaped."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("ragtune.server.ui", "templates"), autoescape=select_autoescape(),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = when
    return env


def render(name: str, ctx: UiContext | None, **values: Any) -> str:
    """A template rendered for the logged-in ``ctx`` (None: the log-in page), escaped."""
    return environment().get_template(name).render(ctx=ctx, **values)


def page(name: str, ctx: UiContext | None, status: int = 200, headers: dict[str, str] | None = None,
         **values: Any) -> HTMLResponse:
    """A whole page or an htmx fragment, with the security headers."""
    return HTMLResponse(render(name, ctx, **values), status_code=status,
                        headers={**SECURITY_HEADERS, **(headers or {})})
