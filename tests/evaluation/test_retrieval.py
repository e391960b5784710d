"""Retrieval metrics against pytrec_eval (trec_eval, BEIR's reference), and the evaluator contract shared by the
retrieval, classification and groundedness evaluators."""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtune.evaluation import Evaluator, RetrievalEvaluator, dedupe, ndcg_at_k, recall_at_k
from ragtune.tuning.base import TextClassifier
from ragtune.tuning.evaluate import ClassificationEvaluator
from ragtune.verify.data import LabelledPair
from ragtune.verify.evaluate import GroundednessEvaluator

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
K = (1, 3, 5, 10)
MEASURES = {f"{m}.{','.join(map(str, K))}" for m in ("ndcg_cut", "recall", "P")} | {"recip_rank"}

# Hand-made cases: graded relevance, a relevant document never retrieved, a first hit late, no hit at all,
# a ranking shorter than k, and irrelevant (grade 0) judgements.
QRELS: dict[str, dict[str, int]] = {
    "graded": {"a": 2, "b": 1, "c": 0, "z": 1},
    "late": {"d": 1},
    "miss": {"e": 1, "f": 2},
    "short": {"g": 3, "h": 1},
}
RUN: dict[str, list[str]] = {
    "graded": ["x", "a", "c", "b", "y"],
    "late": ["p", "q", "r", "s", "t", "u", "d", "v"],
    "miss": ["p", "q", "r"],
    "short": ["h", "g"],
}


def scored(ranked: Sequence[str]) -> dict[str, float]:
    """A ranking as pytrec_eval's scored run (distinct scores, so no tie-breaking is involved)."""
    return {d: float(len(ranked) - i) for i, d in enumerate(ranked)}


def reference(qrels: dict[str, dict[str, int]], run: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """pytrec_eval's figures in RetrievalEvaluator's key names; MRR@k as recip_rank of the top-k run."""
    ref = pytrec_eval.RelevanceEvaluator(qrels, MEASURES).evaluate({q: scored(r) for q, r in run.items()})
    out: dict[str, dict[str, float]] = {}
    for q, m in ref.items():
        out[q] = {f"{ours}@{k}": m[f"{theirs}_{k}"] for ours, theirs in
                  (("ndcg", "ndcg_cut"), ("recall", "recall"), ("precision", "P")) for k in K}
        for k in K:
            top = pytrec_eval.RelevanceEvaluator({q: qrels[q]}, {"recip_rank"}).evaluate({q: scored(run[q][:k])})
            out[q][f"mrr@{k}"] = top[q]["recip_rank"] if top else 0.0
    return out


def test_hand_made_cases_match_pytrec_eval() -> None:
    ours = RetrievalEvaluator(QRELS, K).per_query(RUN)
    ref = reference(QRELS, RUN)
    assert set(ours) == set(ref) == set(QRELS)
    for q in QRELS:
        for key, value in ref[q].items():
            assert ours[q][key] == pytest.approx(value, abs=1e-12), (q, key)


def test_hand_computed_values() -> None:
    # "graded": x, a(2), c(0), b(1): DCG@5 = 2/log2(3) + 1/log2(5); ideal 2, 1, 1 (z is never retrieved).
    m = RetrievalEvaluator(QRELS, K).per_query(RUN)
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    idcg = 2 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["graded"]["ndcg@5"] == pytest.approx(dcg / idcg)
    assert m["graded"]["recall@5"] == pytest.approx(2 / 3) and m["graded"]["precision@5"] == pytest.approx(2 / 5)
    assert m["graded"]["mrr@1"] == 0.0 and m["graded"]["mrr@3"] == 0.5
    assert m["late"]["mrr@5"] == 0.0 and m["late"]["mrr@10"] == pytest.approx(1 / 7)
    assert m["miss"] == {key: 0.0 for key in m["miss"]}
    assert m["short"]["ndcg@10"] == pytest.approx((1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3)))
    assert m["short"]["precision@10"] == pytest.approx(0.2)  # divided by k, as trec_eval's P@k


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.dictionaries(st.sampled_from("abcdefghij"), st.integers(0, 3), min_size=1),
                          st.lists(st.sampled_from("abcdefghijklmn"), unique=True, max_size=12)),
                min_size=1, max_size=5))
def test_random_cases_match_pytrec_eval(cases: list[tuple[dict[str, int], list[str]]]) -> None:
    qrels = {f"q{i}": rel for i, (rel, _) in enumerate(cases) if any(g > 0 for g in rel.values())}
    run = {q: cases[int(q[1:])][1] for q in qrels if cases[int(q[1:])][1]}
    ours = RetrievalEvaluator(qrels, K).per_query(run)
    for q, values in reference(qrels, run).items():  # pytrec_eval leaves out queries with an empty run
        for key, value in values.items():
            assert ours[q][key] == pytest.approx(value, abs=1e-12), (q, key)


