"""Training pairs from labelled queries: BEIR ``queries.jsonl`` + qrels TSV, or a JSONL of question → gold document.

The files are read by :mod:`ragtune.evaluation.data` (the loaders of ``ragtune eval``, errors by ``file:line``)
and each corpus id is mapped to an indexed document the same way (file stem, or path relative to its ingested
folder). For each (query, relevant gold document):

- the **positive** is the gold document's chunk that scores best for the query (dense cosine with the index's
  embedder among that document's chunks that are more than a heading, if it has any), its text as embedded
  (``Chunk.search_text``), with that chunk's ACL. When the question gives its ``answer`` text(s), only the gold
  document's chunks holding an answer (case and whitespace aside) compete, so a long document's label is the
  passage itself (a question whose answer no chunk holds falls back to the best chunk, and is counted);
- the **hard negatives** (:mod:`.negatives`) come from the BM25 and dense top for the query, searched as the
  principal of the positive's ACL, kept only with exactly that ACL and never from a gold document of the query —
  or, for a question with answers, never a chunk holding an answer (other passages of the gold document are
  then the hardest negatives there are).

A gold document not in the index, or one nobody may read (an empty ACL), gives no pair and is counted.
"""

from __future__ import annotations

import functools
import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ragtune.core import Chunk
from ragtune.errors import DataError
from ragtune.evaluation.data import (
    EvalQuery,
    Qrels,
    document_map,
    load_qrels,
    load_queries,
    load_questions,
    resolve_qrels,
)
from ragtune.ingest.roots import load_roots
from ragtune.models.embedder import Embedder
from ragtune.store.base import Store
from ragtune.tuning.retriever.corpus import StoredCorpus, acl_key, read_corpus
from ragtune.tuning.retriever.negatives import MIN_BODY_WORDS, body_words, mine_negatives, with_negatives
from ragtune.tuning.retriever.pairs import PairSet, Progress, TrainingPair, fold_text

KIND = "labelled"


def load_labelled(queries: Path, qrels: Path | None) -> tuple[list[EvalQuery], Qrels]:
    """The labelled queries and their judgements: BEIR ``queries`` + ``qrels``, or (``qrels`` None) a questions
    JSONL (``{"question", "gold"}`` per line). Qrels whose query ids match no query are a :class:`DataError`."""
    if qrels is None:
        try:
            return load_questions(queries)
        except DataError as exc:
            if _looks_like_beir_queries(queries):
                raise DataError(f"{exc}; a BEIR queries file ({{\"_id\", \"text\"}} per line) needs --qrels "
                                "QRELS.tsv") from None
            raise
    query_list, judgements = load_queries(queries), load_qrels(qrels)
    ids = {q.qid for q in query_list}
    if not any(qid in ids and any(g > 0 for g in rel.values()) for qid, rel in judgements.items()):
        qrels_ids = ", ".join(repr(q) for q in sorted(judgements)[:3])
        query_ids = ", ".join(repr(q.qid) for q in query_list[:3])
        raise DataError(f"{qrels}: no query id with a relevant document (score > 0) is in {queries} (qrels ids "
                        f"such as {qrels_ids}; query ids such as {query_ids}): give the queries file the qrels "
                        "were made for")
    return query_list, judgements


def _looks_like_beir_queries(path: Path) -> bool:
    """Whether the first line of ``path`` is a BEIR query (``_id`` and ``text``, no ``question``)."""
    try:
        with path.open(encoding="utf-8-sig") as fh:
            first = next((line for line in fh if line.strip()), "")
        obj = json.loads(first)
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(obj, dict) and {"_id", "text"} <= obj.keys() and "question" not in obj


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.where(norms == 0, 1.0, norms), dtype=np.float32)


class BestChunk:
    """The chunk of a document that scores best for a query (dense cosine), each document embedded once. Chunks
    that are only a heading compete only when the document has nothing else."""

    def __init__(self, embedder: Embedder, by_doc: dict[str, list[Chunk]]) -> None:
        self.embedder, self.by_doc = embedder, by_doc
        self._vectors: dict[str, np.ndarray] = {}

    def candidates(self, doc_id: str) -> list[Chunk]:
        """The chunks of ``doc_id`` a positive is chosen from."""
        chunks = self.by_doc[doc_id]
        return [c for c in chunks if body_words(c) >= MIN_BODY_WORDS] or chunks

    def __call__(self, doc_id: str, query_vector: np.ndarray, answers: tuple[str, ...] = ()) -> Chunk | None:
        """The best chunk of ``doc_id`` (which must have readable chunks) for the unit ``query_vector``; with
        ``answers``, the best of the chunks holding one (None when no chunk does)."""
        chunks = self.candidates(doc_id)
        allowed = [i for i, c in enumerate(chunks) if holds_answer(c, answers)] if answers else list(range(len(chunks)))
        if not allowed:
            return None
        if len(allowed) == 1:
            return chunks[allowed[0]]
        if doc_id not in self._vectors:
            self._vectors[doc_id] = _unit(self.embedder.embed([c.search_text for c in chunks]))
        scores = self._vectors[doc_id][allowed] @ query_vector
        return chunks[allowed[int(np.argmax(scores))]]


