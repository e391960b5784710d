"""Cross-encoder input: one text ``sentence [SEP] evidence``, with long evidence cut into windows that fit.

The MiniLM tokenizer maps a literal ``[SEP]`` to its separator token (id 102), so a plain text classifier
sees the same ``[CLS] sentence [SEP] evidence [SEP]`` a BERT cross-encoder sees (token types stay 0, as
all-MiniLM-L6-v2 was trained with them). The sentence comes first: truncation at ``max_length`` then cuts
the evidence, never the claim. Evidence longer than the window is cut at sentence boundaries into
overlapping windows; a pair is scored by its best window.
"""

from __future__ import annotations

from collections.abc import Sequence

from ragtune.models.embedder import TokenCounter, minilm_token_counts
from ragtune.text import greedy_run, sentence_spans, term_overlap

SEP = "[SEP]"
SPECIAL_TOKENS = 3  # [CLS], the separator, the final [SEP]


def clean(text: str) -> str:
    """Whitespace collapsed; a literal ``[SEP]`` in user text is lower-cased so it cannot split the pair."""
    return " ".join(text.replace(SEP, SEP.lower()).split())


def pair_text(sentence: str, evidence: str) -> str:
    """The classifier input for one (sentence, evidence) pair."""
    return f"{clean(sentence)} {SEP} {clean(evidence)}"


def evidence_windows(sentence: str, evidence: str, max_length: int,
                     count_tokens: TokenCounter = minilm_token_counts) -> list[str]:
    """The evidence as consecutive runs of its sentences, each fitting ``max_length`` tokens beside the
    sentence; consecutive windows share one evidence sentence. Short evidence is one window.

    ``count_tokens`` counts with the classifier's tokenizer (default: the packaged MiniLM embedder's, which
    every MiniLM fine-tune shares)."""
    evidence = clean(evidence)
    (n_sentence,) = count_tokens([clean(sentence)])
    budget = max(max_length - SPECIAL_TOKENS - n_sentence, max_length // 2)
    spans = sentence_spans(evidence)
    if len(spans) <= 1:
        return [evidence]
    parts = [evidence[s:e] for s, e in spans]
    counts = count_tokens(parts)
    if sum(counts) <= budget:
        return [evidence]
    windows: list[str] = []
    i = 0
    while i < len(parts):
        j = greedy_run(counts, i, budget)
        windows.append(" ".join(parts[i:j]))
        if j >= len(parts):
            break
        i = j - 1 if j - 1 > i else j  # overlap one sentence, always moving forward
    return windows


def best_window(sentence: str, evidence: str, max_length: int,
                count_tokens: TokenCounter = minilm_token_counts) -> str:
    """The window sharing the most content terms with the sentence (the first on ties): what training sees."""
    windows = evidence_windows(sentence, evidence, max_length, count_tokens)
    return max(windows, key=lambda w: term_overlap(sentence, w))


def expand(pairs: Sequence[tuple[str, str]], max_length: int,
           count_tokens: TokenCounter = minilm_token_counts) -> tuple[list[str], list[int]]:
    """Classifier texts for every window of every pair, and the index of the pair each text belongs to."""
    texts: list[str] = []
    owner: list[int] = []
    for k, (sentence, evidence) in enumerate(pairs):
        for window in evidence_windows(sentence, evidence, max_length, count_tokens):
            texts.append(pair_text(sentence, window))
            owner.append(k)
    return texts, owner
