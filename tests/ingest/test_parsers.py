"""Parsers on real files of every supported format, and the errors bad input must give."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import docx
import pytest
from fpdf import FPDF

from ragtune.errors import FrontMatterError, ParseError, RagtuneError, UnsupportedFormatError
from ragtune.ingest.parsers import (
    PARSERS,
    Parsed,
    decode,
    is_supported,
    parse_bytes,
    parse_file,
    read_front_matter,
    read_source,
)

Damage = Callable[[bytes], bytes]


def assert_offsets(parsed: Parsed) -> None:
    """Every section's text sits in the parsed text exactly where its offset says."""
    assert parsed.sections, "a parsed file with text must have at least one section"
    for s in parsed.sections:
        assert parsed.text[s.start : s.start + len(s.text)] == s.text, s
    starts = [s.start for s in parsed.sections]
    assert starts == sorted(starts)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


def section_paths(parsed: Parsed) -> list[tuple[str, ...]]:
    return [s.path for s in parsed.sections]


def section_by_path(parsed: Parsed, path: tuple[str, ...]) -> str:
    matches = [s.text for s in parsed.sections if s.path == path]
    assert len(matches) == 1, (path, section_paths(parsed))
    return matches[0]


def make_pdf(pages: list[str], title: str | None = None) -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    if title:
        pdf.set_title(title)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 10, text)
    return bytes(pdf.output())


def make_docx(title: str = "Operations Handbook") -> bytes:
    d = docx.Document()
    d.add_heading(title, 0)  # the "Title" style
    d.add_paragraph("Read this first.")
    d.add_heading("Security", 1)
    d.add_paragraph("All customer data is encrypted at rest.")
    table = d.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Key"
    table.cell(0, 1).text = "Rotation"
    table.cell(1, 0).text = "master"
    table.cell(1, 1).text = "90 days"
    d.add_heading("Backups", 2)
    d.add_paragraph("Backups run nightly and are kept for 35 days.")
    d.add_heading("Hiring", 1)
    d.add_paragraph("Interviews have four stages.")
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


# --- Markdown -------------------------------------------------------------------------------------

MARKDOWN = """---
title: Engineering Guide
acl:
  groups: [eng, sre]
tags: [ops, onboarding]
---
Preamble before any heading.

# Guide

Welcome to the guide.

## Install

Run the installer.

### Linux

Use the tarball.

```
# not a heading, just a shell comment
```

## Usage

Call the *CLI* with `--help`.

# Appendix

Glossary.
"""


def test_markdown_front_matter_becomes_metadata_and_leaves_the_text(tmp_path: Path) -> None:
    parsed = parse_file(write(tmp_path, "guide.md", MARKDOWN))
    assert parsed.metadata == {
        "title": "Engineering Guide",
        "acl": {"groups": ["eng", "sre"]},
        "tags": ["ops", "onboarding"],
    }
    assert parsed.title == "Engineering Guide"
    assert "groups" not in parsed.text and "---" not in parsed.text
    assert parsed.text.startswith("Preamble before any heading.")
    assert_offsets(parsed)


def test_markdown_nested_headings_give_section_paths(tmp_path: Path) -> None:
    parsed = parse_file(write(tmp_path, "guide.md", MARKDOWN))
    assert section_paths(parsed) == [
        (),
        ("Guide",),
        ("Guide", "Install"),
        ("Guide", "Install", "Linux"),
        ("Guide", "Usage"),
        ("Appendix",),
    ]
    assert section_by_path(parsed, ()).strip() == "Preamble before any heading."
    linux = section_by_path(parsed, ("Guide", "Install", "Linux"))
    assert "Use the tarball." in linux and "# not a heading" in linux  # fenced code is not a heading
    assert "Run the installer." in section_by_path(parsed, ("Guide", "Install"))
    assert "Glossary." in section_by_path(parsed, ("Appendix",))
    assert_offsets(parsed)


