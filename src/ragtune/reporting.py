"""Reports as Markdown plus one self-contained HTML file (images inlined), shared by every report writer."""

from __future__ import annotations

import base64
import html
from pathlib import Path


def write_markdown_and_html(folder: Path, title: str, markdown: str, images: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``folder``; ``images`` (PNG files in ``folder`` that the
    Markdown links by name) are inlined into the HTML so it can be mailed or archived on its own."""
    from markdown_it import MarkdownIt

    folder.mkdir(parents=True, exist_ok=True)
    md_path = folder / "report.md"
    md_path.write_text(markdown, encoding="utf-8")
    # html off: text that reached the report (training examples, file names) is escaped, never rendered as HTML.
    body = MarkdownIt("commonmark", options_update={"html": False}).enable("table").render(markdown)
    for png in images:
        data = base64.b64encode((folder / png).read_bytes()).decode("ascii")
        body = body.replace(f'src="{png}"', f'src="data:image/png;base64,{data}"')
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}img{max-width:100%}"
        "</style></head><body>" + body + "</body></html>"
    )
    html_path = folder / "report.html"
    html_path.write_text(page, encoding="utf-8")
    return md_path, html_path
