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
from ragtune.text import QUERY_STOP_WORDS, WORD, content_terms, sentence_segments


class ExtractiveAnswerer(GatedAnswerer):
    """Quotes the sentences of the top ``context_chunks`` hits that best support the question.

    Each candidate sentence is scored by its cosine to the question, plus ``0.2`` x its share of the question's
    content terms, minus ``0.02`` x its chunk's rank. The answer is the best sentence, followed by the next best
    only while they score within ``support_margin`` of it and cover a question term the answer lacks (up to
    ``max_sentences``): a sentence that adds little support is left out. When the best sentence scores below
    ``min_sentence_score``, no accessible sentence answers the question and the answerer abstains. The
    defaults were chosen on PolicyQA dev questions the benchmark does not score (``benchmarks/answer_quality.py``).
    Headings (Markdown ``#`` lines, title-cased lines without end punctuation, a chunk's own section title) and
    fragments of fewer than three words are never quoted.
    """

    def __init__(
        self,
        embedder: Embedder,
        min_relevance: float = 0.35,
        max_sentences: int = 3,
        context_chunks: int = 4,
        min_sentence_score: float = 0.40,
        max_candidates: int = 16,
        support_margin: float = 0.05,
    ) -> None:
        super().__init__(embedder, min_relevance=min_relevance, context_chunks=context_chunks)
        self.max_sentences = max_sentences
        self.min_sentence_score = min_sentence_score
        self.max_candidates = max_candidates
        self.support_margin = support_margin

    def scored_sentences(self, question: str, readable: Sequence[Hit], query_vector: np.ndarray
                         ) -> list[tuple[float, int, str]]:
        """(score, index into ``readable``, sentence) of the quotable sentences, best first."""
        candidates: list[tuple[int, str]] = []  # (index into readable, sentence)
        seen: set[str] = set()  # overlapping chunks repeat sentences: quote each once, from its best chunk
        for i, h in enumerate(readable):
            titles = {_key(t) for t in (h.chunk.title, *h.chunk.section_path)}
            for s, e, heading in sentence_segments(h.chunk.text):
                sentence = h.chunk.text[s:e]
                key = _key(sentence)
                if heading or key in titles or key in seen or len(WORD.findall(sentence)) < 3:
                    continue
                seen.add(key)
                candidates.append((i, sentence))
        if not candidates:
            return []
        q_terms = content_terms(question, QUERY_STOP_WORDS)
        overlaps = [len(q_terms & content_terms(sentence, QUERY_STOP_WORDS)) / max(1, len(q_terms))
                    for _, sentence in candidates]
        # Embedding every sentence costs ~10 ms each on a CPU: shortlist by term overlap and chunk rank first.
        shortlist = sorted(range(len(candidates)), key=lambda j: (-overlaps[j], candidates[j][0]))
        candidates = [candidates[j] for j in shortlist[: self.max_candidates]]
        overlaps = [overlaps[j] for j in shortlist[: self.max_candidates]]
        vecs = self.embedder.embed([s for _, s in candidates])
        # Cosine carries meaning; term overlap rewards the exact entities asked about; a small prior favours
        # sentences from higher-ranked chunks.
        scored = [(float(v @ query_vector) + 0.2 * overlap - 0.02 * i, i, sentence)
                  for (i, sentence), v, overlap in zip(candidates, vecs, overlaps, strict=True)]
        return sorted(scored, key=lambda t: -t[0])

    def select(self, question: str, scored: Sequence[tuple[float, int, str]]) -> list[tuple[float, int, str]]:
        """The sentences to quote from :meth:`scored_sentences`' list: none (abstain) when the best is below
        ``min_sentence_score``; else the best, then each next one that scores within ``support_margin`` of it
        and covers a question term the chosen ones do not (a sentence that adds nothing new is left out)."""
        if not scored or scored[0][0] < self.min_sentence_score:
            return []
        q_terms = content_terms(question, QUERY_STOP_WORDS)
        floor = max(self.min_sentence_score, scored[0][0] - self.support_margin)
        chosen = [scored[0]]
        covered = q_terms & content_terms(scored[0][2], QUERY_STOP_WORDS)
        for candidate in scored[1:]:
            if len(chosen) >= self.max_sentences or candidate[0] < floor:
                break
            terms = q_terms & content_terms(candidate[2], QUERY_STOP_WORDS)
            if terms - covered:
                chosen.append(candidate)
                covered |= terms
        return chosen

    def _compose(self, question: str, readable: list[Hit], hits: Sequence[Hit], principal: Principal,
                 query_vector: np.ndarray, started: float, on_token: Callable[[str], None] | None) -> Answer | None:
        """Quote the best supporting sentences of ``readable``, or None to abstain."""
        chosen = self.select(question, self.scored_sentences(question, readable, query_vector))
        if not chosen:
            return None
        numbers: dict[int, int] = {}
        citations: list[Citation] = []
        parts = []
        for _, i, sentence in chosen:
            if i not in numbers:
                numbers[i] = len(numbers) + 1
                citations.append(Citation(numbers[i], readable[i].chunk, sentence))
            parts.append(f"{' '.join(sentence.split())} [{numbers[i]}]")  # a hard-wrapped sentence on one line
        return Answer(
            question=question,
            text=" ".join(parts),
            citations=tuple(citations),
            abstained=False,
            latency_ms={"answer": (time.perf_counter() - started) * 1000},
            hits=tuple(hits),
        )


def _key(text: str) -> str:
    """Text compared without case, punctuation or spacing (to drop repeats and section titles)."""
    return " ".join(WORD.findall(text.lower()))
