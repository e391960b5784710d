"""The permission-aware answer cache ``Project.ask`` consults (``cache`` settings, docs/cache.md).

An entry is found by its :class:`~ragtune.cache.keys.CacheKey` (the asker's effective ACL tokens, the index
version, a digest of the answer settings and model versions) plus the question: exactly, or, in semantic mode,
the cached question of the *same key* whose embedding is nearest by cosine, at least ``semantic_threshold``.
So an answer, its citations and snippets only ever reach a principal that reads exactly the chunks the
answer was computed from. Any write to the index bumps its version: older entries become unreachable and the
cache empties itself the first time it sees the new version. In-process LRU, bounded in entries, with a TTL;
thread-safe. ``stats()`` counts hits and misses; ``hooks`` are called with ``True`` (hit) or ``False`` (miss).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ragtune.cache.keys import CacheKey, IndexTokens, config_digest, effective_tokens
from ragtune.core import Answer, Principal

if TYPE_CHECKING:
    from ragtune.config import Settings
    from ragtune.models.embedder import Embedder
    from ragtune.store.base import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheStats:
    """Counters since the cache was built (``entries``: held now)."""

    hits: int = 0
    semantic_hits: int = 0
    misses: int = 0
    bypassed: int = 0  # lookups skipped because the index changed while its ACL tokens were read
    stored: int = 0
    evictions: int = 0
    expirations: int = 0
    invalidations: int = 0  # times the cache emptied itself on a new index version (or clear())
    entries: int = 0

    @property
    def hit_ratio(self) -> float:
        """Hits (exact and semantic) over hits and misses; 0.0 before any lookup."""
        served = self.hits + self.semantic_hits
        total = served + self.misses
        return served / total if total else 0.0


@dataclass
class _Entry:
    answer: Answer
    vector: np.ndarray | None
    expires: float


class Lookup:
    """One ask's visit to the cache: the cached answer (a hit), or where to store the fresh one (a miss)."""

    def __init__(self, cache: AnswerCache, key: CacheKey, question: str, vector: np.ndarray | None,
                 answer: Answer | None, similarity: float | None, started: float) -> None:
        self._cache, self.key, self.question, self._vector = cache, key, question, vector
        self.answer, self.similarity, self._started = answer, similarity, started

    @property
    def hit(self) -> bool:
        """Whether a cached answer is served."""
        return self.answer is not None

    def served(self, load: dict[str, float], on_token: Callable[[str], None] | None = None) -> Answer:
        """The cached answer for this question: ``latency_ms`` is ``load`` plus ``cache_hit`` (the lookup, ms)
        and ``total``; a semantic hit carries the asked question and a flag naming the similarity."""
        if self.answer is None:
            raise ValueError("a cache miss has no answer to serve; compute it and call store()")
        ms = (time.perf_counter() - self._started) * 1000
        answer = replace(self.answer, question=self.question,
                         latency_ms={**load, "cache_hit": ms, "total": ms})
        if self.similarity is not None:
            answer = replace(answer, flags=(*answer.flags, f"semantic cache hit: the answer to an earlier question "
                                            f"{self.answer.question!r} (cosine {self.similarity:.3f})"))
        if on_token is not None and not answer.abstained:
            on_token(answer.text)  # a stream still gets the text, in one piece
        return answer

    def store(self, answer: Answer) -> None:
        """Cache the answer computed on a miss (skipped when the index changed since the lookup)."""
        if self.answer is None:
            self._cache._put(self.key, self.question, self._vector, answer)


