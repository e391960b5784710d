"""What an answer cache entry is keyed by: who may read what, in which index, under which settings and models.

Two principals share an entry only when their *effective* ACL tokens are equal: their tokens (``public``,
``user:NAME``, ``group:NAME``) intersected with the tokens present in the index. A chunk is readable by a
principal exactly when its ACL shares a token with the principal, and every chunk's tokens are in the index's
set, so equal effective tokens mean equal readable chunks (and equal per-principal BM25 statistics), hence the
same answer. Tokens compare exactly, as the store does: ``group:Staff`` and ``group:staff`` are different.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ragtune.core import Principal

if TYPE_CHECKING:
    from ragtune.config import Settings
    from ragtune.store.base import Store

# The settings sections that change an answer for the same readable chunks (the index itself is covered by
# its version: chunking and ingest settings only act through it).
ANSWER_SECTIONS = ("retrieval", "rerank", "answer", "generator", "embedder")


@dataclass(frozen=True)
class CacheKey:
    """The part of an entry's identity that is not the question."""

    tokens: tuple[str, ...]  # effective ACL tokens, sorted
    index_version: int
    config: str  # digest of the answer settings and the model versions


def effective_tokens(principal: Principal, index_tokens: set[str] | frozenset[str]) -> tuple[str, ...]:
    """The principal's tokens that some stored chunk carries (sorted): what decides what it may read."""
    return tuple(t for t in principal.tokens() if t in index_tokens)


def config_digest(settings: Settings, embedder_fingerprint: str) -> str:
    """SHA-256 of the answer-relevant settings sections and the embedder's fingerprint.

    The generator's model is part of the ``generator`` section (``kind``, ``model``, ``base_url``).
    """
    parts = {name: getattr(settings, name).model_dump(mode="json") for name in ANSWER_SECTIONS}
    parts["embedder_fingerprint"] = embedder_fingerprint
    raw = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(raw).hexdigest()


class IndexTokens:
    """The index's distinct ACL tokens, read once per index version (thread-safe)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._version: int | None = None
        self._tokens: frozenset[str] = frozenset()

    def at(self, version: int) -> frozenset[str] | None:
        """The tokens of index version ``version``, or None when the index moved on while they were read."""
        with self._lock:
            if self._version == version:
                return self._tokens
            tokens = frozenset(self._store.acl_tokens())
            if self._store.version() != version:
                return None  # a write landed in between: these tokens may belong to another version
            self._version, self._tokens = version, tokens
            return tokens
