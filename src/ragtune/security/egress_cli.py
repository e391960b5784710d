"""Install the egress guard when a ``ragtune`` command starts, for the project that command will use.

The Typer app callback runs before the command parses its own options (and Click has already taken them out of
its context), so the project comes from the ``--project``/``-p`` argument in the command line (``sys.argv``), else
``$RAGTUNE_PROJECT_DIR``, else it is found from the current folder.
Where no project loads (``ragtune init`` in an empty folder, a broken ``ragtune.yaml``) only loopback is allowed:
the command itself reports the settings error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ragtune.security.egress import guard_from_settings


def project_argument(args: Sequence[str]) -> Path | None:
    """The folder given by ``--project DIR``, ``--project=DIR``, ``-p DIR`` or ``-pDIR`` in ``args``, else None."""
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg in ("--project", "-p"):
            return Path(args[i + 1]) if i + 1 < len(args) else None
        if arg.startswith("--project="):
            return Path(arg.split("=", 1)[1])
        if arg.startswith("-p") and not arg.startswith("--") and len(arg) > 2:
            return Path(arg[2:])
    return None


def guard_command(args: Sequence[str]) -> None:
    """Install the guard for the settings of the project a command with ``args`` runs on."""
    from ragtune.config import load_settings
    from ragtune.errors import RagtuneError

    try:
        settings = load_settings(project_argument(args))
    except (RagtuneError, OSError):  # the command itself reports it
        settings = None
    guard_from_settings(settings)