def test_markdown_title_falls_back_to_first_h1_then_file_name(tmp_path: Path) -> None:
    assert parse_file(write(tmp_path, "a.md", "intro\n\n## Minor\n\n# Major *Topic*\n\nx\n")).title == "Major Topic"
    assert parse_file(write(tmp_path, "notes-2024.md", "just text, no heading\n")).title == "notes-2024"


def test_markdown_heading_markup_is_stripped_from_section_path(tmp_path: Path) -> None:
    parsed = parse_file(write(tmp_path, "a.md", "# Use `ragtune` *now*\n\ntext\n"))
    assert section_paths(parsed) == [("Use ragtune now",)]


@pytest.mark.parametrize("newline", ["\r\n", "\r"], ids=["crlf", "cr"])
def test_markdown_windows_and_old_mac_line_endings(tmp_path: Path, newline: str) -> None:
    source = newline.join(["---", "title: T", "---", "# A", "alpha", "## B", "beta", ""])
    parsed = parse_file(write(tmp_path, "eol.md", source))
    assert parsed.metadata == {"title": "T"}
    assert section_paths(parsed) == [("A",), ("A", "B")]
    assert "beta" in section_by_path(parsed, ("A", "B")) and "beta" not in section_by_path(parsed, ("A",))
    assert_offsets(parsed)


def test_markdown_empty_front_matter_block(tmp_path: Path) -> None:
    parsed = parse_file(write(tmp_path, "a.md", "---\n---\n# Title\nbody\n"))
    assert parsed.metadata == {}
    assert parsed.text == "# Title\nbody\n"
    assert section_paths(parsed) == [("Title",)]


def test_markdown_bad_front_matter_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"broken\.md: front matter is not valid YAML \(line 2"):
        parse_file(write(tmp_path, "broken.md", "---\ntitle: [unclosed\n---\ntext\n"))
    with pytest.raises(ParseError, match=r"list\.md: front matter must be a mapping"):
        parse_file(write(tmp_path, "list.md", "---\n- a\n- b\n---\ntext\n"))


def test_read_front_matter_for_markdown_and_text(tmp_path: Path) -> None:
    data = b"---\nacl: public\n---\n# x\n"
    assert read_front_matter(data, tmp_path / "a.md") == {"acl": "public"}
    assert read_front_matter(data, tmp_path / "a.MARKDOWN") == {"acl": "public"}
    # A .txt file's `acl:` header is honoured too (issue 10 #4), and stripped from its text.
    assert read_front_matter(data, tmp_path / "a.txt") == {"acl": "public"}
    assert "acl" not in parse_file(write(tmp_path, "t.txt", "---\nacl: public\n---\nHello.\n")).text
    assert read_front_matter(data, tmp_path / "a.html") == {}
    assert read_front_matter(b"# no front matter\n", tmp_path / "a.md") == {}


def test_markdown_with_only_front_matter_has_no_text(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"only-meta\.md: no extractable text$"):
        parse_file(write(tmp_path, "only-meta.md", "---\ntitle: x\n---\n"))


# --- Plain text -----------------------------------------------------------------------------------


def test_text_is_one_section_titled_by_its_first_line(tmp_path: Path) -> None:
    parsed = parse_file(write(tmp_path, "memo.txt", "\n\n  Quarterly memo  \nBody line one.\nBody two.\n"))
    assert parsed.title == "Quarterly memo"
    assert len(parsed.sections) == 1 and parsed.sections[0].path == ()
    assert parsed.sections[0].text == parsed.text
    assert "Body two." in parsed.text
    assert_offsets(parsed)


# --- HTML -----------------------------------------------------------------------------------------

HTML = """<!DOCTYPE html>
<html><head><title>Policy Portal</title><style>body { color: red }</style>
<script>var secretToken = "do-not-index";</script></head>
<body>
<nav>Home | About</nav>
<p>Intro paragraph.</p>
<h1>Security</h1>
<p>We encrypt <b>everything</b> at rest.</p>
<div>Loose text inside a div.</div>
<script>trackUser("nope");</script>
<h2>Backups</h2>
<ul><li>Nightly<ul><li>Kept 35 days</li></ul></li><li>Weekly</li></ul>
<!-- reviewer comment: hidden -->
<h1>Hiring</h1>
<table><tr><td>Stage</td><td>Onsite</td></tr></table>
<footer>Copyright</footer>
</body></html>
"""


