"""One entry point for every front end: an ``Authorization`` header in, a verified :class:`Identity` out.

``Bearer rtk_...`` is an API key (the key store checks it); ``Bearer <header>.<payload>.<signature>`` is an
OIDC JWT (the verifier checks it); anything else is refused. The header is the only input: nothing in a
request body or query can name the user, groups or role.
"""

from __future__ import annotations

import re

from ragtune.service.identity import AuthError, Identity
from ragtune.service.keys import PREFIX, KeyStore
from ragtune.service.oidc import OidcVerifier

MAX_HEADER_CHARS = 8192
_BEARER = re.compile(r"^Bearer +(?P<token>\S+)$", re.IGNORECASE)
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


def authenticate(authorization_header: str | None, keys: KeyStore, oidc: OidcVerifier | None) -> Identity:
    """The identity proved by an ``Authorization: Bearer ...`` header, or ``AuthError`` (401) saying why not."""
    if authorization_header is None or not authorization_header.strip():
        raise AuthError("missing_credentials", "no credentials: send `Authorization: Bearer KEY` with a ragtune "
                                               "API key or an OIDC access token")
    match = _BEARER.match(authorization_header.strip()) if len(authorization_header) <= MAX_HEADER_CHARS else None
    if match is None:
        raise AuthError("malformed_credentials", "the Authorization header must read `Bearer KEY` (one API key "
                                                 "or OIDC access token, no other scheme)")
    token = match["token"]
    if token.startswith(PREFIX):
        return keys.authenticate(token)
    if _JWT.match(token):
        if oidc is None:
            raise AuthError("invalid_token", "this server does not accept OIDC tokens (no issuer is configured): "
                                             "use a ragtune API key")
        return oidc.verify(token)
    raise AuthError("malformed_credentials", "the bearer credential is neither a ragtune API key (rtk_...) nor a "
                                             "JWT: send the key exactly as `ragtune keys create` printed it")


async def authenticate_async(authorization_header: str | None, keys: KeyStore,
                             oidc: OidcVerifier | None) -> Identity:
    """:func:`authenticate` for an event loop: an API key is checked on the loop (one SQLite read, no thread
    hop on the hot path); an OIDC token (which may fetch the provider's keys) and the once-a-minute last-used
    write run in a worker thread."""
    from anyio.to_thread import run_sync

    header = (authorization_header or "").strip()
    match = _BEARER.match(header) if len(header) <= MAX_HEADER_CHARS else None
    if match is None or not match["token"].startswith(PREFIX):
        return await run_sync(authenticate, authorization_header, keys, oidc)
    identity, due = keys.verify(match["token"])
    if due:
        await run_sync(keys.touch, identity.credential_id)
    return identity
