"""Shared fixtures: one real MiniLM embedder per test session, the local llama.cpp generator, and small real
corpora on disk."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("LANCE_LOG", "error")

from helpers import write  # noqa: E402

from ragtune.models.embedder import MiniLMEmbedder  # noqa: E402
from ragtune.models.generator import LlamaCppGenerator  # noqa: E402
from ragtune.observability import logs  # noqa: E402


@pytest.fixture(scope="session")
def embedder() -> MiniLMEmbedder:
    """The packaged all-MiniLM-L6-v2, loaded once for the whole run."""
    e = MiniLMEmbedder(batch_size=32, threads=2)
    e.warm_up()
    return e


@pytest.fixture(scope="module")
def local() -> Iterator[LlamaCppGenerator]:
    """The packaged SmolLM2 served by a real local llama.cpp server (one per test module), stopped after it."""
    gen = LlamaCppGenerator(threads=2)
    gen.warm_up()
    yield gen
    gen.close()


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What the ``ragtune`` logger writes as JSON lines during the test; the logger is restored afterwards."""
    logger = logging.getLogger("ragtune")
    level, propagate = logger.level, logger.propagate
    buf = io.StringIO()
    handler = logs.configure_logging("json", stream=buf)
    assert handler is not None
    yield buf
    logger.removeHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A small policy corpus with ACLs from front matter, a folder _acl.yaml and none at all."""
    root = tmp_path / "docs"
    write(root / "legal" / "_acl.yaml", "acl: {groups: [legal]}\n")
    write(
        root / "legal" / "retention.md",
        "---\ntitle: Retention policy\n---\n# Retention\n\n"
        "Customer records are kept for seven years after the account closes.\n\n"
        "## Backups\n\nBackups run nightly and are stored in two regions. Backups are deleted after 90 days.\n",
    )
    write(
        root / "legal" / "contracts" / "vendors.md",
        "# Vendor contracts\n\nEvery vendor contract must be reviewed by the legal team before signature.\n",
    )
    write(
        root / "handbook.md",
        "---\nacl: public\n---\n# Employee handbook\n\n"
        "Employees get 25 days of paid vacation per year. Remote work is allowed two days a week.\n",
    )
    write(
        root / "hr" / "salaries.md",
        "---\nacl: {users: [carol], groups: [hr]}\n---\n# Salary bands\n\n"
        "Engineers earn between 90,000 and 150,000 euros depending on level.\n",
    )
    write(root / "orphan.txt", "The orphan memo describes the secret merger with Initech next spring.\n")
    return root
