"""Incremental sync of a folder into the store: only new or changed files are parsed and embedded.

A file's identity is its resolved path; its version is the SHA-256 of its bytes. Per run:
new and changed files are parsed, chunked and embedded, then written in batches, each batch one atomic
commit that replaces those documents' chunks; ACL-only changes rewrite the ACL column without embedding;
files gone from the folder lose their chunks. A killed run leaves every document either old or new, and
the next run picks up where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ragtune.core import Acl, Chunk, Document
from ragtune.errors import RagtuneError
from ragtune.ingest.acl import ACL_FILE, AclResolver
from ragtune.ingest.chunking import chunk_document, minilm_token_counts
from ragtune.ingest.parsers import parse_bytes, read_front_matter, read_source
from ragtune.models.embedder import Embedder
from ragtune.store.base import DocRecord, Store


class SyncProgress(Protocol):
    """Receives progress as a sync runs (the CLI draws it as a progress bar)."""

    def start(self, total_files: int) -> None:
        """Called once with the number of files found."""

    def file_done(self, path: Path, status: str) -> None:
        """Called after each file with its status (new, updated, unchanged, reacl, failed)."""

    def chunks_embedded(self, n: int) -> None:
        """Called after each embedding batch with the number of chunks embedded."""


@dataclass
class SyncReport:
    """What one sync did."""

    ingested: int = 0
    updated: int = 0
    unchanged: int = 0
    reacl: int = 0
    deleted: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    no_acl: list[str] = field(default_factory=list)
    chunks_embedded: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        """Whether the store was written."""
        return bool(self.ingested or self.updated or self.reacl or self.deleted)


def doc_id_for(path: Path) -> str:
    """Stable document id: a hash of the resolved path."""
    return hashlib.sha1(str(path.resolve()).encode("utf-8")).hexdigest()[:16]


def iter_source_files(root: Path, exclude: tuple[Path, ...] = ()) -> Iterator[Path]:
    """Files under ``root`` in a stable order, skipping hidden entries, ACL files and ``exclude`` folders."""
    excluded = {p.resolve() for p in exclude}
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and (here / d).resolve() not in excluded
        )
        for name in sorted(filenames):
            if name.startswith(".") or name == ACL_FILE:
                continue
            yield here / name


@dataclass
class _Pending:
    doc: Document
    chunks: list[Chunk]


class Syncer:
    """Syncs folders into one store with one embedder and chunking configuration."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        max_tokens: int = 256,
        overlap_tokens: int = 32,
        max_file_mb: float = 20.0,
        batch_chunks: int = 256,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.max_bytes = int(max_file_mb * 1e6)
        self.batch_chunks = batch_chunks

    def sync(
        self,
        root: Path,
        default_acl: Acl | None = None,
        progress: SyncProgress | None = None,
        exclude: tuple[Path, ...] = (),
    ) -> SyncReport:
        """Bring the store in line with the files under ``root`` (a folder or one file)."""
        t0 = time.perf_counter()
        root = root.resolve()
        if not root.exists():
            raise RagtuneError(f"{root} does not exist; pass a folder or file to ingest")
        report = SyncReport()
        resolver = AclResolver(root if root.is_dir() else root.parent, default_acl)
        known = {d.doc_id: d for d in self.store.documents()}
        files = list(iter_source_files(root, exclude))
        if progress:
            progress.start(len(files))
        seen: set[str] = set()
        pending: list[_Pending] = []
        pending_chunks = 0
        for path in files:
            doc_id = doc_id_for(path)
            seen.add(doc_id)
            status = self._one_file(path, doc_id, known, resolver, report, pending)
            if status in ("new", "updated"):
                pending_chunks += len(pending[-1].chunks)
                if pending_chunks >= self.batch_chunks:
                    self._flush(pending, report, progress)
                    pending, pending_chunks = [], 0
            if progress:
                progress.file_done(path, status)
        self._flush(pending, report, progress)
        prefix = str(root) if root.is_file() else str(root) + os.sep
        gone = [
            d.doc_id for d in known.values()
            if d.doc_id not in seen and (d.source_path == str(root) or d.source_path.startswith(prefix))
        ]
        if gone:
            self.store.delete_documents(gone)
            report.deleted = len(gone)
        if report.changed:
            self.store.optimize()
        report.seconds = time.perf_counter() - t0
        return report

    def _one_file(
        self,
        path: Path,
        doc_id: str,
        known: dict[str, DocRecord],
        resolver: AclResolver,
        report: SyncReport,
        pending: list[_Pending],
    ) -> str:
        try:
            data = read_source(path, self.max_bytes)
            doc_hash = hashlib.sha256(data).hexdigest()
            old = known.get(doc_id)
            if old is not None and old.doc_hash == doc_hash:
                acl = resolver.resolve(path, read_front_matter(data, path))
                if acl.is_empty:
                    report.no_acl.append(str(path))
                if tuple(acl.tokens()) == old.acl:
                    report.unchanged += 1
                    return "unchanged"
                self.store.set_acl(doc_id, acl.tokens(), time.time())
                report.reacl += 1
                return "reacl"
            parsed = parse_bytes(data, path)
            acl = resolver.resolve(path, parsed.metadata)
        except RagtuneError as exc:
            report.failed.append((str(path), str(exc)))
            return "failed"
        if acl.is_empty:
            report.no_acl.append(str(path))
        doc = Document(
            doc_id=doc_id,
            source_path=str(path.resolve()),
            title=parsed.title,
            text=parsed.text,
            sections=tuple(parsed.sections),
            content_hash=doc_hash,
            mtime=path.stat().st_mtime,
            acl=acl,
            format=path.suffix.lower().lstrip("."),
        )
        chunks = chunk_document(doc, self.max_tokens, self.overlap_tokens, minilm_token_counts,
                                window=self.embedder.window)
        pending.append(_Pending(doc, chunks))
        if old is None:
            report.ingested += 1
            return "new"
        report.updated += 1
        return "updated"

    def _flush(self, pending: list[_Pending], report: SyncReport, progress: SyncProgress | None) -> None:
        if not pending:
            return
        chunks = [c for p in pending for c in p.chunks]
        vectors = self.embedder.embed([c.search_text for c in chunks])
        self.store.replace_documents([p.doc.doc_id for p in pending], chunks, vectors, time.time())
        report.chunks_embedded += len(chunks)
        if progress:
            progress.chunks_embedded(len(chunks))


