"""Parsers: turn one source file into text plus structural sections (headings, PDF pages).

Every parser returns a :class:`Parsed`; offsets in its sections index into ``Parsed.text``.
A file that cannot be parsed raises :class:`ParseError` with the reason; nothing here writes anything.
Markdown, text, CSV and JSONL are parsed here; HTML, PDF and DOCX in ``parsers_office``; ``Parsed`` and
``decode`` live in ``parsed`` (all importable from this module).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ragtune.core import Section
from ragtune.errors import ParseError, UnsupportedFormatError
from ragtune.ingest.front_matter import split_front_matter
from ragtune.ingest.parsed import Parsed, decode, sections_from_headings
from ragtune.ingest.parsers_office import parse_docx, parse_html, parse_pdf

# Terminal escape sequences (and other C0 controls but tab/newline/CR) in document text: blanked with spaces
# of the same length, so section offsets stay valid and no document can drive the user's terminal.
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


_FRONT_MATTER_FORMATS = (".md", ".markdown", ".txt", ".text")


def read_front_matter(data: bytes, path: Path) -> dict[str, Any]:
    """Only the front matter of a Markdown or text file (cheap: no Markdown parsing)."""
    if path.suffix.lower() not in _FRONT_MATTER_FORMATS:
        return {}
    return split_front_matter(decode(data, path), path)[0]


def _inline_text(children: list[Any]) -> str:
    """Plain text of a heading's inline tokens: ``A *b* `c``` becomes ``A b c``."""
    out = "".join(
        " " if c.type in ("softbreak", "hardbreak") else c.content
        for c in children
        if c.type in ("text", "code_inline", "softbreak", "hardbreak")
    )
    return re.sub(r"\s+", " ", out).strip()


def parse_markdown(data: bytes, path: Path) -> Parsed:
    """Markdown: YAML front matter becomes metadata; headings delimit sections."""
    from markdown_it import MarkdownIt

    metadata, text = split_front_matter(decode(data, path), path)
    # markdown-it counts lines after normalising \r\n and lone \r to \n; count them the same way.
    line_starts = [0] + [m.end() for m in _LINE_BREAK.finditer(text)]
    tokens = MarkdownIt("commonmark").parse(text)
    headings: list[tuple[int, int, str]] = []
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open" and tok.map is not None:
            inline = tokens[i + 1] if i + 1 < len(tokens) else None
            title = _inline_text(inline.children or []) if inline is not None else ""
            headings.append((line_starts[tok.map[0]], int(tok.tag[1]), title))
    title = str(metadata.get("title") or next((h[2] for h in headings if h[1] == 1), "") or path.stem)
    return Parsed(text=text, sections=sections_from_headings(text, headings), title=title, metadata=metadata)


def parse_text(data: bytes, path: Path) -> Parsed:
    """Plain text: one section; the first non-empty line is the title; front matter as in Markdown."""
    metadata, text = split_front_matter(decode(data, path), path)
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    title = first[:120] if first else path.stem
    title = str(metadata.get("title") or title)
    return Parsed(text=text, sections=[Section(text=text, path=(), start=0)], title=title, metadata=metadata)


def _records_to_parsed(records: list[dict[str, Any]], path: Path) -> Parsed:
    lines = []
    for rec in records:
        lines.append("; ".join(f"{k}: {v}" for k, v in rec.items() if v not in (None, "")))
    text = "\n".join(lines)
    sections = [Section(text=text, path=(), start=0)] if text.strip() else []
    return Parsed(text=text, sections=sections, title=path.stem)


def parse_csv(data: bytes, path: Path) -> Parsed:
    """CSV: each row becomes one line of ``column: value`` pairs."""
    text = decode(data, path)
    # Only the delimiter is sniffed: the Sniffer's quoting guesses are unreliable (it often decides that
    # quotes are not doubled, which turns Excel's "say ""hi""" into 'say "hi"""'). Quoting stays RFC 4180.
    try:
        delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[dict[str, Any]] = []
    try:
        for row in reader:
            if None in row:
                raise ParseError(
                    f"{path.name}: malformed CSV: line {reader.line_num} has more fields than the header"
                )
            rows.append(row)
    except csv.Error as exc:
        raise ParseError(f"{path.name}: malformed CSV at line {reader.line_num} ({exc})") from exc
    return _records_to_parsed(rows, path)


