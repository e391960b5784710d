"""The extractive answerer: quotes supporting sentences with correct citation numbers, or abstains."""

from __future__ import annotations

import re

from ragtune.answer.base import ABSTAIN_TEXT
from ragtune.answer.extractive import ExtractiveAnswerer
from ragtune.core import Chunk, Hit, Principal
from ragtune.models.embedder import MiniLMEmbedder
from ragtune.retrieval.hybrid import Retrieval


def chunk(cid: str, text: str) -> Chunk:
    return Chunk(chunk_id=cid, doc_id=cid, source_path=f"/{cid}.md", title=cid, section_path=("S",), page=None,
                 char_start=0, char_end=len(text), text=text, content_hash="", doc_hash="", mtime=0.0,
                 acl=("public",))


def hits(embedder: MiniLMEmbedder, question: str, chunks: list[Chunk]) -> list[Hit]:
    qv = embedder.embed([question])[0]
    sims = embedder.embed([c.search_text for c in chunks]) @ qv
    return [Hit(c, 1.0 / (i + 1), dense_score=float(s)) for i, (c, s) in enumerate(zip(chunks, sims, strict=True))]


def test_answer_quotes_the_supporting_sentence_with_its_citation(embedder: MiniLMEmbedder) -> None:
    q = "How long are backups retained?"
    cs = [
        chunk("a", "The office opens at nine. Backups are retained for ninety days in two regions."),
        chunk("b", "Parking is free on weekends. The cafeteria serves lunch from noon."),
    ]
    ans = ExtractiveAnswerer(embedder, max_sentences=1).answer(q, Retrieval(hits(embedder, q, cs)), Principal("u"))
    assert not ans.abstained
    assert ans.text == "Backups are retained for ninety days in two regions. [1]"
    assert [(c.number, c.chunk.chunk_id) for c in ans.citations] == [(1, "a")]


def test_every_citation_number_in_the_text_exists(embedder: MiniLMEmbedder) -> None:
    q = "How long are backups kept, and where are invoices archived?"
    cs = [
        chunk("a", "Backups are kept for ninety days."),
        chunk("b", "The cafeteria serves lunch from noon."),
        chunk("c", "Invoices are archived in the Frankfurt office."),
    ]
    ans = ExtractiveAnswerer(embedder, support_margin=1.0).answer(q, Retrieval(hits(embedder, q, cs)),
                                                                  Principal("u"))
    numbers = {int(n) for n in re.findall(r"\[(\d+)\]", ans.text)}
    assert numbers == {c.number for c in ans.citations} and len(numbers) == 2
    assert {c.chunk.chunk_id for c in ans.citations} == {"a", "c"}
    for c in ans.citations:
        assert c.snippet in c.chunk.text and c.snippet in ans.text


WRAPPED = chunk("travel", "Travel Expenses\nHotel stays are reimbursed up to 180 EUR per night in\ncapital cities and "
                          "130 EUR elsewhere. Corporate cards have a monthly limit of\n5,000 EUR. Receipts are "
                          "uploaded within thirty days of the trip.")


def test_a_hard_wrapped_sentence_is_quoted_whole_and_alone(embedder: MiniLMEmbedder) -> None:
    q = "What is the hotel limit in Paris?"
    ans = ExtractiveAnswerer(embedder).answer(q, Retrieval(hits(embedder, q, [WRAPPED])), Principal("u"))
    # The whole sentence across the line break, on one line, and nothing else: one sentence answers it.
    assert ans.text == "Hotel stays are reimbursed up to 180 EUR per night in capital cities and 130 EUR elsewhere. [1]"
    assert ans.citations[0].snippet in WRAPPED.text


def test_headings_are_never_quoted(embedder: MiniLMEmbedder) -> None:
    heading = Chunk(**{**WRAPPED.__dict__, "section_path": ("Data Retention - Backups",),
                       "text": "Data Retention - Backups\n\nAll backups are deleted automatically after ninety days."})
    q = "What happens to data retention backups?"
    ans = ExtractiveAnswerer(embedder, support_margin=1.0).answer(q, Retrieval(hits(embedder, q, [heading])),
                                                                  Principal("u"))
    assert ans.text == "All backups are deleted automatically after ninety days. [1]"


def test_abstains_when_no_accessible_sentence_answers(embedder: MiniLMEmbedder) -> None:
    # The relevance gate is opened wide, so the sentence rule alone must refuse the unrelated quotes.
    q = "What is the hotel limit in Paris?"
    cs = [chunk("refunds", "Refunds for purchases are issued by the merchant. A refund reaches your account within "
                           "five working days."),
          chunk("pin", "Your PIN is blocked after three wrong attempts. Unblock it at any cash machine.")]
    ans = ExtractiveAnswerer(embedder, min_relevance=-1.0).answer(q, Retrieval(hits(embedder, q, cs)),
                                                                  Principal("u"))
    assert ans.abstained and ans.text == ABSTAIN_TEXT
    # ... and the same answerer does answer when the policy is readable.
    assert not ExtractiveAnswerer(embedder, min_relevance=-1.0).answer(
        q, Retrieval(hits(embedder, q, [*cs, WRAPPED])), Principal("u")).abstained


def test_abstains_below_the_relevance_threshold(embedder: MiniLMEmbedder) -> None:
    q = "What is the capital of Mongolia?"
    cs = [chunk("a", "Backups are retained for ninety days in two regions.")]
    ans = ExtractiveAnswerer(embedder, min_relevance=0.35).answer(q, Retrieval(hits(embedder, q, cs)), Principal("u"))
    assert ans.abstained and ans.text == ABSTAIN_TEXT and ans.citations == ()
    assert ExtractiveAnswerer(embedder).answer(q, Retrieval([]), Principal("u")).abstained


def test_a_sentence_repeated_by_overlapping_chunks_is_quoted_once(embedder: MiniLMEmbedder) -> None:
    text = "Backups are kept for ninety days in two regions. Restores take one hour."
    q = "How long are backups kept?"
    answer = ExtractiveAnswerer(embedder, max_sentences=3).answer(
        q, Retrieval(hits(embedder, q, [chunk("a", text),
                                        chunk("b", "Backups are kept for ninety days in two regions.")])),
        Principal("u"))
    assert answer.text.count("Backups are kept for ninety days") == 1