def test_html_headings_give_section_paths(tmp_path: Path) -> None:
    parsed = parse_file(write(tmp_path, "portal.html", HTML))
    assert parsed.title == "Policy Portal"
    assert section_paths(parsed) == [(), ("Security",), ("Security", "Backups"), ("Hiring",)]
    assert section_by_path(parsed, ()) .strip() == "Intro paragraph."
    security = section_by_path(parsed, ("Security",))
    assert "We encrypt everything at rest." in security
    assert "Loose text inside a div." in security  # text outside <p> is not lost
    assert "Kept 35 days" in section_by_path(parsed, ("Security", "Backups"))
    assert "Onsite" in section_by_path(parsed, ("Hiring",))
    assert_offsets(parsed)


def test_html_drops_scripts_styles_comments_and_chrome(tmp_path: Path) -> None:
    parsed = parse_file(write(tmp_path, "portal.htm", HTML))
    for hidden in ("secretToken", "do-not-index", "trackUser", "color: red", "reviewer comment",
                   "Home | About", "Copyright"):
        assert hidden not in parsed.text, hidden


def test_html_nested_blocks_appear_once_and_inline_markup_keeps_words(tmp_path: Path) -> None:
    parsed = parse_file(write(tmp_path, "n.html", HTML))
    assert parsed.text.count("Kept 35 days") == 1
    parsed = parse_file(write(tmp_path, "w.html", "<p>im<b>port</b>ant<br>next line</p>"))
    assert parsed.text == "important next line"


def test_html_without_block_tags_keeps_its_text(tmp_path: Path) -> None:
    parsed = parse_file(write(tmp_path, "bare.html", "<span>hello</span> <a href='#'>world</a>"))
    assert parsed.text == "hello world"
    assert parsed.title == "bare"


def test_html_deeply_nested_page_parses(tmp_path: Path) -> None:
    deep = "<div>" * 3000 + "<p>bottom</p>" + "</div>" * 3000
    assert parse_file(write(tmp_path, "deep.html", deep)).text == "bottom"


# --- PDF ------------------------------------------------------------------------------------------


def test_pdf_one_section_per_page_with_page_numbers(tmp_path: Path) -> None:
    data = make_pdf(
        ["Security policy. Backups run nightly.", "Retention policy. Logs are kept for 90 days."],
        title="Policy Handbook",
    )
    parsed = parse_file(write(tmp_path, "handbook.pdf", data))
    assert parsed.title == "Policy Handbook"
    assert [s.page for s in parsed.sections] == [1, 2]
    assert section_paths(parsed) == [("Page 1",), ("Page 2",)]
    assert "Backups run nightly." in parsed.sections[0].text
    assert "Logs are kept for 90 days." in parsed.sections[1].text
    assert "90 days" not in parsed.sections[0].text
    assert_offsets(parsed)


def test_pdf_blank_page_keeps_later_page_numbers_and_offsets(tmp_path: Path) -> None:
    parsed = parse_file(write(tmp_path, "gap.pdf", make_pdf(["First page.", "", "Third page."])))
    assert [s.page for s in parsed.sections] == [1, 3]
    assert "Third page." in parsed.sections[1].text
    assert parsed.title == "gap"
    assert_offsets(parsed)


def test_pdf_without_text_needs_ocr(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"scan\.pdf: no extractable text.*OCR"):
        parse_file(write(tmp_path, "scan.pdf", make_pdf(["", ""])))


