"""``Log in with your organisation's account``: OpenID Connect authorization code flow with PKCE (S256), as a
public client, against the issuer the REST API already trusts (``service.oidc_issuer``).

``/ui/login/oidc`` sends the browser to the provider with a random ``state`` (kept server-side with the PKCE
verifier, and in a short-lived cookie that binds it to this browser) and the code challenge; the provider sends
it back to ``/ui/login/oidc/callback`` with a code, which the server exchanges (with the verifier) at the token
endpoint. The access token is then verified exactly as a bearer token of the REST API is (issuer, audience,
signature, expiry, groups claim), and the session lasts as long as the token.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.

import base64
import hashlib
import hmac
import logging
import secrets
import time
from urllib.parse import urlencode

import jwt
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from ragtune.server.deps import Service
from ragtune.server.ui.render import SECURITY_HEADERS
from ragtune.server.ui.session import UiError, start_session
from ragtune.service.identity import AuthError

log = logging.getLogger("ragtune.server.ui")
STATE_COOKIE = "ragtune_oidc_state"
CALLBACK = "/ui/login/oidc/callback"


def code_challenge(verifier: str) -> str:
    """The S256 PKCE challenge of ``verifier`` (RFC 7636): base64url(SHA-256), unpadded."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def router(service: Service) -> APIRouter:
    """The two steps of the OIDC log-in (404 while OIDC is off)."""
    r = APIRouter(include_in_schema=False)
    project = service.project

    def settings_or_404() -> tuple[str, str]:
        s = project.settings.service
        if project.oidc_verifier is None:
            raise UiError(404, "Not found", "OIDC log-in is off: set service.oidc_issuer and oidc_audience")
        return s.oidc_client_id or s.oidc_audience, s.oidc_scopes

    def redirect_url(request: Request) -> str:
        configured = project.settings.service.oidc_redirect_url
        return configured or str(request.base_url).rstrip("/") + CALLBACK

    def endpoints() -> dict[str, str]:
        assert project.oidc_verifier is not None
        try:
            doc = project.oidc_verifier.discovery()
            return {"authorize": str(doc["authorization_endpoint"]), "token": str(doc["token_endpoint"])}
        except (OSError, ValueError, KeyError) as exc:
            log.warning("OIDC discovery failed: %s", exc)
            raise UiError(503, "Log-in unavailable", "the identity provider could not be reached; try again, "
                                                     "or log in with an API key") from None

    @r.get("/ui/login/oidc")
    def start(request: Request) -> Response:
        client_id, scopes = settings_or_404()
        state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        project.ui_store.start_oidc_login(state, verifier)
        query = urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": redirect_url(request),
                           "scope": scopes, "state": state, "code_challenge": code_challenge(verifier),
                           "code_challenge_method": "S256"})
        response = RedirectResponse(f"{endpoints()['authorize']}?{query}", status_code=303, headers=SECURITY_HEADERS)
        response.set_cookie(STATE_COOKIE, state, httponly=True, samesite="lax", max_age=600, path=CALLBACK,
                            secure=request.url.scheme == "https")
        return response

    @r.get(CALLBACK)
    def callback(request: Request, state: str = "", code: str = "", error: str = "") -> Response:
        client_id, _ = settings_or_404()
        if error:
            raise UiError(401, "Log-in refused", f"the identity provider refused the log-in ({error[:100]})")
        cookie = request.cookies.get(STATE_COOKIE, "")
        if not state or not code or not cookie or not hmac.compare_digest(cookie.encode(), state.encode()):
            raise UiError(400, "Log-in failed", "this log-in was not started from this browser, or it expired; "
                                                "start again from the log-in page")
        verifier = project.ui_store.finish_oidc_login(state)
        if verifier is None:
            raise UiError(400, "Log-in failed", "this log-in was already used or has expired; start again")
        assert project.oidc_verifier is not None
        try:
            answer = project.oidc_verifier.post_form(endpoints()["token"], {
                "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_url(request),
                "client_id": client_id, "code_verifier": verifier})
        except (OSError, ValueError) as exc:
            log.warning("OIDC token exchange failed: %s", exc)
            raise UiError(503, "Log-in unavailable", "the identity provider could not be reached") from None
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str):
            reason = answer.get("error", "no access token") if isinstance(answer, dict) else "no access token"
            raise UiError(401, "Log-in failed", f"the identity provider did not issue a token ({str(reason)[:100]})")
        try:
            project.oidc_verifier.verify(token)
        except AuthError as exc:
            raise UiError(401, "Log-in failed", exc.message) from None
        expires = jwt.decode(token, options={"verify_signature": False}).get("exp", 0)  # verified just above
        response = start_session(request, project, "oidc", token, ttl_s=max(0.0, float(expires) - time.time()))
        response.delete_cookie(STATE_COOKIE, path=CALLBACK)
        return response

    return r
