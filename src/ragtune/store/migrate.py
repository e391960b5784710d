"""``ragtune migrate``: copy an index between stores (a LanceDB folder ⇄ a PostgreSQL schema) without re-embedding.

What moves: every chunk with its vector and ACL (:meth:`Store.iter_chunks`, an admin export), each document's
``synced_at``, and the sync state: the ingested roots, the sync log and the metadata, the embedder fingerprint
included, so a project that searches the new store with another embedder is still refused.

How, holding the source's and then the target's write lock (a target that is the source itself cannot be
locked twice, so it is refused):

1. the target must be empty, or ``replace=True`` (otherwise it is refused untouched);
2. the target is marked incomplete: meta ``migration`` = ``{"state": "incomplete", ...}`` and meta
   ``embedder`` = a marker no embedder has, so searches, ingests and syncs on it are refused (the
   embedder-mismatch message quotes the marker) until a migration finishes;
3. with ``replace``: its documents, roots, sync log and other metadata are removed;
4. chunks are copied in batches, whole documents per write (``replace_documents``), each document with its own
   ``synced_at``; then roots, sync log and metadata; then the target is optimized (its indexes built);
5. it is verified: counts, ``documents()``, ``chunk_index()``, roots, sync log and metadata equal, and
   ``verify_sample`` chunks (seeded random) equal in every field with vectors within 1e-6;
6. only then the source's embedder fingerprint and ``migration`` = ``{"state": "complete", ...}`` are written.

A failure after step 2 leaves the target marked incomplete; running again with ``replace=True`` redoes it all.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ragtune.core import Chunk
from ragtune.errors import ConfigError, DataError, EmptyCorpusError, LockedError
from ragtune.security.redact import redact
from ragtune.store.base import Store
from ragtune.store.state import META_FILE, ROOTS_FILE, SYNC_LOG

MIGRATION_KEY = "migration"
EMBEDDER_KEY = "embedder"
REINDEX_KEY = "reindex"  # ragtune.index_reembed.MARKER_KEY (not imported: it pulls the retriever tuning code)
VECTOR_TOLERANCE = 1e-6
UNFINISHED = "(an unfinished `ragtune migrate` into this index: run it again with --replace to finish)"
# What a LanceDB index folder may hold besides the table (a target folder with anything else is not one).
_INDEX_ENTRIES = {"chunks.lance", ROOTS_FILE, SYNC_LOG, META_FILE, ".write.lock", ".reembed"}

Progress = Callable[[str, int, int], None]
"""(phase, done, total): ``copy`` per written batch (chunks), ``optimize`` (0 of 1, 1 of 1), ``verify`` per
batch read back (chunks)."""


@dataclass(frozen=True)
class Target:
    """Where ``ragtune migrate --to`` copies to: a LanceDB folder or a PostgreSQL schema (the DSN is never
    shown: not in ``repr``, not in :meth:`describe`)."""

    kind: Literal["lance", "postgres"]
    path: Path | None = None
    schema: str | None = None
    dsn: str | None = field(default=None, repr=False)
    dsn_from_option: bool = False  # the DSN is the --to URL (no password), not RAGTUNE_STORE_DSN & co.

    def describe(self) -> str:
        """``LanceDB folder PATH`` or ``PostgreSQL user@host:port/db, schema NAME`` (no password)."""
        if self.kind == "lance":
            return f"LanceDB folder {self.path}"
        from ragtune.store.pg_dsn import describe_dsn

        return f"PostgreSQL {describe_dsn(self.dsn or '')}, schema {self.schema}"

    def settings_snippet(self) -> str:
        """The ``ragtune.yaml`` lines that make a project use this store (plain text: escape it for Rich)."""
        if self.kind == "lance":
            return f"store_path: {self.path}\nstore:\n  kind: lance"
        lines = ["store:", "  kind: postgres", f"  schema: {self.schema}"]
        if self.dsn_from_option:
            lines.append(f"  dsn: {self.dsn}   # its password: PGPASSWORD or ~/.pgpass, or the whole DSN in "
                         "RAGTUNE_STORE_DSN")
        else:
            lines.append("  # the DSN: keep RAGTUNE_STORE_DSN (or the secrets file) as for this migration")
        return "\n".join(lines)


def parse_target(spec: str, *, configured_dsn: str | None = None, schema: str | None = None,
                 default_schema: str = "ragtune") -> Target:
    """``--to``'s value as a :class:`Target`: ``postgres`` (the DSN from ``RAGTUNE_STORE_DSN``, a mounted secret,
    the secrets file or ``configured_dsn``, see :func:`~ragtune.store.pg_dsn.resolve_dsn`), a
    ``postgresql://USER@HOST/DB`` URL without a password, or ``lance:PATH``. A URL holding a password is refused
    without quoting it. Nothing is connected or created here."""
    from ragtune.store.pg_dsn import DSN_ENV, dsn_has_password, resolve_dsn

    spec = spec.strip()
    if spec.startswith("lance:"):
        if schema is not None:
            raise ConfigError("--schema is for a PostgreSQL target; a lance:PATH target is a folder")
        raw = spec.removeprefix("lance:").strip()
        if not raw:
            raise ConfigError("--to lance:PATH needs a folder, e.g. --to lance:./index-copy")
        return Target("lance", path=Path(os.path.abspath(Path(raw).expanduser())))
    name = schema or default_schema
    if spec in ("postgres", "postgresql"):
        try:
            dsn = resolve_dsn(configured_dsn)
        except ConfigError as exc:
            raise ConfigError(f"--to postgres: {exc}") from None
        return Target("postgres", schema=name, dsn=dsn)
    if spec.startswith(("postgres://", "postgresql://")):
        if dsn_has_password(spec):  # parse errors never quote the DSN either
            raise ConfigError(
                "never give the database password on the command line (other users see it in the process list and "
                f"shells keep it in their history): put the whole DSN in {DSN_ENV} and run `ragtune migrate --to "
                "postgres`, or keep the password in PGPASSWORD or ~/.pgpass and pass the URL without it")
        return Target("postgres", schema=name, dsn=spec, dsn_from_option=True)
    raise ConfigError(f"--to must be `postgres` (the DSN from {DSN_ENV} or the secrets file), a "
                      "postgresql://USER@HOST:PORT/DATABASE URL without a password, or lance:PATH (a new index folder)")


def open_target(target: Target, dim: int) -> Store:
    """The target's store, created if missing (a Lance folder must be new, empty or an index folder)."""
    if target.kind == "lance":
        from ragtune.store.lance import LanceStore

        assert target.path is not None
        path = target.path
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--to lance:{path}: that is a file; name a new or empty folder")
        stray = sorted(p.name for p in path.iterdir() if p.name not in _INDEX_ENTRIES) if path.is_dir() else []
        if stray:
            raise ConfigError(f"--to lance:{path}: the folder holds other files ({', '.join(stray[:3])}), so it is "
                              "not an index folder; name a new or empty folder")
        return LanceStore(path, dim=dim)
    from ragtune.store.postgres import PostgresStore

    assert target.dsn is not None and target.schema is not None
    return PostgresStore(target.dsn, dim=dim, schema=target.schema, pool_size=2)