class AnswerCache:
    """Exact (optionally semantic) answers per effective ACL tokens, index version, settings and models."""

    def __init__(self, store: Store, embedder: Embedder, settings: Settings, *, max_entries: int = 1000,
                 ttl_s: float = 600.0, semantic: bool = False, semantic_threshold: float = 0.95,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1 or ttl_s <= 0 or not 0 < semantic_threshold <= 1:
            raise ValueError("cache: max_entries must be >= 1, ttl_s > 0 and semantic_threshold in (0, 1]")
        self._store, self._embedder, self._settings = store, embedder, settings
        self.max_entries, self.ttl_s = max_entries, ttl_s
        self.semantic, self.semantic_threshold = semantic, semantic_threshold
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[CacheKey, str], _Entry] = OrderedDict()
        self._by_key: dict[CacheKey, dict[str, None]] = {}  # the questions held per key (semantic scan)
        self._tokens = IndexTokens(store)
        self._config: str | None = None
        self._seen_version: int | None = None
        self._counts = dict.fromkeys(("hits", "semantic_hits", "misses", "bypassed", "stored", "evictions",
                                      "expirations", "invalidations"), 0)
        self.hooks: list[Callable[[bool], None]] = _default_hooks()

    @classmethod
    def from_settings(cls, settings: Settings, store: Store, embedder: Embedder) -> AnswerCache:
        """The cache the ``cache`` settings section describes."""
        c = settings.cache
        return cls(store, embedder, settings, max_entries=c.max_entries, ttl_s=c.ttl_s, semantic=c.semantic,
                   semantic_threshold=c.semantic_threshold)

    def lookup(self, question: str, principal: Principal) -> Lookup | None:
        """The cached answer for ``principal`` (a hit), a miss to store into, or None: the index is being
        written right now, so neither look up nor store."""
        started = time.perf_counter()
        version = self._store.version()
        if version != self._seen_version:
            with self._lock:
                if self._seen_version is not None and self._entries:
                    self._drop_all()
                self._seen_version = version
        tokens = self._tokens.at(version)
        if tokens is None:
            self._count("bypassed")
            return None
        if self._config is None:
            self._config = config_digest(self._settings, self._embedder.fingerprint)
        key = CacheKey(effective_tokens(principal, tokens), version, self._config)
        now = self._clock()
        with self._lock:
            entry = self._live(key, question, now)
            if entry is not None:
                self._entries.move_to_end((key, question))
                self._counts["hits"] += 1
        if entry is not None:
            self._notify(True)
            return Lookup(self, key, question, entry.vector, entry.answer, None, started)
        vector = self._embed(question) if self.semantic else None
        if vector is not None:
            found = self._nearest(key, vector, now)
            if found is not None:
                self._notify(True)
                return Lookup(self, key, question, vector, found[0], found[1], started)
        self._count("misses")
        self._notify(False)
        return Lookup(self, key, question, vector, None, None, started)

    def clear(self) -> None:
        """Drop every entry (the counters are kept)."""
        with self._lock:
            self._drop_all()

    def stats(self) -> CacheStats:
        """The counters and the number of entries held."""
        with self._lock:
            return CacheStats(**self._counts, entries=len(self._entries))

    # --- internals (callers hold no lock unless said) -------------------------------------------------

    def _embed(self, question: str) -> np.ndarray:
        v = np.asarray(self._embedder.embed([question])[0], dtype=np.float32)
        norm = float(np.linalg.norm(v))
        return v / norm if norm > 0 else v

    def _live(self, key: CacheKey, question: str, now: float) -> _Entry | None:
        """The entry if present and not expired (an expired one is removed). Lock held."""
        entry = self._entries.get((key, question))
        if entry is not None and entry.expires <= now:
            self._remove((key, question))
            self._counts["expirations"] += 1
            return None
        return entry

    def _nearest(self, key: CacheKey, vector: np.ndarray, now: float) -> tuple[Answer, float] | None:
        """The answer of the most similar live question of the same key, at least the threshold."""
        with self._lock:
            best: tuple[float, str] | None = None
            for question in list(self._by_key.get(key, ())):
                entry = self._live(key, question, now)
                if entry is None or entry.vector is None:
                    continue
                sim = float(entry.vector @ vector)
                if sim >= self.semantic_threshold and (best is None or sim > best[0]):
                    best = (sim, question)
            if best is None:
                return None
            self._entries.move_to_end((key, best[1]))
            self._counts["semantic_hits"] += 1
            return self._entries[(key, best[1])].answer, best[0]

    def _put(self, key: CacheKey, question: str, vector: np.ndarray | None, answer: Answer) -> None:
        if self._store.version() != key.index_version:
            return  # computed while the index changed: it may come from the newer version
        with self._lock:
            if key.index_version != self._seen_version:
                return
            item = (key, question)
            self._entries[item] = _Entry(answer, vector, self._clock() + self.ttl_s)
            self._entries.move_to_end(item)
            self._by_key.setdefault(key, {})[question] = None
            self._counts["stored"] += 1
            while len(self._entries) > self.max_entries:
                self._remove(next(iter(self._entries)))
                self._counts["evictions"] += 1

    def _remove(self, item: tuple[CacheKey, str]) -> None:
        """Lock held."""
        del self._entries[item]
        questions = self._by_key.get(item[0])
        if questions is not None:
            questions.pop(item[1], None)
            if not questions:
                del self._by_key[item[0]]

    def _drop_all(self) -> None:
        """Lock held."""
        self._entries.clear()
        self._by_key.clear()
        self._counts["invalidations"] += 1

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _notify(self, hit: bool) -> None:
        for hook in self.hooks:
            try:
                hook(hit)
            except Exception:  # noqa: BLE001 - a metrics hook must never fail an answer
                log.warning("answer cache hook %r failed", hook, exc_info=True)


def _default_hooks() -> list[Callable[[bool], None]]:
    """``ragtune.observability.metrics.record_cache`` when that module exists, else none."""
    try:
        from ragtune.observability.metrics import record_cache
    except ImportError:
        return []
    return [record_cache]
