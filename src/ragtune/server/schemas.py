"""The REST API's request and response bodies (pydantic), which the OpenAPI document is generated from.

Requests forbid unknown fields, so no body can carry a ``user`` or ``groups`` that would change whom a request
runs as: the principal comes only from the credential. Responses are built from the core records
(:class:`~ragtune.core.Answer`, :class:`~ragtune.core.Hit`) by the ``from_*`` constructors, one copy each.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ragtune.answer.reader import span_json
from ragtune.core import Answer, Citation, Hit

MAX_QUESTION_CHARS = 2000


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AskRequest(_Request):
    """``POST /v1/ask``: a question answered from what the caller may read."""

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)


class SearchRequest(_Request):
    """``POST /v1/search``: hybrid search over what the caller may read."""

    query: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    top_k: int | None = Field(None, ge=1, le=100)


class ClassifyRequest(_Request):
    """``POST /v1/classify``: labels from a registered classifier (its promoted or latest version by default)."""

    model: str = Field(min_length=1, max_length=200)
    texts: list[str] = Field(min_length=1, max_length=256)
    version: int | None = Field(None, ge=1)


class ChunkRef(BaseModel):
    """Where a hit or citation comes from: never a chunk the caller may not read."""

    chunk_id: str
    doc_id: str
    path: str
    title: str
    section: str
    page: int | None
    char_start: int
    char_end: int


def _ref(hit_or_citation: Hit | Citation) -> dict[str, object]:
    c = hit_or_citation.chunk
    return {"chunk_id": c.chunk_id, "doc_id": c.doc_id, "path": c.source_path, "title": c.title,
            "section": c.section, "page": c.page, "char_start": c.char_start, "char_end": c.char_end}


class HitOut(ChunkRef):
    """One search hit with its fused score and the chunk's text."""

    score: float
    text: str

    @classmethod
    def from_hit(cls, h: Hit) -> HitOut:
        """The hit as the API shows it."""
        return cls(**_ref(h), score=h.score, text=h.chunk.text)


class CitationOut(ChunkRef):
    """A numbered source of an answer and the sentence quoted from it."""

    number: int
    snippet: str


class SpanOut(BaseModel):
    """The exact answer a span reader found (``answer.kind: reader``): its text, the citation it lies in, its
    offsets within that chunk's text and within the document's text, and its score."""

    text: str
    citation: int
    chunk_start: int
    chunk_end: int
    char_start: int
    char_end: int
    score: float


class AnswerOut(BaseModel):
    """An answer with its numbered citations, or an abstention, and the latency of each stage (ms); ``span``:
    the exact answer inside the cited sentence, when a span reader wrote it."""

    question: str
    answer: str
    abstained: bool
    citations: list[CitationOut]
    flags: list[str]
    latency_ms: dict[str, float]
    span: SpanOut | None = None

    @classmethod
    def from_answer(cls, a: Answer) -> AnswerOut:
        """The answer as the API shows it."""
        return cls(question=a.question, answer=a.text, abstained=a.abstained, flags=list(a.flags),
                   citations=[CitationOut(**_ref(c), number=c.number, snippet=c.snippet)
                              for c in a.citations],
                   latency_ms={k: round(v, 2) for k, v in a.latency_ms.items()},
                   span=SpanOut(**sp) if (sp := span_json(a)) is not None else None)


class SearchOut(BaseModel):
    """Search hits, best first, and the latency of each stage (ms)."""

    query: str
    hits: list[HitOut]
    latency_ms: dict[str, float]


class ClassifyOut(BaseModel):
    """One label (and its probability, when the model is calibrated) per text, in order."""

    model: str
    version: int
    labels: list[str]
    scores: list[float] | None


class WhoAmI(BaseModel):
    """The identity a credential resolves to."""

    user: str
    groups: list[str]
    role: str
    credential: str


class ErrorBody(BaseModel):
    """``{"error": {"code": ..., "message": ...}}``: a stable code and a message that says what to do."""

    code: str
    message: str


class ErrorOut(BaseModel):
    """Every error response."""

    error: ErrorBody


class Health(BaseModel):
    """Liveness and readiness."""

    status: Literal["ok", "starting", "failed"]
    detail: str = ""
