"""The one evaluator contract, after sentence-transformers' ``evaluation/SentenceEvaluator.py``.

An evaluator is configured with the data it measures on and called with the thing it measures (a run of
rankings, a classifier, a pair scorer). It returns a dict of metrics; ``primary_metric`` names the key of the
one number that ranks candidates (model selection, sweeps, the advisor) and ``greater_is_better`` says which
way. Values other than the primary one may be details (counts, per-class tables, the threshold used).

Unlike sentence-transformers, prefixing never changes ``primary_metric`` as a side effect of a call: an
evaluator with a ``name`` sets its prefixed ``primary_metric`` once, when it is built (``metric_key``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np


class Evaluator(ABC):
    """Base of every ragtune evaluator: a callable returning a dict of metrics.

    Subclasses set ``primary_metric`` (a key of the dict ``__call__`` returns, prefixed by ``name`` when the
    evaluator prefixes its keys) and, when smaller is better (a loss, a latency), ``greater_is_better = False``.
    """

    primary_metric: str
    greater_is_better: bool = True
    name: str = ""  # what is measured on ("test", "dev"); evaluators that prefix their keys use it as the prefix

    @abstractmethod
    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Measure the argument (a model, a scorer, a run); the dict holds ``primary_metric``."""

    def primary_score(self, metrics: Mapping[str, Any]) -> float:
        """The primary metric's value in ``metrics`` (a dict this evaluator returned)."""
        try:
            return float(metrics[self.primary_metric])
        except KeyError:
            raise KeyError(f"{type(self).__name__}: the metrics hold no primary metric {self.primary_metric!r} "
                           f"(keys: {sorted(metrics)})") from None

    def is_better(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
        """Whether metrics ``a`` beat metrics ``b`` on the primary metric, in this evaluator's direction."""
        sa, sb = self.primary_score(a), self.primary_score(b)
        return sa > sb if self.greater_is_better else sa < sb

    @staticmethod
    def metric_key(metric: str, name: str) -> str:
        """``metric`` as it appears under the prefix ``name`` (``dev_ndcg@10``; unchanged for no name)."""
        return f"{name}_{metric}" if name and not metric.startswith(name + "_") else metric

    @classmethod
    def prefix_name_to_metrics(cls, metrics: Mapping[str, Any], name: str) -> dict[str, Any]:
        """A copy of ``metrics`` with every key prefixed by ``name`` and numpy scalars turned into Python ones.

        Pure: unlike sentence-transformers, it does not rewrite ``primary_metric`` (set that with
        ``metric_key`` when the evaluator is built).
        """
        return {cls.metric_key(key, name): (value.item() if isinstance(value, np.generic) else value)
                for key, value in metrics.items()}
