"""``ragtune eval retrieval``: several retriever configurations on one index, one set of queries, one record.

Configurations (built with ``Project.retriever_variant``, sharing the project's store and embedder):

- ``bm25``: lexical only (``dense_weight 0``); ``dense``: vectors only (``lexical_weight 0``);
- ``hybrid``: both, fused with the project's ``rrf_k`` and weights; ``reranked``: hybrid plus the configured
  reranker (only when ``rerank.kind`` names one).

Each searches ``2 × max k`` candidates per side (at least the project's ``lexical_k``/``dense_k``), so a
ranking holds enough distinct documents for recall@k. A document ranks at its best chunk. Queries run
interleaved (every configuration on a query before the next query, the order rotated), each embedded afresh
(the embedding cache bypassed), so latency compares like with like.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ragtune.core import Principal
from ragtune.errors import RagtuneError
from ragtune.evaluation.bootstrap import paired_bootstrap
from ragtune.evaluation.data import DocumentMap, EvalQuery, Qrels
from ragtune.evaluation.retrieval import RetrievalEvaluator, dedupe
from ragtune.project import Project
from ragtune.retrieval.hybrid import HybridRetriever

CONFIGS = ("bm25", "dense", "hybrid", "reranked")
RANKING_SHOWN = 10  # documents of each ranking kept in run.json
ALL_DOCUMENTS_USER = "ragtune-eval-all-documents"


class IndexWidePrincipal(Principal):
    """A principal holding every ACL token of the index (``--all-documents``, the admin's evaluation view).

    Documents whose ACL is empty (readable by nobody) stay out of reach: they carry no token to hold."""

    def __init__(self, index_tokens: Iterable[str]) -> None:
        super().__init__(ALL_DOCUMENTS_USER)
        object.__setattr__(self, "_index_tokens", frozenset(index_tokens))

    def tokens(self) -> list[str]:
        """The index's tokens, plus this principal's own (so the store filter is never empty)."""
        own: frozenset[str] = object.__getattribute__(self, "_index_tokens")
        return sorted(own | set(super().tokens()))


def principal_record(principal: Principal) -> dict[str, Any]:
    """How a run names whom it searched as: ``{"all_documents": true}`` or the user and groups."""
    if isinstance(principal, IndexWidePrincipal):
        return {"all_documents": True}
    return {"user": principal.user, "groups": sorted(principal.groups)}


def default_configs(project: Project) -> list[str]:
    """``bm25, dense, hybrid``, and ``reranked`` when a reranker is configured."""
    return ["bm25", "dense", "hybrid", *(["reranked"] if project.reranker is not None else [])]


def build_variants(project: Project, names: Sequence[str], max_k: int) -> dict[str, HybridRetriever]:
    """The retriever of each configuration name, searching deep enough for ``max_k`` distinct documents."""
    r = project.settings.retrieval
    depth = min(10_000, max(2 * max_k, r.lexical_k, r.dense_k))
    common: dict[str, Any] = {"lexical_k": depth, "dense_k": depth, "top_k": min(1000, 2 * depth)}
    recipes: dict[str, Callable[[], HybridRetriever]] = {
        "bm25": lambda: project.retriever_variant(rerank=False, lexical_weight=1.0, dense_weight=0.0, **common),
        "dense": lambda: project.retriever_variant(rerank=False, lexical_weight=0.0, dense_weight=1.0, **common),
        "hybrid": lambda: project.retriever_variant(rerank=False, **common),
        "reranked": lambda: project.retriever_variant(rerank=True, **common),
    }
    for name in names:
        if name not in recipes:
            raise RagtuneError(f"unknown configuration {name!r}; choose from {', '.join(CONFIGS)}")
        if name == "reranked" and project.reranker is None:
            raise RagtuneError("configuration 'reranked' needs a reranker: set rerank.kind in ragtune.yaml")
    return {name: recipes[name]() for name in names}


def describe(retriever: HybridRetriever) -> dict[str, Any]:
    """The settings a configuration ran with (for run.json and the report)."""
    return {"top_k": retriever.top_k, "lexical_k": retriever.lexical_k, "dense_k": retriever.dense_k,
            "rrf_k": retriever.rrf_k, "lexical_weight": retriever.lexical_weight,
            "dense_weight": retriever.dense_weight, "lexical_isolation": retriever.lexical_isolation,
            "reranker": retriever.reranker.name if retriever.reranker is not None else None}


def settings_fingerprint(project: Project) -> str:
    """SHA-256 (16 hex digits) of the settings the index and retrieval depend on."""
    s = project.settings
    parts = {name: getattr(s, name).model_dump(mode="json")
             for name in ("store", "embedder", "ingest", "chunking", "retrieval", "rerank")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def machine() -> dict[str, Any]:
    """Where the figures come from: platform, CPU count, Python, the 1/5/15-minute load averages now."""
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "load_avg": [round(x, 2) for x in os.getloadavg()]}


def percentiles(values: Sequence[float], qs: Sequence[int] = (50, 95)) -> dict[str, float]:
    """``{"p50": ..., "p95": ...}`` of ``values`` in ms (0 for none), rounded to 0.01."""
    if not values:
        return {f"p{q}": 0.0 for q in qs}
    return {f"p{q}": round(float(np.percentile(values, q)), 3) for q in qs}


def run_retrieval_eval(project: Project, queries: Sequence[EvalQuery], qrels: Qrels, principal: Principal,
                       documents: DocumentMap, *, configs: Sequence[str], k_values: Sequence[int],
                       resamples: int = 1000, seed: int = 0,
                       on_query: Callable[[], None] | None = None) -> dict[str, Any]:
    """Search every query with every configuration as ``principal``, score it, and return the run record.

    ``qrels`` are keyed by document id (``resolve_qrels``). ``on_query`` is called after each query (every
    configuration done). The record is what ``run.json`` holds (docs/evaluation.md)."""
    from ragtune.models.embedder import embedding_cache_bypassed

    ks = sorted({int(k) for k in k_values} | {10})
    variants = build_variants(project, configs, max(ks))
    load_start = machine()["load_avg"]
    project.search(queries[0].text, principal)  # opens the index, checks the embedder, loads the model
    for retriever in variants.values():  # and touches each variant's indexes: timed queries are steady-state
        retriever.retrieve(queries[0].text, principal)
    rankings: dict[str, dict[str, list[str]]] = {name: {} for name in variants}
    wall: dict[str, list[float]] = {name: [] for name in variants}
    stages: dict[str, dict[str, list[float]]] = {name: {} for name in variants}
    names = list(variants)
    for i, q in enumerate(queries):
        for name in names[i % len(names):] + names[:i % len(names)]:
            with embedding_cache_bypassed():
                t0 = time.perf_counter()
                result = variants[name].retrieve(q.text, principal)
                wall[name].append((time.perf_counter() - t0) * 1000)
            for stage, ms in result.latency_ms.items():
                stages[name].setdefault(stage, []).append(ms)
            rankings[name][q.qid] = dedupe(h.chunk.doc_id for h in result.hits)
        if on_query is not None:
            on_query()
    evaluator = RetrievalEvaluator(qrels, ks)
    results: dict[str, Any] = {}
    for name in names:
        per_query = evaluator.per_query(rankings[name])
        results[name] = {
            "settings": describe(variants[name]),
            "aggregate": {k: round(v, 6) if isinstance(v, float) else v for k, v in evaluator(rankings[name]).items()},
            "latency_ms": {**percentiles(wall[name]), "mean": round(float(np.mean(wall[name])), 3),
                           "stages_p50": {s: percentiles(v, (50,))["p50"] for s, v in stages[name].items()}},
            "per_query": per_query,
            "rankings": {qid: [documents.labels.get(d, d) for d in ranked[:RANKING_SHOWN]]
                         for qid, ranked in rankings[name].items()},
        }
    ci_metrics = ["ndcg@10", f"recall@{max(ks)}"]
    differences: dict[str, Any] = {}
    base = names[0]
    qids = sorted(results[base]["per_query"])
    for name in names[1:]:
        differences[name] = {
            m: paired_bootstrap([results[base]["per_query"][q][m] for q in qids],
                                [results[name]["per_query"][q][m] for q in qids], resamples, seed).to_dict()
            for m in ci_metrics}
    from importlib.metadata import version

    return {
        "kind": "retrieval",
        "ragtune_version": version("ragtune"),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**machine(), "load_avg_start": load_start},
        "project": str(project.settings.project_dir),
        "principal": principal_record(principal),
        "settings_fingerprint": settings_fingerprint(project),
        "embedder_fingerprint": project.embedder.fingerprint,
        "index_version": project.store.version(),
        "k_values": ks,
        "configs": names,
        "baseline": base,
        "bootstrap": {"resamples": resamples, "seed": seed, "confidence": 0.95, "metrics": ci_metrics},
        "queries": len(qids),
        "results": results,
        "differences": differences,
    }
