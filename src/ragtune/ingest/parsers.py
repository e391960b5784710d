"""Parsers: turn one source file into text plus structural sections (headings, PDF pages).

Every parser returns a :class:`Parsed`; offsets in its sections index into ``Parsed.text``.
A file that cannot be parsed raises :class:`ParseError` with the reason; nothing here writes anything.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ragtune.core import Section
from ragtune.errors import ParseError, UnsupportedFormatError

FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)


@dataclass
class Parsed:
    """The text of a file, its sections, its title and any metadata it declares (e.g. front matter)."""

    text: str
    sections: list[Section]
    title: str
    metadata: dict[str, Any] = field(default_factory=dict)


def decode(data: bytes, path: Path) -> str:
    """Decode bytes as UTF-8, else as the encoding charset-normalizer detects; refuse binary data."""
    if b"\x00" in data[:8192]:
        raise ParseError(f"{path.name}: looks like a binary file, not text (it contains NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise ParseError(f"{path.name}: not UTF-8 and no text encoding could be detected; convert it to UTF-8")
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


def split_front_matter(raw: str, path: Path) -> tuple[dict[str, Any], str]:
    """Split a leading YAML front matter block (``---`` lines) from Markdown text."""
    m = FRONT_MATTER.match(raw)
    if not m:
        return {}, raw
    try:
        loaded = yaml.safe_load(m.group(1))
    except yaml.YAMLError as exc:
        raise ParseError(f"{path.name}: front matter is not valid YAML ({exc})") from exc
    if loaded is not None and not isinstance(loaded, dict):
        raise ParseError(f"{path.name}: front matter must be a mapping of keys")
    return loaded or {}, raw[m.end() :]


def read_front_matter(data: bytes, path: Path) -> dict[str, Any]:
    """Only the front matter of a Markdown file (cheap: no Markdown parsing)."""
    if path.suffix.lower() not in (".md", ".markdown"):
        return {}
    return split_front_matter(decode(data, path), path)[0]


def parse_markdown(data: bytes, path: Path) -> Parsed:
    """Markdown: YAML front matter becomes metadata; headings delimit sections."""
    from markdown_it import MarkdownIt

    metadata, text = split_front_matter(decode(data, path), path)
    line_starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
    tokens = MarkdownIt("commonmark").parse(text)
    headings: list[tuple[int, int, str]] = []
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open" and tok.map is not None:
            title = tokens[i + 1].content.strip() if i + 1 < len(tokens) else ""
            headings.append((line_starts[tok.map[0]], int(tok.tag[1]), title))
    title = str(metadata.get("title") or next((h[2] for h in headings if h[1] == 1), "") or path.stem)
    return Parsed(text=text, sections=_sections_from_headings(text, headings), title=title, metadata=metadata)


def parse_text(data: bytes, path: Path) -> Parsed:
    """Plain text: one section; the first non-empty line is the title."""
    text = decode(data, path)
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    title = first[:120] if first else path.stem
    return Parsed(text=text, sections=[Section(text=text, path=(), start=0)], title=title)


_BLOCKS = ["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "td", "th", "pre", "blockquote", "dt", "dd", "caption"]


def parse_html(data: bytes, path: Path) -> Parsed:
    """HTML: visible block text joined by blank lines; h1-h6 delimit sections."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode(data, path), "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "nav", "footer", "head"]):
        if tag.name == "head":
            continue
        tag.decompose()
    page_title = soup.title.get_text(" ", strip=True) if soup.title else ""
    parts: list[str] = []
    headings: list[tuple[int, int, str]] = []
    offset = 0
    body = soup.body or soup
    for el in body.find_all(_BLOCKS):
        if el.find_parent(_BLOCKS) is not None and el.name not in ("li",):
            continue  # its text is already part of an enclosing block
        block = re.sub(r"\s+", " ", el.get_text(" ", strip=True))
        if not block:
            continue
        if el.name in ("h1", "h2", "h3", "h4", "h5", "h6"):
            headings.append((offset, int(el.name[1]), block))
        parts.append(block)
        offset += len(block) + 2
    text = "\n\n".join(parts)
    if not text.strip():
        # Pages without block tags: fall back to all visible text.
        text = re.sub(r"[ \t]+", " ", body.get_text("\n", strip=True))
        headings = []
    title = page_title or next((h[2] for h in headings if h[1] == 1), "") or path.stem
    return Parsed(text=text, sections=_sections_from_headings(text, headings), title=title)