def rejects_answer(answers: tuple[str, ...], chunk: Chunk) -> bool:
    """:func:`holds_answer` with the answers first, for ``functools.partial``."""
    return holds_answer(chunk, answers)


def holds_answer(chunk: Chunk, answers: tuple[str, ...]) -> bool:
    """Whether ``chunk``'s text holds one of ``answers`` (case and whitespace aside)."""
    text = fold_text(chunk.text)
    return any(fold_text(a) in text for a in answers)


def chunks_by_document(corpus: StoredCorpus) -> dict[str, list[Chunk]]:
    """The readable chunks of ``corpus`` by document, in document order."""
    out: dict[str, list[Chunk]] = defaultdict(list)
    for c in sorted(corpus.chunks.values(), key=lambda c: (c.doc_id, c.ordinal, c.char_start, c.chunk_id)):
        out[c.doc_id].append(c)
    return dict(out)


def labelled_pairs(store: Store, embedder: Embedder, queries: Path, qrels: Path | None, *, negatives: int = 4,
                   seed: int = 0, progress: Progress | None = None, corpus: StoredCorpus | None = None,
                   roots: Iterable[Path] | None = None) -> PairSet:
    """One pair (kind ``labelled``) per labelled query and relevant gold document of the index, each with up to
    ``negatives`` hard negatives, shuffled with ``seed``.

    ``embedder`` must be the one that filled the index. ``roots`` (the ingested folders, for corpus ids given
    as relative paths) default to the store's; ``corpus`` (:func:`read_corpus`) is read when not given. Counts:
    ``labelled_queries`` (queries with a relevant judgement), ``labelled_pairs``, ``gold_not_indexed``,
    ``gold_unreadable``, ``qrels_queries_missing`` (qrels ids the query file lacks), ``answer_not_found`` (a
    question whose answer no chunk of its gold document holds: its best chunk is used), ``labelled_duplicates``
    (a query → chunk pair already made), and the negatives
    (``labelled_negatives_bm25``/``_dense``, ``labelled_extra_negatives``, ``labelled_without_negative``).
    Bad files, and no usable pair at all, are a :class:`DataError`."""
    query_list, judgements = load_labelled(queries, qrels)
    root_list = list(roots) if roots is not None else list(load_roots(store.state))
    resolved = resolve_qrels(query_list, judgements, document_map(store.documents(), root_list), strict=False)
    corpus = corpus if corpus is not None else read_corpus(store)
    by_doc = chunks_by_document(corpus)
    known = {q.qid for q in query_list}
    counts: Counter[str] = Counter(labelled_queries=len(resolved.queries),
                                   gold_not_indexed=sum(qid in known for qid, _ in resolved.unknown),
                                   gold_unreadable=0, qrels_queries_missing=len(resolved.missing_queries))
    wanted: list[tuple[EvalQuery, str, frozenset[str]]] = []
    for q in resolved.queries:
        gold = frozenset(d for d, grade in resolved.qrels[q.qid].items() if grade > 0)
        for doc in sorted(gold):
            if doc in by_doc:
                wanted.append((q, doc, gold))
            else:
                counts["gold_unreadable"] += 1
    texts = sorted({q.text for q, _, _ in wanted})
    vectors = dict(zip(texts, _unit(embedder.embed(texts)) if texts else [], strict=True))
    best = BestChunk(embedder, by_doc)
    pairs: list[TrainingPair] = []
    seen: set[tuple[str, str]] = set()
    for i, (q, doc, gold) in enumerate(wanted):
        chunk = best(doc, vectors[q.text], q.answers)
        answers = q.answers  # an answer-level label (see TrainingPair.answers)
        if chunk is None:
            counts["answer_not_found"] += 1
            chunk, answers = best(doc, vectors[q.text]), ()
            assert chunk is not None
        if (q.text, chunk.chunk_id) in seen:  # the same query text twice, or two gold ids naming one document
            counts["labelled_duplicates"] += 1
        else:
            seen.add((q.text, chunk.chunk_id))
            pair = TrainingPair(q.text, chunk.search_text, KIND, chunk.chunk_id, chunk.doc_id, acl_key(chunk.acl),
                                answers=tuple(answers))
            if q.answers:
                found = mine_negatives(store, corpus, q.text, vectors[q.text], chunk, (), negatives,
                                       reject=functools.partial(rejects_answer, q.answers))
            else:
                found = mine_negatives(store, corpus, q.text, vectors[q.text], chunk, gold, negatives)
            pairs.append(with_negatives(pair, found, counts, KIND))
        if progress is not None and (i % 25 == 0 or i == len(wanted) - 1):
            progress("labelled pairs", i + 1, len(wanted), {})
    if not pairs:
        raise DataError(f"{queries}: no usable labelled pair: of {counts['labelled_queries']} judged queries' gold "
                        f"documents, {counts['gold_not_indexed']} are not in the index and "
                        f"{counts['gold_unreadable']} are readable by nobody (no ACL); corpus ids are file stems "
                        "or paths relative to the ingested folder (`ragtune sources` lists the documents)")
    random.Random(seed).shuffle(pairs)
    counts.update(pairs=len(pairs), labelled_pairs=len(pairs))
    return PairSet(pairs, dict(counts))
