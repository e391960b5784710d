"""``ragtune eval latency``: the distribution of each retrieval (and answer) stage's latency on real queries.

Every query runs once, after a few untimed warm-up queries, with the embedding cache bypassed (each query is
embedded afresh, as a new question would be). The stages are the keys of ``Retrieval.latency_ms``
(``embed_query``, ``dense``, ``lexical``, ``fuse``, ``rerank`` with a reranker, ``fetch``), plus the answerer's
(``answer``, and ``generate`` for a generator) with ``answers``, and ``total``: the wall time of the whole
request. The machine's load average and CPU count are recorded at the start and at the end: a load above the
CPU count means other work shared the CPUs and the figures are pessimistic.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ragtune.core import Principal
from ragtune.evaluation.data import EvalQuery
from ragtune.evaluation.run_retrieval import machine, principal_record
from ragtune.project import Project

RETRIEVAL_STAGES = ("embed_query", "dense", "lexical", "fuse", "rerank", "fetch")
WARM_UP = 3


def stage_summary(values: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99, mean and max of ``values`` (ms), rounded to 0.001."""
    arr = np.asarray(values, dtype=float)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3),
            "mean": round(float(arr.mean()), 3), "max": round(float(arr.max()), 3), "n": int(arr.size)}


def measure_latency(project: Project, queries: Sequence[EvalQuery], principal: Principal, *, n: int = 200,
                    answers: bool = False, on_query: Callable[[], None] | None = None) -> dict[str, Any]:
    """Time the first ``n`` queries as ``principal``; the record ``latency.json`` holds (docs/evaluation.md)."""
    from importlib.metadata import version

    from ragtune.models.embedder import embedding_cache_bypassed

    timed = list(queries[:n])
    start = {**machine(), "time": datetime.now(UTC).isoformat(timespec="seconds")}
    retriever = project.retriever
    answerer = project.answerer if answers else None
    project.search(timed[0].text, principal)  # opens the index, checks the embedder, loads the model
    if answers and project.generator is not None:
        project.generator.warm_up()
    for q in timed[:WARM_UP]:
        r = retriever.retrieve(q.text, principal)
        if answerer is not None:
            answerer.answer(q.text, r, principal)
    samples: dict[str, list[float]] = {}
    for q in timed:
        with embedding_cache_bypassed():
            t0 = time.perf_counter()
            retrieval = retriever.retrieve(q.text, principal)
            stages = dict(retrieval.latency_ms)
            if answerer is not None:
                stages.update(answerer.answer(q.text, retrieval, principal).latency_ms)
            stages["total"] = (time.perf_counter() - t0) * 1000
        for stage, ms in stages.items():
            samples.setdefault(stage, []).append(ms)
        if on_query is not None:
            on_query()
    end = machine()
    expected = [*RETRIEVAL_STAGES, *(["answer"] if answers else [])]
    absent = {s: ("no reranker is configured (rerank.kind)" if s == "rerank" else "not recorded")
              for s in expected if s not in samples}
    return {
        "kind": "latency",
        "ragtune_version": version("ragtune"),
        "created": start["time"],
        "project": str(project.settings.project_dir),
        "principal": principal_record(principal),
        "queries": len(timed),
        "answers": answers,
        "machine": {"platform": start["platform"], "cpu_count": os.cpu_count(), "python": start["python"],
                    "load_avg_start": start["load_avg"], "load_avg_end": end["load_avg"],
                    "cpu_count_end": end["cpu_count"]},
        "stages": {s: stage_summary(v) for s, v in samples.items()},
        "not_measured": absent,
        "samples_ms": {s: [round(x, 3) for x in v] for s, v in samples.items()},
    }
