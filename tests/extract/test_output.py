"""The writers on their own: formula-safe CSV cells, escaped HTML, atomic writes, the output format choice."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from ragtune.errors import DataError
from ragtune.extract.fields import parse_fields
from ragtune.extract.output import (
    output_format,
    render_html,
    safe_cell,
    write_atomic,
    write_csv,
    write_jsonl,
    write_outputs,
)
from ragtune.extract.run import DocumentRow, Extraction, FieldCell, FieldValue

FIELDS = parse_fields("fields:\n  - name: code\n    question: What is the code?\n"
                      "  - name: other\n    question: Anything else?\n")


def value(text: str, path: str = "doc.md", sentence: str | None = None) -> FieldValue:
    sentence = sentence if sentence is not None else f"The code is {text} here."
    at = sentence.index(text)
    return FieldValue(value=text, span=text, score=3.5, question="What is the code?", chunk_id="c-0", path=path,
                      section="Codes", page=2, char_start=10, char_end=10 + len(text), sentence=sentence,
                      mark_start=at, mark_end=at + len(text))


def extraction(*rows: tuple[str, FieldValue | None]) -> Extraction:
    result = Extraction("docs", FIELDS, "registry:tiny@v1+abc")
    for path, v in rows:
        result.rows.append(DocumentRow(path, path, path, {"code": FieldCell(v, v.score if v else None, 1.0),
                                                          "other": FieldCell(None, 0.2, 1.0)}))
    result.skipped = 2
    return result


@pytest.mark.parametrize("text", ["=SUM(A1:A9)", "+1+2", "-3+cmd|' /C calc'!A0", "@SUM(1)", "\tx", "\rx"])
def test_csv_cells_that_would_run_as_a_formula_are_quoted(tmp_path: Path, text: str) -> None:
    out = write_csv(extraction((text, value(text, path=text))), tmp_path / "t.csv")
    with out.open(encoding="utf-8", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["path"] == "'" + text and row["code"] == "'" + text
    assert row["code_citation"] == f"'{text} · Codes · p. 2 · chars 10-{10 + len(text)}"
    assert row["code_score"] == "3.5000" and row["other"] == row["other_score"] == row["other_citation"] == ""
    assert safe_cell("plain = fine") == "plain = fine"


def test_jsonl_keeps_the_text_as_it_is(tmp_path: Path) -> None:
    out = write_jsonl(extraction(("a.md", value("=SUM(A1)"))), tmp_path / "t.jsonl")
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["fields"]["code"]["value"] == "=SUM(A1)" and record["fields"]["code"]["page"] == 2
    assert record["fields"]["other"] == {**dict.fromkeys(record["fields"]["other"]), "threshold": 1.0,
                                         "best_score": 0.2}


def test_html_escapes_every_text_and_marks_the_span() -> None:
    evil = "<img src=x onerror=alert(1)>"
    page = render_html(extraction((f"{evil}.md", value("<b>42</b>", path=f"{evil}.md",
                                                        sentence="Before & <b>42</b> after."))))
    assert "<img" not in page and "<b>" not in page
    assert "Before &amp; <mark>&lt;b&gt;42&lt;/b&gt;</mark> after." in page
    assert "&lt;img src=x onerror=alert(1)&gt;.md" in page
    assert "best candidate 0.20 is below 1.00" in page and "2 document(s) you may not read were skipped" in page


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "t.csv"
    target.write_text("old table\n")

    def crash(buf: io.StringIO) -> None:
        buf.write("path,half a ta")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_atomic(target, crash)
    assert target.read_text() == "old table\n" and sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]
    written = write_outputs(extraction(("a.md", value("7"))), target, "csv", tmp_path / "t.html")
    assert [p.name for p in written] == ["t.csv", "t.html"] and "old table" not in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.html"]


def test_the_format_comes_from_the_suffix_or_format() -> None:
    assert output_format(Path("t.csv")) == "csv" and output_format(Path("t.JSONL")) == "jsonl"
    assert output_format(Path("t.ndjson")) == "jsonl" and output_format(Path("t.txt"), "CSV") == "csv"
    with pytest.raises(DataError, match="name a .csv or .jsonl file"):
        output_format(Path("t.xlsx"))
    with pytest.raises(DataError, match="choose csv or jsonl"):
        output_format(Path("t.csv"), "xml")
