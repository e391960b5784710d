"""Reports: text that reaches a report is shown as text, never rendered as HTML."""

from __future__ import annotations

from pathlib import Path

from ragtune.reporting import write_markdown_and_html


def test_raw_html_in_report_markdown_is_escaped(tmp_path: Path) -> None:
    _, html_path = write_markdown_and_html(tmp_path, "t", "# Report\n\n<script>alert(1)</script> and <b>x</b>\n")
    page = html_path.read_text(encoding="utf-8")
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<h1>Report</h1>" in page