def store_identity(store: Store) -> str:
    """A description that is equal for two handles on the same index (a Lance folder's real path; a PostgreSQL
    store's host, database and schema), to refuse copying an index onto itself with a clear message."""
    path = getattr(store, "path", None)
    if isinstance(path, Path):
        return f"LanceDB folder {os.path.realpath(path)}"
    return repr(store)  # PostgresStore's repr: where and which schema, never the password


@dataclass
class MigrationReport:
    """What a migration copied and checked, and how long each part took."""

    source: str
    target: str
    chunks: int = 0
    documents: int = 0
    roots: int = 0
    sync_entries: int = 0
    meta_keys: list[str] = field(default_factory=list)
    replaced: bool = False
    verified_sample: int = 0
    copy_seconds: float = 0.0
    optimize_seconds: float = 0.0
    verify_seconds: float = 0.0
    seconds: float = 0.0


def migrate_store(source: Store, target: Store, *, source_name: str, target_name: str, batch_size: int = 1000,
                  verify_sample: int = 100, replace: bool = False, progress: Progress | None = None,
                  seed: int = 0) -> MigrationReport:
    """Copy ``source`` into ``target`` (steps in the module docstring) and verify the copy.

    Raises :class:`~ragtune.errors.ConfigError` for a non-empty target without ``replace``, a target that is the
    source, or a source mid-reindex or mid-migration; :class:`~ragtune.errors.DataError` when the copy fails or
    does not verify (the target then stays marked incomplete).
    """
    if batch_size < 1 or verify_sample < 0:
        raise ConfigError("--batch-size must be at least 1 and --verify-sample at least 0")
    if store_identity(source) == store_identity(target):
        raise ConfigError(f"the target is the project's own index ({source_name}): choose another folder or "
                          "another --schema")
    started = time.monotonic()
    _check_source(source, source_name)  # before taking locks (which create a Lance target's folder); again inside
    report = MigrationReport(source=source_name, target=target_name, replaced=replace)
    with _both_locks(source, target, target_name):
        meta = _check_source(source, source_name)
        contents = _contents(target)
        if contents and not replace:
            raise ConfigError(f"{target_name} is not empty ({', '.join(contents)}): pass --replace to overwrite it, "
                              "or choose another folder or --schema")
        state = target.state
        state.set_meta(MIGRATION_KEY, {"state": "incomplete", "from": source_name, "started": time.time()})
        state.set_meta(EMBEDDER_KEY, UNFINISHED)
        try:
            if contents:
                _clear(target)
            t0 = time.monotonic()
            # An empty target (PostgreSQL) builds its vector and term indexes once at the end of the load, in
            # what the report calls optimize: the load's exit.
            with target.bulk_load():
                sample = _copy_chunks(source, target, batch_size, verify_sample, seed, progress, report)
                roots, log = source.state.roots(), source.state.sync_log()
                state.set_roots(roots)
                for entry in log:
                    state.append_sync(entry)
                copied = {k: v for k, v in meta.items() if k not in (MIGRATION_KEY, EMBEDDER_KEY) and v is not None}
                for key, value in copied.items():
                    state.set_meta(key, value)
                report.roots, report.sync_entries, report.meta_keys = len(roots), len(log), sorted(copied)
                report.copy_seconds = time.monotonic() - t0
                t0 = time.monotonic()
                if progress is not None:
                    progress("optimize", 0, 1)
            if progress is not None:
                progress("optimize", 1, 1)
            report.optimize_seconds = time.monotonic() - t0
            t0 = time.monotonic()
            verify_copy(source, target, sample, batch_size=batch_size, progress=progress)
            report.verify_seconds = time.monotonic() - t0
            report.verified_sample = len(sample)
        except Exception as exc:
            raise DataError(f"copying the index to {target_name} failed: {redact(str(exc)) or type(exc).__name__}. "
                            f"The target is marked incomplete (meta `{MIGRATION_KEY}`): fix the cause, then run the "
                            "migration again with --replace") from None
        # Verified: record the embedder that made the vectors (searches with another are refused), then done.
        state.set_meta(EMBEDDER_KEY, meta.get(EMBEDDER_KEY))
        state.set_meta(MIGRATION_KEY, {"state": "complete", "from": source_name, "chunks": report.chunks,
                                       "finished": time.time()})
    report.seconds = time.monotonic() - started
    return report