@pytest.mark.parametrize(
    "damage",
    [
        lambda pdf: os.urandom(4096),
        lambda pdf: b"%PDF-1.4\n" + bytes(range(256)) * 8,
        lambda pdf: pdf[: len(pdf) // 2],
        lambda pdf: pdf[:300],
        # A mangled filter name makes pypdf raise NotImplementedError, not a PdfReadError.
        lambda pdf: pdf.replace(b"/FlateDecode", b"/FlateDecodX"),
    ],
    ids=["random", "header-then-garbage", "truncated-half", "truncated-start", "bad-filter"],
)
def test_corrupt_pdf_is_a_parse_error_naming_the_file(tmp_path: Path, damage: Damage) -> None:
    pdf = make_pdf(["Some text on page one.", "More text on page two."])
    assert b"/FlateDecode" in pdf
    with pytest.raises(ParseError, match=r"^broken\.pdf: .*PDF"):
        parse_file(write(tmp_path, "broken.pdf", damage(pdf)))


# --- DOCX -----------------------------------------------------------------------------------------


def test_docx_heading_styles_give_section_paths(tmp_path: Path) -> None:
    parsed = parse_file(write(tmp_path, "ops.docx", make_docx()))
    assert parsed.title == "Operations Handbook"
    assert section_paths(parsed) == [
        ("Operations Handbook",),
        ("Security",),
        ("Security", "Backups"),
        ("Hiring",),
    ]
    assert "Read this first." in section_by_path(parsed, ("Operations Handbook",))
    assert "encrypted at rest" in section_by_path(parsed, ("Security",))
    assert "Backups run nightly" in section_by_path(parsed, ("Security", "Backups"))
    assert "four stages" in section_by_path(parsed, ("Hiring",))
    assert_offsets(parsed)


def test_docx_table_stays_in_the_section_it_is_in(tmp_path: Path) -> None:
    parsed = parse_file(write(tmp_path, "ops.docx", make_docx()))
    assert "master | 90 days" in section_by_path(parsed, ("Security",))
    assert "master" not in section_by_path(parsed, ("Hiring",))


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: os.urandom(2048),
        lambda d: d[: len(d) // 2],
        lambda d: b"PK\x03\x04" + b"\x00" * 100,
    ],
    ids=["random", "truncated", "fake-zip-header"],
)
def test_corrupt_docx_is_a_parse_error(tmp_path: Path, damage: Damage) -> None:
    with pytest.raises(ParseError, match=r"^bad\.docx: corrupt or unreadable DOCX"):
        parse_file(write(tmp_path, "bad.docx", damage(make_docx())))


def test_zip_that_is_not_a_docx_is_a_parse_error(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(ParseError, match=r"^fake\.docx: corrupt or unreadable DOCX"):
        parse_file(write(tmp_path, "fake.docx", buf.getvalue()))


# --- CSV / JSONL ----------------------------------------------------------------------------------


def test_csv_rows_become_column_value_lines(tmp_path: Path) -> None:
    source = 'name,team,note\r\nAnn,legal,"Owns ""contracts"", NDAs"\r\nBob,,On call\r\n'
    parsed = parse_file(write(tmp_path, "people.csv", source))
    assert parsed.text == (
        'name: Ann; team: legal; note: Owns "contracts", NDAs\n'
        "name: Bob; note: On call"
    )
    assert parsed.title == "people"
    assert_offsets(parsed)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('col0,col1\r\nZürich,"say ""hi"""\r\n', 'col0: Zürich; col1: say "hi"'),
        ("q,a\r\nit's,\"don't \"\"stop\"\"\"\r\n", 'q: it\'s; a: don\'t "stop"'),
        ('a,b\n1,"two\nlines"\n', "a: 1; b: two\nlines"),
    ],
    ids=["doubled-quotes", "apostrophes", "multi-line-field"],
)
def test_csv_quoting_follows_rfc4180(tmp_path: Path, source: str, expected: str) -> None:
    assert parse_file(write(tmp_path, "q.csv", source)).text == expected


def test_csv_semicolon_delimiter_is_detected(tmp_path: Path) -> None:
    parsed = parse_file(write(tmp_path, "eu.csv", "product;price\nWidget;3,50\nGadget;12,00\n"))
    assert parsed.text == "product: Widget; price: 3,50\nproduct: Gadget; price: 12,00"


def test_csv_row_with_more_fields_than_header_names_its_line(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"^bad\.csv: malformed CSV: line 4 has more fields than the header"):
        parse_file(write(tmp_path, "bad.csv", "a,b\n1,2\n\n3,4,5\n6,7\n"))


