"""Project as the composition root: the index knows which embedder filled it (issue 11)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import write

from ragtune.config import init_project
from ragtune.core import Acl, Principal
from ragtune.errors import ConfigError
from ragtune.project import Project


def test_an_index_refuses_an_embedder_with_another_fingerprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    write(tmp_path / "docs" / "a.md", "# A\n\nThe ibis policy covers travel.\n")
    init_project(tmp_path / "p")
    project = Project.open(tmp_path / "p")
    project.ingest(tmp_path / "docs", Acl(public=True))
    recorded = project.store.state.meta()["embedder"]
    assert recorded == project.embedder.fingerprint and "/384" in recorded
    assert project.search("ibis policy", Principal("ann")).hits
    monkeypatch.setenv("RAGTUNE_EMBEDDER__RUNTIME", "torch")
    other = Project.open(tmp_path / "p")
    assert other.embedder.fingerprint != recorded
    with pytest.raises(ConfigError, match="built with embedder .* ingest every root again"):
        other.search("ibis policy", Principal("ann"))
    with pytest.raises(ConfigError, match="built with embedder"):
        other.sync()
