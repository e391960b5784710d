"""Evaluation inputs: BEIR queries/qrels and question files, corpus ids → documents, and the paired bootstrap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import write

from ragtune.errors import DataError
from ragtune.evaluation.bootstrap import paired_bootstrap
from ragtune.evaluation.data import (
    EvalQuery,
    document_map,
    load_qrels,
    load_queries,
    load_questions,
    resolve_qrels,
)
from ragtune.store.base import DocRecord

ROOT = Path("/corpus/docs")


def record(path: str, doc_id: str) -> DocRecord:
    return DocRecord(doc_id=doc_id, source_path=str(ROOT / path), title="", doc_hash="h", acl=("public",),
                     mtime=0.0, synced_at=0.0, chunks=1)


DOCS = [record("handbook.md", "d1"), record("security/backups.md", "d2"), record("notes/backups.md", "d3"),
        record("finance/invoices.txt", "d4")]


def test_queries_and_qrels_in_beir_layout(tmp_path: Path) -> None:
    q = write(tmp_path / "q.jsonl", '{"_id": "1", "text": "vacation days"}\n\n{"_id": 2, "text": "backups"}\n')
    assert load_queries(q) == [EvalQuery("1", "vacation days"), EvalQuery("2", "backups")]  # numeric ids as text
    qrels = write(tmp_path / "qrels.tsv", "query-id\tcorpus-id\tscore\n1\thandbook\t1\n2\tsecurity/backups.md\t2\n"
                  "2\thandbook\t0\n")
    assert load_qrels(qrels) == {"1": {"handbook": 1}, "2": {"security/backups.md": 2, "handbook": 0}}
    headless = write(tmp_path / "headless.tsv", "1 handbook 1\n2 invoices 1\n")  # no header: nothing dropped
    assert load_qrels(headless) == {"1": {"handbook": 1}, "2": {"invoices": 1}}


@pytest.mark.parametrize(("text", "message"), [
    ('{"_id": "1", "text": "ok"}\n{"_id": "2", "text": \n', "q.jsonl:2: not valid JSON"),
    ('{"_id": "1", "text": "ok"}\n["a"]\n', "q.jsonl:2: expected a JSON object"),
    ('{"_id": "1"}\n', "q.jsonl:1: missing or empty 'text'"),
    ('{"_id": "1", "text": "a"}\n{"_id": "1", "text": "b"}\n', "q.jsonl:2: query id '1' repeats line 1"),
    ("\n\n", "no queries in the file"),
])
def test_bad_query_files_name_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_queries(write(tmp_path / "q.jsonl", text))


@pytest.mark.parametrize(("text", "message"), [
    ("query-id\tcorpus-id\tscore\n1\thandbook\n", "qrels.tsv:2: expected 3 tab-separated columns"),
    ("query-id\tcorpus-id\tscore\n1\thandbook\t1\n1\tx\tvery\n", "qrels.tsv:3: the score 'very' is not a number"),
    ("query-id\tcorpus-id\tscore\n1\thandbook\t-1\n", "qrels.tsv:2: the score -1 is negative"),
    ("", "empty qrels file"),
    ("query-id\tcorpus-id\tscore\n", "no judgements after the header"),
])
def test_bad_qrels_name_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_qrels(write(tmp_path / "qrels.tsv", text))


def test_question_files_with_gold_documents(tmp_path: Path) -> None:
    path = write(tmp_path / "qs.jsonl", '{"question": "vacation?", "gold": "handbook"}\n'
                 '{"id": "b", "question": "backups?", "gold": ["security/backups.md", "notes/backups"]}\n')
    queries, qrels = load_questions(path)
    assert queries == [EvalQuery("line1", "vacation?"), EvalQuery("b", "backups?")]
    assert qrels == {"line1": {"handbook": 1}, "b": {"security/backups.md": 1, "notes/backups": 1}}
    with pytest.raises(DataError, match=r"qs.jsonl:1: 'gold' must be a document id or path"):
        load_questions(write(tmp_path / "qs.jsonl", '{"question": "q", "gold": 3}\n'))
    answered = write(tmp_path / "qa.jsonl", '{"question": "q", "gold": "a", "answer": " ten\\n days "}\n'
                     '{"question": "r", "gold": "a", "answer": ["x", "y z"]}\n')
    assert [q.answers for q in load_questions(answered)[0]] == [("ten days",), ("x", "y z")]
    with pytest.raises(DataError, match=r"qs.jsonl:1: 'answer' must be the answer text"):
        load_questions(write(tmp_path / "qs.jsonl", '{"question": "q", "gold": "a", "answer": ["ok", ""]}\n'))


def test_corpus_ids_by_stem_and_by_relative_path() -> None:
    m = document_map(DOCS, [ROOT])
    assert m.resolve("handbook") == "d1"  # the stem
    assert m.resolve("handbook.md") == "d1"  # the path relative to the root
    assert m.resolve("security/backups.md") == "d2" and m.resolve("notes/backups") == "d3"  # with or without suffix
    assert m.resolve("invoices") == "d4" and m.resolve("finance/invoices.txt") == "d4"
    assert m.resolve("missing") is None
    assert m.labels == {"d1": "handbook.md", "d2": "security/backups.md", "d3": "notes/backups.md",
                        "d4": "finance/invoices.txt"}


def test_an_ambiguous_stem_is_an_error_naming_both_files() -> None:
    m = document_map(DOCS, [ROOT])
    with pytest.raises(DataError, match="ambiguous") as info:
        m.resolve("backups")
    assert str(ROOT / "security/backups.md") in str(info.value) and str(ROOT / "notes/backups.md") in str(info.value)


def test_unknown_documents_are_listed_with_their_count() -> None:
    m = document_map(DOCS, [ROOT])
    qrels = {"1": {"handbook": 1, **{f"gone{i}": 1 for i in range(7)}}}
    with pytest.raises(DataError, match=r"the qrels name 7 document\(s\) not in the index: 'gone0', 'gone1', "
                                        r"'gone2', 'gone3', 'gone4' and 2 more"):
        resolve_qrels([EvalQuery("1", "q")], qrels, m)


def test_qrels_queries_missing_from_the_query_file_are_counted_and_unjudged_ones_left_out() -> None:
    m = document_map(DOCS, [ROOT])
    queries = [EvalQuery("1", "a"), EvalQuery("2", "b"), EvalQuery("3", "c")]
    qrels = {"1": {"handbook": 1}, "2": {"invoices": 0}, "9": {"invoices": 1}, "8": {"handbook": 2}}
    r = resolve_qrels(queries, qrels, m)
    assert r.missing_queries == ["8", "9"] and r.unjudged_queries == 2  # 2: grade 0 only; 3: no judgement
    assert [q.qid for q in r.queries] == ["1"] and r.qrels == {"1": {"d1": 1}}
    with pytest.raises(DataError, match="no query of the query file has a relevant document"):
        resolve_qrels([EvalQuery("3", "c")], qrels, m)


def test_paired_bootstrap_covers_the_true_difference_and_is_seeded() -> None:
    rng = np.random.default_rng(42)
    a = rng.uniform(0, 1, 400)
    b = a + 0.1 + rng.normal(0, 0.2, 400)  # true mean difference 0.1
    ci = paired_bootstrap(a, b, resamples=2000, seed=7)
    assert ci.low < 0.1 < ci.high and ci.significant and ci.queries == 400
    assert abs(ci.mean - float((b - a).mean())) < 1e-12
    assert ci.high - ci.low < 0.06  # paired: ~4 standard errors of 0.2/sqrt(400), not the spread of a itself
    assert paired_bootstrap(a, b, resamples=2000, seed=7) == ci  # same seed, same interval
    assert paired_bootstrap(a, b, resamples=2000, seed=8) != ci
    same = paired_bootstrap(a, a, resamples=500, seed=0)
    assert (same.mean, same.low, same.high, same.significant) == (0.0, 0.0, 0.0, False)
    noise = paired_bootstrap(a, a + rng.normal(0, 0.2, 400), resamples=2000, seed=0)
    assert noise.low < 0 < noise.high and not noise.significant
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap([1.0], [1.0, 2.0])


def test_the_scores_of_a_run_by_hand() -> None:
    from ragtune.evaluation import RetrievalEvaluator

    ev = RetrievalEvaluator({"q": {"a": 2, "b": 1, "c": 0}}, (1, 3), primary_metric="ndcg@3")
    m = ev.per_query({"q": ["x", "a", "a", "b"]})["q"]  # "a" twice: it ranks at its first occurrence
    dcg, idcg = 2 / np.log2(3) + 1 / np.log2(4), 2 + 1 / np.log2(3)
    assert m["ndcg@3"] == pytest.approx(dcg / idcg) == pytest.approx(0.66967, abs=1e-5)
    assert (m["recall@1"], m["recall@3"], m["mrr@3"], m["mrr@1"]) == (0.0, 1.0, 0.5, 0.0)


def test_retriever_variants_share_the_store_and_embedder_and_check_their_overrides() -> None:
    from ragtune.errors import ConfigError
    from ragtune.project import Project

    with Project.temporary(retrieval={"rrf_k": 7}) as project:
        bm25 = project.retriever_variant(dense_weight=0.0, lexical_k=300)
        assert bm25.store is project.store and bm25.embedder is project.embedder
        assert (bm25.dense_weight, bm25.lexical_k, bm25.rrf_k, bm25.top_k) == (0.0, 300, 7, 8)  # the rest: settings
        with pytest.raises(ConfigError, match="retrieval overrides"):
            project.retriever_variant(top_k=0)
        with pytest.raises(ConfigError, match="retrieval overrides"):
            project.retriever_variant(bogus=1)
