"""``ragtune eval answers``: ask every question through ``Project.ask`` and score the answers.

Per question (docs/evaluation.md, "Answers"):

- **EM / F1**: SQuAD's exact match and token F1 (``tuning/reader/squad.py``) of the answer text (the reader's
  span when there is one, else the answer with its citation markers removed) against the gold answers. A
  question that must be abstained on (no answer in the file, or a gold document the principal cannot read)
  scores 1 when the project abstains and 0 when it answers; a question with gold documents only has no EM/F1.
- **citation precision**: of the (sentence, citation) pairs the answer writes, the share whose cited chunk
  supports the sentence by the project's groundedness checker (``Project.groundedness_checker``: the trained
  one, else lexical overlap) at its threshold. **citation recall**: 1 when a gold document is cited.
- **groundedness**: the share of the answer's sentences supported by a chunk they cite (an uncited sentence by
  any chunk the answer cites), by the same checker; **hallucination**: 1 − groundedness.
- **leaked**: the documents the answer cites or quotes that the principal may not read, checked against the
  store (each cited chunk fetched again as the principal, with the ACL filter in the query; each quoted
  sentence not found in a readable cited chunk looked up among every chunk of the index), never trusted from
  the answer. **unreadable_gold_answered**: a gold document the principal cannot read, and no abstention.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ragtune.core import Answer, Principal
from ragtune.evaluation.answers_data import AnswerQuestion, QuestionFile, resolve_gold
from ragtune.evaluation.data import DocumentMap, document_map
from ragtune.evaluation.run_retrieval import (
    IndexWidePrincipal,
    machine,
    percentiles,
    principal_record,
    settings_fingerprint,
)
from ragtune.project import Project
from ragtune.text import CITATION
from ragtune.tuning.reader.squad import exact_match, token_f1

if TYPE_CHECKING:
    from ragtune.verify.default import AnswerChecker
    from ragtune.verify.groundedness import GroundednessReport

REFUSAL = "i cannot answer from the accessible sources"  # what answer/generative.py's prompt tells a model to say
MIN_QUOTE_WORDS = 4  # shorter sentences are not looked up as quotations ("Yes.", "See the policy.")
QUOTE_CANDIDATES = 5  # chunks of the whole index a sentence is compared with, by BM25
_EDGE = string.punctuation + string.whitespace + "\u201c\u201d\u2018\u2019"


def answer_kind(project: Project) -> str:
    """Which answerer the project's settings select: ``reader``, ``generative`` or ``extractive``."""
    s = project.settings
    if s.answer.kind == "reader":
        return "reader"
    return "generative" if s.generator.kind != "extractive" else "extractive"


def predicted_text(answer: Answer) -> str:
    """What EM and F1 score: the span reader's exact span, else the answer with citation markers removed."""
    if answer.span is not None:
        return answer.span.text
    return " ".join(CITATION.sub(" ", answer.text).split())


def declined(answer: Answer) -> bool:
    """A generator's refusal (the sentence its prompt asks for) that the answer does not mark as abstained."""
    return not answer.abstained and _norm(predicted_text(answer)) == REFUSAL


def _norm(text: str) -> str:
    """Lower case, single spaces, no punctuation at either end: how quotations are compared."""
    return " ".join(text.lower().split()).strip(_EDGE)


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(sum(kept) / len(kept), 6) if kept else None


