"""``ragtune reindex``: re-embed every stored chunk with another embedder, resumably, never leaving searches to
mix two models' vectors.

Two phases, under the index's write lock:

1. **Stage.** Every chunk's search text is embedded in batches; each batch's vectors are written to
   ``<index>/.reembed/<target>/batch-N.npz`` (atomically), keyed by the SHA-256 of the text. The index itself is
   untouched, so searches keep working with the old embedder. A killed run leaves the batches; the next run
   reuses every one whose text is still in the index (a sync in between costs only the changed chunks).
2. **Switch.** The index metadata's ``embedder`` is first replaced by a marker naming the unfinished reindex (so
   every search, ingest or sync is refused with the existing embedder-mismatch message, which quotes it), then
   all chunks are rewritten with their new vectors in **one** commit (``Store.replace_documents`` of every
   document), then the new fingerprint is recorded. A run killed in between is refused until ``reindex`` is run
   again, which redoes the (idempotent) switch.

Chunks nobody may read (an empty ACL) cannot be read back through the Store protocol; their documents are
dropped in the switch commit and come back, embedded by the new model, at the next ``ragtune sync``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragtune.errors import EmptyCorpusError, RagtuneError
from ragtune.models.embedder import Embedder, embedding_cache_bypassed
from ragtune.store.base import Store
from ragtune.tuning.retriever.corpus import read_corpus

STAGING_DIR = ".reembed"
MARKER_KEY = "reindex"
Progress = Callable[[str, int, int], None]
"""(phase, done, total): phase ``embed`` per batch, then ``switch`` (0 of 1 before the commit, 1 of 1 after)."""


@dataclass
class ReindexReport:
    """What a reindex did: chunks re-embedded now, reused from an interrupted run, documents nobody may read that
    were dropped (``sync`` brings them back), the fingerprints, and whether the index already used the target."""

    chunks: int = 0
    embedded: int = 0
    reused: int = 0
    dropped_unreadable_docs: int = 0
    previous: str | None = None
    fingerprint: str = ""
    already: bool = False
    seconds: float = 0.0


def unfinished_marker(spec: str) -> str:
    """What the index records as its embedder while a switch is unfinished (no embedder has this fingerprint)."""
    return f"(an unfinished `ragtune reindex --embedder {spec}`: run it again to finish)"


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class _Staging:
    """Staged vectors of one target embedder: ``batch-N.npz`` files of (keys, vectors)."""

    def __init__(self, root: Path, fingerprint: str) -> None:
        self.folder = root / hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
        self.root = root

    def load(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for path in sorted(self.folder.glob("batch-*.npz")):
            with np.load(path) as data:
                out.update(zip(data["keys"].tolist(), data["vectors"], strict=True))
        return out

    def write(self, keys: list[str], vectors: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        n = len(list(self.folder.glob("batch-*.npz")))
        target = self.folder / f"batch-{n:06d}.npz"
        tmp = self.folder / f".batch-{n:06d}.{os.getpid()}.tmp.npz"
        np.savez(tmp, keys=np.array(keys), vectors=np.asarray(vectors, dtype=np.float32))
        os.replace(tmp, target)

    def drop_others(self) -> None:
        """Remove staging left by a reindex to another embedder."""
        if self.root.is_dir():
            for other in self.root.iterdir():
                if other != self.folder:
                    shutil.rmtree(other, ignore_errors=True)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _dim_of(fingerprint: str | None) -> int | None:
    m = re.search(r"/(\d+)$", fingerprint or "")
    return int(m.group(1)) if m else None


def reembed_index(store: Store, embedder: Embedder, spec: str, staging_root: Path, *, batch_size: int = 64,
                  progress: Progress | None = None) -> ReindexReport:
    """Re-embed every chunk of ``store`` with ``embedder`` (named ``spec`` in the settings), resuming any staged
    batches, then switch the index over in one commit and record ``embedder.fingerprint``."""
    started = time.monotonic()
    state = store.state
    with state.write_lock(f"reindex --embedder {spec}"):
        if store.count() == 0:
            raise EmptyCorpusError("the index is empty: nothing to re-index (run `ragtune ingest PATH`; it embeds "
                                   "with the configured embedder)")
        meta = state.meta()
        marker, stored, target = meta.get(MARKER_KEY), meta.get("embedder"), embedder.fingerprint
        if marker and marker.get("to") != target:
            raise RagtuneError(f"a reindex to {marker.get('model')} was interrupted while switching the index over: "
                               f"run `ragtune reindex --embedder {marker.get('model')}` to finish it first")
        previous = marker.get("from") if marker else stored
        report = ReindexReport(previous=previous, fingerprint=target)
        if stored == target and not marker:
            report.already, report.chunks = True, store.count()
            return report
        if _dim_of(previous) not in (None, embedder.dim):
            raise RagtuneError(f"{spec} gives {embedder.dim}-d vectors but the index holds {_dim_of(previous)}-d "
                               "ones: a reindex keeps the width; ingest into a new project instead")
        staging = _Staging(staging_root, target)
        staging.drop_others()
        corpus = read_corpus(store)
        chunks = [corpus.chunks[cid] for cid in sorted(corpus.chunks)]
        keys = [_text_key(c.search_text) for c in chunks]
        staged = staging.load()
        todo = sorted({k: c.search_text for k, c in zip(keys, chunks, strict=True) if k not in staged}.items())
        report.chunks, report.reused = len(chunks), sum(k in staged for k in keys)
        with embedding_cache_bypassed():  # a whole corpus would only churn the query cache
            for start in range(0, len(todo), batch_size):
                part = todo[start : start + batch_size]
                vectors = embedder.embed([text for _, text in part])
                staging.write([k for k, _ in part], vectors)
                staged.update(zip((k for k, _ in part), vectors, strict=True))
                report.embedded += len(part)
                if progress is not None:
                    progress("embed", min(start + batch_size, len(todo)), len(todo))
        # The switch: refuse searches first, write everything in one commit, then record the new model.
        state.set_meta(MARKER_KEY, {"to": target, "from": previous, "model": spec, "started": time.time()})
        state.set_meta("embedder", unfinished_marker(spec))
        if progress is not None:
            progress("switch", 0, 1)
        doc_ids = sorted({c.doc_id for c in chunks} | corpus.doc_ids_unreadable)
        vectors = np.stack([staged[k] for k in keys]) if chunks else np.zeros((0, embedder.dim), np.float32)
        store.replace_documents(doc_ids, chunks, vectors, synced_at=time.time())
        state.set_meta("embedder", target)
        state.set_meta(MARKER_KEY, None)
        if progress is not None:
            progress("switch", 1, 1)
        report.dropped_unreadable_docs = len(corpus.doc_ids_unreadable - {c.doc_id for c in chunks})
        staging.remove()
        store.optimize()
    report.seconds = time.monotonic() - started
    return report


_EMBEDDER = re.compile(r"^embedder:\s*(#.*)?$")
_MODEL = re.compile(r"^(\s+)model:[^\n]*$")


def set_embedder_model(config: Path, spec: str) -> bool:
    """Set ``embedder.model: spec`` in ``ragtune.yaml``, editing that one line (comments kept); add an
    ``embedder`` section when there is none. False (file untouched) when the result would not read back."""
    import yaml

    lines = config.read_text(encoding="utf-8").splitlines()
    new = f"model: \"{spec}\"  # set by `ragtune reindex`; minilm is the packaged base model"
    start = next((i for i, line in enumerate(lines) if _EMBEDDER.match(line)), None)
    if start is None:
        lines += ["", "embedder:", f"  {new}"]
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].strip() and not lines[i][0].isspace()),
                   len(lines))
        at = next((i for i in range(start + 1, end) if _MODEL.match(lines[i])), None)
        if at is None:
            lines.insert(start + 1, f"  {new}")
        else:
            lines[at] = f"{_MODEL.match(lines[at]).group(1)}{new}"  # type: ignore[union-attr]
    text = "\n".join(lines) + "\n"
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    if not isinstance(parsed, dict) or (parsed.get("embedder") or {}).get("model") != spec:
        return False
    tmp = config.with_name(config.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, config)
    return True
