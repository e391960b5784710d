"""A zip upload unpacked into its upload folder: only members a ragtune parser reads, under safe relative names,
within the upload limit however the archive describes itself (a zip bomb or a ``../`` member is refused)."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path, PurePosixPath

from ragtune.ingest.parsers import PARSERS
from ragtune.server.deps import ApiError

MAX_MEMBERS = 2000
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def _member_path(name: str) -> PurePosixPath | None:
    """A member's safe relative path (each part cleaned), or None for a folder or a path out of the archive."""
    path = PurePosixPath(name.replace("\\", "/"))
    if name.endswith("/") or path.is_absolute() or ".." in path.parts:
        return None
    parts = [_UNSAFE.sub("_", p).strip().lstrip(".") for p in path.parts]
    return PurePosixPath(*parts) if parts and all(parts) else None


def unpack_zip(archive: Path, max_bytes: int) -> list[str]:
    """Extract ``archive``'s supported members next to it and delete it; the relative paths written. 422 for
    a file that is not a zip, an unsafe member or no supported member; 413 past ``max_bytes`` uncompressed or
    :data:`MAX_MEMBERS` members. On any error nothing extracted is kept (the caller removes the folder)."""
    folder, written, total = archive.parent, [], 0
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if len(members) > MAX_MEMBERS:
                raise ApiError(413, "upload_too_large", f"{archive.name} has {len(members)} files; at most "
                                                        f"{MAX_MEMBERS} per zip")
            for member in members:
                rel = _member_path(member.filename)
                if rel is None:
                    raise ApiError(422, "unsafe_archive", f"{archive.name}: member {member.filename[:200]!r} "
                                                          "points outside the archive; repack it with plain paths")
                if rel.suffix.lower() not in PARSERS:
                    continue  # as ingestion would skip it
                target = folder.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, target.open("wb") as out:
                    while chunk := src.read(1 << 20):
                        total += len(chunk)  # counted as read: the archive's own sizes may lie
                        if total > max_bytes:
                            raise ApiError(413, "upload_too_large", f"{archive.name} unpacks to over the upload "
                                                                    f"limit of {max_bytes / 1e6:g} MB")
                        out.write(chunk)
                written.append(rel.as_posix())
    except zipfile.BadZipFile:
        raise ApiError(422, "invalid_archive", f"{archive.name} is not a readable zip archive") from None
    if not written:
        raise ApiError(422, "empty_archive", f"{archive.name} holds no file ragtune can read; supported: "
                                             f"{', '.join(sorted(PARSERS))}")
    archive.unlink()
    return written

