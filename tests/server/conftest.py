"""A real ragtune server (uvicorn on 127.0.0.1, a free port) over a real project with two departments' documents,
and API keys for several users and roles."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx2
import pytest
import uvicorn
from helpers import write

from ragtune.config import init_project
from ragtune.project import Project
from ragtune.server.app import create_app
from ragtune.server.local import free_port, wait_ready


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
    port = free_port()
    config = uvicorn.Config(create_app(project), host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    if not wait_ready(url, 120):
        raise RuntimeError("the test server never became ready")
    yield Server(url, project, keys)
    uv.should_exit = True
    thread.join(timeout=30)


# The shared server must not throttle the tests that share it (several poll it quickly): its per-key rate
# limit is set high here; tests/server/test_limits.py checks a tiny one on its own server.
__import__("os").environ.setdefault("RAGTUNE_SERVICE__RATE_LIMIT_PER_MINUTE", "1000000")
