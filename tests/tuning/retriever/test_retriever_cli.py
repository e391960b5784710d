"""`ragtune tune retriever` and `ragtune reindex` from the command line: end to end, help, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from helpers import run_main
from retriever_corpus import Corpus
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.config import init_project
from ragtune.tuning.retriever.cli import training_defaults

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "300"})
    return result.exit_code, result.output + (f"\n{result.exception!r}" if result.exception else "")


def test_tune_retriever_end_to_end(corpus_project: Corpus, tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(corpus_project.project, project, ignore=shutil.ignore_patterns("models"))
    code, out = invoke("tune", "retriever", "--name", "cli", "--max-pairs", "40", "--batch-size", "4",
                       "--time-budget", "1", "--holdout", "0.25", "-p", str(project))
    assert code == 0, out
    assert "registered cli v1 (embedder)" in out and "stopped by --time-budget" in out
    assert "held-out recall@10" in out and "base " in out and "adapted " in out
    assert f"next: ragtune reindex --embedder registry:cli@1 --project {project}" in out
    card = json.loads((project / "models" / "cli" / "v1" / "card.json").read_text())
    assert card["method"] == "embedder" and card["notes"]["stopped"] == "time budget"
    assert card["metrics"]["steps"] < card["metrics"]["planned_steps"]
    assert card["notes"]["pairs"]["pairs"] == 40 and card["params"]["batch_size"] == 4
    assert card["params"]["epochs"] == 1.0  # corpus pairs (no labels): one epoch by default
    code, out = invoke("models", "list", "-p", str(project))
    row = next(line for line in out.splitlines() if "│ cli " in line)
    assert code == 0 and "embedder" in row and "0.0000" not in row and "–" in row  # no classifier metrics
    code, out = invoke("reindex", "--embedder", "registry:cli", "-p", str(project))
    assert code == 0, out
    assert "re-embedded" in out and 'set embedder.model: registry:cli@1' in out
    assert 'model: "registry:cli@1"' in (project / "ragtune.yaml").read_text()
    code, out = invoke("search", "intake valve", "-u", "ann", "-p", str(project))
    assert code == 0 and "pump" in out
    code, out = invoke("reindex", "--embedder", "registry:cli@1", "-p", str(project))
    assert code == 0 and "already embedded with registry:cli@v1+" in out


def test_labels_only_for_three_epochs_is_the_default_with_labelled_queries() -> None:
    assert training_defaults(False, None, None) == (True, 1.0)  # corpus alone
    assert training_defaults(True, None, None) == (False, 3.0)  # --queries: labels only (chosen on a dev split)
    assert training_defaults(True, True, None) == (True, 1.0)  # --corpus-pairs asks for both
    assert training_defaults(True, None, 0.5) == (False, 0.5) and training_defaults(False, False, 2) == (False, 2)


def test_help_explains_the_commands() -> None:
    code, out = invoke("tune", "--help")
    assert code == 0 and "retriever" in out
    code, out = invoke("tune", "retriever", "--help")
    assert code == 0 and "no labels" in out and "--time-budget" in out and "ACL" in out
    code, out = invoke("reindex", "--help")
    assert code == 0 and "Resumable" in out and "--embedder" in out


def test_bad_input_gives_clear_errors(tmp_path: Path, monkeypatch: object, capsys: object) -> None:
    init_project(tmp_path / "empty")
    code, out = run_main(monkeypatch, capsys, "tune", "retriever", "-p", str(tmp_path / "empty"))
    assert code == 1 and "the index is empty: run `ragtune ingest PATH` first" in out
    code, out = run_main(monkeypatch, capsys, "reindex", "--embedder", "registry:ghost", "-p",
                         str(tmp_path / "empty"))
    assert code == 1 and "no model named 'ghost'" in out and "ragtune tune retriever --name ghost" in out
    code, out = run_main(monkeypatch, capsys, "reindex", "--embedder", "minilm", "-p", str(tmp_path / "empty"))
    assert code == 1 and "the index is empty" in out
    config = tmp_path / "empty" / "ragtune.yaml"
    config.write_text(config.read_text().replace("model: minilm", "model: registry:two words"))
    code, out = run_main(monkeypatch, capsys, "sources", "-p", str(tmp_path / "empty"))
    assert code == 1 and "embedder.model" in out and "registry:NAME[@VERSION]" in out
