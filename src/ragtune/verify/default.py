"""The checker a project gets with no training: lexical overlap, with a threshold chosen on the packaged BEGIN data.

``load_checker`` is what ``Project.groundedness_checker``, ``ragtune verify check`` and the pipeline ``verify``
step use: the registered checker when there is one, else (for the default name only) a
:class:`LexicalOverlapChecker`. Its threshold is chosen at first use (about 0.2 s, once per process) on the BEGIN
pairs packaged with ragtune, outside the test split ``ragtune verify train`` holds out
(:func:`~ragtune.verify.data.split_pairs` with its defaults), so ``benchmarks/groundedness.py`` scores it on
pairs it never saw, next to the trained checker.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ragtune.core import Answer
from ragtune.text import term_overlap
from ragtune.verify.data import (
    TEST_FRACTION,
    VALIDATION_FRACTION,
    LabelledPair,
    begin_files,
    load_begin,
    packaged_data_dir,
    split_pairs,
)
from ragtune.verify.evaluate import choose_threshold

if TYPE_CHECKING:
    from ragtune.tuning.registry import Registry
    from ragtune.verify.groundedness import GroundednessChecker, GroundednessReport

DEFAULT_MODEL = "groundedness"
LEXICAL_NAME = "lexical overlap (no trained checker; run `ragtune verify train` for the trained one)"


class AnswerChecker(Protocol):
    """What the CLI and the pipeline runner use of a checker, trained or not."""

    name: str
    trained: bool

    @property
    def threshold(self) -> float:
        """Supported at or above this score."""
        ...

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """One support score per (sentence, evidence) pair."""
        ...

    def check_answer(self, answer: Answer, threshold: float | None = None) -> GroundednessReport:
        """Every sentence of ``answer`` checked against the chunks it cites."""
        ...


def overlap_scores(pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    """Lexical overlap per pair: the share of the sentence's content terms found in the evidence."""
    return np.array([term_overlap(s, e) for s, e in pairs], dtype=np.float64)


def lexical_threshold(pairs: Sequence[LabelledPair]) -> float:
    """The lexical-overlap threshold with the best balanced accuracy on ``pairs`` (see ``choose_threshold``)."""
    y = np.array([p.supported for p in pairs], dtype=bool)
    return choose_threshold(y, overlap_scores([(p.sentence, p.evidence) for p in pairs]))


@cache
def default_lexical_threshold() -> float:
    """The default scorer's threshold: chosen on the packaged BEGIN pairs outside ``verify train``'s test split."""
    splits = split_pairs(load_begin(begin_files(packaged_data_dir())), VALIDATION_FRACTION, TEST_FRACTION)
    return lexical_threshold(splits.train + splits.validation)


class LexicalOverlapChecker:
    """Checks answers by lexical overlap: no model, no training. Scores are not probabilities.

    On held-out BEGIN pairs it ranks supported above unsupported sentences nearly as well as the trained checker
    but catches fewer unsupported ones at its threshold (docs/benchmarks.md, "Groundedness checker").
    """

    trained = False

    def __init__(self, threshold: float | None = None, name: str = LEXICAL_NAME) -> None:
        self._threshold = threshold
        self.name = name

    @property
    def threshold(self) -> float:
        """The given threshold, else :func:`default_lexical_threshold`."""
        return default_lexical_threshold() if self._threshold is None else self._threshold

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """One score in [0, 1] per (sentence, evidence) pair."""
        return overlap_scores(pairs)

    def check_answer(self, answer: Answer, threshold: float | None = None) -> GroundednessReport:
        """Check each sentence of ``answer`` against the chunks it cites (threshold: the default one)."""
        from ragtune.verify.groundedness import check_answer

        return check_answer(answer, self, self.threshold if threshold is None else threshold, self.name)


def load_checker(registry: Registry, name: str = DEFAULT_MODEL,
                 version: int | None = None) -> GroundednessChecker | LexicalOverlapChecker:
    """The registered checker ``name`` (a given ``version``); the lexical checker when the default name has no
    registered model and no version is asked for. Any other missing model is a ``ModelNotFoundError``."""
    from ragtune.verify.groundedness import GroundednessChecker

    if name == DEFAULT_MODEL and version is None and name not in {c.name for c in registry.list()}:
        return LexicalOverlapChecker()
    return GroundednessChecker.from_registry(registry, name, version)
