"""`ragtune train`, `classify` and `models` end to end on the committed banking77 slice."""

from __future__ import annotations

import csv
import json
import re
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
    assert "Label audit" in out and "method: head" in out and "registered triage v1" in out
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
    card = json.loads(ok("models", "show", "triage", "--json", "-p", str(proj)))
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
    card = json.loads(ok("models", "show", "t", "--json", "-p", str(proj)))
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


def write_rows(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def banking(name: str) -> list[tuple[str, str]]:
    with (DATA / name).open(encoding="utf-8", newline="") as f:
        return [(r["text"], r["category"]) for r in csv.DictReader(f)]


def test_train_prints_the_audit_as_tables_and_the_top_confusions(tmp_path: Path) -> None:
    # Issue 19, bugs 12 and 15: no raw Markdown in the terminal; the errors the model makes, with their texts.
    proj = tmp_path / "proj"
    ok("init", str(proj))
    same = "[bold]Where is my card?[/bold] It has not come"  # Rich markup in a training text prints as typed
    train = [(same, "card_arrival"), *banking("train.csv"), (same, "lost_or_stolen_card")]
    test = banking("test.csv")
    wrong = [i for i, (_, lab) in enumerate(test) if lab == "exchange_rate"][:2]
    for i in wrong:
        test[i] = (test[i][0], "top_up_failed")
    result = runner.invoke(app, ["train", str(write_rows(tmp_path / "train.csv", train)), "--name", "triage",
                                 "--method", "head", "--test", str(write_rows(tmp_path / "test.csv", test)),
                                 "-p", str(proj)], catch_exceptions=False, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "## " not in out and "**" not in out and "|---" not in out  # Rich tables, not Markdown
    assert "Label audit" in out and "Conflicting labels for the same text" in out and "┃ lines" in out
    assert f"2, {len(train) + 1 + 2}" in out  # both file lines (header; two banking texts span two lines)
    assert "card_arrival (line 2)" in out and same in out
    assert "Top confusions on the test set" in out and "top_up_failed" in out
    assert test[wrong[0]][0][:40] in out


def test_models_show_is_readable_and_promote_pins_the_name(tmp_path: Path) -> None:
    # Issue 19, bugs 12 and 13: `models show` is a table with local ISO times; `models promote` pins a version.
    proj = tmp_path / "proj"
    ok("init", str(proj))
    train = ["train", str(DATA / "train.csv"), "--label-col", "category", "--name", "triage", "--method", "head",
             "-p", str(proj)]
    ok(*train)
    ok(*train)
    shown = ok("models", "show", "triage", "-p", str(proj))
    assert not shown.lstrip().startswith("{") and '"created"' not in shown
    assert re.search(r"created\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", shown), shown
    assert re.search(r"version\s+2 — latest", shown) and "held out 64 of 320 examples by duplicate group" in shown
    raw = json.loads(ok("models", "show", "triage", "--json", "-p", str(proj)))
    assert isinstance(raw["created"], float) and raw["promoted"] is None and raw["latest"] == 2

    assert "triage now resolves to v1; latest is v2" in ok("models", "promote", "triage", "1", "-p", str(proj))
    ok(*train)  # v3: the promoted name keeps serving v1
    assert re.search(r"version\s+1 — promoted", ok("models", "show", "triage", "-p", str(proj)))
    listed = json.loads(ok("models", "list", "--json", "-p", str(proj)))
    assert [(m["version"], m["promoted"], m["latest"]) for m in listed] == [(1, 1, 3)]
    assert "1 promoted, latest 3" in runner.invoke(app, ["models", "list", "-p", str(proj)],
                                                   env={"COLUMNS": "200"}).stdout
    classified = json.loads(ok("classify", "my card was stolen", "-m", "triage", "--json", "-p", str(proj)))
    assert classified["label"] == "lost_or_stolen_card"
    refused = runner.invoke(app, ["models", "delete", "triage", "--version", "1", "-p", str(proj)])
    assert refused.exit_code != 0 and "pass --yes" in str(refused.exception)
    assert "v1 is the promoted version of triage" in str(refused.exception)
    gone = ok("models", "delete", "triage", "--version", "1", "--yes", "-p", str(proj))
    assert "follow its latest version, v3" in gone
    assert json.loads(ok("models", "show", "triage", "--json", "-p", str(proj)))["version"] == 3
    bad = runner.invoke(app, ["models", "promote", "triage", "-p", str(proj)])
    assert bad.exit_code != 0 and "give a VERSION to promote, or --clear" in str(bad.exception)
    missing = runner.invoke(app, ["models", "promote", "triage", "9", "-p", str(proj)])
    assert missing.exit_code != 0 and "has no version 9" in str(missing.exception)
