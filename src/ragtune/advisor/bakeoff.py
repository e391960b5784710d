"""The advisor's bake-offs: the candidate architectures measured on the user's own data, within a time budget.

Labelled task: the same held-out examples are classified three ways (held out by duplicate group, so copies
of a text, exact or near, never sit on both sides and flatter the classifier) —
``rag`` (the nearest labelled examples retrieved from a LanceDB index with ragtune's hybrid retriever, a
score-weighted vote of the top k), ``fine-tuning`` (a calibrated classifier trained on the rest) and ``hybrid``
(the classifier, falling back to retrieval when its calibrated probability is below the threshold).

Question answering: the documents go into a private, temporary index and each question is asked through
the real retriever and extractive answerer: recall@k of the gold source (when given), the answered rate and
latency; with a project's adaptation models (a trained reranker, a tuned embedder), recall@k with them too
(:mod:`ragtune.advisor.adaptation`).

Both stop adding work when the budget runs out and say what they skipped.
"""

from __future__ import annotations

import csv
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from ragtune.advisor.adaptation import AdaptationPlan, AdaptedRecall
from ragtune.advisor.sandbox import SANDBOX, ingest_public, source_recall
from ragtune.core import Chunk
from ragtune.errors import DataError, RagtuneError
from ragtune.models.embedder import Embedder, embedding_cache_bypassed, make_embedder
from ragtune.project import Project
from ragtune.store.base import Store
from ragtune.tuning.base import TextClassifier, classifier_class
from ragtune.tuning.groups import duplicate_groups, group_split

# CPU price behind the cost column: an on-demand cloud vCPU-hour, roughly. Override with cpu_hour_usd.
CPU_HOUR_USD = 0.05
Tick = Callable[[str], None]
# Share of the question bake-off's budget kept for measuring the project's adaptation models (when it has any):
# a reranker pass costs about what asking the questions did; what is left may pay for a second ingest.
ADAPTATION_RESERVE = 0.25


@dataclass
class CandidateResult:
    """One architecture's measurements on the held-out examples."""

    name: str  # rag, fine-tuning, hybrid
    how: str
    accuracy: float
    macro_f1: float
    latency_ms: float  # median per item, single item at a time
    cost_per_1k_usd: float
    fit_seconds: float
    correct: list[bool] = field(default_factory=list, repr=False)  # per held-out item, for paired tests


