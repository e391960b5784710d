"""What every ``ragtune`` command module shares: consoles, common options, the sync progress bar and report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ragtune.core import Principal
from ragtune.ingest.sync import SyncReport

out = Console(soft_wrap=True)  # long paths and answers stay on one line when piped or captured
err = Console(stderr=True, soft_wrap=True)

ProjectOpt = Annotated[
    Path | None,
    typer.Option("--project", "-p", help="Project folder (default: found from the current folder upwards)."),
]
UserOpt = Annotated[str, typer.Option("--user", "-u", help="User to run the query as (required: no user, no access).")]
GroupsOpt = Annotated[str, typer.Option("--groups", "-g", help="Comma-separated groups of the user, e.g. legal,staff.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _principal(user: str, groups: str) -> Principal:
    return Principal(user.strip(), frozenset(g.strip() for g in groups.split(",") if g.strip()))


class _RichSyncProgress:
    """Progress bar over files, with chunks embedded and their throughput."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("ingest", total=None, chunks=0, rate="")
        self.chunks = 0

    def start(self, total_files: int) -> None:
        self.progress.update(self.task, total=total_files)

    def file_done(self, path: Path, status: str) -> None:
        self.progress.update(self.task, advance=1, description=f"{status:9s} {escape(path.name[:30]):30s}")

    def chunks_embedded(self, n: int) -> None:
        self.chunks += n
        elapsed = self.progress.tasks[self.task].elapsed or 1e-9
        self.progress.update(self.task, chunks=self.chunks, rate=f"{self.chunks / elapsed:.0f} chunks/s")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files · {task.fields[chunks]} chunks {task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal and not sys.stderr.isatty(),
    )


EXIT_FILES_FAILED = 3  # ingest/sync/check: the command ran, but some files (or roots) failed; see the report


def _print_report(report: SyncReport, root: Path) -> None:
    out.print(
        f"[bold]{escape(str(root))}[/bold]: {report.ingested} ingested, {report.unchanged} unchanged, "
        f"{report.updated} updated, {report.reacl} re-permissioned, {report.deleted} deleted, "
        f"{len(report.failed)} failed, {len(report.skipped)} skipped "
        f"({report.chunks_embedded} chunks embedded in {report.seconds:.1f}s)"
    )
    for path, reason in report.failed:
        out.print(f"  [red]failed[/red] {escape(path)}: {escape(reason)}")
    for path in report.locked_out:
        out.print(f"  [red]now readable by nobody[/red] until its ACL is fixed: {escape(path)}")
    for path, reason in report.skipped[:20]:
        out.print(f"  [dim]skipped[/dim] {escape(path)}: {escape(reason)}")
    if len(report.skipped) > 20:
        out.print(f"  … and {len(report.skipped) - 20} more skipped")
    if report.no_acl:
        out.print(
            f"  [yellow]{len(report.no_acl)} document(s) have no ACL and are retrievable by nobody[/yellow] "
            "(add `acl:` front matter, an _acl.yaml in the folder, or --acl):"
        )
        for path in report.no_acl[:10]:
            out.print(f"    {escape(path)}")
        if len(report.no_acl) > 10:
            out.print(f"    … and {len(report.no_acl) - 10} more")


def _exit_if_failed(reports: list[SyncReport]) -> None:
    failed = sum(len(r.failed) for r in reports)
    if failed:
        err.print(f"[red]{failed} file(s) or folder(s) failed[/red] (listed above); exit status {EXIT_FILES_FAILED}")
        raise typer.Exit(EXIT_FILES_FAILED)


