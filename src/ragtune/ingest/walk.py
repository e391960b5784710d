"""Finding source files under a folder without hanging, looping or silently losing anything.

Only regular files are read (a FIFO would block, ``/dev/zero`` never ends). Links are resolved: a link whose
target lies in one of the project's roots is followed; one pointing elsewhere is skipped unless
``allow_external`` is set. Link loops and broken links are reported per path. A folder that cannot be listed
is reported, and the caller keeps its documents (it is not "deleted" just because it could not be read).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ragtune.ingest.acl import ACL_FILE
from ragtune.ingest.parsers import is_supported


@dataclass(frozen=True)
class Found:
    """A regular file to ingest: the path it was reached by and its real path."""

    path: Path
    real: Path
    external: bool = False  # its real path is outside every root (followed only when allowed)


@dataclass
class Walk:
    """What a walk found: files, files skipped (with why), failures, and folders it could not read."""

    files: list[Found] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    unreadable_folders: list[Path] = field(default_factory=list)


def _real(path: Path) -> Path:
    """The real path; raises OSError for a loop or a dangling link (``strict``)."""
    try:
        return Path(os.path.realpath(path, strict=True))
    except RuntimeError as exc:  # older Pythons report loops this way
        raise OSError(errno.ELOOP, "symlink loop") from exc


def _why(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop; fix or remove the link"
    if exc.errno == errno.ENOENT:
        return "broken link (its target does not exist)"
    return f"cannot read ({exc.strerror or exc})"


def walk_sources(scope: Path, in_roots: Callable[[Path], bool], *, allow_external: bool = False,
                 exclude: tuple[Path, ...] = ()) -> Walk:
    """Files under ``scope`` (a folder or one file) in a stable order.

    Hidden entries, ACL files and ``exclude`` folders are passed over silently; unsupported formats, special
    files and links out of the roots are listed in ``skipped``; loops, broken links and unreadable entries in
    ``failed``.
    """
    out = Walk()
    excluded = {Path(os.path.realpath(p)) for p in exclude}
    visited: set[Path] = set()  # real folders already walked: a folder link can never loop the walk

    def consider(path: Path) -> None:
        try:
            real = _real(path)
            st = os.stat(real)
        except OSError as exc:
            out.failed.append((str(path), f"{path.name}: {_why(exc)}"))
            return
        external = not in_roots(real)
        if stat.S_ISDIR(st.st_mode):
            if real in excluded or real in visited:
                return
            if external and not allow_external:
                out.skipped.append((str(path), "a link to a folder outside the ingested roots; not followed "
                                               "(ingest that folder itself, or set ingest.follow_external_links)"))
                return
            walk_folder(path, real)
            return
        if not is_supported(path):
            out.skipped.append((str(path), f"unsupported format '{path.suffix or '(no extension)'}'"))
            return
        if not stat.S_ISREG(st.st_mode):
            out.skipped.append((str(path), "not a regular file (a pipe, device or socket); not read"))
            return
        if external and not allow_external:
            out.skipped.append((str(path), f"a link to {real}, outside the ingested roots; not followed "
                                           "(ingest it directly, or set ingest.follow_external_links)"))
            return
        out.files.append(Found(path, real, external))

    def walk_folder(path: Path, real: Path) -> None:
        visited.add(real)
        try:
            with os.scandir(path) as it:
                names = sorted(e.name for e in it)
        except OSError as exc:
            out.unreadable_folders.append(real)
            out.failed.append((str(path), f"{path.name}/: folder {_why(exc)}; its documents are kept as they were"))
            return
        for name in names:
            if name.startswith(".") or name == ACL_FILE:
                continue
            consider(path / name)

    try:
        real_scope = _real(scope)
    except OSError as exc:
        out.failed.append((str(scope), f"{scope.name}: {_why(exc)}"))
        return out
    if real_scope.is_dir():
        walk_folder(scope, real_scope)
    else:
        consider(scope)
    return out
