"""Parsers of rich formats: HTML (visible text, h1-h6 sections), PDF (a section per page) and DOCX (heading
styles delimit sections, tables in document order). Each takes a file's bytes and returns a :class:`Parsed`.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Any

from ragtune.core import Section
from ragtune.errors import ParseError
from ragtune.ingest.parsed import Parsed, decode, sections_from_headings

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
    return Parsed(text=text, sections=sections_from_headings(text, headings), title=title)


def parse_pdf(data: bytes, path: Path) -> Parsed:
    """PDF: one section per page, numbered from 1."""
    from pypdf import PdfReader

    # pypdf logs its own warnings ("EOF marker not found", "invalid pdf header") next to ragtune's per-file
    # reason; only ragtune's reason is shown.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
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
    return Parsed(text=text, sections=sections_from_headings(text, headings), title=title)
