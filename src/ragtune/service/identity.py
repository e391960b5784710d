"""Who is calling and what they may do: roles, actions, the one permission table, ``Identity``, ``AuthError``.

The principal of a request comes only from its credential: an :class:`Identity` is built by the key store
(:meth:`ragtune.service.keys.KeyStore.authenticate`) or the OIDC verifier
(:meth:`ragtune.service.oidc.OidcVerifier.verify`) after the credential is verified, never from request fields.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal, NoReturn

from ragtune.core import Principal
from ragtune.errors import RagtuneError

CredentialKind = Literal["api_key", "oidc"]


class Role(StrEnum):
    """What a caller may do, ordered ``reader < editor < admin`` (each holds every right of the ones below)."""

    READER = "reader"
    EDITOR = "editor"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """0 for reader, 1 for editor, 2 for admin."""
        return _RANK[self]

    # A StrEnum would otherwise compare alphabetically ("admin" < "reader"): compare by rank instead.
    def __lt__(self, other: object) -> bool:
        return self.rank < Role(other).rank if isinstance(other, str) else NotImplemented

    def __le__(self, other: object) -> bool:
        return self.rank <= Role(other).rank if isinstance(other, str) else NotImplemented

    def __gt__(self, other: object) -> bool:
        return self.rank > Role(other).rank if isinstance(other, str) else NotImplemented

    def __ge__(self, other: object) -> bool:
        return self.rank >= Role(other).rank if isinstance(other, str) else NotImplemented


_RANK = {Role.READER: 0, Role.EDITOR: 1, Role.ADMIN: 2}


class Action(StrEnum):
    """The things a request can do, each guarded by :func:`allowed`."""

    ASK = "ask"
    SEARCH = "search"
    CLASSIFY = "classify"
    RUN = "run"
    DOCUMENTS = "documents"
    SYNC = "sync"
    KEYS = "keys"
    MODELS = "models"
    AUDIT = "audit"


# THE permission table: the least role each action needs. Nothing else decides who may do what.
MINIMUM_ROLE: dict[Action, Role] = {
    Action.ASK: Role.READER,
    Action.SEARCH: Role.READER,
    Action.CLASSIFY: Role.READER,
    Action.RUN: Role.READER,
    Action.DOCUMENTS: Role.EDITOR,
    Action.SYNC: Role.EDITOR,
    Action.KEYS: Role.ADMIN,
    Action.MODELS: Role.ADMIN,
    Action.AUDIT: Role.ADMIN,
}


def allowed(role: Role | str, action: Action | str) -> bool:
    """Whether ``role`` may perform ``action`` (from :data:`MINIMUM_ROLE`); plain names work too, and an unknown
    name is a ``ValueError``."""
    return Role(role) >= MINIMUM_ROLE[Action(action)]


def parse_role(text: str) -> Role:
    """``reader``/``editor``/``admin`` (any case) as a :class:`Role`; anything else is a ``ValueError``."""
    try:
        return Role(text.strip().lower())
    except ValueError:
        raise ValueError(f"unknown role {text!r}: use reader, editor or admin") from None


# code -> HTTP status. 401: the caller is not authenticated; 403: authenticated but not allowed;
# 503: the identity provider could not be reached, so no token can be checked (retry later).
AUTH_CODES: dict[str, int] = {
    "missing_credentials": 401,
    "malformed_credentials": 401,
    "invalid_key": 401,
    "revoked_key": 401,
    "expired_token": 401,
    "token_not_yet_valid": 401,
    "wrong_issuer": 401,
    "wrong_audience": 401,
    "unknown_key_id": 401,
    "algorithm_not_allowed": 401,
    "invalid_token": 401,
    "provider_unavailable": 503,
    "forbidden": 403,
}


class AuthError(RagtuneError):
    """A request's credential is missing or not valid (401), or its role does not allow the action (403).

    ``code`` is stable (clients may branch on it), ``message`` says what to do and never quotes the credential,
    ``status`` is the HTTP status. A front end answers with these three and nothing else: no data.
    """

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        if code not in AUTH_CODES:
            raise ValueError(f"unknown auth error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = AUTH_CODES[code] if status is None else status

    @property
    def www_authenticate(self) -> str:
        """The ``WWW-Authenticate`` header value for this failure (RFC 6750 error codes)."""
        if self.code == "missing_credentials":
            return 'Bearer realm="ragtune"'
        error = {"malformed_credentials": "invalid_request", "forbidden": "insufficient_scope"}.get(
            self.code, "invalid_token")
        return f'Bearer realm="ragtune", error="{error}"'

    def to_dict(self) -> dict[str, Any]:
        """The body a front end returns: ``{"error": {"code", "message"}}``."""
        return {"error": {"code": self.code, "message": self.message}}


class Identity:
    """A verified caller: the principal queries run as, its role, and which credential proved it.

    There is no public constructor: ``Identity(...)`` raises ``TypeError``. Only the key store and the OIDC
    verifier make one, after checking a credential, so no request field can choose a user, groups or role.
    It is immutable and cannot be pickled (a rebuilt identity would skip the check).
    """

    __slots__ = ("principal", "role", "kind", "credential_id")
    principal: Principal
    role: Role
    kind: CredentialKind
    credential_id: str

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("an Identity comes only from a verified credential: use KeyStore.authenticate, "
                        "OidcVerifier.verify or ragtune.service.credentials.authenticate")

    @classmethod
    def _verified(cls, principal: Principal, role: Role, kind: CredentialKind, credential_id: str) -> Identity:
        # Called only by keys.py and oidc.py once the credential has been checked.
        obj = object.__new__(cls)
        for name, value in (("principal", principal), ("role", Role(role)), ("kind", kind),
                            ("credential_id", credential_id)):
            object.__setattr__(obj, name, value)
        return obj

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("an Identity is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("an Identity is immutable")

    def __reduce__(self) -> NoReturn:
        raise TypeError("an Identity cannot be serialised and rebuilt: authenticate the credential again")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Identity):
            return NotImplemented
        return (self.principal, self.role, self.kind, self.credential_id) == (
            other.principal, other.role, other.kind, other.credential_id)

    def __hash__(self) -> int:
        return hash((self.principal, self.role, self.kind, self.credential_id))

    def __repr__(self) -> str:
        return (f"Identity(user={self.principal.user!r}, groups={sorted(self.principal.groups)!r}, "
                f"role={self.role.value!r}, kind={self.kind!r}, credential_id={self.credential_id!r})")

    def can(self, action: Action | str) -> bool:
        """Whether this caller's role allows ``action``."""
        return allowed(self.role, action)

    def require(self, action: Action | str) -> None:
        """Raise ``AuthError("forbidden")`` (403) unless this caller's role allows ``action``."""
        if not self.can(action):
            need = MINIMUM_ROLE[Action(action)].value
            raise AuthError("forbidden", f"the {Action(action).value} action needs the {need} role; this "
                                         f"credential has {self.role.value}: ask an admin for a {need} key")
