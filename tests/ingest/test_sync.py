"""Incremental sync on a real folder: changes, deletions and re-permissioning take effect at once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from helpers import write

from ragtune.core import Acl, Principal
from ragtune.ingest.sync import Syncer
from ragtune.models.embedder import MiniLMEmbedder
from ragtune.retrieval.hybrid import HybridRetriever
from ragtune.store.lance import LanceStore

pytestmark = pytest.mark.integration

LEGAL = Principal("ann", frozenset({"legal"}))
OUTSIDER = Principal("bob")


class CountingEmbedder:
    """The real embedder, counting the texts it embeds (to prove what sync re-embeds)."""

    def __init__(self, inner: MiniLMEmbedder) -> None:
        self.inner = inner
        self.name, self.dim, self.window = inner.name, inner.dim, inner.window
        self.fingerprint = inner.fingerprint
        self.texts = 0

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += len(texts)
        return self.inner.embed(texts)

    def warm_up(self) -> None:
        self.inner.warm_up()


class DyingEmbedder(CountingEmbedder):
    """Simulates the process being killed during the n-th embedding batch."""

    def __init__(self, inner: MiniLMEmbedder, die_on_call: int) -> None:
        super().__init__(inner)
        self.calls, self.die_on_call = 0, die_on_call

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.calls == self.die_on_call:
            raise KeyboardInterrupt("killed")
        return super().embed(texts)


def sources(store: LanceStore, principal: Principal, query: str) -> set[str]:
    return {Path(c.source_path).name for c in
            store.get_chunks([cid for cid, _ in store.lexical_search(query, principal, 50)], principal).values()}


def test_first_sync_ingests_everything_and_counts_missing_acls(tmp_path: Path, corpus: Path,
                                                               embedder: MiniLMEmbedder) -> None:
    store = LanceStore(tmp_path / "index")
    report = Syncer(store, embedder).sync(corpus)
    assert (report.ingested, report.failed, report.deleted) == (5, [], 0)
    assert [Path(p).name for p in report.no_acl] == ["orphan.txt"]
    acls = {Path(d.source_path).name: d.acl for d in store.documents()}
    assert acls == {
        "retention.md": ("group:legal",), "vendors.md": ("group:legal",),  # inherited by the sub-folder
        "handbook.md": ("public",), "salaries.md": ("group:hr", "user:carol"), "orphan.txt": (),
    }


def test_resync_of_unchanged_corpus_embeds_nothing_and_writes_nothing(tmp_path: Path, corpus: Path,
                                                                       embedder: MiniLMEmbedder) -> None:
    store = LanceStore(tmp_path / "index")
    counting = CountingEmbedder(embedder)
    Syncer(store, counting).sync(corpus)
    first, version = counting.texts, store.version()
    report = Syncer(store, counting).sync(corpus)
    assert first > 0 and counting.texts == first
    assert (report.unchanged, report.chunks_embedded, report.changed) == (5, 0, False)
    assert store.version() == version


def test_change_delete_and_reacl_take_effect_immediately(tmp_path: Path, corpus: Path,
                                                         embedder: MiniLMEmbedder) -> None:
    store = LanceStore(tmp_path / "index")
    counting = CountingEmbedder(embedder)
    syncer = Syncer(store, counting)
    syncer.sync(corpus)
    assert sources(store, LEGAL, "seven") == {"retention.md"}

    # Change one file: only its chunks are re-embedded, and the old text is gone.
    write(corpus / "legal" / "retention.md", "# Retention\n\nCustomer records are kept for ten years.\n")
    before = counting.texts
    report = syncer.sync(corpus)
    assert (report.updated, report.unchanged) == (1, 4)
    assert counting.texts - before == report.chunks_embedded == 1
    assert sources(store, LEGAL, "seven") == set()
    assert sources(store, LEGAL, "ten") == {"retention.md"}

    # Delete a file: its chunks leave the index.
    (corpus / "handbook.md").unlink()
    assert syncer.sync(corpus).deleted == 1
    assert sources(store, OUTSIDER, "vacation") == set()
    assert "handbook.md" not in {Path(d.source_path).name for d in store.documents()}

    # Re-permission a folder: applied without re-embedding, visible to the new group only.
    write(corpus / "legal" / "_acl.yaml", "acl: {groups: [finance]}\n")
    before = counting.texts
    report = syncer.sync(corpus)
    assert report.reacl == 2 and counting.texts == before
    assert sources(store, LEGAL, "vendor contract") == set()
    assert sources(store, Principal("fay", frozenset({"finance"})), "vendor contract") == {"vendors.md"}

    # Give the orphan an ACL through the run default: it becomes retrievable.
    assert sources(store, OUTSIDER, "Initech") == set()
    syncer.sync(corpus, default_acl=Acl(users=frozenset({"bob"})))
    assert sources(store, OUTSIDER, "Initech") == {"orphan.txt"}


def test_bad_files_are_reported_and_skipped(tmp_path: Path, corpus: Path, embedder: MiniLMEmbedder) -> None:
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (corpus / "binary.md").write_bytes(b"\x00\x01\x02 binary")
    (corpus / "empty.txt").write_bytes(b"")
    (corpus / "image.png").write_bytes(b"\x89PNG")
    report = Syncer(LanceStore(tmp_path / "index"), embedder).sync(corpus)
    failed = {Path(p).name: reason for p, reason in report.failed}
    assert set(failed) == {"broken.pdf", "binary.md", "empty.txt"}
    assert "PDF" in failed["broken.pdf"] and "binary" in failed["binary.md"] and "empty" in failed["empty.txt"]
    # An unsupported format is skipped (listed, but not a failure that makes the command exit non-zero).
    skipped = {Path(p).name: reason for p, reason in report.skipped}
    assert set(skipped) == {"image.png"} and "unsupported" in skipped["image.png"]
    assert report.ingested == 5


def test_killed_ingestion_leaves_a_consistent_index_and_resumes(tmp_path: Path, embedder: MiniLMEmbedder) -> None:
    root = tmp_path / "docs"
    for i in range(6):
        write(root / f"doc{i}.md", f"---\nacl: public\n---\n# Doc {i}\n\nTopic number {i} is about item{i}.\n")
    store = LanceStore(tmp_path / "index")
    dying = DyingEmbedder(embedder, die_on_call=3)
    with pytest.raises(KeyboardInterrupt):
        Syncer(store, dying, batch_chunks=2).sync(root)
    partial = store.documents()
    assert 0 < len(partial) < 6
    assert all(d.chunks == 1 for d in partial)  # no document half-written
    counting = CountingEmbedder(embedder)
    report = Syncer(store, counting, batch_chunks=2).sync(root)
    assert report.ingested == 6 - len(partial) and report.unchanged == len(partial)
    assert counting.texts == 6 - len(partial)
    assert store.count() == 6
    retriever = HybridRetriever(store, embedder)
    assert retriever.retrieve("item5", OUTSIDER).hits[0].chunk.source_path.endswith("doc5.md")
