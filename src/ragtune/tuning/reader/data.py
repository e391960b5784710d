"""Span-reader training data: SQuAD JSON (v1.1 and v2.0) or JSONL of question, passage and answer, and the audit
run before training.

An answer is kept as its character start in the passage and its text. An ``answer_start`` that does not point
at the answer text is moved to the nearest place the text occurs (and counted); an answer that occurs nowhere in
its passage is an audit finding: that answer is dropped (the example too when it had no other), counted and
named in the audit, never trained on. Malformed files stop with a :class:`DataError` naming ``file:line``.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.errors import DataError
from ragtune.tuning.audit import excerpt
from ragtune.tuning.groups import normalize
from ragtune.tuning.jsonl import jsonl_rows, line_of_id, read_utf8

JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class ReaderExample:
    """One question about one passage. ``answers``: (character start, text) of each gold answer in ``passage``
    (empty: the passage does not answer the question); ``group``: the unit held out together (a SQuAD article's
    title, a JSONL line's ``group`` or ``document``, else the passage's hash); ``where``: its place in the file,
    for messages (not part of equality)."""

    question: str
    passage: str
    answers: tuple[tuple[int, str], ...]
    qid: str
    group: str
    where: str = field(default="", compare=False)


class ReaderData(list[ReaderExample]):
    """The examples of one file (a list), with the file's name and digest and the answers the loader dropped
    (``not_found``: where, question, answer) or moved to where their text really is (``moved``)."""

    def __init__(self, examples: list[ReaderExample], source: str, sha256: str,
                 not_found: list[dict[str, str]] | None = None, moved: int = 0) -> None:
        super().__init__(examples)
        self.source, self.sha256 = source, sha256
        self.not_found = not_found or []
        self.moved = moved


def passage_group(passage: str) -> str:
    """The default group of an example: 12 hex of its passage's SHA-256 (questions on one passage stay together)."""
    return hashlib.sha256(passage.encode("utf-8")).hexdigest()[:12]


def examples_digest(examples: list[ReaderExample]) -> str:
    """SHA-256 of the examples' questions, passages and answers (the card's ``data_sha256``)."""
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.question, e.passage, [list(a) for a in e.answers]], ensure_ascii=False).encode())
    return h.hexdigest()


def _place(passage: str, text: str, start: int | None) -> tuple[int | None, bool]:
    """(start of ``text`` in ``passage`` or None, whether it was moved from the ``start`` given)."""
    if start is not None and passage[start:start + len(text)] == text:
        return start, False
    found, at = [], passage.find(text)
    while at >= 0:
        found.append(at)
        at = passage.find(text, at + 1)
    if not found:
        return None, False
    if start is None:
        return found[0], False
    return min(found, key=lambda i: (abs(i - start), i)), True


class _Loader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.not_found: list[dict[str, str]] = []
        self.moved = 0

    def answers(self, passage: str, given: list[tuple[str, int | None]], where: str, question: str
                ) -> tuple[tuple[int, str], ...] | None:
        """The placed answers (deduplicated); None when answers were given but none occurs in the passage."""
        placed: list[tuple[int, str]] = []
        for text, start in given:
            at, moved = _place(passage, text, start)
            if at is None:
                self.not_found.append({"where": where, "question": excerpt(question), "answer": excerpt(text)})
                continue
            self.moved += moved
            if (at, text) not in placed:
                placed.append((at, text))
        return tuple(placed) if placed or not given else None


