"""The fields ``ragtune extract`` fills: a YAML file of names, questions and optional types, and the validators.

A fields file::

    fields:
      - name: retention
        questions:
          - How long is data retained?
          - How long do you keep my information?
        type: duration
      - name: contact_email
        question: What email address can I contact about privacy?
        type: email
      - name: sells_data
        question: Do you sell personal information?
        type: enum
        values: [yes, no]
        min_score: 1.5

A typed field's validator filters the reader's candidate spans (the best one that validates is the value) and
narrows it to what it recognises: ``date`` (month names, numeric dates, years), ``duration`` (a number or number
word, or a range of them, and a day, week, month or year unit), ``money`` (a currency sign or code and a
number), ``email`` and ``url`` (the address); ``enum`` takes a span that is (or holds exactly one of) its
``values``, case-insensitive, given back as written in ``values``; ``text`` (or no type) takes any span.
Every mistake in the file is a :class:`DataError` naming ``file:line`` and the field. Quote a question with a
``?`` inside a ``[...]`` list, or write the list one item a line: YAML reads ``[How long?, Why?]`` as an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ragtune.errors import DataError
from ragtune.validation import clean_message, describe

FIELD_TYPES = ("text", "date", "duration", "money", "enum", "email", "url")
RESERVED_NAMES = frozenset({"path"})  # the CSV's first column
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")


@dataclass(frozen=True)
class Match:
    """A span that validates: the value to report and where it lies within the span (``start``..``end``)."""

    value: str
    start: int
    end: int


# -- validators ----------------------------------------------------------------------------------------------------
_MONTHS = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
           r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_DATE = re.compile(
    rf"\b{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b"  # January 1, 2015
    rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTHS}(?:,?\s+\d{{4}})?"  # 1 January 2015, 1st of March
    rf"|\b{_MONTHS}\s+(?:\d{{1,2}}(?:st|nd|rd|th)?\b|\d{{4}}\b)"  # January 2015, March 1st
    r"|\b\d{4}-\d{1,2}-\d{1,2}\b"  # 2015-01-31
    r"|\b\d{1,2}[/.\-]\d{1,2}[/.\-](?:\d{4}|\d{2})\b"  # 01/31/2015, 31.1.15
    r"|\b(?:1[89]|2[01])\d{2}\b",  # a year
    re.IGNORECASE)
_NUMBER_WORDS = ("a|an|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen"
                 "|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety"
                 "|hundred|several|few")
_AMOUNT = rf"(?:\d+(?:[.,]\d+)?|(?:{_NUMBER_WORDS})(?:[\s\-]+(?:{_NUMBER_WORDS}))*)(?:\s*\(\d+\))?"
_DURATION = re.compile(
    rf"\b(?:{_AMOUNT}\s*(?:-|–|to|and|or)\s*)?"  # 30 to 90 days, 6-12 months
    rf"{_AMOUNT}"  # 30, 2.5, thirty, twenty-four, thirty (30)
    r"[\s\-]*(?:(?:business|calendar|working)\s+)?(?:days?|weeks?|months?|years?)\b",
    re.IGNORECASE)
_MONEY = re.compile(
    r"(?:[$€£¥₹]|\b(?:USD|EUR|GBP|CAD|AUD|CHF|JPY|INR|US\$)\s?)\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:million|billion|[kKmM]))?"
    r"|\b\d[\d,]*(?:\.\d+)?\s?(?:USD|EUR|GBP|CAD|AUD|CHF|JPY|INR|dollars?|euros?|pounds?|cents?)\b",
    re.IGNORECASE)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b")
_URL = re.compile(r"\bhttps?://[^\s<>\"')\]]+|\bwww\.[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+(?:/[^\s<>\"')\]]*)?",
                  re.IGNORECASE)
_TRAILING = ".,;:!?"


def _trimmed(span: str) -> Match | None:
    """The span without surrounding whitespace and trailing punctuation (None when nothing is left)."""
    start = len(span) - len(span.lstrip())
    end = len(span.rstrip().rstrip(_TRAILING).rstrip())
    return Match(span[start:end], start, end) if end > start else None


def _pattern_match(pattern: re.Pattern[str], span: str) -> Match | None:
    """The pattern's first occurrence in the span (trailing punctuation left out), or None."""
    m = pattern.search(span)
    if m is None:
        return None
    text = m.group(0).rstrip(_TRAILING)
    return Match(text, m.start(), m.start() + len(text))


