"""Where a document's ACL comes from, computed from its *real* path (symlinks resolved).

Front matter ``acl:`` > the nearest ``_acl.yaml`` at or above the file's real folder (up to the top of the
filesystem, so ingesting a sub-folder or one file honours the ACL files above it) > the ``--acl`` default of
the root holding the file > nobody. A file reached two ways therefore gets one ACL. A near-miss spelling
(``_acl.yml``, ``_ACL.yaml``, front matter ``ACL:`` or ``acls:``) is an :class:`AclError`, never silently
replaced by a wider default: the caller makes such documents readable by nobody and reports them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ragtune.core import Acl
from ragtune.errors import AclError
from ragtune.ingest.roots import RootSet
from ragtune.ingest.yaml_unique import safe_load_unique

ACL_FILE = "_acl.yaml"
# Names a person may type for an ACL file; compared case-insensitively. Only ACL_FILE itself is read.
_ACL_FILE_SPELLINGS = frozenset({"_acl.yaml", "_acl.yml", "acl.yaml", "acl.yml", "_acls.yaml", "_acls.yml",
                                 ".acl.yaml", ".acl.yml", "_acl.yaml.txt", "_acl.json"})
# Front-matter keys that mean "acl" but are not spelled ``acl``.
_ACL_KEY_SPELLINGS = frozenset({"acl", "acls", "_acl", "acl_", "access", "access_control"})


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
        data = safe_load_unique(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise AclError(f"{path}: cannot read ACL file ({exc})") from exc
    if isinstance(data, dict) and "acl" in data:
        if len(data) > 1:
            raise AclError(f"{path}: an ACL file holds only `acl:` (found also {sorted(map(str, data))})")
        data = data["acl"]
    return parse_acl(data, str(path))


def front_matter_acl(front_matter: dict[str, Any] | None, where: str) -> Acl | None:
    """The ACL declared in front matter, ``None`` if none; a near-miss key (``ACL:``, ``acls:``) is an error."""
    if not front_matter:
        return None
    for key in front_matter:
        if key != "acl" and isinstance(key, str) and key.strip().lower() in _ACL_KEY_SPELLINGS:
            raise AclError(f"{where}: front matter key {key!r} is not read; write it as `acl:` "
                           "(until then the document is readable by nobody)")
    if "acl" in front_matter:
        return parse_acl(front_matter["acl"], f"{where} front matter")
    return None


class AclResolver:
    """Resolves files' ACLs against the project's roots; folder ACL files are read once and cached."""

    def __init__(self, roots: RootSet) -> None:
        self.roots = roots
        self._folders: dict[Path, Acl | None] = {}

    def folder_acl(self, folder: Path) -> Acl | None:
        """The ACL of the nearest ``_acl.yaml`` at or above ``folder``, if any.

        ``folder`` is walked lexically (pass a real path to get the real location's ACL).
        """
        folder = Path(os.path.abspath(folder))
        chain: list[Path] = []
        acl: Acl | None = None
        here = folder
        while True:
            if here in self._folders:
                acl = self._folders[here]
                break
            chain.append(here)
            own = self._acl_file_in(here)
            if own is not None:
                acl = _load_acl_file(own)
                break
            if here.parent == here:
                break
            here = here.parent
        for f in chain:
            self._folders[f] = acl
        return acl

    def _acl_file_in(self, folder: Path) -> Path | None:
        """``folder/_acl.yaml`` if present; a near-miss spelling there is an error.

        Above the roots only ``_acl.*`` spellings count: an unrelated ``acl.yaml`` in a home folder is not
        taken for a misnamed ACL file of every corpus below it.
        """
        try:
            names = os.listdir(folder)
        except OSError:
            names = []  # not listable (e.g. an ancestor with --x only): the exact name can still be checked
        inside = self.roots.containing(Path(os.path.realpath(folder))) is not None
        for name in names:
            lowered = name.lower()
            if name != ACL_FILE and lowered in _ACL_FILE_SPELLINGS and (inside or lowered.startswith("_acl")):
                raise AclError(f"{folder / name}: ACL files must be named {ACL_FILE} exactly; rename it "
                               "(until then documents in that folder are readable by nobody)")
        own = folder / ACL_FILE
        return own if own.is_file() else None

    def resolve(self, real_path: Path, front_matter: dict[str, Any] | None) -> Acl:
        """Front matter > nearest ``_acl.yaml`` above the real path > the root's default > nobody."""
        declared = front_matter_acl(front_matter, real_path.name)
        if declared is not None:
            return declared
        folder = self.folder_acl(real_path.parent)
        if folder is not None:
            return folder
        return self.roots.default_for(real_path) or Acl()

    def resolve_external(self, walked_path: Path, real_path: Path, front_matter: dict[str, Any] | None,
                         walked_root: Path) -> Acl:
        """A link's target outside every root (only with ``ingest.follow_external_links``): the narrowest of
        the ACL it would have where the link sits and any ACL declared at its real location."""
        declared = front_matter_acl(front_matter, real_path.name)
        if declared is not None:
            return declared
        # Where the link sits: the nearest folder above it whose real location is inside a root (a folder
        # link's own target is the external side, not where the link sits).
        sits = next((Path(os.path.realpath(f)) for f in walked_path.parents
                     if self.roots.containing(Path(os.path.realpath(f))) is not None), walked_root)
        at_link = self.folder_acl(sits) or self.roots.roots.get(walked_root) or Acl()
        at_target = self.folder_acl(real_path.parent)
        return at_link.intersect(at_target) if at_target is not None else at_link
