"""The web UI's feedback as retriever training data (issue 17): a thumbs-up makes (question → cited chunk) a pair
only while the person who gave it may still read that chunk; the CLI with --queries/--qrels/--feedback."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from retriever_corpus import LABELLED_QUERIES, write_labelled_files
from test_retriever_cli import invoke, run_main

from ragtune.core import Principal
from ragtune.errors import DataError
from ragtune.project import Project
from ragtune.server import schemas as S
from ragtune.server.ui.store import UiStore
from ragtune.tuning.retriever.corpus import read_corpus
from ragtune.tuning.retriever.feedback import _principal, feedback_pairs

ANN = Principal("ann", frozenset({"hr"}))
HANA = Principal("hana", frozenset({"hr"}))


@pytest.fixture
def project(labelled_project: Path, tmp_path: Path) -> Path:
    """A copy of the labelled project (these tests change ACLs and write the UI store)."""
    shutil.copytree(labelled_project, tmp_path / "project")
    return tmp_path / "project"


def vote(proj: Project, principal: Principal, question: str, verdict: str) -> dict[str, object]:
    """Ask as ``principal``, keep the answer as the chat does (the API's answer body), and give a verdict."""
    body = S.AnswerOut.from_answer(proj.ask(question, principal)).model_dump()
    assert body["citations"], question
    item_id = proj.ui_store.add_history(principal, question, body)
    item = proj.ui_store.history_item(principal, item_id)
    assert item is not None
    proj.ui_store.add_feedback(principal, item, verdict, "")
    return body


def test_thumbs_up_gives_pairs_inside_the_cited_chunks_acl(project: Path) -> None:
    proj = Project.open(project)
    leave = vote(proj, ANN, LABELLED_QUERIES["q2"], "up")
    faq = vote(proj, HANA, LABELLED_QUERIES["q1"], "up")  # cites the public FAQ
    vote(proj, HANA, "when does the canteen open", "down")
    ps = feedback_pairs(proj.store, proj.embedder, proj.ui_store)
    c = ps.counts
    assert c["feedback_verdicts"] == 3 and c["feedback_up"] == 2 and c["feedback_pairs"] == c["pairs"] == 2
    corpus = read_corpus(proj.store)
    by_query = {p.query: p for p in ps.pairs}
    for body, question in ((leave, LABELLED_QUERIES["q2"]), (faq, LABELLED_QUERIES["q1"])):
        pair, cited = by_query[question], body["citations"][0]  # type: ignore[index]
        chunk = corpus.chunks[cited["chunk_id"]]
        assert pair.kind == "feedback" and pair.chunk_id == chunk.chunk_id and pair.positive == chunk.search_text
        assert pair.acl == tuple(chunk.acl)
        negatives = [t for t in (pair.negative, *pair.extra_negatives) if t is not None]
        assert negatives
        for text in negatives:
            n = next(x for x in corpus.chunks.values() if x.search_text == text)
            assert tuple(n.acl) == pair.acl and n.doc_id != chunk.doc_id
    assert "canteen" not in " ".join(by_query)  # a thumbs-down gives no pair


def test_feedback_from_someone_who_may_no_longer_read_the_chunk_gives_no_pair(project: Path) -> None:
    proj = Project.open(project)
    leave = vote(proj, ANN, LABELLED_QUERIES["q2"], "up")
    vote(proj, HANA, LABELLED_QUERIES["q1"], "up")
    leave_doc = leave["citations"][0]["doc_id"]  # type: ignore[index]
    proj.store.set_acl(leave_doc, ["group:board"], time.time())  # hr may no longer read the leave policy
    ps = feedback_pairs(proj.store, proj.embedder, proj.ui_store)
    assert [p.query for p in ps.pairs] == [LABELLED_QUERIES["q1"]]
    assert ps.counts["feedback_no_longer_readable"] == 1
    assert all("twenty weeks" not in t for p in ps.pairs for t in (p.positive, p.negative or "", *p.extra_negatives))
    proj.store.set_acl(leave_doc, [], time.time())  # now nobody may read it: still no pair, still counted
    assert feedback_pairs(proj.store, proj.embedder, proj.ui_store).counts["feedback_no_longer_readable"] == 1
    faq_doc = next(d.doc_id for d in proj.store.documents() if d.source_path.endswith("overtime-faq.md"))
    proj.store.delete_documents([faq_doc])
    with pytest.raises(DataError, match="no usable feedback") as info:
        feedback_pairs(proj.store, proj.embedder, proj.ui_store)
    message = str(info.value)
    assert "1 cited chunks no longer indexed" in message and "1 the asker may no longer read" in message


def test_an_unknown_asker_gives_nothing(project: Path) -> None:
    proj = Project.open(project)
    vote(proj, ANN, LABELLED_QUERIES["q2"], "up")
    [item] = proj.ui_store.history(ANN)
    proj.ui_store.add_feedback(Principal("mallory"), item, "up", "")  # not the asker of that answer
    ps = feedback_pairs(proj.store, proj.embedder, proj.ui_store)
    assert ps.counts["feedback_unknown_asker"] == 1 and len(ps.pairs) == 1
    assert _principal("ann", json.dumps(["ann", ["hr"]])) == ANN
    for owner in (None, "not json", json.dumps(["bob", []]), json.dumps(["ann", "hr"]),
                  json.dumps(["ann", ["a b"]])):
        assert _principal("ann", owner) is None  # fail closed


def test_no_feedback_says_it_comes_from_the_web_ui(project: Path, tmp_path: Path) -> None:
    proj = Project.open(project)
    missing = UiStore(tmp_path / "none" / "ui.sqlite")
    with pytest.raises(DataError, match="does not exist; feedback comes from the web UI"):
        feedback_pairs(proj.store, proj.embedder, missing)
    assert not missing.path.exists()  # asking does not create the store
    proj.ui_store.history(ANN)  # the file now exists, with no verdict
    with pytest.raises(DataError, match="no feedback recorded in .* yet; feedback comes from the web UI"):
        feedback_pairs(proj.store, proj.embedder, proj.ui_store)


def test_cli_trains_on_labelled_queries_and_feedback_by_default(project: Path, tmp_path: Path) -> None:
    proj = Project.open(project)
    vote(proj, HANA, LABELLED_QUERIES["q1"], "up")
    queries, qrels = write_labelled_files(tmp_path)
    code, out = invoke("tune", "retriever", "--name", "lab", "--queries", str(queries), "--qrels", str(qrels),
                       "--feedback", "--batch-size", "4", "--time-budget", "1", "-p",
                       str(project))
    assert code == 0, out
    assert "labelled pairs: 4 from 4 judged queries" in out and "1 gold documents not in the index" in out
    assert "feedback pairs: 1 from 1 thumbs-up of 1 verdicts" in out
    assert "corpus pairs: none" in out and "pairs: 5 in all" in out and "registered lab v1 (embedder)" in out
    card = json.loads((project / "models" / "lab" / "v1" / "card.json").read_text())
    counts = card["notes"]["pairs"]
    assert counts["pairs"] == 5 and counts["labelled_pairs"] == 4 and counts["feedback_pairs"] == 1
    assert "corpus_pairs" not in counts and "heading_pairs" not in counts  # labels only: the default with --queries
    assert card["params"]["epochs"] == 3.0
    assert "labelled" in card["data_source"] and "feedback" in card["data_source"]


def test_cli_refuses_bad_combinations(labelled_project: Path, tmp_path: Path, monkeypatch: object,
                                      capsys: object) -> None:
    mp: pytest.MonkeyPatch = monkeypatch  # type: ignore[assignment]
    mp.setenv("COLUMNS", "300")
    queries, qrels = write_labelled_files(tmp_path)
    project = ("-p", str(labelled_project))
    code, out = run_main(mp, capsys, "tune", "retriever", "--qrels", str(qrels), *project)
    assert code == 2 and "--qrels needs --queries" in out
    code, out = run_main(mp, capsys, "tune", "retriever", "--no-corpus-pairs", *project)
    assert code == 2 and "nothing to train on" in out
    code, out = run_main(mp, capsys, "tune", "retriever", "--feedback", *project)
    assert code == 1 and "feedback comes from the web UI" in out
    code, out = run_main(mp, capsys, "tune", "retriever", "--queries", str(tmp_path / "nope.jsonl"), "--qrels",
                         str(qrels), *project)
    assert code == 1 and "nope.jsonl: no such file" in out
    assert not (labelled_project / "models").exists()  # nothing was trained


def test_help_explains_the_labelled_options() -> None:
    code, out = invoke("tune", "retriever", "--help")
    assert code == 0
    for option in ("--queries", "--qrels", "--feedback", "--no-corpus-pairs", "thumbs-up", "may still read"):
        assert option in out, option
