"""Ingest progress (issue 19): the main bar counts chunks embedded out of a known total, with chunks/s and ETA."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from helpers import write
from rich.console import Console

from ragtune.cli_common import _progress, _RichSyncProgress
from ragtune.config import Settings
from ragtune.core import Acl
from ragtune.ingest.sync import Syncer
from ragtune.models.embedder import MiniLMEmbedder
from ragtune.project import Project
from ragtune.store.lance import LanceStore


class Recorder:
    """A progress receiver with the optional ``chunks_total``: records every call in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []  # the order of the calls, by kind
        self.files: list[tuple[str, str]] = []
        self.totals: list[int] = []
        self.embedded: list[int] = []

    def start(self, total_files: int) -> None:
        self.calls.append("start")

    def file_done(self, path: Path, status: str) -> None:
        self.calls.append("file_done")
        self.files.append((path.name, status))

    def chunks_total(self, n: int) -> None:
        self.calls.append("chunks_total")
        self.totals.append(n)

    def chunks_embedded(self, n: int) -> None:
        self.calls.append("chunks_embedded")
        self.embedded.append(n)


class ThreeMethods:
    """The protocol as the advisor's bake-off implements it: no ``chunks_total``."""

    def __init__(self) -> None:
        self.embedded = 0

    def start(self, total_files: int) -> None: ...

    def file_done(self, path: Path, status: str) -> None: ...

    def chunks_embedded(self, n: int) -> None:
        self.embedded += n


def docs(root: Path, n: int = 6) -> Path:
    for i in range(n):
        body = " ".join(f"Sentence {j} of document {i} is about topic{i} and item{j}." for j in range(30 * (i % 3 + 1)))
        write(root / f"doc{i}.md", f"---\nacl: public\n---\n# Doc {i}\n\n{body}\n")
    return root


def test_the_chunk_total_is_known_before_embedding_and_equals_the_chunks_written(
        tmp_path: Path, embedder: MiniLMEmbedder) -> None:
    store = LanceStore(tmp_path / "index")
    rec = Recorder()
    report = Syncer(store, embedder, max_tokens=64, overlap_tokens=8, batch_chunks=4).sync(docs(tmp_path / "d"),
                                                                                          progress=rec)
    assert report.chunks_embedded == store.count() > 8  # several batches
    assert rec.totals[-1] == store.count() == sum(rec.embedded) and len(rec.embedded) > 2
    last_total = max(i for i, k in enumerate(rec.calls) if k == "chunks_total")
    assert last_total < rec.calls.index("chunks_embedded")  # the exact total came before the slow part
    assert rec.totals == sorted(rec.totals)  # a running total while files are read: it only grows
    assert len(rec.files) == 6 and all(status == "new" for _, status in rec.files)


def test_each_new_file_is_reported_before_its_batch_is_written(tmp_path: Path, embedder: MiniLMEmbedder) -> None:
    store = LanceStore(tmp_path / "index")

    class StopAtThirdFile(Recorder):
        def file_done(self, path: Path, status: str) -> None:
            super().file_done(path, status)
            if len(self.files) == 3:
                raise KeyboardInterrupt("budget")

    rec = StopAtThirdFile()
    with pytest.raises(KeyboardInterrupt):
        Syncer(store, embedder, max_tokens=64, overlap_tokens=8, batch_chunks=1).sync(docs(tmp_path / "d"),
                                                                                     progress=rec)
    written = {Path(d.source_path).name for d in store.documents()}
    assert written == {"doc0.md", "doc1.md"}  # the third file's batch was never embedded
    assert sum(rec.embedded) == store.count()


def test_rounds_beyond_plan_chunks_keep_the_total_exact_at_the_end(tmp_path: Path, embedder: MiniLMEmbedder) -> None:
    store = LanceStore(tmp_path / "index")
    rec = Recorder()
    Syncer(store, embedder, max_tokens=64, overlap_tokens=8, batch_chunks=4, plan_chunks=10).sync(
        docs(tmp_path / "d"), progress=rec)
    assert rec.totals[-1] == sum(rec.embedded) == store.count()
    assert len(set(rec.totals)) > 1 and rec.calls.index("chunks_embedded") < max(
        i for i, k in enumerate(rec.calls) if k == "chunks_total")  # a second round grew the total again


def test_a_receiver_without_chunks_total_still_works(tmp_path: Path, embedder: MiniLMEmbedder) -> None:
    store = LanceStore(tmp_path / "index")
    three = ThreeMethods()
    report = Syncer(store, embedder).sync(docs(tmp_path / "d"), progress=three)
    assert report.ingested == 6 and three.embedded == store.count()


def test_an_unchanged_sync_reports_a_total_of_zero(tmp_path: Path, embedder: MiniLMEmbedder) -> None:
    store = LanceStore(tmp_path / "index")
    root = docs(tmp_path / "d")
    Syncer(store, embedder).sync(root)
    rec = Recorder()
    Syncer(store, embedder).sync(root, progress=rec)
    assert rec.totals == [0] and rec.embedded == []
    assert [status for _, status in rec.files] == ["unchanged"] * 6


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_the_cli_bar_shows_chunks_embedded_of_the_total_with_rate_and_files_in_80_columns(
        tmp_path: Path, embedder: MiniLMEmbedder) -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=80)
    proj = Project(Settings(project_dir=tmp_path / "proj"), embedder=embedder)
    with _progress(console) as bar:
        report = proj.ingest(docs(tmp_path / "d"), Acl(public=True), _RichSyncProgress(bar))
    screens = [s for s in ANSI.sub("", buf.getvalue()).replace("\r", "\n").split("\n") if s.strip()]
    final = screens[-1]
    n = report.chunks_embedded
    assert f"{n}/{n} chunks" in final and re.search(r"\d+ chunks/s", final) and "6/6 files" in final, final
    assert "ETA 0:00:00" in final
    assert all(len(line) <= 80 for line in screens)
