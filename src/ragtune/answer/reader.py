"""The span reader answerer (``answer.kind: reader``): the exact answer inside its cited sentence.

A span reader fine-tuned by ``ragtune tune reader`` reads the question with each of the top ``context_chunks``
chunks the principal may read (the same relevance gate as every answerer) and proposes its best spans. The
answer is the best span across them, quoted inside the sentence(s) it lies in with that chunk's citation; its
character offsets within the chunk travel in :attr:`ragtune.core.Answer.span`. When the best span scores below
the reader's calibrated threshold (chosen on held-out questions when it was trained, or ``answer.reader_min_score``)
the answerer abstains: the reader found no answer in what this principal may read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from ragtune.answer.base import GatedAnswerer
from ragtune.core import Answer, AnswerSpan, Citation, Hit, Principal
from ragtune.models.embedder import Embedder
from ragtune.text import sentence_segments


class ReadSpan(Protocol):
    """What a span reader returns for one span (:class:`ragtune.tuning.reader.served.Span`)."""

    passage: int
    start: int
    end: int
    text: str
    score: float


class SpanReading(Protocol):
    """A span reader (:class:`ragtune.tuning.reader.served.SpanReader`), as the answerer and ``ragtune extract``
    use it."""

    @property
    def threshold(self) -> float:
        """The calibrated no-answer threshold: a span scoring below it is no answer."""
        ...

    @property
    def fingerprint(self) -> str:
        """Which model and version this is (``ragtune extract`` records it)."""
        ...

    def warm_up(self) -> None:
        """Load the model."""
        ...

    def read(self, question: str, passages: Sequence[str], *, top_n: int = 1) -> Sequence[Any]:
        """The best spans across ``passages``, best first."""
        ...


def sentence_around(text: str, start: int, end: int) -> tuple[int, int]:
    """The offsets of the sentence(s) of ``text`` holding ``text[start:end]`` (the span itself when no sentence
    covers it)."""
    first, last = start, end
    for s, e, _ in sentence_segments(text):
        if s <= start < e:
            first = min(first, s)
        if s < end <= e:
            last = max(last, e)
    return first, last


class ReaderAnswerer(GatedAnswerer):
    """Answers with the best span a :class:`SpanReading` finds in the top readable chunks, or abstains.

    ``min_score`` overrides the reader's calibrated threshold (None: the reader's own)."""

    def __init__(self, reader: SpanReading, embedder: Embedder, min_relevance: float = 0.35,
                 context_chunks: int = 4, min_score: float | None = None) -> None:
        super().__init__(embedder, min_relevance=min_relevance, context_chunks=context_chunks)
        self.reader = reader
        self.min_score = min_score

    def warm_up(self) -> None:
        """Load the reader's model (otherwise the first question does)."""
        self.reader.warm_up()

    def threshold(self) -> float:
        """The score a span needs to be the answer."""
        return self.min_score if self.min_score is not None else float(self.reader.threshold)

    def _compose(self, question: str, readable: list[Hit], hits: Sequence[Hit], principal: Principal,
                 query_vector: np.ndarray, started: float, on_token: Callable[[str], None] | None) -> Answer | None:
        """The best span of ``readable`` inside its sentence, or None to abstain."""
        spans = self.reader.read(question, [h.chunk.text for h in readable], top_n=1)
        if not spans or spans[0].score < self.threshold():
            return None
        best: ReadSpan = spans[0]
        chunk = readable[best.passage].chunk
        s, e = sentence_around(chunk.text, best.start, best.end)
        sentence = " ".join(chunk.text[s:e].split())
        return Answer(
            question=question,
            text=f"{sentence} [1]",
            citations=(Citation(1, chunk, sentence),),
            abstained=False,
            latency_ms={"answer": (time.perf_counter() - started) * 1000},
            hits=tuple(hits),
            span=AnswerSpan(best.text, 1, best.start, best.end, float(best.score)),
        )


def span_json(answer: Answer) -> dict[str, Any] | None:
    """The answer's exact span as JSON: its text, citation number, offsets within the cited chunk's text
    (``chunk_start``/``chunk_end``) and within its document's text (``char_start``/``char_end``), and its score;
    None when no span reader wrote the answer."""
    sp = answer.span
    if sp is None:
        return None
    chunk = next((c.chunk for c in answer.citations if c.number == sp.citation), None)
    base = chunk.char_start if chunk is not None else 0
    return {"text": sp.text, "citation": sp.citation, "chunk_start": sp.start, "chunk_end": sp.end,
            "char_start": base + sp.start, "char_end": base + sp.end, "score": round(sp.score, 4)}
