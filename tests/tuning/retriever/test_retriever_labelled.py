"""Labelled queries as retriever training data (issue 17): BEIR queries + qrels or question → gold JSONL, the gold
document's best chunk as positive, hard negatives never across an ACL nor from a gold document, skips counted,
bad input refused, the by-query held-out split, and assembling them with the corpus pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import write
from retriever_corpus import LABELLED_QUERIES, write_labelled_files

from ragtune.errors import DataError
from ragtune.evaluation.data import DocumentMap, EvalQuery, resolve_qrels
from ragtune.project import Project
from ragtune.tuning.retriever.corpus import acl_principal, read_corpus
from ragtune.tuning.retriever.labelled import labelled_pairs
from ragtune.tuning.retriever.pairs import PairSet, TrainingPair, holdout_unit, split_by_document
from ragtune.tuning.retriever.sources import assemble_pairs, describe_counts

HR = ("group:hr",)


def _pairs(project: Path, tmp_path: Path, **kw: object) -> tuple[Project, PairSet]:
    proj = Project.open(project)
    queries, qrels = write_labelled_files(tmp_path)
    return proj, labelled_pairs(proj.store, proj.embedder, queries, qrels, **kw)  # type: ignore[arg-type]


def _source(proj: Project, chunk_id: str) -> str:
    principal = acl_principal(HR + ("public",))
    assert principal is not None
    return Path(proj.store.get_chunks([chunk_id], principal)[chunk_id].source_path).name


def test_positive_is_the_gold_documents_best_chunk(labelled_project: Path, tmp_path: Path) -> None:
    proj, ps = _pairs(labelled_project, tmp_path)
    q1 = next(p for p in ps.pairs if p.query == LABELLED_QUERIES["q1"])
    assert q1.kind == "labelled" and _source(proj, q1.chunk_id) == "payroll.md" and q1.acl == HR
    # payroll.md has a title chunk, "Salary bands" and "Overtime claims": the query is about the last one
    assert "Overtime claims" in q1.positive and "salary bands" not in q1.positive
    chunk = read_corpus(proj.store).chunks[q1.chunk_id]
    assert q1.positive == chunk.search_text  # the text as embedded, head line included
    q2 = next(p for p in ps.pairs if p.query == LABELLED_QUERIES["q2"])  # gold given as a path: hr/leave.md
    assert _source(proj, q2.chunk_id) == "leave.md" and "twenty weeks" in q2.positive


def test_negatives_never_cross_the_acl_nor_come_from_a_gold_document(labelled_project: Path,
                                                                     tmp_path: Path) -> None:
    proj, ps = _pairs(labelled_project, tmp_path)
    corpus = read_corpus(proj.store)
    by_text = {c.search_text: c for c in corpus.chunks.values()}
    # the best BM25 hit for q1, searched as the hr principal, is the public FAQ (it repeats the query's words)
    principal = acl_principal(HR)
    assert principal is not None
    top = proj.store.lexical_search(LABELLED_QUERIES["q1"], principal, 5)[0][0]
    assert Path(corpus.chunks[top].source_path).name == "overtime-faq.md"
    for p in ps.pairs:
        negatives = [by_text[t] for t in (p.negative, *p.extra_negatives) if t is not None]
        assert negatives, p.query
        gold = {"payroll.md", "leave.md"} if p.query == LABELLED_QUERIES["q5"] else {_source(proj, p.chunk_id)}
        for n in negatives:
            assert tuple(n.acl) == HR, (p.query, n.source_path)  # never the public FAQ, whatever BM25 says
            assert Path(n.source_path).name not in gold and n.search_text != p.positive
        assert len({n.chunk_id for n in negatives}) == len(negatives) <= 4
    q5 = [p for p in ps.pairs if p.query == LABELLED_QUERIES["q5"]]
    assert len(q5) == 2 and all("Benefits guide" in (p.negative or "") for p in q5)
    one = labelled_pairs(proj.store, proj.embedder, *write_labelled_files(tmp_path / "again"), negatives=1)
    assert all(not p.extra_negatives for p in one.pairs) and one.counts["labelled_extra_negatives"] == 0


def test_unindexed_and_unreadable_gold_documents_are_counted(labelled_project: Path, tmp_path: Path) -> None:
    _, ps = _pairs(labelled_project, tmp_path)
    c = ps.counts
    # q3's gold is the memo nobody may read, q4's is not indexed; q1 (payroll), q2, q5 (payroll, leave) give 4
    assert c["gold_unreadable"] == 1 and c["gold_not_indexed"] == 1
    assert c["labelled_queries"] == 4 and c["labelled_pairs"] == c["pairs"] == 4 == len(ps.pairs)
    assert LABELLED_QUERIES["q3"] not in {p.query for p in ps.pairs}  # the memo's text never becomes a pair
    assert all("Quillon" not in p.positive and "Quillon" not in (p.negative or "") for p in ps.pairs)


def test_question_file_gives_the_same_pair(labelled_project: Path, tmp_path: Path) -> None:
    proj = Project.open(labelled_project)
    questions = write(tmp_path / "questions.jsonl",
                      json.dumps({"question": LABELLED_QUERIES["q1"], "gold": "payroll"}) + "\n")
    ps = labelled_pairs(proj.store, proj.embedder, questions, None)
    [pair] = ps.pairs
    _, beir = _pairs(labelled_project, tmp_path)
    assert pair.chunk_id == next(p.chunk_id for p in beir.pairs if p.query == LABELLED_QUERIES["q1"])


def test_an_answer_text_picks_the_chunk_holding_it_and_other_passages_become_negatives(
        labelled_project: Path, tmp_path: Path) -> None:
    proj = Project.open(labelled_project)
    corpus = read_corpus(proj.store)
    by_text = {c.search_text: c for c in corpus.chunks.values()}
    # the query is about overtime (its best chunk is "Overtime claims"), but the answer is in "Salary bands"
    lines = [{"question": LABELLED_QUERIES["q1"], "gold": "payroll", "answer": "NINE salary\nbands"},
             {"question": LABELLED_QUERIES["q2"], "gold": "leave", "answer": ["no such words anywhere"]}]
    questions = write(tmp_path / "answers.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    ps = labelled_pairs(proj.store, proj.embedder, questions, None)
    q1 = next(p for p in ps.pairs if p.query == LABELLED_QUERIES["q1"])
    assert "nine salary bands" in q1.positive and "Overtime claims for" not in q1.positive
    negatives = [by_text[t] for t in (q1.negative, *q1.extra_negatives) if t is not None]
    assert negatives and all("nine salary bands" not in n.text for n in negatives)
    assert all(tuple(n.acl) == HR for n in negatives)  # still never the public FAQ
    # the gold document's other passage is a negative now: it does not hold the answer
    assert any(Path(n.source_path).name == "payroll.md" and "Overtime claims" in n.text for n in negatives)
    # an answer no chunk holds: counted, and the gold document's best chunk is the positive
    assert ps.counts["answer_not_found"] == 1
    q2 = next(p for p in ps.pairs if p.query == LABELLED_QUERIES["q2"])
    assert "twenty weeks" in q2.positive
    # q1 is an answer-level label (batching may put its document's other passages beside it); q2 fell back to
    # its document's best chunk, so it stays a document-level label
    assert q1.answers == ("NINE salary bands",) and q2.answers == ()  # as read (whitespace collapsed)


def test_bad_input_is_refused_clearly(labelled_project: Path, tmp_path: Path) -> None:
    proj = Project.open(labelled_project)
    queries, qrels = write_labelled_files(tmp_path)

    def refused(q: Path, r: Path | None) -> str:
        with pytest.raises(DataError) as info:
            labelled_pairs(proj.store, proj.embedder, q, r)
        return str(info.value)

    assert "no such file" in refused(tmp_path / "nope.jsonl", qrels)
    assert "no such file" in refused(queries, tmp_path / "nope.tsv")
    bad = write(tmp_path / "bad.jsonl", '{"_id": "q1", "text": "fine"}\n{"_id": "q2", "text": \n')
    assert "bad.jsonl:2: not valid JSON" in refused(bad, qrels)
    other = write(tmp_path / "other.tsv", "query-id\tcorpus-id\tscore\nx1\tpayroll\t1\n")
    message = refused(queries, other)
    assert "no query id with a relevant document" in message and "'x1'" in message and "'q1'" in message
    lost = write(tmp_path / "lost.tsv", "query-id\tcorpus-id\tscore\nq3\tmemo\t1\nq4\tghost\t1\n")
    message = refused(queries, lost)
    assert "no usable labelled pair" in message and "1 are not in the index" in message
    assert "1 are readable by nobody" in message
    assert "needs --qrels" in refused(queries, None)  # a BEIR queries file given as a question file


def test_lenient_resolution_lists_unknown_gold_documents() -> None:
    docs = DocumentMap(ids={"a": "doc-a"}, stems={"a": ["doc-a"]})
    queries = [EvalQuery("1", "one"), EvalQuery("2", "two")]
    qrels = {"1": {"a": 1, "gone": 1, "judged-out": 0}, "2": {"gone": 2}}
    with pytest.raises(DataError, match="not in the index"):
        resolve_qrels(queries, qrels, docs)  # `ragtune eval` stays strict
    r = resolve_qrels(queries, qrels, docs, strict=False)
    assert [q.qid for q in r.queries] == ["1"] and r.qrels == {"1": {"doc-a": 1}}
    assert sorted(r.unknown) == [("1", "gone"), ("2", "gone")]  # grade 0 judgements are not gold
    with pytest.raises(DataError, match="do the query ids"):
        resolve_qrels([EvalQuery("9", "nine")], qrels, docs, strict=False)


def _pair(query: str, doc: str, kind: str) -> TrainingPair:
    return TrainingPair(query, f"text of {doc}", kind, f"{doc}-c", doc, ("public",))


def test_labelled_pairs_are_held_out_by_query() -> None:
    corpus = [_pair(f"sentence {i}", f"d{i % 7}", "sentence") for i in range(30)]
    labelled = [_pair(f"question {i}", f"d{i % 3}", "labelled") for i in range(10)]
    labelled += [_pair("question 0", "d5", "labelled")]  # one query, two gold documents: held out together
    train, held = split_by_document(corpus + labelled, 0.3, seed=1)
    assert holdout_unit(corpus + labelled) == "query" and len({p.query for p in held}) == 3
    assert all(p.kind == "labelled" for p in held) and all(p in train for p in corpus)
    assert not {p.query for p in held} & {p.query for p in train}
    assert {p.doc_id for p in held} & {p.doc_id for p in train}  # by query, not by document
    assert len(train) + len(held) == 41
    few = corpus + labelled[:4]  # under 5 labelled queries: the document split, as before
    assert holdout_unit(few) == "document"
    train, held = split_by_document(few, 0.3, seed=1)
    assert not {p.doc_id for p in held} & {p.doc_id for p in train}


def test_assemble_adds_labelled_pairs_to_the_corpus_pairs(labelled_project: Path, tmp_path: Path) -> None:
    proj = Project.open(labelled_project)
    queries, qrels = write_labelled_files(tmp_path)
    both = assemble_pairs(proj, queries=queries, qrels=qrels, max_pairs=7)
    c = both.counts
    assert c["labelled_pairs"] == 4 and c["corpus_pairs"] == 3 and c["pairs"] == len(both.pairs) == 7
    assert [p.kind for p in both.pairs[:4]] == ["labelled"] * 4 and c["capped"] > 0
    lines = describe_counts(c)
    assert lines[0].startswith("labelled pairs: 4 from 4 judged queries") and "1 gold documents not in" in lines[0]
    assert lines[-2].startswith("corpus pairs: 3") and lines[-1] == "pairs: 7 in all"
    only = assemble_pairs(proj, queries=queries, qrels=qrels, corpus_pairs=False)
    assert {p.kind for p in only.pairs} == {"labelled"} and "corpus_pairs" not in only.counts
    capped = assemble_pairs(proj, queries=queries, qrels=qrels, max_pairs=3)
    assert len(capped.pairs) == 3 and capped.counts["labels_capped"] == 1 and "corpus_pairs" not in capped.counts
    with pytest.raises(DataError, match="--qrels needs --queries"):
        assemble_pairs(proj, qrels=qrels)
    with pytest.raises(DataError, match="nothing to train on"):
        assemble_pairs(proj, corpus_pairs=False)
