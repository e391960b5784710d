"""Training pairs for a retriever, generated from the index with no labels.

Two kinds of (query, positive) pair per chunk, with the chunk's own ACL:

- ``heading``: a section heading (or the document title when the chunk has no section) → the text of the first
  chunk under it (without the head line, which would contain the query verbatim);
- ``sentence``: one sentence of a chunk → the rest of that chunk, with its head line (as it is embedded).

Each pair gets one **hard negative** mined with BM25 (``Store.lexical_search``) or dense search
(``Store.dense_search``), alternately, as a principal made from the anchor's ACL tokens; only chunks whose ACL
is exactly the anchor's are kept, and never one of the positive's own document (or a copy of its text). So a
chunk one group may read never meets a chunk another may not, as positive or negative.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ragtune.core import Chunk
from ragtune.models.embedder import Embedder
from ragtune.store.base import Store
from ragtune.text import WORD, head_line, sentence_segments
from ragtune.tuning.retriever.corpus import StoredCorpus, acl_key, acl_principal, read_corpus

MIN_QUERY_WORDS = 2  # a heading such as "FAQ" or "1." says nothing about its section
MIN_SENTENCE_WORDS = 5
MIN_POSITIVE_WORDS = 8
Progress = Callable[[str, int, int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainingPair:
    """One (query, positive[, negative]) example; ``acl`` is the anchor chunk's (and the negative's) ACL."""

    query: str
    positive: str
    kind: str  # heading | sentence (from the corpus) | labelled (queries + qrels) | feedback (the web UI)
    chunk_id: str
    doc_id: str
    acl: tuple[str, ...]
    negative: str | None = None
    negative_id: str | None = None
    negative_source: str | None = None  # bm25 | dense
    extra_negatives: tuple[str, ...] = ()  # further hard negatives after ``negative`` (labelled and feedback pairs)
    # A labelled question's answer texts when its positive holds one (an answer-level label): other passages of
    # the same document may then be its in-batch negatives, as long as none holds one of these answers.
    answers: tuple[str, ...] = ()


@dataclass
class PairSet:
    """The generated pairs and what was counted on the way (pairs, negatives by source, chunks skipped)."""

    pairs: list[TrainingPair]
    counts: dict[str, int] = field(default_factory=dict)

    def digest(self) -> str:
        """SHA-256 of the pairs (queries, positives, negatives, in order): the card's data hash."""
        h = hashlib.sha256()
        for p in self.pairs:
            h.update("\0".join((p.query, p.positive, p.negative or "", *p.extra_negatives, *p.answers)).encode()
                     + b"\1")
        return h.hexdigest()


def _words(text: str) -> int:
    return len(WORD.findall(text.lower()))


def _body(text: str) -> str:
    """``text`` without its heading lines (the head line already names them)."""
    return " ".join(text[s:e] for s, e, heading in sentence_segments(text) if not heading)


def _heading_pairs(chunks: Sequence[Chunk]) -> list[TrainingPair]:
    seen: set[tuple[str, str]] = set()
    out = []
    for c in sorted(chunks, key=lambda c: (c.doc_id, c.ordinal, c.char_start, c.chunk_id)):
        heading, body = (c.section_path[-1] if c.section_path else c.title).strip(), _body(c.text)
        if (c.doc_id, heading) in seen or _words(heading) < MIN_QUERY_WORDS or _words(body) < MIN_POSITIVE_WORDS:
            continue
        seen.add((c.doc_id, heading))
        out.append(TrainingPair(heading, body, "heading", c.chunk_id, c.doc_id, acl_key(c.acl)))
    return out


def _sentence_pair(c: Chunk, rng: random.Random) -> TrainingPair | None:
    spans = [(s, e) for s, e, heading in sentence_segments(c.text)
             if not heading and _words(c.text[s:e]) >= MIN_SENTENCE_WORDS]
    if not spans:
        return None
    s, e = spans[rng.randrange(len(spans))]
    rest = " ".join((_body(c.text[:s]), _body(c.text[e:]))).strip()
    if _words(rest) < MIN_POSITIVE_WORDS:
        return None
    head = head_line(c.title, c.section_path)
    positive = f"{head}\n{rest}" if head else rest
    return TrainingPair(c.text[s:e], positive, "sentence", c.chunk_id, c.doc_id, acl_key(c.acl))


def candidate_pairs(corpus: StoredCorpus, seed: int = 0) -> tuple[list[TrainingPair], int]:
    """Every heading and sentence pair of the corpus (deterministic for a seed) and the number of chunks that
    gave neither."""
    rng = random.Random(seed)
    chunks = [corpus.chunks[cid] for cid in sorted(corpus.chunks)]
    pairs = _heading_pairs(chunks)
    used = {p.chunk_id for p in pairs}
    for c in chunks:
        pair = _sentence_pair(c, rng)
        if pair is not None:
            pairs.append(pair)
            used.add(c.chunk_id)
    return pairs, len(chunks) - len(used)


