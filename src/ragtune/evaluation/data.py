"""Evaluation inputs: BEIR queries and qrels, question files with gold documents, and corpus ids → documents.

Formats (docs/evaluation.md):

- **queries** (JSONL): one ``{"_id": "...", "text": "..."}`` per line (BEIR's ``queries.jsonl``).
- **qrels** (TSV): a header line, then ``query-id<TAB>corpus-id<TAB>score`` (BEIR's ``qrels/test.tsv``); the
  score is a non-negative integer grade, 0 meaning judged not relevant.
- **questions** (JSONL): ``{"question": "...", "gold": "doc id or path"}`` (``gold`` may be a list; ``id`` is
  optional, else the query id is ``line<N>``).

A **corpus id** names an ingested document by its file stem (``retention``) or by its path relative to the
ingested root holding it (``legal/retention.md``, also without the extension: ``legal/retention``). A stem
shared by two documents is ambiguous only when a qrels line uses it: that is an error naming both files.
Every malformed line is an error naming ``file:line``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ragtune.errors import DataError
from ragtune.ingest.roots import is_within
from ragtune.store.base import DocRecord

Qrels = dict[str, dict[str, int]]  # query id -> {corpus id or document id: grade}


@dataclass(frozen=True)
class EvalQuery:
    """One query to search: its id and text, and (from a questions file) its gold answer texts, if any."""

    qid: str
    text: str
    answers: tuple[str, ...] = ()


def _lines(path: Path) -> Iterable[tuple[int, str]]:
    """(line number, stripped line) of a UTF-8 text file, blank lines left out."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield n, line.strip()


def _json_object(path: Path, n: int, line: str) -> dict[str, object]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{n}: not valid JSON ({exc.msg}); each line must be one JSON object") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path}:{n}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _text_field(path: Path, n: int, obj: Mapping[str, object], key: str) -> str:
    value = obj.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{path}:{n}: missing or empty {key!r} (keys on the line: {sorted(obj)})")
    return value.strip()


def _unique(path: Path, queries: list[EvalQuery], lines: list[int]) -> list[EvalQuery]:
    seen: dict[str, int] = {}
    for q, n in zip(queries, lines, strict=True):
        if q.qid in seen:
            raise DataError(f"{path}:{n}: query id {q.qid!r} repeats line {seen[q.qid]}; query ids must be unique")
        seen[q.qid] = n
    if not queries:
        raise DataError(f"{path}: no queries in the file; it needs one JSON object per line")
    return queries


def load_queries(path: Path) -> list[EvalQuery]:
    """BEIR queries: one ``{"_id", "text"}`` object per line, ids unique; an empty file is an error."""
    queries, lines = [], []
    for n, line in _lines(path):
        obj = _json_object(path, n, line)
        queries.append(EvalQuery(_text_field(path, n, obj, "_id"), _text_field(path, n, obj, "text")))
        lines.append(n)
    return _unique(path, queries, lines)


def load_qrels(path: Path) -> Qrels:
    """BEIR qrels TSV: a header line, then ``query-id corpus-id score`` (tabs, or runs of spaces). A first line
    whose third field is a number is read as a judgement, not a header."""
    qrels: Qrels = {}
    rows = list(_lines(path))
    if not rows:
        raise DataError(f"{path}: empty qrels file; expected a header line and `query-id corpus-id score` lines")
    def fields(line: str) -> list[str]:
        return [p.strip() for p in (line.split("\t") if "\t" in line else line.split())]

    head = fields(rows[0][1])
    has_header = not (len(head) == 3 and head[2].lstrip("-").replace(".", "", 1).isdigit())
    for n, line in rows[1:] if has_header else rows:  # the header line is optional in practice
        parts = fields(line)
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise DataError(f"{path}:{n}: expected 3 tab-separated columns `query-id corpus-id score`, "
                            f"got {len(parts)}: {line[:80]!r}")
        try:
            grade = int(float(parts[2]))
        except ValueError:
            raise DataError(f"{path}:{n}: the score {parts[2]!r} is not a number") from None
        if grade < 0:
            raise DataError(f"{path}:{n}: the score {grade} is negative; grades are 0 (not relevant) or more")
        qrels.setdefault(parts[0], {})[parts[1]] = grade
    if not qrels:
        raise DataError(f"{path}: no judgements after the header line")
    return qrels


def load_questions(path: Path) -> tuple[list[EvalQuery], Qrels]:
    """Questions with gold documents: ``{"question", "gold"}`` per line (``gold``: a corpus id or a list of
    them; ``id`` optional; ``answer``, optional: the answer text or a list of them, as written in the gold
    document). Returns the queries and grade-1 qrels."""
    queries, lines, qrels = [], [], {}
    for n, line in _lines(path):
        obj = _json_object(path, n, line)
        qid = _text_field(path, n, obj, "id") if "id" in obj else f"line{n}"
        gold = obj.get("gold")
        golds = gold if isinstance(gold, list) else [gold]
        if not golds or not all(isinstance(g, str) and g.strip() for g in golds):
            raise DataError(f"{path}:{n}: 'gold' must be a document id or path, or a list of them")
        queries.append(EvalQuery(qid, _text_field(path, n, obj, "question"), _answers(path, n, obj)))
        lines.append(n)
        qrels[qid] = {str(g).strip(): 1 for g in golds}
    return _unique(path, queries, lines), qrels


