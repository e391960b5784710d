"""What every ``ragtune`` command module shares: consoles, common options, the sync progress bar and report."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
)
from rich.text import Text

from ragtune.core import Chunk, Principal
from ragtune.ingest.sync import SyncReport

out = Console(soft_wrap=True)  # long paths and answers stay on one line when piped or captured
err = Console(stderr=True, soft_wrap=True)

ProjectOpt = Annotated[
    Path | None,
    typer.Option("--project", "-p", help="Project folder (default: found from the current folder upwards)."),
]
UserOpt = Annotated[str, typer.Option("--user", "-u", help="User to run the query as (required: no user, no access). "
                                      "Case-sensitive, like group names.")]
GroupsOpt = Annotated[str, typer.Option("--groups", "-g", help="Comma-separated groups of the user, e.g. legal,staff "
                                        "(case-sensitive: a name that matches an ACL only in another case is warned "
                                        "about and grants nothing).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _principal(user: str, groups: str) -> Principal:
    return Principal(user.strip(), frozenset(g.strip() for g in groups.split(",") if g.strip()))


class _RichSyncProgress:
    """The sync progress bar: chunks embedded out of the chunks to embed, with chunks/s and ETA, as the main
    bar; files handled out of files found as a second figure. Implements ``ingest.sync.ChunkTotalProgress``.

    The rate is chunks embedded over the time since the first batch started, so it shows after one batch.
    """

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("reading", total=None, files="", file="", rate="- chunks/s", eta="-:--:--")
        self.files_total = self.files = self.embedded = 0
        self.total: int | None = None
        self.embed_started: float | None = None

    def _files(self) -> str:
        return f"{self.files}/{self.files_total} files"

    def start(self, total_files: int) -> None:
        self.files_total, self.files, self.embedded, self.total, self.embed_started = total_files, 0, 0, None, None
        self.progress.reset(self.task, total=None, completed=0, description="reading", files=self._files(),
                            file="", rate="- chunks/s", eta="-:--:--")

    def file_done(self, path: Path, status: str) -> None:
        self.files += 1
        if status in ("new", "updated") and self.embed_started is None:
            self.embed_started = time.perf_counter()  # its batch is embedded next
            self.progress.update(self.task, description="embedding")
        self.progress.update(self.task, files=self._files(), file=f"{status} {escape(path.name[:40])}")

    def chunks_total(self, n: int) -> None:
        self.total = n
        self.progress.update(self.task, total=n)

    def chunks_embedded(self, n: int) -> None:
        self.embedded += n
        started = self.embed_started if self.embed_started is not None else time.perf_counter()
        rate = self.embedded / max(time.perf_counter() - started, 1e-6)
        left = max((self.total or self.embedded) - self.embedded, 0) / rate
        eta = f"{int(left // 3600)}:{int(left % 3600 // 60):02d}:{int(left % 60):02d}"
        self.progress.update(self.task, advance=n, description="embedding", rate=f"{rate:.0f} chunks/s", eta=eta)


def _progress(console: Console | None = None) -> Progress:
    """The sync progress display on ``console`` (stderr by default), drawn only on a terminal; it fits 80
    columns and names the current file from 120."""
    console = console or err
    columns: list[str | ProgressColumn] = [
        TextColumn("{task.description}"), BarColumn(bar_width=None), MofNCompleteColumn(),
        TextColumn("chunks {task.fields[rate]} ETA {task.fields[eta]} · {task.fields[files]}"),
    ]
    if console.width >= 120:
        columns.append(TextColumn("· {task.fields[file]}"))
    terminal = console.is_terminal or (console is err and sys.stderr.isatty())
    return Progress(*columns, console=console, transient=False, expand=True, disable=not terminal)


def process_age_ms() -> float | None:
    """Milliseconds since this process started, or None where that cannot be read.

    Linux: the start time in ``/proc/self/stat`` (clock ticks since boot, 10 ms resolution) against
    ``CLOCK_BOOTTIME``, the clock it is counted on; elsewhere psutil's create time, if psutil is installed.
    """
    try:
        with open("/proc/self/stat", "rb") as fh:
            stat = fh.read()
        start_ticks = int(stat[stat.rindex(b")") + 2:].split()[19])  # field 22, after "pid (comm)"
        return (time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")) * 1000
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil  # type: ignore[import-untyped, unused-ignore]

        return float((time.time() - psutil.Process().create_time()) * 1000)
    except Exception:  # noqa: BLE001 - no psutil, or no start time: the latency table omits the row
        return None


@contextmanager
def token_stream(enabled: bool, consoles: Sequence[Console]) -> Iterator[Callable[[str], None] | None]:
    """A callback that shows a generated answer as it streams, or None.

    The tokens go to a transient region of the first of ``consoles`` that is a terminal, erased when the
    block ends, so the checked answer printed afterwards is on screen once (with its citations renumbered
    and invalid ones removed). No console is a terminal (output piped or captured): nothing is streamed.
    """
    console = next((c for c in consoles if c.is_terminal), None)
    if not enabled or console is None:
        yield None
        return
    from rich.live import Live

    pieces: list[str] = []
    with Live(Text("generating…", style="dim"), console=console, transient=True, refresh_per_second=10,
              vertical_overflow="ellipsis", redirect_stdout=False, redirect_stderr=False) as live:

        def on_token(token: str) -> None:
            pieces.append(token)
            live.update(Text("".join(pieces), style="dim"))

        yield on_token


def case_near_misses(principal: Principal, index_tokens: Iterable[str]) -> list[str]:
    """Warnings for the principal's user and groups that match no ACL token in the index exactly while a
    token in another letter case does (``--groups Staff`` where documents grant ``staff``).

    Matching stays exact (ACL names are identifiers; a near miss grants nothing): this only says why the
    results are empty. It names the near match, so it tells whoever runs the CLI that such a name exists in
    the index; it is for the command line only, never for an API (docs/architecture.md, Security).
    """
    have = set(index_tokens)
    by_lower: dict[str, list[str]] = {}
    for token in have:
        by_lower.setdefault(token.lower(), []).append(token)
    warnings = []
    for kind, name in [("user", principal.user), *(("group", g) for g in sorted(principal.groups))]:
        token = f"{kind}:{name}"
        near = sorted(t.split(":", 1)[1] for t in by_lower.get(token.lower(), []) if t != token)
        if token not in have and near:
            warnings.append(f"{kind} {name!r} matches no ACL in this index; did you mean "
                            f"{' or '.join(repr(n) for n in near)}? Names are case-sensitive.")
    return warnings


def _warn_near_misses(principal: Principal, index_tokens: Iterable[str]) -> None:
    for warning in case_near_misses(principal, index_tokens):
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)


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




def cited_place(chunk: Chunk) -> str:
    """Where a citation points, for a sources line: the section (or title), and the page unless the section
    already names it (a PDF's sections are its pages: ``Page 1``, not ``Page 1, page 1``)."""
    where = chunk.section or chunk.title
    if chunk.page and where.lower() != f"page {chunk.page}":
        where += f", page {chunk.page}"
    return where