@contextmanager
def _both_locks(source: Store, target: Store, target_name: str) -> Iterator[None]:
    """The source's write lock (no sync changes it while it is copied), then the target's."""
    with ExitStack() as stack:
        stack.enter_context(source.state.write_lock(f"migrate to {target_name}"))
        try:
            stack.enter_context(target.state.write_lock("migrate (writing this index)"))
        except LockedError as exc:
            raise LockedError(f"cannot lock {target_name}: {exc} (or the target is the project's own index: "
                              "choose another folder or --schema)") from None
        yield


def _check_source(source: Store, name: str) -> dict[str, Any]:
    if source.count() == 0:
        raise EmptyCorpusError(f"the index in {name} is empty: nothing to migrate (run `ragtune ingest PATH`)")
    meta = source.state.meta()
    if meta.get(REINDEX_KEY):
        raise ConfigError(f"the index in {name} is in the middle of a `ragtune reindex`: finish it first")
    if _incomplete(meta):
        raise ConfigError(f"the index in {name} is an unfinished migration's target: finish that migration first")
    return meta


def _incomplete(meta: dict[str, Any]) -> bool:
    mark = meta.get(MIGRATION_KEY)
    return isinstance(mark, dict) and mark.get("state") == "incomplete"


def _contents(store: Store) -> list[str]:
    """What a target already holds, for the refusal's message (empty: nothing)."""
    state, out = store.state, []
    meta = {k: v for k, v in state.meta().items() if v is not None}
    if _incomplete(meta):
        out.append("an unfinished migration")
    if n := store.count():
        out.append(f"{n} chunks")
    if roots := state.roots():
        out.append(f"{len(roots)} ingested roots")
    if state.sync_log():
        out.append("a sync log")
    if meta and not _incomplete(meta):
        out.append(f"metadata {', '.join(sorted(meta))}")
    return out