def remember_root(index_dir: Path, root: Path, acl: Acl | None) -> None:
    """Record an ingested root (and its --acl) so ``ragtune sync`` can re-sync every root later."""
    roots = load_roots(index_dir)
    roots[str(root.resolve())] = acl.tokens() if acl else []
    index_dir.mkdir(parents=True, exist_ok=True)
    tmp = index_dir / "roots.json.tmp"
    tmp.write_text(json.dumps(roots, indent=2), encoding="utf-8")
    tmp.replace(index_dir / "roots.json")


def load_roots(index_dir: Path) -> dict[str, list[str]]:
    """Roots recorded by :func:`remember_root`: path -> default ACL tokens."""
    path = index_dir / "roots.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {str(k): list(v) for k, v in data.items()}


SYNC_LOG = "sync_log.jsonl"


def record_sync(index_dir: Path, root: Path, report: SyncReport, when: float | None = None) -> None:
    """Append one line per sync (what changed, when) so the advisor can measure how fast the corpus changes."""
    index_dir.mkdir(parents=True, exist_ok=True)
    entry = {
        "time": time.time() if when is None else when, "root": str(root.resolve()),
        "ingested": report.ingested, "updated": report.updated, "deleted": report.deleted,
        "unchanged": report.unchanged, "reacl": report.reacl, "failed": len(report.failed),
    }
    with open(index_dir / SYNC_LOG, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")


def load_sync_log(index_dir: Path) -> list[dict[str, Any]]:
    """The entries written by :func:`record_sync`, oldest first; a torn last line is ignored."""
    path = index_dir / SYNC_LOG
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return sorted(out, key=lambda e: e["time"])
