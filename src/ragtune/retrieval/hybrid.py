"""The hybrid retriever: embed the query, run BM25 and dense search as the principal, fuse, time each stage."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from ragtune.core import Chunk, Hit, Principal
from ragtune.models.embedder import Embedder
from ragtune.observability.metrics import record_stages
from ragtune.observability.tracing import in_context, span
from ragtune.retrieval.fusion import reciprocal_rank_fusion
from ragtune.retrieval.rerank import Reranker
from ragtune.store.base import Store

T = TypeVar("T")


_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ragtune-lexical")


def _timed(fn: Callable[..., T], *args: Any) -> tuple[T, float]:
    t = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - t) * 1000


@dataclass
class Retrieval:
    """Fused hits plus the latency of each stage in milliseconds."""

    hits: list[Hit]
    latency_ms: dict[str, float] = field(default_factory=dict)
    query_vector: np.ndarray | None = None


class HybridRetriever:
    """BM25 ∥ (embed query → dense) over one store, fused with (weighted) reciprocal rank fusion."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        top_k: int = 8,
        lexical_k: int = 100,
        dense_k: int = 100,
        rrf_k: int = 20,
        lexical_weight: float = 1.0,
        dense_weight: float = 1.0,
        lexical_isolation: bool = False,
        reranker: Reranker | None = None,
        rerank_candidates: int = 50,
        rerank_fused_weight: float = 0.0,
        rerank_skip_when_agree: bool = False,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.top_k = top_k
        self.lexical_k = lexical_k
        self.dense_k = dense_k
        self.rrf_k = rrf_k
        self.lexical_weight = lexical_weight
        self.dense_weight = dense_weight
        # BM25 statistics over the principal's readable chunks only; raw BM25 scores are then kept off the hits.
        self.lexical_isolation = lexical_isolation
        # Optional stage between fusion and the final fetch: reorders the best fused candidates.
        self.reranker = reranker
        self.rerank_candidates = rerank_candidates
        # The final order fuses the reranker's with the fused one at this weight (0: the reranker's alone), and
        # the stage is skipped when BM25 and dense search agree on the first chunk (when asked to).
        self.rerank_fused_weight = rerank_fused_weight
        self.rerank_skip_when_agree = rerank_skip_when_agree

    def _lexical(self, query: str, principal: Principal) -> list[tuple[str, float]]:
        with span("lexical", k=self.lexical_k, isolated=self.lexical_isolation) as sp:
            if self.lexical_isolation:
                out = self.store.lexical_search(query, principal, self.lexical_k, isolated=True)
            else:
                out = self.store.lexical_search(query, principal, self.lexical_k)
            sp.set(results=len(out))
        return out

    def retrieve(self, query: str, principal: Principal, top_k: int | None = None) -> Retrieval:
        """Hits readable by ``principal``, best first; each carries its lexical, dense and fused scores.

        Each stage is a span (``retrieve`` > ``embed``, ``lexical``, ``dense``, ``fuse``, ``rerank``, ``fetch``)
        and its latency goes to the stage histogram (:mod:`ragtune.observability`)."""
        lat: dict[str, float] = {}
        k = top_k or self.top_k
        with span("retrieve", text=query, top_k=k) as root:
            # BM25 needs no vector: it runs in a worker thread while the query is embedded and searched densely
            # (onnxruntime and LanceDB both release the GIL). Each stage's time is its own duration.
            pending = (_POOL.submit(_timed, in_context(self._lexical), query, principal)
                       if self.lexical_weight > 0 else None)
            t0 = time.perf_counter()
            with span("embed", texts=1):
                qvec = self.embedder.embed([query])[0]
            t1 = time.perf_counter()
            lat["embed_query"] = (t1 - t0) * 1000
            with span("dense", k=self.dense_k) as sp:
                dense = self.store.dense_search(qvec, principal, self.dense_k) if self.dense_weight > 0 else []
                sp.set(results=len(dense))
            lat["dense"] = (time.perf_counter() - t1) * 1000
            lexical: list[tuple[str, float]] = []
            lat["lexical"] = 0.0
            if pending is not None:
                lexical, lat["lexical"] = pending.result()
            t3 = time.perf_counter()
            with span("fuse", lexical=len(lexical), dense=len(dense)) as sp:
                fused = reciprocal_rank_fusion(
                    [[cid for cid, _ in lexical], [cid for cid, _ in dense]],
                    k=self.rrf_k,
                    weights=[self.lexical_weight, self.dense_weight],
                )
                lex_info = {cid: (rank, s) for rank, (cid, s) in enumerate(lexical, start=1)}
                dense_info = {cid: (rank, s) for rank, (cid, s) in enumerate(dense, start=1)}
                sp.set(candidates=len(fused))
            t4 = time.perf_counter()
            lat["fuse"] = (t4 - t3) * 1000
            chunks: dict[str, Chunk] = {}
            rerank_scores: dict[str, float] = {}
            if self.reranker is not None:
                # the best rerank_candidates are reordered; any further hits keep their fused order behind them
                n = self.rerank_candidates
                candidates = fused[:n]
                agree = bool(self.rerank_skip_when_agree and lexical and dense and lexical[0][0] == dense[0][0])
                with span("rerank", reranker=self.reranker.name, candidates=len(candidates), skipped=agree):
                    if not agree:
                        head, chunks, rerank_scores = self._rerank(query, principal, candidates)
                        fused = head + fused[n:]
                t5 = time.perf_counter()
                lat["rerank"] = (t5 - t4) * 1000
                t4 = t5
            fused = fused[:k]
            with span("fetch", requested=len(fused)) as sp:
                # Only the final top-k are loaded in full; the fetch repeats the ACL filter as a second guard.
                missing = [cid for cid, _ in fused if cid not in chunks]  # all of them without a reranking
                if missing:
                    chunks.update(self.store.get_chunks(missing, principal))
                hits = []
                for cid, score in fused:
                    if cid not in chunks:
                        continue
                    lr, ls = lex_info.get(cid, (None, None))
                    if self.lexical_isolation:
                        ls = None  # the rank still shows that BM25 found it; the score is not published
                    dr, ds = dense_info.get(cid, (None, None))
                    hits.append(Hit(chunks[cid], score, lexical_score=ls, dense_score=ds, lexical_rank=lr,
                                    dense_rank=dr, rerank_score=rerank_scores.get(cid)))
                sp.set(hits=len(hits))
            lat["fetch"] = (time.perf_counter() - t4) * 1000
            root.set(hits=len(hits))
        record_stages(lat)
        return Retrieval(hits=hits, latency_ms=lat, query_vector=qvec)

    def _rerank(self, query: str, principal: Principal, candidates: list[tuple[str, float]]
                ) -> tuple[list[tuple[str, float]], dict[str, Chunk], dict[str, float]]:
        """Reorder the candidates the principal may read (their text is fetched with the ACL filter)."""
        assert self.reranker is not None
        chunks = self.store.get_chunks([cid for cid, _ in candidates], principal)
        fused = dict(candidates)
        readable = [(cid, chunks[cid].search_text) for cid, _ in candidates if cid in chunks]
        ranked = [(cid, s) for cid, s in self.reranker.rerank(query, readable) if cid in fused]
        order = [cid for cid, _ in ranked]
        if self.rerank_fused_weight > 0:
            order = [cid for cid, _ in reciprocal_rank_fusion(
                [[cid for cid, _ in readable], order], k=self.rrf_k, weights=[self.rerank_fused_weight, 1.0])]
        return [(cid, fused[cid]) for cid in order], chunks, dict(ranked)
