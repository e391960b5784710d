"""The guide's answers: unknown keys are named (never prompted for), and one parser reads files, flags and prompts
(issue 19, bug 3)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from helpers import write
from typer.testing import CliRunner

from ragtune.advisor import cli as advisor_cli
from ragtune.advisor.answers import evidence_run_answers, load_answers, parse_answer
from ragtune.advisor.cli import advise_guide
from ragtune.errors import ConfigError

COMPLETE: dict[str, Any] = {"task": "classification", "knowledge_change": "never", "citations": True,
                            "structured_output": False, "examples_per_class": 100, "fast_iteration": False,
                            "latency_ms": 50, "regulated": False}

runner = CliRunner()
app = typer.Typer()
app.command("advise")(advise_guide)


@app.command()
def version() -> None:
    """A second command, so `advise` stays a named subcommand as in the real app."""


def typo_file(tmp_path: Path) -> Path:
    """The issue's file: every answer given, `citations` misspelt `citation`."""
    body = {("citation" if k == "citations" else k): v for k, v in COMPLETE.items()}
    return write(tmp_path / "answers.yaml", yaml.safe_dump(body))


def test_an_unknown_key_is_named_with_the_closest_valid_key_and_never_prompted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(advisor_cli, "_interactive", lambda: True)  # a terminal: a missing answer *would* be asked
    result = runner.invoke(app, ["advise", "--answers", str(typo_file(tmp_path))], input="yes\n")
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError)
    message = str(result.exception)
    assert "unknown key 'citation' (did you mean 'citations'?)" in message and "answers.yaml" in message
    assert "valid keys: task, knowledge_change, citations" in message and "missing" not in message
    assert "Do you need citations" not in result.output  # no prompt started (it would have read the "yes")


def test_an_unknown_key_exits_1_with_one_line_without_a_terminal(tmp_path: Path) -> None:
    path = typo_file(tmp_path)
    done = subprocess.run([sys.executable, "-c", "from ragtune.cli import main; main()", "advise", "--answers",
                           str(path)], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "unknown key 'citation' (did you mean 'citations'?)" in done.stderr
    assert "missing answer(s)" not in done.stderr  # the issue: it used to say `missing answer(s): citations`


def test_an_evidence_run_names_the_typo_instead_of_calling_the_answers_incomplete(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'citation' \(did you mean 'citations'\?\)"):
        evidence_run_answers(typo_file(tmp_path), {})
    hyphens = write(tmp_path / "h.yaml", yaml.safe_dump({k.replace("_", "-"): v for k, v in COMPLETE.items()}))
    assert evidence_run_answers(hyphens, {}) == load_answers(hyphens)  # hyphenated keys are not "missing"


def test_several_unknown_keys_are_all_named(tmp_path: Path) -> None:
    path = write(tmp_path / "a.yaml", "tsk: classification\ncolour: blue\n")
    with pytest.raises(ConfigError) as err:
        load_answers(path)
    assert "unknown keys 'tsk' (did you mean 'task'?), 'colour'; valid keys: task" in str(err.value)


@pytest.mark.parametrize(("key", "typed", "value"), [
    ("citations", "YES", True), ("citations", "No", False), ("citations", " y ", True), ("citations", "False", False),
    ("task", "Answer_Generation", "answer-generation"), ("task", "CLASSIFICATION", "classification"),
    ("knowledge_change", "Weekly", "weekly"), ("examples_per_class", "12", 12), ("latency_ms", "0", None),
    ("latency_ms", "500", 500),
])
def test_prompted_answers_take_the_answers_file_spellings(tmp_path: Path, key: str, typed: str,
                                                          value: Any) -> None:
    assert parse_answer(key, typed) == value
    # the same spelling in an answers file means the same
    path = write(tmp_path / "a.yaml", yaml.safe_dump({**COMPLETE, key: typed.strip()}))
    assert getattr(load_answers(path), key) == value


@pytest.mark.parametrize(("key", "typed"), [("citations", "maybe"), ("task", "poetry"),
                                            ("examples_per_class", "-5"), ("latency_ms", "fast")])
def test_a_bad_prompted_answer_gets_the_answers_file_message(tmp_path: Path, key: str, typed: str) -> None:
    with pytest.raises(ConfigError) as prompted:
        parse_answer(key, typed)
    path = write(tmp_path / "a.yaml", yaml.safe_dump({**COMPLETE, key: typed}))
    with pytest.raises(ConfigError) as filed:
        load_answers(path)
    assert str(filed.value) == f"{path}: {prompted.value}"  # one parser, one message
    assert "Value error" not in str(prompted.value)


def test_prompts_accept_yes_no_and_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(advisor_cli, "_interactive", lambda: True)
    typed = "\n".join(["maybe", "YES", "NO", "Y", "n"]) + "\n"  # citations asked again after "maybe"
    result = runner.invoke(app, ["advise", "--task", "Classification", "--knowledge-change", "NEVER",
                                 "--examples-per-class", "100", "--latency-ms", "50", "--json"], input=typed)
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)["answers"]
    assert (got["citations"], got["structured_output"], got["fast_iteration"], got["regulated"]) == \
        (True, False, True, False)
    assert "citations: 'maybe' is not valid" in result.stderr and "(yes/no)" in result.stderr
