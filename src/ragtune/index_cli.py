"""Index maintenance commands: ``sources`` (list or remove documents), ``roots`` (ingested folders), ``check``."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ragtune.cli_common import (
    EXIT_FILES_FAILED,
    GroupsOpt,
    JsonOpt,
    ProjectOpt,
    _principal,
    _progress,
    _RichSyncProgress,
    _warn_near_misses,
    err,
    out,
)
from ragtune.errors import RagtuneError
from ragtune.ingest.roots import source_prefix_matches
from ragtune.project import Project
from ragtune.store.base import DocRecord


def sources(
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only documents this user may read.")] = None,
    groups: GroupsOpt = "",
    remove: Annotated[Path | None, typer.Option("--remove", help="Remove the documents stored at or under this "
                                                "path from the index (a file still under an ingested folder "
                                                "comes back at the next sync: delete or move it, or "
                                                "`ragtune roots remove` its folder).")] = None,
    json_out: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """List ingested documents with chunk counts, ACLs, modification time and last sync.

    Without --user this is the admin view: every document, whoever may read it. With --user (and --groups)
    only the documents that principal may read are listed. One table per ingested folder, its paths shown
    relative to the folder named above it; terminals narrower than 100 columns leave out the `synced`
    column (`--json` has every field, with absolute paths).
    """
    proj = Project.open(project)
    if remove is not None:
        gone = proj.remove_sources(remove)
        if not gone:
            raise RagtuneError(f"no stored document at or under {remove}; see `ragtune sources`")
        out.print(f"removed {len(gone)} document(s) from the index", markup=False)
        return
    principal = _principal(user, groups) if user is not None else None
    if principal is not None:
        _warn_near_misses(principal, proj.store.acl_tokens())
    docs = proj.sources(principal)
    if json_out:
        out.print_json(json.dumps([asdict(d) for d in docs]))
        return
    if principal is None:
        err.print("[dim]admin view: every document, whoever may read it (--user NAME lists what one user may "
                  "read)[/dim]")
    if not docs:
        out.print("no documents ingested yet: run `ragtune ingest PATH`" if principal is None
                  else f"no document readable by {escape(principal.user)}")
        return
    for table in _sources_tables(docs, list(proj.roots()), out.width):
        out.print(table)


def _sources_tables(docs: list[DocRecord], roots: Iterable[Path], width: int) -> list[Table]:
    """One table per ingested root (documents under none: one more), titled with the folder that holds its
    documents, whose paths are shown relative to it; one line per document where the width allows."""
    groups: dict[str, list[DocRecord]] = {}
    for d in docs:
        root = next((r for r in roots if source_prefix_matches(d.source_path, r)), None)
        groups.setdefault(str(root or ""), []).append(d)
    synced = width >= 100

    def when(ts: float) -> str:
        return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")

    tables = []
    for _, members in sorted(groups.items()):
        base = os.path.commonpath([os.path.dirname(d.source_path) for d in members])
        base = "" if base in ("", os.sep) else base
        t = Table(show_header=True, title=Text(f"in {base}") if base else None, title_justify="left")
        t.add_column("source", overflow="fold", ratio=1)
        t.add_column("chunks", justify="right", no_wrap=True)
        t.add_column("acl", overflow="fold")
        t.add_column("modified", no_wrap=True)
        if synced:
            t.add_column("synced", no_wrap=True)
        for d in members:
            acl = Text(", ".join(d.acl)) if d.acl else Text("(none: nobody)", style="red")
            shown = os.path.relpath(d.source_path, base) if base else d.source_path
            t.add_row(Text(shown), str(d.chunks), acl, when(d.mtime), *([when(d.synced_at)] if synced else []))
        tables.append(t)
    return tables


roots_app = typer.Typer(help="The folders (and files) ingested into the project, which `ragtune sync` re-syncs.",
                        no_args_is_help=True)


@roots_app.command("list")
def roots_list(json_out: JsonOpt = False, project: ProjectOpt = None) -> None:
    """Every ingested root with its --acl default and whether it still exists."""
    roots = Project.open(project).roots()
    rows: list[dict[str, Any]] = []
    for r in roots:
        default = roots.roots[r]
        rows.append({"root": str(r), "acl": default.tokens() if default else [], "exists": r.exists()})
    if json_out:
        out.print_json(json.dumps(rows))
        return
    if not rows:
        out.print("no roots yet: run `ragtune ingest PATH`")
        return
    t = Table(show_header=True)
    for col in ("root", "default acl", "exists"):
        t.add_column(col)
    for row in rows:
        t.add_row(Text(str(row["root"])), Text(", ".join(row["acl"]) or "(none: nobody)"),
                  "yes" if row["exists"] else "[red]missing[/red]")
    out.print(t)


@roots_app.command("remove")
def roots_remove(path: Annotated[Path, typer.Argument(help="An ingested root, as `roots list` shows it.")],
                 project: ProjectOpt = None) -> None:
    """Forget an ingested root and remove its documents from the index now."""
    n = Project.open(project).remove_root(path)
    out.print(f"removed root {path} and its {n} document(s)", markup=False, highlight=False)


def check(
    repair: Annotated[bool, typer.Option("--repair", help="Remove what is damaged, then re-sync every root "
                                         "(documents still on disk are re-ingested).")] = False,
    json_out: JsonOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Check the index: duplicate chunk ids, documents whose chunks disagree, documents under no ingested
    root, documents whose file is gone. Exit status 3 when something needs repair (and --repair was not given).
    """
    proj = Project.open(project)
    with _progress() as bar:
        report = proj.check(repair=repair, progress=_RichSyncProgress(bar))
    problems = {"duplicate chunk ids": report.duplicate_chunks, "inconsistent documents": report.inconsistent,
                "documents under no root": report.orphans, "documents whose file is gone": report.missing_files}
    if json_out:
        out.print_json(json.dumps({"chunks": report.chunks, "documents": report.documents, "ok": report.ok,
                                   "repaired": repair and not report.ok,
                                   **{k.replace(" ", "_"): v for k, v in problems.items()}}))
    else:
        out.print(f"{report.chunks} chunks in {report.documents} documents")
        for label, ids in problems.items():
            if ids:
                out.print(f"  [red]{len(ids)} {label}[/red]")
                for i in ids[:10]:
                    out.print(f"    {escape(i)} {escape(report.details.get(i, ''))}")
        if report.ok:
            out.print("[green]index is consistent[/green]")
        elif repair:
            out.print(f"[green]repaired[/green]: removed {len(report.damaged)} document(s) and re-synced every root")
    if not report.ok and not repair:
        raise typer.Exit(EXIT_FILES_FAILED)


