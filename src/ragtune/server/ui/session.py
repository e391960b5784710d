"""Log-in, log-out and the session every UI page runs under, with CSRF protection on every form.

An API key is checked once at log-in (the same check as the REST API); the session cookie (random, HttpOnly,
SameSite=Lax, Secure over TLS) then stands for that key, and each request re-reads the key's record, so
revoking the key ends its sessions at once. The principal comes only from that credential. Every state-changing
request must carry the session's CSRF token (form field ``csrf`` or header ``X-CSRF-Token``); the log-in form,
before any session exists, uses a double-submit cookie.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.

import hmac
import math
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from ragtune.project import Project
from ragtune.server.deps import Service
from ragtune.server.ui.render import SECURITY_HEADERS, page
from ragtune.server.ui.store import SESSION_TTL_S, Session
from ragtune.service.credentials import authenticate
from ragtune.service.identity import Action, AuthError, Identity, Role

COOKIE = "ragtune_session"
LOGIN_COOKIE = "ragtune_login"


class LoginRequired(Exception):
    """No live session: the browser is sent to the log-in page."""


class UiError(Exception):
    """An HTML error page (403 forbidden, 404 not found, 400 bad form)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


@dataclass(frozen=True)
class UiContext:
    """Who is logged in (their verified identity) and their session's CSRF token."""

    identity: Identity
    session: Session

    @property
    def csrf(self) -> str:
        """The token every form of this session carries."""
        return self.session.csrf

    @property
    def is_admin(self) -> bool:
        """Whether the admin pages (metrics, feedback, models) are shown."""
        return self.identity.role >= Role.ADMIN

    def can(self, action: str) -> bool:
        """Whether the role may perform ``action`` (the same table as the REST API)."""
        return self.identity.can(action)

    def require(self, action: Action | str) -> None:
        """403 page unless the role may perform ``action``."""
        if not self.identity.can(action):
            raise UiError(403, "Forbidden", f"your role ({self.identity.role.value}) may not open this page; ask "
                                            "an admin for a key with a role that may")


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def context(service: Service, request: Request) -> UiContext:
    """The logged-in user of ``request``, or :class:`LoginRequired`."""
    project = service.project
    session = project.ui_store.session(request.cookies.get(COOKIE))
    identity: Identity | None = None
    if session is not None and session.kind == "api_key":
        identity = project.key_store.identity(session.credential)
    elif session is not None and session.kind == "oidc" and project.oidc_verifier is not None:
        try:
            identity = project.oidc_verifier.verify(session.credential)
        except AuthError:  # expired, or the provider's keys changed: log in again
            identity = None
    if session is None or identity is None:
        raise LoginRequired()
    return UiContext(identity, session)


def start_session(request: Request, project: Project, kind: str, credential: str,
                  ttl_s: float = SESSION_TTL_S) -> Response:
    """Open a session for a verified credential and send the browser to the chat with its cookie."""
    sid, _ = project.ui_store.open_session(kind, credential, ttl_s)
    response = RedirectResponse("/ui/", status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(COOKIE, sid, httponly=True, samesite="lax", secure=request.url.scheme == "https",
                        path="/ui", max_age=math.ceil(min(ttl_s, SESSION_TTL_S)))
    return response


def posted(service: Service, request: Request, csrf: str, action: Action | str | None = None) -> UiContext:
    """The logged-in user of a state-changing request: :func:`context`, then :func:`check_csrf`, then (with
    ``action``) the 403 page unless the role may perform it."""
    ctx = context(service, request)
    check_csrf(ctx, request, csrf)
    if action is not None:
        ctx.require(action)
    return ctx


def check_csrf(ctx: UiContext, request: Request, token: str | None) -> None:
    """400 unless the form field or the ``X-CSRF-Token`` header carries this session's token."""
    sent = token or request.headers.get("x-csrf-token") or ""
    if not hmac.compare_digest(sent.encode(), ctx.csrf.encode()):
        raise UiError(403, "Forbidden", "the form was not sent from this session's page (CSRF token missing or "
                                        "wrong); reload the page and try again")


def router(service: Service) -> APIRouter:
    """``/ui/login`` and ``/ui/logout``."""
    r = APIRouter(include_in_schema=False)
    project = service.project

    def login_page(request: Request, error: str = "", status: int = 200) -> Response:
        token = secrets.token_urlsafe(24)
        response = page("login.html", None, status=status, login_csrf=token, error=error,
                        oidc=project.oidc_verifier is not None)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request),
                            path="/ui/login")
        return response

    @r.get("/ui/login")
    def login_form(request: Request) -> Response:
        return login_page(request)

    @r.post("/ui/login")
    def login(request: Request, api_key: Annotated[str, Form(max_length=200)] = "",
              csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
        cookie = request.cookies.get(LOGIN_COOKIE, "")
        if not cookie or not hmac.compare_digest(cookie.encode(), csrf.encode()):
            return login_page(request, "The log-in form expired; try again.", 403)
        try:
            identity = authenticate(f"Bearer {api_key.strip()}", project.key_store, None)
        except AuthError as exc:
            return login_page(request, exc.message, 401)
        response = start_session(request, project, "api_key", identity.credential_id)
        response.delete_cookie(LOGIN_COOKIE, path="/ui/login")
        return response

    @r.post("/ui/logout")
    def logout(request: Request, csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
        posted(service, request, csrf)
        project.ui_store.close_session(request.cookies.get(COOKIE, ""))
        response = RedirectResponse("/ui/login", status_code=303, headers=SECURITY_HEADERS)
        response.delete_cookie(COOKIE, path="/ui")
        return response

    return r
