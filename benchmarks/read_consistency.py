"""The cost of strong read consistency: hybrid search on the SciFact index opened as ragtune opens it (every read
checks for a newer committed version, so a narrowed ACL applies at once) against LanceDB's default (a table
keeps the version it opened), queries interleaved in one process, median of the per-query times.

Needs the SciFact index that ``benchmarks/scifact_retrieval.py`` builds under ``.bench/scifact``.

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/read_consistency.py [--queries 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BENCH_DIR, command_line, emit, load_scifact_queries, machine, write_row  # noqa: E402

from ragtune.core import Principal  # noqa: E402
from ragtune.models.embedder import MiniLMEmbedder  # noqa: E402
from ragtune.retrieval.hybrid import HybridRetriever  # noqa: E402
from ragtune.store.lance import LanceStore  # noqa: E402

SECTION = "Strong read consistency (SciFact search)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    index = BENCH_DIR / "scifact" / "index"
    if not index.is_dir():
        raise SystemExit(f"{index} is missing: run benchmarks/scifact_retrieval.py first")
    import lancedb

    strong = LanceStore(index)
    _ = strong.table  # opened as ragtune opens it
    connect = lancedb.connect
    lancedb.connect = lambda uri, **_: connect(uri)  # LanceDB's default: no consistency checks
    try:
        default = LanceStore(index)
        _ = default.table
    finally:
        lancedb.connect = connect
    embedder = MiniLMEmbedder(threads=2)
    embedder.warm_up()
    queries = list(load_scifact_queries().values())[: args.queries]
    retrievers = {"strong": HybridRetriever(strong, embedder), "default": HybridRetriever(default, embedder)}
    reader = Principal("bench", frozenset({"public"}))
    ratios: list[float] = []
    medians: dict[str, list[float]] = {"strong": [], "default": []}
    for _ in range(args.rounds):
        times: dict[str, list[float]] = {"strong": [], "default": []}
        for i, q in enumerate(queries):
            for name in (("strong", "default") if i % 2 else ("default", "strong")):
                t0 = time.perf_counter()
                retrievers[name].retrieve(q, reader)
                times[name].append((time.perf_counter() - t0) * 1000)
        m = {k: statistics.median(v) for k, v in times.items()}
        ratios.append(m["strong"] / m["default"])
        for k, v in m.items():
            medians[k].append(v)
    ratio = statistics.median(ratios)
    strong_ms, default_ms = statistics.median(medians["strong"]), statistics.median(medians["default"])
    emit("read_consistency", strong_ms=round(strong_ms, 2), default_ms=round(default_ms, 2), ratio=round(ratio, 3))
    intro = (f"{args.queries} SciFact queries × {args.rounds} rounds, interleaved, hybrid search as a reader of "
             f"everything; the ratio is the median of the rounds' ratios. Machine: {machine()}.")
    write_row(SECTION, "hybrid search p50",
              f"| hybrid search p50 | {strong_ms:.1f} ms | {default_ms:.1f} ms | {ratio:.2f}× |",
              header=["measure", "strong consistency (ragtune)", "LanceDB default", "ratio"],
              command=command_line(), intro=intro)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
