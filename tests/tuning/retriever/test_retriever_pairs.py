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


def test_held_out_split_is_by_document(pair_set: PairSet) -> None:
    train, held = split_by_document(pair_set.pairs, 0.25, seed=0)
    assert held and train
    assert not {p.doc_id for p in train} & {p.doc_id for p in held}
    assert split_by_document(pair_set.pairs[:3], 0.25)[1] == []  # too few documents: nothing held out
