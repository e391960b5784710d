"""Secrets kept in files: ``<NAME>_FILE`` names a file that holds the value of ``<NAME>``, and the owner-only
secrets file (``$RAGTUNE_SECRETS_FILE``, default ``~/.config/ragtune/secrets.yaml``) maps keys to secrets.

Container platforms (Docker and Kubernetes secrets, systemd ``LoadCredential``) hand a secret to a process as a
file rather than an environment variable, which ``ps`` and crash dumps can show. The file must be readable by
its owner only, like the secrets file, unless it is under ``/run/secrets`` or ``/var/run/secrets``, where
platforms mount secrets read-only. One trailing newline is dropped. No error ever quotes the file's content.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ragtune.errors import ConfigError

PLATFORM_SECRET_DIRS = (Path("/run/secrets"), Path("/var/run/secrets"))
FILE_SUFFIX = "_FILE"


def read_secret_file(variable: str) -> str | None:
    """The secret in the file named by ``$<variable>_FILE``; None when that variable is unset or empty.

    Raises ``ConfigError`` naming the variable and the path (never the content) when the file is missing,
    unreadable, readable by other users outside the platform secret folders, not UTF-8, or empty.
    """
    name = variable + FILE_SUFFIX
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    where = f"{name}={path}"
    if not path.is_file():
        raise ConfigError(f"{where}: no such file; point {name} at the file holding the secret, or unset it")
    if os.name == "posix" and not any(path.absolute().is_relative_to(d) for d in PLATFORM_SECRET_DIRS):
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(f"{where} is readable or writable by other users (mode {mode:04o}), so the secret is "
                              f"not secret: run `chmod 600 {path}`")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text; the file should hold the secret alone") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it ({exc.strerror or type(exc).__name__}); make it readable "
                          "by the user ragtune runs as") from None
    value = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
    if not value.strip():
        raise ConfigError(f"{where}: the file is empty; write the secret into it, or unset {name}")
    return value


def default_secrets_file() -> Path:
    """``$RAGTUNE_SECRETS_FILE``, else ``~/.config/ragtune/secrets.yaml``."""
    raw = os.environ.get("RAGTUNE_SECRETS_FILE")
    return Path(raw).expanduser() if raw else Path.home() / ".config" / "ragtune" / "secrets.yaml"


def read_secrets_file_key(key: str, path: Path | None = None) -> str | None:
    """The value of ``key`` in the secrets file (``path``, default :func:`default_secrets_file`); None when the
    file or the key is absent.

    The file must be readable by its owner only (like an ssh key). Raises ``ConfigError`` naming the path and
    what to do, never quoting the content (a YAML error gives the line number only: its message would quote it).
    """
    path = path or default_secrets_file()
    if not path.is_file():
        return None
    import yaml

    if os.name == "posix":
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(f"{path} is readable or writable by other users (mode {mode:04o}), so its secrets are "
                              f"not secret: run `chmod 600 {path}`")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; it should hold `{key}: ...`") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" near line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}; it should hold `{key}: ...`") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping such as `{key}: ...`")
    value = data.get(key)
    return str(value) if value else None
