"""A real uvicorn server on 127.0.0.1 for one project, for tests that need their own settings (tiny limits, their
own registry) so the shared ``server`` fixture is not changed by them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from helpers import write

from ragtune.config import init_project
from ragtune.project import Project
from ragtune.server.app import create_app
from ragtune.server.local import free_port, wait_ready


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


@contextmanager
def serve(project: Project) -> Iterator[str]:
    """Serve ``project`` until the block ends; yields the base URL once ``/readyz`` answers 200."""
    server = uvicorn.Server(uvicorn.Config(create_app(project), host="127.0.0.1", port=free_port(),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.config.port}"
    if not wait_ready(url, 120):
        raise RuntimeError("the test server never became ready")
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
