"""Corpus audit for the advisor: size, formats, freshness, structure, ACL coverage, duplicates, change rate.

Reads the folder with the same parsers and ACL rules as ingestion (nothing is embedded or written), and,
for an ingested project, the sync log that each ``ragtune ingest``/``sync`` appends to.
"""

from __future__ import annotations

import hashlib
import os
import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.errors import RagtuneError
from ragtune.ingest.acl import AclResolver
from ragtune.ingest.parsers import parse_bytes, read_source
from ragtune.ingest.roots import RootSet
from ragtune.ingest.sync import iter_source_files

DAY = 86_400.0
# Enough history to say how often documents change: at least MIN_SYNCS syncs spanning MIN_SYNC_SPAN_DAYS (the
# first sync of a root is its initial load), or modification times spread over at least MIN_MTIME_SPREAD_DAYS
# (files just copied, unpacked or checked out all carry the same recent time, which says nothing).
MIN_SYNCS = 2
MIN_SYNC_SPAN_DAYS = 3.0
MIN_MTIME_SPREAD_DAYS = 30.0
TOO_LITTLE_HISTORY = "too little history to tell how often documents change"
# Markdown pipe tables, HTML tables, or a tabular format: the structure a table-aware chunker must respect.
_TABLE = re.compile(rb"^\s*\|.*\|\s*$\n^\s*\|?\s*:?-{3,}", re.MULTILINE)


@dataclass
class CorpusAudit:
    """What the advisor knows about a document folder."""

    root: str
    documents: int = 0
    total_bytes: int = 0
    formats: dict[str, int] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)
    median_age_days: float | None = None
    modified_last_7d: float = 0.0  # share of documents
    modified_last_30d: float = 0.0
    with_headings: int = 0  # documents with more than one section
    with_tables: int = 0
    no_acl: list[str] = field(default_factory=list)
    duplicate_groups: list[list[str]] = field(default_factory=list)  # identical text under several paths
    mtime_spread_days: float = 0.0  # newest to oldest modification time
    syncs: int = 0  # entries in the project's sync log
    sync_span_days: float = 0.0  # first to last sync
    changed_per_week: float | None = None  # documents added/changed/deleted per week, as a share of the corpus

    @property
    def change_rate_known(self) -> bool:
        """Whether there is enough history to tell how often documents change (a sync log long enough for
        ``changed_per_week``, or modification times spread over ``MIN_MTIME_SPREAD_DAYS``)."""
        return self.changed_per_week is not None or self.mtime_spread_days >= MIN_MTIME_SPREAD_DAYS

    @property
    def knowledge_changes_weekly(self) -> bool:
        """Measured churn (from syncs) or, without enough syncs, recent modification times say weekly; False
        when there is too little history to tell (``change_rate_known``)."""
        if self.changed_per_week is not None:
            return self.changed_per_week >= 0.01
        return self.change_rate_known and self.modified_last_7d >= 0.01

    def history(self) -> str:
        """What the change rate would rest on, e.g. "2 syncs over 0.0 days (needs 2+ over 3+ days);
        modification times spread over 0.0 days (needs 30+)"."""
        syncs = (f"{self.syncs} sync{'s' if self.syncs > 1 else ''} over {self.sync_span_days:.1f} days"
                 if self.syncs else "no sync log")
        return (f"{syncs} (needs {MIN_SYNCS}+ over {MIN_SYNC_SPAN_DAYS:.0f}+ days: `ragtune sync` on a schedule, "
                f"then --project); modification times spread over {self.mtime_spread_days:.1f} days (needs "
                f"{MIN_MTIME_SPREAD_DAYS:.0f}+)")

    def findings(self) -> list[str]:
        """Plain-language findings, most important first."""
        out = []
        if self.no_acl:
            out.append(f"{len(self.no_acl)} of {self.documents} documents have no ACL and would be "
                       "retrievable by nobody until given one")
        if self.failed:
            out.append(f"{len(self.failed)} files cannot be parsed (e.g. {Path(self.failed[0][0]).name}: "
                       f"{self.failed[0][1]})")
        if self.duplicate_groups:
            extra = sum(len(g) - 1 for g in self.duplicate_groups)
            out.append(f"{extra} documents duplicate another one's text ({len(self.duplicate_groups)} groups)")
        if self.changed_per_week is not None:
            out.append(f"measured change rate: {100 * self.changed_per_week:.1f} % of documents per week "
                       f"over {self.syncs} syncs in {self.sync_span_days:.1f} days")
        elif self.change_rate_known:
            out.append(f"{100 * self.modified_last_7d:.0f} % of documents modified in the last 7 days, "
                       f"{100 * self.modified_last_30d:.0f} % in the last 30 (from modification times spread "
                       f"over {self.mtime_spread_days:.0f} days; "
                       f"{'sync log too short' if self.syncs else 'no sync log'})")
        else:
            out.append(f"{TOO_LITTLE_HISTORY} ({self.history()})")
        if self.documents:
            out.append(f"{self.with_headings} of {self.documents} documents have headings/sections, "
                       f"{self.with_tables} contain tables")
        return out


