"""`ragtune train`, `classify` and `models` end to end on the committed banking77 slice."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from typer.testing import CliRunner

from ragtune.cli import app

DATA = Path(__file__).resolve().parents[2] / "examples" / "data" / "banking77"
runner = CliRunner()


def ok(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_train_classify_and_manage_models(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    ok("init", str(proj))
    out = ok("train", str(DATA / "train.csv"), "--label-col", "category", "--name", "triage", "--method", "head",
             "--test", str(DATA / "test.csv"), "-p", str(proj))
    assert "## Label audit" in out and "method: head" in out and "registered triage v1" in out
    folder = proj / "models" / "triage" / "v1"
    for name in ("report.md", "report.html", "confusion.png", "reliability.png", "audit.json", "card.json"):
        assert (folder / name).is_file(), name
    html = (folder / "report.html").read_text()
    assert "data:image/png;base64," in html and "macro-F1" in html and "Label audit" in html
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.85

    got = json.loads(ok("classify", "I still haven't received my new card", "--model", "triage", "--top-k", "3",
                        "--json", "-p", str(proj)))
    assert got["label"] == "card_arrival" and len(got["top_k"]) == 3
    assert got["top_k"][0]["probability"] >= got["top_k"][1]["probability"] >= got["top_k"][2]["probability"]
    review = json.loads(ok("classify", "hello", "--model", "triage", "--threshold", "1.0", "--json", "-p", str(proj)))
    assert review["label"] == "needs_review"

    in_csv = tmp_path / "in.csv"
    with in_csv.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        w.writerows([["1", "my card was stolen"], ["2", "what is the exchange rate for euros"]])
    ok("classify", "--model", "triage", "--input", str(in_csv), "--output", str(tmp_path / "out.csv"), "-p", str(proj))
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert [r["id"] for r in rows] == ["1", "2"]
    assert [r["predicted_label"] for r in rows] == ["lost_or_stolen_card", "exchange_rate"]
    assert all(0.0 < float(r["probability"]) <= 1.0 for r in rows)

    listed = json.loads(ok("models", "list", "--json", "-p", str(proj)))
    assert [(m["name"], m["version"], m["method"]) for m in listed] == [("triage", 1, "head")]
    card = json.loads(ok("models", "show", "triage", "-p", str(proj)))
    assert card["data_sha256"] and len(card["classes"]) == 8 and card["metrics"]["accuracy"] > 0.85
    refused = runner.invoke(app, ["models", "delete", "triage", "-p", str(proj)])  # no terminal, no --yes
    assert refused.exit_code != 0 and "pass --yes" in str(refused.exception)
    assert json.loads(ok("models", "list", "--json", "-p", str(proj)))  # nothing deleted
    ok("models", "delete", "triage", "--yes", "-p", str(proj))
    result = runner.invoke(app, ["classify", "x", "--model", "triage", "-p", str(proj)])
    assert result.exit_code != 0 and "no model named 'triage'" in str(result.exception)


def test_train_takes_method_settings_and_label_names(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    ok("init", str(proj))
    train = ["train", str(DATA / "train.csv"), "--label-col", "category", "--name", "t", "-p", str(proj)]
    out = ok(*train, "--method", "ensemble", "--label-names",
             "--params", '{"members": [{"method": "head", "C": 1}, {"method": "head", "C": 100}]}')
    assert "method: ensemble" in out and "registered t v1" in out
    card = json.loads(ok("models", "show", "t", "-p", str(proj)))
    assert card["notes"]["label_names"] is True
    assert card["notes"]["train_examples"] == 256 + 8  # the 80 % split of 320 rows, plus one name per intent
    assert [m["C"] for m in card["params"]["members"]] == [1, 100]
    for bad, message in (("{oops", "--params is not valid JSON"), ("[1]", "must be a JSON object"),
                         ('{"epochs": 3}', "head has no setting 'epochs'")):
        result = runner.invoke(app, [*train, "--method", "head", "--params", bad])
        assert result.exit_code != 0 and message in result.output + str(result.exception), bad


def test_train_reads_latin1_and_reports_progress_when_piped(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    ok("init", str(proj))
    rows = [(f"un café crème numéro {i}", "drink") for i in range(6)] + \
           [(f"el señor pidió la cuenta número {i}", "bill") for i in range(6)]
    data = tmp_path / "latin.csv"
    data.write_bytes(("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows)).encode("latin-1"))
    result = runner.invoke(app, ["train", str(data), "--name", "fr", "--method", "head", "-p", str(proj)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "note: latin.csv is not UTF-8; read it as Windows-1252" in result.stderr
    # Not a terminal: plain progress lines on stderr instead of a silent run.
    assert "load latin.csv: 12 rows, 1/1 MB (done)" in result.stderr and "audit: 0/1" in result.stderr
    assert "registered fr v1" in result.stdout


def test_train_checks_name_method_and_classes_before_any_work(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    ok("init", str(proj))
    train = ["train", str(DATA / "train.csv"), "--label-col", "category", "-p", str(proj)]
    for args, message in (
        (["--name", "../x"], "invalid model name '../x'"),
        (["--name", "bad name"], "invalid model name"),
        (["--name", ""], "invalid model name"),
        (["--name", "m", "--method", "setfitt"], "unknown method 'setfitt'"),
        (["--name", "m", "--params", '{"bogus": 1}'], "'bogus'"),
    ):
        result = runner.invoke(app, [*train, *args])
        assert result.exit_code != 0 and message in str(result.exception), args
        assert "Label audit" not in result.output and "load " not in result.output, args  # failed before loading
    singletons = tmp_path / "singletons.csv"
    singletons.write_text("text,label\n" + "".join(f"example {i},class_{i:02d}\n" for i in range(50)))
    result = runner.invoke(app, ["train", str(singletons), "--name", "m", "-p", str(proj)])
    assert result.exit_code != 0
    assert "each class needs at least 2 examples" in str(result.exception)
    assert "class_00, class_01" in str(result.exception) and "Label audit" not in result.output
