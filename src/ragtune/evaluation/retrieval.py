"""Retrieval quality: nDCG@k, recall@k, precision@k and MRR@k of ranked ids against graded relevance (qrels).

Conventions (those of BEIR and ``pytrec_eval``/trec_eval, checked against ``pytrec_eval`` in the tests):

- **nDCG@k**: gain = the qrels grade (linear, not ``2**grade - 1``), discount ``1 / log2(rank + 1)`` with ranks
  from 1; the ideal DCG sorts the query's positive grades from the qrels (not from the run), so a relevant
  document the run never returned still counts against it. 0 when the query has no positive grade.
- **recall@k**: the share of the query's relevant documents (grade > 0) among the first k.
- **precision@k**: relevant documents among the first k, divided by k (also when fewer than k were returned).
- **MRR@k**: 1 / the rank of the first relevant document within the first k, else 0.

A ranking is deduplicated first (the first occurrence of an id counts): a document found through several of
its chunks ranks at its best chunk. These are the formulas behind the SciFact figures in docs/benchmarks.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from ragtune.evaluation.base import Evaluator

Qrels = Mapping[str, Mapping[str, int]]  # query id -> {document id: relevance grade}
Run = Mapping[str, Sequence[str]]  # query id -> document ids, best first

METRICS = ("ndcg", "recall", "precision", "mrr")


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k with gain = relevance and discount 1/log2(rank + 1); 0 when nothing is relevant."""
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 100) -> float:
    """Share of the relevant documents found in the first ``k``; 0 when nothing is relevant."""
    rel = {d for d, g in relevant.items() if g > 0}
    if not rel:
        return 0.0
    return len(rel.intersection(ranked[:k])) / len(rel)


def precision_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """Relevant documents in the first ``k``, divided by ``k`` (trec_eval's P@k)."""
    return sum(1 for d in ranked[:k] if relevant.get(d, 0) > 0) / k


def mrr_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """1 / rank of the first relevant document within the first ``k``; 0 if there is none."""
    return next((1.0 / (i + 1) for i, d in enumerate(ranked[:k]) if relevant.get(d, 0) > 0), 0.0)


def dedupe(ids: Iterable[str]) -> list[str]:
    """Keep the first occurrence of each id (a document ranks at its best chunk)."""
    seen: set[str] = set()
    out: list[str] = []
    for i in ids:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


_FUNCTIONS = {"ndcg": ndcg_at_k, "recall": recall_at_k, "precision": precision_at_k, "mrr": mrr_at_k}


class RetrievalEvaluator(Evaluator):
    """Mean nDCG@k, recall@k, precision@k and MRR@k of a run over the queries of ``qrels``.

    Called with a run ``{query id: ranked document ids}``; returns ``{"ndcg@10": ..., "recall@5": ..., ...,
    "queries": n}`` (keys prefixed ``<name>_`` when ``name`` is given). The mean is over every query of the
    qrels with at least one relevant document: a query missing from the run scores 0, queries the qrels do not
    know are ignored, and queries without a relevant document are left out (the count is ``queries``).
    """

    greater_is_better = True

    def __init__(self, qrels: Qrels, k_values: Sequence[int] = (1, 3, 5, 10, 100), *,
                 primary_metric: str = "ndcg@10", name: str = "") -> None:
        if not k_values or any(int(k) < 1 for k in k_values):
            raise ValueError(f"k_values must be positive cut-offs, got {list(k_values)}")
        self.qrels = {str(q): {str(d): int(g) for d, g in rel.items()} for q, rel in qrels.items()}
        self.k_values = sorted({int(k) for k in k_values})
        self.name = name
        known = [f"{m}@{k}" for m in METRICS for k in self.k_values]
        if primary_metric not in known:
            raise ValueError(f"primary_metric {primary_metric!r} is not computed; choose one of {known}")
        self.primary_metric = self.metric_key(primary_metric, name)

    def per_query(self, run: Run) -> dict[str, dict[str, float]]:
        """Every metric for every scored query (those of the qrels with a relevant document), unprefixed."""
        out: dict[str, dict[str, float]] = {}
        for qid, relevant in self.qrels.items():
            if not any(g > 0 for g in relevant.values()):
                continue
            ranked = dedupe(run.get(qid, ()))
            out[qid] = {f"{m}@{k}": fn(ranked, relevant, k) for m, fn in _FUNCTIONS.items() for k in self.k_values}
        return out

    def __call__(self, run: Run) -> dict[str, float]:
        """The mean of every metric over the scored queries (0 for each when there is none)."""
        scored = self.per_query(run)
        keys = [f"{m}@{k}" for m in METRICS for k in self.k_values]
        n = len(scored)
        means: dict[str, float] = {key: (sum(q[key] for q in scored.values()) / n if n else 0.0) for key in keys}
        means["queries"] = n
        return self.prefix_name_to_metrics(means, self.name)
