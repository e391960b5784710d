"""The Store protocol every backend implements; ragtune.testing.store is the conformance suite each must pass."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ragtune.core import Chunk, Principal
from ragtune.store.state import SyncState


@dataclass(frozen=True)
class DocRecord:
    """What the store knows about one ingested document (derived from its chunks)."""

    doc_id: str
    source_path: str
    title: str
    doc_hash: str
    acl: tuple[str, ...]
    mtime: float
    synced_at: float
    chunks: int


@dataclass(frozen=True)
class ChunkRow:
    """The identity of one stored chunk: enough to find duplicates and inconsistent documents."""

    chunk_id: str
    doc_id: str
    source_path: str
    doc_hash: str
    acl: tuple[str, ...]


def check_replacement(doc_ids: Sequence[str], chunks: Sequence[Chunk]) -> None:
    """What every backend's ``replace_documents`` refuses before writing anything: chunks of a document not being
    replaced, or one chunk id twice (``ValueError``: a caller's bug, not the user's input)."""
    stray = {c.doc_id for c in chunks} - set(doc_ids)
    if stray:
        raise ValueError(f"chunks of documents not being replaced: {sorted(stray)[:3]}")
    if len({c.chunk_id for c in chunks}) != len(chunks):
        raise ValueError("duplicate chunk ids in one write: chunk ids must be unique in the store")


@runtime_checkable
class Store(Protocol):
    """Chunks with vectors and ACL tokens. Searches take a principal and filter inside the query."""

    def replace_documents(
        self, doc_ids: Sequence[str], chunks: Sequence[Chunk], vectors: np.ndarray, synced_at: float
    ) -> None:
        """Atomically make ``chunks`` the only chunks of ``doc_ids`` (one commit: all or nothing)."""
        ...

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        """Remove every chunk of these documents."""
        ...

    def set_acl(self, doc_id: str, acl: Sequence[str], synced_at: float) -> None:
        """Replace the ACL tokens of every chunk of one document without re-embedding it."""
        ...

    def documents(self) -> list[DocRecord]:
        """One record per stored document."""
        ...

    def lexical_search(
        self, query: str, principal: Principal, k: int, *, isolated: bool = False
    ) -> list[tuple[str, float]]:
        """BM25 over chunks the principal may read: (chunk id, score), best first.

        ``isolated=True``: the term statistics (N, document frequencies, average length) cover only the chunks
        the principal may read, so no score depends on unreadable text (the default's are over every chunk).
        """
        ...

    def readable_texts(self, principal: Principal) -> list[tuple[str, str]]:
        """(chunk id, search text) of every chunk the principal may read (the ACL filter is in the query)."""
        ...

    def dense_search(self, vector: np.ndarray, principal: Principal, k: int) -> list[tuple[str, float]]:
        """Cosine similarity over chunks the principal may read: (chunk id, similarity), best first."""
        ...

    def get_chunks(self, chunk_ids: Sequence[str], principal: Principal) -> dict[str, Chunk]:
        """The chunks with these ids that the principal may read; others are silently absent."""
        ...

    def iter_chunks(self, batch_size: int = 1000) -> Iterator[tuple[list[Chunk], np.ndarray]]:
        """Every stored chunk with its vector, ``batch_size`` chunks at a time: (chunks, float32 array of shape
        ``(len(chunks), dim)``, row i the vector of chunk i).

        An admin export (``ragtune migrate``), never a principal's query: no ACL filter, so chunks nobody may
        read come back too, each with its ACL. The order is stable and the same on every backend: by
        ``(doc_id, ordinal, chunk_id)`` compared as code points (byte order of UTF-8), so each document's chunks
        are consecutive. A backend reads one consistent snapshot where it can (writes made while iterating are
        not seen). ``batch_size`` below 1 is a ValueError.
        """
        ...

    @property
    def state(self) -> SyncState:
        """The sync state kept with this store: roots, sync log, metadata, the write lock."""
        ...

    def chunk_index(self) -> list[ChunkRow]:
        """One light row per stored chunk (no text, no vector), for consistency checks."""
        ...

    def count(self) -> int:
        """Number of stored chunks."""
        ...

    def acl_tokens(self) -> set[str]:
        """Every distinct ACL token on a stored chunk (``public``, ``user:NAME``, ``group:NAME``).

        An admin's view of the index (the CLI warns when a principal's name matches one only in another
        letter case); never filter or answer a principal's query with it.
        """
        ...

    def version(self) -> int:
        """A number that changes whenever the stored data changes (for cache keys)."""
        ...

    def optimize(self) -> None:
        """Fold recent writes into the indexes; searches are correct before and after."""
        ...

    def bulk_load(self) -> AbstractContextManager[None]:
        """A context for loading many chunks at once (a first ingestion, a ``migrate`` target): writes inside may
        leave index upkeep to one build at the end. Searches are correct inside, perhaps slower. A normal exit
        leaves the store as :meth:`optimize` does; an error inside keeps every write that returned, and the next
        ``optimize()`` completes the indexes."""
        ...
