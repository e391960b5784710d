"""OIDC bearer JWTs against a real provider on 127.0.0.1 (discovery + JWKS over HTTP, keys made in the test)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from oidc_provider import AUDIENCE, Provider, ec_key, rsa_key

from ragtune.errors import ConfigError
from ragtune.service.identity import AuthError, Role
from ragtune.service.oidc import OidcVerifier


class Clock:
    """A hand-moved monotonic clock for the JWKS refetch limits (token times use the real clock)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def craft(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """A JWT assembled by hand (for the forms PyJWT refuses to make), signed by ``sign(signing_input)``."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode())) if sign else ''}"


def good_claims(provider: Provider) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": provider.issuer, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300}


def refused(verifier: OidcVerifier, token: str, code: str, status: int = 401) -> AuthError:
    with pytest.raises(AuthError) as info:
        verifier.verify(token)
    assert (info.value.code, info.value.status) == (code, status), info.value.message
    assert token not in info.value.message  # never echo the credential
    return info.value


def verifier_for(provider: Provider, **kwargs: Any) -> OidcVerifier:
    return OidcVerifier(provider.issuer, AUDIENCE, **kwargs)


def test_rs256_and_es256_tokens_verify_via_discovery(provider: Provider) -> None:
    v = verifier_for(provider)
    rsa, ec = provider.keys
    for key in (rsa, ec):
        ident = v.verify(provider.token(key))
        assert ident.principal.user == "alice"
        assert ident.principal.groups == frozenset({"legal", "staff"})
        assert (ident.role, ident.kind, ident.credential_id) == (Role.READER, "oidc", "alice")
    # discovery once, JWKS once: the keys are cached across tokens
    assert provider.hits == {"discovery": 1, "jwks": 1}


def test_configured_jwks_url_skips_discovery(provider: Provider) -> None:
    v = verifier_for(provider, jwks_url=provider.jwks_url)
    assert v.verify(provider.token()).principal.user == "alice"
    assert provider.hits == {"discovery": 0, "jwks": 1}


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_rejected(provider: Provider, alg: str) -> None:
    token = craft({"alg": alg, "typ": "JWT", "kid": "rsa-1"}, good_claims(provider))
    refused(verifier_for(provider), token, "algorithm_not_allowed")


def test_hs256_signed_with_the_public_key_is_rejected(provider: Provider) -> None:
    # The classic confusion attack: HMAC "signed" with the provider's public key, which anyone can fetch.
    pem = provider.keys[0].private.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    for header in ({"alg": "HS256", "kid": "rsa-1"}, {"alg": "HS256"}):
        token = craft(header, good_claims(provider), lambda m: hmac.new(pem, m, hashlib.sha256).digest())
        refused(verifier_for(provider), token, "algorithm_not_allowed")


@pytest.mark.parametrize("algorithms", [["HS256"], ["none"], ["RS256", "HS512"], ["XX999"], []])
def test_settings_refuse_symmetric_none_and_unknown_algorithms(algorithms: list[str]) -> None:
    with pytest.raises(ConfigError, match="algorithm"):
        OidcVerifier("https://login.example.com", AUDIENCE, algorithms=algorithms)


def test_verifier_needs_an_audience_and_a_safe_issuer() -> None:
    with pytest.raises(ConfigError, match="audience"):
        OidcVerifier("https://login.example.com", "")
    with pytest.raises(ConfigError, match="https"):
        OidcVerifier("http://login.example.com", AUDIENCE)  # plain http only on this machine


def test_expired_token_with_leeway(provider: Provider) -> None:
    now = int(time.time())
    v = verifier_for(provider, leeway_s=60)
    refused(v, provider.token(claims={"exp": now - 120, "iat": now - 400}), "expired_token")
    assert v.verify(provider.token(claims={"exp": now - 30, "iat": now - 400})).principal.user == "alice"
    strict = verifier_for(provider, leeway_s=0)
    refused(strict, provider.token(claims={"exp": now - 30, "iat": now - 400}), "expired_token")


def test_not_yet_valid_token_with_leeway(provider: Provider) -> None:
    now = int(time.time())
    v = verifier_for(provider, leeway_s=60)
    refused(v, provider.token(claims={"nbf": now + 120}), "token_not_yet_valid")
    refused(v, provider.token(claims={"iat": now + 120}), "token_not_yet_valid")
    assert v.verify(provider.token(claims={"nbf": now + 30})).principal.user == "alice"
    refused(verifier_for(provider, leeway_s=0), provider.token(claims={"nbf": now + 30}), "token_not_yet_valid")


def test_wrong_issuer_and_wrong_audience(provider: Provider) -> None:
    v = verifier_for(provider)
    refused(v, provider.token(claims={"iss": "https://evil.example.com"}), "wrong_issuer")
    refused(v, provider.token(claims={"aud": "another-app"}), "wrong_audience")
    refused(v, provider.token(claims={"aud": ["another-app", "third-app"]}), "wrong_audience")
    assert v.verify(provider.token(claims={"aud": ["another-app", AUDIENCE]})).principal.user == "alice"


def test_unknown_kid_refetches_once_and_key_rotation_works(provider: Provider) -> None:
    clock = Clock()
    v = verifier_for(provider, jwks_refetch_s=30, clock=clock)
    old = provider.keys[0]
    v.verify(provider.token(old))
    assert provider.hits["jwks"] == 1

    new = ec_key("rotated-1")
    provider.keys = [new]  # the provider rotates: the old key is withdrawn, a new one published
    refused(v, provider.token(new), "unknown_key_id")  # within the refetch limit: no new fetch yet
    assert provider.hits["jwks"] == 1

    clock.now += 31
    assert v.verify(provider.token(new)).principal.user == "alice"  # one refetch found the rotated key
    assert provider.hits["jwks"] == 2
    refused(v, provider.token(new, headers={"kid": "made-up"}), "unknown_key_id")
    refused(v, provider.token(old), "unknown_key_id")  # withdrawn key: no longer accepted
    assert provider.hits["jwks"] == 2  # random kids cannot make the verifier hammer the provider

    clock.now += 31
    refused(v, provider.token(new, headers={"kid": "made-up-2"}), "unknown_key_id")
    assert provider.hits["jwks"] == 3


def test_forged_and_tampered_tokens_are_invalid(provider: Provider) -> None:
    v = verifier_for(provider)
    token = provider.token()
    head, _, sig = token.split(".")
    forged_payload = b64(json.dumps({**good_claims(provider), "sub": "mallory", "groups": ["admins"]}).encode())
    refused(v, f"{head}.{forged_payload}.{sig}", "invalid_token")
    impostor = rsa_key("rsa-1")  # same kid as the provider's key, but the attacker's private key
    refused(v, provider.token(impostor), "invalid_token")
    refused(v, f"{head}.{token.split('.')[1]}.", "invalid_token")  # signature stripped


def test_missing_claims_kid_and_garbage(provider: Provider) -> None:
    v = verifier_for(provider)
    err = refused(v, provider.token(drop=("exp",)), "invalid_token")
    assert "exp" in err.message
    refused(v, provider.token(drop=("aud",)), "invalid_token")
    no_kid = craft({"alg": "RS256"}, good_claims(provider))
    refused(v, no_kid, "unknown_key_id")
    refused(v, "abc.def.ghi", "malformed_credentials")
    # the token's alg must match its key's published alg (ES256 header on the RSA key's kid)
    refused(v, provider.token(provider.keys[1], headers={"kid": "rsa-1"}), "algorithm_not_allowed")


def test_claims_map_to_user_groups_and_role(provider: Provider) -> None:
    v = verifier_for(provider, user_claim="preferred_username", groups_claim="realm_access.roles",
                     role_claim="ragtune_role", default_role="editor")
    ident = v.verify(provider.token(claims={"preferred_username": "bob@acme.example", "sub": "uuid-42",
                                            "realm_access": {"roles": ["legal", "has space", "/admins", 7]},
                                            "ragtune_role": ["reader", "admin"]}))
    assert ident.principal.user == "bob@acme.example"
    assert ident.principal.groups == frozenset({"legal"})  # names that are not valid ACL names are dropped
    assert ident.role is Role.ADMIN  # the highest role the claim holds
    assert ident.credential_id == "uuid-42"
    assert v.verify(provider.token(claims={"preferred_username": "bob", "ragtune_role": "owner"})).role is Role.EDITOR
    namespaced = verifier_for(provider, groups_claim="https://acme.example/groups")
    assert namespaced.verify(provider.token(claims={"https://acme.example/groups": ["hr"]})).principal.groups == {"hr"}
    refused(v, provider.token(claims={"preferred_username": "two words"}), "invalid_token")
    refused(v, provider.token(), "invalid_token")  # no preferred_username claim at all


def test_provider_down(provider: Provider, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    provider.down = True
    v = verifier_for(provider, clock=clock, jwks_max_age_s=60)
    token = provider.token()
    with caplog.at_level(logging.WARNING, logger="ragtune.service.oidc"):
        refused(v, token, "provider_unavailable", 503)
    assert "could not fetch" in caplog.text and token not in caplog.text  # the reason is logged, never the token
    refused(v, provider.token(), "provider_unavailable", 503)  # no retry inside the refetch limit
    assert provider.hits == {"discovery": 0, "jwks": 0}
    provider.down = False
    clock.now += 31
    assert v.verify(provider.token()).principal.user == "alice"
    provider.down = True
    clock.now += 120  # the cached keys are stale and the refresh fails: they are kept until one succeeds
    assert v.verify(provider.token()).principal.user == "alice"


def test_discovery_must_name_the_configured_issuer(provider: Provider) -> None:
    v = OidcVerifier(provider.issuer + "/", AUDIENCE)  # the discovery document says the issuer without "/"
    refused(v, provider.token(claims={"iss": provider.issuer + "/"}), "provider_unavailable", 503)
    assert provider.hits["jwks"] == 0