def audit_corpus(root: Path, sync_log: list[dict[str, Any]] | None = None, now: float | None = None) -> CorpusAudit:
    """Audit the documents under ``root``; with a project's ``sync_log``, also the change rate it shows."""
    root = Path(root)
    if not root.exists():
        raise RagtuneError(f"{root} does not exist; pass the folder of documents to --docs")
    now = time.time() if now is None else now
    audit = CorpusAudit(root=str(root))
    resolver = AclResolver(RootSet({Path(os.path.realpath(root)): None}))
    formats: Counter[str] = Counter()
    by_text: dict[str, list[str]] = {}
    ages: list[float] = []
    for path in iter_source_files(root):
        try:
            data = read_source(path)
            parsed = parse_bytes(data, path)
            acl = resolver.resolve(Path(os.path.realpath(path)), parsed.metadata)
        except RagtuneError as exc:
            audit.failed.append((str(path), str(exc)))
            continue
        audit.documents += 1
        audit.total_bytes += len(data)
        suffix = path.suffix.lower().lstrip(".") or "none"
        formats[suffix] += 1
        ages.append(max(0.0, (now - path.stat().st_mtime) / DAY))
        if len(parsed.sections) > 1 or any(s.path for s in parsed.sections):
            audit.with_headings += 1
        if suffix in ("csv", "jsonl") or b"<table" in data.lower() or _TABLE.search(data):
            audit.with_tables += 1
        if acl.is_empty:
            audit.no_acl.append(str(path))
        key = hashlib.sha256(" ".join(parsed.text.split()).encode("utf-8")).hexdigest()
        by_text.setdefault(key, []).append(str(path))
    if audit.documents == 0 and not audit.failed:
        raise RagtuneError(f"{root} holds no documents; the advisor needs the corpus your RAG would search")
    audit.formats = dict(formats.most_common())
    if ages:
        audit.median_age_days = statistics.median(ages)
        audit.modified_last_7d = sum(a <= 7 for a in ages) / len(ages)
        audit.modified_last_30d = sum(a <= 30 for a in ages) / len(ages)
        audit.mtime_spread_days = max(ages) - min(ages)
    audit.duplicate_groups = [g for g in by_text.values() if len(g) > 1]
    if sync_log:
        audit.syncs, audit.changed_per_week = change_rate(sync_log, audit.documents)
        times = [e["time"] for e in sync_log]
        audit.sync_span_days = (max(times) - min(times)) / DAY
    return audit


def change_rate(log: list[dict[str, Any]], documents: int) -> tuple[int, float | None]:
    """(syncs logged, documents changed per week as a share of ``documents``) from the sync log.

    The first sync of each root is the initial load, not change; at least ``MIN_SYNCS`` syncs spanning
    ``MIN_SYNC_SPAN_DAYS`` are needed (else None: too little history to tell).
    """
    log = sorted(log, key=lambda e: e["time"])
    if len(log) < MIN_SYNCS or not documents:
        return len(log), None
    seen: set[str] = set()
    changed = 0
    for entry in log:
        if entry["root"] in seen:
            changed += entry["ingested"] + entry["updated"] + entry["deleted"]
        seen.add(entry["root"])
    span_days = (log[-1]["time"] - log[0]["time"]) / DAY
    if span_days < MIN_SYNC_SPAN_DAYS:
        return len(log), None
    return len(log), changed / (span_days / 7) / documents