def _clear(store: Store) -> None:
    """Empty a target for ``replace``: documents, roots, sync log, metadata (the markers stay)."""
    docs = [d.doc_id for d in store.documents()]
    for start in range(0, len(docs), 1000):
        store.delete_documents(docs[start : start + 1000])
    if store.count():
        raise DataError(f"{store.count()} chunks were left after deleting every document of the target")
    state = store.state
    state.set_roots({})
    state.clear_sync_log()
    for key, value in state.meta().items():
        if key not in (MIGRATION_KEY, EMBEDDER_KEY) and value is not None:
            state.set_meta(key, None)


Sample = dict[str, tuple[Chunk, np.ndarray]]


def _copy_chunks(source: Store, target: Store, batch_size: int, verify_sample: int, seed: int,
                 progress: Progress | None, report: MigrationReport) -> Sample:
    """Every chunk, whole documents per write with their own ``synced_at``; returns the sampled source chunks."""
    synced = {d.doc_id: d.synced_at for d in source.documents()}
    ids = sorted(r.chunk_id for r in source.chunk_index())
    wanted = set(random.Random(seed).sample(ids, min(verify_sample, len(ids))))
    total = len(ids)
    sample: Sample = {}
    done: set[str] = set()
    pending: list[tuple[Chunk, np.ndarray]] = []

    def write(rows: list[tuple[Chunk, np.ndarray]]) -> None:
        by_time: dict[float, list[tuple[Chunk, np.ndarray]]] = {}
        for row in rows:
            if row[0].doc_id not in synced:
                raise DataError(f"chunk {row[0].chunk_id} belongs to no document of the source's manifest")
            by_time.setdefault(synced[row[0].doc_id], []).append(row)
        for synced_at, part in by_time.items():
            doc_ids = list(dict.fromkeys(c.doc_id for c, _ in part))
            target.replace_documents(doc_ids, [c for c, _ in part], np.stack([v for _, v in part]), synced_at)
        done.update(c.doc_id for c, _ in rows)
        report.chunks += len(rows)
        if progress is not None:
            progress("copy", report.chunks, total)

    for chunks, vectors in source.iter_chunks(batch_size=batch_size):
        for chunk, vector in zip(chunks, vectors, strict=True):
            if chunk.doc_id in done:  # a second run of one document would replace its first part
                raise DataError(f"the source's export is not grouped by document ({chunk.doc_id} came back)")
            if chunk.chunk_id in wanted:
                sample[chunk.chunk_id] = (chunk, np.array(vector, dtype=np.float32))
            pending.append((chunk, vector))
        # Write every document that is complete: all but the last, which may go on in the next batch.
        last = pending[-1][0].doc_id if pending else None
        cut = len(pending)
        while cut and pending[cut - 1][0].doc_id == last:
            cut -= 1
        if cut:
            write(pending[:cut])
            pending = pending[cut:]
    if pending:
        write(pending)
    report.documents = len(done)
    return sample


