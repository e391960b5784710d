"""The groundedness checker: a fine-tuned MiniLM cross-encoder scoring (sentence, evidence) pairs, and the
check of an answer's sentences against the chunks they cite.

Scoring an answer: the text is split into sentences, each keeping the citation markers (``[1]``, ``[1][2]``,
``[1, 2]``) written after it (the extractive answerer writes ``Sentence. [1]``, generators ``Sentence [1].``).
A sentence's support probability is the best over the chunks it cites; a sentence citing nothing is checked
against every chunk the answer cites (generators often cite once per paragraph) and marked ``uncited``. The
answer's ``score`` is the *lowest* sentence probability: one unsupported sentence makes the answer
unsupported, so "abstain when score < threshold" and "hallucinated" agree. ``mean`` is reported beside it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ragtune.core import Answer
from ragtune.errors import ConfigError, ModelNotFoundError
from ragtune.text import CITATION, LEADING_CITATIONS, citation_numbers, sentence_spans, term_overlap
from ragtune.tuning.base import TextClassifier
from ragtune.tuning.registry import Registry
from ragtune.verify.data import SUPPORTED, UNSUPPORTED
from ragtune.verify.default import DEFAULT_MODEL
from ragtune.verify.evaluate import PairScorer
from ragtune.verify.pairs import expand

TRAIN_COMMAND = "ragtune verify train"
_AFTER_MARKER = re.compile(r"(?<=\d\])\s+(?=[A-Z\"\u201c(])")  # "... [1] The next sentence"
_HAS_WORD = re.compile(r"\w")


@dataclass(frozen=True)
class SentenceCheck:
    """One answer sentence: the citations it was checked against and its support probability."""

    text: str
    cited: tuple[int, ...]  # the citation numbers written after the sentence
    checked: tuple[int, ...]  # the citations it was scored against (all of the answer's when it cites none)
    probability: float  # best support probability over the checked citations (0 when there are none)
    best: int | None  # the citation with that probability
    supported: bool

    @property
    def uncited(self) -> bool:
        """The sentence names no citation (it was checked against every citation of the answer)."""
        return not self.cited


@dataclass(frozen=True)
class GroundednessReport:
    """How well an answer is supported by the chunks it cites.

    ``score`` is the lowest sentence probability (1.0 for an abstention: it claims nothing), ``mean`` the
    average; ``unsupported`` holds the text of every sentence below ``threshold``.
    """

    sentences: tuple[SentenceCheck, ...]
    score: float
    mean: float
    threshold: float
    model: str = ""
    unsupported: tuple[str, ...] = field(default=())

    @property
    def hallucinated(self) -> bool:
        """Whether any sentence is unsupported (the answer counts towards the hallucination rate)."""
        return bool(self.unsupported)


def cited_sentences(text: str) -> list[tuple[str, tuple[int, ...]]]:
    """The sentences of an answer with the citation numbers written after each, markers removed."""
    pieces = [part for s, e in sentence_spans(text) for part in _AFTER_MARKER.split(text[s:e])]
    merged: list[str] = []
    for piece in pieces:
        lead = LEADING_CITATIONS.match(piece)
        if lead and merged:  # "Sentence. [1] Next sentence." -> the markers belong to the first
            merged[-1] += " " + lead.group(0).strip()
            piece = piece[lead.end() :].strip()
        if not piece:
            continue
        if merged and not _HAS_WORD.search(CITATION.sub("", piece)):
            merged[-1] += " " + piece
        else:
            merged.append(piece)
    out = []
    for sentence in merged:
        numbers = tuple(dict.fromkeys(n for group in CITATION.findall(sentence) for n in citation_numbers(group)))
        bare = re.sub(r"\s+([.,;:!?])", r"\1", CITATION.sub("", sentence))
        bare = " ".join(bare.split())
        if _HAS_WORD.search(bare):
            out.append((bare, numbers))
    return out


def check_answer(answer: Answer, scorer: PairScorer, threshold: float, model: str = "") -> GroundednessReport:
    """Score every sentence of ``answer`` against the chunks it cites with ``scorer`` (any pair scorer:
    the trained checker, or a baseline) and mark those below ``threshold`` unsupported."""
    if answer.abstained or not answer.text.strip():
        return GroundednessReport((), 1.0, 1.0, threshold, model)
    chunks = {c.number: c.chunk.text for c in answer.citations}
    sentences = cited_sentences(answer.text)
    plan: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
    pairs: list[tuple[str, str]] = []
    for sentence, cited in sentences:
        known = tuple(n for n in cited if n in chunks)
        checked = known if cited else tuple(sorted(chunks))
        plan.append((sentence, cited, checked))
        pairs += [(sentence, chunks[n]) for n in checked]
    scores = np.asarray(scorer.score(pairs), dtype=np.float64) if pairs else np.zeros(0)
    checks: list[SentenceCheck] = []
    at = 0
    for sentence, cited, checked in plan:
        own = scores[at : at + len(checked)]
        at += len(checked)
        j = int(np.argmax(own)) if len(own) else -1
        p = float(own[j]) if j >= 0 else 0.0
        checks.append(SentenceCheck(sentence, cited, checked, p, checked[j] if j >= 0 else None, p >= threshold))
    if not checks:  # text without a single word: nothing is claimed
        return GroundednessReport((), 1.0, 1.0, threshold, model)
    probs = [c.probability for c in checks]
    return GroundednessReport(tuple(checks), float(min(probs)), float(np.mean(probs)), threshold, model,
                              tuple(c.text for c in checks if not c.supported))


def hallucination_rate(reports: Sequence[GroundednessReport]) -> float:
    """Share of answers with at least one unsupported sentence (abstentions count as not hallucinated)."""
    return float(np.mean([r.hallucinated for r in reports])) if reports else 0.0


@dataclass(frozen=True)
class Combiner:
    """P(supported) = sigmoid(bias + model_weight * logit(p_model) + overlap_weight * overlap): the
    cross-encoder's probability combined with lexical overlap by a logistic regression fitted on validation
    pairs the cross-encoder was not trained on."""

    model_weight: float
    overlap_weight: float
    bias: float

    @classmethod
    def fit(cls, p_model: np.ndarray, overlap: np.ndarray, y: np.ndarray) -> Combiner:
        """Fit on validation pairs. Nearly unregularised (C=100): two features, and the default C=1 would
        shrink the overlap weight, whose feature spans only [0, 1]."""
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=100.0).fit(np.stack([_logit(p_model), overlap], axis=1), np.asarray(y, dtype=int))
        return cls(float(lr.coef_[0, 0]), float(lr.coef_[0, 1]), float(lr.intercept_[0]))

    def apply(self, p_model: np.ndarray, overlap: np.ndarray) -> np.ndarray:
        """Combined probabilities."""
        z = self.bias + self.model_weight * _logit(p_model) + self.overlap_weight * np.asarray(overlap)
        return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.asarray(np.log(q / (1 - q)))


class GroundednessChecker:
    """A registered support classifier used as a cross-encoder: ``score`` gives P(supported) per pair.

    With a ``combiner`` the cross-encoder's probability is combined with lexical overlap (how a checker from
    :func:`train_groundedness` scores; see docs/groundedness.md). ``threshold`` is the default of
    :meth:`check_answer`; a trained checker carries the one chosen on its validation split.
    """

    trained = True

    def __init__(self, classifier: TextClassifier, threshold: float = 0.5, name: str = "",
                 combiner: Combiner | None = None) -> None:
        classes = [str(c) for c in getattr(classifier, "classes_", [])]
        if SUPPORTED not in classes or UNSUPPORTED not in classes:
            raise ConfigError(f"model {name or '(unnamed)'} is not a groundedness checker: its classes are "
                              f"{classes}, expected {SUPPORTED!r} and {UNSUPPORTED!r}; train one with "
                              f"`{TRAIN_COMMAND}`")
        self.classifier = classifier
        self.threshold = threshold
        self.name = name
        self.combiner = combiner
        self._column = classes.index(SUPPORTED)

    @classmethod
    def from_registry(cls, registry: Registry, name: str = DEFAULT_MODEL,
                      version: int | None = None) -> GroundednessChecker:
        """Load a checker from the project's model registry (no network)."""
        command = TRAIN_COMMAND + ("" if name == DEFAULT_MODEL else f" --name {name}")
        known = [c.name for c in registry.list()]
        if name not in known:
            raise ModelNotFoundError(f"no groundedness checker named {name!r} in {registry.root} (models there: "
                                     f"{', '.join(known) or 'none'}); train it with `{command}`")
        try:
            card = registry.card(name, version)
            classifier = registry.load(name, version)
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(f"{exc}; train a new version with `{command}`") from exc
        threshold = float(card.notes.get("threshold", 0.5))
        raw = card.notes.get("combiner")
        combiner = Combiner(**raw) if isinstance(raw, dict) else None
        return cls(classifier, threshold=threshold, name=f"{name} v{card.version}", combiner=combiner)

    @property
    def max_length(self) -> int:
        """Tokens per classifier input (sentence, separator and an evidence window)."""
        return int(getattr(self.classifier, "max_length", 256))

    def model_probability(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """The cross-encoder's own P(supported) per pair: the best over the evidence's windows."""
        if not pairs:
            return np.zeros(0)
        texts, owner = expand(pairs, self.max_length)
        probs = self.classifier.predict_proba(texts)[:, self._column]
        out = np.zeros(len(pairs))
        np.maximum.at(out, np.array(owner), probs)
        return out

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """P(supported) for each (sentence, evidence) pair."""
        p = self.model_probability(pairs)
        if self.combiner is None or not len(p):
            return p
        return self.combiner.apply(p, np.array([term_overlap(s, e) for s, e in pairs]))

    def check_answer(self, answer: Answer, threshold: float | None = None) -> GroundednessReport:
        """Check each sentence of ``answer`` against the chunks it cites (threshold: the checker's own)."""
        t = self.threshold if threshold is None else threshold
        return check_answer(answer, self, t, self.name)
