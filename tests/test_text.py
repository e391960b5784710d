"""The shared text rules: one copy each, used by chunking, the answerers and the groundedness checker."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ragtune import text as T
from ragtune.answer import generative
from ragtune.core import Chunk
from ragtune.ingest import chunking
from ragtune.verify import groundedness


def test_sentences_follow_sentences_not_lines() -> None:
    text = ("Hotel stays are reimbursed up to 180 EUR per night in\ncapital cities and 130 EUR elsewhere. Cards\n"
            "have a limit of 5,000 EUR, e.g. for travel. See Sec. 4.2 of the U.S. policy.\n\nA new paragraph")
    assert T.split_sentences(text) == [
        "Hotel stays are reimbursed up to 180 EUR per night in\ncapital cities and 130 EUR elsewhere.",
        "Cards\nhave a limit of 5,000 EUR, e.g. for travel.", "See Sec. 4.2 of the U.S. policy.", "A new paragraph"]
    assert T.split_sentences('He said "stop." Then (quietly) left!  Next [1]') == [
        'He said "stop."', "Then (quietly) left!", "Next [1]"]
    assert T.split_sentences("  \n ") == []
    assert T.sentence_spans("Version 4.2.1 ships.") == [(0, 20)]


def test_headings_list_items_and_table_rows_end_at_their_line() -> None:
    text = ("# Travel\nData Retention - Backups\nAll backups are deleted. Restores take\nan hour.\n"
            "- first item\n- second item\n1. numbered\n| a | b |\n3.1 Travel Expenses\nText.")
    segments = [(text[s:e], heading) for s, e, heading in T.sentence_segments(text)]
    assert segments == [
        ("# Travel", True), ("Data Retention - Backups", True), ("All backups are deleted.", False),
        ("Restores take\nan hour.", False), ("- first item", False), ("- second item", False),
        ("1. numbered", False), ("| a | b |", False), ("3.1 Travel Expenses", True), ("Text.", False)]


def test_a_wrapped_line_that_looks_like_a_title_continues_its_sentence() -> None:
    # "Finance Team Of The Group" would read as a heading on its own, but the line before it is cut mid-sentence.
    text = "Expenses above the limit must be approved in writing by the\nFinance Team Of The Group\nbefore the trip."
    assert T.split_sentences(text) == [text]


def _wrap(text: str, width: int = 80) -> str:
    return "\n".join(line if line.startswith("#") or not line.strip()
                     else textwrap.fill(line, width, break_on_hyphens=False) for line in text.split("\n"))


@pytest.mark.parametrize("path", sorted((Path(__file__).parent.parent / "examples/data/policies/corpus")
                                        .rglob("*.md"))[:6], ids=lambda p: p.name)
def test_hard_wrapping_a_policy_changes_none_of_its_sentences(path: Path) -> None:
    text = path.read_text(encoding="utf-8").split("---\n", 2)[2]  # the body, without front matter
    def sentences(t: str) -> list[str]:
        return [" ".join(t[s:e].split()) for s, e in T.sentence_spans(t)]
    assert sentences(_wrap(text)) == sentences(text)
    assert len(sentences(text)) > 20


def test_chunking_and_verification_use_the_one_sentence_splitter() -> None:
    assert chunking.sentence_spans is T.sentence_spans
    assert groundedness.sentence_spans is T.sentence_spans


def test_content_terms_are_stemmed_words_without_stop_words() -> None:
    assert T.content_terms("The Supported claims, were SUPPORTED!") == {"suppor", "claims"}
    # The answerers' short list keeps words the long list drops ("were", "not").
    assert T.content_terms("were not supported", T.QUERY_STOP_WORDS) == {"were", "not", "suppor"}


def test_term_overlap_is_the_share_of_the_sentence_terms_in_the_evidence() -> None:
    assert T.term_overlap("Backups run nightly", "Nightly backups.") == pytest.approx(2 / 3)
    assert T.term_overlap("the and of", "anything") == 1.0  # nothing claimed
    assert T.term_overlap("Backups", "") == 0.0


def test_citation_markers() -> None:
    text = "Kept ninety days [1]. Restored in an hour [2, 3][1]. Not [a] marker [x]."
    assert [T.citation_numbers(g) for g in T.CITATION.findall(text)] == [[1], [2, 3], [1]]
    assert T.CITATION.sub("", text) == "Kept ninety days . Restored in an hour . Not [a] marker [x]."
    lead = T.LEADING_CITATIONS.match(" [1] [2,4]Next sentence.")
    assert lead is not None and lead.group(0) == " [1] [2,4]"
    assert T.LEADING_CITATIONS.match("Next [1]") is None


def test_head_line_leaves_out_empty_parts() -> None:
    assert T.head_line("Guide", ("Security", "", "Backups")) == "Guide > Security > Backups"
    assert T.head_line("", ("Security",)) == "Security"
    assert T.head_line("", ()) == ""


def test_search_text_starts_with_the_head_line() -> None:
    chunk = Chunk(chunk_id="d-00000", doc_id="d", source_path="p", title="Guide", section_path=("Backups",),
                  page=None, char_start=0, char_end=4, text="Body", content_hash="h", doc_hash="h", mtime=0.0,
                  acl=("public",))
    assert chunk.search_text == "Guide > Backups\nBody"
    assert chunk.search_text.split("\n")[0] == T.head_line(chunk.title, chunk.section_path)


def test_greedy_run_takes_what_fits_and_always_one() -> None:
    assert T.greedy_run([3, 3, 3], 0, 7) == 2
    assert T.greedy_run([3, 3, 3], 2, 7) == 3
    assert T.greedy_run([9, 1], 0, 5) == 1  # an over-long first piece still makes a run
    assert T.greedy_run([1, 1], 2, 5) == 2  # nothing left


@given(st.lists(st.integers(0, 10), min_size=1, max_size=20), st.integers(1, 20))
def test_greedy_runs_cover_every_piece_within_budget(counts: list[int], budget: int) -> None:
    start, covered = 0, 0
    while start < len(counts):
        end = T.greedy_run(counts, start, budget)
        assert end > start
        assert end - start == 1 or sum(counts[start:end]) <= budget
        assert end == len(counts) or sum(counts[start : end + 1]) > budget  # it stops only when full
        covered += end - start
        start = end
    assert covered == len(counts)


def test_the_generative_answerer_parses_the_shared_markers() -> None:
    cleaned, used, flags = generative.verify_citations("Fact [2, 1]. Other [9].", [True, True])
    assert (cleaned, used) == ("Fact [2][1]. Other.", [2, 1])
    assert flags == ["citation [9] dropped: there is no source 9"]
