"""Span-reader data: SQuAD and JSONL loading, errors by file:line, the audit's counts and the split by group."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.errors import DataError
from ragtune.tuning.reader.data import (
    ReaderExample,
    audit_examples,
    load_reader_examples,
    pair_key,
    passage_group,
)
from ragtune.tuning.reader.train import answer_positions, split_by_group

PASSAGE = "The retention period is 30 days. Backups are kept for 90 days in Dublin."


def _jsonl(path: Path, *rows: object) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_examples_answers_and_groups(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "qa.jsonl",
        {"question": "How long is data retained?", "passage": PASSAGE, "answer": "30 days"},
        "",
        {"question": "How long are backups kept?", "context": PASSAGE, "answer": "90 days", "answer_start": 3,
         "document": "policy-1", "id": "q2"},  # a wrong start: moved to the text's one occurrence
        {"question": "Who owns the data?", "passage": PASSAGE, "answer": None, "group": "policy-1"},
        {"question": "Where are backups?", "passage": PASSAGE, "answer": "in Paris"},  # not in the passage
        {"question": "How long?", "passage": "30 days, then 30 days more.", "answer": "30 days", "answer_start": 14},
    )
    data = load_reader_examples(path)
    assert [e.question for e in data] == ["How long is data retained?", "How long are backups kept?",
                                          "Who owns the data?", "How long?"]
    first, second, none, later = data
    assert first.answers == ((PASSAGE.index("30 days"), "30 days"),) and first.group == passage_group(PASSAGE)
    assert first.where == f"{path}:1" and first.qid == "qa.jsonl:1"
    assert second.answers == ((PASSAGE.index("90 days"), "90 days"),) and second.group == "policy-1"
    assert second.qid == "q2" and second.where == f"{path}:3"
    assert none.answers == () and none.group == "policy-1"
    assert later.answers == ((14, "30 days"),)  # a correct answer_start picks that occurrence
    assert data.moved == 1 and data.source == str(path) and len(data.sha256) == 64
    assert data.not_found == [{"where": f"{path}:5", "question": "Where are backups?", "answer": "in Paris"}]


def _squad(path: Path, version: str = "v2.0") -> Path:
    doc = {"version": version, "data": [
        {"title": "Retention", "paragraphs": [{"context": PASSAGE, "qas": [
            {"id": "a1", "question": "How long is data retained?", "is_impossible": False,
             "answers": [{"text": "30 days", "answer_start": 24}, {"text": "30 days", "answer_start": 24},
                         {"text": "30 days", "answer_start": 3}]},  # duplicates kept once, a bad start moved
            {"id": "a2", "question": "Who audits backups?", "is_impossible": True, "answers": [],
             "plausible_answers": [{"text": "Dublin", "answer_start": 65}]},
            {"id": "a3", "question": "Where?", "answers": [{"text": "Paris", "answer_start": 0}]}]}]},
        {"title": "Backups", "paragraphs": [{"context": "Backups run nightly.", "qas": [
            {"id": "b1", "question": "When do backups run?", "answers": [{"text": "nightly", "answer_start": 12}]}]}]},
    ]}
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


def test_squad_v2_and_v1_files(tmp_path: Path) -> None:
    data = load_reader_examples(_squad(tmp_path / "dev.json"))
    assert [(e.qid, e.group) for e in data] == [("a1", "Retention"), ("a2", "Retention"), ("b1", "Backups")]
    assert data[0].answers == ((24, "30 days"),) and PASSAGE[24:31] == "30 days"
    assert data[1].answers == ()  # is_impossible: no answer, plausible answers ignored
    assert data[2].answers == ((12, "nightly"),)
    assert data.moved == 1 and len(data.not_found) == 1 and data.not_found[0]["answer"] == "Paris"
    assert data.not_found[0]["where"].startswith(f"{tmp_path / 'dev.json'}:")  # the line of its id
    assert "data[0].paragraphs[0].qas[2]" in data.not_found[0]["where"]
    v1 = load_reader_examples(_squad(tmp_path / "train.json", "1.1"))
    assert len(v1) == 3


@pytest.mark.parametrize(("rows", "message"), [
    (['{"question": "q", "passage": "p", "answer": null}', "{not json"], r"bad\.jsonl:2: not valid JSON"),
    (['{"question": "q", "answer": null}'], r"bad\.jsonl:1: 'passage' is missing"),
    (['{"question": " ", "passage": "p", "answer": null}'], r"bad\.jsonl:1: 'question' is not a non-empty"),
    (['{"question": "q", "passage": "p"}'], r"bad\.jsonl:1: no 'answer'.*null"),
    (['{"question": "q", "passage": "p", "answer": ""}'], r"bad\.jsonl:1: 'answer' must be the answer text or null"),
    (['{"question": "q", "passage": "p", "answer": "p", "answer_start": -1}'], r"bad\.jsonl:1: 'answer_start'"),
    (['["q", "p"]'], r"bad\.jsonl:1: expected an object"),
])
def test_jsonl_errors_name_the_line(tmp_path: Path, rows: list[str], message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_reader_examples(_jsonl(tmp_path / "bad.jsonl", *rows))


def test_squad_and_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [\n  {"title": "x",\n   "paragraphs": [}\n]}', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.json:3: not valid JSON"):
        load_reader_examples(bad)
    bad.write_text(json.dumps({"data": [{"paragraphs": [{"qas": []}]}]}), encoding="utf-8")
    with pytest.raises(DataError, match=r"data\[0\]\.paragraphs\[0\]: 'context' is missing"):
        load_reader_examples(bad)
    bad.write_text(json.dumps({"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "z9", "answers": []}]}]}]},
                               indent=1), encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.json:\d+: data\[0\]\.paragraphs\[0\]\.qas\[0\]: 'question'"):
        load_reader_examples(bad)
    bad.write_text(json.dumps({"questions": []}), encoding="utf-8")
    with pytest.raises(DataError, match="not SQuAD JSON"):
        load_reader_examples(bad)
    raw = tmp_path / "latin.jsonl"
    raw.write_bytes(b'{"question": "q", "passage": "p", "answer": null}\n{"question": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"latin\.jsonl:2: not UTF-8"):
        load_reader_examples(raw)
    with pytest.raises(DataError, match="no such file"):
        load_reader_examples(tmp_path / "missing.jsonl")
    lines = tmp_path / "lines.json"  # JSONL under a .json name still loads
    lines.write_text('{"question": "q", "passage": "p q", "answer": "q"}\n' * 2, encoding="utf-8")
    assert len(load_reader_examples(lines)) == 2


def _ex(question: str, passage: str, answer: str | None, group: str = "g", where: str = "") -> ReaderExample:
    answers = ((passage.index(answer), answer),) if answer else ()
    return ReaderExample(question, passage, answers, where or question, group, where)


def test_audit_counts_findings(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "train.jsonl",
        {"question": "How long is data retained?", "passage": PASSAGE, "answer": "30 days"},
        {"question": "how long is data  retained?", "passage": PASSAGE, "answer": "30 days"},  # duplicate
        {"question": "How long are backups kept?", "passage": PASSAGE, "answer": "90 days"},
        {"question": "How long are backups kept?", "passage": PASSAGE, "answer": None},  # conflict
        {"question": "Where are backups?", "passage": PASSAGE, "answer": "Paris"},  # not found
        {"question": "Where are backups kept?", "passage": PASSAGE, "answer": "Dublin"},
    )
    train = load_reader_examples(path)
    validation = load_reader_examples(_jsonl(
        tmp_path / "val.jsonl",
        {"question": "Where are backups kept?", "passage": PASSAGE, "answer": "Dublin"},  # leakage
        {"question": "Which city?", "passage": PASSAGE, "answer": "Dublin"}))
    audit = audit_examples(train, validation)
    counts = audit.counts()
    assert counts["examples"] == 5 and counts["answerable"] == 4 and counts["no_answer"] == 1
    assert counts["answers_not_found"] == 1 and counts["duplicates"] == 1 and counts["conflicts"] == 1
    assert counts["leakage"] == 1 and counts["validation_examples"] == 2 and audit.no_answer_share == 0.2
    assert audit.duplicates[0]["where"] == [f"{path}:1", f"{path}:2"]
    assert audit.conflicts[0]["where"] == [f"{path}:3", f"{path}:4"]
    assert sorted(audit.conflicts[0]["answers"]) == ["(no answer)", "90 days"]
    assert audit.leakage[0] == {"where": f"{path}:6", "validation_where": f"{tmp_path / 'val.jsonl'}:1",
                                "question": "Where are backups kept?"}
    text = "\n".join(audit.lines())
    assert audit.lines()[0].startswith("5 examples (4 answered in their passage, 1 not: 20% no-answer)")
    assert f"not found in their passage were dropped, first at {path}:5 ('Paris')" in text
    assert "1 duplicate" in text and "conflicting answers" in text and "leakage" in text and not audit.blocking
    only = audit_examples([_ex("q", "p a", "a")])
    assert only.counts()["leakage"] == 0 and any("no example without an answer" in w for w in only.warnings)


def test_audit_blocks_unusable_data() -> None:
    assert audit_examples([]).blocking == ["no usable examples in the data"]
    nothing = audit_examples([_ex("q", "a passage", None), _ex("r", "a passage", None)])
    assert nothing.blocking and "no example has its answer in its passage" in nothing.blocking[0]
    assert "cannot train: no example has" in "\n".join(nothing.lines())
    assert audit_examples([_ex("q", "p a", "a")], []).blocking[0].startswith("no usable examples in the validation")


def test_split_keeps_groups_apart() -> None:
    examples = [_ex(f"q{g}{i}", f"passage {g} says {i}", f"{i}", group=f"g{g}") for g in range(10) for i in range(3)]
    examples.append(_ex("q00", "passage 0 says 0", "0", group="g5"))  # g0's pair, filed under another group
    train, held = split_by_group(examples, 0.3, seed=0)
    assert {e.group for e in train}.isdisjoint({e.group for e in held})
    assert 6 <= len(held) <= 12 and len(train) + len(held) >= len(examples) - 1
    assert not {pair_key(e) for e in train} & {pair_key(e) for e in held}  # the copy is never on both sides
    assert split_by_group(examples, 0.3, seed=0) == (train, held)  # seeded
    assert split_by_group(examples, 0.3, seed=1) != (train, held)
    assert split_by_group(examples[:3], 0.5, seed=0) == (examples[:3], [])  # one group: nothing held out
    assert split_by_group(examples, 0.0, seed=0)[1] == []


def test_answer_positions_point_at_the_answer_tokens() -> None:
    from ragtune.models.embedder import minilm_model_dir
    from ragtune.tuning.reader.served import TOKENIZER, WindowEncoder

    long = " ".join(f"Filler sentence number {i} says nothing." for i in range(12)) + " Backups go to Oslo."
    examples = [_ex("How long is data retained?", PASSAGE, "30 days"), _ex("Who?", PASSAGE, None),
                _ex("Where do backups go?", long, "Oslo")]
    encoder = WindowEncoder(minilm_model_dir() / TOKENIZER, 48, 16)
    windows = encoder.encode([(e.question, e.passage) for e in examples])
    starts, ends = answer_positions(windows, examples)
    by_source = [[w for w in range(len(windows)) if windows.source[w] == s] for s in range(3)]
    assert len(by_source[0]) == 1 and len(by_source[2]) > 2  # the long passage is read in windows
    w = by_source[0][0]
    off = windows.offsets[w]
    assert PASSAGE[off[starts[w]][0]:off[ends[w]][1]] == "30 days"
    assert starts[by_source[1][0]] == ends[by_source[1][0]] == 0  # no answer: [CLS]
    holding = [w for w in by_source[2] if starts[w] > 0]
    assert holding and all(long[windows.offsets[w][starts[w]][0]:windows.offsets[w][ends[w]][1]] == "Oslo"
                           for w in holding)
    assert all(starts[w] == 0 for w in by_source[2][:-2])  # windows before the answer point at [CLS]
    assert all(len(windows.ids[w]) <= 48 for w in range(len(windows)))
