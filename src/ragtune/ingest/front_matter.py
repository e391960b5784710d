"""Front matter: the metadata block at the top of a Markdown or text file, which may hold its ACL.

YAML between ``---`` lines (also after blank lines, or closed with YAML's own ``...``) and TOML between ``+++``
lines are read. Anything ambiguous — a block that does not parse, a key given twice, a bare ``acl:`` line with
no block around it — raises :class:`FrontMatterError`, never a guess: the caller makes the document readable
by nobody.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ragtune.errors import FrontMatterError
from ragtune.ingest.yaml_unique import safe_load_unique

# YAML front matter: ``---`` ... ``---`` (or YAML's own end marker ``...``), after any blank lines. The body
# group is optional: an empty block (``---`` straight after ``---``) is front matter too.
FRONT_MATTER = re.compile(
    r"\A(?:[ \t]*(?:\r\n?|\n))*---[ \t]*(?:\r\n?|\n)(?:(.*?)(?:\r\n?|\n))?(?:---|\.\.\.)[ \t]*(?:\r\n?|\n|\Z)",
    re.S,
)
# TOML front matter (Hugo's ``+++`` blocks): honoured too, not mistaken for text.
TOML_FRONT_MATTER = re.compile(r"\A(?:[ \t]*(?:\r\n?|\n))*\+\+\+[ \t]*(?:\r\n?|\n)(?:(.*?)(?:\r\n?|\n))?\+\+\+[ \t]*"
                               r"(?:\r\n?|\n|\Z)", re.S)
# ``acl: ...`` as a bare first line (the ``---`` lines forgotten): refused, never read as text.
_BARE_ACL_LINE = re.compile(r"\A(?:[ \t]*(?:\r\n?|\n))*[ \t]*(?:acls?|ACLS?|Acls?)[ \t]*:", re.S)

def split_front_matter(raw: str, path: Path) -> tuple[dict[str, Any], str]:
    """Split a leading front matter block (YAML ``---``, or TOML ``+++``) from the text.

    A block that cannot be parsed, a key given twice, or a bare ``acl:`` line with no block around it raise
    :class:`FrontMatterError`: front matter may hold the document's ACL, so it is never guessed at.
    """
    toml = TOML_FRONT_MATTER.match(raw)
    if toml:
        import tomllib

        try:
            return tomllib.loads(toml.group(1) or ""), raw[toml.end() :]
        except tomllib.TOMLDecodeError as exc:
            raise FrontMatterError(f"{path.name}: TOML front matter (+++) is not valid ({exc})") from exc
    m = FRONT_MATTER.match(raw)
    if not m:
        if _BARE_ACL_LINE.match(raw):
            raise FrontMatterError(f"{path.name}: starts with an `acl:` line outside front matter; put it between "
                                   "`---` lines (until then the document is readable by nobody)")
        return {}, raw
    try:
        loaded = safe_load_unique(m.group(1) or "")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 2}: " if mark is not None else ""  # +1 for 1-based, +1 for the '---' line
        reason = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise FrontMatterError(f"{path.name}: front matter is not valid YAML ({where}{reason})") from exc
    if loaded is not None and not isinstance(loaded, dict):
        raise FrontMatterError(f"{path.name}: front matter must be a mapping of keys")
    return loaded or {}, raw[m.end() :]