def generate_pairs(store: Store, embedder: Embedder, *, max_pairs: int = 5000, seed: int = 0,
                   negatives: bool = True, mining_k: int = 10, progress: Progress | None = None,
                   corpus: StoredCorpus | None = None) -> PairSet:
    """Pairs from every readable chunk of ``store``, shuffled with ``seed`` and capped at ``max_pairs``, each
    with a hard negative when one exists (``embedder`` must be the one that filled the index: it embeds the
    queries for the dense half of the mining)."""
    corpus = corpus if corpus is not None else read_corpus(store)
    pairs, no_pair = candidate_pairs(corpus, seed)
    random.Random(seed).shuffle(pairs)
    capped = max(0, len(pairs) - max_pairs)
    pairs = pairs[:max_pairs]
    counts: Counter[str] = Counter(chunks=len(corpus.chunks), unreadable_chunks=len(corpus.unreadable),
                                   chunks_without_pair=no_pair, capped=capped)
    if negatives and pairs:
        pairs = _mine(store, embedder, corpus, pairs, mining_k, counts, progress)
    counts.update(pairs=len(pairs), **{f"{k}_pairs": n for k, n in Counter(p.kind for p in pairs).items()})
    counts["without_negative"] = sum(p.negative is None for p in pairs)
    return PairSet(pairs, dict(counts))


def _mine(store: Store, embedder: Embedder, corpus: StoredCorpus, pairs: list[TrainingPair], k: int,
          counts: Counter[str], progress: Progress | None) -> list[TrainingPair]:
    vectors = embedder.embed([p.query for p in pairs])
    out = []
    for i, (pair, vector) in enumerate(zip(pairs, vectors, strict=True)):
        principal = acl_principal(pair.acl)
        assert principal is not None  # unreadable chunks give no pairs
        anchor = corpus.chunks[pair.chunk_id]
        for source in ("dense", "bm25") if i % 2 else ("bm25", "dense"):
            hits = (store.lexical_search(pair.query, principal, k) if source == "bm25"
                    else store.dense_search(vector, principal, k))
            negative = next((c for c in (corpus.chunks.get(cid) for cid, _ in hits) if c is not None
                             and acl_key(c.acl) == pair.acl and c.doc_id != pair.doc_id
                             and c.content_hash != anchor.content_hash), None)
            if negative is not None:
                body = _body(negative.text)
                head = head_line(negative.title, negative.section_path)
                text = body if pair.kind == "heading" or not head else f"{head}\n{body}"
                pair = TrainingPair(**{**pair.__dict__, "negative": text, "negative_id": negative.chunk_id,
                                       "negative_source": source})
                counts[f"negatives_{source}"] += 1
                break
        out.append(pair)
        if progress is not None and (i % 25 == 0 or i == len(pairs) - 1):
            progress("mine negatives", i + 1, len(pairs), {})
    return out


LABELLED_KINDS = frozenset({"labelled", "feedback"})
"""Pair kinds whose query a person wrote (labelled queries, the web UI's feedback), not generated."""


def holdout_unit(pairs: Sequence[TrainingPair], min_documents: int = 5) -> str:
    """What :func:`split_by_document` holds out for these pairs: ``query`` when labelled or feedback pairs hold
    at least ``min_documents`` distinct queries, else ``document``."""
    return "query" if len({p.query for p in pairs if p.kind in LABELLED_KINDS}) >= min_documents else "document"


def split_by_document(pairs: Sequence[TrainingPair], holdout: float, seed: int = 0,
                      min_documents: int = 5) -> tuple[list[TrainingPair], list[TrainingPair]]:
    """(train, held out): ``holdout`` of the documents (at least one) and all their pairs held out, so no held-out
    chunk is trained on. Fewer than ``min_documents`` documents, or ``holdout`` 0: nothing is held out.

    With labelled or feedback pairs from at least ``min_documents`` distinct queries (:func:`holdout_unit`),
    ``holdout`` of those **queries** (by text, at least one) are held out with all their pairs instead, and every
    other pair is trained on: the held-out recall is then on people's queries never trained on."""
    if holdout > 0 and holdout_unit(pairs, min_documents) == "query":
        queries = sorted({p.query for p in pairs if p.kind in LABELLED_KINDS})
        random.Random(seed).shuffle(queries)
        held_q = set(queries[: max(1, math.floor(len(queries) * holdout))])
        return ([p for p in pairs if not (p.kind in LABELLED_KINDS and p.query in held_q)],
                [p for p in pairs if p.kind in LABELLED_KINDS and p.query in held_q])
    docs = sorted({p.doc_id for p in pairs})
    if holdout <= 0 or len(docs) < min_documents:
        return list(pairs), []
    random.Random(seed).shuffle(docs)
    held = set(docs[: max(1, math.floor(len(docs) * holdout))])
    return [p for p in pairs if p.doc_id not in held], [p for p in pairs if p.doc_id in held]


def fold_text(text: str) -> str:
    """``text`` with whitespace collapsed and case folded: how answers are matched inside passages."""
    return " ".join(text.split()).casefold()
