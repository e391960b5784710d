"""The Authorization header: API keys to the key store, JWTs to the OIDC verifier, anything else refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from oidc_provider import AUDIENCE, Provider

from ragtune.service.credentials import authenticate
from ragtune.service.identity import AuthError, Role
from ragtune.service.keys import KeyStore
from ragtune.service.oidc import OidcVerifier


def refused(header: str | None, keys: KeyStore, oidc: OidcVerifier | None, code: str) -> None:
    with pytest.raises(AuthError) as info:
        authenticate(header, keys, oidc)
    assert (info.value.code, info.value.status) == (code, 401)
    token = (header or "").split(" ")[-1]
    if len(token) > 8:
        assert token not in info.value.message


def test_keys_and_tokens_are_routed_to_their_verifier(tmp_path: Path, provider: Provider) -> None:
    keys = KeyStore(tmp_path / "keys.sqlite")
    oidc = OidcVerifier(provider.issuer, AUDIENCE)
    record, key = keys.create("bob", ["ops"], Role.ADMIN)
    by_key = authenticate(f"Bearer {key}", keys, oidc)
    assert (by_key.kind, by_key.credential_id, by_key.role) == ("api_key", record.key_id, Role.ADMIN)
    assert authenticate(f"bearer   {key}  ", keys, oidc).principal.user == "bob"  # scheme is case-insensitive
    by_token = authenticate(f"Bearer {provider.token()}", keys, oidc)
    assert (by_token.kind, by_token.principal.user) == ("oidc", "alice")
    assert provider.hits["jwks"] == 1


def test_missing_malformed_and_unconfigured(tmp_path: Path, provider: Provider) -> None:
    keys = KeyStore(tmp_path / "keys.sqlite")
    oidc = OidcVerifier(provider.issuer, AUDIENCE)
    _, key = keys.create("bob", [], Role.READER)
    for header in (None, "", "   "):
        refused(header, keys, oidc, "missing_credentials")
    for header in (f"Basic {key}", key, "Bearer", f"Bearer {key} extra", f"Token {key}", "Bearer sk-abcdefghijkl",
                   "Bearer " + "a" * 9000, "Bearer a.b"):
        refused(header, keys, oidc, "malformed_credentials")
    refused(f"Bearer {key[:-2]}", keys, oidc, "malformed_credentials")
    refused(f"Bearer {key[:-2]}zz", keys, oidc, "invalid_key")
    refused(f"Bearer {provider.token()}", keys, None, "invalid_token")  # OIDC off: tokens are not accepted
    assert provider.hits == {"discovery": 0, "jwks": 0}
    refused(f"Bearer {provider.token(claims={'aud': 'elsewhere'})}", keys, oidc, "wrong_audience")
