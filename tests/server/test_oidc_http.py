"""OIDC bearer tokens through the HTTP server, against a real provider (discovery and JWKS served on 127.0.0.1):
a valid token answers as its groups; every kind of bad token is 401 with its code and no data."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx2
import pytest
from helpers import serve_project as serve
from oidc_provider import AUDIENCE, Provider, rsa_key
from oidc_provider import serve as serve_provider

from .live import small_project

QUESTION = "How long are backups kept?"


@pytest.fixture(scope="module")
def oidc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Provider]]:
    with serve_provider([rsa_key("k1")]) as provider:
        project = small_project(tmp_path_factory.mktemp("oidc"), service={
            "oidc_issuer": provider.issuer, "oidc_audience": AUDIENCE})
        with serve(project) as url:
            yield url, provider


def _ask(url: str, token: str) -> httpx2.Response:
    return httpx2.post(f"{url}/v1/ask", json={"question": QUESTION}, headers={"Authorization": f"Bearer {token}"},
                       timeout=60)


def test_a_valid_token_answers_as_its_groups(oidc_server: tuple[str, Provider]) -> None:
    url, provider = oidc_server
    ops = _ask(url, provider.token(claims={"sub": "olga", "groups": ["ops"]})).json()
    legal = _ask(url, provider.token(claims={"sub": "lee", "groups": ["legal"]})).json()
    assert not ops["abstained"] and ops["citations"][0]["path"].endswith("backups.md")
    assert legal["abstained"] and legal["citations"] == [] and "ninety" not in str(legal)
    who = httpx2.get(f"{url}/v1/whoami", headers={"Authorization": f"Bearer {provider.token()}"}).json()
    assert (who["user"], who["credential"], who["role"]) == ("alice", "oidc", "reader")


@pytest.mark.parametrize("kind", ["expired", "not_yet_valid", "wrong_issuer", "wrong_audience", "unknown_kid",
                                  "alg_none", "tampered"])
def test_every_bad_token_is_refused_with_its_code_and_no_data(oidc_server: tuple[str, Provider], kind: str) -> None:
    url, provider = oidc_server
    now = int(time.time())
    claims: dict[str, object] = {"sub": "olga", "groups": ["ops"]}
    token, code = {
        "expired": (provider.token(claims={**claims, "exp": now - 3600, "iat": now - 7200}), "expired_token"),
        "not_yet_valid": (provider.token(claims={**claims, "nbf": now + 3600}), "token_not_yet_valid"),
        "wrong_issuer": (provider.token(claims={**claims, "iss": "https://evil.example"}), "wrong_issuer"),
        "wrong_audience": (provider.token(claims={**claims, "aud": "someone-else"}), "wrong_audience"),
        "unknown_kid": (provider.token(key=rsa_key("not-published")), "unknown_key_id"),
        "alg_none": (_unsigned(claims), "algorithm_not_allowed"),
        "tampered": (_tampered(provider.token(claims=claims)), "invalid_token"),
    }[kind]
    r = _ask(url, token)
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == code and "ninety" not in r.text


def _unsigned(claims: dict[str, object]) -> str:
    import base64
    import json

    def part(d: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'none', 'typ': 'JWT', 'kid': 'k1'})}.{part(claims)}."


def _tampered(token: str) -> str:
    head, body, sig = token.split(".")
    return f"{head}.{body[:-4]}{'AAAA' if body[-4:] != 'AAAA' else 'BBBB'}.{sig}"
