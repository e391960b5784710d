"""The default answerer: quote the sentences of the top accessible chunks that best support the question.

No generator means nothing can be invented: every sentence of the answer is copied from a chunk the asking
principal may read and carries that chunk's citation number. When no accessible chunk is similar enough to
the question, it abstains instead of guessing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ragtune.core import Answer, Citation, Hit, Principal
from ragtune.models.embedder import Embedder
from ragtune.text import QUERY_STOP_WORDS, WORD, content_terms, sentence_spans

ABSTAIN_TEXT = "No accessible source supports an answer to this question."


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


class ExtractiveAnswerer:
    """Selects up to ``max_sentences`` supporting sentences from the top ``context_chunks`` hits."""

    def __init__(
        self,
        embedder: Embedder,
        min_relevance: float = 0.35,
        max_sentences: int = 3,
        context_chunks: int = 4,
        min_sentence_score: float = 0.25,
        max_candidates: int = 16,
    ) -> None:
        self.embedder = embedder
        self.min_relevance = min_relevance
        self.max_sentences = max_sentences
        self.context_chunks = context_chunks
        self.min_sentence_score = min_sentence_score
        self.max_candidates = max_candidates

    def answer(
        self,
        question: str,
        hits: Sequence[Hit],
        principal: Principal,
        query_vector: np.ndarray | None = None,
    ) -> Answer:
        """Answer from ``hits`` (already ACL-filtered by the store; checked again here) or abstain."""
        t0 = time.perf_counter()
        if query_vector is None:
            query_vector = self.embedder.embed([question])[0]
        readable = relevant_readable(hits, principal, self.context_chunks, self.embedder, query_vector,
                                     self.min_relevance)
        if not readable:
            return self._abstain(question, hits, t0)

        candidates: list[tuple[int, str]] = []  # (index into readable, sentence)
        seen: set[str] = set()  # overlapping chunks repeat sentences: quote each once, from its best chunk
        for i, h in enumerate(readable):
            for s, e in sentence_spans(h.chunk.text):
                sentence = h.chunk.text[s:e]
                key = " ".join(WORD.findall(sentence.lower()))
                if len(WORD.findall(sentence)) >= 3 and not sentence.startswith("#") and key not in seen:
                    seen.add(key)  # headings are not quoted either
                    candidates.append((i, sentence))
        if not candidates:
            return self._abstain(question, hits, t0)
        q_terms = content_terms(question, QUERY_STOP_WORDS)
        overlaps = [len(q_terms & content_terms(sentence, QUERY_STOP_WORDS)) / max(1, len(q_terms))
                    for _, sentence in candidates]
        # Embedding every sentence costs ~10 ms each on a CPU: shortlist by term overlap and chunk rank first.
        shortlist = sorted(range(len(candidates)), key=lambda j: (-overlaps[j], candidates[j][0]))
        candidates = [candidates[j] for j in shortlist[: self.max_candidates]]
        overlaps = [overlaps[j] for j in shortlist[: self.max_candidates]]
        vecs = self.embedder.embed([s for _, s in candidates])
        scores = []
        for (i, _), v, overlap in zip(candidates, vecs, overlaps, strict=True):
            # Cosine carries meaning; term overlap rewards the exact entities asked about; a small
            # prior favours sentences from higher-ranked chunks.
            scores.append(float(v @ query_vector) + 0.2 * overlap - 0.02 * i)
        order = sorted(range(len(candidates)), key=lambda j: -scores[j])
        chosen = [j for j in order if scores[j] >= self.min_sentence_score][: self.max_sentences]
        if not chosen:
            return self._abstain(question, hits, t0)

        numbers: dict[int, int] = {}
        citations: list[Citation] = []
        parts = []
        for j in chosen:
            i, sentence = candidates[j]
            if i not in numbers:
                numbers[i] = len(numbers) + 1
                citations.append(Citation(numbers[i], readable[i].chunk, sentence))
            parts.append(f"{sentence} [{numbers[i]}]")
        return Answer(
            question=question,
            text=" ".join(parts),
            citations=tuple(citations),
            abstained=False,
            latency_ms={"answer": (time.perf_counter() - t0) * 1000},
            hits=tuple(hits),
        )

    @staticmethod
    def _abstain(question: str, hits: Sequence[Hit], t0: float) -> Answer:
        return Answer(
            question=question,
            text=ABSTAIN_TEXT,
            citations=(),
            abstained=True,
            latency_ms={"answer": (time.perf_counter() - t0) * 1000},
            hits=tuple(hits),
        )
