"""`ragtune eval classify`: the training report's evaluator and report on any labelled file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import read_labelled, write_labelled
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.config import init_project
from ragtune.errors import DataError, ModelNotFoundError
from ragtune.models.embedder import MiniLMEmbedder
from ragtune.project import Project
from ragtune.tuning.evaluate import ClassificationEvaluator
from ragtune.tuning.train import train_classifier

DATA = Path(__file__).resolve().parents[2] / "examples" / "data" / "banking77"
runner = CliRunner()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    proj = tmp_path_factory.mktemp("classify") / "proj"
    init_project(proj)
    embedder = MiniLMEmbedder(batch_size=32, threads=2)  # the process-wide model: loaded once
    train_classifier(Project.open(proj).registry, DATA / "train.csv", "triage", label_col="category",
                     method="head", embedder=embedder)
    return proj


def test_eval_classify_writes_the_training_report_for_another_file(project: Path, tmp_path: Path) -> None:
    rows = read_labelled(DATA / "test.csv")
    rows.append((rows[0][0], "not_a_label_of_the_model"))  # a conflicting copy with a label the model lacks
    data = write_labelled(tmp_path / "held_out.csv", rows)
    out = tmp_path / "eval"
    result = runner.invoke(app, ["eval", "classify", "--model", "triage", "--data", str(data), "--label-col", "label",
                                 "--out", str(out), "-p", str(project)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    record = json.loads((out / "metrics.json").read_text())
    assert record["model"] == "triage" and record["version"] == 1 and record["metrics"]["examples"] == len(rows)
    clf = Project.open(project).classifier("triage")
    direct = ClassificationEvaluator([t for t, _ in rows], [lab for _, lab in rows])(clf)
    assert record["metrics"]["accuracy"] == pytest.approx(direct["accuracy"]) and direct["accuracy"] > 0.8
    assert record["metrics"]["macro_f1"] == pytest.approx(direct["macro_f1"])
    assert record["metrics"]["unknown_labels"] == ["not_a_label_of_the_model"]
    last_line = data.read_text().count("\n")  # the appended row is the file's last line
    assert record["audit"]["conflicts"][0]["lines"] == [2, last_line]  # the file's own audit, by line
    assert "1 label(s) the model does not know" in result.output
    html = (out / "report.html").read_text()
    assert "Model triage v1 on held_out.csv" in html and "data:image/png;base64," in html and "macro-F1" in html
    for name in ("report.md", "confusion.png", "reliability.png"):
        assert (out / name).is_file(), name


def test_eval_classify_bad_input(project: Path, tmp_path: Path) -> None:
    data = str(DATA / "test.csv")
    cases = [
        (["--model", "nope", "--data", data], ModelNotFoundError, "no model named 'nope'"),
        (["--model", "triage", "--version", "7", "--data", data], ModelNotFoundError, "has no version 7"),
        (["--model", "triage", "--data", str(tmp_path / "missing.csv")], DataError, "no such file"),
        (["--model", "triage", "--data", data], DataError, "label"),  # the file's label column is `category`
    ]
    for args, kind, message in cases:
        result = runner.invoke(app, ["eval", "classify", *args, "--out", str(tmp_path / "o"), "-p", str(project)])
        assert result.exit_code == 1 and isinstance(result.exception, kind), (args, result.output)
        assert message in str(result.exception), (args, str(result.exception))
