"""A real ragtune server (uvicorn on 127.0.0.1, a free port) over a real project with two departments' documents,
and API keys for several users and roles."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx2
import pytest
from helpers import serve_project, write

from ragtune.config import init_project
from ragtune.project import Project


@dataclass
class Server:
    url: str
    project: Project
    keys: dict[str, str]  # name -> key text

    def client(self, key: str | None = None) -> httpx2.Client:
        headers = {"Authorization": f"Bearer {self.keys[key]}"} if key else {}
        return httpx2.Client(base_url=self.url, headers=headers, timeout=60)


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("server")
    write(root / "docs" / "hr" / "_acl.yaml", "acl: {groups: [hr]}\n")
    write(root / "docs" / "hr" / "leave.md", "# Leave\n\nParental leave lasts sixteen weeks at full pay.\n")
    write(root / "docs" / "ops" / "_acl.yaml", "acl: {groups: [ops]}\n")
    write(root / "docs" / "ops" / "backups.md", "# Backups\n\nBackups are kept for ninety days in two regions.\n")
    init_project(root / "p")
    project = Project.open(root / "p")
    project.ingest(root / "docs")
    keys = {}
    for name, user, groups, role in [("hr", "hana", ["hr"], "reader"), ("ops", "otto", ["ops"], "reader"),
                                     ("editor", "eve", ["ops"], "editor"), ("admin", "ada", ["hr", "ops"], "admin"),
                                     ("revoked", "rex", ["hr"], "reader")]:
        record, keys[name] = project.key_store.create(user, groups, role)
        if name == "revoked":
            project.key_store.revoke(record.key_id)
    with serve_project(project) as url:
        yield Server(url, project, keys)
