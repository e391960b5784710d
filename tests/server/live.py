"""A real uvicorn server on 127.0.0.1 for one project, for tests that need their own settings (tiny limits, their
own registry) so the shared ``server`` fixture is not changed by them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers import write

from ragtune.config import init_project
from ragtune.project import Project


def small_project(root: Path, service: dict[str, Any] | None = None) -> Project:
    """A project with one ops document (readable by group ops) and ``service`` settings overridden."""
    write(root / "docs" / "ops" / "backups.md", "# Backups\n\nBackups are kept for ninety days in two regions.\n")
    init_project(root / "p")
    project = Project.open(root / "p")
    if service:
        project.settings = project.settings.model_copy(update={
            "service": project.settings.service.model_copy(update=service)})
    from ragtune.ingest.acl import parse_acl_option

    project.ingest(root / "docs", parse_acl_option("group:ops"))
    return project
