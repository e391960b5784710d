"""Documents over HTTP (issue 18): uploads ingested by a background job with the ACL the uploader gives,
listing and showing only what the caller may read, deletes, syncs, and bad uploads that leave the index as it
was. A real server, real keys, a real index.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from helpers import write

from ragtune.core import Principal
from ragtune.errors import RagtuneError
from ragtune.ingest.acl import parse_acl_option
from ragtune.server.documents import uploads_dir
from ragtune.server.jobs import Job, JobProgress, JobQueue, ShutdownRequested

from .conftest import Server
from .live import small_project

MD = b"# Rotation\n\nThe on-call rotation changes every Tuesday at noon.\n"
QUESTION = "When does the on-call rotation change?"


def wait_job(c: httpx2.Client, job: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
        job = c.get(f"/v1/jobs/{job['id']}").json()
    return job


def upload(c: httpx2.Client, name: str, data: bytes, acl: str | None = "group:ops") -> httpx2.Response:
    return c.post("/v1/documents", files={"file": (name, data)}, data={"acl": acl} if acl is not None else {})


def doc_paths(server: Server, key: str) -> list[str]:
    with server.client(key) as c:
        r = c.get("/v1/documents")
    assert r.status_code == 200, r.text
    return [d["path"].rsplit("/", 1)[-1] for d in r.json()["documents"]]


def test_a_reader_cannot_upload(server: Server) -> None:
    with server.client("ops") as c:
        r = upload(c, "rotation.md", MD)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert not uploads_dir(server.project).exists() or not any(uploads_dir(server.project).iterdir())


def test_upload_is_ingested_for_its_acl_only_then_deleted(server: Server) -> None:
    with server.client("editor") as c:
        r = upload(c, "rotation.md", MD)
        assert r.status_code == 202, r.text
        job = wait_job(c, r.json())
    assert job["status"] == "done" and job["kind"] == "upload", job
    assert job["report"]["ingested"] == 1 and job["failures"] == [] and job["chunks_embedded"] >= 1
    assert job["files_done"] == job["files_total"] == 1
    with server.client("ops") as c:
        ops = c.post("/v1/ask", json={"question": QUESTION}).json()
        docs = c.get("/v1/documents").json()["documents"]
    assert not ops["abstained"] and "Tuesday" in ops["answer"]
    mine = [d for d in docs if d["path"].endswith("rotation.md")]
    assert len(mine) == 1 and mine[0]["uploaded"] and mine[0]["acl"] is None  # readers are not shown ACLs
    with server.client("hr") as c:
        hr = c.post("/v1/ask", json={"question": QUESTION}).json()
        hidden = c.get(f"/v1/documents/{mine[0]['doc_id']}")
        missing = c.get("/v1/documents/0000000000000000")
    assert hr["abstained"] and "Tuesday" not in str(hr)
    assert "rotation.md" not in doc_paths(server, "hr")
    # A document the caller may not read answers exactly like one that does not exist.
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"]["code"] == missing.json()["error"]["code"] == "document_not_found"
    assert (hidden.json()["error"]["message"].replace(mine[0]["doc_id"], "ID")
            == missing.json()["error"]["message"].replace("0000000000000000", "ID"))

    with server.client("editor") as c:
        shown = c.get(f"/v1/documents/{mine[0]['doc_id']}").json()
        assert shown["acl"] == ["group:ops"]
        r = c.delete(f"/v1/documents/{mine[0]['doc_id']}")
        assert r.status_code == 202, r.text
        assert wait_job(c, r.json())["status"] == "done"
    with server.client("ops") as c:
        after = c.post("/v1/ask", json={"question": QUESTION}).json()
    assert "Tuesday" not in str(after)
    assert "rotation.md" not in doc_paths(server, "ops")
    assert not any(uploads_dir(server.project).iterdir())  # the file is gone from the server too


def _ingestion_failures(c: httpx2.Client) -> float:
    line = next(ln for ln in c.get("/metrics").text.splitlines() if ln.startswith("ragtune_ingestion_failures_total"))
    return float(line.split()[-1])


def test_a_corrupt_pdf_is_a_per_file_failure_and_the_index_is_unchanged(server: Server) -> None:
    before = server.project.store.count()
    with server.client("editor") as c:
        failures_before = _ingestion_failures(c)
        r = upload(c, "broken.pdf", b"%PDF-1.4\nnot really a pdf")
        assert r.status_code == 202, r.text
        job = wait_job(c, r.json())
        assert _ingestion_failures(c) == failures_before + 1  # counted on /metrics
    assert job["status"] == "done" and job["report"]["ingested"] == 0
    assert len(job["failures"]) == 1 and "corrupt or unreadable PDF" in job["failures"][0]["error"]
    assert server.project.store.count() == before
    assert not any(uploads_dir(server.project).iterdir())  # nothing of the failed upload is kept
    assert all(not str(root).startswith(str(uploads_dir(server.project).resolve()))
               for root in server.project.roots())


def test_a_binary_file_named_txt_fails_in_the_job(server: Server) -> None:
    with server.client("editor") as c:
        job = wait_job(c, upload(c, "data.txt", bytes(range(256)) * 4).json())
    assert job["status"] == "done" and "binary" in job["failures"][0]["error"]


@pytest.mark.parametrize(("name", "data", "acl", "status", "code"), [
    ("notes.exe", b"MZ...", "group:ops", 415, "unsupported_format"),
    ("noext", b"text", "group:ops", 415, "unsupported_format"),
    ("rotation.md", MD, None, 422, "acl_required"),
    ("rotation.md", MD, "  ", 422, "acl_required"),
    ("rotation.md", MD, "group:ops,everyone", 422, "invalid_acl"),
    ("empty.md", b"", "group:ops", 422, "empty_upload"),
])
def test_bad_uploads_are_refused_before_any_job(server: Server, name: str, data: bytes, acl: str | None,
                                                status: int, code: str) -> None:
    before = server.project.store.count()
    with server.client("editor") as c:
        r = upload(c, name, data, acl)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]
    assert server.project.store.count() == before
    assert not uploads_dir(server.project).exists() or not any(uploads_dir(server.project).iterdir())


def test_an_upload_over_max_upload_mb_is_413(server: Server) -> None:
    assert server.project.settings.service.max_upload_mb == 20
    with server.client("editor") as c:
        r = upload(c, "big.md", b"# Big\n\n" + b"words " * 3_500_000)  # 21 MB
    assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"


def test_documents_not_uploaded_cannot_be_deleted_and_sync_runs_as_a_job(server: Server) -> None:
    with server.client("editor") as c:
        backups = next(d for d in c.get("/v1/documents").json()["documents"] if d["path"].endswith("backups.md"))
        r = c.delete(f"/v1/documents/{backups['doc_id']}")
        assert r.status_code == 409 and r.json()["error"]["code"] == "not_uploaded"
        job = wait_job(c, c.post("/v1/sync").json())
    assert job["kind"] == "sync" and job["status"] == "done", job
    assert job["report"]["unchanged"] >= 2 and job["failures"] == []
    with server.client("ops") as c:  # readers may not sync, nor see an editor's job
        assert c.post("/v1/sync").status_code == 403
        assert c.get(f"/v1/jobs/{job['id']}").status_code == 403
    with server.client("admin") as c:
        assert c.get(f"/v1/jobs/{job['id']}").json()["id"] == job["id"]
        assert c.get("/v1/jobs/nope").json()["error"]["code"] == "job_not_found"


def test_shutdown_stops_a_job_between_batches_and_fails_the_queued_ones(tmp_path: Path) -> None:
    """Graceful shutdown: the batch being written commits, the job stops before the next one, and a job that
    never started is failed with a message (never run half)."""
    queue, written, release = JobQueue(), [], threading.Event()

    def work(job: Job, progress: JobProgress) -> None:
        for batch in range(3):
            progress.file_done(Path(f"f{batch}"), "new")  # raises once stopping, before the batch is written
            written.append(batch)
            release.wait(10)
    first = queue.submit("upload", Principal("eve"), work)
    second = queue.submit("sync", Principal("eve"), work)
    while not written:
        time.sleep(0.01)
    stopper = threading.Thread(target=queue.stop)
    stopper.start()
    while not queue.stopping.is_set():
        time.sleep(0.01)
    release.set()
    stopper.join(10)
    assert written == [0] and first.status == "failed" and "POST /v1/sync" in first.error
    assert second.status == "failed" and "before the job started" in second.error
    with pytest.raises(RagtuneError, match="shutting down"):
        queue.submit("sync", Principal("eve"), work)


def test_a_stopped_ingest_writes_nothing_of_its_batch(tmp_path: Path) -> None:
    """With the real syncer: a sync stopped before its batch leaves the index as it was, and the next ingest
    writes every file."""
    project = small_project(tmp_path)
    before = project.store.count()
    docs = tmp_path / "more"
    for n in range(3):
        write(docs / f"note{n}.md", f"# Note {n}\n\nNote {n} says the shift starts at {n + 6} o'clock.\n")
    stopping = threading.Event()
    stopping.set()
    job = Job(id="x", kind="upload", owner=Principal("eve"))
    with pytest.raises(ShutdownRequested):
        project.ingest(docs, parse_acl_option("group:ops"), JobProgress(job, stopping))
    assert project.store.count() == before
    report = project.ingest(docs, parse_acl_option("group:ops"), JobProgress(job, threading.Event()))
    assert report.ingested == 3 and project.store.count() > before
