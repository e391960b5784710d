"""The peer benchmarks' own logic, without the peers' environment: the query order, the latency ratio, the
PolicyQA scoring and corpus, and the JSON-lines protocol between the orchestrator and a real worker process."""

from __future__ import annotations

import json
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _peers  # noqa: E402
import peers_retrieval  # noqa: E402


def test_rotation_puts_each_system_in_each_position_equally_often() -> None:
    systems = ("ragtune", "LlamaIndex", "Haystack")
    assert _peers.rotated(systems, 0) == list(systems)
    orders = [_peers.rotated(systems, i) for i in range(300)]
    assert all(sorted(o) == sorted(systems) for o in orders)  # every system once per query
    for position in range(3):
        assert Counter(o[position] for o in orders) == {s: 100 for s in systems}
    assert _peers.rotated(systems, 4) == ["LlamaIndex", "Haystack", "ragtune"]
    assert _peers.rotated([], 3) == []


def test_p50_ratio_is_peer_median_over_ragtune_median() -> None:
    assert _peers.p50_ratio([30.0, 10.0, 20.0, 500.0], [5.0, 10.0, 15.0]) == pytest.approx(25.0 / 10.0)
    lat = _peers.latency([float(x) for x in range(1, 101)])
    assert lat["p50_ms"] == pytest.approx(50.5) and lat["p95_ms"] == pytest.approx(95.05)
    with pytest.raises(ValueError, match="p50"):
        _peers.p50_ratio([1.0], [])


def test_policyqa_scores_count_distinct_documents_in_the_top_five() -> None:
    ranked = ["a__p001", "a__p001", "b__p000", "c__p002", "d__p000", "e__p004", "a__p009"]
    # the duplicate does not take a place: e__p004 is 5th, a__p009 6th
    assert _peers.recall_at_5(ranked, {"e__p004", "x__p000"}) == 0.5
    assert _peers.recall_at_5(ranked, {"a__p009"}) == 0.0
    policy_of = {i: i.split("__p")[0] for i in ranked}
    assert _peers.policy_recall_at_5(ranked, "e", policy_of) == 1.0
    assert _peers.policy_recall_at_5(["b__p000", "a__p001"], "e", policy_of) == 0.0
    corpus = peers_retrieval.Corpus("p", [], [("q0", "?")], {"q0": {"e__p004": 1}}, {"q0": "e"})
    assert peers_retrieval.score(corpus, "q0", ranked) == {"recall@5 paragraph": 1.0, "recall@5 policy": 1.0}


def _squad(articles: list[tuple[str, list[tuple[int, str, list[tuple[str, str]]]]]]) -> dict[str, Any]:
    """A SQuAD-shaped PolicyQA file: (title, [(index, context, [(question, answer)])])."""
    return {"data": [{"title": title, "paragraphs": [
        {"index": index, "context": context, "qas": [
            {"question": q, "type": "Data Retention|||x|||y",
             "answers": [{"text": a, "answer_start": context.find(a)}]} for q, a in qas]}
        for index, context, qas in paras]} for title, paras in articles]}


def test_policyqa_corpus_one_query_per_question_with_all_its_gold_paragraphs(tmp_path: Path) -> None:
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps(_squad([
        ("b.com ", [
            (2, "We keep logs  for 30 days.", [("How long are logs kept?", "30 days")]),
            (1, "Cookies expire after a year.", [("How long are logs kept?", "a year"),
                                                  ("Do cookies expire?", "xpire")]),  # cut word: not a query
        ]),
        ("a.com", [(0, "We never sell data.", [("Do you sell my data?", "never sell data")])]),
    ])), encoding="utf-8")
    corpus = peers_retrieval.policyqa_corpus(dev, quick=False)
    assert [d.doc_id for d in corpus.docs] == ["b.com__p000", "b.com__p001", "a.com__p000"]  # policy order
    assert corpus.docs[1].text == "We keep logs for 30 days." and corpus.docs[0].title == "b.com privacy policy"
    assert [q for _, q in corpus.queries] == ["How long are logs kept?", "Do you sell my data?"]
    assert corpus.gold["q0"] == {"b.com__p000": 1, "b.com__p001": 1} and corpus.policy == {"q0": "b.com",
                                                                                            "q1": "a.com"}


WORKER = """
import sys
sys.path.insert(0, {peers!r})
from jsonl_worker import claim_stdout, serve

proto = claim_stdout()
def echo(msg):
    print("a library banner on stdout")  # must not reach the protocol
    return {{"text": msg["text"].upper()}}
def fail(msg):
    raise KeyError("no such index")
def die(msg):
    sys.exit(3)
raise SystemExit(serve({{"echo": echo, "fail": fail, "die": die}}, stdout=proto))
"""


def test_worker_protocol_replies_errors_and_a_dead_worker(tmp_path: Path) -> None:
    script = tmp_path / "worker_echo.py"
    script.write_text(textwrap.dedent(WORKER.format(peers=str(BENCHMARKS / "peers"))), encoding="utf-8")
    with _peers.Worker("echo", script, Path(sys.executable), log_dir=tmp_path) as worker:
        assert worker.request("echo", text="hi") == {"text": "HI"}
        with pytest.raises(_peers.WorkerError, match="failed on 'fail': KeyError: 'no such index'"):
            worker.request("fail")
        with pytest.raises(_peers.WorkerError, match="unknown op 'nope'"):
            worker.request("nope")
        assert worker.request("echo", text="still here") == {"text": "STILL HERE"}  # an error is not fatal
        with pytest.raises(_peers.WorkerError, match=r"exited \(status 3\) during 'die'"):
            worker.request("die")
    assert "a library banner on stdout" in (tmp_path / "echo.log").read_text(encoding="utf-8")


def test_missing_peers_venv_names_the_setup_command(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="benchmarks/peers/setup.sh"):
        _peers.peers_python(tmp_path / "nowhere")
