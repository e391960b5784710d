"""OIDC bearer JWTs: ``OidcVerifier`` checks a token against the issuer's published keys and maps its claims.

Only asymmetric algorithms are accepted (``none`` and every HMAC ``HS*`` are refused, in the settings and in
tokens), so a token can only be signed by the identity provider's private key. The JWKS is fetched from the
configured URL (or the one the issuer's discovery document names), cached, refetched when a token names an
unknown ``kid`` (at most once per ``jwks_refetch_s``, so random kids cannot flood the provider) and refreshed
every ``jwks_max_age_s``. No other address is ever contacted, and redirects are not followed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlencode, urlsplit

from ragtune.core import Principal
from ragtune.errors import AclError, ConfigError
from ragtune.service.identity import AuthError, Identity, Role, parse_role
from ragtune.service.oidc_config import DEFAULT_ALGORITHMS, LOOPBACK_HOSTS, check_algorithms, check_url

if TYPE_CHECKING:
    from jwt import PyJWK

    from ragtune.config import Settings

log = logging.getLogger(__name__)

_MAX_DOCUMENT_BYTES = 1 << 20


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect becomes an HTTPError: only the configured address is ever contacted


_OPENER = urllib.request.build_opener(_NoRedirect)  # honours the environment's proxy settings
_DIRECT = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}))  # this machine: no proxy


def _lookup(claims: dict[str, Any], name: str) -> Any:
    """A claim by its exact name (``https://example.com/groups``), else by dotted path (``realm_access.roles``)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _valid_name(name: str) -> bool:
    try:
        Principal(name)
    except AclError:
        return False
    return True


def _fail(code: str, message: str) -> NoReturn:
    raise AuthError(code, message)


class OidcVerifier:
    """Verifies OIDC bearer JWTs from one issuer for one audience and maps their claims to an :class:`Identity`.

    ``user_claim`` names the user (``sub`` or e.g. ``preferred_username``); ``groups_claim`` the groups (a list
    or one string; names that are not valid ACL names are dropped, which can only narrow access);
    ``role_claim``, if set, a role (the highest of ``reader``/``editor``/``admin`` it holds), else
    ``default_role``. Claim names may be dotted paths (``realm_access.roles``). No I/O until the first token.
    """

    def __init__(self, issuer: str, audience: str, jwks_url: str | None = None,
                 algorithms: Sequence[str] = DEFAULT_ALGORITHMS, leeway_s: float = 60.0,
                 groups_claim: str = "groups", user_claim: str = "sub", role_claim: str = "",
                 default_role: Role | str = Role.READER, jwks_refetch_s: float = 30.0,
                 jwks_max_age_s: float = 3600.0, timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        try:
            self.issuer = check_url(issuer, "the OIDC issuer")
            self.jwks_url = check_url(jwks_url, "the JWKS URL") if jwks_url else None
            self.algorithms = check_algorithms(algorithms)
            self.default_role = parse_role(default_role)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if not audience:
            raise ConfigError("set the OIDC audience (service.oidc_audience, the client id tokens are issued to): "
                              "without it a token the issuer made for any other application would be accepted")
        if not user_claim or not groups_claim:
            raise ConfigError("service.oidc_user_claim and service.oidc_groups_claim must name claims")
        self.audience = audience
        self.leeway_s = float(leeway_s)
        self.groups_claim, self.user_claim, self.role_claim = groups_claim, user_claim, role_claim
        self.jwks_refetch_s, self.jwks_max_age_s, self.timeout_s = jwks_refetch_s, jwks_max_age_s, timeout_s
        self.clock = clock
        self._lock = threading.Lock()
        self._jwks: dict[str, dict[str, Any]] = {}
        self._keys: dict[tuple[str, str], PyJWK] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._tried_at: float | None = None  # last attempt

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcVerifier | None:
        """The verifier the ``service`` settings describe, or None when no issuer is set (OIDC off)."""
        s = settings.service
        if not s.oidc_issuer:
            return None
        return cls(s.oidc_issuer, s.oidc_audience, s.oidc_jwks_url or None, s.oidc_algorithms, s.oidc_leeway_s,
                   s.oidc_groups_claim, s.oidc_user_claim, s.oidc_role_claim, s.oidc_default_role)

    # -- the provider's keys -----------------------------------------------------------------------------------

    def _get_json(self, url: str) -> Any:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        opener = _DIRECT if urlsplit(url).hostname in LOOPBACK_HOSTS else _OPENER
        with opener.open(request, timeout=self.timeout_s) as response:
            body = response.read(_MAX_DOCUMENT_BYTES + 1)
        if len(body) > _MAX_DOCUMENT_BYTES:
            raise ValueError("document larger than 1 MiB")
        return json.loads(body)

    def discovery(self) -> dict[str, Any]:
        """The issuer's discovery document (``/.well-known/openid-configuration``), checked to name the issuer;
        ``ValueError`` or ``OSError`` when it cannot be had."""
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        doc = self._get_json(url)
        if not isinstance(doc, dict) or doc.get("issuer") != self.issuer:
            raise ValueError(f"{url} names issuer {doc.get('issuer') if isinstance(doc, dict) else None!r}, "
                             f"not the configured {self.issuer!r}")
        return doc

    def post_form(self, url: str, form: dict[str, str]) -> Any:
        """POST ``form`` (urlencoded) to one of the issuer's endpoints and read its JSON answer, error bodies
        included (``{"error": ...}``); ``OSError``/``ValueError`` when it cannot be reached or read."""
        data = urlencode(form).encode()
        request = urllib.request.Request(check_url(url, "the token endpoint"), data=data, method="POST",
                                         headers={"Accept": "application/json",
                                                  "Content-Type": "application/x-www-form-urlencoded"})
        opener = _DIRECT if urlsplit(url).hostname in LOOPBACK_HOSTS else _OPENER
        try:
            with opener.open(request, timeout=self.timeout_s) as response:
                body = response.read(_MAX_DOCUMENT_BYTES + 1)
        except urllib.error.HTTPError as exc:  # 4xx with an OAuth error body
            body = exc.read(_MAX_DOCUMENT_BYTES + 1)
        if len(body) > _MAX_DOCUMENT_BYTES:
            raise ValueError("answer larger than 1 MiB")
        return json.loads(body)

    def _discover(self) -> str:
        doc = self.discovery()
        jwks_uri = doc.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise ValueError(f"the discovery document of {self.issuer} has no jwks_uri")
        return check_url(jwks_uri, "the discovered jwks_uri")

    def _refresh(self) -> None:
        """Fetch the JWKS (discovering its URL first if needed); on failure keep the keys already held."""
        self._tried_at = self.clock()
        try:
            if self.jwks_url is None:
                self.jwks_url = self._discover()
            doc = self._get_json(self.jwks_url)
            keys = doc.get("keys") if isinstance(doc, dict) else None
            if not isinstance(keys, list):
                raise ValueError("the JWKS has no `keys` list")
        except (OSError, ValueError, urllib.error.URLError) as exc:
            log.warning("could not fetch the OIDC signing keys from %s: %s", self.jwks_url or self.issuer, exc)
            if self._fetched_at is None:
                _fail("provider_unavailable", "the identity provider could not be reached to check the token; "
                                              "try again later")
            return
        self._jwks = {k["kid"]: k for k in keys
                      if isinstance(k, dict) and isinstance(k.get("kid"), str) and k.get("use", "sig") == "sig"}
        self._keys.clear()
        self._fetched_at = self._tried_at

    def _key(self, kid: str, alg: str) -> PyJWK:
        from jwt import PyJWK, PyJWTError

        with self._lock:
            now = self.clock()
            stale = self._fetched_at is None or now - self._fetched_at >= self.jwks_max_age_s
            # An unknown kid may be a rotated key: fetch again, but at most once per jwks_refetch_s.
            if stale or kid not in self._jwks:
                if self._tried_at is None or now - self._tried_at >= self.jwks_refetch_s:
                    self._refresh()
                elif self._fetched_at is None:
                    _fail("provider_unavailable", "the identity provider could not be reached to check the "
                                                  "token; try again later")
            jwk = self._jwks.get(kid)
            if jwk is None:
                _fail("unknown_key_id", "the token is signed with a key the identity provider does not publish: "
                                        "sign in again to get a new token")
            if "alg" in jwk and jwk["alg"] != alg:
                _fail("algorithm_not_allowed", "the token's algorithm does not match its signing key: sign in "
                                               "again to get a new token")
            key = self._keys.get((kid, alg))
            if key is None:
                try:
                    key = PyJWK(dict(jwk), algorithm=alg)
                except PyJWTError:
                    _fail("invalid_token", "the token's signing key does not fit its algorithm: sign in again")
                self._keys[(kid, alg)] = key
            return key

    # -- tokens --------------------------------------------------------------------------------------------------

    def verify(self, token: str) -> Identity:
        """The identity a valid token proves, or ``AuthError`` naming why it is refused."""
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            _fail("malformed_credentials", "the bearer token is not a well-formed JWT: send the access token "
                                           "your identity provider issued, or a ragtune API key")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            _fail("algorithm_not_allowed", f"the token's signing algorithm is not accepted (allowed: "
                                           f"{', '.join(self.algorithms)}): use a token from the configured "
                                           f"identity provider")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            _fail("unknown_key_id", "the token names no signing key (`kid`): use a token from the configured "
                                    "identity provider")
        key = self._key(kid, alg)
        try:
            claims = jwt.decode(token, key.key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                                leeway=self.leeway_s, options={"require": ["exp", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            _fail("expired_token", "the token has expired: sign in again to get a new one")
        except jwt.ImmatureSignatureError:
            _fail("token_not_yet_valid", "the token is not valid yet (nbf/iat in the future): check the clocks "
                                         "of this server and the identity provider, or wait")
        except jwt.InvalidIssuerError:
            _fail("wrong_issuer", "the token was issued by another identity provider than the one this server "
                                  "trusts: sign in with the configured provider")
        except jwt.InvalidAudienceError:
            _fail("wrong_audience", "the token was issued for another application: request a token for this "
                                    "server's audience")
        except jwt.MissingRequiredClaimError as exc:
            _fail("invalid_token", f"the token lacks the required `{exc.claim}` claim: use an access token from "
                                   f"the configured identity provider")
        except jwt.DecodeError:
            # a bad signature, or a payload that is not JSON: either way it was not made by the provider
            _fail("invalid_token", "the token's signature or payload is not valid: sign in again")
        except jwt.PyJWTError:
            _fail("invalid_token", "the token is not valid: sign in again")
        return self._identity(claims)

    def _identity(self, claims: dict[str, Any]) -> Identity:
        user = _lookup(claims, self.user_claim)
        if not isinstance(user, str) or not _valid_name(user):
            _fail("invalid_token", f"the token's `{self.user_claim}` claim is missing or not a valid user name "
                                   f"(letters, digits, . _ @ + -): ask an admin to check service.oidc_user_claim")
        groups = frozenset(g for g in _strings(_lookup(claims, self.groups_claim)) if _valid_name(g))
        role = self.default_role
        if self.role_claim:
            held = [r for r in (v.strip().lower() for v in _strings(_lookup(claims, self.role_claim)))
                    if r in Role._value2member_map_]
            if held:
                role = max(Role(r) for r in held)
        sub = claims.get("sub")
        return Identity._verified(Principal(user, groups), role, "oidc", sub if isinstance(sub, str) else user)
