"""Chunking invariants: token budget, section boundaries, offsets, coverage, overlap, ids, metadata."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragtune.core import Acl, Chunk, Document, Section
from ragtune.ingest.chunking import (
    TokenCounter,
    chunk_document,
    chunk_id_for,
    minilm_token_counts,
    sentence_spans,
)

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def word_counts(texts: Sequence[str]) -> list[int]:
    """One token per whitespace-separated word: easy to reason about in assertions."""
    return [len(t.split()) for t in texts]


def piece_counts(texts: Sequence[str]) -> list[int]:
    """One token per started 4 characters of each word, so a long word alone can exceed the budget."""
    return [sum(-(-len(w) // 4) for w in t.split()) for t in texts]


def make_doc(
    bodies: Sequence[str],
    *,
    doc_id: str = "doc-1",
    acl: Acl | None = None,
    pages: bool = False,
) -> Document:
    """A document whose sections are ``bodies`` joined by a blank line, each under its own heading path."""
    sections = []
    text = ""
    for n, body in enumerate(bodies):
        if text:
            text += "\n\n"
        sections.append(
            Section(
                text=body,
                path=(f"Page {n + 1}",) if pages else ("Guide", f"Part {n}"),
                page=n + 1 if pages else None,
                start=len(text),
            )
        )
        text += body
    return Document(
        doc_id=doc_id,
        source_path="/corpus/guide.md",
        title="The Guide",
        text=text,
        sections=tuple(sections),
        content_hash="abc123",
        mtime=1_700_000_000.5,
        acl=acl if acl is not None else Acl(users=frozenset({"ann"}), groups=frozenset({"legal"})),
        format="md",
    )


def section_of(doc: Document, chunk: Chunk) -> Section:
    """The one section whose character range holds the chunk."""
    holders = [
        s for s in doc.sections if s.start <= chunk.char_start and chunk.char_end <= s.start + len(s.text)
    ]
    assert len(holders) == 1, (chunk, holders)
    return holders[0]


def check_invariants(
    doc: Document, chunks: list[Chunk], max_tokens: int, overlap_tokens: int, count: TokenCounter
) -> None:
    # Offsets, section membership and token budget of every chunk.
    for c in chunks:
        assert doc.text[c.char_start : c.char_end] == c.text
        assert c.text == c.text.strip() and c.text
        section = section_of(doc, c)
        assert (c.section_path, c.page) == (section.path, section.page)
        n = count([c.text])[0]
        assert n <= max_tokens or len(c.text.split()) == 1, (n, c.text)

    for section in doc.sections:
        mine = [c for c in chunks if (c.section_path, c.page) == (section.path, section.page)]
        # No text lost: every non-space character of the section lies inside one of its chunks.
        covered = [False] * len(section.text)
        for c in mine:
            for i in range(c.char_start - section.start, c.char_end - section.start):
                covered[i] = True
        lost = [ch for ch, ok in zip(section.text, covered, strict=True) if not ok and not ch.isspace()]
        assert not lost, (lost, section.text)
        # Every sentence that fits the budget sits whole in some chunk.
        spans = sentence_spans(section.text)
        sentence_tokens = count([section.text[s:e] for s, e in spans])
        for (s, e), n in zip(spans, sentence_tokens, strict=True):
            if n <= max_tokens:
                assert any(c.char_start <= section.start + s and section.start + e <= c.char_end for c in mine)
        # Consecutive chunks move forward and share at most `overlap_tokens` worth of whole sentences
        # (or whole words, inside a sentence too long to fit a chunk).
        for a, b in zip(mine, mine[1:], strict=False):
            assert a.char_start < b.char_start and a.char_end < b.char_end
            if b.char_start >= a.char_end:
                continue
            shared = doc.text[b.char_start : a.char_end]
            assert count([shared])[0] <= overlap_tokens, shared
            start = b.char_start - section.start
            (sentence,) = [(s, e, n) for (s, e), n in zip(spans, sentence_tokens, strict=True) if s <= start < e]
            assert start == sentence[0] or (sentence[2] > max_tokens and section.text[start - 1].isspace())

    # Sections come in order and never interleave.
    for a, b in zip(chunks, chunks[1:], strict=False):
        if (a.section_path, a.page) != (b.section_path, b.page):
            assert b.char_start >= a.char_end

    # Ids and ordinals.
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert [c.chunk_id for c in chunks] == [chunk_id_for(doc.doc_id, i) for i in range(len(chunks))]
    assert len({c.chunk_id for c in chunks}) == len(chunks)


# --- sentence_spans -------------------------------------------------------------------------------


def spans_text(text: str) -> list[str]:
    return [text[s:e] for s, e in sentence_spans(text)]


def test_sentence_spans_split_at_end_punctuation_and_paragraph_breaks() -> None:
    text = "  First one. Second!  Third?\nFourth line\n\n  fifth  "
    assert spans_text(text) == ["First one.", "Second!", "Third?", "Fourth line", "fifth"]
    assert spans_text("a wrapped\nline. Next") == ["a wrapped\nline.", "Next"]


def test_sentence_spans_keep_closing_quotes_and_brackets() -> None:
    text = 'He said "stop." Then he left. She wrote \u201cdone.\u201d End.'
    assert spans_text(text) == ['He said "stop."', "Then he left.", "She wrote \u201cdone.\u201d", "End."]


def test_sentence_spans_do_not_split_inside_numbers_or_abbreviations() -> None:
    assert spans_text("Version 3.14 is out. Really") == ["Version 3.14 is out.", "Really"]
    assert spans_text("Mr. Smith paid $3.50 on Jan. 5, i.e. late.") == ["Mr. Smith paid $3.50 on Jan. 5, i.e. late."]


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t"])
def test_sentence_spans_of_blank_text(text: str) -> None:
    assert sentence_spans(text) == []


SENTENCE_ALPHABET = st.sampled_from(list("abcxyz  ..!?\n\"')]\u201d\t-,3"))


@FAST
@given(st.text(SENTENCE_ALPHABET, max_size=200))
def test_sentence_spans_are_ordered_trimmed_and_cover_all_text(text: str) -> None:
    spans = sentence_spans(text)
    prev_end = 0
    covered = [False] * len(text)
    for s, e in spans:
        assert prev_end <= s < e <= len(text)
        assert not text[s].isspace() and not text[e - 1].isspace()
        for i in range(s, e):
            covered[i] = True
        prev_end = e
    assert all(ok or ch.isspace() for ch, ok in zip(text, covered, strict=True))


# --- chunk_document: small exact cases ------------------------------------------------------------


def test_chunks_pack_sentences_up_to_the_budget_with_sentence_overlap() -> None:
    body = " ".join(f"w{i}a w{i}b w{i}c." for i in range(6))  # six sentences of three tokens
    doc = make_doc([body])
    chunks = chunk_document(doc, max_tokens=9, overlap_tokens=3, count_tokens=word_counts)
    assert [c.text for c in chunks] == [
        "w0a w0b w0c. w1a w1b w1c. w2a w2b w2c.",
        "w2a w2b w2c. w3a w3b w3c. w4a w4b w4c.",
        "w4a w4b w4c. w5a w5b w5c.",
    ]
    check_invariants(doc, chunks, 9, 3, word_counts)


def test_without_overlap_chunks_are_disjoint() -> None:
    body = " ".join(f"w{i}a w{i}b w{i}c." for i in range(6))
    chunks = chunk_document(make_doc([body]), max_tokens=9, overlap_tokens=0, count_tokens=word_counts)
    assert [c.text for c in chunks] == [
        "w0a w0b w0c. w1a w1b w1c. w2a w2b w2c.",
        "w3a w3b w3c. w4a w4b w4c. w5a w5b w5c.",
    ]


def test_overlap_never_makes_a_chunk_of_old_text_only() -> None:
    # After "a..e. f..j." the next sentence needs all 10 tokens: a chunk holding only the overlap
    # "f g h i j." would repeat text the previous chunk already has.
    body = "a b c d e. f g h i j. " + " ".join(["k"] * 10) + "."
    doc = make_doc([body])
    chunks = chunk_document(doc, max_tokens=10, overlap_tokens=5, count_tokens=word_counts)
    assert [c.text for c in chunks] == ["a b c d e. f g h i j.", " ".join(["k"] * 10) + "."]


def test_chunk_boundary_keeps_the_closing_quote() -> None:
    body = 'He said "stop now." Then they left the building.'
    doc = make_doc([body])
    chunks = chunk_document(doc, max_tokens=4, overlap_tokens=0, count_tokens=word_counts)
    assert [c.text for c in chunks] == ['He said "stop now."', "Then they left the", "building."]
    check_invariants(doc, chunks, 4, 0, word_counts)


def test_over_long_sentence_is_split_into_word_windows() -> None:
    body = "Intro. " + " ".join(f"word{i}" for i in range(25)) + " end."
    doc = make_doc([body])
    chunks = chunk_document(doc, max_tokens=10, overlap_tokens=2, count_tokens=word_counts)
    assert all(len(c.text.split()) <= 10 for c in chunks)
    assert len(chunks) >= 3
    check_invariants(doc, chunks, 10, 2, word_counts)


def test_single_word_longer_than_the_budget_is_its_own_chunk() -> None:
    giant = "x" * 100  # 25 tokens with piece_counts
    doc = make_doc([f"Short one. {giant} Tail here."])
    chunks = chunk_document(doc, max_tokens=8, overlap_tokens=2, count_tokens=piece_counts)
    assert giant in [c.text for c in chunks]
    check_invariants(doc, chunks, 8, 2, piece_counts)


def test_chunks_never_cross_sections() -> None:
    doc = make_doc(["Alpha one. Alpha two.", "Beta one. Beta two.", "   ", "Gamma."], pages=True)
    chunks = chunk_document(doc, max_tokens=100, overlap_tokens=10, count_tokens=word_counts)
    assert [(c.text, c.page, c.section_path) for c in chunks] == [
        ("Alpha one. Alpha two.", 1, ("Page 1",)),
        ("Beta one. Beta two.", 2, ("Page 2",)),
        ("Gamma.", 4, ("Page 4",)),
    ]
    check_invariants(doc, chunks, 100, 10, word_counts)


def test_chunk_metadata_is_copied_from_the_document() -> None:
    acl = Acl(users=frozenset({"ann"}), groups=frozenset({"legal", "hr"}))
    doc = make_doc(["One sentence here. Another one.", "Second section."], doc_id="d42", acl=acl)
    chunks = chunk_document(doc, max_tokens=3, overlap_tokens=0, count_tokens=word_counts)
    assert len(chunks) == 3
    for c in chunks:
        assert c.doc_id == "d42"
        assert c.source_path == "/corpus/guide.md"
        assert c.title == "The Guide"
        assert c.doc_hash == "abc123"
        assert c.mtime == 1_700_000_000.5
        assert c.acl == ("group:hr", "group:legal", "user:ann")
        assert c.content_hash == hashlib.sha256(c.text.encode("utf-8")).hexdigest()[:16]
    assert chunks[2].section_path == ("Guide", "Part 1")


def test_public_and_empty_acls_are_carried_as_tokens() -> None:
    public = chunk_document(make_doc(["Hi."], acl=Acl(public=True)), count_tokens=word_counts)
    nobody = chunk_document(make_doc(["Hi."], acl=Acl()), count_tokens=word_counts)
    assert public[0].acl == ("public",)
    assert nobody[0].acl == ()


def test_chunk_ids_are_stable_and_unique_per_document() -> None:
    body = " ".join(f"Sentence number {i} is here." for i in range(40))
    doc = make_doc([body, body], doc_id="policy")
    first = chunk_document(doc, max_tokens=20, overlap_tokens=5, count_tokens=word_counts)
    again = chunk_document(doc, max_tokens=20, overlap_tokens=5, count_tokens=word_counts)
    assert first == again
    other = chunk_document(make_doc([body, body], doc_id="policy-2"), 20, 5, word_counts)
    ids = [c.chunk_id for c in first] + [c.chunk_id for c in other]
    assert len(set(ids)) == len(ids)
    assert first[0].chunk_id == "policy-00000"


def test_overlap_must_be_smaller_than_the_budget() -> None:
    with pytest.raises(ValueError, match="overlap_tokens"):
        chunk_document(make_doc(["x."]), max_tokens=10, overlap_tokens=10, count_tokens=word_counts)


def test_document_without_text_has_no_chunks() -> None:
    assert chunk_document(make_doc(["", "  \n "]), count_tokens=word_counts) == []


# --- chunk_document: properties -------------------------------------------------------------------

WORDS = st.text(st.sampled_from(list("abcdefgh")), min_size=1, max_size=22)
ENDINGS = st.sampled_from([". ", "! ", "? ", '." ', ".) ", "\n", "\n\n", " ", ", "])


@st.composite
def bodies(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 25))):
        parts.append(" ".join(draw(st.lists(WORDS, min_size=1, max_size=14))))
        parts.append(draw(ENDINGS))
    return draw(st.sampled_from(["", "  ", "\n"])) + "".join(parts)


@FAST
@given(
    st.lists(bodies(), min_size=1, max_size=3),
    st.integers(3, 30),
    st.integers(0, 12),
    st.booleans(),
)
def test_chunking_invariants_hold_for_random_documents(
    texts: list[str], max_tokens: int, overlap: int, pages: bool
) -> None:
    overlap = min(overlap, max_tokens - 1)
    doc = make_doc(texts, pages=pages)
    chunks = chunk_document(doc, max_tokens, overlap, piece_counts)
    check_invariants(doc, chunks, max_tokens, overlap, piece_counts)
    for c in chunks:  # metadata rides along on every chunk
        assert (c.doc_id, c.title, c.doc_hash, c.acl) == ("doc-1", "The Guide", "abc123", ("group:legal", "user:ann"))


# --- the real MiniLM tokenizer --------------------------------------------------------------------


def test_minilm_token_counts_match_the_word_piece_tokenizer() -> None:
    assert minilm_token_counts([]) == []
    assert minilm_token_counts(["Hello world.", "", "unbelievable"]) == [3, 0, 1]
    # No [CLS]/[SEP]: counts add up over whitespace-separated parts.
    a, b = "Backups run nightly.", "Retention is 35 days!"
    assert minilm_token_counts([f"{a} {b}"]) == [sum(minilm_token_counts([a, b]))]


PROSE = st.lists(
    st.sampled_from(
        [
            "The quarterly report is due on Friday.",
            "Encryption keys rotate every ninety days!",
            "Does the vendor sign a data-processing agreement?",
            "Backups (incremental) run nightly at 02:00 UTC.",
            'The auditor said "approved."',
            "Überprüfung der Zugangsrechte erfolgt jährlich.",
            "See section 4.2.1 for details",
            "Supercalifragilisticexpialidocious" * 12,
            "naïve café résumé déjà-vu",
        ]
    ),
    min_size=1,
    max_size=40,
).map(lambda s: " ".join(s))


@FAST
@given(st.lists(PROSE, min_size=1, max_size=2), st.sampled_from([(16, 4), (32, 8), (64, 0)]))
def test_chunks_fit_the_minilm_budget(texts: list[str], budget: tuple[int, int]) -> None:
    max_tokens, overlap = budget
    doc = make_doc(texts)
    chunks = chunk_document(doc, max_tokens, overlap, minilm_token_counts)
    check_invariants(doc, chunks, max_tokens, overlap, minilm_token_counts)


def test_default_budget_uses_minilm() -> None:
    body = " ".join(["The retention policy keeps customer records for seven years."] * 60)
    doc = make_doc([body])
    chunks = chunk_document(doc)  # 256 tokens, 32 overlap, MiniLM counts
    assert len(chunks) > 1
    counts = minilm_token_counts([c.text for c in chunks])
    assert max(counts) <= 256 and counts[0] > 200  # packed close to the budget, not one sentence each
    check_invariants(doc, chunks, 256, 32, minilm_token_counts)


def test_section_paths_survive_into_search_text() -> None:
    doc = make_doc(["Only sentence."])
    (chunk,) = chunk_document(doc, count_tokens=word_counts)
    assert chunk.search_text == "The Guide > Guide > Part 0\nOnly sentence."
    assert re.fullmatch(r"doc-1-\d{5}", chunk.chunk_id)


@FAST
@given(st.lists(PROSE, min_size=1, max_size=2), st.sampled_from([(24, 4), (48, 8), (256, 32)]))
def test_with_a_window_the_search_text_fits_the_embedder(texts: list[str], budget: tuple[int, int]) -> None:
    window, overlap = budget
    doc = make_doc(texts)
    chunks = chunk_document(doc, window, overlap, minilm_token_counts, window=window)
    head = minilm_token_counts(["The Guide > Guide > Part 0"])[0]
    # The text budget shrinks by the head line and [CLS]/[SEP]; every other invariant still holds.
    check_invariants(doc, chunks, window - head - 2, min(overlap, window - head - 3), minilm_token_counts)
    for c in chunks:
        n = minilm_token_counts([c.search_text])[0] + 2
        assert n <= window or len(c.text.split()) == 1, (n, c.search_text)


def test_a_head_longer_than_half_the_window_keeps_half_the_budget_for_text() -> None:
    body = " ".join(f"w{i}." for i in range(40))
    doc = make_doc([body])  # head "The Guide > Guide > Part 0" is 6 words
    chunks = chunk_document(doc, 10, 2, word_counts, window=10)
    assert max(word_counts([c.text for c in chunks])) == 5  # max(10 - 6 - 2, 10 // 2)
    check_invariants(doc, chunks, 5, 2, word_counts)
