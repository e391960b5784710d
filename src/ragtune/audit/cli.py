"""``ragtune audit``: verify the tamper-evident audit log, export a time window of it, print its head.

Register in ``ragtune/cli.py`` with ``app.add_typer(audit_app, name="audit")``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ragtune.audit.export import Format, parse_time, read_records, select, write_export
from ragtune.audit.log import log_path, read_head
from ragtune.audit.verify import parse_anchor, verify
from ragtune.config import load_settings
from ragtune.errors import DataError

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

audit_app = typer.Typer(
    help="The tamper-evident audit log of `ask` and `run` (hash-chained JSONL; docs/audit.md): verify it, "
         "export a time window, print its head for safekeeping elsewhere.",
    no_args_is_help=True,
)

ProjectOpt = Annotated[
    Path | None,
    typer.Option("--project", "-p", help="Project folder (default: found from the current folder upwards)."),
]


def _log(project: Path | None) -> Path:
    return log_path(load_settings(project))


@audit_app.command("verify")
def verify_command(
    anchor: Annotated[str | None, typer.Option(
        "--anchor", help="A head kept elsewhere, as SEQ:HASH from an earlier `ragtune audit head`: also check "
                         "that the log still holds that record unchanged (catches a rewrite of log and head).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Check every record of the audit log: hashes, the chain, and the head file (audit.head).

    Names the first bad record and what happened to it: edited, deleted, inserted, reordered, truncated
    (the head names records the file lacks), rewritten (the chain recomputed; the head or --anchor disagrees),
    torn (an append cut short by a crash) or unparsable. Exit status 0 when the log is intact, 1 when not.
    """
    report = verify(_log(project), anchor=parse_anchor(anchor) if anchor is not None else None)
    if json_out:
        out.print_json(json.dumps(report.to_dict()))
    elif report.ok:
        out.print(f"[green]ok[/green]: {report.records} records, chain intact, last seq {report.last.seq} "
                  f"({report.last.hash[:16]}…) — {escape(str(report.path))}", highlight=False)
    else:
        first = report.first
        assert first is not None
        where = f"line {first.line}" if first.line is not None else "head"
        err.print(f"[red]tampered[/red]: {first.kind} at {where}: {escape(first.message)}", highlight=False)
        if len(report.problems) > 1:
            err.print(f"{len(report.problems) - 1} more problem(s) after it; --json lists them all", highlight=False)
    for note in report.notes:
        err.print(f"note: {escape(note)}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("export")
def export_command(
    since: Annotated[str | None, typer.Option(
        "--since", help="Records at or after this time: ISO 8601 (2024-05-01, 2024-05-01T12:00:00Z; UTC when no "
                        "zone) or an age such as 7d, 12h, 30m, 2w.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Records before this time (same forms).")] = None,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help="jsonl (the log's own lines, hashes included) or csv (one column per field; "
                               "lists and objects as JSON).")] = "jsonl",
    output: Annotated[str, typer.Option("--output", "-o", help="File to write (created 0600), or - for stdout.")] = "-",
    project: ProjectOpt = None,
) -> None:
    """Write the audit records in a time window as JSONL or CSV.

    CSV cells that a spreadsheet would run as a formula are written JSON-quoted. The log is verified first;
    a damaged log is still exported, with a warning naming its first problem.
    """
    if fmt not in ("jsonl", "csv"):
        raise DataError(f"--format {fmt!r}: choose jsonl or csv")
    path = _log(project)
    lo = parse_time(since, option="--since") if since is not None else None
    hi = parse_time(until, option="--until") if until is not None else None
    if lo is not None and hi is not None and hi <= lo:
        raise DataError(f"--until ({until}) must be after --since ({since})")
    report = verify(path)
    if not report.ok and report.first is not None:
        err.print(f"[yellow]warning:[/yellow] the log does not verify ({report.first.kind}: "
                  f"{escape(report.first.message)}); exporting what it holds", highlight=False)
    records = select(read_records(path), lo, hi)
    fmt_checked: Format = "csv" if fmt == "csv" else "jsonl"
    if output == "-":
        write_export(records, fmt_checked, sys.stdout)
        sys.stdout.flush()
    else:
        target = Path(output)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            raise DataError(f"cannot write {target} ({exc.strerror}); choose another --output") from None
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            write_export(records, fmt_checked, fh)
        err.print(f"wrote {len(records)} records to {escape(str(target))}", highlight=False)


@audit_app.command("head")
def head_command(
    json_out: Annotated[bool, typer.Option("--json", help="Print {seq, hash} as JSON.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Print the seq and hash of the last record (SEQ:HASH): keep it outside this machine as an anchor.

    Whoever can write the log can also rewrite its head; a head kept elsewhere (a ticket, another
    server, printed in a report) lets `ragtune audit verify --anchor SEQ:HASH` catch even that.
    """
    path = _log(project)
    head = read_head(path)
    if head is None:
        raise DataError(f"no audit log head at {path}: nothing has been recorded yet")
    if json_out:
        out.print_json(json.dumps(head.to_dict()))
    else:
        out.print(f"{head.seq}:{head.hash}", markup=False, highlight=False)
