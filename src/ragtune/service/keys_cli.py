"""``ragtune keys create|list|revoke``: the project's API keys (``Authorization: Bearer KEY``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ragtune.cli_common import JsonOpt, ProjectOpt, err, out
from ragtune.config import load_settings
from ragtune.errors import ConfigError
from ragtune.service.identity import MINIMUM_ROLE, Role
from ragtune.service.keys import KeyStore, iso_time

keys_app = typer.Typer(
    help="API keys for the service, sent as `Authorization: Bearer KEY` (as OpenAI clients do). Each key "
         "carries the user, groups and role its requests run as; only its SHA-256 hash is stored "
         "(service.keys_path, default service/keys.sqlite in the project folder).",
    no_args_is_help=True,
)


def _store(project: Path | None) -> KeyStore:
    return KeyStore.from_settings(load_settings(project))


def _role_help() -> str:
    by_role = {r: [a.value for a, need in MINIMUM_ROLE.items() if need == r] for r in Role}
    return ("What the key may do: " + "; ".join(f"{r.value}: {'+ ' if r.rank else ''}{', '.join(acts)}"
                                                for r, acts in by_role.items()) + ".")


@keys_app.command("create")
def keys_create(
    user: Annotated[str, typer.Option("--user", "-u", help="The user the key's requests run as (no spaces "
                                      "or commas).")],
    role: Annotated[Role, typer.Option("--role", "-r", case_sensitive=False, help=_role_help())],
    groups: Annotated[str, typer.Option("--groups", "-g", help="Comma-separated groups of the user, e.g. "
                                        "legal,staff (default: none).")] = "",
    note: Annotated[str, typer.Option("--note", help="A reminder of what the key is for, shown by "
                                      "`keys list`.")] = "",
    json_out: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Create a key and print it ONCE: only its hash is kept, so it can never be shown again."""
    group_list = [g.strip() for g in groups.split(",")] if groups.strip() else []
    record, key = _store(project).create(user.strip(), group_list, role, note)
    warning = "store this key now: it cannot be shown again (only its hash is kept)"
    if json_out:
        out.print_json(json.dumps({**record.to_dict(), "key": key}))
    else:
        out.print(key, markup=False, highlight=False)
    err.print(f"[yellow]warning:[/yellow] {warning}. Key id {record.key_id} for user {escape(record.user)} "
              f"({record.role.value}); revoke it with `ragtune keys revoke {record.key_id}`.", highlight=False)


@keys_app.command("list")
def keys_list(json_out: JsonOpt = False, project: ProjectOpt = None) -> None:
    """Every key: id, user, groups, role, note, created, last used (ISO 8601 UTC), revoked. Never the key."""
    records = _store(project).list()
    if json_out:
        out.print_json(json.dumps([r.to_dict() for r in records]))
        return
    if not records:
        out.print("no API keys yet: run `ragtune keys create --user NAME --role reader`")
        return
    t = Table(show_header=True)
    for col in ("key id", "user", "groups", "role", "note", "created", "last used", "status"):
        t.add_column(col)
    for r in records:
        status = f"[red]revoked {iso_time(r.revoked_at)}[/red]" if r.revoked else "active"
        t.add_row(r.key_id, Text(r.user), Text(",".join(r.groups)), r.role.value, Text(r.note),
                  iso_time(r.created_at), iso_time(r.last_used_at) or "never", status)
    out.print(t)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id shown by `ragtune keys list` (not the key itself).")],
    project: ProjectOpt = None,
) -> None:
    """Revoke a key: every later request with it gets 401 revoked_key. Revoking twice is harmless."""
    store = _store(project)
    before = store.get(key_id)
    if before is None:
        raise ConfigError(f"no API key with id {key_id!r} in {store.path}: run `ragtune keys list` to see the ids")
    record = store.revoke(key_id)
    assert record is not None
    said = "was already revoked" if before.revoked else "revoked"
    out.print(f"key {record.key_id} (user {escape(record.user)}) {said}", highlight=False)