def migrate(
    to: Annotated[str, typer.Option("--to", show_default=False, help="Where to copy the index: `postgres` (the DSN "
                                    "from RAGTUNE_STORE_DSN, a RAGTUNE_STORE_DSN_FILE secret or the secrets file, "
                                    "else store.dsn), a postgresql://USER@HOST:PORT/DB URL WITHOUT a password "
                                    "(libpq then reads PGPASSWORD or ~/.pgpass), or lance:PATH (a new embedded "
                                    "index folder).")],
    schema: Annotated[str | None, typer.Option("--schema", help="The PostgreSQL schema to copy into (default: "
                                               "store.schema, `ragtune`).")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite a target that already holds an index (or an "
                                          "unfinished migration).")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Chunks read (and written) per batch.")] = 1000,
    verify_sample: Annotated[int, typer.Option("--verify-sample", min=0, help="Chunks whose every field and vector "
                                               "are compared after the copy (counts, documents, ACLs, roots, sync "
                                               "log and metadata are always compared).")] = 100,
    project: ProjectOpt = None,
) -> None:
    """Copy the project's index to another store without re-embedding: LanceDB to PostgreSQL, or back.

    Copies every chunk with its vector and ACL, and the sync state (ingested roots, sync log, metadata with the
    embedder's fingerprint, so searching the copy with another embedder is still refused), holding both
    stores' write locks. A target that already holds anything is refused unless --replace. Afterwards it
    verifies the copy (chunk counts, documents, every chunk's ACL, the sync state, and --verify-sample chunks'
    text and vectors) and prints the ragtune.yaml lines that switch the project to the new store; the project
    keeps using its current store until you change them. A failed copy leaves the target marked incomplete
    (searches on it are refused); run the same command with --replace to redo it. Never put a password in
    --to: give the whole DSN in RAGTUNE_STORE_DSN and use --to postgres.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ragtune.store.migrate import close_store, migrate_store, open_target, parse_target, store_identity

    proj = Project.open(project)
    s = proj.settings.store
    target = parse_target(to, configured_dsn=s.dsn, schema=schema, default_schema=s.schema_name)
    source = proj.store
    where = target.describe()
    store = open_target(target, proj.embedder.dim)
    bar = Progress(TextColumn("{task.description}"), BarColumn(bar_width=None), MofNCompleteColumn(),
                   TimeRemainingColumn(), console=err, expand=True, disable=not err.is_terminal)
    try:
        with bar:
            task = bar.add_task("copying chunks", total=None)

            def progress(phase: str, done: int, total: int) -> None:
                label = {"copy": "copying chunks", "optimize": "building indexes", "verify": "verifying"}[phase]
                bar.update(task, description=label, completed=done, total=total)

            report = migrate_store(source, store, source_name=store_identity(source), target_name=where,
                                   batch_size=batch_size, verify_sample=verify_sample, replace=replace,
                                   progress=progress)
    finally:
        close_store(store)
    out.print(f"[green]copied {report.chunks} chunks[/green] of {report.documents} documents, {report.roots} "
              f"root(s), {report.sync_entries} sync log entries and the metadata to {escape(where)} in "
              f"{report.seconds:.1f} s (copy {report.copy_seconds:.1f} s, indexes {report.optimize_seconds:.1f} s, "
              f"verify {report.verify_seconds:.1f} s); verified, {report.verified_sample} chunks' vectors compared")
    out.print(f"to switch the project to it, put this in {escape(str(proj.settings.project_dir / 'ragtune.yaml'))}:")
    out.print(escape(target.settings_snippet()), highlight=False)
