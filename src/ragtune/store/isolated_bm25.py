"""BM25 whose statistics cover only the chunks one principal may read: the lexical isolation mode.

The store's full-text index keeps one set of term statistics (document count N, document frequencies, average
length) over *every* chunk. The ACL pre-filter keeps unreadable chunks out of the results, but not out of the
statistics, so a readable chunk's score depends on text the principal may not see: ten hidden documents
containing a term lower its IDF for everyone, and a principal can probe for hidden terms by watching the score
or the rank of a public document move. In isolation mode the store lists the principal's readable chunks (ACL
filter inside that query too) and this module scores them with ``bm25s`` over those chunks alone, so every
number that reaches the principal is a function of text the principal may read.

The analysis and the formula are Lance's own (``FTS(stem=True, remove_stop_words=True)``): split on
non-alphanumeric characters, drop tokens of 40 bytes or more, lower-case, Snowball English stem, drop stemmed
tokens in Lance's English stop list (NLTK's, contractions split at the apostrophe), fold to ASCII; Lucene BM25
with k1 = 1.2, b = 0.75 scaled by (k1 + 1); chunks without a single token count in neither N nor the average
length; a repeated query term counts each time. So a principal's isolated results are, up to float rounding
and tie order, what the full-text index would return if the store held only that principal's chunks.

Indexes are cached per (store version, principal's ACL tokens) in a small LRU: a principal's index is never
used for a principal with another token set, and any write (new version) makes the old entries unreachable.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from typing import Generic, TypeVar

import numpy as np

K1 = 1.2
B = 0.75
MAX_TOKEN_BYTES = 40  # Lance drops tokens of this many UTF-8 bytes or more (RemoveLongFilter, max_token_length)
DEFAULT_CACHE_SIZE = 16

CacheKey = tuple[int, tuple[str, ...]]  # (store version, the principal's sorted ACL tokens)
V = TypeVar("V")

_WORD = re.compile(r"[^\W_]+")  # runs of letters and digits, as Lance's "simple" base tokenizer splits

# Lance's English stop words: NLTK's list, whose contractions ("don't") the tokenizer sees as parts ("don", "t").
# Measured against lancedb 0.40: each of ~450 candidate words was indexed and probed, and exactly the words
# whose stem is in this set were dropped. Lance stems first, so the set is matched against stemmed tokens.
_NLTK_ENGLISH = """
a about above after again against ain all am an and any are aren aren't as at be because been before being
below between both but by can couldn couldn't d did didn didn't do does doesn doesn't doing don don't down
during each few for from further had hadn hadn't has hasn hasn't have haven haven't having he her here hers
herself him himself his how i if in into is isn isn't it it's its itself just ll m ma me mightn mightn't more
most mustn mustn't my myself needn needn't no nor not now o of off on once only or other our ours ourselves
out over own re s same shan shan't she she's should should've shouldn shouldn't so some such t than that
that'll the their theirs them themselves then there these they this those through to too under until up ve
very was wasn wasn't we were weren weren't what when where which while who whom why will with won won't
wouldn wouldn't y you you'd you'll you're you've your yours yourself yourselves
"""
STOP_WORDS = frozenset(part for word in _NLTK_ENGLISH.split() for part in _WORD.findall(word))

# Latin letters without a Unicode decomposition, folded as Lucene's ASCIIFoldingFilter folds them.
_FOLD_EXTRA = str.maketrans({
    "ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D", "ł": "l",
    "Ł": "L", "þ": "th", "Þ": "TH", "ð": "d", "Ð": "D", "ı": "i", "ħ": "h", "ŧ": "t", "ŋ": "n", "ĸ": "q",
})

_local = threading.local()  # PyStemmer objects are not thread-safe: one per thread


def _stemmer() -> object:
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        import Stemmer

        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


def _fold(token: str) -> str:
    """ASCII folding: accents dropped where the letter decomposes to ASCII; other scripts left alone."""
    if token.isascii():
        return token
    out = []
    for ch in token.translate(_FOLD_EXTRA):
        if ch.isascii():
            out.append(ch)
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
        out.append(base if base and base.isascii() else ch)
    return "".join(out)


def analyze(text: str) -> list[str]:
    """The terms the store's full-text index makes of ``text`` (see the module docstring)."""
    return analyze_many([text])[0]


