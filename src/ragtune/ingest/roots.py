"""The project's ingested roots: real folder (or file) paths, each with the ``--acl`` default it was ingested with.

Roots never overlap: ingesting a path inside a root syncs that part of the root, and ingesting a folder that
holds roots absorbs them. So every file has at most one root, and its default ACL has one source of truth.
They live in the store's :class:`~ragtune.store.state.SyncState` and are written before the first batch of a
first ingest, so a killed run is resumable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ragtune.core import Acl
from ragtune.errors import RagtuneError
from ragtune.store.state import SyncState


def is_within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (lexically; pass real paths)."""
    return path == folder or folder in path.parents


def source_prefix_matches(source_path: str, scope: Path) -> bool:
    """Whether a stored document path lies at or under ``scope``."""
    s = str(scope)
    return source_path == s or source_path.startswith(s.rstrip(os.sep) + os.sep)


@dataclass
class RootSet:
    """Ingested roots (real paths) and their default ACLs (``None``: no default, so nobody)."""

    roots: dict[Path, Acl | None] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Path]:
        return iter(sorted(self.roots))

    def __len__(self) -> int:
        return len(self.roots)

    def __contains__(self, path: object) -> bool:
        return path in self.roots

    def containing(self, real_path: Path) -> Path | None:
        """The root at or above ``real_path``, if any (roots never overlap, so there is at most one)."""
        for root in self.roots:
            if is_within(real_path, root):
                return root
        return None

    def inside(self, real_path: Path) -> list[Path]:
        """Roots at or below ``real_path``."""
        return sorted(r for r in self.roots if is_within(r, real_path))

    def default_for(self, real_path: Path) -> Acl | None:
        """The ``--acl`` default of the root holding ``real_path``."""
        root = self.containing(real_path)
        return self.roots[root] if root is not None else None


def load_roots(state: SyncState) -> RootSet:
    """The roots recorded in the store's sync state."""
    return RootSet({Path(k): (Acl.from_tokens(v) if v else None) for k, v in state.roots().items()})


def save_roots(state: SyncState, roots: RootSet) -> None:
    """Record the roots (atomically)."""
    state.set_roots({str(k): (v.tokens() if v else []) for k, v in sorted(roots.roots.items())})


def place_root(roots: RootSet, real: Path, acl: Acl | None) -> None:
    """Record ``real`` as a root, or check it fits the root it lies in; refuse two defaults for one file."""
    def shown(a: Acl | None) -> str:
        return f"--acl {','.join(a.tokens())}" if a else "no --acl"

    enclosing = roots.containing(real)
    if enclosing == real:  # the root itself: an explicit --acl changes its default, none keeps it
        if acl is not None:
            roots.roots[real] = acl
        return
    if enclosing is not None:
        current = roots.roots[enclosing]
        if acl is not None and acl != current:
            raise RagtuneError(
                f"{real} is inside {enclosing}, ingested with {shown(current)}: its files without an ACL of their "
                f"own get that. Give this folder an _acl.yaml instead, or re-ingest {enclosing} with the new --acl"
            )
        return
    for nested in roots.inside(real):
        if roots.roots[nested] != acl:
            raise RagtuneError(
                f"{nested} was ingested with {shown(roots.roots[nested])} and lies inside {real} ({shown(acl)}): "
                f"pass the same --acl, or give {nested} an _acl.yaml and run `ragtune roots remove {nested}` first"
            )
        del roots.roots[nested]
    roots.roots[real] = acl
