"""Roles, actions, the permission table, auth error codes, and the rule that an Identity needs a credential."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from ragtune.core import Principal
from ragtune.service import credentials
from ragtune.service.identity import AUTH_CODES, Action, AuthError, Identity, Role, allowed
from ragtune.service.keys import KeyStore

# Spelled out by hand from the issue (reader: ask, search, classify, run; editor: + documents, sync;
# admin: + keys, models, audit), so a change to the table in identity.py must be a deliberate one.
EXPECTED = {
    Role.READER: {"ask", "search", "classify", "run"},
    Role.EDITOR: {"ask", "search", "classify", "run", "documents", "sync"},
    Role.ADMIN: {"ask", "search", "classify", "run", "documents", "sync", "keys", "models", "audit"},
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("action", list(Action))
def test_every_role_and_action(role: Role, action: Action) -> None:
    assert allowed(role, action) is (action.value in EXPECTED[role])


def test_actions_are_the_nine_of_the_issue() -> None:
    assert {a.value for a in Action} == EXPECTED[Role.ADMIN]
    assert allowed("editor", "sync") and not allowed("editor", "keys")  # plain names, as a route declares them
    with pytest.raises(ValueError):
        allowed("reader", "delete_everything")  # an unknown action is never allowed silently


def test_roles_are_ordered_by_rank_not_alphabet() -> None:
    assert Role.READER < Role.EDITOR < Role.ADMIN
    assert Role.ADMIN > Role.READER and Role.ADMIN >= Role.ADMIN and not Role.READER >= Role.EDITOR
    assert max([Role.ADMIN, Role.READER, Role.EDITOR]) is Role.ADMIN
    assert sorted(Role) == [Role.READER, Role.EDITOR, Role.ADMIN]


def test_auth_error_codes_and_statuses() -> None:
    authentication = ["missing_credentials", "malformed_credentials", "invalid_key", "revoked_key",
                      "expired_token", "token_not_yet_valid", "wrong_issuer", "wrong_audience", "unknown_key_id",
                      "algorithm_not_allowed", "invalid_token"]
    for code in authentication:
        assert AuthError(code, "m").status == 401
    assert AuthError("forbidden", "m").status == 403
    assert set(authentication) | {"forbidden", "provider_unavailable"} == set(AUTH_CODES)
    with pytest.raises(ValueError, match="unknown auth error code"):
        AuthError("oops", "m")
    err = AuthError("expired_token", "sign in again")
    assert err.to_dict() == {"error": {"code": "expired_token", "message": "sign in again"}}
    assert err.www_authenticate == 'Bearer realm="ragtune", error="invalid_token"'
    assert AuthError("missing_credentials", "m").www_authenticate == 'Bearer realm="ragtune"'


def test_identity_cannot_be_built_from_request_data(tmp_path: Path) -> None:
    principal = Principal("mallory", frozenset({"admins"}))
    fields = {"principal": principal, "role": Role.ADMIN, "kind": "api_key", "credential_id": "x"}
    with pytest.raises(TypeError, match="verified credential"):
        Identity(**fields)
    with pytest.raises(TypeError, match="verified credential"):
        Identity(principal, Role.ADMIN, "api_key", "x")
    forged = object.__new__(Identity)
    with pytest.raises(AttributeError, match="immutable"):
        forged.principal = principal
    assert not any(hasattr(Identity, name) for name in ("from_dict", "model_validate", "parse_obj", "from_json"))

    store = KeyStore(tmp_path / "keys.sqlite")
    _, key = store.create("alice", ["staff"], Role.READER)
    real = store.authenticate(key)
    with pytest.raises(AttributeError, match="immutable"):
        real.role = Role.ADMIN
    with pytest.raises(TypeError):
        dataclasses.replace(real, role=Role.ADMIN)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="authenticate the credential again"):
        pickle.dumps(real)
    with pytest.raises(TypeError):
        copy.copy(real)
    # The one front-end entry point takes the Authorization header and the verifiers, nothing a request sets.
    assert list(inspect.signature(credentials.authenticate).parameters) == ["authorization_header", "keys", "oidc"]


def test_require_raises_forbidden_with_the_role_needed(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    reader = store.authenticate(store.create("alice", [], Role.READER)[1])
    reader.require(Action.ASK)
    with pytest.raises(AuthError) as info:
        reader.require(Action.KEYS)
    assert (info.value.code, info.value.status) == ("forbidden", 403)
    assert "admin" in info.value.message
    assert store.authenticate(store.create("root", [], Role.ADMIN)[1]).can(Action.AUDIT)


def test_the_identity_layer_loads_no_heavy_library() -> None:
    # The CLI, MCP server and service share this layer; `ragtune keys` must start as fast as `ragtune --help`.
    code = ("import sys\nfrom ragtune.service.keys_cli import keys_app\nimport ragtune.service.credentials\n"
            "try:\n    keys_app(['list', '--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = ['torch', 'transformers', 'sentence_transformers', 'sklearn', 'scipy', 'lancedb', 'setfit',\n"
            "         'onnxruntime', 'pandas', 'pyarrow', 'fastapi', 'jwt', 'cryptography']\n"
            "print('LOADED', [m for m in heavy if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "LOADED []" in out.stdout, out.stdout + out.stderr