def test_csv_with_only_a_header_has_no_text(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"^head\.csv: no extractable text$"):
        parse_file(write(tmp_path, "head.csv", "a,b,c\n"))


def test_jsonl_objects_become_key_value_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": 1, "question": "Reset password?", "answer": "Use the portal."}),
        "",
        # A raw U+2028 is legal inside a JSON string; it must not split the line.
        json.dumps({"id": 2, "question": "VPN", "answer": "Line\u2028separator inside a string"}, ensure_ascii=False),
        json.dumps("a bare string"),
    ]
    parsed = parse_file(write(tmp_path, "faq.jsonl", "\n".join(lines) + "\n"))
    assert parsed.text.split("\n")[0] == "id: 1; question: Reset password?; answer: Use the portal."
    assert "answer: Line\u2028separator inside a string" in parsed.text
    assert parsed.text.endswith("value: a bare string")
    assert_offsets(parsed)


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_jsonl_line_endings(tmp_path: Path, newline: str) -> None:
    source = newline.join(['{"a": 1}', '{"b": "x\u0085y"}', ""])
    assert parse_file(write(tmp_path, "e.jsonl", source)).text == "a: 1\nb: x\u0085y"


def test_invalid_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"^bad\.jsonl: line 3 is not valid JSON"):
        parse_file(write(tmp_path, "bad.jsonl", '{"a": 1}\n{"b": 2}\n{"c": \n'))


# --- Encodings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
@pytest.mark.parametrize(
    "sentence",
    ["Café crème brûlée à volonté.", "déjà vu", "Grüße aus Köln, naïve Straße."],
)
def test_legacy_encodings_are_decoded_correctly(tmp_path: Path, encoding: str, sentence: str) -> None:
    path = write(tmp_path, "legacy.txt", ("Menu\n" + sentence + "\n").encode(encoding))
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    assert sentence in parse_file(path).text


def test_cp1252_only_characters(tmp_path: Path) -> None:
    text = "“Smart quotes” – and the € sign."
    assert text in parse_file(write(tmp_path, "q.txt", text.encode("cp1252"))).text


def test_central_european_text_is_not_forced_to_cp1252(tmp_path: Path) -> None:
    text = "Příliš žluťoučký kůň úpěl ďábelské ódy."
    assert parse_file(write(tmp_path, "cz.txt", text.encode("cp1250"))).text == text


def test_utf8_bom_is_dropped_and_utf16_with_bom_is_text(tmp_path: Path) -> None:
    assert decode("\ufeffhello".encode(), tmp_path / "a.txt") == "hello"
    parsed = parse_file(write(tmp_path, "export.csv", "name,city\r\nAnn,Zürich\r\n".encode("utf-16")))
    assert parsed.text == "name: Ann; city: Zürich"


def test_binary_file_named_md_is_refused(tmp_path: Path) -> None:
    data = b"# looks like markdown\x00\x01\x02" + os.urandom(64)
    with pytest.raises(ParseError, match=r"^image\.md: looks like a binary file"):
        parse_file(write(tmp_path, "image.md", data))


