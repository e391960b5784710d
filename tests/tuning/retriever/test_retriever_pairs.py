"""Pairs generated from the index: never across ACLs, never a negative from the positive's document."""

from __future__ import annotations

import random

from retriever_corpus import HR, PUBLIC, Corpus

from ragtune.project import Project
from ragtune.tuning.retriever.biencoder import make_batches
from ragtune.tuning.retriever.corpus import read_corpus
from ragtune.tuning.retriever.pairs import PairSet, TrainingPair, generate_pairs, split_by_document


def test_pairs_and_negatives_never_cross_acls(corpus_project: Corpus, pair_set: PairSet) -> None:
    store = Project.open(corpus_project.project).store
    chunks = read_corpus(store).chunks
    pairs = pair_set.pairs
    assert pairs and {p.kind for p in pairs} == {"heading", "sentence"}
    public, hr = ("public",), ("group:hr",)
    assert {p.acl for p in pairs} == {public, hr}  # hr chunks are mined as hr, public ones as public
    for p in pairs:
        anchor = chunks[p.chunk_id]
        assert tuple(sorted(anchor.acl)) == p.acl
        if p.negative_id is not None:
            negative = chunks[p.negative_id]
            assert tuple(sorted(negative.acl)) == p.acl  # exactly the anchor's ACL, never merely readable
            assert negative.doc_id != p.doc_id  # never the positive's own document
    for p in (p for p in pairs if p.acl == public):  # no hr-only text anywhere in a public example
        text = " ".join((p.query, p.positive, p.negative or ""))
        assert not any(name in text for name in corpus_project.hr_names)
    assert not any("Quillon" in " ".join((p.query, p.positive, p.negative or "")) for p in pairs)
    c = pair_set.counts
    assert c["unreadable_chunks"] == 1  # the memo nobody may read gives no pair
    assert c["negatives_bm25"] > 0 and c["negatives_dense"] > 0
    assert c["pairs"] == len(pairs) == c["heading_pairs"] + c["sentence_pairs"]
    assert c["without_negative"] == sum(p.negative is None for p in pairs)
    assert len({p.doc_id for p in pairs}) == PUBLIC + HR


def test_pairs_are_deterministic_and_capped(corpus_project: Corpus, pair_set: PairSet) -> None:
    proj = Project.open(corpus_project.project)
    again = generate_pairs(proj.store, proj.embedder, max_pairs=1000, seed=0, negatives=False)
    assert [(p.query, p.positive) for p in again.pairs] == [(p.query, p.positive) for p in pair_set.pairs]
    capped = generate_pairs(proj.store, proj.embedder, max_pairs=10, seed=0, negatives=False)
    assert len(capped.pairs) == 10 and capped.counts["capped"] == len(pair_set.pairs) - 10
    other = generate_pairs(proj.store, proj.embedder, max_pairs=10, seed=1, negatives=False)
    assert [p.query for p in other.pairs] != [p.query for p in capped.pairs]


def test_batches_hold_one_acl_and_distinct_documents(pair_set: PairSet) -> None:
    batches = make_batches(pair_set.pairs, 8, random.Random(0))
    assert batches
    for batch in batches:
        assert len({p.acl for p in batch}) == 1  # in-batch negatives share the anchor's ACL too
        assert len({p.doc_id for p in batch}) == len(batch)
        assert len(batch) <= 8


def test_a_query_with_two_gold_documents_never_shares_a_batch() -> None:
    """Its other gold document would otherwise be one of its in-batch negatives."""
    pairs = [TrainingPair(query=f"q{i // 2}", positive=f"text {i}", kind="labelled", chunk_id=f"d{i}#0",
                          doc_id=f"d{i}", acl=("public",)) for i in range(12)]
    batches = make_batches(pairs, 4, random.Random(0))
    assert sum(len(b) for b in batches) == 12
    for batch in batches:
        assert len({p.query for p in batch}) == len(batch)


def test_answer_level_pairs_of_one_document_share_batches_without_false_negatives() -> None:
    """One long document (a policy) read by one group: its passages are each other's in-batch negatives when the
    labels name the answer, but never a passage that holds another member's answer, nor one chunk twice."""
    passages = [f"section {i}: the retention period is {i} days" for i in range(10)]
    pairs = [TrainingPair(query=f"question {n}", positive=passages[n % 10], kind="labelled",
                          chunk_id=f"policy#{n % 10}", doc_id="policy", acl=("group:legal",), negative="other text",
                          answers=(f"{n % 10} days",)) for n in range(20)]
    # one more passage holds the answers of passages 3 and 4: it never shares a batch with them
    pairs.append(TrainingPair(query="late question", positive="both 3 days and 4 days apply", kind="labelled",
                              chunk_id="policy#x", doc_id="policy", acl=("group:legal",), negative="other text",
                              answers=("both 3 days",)))
    batches = make_batches(pairs, 8, random.Random(0))
    assert sum(len(b) for b in batches) == len(pairs)
    assert max(len(b) for b in batches) > 1  # the same document, yet batched together
    for batch in batches:
        assert len({p.chunk_id for p in batch}) == len(batch)
        for p in batch:
            for other in batch:
                if other is not p:
                    assert not any(a.casefold() in other.positive.casefold() for a in p.answers)
    # a document-level pair (no answers) of the same document still shares its batch with none of them
    doc_level = TrainingPair(query="doc question", positive="section 5 again", kind="labelled",
                             chunk_id="policy#5b", doc_id="policy", acl=("group:legal",), negative="other text")
    for batch in make_batches([*pairs, doc_level], 8, random.Random(1)):
        if doc_level in batch:
            assert batch == [doc_level]


def test_held_out_split_is_by_document(pair_set: PairSet) -> None:
    train, held = split_by_document(pair_set.pairs, 0.25, seed=0)
    assert held and train
    assert not {p.doc_id for p in train} & {p.doc_id for p in held}
    assert split_by_document(pair_set.pairs[:3], 0.25)[1] == []  # too few documents: nothing held out
