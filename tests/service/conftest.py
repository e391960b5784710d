"""Fixtures of the identity tests: a real OpenID provider on 127.0.0.1 (see oidc_provider.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from oidc_provider import Provider, SigningKey, ec_key, rsa_key, serve


@pytest.fixture(scope="session")
def session_keys() -> tuple[SigningKey, SigningKey]:
    """One RSA and one EC key for the whole run (RSA generation is the slow part)."""
    return rsa_key("rsa-1"), ec_key("ec-1")


@pytest.fixture
def provider(session_keys: tuple[SigningKey, SigningKey]) -> Iterator[Provider]:
    """A fresh provider publishing the session's RSA and EC keys, served on 127.0.0.1 for one test."""
    with serve(list(session_keys)) as prov:
        yield prov
