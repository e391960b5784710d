"""Parsers: turn one source file into text plus structural sections (headings, PDF pages).

Every parser returns a :class:`Parsed`; offsets in its sections index into ``Parsed.text``.
A file that cannot be parsed raises :class:`ParseError` with the reason; nothing here writes anything.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ragtune.core import Section
from ragtune.errors import ParseError, UnsupportedFormatError
from ragtune.ingest.front_matter import split_front_matter

# Terminal escape sequences (and other C0 controls but tab/newline/CR) in document text: blanked with spaces
# of the same length, so section offsets stay valid and no document can drive the user's terminal.
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


@dataclass
class Parsed:
    """The text of a file, its sections, its title and any metadata it declares (e.g. front matter)."""

    text: str
    sections: list[Section]
    title: str
    metadata: dict[str, Any] = field(default_factory=dict)


def decode(data: bytes, path: Path) -> str:
    """Decode bytes as UTF-8, else as the encoding charset-normalizer detects; refuse binary data."""
    # UTF-16/32 text (e.g. Excel's "Unicode text" export) is full of NUL bytes: honour its BOM first.
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise ParseError(f"{path.name}: starts with a {encoding} byte-order mark but is not valid "
                                 f"{encoding} ({exc.reason}); convert it to UTF-8") from exc
    if b"\x00" in data[:8192]:
        raise ParseError(f"{path.name}: looks like a binary file, not text (it contains NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        raise ParseError(
            f"{path.name}: not UTF-8 and no text encoding could be detected; convert it to UTF-8"
        )
    # Short Western-European texts decode equally "well" in several code pages and charset-normalizer
    # breaks the tie arbitrarily (cp1250 turns "crème" into "crčme"). Windows-1252 is by far the most
    # common legacy encoding, so it wins every tie.
    for match in matches:
        if match.encoding == "cp1252" and match.chaos <= best.chaos and match.coherence >= best.coherence:
            return data.decode("cp1252")
    return str(best)


def _sections_from_headings(text: str, headings: list[tuple[int, int, str]]) -> list[Section]:
    """Split ``text`` at headings given as (char offset, level, title); text before the first is untitled."""
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    bounds = [h[0] for h in headings] + [len(text)]
    if not headings or headings[0][0] > 0:
        first_end = bounds[0]
        if text[:first_end].strip():
            sections.append(Section(text=text[:first_end], path=(), start=0))
    for i, (offset, level, title) in enumerate(headings):
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        body = text[offset : bounds[i + 1]]
        if body.strip():
            sections.append(Section(text=body, path=tuple(t for _, t in stack), start=offset))
    return sections


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
    return Parsed(text=text, sections=_sections_from_headings(text, headings), title=title, metadata=metadata)


def parse_text(data: bytes, path: Path) -> Parsed:
    """Plain text: one section; the first non-empty line is the title; front matter as in Markdown."""
    metadata, text = split_front_matter(decode(data, path), path)
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    title = first[:120] if first else path.stem
    title = str(metadata.get("title") or title)
    return Parsed(text=text, sections=[Section(text=text, path=(), start=0)], title=title, metadata=metadata)


# Elements that start a new block of text; everything else (spans, links, emphasis) flows inline.
_BLOCK_TAGS = frozenset(
    [
        "h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "td", "th", "pre", "blockquote", "dt", "dd",
        "caption", "div", "section", "article", "main", "aside", "header", "ul", "ol", "dl", "table",
        "thead", "tbody", "tfoot", "tr", "form", "fieldset", "legend", "figure", "figcaption", "address",
        "details", "summary", "hr", "body", "html",
    ]
)
_HEADING_TAGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_SKIP_TAGS = ("script", "style", "noscript", "template", "nav", "footer", "head", "title", "iframe", "svg")


def parse_html(data: bytes, path: Path) -> Parsed:
    """HTML: visible text, one block per block element, joined by blank lines; h1-h6 delimit sections.

    Text outside the usual text tags (a bare ``<div>``, a table cell's loose text) is kept, each piece
    of text appears once however deeply blocks nest, and inline markup does not split words.
    """
    from bs4 import BeautifulSoup, NavigableString, Tag
    from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction

    soup = BeautifulSoup(decode(data, path), "html.parser")
    page_title = soup.title.get_text(" ", strip=True) if soup.title else ""
    parts: list[str] = []
    headings: list[tuple[int, int, str]] = []
    offset = 0
    pending: list[str] = []

    def flush(heading_level: int = 0) -> None:
        nonlocal offset
        block = re.sub(r"\s+", " ", "".join(pending)).strip()
        pending.clear()
        if not block:
            return
        if heading_level:
            headings.append((offset, heading_level, block))
        parts.append(block)
        offset += len(block) + 2

    # Iterative document-order walk (deeply nested pages would overflow a recursive one); an int on the
    # stack marks the end of a block element: 1-6 for a heading of that level, 0 for any other block.
    stack: list[Any] = list(reversed(soup.contents))
    while stack:
        node = stack.pop()
        if isinstance(node, int):
            flush(node)
        elif isinstance(node, Comment | Declaration | Doctype | ProcessingInstruction):
            continue
        elif isinstance(node, NavigableString):
            pending.append(str(node))
        elif isinstance(node, Tag):
            name = node.name.lower()
            if name in _SKIP_TAGS:
                continue
            if name == "br":
                pending.append(" ")
                continue
            if name in _BLOCK_TAGS:
                flush()
                stack.append(int(name[1]) if name in _HEADING_TAGS else 0)
            stack.extend(reversed(node.contents))
    flush()
    text = "\n\n".join(parts)
    title = page_title or next((h[2] for h in headings if h[1] == 1), "") or path.stem
    return Parsed(text=text, sections=_sections_from_headings(text, headings), title=title)


def parse_pdf(data: bytes, path: Path) -> Parsed:
    """PDF: one section per page, numbered from 1."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise ParseError(f"{path.name}: PDF is encrypted; decrypt it before ingesting")
        pages = [p.extract_text() or "" for p in reader.pages]
    except ParseError:
        raise
    except Exception as exc:  # noqa: BLE001 - damaged PDFs make pypdf raise almost anything
        # (PdfReadError, LimitReachedError, NotImplementedError for a mangled filter name, zlib.error, ...)
        raise ParseError(f"{path.name}: corrupt or unreadable PDF ({type(exc).__name__}: {exc})") from exc
    sections: list[Section] = []
    chunks: list[str] = []
    offset = 0
    for number, page_text in enumerate(pages, start=1):
        if page_text.strip():
            sections.append(Section(text=page_text, path=(f"Page {number}",), page=number, start=offset))
        chunks.append(page_text)
        offset += len(page_text) + 2
    text = "\n\n".join(chunks)
    meta_title = ""
    try:
        if reader.metadata and reader.metadata.title:
            meta_title = str(reader.metadata.title)
    except Exception:  # noqa: BLE001 - a broken info dictionary must not fail an otherwise readable PDF
        meta_title = ""
    return Parsed(text=text, sections=sections, title=meta_title or path.stem)


def parse_docx(data: bytes, path: Path) -> Parsed:
    """DOCX: paragraphs and tables in document order; 'Heading N' and 'Title' styles delimit sections."""
    from docx import Document as DocxDocument
    from docx.table import Table

    parts: list[str] = []
    headings: list[tuple[int, int, str]] = []
    offset = 0
    try:
        doc = DocxDocument(io.BytesIO(data))
        title = doc.core_properties.title or ""
        # Tables are read where they stand, so a table under a heading belongs to that heading's section.
        for item in doc.iter_inner_content():
            if isinstance(item, Table):
                for row in item.rows:
                    block = " | ".join(c.text.strip() for c in row.cells)
                    if block.strip(" |"):
                        parts.append(block)
                        offset += len(block) + 2
                continue
            block = item.text.strip()
            if not block:
                continue
            style = (item.style.name if item.style is not None else "") or ""
            m = re.match(r"Heading (\d)", style)
            if m or style == "Title":
                level = int(m.group(1)) if m else 1
                headings.append((offset, level, block))
                if style == "Title" and not title:
                    title = block
            parts.append(block)
            offset += len(block) + 2
    except Exception as exc:  # noqa: BLE001 - damaged archives raise BadZipFile, KeyError, zlib.error, lxml errors...
        raise ParseError(f"{path.name}: corrupt or unreadable DOCX ({type(exc).__name__}: {exc})") from exc
    text = "\n\n".join(parts)
    title = title or next((h[2] for h in headings if h[1] == 1), "") or path.stem
    return Parsed(text=text, sections=_sections_from_headings(text, headings), title=title)


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
