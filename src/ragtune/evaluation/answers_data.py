"""``ragtune eval answers`` inputs: questions with gold answer texts and/or gold documents.

Two formats (docs/evaluation.md, "Answers"):

- **SQuAD JSON** (v1.1 or v2.0, a ``.json`` file holding one object): ``data[].paragraphs[].qas[]`` with
  ``question``, ``id`` and ``answers[].text``; ``is_impossible: true`` (v2.0) means the project must abstain.
  The paragraphs' ``context`` is not used: the project answers from its own index.
- **JSONL** (one object per line): ``question``; ``answers`` (a list of answer texts) or ``answer`` (one text,
  or ``null``: the project must abstain); ``gold`` (a corpus id or a list of them, as ``eval retrieval
  --questions`` takes them); ``id`` (optional, else ``line<N>``). A line needs answers or gold (or both).

Every malformed line is a :class:`DataError` naming ``file:line`` (a SQuAD question by the line its id is on).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.errors import DataError
from ragtune.evaluation.data import DocumentMap
from ragtune.tuning.jsonl import jsonl_rows, line_of_id, read_utf8

JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class AnswerQuestion:
    """One question to ask. ``answers``: gold answer texts (empty with ``must_abstain``, or when only ``gold``
    documents are given); ``gold``: corpus ids as written in the file; ``where``: ``file:line``."""

    qid: str
    question: str
    answers: tuple[str, ...]
    must_abstain: bool
    gold: tuple[str, ...]
    where: str


@dataclass(frozen=True)
class QuestionFile:
    """The questions of one file, its format (``squad`` or ``jsonl``) and SHA-256."""

    questions: list[AnswerQuestion]
    path: str
    format: str
    sha256: str


def _text(value: Any, key: str, where: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        got = "missing" if value is None else f"not a non-empty string ({type(value).__name__})"
        raise DataError(f"{where}: {key!r} is {got}")
    return " ".join(value.split())


def _jsonl_answers(obj: Mapping[str, Any], where: str) -> tuple[tuple[str, ...], bool, bool]:
    """(answer texts, must abstain, whether an expected answer was given at all) of one JSONL line."""
    if "answers" in obj and "answer" in obj:
        raise DataError(f"{where}: give either 'answers' (a list of texts) or 'answer' (one text, or null when the "
                        "project must abstain), not both")
    if "answers" in obj:
        raw = obj["answers"]
        if not isinstance(raw, list) or not raw:
            raise DataError(f"{where}: 'answers' must be a non-empty list of answer texts; for a question the "
                            'project must abstain on, write "answer": null')
        return tuple(_text(a, "answers[]", where) for a in raw), False, True
    if "answer" in obj:
        if obj["answer"] is None:
            return (), True, True
        return (_text(obj["answer"], "answer", where),), False, True
    return (), False, False


def _jsonl_gold(obj: Mapping[str, Any], where: str) -> tuple[str, ...]:
    if "gold" not in obj or obj["gold"] is None:
        return ()
    raw = obj["gold"]
    golds = raw if isinstance(raw, list) else [raw]
    if not golds or not all(isinstance(g, str) and g.strip() for g in golds):
        raise DataError(f"{where}: 'gold' must be a document id or path, or a list of them")
    return tuple(str(g).strip() for g in golds)


def _load_jsonl(path: Path, text: str) -> list[AnswerQuestion]:
    out = []
    for n, where, obj in jsonl_rows(path, text, 'each line must be one object {"question", "answers" or "gold"}'):
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        question = _text(obj.get("question"), "question", where)
        answers, must_abstain, given = _jsonl_answers(obj, where)
        gold = _jsonl_gold(obj, where)
        if not given and not gold:
            raise DataError(f"{where}: the question has neither an answer nor a gold document: give 'answers' "
                            "(texts), 'answer' (a text, or null when it must be abstained on) or 'gold' "
                            "(document ids)")
        qid = _text(obj["id"], "id", where) if "id" in obj else f"line{n}"
        out.append(AnswerQuestion(qid, question, answers, must_abstain, gold, where))
    return out


def _load_squad(path: Path, text: str, doc: Any) -> list[AnswerQuestion]:
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError(f'{path}: not SQuAD JSON: expected {{"data": [{{"paragraphs": [{{"qas": [...]}}]}}]}}; a '
                        "file of one object per line should end in .jsonl")
    out = []
    for i, article in enumerate(doc["data"]):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise DataError(f"{path}: data[{i}]: expected an object with a 'paragraphs' list")
        for j, para in enumerate(article["paragraphs"]):
            if not isinstance(para, dict) or not isinstance(para.get("qas", []), list):
                raise DataError(f"{path}: data[{i}].paragraphs[{j}]: expected an object with a 'qas' list")
            for k, qa in enumerate(para.get("qas", [])):
                qid = qa.get("id") if isinstance(qa, dict) else None
                where = f"{path}{line_of_id(text, qid)}: data[{i}].paragraphs[{j}].qas[{k}]"
                if not isinstance(qa, dict):
                    raise DataError(f"{where}: expected an object with 'question', 'id' and 'answers'")
                question = _text(qa.get("question"), "question", where)
                impossible = bool(qa.get("is_impossible", False))
                raw = [] if impossible else qa.get("answers", [])
                if not isinstance(raw, list) or not all(isinstance(a, dict) for a in raw):
                    raise DataError(f"{where}: 'answers' must be a list of {{\"text\", \"answer_start\"}}")
                answers = tuple(dict.fromkeys(_text(a.get("text"), "answers[].text", where) for a in raw))
                if not impossible and not answers:
                    raise DataError(f"{where}: no answers, and 'is_impossible' is not true: give the answer "
                                    "texts, or mark the question impossible (the project must abstain)")
                out.append(AnswerQuestion(_text(qid, "id", where) if qid is not None else f"{i}.{j}.{k}",
                                          question, answers, impossible, (), where))
    return out


def _unique(path: Path, questions: list[AnswerQuestion]) -> list[AnswerQuestion]:
    seen: dict[str, str] = {}
    for q in questions:
        if q.qid in seen:
            raise DataError(f"{q.where}: question id {q.qid!r} repeats {seen[q.qid]}; question ids must be unique")
        seen[q.qid] = q.where
    if not questions:
        raise DataError(f"{path}: no questions in the file")
    return questions


def load_answer_questions(path: Path) -> QuestionFile:
    """The questions of a SQuAD JSON file or a JSONL file (``.jsonl``; a ``.json`` file of one object per
    line is read as JSONL too). Ids must be unique; an empty file is an error."""
    if not path.is_file():
        raise DataError(f"{path}: no such file (give a SQuAD .json or a .jsonl of questions)")
    text = read_utf8(path)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if path.suffix.lower() in JSONL_SUFFIXES:
        return QuestionFile(_unique(path, _load_jsonl(path, text)), str(path), "jsonl", digest)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # one object per line in a .json file
            return QuestionFile(_unique(path, _load_jsonl(path, text)), str(path), "jsonl", digest)
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
    return QuestionFile(_unique(path, _load_squad(path, text, doc)), str(path), "squad", digest)


def resolve_gold(questions: Sequence[AnswerQuestion], documents: DocumentMap) -> dict[str, tuple[str, ...]]:
    """Question id → the document ids its ``gold`` corpus ids name (``DocumentMap`` rules). A corpus id naming
    no ingested document, or an ambiguous stem, is a :class:`DataError` naming the question's ``file:line``."""
    out: dict[str, tuple[str, ...]] = {}
    for q in questions:
        ids = []
        for corpus_id in q.gold:
            try:
                doc = documents.resolve(corpus_id)
            except DataError as exc:
                raise DataError(f"{q.where}: {exc}") from None
            if doc is None:
                raise DataError(f"{q.where}: gold document {corpus_id!r} is not in the index; a corpus id is an "
                                "ingested file's stem or its path relative to its ingested folder (`ragtune "
                                "sources` lists them)")
            ids.append(doc)
        out[q.qid] = tuple(dict.fromkeys(ids))
    return out
