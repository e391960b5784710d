"""A real OpenID provider on 127.0.0.1 for the identity tests: discovery + JWKS over HTTP, keys made here, and
the authorization code flow with PKCE (S256) for the web UI's log-in: ``/authorize`` logs the browser in as
``Provider.login_claims`` at once and redirects back with a single-use code; ``/token`` exchanges it only with the
matching code verifier, client id and redirect URI.

The provider is an ``http.server`` in a thread; its signing keys are RSA and EC keys generated with
``cryptography``; tokens are signed with PyJWT. The verifier under test fetches everything over real HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

AUDIENCE = "ragtune-tests"


@dataclass
class SigningKey:
    """One provider key: its id, algorithm and private key (the JWKS publishes the public half)."""

    kid: str
    alg: str
    private: Any

    def jwk(self) -> dict[str, Any]:
        algo = RSAAlgorithm if self.alg.startswith(("RS", "PS")) else ECAlgorithm
        data: dict[str, Any] = algo.to_jwk(self.private.public_key(), as_dict=True)
        return {**data, "kid": self.kid, "use": "sig", "alg": self.alg}


def rsa_key(kid: str | None = None) -> SigningKey:
    """A fresh 2048-bit RSA key for RS256."""
    return SigningKey(kid or f"rsa-{uuid.uuid4().hex[:8]}", "RS256",
                      rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str | None = None) -> SigningKey:
    """A fresh P-256 key for ES256."""
    return SigningKey(kid or f"ec-{uuid.uuid4().hex[:8]}", "ES256", ec.generate_private_key(ec.SECP256R1()))


@dataclass
class Provider:
    """The running provider: its issuer URL, the keys it publishes, and how often each document was fetched."""

    issuer: str
    keys: list[SigningKey]
    hits: dict[str, int] = field(default_factory=lambda: {"discovery": 0, "jwks": 0})
    down: bool = False
    login_claims: dict[str, Any] = field(default_factory=dict)  # who /authorize logs in (token() claims)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)  # code -> challenge, client id, redirect URI

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks.json"

    def token(self, key: SigningKey | None = None, claims: dict[str, Any] | None = None,
              headers: dict[str, Any] | None = None, drop: tuple[str, ...] = ()) -> str:
        """A token signed by ``key`` (default the first published key) with sane claims, overridable."""
        key = key or self.keys[0]
        now = int(time.time())
        body: dict[str, Any] = {"iss": self.issuer, "aud": AUDIENCE, "sub": "alice", "iat": now,
                                "exp": now + 300, "groups": ["legal", "staff"], **(claims or {})}
        for name in drop:
            body.pop(name, None)
        return jwt.encode(body, key.private, algorithm=key.alg, headers={"kid": key.kid, **(headers or {})})


def _handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if provider.down:
                self.send_error(503)
                return
            if self.path.startswith("/authorize?"):
                self.authorize(parse_qs(urlsplit(self.path).query))
                return
            if self.path == "/.well-known/openid-configuration":
                provider.hits["discovery"] += 1
                body: dict[str, Any] = {"issuer": provider.issuer, "jwks_uri": provider.jwks_url,
                        "authorization_endpoint": f"{provider.issuer}/authorize",
                        "token_endpoint": f"{provider.issuer}/token",
                        "code_challenge_methods_supported": ["S256"],
                        "id_token_signing_alg_values_supported": ["RS256", "ES256"]}
            elif self.path == "/jwks.json":
                provider.hits["jwks"] += 1
                body = {"keys": [k.jwk() for k in provider.keys]}
            else:
                self.send_error(404)
                return
            self.send_json(200, body)

        def send_json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def authorize(self, q: dict[str, list[str]]) -> None:
            one = {k: v[0] for k, v in q.items()}
            if (one.get("response_type") != "code" or one.get("code_challenge_method") != "S256"
                    or one.get("client_id") != AUDIENCE or "openid" not in one.get("scope", "").split()):
                self.send_json(400, {"error": "invalid_request"})
                return
            code = secrets.token_urlsafe(16)
            provider.codes[code] = {"challenge": one["code_challenge"], "client_id": one["client_id"],
                                    "redirect_uri": one["redirect_uri"]}
            self.send_response(302)
            self.send_header("Location", f"{one['redirect_uri']}?{urlencode({'code': code, 'state': one['state']})}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            grant = provider.codes.pop(form.get("code", ""), None)  # single use
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if (self.path != "/token" or form.get("grant_type") != "authorization_code" or grant is None
                    or grant["challenge"] != challenge or grant["client_id"] != form.get("client_id")
                    or grant["redirect_uri"] != form.get("redirect_uri")):
                self.send_json(400, {"error": "invalid_grant"})
                return
            self.send_json(200, {"access_token": provider.token(claims=provider.login_claims),
                                 "token_type": "Bearer", "expires_in": 300})

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
            pass

    return Handler


@contextmanager
def serve(keys: list[SigningKey]) -> Iterator[Provider]:
    """Run a provider publishing ``keys`` on 127.0.0.1 until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    prov = Provider(f"http://127.0.0.1:{server.server_address[1]}", list(keys))
    server.RequestHandlerClass = _handler(prov)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield prov
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
