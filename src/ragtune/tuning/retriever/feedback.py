"""Training pairs from the web UI's feedback: a thumbs-up on an answer makes (question → each cited chunk) a pair.

Feedback is what readers of ``ragtune serve``'s chat (``/ui/``) marked 👍 / 👎 (``UiStore.feedback()``: the
question, the answer and its cited chunks by id). Only thumbs-up verdicts give pairs, and a cited chunk only when
the person who gave the feedback **may still read it now**: their principal as stored with the chat history
(user and groups when they asked) is checked against the chunk's current ACL by the store's own filter
(``get_chunks``). Fail closed: a verdict whose asker is unknown (no history row, another user, names that are
not valid) gives nothing; a chunk gone from the index (re-synced or deleted) gives nothing. All are counted.
Hard negatives as for labelled queries (:mod:`.negatives`), never from a document the answer cited.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from ragtune.core import Principal
from ragtune.errors import DataError, RagtuneError
from ragtune.models.embedder import Embedder
from ragtune.store.base import Store
from ragtune.tuning.retriever.corpus import StoredCorpus, acl_key, read_corpus
from ragtune.tuning.retriever.negatives import mine_negatives, with_negatives
from ragtune.tuning.retriever.pairs import PairSet, Progress, TrainingPair

if TYPE_CHECKING:
    from ragtune.server.ui.store import UiStore

KIND = "feedback"
WHERE = ("feedback comes from the web UI: readers mark answers 👍 / 👎 in `ragtune serve`'s chat at /ui/, and "
         "each thumbs-up becomes a training pair")


def _principal(user: Any, owner: Any) -> Principal | None:
    try:
        name, groups = json.loads(owner)
        if name != user or not isinstance(groups, list):
            return None
        return Principal(str(name), frozenset(str(g) for g in groups))
    except (TypeError, ValueError, RagtuneError):
        return None


def load_feedback(ui_store: UiStore) -> list[dict[str, Any]]:
    """The recorded verdicts (``UiStore.feedback()``); no store file or no verdict is a :class:`DataError`."""
    if not ui_store.path.is_file():
        raise DataError(f"no feedback recorded: {ui_store.path} does not exist; {WHERE}")
    rows = ui_store.feedback()
    if not rows:
        raise DataError(f"no feedback recorded in {ui_store.path} yet; {WHERE}")
    return rows


def feedback_pairs(store: Store, embedder: Embedder, ui_store: UiStore, *, negatives: int = 4, seed: int = 0,
                   progress: Progress | None = None, corpus: StoredCorpus | None = None) -> PairSet:
    """One pair (kind ``feedback``) per thumbs-up and cited chunk its asker may still read, each with up to
    ``negatives`` hard negatives, shuffled with ``seed``.

    Counts: ``feedback_verdicts``, ``feedback_up``, ``feedback_pairs``, and what was skipped:
    ``feedback_unknown_asker``, ``feedback_no_citation``, ``feedback_chunk_gone``, ``feedback_no_longer_readable``,
    ``feedback_duplicates``; negatives as ``feedback_negatives_bm25``/``_dense``, ``feedback_extra_negatives``,
    ``feedback_without_negative``. No feedback, or no usable pair, is a :class:`DataError`."""
    rows = load_feedback(ui_store)
    corpus = corpus if corpus is not None else read_corpus(store)
    counts: Counter[str] = Counter(feedback_verdicts=len(rows), feedback_up=0, feedback_unknown_asker=0,
                                   feedback_no_citation=0, feedback_chunk_gone=0, feedback_no_longer_readable=0)
    wanted: list[tuple[str, str, frozenset[str], Principal]] = []  # question, chunk id, cited docs, asker
    for row in rows:
        if row["verdict"] != "up":
            continue
        counts["feedback_up"] += 1
        principal, cited = _principal(row["user"], row.get("owner")), row["cited_chunks"]
        if principal is None:
            counts["feedback_unknown_asker"] += 1
        elif row.get("abstained") or not cited:
            counts["feedback_no_citation"] += 1
        else:
            docs = frozenset(str(c["doc_id"]) for c in cited)
            wanted += [(str(row["question"]), str(c["chunk_id"]), docs, principal) for c in cited]
    readable: dict[tuple[Principal, str], bool] = {}
    by_asker: dict[Principal, set[str]] = {}
    for _, cid, _, principal in wanted:
        by_asker.setdefault(principal, set()).add(cid)
    for principal, ids in by_asker.items():  # the store's own ACL filter, with the asker's stored rights
        got = store.get_chunks(sorted(ids), principal)
        readable.update({(principal, cid): cid in got and principal.can_read(got[cid].acl) for cid in ids})
    kept: list[tuple[str, str, frozenset[str]]] = []
    seen: set[tuple[str, str]] = set()
    unreadable = set(corpus.unreadable)
    for question, cid, docs, principal in wanted:
        if cid not in corpus.chunks and cid not in unreadable:
            counts["feedback_chunk_gone"] += 1
        elif not readable[(principal, cid)]:
            counts["feedback_no_longer_readable"] += 1
        elif (question, cid) in seen:
            counts["feedback_duplicates"] += 1
        else:
            seen.add((question, cid))
            kept.append((question, cid, docs))
    pairs = _pairs(store, embedder, corpus, kept, negatives, counts, progress)
    if not pairs:
        raise DataError(f"no usable feedback in {ui_store.path}: {counts['feedback_up']} of "
                        f"{counts['feedback_verdicts']} verdicts are thumbs-up; skipped "
                        f"{counts['feedback_unknown_asker']} with an unknown asker, {counts['feedback_no_citation']} "
                        f"without citations, {counts['feedback_chunk_gone']} cited chunks no longer indexed, "
                        f"{counts['feedback_no_longer_readable']} the asker may no longer read; {WHERE}")
    random.Random(seed).shuffle(pairs)
    counts.update(pairs=len(pairs), feedback_pairs=len(pairs))
    return PairSet(pairs, dict(counts))


def _pairs(store: Store, embedder: Embedder, corpus: StoredCorpus, kept: list[tuple[str, str, frozenset[str]]],
           negatives: int, counts: Counter[str], progress: Progress | None) -> list[TrainingPair]:
    texts = sorted({q for q, _, _ in kept})
    vectors: dict[str, np.ndarray] = dict(zip(texts, embedder.embed(texts) if texts else [], strict=True))
    out = []
    for i, (question, cid, docs) in enumerate(kept):
        chunk = corpus.chunks[cid]
        pair = TrainingPair(question, chunk.search_text, KIND, cid, chunk.doc_id, acl_key(chunk.acl))
        found = mine_negatives(store, corpus, question, vectors[question], chunk, docs, negatives)
        out.append(with_negatives(pair, found, counts, KIND))
        if progress is not None and (i % 25 == 0 or i == len(kept) - 1):
            progress("feedback pairs", i + 1, len(kept), {})
    return out
