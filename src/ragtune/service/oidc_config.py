"""Checks on OIDC settings, shared by ``config.py`` (load time) and ``OidcVerifier`` (construction).

Standard library only (``urllib.parse``), so loading settings stays fast.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
DEFAULT_ALGORITHMS = ("RS256", "ES256")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def check_algorithms(algorithms: Iterable[str]) -> list[str]:
    """The allowed algorithms, checked: asymmetric only. ``ValueError`` names a refused or unknown one."""
    out = [a.strip() for a in algorithms]
    if not out:
        raise ValueError(f"allow at least one algorithm, e.g. {list(DEFAULT_ALGORITHMS)}")
    for alg in out:
        if alg.lower() == "none" or alg.upper().startswith("HS"):
            raise ValueError(f"algorithm {alg!r} is refused: `none` is unsigned and HMAC (HS*) would let anyone "
                             f"holding the provider's public key sign tokens; use asymmetric ones such as "
                             f"{list(DEFAULT_ALGORITHMS)}")
        if alg not in ASYMMETRIC_ALGORITHMS:
            raise ValueError(f"unknown algorithm {alg!r}: choose from {', '.join(ASYMMETRIC_ALGORITHMS)}")
    return out


def check_url(url: str, what: str) -> str:
    """``url`` if it is https, or http on this machine (127.0.0.1, ::1, localhost); else ``ValueError``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise ValueError(f"{what} is not a valid URL") from None
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{what} must not hold credentials (user:password@)")
    if (parts.scheme == "https" and host) or (parts.scheme == "http" and host in LOOPBACK_HOSTS):
        return url
    raise ValueError(f"{what} must be an https:// URL (http:// only on 127.0.0.1 or localhost), got {url!r}")