@dataclass
class LabelBakeoff:
    """The labelled-task bake-off: candidates measured on the same held-out examples."""

    train_examples: int
    test_examples: int
    classes: int
    majority_accuracy: float  # always predicting the most frequent class
    budget_s: float
    elapsed_s: float = 0.0
    results: list[CandidateResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def result(self, name: str) -> CandidateResult | None:
        """The candidate called ``name``, if it was measured."""
        return next((r for r in self.results if r.name == name), None)


@dataclass
class Question:
    """A question to ask the documents, with the file its answer is in when known."""

    text: str
    source: str | None = None


@dataclass
class QABakeoff:
    """RAG measured on the user's documents and questions."""

    documents: int
    chunks: int
    questions: int
    k: int
    recall_at_k: float | None  # share of questions with a gold source whose source is in the top k
    answered_rate: float  # share not abstained
    latency_p50_ms: float
    latency_p95_ms: float
    budget_s: float
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    retrieval_p50_ms: float | None = None  # retrieval alone (no answerer), for comparison with ``adapted``
    adapted: list[AdaptedRecall] = field(default_factory=list)  # recall@k with the project's adaptation models
    adaptation_notes: list[str] = field(default_factory=list)  # what was not measured with them, and why


def _cost_per_1k(seconds_per_item: float, cpu_hour_usd: float) -> float:
    return seconds_per_item * 1000 / 3600 * cpu_hour_usd


def _macro_f1(y: Sequence[str], pred: Sequence[str]) -> float:
    return float(f1_score(list(y), list(pred), average="macro", zero_division=0))


def _accuracy(y: Sequence[str], pred: Sequence[str]) -> float:
    return float(np.mean([a == b for a, b in zip(y, pred, strict=True)])) if y else 0.0


def bakeoff_labels(
    texts: Sequence[str],
    labels: Sequence[str],
    budget_s: float = 180.0,
    *,
    method: str = "head",
    k: int = 10,
    threshold: float = 0.5,
    max_train: int = 4000,
    max_test: int = 1000,
    seed: int = 0,
    embedder: Embedder | None = None,
    cpu_hour_usd: float = CPU_HOUR_USD,
    tick: Tick | None = None,
    groups: Sequence[int] | None = None,
) -> LabelBakeoff:
    """Measure rag, fine-tuning and hybrid classification on a stratified held-out part of the data.

    The split keeps every duplicate group (exact duplicates and near duplicates by ``embedder``, see
    :func:`ragtune.tuning.groups.duplicate_groups`) on one side; ``groups`` gives precomputed group ids."""
    start = time.perf_counter()
    deadline = start + budget_s
    say = tick or (lambda _msg: None)
    texts, labels = [str(t) for t in texts], [str(label) for label in labels]
    counts = Counter(labels)
    if len(counts) < 2:
        raise DataError("the labels hold only one class; a classification bake-off needs at least two")
    usable = [i for i, label in enumerate(labels) if counts[label] >= 2]
    n_test = min(max_test, max(len(counts), int(0.2 * len(usable))))
    if len(usable) - n_test < 2 * len(counts):
        raise DataError(f"only {len(usable)} usable examples for {len(counts)} classes: too few to train on "
                        "and hold out a test split; label more examples (at least 3 per class)")
    if groups is None:
        say(f"grouping duplicates among {len(texts)} examples")
        encoder = embedder if embedder is not None else make_embedder("minilm")
        groups = duplicate_groups(texts, encoder.embed(texts))
    elif len(groups) != len(texts):
        raise ValueError(f"{len(groups)} group ids for {len(texts)} examples")
    tr, te, capped = holdout_by_group(labels, groups, usable, n_test, max_train, max_test, seed)
    train_t, train_y = [texts[i] for i in tr], [labels[i] for i in tr]
    test_t, test_y = [texts[i] for i in te], [labels[i] for i in te]
    majority = Counter(train_y).most_common(1)[0][0]
    out = LabelBakeoff(train_examples=len(tr), test_examples=len(te), classes=len(counts),
                       majority_accuracy=_accuracy(test_y, [majority] * len(test_y)), budget_s=budget_s)
    if len(usable) < len(texts):
        out.notes.append(f"{len(texts) - len(usable)} examples of classes with a single example were left out")
    if capped:
        out.notes.append(f"training examples capped at {max_train} to fit the time budget")
    n_groups = len({groups[i] for i in usable})
    if n_groups < len(usable):
        out.notes.append(f"held out by duplicate group: {len(usable) - n_groups} duplicate example(s) (exact or near) "
                         "were kept on the same side as their copies")
    # Fine-tuning: a calibrated classifier. The embeddings it computes are cached for retrieval below.
    say(f"fine-tuning: training a {method} classifier on {len(tr)} examples")
    t0 = time.perf_counter()
    clf = classifier_class(method)(threshold=threshold, random_state=seed).fit(train_t, train_y)
    fit_s = time.perf_counter() - t0
    probs = clf.predict_proba(test_t)
    classes = [str(c) for c in clf.classes_]
    clf_pred = [classes[j] for j in probs.argmax(axis=1)]
    clf_conf = probs.max(axis=1)
    clf_how = f"`{method}` classifier, calibrated, trained on {len(tr)} examples"
    if time.perf_counter() > deadline:
        out.results.append(_candidate("fine-tuning", clf_how, test_y, clf_pred,
                                      _median_ms(clf, test_t, deadline), fit_s, cpu_hour_usd))
        out.notes.append("the time budget ran out after training the classifier: rag and hybrid not measured")
        out.elapsed_s = time.perf_counter() - start
        return out

    # RAG-style: the labelled examples become an index; a question's label is voted by its nearest examples.
    say(f"rag: indexing {len(tr)} labelled examples")
    with Project.temporary(embedder=embedder, retrieval={"top_k": k}) as sandbox:
        t0 = time.perf_counter()
        chunk_label = _index_examples(sandbox.store, sandbox.embedder, train_t, train_y)
        index_s = time.perf_counter() - t0
        clf_ms = _median_ms(clf, test_t, deadline)
        out.results.append(_candidate("fine-tuning", clf_how, test_y, clf_pred, clf_ms, fit_s, cpu_hour_usd))
        retriever = sandbox.retriever
        rag_pred: list[str] = []
        rag_ms: list[float] = []
        for text in test_t:
            if time.perf_counter() > deadline and len(rag_pred) >= 20:
                break
            t = time.perf_counter()
            with embedding_cache_bypassed():  # latency includes embedding each new item
                hits = retriever.retrieve(text, SANDBOX).hits
            votes: dict[str, float] = defaultdict(float)
            for h in hits:
                votes[chunk_label[h.chunk.chunk_id]] += h.score
            rag_pred.append(max(votes, key=lambda c: votes[c]) if votes else majority)
            rag_ms.append((time.perf_counter() - t) * 1000)
    done = len(rag_pred)
    if done < len(test_t):
        out.notes.append(f"the time budget ran out: rag and hybrid were measured on the first {done} of "
                         f"{len(test_t)} held-out examples (fine-tuning on all of them)")
    ys = test_y[:done]
    rag_latency = statistics.median(rag_ms)
    out.results.append(_candidate("rag", f"vote of the {k} nearest labelled examples (hybrid BM25 + dense "
                                  "retrieval)", ys, rag_pred, rag_latency, index_s, cpu_hour_usd))
    hybrid_pred = [clf_pred[i] if clf_conf[i] >= threshold else rag_pred[i] for i in range(done)]
    fallback = float(np.mean(clf_conf[:done] < threshold))
    out.results.append(_candidate("hybrid", f"classifier; below probability {threshold:.2f} ({100 * fallback:.0f} % "
                                  "of items) the retrieval vote", ys, hybrid_pred, clf_ms + fallback * rag_latency,
                                  fit_s + index_s, cpu_hour_usd))
    out.elapsed_s = time.perf_counter() - start
    return out


def holdout_by_group(labels: Sequence[str], groups: Sequence[int], usable: Sequence[int], n_test: int,
                     max_train: int, max_test: int, seed: int) -> tuple[list[int], list[int], bool]:
    """(train, test, train capped?): indices into ``labels`` from ``usable``, about ``n_test`` of them held out
    stratified by label with each duplicate group on one side, then at most ``max_test`` / ``max_train`` kept."""
    y = [labels[i] for i in usable]
    try:
        tr_pos, te_pos = group_split(y, [groups[i] for i in usable], max(n_test / len(usable), 0.05), seed)
    except DataError as exc:
        raise DataError(f"{exc}: label more examples (distinct texts, at least 3 per class)") from exc
    tr, te = [usable[i] for i in tr_pos], [usable[i] for i in te_pos]
    if len(te) > max_test:  # a subset of the test side: still no group on both sides
        te = _subsample(te, labels, max_test, seed)
    capped = len(tr) > max_train
    if capped:
        tr = _subsample(tr, labels, max_train, seed)
    return tr, te, capped


def _subsample(indices: list[int], labels: Sequence[str], size: int, seed: int) -> list[int]:
    """``size`` of ``indices``, stratified by label when every class has two or more of them."""
    counts = Counter(labels[i] for i in indices)
    stratify = [labels[i] for i in indices] if min(counts.values()) >= 2 and size >= len(counts) else None
    kept, _ = train_test_split(indices, train_size=size, stratify=stratify, random_state=seed)
    return list(kept)


def _candidate(name: str, how: str, y: Sequence[str], pred: Sequence[str], latency_ms: float, fit_s: float,
               cpu_hour_usd: float) -> CandidateResult:
    return CandidateResult(name, how, _accuracy(y, pred), _macro_f1(y, pred), latency_ms,
                           _cost_per_1k(latency_ms / 1000, cpu_hour_usd), fit_s,
                           correct=[a == b for a, b in zip(y, pred, strict=True)])


def _median_ms(clf: TextClassifier, items: Sequence[str], deadline: float, most: int = 50) -> float:
    """Median wall time of classifying single items (at least 5, at most ``most``, fewer past the deadline)."""
    times = []
    for n, item in enumerate(items[:most]):
        if n >= 5 and time.perf_counter() > deadline:
            break
        t = time.perf_counter()
        with embedding_cache_bypassed():  # latency includes embedding each new item
            clf.predict_proba([item])
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def _index_examples(store: Store, embedder: Embedder, texts: list[str], labels: list[str]) -> dict[str, str]:
    """Write each labelled example as a one-chunk public document; return chunk id -> label.

    The label is kept out of the indexed text, so retrieval cannot match on it."""
    chunks, chunk_label = [], {}
    for i, text in enumerate(texts):
        cid = f"ex{i:07d}-00000"
        chunks.append(Chunk(chunk_id=cid, doc_id=f"ex{i:07d}", source_path=f"example:{i}", title="",
                            section_path=(), page=None, char_start=0, char_end=len(text), text=text,
                            content_hash="", doc_hash="", mtime=0.0, acl=("public",), ordinal=0))
        chunk_label[cid] = labels[i]
    for b in range(0, len(chunks), 2048):
        batch = chunks[b : b + 2048]
        store.replace_documents([c.doc_id for c in batch], batch, embedder.embed([c.search_text for c in batch]),
                                time.time())
    store.optimize()
    return chunk_label


def load_questions(path: Path) -> list[Question]:
    """Questions from a ``.txt`` file (one per line) or a CSV with a ``question`` column and an optional
    ``source`` column (the file name of the document that answers it)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; pass a .txt (one question per line) or .csv file to --questions")
    if path.suffix.lower() != ".csv":
        return [Question(line.strip()) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "question" not in reader.fieldnames:
            raise DataError(f"{path}: no 'question' column (columns: {', '.join(reader.fieldnames or [])}); "
                            "name the column 'question' and optionally add 'source'")
        rows = [Question(r["question"].strip(), (r.get("source") or "").strip() or None) for r in reader
                if (r.get("question") or "").strip()]
    if not rows:
        raise DataError(f"{path} holds no questions")
    return rows


def bakeoff_questions(
    docs: Path,
    questions: Sequence[Question],
    budget_s: float = 180.0,
    *,
    k: int = 5,
    embedder: Embedder | None = None,
    tick: Tick | None = None,
    adaptation: AdaptationPlan | None = None,
) -> QABakeoff:
    """Ingest ``docs`` into a private temporary index and ask every question: recall@k, answered rate, latency.

    With ``adaptation`` (a project's reranker and tuned embedder, :mod:`ragtune.advisor.adaptation`), recall@k
    on the same questions is measured with them too; part of the budget is kept for that."""
    if not questions:
        raise DataError("no questions to ask; pass --questions FILE")
    start = time.perf_counter()
    deadline = start + budget_s
    say = tick or (lambda _msg: None)
    notes: list[str] = []
    reserve = ADAPTATION_RESERVE * budget_s if adaptation is not None and adaptation.has_models else 0.0
    with Project.temporary(embedder=embedder, retrieval={"top_k": max(k, 8)}) as sandbox:
        store = sandbox.store
        say(f"rag: ingesting {docs} into a private temporary index")
        complete = ingest_public(sandbox, Path(docs), start + 0.6 * budget_s)
        if not complete:
            notes.append("the time budget ran out while ingesting: questions were asked of the documents "
                         "ingested by then")
        ingest_s = time.perf_counter() - start
        records = store.documents()
        if not records:
            raise RagtuneError(f"no document under {docs} could be ingested; see `ragtune ingest {docs}`")
        have = {Path(d.source_path).name for d in records}
        retriever, answerer = sandbox.retriever, sandbox.extractive_answerer
        qrels: dict[str, dict[str, int]] = {}
        run: dict[str, list[str]] = {}
        answered, lat, retrieval_lat = 0, [], []
        asked = 0
        for i, q in enumerate(questions):
            if time.perf_counter() > deadline - reserve and asked >= 10:
                notes.append(f"the time budget ran out: {asked} of {len(questions)} questions asked")
                break
            t = time.perf_counter()
            r = retriever.retrieve(q.text, SANDBOX)
            retrieval_lat.append((time.perf_counter() - t) * 1000)
            a = answerer.answer(q.text, r, SANDBOX)
            lat.append((time.perf_counter() - t) * 1000)
            asked += 1
            answered += not a.abstained
            if q.source and Path(q.source).name in have:
                qrels[str(i)] = {Path(q.source).name: 1}
                run[str(i)] = [Path(h.chunk.source_path).name for h in r.hits[:k]]  # the first k chunks
        adapted: list[AdaptedRecall] = []
        adaptation_notes: list[str] = []
        if adaptation is not None and qrels:
            gold = {qid: questions[int(qid)].text for qid in qrels}
            adapted, adaptation_notes = adaptation.measure(
                sandbox, Path(docs), gold, qrels, run, k=k, deadline=deadline, budget_s=budget_s,
                ingest_s=ingest_s, ingest_complete=complete,
                retrieval_ms=float(np.median(retrieval_lat)), tick=say)
        chunks = store.count()
    with_gold = len(qrels)
    gold_total = sum(1 for q in questions[:asked] if q.source)
    if gold_total > with_gold:
        notes.append(f"{gold_total - with_gold} questions name a source that was not ingested; left out of recall")
    return QABakeoff(
        documents=len(records), chunks=chunks, questions=asked, k=k,
        recall_at_k=source_recall(qrels, run, k) if qrels else None, answered_rate=answered / asked,
        latency_p50_ms=float(np.percentile(lat, 50)), latency_p95_ms=float(np.percentile(lat, 95)),
        budget_s=budget_s, elapsed_s=time.perf_counter() - start, notes=notes,
        retrieval_p50_ms=float(np.percentile(retrieval_lat, 50)), adapted=adapted,
        adaptation_notes=adaptation_notes,
    )
