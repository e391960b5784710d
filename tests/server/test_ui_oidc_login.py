"""The web UI's OIDC log-in: authorization code + PKCE against a real OpenID provider on 127.0.0.1 (discovery,
authorize, token and JWKS over HTTP), every redirect followed by hand so each step is checked."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from helpers import serve_project as serve
from oidc_provider import AUDIENCE, Provider, rsa_key
from oidc_provider import serve as serve_provider

from .live import small_project


@pytest.fixture(scope="module")
def oidc_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Provider]]:
    with serve_provider([rsa_key("k1")]) as provider:
        project = small_project(tmp_path_factory.mktemp("oidc-ui"), service={
            "oidc_issuer": provider.issuer, "oidc_audience": AUDIENCE, "oidc_leeway_s": 0})
        with serve(project) as url:
            yield url, provider


def _to_provider(browser: httpx2.Client) -> httpx2.Response:
    """Start the log-in; the answer is the provider's redirect back to the callback (code and state)."""
    start = browser.get("/ui/login/oidc")
    assert start.status_code == 303
    authorize = start.headers["location"]
    q = parse_qs(urlsplit(authorize).query)
    assert q["code_challenge_method"] == ["S256"] and len(q["code_challenge"][0]) == 43 and q["state"][0]
    assert "code_verifier" not in authorize  # the verifier never leaves the server
    back = httpx2.get(authorize)
    assert back.status_code == 302
    return back


def test_log_in_with_the_provider_runs_as_the_tokens_groups(oidc_ui: tuple[str, Provider]) -> None:
    url, provider = oidc_ui
    provider.login_claims = {"sub": "olga", "groups": ["ops"]}
    with httpx2.Client(base_url=url, timeout=60) as browser:
        assert "/ui/login/oidc" in browser.get("/ui/login").text  # the log-in page offers it
        callback = _to_provider(browser).headers["location"]
        done = browser.get(callback)
        assert done.status_code == 303 and done.headers["location"] == "/ui/"
        cookie = done.headers["set-cookie"].lower()
        assert "ragtune_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
        chat = browser.get("/ui/")
        assert chat.status_code == 200 and "olga (reader)" in chat.text


def test_a_replayed_or_foreign_callback_opens_no_session(oidc_ui: tuple[str, Provider]) -> None:
    url, provider = oidc_ui
    provider.login_claims = {"sub": "olga", "groups": ["ops"]}
    with httpx2.Client(base_url=url, timeout=60) as victim, httpx2.Client(base_url=url, timeout=60) as other:
        callback = _to_provider(victim).headers["location"]
        # Another browser (no state cookie) presenting the victim's code: refused, and no session.
        r = other.get(callback)
        assert r.status_code == 400 and "ragtune_session" not in r.headers.get("set-cookie", "")
        assert other.get("/ui/").status_code == 303
        assert victim.get(callback).status_code == 303  # the rightful browser still can, once
        again = victim.get(callback)  # a replay of the same code and state
        assert again.status_code == 400 and "ragtune_session" not in again.headers.get("set-cookie", "")


def test_a_tampered_verifier_or_an_expired_token_ends_in_no_access(oidc_ui: tuple[str, Provider]) -> None:
    url, provider = oidc_ui
    with httpx2.Client(base_url=url, timeout=60) as browser:
        back = _to_provider(browser)
        q = parse_qs(urlsplit(back.headers["location"]).query)
        provider.codes[q["code"][0]]["challenge"] = "x" * 43  # as if the code had been issued to someone else
        r = browser.get(back.headers["location"])
        assert r.status_code == 401 and "invalid_grant" in r.text
        assert browser.get("/ui/").status_code == 303
    # A token that expires: the session ends with it (the server re-verifies the token on every page).
    now = int(time.time())
    provider.login_claims = {"sub": "olga", "groups": ["ops"], "iat": now - 600, "exp": now - 120}
    with httpx2.Client(base_url=url, timeout=60) as browser:
        r = browser.get(_to_provider(browser).headers["location"])
        assert r.status_code == 401  # already past its expiry: refused at log-in
        assert browser.get("/ui/").status_code == 303
    provider.login_claims = {"sub": "olga", "groups": ["ops"], "exp": int(time.time()) + 3}
    with httpx2.Client(base_url=url, timeout=60) as browser:
        assert browser.get(_to_provider(browser).headers["location"]).status_code == 303
        assert browser.get("/ui/").status_code == 200
        time.sleep(3.5)
        assert browser.get("/ui/").status_code == 303  # the token expired: back to the log-in page
