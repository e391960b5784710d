"""Groundedness: is each answer sentence supported by the chunks it cites?

``GroundednessChecker`` (a fine-tuned MiniLM cross-encoder from the model registry) scores (sentence,
evidence) pairs; ``check_answer`` turns an :class:`~ragtune.core.Answer` into a ``GroundednessReport``;
``train_groundedness`` builds pairs from BEGIN and SciFact and registers a checker. The untrained
``LexicalOverlapScorer`` and ``EmbeddingCosineScorer`` are its baselines. See docs/groundedness.md.
"""

from __future__ import annotations

from ragtune.verify.baselines import EmbeddingCosineScorer, LexicalOverlapScorer
from ragtune.verify.data import SUPPORTED, UNSUPPORTED, LabelledPair, load_begin, load_scifact, load_training_pairs
from ragtune.verify.evaluate import GroundednessEvaluator, PairScorer
from ragtune.verify.groundedness import (
    DEFAULT_MODEL,
    Combiner,
    GroundednessChecker,
    GroundednessReport,
    SentenceCheck,
    check_answer,
    cited_sentences,
    hallucination_rate,
    train_groundedness,
)
from ragtune.verify.pairs import pair_text

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
    "LexicalOverlapScorer",
    "PairScorer",
    "SentenceCheck",
    "check_answer",
    "cited_sentences",
    "hallucination_rate",
    "load_begin",
    "load_scifact",
    "load_training_pairs",
    "pair_text",
    "train_groundedness",
]
