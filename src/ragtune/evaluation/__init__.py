"""Evaluators with one base (``Evaluator``: a dict of metrics, ``primary_metric``, ``greater_is_better``).

Retrieval lives here; the classifier's and the groundedness checker's evaluators stay beside their models
(``ragtune.tuning.evaluate.ClassificationEvaluator``, ``ragtune.verify.evaluate.GroundednessEvaluator``) and
subclass the same base. Importing this package is cheap (no model libraries).
"""

from ragtune.evaluation.base import Evaluator
from ragtune.evaluation.retrieval import (
    RetrievalEvaluator,
    dedupe,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

__all__ = ["Evaluator", "RetrievalEvaluator", "dedupe", "mrr_at_k", "ndcg_at_k", "precision_at_k", "recall_at_k"]