class AnswerScorer:
    """Scores answers to the questions of one run as one principal (see the module docstring)."""

    def __init__(self, project: Project, principal: Principal, checker: AnswerChecker, documents: DocumentMap) -> None:
        self.project = project
        self.principal = principal
        self.checker = checker
        self.documents = documents
        self._admin: Principal | None = None

    def label(self, doc_id: str) -> str:
        """A document as the run shows it: its path relative to its ingested folder."""
        return self.documents.labels.get(doc_id, doc_id)

    def readable_documents(self, doc_ids: Sequence[str]) -> set[str]:
        """The documents among ``doc_ids`` the principal may read: each one's first chunk fetched as the
        principal (the ACL filter inside the store query)."""
        from ragtune.ingest.chunking import chunk_id_for

        found = self.project.store.get_chunks([chunk_id_for(d, 0) for d in doc_ids], self.principal)
        return {c.doc_id for c in found.values() if self.principal.can_read(c.acl)} & set(doc_ids)

    def _admin_principal(self) -> Principal:
        if self._admin is None:
            self._admin = IndexWidePrincipal(self.project.store.acl_tokens())
        return self._admin

    def _quoted_unreadable(self, sentence: str, key: str) -> str | None:
        """The unreadable document a sentence is quoted from: among the index's best BM25 chunks for it, one
        the principal may not read whose text holds it, when no chunk the principal may read holds it too."""
        store, admin = self.project.store, self._admin_principal()
        ids = [cid for cid, _ in store.lexical_search(sentence, admin, QUOTE_CANDIDATES)]
        if not ids:
            return None
        every, mine = store.get_chunks(ids, admin), store.get_chunks(ids, self.principal)
        holding = [cid for cid in ids if cid in every and key in _norm(every[cid].text)]
        if any(cid in mine and self.principal.can_read(mine[cid].acl) for cid in holding):
            return None
        return every[holding[0]].doc_id if holding else None

    def leaks(self, answer: Answer) -> dict[str, str]:
        """Document id → why it leaked, for each document the answer cites or quotes that the principal may not
        read. Every citation's chunk is fetched again as the principal: the answer's own copy is not trusted."""
        from ragtune.verify.groundedness import cited_sentences

        ids = [c.chunk.chunk_id for c in answer.citations]
        stored = self.project.store.get_chunks(ids, self.principal) if ids else {}
        found: dict[str, str] = {}
        readable: list[str] = []
        for c in answer.citations:
            s = stored.get(c.chunk.chunk_id)
            if s is None or s.doc_id != c.chunk.doc_id or not self.principal.can_read(s.acl):
                found.setdefault(c.chunk.doc_id, f"citation [{c.number}] is a chunk of {self.label(c.chunk.doc_id)}, "
                                                 "which the principal may not read")
            else:
                readable.append(_norm(s.text))
        if answer.abstained:
            return found
        quotes = [text for text, _ in cited_sentences(answer.text)] + [c.snippet for c in answer.citations]
        for sentence in dict.fromkeys(quotes):
            key = _norm(sentence)
            if len(key.split()) < MIN_QUOTE_WORDS or any(key in r for r in readable):
                continue
            doc = self._quoted_unreadable(sentence, key)
            if doc is not None:
                found.setdefault(doc, f"quotes {self.label(doc)}, which the principal may not read")
        return found

    def citation_support(self, answer: Answer, report: GroundednessReport) -> list[dict[str, Any]]:
        """Each (sentence, citation) pair the answer writes: the checker's score and whether it supports."""
        chunks = {c.number: c.chunk.text for c in answer.citations}
        pairs: list[dict[str, Any]] = []
        to_score: list[tuple[int, tuple[str, str]]] = []
        for i, s in enumerate(report.sentences):
            for n in s.cited:
                row: dict[str, Any] = {"sentence": i, "citation": n, "score": None, "supports": False}
                if n in chunks and s.cited == (n,):
                    row["score"] = round(s.probability, 4)  # checked against exactly this chunk
                    row["supports"] = s.supported
                elif n in chunks:
                    to_score.append((len(pairs), (s.text, chunks[n])))
                pairs.append(row)
        if to_score:
            scores = self.checker.score([p for _, p in to_score])
            for (at, _), score in zip(to_score, scores, strict=True):
                pairs[at]["score"] = round(float(score), 4)
                pairs[at]["supports"] = bool(score >= report.threshold)
        return pairs

    def score(self, q: AnswerQuestion, answer: Answer, gold_ids: Sequence[str]) -> dict[str, Any]:
        """The per-question row of ``answers.json`` for ``answer`` to ``q`` (``gold_ids``: resolved documents)."""
        refused = declined(answer)
        abstained = answer.abstained or refused
        readable_gold = self.readable_documents(gold_ids) if gold_ids else set()
        gold_unreadable = bool(gold_ids) and not readable_gold
        must_abstain = q.must_abstain or gold_unreadable
        prediction = "" if abstained else predicted_text(answer)
        golds: tuple[str, ...] | None = () if must_abstain else (q.answers or None)
        em = exact_match(prediction, golds) if golds is not None else None
        f1 = token_f1(prediction, golds) if golds is not None else None
        cited_docs = list(dict.fromkeys(c.chunk.doc_id for c in answer.citations))
        recall = (float(any(d in readable_gold for d in cited_docs))
                  if gold_ids and not must_abstain else None)
        report = None if abstained else self.checker.check_answer(answer)
        support = self.citation_support(answer, report) if report is not None else []
        sentences = len(report.sentences) if report is not None else 0
        grounded = (sum(s.supported for s in report.sentences) / sentences) if report is not None and sentences \
            else None
        leaks = self.leaks(answer)
        return {
            "id": q.qid, "question": q.question, "where": q.where,
            "expected": "abstain" if must_abstain else "answer",
            "abstain_reason": ("no answer" if q.must_abstain else "gold unreadable") if must_abstain else None,
            "gold_answers": list(q.answers), "gold": [self.label(d) for d in gold_ids],
            "gold_readable": (bool(readable_gold) if gold_ids else None),
            "answer": answer.text, "prediction": prediction, "abstained": abstained, "declined": refused,
            "em": em, "f1": None if f1 is None else round(f1, 6),
            "citations": [{"number": c.number, "document": self.label(c.chunk.doc_id), "chunk_id": c.chunk.chunk_id}
                          for c in answer.citations],
            "citation_support": support,
            "citation_precision": _mean(float(p["supports"]) for p in support),
            "citation_recall": recall,
            "sentences": sentences,
            "unsupported_sentences": list(report.unsupported) if report is not None else [],
            "groundedness": None if grounded is None else round(grounded, 6),
            "hallucination": None if grounded is None else round(1 - grounded, 6),
            "leaked": len(leaks), "leaks": [{"document": self.label(d), "why": why} for d, why in leaks.items()],
            "unreadable_gold_answered": gold_unreadable and not abstained,
            "latency_ms": {k: round(v, 3) for k, v in answer.latency_ms.items()},
            "flags": list(answer.flags),
        }


