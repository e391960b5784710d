"""The web UI under ``/ui/``: server-rendered pages (Jinja2 + vendored htmx, no build step) over the same
project and the same credentials as the REST API, each page running as the logged-in principal.

``install(app, service)`` adds the pages, the static files and the two UI error handlers (log-in redirect and
HTML error pages). Modules: :mod:`.session` (log-in, CSRF), :mod:`.chat` (chat, history, feedback, document view),
:mod:`.pages` (documents, pipelines, classify, models, advisor, metrics), :mod:`.store` (SQLite), :mod:`.render`.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ragtune.server.deps import Service


def install(app: FastAPI, service: Service) -> None:
    """Serve the UI from ``app``."""
    from pathlib import Path

    from fastapi import Request
    from fastapi.responses import RedirectResponse, Response
    from fastapi.staticfiles import StaticFiles

    from ragtune.server.ui import chat, oidc_login, session
    from ragtune.server.ui.render import SECURITY_HEADERS, page

    @app.exception_handler(session.LoginRequired)
    async def _login(request: Request, exc: session.LoginRequired) -> Response:
        return RedirectResponse("/ui/login", status_code=303, headers=SECURITY_HEADERS)

    @app.exception_handler(session.UiError)
    async def _error(request: Request, exc: session.UiError) -> Response:
        ctx = None
        with contextlib.suppress(session.LoginRequired):
            ctx = session.context(service, request)
        return page("error.html", ctx, status=exc.status, title=exc.title, message=exc.message)

    app.include_router(session.router(service))
    app.include_router(oidc_login.router(service))
    app.include_router(chat.router(service))
    from ragtune.server.ui import pages
    app.include_router(pages.router(service))
    app.mount("/ui/static", StaticFiles(directory=Path(__file__).parent / "static"), name="ui-static")
    app.add_api_route("/ui", lambda: RedirectResponse("/ui/", status_code=307), include_in_schema=False)
