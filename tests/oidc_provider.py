"""A real OpenID provider on 127.0.0.1 for the identity tests: discovery + JWKS over HTTP, keys made here.

The provider is an ``http.server`` in a thread; its signing keys are RSA and EC keys generated with
``cryptography``; tokens are signed with PyJWT. The verifier under test fetches everything over real HTTP.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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
            if self.path == "/.well-known/openid-configuration":
                provider.hits["discovery"] += 1
                body: dict[str, Any] = {"issuer": provider.issuer, "jwks_uri": provider.jwks_url,
                        "id_token_signing_alg_values_supported": ["RS256", "ES256"]}
            elif self.path == "/jwks.json":
                provider.hits["jwks"] += 1
                body = {"keys": [k.jwk() for k in provider.keys]}
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

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
