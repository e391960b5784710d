"""``ragtune keys create|list|revoke`` through the Typer app (typer.testing.CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ragtune.config import init_project, load_settings
from ragtune.errors import AclError, ConfigError
from ragtune.service.identity import AuthError, Role
from ragtune.service.keys import KEY_PATTERN, KeyStore
from ragtune.service.keys_cli import keys_app

runner = CliRunner()


def setup(tmp_path: Path) -> tuple[Path, KeyStore]:
    init_project(tmp_path / "p")
    return tmp_path / "p", KeyStore.from_settings(load_settings(tmp_path / "p"))


def test_create_prints_the_key_once_and_it_works(tmp_path: Path) -> None:
    root, store = setup(tmp_path)
    result = runner.invoke(keys_app, ["create", "--user", "alice", "--groups", "legal, staff", "--role", "Editor",
                                      "--note", "[bold]ci[/bold]", "-p", str(root)])
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert KEY_PATTERN.match(key)
    assert "cannot be shown again" in result.stderr
    assert (result.stdout + result.stderr).count(key) == 1  # printed once, never in the warning
    ident = store.authenticate(key)
    assert (ident.principal.user, ident.principal.groups, ident.role) == ("alice", {"legal", "staff"}, Role.EDITOR)

    listed = runner.invoke(keys_app, ["list", "-p", str(root)], env={"COLUMNS": "250"})
    assert listed.exit_code == 0
    assert key not in listed.output and key.split("_", 2)[2][:12] not in listed.output
    assert "[bold]ci[/bold]" in listed.output  # a note is printed as text, not as Rich markup
    assert "alice" in listed.output and "editor" in listed.output


def test_json_output_and_last_used(tmp_path: Path) -> None:
    root, store = setup(tmp_path)
    created = runner.invoke(keys_app, ["create", "-u", "bob", "-r", "reader", "--json", "-p", str(root)])
    assert created.exit_code == 0, created.output
    data = json.loads(created.stdout)
    assert data["user"] == "bob" and data["role"] == "reader" and data["groups"] == []
    assert data["last_used_at"] is None
    store.authenticate(data["key"])
    rows = json.loads(runner.invoke(keys_app, ["list", "--json", "-p", str(root)]).stdout)
    assert [r["key_id"] for r in rows] == [data["key_id"]]
    assert "key" not in rows[0] and data["key"] not in json.dumps(rows)
    assert rows[0]["last_used_at"] is not None and rows[0]["last_used_at"].endswith("+00:00")  # ISO 8601 UTC


def test_revoke(tmp_path: Path) -> None:
    root, store = setup(tmp_path)
    record, key = store.create("carol", [], Role.ADMIN)
    result = runner.invoke(keys_app, ["revoke", record.key_id, "-p", str(root)])
    assert result.exit_code == 0 and "revoked" in result.stdout
    try:
        store.authenticate(key)
        raise AssertionError("a revoked key authenticated")
    except AuthError as exc:
        assert exc.code == "revoked_key"
    again = runner.invoke(keys_app, ["revoke", record.key_id, "-p", str(root)])
    assert again.exit_code == 0 and "already revoked" in again.stdout
    assert "revoked" in runner.invoke(keys_app, ["list", "-p", str(root)]).output


def test_bad_input_exits_nonzero_with_the_reason(tmp_path: Path) -> None:
    root, store = setup(tmp_path)
    bad_role = runner.invoke(keys_app, ["create", "-u", "a", "-r", "owner", "-p", str(root)])
    assert bad_role.exit_code == 2 and "owner" in bad_role.output
    no_role = runner.invoke(keys_app, ["create", "-u", "a", "-p", str(root)])
    assert no_role.exit_code == 2 and "--role" in no_role.output
    bad_user = runner.invoke(keys_app, ["create", "-u", "two words", "-r", "reader", "-p", str(root)])
    assert bad_user.exit_code == 1 and isinstance(bad_user.exception, AclError)
    unknown = runner.invoke(keys_app, ["revoke", "0123456789abcdef", "-p", str(root)])
    assert unknown.exit_code == 1 and isinstance(unknown.exception, ConfigError)
    assert "keys list" in str(unknown.exception)
    assert store.list() == []
    empty = runner.invoke(keys_app, ["list", "-p", str(root)])
    assert empty.exit_code == 0 and "no API keys yet" in empty.output


def test_help_explains_roles() -> None:
    result = runner.invoke(keys_app, ["create", "--help"])
    assert result.exit_code == 0
    assert "cannot be shown again" in result.output.replace("\n", " ") or "ONCE" in result.output
    assert "documents" in result.output and "audit" in result.output
