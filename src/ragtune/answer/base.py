"""The Answerer contract, and the one relevance gate and abstention every answerer shares.

An answerer turns a :class:`~ragtune.retrieval.hybrid.Retrieval` into an :class:`~ragtune.core.Answer` for
one principal. :class:`GatedAnswerer` does the part all of them share: keep the top ``context_chunks`` hits the
principal may read (a second guard after the store's filter), abstain when the best of them is less similar
to the question than ``min_relevance``, and time the step. Subclasses write the answer from what passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ragtune.core import Answer, Hit, Principal
from ragtune.models.embedder import Embedder
from ragtune.observability.metrics import record_answer, record_stages
from ragtune.observability.tracing import span
from ragtune.retrieval.hybrid import Retrieval

ABSTAIN_TEXT = "No accessible source supports an answer to this question."


@runtime_checkable
class Answerer(Protocol):
    """Answers a question from retrieved hits as one principal, with citations, or abstains."""

    def answer(self, question: str, retrieval: Retrieval, principal: Principal, *,
               on_token: Callable[[str], None] | None = None) -> Answer:
        """The answer; ``on_token`` receives generated text as it is written (generators only)."""
        ...


def relevant_readable(hits: Sequence[Hit], principal: Principal, limit: int, embedder: Embedder,
                      query_vector: np.ndarray, min_relevance: float) -> list[Hit]:
    """The first ``limit`` hits the principal may read, or none when the best of them is less similar to the
    question than ``min_relevance`` (the caller then abstains). A second guard: whatever handed the hits
    over, a chunk the principal may not read is never answered from."""
    readable = [h for h in hits if principal.can_read(h.chunk.acl)][:limit]
    best = max((h.dense_score for h in readable if h.dense_score is not None), default=None)
    if best is None and readable:
        best = float(np.max(embedder.embed([h.chunk.search_text for h in readable]) @ query_vector))
    return readable if best is not None and best >= min_relevance else []


def abstention(question: str, hits: Sequence[Hit], started: float, flags: Sequence[str] = ()) -> Answer:
    """The abstaining answer, timed from ``started`` (a ``time.perf_counter()`` value)."""
    return Answer(question=question, text=ABSTAIN_TEXT, citations=(), abstained=True,
                  latency_ms={"answer": (time.perf_counter() - started) * 1000}, hits=tuple(hits),
                  flags=tuple(flags))


class GatedAnswerer:
    """Base of the answerers: the relevance gate and abstention; subclasses implement :meth:`_compose`."""

    def __init__(self, embedder: Embedder, min_relevance: float = 0.35, context_chunks: int = 4) -> None:
        self.embedder = embedder
        self.min_relevance = min_relevance
        self.context_chunks = context_chunks

    def answer(self, question: str, retrieval: Retrieval, principal: Principal, *,
               on_token: Callable[[str], None] | None = None) -> Answer:
        """Answer from the retrieval's hits (already ACL-filtered by the store; checked again here) or abstain."""
        t0 = time.perf_counter()
        with span("answer", answerer=type(self).__name__, hits=len(retrieval.hits)) as sp:
            query_vector = retrieval.query_vector
            if query_vector is None:
                query_vector = self.embedder.embed([question])[0]
            hits = retrieval.hits
            readable = relevant_readable(hits, principal, self.context_chunks, self.embedder, query_vector,
                                         self.min_relevance)
            answer = (self._compose(question, readable, hits, principal, query_vector, t0, on_token)
                      if readable else None)
            answer = answer if answer is not None else abstention(question, hits, t0)
            sp.set(readable=len(readable), abstained=answer.abstained, citations=len(answer.citations),
                   chunk_ids=[c.chunk.chunk_id for c in answer.citations])
        record_stages(answer.latency_ms)
        record_answer(answer.abstained)
        return answer

    def _compose(self, question: str, readable: list[Hit], hits: Sequence[Hit], principal: Principal,
                 query_vector: np.ndarray, started: float, on_token: Callable[[str], None] | None) -> Answer | None:
        """The answer from ``readable`` (non-empty, relevant), or None to abstain."""
        raise NotImplementedError
