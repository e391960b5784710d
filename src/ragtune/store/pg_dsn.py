"""The PostgreSQL store's connection string: where it comes from, whether it holds a password, how to hide it.

The password never lives in ``ragtune.yaml``. The whole DSN (password included) comes from, in order:
``$RAGTUNE_STORE_DSN``; the file named by ``$RAGTUNE_STORE_DSN_FILE`` (a platform-mounted secret); ``store_dsn``
in the secrets file (``$RAGTUNE_SECRETS_FILE``, default ``~/.config/ragtune/secrets.yaml``, owner-only, like the
LLM key); else ``store.dsn`` from the settings, which may name host, database and user but no password (libpq
then finds it in ``PGPASSWORD`` or ``~/.pgpass`` as usual). No message here or in the store ever quotes a DSN.

Only the standard library is imported at module level, so ``config.py`` can check a DSN cheaply.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ragtune.errors import ConfigError
from ragtune.security.redact import redact
from ragtune.security.secret_files import read_secret_file, read_secrets_file_key

DSN_ENV = "RAGTUNE_STORE_DSN"
SECRETS_KEY = "store_dsn"
WHERE = (f"give the whole DSN in {DSN_ENV} (or a file named by {DSN_ENV}_FILE, or `{SECRETS_KEY}: ...` in "
         "~/.config/ragtune/secrets.yaml), or leave the password to libpq (PGPASSWORD or ~/.pgpass)")


def parse_dsn(dsn: str) -> dict[str, str]:
    """The DSN's parameters as libpq reads them (URL or ``key=value`` form); ConfigError without quoting it."""
    from psycopg import conninfo

    try:
        return {k: str(v) for k, v in conninfo.conninfo_to_dict(dsn).items() if v is not None}
    except Exception:  # libpq's message quotes the part it could not parse, which may be the password
        raise ConfigError("the PostgreSQL DSN is not a valid connection string (expected e.g. "
                          "postgresql://USER@HOST:5432/DATABASE or 'host=HOST dbname=DATABASE user=USER')") from None


def dsn_has_password(dsn: str) -> bool:
    """Whether the DSN carries a password (``user:PASSWORD@`` or a ``password`` parameter)."""
    return bool(parse_dsn(dsn).get("password"))


def dsn_password(dsn: str) -> str | None:
    """The DSN's password, or None (also for a DSN libpq cannot parse)."""
    try:
        return parse_dsn(dsn).get("password") or None
    except ConfigError:
        return None


def redact_dsn(text: str, dsns: Iterable[str] = ()) -> str:
    """``text`` without the password of any of ``dsns`` and without any credential-shaped substring."""
    secrets = [p for p in (dsn_password(d) for d in dsns) if p]
    return redact(text, secrets)


def describe_dsn(dsn: str) -> str:
    """``user@host:port/dbname`` for messages (never the password); ``the configured database`` if unparsable."""
    try:
        params = parse_dsn(dsn)
    except ConfigError:
        return "the configured database"
    user = params.get("user", "")
    host = params.get("host", "") or params.get("hostaddr", "") or "localhost"
    port = params.get("port", "")
    where = f"{user + '@' if user else ''}{host}{':' + port if port else ''}/{params.get('dbname', '')}"
    return redact(where)


def resolve_dsn(configured: str | None, secrets_file: Path | None = None) -> str:
    """The DSN to connect with: the environment, a mounted secret file, the secrets file, else ``configured``.

    Raises ConfigError naming where to put it when none is set.
    """
    dsn = (os.environ.get(DSN_ENV) or read_secret_file(DSN_ENV) or read_secrets_file_key(SECRETS_KEY, secrets_file)
           or configured)
    if not dsn:
        raise ConfigError(f"store.kind postgres needs a database: set store.dsn in ragtune.yaml (no password) or "
                          f"{WHERE.removeprefix('give ')}")
    parse_dsn(dsn)
    return dsn


__all__ = ["DSN_ENV", "SECRETS_KEY", "describe_dsn", "dsn_has_password", "dsn_password", "parse_dsn",
           "redact_dsn", "resolve_dsn"]
