"""The extraction: for every document under DOCS that the principal may read, each field's best span.

The documents are the project's indexed documents whose source path lies under DOCS (a folder or file that was
ingested). Each one's chunks are read *as the principal* (:meth:`Project.document_chunks`, the ACL filter inside
the store query); a document the principal may not read is skipped and only counted, never named. Per field,
the span reader reads every phrasing of its question against all the document's chunks and proposes its best
spans; the best one that the field's validator accepts is the value, kept when it scores at least the field's
``min_score``, else ``--min-score``, else the reader's calibrated threshold. Nothing here prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragtune.answer.reader import SpanReading, sentence_around
from ragtune.core import Chunk, Principal
from ragtune.errors import EmptyCorpusError, RagtuneError
from ragtune.extract.fields import FieldSpec
from ragtune.ingest.roots import is_within, source_prefix_matches
from ragtune.store.base import DocRecord

if TYPE_CHECKING:
    from ragtune.project import Project

CANDIDATES = 10  # spans asked of the reader per phrasing for a typed field (the best that validates is taken)


@dataclass(frozen=True)
class FieldValue:
    """A field's value in one document and where it was read: the normalised ``value``, the ``span`` as it
    stands in the document, its score, the chunk, the document's path (relative to its ingested folder),
    section and page, the span's offsets in the document's text (``char_start``..``char_end``), the sentence
    it lies in and the span's offsets within that sentence (``mark_start``..``mark_end``)."""

    value: str
    span: str
    score: float
    question: str
    chunk_id: str
    path: str
    section: str
    page: int | None
    char_start: int
    char_end: int
    sentence: str
    mark_start: int
    mark_end: int

    def citation(self) -> str:
        """``path · section · p. N · chars A–B`` (parts that are unknown left out)."""
        parts = [self.path, self.section, f"p. {self.page}" if self.page is not None else "",
                 f"chars {self.char_start}-{self.char_end}"]
        return " · ".join(p for p in parts if p)


@dataclass(frozen=True)
class FieldCell:
    """One field of one document: the ``value`` (None: nothing scored at least ``threshold``), and the best
    validating candidate's score even when it fell short (None: no candidate validated)."""

    value: FieldValue | None
    best_score: float | None
    threshold: float


@dataclass(frozen=True)
class DocumentRow:
    """One readable document and its fields, in the fields file's order."""

    doc_id: str
    path: str
    title: str
    cells: dict[str, FieldCell]


@dataclass
class Extraction:
    """What an extraction found: one row per readable document (sorted by path), how many documents under
    DOCS the principal may not read (``skipped``: counted, never listed), the fields and the reader used."""

    docs: str
    fields: list[FieldSpec]
    reader: str
    rows: list[DocumentRow] = field(default_factory=list)
    skipped: int = 0

    def filled(self) -> dict[str, int]:
        """Per field, the documents that got a value."""
        return {f.name: sum(r.cells[f.name].value is not None for r in self.rows) for f in self.fields}


def documents_under(project: Project, docs: Path) -> list[DocRecord]:
    """The indexed documents whose source path lies at or under ``docs`` (the admin view: ACLs not applied).

    ``docs`` must have been ingested (it lies in an ingested root, or holds one); else a :class:`RagtuneError`
    saying to run ``ragtune ingest``."""
    real, lexical = Path(os.path.realpath(docs)), Path(os.path.abspath(docs))
    hint = f"run `ragtune ingest {docs}` first"
    if not project.settings.index_dir.is_dir():
        raise EmptyCorpusError(f"nothing is ingested in the project at {project.settings.project_dir}: {hint}")
    roots = list(project.roots())
    if not any(is_within(p, r) or is_within(r, p) for r in roots for p in (real, lexical)):
        raise RagtuneError(f"{docs} has not been ingested into the project at {project.settings.project_dir}: "
                           f"{hint}")
    found = [d for d in project.store.documents()
             if source_prefix_matches(d.source_path, real) or source_prefix_matches(d.source_path, lexical)]
    if not found:
        raise RagtuneError(f"no indexed documents lie under {docs}: {hint} (or `ragtune sync` after adding files)")
    return found


def read_field(reader: SpanReading, spec: FieldSpec, chunks: Sequence[Chunk], path: str, threshold: float,
               candidates: int = CANDIDATES) -> FieldCell:
    """``spec``'s best validating span over its phrasings and ``chunks`` (one reader call per phrasing, all the
    chunks batched), kept when it scores at least ``threshold``."""
    texts = [c.text for c in chunks]
    top_n = 1 if spec.type == "text" else candidates
    proposals: list[tuple[float, int, str, Any]] = []
    for q, question in enumerate(spec.phrasings):
        for span in reader.read(question, texts, top_n=top_n):
            proposals.append((float(span.score), q, question, span))
    proposals.sort(key=lambda p: (-p[0], p[1], p[3].passage, p[3].start))
    for score, _, question, span in proposals:
        match = spec.validate_span(span.text)
        if match is None:
            continue
        if score < threshold:
            return FieldCell(None, score, threshold)
        chunk = chunks[span.passage]
        start, end = span.start + match.start, span.start + match.end
        s0, s1 = sentence_around(chunk.text, start, end)
        return FieldCell(FieldValue(
            value=match.value, span=chunk.text[start:end], score=score, question=question, chunk_id=chunk.chunk_id,
            path=path, section=chunk.section, page=chunk.page, char_start=chunk.char_start + start,
            char_end=chunk.char_start + end, sentence=chunk.text[s0:s1], mark_start=start - s0,
            mark_end=end - s0), score, threshold)
    return FieldCell(None, None, threshold)


def field_threshold(spec: FieldSpec, min_score: float | None, reader: SpanReading) -> float:
    """The score a field's value needs: its own ``min_score``, else ``--min-score``, else the reader's threshold."""
    if spec.min_score is not None:
        return spec.min_score
    return min_score if min_score is not None else float(reader.threshold)


def extract_fields(project: Project, docs: Path, fields: Sequence[FieldSpec], principal: Principal,
                   reader: SpanReading, *, min_score: float | None = None, candidates: int = CANDIDATES,
                   progress: Callable[[int, int], None] | None = None) -> Extraction:
    """Fill ``fields`` for every document under ``docs`` that ``principal`` may read (see the module docstring).

    ``progress(done, total)`` is called after each document (readable or not)."""
    from ragtune.evaluation.data import document_map

    records = documents_under(project, docs)
    labels = document_map(records, project.roots()).labels
    records.sort(key=lambda d: (labels[d.doc_id], d.doc_id))
    reader.warm_up()
    result = Extraction(str(docs), list(fields), reader.fingerprint)
    thresholds = {f.name: field_threshold(f, min_score, reader) for f in fields}
    for done, record in enumerate(records, start=1):
        # The store's ACL filter decides; the record's ACL only spares a fetch that would come back empty.
        chunks = project.document_chunks(record.doc_id, principal) if principal.can_read(record.acl) else []
        if not chunks:
            result.skipped += 1
        else:
            path = labels[record.doc_id]
            cells = {f.name: read_field(reader, f, chunks, path, thresholds[f.name], candidates) for f in fields}
            result.rows.append(DocumentRow(record.doc_id, path, record.title, cells))
        if progress is not None:
            progress(done, len(records))
    return result