# --- read_source / parse_bytes --------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"  \n\t\r\n"], ids=["empty", "whitespace"])
def test_empty_file_is_refused(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(ParseError, match=r"^blank\.txt: empty file"):
        read_source(write(tmp_path, "blank.txt", content))


def test_file_over_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    with path.open("wb") as f:
        f.truncate(50_000_000)  # sparse: instant, and read_source must not read it
    with pytest.raises(ParseError) as info:
        read_source(path, max_bytes=20_000_000)
    message = str(info.value)
    assert message.startswith("huge.txt: 50.0 MB is over the 20 MB limit")
    assert "max_file_mb" in message


def test_size_limit_boundary(tmp_path: Path) -> None:
    path = write(tmp_path, "ten.txt", b"0123456789")
    assert read_source(path, max_bytes=10) == b"0123456789"
    with pytest.raises(ParseError, match="limit"):
        read_source(path, max_bytes=9)


@pytest.mark.parametrize("name", ["slides.pptx", "archive.tar.gz", "Makefile"])
def test_unsupported_extension(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, b"content")
    with pytest.raises(UnsupportedFormatError, match=rf"^{name}: unsupported format .*supported: .*\.md"):
        read_source(path)
    with pytest.raises(UnsupportedFormatError, match=rf"^{name}: unsupported format"):
        parse_bytes(b"content", path)
    assert not is_supported(path)


def test_missing_file_is_a_parse_error(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"^gone\.md: cannot read"):
        read_source(tmp_path / "gone.md")


def test_errors_are_ragtune_errors() -> None:
    assert issubclass(UnsupportedFormatError, ParseError)
    assert issubclass(ParseError, RagtuneError)


def test_extensions_are_case_insensitive(tmp_path: Path) -> None:
    assert parse_file(write(tmp_path, "README.MD", "# Hi\nthere\n")).sections[0].path == ("Hi",)
    assert {".md", ".txt", ".html", ".pdf", ".docx", ".csv", ".jsonl"} <= set(PARSERS)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("\n\n---\nacl: {groups: [hr]}\n---\nText.\n", {"acl": {"groups": ["hr"]}}),  # after blank lines
        ("---\nacl: {groups: [hr]}\n...\nText.\n", {"acl": {"groups": ["hr"]}}),  # closed with YAML's ...
        ('+++\n[acl]\ngroups = ["hr"]\n+++\nText.\n', {"acl": {"groups": ["hr"]}}),  # TOML front matter
    ],
    ids=["blank-lines-first", "dots-closer", "toml"],
)
def test_front_matter_forms_are_honoured(tmp_path: Path, content: str, expected: dict[str, object]) -> None:
    parsed = parse_file(write(tmp_path, "a.md", content))
    assert parsed.metadata == expected
    assert parsed.text.strip() == "Text."


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.md", "---\nacl: public\nacl: {groups: [hr]}\n---\nText.\n", "appears twice"),
        ("a.md", "acl: {groups: [hr]}\n\nText.\n", "outside front matter"),
        ("a.txt", "ACL: group:hr\nText.\n", "outside front matter"),
        ("a.md", "+++\nacl = [\n+++\nText.\n", "TOML front matter"),
    ],
    ids=["acl-twice", "bare-acl-line-md", "bare-acl-line-txt", "bad-toml"],
)
def test_ambiguous_front_matter_is_refused(tmp_path: Path, name: str, content: str, message: str) -> None:
    with pytest.raises(FrontMatterError, match=message):
        parse_file(write(tmp_path, name, content))


def test_terminal_escapes_are_blanked_keeping_offsets(tmp_path: Path) -> None:
    parsed = parse_file(write(tmp_path, "a.md", "# T\x1b[31mitle\n\nRed \x1b[2J\x1b]0;pwned\x07text.\n"))
    assert "\x1b" not in parsed.text and "\x07" not in parsed.text
    assert parsed.text.split() == ["#", "T", "itle", "Red", "text."]
    for sec in parsed.sections:
        assert parsed.text[sec.start : sec.start + len(sec.text)] == sec.text


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_special_files_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.md"
    os.mkfifo(fifo)
    with pytest.raises(ParseError, match="not a regular file"):
        read_source(fifo, 1000)
    link = tmp_path / "zero.md"
    link.symlink_to("/dev/zero")
    with pytest.raises(ParseError, match="not a regular file"):
        read_source(link, 1000)


def test_size_limit_counts_bytes_read(tmp_path: Path) -> None:
    big = write(tmp_path, "big.md", "x" * 5000)
    with pytest.raises(ParseError, match="over the"):
        read_source(big, 1000)
    assert len(read_source(big, 5000)) == 5000


def test_pypdf_warnings_stay_out_of_the_output(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = write(tmp_path, "broken.pdf", b"%PDF-1.4 this is not really a pdf")
    with caplog.at_level("WARNING"), pytest.raises(ParseError, match="corrupt or unreadable PDF"):
        parse_file(broken)
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]