def _answers(path: Path, n: int, obj: Mapping[str, object]) -> tuple[str, ...]:
    """The optional ``answer`` field of a questions line: a text or a list of texts, none empty."""
    if "answer" not in obj or obj["answer"] is None:
        return ()
    value = obj["answer"]
    answers = value if isinstance(value, list) else [value]
    if not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        raise DataError(f"{path}:{n}: 'answer' must be the answer text as written in the gold document, or a "
                        "list of them")
    return tuple(" ".join(str(a).split()) for a in answers)


@dataclass
class DocumentMap:
    """Corpus ids → document ids, and each document's label (its path relative to its root)."""

    ids: dict[str, str] = field(default_factory=dict)  # relative path (with and without suffix) -> doc id
    stems: dict[str, list[str]] = field(default_factory=dict)  # file stem -> doc ids
    labels: dict[str, str] = field(default_factory=dict)  # doc id -> relative path (posix)
    paths: dict[str, str] = field(default_factory=dict)  # doc id -> stored source path

    def resolve(self, corpus_id: str) -> str | None:
        """The document ``corpus_id`` names, None if none; an ambiguous stem is a :class:`DataError`."""
        key = corpus_id.strip().strip("/")
        if key in self.ids:
            return self.ids[key]
        found = self.stems.get(key, [])
        if len(found) > 1:
            files = " and ".join(self.paths[d] for d in found[:2])
            more = f" (and {len(found) - 2} more)" if len(found) > 2 else ""
            raise DataError(f"corpus id {corpus_id!r} is ambiguous: the file stem of {files}{more}; name the "
                            "document by its path relative to its ingested folder instead")
        return found[0] if found else None


def document_map(docs: Sequence[DocRecord], roots: Iterable[Path]) -> DocumentMap:
    """The mapping of every ingested document (``Project.sources()``, the admin view) under ``roots``."""
    roots = sorted(roots, key=lambda r: len(r.parts), reverse=True)
    m = DocumentMap()
    for d in docs:
        source = Path(d.source_path)
        root = next((r for r in roots if is_within(source, r)), None)
        rel = PurePosixPath(source.relative_to(root).as_posix()) if root is not None and source != root \
            else PurePosixPath(source.name)
        m.labels[d.doc_id] = str(rel)
        m.paths[d.doc_id] = d.source_path
        m.ids.setdefault(str(rel), d.doc_id)
        m.ids.setdefault(str(rel.with_suffix("")), d.doc_id)
        m.stems.setdefault(source.stem, []).append(d.doc_id)
    return m


@dataclass
class ResolvedQrels:
    """Qrels keyed by document id, the queries to search, and what was left out (with counts)."""

    qrels: Qrels
    queries: list[EvalQuery]
    missing_queries: list[str]  # query ids of the qrels that the query file lacks (warned about, skipped)
    unjudged_queries: int  # queries of the file without any relevant judgement (not scored)
    unknown: list[tuple[str, str]] = field(default_factory=list)  # (query id, corpus id) of relevant judgements
    # naming no indexed document, left out (only with strict=False)


def resolve_qrels(queries: Sequence[EvalQuery], qrels: Mapping[str, Mapping[str, int]],
                  documents: DocumentMap, *, strict: bool = True) -> ResolvedQrels:
    """Map every corpus id to its document; any unknown corpus id is a :class:`DataError` naming a few and
    how many. Queries with no relevant judgement are left out; qrels queries the file lacks are reported.

    ``strict=False`` (training data, where a judged document may since have left the index): unknown corpus
    ids are no error; the relevant judgements naming one are listed in ``ResolvedQrels.unknown`` and left out,
    and the result may hold no query when every gold document is unknown."""
    unknown: list[tuple[str, str, int]] = []
    resolved: Qrels = {}
    for qid, rel in qrels.items():
        for corpus_id, grade in rel.items():
            doc = documents.resolve(corpus_id)
            if doc is None:
                unknown.append((qid, corpus_id, grade))
            else:
                resolved.setdefault(qid, {})[doc] = max(grade, resolved.get(qid, {}).get(doc, 0))
    if unknown and strict:
        distinct = sorted({corpus_id for _, corpus_id, _ in unknown})
        shown = ", ".join(repr(u) for u in distinct[:5])
        raise DataError(f"the qrels name {len(distinct)} document(s) not in the index: {shown}"
                        + (f" and {len(distinct) - 5} more" if len(distinct) > 5 else "")
                        + "; a corpus id is an ingested file's stem or its path relative to its ingested folder "
                        "(`ragtune sources` lists them)")
    known = {q.qid for q in queries}
    missing = sorted(q for q in resolved if q not in known)
    judged = [q for q in queries if any(g > 0 for g in resolved.get(q.qid, {}).values())]
    matched = any(g > 0 for q in queries for g in qrels.get(q.qid, {}).values())
    if not judged and (strict or not matched):
        raise DataError("no query of the query file has a relevant document in the qrels (grade > 0): do the "
                        "query ids of the two files match?")
    return ResolvedQrels({q.qid: resolved[q.qid] for q in judged}, judged, missing, len(queries) - len(judged),
                         [(qid, corpus_id) for qid, corpus_id, grade in unknown if grade > 0])
