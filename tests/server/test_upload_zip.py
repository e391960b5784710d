"""Zip uploads (``POST /v1/documents`` and the web UI's form): the readable members are ingested with the
upload's ACL; an unsafe member, a file that is not a zip, a zip with nothing readable or one that unpacks past
the upload limit is refused before any job, and nothing is kept."""

from __future__ import annotations

import io
import zipfile

import pytest

from ragtune.server.documents import uploads_dir

from .conftest import Server
from .test_documents import doc_paths, upload, wait_job


def zipped(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_a_zip_is_ingested_member_by_member_with_the_uploads_acl(server: Server) -> None:
    data = zipped({"handbook/pager.md": b"# Pager\n\nThe pager is handed over every Friday at nine.\n",
                   "handbook/notes.txt": b"Escalations go to the duty manager within fifteen minutes.\n",
                   "tools/setup.exe": b"MZ\x00\x01"})
    with server.client("editor") as c:
        r = upload(c, "handbook.zip", data)
        assert r.status_code == 202, r.text
        job = wait_job(c, r.json())
    assert job["status"] == "done" and job["report"]["ingested"] == 2 and job["failures"] == [], job
    assert {"pager.md", "notes.txt"} <= set(doc_paths(server, "ops"))
    assert not {"pager.md", "notes.txt"} & set(doc_paths(server, "hr"))
    assert not list(uploads_dir(server.project).rglob("*.zip")) and not list(uploads_dir(server.project).rglob("*.exe"))
    # Deleting one member removes that file only; the upload's folder goes with its last member.
    with server.client("editor") as c:
        ids = {d["path"].rsplit("/", 1)[-1]: d["doc_id"] for d in c.get("/v1/documents").json()["documents"]}
        for name, left in (("pager.md", {"notes.txt"}), ("notes.txt", set())):
            r = c.delete(f"/v1/documents/{ids[name]}")
            assert r.status_code == 202, r.text
            assert wait_job(c, r.json())["status"] == "done"
            assert {"pager.md", "notes.txt"} & set(doc_paths(server, "ops")) == left
    assert not any(uploads_dir(server.project).iterdir())

@pytest.mark.parametrize("name, data, status, code", [
    ("evil.zip", zipped({"../../outside.md": b"# Out\n\nNo.\n"}), 422, "unsafe_archive"),
    ("abs.zip", zipped({"/etc/cron.d/x.md": b"# Abs\n\nNo.\n"}), 422, "unsafe_archive"),
    ("fake.zip", b"PK this is not really a zip", 422, "invalid_archive"),
    ("images.zip", zipped({"a.png": b"\x89PNG", "b.exe": b"MZ"}), 422, "empty_archive"),
    # 25 MB of one repeated byte compresses to a few KB: the limit counts what is unpacked.
    ("bomb.zip", zipped({"bomb.txt": b"a" * 25_000_000}), 413, "upload_too_large"),
])
def test_bad_zips_are_refused_before_any_job_and_nothing_is_kept(server: Server, name: str, data: bytes,
                                                                 status: int, code: str) -> None:
    before = server.project.store.count()
    with server.client("editor") as c:
        r = upload(c, name, data)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and name in r.json()["error"]["message"]
    assert server.project.store.count() == before
    assert not uploads_dir(server.project).exists() or not any(uploads_dir(server.project).iterdir())
    assert not (server.project.settings.project_dir.parent / "outside.md").exists()
