"""What every parser returns (:class:`Parsed`), the text decoding they share, and sections from headings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.core import Section
from ragtune.errors import ParseError

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


def sections_from_headings(text: str, headings: list[tuple[int, int, str]]) -> list[Section]:
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