def test_mean_over_queries_and_missing_queries_score_zero() -> None:
    ev = RetrievalEvaluator({**QRELS, "nothing relevant": {"k": 0}}, K)
    per = ev.per_query(RUN)
    m = ev({**RUN, "unknown query": ["a"]})
    assert m["queries"] == 4 and "nothing relevant" not in per
    assert m["ndcg@10"] == pytest.approx(sum(q["ndcg@10"] for q in per.values()) / 4)
    without_short = ev({q: r for q, r in RUN.items() if q != "short"})
    assert without_short["queries"] == 4 and without_short["recall@10"] < m["recall@10"]


def test_rankings_are_deduplicated_and_match_the_benchmark_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    chunks_as_docs = ["x", "a", "a", "c", "x", "b"]
    ev = RetrievalEvaluator(QRELS, K)
    assert ev({"graded": chunks_as_docs})["ndcg@10"] == ev({"graded": dedupe(chunks_as_docs)})["ndcg@10"]
    assert ev.per_query(RUN)["graded"]["ndcg@10"] == ndcg_at_k(RUN["graded"], QRELS["graded"], 10)
    # benchmarks/_common.py re-exports the package's functions, so the SciFact figures use these formulas
    spec = importlib.util.spec_from_file_location("_common", BENCHMARKS / "_common.py")
    assert spec is not None and spec.loader is not None
    common = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "_common", common)  # its dataclasses look their module up there
    spec.loader.exec_module(common)
    assert common.ndcg_at_k is ndcg_at_k and common.recall_at_k is recall_at_k and common.dedupe is dedupe


def test_name_prefixes_keys_and_primary_metric() -> None:
    ev = RetrievalEvaluator(QRELS, (5, 10), primary_metric="recall@5", name="dev")
    m = ev(RUN)
    assert ev.primary_metric == "dev_recall@5" and set(m) == {f"dev_{k}" for k in m_keys((5, 10))}
    assert ev.primary_score(m) == m["dev_recall@5"]
    with pytest.raises(ValueError, match="not computed"):
        RetrievalEvaluator(QRELS, (5,), primary_metric="ndcg@10")
    with pytest.raises(ValueError, match="positive"):
        RetrievalEvaluator(QRELS, (0,))


def m_keys(ks: Sequence[int]) -> list[str]:
    return [f"{m}@{k}" for m in ("ndcg", "recall", "precision", "mrr") for k in ks] + ["queries"]


# --- the base contract, for every evaluator ------------------------------------------------------------


class KeywordClassifier(TextClassifier):
    """No model: 'refund' texts are class ``refund``; enough to exercise the classification evaluator."""

    def __init__(self) -> None:
        self.classes_ = np.array(["other", "refund"])
        self.temperature_ = 1.0

    def _logits(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([[0.0, 2.0] if "refund" in t else [2.0, 0.0] for t in texts])


class FixedScorer:
    """A pair scorer that returns the scores it was given (a PairScorer)."""

    def __init__(self, scores: Sequence[float]) -> None:
        self.scores = np.asarray(scores, dtype=np.float64)

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        return self.scores[: len(pairs)]


def pair(sentence: str, evidence: str, label: str) -> LabelledPair:
    return LabelledPair(sentence, evidence, label, group=evidence, source="test")


def contract_cases() -> list[tuple[Evaluator, dict[str, object]]]:
    texts = ["refund my order", "where is my card", "a refund please", "card arrived broken"]
    clf = ClassificationEvaluator(texts, ["refund", "other", "refund", "refund"])
    pairs = [pair("the sky is blue", "the sky is blue today", "supported"),
             pair("cats bark loudly", "the sky is blue today", "unsupported"),
             pair("rain falls in spring", "rain falls in spring and autumn", "supported"),
             pair("dogs fly south", "rain falls in spring and autumn", "unsupported")]
    ground = GroundednessEvaluator(pairs)
    retrieval = RetrievalEvaluator(QRELS, K)
    return [(clf, clf(KeywordClassifier())), (ground, ground(FixedScorer([0.9, 0.1, 0.8, 0.3]))),
            (retrieval, retrieval(RUN))]


@pytest.mark.parametrize("index", range(3), ids=["classification", "groundedness", "retrieval"])
def test_every_evaluator_follows_the_base_contract(index: int) -> None:
    evaluator, metrics = contract_cases()[index]
    assert isinstance(evaluator, Evaluator) and isinstance(evaluator.greater_is_better, bool)
    assert isinstance(evaluator.primary_metric, str) and evaluator.primary_metric in metrics
    score = evaluator.primary_score(metrics)
    assert isinstance(score, float) and 0.0 <= score <= 1.0
    worse = {**metrics, evaluator.primary_metric: score - 0.1}
    assert evaluator.is_better(metrics, worse) is evaluator.greater_is_better


def test_known_primary_metrics_and_outputs_keep_their_shape() -> None:
    (clf, cm), (ground, gm), (_, rm) = contract_cases()
    assert cm["primary_metric"] == clf.primary_metric == "macro_f1" and cm["accuracy"] == 0.75
    assert gm["primary_metric"] == ground.primary_metric == "auroc" and gm["auroc"] == 1.0
    assert all(isinstance(v, float) for k, v in rm.items() if k != "queries")
    with pytest.raises(KeyError, match="no primary metric"):
        clf.primary_score({"accuracy": 1.0})
