"""The hand-written extraction set (examples/data/policies-written): its documents parse, its labels are exact texts
of their documents, it covers the fields of the demo fields file, and with the 20 PolicyQA policies it makes 30+."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ragtune.extract.fields import load_fields
from ragtune.ingest.acl import parse_acl
from ragtune.ingest.parsers import parse_markdown

REPO = Path(__file__).parents[2]
WRITTEN = REPO / "examples" / "data" / "policies-written"
CORPUS = WRITTEN / "corpus"
DEMO = REPO / "examples" / "data" / "policies"
FIELDS = REPO / "examples" / "extract" / "fields.yaml"


def records(path: Path) -> list[dict[str, Any]]:
    """The lines of a ``fields.jsonl``, each a JSON object (a bad line names the file and line)."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        row = json.loads(line)
        assert isinstance(row, dict), f"{path}:{n}: not a JSON object"
        out.append(row)
    return out


def stated_texts(row: dict[str, Any], name: str) -> list[str]:
    """The labelled value of field ``name`` and its ``also`` alternatives (none when the field is null)."""
    value = row["fields"][name]
    also = row.get("also", {}).get(name, [])
    assert value is not None or not also, (row["path"], name, "alternatives for a null field")
    return [value, *also] if value is not None else []


def test_one_label_line_per_written_document_and_no_other_markdown() -> None:
    rows = records(WRITTEN / "fields.jsonl")
    documents = sorted(p.name for p in CORPUS.glob("*.md"))
    assert sorted(r["path"] for r in rows) == documents
    assert len(rows) >= 12 and len({r["website"] for r in rows}) == len(rows)
    assert all(r["folder"] == "written" and r["path"] == f"{r['website']}.md" for r in rows)
    assert not [p for p in CORPUS.iterdir() if p.is_dir()], "the documents lie in corpus/ itself (one level)"
    assert sorted(p.name for p in WRITTEN.iterdir() if p.is_file()) == ["LICENSE", "SOURCE.md", "fields.jsonl"], \
        "nothing else beside corpus/, so that ingesting corpus/ indexes the policies alone"


@pytest.mark.parametrize("row", records(WRITTEN / "fields.jsonl"), ids=lambda r: r["website"])
def test_written_document_parses_and_its_labels_are_verbatim(row: dict[str, Any]) -> None:
    path = CORPUS / row["path"]
    parsed = parse_markdown(path.read_bytes(), path)
    assert parsed.metadata["title"] == f"{row['website']} privacy policy"
    assert parsed.metadata["website"] == row["website"]
    assert parsed.metadata["source"] == "hand-written for ragtune"
    assert f"\n# {row['website']} privacy policy\n" in path.read_text(encoding="utf-8")
    assert sum(s.text.startswith("## ") for s in parsed.sections) >= 5, "sections to cite"
    words = len(path.read_text(encoding="utf-8").split("\n---\n", 1)[1].split())
    assert 500 <= words <= 1000, words
    # What the reader sees is the parsed text: every label must be there, exactly, not only in the raw file.
    text = "".join(s.text for s in parsed.sections)
    names = [f.name for f in load_fields(FIELDS)]
    assert list(row["fields"]) == names
    assert set(row.get("also", {})) <= set(names)
    for name in names:
        for t in stated_texts(row, name):
            assert t.strip() == t and t, (row["path"], name, t)
            assert t in text, (row["path"], name, t)
    assert sum(v is not None for v in row["fields"].values()) >= 5


def test_written_set_tests_empty_answers_and_is_public() -> None:
    rows = records(WRITTEN / "fields.jsonl")
    names = [f.name for f in load_fields(FIELDS)]
    stated = {n: sum(r["fields"][n] is not None for r in rows) for n in names}
    assert all(stated.values()), stated  # every field is stated somewhere
    assert sum(count < len(rows) for count in stated.values()) >= 5, stated  # and most are absent somewhere
    acl = parse_acl(yaml.safe_load((CORPUS / "_acl.yaml").read_text(encoding="utf-8"))["acl"], "_acl.yaml")
    assert acl.public
    assert "CC0 1.0 Universal" in (WRITTEN / "LICENSE").read_text(encoding="utf-8")
    assert "CC0 1.0" in (WRITTEN / "SOURCE.md").read_text(encoding="utf-8")


def test_demo_labels_are_verbatim_in_their_documents() -> None:
    names = [f.name for f in load_fields(FIELDS)]
    for row in records(DEMO / "fields.jsonl"):
        assert list(row["fields"]) == names, row["path"]
        text = (DEMO / "corpus" / row["path"]).read_text(encoding="utf-8")
        for name in names:
            for t in stated_texts(row, name):
                assert t.strip() == t and t in text, (row["path"], name, t)


def test_demo_and_written_make_thirty_two_documents_with_five_fields_or_more_in_the_written() -> None:
    demo, written = records(DEMO / "fields.jsonl"), records(WRITTEN / "fields.jsonl")
    assert len(demo) == 20 and len(written) >= 12 and len(demo) + len(written) >= 30
    assert not {r["website"] for r in demo} & {r["website"] for r in written}
    assert {n for r in demo + written for n in r["fields"]} == {f.name for f in load_fields(FIELDS)}
