"""Groundedness: is each answer sentence supported by the chunks it cites?

``GroundednessChecker`` (a fine-tuned MiniLM cross-encoder from the model registry) scores (sentence,
evidence) pairs; ``check_answer`` turns an :class:`~ragtune.core.Answer` into a ``GroundednessReport``;
``train_groundedness`` builds pairs from BEGIN and SciFact (packaged with ragtune) and registers a checker.
``load_checker`` gives the registered checker, or ``LexicalOverlapChecker`` (no training) when none is
registered. The untrained ``LexicalOverlapScorer`` and ``EmbeddingCosineScorer`` are the checker's baselines.
See docs/groundedness.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Names are loaded on first use (PEP 562), so importing ``ragtune.verify.cli`` for `ragtune --help` does not pull
# in scikit-learn, torch and the registry.
_HOMES = {
    "EmbeddingCosineScorer": "baselines", "LexicalOverlapScorer": "baselines",
    "SUPPORTED": "data", "UNSUPPORTED": "data", "LabelledPair": "data", "load_begin": "data",
    "load_scifact": "data", "load_training_pairs": "data", "packaged_data_dir": "data", "split_pairs": "data",
    "LexicalOverlapChecker": "default", "load_checker": "default",
    "GroundednessEvaluator": "evaluate", "PairScorer": "evaluate",
    "DEFAULT_MODEL": "default", "Combiner": "groundedness", "GroundednessChecker": "groundedness",
    "GroundednessReport": "groundedness", "SentenceCheck": "groundedness", "check_answer": "groundedness",
    "cited_sentences": "groundedness", "hallucination_rate": "groundedness", "train_groundedness": "train",
    "pair_text": "pairs",
}

if TYPE_CHECKING:
    from ragtune.verify.baselines import EmbeddingCosineScorer, LexicalOverlapScorer
    from ragtune.verify.data import (
        SUPPORTED,
        UNSUPPORTED,
        LabelledPair,
        load_begin,
        load_scifact,
        load_training_pairs,
        packaged_data_dir,
        split_pairs,
    )
    from ragtune.verify.default import DEFAULT_MODEL, LexicalOverlapChecker, load_checker
    from ragtune.verify.evaluate import GroundednessEvaluator, PairScorer
    from ragtune.verify.groundedness import (
        Combiner,
        GroundednessChecker,
        GroundednessReport,
        SentenceCheck,
        check_answer,
        cited_sentences,
        hallucination_rate,
    )
    from ragtune.verify.pairs import pair_text
    from ragtune.verify.train import train_groundedness


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'ragtune.verify' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ragtune.verify.{_HOMES[name]}"), name)


__all__ = [
    "DEFAULT_MODEL",
    "Combiner",
    "SUPPORTED",
    "UNSUPPORTED",
    "EmbeddingCosineScorer",
    "GroundednessChecker",
    "GroundednessEvaluator",
    "GroundednessReport",
    "LabelledPair",
    "LexicalOverlapChecker",
    "LexicalOverlapScorer",
    "PairScorer",
    "SentenceCheck",
    "check_answer",
    "cited_sentences",
    "hallucination_rate",
    "load_begin",
    "load_checker",
    "load_scifact",
    "load_training_pairs",
    "packaged_data_dir",
    "pair_text",
    "split_pairs",
    "train_groundedness",
]
