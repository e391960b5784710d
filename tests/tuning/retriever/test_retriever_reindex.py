"""`reindex` is resumable after a kill, and a kill never leaves searches mixing two embedders."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.core import Principal
from ragtune.errors import ConfigError
from ragtune.project import Project
from ragtune.tuning.retriever.corpus import acl_principal, read_corpus

KILLER = """
import os, signal, sys
from ragtune.index_reembed import reembed_index
from ragtune.project import Project
project, spec, phase, after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
base = Project.open(project)
s = base.settings
target = Project(s.model_copy(update={"embedder": s.embedder.model_copy(update={"model": spec})}))
def progress(p, done, total):
    if p == phase and done >= after:
        os.kill(os.getpid(), signal.SIGKILL)  # no clean-up of any kind
pinned = target.embedder.spec  # as the CLI does: registry:ret -> registry:ret@1
reembed_index(target.store, target.embedder, pinned, s.index_dir / ".reembed", batch_size=2, progress=progress)
"""


def kill_reindex(project: Path, phase: str, after: int) -> None:
    run = subprocess.run([sys.executable, "-c", KILLER, str(project), "registry:ret", phase, str(after)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]


def reindex_cli(project: Path) -> str:
    result = CliRunner().invoke(app, ["reindex", "--embedder", "registry:ret", "--batch-size", "2", "-p",
                                      str(project)], catch_exceptions=False, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    return result.output


def assert_fully_reindexed(project: Path) -> None:
    proj = Project.open(project)
    assert proj.settings.embedder.model == "registry:ret@1"  # ragtune.yaml now names the pinned version
    assert proj.store.state.meta()["embedder"] == proj.embedder.fingerprint
    for chunk in read_corpus(proj.store).chunks.values():  # every chunk holds the tuned model's vector
        principal = acl_principal(chunk.acl)
        assert principal is not None
        vector = proj.embedder.embed([chunk.search_text])[0]
        (top, score), *_ = proj.store.dense_search(vector, principal, 1)
        assert top == chunk.chunk_id and score > 0.999
    assert proj.search("who closes the intake valve", Principal("ann")).hits
    assert not (proj.settings.index_dir / ".reembed").exists()


def test_reindex_resumes_after_a_kill_while_embedding(project_copy: Path) -> None:
    before = Project.open(project_copy).store.count()
    kill_reindex(project_copy, "embed", 6)  # three batches of two staged, then SIGKILL
    staged = list((project_copy / "index" / ".reembed").rglob("batch-*.npz"))
    assert len(staged) == 3
    base = Project.open(project_copy)  # the index was not touched: the old embedder still searches it
    assert base.search("who closes the intake valve", Principal("ann")).hits
    out = reindex_cli(project_copy)
    assert "6 reused from an interrupted run" in out and f"re-embedded {before - 1} chunks" in out
    assert "1 document(s) readable by nobody were dropped" in out
    assert_fully_reindexed(project_copy)


def test_a_kill_while_switching_refuses_searches_until_rerun(project_copy: Path) -> None:
    kill_reindex(project_copy, "switch", 0)  # after the marker is written, before the commit
    meta = json.loads((project_copy / "index" / "meta.json").read_text())
    assert meta["reindex"]["model"] == "registry:ret@1"
    for model in ("minilm", "registry:ret"):  # neither embedder may search a half-switched index
        config = project_copy / "ragtune.yaml"
        config.write_text(config.read_text().replace("model: minilm", f"model: {model}"))
        with pytest.raises(ConfigError, match="unfinished `ragtune reindex --embedder registry:ret@1`"):
            Project.open(project_copy).search("intake valve", Principal("ann"))
    reindex_cli(project_copy)
    assert_fully_reindexed(project_copy)
