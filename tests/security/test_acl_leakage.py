"""Property tests: whatever the corpus, ACLs and principal, nothing outside the principal's rights leaks out
through hits, snippets or citations, and nothing readable is lost to unreadable competition.

The answerer-level property needs the real embedder and stays here; the store-level one ships in
``ragtune.testing.store_properties`` (so every backend runs it) and runs on LanceStore at the end."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragtune.answer.extractive import ExtractiveAnswerer
from ragtune.core import Acl, Chunk, Principal
from ragtune.models.embedder import MiniLMEmbedder
from ragtune.retrieval.hybrid import HybridRetriever, Retrieval
from ragtune.store.base import Store
from ragtune.store.lance import LanceStore
from ragtune.testing.store_properties import AclLeakagePropertyTest

SENTENCES = [
    "Backups run nightly and are stored in two regions.",
    "Customer records are kept for seven years.",
    "Employees get 25 days of paid vacation per year.",
    "The merger with Initech closes next spring.",
    "Engineers earn between 90,000 and 150,000 euros.",
    "Passwords must be rotated every ninety days.",
    "Vendor contracts are reviewed by the legal team.",
    "Security incidents are reported within 72 hours.",
]
QUESTIONS = [
    "How long are customer records kept?", "When do backups run?", "How much do engineers earn?",
    "What is the password policy?", "When does the merger close?", "How are incidents reported?",
]
USERS = ["ann", "bob", "carol"]
GROUPS = ["legal", "hr", "eng"]


@pytest.fixture(scope="module")
def vectors(embedder: MiniLMEmbedder) -> dict[str, np.ndarray]:
    """Real MiniLM vectors for the sentence pool and questions, computed once."""
    texts = SENTENCES + QUESTIONS
    return dict(zip(texts, embedder.embed(texts), strict=True))


class PoolEmbedder:
    """The real MiniLM vectors, looked up from the precomputed pool (so hypothesis can run many examples)."""

    name, dim, window = "pool", 384, 256

    def __init__(self, vectors: dict[str, np.ndarray], fallback: MiniLMEmbedder) -> None:
        self.vectors, self.fallback = vectors, fallback

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in texts if t not in self.vectors]
        if missing:
            self.vectors.update(zip(missing, self.fallback.embed(missing), strict=True))
        return np.stack([self.vectors[t] for t in texts])

    @property
    def fingerprint(self) -> str:
        return "pool:" + self.fallback.fingerprint  # the same vectors as the real model's

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.fallback.count_tokens(texts)

    def warm_up(self) -> None:
        pass


acls = st.builds(
    Acl,
    users=st.frozensets(st.sampled_from(USERS), max_size=2),
    groups=st.frozensets(st.sampled_from(GROUPS), max_size=2),
    public=st.booleans(),
)
docs = st.lists(st.tuples(st.lists(st.sampled_from(SENTENCES), min_size=1, max_size=3), acls),
                min_size=1, max_size=8)
principals = st.builds(Principal, user=st.sampled_from(USERS + ["mallory"]),
                       groups=st.frozensets(st.sampled_from(GROUPS), max_size=2))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corpus=docs, principal=principals, question=st.sampled_from(QUESTIONS), k=st.integers(1, 6))
def test_no_hit_snippet_or_citation_outside_the_principals_rights(
    vectors: dict[str, np.ndarray], embedder: MiniLMEmbedder, corpus: list[tuple[list[str], Acl]],
    principal: Principal, question: str, k: int,
) -> None:
    pool = PoolEmbedder(vectors, embedder)
    folder = Path(tempfile.mkdtemp())
    try:
        store = LanceStore(folder)
        chunks = []
        for d, (sentences, acl) in enumerate(corpus):
            for i, s in enumerate(sentences):
                chunks.append(Chunk(
                    chunk_id=f"d{d}-{i:05d}", doc_id=f"d{d}", source_path=f"/src/d{d}.md", title=f"Doc {d}",
                    section_path=(), page=None, char_start=0, char_end=len(s), text=s, content_hash="",
                    doc_hash=f"h{d}", mtime=0.0, acl=tuple(acl.tokens()), ordinal=i,
                ))
        store.replace_documents(sorted({c.doc_id for c in chunks}), chunks,
                                pool.embed([c.search_text for c in chunks]), synced_at=0.0)
        readable = {c.chunk_id for c in chunks if principal.can_read(c.acl)}

        retrieval = HybridRetriever(store, pool, top_k=k, lexical_k=k, dense_k=k).retrieve(question, principal)
        hit_ids = [h.chunk.chunk_id for h in retrieval.hits]
        assert set(hit_ids) <= readable
        # Pre-filtering: top-k is filled from readable chunks, never starved by unreadable ones.
        assert len(hit_ids) == min(k, len(readable))

        answer = ExtractiveAnswerer(pool, min_relevance=-1.0).answer(question, retrieval, principal)
        for citation in answer.citations:
            assert citation.chunk.chunk_id in readable
            assert citation.snippet in citation.chunk.text
        unreadable_text = {c.text for c in chunks if c.chunk_id not in readable} - {
            c.text for c in chunks if c.chunk_id in readable}
        for text in unreadable_text:
            assert text not in answer.text
        if not readable:
            assert answer.abstained and not answer.citations
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_answerer_drops_hits_the_principal_cannot_read(vectors: dict[str, np.ndarray],
                                                        embedder: MiniLMEmbedder) -> None:
    """Even if a caller hands it unreadable hits, the answerer never quotes them."""
    from ragtune.core import Hit

    secret = Chunk(chunk_id="s-00000", doc_id="s", source_path="/s.md", title="S", section_path=(), page=None,
                   char_start=0, char_end=10, text=SENTENCES[3], content_hash="", doc_hash="", mtime=0.0,
                   acl=("group:board",))
    pool = PoolEmbedder(vectors, embedder)
    answer = ExtractiveAnswerer(pool, min_relevance=-1.0).answer(
        "When does the merger close?", Retrieval([Hit(secret, 1.0, dense_score=0.9)]), Principal("bob"))
    assert answer.abstained and "Initech" not in answer.text


class TestLanceStoreAclLeakage(AclLeakagePropertyTest):
    """The store-level leakage property shipped in ``ragtune.testing.store_properties``, run on LanceStore."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Store:
        return LanceStore(tmp_path / "lance")


class TestLanceStoreApproximateAclLeakage(AclLeakagePropertyTest):
    """The leakage property on LanceStore's large-table path: IVF-PQ index, every dense search approximate."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Store:
        return LanceStore(tmp_path / "lance", ann_min_rows=1, exact_max_readable=0)

