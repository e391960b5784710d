"""Consistency check of an index against its roots: what ``ragtune check`` reports and ``--repair`` fixes."""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from ragtune.ingest.roots import RootSet, source_prefix_matches
from ragtune.store.base import Store


@dataclass
class CheckReport:
    """Problems found; every list holds document ids (with a reason in ``details``)."""

    chunks: int = 0
    documents: int = 0
    duplicate_chunks: list[str] = field(default_factory=list)  # chunk ids stored more than once
    duplicated_docs: list[str] = field(default_factory=list)  # the documents those chunks belong to
    inconsistent: list[str] = field(default_factory=list)  # chunks of one document disagree (version or ACL)
    orphans: list[str] = field(default_factory=list)  # documents under no ingested root
    missing_files: list[str] = field(default_factory=list)  # documents whose file is gone
    details: dict[str, str] = field(default_factory=dict)  # doc id -> source path

    @property
    def damaged(self) -> list[str]:
        """Documents to delete and re-ingest in a repair."""
        return sorted(set(self.duplicated_docs) | set(self.inconsistent) | set(self.orphans) | set(self.missing_files))

    @property
    def ok(self) -> bool:
        """Whether nothing needs repair."""
        return not self.damaged


def check_index(store: Store, roots: RootSet, keep_missing_roots: bool = False) -> CheckReport:
    """Find duplicate chunk ids, documents whose chunks disagree, orphans and documents whose files are gone."""
    rows = store.chunk_index()
    report = CheckReport(chunks=len(rows))
    counts = Counter(r.chunk_id for r in rows)
    report.duplicate_chunks = sorted(cid for cid, n in counts.items() if n > 1)
    dups = set(report.duplicate_chunks)
    report.duplicated_docs = sorted({r.doc_id for r in rows if r.chunk_id in dups})
    by_doc: dict[str, set[tuple[str, tuple[str, ...], str]]] = defaultdict(set)
    for r in rows:
        by_doc[r.doc_id].add((r.doc_hash, r.acl, r.source_path))
        report.details[r.doc_id] = r.source_path
    report.documents = len(by_doc)
    for doc_id, versions in sorted(by_doc.items()):
        if len(versions) > 1:
            report.inconsistent.append(doc_id)
        path = next(iter(versions))[2]
        root = next((r for r in roots if source_prefix_matches(path, r)), None)
        if root is None:
            report.orphans.append(doc_id)
        elif not os.path.lexists(path) and (os.path.exists(root) or not keep_missing_roots):
            report.missing_files.append(doc_id)
    return report
