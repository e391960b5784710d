"""Where a document's ACL comes from: its front matter, else the nearest ``_acl.yaml``, else ``--acl``.

A document none of these covers gets an empty ACL and nobody can retrieve it (fail closed).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ragtune.core import Acl
from ragtune.errors import AclError

ACL_FILE = "_acl.yaml"


def parse_acl(value: Any, where: str) -> Acl:
    """Parse ``public``, ``{users: [...], groups: [...]}`` (``public: true`` allowed) into an :class:`Acl`."""
    if isinstance(value, str):
        if value.strip().lower() == "public":
            return Acl(public=True)
        raise AclError(f"{where}: acl must be 'public' or a mapping with users/groups, not {value!r}")
    if not isinstance(value, dict):
        raise AclError(f"{where}: acl must be 'public' or a mapping like {{users: [alice], groups: [legal]}}")
    unknown = set(value) - {"users", "groups", "public"}
    if unknown:
        raise AclError(f"{where}: unknown acl key(s) {sorted(unknown)}; use users, groups, public")

    def names(key: str) -> frozenset[str]:
        raw = value.get(key)
        if raw is None:
            raw = []
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(x, str | int) for x in raw):
            raise AclError(f"{where}: acl {key} must be a list of names")
        # YAML reads bare yes/no/true/false/on/off as booleans: never turn them into a name "True".
        if any(isinstance(x, bool) for x in raw):
            raise AclError(f"{where}: acl {key} holds a yes/no/true/false value; quote names like 'no'")
        return frozenset(str(x).strip() for x in raw if str(x).strip())

    public = value.get("public", False)
    if not isinstance(public, bool):
        raise AclError(f"{where}: acl public must be true or false")
    users, groups = names("users"), names("groups")  # outside the try: their errors already say where
    try:
        return Acl(users=users, groups=groups, public=public)
    except AclError as exc:
        raise AclError(f"{where}: {exc}") from exc


def parse_acl_option(spec: str) -> Acl:
    """Parse the CLI form: ``public`` or a comma list of ``user:NAME`` / ``group:NAME``."""
    if spec.strip().lower() == "public":
        return Acl(public=True)
    users: set[str] = set()
    groups: set[str] = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kind, _, name = part.partition(":")
        kind, name = kind.strip(), name.strip()
        if kind == "user" and name:
            users.add(name)
        elif kind == "group" and name:
            groups.add(name)
        elif part == "public":
            raise AclError("--acl: 'public' cannot be combined with users or groups")
        else:
            raise AclError(
                f"--acl: {part!r} is not user:NAME, group:NAME or public (e.g. --acl group:legal,user:ann)"
            )
    try:
        return Acl(users=frozenset(users), groups=frozenset(groups))
    except AclError as exc:
        raise AclError(f"--acl: {exc}") from exc


def _load_acl_file(path: Path) -> Acl:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise AclError(f"{path}: cannot read ACL file ({exc})") from exc
    if isinstance(data, dict) and "acl" in data:
        data = data["acl"]
    return parse_acl(data, str(path))


class AclResolver:
    """Resolves each file's ACL under one ingestion root; folder ACL files are read once and cached."""

    def __init__(self, root: Path, default: Acl | None = None) -> None:
        self.root = root.resolve()
        # Folders are walked as written, not with symlinks resolved: a symlinked sub-folder inherits the
        # ACL of the folder it sits in, not of wherever its target happens to live (often: no ACL, so the
        # run default, which may be public). Paths given already resolved are walked against the real root.
        self._roots = {self.root, Path(os.path.abspath(root))}
        self.default = default or Acl()
        self._folders: dict[Path, Acl | None] = {}

    def _inside(self, folder: Path) -> bool:
        return any(folder == root or root in folder.parents for root in self._roots)

    def folder_acl(self, folder: Path) -> Acl | None:
        """The ACL of the nearest ``_acl.yaml`` at or above ``folder`` (up to the root), if any."""
        folder = Path(os.path.abspath(folder))
        if not self._inside(folder):
            folder = folder.resolve()  # reached through a link to the root or one of its parents
        if folder in self._folders:
            return self._folders[folder]
        own = folder / ACL_FILE
        if own.is_file():
            acl: Acl | None = _load_acl_file(own)
        elif folder in self._roots or not self._inside(folder):
            acl = None
        else:
            acl = self.folder_acl(folder.parent)
        self._folders[folder] = acl
        return acl

    def resolve(self, path: Path, front_matter: dict[str, Any] | None) -> Acl:
        """Front matter ``acl:`` wins, then the folder's ``_acl.yaml``, then the run's default."""
        if front_matter and "acl" in front_matter:
            return parse_acl(front_matter["acl"], f"{path.name} front matter")
        folder = self.folder_acl(path.parent)
        return folder if folder is not None else self.default
