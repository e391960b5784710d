"""Ingestion throughput: the whole Syncer pipeline against the bare embedder on the same chunk texts.

On the first N SciFact abstracts (default 1,000), written as Markdown files, each of ``--runs`` rounds
measures, in alternating order so machine noise hits both:

(a) a full ingest through :class:`~ragtune.ingest.sync.Syncer` into a fresh LanceDB index (read, hash,
    parse, chunk, embed, write, build the BM25 and ACL indexes), in chunks per second;
(b) the embedder alone on exactly the chunk texts that ingest embedded (``Chunk.search_text``, read back
    from the store), in chunks per second;
(c) a re-sync of the unchanged folder into that index (a fresh store object, as a new process would).

It reports the medians, the ratio (a)/(b) (goal ≥ 0.85) and re-sync / full ingest time (goal ≤ 0.02), plus
where the pipeline's time went (embedding, store writes, index optimisation, the rest).

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/ingest_throughput.py [--docs 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LANCE_LOG", "error")

from _common import (  # noqa: E402
    cache_dir,
    clear_embedding_cache,
    emit,
    load_scifact_corpus,
    machine,
    median,
    write_corpus,
    write_row,
)

from ragtune.core import Acl, Chunk, Principal  # noqa: E402
from ragtune.ingest.chunking import chunk_id_for  # noqa: E402
from ragtune.ingest.sync import Syncer, SyncReport  # noqa: E402
from ragtune.models.embedder import MiniLMEmbedder  # noqa: E402
from ragtune.store.lance import LanceStore  # noqa: E402

SECTION = "Ingestion throughput (SciFact abstracts)"
COMMAND = "RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/ingest_throughput.py"
GOAL_RATIO, GOAL_RESYNC = 0.85, 0.02


class TimedEmbedder:
    """Delegates to an embedder and adds up the time spent inside ``embed`` (for the time breakdown)."""

    def __init__(self, inner: MiniLMEmbedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.window = inner.window
        self.fingerprint = inner.fingerprint
        self.seconds = 0.0

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text, counted by the wrapped embedder (not timed: chunking's cost, not embedding's)."""
        return self.inner.count_tokens(texts)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed with the wrapped embedder, timing the call."""
        t0 = time.perf_counter()
        try:
            return self.inner.embed(texts)
        finally:
            self.seconds += time.perf_counter() - t0


class TimedStore(LanceStore):
    """A LanceStore that adds up the time spent writing chunks and optimising indexes."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.write_s = 0.0
        self.optimize_s = 0.0

    def replace_documents(self, doc_ids, chunks, vectors, synced_at):  # type: ignore[no-untyped-def]
        """Timed :meth:`LanceStore.replace_documents`."""
        t0 = time.perf_counter()
        try:
            super().replace_documents(doc_ids, chunks, vectors, synced_at)
        finally:
            self.write_s += time.perf_counter() - t0

    def optimize(self) -> None:
        """Timed :meth:`LanceStore.optimize`."""
        t0 = time.perf_counter()
        try:
            super().optimize()
        finally:
            self.optimize_s += time.perf_counter() - t0


def stored_chunks(store: LanceStore) -> list[Chunk]:
    """Every chunk in the store, read back through the Store API (documents -> chunk ids -> chunks)."""
    ids = [chunk_id_for(d.doc_id, i) for d in store.documents() for i in range(d.chunks)]
    principal = Principal("bench")
    out: list[Chunk] = []
    for i in range(0, len(ids), 500):
        got = store.get_chunks(ids[i : i + 500], principal)
        out.extend(got[c] for c in ids[i : i + 500] if c in got)
    if len(out) != len(ids):
        raise SystemExit(f"read back {len(out)} of {len(ids)} chunks: chunk ids are not dense per document")
    return out


def full_ingest(docs_dir: Path, index_dir: Path, embedder: MiniLMEmbedder) -> tuple[float, SyncReport, dict]:
    """(a): sync the folder into a fresh index; wall seconds, the report and the time breakdown."""
    if index_dir.exists():
        shutil.rmtree(index_dir)
    store = TimedStore(index_dir)
    timed = TimedEmbedder(embedder)
    t0 = time.perf_counter()
    report = Syncer(store, timed).sync(docs_dir, default_acl=Acl(public=True))
    wall = time.perf_counter() - t0
    if report.failed or report.no_acl or report.ingested == 0:
        raise SystemExit(f"ingest went wrong: {report}")
    parts = {"embed_s": timed.seconds, "write_s": store.write_s, "optimize_s": store.optimize_s}
    parts["other_s"] = wall - sum(parts.values())
    return wall, report, parts


def resync(docs_dir: Path, index_dir: Path, embedder: MiniLMEmbedder) -> tuple[float, SyncReport]:
    """(c): sync the unchanged folder again with a fresh store object; it must embed nothing."""
    store = LanceStore(index_dir)
    t0 = time.perf_counter()
    report = Syncer(store, embedder).sync(docs_dir, default_acl=Acl(public=True))
    wall = time.perf_counter() - t0
    if report.changed or report.chunks_embedded:
        raise SystemExit(f"re-sync of an unchanged folder changed the store: {report}")
    return wall, report


def raw_embed(embedder: MiniLMEmbedder, texts: Sequence[str]) -> float:
    """(b): embed the texts in one call (the embedder batches them itself); wall seconds."""
    t0 = time.perf_counter()
    vecs = embedder.embed(texts)
    wall = time.perf_counter() - t0
    assert vecs.shape == (len(texts), embedder.dim)
    return wall


