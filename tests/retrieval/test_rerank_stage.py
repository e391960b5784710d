"""The reranking stage: its place between fusion and fetch, its latency row, and the ACL filter before it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from helpers import write

from ragtune.config import init_project
from ragtune.core import Acl, Principal
from ragtune.project import Project
from ragtune.retrieval.hybrid import HybridRetriever
from ragtune.retrieval.rerank import NoReranker, Reranker


class ShortestFirst:
    """A real (if simple-minded) reranker: prefers the shortest candidate text."""

    name = "shortest-first"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def rerank(self, query: str, candidates: Sequence[tuple[str, str]]) -> list[tuple[str, float]]:
        self.seen.extend(cid for cid, _ in candidates)
        return sorted(((cid, -float(len(text))) for cid, text in candidates), key=lambda x: -x[1])

    def warm_up(self) -> None:
        pass


def test_reranker_reorders_readable_candidates_and_is_timed(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs / "long.md", "---\nacl: public\n---\n# Long\n\n" + "Parking rules for the staff garage. " * 12 + "\n")
    write(docs / "short.md", "---\nacl: public\n---\n# Short\n\nParking is free.\n")
    write(docs / "hidden.md", "---\nacl: {groups: [hr]}\n---\n# Hidden\n\nParking.\n")
    init_project(tmp_path / "p")
    project = Project.open(tmp_path / "p")
    project.ingest(docs, Acl())
    assert isinstance(ShortestFirst(), Reranker) and isinstance(NoReranker(), Reranker)
    assert project.reranker is None and "rerank" not in project.search("parking", Principal("bob")).latency_ms
    reranker = ShortestFirst()
    retriever = HybridRetriever(project.store, project.embedder, top_k=2, reranker=reranker)
    got = retriever.retrieve("parking rules for the staff garage", Principal("bob"))
    assert [h.chunk.title for h in got.hits] == ["Short", "Long"]
    assert all(h.rerank_score is not None for h in got.hits)
    assert list(got.latency_ms) == ["embed_query", "dense", "lexical", "fuse", "rerank", "fetch"]
    hidden = {c.chunk_id for c in project.store.get_chunks([r.chunk_id for r in project.store.chunk_index()],
                                                            Principal("h", frozenset({"hr"}))).values()
              if c.title == "Hidden"}
    assert hidden and not hidden & set(reranker.seen)  # the reranker never sees what the principal cannot read


def test_only_the_first_candidates_are_reranked_and_the_rest_keep_the_fused_order(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    for i in range(6):
        write(docs / f"d{i}.md", "---\nacl: public\n---\n# Note " + str(i) + "\n\n" + "Parking rules. " * (i + 1)
              + "\n")
    write(docs / "hidden.md", "---\nacl: {groups: [hr]}\n---\n# Hidden\n\nParking rules.\n")
    init_project(tmp_path / "p")
    project = Project.open(tmp_path / "p")
    project.ingest(docs, Acl())
    bob = Principal("bob")
    fused = HybridRetriever(project.store, project.embedder, top_k=6).retrieve("parking rules", bob)
    reranker = ShortestFirst()
    got = HybridRetriever(project.store, project.embedder, top_k=6, reranker=reranker,
                          rerank_candidates=3).retrieve("parking rules", bob)
    order = [h.chunk.chunk_id for h in fused.hits]
    head = sorted(fused.hits[:3], key=lambda h: len(h.chunk.search_text))
    assert [h.chunk.chunk_id for h in got.hits] == [h.chunk.chunk_id for h in head] + order[3:]
    assert len(set(reranker.seen)) <= 3 and all(h.rerank_score is None for h in got.hits[3:])
    assert all(h.chunk.title != "Hidden" for h in got.hits)


def test_temporary_project_is_removed_and_takes_overrides() -> None:
    with Project.temporary(retrieval={"top_k": 3}) as sandbox:
        folder = sandbox.settings.project_dir
        assert folder.is_dir() and sandbox.retriever.top_k == 3
    assert not folder.exists()