def _text(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        got = "missing" if value is None else f"not a non-empty string ({type(value).__name__})"
        raise DataError(f"{where}: {key!r} is {got}")
    return value


def _start(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DataError(f"{where}: 'answer_start' must be a character offset (an integer ≥ 0), got {value!r}")
    return value


def _load_jsonl(path: Path, text: str, loader: _Loader) -> list[ReaderExample]:
    out: list[ReaderExample] = []
    for n, where, obj in jsonl_rows(path, text, 'each line must be one object {"question", "passage", "answer"}'):
        if not isinstance(obj, dict):
            raise DataError(f'{where}: expected an object {{"question", "passage", "answer"}}, got '
                            f"{type(obj).__name__}")
        question = _text(obj.get("question"), "question", where)
        passage = _text(obj.get("passage", obj.get("context")), "passage", where)
        if "answer" not in obj:
            raise DataError(f"{where}: no 'answer': give the answer text as written in the passage, or null when "
                            "the passage does not answer the question")
        answer = obj["answer"]
        if answer is not None and (not isinstance(answer, str) or not answer.strip()):
            raise DataError(f"{where}: 'answer' must be the answer text or null (no answer), got {answer!r}")
        given = [] if answer is None else [(answer, _start(obj.get("answer_start"), where))]
        answers = loader.answers(passage, given, where, question)
        if answers is None:
            continue
        group = obj.get("group", obj.get("document"))
        out.append(ReaderExample(question, passage, answers, str(obj.get("id", f"{path.name}:{n}")),
                                 str(group) if group not in (None, "") else passage_group(passage), where))
    return out


def _load_squad(path: Path, text: str, doc: Any, loader: _Loader) -> list[ReaderExample]:
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError(f'{path}: not SQuAD JSON: expected {{"data": [{{"title", "paragraphs": [{{"context", '
                        '"qas"}]}]}; a file of one object per line should end in .jsonl')
    out: list[ReaderExample] = []
    for i, article in enumerate(doc["data"]):
        base = f"{path}: data[{i}]"
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise DataError(f"{base}: expected an object with a 'paragraphs' list")
        title = article.get("title")
        for j, para in enumerate(article["paragraphs"]):
            at = f"{base}.paragraphs[{j}]"
            if not isinstance(para, dict) or not isinstance(para.get("qas", []), list):
                raise DataError(f"{at}: expected an object with 'context' and a 'qas' list")
            passage = _text(para.get("context"), "context", at)
            for k, qa in enumerate(para.get("qas", [])):
                qid = qa.get("id") if isinstance(qa, dict) else None
                where = f"{path}{line_of_id(text, qid)}: data[{i}].paragraphs[{j}].qas[{k}]"
                if not isinstance(qa, dict):
                    raise DataError(f"{where}: expected an object with 'question', 'id' and 'answers'")
                question = _text(qa.get("question"), "question", where)
                given: list[tuple[str, int | None]] = []
                if not qa.get("is_impossible", False):
                    raw_answers = qa.get("answers", [])
                    if not isinstance(raw_answers, list):
                        raise DataError(f"{where}: 'answers' must be a list of {{\"text\", \"answer_start\"}}")
                    for a in raw_answers:
                        if not isinstance(a, dict):
                            raise DataError(f"{where}: each answer must be {{\"text\", \"answer_start\"}}")
                        given.append((_text(a.get("text"), "answers[].text", where),
                                      _start(a.get("answer_start"), where)))
                answers = loader.answers(passage, given, where, question)
                if answers is None:
                    continue
                group = str(title) if isinstance(title, str) and title else passage_group(passage)
                out.append(ReaderExample(question, passage, answers, str(qid if qid is not None else where),
                                         group, where))
    return out


def load_reader_examples(path: Path | str) -> ReaderData:
    """The examples of a SQuAD JSON file (``.json``: ``data[].title``, ``paragraphs[].context``,
    ``qas[].question/id/answers[]/is_impossible``) or a JSONL file (``.jsonl``: ``{"question", "passage"`` (or
    ``"context"``), ``"answer"``: text or null, optional ``"answer_start"``, ``"group"`` (or ``"document"``),
    ``"id"}`` per line). Without ``answer_start`` the answer is its text's first occurrence."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (give a SQuAD .json or a .jsonl of question, passage, answer)")
    text = read_utf8(path)
    loader = _Loader(path)
    if path.suffix.lower() in JSONL_SUFFIXES:
        examples = _load_jsonl(path, text, loader)
    else:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data":  # one object per line in a .json file
                examples = _load_jsonl(path, text, loader)
            else:
                raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
        else:
            examples = _load_squad(path, text, doc, loader)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return ReaderData(examples, str(path), digest, loader.not_found, loader.moved)


def pair_key(e: ReaderExample) -> tuple[str, str]:
    """What makes two examples the same question on the same passage (case and spacing aside)."""
    return normalize(e.question), " ".join(e.passage.split())


def _answer_set(e: ReaderExample) -> frozenset[str]:
    return frozenset(normalize(t) for _, t in e.answers)


@dataclass
class ReaderAudit:
    """Findings about reader data before training. Each finding names examples by ``where`` (``file:line`` or
    the SQuAD path of the question)."""

    examples: int
    answerable: int
    questions: int
    passages: int
    groups: int
    source: str = ""
    validation_source: str = ""
    validation_examples: int = 0
    not_found: list[dict[str, str]] = field(default_factory=list)
    moved: int = 0
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    leakage: list[dict[str, Any]] = field(default_factory=list)
    blocking: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def no_answer_share(self) -> float:
        """Share of the training examples whose passage does not answer the question."""
        return (self.examples - self.answerable) / self.examples if self.examples else 0.0

    def counts(self) -> dict[str, Any]:
        """The audit as numbers (for the model card's notes)."""
        return {"examples": self.examples, "answerable": self.answerable, "no_answer": self.examples - self.answerable,
                "no_answer_share": round(self.no_answer_share, 4), "questions": self.questions,
                "passages": self.passages, "groups": self.groups, "validation_examples": self.validation_examples,
                "answers_not_found": len(self.not_found), "answer_starts_moved": self.moved,
                "duplicates": sum(len(d["where"]) - 1 for d in self.duplicates), "conflicts": len(self.conflicts),
                "leakage": len(self.leakage)}

    def lines(self) -> list[str]:
        """The audit as plain lines for the terminal or a report: a summary, blocking problems, then warnings."""
        share = f"{self.no_answer_share:.0%}"
        unanswered = self.examples - self.answerable
        out = [f"{self.examples} examples ({self.answerable} answered in their passage, {unanswered} not: {share} "
               "no-answer), {self.questions} questions over {self.passages} passages in "
               f"{self.groups} groups" + (f"; {self.validation_examples} validation examples"
                                          if self.validation_source else "")]
        out += [f"cannot train: {b}" for b in self.blocking]
        out += [f"warning: {w}" for w in self.warnings]
        return out


def audit_examples(train: list[ReaderExample], validation: list[ReaderExample] | None = None) -> ReaderAudit:
    """Audit the training examples (and their overlap with ``validation``): answers not found in their passage
    (as counted by :func:`load_reader_examples`), answer starts moved, duplicate and conflicting (question,
    passage) pairs, pairs in both files (leakage), the no-answer share. Blocking: nothing left to train on."""
    report = ReaderAudit(
        examples=len(train), answerable=sum(bool(e.answers) for e in train),
        questions=len({normalize(e.question) for e in train}), passages=len({e.passage for e in train}),
        groups=len({e.group for e in train}), source=str(getattr(train, "source", "")),
        validation_source=str(getattr(validation, "source", "validation")) if validation is not None else "",
        validation_examples=len(validation) if validation is not None else 0)
    for data in (train, validation or []):
        report.not_found += getattr(data, "not_found", [])
        report.moved += int(getattr(data, "moved", 0))
    by_key: dict[tuple[str, str], list[ReaderExample]] = defaultdict(list)
    for e in train:
        by_key[pair_key(e)].append(e)
    for same in by_key.values():
        if len(same) < 2:
            continue
        entry = {"where": [e.where or e.qid for e in same], "question": excerpt(same[0].question)}
        answers = {_answer_set(e) for e in same}
        if len(answers) > 1:
            report.conflicts.append(entry | {"answers": [" | ".join(sorted(a)) or "(no answer)" for a in answers]})
        else:
            report.duplicates.append(entry)
    if validation is not None:
        report.leakage = [{"where": hit[0].where or hit[0].qid, "validation_where": v.where or v.qid,
                           "question": excerpt(v.question)}
                          for v in validation if (hit := by_key.get(pair_key(v)))]
    _judge(report, validation)
    return report


def _first(where: Any) -> str:
    return str(where[0] if isinstance(where, list) else where)


def _judge(report: ReaderAudit, validation: list[ReaderExample] | None) -> None:
    if report.examples == 0:
        dropped = f" ({len(report.not_found)} dropped: answer not in its passage)" if report.not_found else ""
        report.blocking.append(f"no usable examples in {report.source or 'the data'}{dropped}")
    elif report.answerable == 0:
        report.blocking.append("no example has its answer in its passage: the reader learns spans from answered "
                               "questions (give each answer's text as written in the passage)")
    if validation is not None and not validation:
        report.blocking.append(f"no usable examples in the validation file {report.validation_source}")
    if report.not_found:
        nf = report.not_found[0]
        report.warnings.append(f"{len(report.not_found)} answer(s) not found in their passage were dropped, first at "
                               f"{nf['where']} ({nf['answer']!r}); write answers exactly as the passage does")
    if report.moved:
        report.warnings.append(f"{report.moved} answer_start(s) did not point at the answer text and were moved to "
                               "its nearest occurrence")
    if report.duplicates:
        extra = sum(len(d["where"]) - 1 for d in report.duplicates)
        report.warnings.append(f"{extra} duplicate (question, passage) example(s) in {len(report.duplicates)} "
                               f"group(s), first at {', '.join(map(str, report.duplicates[0]['where'][:3]))}")
    if report.conflicts:
        c = report.conflicts[0]
        report.warnings.append(f"{len(report.conflicts)} (question, passage) pair(s) with conflicting answers, first "
                               f"at {', '.join(map(str, c['where'][:3]))}: {' vs '.join(c['answers'][:3])}")
    if report.leakage:
        report.warnings.append(f"{len(report.leakage)} validation example(s) also in the training data (leakage: "
                               f"held-out scores will be optimistic), first at {_first(report.leakage[0]['where'])}"
                               f" / {report.leakage[0]['validation_where']}")
    if report.examples and report.answerable == report.examples:
        report.warnings.append("no example without an answer: the no-answer threshold is then calibrated on "
                               "answerable questions only and the reader will rarely abstain; add questions whose "
                               "passage does not hold the answer (answer: null)")
