"""Reading training files the same way everywhere: UTF-8 (a BOM allowed) and JSON Lines, with errors that name
``file:line`` and say what to do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ragtune.errors import DataError


def read_utf8(path: Path) -> str:
    """The file's text; :class:`DataError` naming the line of the first byte that is not UTF-8, or why the file
    cannot be read."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 (byte {raw[exc.start]:#04x}); save the file as UTF-8") from None


def jsonl_rows(path: Path, text: str, expected: str = "") -> Iterator[tuple[int, str, Any]]:
    """(line number, ``file:line``, parsed value) of each non-blank line of ``text``; a line that is not JSON is a
    :class:`DataError` naming it (``expected``: what a line should hold, added to the message)."""
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{path}:{n}"
        try:
            yield n, where, json.loads(raw)
        except json.JSONDecodeError as exc:
            hint = f"; {expected}" if expected else ""
            raise DataError(f"{where}: not valid JSON ({exc.msg}, column {exc.colno}){hint}") from None


def line_of_id(text: str, qid: Any) -> str:
    """``:LINE`` of the first place the JSON string ``qid`` (a SQuAD id) occurs in ``text``, for messages; empty
    when it cannot be found."""
    at = text.find(json.dumps(qid)) if isinstance(qid, str) and qid else -1
    return f":{text.count(chr(10), 0, at) + 1}" if at >= 0 else ""
