"""Cross-encoder input: one text ``sentence [SEP] evidence``, with long evidence cut into windows that fit.

The MiniLM tokenizer maps a literal ``[SEP]`` to its separator token (id 102), so a plain text classifier
sees the same ``[CLS] sentence [SEP] evidence [SEP]`` a BERT cross-encoder sees (token types stay 0, as
all-MiniLM-L6-v2 was trained with them). The sentence comes first: truncation at ``max_length`` then cuts
the evidence, never the claim. Evidence longer than the window is cut at sentence boundaries into
overlapping windows; a pair is scored by its best window.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ragtune.ingest.chunking import minilm_token_counts, sentence_spans

SEP = "[SEP]"
SPECIAL_TOKENS = 3  # [CLS], the separator, the final [SEP]
_WORD = re.compile(r"[a-z0-9]+")
# scikit-learn's ENGLISH_STOP_WORDS would do, but importing sklearn.feature_extraction costs a second.
STOP_WORDS = frozenset(
    "a about above after again against all also am an and any are as at be because been before being below "
    "between both but by can could did do does doing down during each few for from further had has have having "
    "he her here hers herself him himself his how i if in into is it its itself just me more most my myself no "
    "nor not of off on once only or other our ours ourselves out over own same she should so some such than that "
    "the their theirs them themselves then there these they this those through to too under until up very was "
    "we were what when where which while who whom why will with would you your yours yourself yourselves".split()
)


def clean(text: str) -> str:
    """Whitespace collapsed; a literal ``[SEP]`` in user text is lower-cased so it cannot split the pair."""
    return " ".join(text.replace(SEP, SEP.lower()).split())


def pair_text(sentence: str, evidence: str) -> str:
    """The classifier input for one (sentence, evidence) pair."""
    return f"{clean(sentence)} {SEP} {clean(evidence)}"


def content_terms(text: str) -> set[str]:
    """Lower-cased words that are not stop words, cut to 6 characters (a crude stem: 'supported' ~ 'support')."""
    return {w[:6] for w in _WORD.findall(text.lower()) if w not in STOP_WORDS}


def term_overlap(sentence: str, evidence: str) -> float:
    """Share of the sentence's content terms found in the evidence (1.0 for a sentence without any)."""
    terms = content_terms(sentence)
    if not terms:
        return 1.0
    return len(terms & content_terms(evidence)) / len(terms)


def evidence_windows(sentence: str, evidence: str, max_length: int) -> list[str]:
    """The evidence as consecutive runs of its sentences, each fitting ``max_length`` tokens beside the
    sentence; consecutive windows share one evidence sentence. Short evidence is one window."""
    evidence = clean(evidence)
    (n_sentence,) = minilm_token_counts([clean(sentence)])
    budget = max(max_length - SPECIAL_TOKENS - n_sentence, max_length // 2)
    spans = sentence_spans(evidence)
    if len(spans) <= 1:
        return [evidence]
    parts = [evidence[s:e] for s, e in spans]
    counts = minilm_token_counts(parts)
    if sum(counts) <= budget:
        return [evidence]
    windows: list[str] = []
    i = 0
    while i < len(parts):
        total, j = 0, i
        while j < len(parts) and (total + counts[j] <= budget or j == i):
            total += counts[j]
            j += 1
        windows.append(" ".join(parts[i:j]))
        if j >= len(parts):
            break
        i = j - 1 if j - 1 > i else j  # overlap one sentence, always moving forward
    return windows


def best_window(sentence: str, evidence: str, max_length: int) -> str:
    """The window sharing the most content terms with the sentence (the first on ties): what training sees."""
    windows = evidence_windows(sentence, evidence, max_length)
    return max(windows, key=lambda w: term_overlap(sentence, w))


def expand(pairs: Sequence[tuple[str, str]], max_length: int) -> tuple[list[str], list[int]]:
    """Classifier texts for every window of every pair, and the index of the pair each text belongs to."""
    texts: list[str] = []
    owner: list[int] = []
    for k, (sentence, evidence) in enumerate(pairs):
        for window in evidence_windows(sentence, evidence, max_length):
            texts.append(pair_text(sentence, window))
            owner.append(k)
    return texts, owner