def analyze_many(texts: Sequence[str]) -> list[list[str]]:
    """:func:`analyze` for many texts: each distinct word is stemmed and folded once per call.

    The word-to-term memo lives only for this call, so nothing learned from one principal's chunks is kept
    where another principal's search could time it.
    """
    words = [_WORD.findall(t) for t in texts]
    memo: dict[str, str] = {}
    fresh = list({w for ws in words for w in ws})
    if fresh:
        kept = [w for w in fresh if len(w.encode("utf-8")) < MAX_TOKEN_BYTES]
        stems: list[str] = _stemmer().stemWords([w.lower() for w in kept])  # type: ignore[attr-defined]
        memo = dict.fromkeys(fresh, "")
        memo.update((w, "" if s in STOP_WORDS else _fold(s)) for w, s in zip(kept, stems, strict=True))
    return [[t for t in map(memo.__getitem__, ws) if t] for ws in words]


class IsolatedBM25:
    """A BM25 index over a fixed list of (chunk id, search text): the chunks one principal may read."""

    def __init__(self, chunk_ids: Sequence[str], texts: Sequence[str]) -> None:
        if len(chunk_ids) != len(texts):
            raise ValueError(f"{len(chunk_ids)} ids but {len(texts)} texts")
        analyzed = list(zip(chunk_ids, analyze_many(texts), strict=True))
        # A chunk without a single term counts in neither N nor the average length (as in the store's index).
        kept = [(cid, toks) for cid, toks in analyzed if toks]
        self.chunk_ids: list[str] = [cid for cid, _ in kept]
        self._model = None
        if kept:
            import bm25s

            self._model = bm25s.BM25(k1=K1, b=B, method="lucene")
            self._model.index([toks for _, toks in kept], create_empty_token=False, show_progress=False)

    def __len__(self) -> int:
        return len(self.chunk_ids)

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """The best ``k`` chunks for ``query``: (chunk id, score), best first, ties by chunk id."""
        if self._model is None or k <= 0:
            return []
        vocab = self._model.vocab_dict
        ids = [vocab[t] for t in analyze(query) if t in vocab]  # repeated terms count each time, as in Lance
        if not ids:
            return []
        scores = np.asarray(self._model.get_scores_from_ids(ids), dtype=np.float32) * np.float32(K1 + 1.0)
        hit = np.flatnonzero(scores > 0)
        if hit.size > k:
            # Keep every chunk tied with the k-th score so the tie order below is by id, not by position.
            kth = np.partition(scores[hit], hit.size - k)[hit.size - k]
            hit = hit[scores[hit] >= kth]
        ranked = sorted(hit.tolist(), key=lambda i: (-float(scores[i]), self.chunk_ids[i]))[:k]
        return [(self.chunk_ids[i], float(scores[i])) for i in ranked]


class IsolatedIndexCache(Generic[V]):
    """A thread-safe LRU of per-principal values (:class:`IsolatedBM25` indexes; the embedded store's readable
    counts too) keyed by (store version, principal's ACL tokens)."""

    def __init__(self, maxsize: int = DEFAULT_CACHE_SIZE) -> None:
        if maxsize < 0:
            raise ValueError("maxsize must be >= 0")
        self.maxsize = maxsize
        self._items: OrderedDict[CacheKey, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(version: int, tokens: Sequence[str]) -> CacheKey:
        """The cache key: one index per store version and exact (sorted, deduplicated) token set."""
        return (int(version), tuple(sorted(set(tokens))))

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def cached_keys(self) -> list[CacheKey]:
        """Cached keys, least recently used first."""
        with self._lock:
            return list(self._items)

    def get(self, key: CacheKey) -> V | None:
        """The cached index for ``key`` (marked recently used), or None."""
        with self._lock:
            index = self._items.get(key)
            if index is None:
                self.misses += 1
            else:
                self.hits += 1
                self._items.move_to_end(key)
            return index

    def put(self, key: CacheKey, index: V) -> None:
        """Cache ``index`` under ``key``, evicting the least recently used beyond ``maxsize``.

        Store versions only grow, so entries of older versions can never be asked for again: they are dropped
        (and an index built for an older version than one already cached is not kept).
        """
        if self.maxsize == 0:
            return
        with self._lock:
            if any(k[0] > key[0] for k in self._items):
                return
            for stale in [k for k in self._items if k[0] < key[0]]:
                del self._items[stale]
            self._items[key] = index
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def clear(self) -> None:
        """Drop every cached index."""
        with self._lock:
            self._items.clear()


__all__ = ["B", "K1", "STOP_WORDS", "IsolatedBM25", "IsolatedIndexCache", "analyze", "analyze_many"]
