"""Terminal views of the tuning results: the label audit, the top confusions and model cards, as Rich tables.

Every piece of user data (texts, labels, paths, settings) goes into ``rich.text.Text`` cells, never into markup,
so a ``[bold]`` in a training text prints as typed.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ragtune.tuning.audit import AuditReport, excerpt


def local_time(timestamp: float) -> str:
    """An epoch timestamp as ISO 8601 local time with its UTC offset, e.g. ``2025-03-04T09:15:02+01:00``."""
    return dt.datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    t = Table(title=Text(title, style="bold"), title_justify="left", show_header=True)
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*(Text(cell) for cell in row))
    return t


def audit_view(audit: AuditReport, limit: int = 5, max_classes: int = 20) -> RenderableType:
    """The label audit for the terminal: a heading, blocking problems and warnings, then one table per finding
    (at most ``limit`` rows each, the ``max_classes`` largest classes)."""
    parts: list[RenderableType] = [Text("Label audit", style="bold underline")]
    where = Text.assemble("every example of ", (audit.source, "cyan"), " (lines are the file's lines). ") \
        if audit.source else Text("")
    parts.append(Text.assemble(where, audit.summary()))
    for title, items, style in (("Blocking problems", audit.blocking, "bold red"),
                                ("Warnings", audit.warnings, "yellow")):
        if items:
            parts.append(Text(title, style=style))
            parts.extend(Text.assemble("  • ", Text(item)) for item in items)
    for title, columns, rows in audit.tables(limit, max_classes):
        parts.append(_table(title, columns, rows))
    return Group(*parts)


def confusions_view(confusions: list[dict[str, Any]], limit: int = 5) -> RenderableType:
    """The most frequent errors on the test set with example texts, or a line saying there were none."""
    if not confusions:
        return Text("top confusions: no test example was misclassified", style="green")
    rows = [[c["true"], c["predicted"], str(c["count"]), "\n".join(f"“{excerpt(t, 100)}”" for t in c["examples"])]
            for c in confusions[:limit]]
    return _table("Top confusions on the test set", ["true label", "predicted", "count", "example texts"], rows)


def card_view(card: dict[str, Any], promoted: int | None, latest: int, calibration: str | None) -> Table:
    """A model card as a two-column key/value table with a human-readable creation time."""
    t = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    version = card["version"]
    status = ("promoted" if promoted == version else f"latest (promoted: v{promoted})" if promoted and
              version == latest else "latest" if version == latest else f"older (latest: v{latest})")
    metrics, notes = card.get("metrics", {}), card.get("notes", {})
    classes = card.get("classes", [])
    rows: list[tuple[str, str]] = [
        ("name", card["name"]),
        ("version", f"{version} — {status}"),
        ("method", card["method"] + (f" — {notes['reason']}" if notes.get("reason") else "")),
        ("created", local_time(float(card["created"]))),
        ("classes", f"{len(classes)}: " + ", ".join(classes[:12]) + (", …" if len(classes) > 12 else "")),
        ("trained on", f"{card['data_source']} (sha256 {card['data_sha256'][:12]})"),
    ]
    if notes.get("split"):
        rows.append(("test set", str(notes["split"])))
    if "accuracy" in metrics:
        rows.append(("test metrics", f"accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics.get('macro_f1', 0):.4f}, "
                                     f"ECE {metrics.get('ece', 0):.4f} on {metrics.get('examples', '?')} examples"))
    if "threshold" in metrics:
        rows.append(("abstain", f"below {metrics['threshold']:.2f} → needs_review "
                                f"({metrics.get('abstain_rate', 0):.1%} of the test set)"))
    if calibration:
        cal = notes.get("calibration", {})
        rows.append(("temperature", f"{cal.get('temperature', 1.0):.3f}, {calibration}"))
    if "train_examples" in notes:
        rows.append(("training examples", str(notes["train_examples"])))
    rows.append(("settings", json.dumps(card.get("params", {}), sort_keys=True, default=str)))
    for key, value in rows:
        t.add_row(key, Text(value))
    return t
