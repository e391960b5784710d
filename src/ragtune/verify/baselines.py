"""Untrained support scorers: the baselines the trained checker must beat, usable wherever a checker is.

Both return a score in [0, 1] per (sentence, evidence) pair where higher means "more likely supported"; they
are not probabilities, so their thresholds must be chosen on labelled data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ragtune.models.embedder import Embedder, MiniLMEmbedder
from ragtune.text import split_sentences, term_overlap
from ragtune.verify.pairs import clean


class LexicalOverlapScorer:
    """Share of the sentence's content words (stop words removed, 6-character stems) found in the evidence."""

    name = "lexical overlap"

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """One score per (sentence, evidence) pair."""
        return np.array([term_overlap(s, e) for s, e in pairs], dtype=np.float64)


class EmbeddingCosineScorer:
    """Cosine similarity of the sentence's and the evidence's MiniLM embeddings, mapped to [0, 1].

    ``per_sentence``: compare with each evidence sentence and keep the best, instead of with the whole
    evidence (which the embedder truncates at its 256-token window).
    """

    def __init__(self, embedder: Embedder | None = None, per_sentence: bool = False) -> None:
        self.embedder = embedder
        self.per_sentence = per_sentence

    @property
    def name(self) -> str:
        """What the scorer compares."""
        return "embedding cosine" + (" (best evidence sentence)" if self.per_sentence else "")

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """One score per (sentence, evidence) pair."""
        if self.embedder is None:
            self.embedder = MiniLMEmbedder()
        if not pairs:
            return np.zeros(0)
        sentences = self.embedder.embed([clean(s) for s, _ in pairs])
        if not self.per_sentence:
            evidence = self.embedder.embed([clean(e) for _, e in pairs])
            cos = np.sum(sentences * evidence, axis=1)
        else:
            parts: list[str] = []
            owner: list[int] = []
            for k, (_, e) in enumerate(pairs):
                text = clean(e)
                pieces = split_sentences(text) or [text]
                parts += pieces
                owner += [k] * len(pieces)
            vecs = self.embedder.embed(parts)
            sims = np.sum(vecs * sentences[np.array(owner)], axis=1)
            cos = np.full(len(pairs), -1.0)
            np.maximum.at(cos, np.array(owner), sims)
        return np.clip((cos + 1.0) / 2.0, 0.0, 1.0).astype(np.float64)
