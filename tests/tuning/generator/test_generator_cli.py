"""`ragtune tune generator` from the command line: help, and bad or unusable data refused before any model loads
(the successful run is `test_train_generator.py`'s module fixture)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_main
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.config import init_project

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "generator"


def test_bad_and_unusable_data_exit_non_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    project = str(tmp_path / "project")
    init_project(tmp_path / "project")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "completion": "a"}\n{"messages": [\n', encoding="utf-8")
    code, out = run_main(monkeypatch, capsys, "tune", "generator", str(bad), "-p", project)
    assert code == 1 and "bad.jsonl:2: not valid JSON" in out
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({"prompt": f"q{i}", "completion": "free text"}) + "\n" for i in range(3)),
                     encoding="utf-8")
    code, out = run_main(monkeypatch, capsys, "tune", "generator", str(plain), "--schema",
                         str(EXAMPLES / "triage_schema.json"), "-p", project)
    assert code == 1 and "cannot train the generator: no target validates against the schema" in out
    assert "3 examples with 3 distinct prompts, targets checked against the schema" in out  # the audit first
    code, out = run_main(monkeypatch, capsys, "tune", "generator", str(EXAMPLES / "triage_train.jsonl"),
                         "--validation", str(EXAMPLES / "triage_train.jsonl"), "--name", "no/slash", "-p", project)
    assert "80 validation prompt(s) also in the training data (leakage" in out  # warned, then refused by name
    assert code == 1 and "invalid model name 'no/slash'" in out
    code, out = run_main(monkeypatch, capsys, "tune", "generator", str(EXAMPLES / "triage_train.jsonl"),
                         "--method", "qlora", "-p", project)
    assert code == 1 and "unknown --method 'qlora'" in out
    models = tmp_path / "project" / "models"
    assert not models.exists() or not any(models.iterdir())


def test_help_explains_the_command() -> None:
    result = runner.invoke(app, ["tune", "generator", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    flat = " ".join(result.output.split())
    for text in ("messages", "prompt", "--schema", "--method", "lora", "--base", "--merge", "--gguf-type", "q8_0",
                 "--validation", "--resume", "--time-budget", "--shots", "generator.kind: tuned", "ROUGE-L"):
        assert text in flat, text
    assert "generator" in runner.invoke(app, ["tune", "--help"], env={"COLUMNS": "200"}).output
