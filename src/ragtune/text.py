"""Text rules shared by chunking, answering and verification, one copy each: sentence spans, content terms,
citation markers, the ``title > section`` head line and greedy packing of counted pieces into a budget."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence

# -- sentences -----------------------------------------------------------------------------------------------------
# Sentences follow sentences, not lines: a line break ends one only where a block ends -- at a blank line, before
# and after a heading, and before a list item or table row. Inside a block, line breaks are spaces (hard-wrapped
# text and PDF lines) and sentencex (Wikimedia's rule-based segmenter: abbreviations, decimals, quotes) finds the
# sentence ends. Every non-space character belongs to exactly one span, so chunks packed from spans lose nothing.
_MARKDOWN_HEADING = re.compile(r"#{1,6}(?:\s|$)")
_BLOCK_START = re.compile(r"(?:[-*+\u2022\u25aa\u2013]\s|\d{1,3}[.)]\s|[a-zA-Z][.)]\s|\|)")
"""A line that starts a block of its own: a list item (bullet, ``1.``, ``a)``) or a table row."""
_END_PUNCTUATION = re.compile(r"[.!?:;,][\"'\u201d\u2019\u00bb)\]]*$")
_TITLE_WORD = re.compile(r"^(?:[A-Z0-9\u00c0-\u00de]|\(?\d)")
_MINOR_WORDS = frozenset("a an and as at by for from in of on or the to vs with".split())
MAX_HEADING_WORDS = 10


def is_heading_line(line: str) -> bool:
    """A line that reads as a heading: a Markdown heading, or a short title-cased line with no end punctuation
    (``Data Retention - Backups``, ``3.1 Travel Expenses``, ``SECURITY``), as DOCX, HTML and PDF text carry them."""
    line = line.strip()
    if _MARKDOWN_HEADING.match(line):
        return True
    words = line.split()
    if not words or len(words) > MAX_HEADING_WORDS or _END_PUNCTUATION.search(line) or not _TITLE_WORD.match(line):
        return False
    significant = [w for w in words if w.lower() not in _MINOR_WORDS and any(c.isalpha() for c in w)]
    return bool(significant) and all(_TITLE_WORD.match(w) for w in significant)


def _wrap_width(lines: Sequence[str]) -> int | None:
    """The column text is hard-wrapped at (the longest line, when several lines come close to it), else None."""
    lengths = [len(line.rstrip()) for line in lines if line.strip()]
    width = max(lengths, default=0)
    if width > 120 or sum(n >= 0.8 * width for n in lengths) < 3:
        return None
    return width


def _blocks(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, is_heading) of the blocks of ``text``: runs of lines a line break does not end."""
    blocks: list[tuple[int, int, bool]] = []
    start: int | None = None  # start of the open block
    pos = 0
    lines = text.splitlines(keepends=True)
    width = _wrap_width(lines)
    for line in lines:
        body = line.strip()
        if not body:
            if start is not None:
                blocks.append((start, pos, False))
                start = None
        elif (is_heading_line(body) and (start is None or not _continues(text[start:pos]))
              and (width is None or len(body) < 0.8 * width)):  # a full-width line is wrapped text
            if start is not None:
                blocks.append((start, pos, False))
            blocks.append((pos, pos + len(line), True))
            start = None
        elif start is None or _BLOCK_START.match(body):
            if start is not None:
                blocks.append((start, pos, False))
            start = pos
        pos += len(line)
    if start is not None:
        blocks.append((start, len(text), False))
    return blocks


def _continues(block: str) -> bool:
    """Whether the open block reads as cut off mid-sentence (the next line then continues it, whatever it looks
    like): its last line ends without end punctuation and is not itself a short list item."""
    last = block.rstrip().rsplit("\n", 1)[-1].strip()
    return not _END_PUNCTUATION.search(last) and len(last.split()) > MAX_HEADING_WORDS // 2


@functools.cache
def _segmenter() -> Callable[[str], Iterable[str]]:
    from sentencex import segment

    return functools.partial(segment, "en")


def _trimmed(text: str, s: int, e: int) -> tuple[int, int] | None:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return (s, e) if e > s else None


def sentence_segments(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, is_heading) of the sentences of ``text``, whitespace trimmed; a heading is a segment of its own."""
    out: list[tuple[int, int, bool]] = []
    segment = _segmenter()
    for bs, be, heading in _blocks(text):
        if heading:
            span = _trimmed(text, bs, be)
            if span:
                out.append((*span, True))
            continue
        pos = bs
        carry: int | None = None  # start of a piece without letters ("1.", "(a)"), which joins the next one
        # sentencex returns pieces that concatenate to its input, so offsets are running lengths.
        for piece in segment(text[bs:be].replace("\n", " ").replace("\r", " ")):
            span = _trimmed(text, pos, pos + len(piece))
            pos += len(piece)
            if span is None:
                continue
            s, e = span
            if carry is not None:
                s, carry = carry, None
            if not any(c.isalpha() for c in text[s:e]) and pos < be:
                carry = s
                continue
            out.append((s, e, False))
        if carry is not None:
            out.append((*(_trimmed(text, carry, be) or (carry, be)), False))
    return out


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences (and headings) in ``text``, whitespace trimmed, empty ones dropped."""
    return [(s, e) for s, e, _ in sentence_segments(text)]


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
