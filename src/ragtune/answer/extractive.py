"""The default answerer: quote the sentences of the top accessible chunks that best support the question.

No generator means nothing can be invented: every sentence of the answer is copied from a chunk the asking
principal may read and carries that chunk's citation number. When no accessible chunk is similar enough to
the question, it abstains instead of guessing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from ragtune.answer.base import GatedAnswerer
from ragtune.core import Answer, Citation, Hit, Principal
from ragtune.models.embedder import Embedder
from ragtune.text import QUERY_STOP_WORDS, WORD, content_terms, sentence_spans


class ExtractiveAnswerer(GatedAnswerer):
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
        super().__init__(embedder, min_relevance=min_relevance, context_chunks=context_chunks)
        self.max_sentences = max_sentences
        self.min_sentence_score = min_sentence_score
        self.max_candidates = max_candidates

    def _compose(self, question: str, readable: list[Hit], hits: Sequence[Hit], principal: Principal,
                 query_vector: np.ndarray, started: float, on_token: Callable[[str], None] | None) -> Answer | None:
        """Quote the best supporting sentences of ``readable``, or None to abstain."""
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
            return None
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
            return None

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
            latency_ms={"answer": (time.perf_counter() - started) * 1000},
            hits=tuple(hits),
        )
