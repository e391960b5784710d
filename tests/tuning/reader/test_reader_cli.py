"""`ragtune tune reader` from the command line: end to end on a project, help, and bad or unusable data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_main
from reader_synth import synthetic_rows, write_jsonl
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.config import init_project

runner = CliRunner()
ENV = {"COLUMNS": "300", "RAGTUNE_EMBEDDER__THREADS": "1"}


def test_tune_reader_end_to_end(tmp_path: Path) -> None:
    init_project(tmp_path / "project")
    rows = synthetic_rows(0)
    data = write_jsonl(tmp_path / "notes.jsonl", rows[:36])
    validation = write_jsonl(tmp_path / "validation.jsonl", rows[36:48] + rows[:1])  # one question leaked
    result = runner.invoke(app, ["tune", "reader", str(data), "--validation", str(validation), "--name", "cli-rd",
                                 "--layers", "1", "--max-length", "64", "--batch-size", "8", "--epochs", "1",
                                 "-p", str(tmp_path / "project")], env=ENV)
    out = result.output
    assert result.exit_code == 0, out + repr(result.exception)
    assert out.index("36 examples (") < out.index("registered cli-rd v1 (reader, 1 layers)")  # the audit first
    assert "13 validation examples" in out and "1 validation example(s) also in the training data" in out
    assert "held-out (13 examples from the validation file): EM " in out and "threshold " in out
    assert "answered share" in out
    assert "next: set answer.kind: reader and answer.reader: cli-rd@1 in ragtune.yaml" in out
    folder = tmp_path / "project" / "models" / "cli-rd" / "v1"
    card = json.loads((folder / "card.json").read_text())
    assert card["method"] == "reader" and card["params"]["layers"] == 1 and card["metrics"]["steps"] == 5
    assert f"report: {folder / 'report.md'}" in out.replace("\n", "") and (folder / "report.md").is_file()
    assert (folder / "model" / "model.onnx").is_file() and card["notes"]["holdout_unit"] == "validation file"
    assert card["notes"]["audit"]["leakage"] == 1 and "validation.jsonl" in card["data_source"]
    assert "## Held-out check (a validation file)" in (folder / "report.md").read_text()


def test_bad_and_unusable_data_exit_non_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    init_project(tmp_path / "project")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "passage": "p", "answer": null}\n{"question": "q", "passage": \n',
                   encoding="utf-8")
    code, out = run_main(monkeypatch, capsys, "tune", "reader", str(bad), "-p", str(tmp_path / "project"))
    assert code == 1 and "bad.jsonl:2: not valid JSON" in out
    result = runner.invoke(app, ["tune", "reader", str(bad), "-p", str(tmp_path / "project")], env=ENV)
    assert result.exit_code != 0 and "bad.jsonl:2" in str(result.exception)
    unanswered = write_jsonl(tmp_path / "none.jsonl", [{"question": "q", "passage": "p", "answer": None}] * 3)
    code, out = run_main(monkeypatch, capsys, "tune", "reader", str(unanswered), "-p", str(tmp_path / "project"))
    assert code == 1 and "cannot train the reader: no example has its answer in its passage" in out
    assert "3 examples (0 answered" in out and "duplicate" in out  # the audit is printed before the refusal
    good = write_jsonl(tmp_path / "good.jsonl", synthetic_rows(0)[:6])
    code, out = run_main(monkeypatch, capsys, "tune", "reader", str(good), "--name", "no/slash", "-p",
                         str(tmp_path / "project"))
    assert code == 1 and "invalid model name 'no/slash'" in out  # refused before any training
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    code, out = run_main(monkeypatch, capsys, "tune", "reader", str(empty), "-p", str(tmp_path / "project"))
    assert code == 1 and "no usable examples" in out
    assert not (tmp_path / "project" / "models").exists() or not any((tmp_path / "project" / "models").iterdir())


def test_help_explains_the_command() -> None:
    result = runner.invoke(app, ["tune", "reader", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for text in ("SQuAD", "JSONL", "--validation", "--layers", "--max-length", "--time-budget", "--holdout",
                 "answer.kind: reader", "no-answer"):
        assert text in result.output, text
    assert "reader" in runner.invoke(app, ["tune", "--help"], env={"COLUMNS": "200"}).output