def main(argv: Sequence[str] | None = None) -> int:
    """Run the rounds, print one BENCH line per measure and record the medians."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1000, help="number of SciFact abstracts (file order)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args(argv)

    root = cache_dir("ingest")
    docs_dir, index_dir = root / "docs", root / "index"
    corpus = load_scifact_corpus(limit=args.docs)
    write_corpus(docs_dir, corpus)

    embedder = MiniLMEmbedder(batch_size=32, threads=2)
    embedder.embed(["warm-up: load the model before anything is timed"] * 32)

    texts: list[str] | None = None
    full, base, again = [], [], []
    chunks = 0
    breakdowns: list[dict] = []
    for r in range(args.runs):
        # Alternate the order so slow phases of a shared machine do not all land on one side.
        order = ["pipeline", "baseline"] if r % 2 == 0 else ["baseline", "pipeline"]
        if texts is None:
            order = ["pipeline", "baseline"]  # the baseline needs the texts the pipeline produced
        for phase in order:
            clear_embedding_cache()  # both sides must compute every vector
            if phase == "pipeline":
                wall, report, parts = full_ingest(docs_dir, index_dir, embedder)
                got = [c.search_text for c in stored_chunks(LanceStore(index_dir))]
                if texts is None:
                    texts = got
                elif Counter(got) != Counter(texts):
                    raise SystemExit("the pipeline produced different chunks from one run to the next")
                chunks = report.chunks_embedded
                full.append(wall)
                breakdowns.append(parts)
                emit("ingest.pipeline", run=r, docs=report.ingested, chunks=chunks, seconds=round(wall, 2),
                     chunks_per_s=round(chunks / wall, 2), **{k: round(v, 2) for k, v in parts.items()})
                rs, rep = resync(docs_dir, index_dir, embedder)
                again.append(rs)
                emit("ingest.resync", run=r, unchanged=rep.unchanged, seconds=round(rs, 3),
                     ratio=round(rs / wall, 4))
            else:
                assert texts is not None
                wall = raw_embed(embedder, texts)
                base.append(wall)
                emit("ingest.embedder", run=r, chunks=len(texts), seconds=round(wall, 2),
                     chunks_per_s=round(len(texts) / wall, 2))

    a = chunks / median(full)
    b = chunks / median(base)
    ratio = a / b
    resync_ratio = median(again) / median(full)
    parts = {k: round(median([p[k] for p in breakdowns]), 2) for k in breakdowns[0]}
    # Noise-robust view on a shared machine: the share of the pipeline's own wall time spent embedding.
    parts["embed_share"] = round(median([p["embed_s"] / f for p, f in zip(breakdowns, full, strict=True)]), 4)
    emit("ingest.summary", docs=len(corpus), chunks=chunks, runs=args.runs,
         pipeline_chunks_per_s=round(a, 2), embedder_chunks_per_s=round(b, 2), ratio=round(ratio, 3),
         goal_ratio=GOAL_RATIO, full_ingest_s=round(median(full), 2), resync_s=round(median(again), 3),
         resync_ratio=round(resync_ratio, 4), goal_resync=GOAL_RESYNC, pipeline_breakdown_s=parts)
    if not args.no_docs:
        spread = (f"spread over rounds: pipeline {min(full):.0f}–{max(full):.0f} s, bare embedder "
                  f"{min(base):.0f}–{max(base):.0f} s; load avg {os.getloadavg()[0]:.1f} at the end")
        record(len(corpus), chunks, args.runs, a, b, ratio, median(full), median(again), resync_ratio, parts,
               spread)
    shutil.rmtree(index_dir, ignore_errors=True)
    return 0


def record(
    docs: int, chunks: int, runs: int, a: float, b: float, ratio: float, full_s: float, resync_s: float,
    resync_ratio: float, parts: dict[str, float], spread: str = "",
) -> None:
    """Insert or replace the rows of this benchmark in docs/benchmarks.md."""
    header = ["measure", "value", "goal", "notes"]
    intro = (
        f"The first {docs:,} SciFact abstracts as Markdown files ({chunks:,} chunks of ≤ 256 tokens). "
        f"Medians of {runs} rounds; in each, a full `Syncer` ingest into a fresh LanceDB index and the bare "
        "`MiniLMEmbedder` (batch 32, 2 threads) on exactly the chunk texts that ingest embedded, in "
        f"alternating order. Machine: {machine()}."
    )

    def ok(flag: bool) -> str:
        return "met" if flag else "NOT met"

    rows = [
        ("pipeline ingest (Syncer, fresh index)", f"{a:.1f} chunks/s ({full_s:.1f} s)", "–",
         f"embedding = {100 * parts['embed_share']:.1f} % of its time: "
         f"embed {parts['embed_s']:.1f} s, store writes {parts['write_s']:.1f} s, index optimise "
         f"{parts['optimize_s']:.1f} s, read/parse/chunk {parts['other_s']:.1f} s"),
        ("bare embedder, same chunk texts", f"{b:.1f} chunks/s", "–", "one `embed()` call over all texts"),
        ("pipeline / bare embedder", f"{ratio:.3f}", f"≥ {GOAL_RATIO}: {ok(ratio >= GOAL_RATIO)}", spread),
        ("re-sync unchanged / full ingest", f"{resync_ratio:.4f} ({resync_s:.2f} s)",
         f"≤ {GOAL_RESYNC}: {ok(resync_ratio <= GOAL_RESYNC)}", "fresh store object, nothing re-embedded"),
    ]
    for key, value, goal, notes in rows:
        write_row(SECTION, key, f"| {key} | {value} | {goal} | {notes} |", header=header, command=COMMAND,
                  intro=intro)


if __name__ == "__main__":
    raise SystemExit(main())