def parse_pdf(data: bytes, path: Path) -> Parsed:
    """PDF: one section per page, numbered from 1."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise ParseError(f"{path.name}: PDF is encrypted; decrypt it before ingesting")
        pages = [p.extract_text() or "" for p in reader.pages]
    except ParseError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError, AttributeError) as exc:
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
    """DOCX: paragraphs and tables in order; 'Heading N' and 'Title' styles delimit sections."""
    import zipfile

    from docx import Document as DocxDocument

    try:
        doc = DocxDocument(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ParseError(f"{path.name}: corrupt or unreadable DOCX ({type(exc).__name__}: {exc})") from exc
    parts: list[str] = []
    headings: list[tuple[int, int, str]] = []
    offset = 0
    title = doc.core_properties.title or ""
    for para in doc.paragraphs:
        block = para.text.strip()
        if not block:
            continue
        style = (para.style.name if para.style is not None else "") or ""
        m = re.match(r"Heading (\d)", style)
        if m or style == "Title":
            level = int(m.group(1)) if m else 1
            headings.append((offset, level, block))
            if style == "Title" and not title:
                title = block
        parts.append(block)
        offset += len(block) + 2
    for table in doc.tables:
        for row in table.rows:
            block = " | ".join(c.text.strip() for c in row.cells)
            if block.strip(" |"):
                parts.append(block)
                offset += len(block) + 2
    text = "\n\n".join(parts)
    title = title or next((h[2] for h in headings if h[1] == 1), "") or path.stem
    return Parsed(text=text, sections=_sections_from_headings(text, headings), title=title)


def _records_to_parsed(records: list[dict[str, Any]], path: Path) -> Parsed:
    lines = []
    for rec in records:
        lines.append("; ".join(f"{k}: {v}" for k, v in rec.items() if v not in (None, "")))
    text = "\n".join(lines)
    return Parsed(text=text, sections=[Section(text=text, path=(), start=0)] if text.strip() else [], title=path.stem)


def parse_csv(data: bytes, path: Path) -> Parsed:
    """CSV: each row becomes one line of ``column: value`` pairs."""
    text = decode(data, path)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel  # type: ignore[assignment]
    try:
        rows = list(csv.DictReader(io.StringIO(text), dialect=dialect))
    except csv.Error as exc:
        raise ParseError(f"{path.name}: malformed CSV ({exc})") from exc
    if rows and any(None in r for r in rows):
        bad = next(i for i, r in enumerate(rows, start=2) if None in r)
        raise ParseError(f"{path.name}: malformed CSV: line {bad} has more fields than the header")
    return _records_to_parsed(rows, path)


def parse_jsonl(data: bytes, path: Path) -> Parsed:
    """JSONL: one JSON object per line; each becomes one line of ``key: value`` pairs."""
    text = decode(data, path)
    records: list[dict[str, Any]] = []
    for n, line in enumerate(text.splitlines(), start=1):
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


def read_source(path: Path, max_bytes: int | None = None) -> bytes:
    """Read a source file's bytes, refusing files over ``max_bytes``, empty files and unknown formats."""
    if not is_supported(path):
        raise UnsupportedFormatError(
            f"{path.name}: unsupported format '{path.suffix or '(no extension)'}'; "
            f"supported: {', '.join(sorted(PARSERS))}"
        )
    try:
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise ParseError(
                f"{path.name}: {size / 1e6:.1f} MB is over the {max_bytes / 1e6:.0f} MB limit; "
                "split the file or raise ingest.max_file_mb"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise ParseError(f"{path.name}: cannot read ({exc.strerror or exc})") from exc
    if not data.strip():
        raise ParseError(f"{path.name}: empty file")
    return data


def parse_bytes(data: bytes, path: Path) -> Parsed:
    """Parse a file's bytes with the parser for its extension."""
    parsed = PARSERS[path.suffix.lower()](data, path)
    if not parsed.text.strip():
        raise ParseError(f"{path.name}: no extractable text (a scanned PDF needs OCR first)")
    return parsed


def parse_file(path: Path, max_bytes: int | None = None) -> Parsed:
    """Read and parse one file."""
    return parse_bytes(read_source(path, max_bytes), path)
