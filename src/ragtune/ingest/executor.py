"""Where a sync parses, chunks and embeds: the seam between :class:`~ragtune.ingest.sync.Syncer` and the work.

The syncer reads and hashes the files, resolves every ACL and writes the store; an executor turns file bytes
into chunks (:func:`parse_job`) and chunk texts into vectors. :class:`LocalExecutor` does both in this process,
one file and one batch at a time (the default); ``ragtune.ingest.ray_exec.RayExecutor`` does them on a Ray
cluster. Both run the same :func:`parse_job`, so the chunks are the same wherever they were made.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ragtune.core import Acl, Chunk, Document
from ragtune.errors import RagtuneError
from ragtune.ingest.chunking import chunk_document
from ragtune.ingest.parsers import parse_bytes
from ragtune.models.embedder import Embedder, TokenCounter

__all__ = ["IngestExecutor", "LocalExecutor", "ParseJob", "ParseOutcome", "parse_job"]


@dataclass(frozen=True)
class ParseJob:
    """One new or changed file as read by the syncer: everything needed to parse and chunk it, without the file
    (a Ray worker on another machine gets these bytes, the very ones that were hashed)."""

    doc_id: str
    source_path: str  # the document's path as stored
    real: Path  # its real path: the parser's format and the name in error messages
    data: bytes
    doc_hash: str
    mtime: float
    max_tokens: int
    overlap_tokens: int


@dataclass(frozen=True)
class ParseOutcome:
    """A parsed and chunked file: its chunks (with no ACL yet: the syncer resolves it from ``metadata``, the
    file's front matter) or the error that stopped it."""

    metadata: dict[str, Any]
    chunks: list[Chunk]
    error: RagtuneError | None = None


def parse_job(job: ParseJob, count_tokens: TokenCounter, window: int | None) -> ParseOutcome:
    """Parse and chunk one file's bytes (no file system access); a user-caused failure is returned, not raised."""
    try:
        parsed = parse_bytes(job.data, job.real)
    except RagtuneError as exc:
        return ParseOutcome({}, [], exc)
    doc = Document(
        doc_id=job.doc_id, source_path=job.source_path, title=parsed.title, text=parsed.text,
        sections=tuple(parsed.sections), content_hash=job.doc_hash, mtime=job.mtime, acl=Acl(),
        format=job.real.suffix.lower().lstrip("."),
    )
    chunks = chunk_document(doc, job.max_tokens, job.overlap_tokens, count_tokens, window=window)
    return ParseOutcome(parsed.metadata, chunks)


class IngestExecutor(Protocol):
    """Where a sync parses, chunks and embeds: in this process (:class:`LocalExecutor`) or on a Ray cluster
    (``ragtune.ingest.ray_exec.RayExecutor``). The syncer keeps the rest: reading and hashing files, ACLs, writes."""

    window: int  # files read before their jobs go to ``map_parse`` together (1: each file as it is read)

    def map_parse(self, jobs: Sequence[ParseJob]) -> list[ParseOutcome]:
        """:func:`parse_job` of each job, in order."""
        ...

    def warm_up(self) -> None:
        """Load the embedder(s) before the first batch, so chunks/s is the embedding rate."""
        ...

    def embed_batches(self, batches: Iterable[Sequence[str]]) -> Iterator[np.ndarray]:
        """The vectors of each batch of texts, in order; a batch is taken from ``batches`` only when needed."""
        ...

    def placement(self) -> dict[str, list[str]]:
        """Where work ran since the last call (stage -> node ids); empty in this process."""
        ...


class LocalExecutor:
    """Parses, chunks and embeds in this process with ``embedder``, one file and one batch at a time."""

    window = 1

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def map_parse(self, jobs: Sequence[ParseJob]) -> list[ParseOutcome]:
        """:func:`parse_job` of each job, with this embedder's token counts and window."""
        return [parse_job(j, self.embedder.count_tokens, self.embedder.window) for j in jobs]

    def warm_up(self) -> None:
        """Load the embedder's weights (an embedder without ``warm_up`` loads on first use)."""
        warm_up = getattr(self.embedder, "warm_up", None)
        if warm_up:
            warm_up()

    def embed_batches(self, batches: Iterable[Sequence[str]]) -> Iterator[np.ndarray]:
        """Embed each batch when it is asked for."""
        for texts in batches:
            yield self.embedder.embed(texts)

    def placement(self) -> dict[str, list[str]]:
        """Nothing: the work ran here."""
        return {}
