"""Writers of an :class:`~ragtune.extract.run.Extraction`: the CSV table, JSONL records and the HTML review page.

Every file is written whole to a temporary file beside its target and renamed over it, so a crash never leaves
half a table. CSV text cells that a spreadsheet would run as a formula (starting with ``= + - @``, a tab or a
carriage return) are prefixed with ``'``. The HTML page is self-contained (inline style, no script, a CSP that
allows nothing else) and every document and user text in it is HTML-escaped.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from ragtune.errors import DataError
from ragtune.extract.run import Extraction, FieldCell

Format = Literal["csv", "jsonl"]
FORMATS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def output_format(path: Path, forced: str | None = None) -> Format:
    """``forced`` (``csv`` or ``jsonl``), else the format ``path``'s suffix names; else a :class:`DataError`."""
    if forced is not None:
        name = forced.strip().lower()
        if name not in ("csv", "jsonl"):
            raise DataError(f"--format {forced!r}: choose csv or jsonl")
        return "csv" if name == "csv" else "jsonl"
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise DataError(f"--out {path}: name a .csv or .jsonl file, or give --format csv|jsonl")
    return found


def write_atomic(path: Path, write: Callable[[io.StringIO], None]) -> Path:
    """Write what ``write`` puts into a buffer to ``path`` through a temporary file renamed over it."""
    buf = io.StringIO()
    write(buf)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def safe_cell(text: str) -> str:
    """``text`` as a spreadsheet shows it, never runs it: a leading ``= + - @`` (tab, CR) gets a ``'`` before it."""
    return "'" + text if text.startswith(_FORMULA) else text


def _score(score: float | None) -> str:
    return "" if score is None else f"{score:.4f}"


def csv_columns(extraction: Extraction) -> list[str]:
    """``path``, then per field ``NAME``, ``NAME_score``, ``NAME_citation``."""
    cols = ["path"]
    for f in extraction.fields:
        cols += [f.name, f"{f.name}_score", f"{f.name}_citation"]
    return cols


def write_csv(extraction: Extraction, path: Path) -> Path:
    """One row per readable document: its path, then each field's value, score and citation (empty: no value)."""
    def write(buf: io.StringIO) -> None:
        w = csv.writer(buf, lineterminator="\r\n")  # RFC 4180; a CR inside a cell is then quoted too
        w.writerow([safe_cell(c) for c in csv_columns(extraction)])
        for row in extraction.rows:
            cells = [safe_cell(row.path)]
            for f in extraction.fields:
                v = row.cells[f.name].value
                cells += ["", "", ""] if v is None else [safe_cell(v.value), _score(v.score), safe_cell(v.citation())]
            w.writerow(cells)

    return write_atomic(path, write)


def cell_json(cell: FieldCell) -> dict[str, Any]:
    """A field's JSON: value, span, score, the citation's parts and the sentence (all null without a value), the
    threshold it was held to and the best validating candidate's score (also when it fell short)."""
    v = cell.value
    keys = ("value", "span", "score", "question", "chunk_id", "path", "section", "page", "char_start", "char_end",
            "sentence")
    out: dict[str, Any] = dict.fromkeys(keys)
    if v is not None:
        out.update(value=v.value, span=v.span, score=round(v.score, 4), question=v.question, chunk_id=v.chunk_id,
                   path=v.path, section=v.section, page=v.page, char_start=v.char_start, char_end=v.char_end,
                   sentence=v.sentence)
    out["threshold"] = round(cell.threshold, 4)
    out["best_score"] = None if cell.best_score is None else round(cell.best_score, 4)
    return out


def write_jsonl(extraction: Extraction, path: Path) -> Path:
    """One JSON object per readable document: ``path``, ``title`` and ``fields`` (name → :func:`cell_json`)."""
    def write(buf: io.StringIO) -> None:
        for row in extraction.rows:
            record = {"path": row.path, "title": row.title,
                      "fields": {f.name: cell_json(row.cells[f.name]) for f in extraction.fields}}
            buf.write(json.dumps(record, ensure_ascii=False) + "\n")

    return write_atomic(path, write)


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;width:100%;margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:4px 8px;"
    "vertical-align:top;text-align:left}th{background:#f4f4f4}mark{background:#ffe066;padding:0 1px}"
    ".empty{color:#999}.cite{color:#555;font-size:.85em}.score{font-variant-numeric:tabular-nums;white-space:nowrap}"
    "h2{font-size:1.1em;margin-top:2em}"
)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _value_row(name: str, cell: FieldCell) -> str:
    v = cell.value
    if v is None:
        why = ("no candidate of this type" if cell.best_score is None
               else f"best candidate {cell.best_score:.2f} is below {cell.threshold:.2f}")
        return (f"<tr><th>{_e(name)}</th><td class='empty'>—</td><td class='score'></td>"
                f"<td class='empty'>{_e(why)}</td></tr>")
    sentence = (_e(v.sentence[:v.mark_start]) + "<mark>" + _e(v.sentence[v.mark_start:v.mark_end]) + "</mark>"
                + _e(v.sentence[v.mark_end:]))
    return (f"<tr><th>{_e(name)}</th><td>{_e(v.value)}</td><td class='score'>{v.score:.2f}</td>"
            f"<td>{sentence}<div class='cite'>{_e(v.citation())}</div></td></tr>")


def render_html(extraction: Extraction) -> str:
    """The review page: a summary, then per document every field's value, score and highlighted source sentence."""
    filled = extraction.filled()
    n = len(extraction.rows)
    summary = "".join(f"<li>{_e(name)}: {count} of {n}</li>" for name, count in filled.items())
    skipped = (f"<p>{extraction.skipped} document(s) you may not read were skipped.</p>"
               if extraction.skipped else "")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>ragtune extract: {_e(extraction.docs)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Fields extracted from {_e(extraction.docs)}</h1>",
        f"<p>{n} document(s), reader <code>{_e(extraction.reader)}</code>. Filled:</p><ul>{summary}</ul>{skipped}",
    ]
    for row in extraction.rows:
        parts.append(f"<h2>{_e(row.path)}</h2><table><tr><th>field</th><th>value</th><th>score</th>"
                     "<th>source sentence</th></tr>")
        parts += [_value_row(f.name, row.cells[f.name]) for f in extraction.fields]
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_html(extraction: Extraction, path: Path) -> Path:
    """Write :func:`render_html` to ``path`` (atomically)."""
    page = render_html(extraction)

    def write(buf: io.StringIO) -> None:
        buf.write(page)

    return write_atomic(path, write)


def write_outputs(extraction: Extraction, out: Path, fmt: Format, html_path: Path) -> list[Path]:
    """The table (``fmt``) at ``out`` and the review page at ``html_path``; returns both paths."""
    table = write_csv(extraction, out) if fmt == "csv" else write_jsonl(extraction, out)
    return [table, write_html(extraction, html_path)]
