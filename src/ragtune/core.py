"""Plain typed records that flow forward through ragtune: documents, chunks, principals, hits, answers.

They are frozen so no stage can change what an earlier stage produced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ragtune.errors import AclError
from ragtune.text import head_line

PUBLIC_TOKEN = "public"
_NAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,128}$")


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise AclError(
            f"invalid {kind} name {name!r}: use 1-128 letters, digits or . _ @ + - (no spaces or quotes)"
        )
    return name


@dataclass(frozen=True)
class Acl:
    """Who may read a document. An empty ACL (the default) grants nobody access: fail closed."""

    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    public: bool = False

    def __post_init__(self) -> None:
        for u in self.users:
            _check_name("user", u)
        for g in self.groups:
            _check_name("group", g)

    @property
    def is_empty(self) -> bool:
        """True when nobody may read the document."""
        return not (self.public or self.users or self.groups)

    def tokens(self) -> list[str]:
        """The ACL as sorted store tokens (``public``, ``user:NAME``, ``group:NAME``)."""
        out = [f"user:{u}" for u in self.users] + [f"group:{g}" for g in self.groups]
        if self.public:
            out.append(PUBLIC_TOKEN)
        return sorted(out)

    def intersect(self, other: Acl) -> Acl:
        """Who may read under both ACLs, conservatively: a document reached two ways gets the narrowest.

        ``public`` is neutral; otherwise only users and groups named in both remain (so ``group:a`` and
        ``group:b`` intersect to nobody, even though a member of both could read under each).
        """
        if self.public:
            return other
        if other.public:
            return self
        return Acl(users=self.users & other.users, groups=self.groups & other.groups)

    @classmethod
    def from_tokens(cls, tokens: list[str]) -> Acl:
        """Inverse of :meth:`tokens`."""
        users = {t[5:] for t in tokens if t.startswith("user:")}
        groups = {t[6:] for t in tokens if t.startswith("group:")}
        return cls(frozenset(users), frozenset(groups), PUBLIC_TOKEN in tokens)

    def describe(self) -> str:
        """Short human-readable form, e.g. ``users=alice groups=legal,hr``."""
        if self.is_empty:
            return "(none: nobody)"
        parts = []
        if self.public:
            parts.append("public")
        if self.users:
            parts.append("users=" + ",".join(sorted(self.users)))
        if self.groups:
            parts.append("groups=" + ",".join(sorted(self.groups)))
        return " ".join(parts)


@dataclass(frozen=True)
class Principal:
    """The identity a query runs as: one user and the groups they belong to."""

    user: str
    groups: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        _check_name("user", self.user)
        for g in self.groups:
            _check_name("group", g)

    def tokens(self) -> list[str]:
        """Store tokens this principal may read: public, its user and each of its groups."""
        return sorted([PUBLIC_TOKEN, f"user:{self.user}"] + [f"group:{g}" for g in self.groups])

    def can_read(self, acl_tokens: list[str] | tuple[str, ...]) -> bool:
        """Whether a chunk with these ACL tokens is readable by this principal."""
        return bool(set(acl_tokens) & set(self.tokens()))


@dataclass(frozen=True)
class Section:
    """A structural part of a document: the text under one heading, or one PDF page."""

    text: str
    path: tuple[str, ...] = ()
    page: int | None = None
    start: int = 0  # character offset of `text` in the document's extracted text


@dataclass(frozen=True)
class Document:
    """One parsed source file."""

    doc_id: str
    source_path: str
    title: str
    text: str
    sections: tuple[Section, ...]
    content_hash: str
    mtime: float
    acl: Acl = field(default_factory=Acl)
    format: str = ""


@dataclass(frozen=True)
class Chunk:
    """A retrievable piece of a document, small enough to embed, with everything needed to cite it."""

    chunk_id: str
    doc_id: str
    source_path: str
    title: str
    section_path: tuple[str, ...]
    page: int | None
    char_start: int
    char_end: int
    text: str
    content_hash: str
    doc_hash: str
    mtime: float
    acl: tuple[str, ...]
    ordinal: int = 0

    @property
    def section(self) -> str:
        """The section path joined for display, e.g. ``Security > Backups``."""
        return " > ".join(self.section_path)

    @property
    def search_text(self) -> str:
        """What is embedded and BM25-indexed: title and section path give the text the context it lacks."""
        head = head_line(self.title, self.section_path)
        return f"{head}\n{self.text}" if head else self.text


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with the score of each retrieval stage (None where a stage did not find it)."""

    chunk: Chunk
    score: float
    lexical_score: float | None = None
    dense_score: float | None = None
    lexical_rank: int | None = None
    dense_rank: int | None = None
    rerank_score: float | None = None  # set when a reranking stage ordered the hits


@dataclass(frozen=True)
class Citation:
    """A numbered source an answer relies on."""

    number: int
    chunk: Chunk
    snippet: str


@dataclass(frozen=True)
class AnswerSpan:
    """The exact answer a span reader found: its text, the citation it lies in, its character offsets within
    that chunk's text (``start`` inclusive, ``end`` exclusive) and the reader's score (span minus no-answer
    logits, compared with the model's calibrated threshold)."""

    text: str
    citation: int
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class Answer:
    """An answer with its numbered citations, or an abstention, and how long each stage took (ms); ``span``: the
    exact answer inside the cited sentence, when a span reader wrote it (``answer.kind: reader``)."""

    question: str
    text: str
    citations: tuple[Citation, ...]
    abstained: bool
    latency_ms: dict[str, float]
    hits: tuple[Hit, ...] = ()
    flags: tuple[str, ...] = ()  # problems found while verifying it, e.g. a dropped citation
    span: AnswerSpan | None = None
