"""Generator training data: both line formats, errors by file:line, the audit's findings, the split."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from ragtune.errors import DataError
from ragtune.tuning.generator.audit import audit_examples
from ragtune.tuning.generator.data import GenExample, load_gen_examples, load_schema, validate_output
from ragtune.tuning.generator.train import split_examples

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "generator"
SCHEMA = {"type": "object", "required": ["intent"], "additionalProperties": False,
          "properties": {"intent": {"enum": ["a", "b"]}}}


def write(tmp_path: Path, rows: Sequence[object], name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def chat(user: str, reply: str, system: str | None = None) -> dict[str, object]:
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    return {"messages": msgs}


def test_both_formats_give_prompt_and_target(tmp_path: Path) -> None:
    data = load_gen_examples(write(tmp_path, [chat("hi", "hello", "be brief"), "",
                                              {"prompt": "2+2?", "completion": "4", "system": "math"}]))
    assert len(data) == 2 and data.sha256
    first, second = data
    assert first.messages == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert first.target == "hello" and first.where.endswith("data.jsonl:1")
    assert second.prompt == (("system", "math"), ("user", "2+2?")) and second.target == "4"
    assert second.where.endswith(":3")  # the blank line counts


def test_the_committed_triage_example_loads_and_validates() -> None:
    data = load_gen_examples(EXAMPLES / "triage_train.jsonl")
    schema = load_schema(EXAMPLES / "triage_schema.json")
    assert len(data) == 80
    assert all(validate_output(e.target, schema) is None for e in data)
    report = audit_examples(data, load_gen_examples(EXAMPLES / "triage_test.jsonl"), schema)
    assert not report.blocking and not report.invalid and not report.leakage


@pytest.mark.parametrize(("row", "message"), [
    ("{not json", "not valid JSON"),
    ([1, 2], "expected a JSON object"),
    ({"text": "x"}, "expected {\"messages\""),
    ({"messages": [{"role": "user", "content": "q"}]}, "at least two messages"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "r"}]}, "last message must be"),
    ({"messages": [{"role": "bot", "content": "q"}, {"role": "assistant", "content": "r"}]}, "role 'bot'"),
    ({"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "r"}]}, "no user message"),
    ({"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": "r"}]}, "content of message 1"),
    ({"prompt": "q"}, "'completion' is missing"),
])
def test_a_bad_line_names_file_and_line(tmp_path: Path, row: object, message: str) -> None:
    path = write(tmp_path, [chat("fine", "ok"), row])
    with pytest.raises(DataError) as err:
        load_gen_examples(path)
    assert f"{path}:2" in str(err.value) and message in str(err.value)


def test_empty_and_non_utf8_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no examples"):
        load_gen_examples(write(tmp_path, ["", "  "]))
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(json.dumps(chat("ok", "fine")).encode() + b"\n\xe9\n")
    with pytest.raises(DataError, match=r"latin1.jsonl:2: not UTF-8"):
        load_gen_examples(bad)


def test_schema_file_errors(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text('{"type": "objekt"}', encoding="utf-8")
    with pytest.raises(DataError, match="not a valid JSON Schema"):
        load_schema(tmp_path / "s.json")
    (tmp_path / "t.json").write_text("{", encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON"):
        load_schema(tmp_path / "t.json")


def test_validate_output() -> None:
    assert validate_output('{"intent": "a"}', SCHEMA) is None
    assert "not JSON" in str(validate_output("intent: a", SCHEMA))
    assert "'c' is not one of" in str(validate_output('{"intent": "c"}', SCHEMA))
    assert validate_output("anything", None) is None


def test_audit_finds_duplicates_conflicts_invalid_outliers_and_leakage(tmp_path: Path) -> None:
    rows = [chat("card lost", '{"intent": "a"}'), chat("card  lost", '{"intent": "a"}'),  # duplicate (spacing)
            chat("refund?", '{"intent": "a"}'), chat("refund?", '{"intent": "b"}'),  # conflict
            chat("bad", '{"intent": "z"}')]  # invalid under the schema
    rows += [chat(f"message {i}", '{"intent": "b"}') for i in range(10)]
    rows.append(chat("long " * 400, '{"intent": "b"}'))
    train = load_gen_examples(write(tmp_path, rows))
    validation = load_gen_examples(write(tmp_path, [chat("message 3", '{"intent": "b"}')], "val.jsonl"))
    report = audit_examples(train, validation, SCHEMA)
    counts = report.counts()
    assert counts["duplicates"] == 1 and counts["conflicts"] == 1 and counts["invalid_targets"] == 1
    assert counts["leakage"] == 1 and counts["long_prompts"] == 1 and counts["long_targets"] == 0
    assert report.invalid[0]["where"].endswith(":5")
    assert not report.blocking
    text = "\n".join(report.lines())
    for finding in ("duplicate", "conflicting targets", "do not validate", "length outliers", "leakage"):
        assert finding in text


def test_audit_blocks_when_no_target_validates(tmp_path: Path) -> None:
    train = load_gen_examples(write(tmp_path, [chat("x", "plain text"), chat("y", "more text")]))
    report = audit_examples(train, None, SCHEMA)
    assert report.blocking and "no target validates" in report.blocking[0]


def test_split_keeps_a_prompt_on_one_side() -> None:
    examples = [GenExample((("user", f"q{i % 12}"),), f"t{i}", f"f:{i}") for i in range(36)]
    train, held = split_examples(examples, 0.25, seed=1)
    assert held and len(train) + len(held) == 36
    assert not {e.prompt_key() for e in train} & {e.prompt_key() for e in held}
    assert split_examples(examples, 0.25, seed=1) == (train, held)  # seeded
    assert split_examples(examples[:4], 0.25, seed=1)[1] == []  # too few prompts to hold any out
