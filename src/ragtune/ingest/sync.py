"""Incremental sync of a folder into the store: only new or changed files are parsed and embedded.

A file's identity is its real path; its version is the SHA-256 of its bytes; its ACL comes from
:class:`~ragtune.ingest.acl.AclResolver` (so a file reached through several links is one document with one
ACL). Per run: new and changed files are parsed, chunked and embedded, then written in batches, each batch
one atomic commit that replaces those documents' chunks; ACL-only changes rewrite the ACL column without
embedding; files gone from the folder lose their chunks. A file whose ACL cannot be parsed becomes readable
by nobody at once. A killed run leaves every document either old or new, and the next run picks up where it
stopped.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ragtune.core import Acl, Chunk
from ragtune.errors import AclError, FrontMatterError, RagtuneError
from ragtune.ingest.acl import AclResolver
from ragtune.ingest.executor import IngestExecutor, LocalExecutor, ParseJob, ParseOutcome
from ragtune.ingest.parsers import read_front_matter, read_source
from ragtune.ingest.roots import RootSet, is_within, source_prefix_matches
from ragtune.ingest.walk import Found, Walk, walk_sources
from ragtune.models.embedder import Embedder
from ragtune.store.base import DocRecord, Store
from ragtune.store.state import SyncState


class SyncProgress(Protocol):
    """Receives progress as a sync runs (the CLI draws it as a progress bar).

    An implementation may also define ``chunks_total(n: int)`` (see :class:`ChunkTotalProgress`); the syncer
    calls it only when it is there, so the three methods below are all a progress receiver needs.
    """

    def start(self, total_files: int) -> None:
        """Called once with the number of files found."""

    def file_done(self, path: Path, status: str) -> None:
        """Called once per file with its status (new, updated, unchanged, reacl, failed). Unchanged, reacl
        and failed files report as they are read; new and updated ones just before their batch is embedded
        and written (an exception raised here stops the sync before that batch)."""

    def chunks_embedded(self, n: int) -> None:
        """Called after each embedding batch is written, with the number of chunks in it."""


class ChunkTotalProgress(SyncProgress, Protocol):
    """A progress receiver that is also told how many chunks this sync will embed.

    ``chunks_total(n)`` is called with the running total while files are read and chunked, and once more
    before the first batch is embedded; from then on ``n`` is exact: the ``chunks_embedded`` calls add up to
    it (a sync with more than ``Syncer.plan_chunks`` new chunks embeds them in rounds, and the total grows
    again at each round).
    """

    def chunks_total(self, n: int) -> None:
        """Called with the number of chunks to embed in this sync, as far as it is known."""


@dataclass
class SyncReport:
    """What one sync did. ``failed`` files make the command exit non-zero; ``skipped`` ones do not."""

    ingested: int = 0
    updated: int = 0
    unchanged: int = 0
    reacl: int = 0
    deleted: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    no_acl: list[str] = field(default_factory=list)
    locked_out: list[str] = field(default_factory=list)  # documents made readable by nobody by a failure
    chunks_embedded: int = 0
    seconds: float = 0.0
    nodes: dict[str, list[str]] = field(default_factory=dict)  # stage -> Ray node ids it ran on (a Ray sync only)

    @property
    def changed(self) -> bool:
        """Whether the store was written."""
        return bool(self.ingested or self.updated or self.reacl or self.deleted or self.locked_out)


WINDOW_BYTES = 64_000_000  # file bytes held for one executor window at most (a window also ends at its file count)


def doc_id_for(path: Path) -> str:
    """Stable document id: a hash of the real path (symlinks resolved)."""
    return _doc_id(Path(os.path.realpath(path)))


def _doc_id(real: Path) -> str:
    return hashlib.sha1(str(real).encode("utf-8")).hexdigest()[:16]


def iter_source_files(root: Path, exclude: tuple[Path, ...] = ()) -> list[Path]:
    """Readable source files under ``root`` (links outside it are not followed), in a stable order."""
    real_root = Path(os.path.realpath(root))
    walk = walk_sources(root, lambda p: is_within(p, real_root), exclude=exclude)
    return [f.path for f in walk.files]


@dataclass
class _Pending:
    doc_id: str
    path: Path  # as reported to the progress receiver
    status: str  # new or updated
    chunks: list[Chunk]


@dataclass
class _Read:
    """A file after the syncer read it: unchanged or re-permissioned (``acl``), to parse (``job``), or failed."""

    doc_id: str
    found: list[Found]
    path: Path  # the document's path
    old: DocRecord | None
    acl: Acl | None = None
    job: ParseJob | None = None
    error: RagtuneError | None = None


class Syncer:
    """Syncs folders into one store with one embedder and chunking configuration.

    ``executor`` runs the parsing, chunking and embedding (default: :class:`LocalExecutor` on ``embedder``);
    whatever it is, the syncer reads the files, resolves every ACL and writes only complete batches.
    """

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        max_tokens: int = 256,
        overlap_tokens: int = 32,
        max_file_mb: float = 20.0,
        batch_chunks: int = 256,
        follow_external_links: bool = False,
        plan_chunks: int = 50_000,
        executor: IngestExecutor | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.max_bytes = int(max_file_mb * 1e6)
        self.batch_chunks = batch_chunks
        self.follow_external_links = follow_external_links
        # New chunks held before embedding, so the progress total is known (memory: a few KiB per chunk).
        self.plan_chunks = plan_chunks
        self.executor: IngestExecutor = executor if executor is not None else LocalExecutor(embedder)

    def sync(
        self,
        root: Path,
        default_acl: Acl | None = None,
        progress: SyncProgress | None = None,
        exclude: tuple[Path, ...] = (),
        roots: RootSet | None = None,
    ) -> SyncReport:
        """Bring the store in line with the files under ``root`` (a folder or one file).

        ``roots`` are the project's roots (``root`` must lie in one); without them ``root`` is the only root,
        with ``default_acl`` as its default.
        """
        t0 = time.perf_counter()
        root = Path(os.path.realpath(root))
        if not root.exists():
            raise RagtuneError(f"{root} does not exist; pass a folder or file to ingest")
        roots = roots if roots is not None else RootSet({root: default_acl})
        walked_root = roots.containing(root) or root
        report = SyncReport()
        resolver = AclResolver(roots)
        known = {d.doc_id: d for d in self.store.documents()}
        walk = walk_sources(root, lambda p: roots.containing(p) is not None,
                            allow_external=self.follow_external_links, exclude=exclude)
        report.failed.extend(walk.failed)
        report.skipped.extend(walk.skipped)
        # A first ingestion into an empty store is a bulk load: the PostgreSQL store builds its vector and term
        # indexes once at the end instead of row by row (the load's exit optimizes, so the optimize below is not
        # repeated).
        with self.store.bulk_load() if not known else nullcontext():
            ways = self._write_changes(walk, known, resolver, walked_root, report, progress)
        gone = [
            d.doc_id for d in known.values()
            if d.doc_id not in ways and source_prefix_matches(d.source_path, root)
            and not any(source_prefix_matches(d.source_path, f) for f in walk.unreadable_folders)
        ]
        if gone:
            self.store.delete_documents(gone)
            report.deleted = len(gone)
        if report.changed and known:
            self.store.optimize()
        report.nodes = self.executor.placement()
        report.seconds = time.perf_counter() - t0
        return report

    def _write_changes(self, walk: Walk, known: dict[str, DocRecord], resolver: AclResolver, walked_root: Path,
                       report: SyncReport, progress: SyncProgress | None) -> dict[str, list[Found]]:
        """Read, chunk, embed and write every new or changed file of the walk; the files found, by document id."""
        ways: dict[str, list[Found]] = {}
        for one in walk.files:
            ways.setdefault(_doc_id(one.real), []).append(one)  # the walk resolved it already
        if progress:
            progress.start(len(ways))
        # Files are read and chunked first, then embedded in batches, so the chunk total is known before the
        # slow part starts (for up to plan_chunks new chunks at a time; beyond that, in rounds).
        # The executor parses a window of files at a time (locally one, so each file is parsed as it is read).
        total = getattr(progress, "chunks_total", None)
        pending: list[_Pending] = []
        planned = pending_chunks = 0
        window: list[_Read] = []
        window_bytes = 0
        for n, (doc_id, found) in enumerate(ways.items(), 1):
            window.append(self._read(found, doc_id, known, resolver, walked_root))
            window_bytes += len(window[-1].job.data) if window[-1].job else 0
            if len(window) < self.executor.window and window_bytes < WINDOW_BYTES and n < len(ways):
                continue
            jobs = [r.job for r in window if r.job is not None]
            outcomes = iter(self.executor.map_parse(jobs) if jobs else [])
            for r in window:
                status = self._settle(r, next(outcomes) if r.job else None, resolver, walked_root, report, pending)
                if status in ("new", "updated"):
                    planned += len(pending[-1].chunks)
                    pending_chunks += len(pending[-1].chunks)
                    if total:
                        total(planned)
                    if pending_chunks >= self.plan_chunks:
                        self._embed_all(pending, report, progress)
                        pending, pending_chunks = [], 0
                elif progress:
                    progress.file_done(r.found[0].path, status)
            window, window_bytes = [], 0
        if total:
            total(planned)  # exact from here on (0 when nothing is new)
        self._embed_all(pending, report, progress)
        return ways

    def _acl(self, found: list[Found], front_matter: dict[str, Any] | None, resolver: AclResolver,
             walked_root: Path) -> Acl:
        """One ACL for a file however many ways it was reached: the narrowest of them."""
        acl: Acl | None = None
        for way in found:
            if way.external:
                this = resolver.resolve_external(way.path, way.real, front_matter, walked_root)
            else:
                this = resolver.resolve(way.real, front_matter)
            acl = this if acl is None else acl.intersect(this)
        assert acl is not None
        return acl

    def _read(self, found: list[Found], doc_id: str, known: dict[str, DocRecord], resolver: AclResolver,
              walked_root: Path) -> _Read:
        """Read and hash one file; an unchanged one gets its current ACL, a new or changed one a parse job."""
        # The real path is the document's path; a target outside the roots keeps the link's path, so the
        # document is removed by the sync of the root holding the link once the link goes.
        way = next((f for f in found if f.path == f.real), found[0])
        path = way.real if not way.external else way.path
        read = _Read(doc_id, found, path, known.get(doc_id))
        try:
            data = read_source(way.real, self.max_bytes)
            doc_hash = hashlib.sha256(data).hexdigest()
            if read.old is not None and read.old.doc_hash == doc_hash:
                read.acl = self._acl(found, read_front_matter(data, way.real), resolver, walked_root)
                return read
        except RagtuneError as exc:
            read.error = exc
            return read
        read.job = ParseJob(doc_id, str(path), way.real, data, doc_hash, os.stat(way.real).st_mtime,
                            self.max_tokens, self.overlap_tokens)
        return read

    def _settle(self, read: _Read, parsed: ParseOutcome | None, resolver: AclResolver, walked_root: Path,
                report: SyncReport, pending: list[_Pending]) -> str:
        """Record what happened to one file (in file order); returns its status."""
        found, path, old, error, acl = read.found, read.path, read.old, read.error, read.acl
        if parsed is not None:
            error = parsed.error
            if error is None:
                try:
                    acl = self._acl(found, parsed.metadata, resolver, walked_root)
                except RagtuneError as exc:
                    error = exc
        if error is not None:
            report.failed.append((str(path), str(error)))
            if old is not None:
                self._fail_closed(old, error, found, resolver, walked_root, report)
            return "failed"
        assert acl is not None
        if acl.is_empty:
            report.no_acl.append(str(path))
        if parsed is None:  # the same bytes as stored
            assert old is not None
            if tuple(acl.tokens()) == old.acl:
                report.unchanged += 1
                return "unchanged"
            self.store.set_acl(read.doc_id, acl.tokens(), time.time())
            report.reacl += 1
            return "reacl"
        tokens = tuple(acl.tokens())
        chunks = [replace(c, acl=tokens) for c in parsed.chunks]
        status = "new" if old is None else "updated"
        pending.append(_Pending(read.doc_id, found[0].path, status, chunks))
        if old is None:
            report.ingested += 1
        else:
            report.updated += 1
        return status

    def _fail_closed(self, old: DocRecord, exc: RagtuneError, found: list[Found], resolver: AclResolver,
                     walked_root: Path, report: SyncReport) -> None:
        """A stored document whose file failed keeps its old text, but never a wider ACL than it has now.

        When the ACL itself cannot be read (a broken ``_acl.yaml`` or front matter) nobody may read it until
        it is fixed; otherwise (an unreadable or corrupt file) it keeps the narrower of its old ACL and the
        one its folder gives now.
        """
        acl = Acl()
        if not isinstance(exc, AclError | FrontMatterError):
            try:
                acl = self._acl(found, None, resolver, walked_root).intersect(Acl.from_tokens(list(old.acl)))
            except RagtuneError:
                acl = Acl()
        if tuple(acl.tokens()) != old.acl:
            self.store.set_acl(old.doc_id, acl.tokens(), time.time())
            if acl.is_empty:
                report.locked_out.append(old.source_path)
            else:
                report.reacl += 1

    def _embed_all(self, pending: list[_Pending], report: SyncReport, progress: SyncProgress | None) -> None:
        """Embed and write the pending documents in batches of about ``batch_chunks`` chunks."""
        if pending:
            self.executor.warm_up()  # the model loads before the first batch is reported: chunks/s = embedding rate
        batches: list[list[_Pending]] = [[]]
        size = 0
        for p in pending:
            batches[-1].append(p)
            size += len(p.chunks)
            if size >= self.batch_chunks:
                batches.append([])
                size = 0
        batches = [b for b in batches if b]
        vectors = self.executor.embed_batches([c.search_text for p in b for c in p.chunks] for b in batches)
        try:
            for batch in batches:
                self._flush(batch, vectors, report, progress)
        finally:
            close = getattr(vectors, "close", None)
            if close:
                close()  # a batch still being embedded elsewhere is dropped, never written

    def _flush(self, pending: list[_Pending], vectors: Iterator[np.ndarray], report: SyncReport,
               progress: SyncProgress | None) -> None:
        if progress:
            for p in pending:
                progress.file_done(p.path, p.status)
        chunks = [c for p in pending for c in p.chunks]
        self.store.replace_documents([p.doc_id for p in pending], chunks, next(vectors), time.time())
        report.chunks_embedded += len(chunks)
        if progress:
            progress.chunks_embedded(len(chunks))


def record_sync(state: SyncState, root: Path, report: SyncReport, when: float | None = None) -> None:
    """Log one sync (what changed, when) so the advisor can measure how fast the corpus changes."""
    state.append_sync({
        "time": time.time() if when is None else when, "root": str(root.resolve()),
        "ingested": report.ingested, "updated": report.updated, "deleted": report.deleted,
        "unchanged": report.unchanged, "reacl": report.reacl, "failed": len(report.failed),
    })
