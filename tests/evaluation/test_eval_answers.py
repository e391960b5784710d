"""`ragtune eval answers` on a tiny ingested project (real MiniLM, LanceDB, the extractive answerer, the lexical
groundedness checker), its metrics by hand, the leakage count, bad input, and `eval compare` of two runs."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from helpers import write
from typer.testing import CliRunner

from ragtune.answer.generative import SYSTEM_PROMPT
from ragtune.cli import app
from ragtune.config import init_project
from ragtune.core import Acl, Answer, AnswerSpan, Chunk, Citation, Principal
from ragtune.errors import DataError
from ragtune.evaluation.answers import REFUSAL, AnswerScorer, declined, predicted_text
from ragtune.evaluation.answers_data import AnswerQuestion, load_answer_questions
from ragtune.evaluation.data import document_map
from ragtune.evaluation.run_retrieval import IndexWidePrincipal
from ragtune.project import Project
from ragtune.tuning.reader.squad import exact_match, token_f1

runner = CliRunner()

SALARY = "Engineers earn between 90,000 and 150,000 euros depending on their salary band."
QUESTIONS = [
    {"id": "vac", "question": "how many days of paid vacation do employees get", "answers": ["25 days"],
     "gold": "handbook"},
    {"id": "sal", "question": "what salary do engineers earn", "answer": "between 90,000 and 150,000 euros",
     "gold": "salaries"},
    {"id": "car", "question": "what colour is the chief executive's car", "answer": None},
    {"id": "inv", "question": "when are supplier invoices paid", "gold": "finance/invoices"},
    {"id": "xss", "question": "<script>alert(1)</script> [bold]how often[/bold] must passwords be rotated",
     "answer": "every 90 days", "gold": "security/passwords.md"},
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("answers")
    docs = base / "docs"
    write(docs / "handbook.md", "# Employee handbook\n\nEmployees get 25 days of paid vacation per year.\n")
    write(docs / "security" / "passwords.md", "# Passwords\n\nPasswords must be rotated every 90 days.\n")
    write(docs / "finance" / "invoices.txt", "Supplier invoices are paid within 30 days of receipt.\n")
    write(docs / "hr" / "salaries.md", f"---\nacl: {{groups: [hr]}}\n---\n# Salary bands\n\n{SALARY}\n")
    init_project(base / "proj")
    Project.open(base / "proj").ingest(docs, Acl(public=True))
    write(base / "q.jsonl", "".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return base


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=True)


def answers(base: Path, out: str, *who: str) -> tuple[dict[str, Any], Any]:
    result = invoke("eval", "answers", "--questions", str(base / "q.jsonl"), "-p", str(base / "proj"),
                    "--out", str(base / out), *who)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads((base / out / "answers.json").read_text()), result


def rows(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in run["per_question"]}


def test_exact_match_and_token_f1_by_hand() -> None:
    # "Employees get 25 days of paid vacation per year" has 9 tokens, 2 of them the gold's: P 2/9, R 1.
    sentence = "Employees get 25 days of paid vacation per year."
    assert token_f1(sentence, ["25 days"]) == pytest.approx(2 * (2 / 9) / (2 / 9 + 1)) == pytest.approx(4 / 11)
    assert exact_match(sentence, ["25 days"]) == 0.0
    assert exact_match("The 25 days.", ["25 days"]) == 1.0 and token_f1("The 25 days.", ["25 days"]) == 1.0
    # "a" is dropped: [25, days, year] against "25 days" is P 2/3, R 1 (F1 0.8), against "year" P 1/3, R 1 (0.5).
    assert token_f1("25 days a year", ["25 days", "a year"]) == pytest.approx(0.8)  # the best gold
    # Abstaining on a must-abstain question scores 1; answering it scores 0 (SQuAD v2).
    assert exact_match("", ()) == token_f1("", ()) == 1.0 and exact_match("25 days", ()) == 0.0
    chunk = Chunk("c", "d", "/d.md", "d", (), None, 0, 49, sentence, "h", "h", 0.0, ("public",))
    plain = Answer("q", f"{sentence} [1]", (Citation(1, chunk, sentence),), False, {})
    assert predicted_text(plain) == sentence  # citation markers removed
    spanned = Answer("q", f"{sentence} [1]", plain.citations, False, {}, span=AnswerSpan("25 days", 1, 14, 21, 3.0))
    assert predicted_text(spanned) == "25 days"  # the reader's span when there is one
    refusal = Answer("q", "I cannot answer from the accessible sources.", (), False, {})
    assert declined(refusal) and REFUSAL in SYSTEM_PROMPT.lower()


def test_scores_a_readable_answer_and_abstains_on_an_unreadable_gold(project: Path) -> None:
    run, result = answers(project, "alice", "--user", "alice")
    r = rows(run)
    vac = r["vac"]
    assert vac["answer"] == "Employees get 25 days of paid vacation per year. [1]" and not vac["abstained"]
    assert vac["f1"] == pytest.approx(4 / 11, abs=1e-6) and vac["em"] == 0.0
    assert vac["citation_recall"] == 1.0 and vac["citation_precision"] == 1.0 and vac["groundedness"] == 1.0
    assert vac["gold"] == ["handbook.md"] and vac["gold_readable"] is True
    sal = r["sal"]  # the gold document is hr's: alice must get an abstention, and does
    assert sal["expected"] == "abstain" and sal["abstain_reason"] == "gold unreadable" and sal["abstained"]
    assert sal["gold_readable"] is False and sal["em"] == 1.0 and sal["citation_recall"] is None
    assert r["car"]["expected"] == "abstain" and r["car"]["abstain_reason"] == "no answer" and r["car"]["abstained"]
    assert r["inv"]["em"] is None and r["inv"]["f1"] is None  # gold document only: recall, no EM/F1
    a = run["aggregate"]
    assert a["leaked"] == 0 and a["leaked_documents"] == 0
    assert a["unreadable_gold"] == 1 and a["unreadable_gold_answered"] == 0
    assert a["questions"] == 5 and a["abstained"] == sum(x["abstained"] for x in r.values())
    scored = [x["em"] for x in r.values() if x["em"] is not None]
    assert a["em"] == pytest.approx(sum(scored) / len(scored)) and a["em_f1_questions"] == 4
    recalls = [x["citation_recall"] for x in r.values() if x["citation_recall"] is not None]
    assert a["citation_recall"] == pytest.approx(sum(recalls) / len(recalls))
    assert all(SALARY not in x["answer"] for x in r.values())
    for stage in ("embed_query", "dense", "lexical", "fetch", "answer", "total"):
        p = run["latency_ms"][stage]
        assert p["n"] == 5 and 0 <= p["p50"] <= p["p95"], stage
    assert run["settings"]["answer_kind"] == "extractive" and run["principal"] == {"user": "alice", "groups": []}
    for key in ("answer_fingerprint", "retrieval_fingerprint"):
        assert re.fullmatch(r"[0-9a-f]{16}", run["settings"][key]), key
    assert run["inputs"]["format"] == "jsonl" and run["inputs"]["asked"] == 5 and run["index_version"] is not None
    assert not run["checker"]["trained"] and 0 < run["checker"]["threshold"] < 1
    # Text from the file is shown literally: in the terminal (Rich markup not applied) and in the HTML report.
    assert "[bold]how" in result.stdout
    report = (project / "alice" / "report.html").read_text()
    assert "<script>alert" not in report and "&lt;script&gt;alert(1)&lt;/script&gt;" in report
    assert report.count("data:image/png;base64,") == 2 and "Leaks" not in report
    assert (project / "alice" / "f1_histogram.png").is_file() and (project / "alice" / "report.md").is_file()


def test_a_reader_of_the_gold_document_gets_it_answered(project: Path) -> None:
    run, _ = answers(project, "carol", "--user", "carol", "--groups", "hr")
    sal = rows(run)["sal"]
    assert sal["expected"] == "answer" and not sal["abstained"] and sal["citation_recall"] == 1.0
    assert sal["f1"] == pytest.approx(token_f1(SALARY, ["between 90,000 and 150,000 euros"]))
    assert run["aggregate"]["leaked"] == 0 and run["aggregate"]["unreadable_gold"] == 0


def scorer(project: Path, principal: Principal) -> tuple[AnswerScorer, Project, dict[str, Chunk]]:
    proj = Project.open(project / "proj")
    documents = document_map(proj.sources(), proj.roots())
    admin = IndexWidePrincipal(proj.store.acl_tokens())
    chunks = {documents.labels[c.doc_id]: c for c in
              proj.store.get_chunks([f"{d}-00000" for d in documents.labels], admin).values()}
    return AnswerScorer(proj, principal, proj.groundedness_checker("groundedness"), documents), proj, chunks


def recorded(text: str, *cited: Chunk) -> Answer:
    return Answer("q", text, tuple(Citation(n, c, c.text) for n, c in enumerate(cited, start=1)), False, {"total": 1.0})


def test_leakage_is_counted_from_the_store_not_from_the_answer(project: Path) -> None:
    alice, _, chunks = scorer(project, Principal("alice"))
    salaries, handbook = chunks["hr/salaries.md"], chunks["handbook.md"]
    question = AnswerQuestion("q", "what do engineers earn", ("90,000",), False, (), "test:1")
    cites = recorded(f"{SALARY} [1]", salaries)  # e.g. a stale cache entry: it cites hr's document
    row = alice.score(question, cites, ())
    assert row["leaked"] == 1 and row["leaks"][0]["document"] == "hr/salaries.md"
    assert "citation [1]" in row["leaks"][0]["why"]
    forged = recorded(f"{SALARY} [1]", replace(salaries, acl=("public",)))  # its copy of the ACL lies
    assert alice.score(question, forged, ())["leaked"] == 1
    quotes = recorded(f"Employees get 25 days of paid vacation per year. [1] {SALARY}", handbook)
    row = alice.score(question, quotes, ())
    assert row["leaked"] == 1 and row["leaks"][0]["why"].startswith("quotes hr/salaries.md")
    carol, _, _ = scorer(project, Principal("carol", frozenset({"hr"})))
    assert carol.score(question, cites, ())["leaked"] == 0 and carol.score(question, quotes, ())["leaked"] == 0
    assert alice.score(question, recorded(handbook.text + " [1]", handbook), ())["leaked"] == 0


def test_citation_precision_groundedness_and_hallucination_by_hand(project: Path) -> None:
    alice, _, chunks = scorer(project, Principal("alice"))
    handbook, passwords = chunks["handbook.md"], chunks["security/passwords.md"]
    question = AnswerQuestion("q", "vacation and passwords", (), False, ("handbook",), "test:1")
    # Sentence 2 cites the handbook, which does not support it: precision 1/2, groundedness 1/2.
    wrong = recorded("Employees get 25 days of paid vacation per year. [1] Passwords must be rotated every 90 days. "
                     "[1]", handbook)
    row = alice.score(question, wrong, (handbook.doc_id,))
    assert [p["supports"] for p in row["citation_support"]] == [True, False]
    assert row["citation_precision"] == 0.5 and row["groundedness"] == 0.5 and row["hallucination"] == 0.5
    assert row["unsupported_sentences"] == ["Passwords must be rotated every 90 days."]
    assert row["citation_recall"] == 1.0
    # Sentence 2 cites both: the handbook does not support it, the password policy does; the sentence is grounded.
    both = recorded("Employees get 25 days of paid vacation per year. [1] Passwords must be rotated every 90 days. "
                    "[1][2]", handbook, passwords)
    row = alice.score(question, both, (handbook.doc_id,))
    assert [(p["sentence"], p["citation"], p["supports"]) for p in row["citation_support"]] == [
        (0, 1, True), (1, 1, False), (1, 2, True)]
    assert row["citation_precision"] == pytest.approx(2 / 3) and row["groundedness"] == 1.0
    other = recorded("Passwords must be rotated every 90 days. [1]", passwords)
    assert alice.score(question, other, (handbook.doc_id,))["citation_recall"] == 0.0  # gold not cited


def test_squad_files_and_must_abstain_questions(tmp_path: Path) -> None:
    squad = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": "ignored", "qas": [
        {"id": "a1", "question": "how many vacation days", "answers": [{"text": "25 days", "answer_start": 0},
                                                                      {"text": "25 days", "answer_start": 3}]},
        {"id": "a2", "question": "what colour is the car", "answers": [], "is_impossible": True}]}]}]}
    path = write(tmp_path / "dev.json", json.dumps(squad, indent=1))
    qs = load_answer_questions(path)
    assert qs.format == "squad" and [q.qid for q in qs.questions] == ["a1", "a2"]
    assert qs.questions[0].answers == ("25 days",) and not qs.questions[0].must_abstain
    assert qs.questions[1].answers == () and qs.questions[1].must_abstain


@pytest.mark.parametrize(("name", "text", "message"), [
    ("neither.jsonl", '{"question": "a", "answer": "b"}\n{"question": "no answer, no gold"}\n',
     "neither.jsonl:2: the question has neither an answer nor a gold document"),
    ("broken.jsonl", '{"question": "a", "gold": "handbook"}\n\n{"question": \n', "broken.jsonl:3: not valid JSON"),
    ("empty.jsonl", '{"question": "a", "answers": []}\n', "empty.jsonl:1: 'answers' must be a non-empty list"),
    ("dup.jsonl", '{"id": "x", "question": "a", "gold": "handbook"}\n{"id": "x", "question": "b", "gold": "h"}\n',
     "dup.jsonl:2: question id 'x' repeats"),
    ("both.jsonl", '{"question": "a", "answer": "b", "answers": ["c"]}\n', "both.jsonl:1: give either"),
    ("squad.json", '{"data": [{"paragraphs": [{"context": "c",\n "qas": [{"id": "s1", "answers": []}]}]}]}',
     "squad.json:2: data[0].paragraphs[0].qas[0]: 'question' is missing"),
])
def test_bad_question_files_name_the_file_and_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(DataError) as caught:
        load_answer_questions(write(tmp_path / name, text))
    assert message in str(caught.value)


def test_bad_files_exit_1_and_usage_mistakes_exit_2(project: Path) -> None:
    unknown = write(project / "unknown.jsonl",
                    '{"question": "a", "gold": "handbook"}\n{"question": "b", "gold": "nope"}\n')
    neither = write(project / "neither.jsonl", '{"question": "no answer, no gold"}\n')
    for path, message in ((unknown, "unknown.jsonl:2: gold document 'nope' is not in the index"),
                          (neither, "neither.jsonl:1: the question has neither")):
        result = invoke("eval", "answers", "--questions", str(path), "--user", "alice", "-p", str(project / "proj"),
                        "--out", str(project / "bad"))
        assert result.exit_code == 1 and isinstance(result.exception, DataError), result.output
        assert message in str(result.exception)
    q = str(project / "q.jsonl")
    for args, message in ((("--user", "alice"), "give --questions"), (("--questions", q), "give --user"),
                          (("--questions", q, "--user", "a", "--all-documents"), "do not combine"),
                          (("--questions", q, "--user", "a", "--limit", "0"), "--limit")):
        result = invoke("eval", "answers", "-p", str(project / "proj"), "--out", str(project / "bad"), *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split()), (args, result.output)
    assert not (project / "bad").exists()


def test_compare_pairs_two_answers_runs_by_question(project: Path) -> None:
    answers(project, "cmp-a", "--user", "alice")
    b, _ = answers(project, "cmp-b", "--user", "carol", "--groups", "hr", "--limit", "3")
    assert b["inputs"]["asked"] == 3 and len(b["per_question"]) == 3
    result = invoke("eval", "compare", str(project / "cmp-a"), str(project / "cmp-b" / "answers.json"), "--json",
                    "--bootstrap", "200")
    assert result.exit_code == 0, result.output + repr(result.exception)
    cmp = json.loads(result.stdout)
    c = cmp["configs"]["answers"]
    assert c["shared_queries"] == 3 and c["only_a"] == 2 and c["only_b"] == 0
    ra, rb = rows(json.loads((project / "cmp-a" / "answers.json").read_text())), rows(b)
    for metric in ("em", "f1", "abstained"):
        m = c["metrics"][metric]
        shared = [q for q in rb if ra[q][metric] is not None and rb[q][metric] is not None]
        assert m["queries"] == len(shared)
        diffs = [float(rb[q][metric]) - float(ra[q][metric]) for q in shared]
        assert m["mean"] == pytest.approx(sum(diffs) / len(diffs))
        assert m["low"] <= m["mean"] <= m["high"]
    assert c["metrics"]["abstained"]["mean"] < 0  # carol reads the salary bands: one abstention fewer
    table = invoke("eval", "compare", str(project / "cmp-a"), str(project / "cmp-b"))
    assert table.exit_code == 0 and "citation_recall" in table.stdout
    write(project / "retrieval" / "run.json",
          json.dumps({"kind": "retrieval", "results": {"hybrid": {"per_query": {}}}}))
    mixed = invoke("eval", "compare", str(project / "retrieval"), str(project / "cmp-a"))
    assert mixed.exit_code == 1 and "compare two runs of the same command" in str(mixed.exception)