def _words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def match_enum(span: str, values: tuple[str, ...]) -> Match | None:
    """The one value of ``values`` the span is (or holds as a whole word or phrase), case-insensitive, as written
    in ``values``; None when it holds none or several."""
    trimmed = _trimmed(span)
    if trimmed is None:
        return None
    words = _words(span)
    exact = [v for v in values if _words(v) == words]
    if exact:
        return Match(exact[0], trimmed.start, trimmed.end)
    held = [v for v in values if _words(v) and re.search(rf"(?:^| ){re.escape(_words(v))}(?: |$)", words)]
    return Match(held[0], trimmed.start, trimmed.end) if len(held) == 1 else None


def validate(kind: str, span: str, values: tuple[str, ...] = ()) -> Match | None:
    """``span`` as a value of type ``kind`` (one of :data:`FIELD_TYPES`), or None when it is not one."""
    if kind == "text":
        return _trimmed(span)
    if kind == "enum":
        return match_enum(span, values)
    if kind == "date":
        return _pattern_match(_DATE, span)
    if kind == "duration":
        return _pattern_match(_DURATION, span)
    if kind == "money":
        return _pattern_match(_MONEY, span)
    if kind == "email":
        return _pattern_match(_EMAIL, span)
    if kind == "url":
        return _pattern_match(_URL, span)
    raise ValueError(f"unknown field type {kind!r}")


# -- the fields file -----------------------------------------------------------------------------------------------
class FieldSpec(BaseModel):
    """One field: its ``name`` (a CSV column), the question(s) the reader is asked, an optional ``type`` (with
    ``values`` for ``enum``) and its own ``min_score`` (else ``--min-score``, else the reader's threshold)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    question: str | None = None
    questions: tuple[str, ...] = ()
    type: str = "text"
    values: tuple[str, ...] = ()
    min_score: float | None = Field(None, ge=-1000, le=1000)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"name {v!r}: use a letter, then letters, digits, _ or - (at most 64): it becomes a "
                             "column name")
        if v.lower() in RESERVED_NAMES:
            raise ValueError(f"name {v!r} is taken by the table's own column: choose another name")
        return v

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, v: Any) -> Any:
        if v is None:
            return "text"
        if not isinstance(v, str) or v.strip().lower() not in FIELD_TYPES:
            raise ValueError(f"type {v!r} is not one of {', '.join(FIELD_TYPES)}")
        return v.strip().lower()

    @field_validator("values", mode="before")
    @classmethod
    def _values(cls, v: Any) -> Any:
        if isinstance(v, list | tuple):
            if not all(isinstance(x, str | int | float | bool) for x in v):
                raise ValueError("values: give a list of words, e.g. [yes, no]")
            # YAML reads a bare yes/no as a boolean: give it back as the word it was written as.
            return tuple(("yes" if x else "no") if isinstance(x, bool) else str(x) for x in v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        if self.question is not None and self.questions:
            raise ValueError("give question or questions, not both")
        if not self.phrasings:
            raise ValueError("no question: give question: TEXT or questions: [TEXT, ...]")
        if self.type == "enum":
            if not any(_words(v) for v in self.values):
                raise ValueError("type enum needs values: [...], the words the value may be")
            if len({_words(v) for v in self.values}) < len(self.values):
                raise ValueError("values: the same value is listed twice (values are compared case-insensitively)")
        elif self.values:
            raise ValueError(f"values are only for type enum (this field's type is {self.type})")
        return self

    @property
    def phrasings(self) -> tuple[str, ...]:
        """The question's phrasings, empty ones left out."""
        asked = (self.question,) if self.question is not None else self.questions
        return tuple(q.strip() for q in asked if q and q.strip())

    def validate_span(self, span: str) -> Match | None:
        """``span`` as this field's value (normalised), or None when it does not validate."""
        return validate(self.type, span, self.values)


