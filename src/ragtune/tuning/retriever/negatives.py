"""Hard negatives for pairs whose query a person wrote (labelled queries, the web UI's feedback).

For one query and its positive chunk: the BM25 top and the dense top for the query, searched as the principal of
the positive's ACL (``acl_principal``) and interleaved (BM25 first, then dense, then the second of each, ...).
A candidate is kept only when its ACL is **exactly** the positive's, it belongs to none of the query's gold
documents (or, for a question with answer texts, holds none of them), its text is not the positive's (nor a
negative already taken), and it is more than a heading (at least ``MIN_BODY_WORDS`` words outside heading lines).
The pair's ``negative`` is the first; ``extra_negatives`` hold the rest (a cross-encoder reranker trains on all of
them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import replace

import numpy as np

from ragtune.core import Chunk
from ragtune.store.base import Store
from ragtune.text import WORD, sentence_segments
from ragtune.tuning.retriever.corpus import StoredCorpus, acl_key, acl_principal
from ragtune.tuning.retriever.pairs import TrainingPair

MIN_MINING_K = 10  # candidates per side searched at least
MIN_BODY_WORDS = 8  # a chunk holding only its document's title line says nothing a query could be about


def body_words(chunk: Chunk) -> int:
    """Words of ``chunk`` outside its heading lines (a title-only chunk has none)."""
    return sum(len(WORD.findall(chunk.text[s:e].lower())) for s, e, heading in sentence_segments(chunk.text)
               if not heading)


def mine_negatives(store: Store, corpus: StoredCorpus, query: str, vector: np.ndarray, positive: Chunk,
                   gold_docs: Collection[str], n: int,
                   reject: Callable[[Chunk], bool] | None = None) -> list[tuple[Chunk, str]]:
    """Up to ``n`` hard negatives ``(chunk, source)`` for ``query`` → ``positive`` (``source``: bm25 or dense),
    best first; ``vector`` is the query embedded by the index's embedder. None when ``n`` is 0. ``reject``
    leaves out further chunks (those holding the question's answer)."""
    key = acl_key(positive.acl)
    principal = acl_principal(key)
    if n <= 0 or principal is None:
        return []
    k = max(MIN_MINING_K, 3 * n)
    bm25 = store.lexical_search(query, principal, k)
    dense = store.dense_search(vector, principal, k)
    ranked = [(hits[i][0], source) for i in range(max(len(bm25), len(dense)))
              for hits, source in ((bm25, "bm25"), (dense, "dense")) if i < len(hits)]
    seen = {positive.content_hash, positive.search_text}
    out: list[tuple[Chunk, str]] = []
    for cid, source in ranked:
        c = corpus.chunks.get(cid)
        if c is None or acl_key(c.acl) != key or c.doc_id in gold_docs or c.content_hash in seen \
                or c.search_text in seen or body_words(c) < MIN_BODY_WORDS or (reject is not None and reject(c)):
            continue
        seen.update((c.content_hash, c.search_text))
        out.append((c, source))
        if len(out) == n:
            break
    return out


def with_negatives(pair: TrainingPair, found: list[tuple[Chunk, str]], counts: Counter[str],
                   prefix: str) -> TrainingPair:
    """``pair`` with the negatives ``found`` (texts as embedded: ``search_text``), counted under ``prefix``
    (``{prefix}_negatives_bm25`` etc. for the first negative, ``{prefix}_extra_negatives``,
    ``{prefix}_without_negative``)."""
    if not found:
        counts[f"{prefix}_without_negative"] += 1
        return pair
    (first, source), rest = found[0], found[1:]
    counts[f"{prefix}_negatives_{source}"] += 1
    counts[f"{prefix}_extra_negatives"] += len(rest)
    return replace(pair, negative=first.search_text, negative_id=first.chunk_id, negative_source=source,
                   extra_negatives=tuple(c.search_text for c, _ in rest))