def _comparable_meta(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if v is not None and k not in (MIGRATION_KEY, EMBEDDER_KEY)}


def verify_copy(source: Store, target: Store, sample: Sample, *, batch_size: int = 1000,
                progress: Progress | None = None) -> None:
    """Check that ``target`` holds what ``source`` does: chunk counts, ``documents()``, ``chunk_index()``, roots,
    sync log and metadata (the embedder fingerprint and migration marker aside) equal, and each sampled chunk
    (chunk id -> the source's chunk and vector) equal in every field, its vector within 1e-6. Raises
    :class:`~ragtune.errors.DataError` naming the first differences."""
    problems: list[str] = []
    counts = source.count(), target.count()
    if counts[0] != counts[1]:
        problems.append(f"{counts[0]} chunks in the source, {counts[1]} in the target")
    docs = [sorted(s.documents(), key=lambda d: (d.source_path, d.doc_id)) for s in (source, target)]
    if docs[0] != docs[1]:
        diff = next((a.doc_id for a, b in zip(*docs, strict=False) if a != b), None)
        problems.append(f"the documents differ ({len(docs[0])} vs {len(docs[1])}"
                        + (f"; first at {diff})" if diff else ")"))
    rows = [sorted(s.chunk_index(), key=lambda r: r.chunk_id) for s in (source, target)]
    if rows[0] != rows[1]:
        problems.append("the chunk index differs (ids, documents, paths, hashes or ACLs)")
    a, b = source.state, target.state
    if a.roots() != b.roots():
        problems.append("the ingested roots differ")
    if a.sync_log() != b.sync_log():
        problems.append("the sync log differs")
    if _comparable_meta(a.meta()) != _comparable_meta(b.meta()):
        problems.append("the metadata differs")
    found: Sample = {}
    seen = 0
    for chunks, vectors in target.iter_chunks(batch_size=batch_size):
        for chunk, vector in zip(chunks, vectors, strict=True):
            if chunk.chunk_id in sample:
                found[chunk.chunk_id] = (chunk, vector)
        seen += len(chunks)
        if progress is not None:
            progress("verify", seen, counts[1])
    for cid, (want, want_vector) in sorted(sample.items()):
        got = found.get(cid)
        if got is None:
            problems.append(f"sampled chunk {cid} is missing")
            continue
        if got[0] != want:
            fields = [f for f in vars(want) if getattr(want, f) != getattr(got[0], f)]
            problems.append(f"sampled chunk {cid} differs in {', '.join(fields)}")
        vector = np.asarray(got[1], dtype=np.float32)
        if vector.shape != want_vector.shape or float(np.max(np.abs(vector - want_vector))) > VECTOR_TOLERANCE:
            problems.append(f"sampled chunk {cid}'s vector differs (beyond {VECTOR_TOLERANCE:g})")
    if problems:
        more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise DataError("the copy does not match the source: " + "; ".join(problems[:5]) + more)


def close_store(store: Store) -> None:
    """Close a store that holds connections (PostgreSQL's pool); a no-op for the embedded store."""
    close = getattr(store, "close", None)
    if callable(close):
        close()


__all__ = ["MIGRATION_KEY", "MigrationReport", "Progress", "Target", "close_store", "migrate_store", "open_target",
           "parse_target", "store_identity", "verify_copy"]