def _item_lines(text: str) -> list[tuple[int, dict[str, int]]]:
    """For each item of the top-level ``fields`` list: its line (1-based) and the line of each of its keys."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return []
    if not isinstance(node, yaml.MappingNode):
        return []
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "fields" and isinstance(value, yaml.SequenceNode):
            return [(item.start_mark.line + 1,
                     {str(k.value): k.start_mark.line + 1 for k, _ in item.value if isinstance(k, yaml.ScalarNode)}
                     if isinstance(item, yaml.MappingNode) else {}) for item in value.value]
    return []


def _error_key(exc: ValidationError) -> str | None:
    """The key of the item the first error is about (None: the item as a whole)."""
    loc = exc.errors()[0].get("loc", ()) if exc.errors() else ()
    return str(loc[0]) if loc else None


def _describe(exc: ValidationError) -> str:
    """The errors of one field: this module's own messages as they are (they name their key), pydantic's with the
    key they are about."""
    own = [clean_message(str(e.get("msg", ""))) for e in exc.errors() if e.get("type") == "value_error"]
    return "; ".join(own) if own else describe(exc, FieldSpec)


def parse_fields(text: str, source: str = "fields.yaml") -> list[FieldSpec]:
    """The fields of a fields file's text; any mistake is a :class:`DataError` naming ``source:line`` and the field."""
    from ragtune.ingest.yaml_unique import safe_load_unique

    try:
        data = safe_load_unique(text)
    except yaml.YAMLError as exc:
        mark = f":{exc.problem_mark.line + 1}" if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark else ""
        hint = ("quote a question that holds a '?' inside [...], or list the questions one a line (- How long?)"
                if "got '?'" in str(exc) else "fix the syntax")
        raise DataError(f"{source}{mark}: not valid YAML ({' '.join(str(exc).split())}): {hint}") from exc
    if not isinstance(data, dict) or "fields" not in data:
        raise DataError(f"{source}: expected a mapping with a `fields:` list of {{name, question, type}} items")
    unknown = sorted(str(k) for k in data if k != "fields")
    if unknown:
        raise DataError(f"{source}: unknown key {unknown[0]!r}; the file holds only `fields:`")
    items = data["fields"]
    if not isinstance(items, list) or not items:
        raise DataError(f"{source}: `fields:` must be a non-empty list of {{name, question, type}} items")
    lines = _item_lines(text)
    specs: list[FieldSpec] = []
    seen: dict[str, int] = {}
    columns: set[str] = set()
    for i, item in enumerate(items):
        line, key_lines = lines[i] if i < len(lines) else (0, {})
        where = f"{source}:{line}" if line else source
        label = f"field {item.get('name')!r}" if isinstance(item, dict) and item.get("name") else f"field {i + 1}"
        if not isinstance(item, dict):
            raise DataError(f"{where}: {label}: expected a mapping such as {{name: retention, question: How long "
                            "is data kept?}}")
        try:
            spec = FieldSpec.model_validate(item)
        except ValidationError as exc:
            at = key_lines.get(_error_key(exc) or "", line)
            raise DataError(f"{source}:{at}: {label}: {_describe(exc)}" if at else
                            f"{source}: {label}: {_describe(exc)}") from None
        key = spec.name.lower()
        if key in seen:
            raise DataError(f"{where}: {label}: the name is used twice (first on line {seen[key]}); names become "
                            "column names and must differ (case-insensitively)")
        clash = next((c for c in (key, f"{key}_score", f"{key}_citation") if c in columns), None)
        if clash is not None:
            raise DataError(f"{where}: {label}: its column {clash!r} is another field's column too: rename one")
        seen[key] = line
        columns.update({key, f"{key}_score", f"{key}_citation"})
        specs.append(spec)
    return specs


def load_fields(path: Path) -> list[FieldSpec]:
    """The fields of a fields YAML file (:func:`parse_fields`); a missing or unreadable file is a DataError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such fields file; write one with `fields: [{{name, question, type}}]` "
                        "(README: Extract fields from documents)") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file: give a fields YAML file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
    return parse_fields(text, str(path))
