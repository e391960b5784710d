"""The answer cache on a repeated-question workload: hit ratio, and the latency of hits vs misses.

The first ``--docs`` SciFact abstracts are written as Markdown files in five ACL groups by position
(``g0`` .. ``g4``) and ingested into a real project under ``.bench/answer_cache/`` (kept between runs while
the corpus is unchanged). Six principals read one, two or all five groups; two of them hold the same
groups, so they share cache entries. ``--requests`` asks are drawn with a fixed seed: the question from the
SciFact test claims by a Zipf law (rank r has weight 1/r^s), the principal uniformly. Each ask's latency is
the wall time of ``Project.ask`` with the cache on (extractive answers, default settings); a request is a hit
when its answer carries ``cache_hit``. The cache starts empty, so early requests are misses.

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/answer_cache.py [--docs 1000]
        [--requests 2000] [--zipf 1.1] [--semantic] [--no-docs]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LANCE_LOG", "error")

from _common import (  # noqa: E402
    SciFactDoc,
    cache_dir,
    emit,
    load_scifact_corpus,
    load_scifact_qrels,
    load_scifact_queries,
    machine,
    percentile,
    write_row,
)

from ragtune.config import CacheSettings, init_project  # noqa: E402
from ragtune.core import Acl, Principal  # noqa: E402
from ragtune.models.embedder import MiniLMEmbedder  # noqa: E402
from ragtune.project import Project  # noqa: E402

SECTION = "Answer cache (SciFact, repeated questions)"
COMMAND = ("RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/answer_cache.py\n"
           "RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/answer_cache.py --semantic")
GROUPS = [f"g{i}" for i in range(5)]
PRINCIPALS = [
    Principal("u1", frozenset({"g0"})),
    Principal("u2", frozenset({"g0"})),  # the same rights as u1: shares its entries
    Principal("u3", frozenset({"g1", "g2"})),
    Principal("u4", frozenset({"g3"})),
    Principal("u5", frozenset({"g2", "g4"})),
    Principal("u6", frozenset(GROUPS)),
]
HEADER = ["mode", "requests", "distinct asks", "hit ratio", "semantic hits (answer differs)", "p50 hit ms",
          "p95 hit ms", "p50 miss ms", "miss / hit p50", "machine"]


def write_docs(folder: Path, docs: Sequence[SciFactDoc]) -> str:
    """Each abstract as ``<_id>.md`` in group ``g<position mod 5>``; returns a digest of the corpus."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, d in enumerate(docs):
        text = (f"---\ntitle: {json.dumps(d.title, ensure_ascii=False)}\nacl: {{groups: [{GROUPS[i % 5]}]}}\n"
                f"---\n{d.text}\n")
        path = folder / f"{d.doc_id}.md"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    return f"{len(docs)}:{docs[-1].doc_id if docs else ''}"


def open_project(root: Path, docs: Sequence[SciFactDoc], embedder: MiniLMEmbedder, semantic: bool) -> Project:
    """A project over the grouped corpus (ingested once per corpus), with the cache on."""
    marker = root / "corpus.txt"
    digest = write_docs(root / "docs", docs)
    if not (root / "p" / "ragtune.yaml").is_file():
        init_project(root / "p")
    project = Project(Project.open(root / "p").settings, embedder=embedder)
    if not marker.is_file() or marker.read_text() != digest:
        t0 = time.perf_counter()
        project.ingest(root / "docs", Acl())
        print(f"ingested {len(docs)} abstracts in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        marker.write_text(digest)
    cache = CacheSettings(enabled=True, max_entries=10_000, ttl_s=3600, semantic=semantic)
    return Project(project.settings.model_copy(update={"cache": cache}), embedder=embedder)


def workload(questions: Sequence[str], n: int, s: float, seed: int = 0) -> list[tuple[Principal, str]]:
    """``n`` (principal, question) asks: questions by a Zipf law of exponent ``s``, principals uniformly."""
    rng = random.Random(seed)
    weights = [1 / (r + 1) ** s for r in range(len(questions))]
    qs = rng.choices(list(questions), weights=weights, k=n)
    return [(rng.choice(PRINCIPALS), q) for q in qs]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the workload, print one BENCH line and record the row."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1000, help="number of SciFact abstracts (file order)")
    ap.add_argument("--requests", type=int, default=2000, help="asks in the workload")
    ap.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of the question mix")
    ap.add_argument("--semantic", action="store_true", help="cache.semantic on (threshold 0.95)")
    ap.add_argument("--no-docs", action="store_true", help="print results only; leave docs/benchmarks.md alone")
    args = ap.parse_args(argv)

    docs = load_scifact_corpus(limit=args.docs)
    queries = load_scifact_queries()
    questions = [queries[q] for q in sorted(load_scifact_qrels("test"), key=int)]
    embedder = MiniLMEmbedder(batch_size=32, threads=2)
    embedder.warm_up()
    project = open_project(cache_dir("answer_cache"), docs, embedder, args.semantic)
    asks = workload(questions, args.requests, args.zipf)
    project.ask("warm-up question", PRINCIPALS[0])  # open the index, load the model: start-up, not timed
    assert project.answer_cache is not None
    project.answer_cache.clear()

    uncached = Project(project.settings.model_copy(update={"cache": CacheSettings()}), embedder=embedder)
    hits: list[float] = []
    misses: list[float] = []
    differ = 0
    for principal, question in asks:
        t0 = time.perf_counter()
        answer = project.ask(question, principal)
        ms = (time.perf_counter() - t0) * 1000
        (hits if "cache_hit" in answer.latency_ms else misses).append(ms)
        if any(f.startswith("semantic cache hit") for f in answer.flags):  # untimed: what it should have said
            fresh = uncached.ask(question, principal)
            differ += (fresh.text, fresh.abstained) != (answer.text, answer.abstained)
    stats = project.answer_cache.stats()
    mode = ("semantic" if args.semantic else "exact") + f", Zipf s={args.zipf:g}, {args.docs} docs, 5 groups"
    distinct = len({(p.groups, q) for p, q in asks})
    p50_hit, p50_miss = percentile(hits, 50), percentile(misses, 50)
    result = {"mode": mode, "requests": len(asks), "distinct": distinct, "hit_ratio": round(stats.hit_ratio, 4),
              "semantic_hits": stats.semantic_hits,
              "semantic_hits_differing": differ, "p50_hit_ms": round(p50_hit, 3),
              "p95_hit_ms": round(percentile(hits, 95), 3), "p50_miss_ms": round(p50_miss, 2),
              "p95_miss_ms": round(percentile(misses, 95), 2), "speedup_p50": round(p50_miss / p50_hit, 1)}
    emit("answer_cache", **result)
    if not args.no_docs:
        row = (f"| {mode} | {len(asks)} | {distinct} | {stats.hit_ratio:.1%} | {stats.semantic_hits} ({differ}) | "
               f"{p50_hit:.2f} | "
               f"{percentile(hits, 95):.2f} | {p50_miss:.1f} | {p50_miss / p50_hit:.0f}x | {machine()} |")
        intro = ("`Project.ask` with `cache.enabled` on a Zipf mix of SciFact test claims asked by six principals "
                 "over five ACL groups (two principals share rights); latency is the wall time of `ask`. "
                 "\"distinct asks\" counts (groups, question) pairs: the best possible hit ratio is "
                 "1 - distinct / requests (exact mode). \"answer differs\": semantic hits whose text differs from "
                 "what the uncached project answers that question.")
        write_row(SECTION, mode, row, header=HEADER, command=COMMAND, intro=intro)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