def parse_jsonl(data: bytes, path: Path) -> Parsed:
    """JSONL: one JSON object per line; each becomes one line of ``key: value`` pairs."""
    text = decode(data, path)
    records: list[dict[str, Any]] = []
    # Not str.splitlines(): it also breaks at U+2028, U+2029 and U+0085, which JSON allows inside strings.
    for n, line in enumerate(_LINE_BREAK.split(text), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ParseError(f"{path.name}: line {n} is not valid JSON ({exc.msg})") from exc
        records.append(obj if isinstance(obj, dict) else {"value": obj})
    return _records_to_parsed(records, path)


PARSERS: dict[str, Callable[[bytes, Path], Parsed]] = {
    ".md": parse_markdown,
    ".markdown": parse_markdown,
    ".txt": parse_text,
    ".text": parse_text,
    ".html": parse_html,
    ".htm": parse_html,
    ".pdf": parse_pdf,
    ".docx": parse_docx,
    ".csv": parse_csv,
    ".jsonl": parse_jsonl,
}


def is_supported(path: Path) -> bool:
    """Whether ragtune has a parser for this file's extension."""
    return path.suffix.lower() in PARSERS


def _unsupported_message(path: Path) -> str:
    return (
        f"{path.name}: unsupported format '{path.suffix or '(no extension)'}'; "
        f"supported: {', '.join(sorted(PARSERS))}"
    )


def read_source(path: Path, max_bytes: int | None = None) -> bytes:
    """Read a regular file's bytes, refusing special files, files over ``max_bytes``, empty files and unknown formats.

    The limit is enforced on the bytes actually read, not on ``st_size`` (which a device or a growing file
    misreports), and the file is opened non-blocking so a FIFO swapped in after the walk cannot hang the run.
    """
    if not is_supported(path):
        raise UnsupportedFormatError(_unsupported_message(path))
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ParseError(f"{path.name}: not a regular file (a pipe, device or socket); not read")
            if max_bytes is not None and st.st_size > max_bytes:
                raise ParseError(f"{path.name}: {st.st_size / 1e6:.1f} MB is over the {max_bytes / 1e6:.0f} MB "
                                 "limit; split the file or raise ingest.max_file_mb")
            data = fh.read(max_bytes + 1) if max_bytes is not None else fh.read()
    except OSError as exc:
        raise ParseError(f"{path.name}: cannot read ({exc.strerror or exc})") from exc
    if max_bytes is not None and len(data) > max_bytes:
        raise ParseError(
            f"{path.name}: over the {max_bytes / 1e6:.0f} MB limit; split the file or raise ingest.max_file_mb"
        )
    if not data.strip():
        raise ParseError(f"{path.name}: empty file")
    return data


def blank_control_characters(text: str) -> str:
    """Replace terminal escape sequences and control characters with spaces of the same length."""
    return _CONTROL.sub(lambda m: " " * len(m.group(0)), text)


def parse_bytes(data: bytes, path: Path) -> Parsed:
    """Parse a file's bytes with the parser for its extension."""
    parser = PARSERS.get(path.suffix.lower())
    if parser is None:
        raise UnsupportedFormatError(_unsupported_message(path))
    parsed = parser(data, path)
    if _CONTROL.search(parsed.text):
        parsed.text = blank_control_characters(parsed.text)
        parsed.title = blank_control_characters(parsed.title)
        parsed.sections = [replace(sec, text=blank_control_characters(sec.text),
                                   path=tuple(blank_control_characters(p) for p in sec.path))
                           for sec in parsed.sections]
    if not parsed.text.strip():
        hint = " (a scanned PDF needs OCR first)" if path.suffix.lower() == ".pdf" else ""
        raise ParseError(f"{path.name}: no extractable text{hint}")
    return parsed


def parse_file(path: Path, max_bytes: int | None = None) -> Parsed:
    """Read and parse one file."""
    return parse_bytes(read_source(path, max_bytes), path)