def aggregate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run's aggregate: counts, means of the per-question metrics over the questions they apply to."""
    n = len(rows)
    answered = [r for r in rows if not r["abstained"]]
    must = [r for r in rows if r["expected"] == "abstain"]
    return {
        "questions": n, "answered": len(answered), "abstained": n - len(answered),
        "abstention_rate": round((n - len(answered)) / n, 6) if n else None,
        "em": _mean(r["em"] for r in rows), "f1": _mean(r["f1"] for r in rows),
        "em_f1_questions": sum(r["em"] is not None for r in rows),
        "must_abstain": len(must), "must_abstain_abstained": sum(r["abstained"] for r in must),
        "answerable_abstained": sum(r["abstained"] for r in rows if r["expected"] == "answer"),
        "declined": sum(r["declined"] for r in rows),
        "citation_precision": _mean(r["citation_precision"] for r in rows),
        "citation_recall": _mean(r["citation_recall"] for r in rows),
        "citation_recall_questions": sum(r["citation_recall"] is not None for r in rows),
        "groundedness": _mean(r["groundedness"] for r in rows),
        "hallucination_rate": _mean(r["hallucination"] for r in rows),
        "hallucinated_answers": _mean(float(bool(r["unsupported_sentences"])) for r in answered),
        "leaked": sum(r["leaked"] > 0 for r in rows), "leaked_documents": sum(r["leaked"] for r in rows),
        "unreadable_gold": sum(r["abstain_reason"] == "gold unreadable" for r in rows),
        "unreadable_gold_answered": sum(r["unreadable_gold_answered"] for r in rows),
    }


def stage_latency(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """p50 and p95 (ms) of every stage of the answers' ``latency_ms``, in the order stages first appear."""
    samples: dict[str, list[float]] = {}
    for r in rows:
        for stage, ms in r["latency_ms"].items():
            samples.setdefault(stage, []).append(ms)
    return {stage: {**percentiles(v, (50, 95)), "n": len(v)} for stage, v in samples.items()}


def answer_settings(project: Project) -> dict[str, Any]:
    """The settings the answers depend on and their fingerprint (no endpoint URL or key is recorded)."""
    s = project.settings
    parts = {"retrieval_fingerprint": settings_fingerprint(project), "answer": s.answer.model_dump(mode="json"),
             "generator": {"kind": s.generator.kind, "model": s.generator.model, "max_tokens": s.generator.max_tokens,
                           "base_url_sha256": hashlib.sha256(s.generator.base_url.encode()).hexdigest()[:16]}}
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    return {"answer_kind": answer_kind(project), **parts, "answer_fingerprint": digest}


def run_answers_eval(project: Project, questions: QuestionFile, principal: Principal, *, checker: str = "groundedness",
                     limit: int | None = None, on_question: Callable[[], None] | None = None) -> dict[str, Any]:
    """Ask the first ``limit`` questions (all: None) as ``principal`` and return the record ``answers.json``
    holds. Gold documents are resolved first (an unknown one stops the run before any question is asked)."""
    from importlib.metadata import version

    from ragtune.models.embedder import embedding_cache_bypassed

    asked = questions.questions[:limit] if limit else questions.questions
    documents = document_map(project.sources(), project.roots())
    gold = resolve_gold(asked, documents)
    check = project.groundedness_checker(checker)
    scorer = AnswerScorer(project, principal, check, documents)
    load_start = machine()["load_avg"]
    project.warm_up()  # index opened and models loaded before the first timed question
    rows = []
    for q in asked:
        with embedding_cache_bypassed():
            answer = project.ask(q.question, principal)
        rows.append(scorer.score(q, answer, gold[q.qid]))
        if on_question is not None:
            on_question()
    return {
        "kind": "answers",
        "ragtune_version": version("ragtune"),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**machine(), "load_avg_start": load_start},
        "project": str(project.settings.project_dir),
        "principal": principal_record(principal),
        "inputs": {"questions": questions.path, "format": questions.format, "sha256": questions.sha256,
                   "in_file": len(questions.questions), "asked": len(asked), "limit": limit},
        "settings": answer_settings(project),
        "settings_fingerprint": settings_fingerprint(project),
        "embedder_fingerprint": project.embedder.fingerprint,
        "index_version": project.store.version(),
        "checker": {"name": check.name, "trained": check.trained, "threshold": round(float(check.threshold), 6)},
        "aggregate": aggregate(rows),
        "latency_ms": stage_latency(rows),
        "per_question": rows,
    }


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def shorten(text: str, width: int = 80) -> str:
    """One line of at most ``width`` characters (control characters removed) for tables."""
    line = " ".join(_CONTROL.sub(" ", text).split())
    return line if len(line) <= width else line[: width - 1] + "…"
