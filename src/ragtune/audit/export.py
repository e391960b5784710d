"""Export audit records in a time window as JSONL (the log's own lines) or CSV, and read the exports back.

CSV cells hold strings as they are and every other value as JSON; a string that would read back as JSON
(``"42"``, ``"null"``, ``""``) or that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``) is
written JSON-quoted, so an export reads back to exactly the records it came from and cannot run code.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Literal

from ragtune.audit.log import canonical
from ragtune.errors import DataError

Format = Literal["jsonl", "csv"]
FIRST_COLUMNS = ("seq", "time", "kind", "principal", "groups", "role", "route", "request_id", "outcome")
LAST_COLUMNS = ("prev", "hash")
_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def parse_time(value: str, *, option: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time or date (UTC when no zone is given), or an age such as ``7d``, ``12h``, ``30m``."""
    now = now or datetime.now(UTC)
    rel = _RELATIVE.match(value)
    if rel:
        return now - timedelta(**{_UNITS[rel.group(2)]: int(rel.group(1))})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise DataError(f"{option} {value!r} is not a time: use ISO 8601 (2024-05-01 or 2024-05-01T12:00:00Z) "
                        "or an age such as 7d, 12h, 30m, 2w") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def record_time(record: dict[str, Any]) -> datetime:
    """The record's ``time`` as an aware datetime."""
    return datetime.fromisoformat(str(record["time"]))


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Every line of the log that is an audit record, in file order (``ragtune audit verify`` finds the rest)."""
    if not path.is_file():
        return
    with open(path, "rb") as fh:
        for raw in fh:
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if isinstance(rec, dict) and "seq" in rec and isinstance(rec.get("time"), str):
                yield rec


def select(records: Iterable[dict[str, Any]], since: datetime | None, until: datetime | None) -> list[dict[str, Any]]:
    """The records with ``since <= time < until`` (either bound optional)."""
    out = []
    for rec in records:
        try:
            t = record_time(rec)
        except ValueError:
            continue
        if (since is None or t >= since) and (until is None or t < until):
            out.append(rec)
    return out


def _cell(value: Any) -> str:
    if isinstance(value, str):
        if value and not value.startswith(_FORMULA):
            try:
                json.loads(value)
            except ValueError:
                return value
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _uncell(cell: str) -> Any:
    try:
        return json.loads(cell)
    except ValueError:
        return cell


def columns(records: Iterable[dict[str, Any]]) -> list[str]:
    """CSV columns: the usual fields first, the others sorted, ``prev`` and ``hash`` last."""
    keys = {k for rec in records for k in rec}
    middle = sorted(keys - set(FIRST_COLUMNS) - set(LAST_COLUMNS))
    return [k for k in FIRST_COLUMNS if k in keys] + middle + [k for k in LAST_COLUMNS if k in keys]


def write_export(records: list[dict[str, Any]], fmt: Format, out: IO[str]) -> None:
    """Write ``records`` as JSONL (one canonical line each, as in the log) or CSV."""
    if fmt == "jsonl":
        for rec in records:
            out.write(canonical(rec).decode("ascii") + "\n")
        return
    if fmt != "csv":
        raise DataError(f"--format {fmt!r}: choose jsonl or csv")
    cols = columns(records)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(cols)
    for rec in records:
        writer.writerow(["" if k not in rec else _cell(rec[k]) for k in cols])


def read_export(text: str, fmt: Format) -> list[dict[str, Any]]:
    """Read an export back into records (an empty CSV cell is a field the record did not have)."""
    if fmt == "jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return []
    head, body = rows[0], rows[1:]
    return [{k: _uncell(v) for k, v in zip(head, row, strict=True) if v != ""} for row in body]
