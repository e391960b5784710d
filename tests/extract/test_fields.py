"""The fields file (parsing and its error messages) and each type's validator, positive and negative."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragtune.errors import DataError
from ragtune.extract.fields import FIELD_TYPES, load_fields, parse_fields, validate

GOOD = """\
fields:
  - name: retention
    questions:
      - How long is data retained?
      - How long do you keep my information?
    type: duration
  - name: contact_email
    question: What email address can I write to?
    type: email
  - name: sells_data
    question: Do you sell personal information?
    type: enum
    values: [yes, no, "only with consent"]
    min_score: 1.5
  - name: summary
    question: What is this policy about?
"""


def test_fields_file_parses_every_key() -> None:
    specs = parse_fields(GOOD, "fields.yaml")
    assert [s.name for s in specs] == ["retention", "contact_email", "sells_data", "summary"]
    assert specs[0].phrasings == ("How long is data retained?", "How long do you keep my information?")
    assert specs[0].type == "duration" and specs[0].min_score is None
    assert specs[1].phrasings == ("What email address can I write to?",)
    # A bare yes/no is a YAML boolean: it is given back as the word written.
    assert specs[2].values == ("yes", "no", "only with consent") and specs[2].min_score == 1.5
    assert specs[3].type == "text"


def test_load_fields_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "fields.yaml"
    path.write_text(GOOD, encoding="utf-8")
    assert len(load_fields(path)) == 4
    with pytest.raises(DataError, match="no such fields file"):
        load_fields(tmp_path / "missing.yaml")


@pytest.mark.parametrize(("text", "message"), [
    ("fields:\n  - name: retention\n    question: How long?\n    type: colour\n",
     r"^fields\.yaml:4: field 'retention': type 'colour' is not one of text, date, duration, money, enum, email, url$"),
    ("fields:\n  - name: a\n    question: Q?\n  - name: b\n    question: R?\n  - name: A\n    question: S?\n",
     r"^fields\.yaml:6: field 'A': the name is used twice \(first on line 2\)"),
    ("fields:\n  - name: a\n    question: '  '\n", r"fields\.yaml:2: field 'a': no question"),
    ("fields:\n  - name: a\n    questions: []\n", r"field 'a': no question"),
    ("fields:\n  - name: a\n    question: Q?\n    questions: [R]\n", r"field 'a': give question or questions"),
    ("fields:\n  - name: a\n    question: Q?\n    type: enum\n", r"field 'a': type enum needs values"),
    ("fields:\n  - name: a\n    question: Q?\n    values: [x]\n", r"field 'a': values are only for type enum"),
    ("fields:\n  - name: a\n    question: Q?\n    qestion: R?\n",
     r"fields\.yaml:4: field 'a': unknown key 'qestion' \(did you mean 'question'\?\)"),
    ("fields:\n  - question: Q?\n", r"fields\.yaml:2: field 1: missing key 'name'"),
    ("fields:\n  - name: path\n    question: Q?\n", r"field 'path': name 'path' is taken"),
    ("fields:\n  - name: 'two words'\n    question: Q?\n", r"name 'two words': use a letter"),
    ("fields:\n  - name: a_score\n    question: Q?\n  - name: a\n    question: R?\n",
     r"fields\.yaml:4: field 'a': its column 'a_score' is another field's column"),
    ("fields:\n  - name: a\n    question: Q?\n    min_score: high\n", r"field 'a': min_score:"),
    ("fields: []\n", r"non-empty list"),
    ("name: a\n", r"expected a mapping with a `fields:` list"),
    ("fields:\n  - name: a\n  question: [\n", r"fields\.yaml:3: not valid YAML"),
    ("fields:\n  - name: a\n    questions: [How long?, Why?]\n",
     r"fields\.yaml:3: not valid YAML .*: quote a question"),
    ("fields:\n  - just a string\n", r"fields\.yaml:2: field 1: expected a mapping"),
    ("fields:\n  - name: a\n    question: Q?\nother: 1\n", r"unknown key 'other'"),
])
def test_bad_fields_files_name_the_file_line_and_field(text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_fields(text, "fields.yaml")


def test_the_demo_fields_file_parses() -> None:
    demo = Path(__file__).parents[2] / "examples" / "extract" / "fields.yaml"
    specs = {s.name: s for s in load_fields(demo)}
    assert {"effective_date", "contact_email", "children_age", "retention", "third_party_sharing"} <= set(specs)
    assert specs["effective_date"].type == "date" and specs["contact_email"].type == "email"


def test_the_hand_labelled_policy_fields_are_exact_texts_of_their_documents() -> None:
    """examples/data/policies/fields.jsonl: one line per demo policy, every field of the demo fields file, and
    every labelled value (and alternative) verbatim in its document."""
    import json

    data = Path(__file__).parents[2] / "examples" / "data" / "policies"
    names = [s.name for s in load_fields(Path(__file__).parents[2] / "examples" / "extract" / "fields.yaml")]
    records = [json.loads(line) for line in (data / "fields.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(r["path"] for r in records) == sorted(p.relative_to(data / "corpus").as_posix()
                                                        for p in (data / "corpus").glob("*/*.md"))
    stated = 0
    for r in records:
        assert list(r["fields"]) == names, r["path"]
        text = (data / "corpus" / r["path"]).read_text(encoding="utf-8")
        for name, value in r["fields"].items():
            for t in [value, *r.get("also", {}).get(name, [])]:
                assert t is None or (t.strip() == t and t in text), (r["path"], name, t)
            stated += value is not None
    assert len(records) == 20 and stated == 84


def test_every_type_is_documented_in_the_error() -> None:
    assert FIELD_TYPES == ("text", "date", "duration", "money", "enum", "email", "url")


@pytest.mark.parametrize(("kind", "span", "value"), [
    ("date", "January 1, 2015", "January 1, 2015"),
    ("date", "Sept. 3rd, 2019.", "Sept. 3rd, 2019"),
    ("date", "1 March 2020", "1 March 2020"),
    ("date", "2015-03-31", "2015-03-31"),
    ("date", "03/31/2015", "03/31/2015"),
    ("date", "2014", "2014"),
    ("duration", "30 days", "30 days"),
    ("duration", "thirty (30) days", "thirty (30) days"),
    ("duration", "twenty-four months", "twenty-four months"),
    ("duration", "a year", "a year"),
    ("duration", "10 business days", "10 business days"),
    ("money", "$5.00", "$5.00"),
    ("money", "USD 100", "USD 100"),
    ("money", "€1,200", "€1,200"),
    ("money", "100 dollars", "100 dollars"),
    ("email", "write to privacy@ted.com.", "privacy@ted.com"),
    ("url", "visit www.ted.com/privacy.", "www.ted.com/privacy"),
    ("url", "(https://example.org/opt-out)", "https://example.org/opt-out"),
    ("text", "  anything at all. ", "anything at all"),
    # A typed value is narrowed to what the validator recognises in a longer span.
    ("duration", "Data is retained for 45 days.", "45 days"),
    ("duration", "between 30 and 90 days", "30 and 90 days"),
    ("duration", "6-12 months", "6-12 months"),
    ("date", "This policy is effective as of May 5, 2019.", "May 5, 2019"),
])
def test_validators_accept_and_normalise(kind: str, span: str, value: str) -> None:
    match = validate(kind, span)
    assert match is not None and match.value == value
    assert span[match.start:match.end] == value


@pytest.mark.parametrize(("kind", "span"), [
    ("date", "last year"), ("date", "as soon as possible"), ("date", "30 days"),
    ("duration", "as long as necessary"), ("duration", "2015"), ("duration", "privacy@ted.com"),
    ("money", "five"), ("money", "30 days"), ("money", "2015"),
    ("email", "privacy at ted dot com"), ("email", "@handle"),
    ("url", "our website"), ("url", "privacy@ted.com"),
    ("text", "  . "),
])
def test_validators_refuse_other_spans(kind: str, span: str) -> None:
    assert validate(kind, span) is None


def test_enum_normalises_to_the_listed_value() -> None:
    values = ("Yes", "No", "Only with consent")
    assert validate("enum", "no", values).value == "No"  # type: ignore[union-attr]
    assert validate("enum", "YES.", values).value == "Yes"  # type: ignore[union-attr]
    assert validate("enum", "only with your consent", values) is None  # not the phrase
    assert validate("enum", "only with consent of the user", values).value == "Only with consent"  # type: ignore[union-attr]
    assert validate("enum", "yes or no", values) is None  # two values: ambiguous
    assert validate("enum", "maybe", values) is None
    assert validate("enum", "nobody", values) is None  # whole words only
