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


def test_document_chunks_are_the_readable_ones_in_order_past_one_batch(tmp_path: Path) -> None:
    sections = "".join(f"## Part {i}\n\nClause {i} of the long policy applies.\n\n" for i in range(70))
    write(tmp_path / "docs" / "hr" / "long.md", "---\nacl: {groups: [hr]}\n---\n# Long\n\n" + sections)
    init_project(tmp_path / "p")
    project = Project.open(tmp_path / "p")
    project.ingest(tmp_path / "docs")
    [doc] = project.sources()
    assert doc.chunks > 64  # more than one fetch batch
    chunks = project.document_chunks(doc.doc_id, Principal("hana", frozenset({"hr"})))
    assert len(chunks) == doc.chunks and [c.ordinal for c in chunks] == list(range(doc.chunks))
    assert "Clause 69 " in chunks[-1].text
    assert project.document_chunks(doc.doc_id, Principal("otto", frozenset({"ops"}))) == []
    assert project.document_chunks("0" * 16, Principal("hana", frozenset({"hr"}))) == []
