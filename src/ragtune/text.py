"""Text rules shared by chunking, answering and verification, one copy each: sentence spans, content terms,
citation markers, the ``title > section`` head line and greedy packing of counted pieces into a budget."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# A sentence ends at . ! ? (optionally followed by closing quotes or brackets, which belong to it) before
# whitespace, or at a line break. Abbreviations split wrongly are harmless: we only need boundaries to pack.
# Group 1 / group 2 is the whitespace between two sentences.
SENTENCE_END = re.compile(r"(?<=[.!?])[\"'\u201d\u2019\u00bb)\]]*(\s+)|(\n\s*)")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences in ``text``, whitespace trimmed, empty ones dropped."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in SENTENCE_END.finditer(text):
        spans.append((pos, m.start(1) if m.group(1) is not None else m.start(2)))
        pos = m.end()
    spans.append((pos, len(text)))
    out = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
    return out


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` (see :func:`sentence_spans`); none for blank text."""
    return [text[s:e] for s, e in sentence_spans(text)]


# -- terms ----------------------------------------------------------------------------------------------------------
WORD = re.compile(r"[a-z0-9]+")
"""A word of lower-cased text (on text that is not lower-cased it finds only the lower-case runs)."""
STEM_LENGTH = 6  # a crude stem: 'supported' ~ 'support'
QUERY_STOP_WORDS = frozenset(
    "a an and are as at be by can do does for from has have how i in is it "
    "of on or our the this to was we what when where which who why will with you your".split()
)
"""The short list the answerers drop from questions and sentences: function words and question words."""
# scikit-learn's ENGLISH_STOP_WORDS would do, but importing sklearn.feature_extraction costs a second.
STOP_WORDS = frozenset(
    "a about above after again against all also am an and any are as at be because been before being below "
    "between both but by can could did do does doing down during each few for from further had has have having "
    "he her here hers herself him himself his how i if in into is it its itself just me more most my myself no "
    "nor not of off on once only or other our ours ourselves out over own same she should so some such than that "
    "the their theirs them themselves then there these they this those through to too under until up very was "
    "we were what when where which while who whom why will with would you your yours yourself yourselves".split()
)
"""The longer English list the groundedness checker's lexical overlap drops."""


def content_terms(text: str, stop_words: frozenset[str] = STOP_WORDS) -> set[str]:
    """Lower-cased words that are not in ``stop_words``, cut to :data:`STEM_LENGTH` characters."""
    return {w[:STEM_LENGTH] for w in WORD.findall(text.lower()) if w not in stop_words}


def term_overlap(sentence: str, evidence: str) -> float:
    """Share of the sentence's content terms found in the evidence (1.0 for a sentence without any)."""
    terms = content_terms(sentence)
    if not terms:
        return 1.0
    return len(terms & content_terms(evidence)) / len(terms)


# -- citation markers -----------------------------------------------------------------------------------------------
CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
"""A citation marker ``[1]`` or ``[1, 2]``; group 1 holds the numbers (see :func:`citation_numbers`)."""
LEADING_CITATIONS = re.compile(r"^(?:\s*\[\d+(?:\s*,\s*\d+)*\])+")
"""One or more markers at the start of a text."""


def citation_numbers(group: str) -> list[int]:
    """The numbers of one marker's group 1 (``"1, 2"`` -> ``[1, 2]``), in order, repeats kept."""
    return [int(n) for n in group.split(",")]


# -- head line ------------------------------------------------------------------------------------------------------
def head_line(title: str, section_path: Iterable[str]) -> str:
    """``title > section > subsection``, empty parts left out ("" when all are empty)."""
    return " > ".join(p for p in (title, *section_path) if p)


# -- packing --------------------------------------------------------------------------------------------------------
def greedy_run(counts: Sequence[int], start: int, budget: int) -> int:
    """End (exclusive) of the longest run of pieces from ``start`` whose counts sum to at most ``budget``;
    the first piece is always taken, even when it alone exceeds the budget."""
    total, end = 0, start
    while end < len(counts) and (total + counts[end] <= budget or end == start):
        total += counts[end]
        end += 1
    return end
