"""Structure-aware chunking: sections are split into chunks at sentence boundaries within a token budget.

Chunks never cross a section (heading or PDF page), so each keeps one section path and page. Consecutive
chunks of a section share up to ``overlap_tokens`` of whole trailing sentences.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence

from ragtune.core import Chunk, Document
from ragtune.models.embedder import minilm_token_counts
from ragtune.text import greedy_run, head_line, sentence_spans

__all__ = ["SPECIAL_TOKENS", "TokenCounter", "chunk_document", "chunk_id_for", "minilm_token_counts",
           "sentence_spans"]

TokenCounter = Callable[[Sequence[str]], list[int]]
"""Tokens per text without special tokens: an embedder's ``count_tokens``."""


def _split_long(
    text: str, start: int, end: int, max_tokens: int, count: TokenCounter
) -> list[tuple[int, int]]:
    """Split one over-long sentence into word windows that fit the budget."""
    words = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", text[start:end])]
    counts = count([text[s:e] for s, e in words])
    pieces: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        j = greedy_run(counts, i, max_tokens)
        pieces.append((words[i][0], words[j - 1][1]))
        i = j
    return pieces


def chunk_id_for(doc_id: str, ordinal: int) -> str:
    """Stable id of a document's n-th chunk."""
    return f"{doc_id}-{ordinal:05d}"


SPECIAL_TOKENS = 2  # [CLS] and [SEP], which the embedder adds to every input


def _head_tokens(doc: Document, path: tuple[str, ...], count: TokenCounter) -> int:
    head = head_line(doc.title, path)
    return count([head])[0] if head else 0


def chunk_document(
    doc: Document,
    max_tokens: int = 256,
    overlap_tokens: int = 32,
    count_tokens: TokenCounter = minilm_token_counts,
    window: int | None = None,
) -> list[Chunk]:
    """Split a document's sections into chunks of at most ``max_tokens`` tokens (a lone word may exceed it).

    ``window`` is the embedder's input length: when given, each chunk's search text (the title > section
    head line plus the text) and the special tokens fit in it too, so no chunk's tail is cut off before it
    is embedded (a budget above the window is clamped to it). A head so long that it would leave less than
    half of that is left to be truncated.

    Token counts are summed per sentence, which is exact for word-piece tokenizers (they never merge
    across whitespace), and sentences cover every non-space character, so no text falls between chunks.
    """
    if overlap_tokens >= max_tokens:
        raise ValueError("overlap_tokens must be smaller than max_tokens")
    chunks: list[Chunk] = []
    acl = tuple(doc.acl.tokens())
    full_budget, full_overlap = max_tokens, overlap_tokens
    for section in doc.sections:
        base = section.start
        max_tokens, overlap_tokens = full_budget, full_overlap
        if window is not None:
            room = window - SPECIAL_TOKENS - _head_tokens(doc, section.path, count_tokens)
            max_tokens = max(min(full_budget, room), min(full_budget, window) // 2, 1)
            overlap_tokens = min(full_overlap, max_tokens - 1)
        spans: list[tuple[int, int]] = []
        raw = sentence_spans(section.text)
        counts = count_tokens([section.text[s:e] for s, e in raw])
        sized: list[tuple[int, int, int]] = []
        for (s, e), n in zip(raw, counts, strict=True):
            if n > max_tokens:
                pieces = _split_long(section.text, s, e, max_tokens, count_tokens)
                sized.extend((ps, pe, c) for (ps, pe), c in zip(
                    pieces, count_tokens([section.text[a:b] for a, b in pieces]), strict=True))
            else:
                sized.append((s, e, n))
        i = 0
        sizes = [n for _, _, n in sized]
        while i < len(sized):
            j = greedy_run(sizes, i, max_tokens)
            spans.append((sized[i][0], sized[j - 1][1]))
            if j >= len(sized):
                break
            # Start the next chunk with trailing whole sentences worth at most `overlap_tokens`, and only as
            # many as leave room for the next new sentence: otherwise the next chunk would hold nothing but
            # the overlap, a duplicate of text the previous chunk already has.
            k, back = j, 0
            budget = min(overlap_tokens, max_tokens - sized[j][2])
            while k - 1 > i and back + sized[k - 1][2] <= budget:
                back += sized[k - 1][2]
                k -= 1
            i = k
        for s, e in spans:
            text = section.text[s:e]
            ordinal = len(chunks)
            chunks.append(
                Chunk(
                    chunk_id=chunk_id_for(doc.doc_id, ordinal),
                    doc_id=doc.doc_id,
                    source_path=doc.source_path,
                    title=doc.title,
                    section_path=section.path,
                    page=section.page,
                    char_start=base + s,
                    char_end=base + e,
                    text=text,
                    content_hash=hashlib.sha256(text.encode("utf-8")).hexdigest()[:16],
                    doc_hash=doc.content_hash,
                    mtime=doc.mtime,
                    acl=acl,
                    ordinal=ordinal,
                )
            )
    return chunks
